//! The durable inbox between polling and indexing.
//!
//! Polling is destructive: a neighbour forgets what it handed us. So every polled event is written here and
//! synced to disk *before* anything else happens to it, and removed only after its effects are durable. A crash
//! at any point replays the inbox on the next start; indexing is idempotent (a bundle whose hash we already hold
//! is a no-op), so a replay never indexes anything twice.
//!
//! The entries live in a [`SegmentLog`] in the store's directory (`inbox/`), not in sled: written once, read once
//! and removed, they would cost sled two copy-on-write updates each and leave garbage in its log. Earlier
//! releases kept them in the sled tree `node.inbox`; [`Inbox::open`] moves what it holds.

use std::path::Path;
use std::sync::Arc;

pub(crate) mod record;

pub use record::{InboxEntry, RecordError};

use super::segment_log::{LogError, ReadError, SegmentLog};
use crate::protocol::{Event, Rid};

/// The sled tree earlier releases kept the inbox in.
const LEGACY_TREE: &str = "node.inbox";
/// An inbox problem (always a storage problem).
#[derive(Debug, thiserror::Error)]
pub enum InboxError {
    /// The segment files failed.
    #[error("inbox storage: {0}")]
    Log(#[from] LogError),
    /// sled failed (moving a legacy inbox).
    #[error("inbox storage: {0}")]
    Storage(#[from] sled::Error),
    /// An entry on disk is not readable (written by an incompatible version, or damaged).
    #[error("inbox entry {key} is unreadable: {reason}")]
    Corrupt {
        /// The entry's sequence number.
        key: u64,
        /// Why.
        reason: String,
    },
}

/// The inbox: entries in a [`SegmentLog`], numbered in arrival order.
#[derive(Clone)]
pub struct Inbox {
    log: Arc<SegmentLog>,
}

impl Inbox {
    /// Opens the inbox in `dir` and recovers what a previous run left; entries an earlier release left in `db`'s
    /// `node.inbox` tree are moved in first (synced before the tree is dropped; a crash in between only makes
    /// them wait twice, which indexing bears).
    pub fn open(dir: &Path, db: &sled::Db) -> Result<Inbox, InboxError> {
        let (log, recovery) = SegmentLog::open(dir)?;
        if recovery.torn_bytes > 0 {
            tracing::warn!(
                bytes = recovery.torn_bytes,
                "inbox: cut off a write torn by a crash (the events in it were never acknowledged as stored)"
            );
        }
        for (path, offset, skipped) in &recovery.damaged {
            tracing::error!(
                segment = %path.display(),
                offset,
                skipped_bytes = skipped,
                "inbox: a segment file is damaged; the entries after the damage cannot be read and are skipped"
            );
        }
        if db
            .tree_names()
            .iter()
            .any(|n| n.as_ref() == LEGACY_TREE.as_bytes())
        {
            let tree = db.open_tree(LEGACY_TREE)?;
            let mut moved = 0;
            let mut values = Vec::new();
            for item in tree.iter() {
                let (_, value) = item?;
                values.push(value.to_vec());
                if values.len() == 1024 {
                    moved += log.append(&std::mem::take(&mut values))?.len();
                }
            }
            moved += log.append(&values)?.len();
            log.sync()?;
            db.drop_tree(LEGACY_TREE)?;
            db.flush()?;
            if moved > 0 {
                tracing::info!(
                    events = moved,
                    "inbox: moved the entries of the sled tree node.inbox to the segment files"
                );
            }
        }
        Ok(Inbox { log: Arc::new(log) })
    }

    /// Appends events, in one write; not yet synced (call [`Inbox::flush`] before telling anyone they are
    /// stored). `hash_verified`: the caller has checked every event's contents against its manifest
    /// ([`Event::verify_hash`]).
    pub fn push(
        &self,
        source: &Rid,
        events: Vec<Event>,
        hash_verified: bool,
    ) -> Result<usize, InboxError> {
        let encoded: Vec<Vec<u8>> = events
            .into_iter()
            .map(|event| record::encode(&InboxEntry::new(source.clone(), event, hash_verified)))
            .collect();
        Ok(self.log.append(&encoded)?.len())
    }

    /// Makes every push so far durable.
    pub fn flush(&self) -> Result<(), InboxError> {
        Ok(self.log.sync()?)
    }

    /// Replaces entry `old` by `entry` at the end of the inbox, in one write (a manifest-only event whose bundle
    /// was fetched becomes the full event).
    pub fn replace(&self, old: u64, entry: &InboxEntry) -> Result<(), InboxError> {
        self.log.replace(old, &record::encode(entry))?;
        Ok(())
    }

    /// Up to `max` entries, oldest first, leaving out the keys `skip` says to. Unreadable entries are returned as
    /// [`InboxError::Corrupt`] so the caller can report and drop them.
    pub fn chunk(
        &self,
        max: usize,
        skip: impl Fn(u64) -> bool,
    ) -> Vec<Result<(u64, InboxEntry), InboxError>> {
        self.log
            .read(max, skip)
            .into_iter()
            .map(|(key, bytes)| match bytes {
                Ok(bytes) => record::decode(&bytes)
                    .map(|entry| (key, entry))
                    .map_err(|e| InboxError::Corrupt {
                        key,
                        reason: e.to_string(),
                    }),
                Err(ReadError::Damaged { .. }) => Err(InboxError::Corrupt {
                    key,
                    reason: "its bytes on disk fail their check (damaged)".into(),
                }),
                Err(ReadError::Log(e)) => Err(e.into()),
            })
            .collect()
    }

    /// Every entry, oldest first (tests and tools; the pipeline reads [`Inbox::chunk`]s).
    pub fn entries(&self) -> Vec<Result<(u64, InboxEntry), InboxError>> {
        self.chunk(usize::MAX, |_| false)
    }

    /// Removes handled entries. Call only after their effects have been flushed (a crash before the removal is
    /// durable replays them, harmlessly: indexing is idempotent).
    pub fn remove(&self, keys: &[u64]) -> Result<(), InboxError> {
        Ok(self.log.remove(keys)?)
    }

    /// How many events wait (kept in memory: no scan).
    pub fn len(&self) -> usize {
        self.log.len()
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rid(s: &str) -> Rid {
        Rid::parse(s).unwrap()
    }

    fn source() -> Rid {
        rid("orn:koi-net.node:s+0000000000000000000000000000000000000000000000000000000000000000")
    }

    fn forgets(n: usize) -> Vec<Event> {
        (0..n)
            .map(|i| Event::forget(rid(&format!("orn:github.event:a/b:{i}"))))
            .collect()
    }

    fn waiting_rids(inbox: &Inbox) -> Vec<String> {
        inbox
            .entries()
            .into_iter()
            .map(|e| e.unwrap().1.event.rid.to_string())
            .collect()
    }

    #[test]
    fn entries_survive_a_reopen_in_order_and_leave_when_removed() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::Config::new().temporary(true).open().unwrap();
        {
            let inbox = Inbox::open(dir.path(), &db).unwrap();
            assert_eq!(inbox.push(&source(), forgets(5), false).unwrap(), 5);
            inbox.flush().unwrap();
        }
        let inbox = Inbox::open(dir.path(), &db).unwrap();
        let entries: Vec<_> = inbox.entries().into_iter().map(Result::unwrap).collect();
        assert_eq!(
            waiting_rids(&inbox),
            (0..5)
                .map(|i| format!("orn:github.event:a/b:{i}"))
                .collect::<Vec<_>>()
        );
        assert_eq!(entries[0].1.source, source());
        inbox.remove(&[entries[0].0, entries[3].0]).unwrap();
        assert_eq!(inbox.len(), 3);
        drop(inbox);
        let inbox = Inbox::open(dir.path(), &db).unwrap();
        assert_eq!(inbox.len(), 3, "removals are durable too");
    }

    #[test]
    fn an_inbox_left_in_sled_by_an_earlier_release_is_moved_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::Config::new().temporary(true).open().unwrap();
        // As earlier releases stored them: big-endian sequence keys, encoded entries.
        let legacy = db.open_tree(LEGACY_TREE).unwrap();
        for (i, event) in forgets(3).into_iter().enumerate() {
            let entry = InboxEntry::new(source(), event, false);
            legacy
                .insert((100 + i as u64).to_be_bytes(), record::encode(&entry))
                .unwrap();
        }
        let inbox = Inbox::open(&dir.path().join("inbox"), &db).unwrap();
        assert_eq!(inbox.len(), 3);
        assert!(
            !db.tree_names()
                .iter()
                .any(|n| n.as_ref() == LEGACY_TREE.as_bytes()),
            "the sled tree is dropped"
        );
        drop(inbox);
        let inbox = Inbox::open(&dir.path().join("inbox"), &db).unwrap();
        assert_eq!(waiting_rids(&inbox).len(), 3, "moved once, not twice");
        assert_eq!(
            waiting_rids(&inbox)[0],
            "orn:github.event:a/b:0",
            "in their order"
        );
    }

    #[test]
    fn a_corrupt_entry_is_reported_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::Config::new().temporary(true).open().unwrap();
        let inbox = Inbox::open(dir.path(), &db).unwrap();
        let key = inbox.log.append(&[b"not json".to_vec()]).unwrap()[0];
        inbox.push(&source(), forgets(1), false).unwrap();
        let results: Vec<_> = inbox.entries();
        assert!(matches!(&results[0], Err(InboxError::Corrupt { key: k, .. }) if *k == key));
        assert!(results[1].is_ok(), "the next entry is read");
    }
}
