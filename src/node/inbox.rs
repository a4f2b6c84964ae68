//! The durable inbox between polling and indexing.
//!
//! Polling is destructive: a neighbour forgets what it handed us. So every polled event is written here and
//! flushed to disk *before* anything else happens to it, and removed only after its effects are durable. A crash
//! at any point replays the inbox on the next start; indexing is idempotent (a bundle whose hash we already hold
//! is a no-op), so a replay never indexes anything twice.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::protocol::{Event, Rid};

/// Tree name inside the shared sled database.
const TREE: &str = "node.inbox";

/// An inbox problem (always a storage problem).
#[derive(Debug, thiserror::Error)]
pub enum InboxError {
    /// sled failed.
    #[error("inbox storage: {0}")]
    Storage(#[from] sled::Error),
    /// An entry on disk is not readable (written by an incompatible version, or corrupted).
    #[error("inbox entry {key} is unreadable: {source}")]
    Corrupt {
        /// The entry's sequence number.
        key: u64,
        /// The decode error.
        source: serde_json::Error,
    },
}

/// One received event and the neighbour it came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InboxEntry {
    /// The neighbour that sent it (first choice for fetching its bundle).
    pub source: Rid,
    /// The event as received (signature already verified).
    pub event: Event,
    /// Its contents were checked against its manifest's hash before it was stored (entries written by older
    /// versions lack the field and are checked when processed).
    #[serde(default)]
    pub hash_verified: bool,
}

/// The inbox: a sled tree keyed by a monotonically increasing big-endian sequence, so iteration is arrival order.
///
/// Its length is counted in memory (sled's `len` walks the whole tree): once at open, then on every push and
/// removal, so backpressure checks and `/status` cost nothing.
#[derive(Clone)]
pub struct Inbox {
    db: sled::Db,
    tree: sled::Tree,
    len: Arc<AtomicUsize>,
}

impl Inbox {
    /// Opens the inbox in the shared database (counts what a previous run left).
    pub fn open(db: &sled::Db) -> Result<Inbox, InboxError> {
        let tree = db.open_tree(TREE)?;
        let len = tree.len();
        Ok(Inbox {
            db: db.clone(),
            tree,
            len: Arc::new(AtomicUsize::new(len)),
        })
    }

    /// An entry as stored: its JSON, zstd-compressed (a poll response's events are mostly repeated repository
    /// objects: this cuts the inbox's writes several-fold for little CPU).
    fn encode(entry: &InboxEntry) -> Vec<u8> {
        // Serialising our own types to JSON cannot fail.
        let json = serde_json::to_vec(entry).unwrap_or_default();
        crate::index::held::compress(&json).unwrap_or(json)
    }

