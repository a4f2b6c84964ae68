//! Schema 3 → 4: stream numbers and statistics counters.

use super::super::*;

impl Index {
    /// Schema 3 → 4: every row gets a stream sequence number (in key order) and files its statistics counters
    /// ([`feeds`]); the global lists are built by the upgrade to schema 5 that follows. Safe to repeat after a
    /// crash: the trees and the sequence are rebuilt from scratch, and the version is written after.
    pub(in crate::index::store) fn migrate_feeds(&self) -> Result<(), IndexError> {
        tracing::info!("upgrading the index to schema 4: statistics and stream sequence numbers");
        self.stats.clear()?;
        self.stream.clear()?;
        let mut counters: BTreeMap<Vec<u8>, u64> = BTreeMap::new();
        let (mut rows, mut stream) = (sled::Batch::default(), sled::Batch::default());
        let mut seq = 0u64;
        for entry in self.events.iter() {
            let (key, bytes) = entry?;
            let row = decode_row(&key, &bytes)?;
            let stats = feeds::stat_keys(&row, row_micros(&row)?);
            seq += 1;
            let meta = StoredMeta {
                q: Some(seq),
                ..stored_meta(&key, &bytes)?
            };
            rows.insert(key.clone(), encode_row(&row, meta)?);
            stream.insert(&seq.to_be_bytes(), key);
            for k in stats {
                *counters.entry(k).or_default() += 1;
            }
            if seq.is_multiple_of(1000) {
                self.events.apply_batch(std::mem::take(&mut rows))?;
                self.stream.apply_batch(std::mem::take(&mut stream))?;
                if seq.is_multiple_of(100_000) {
                    tracing::info!(events = seq, "upgrading the index: events done so far");
                }
            }
        }
        self.events.apply_batch(rows)?;
        self.stream.apply_batch(stream)?;
        let mut batch = sled::Batch::default();
        for (key, n) in counters {
            batch.insert(key, &n.to_be_bytes());
        }
        self.stats.apply_batch(batch)?;
        self.meta.insert(SEQ_KEY, &seq.to_be_bytes())?;
        self.meta.insert(SCHEMA_KEY, &4u32.to_be_bytes())?;
        self.meta.flush()?;
        tracing::info!(events = seq, "upgraded the index to schema 4");
        Ok(())
    }
}
