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

use serde::{Deserialize, Serialize};

use super::segment_log::{LogError, ReadError, SegmentLog};
use crate::index::PreparedBundle;
use crate::protocol::{Bundle, Event, EventType, Rid};

/// The sled tree earlier releases kept the inbox in.
const LEGACY_TREE: &str = "node.inbox";
/// A `u32` BE length and what follows it.
fn split_len(bytes: &[u8]) -> Option<(usize, &[u8])> {
    let len = u32::from_be_bytes(bytes.get(..4)?.try_into().ok()?) as usize;
    Some((len, &bytes[4..]))
}

/// First byte of a prepared entry whose JSON part is zstd-compressed (written before 2026-11-27's segment inbox;
/// still read); JSON starts with `{`, zstd with `0x28`.
const PREPARED: u8 = 0x02;
/// First byte of a prepared entry as [`Inbox::encode`] writes it: the JSON part as it is.
const PREPARED_PLAIN: u8 = 0x03;

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

    /// An entry as stored:
    ///
    /// * prepared: `[PREPARED_PLAIN][length: u32 BE][entry JSON length: u32 BE][entry JSON][prepared JSON]` then
    ///   the prepared bundle's held value, whose contents are compressed already. The event's manifest is the
    ///   prepared bundle's, so the entry JSON leaves it out. The JSON part is not compressed: it is about 1 KB,
    ///   written to a file once and deleted, and compressing it then decompressing it on the writer's thread cost
    ///   more than the bytes (callgrind: 85 K and 26 K instructions per event, a quarter of the writer's own work);
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
        let held = prepared.held();
        let mut out = Vec::with_capacity(5 + json.len() + held.len());
        out.push(PREPARED_PLAIN);
        out.extend_from_slice(&(json.len() as u32).to_be_bytes());
        out.extend_from_slice(&json);
        out.extend_from_slice(held);
        out
    }

    /// An entry from its stored bytes: prepared, compressed JSON, or plain JSON (written by earlier versions).
    fn decode(bytes: &[u8]) -> Result<InboxEntry, serde_json::Error> {
        const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];
        let bad = |why: String| <serde_json::Error as serde::de::Error>::custom(why);
        if let Some((&mark @ (PREPARED | PREPARED_PLAIN), rest)) = bytes.split_first() {
            let (len, rest) = split_len(rest).ok_or_else(|| bad("entry cut short".into()))?;
            let packed = rest
                .get(..len)
                .ok_or_else(|| bad("entry cut short".into()))?;
            let json: std::borrow::Cow<'_, [u8]> = if mark == PREPARED {
                crate::index::held::decompress(packed)
                    .map_err(|e| bad(format!("cannot decompress: {e}")))?
                    .into()
            } else {
                packed.into()
            };
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
            .map(|event| Inbox::encode(&InboxEntry::new(source.clone(), event, hash_verified)))
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
        self.log.replace(old, &Inbox::encode(entry))?;
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
                Ok(bytes) => Inbox::decode(&bytes)
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

    #[test]
    fn entries_written_before_the_hash_flag_existed_are_checked_when_processed() {
        let old = r#"{"source":"orn:koi-net.node:s+00","event":{"rid":"orn:github.event:a/b:1","event_type":"FORGET"}}"#;
        let entry: InboxEntry = serde_json::from_str(old).unwrap();
        assert!(!entry.hash_verified);
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
                .insert((100 + i as u64).to_be_bytes(), Inbox::encode(&entry))
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
        assert_eq!(stored[0], PREPARED_PLAIN);
        let back = Inbox::decode(&stored).unwrap();
        assert_eq!(back, entry);
        // The form the previous release wrote (the JSON part zstd-compressed) is still read.
        let (len, rest) = split_len(&stored[1..]).unwrap();
        let packed = crate::index::held::compress(&rest[..len]).unwrap();
        let mut older = vec![PREPARED];
        older.extend_from_slice(&(packed.len() as u32).to_be_bytes());
        older.extend_from_slice(&packed);
        older.extend_from_slice(&rest[len..]);
        assert_eq!(Inbox::decode(&older).unwrap(), entry);
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
