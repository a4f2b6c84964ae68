//! The durable inbox between polling and indexing.
//!
//! Polling is destructive: a neighbour forgets what it handed us. So every polled event is written here and
//! flushed to disk *before* anything else happens to it, and removed only after its effects are durable. A crash
//! at any point replays the inbox on the next start; indexing is idempotent (a bundle whose hash we already hold
//! is a no-op), so a replay never indexes anything twice.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::index::PreparedBundle;
use crate::protocol::{Bundle, Event, EventType, Rid};

/// Tree name inside the shared sled database.
const TREE: &str = "node.inbox";
/// A `u32` BE length and what follows it.
fn split_len(bytes: &[u8]) -> Option<(usize, &[u8])> {
    let len = u32::from_be_bytes(bytes.get(..4)?.try_into().ok()?) as usize;
    Some((len, &bytes[4..]))
}

/// First byte of a prepared entry ([`Inbox::encode`]); JSON starts with `{`, zstd with `0x28`.
const PREPARED: u8 = 0x02;

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
    /// The event's bundle made ready for the index when it was received ([`PreparedBundle`]); `event` then
    /// carries its manifest only. Stored apart from the JSON (see [`Inbox::encode`]).
    #[serde(skip)]
    pub prepared: Option<Box<PreparedBundle>>,
}

impl InboxEntry {
    /// An entry for a received event. A hash-checked GitHub bundle is prepared for the index here, on the
    /// receiving side, so the single writer does not parse, serialise or compress its contents again.
    pub fn new(source: Rid, event: Event, hash_verified: bool) -> InboxEntry {
        let unprepared = |event| InboxEntry {
            source: source.clone(),
            event,
            hash_verified,
            prepared: None,
        };
        if !hash_verified || event.event_type == EventType::Forget {
            return unprepared(event);
        }
        let Event {
            rid,
            event_type,
            manifest: Some(manifest),
            contents: Some(contents),
        } = event
        else {
            return unprepared(event);
        };
        let bundle = Bundle { manifest, contents };
        // A bundle that is not the event's own is refused by the writer, with the whole event as evidence.
        let prepared = (bundle.rid() == &rid)
            .then(|| PreparedBundle::of(&bundle))
            .flatten();
        match prepared {
            Some(prepared) => InboxEntry {
                source,
                event: Event {
                    rid,
                    event_type,
                    manifest: Some(bundle.manifest),
                    contents: None,
                },
                hash_verified,
                prepared: Some(Box::new(prepared)),
            },
            None => unprepared(Event {
                rid,
                event_type,
                manifest: Some(bundle.manifest),
                contents: Some(bundle.contents),
            }),
        }
    }
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

    /// An entry as stored:
    ///
    /// * prepared: `[PREPARED][length: u32 BE][zstd([entry JSON length: u32 BE][entry JSON][prepared JSON])]`
    ///   then the prepared bundle's held value, whose contents are compressed already. The event's manifest is
    ///   the prepared bundle's, so the entry JSON leaves it out;
    /// * otherwise its JSON, zstd-compressed (a poll response's events are mostly repeated repository objects:
    ///   this cuts the inbox's writes several-fold for little CPU).
    fn encode(entry: &InboxEntry) -> Vec<u8> {
        let Some(prepared) = &entry.prepared else {
            // Serialising our own types to JSON cannot fail.
            let json = serde_json::to_vec(entry).unwrap_or_default();
            return crate::index::held::compress(&json).unwrap_or(json);
        };
        let slim = InboxEntry {
            source: entry.source.clone(),
            event: Event {
                rid: entry.event.rid.clone(),
                event_type: entry.event.event_type,
                manifest: None,
                contents: None,
            },
            hash_verified: entry.hash_verified,
            prepared: None,
        };
        let mut json = vec![0; 4];
        // Serialising our own types to JSON cannot fail.
        serde_json::to_writer(&mut json, &slim).unwrap_or_default();
        let entry_len = (json.len() - 4) as u32;
        json[..4].copy_from_slice(&entry_len.to_be_bytes());
        json.extend_from_slice(&prepared.header_json());
        let packed = crate::index::held::compress(&json).unwrap_or_default();
        let held = prepared.held();
        let mut out = Vec::with_capacity(5 + packed.len() + held.len());
        out.push(PREPARED);
        out.extend_from_slice(&(packed.len() as u32).to_be_bytes());
        out.extend_from_slice(&packed);
        out.extend_from_slice(held);
        out
    }