    /// An entry from its stored bytes: compressed JSON, or plain JSON (written by earlier versions).
    fn decode(bytes: &[u8]) -> Result<InboxEntry, serde_json::Error> {
        const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];
        if bytes.starts_with(&ZSTD_MAGIC) {
            match crate::index::held::decompress(bytes) {
                Ok(json) => serde_json::from_slice(&json),
                Err(e) => Err(<serde_json::Error as serde::de::Error>::custom(format!(
                    "cannot decompress: {e}"
                ))),
            }
        } else {
            serde_json::from_slice(bytes)
        }
    }

    /// Appends events atomically; not yet flushed (the caller flushes before telling anyone they are stored). `hash_verified`: the caller has
    /// checked every event's contents against its manifest ([`Event::verify_hash`]).
    pub fn push(
        &self,
        source: &Rid,
        events: Vec<Event>,
        hash_verified: bool,
    ) -> Result<usize, InboxError> {
        if events.is_empty() {
            return Ok(0);
        }
        let mut batch = sled::Batch::default();
        let count = events.len();
        for event in events {
            let key = self.db.generate_id()?;
            let entry = InboxEntry {
                source: source.clone(),
                event,
                hash_verified,
            };
            batch.insert(&key.to_be_bytes(), Inbox::encode(&entry));
        }
        self.tree.apply_batch(batch)?;
        self.len.fetch_add(count, Ordering::AcqRel);
        Ok(count)
    }

    /// Replaces entry `old` by `entry` at the end of the inbox, atomically (a manifest-only event whose bundle
    /// was fetched becomes the full event).
    pub fn replace(&self, old: u64, entry: &InboxEntry) -> Result<(), InboxError> {
        let key = self.db.generate_id()?;
        let mut batch = sled::Batch::default();
        batch.remove(&old.to_be_bytes());
        batch.insert(&key.to_be_bytes(), Inbox::encode(entry));
        self.tree.apply_batch(batch)?;
        Ok(())
    }

    /// Up to `max` entries, oldest first, leaving out the keys `skip` says to. Unreadable entries are returned as
    /// errors so the caller can log and drop them.
    pub fn chunk(
        &self,
        max: usize,
        skip: impl Fn(u64) -> bool,
    ) -> Vec<Result<(u64, InboxEntry), InboxError>> {
        let mut out = Vec::new();
        for item in self.tree.iter() {
            if out.len() >= max {
                break;
            }
            let (k, v) = match item {
                Ok(kv) => kv,
                Err(e) => {
                    out.push(Err(e.into()));
                    break;
                }
            };
            let mut key_bytes = [0u8; 8];
            key_bytes.copy_from_slice(&k[..8.min(k.len())]);
            let key = u64::from_be_bytes(key_bytes);
            if skip(key) {
                continue;
            }
            out.push(
                Inbox::decode(&v)
                    .map(|entry| (key, entry))
                    .map_err(|source| InboxError::Corrupt { key, source }),
            );
        }
        out
    }

    /// Every entry, oldest first (tests and tools; the pipeline reads [`Inbox::chunk`]s).
    pub fn entries(&self) -> Vec<Result<(u64, InboxEntry), InboxError>> {
        self.chunk(usize::MAX, |_| false)
    }

    /// Removes handled entries. Call only after their effects have been flushed (a crash before the removal is
    /// flushed replays them, harmlessly: indexing is idempotent).
    pub fn remove(&self, keys: &[u64]) -> Result<(), InboxError> {
        if keys.is_empty() {
            return Ok(());
        }
        let mut batch = sled::Batch::default();
        for key in keys {
            batch.remove(&key.to_be_bytes());
        }
        self.tree.apply_batch(batch)?;
        let _ = self
            .len
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                Some(n.saturating_sub(keys.len()))
            });
        Ok(())
    }

    /// How many events wait.
    pub fn len(&self) -> usize {
        self.len.load(Ordering::Acquire)
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

    #[test]
    fn entries_written_before_the_hash_flag_existed_are_checked_when_processed() {
        let old = r#"{"source":"orn:koi-net.node:s+00","event":{"rid":"orn:github.event:a/b:1","event_type":"FORGET"}}"#;
        let entry: InboxEntry = serde_json::from_str(old).unwrap();
        assert!(!entry.hash_verified);
    }

    #[tokio::test]
    async fn entries_survive_a_reopen_in_order_and_leave_when_removed() {
        let dir = tempfile::tempdir().unwrap();
        let source = rid(
            "orn:koi-net.node:s+0000000000000000000000000000000000000000000000000000000000000000",
        );
        {
            let db = sled::open(dir.path()).unwrap();
            let inbox = Inbox::open(&db).unwrap();
            let events = (0..5)
                .map(|i| Event::forget(rid(&format!("orn:github.event:a/b:{i}"))))
                .collect();
            assert_eq!(inbox.push(&source, events, false).unwrap(), 5);
            db.flush().unwrap();
        }
        let store =
            crate::storage::open(dir.path(), crate::storage::StoreOptions::default()).unwrap();
        let db = store.db.clone();
        let inbox = Inbox::open(&db).unwrap();
        let entries: Vec<_> = inbox.entries().into_iter().map(Result::unwrap).collect();
        let ids: Vec<_> = entries
            .iter()
            .map(|(_, e)| e.event.rid.to_string())
            .collect();
        assert_eq!(
            ids,
            (0..5)
                .map(|i| format!("orn:github.event:a/b:{i}"))
                .collect::<Vec<_>>()
        );
        assert_eq!(entries[0].1.source, source);
        inbox.remove(&[entries[0].0, entries[3].0]).unwrap();
        assert_eq!(inbox.len(), 3);
    }

    #[tokio::test]
    async fn a_corrupt_entry_is_reported_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let inbox = Inbox::open(&db).unwrap();
        db.open_tree(TREE)
            .unwrap()
            .insert(7u64.to_be_bytes(), b"not json".to_vec())
            .unwrap();
        let results: Vec<_> = inbox.entries();
        assert!(matches!(
            results[0],
            Err(InboxError::Corrupt { key: 7, .. })
        ));
    }
}