    /// An entry from its stored bytes: prepared, compressed JSON, or plain JSON (written by earlier versions).
    fn decode(bytes: &[u8]) -> Result<InboxEntry, serde_json::Error> {
        const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];
        let bad = |why: String| <serde_json::Error as serde::de::Error>::custom(why);
        if let Some(rest) = bytes.strip_prefix(&[PREPARED]) {
            let (len, rest) = split_len(rest).ok_or_else(|| bad("entry cut short".into()))?;
            let packed = rest
                .get(..len)
                .ok_or_else(|| bad("entry cut short".into()))?;
            let json = crate::index::held::decompress(packed)
                .map_err(|e| bad(format!("cannot decompress: {e}")))?;
            let (entry_len, json) =
                split_len(&json).ok_or_else(|| bad("entry cut short".into()))?;
            let entry_json = json
                .get(..entry_len)
                .ok_or_else(|| bad("entry cut short".into()))?;
            let mut entry: InboxEntry = serde_json::from_slice(entry_json)?;
            let prepared = PreparedBundle::from_parts(&json[entry_len..], rest[len..].to_vec())?;
            entry.event.manifest = Some(prepared.manifest().clone());
            entry.prepared = Some(Box::new(prepared));
            return Ok(entry);
        }
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
            let entry = InboxEntry::new(source.clone(), event, hash_verified);
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

    fn github_event(rid_text: &str) -> Event {
        let contents = serde_json::json!({
            "webhook_event_type": "push",
            "repository": {"full_name": "a/b", "html_url": "https://github.com/a/b"},
            "payload": {"ref": "refs/heads/main", "after": "0123456789abcdef0123456789abcdef01234567"}
        });
        let serde_json::Value::Object(contents) = contents else {
            unreachable!()
        };
        Event::from_bundle(
            EventType::New,
            Bundle {
                manifest: crate::protocol::Manifest {
                    rid: rid(rid_text),
                    timestamp: crate::protocol::Timestamp::parse("2026-11-24T12:00:00Z").unwrap(),
                    sha256_hash: crate::protocol::knowledge::hash_contents(&contents),
                    extra: serde_json::Map::new(),
                },
                contents,
            },
        )
    }

    #[test]
    fn a_checked_github_bundle_is_stored_prepared_and_read_back_whole() {
        let source = rid("orn:koi-net.node:s+00");
        let event = github_event("orn:github.event:a/b:1");
        let entry = InboxEntry::new(source.clone(), event.clone(), true);
        let prepared = entry.prepared.as_ref().expect("prepared");
        assert_eq!(
            entry.event.contents, None,
            "the contents live in the prepared bundle"
        );
        assert_eq!(prepared.to_bundle().unwrap(), event.bundle().unwrap());
        let stored = Inbox::encode(&entry);
        assert_eq!(stored[0], PREPARED);
        let back = Inbox::decode(&stored).unwrap();
        assert_eq!(back, entry);
        assert_eq!(back.event.manifest, event.manifest);
        // A cut-short entry is an error, not a panic.
        for cut in [1, 5, 20, stored.len() / 2] {
            assert!(Inbox::decode(&stored[..cut]).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn only_checked_github_bundles_of_the_event_itself_are_prepared() {
        let source = rid("orn:koi-net.node:s+00");
        let event = github_event("orn:github.event:a/b:1");
        let unchecked = InboxEntry::new(source.clone(), event.clone(), false);
        assert!(unchecked.prepared.is_none());
        assert_eq!(unchecked.event, event);
        let mut other = event.clone();
        other.rid = rid("orn:github.event:a/b:2");
        let mismatched = InboxEntry::new(source.clone(), other.clone(), true);
        assert!(mismatched.prepared.is_none());
        assert_eq!(
            mismatched.event, other,
            "left whole for the writer to refuse"
        );
        let forget = InboxEntry::new(
            source.clone(),
            Event::forget(rid("orn:github.event:a/b:1")),
            true,
        );
        assert!(forget.prepared.is_none());
        // Unprepared entries keep the compressed JSON form.
        assert_eq!(
            Inbox::decode(&Inbox::encode(&unchecked)).unwrap(),
            unchecked
        );
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
