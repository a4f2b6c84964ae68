//! One inbox entry as bytes, and back: the only place the inbox's record layout is written down. The
//! [`super::Inbox`] stores what [`encode`] makes as opaque bytes in its segment files.
//!
//! Three forms are read, by their first byte:
//!
//! * [`PREPARED_PLAIN`] (written now, for a hash-checked GitHub bundle):
//!   `[0x03][json length: u32 BE][entry length: u32 BE][entry JSON][prepared header JSON][held value]`. The entry
//!   JSON leaves the manifest out (the prepared bundle's is the event's). The JSON is not compressed: about 1 KB,
//!   written once and deleted, compressing it then decompressing it on the writer's thread cost more than the
//!   bytes (callgrind: 85 K and 26 K instructions per event, a quarter of the writer's own work). The held value's
//!   contents are compressed already.
//! * [`PREPARED`] (written before 2026-11-27): the same with the JSON part zstd-compressed.
//! * anything else: the entry's JSON, zstd-compressed (a zstd frame), or plain (the oldest releases, and an entry
//!   whose JSON is larger than a frame may expand to, [`crate::compression::MAX_OUTPUT`]). Entries
//!   that are not prepared are rare (nodes, edges, manifest-only events, FORGETs); compression cuts a poll's
//!   repeated repository objects several-fold.

use serde::{Deserialize, Serialize};

use crate::index::PreparedBundle;
use crate::protocol::{Bundle, Event, EventType, Rid};

/// First byte of a prepared entry whose JSON part is zstd-compressed (still read).
const PREPARED: u8 = 0x02;
/// First byte of a prepared entry as [`encode`] writes it: the JSON part as it is.
const PREPARED_PLAIN: u8 = 0x03;
/// The first bytes of a zstd frame.
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];
/// zstd level of unprepared entries (fast; they are deleted within seconds).
const LEVEL: i32 = 3;

/// Why stored bytes are not an entry: written by an incompatible version, or damaged.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// The bytes end inside a length-prefixed part.
    #[error("entry cut short")]
    CutShort,
    /// A compressed part does not decompress.
    #[error("cannot decompress: {0}")]
    Decompress(std::io::Error),
    /// The JSON is not an entry.
    #[error("{0}")]
    Json(#[from] serde_json::Error),
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
    /// carries its manifest only. Stored apart from the JSON (see the module's doc).
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
        // A bundle that is not the event's own is refused by the writer, with the whole event as evidence; one
        // the index would not write is left whole for the writer to say why.
        let prepared = (bundle.rid() == &rid)
            .then(|| PreparedBundle::of(&bundle).ok())
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

/// The bytes stored for `entry` (see the module's doc).
pub fn encode(entry: &InboxEntry) -> Vec<u8> {
    let Some(prepared) = &entry.prepared else {
        // Serialising our own types to JSON cannot fail.
        let json = serde_json::to_vec(entry).unwrap_or_default();
        // Past the bound a frame may expand to, the JSON is kept as it is (still read; see the module doc).
        if json.len() > crate::compression::MAX_OUTPUT {
            return json;
        }
        return zstd::stream::encode_all(json.as_slice(), LEVEL).unwrap_or(json);
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
    serde_json::to_writer(&mut json, &prepared.header()).unwrap_or_default();
    let held = prepared.held();
    let mut out = Vec::with_capacity(5 + json.len() + held.len());
    out.push(PREPARED_PLAIN);
    out.extend_from_slice(&(json.len() as u32).to_be_bytes());
    out.extend_from_slice(&json);
    out.extend_from_slice(held);
    out
}

/// The entry stored as `bytes`, in any of the forms the module's doc lists.
pub fn decode(bytes: &[u8]) -> Result<InboxEntry, RecordError> {
    if let Some((&mark @ (PREPARED | PREPARED_PLAIN), rest)) = bytes.split_first() {
        let (packed, held) = split_len(rest)?;
        let json = if mark == PREPARED {
            std::borrow::Cow::Owned(decompress(packed)?)
        } else {
            std::borrow::Cow::Borrowed(packed)
        };
        let (entry_json, header_json) = split_len(&json)?;
        let mut entry: InboxEntry = serde_json::from_slice(entry_json)?;
        let prepared =
            PreparedBundle::from_header(serde_json::from_slice(header_json)?, held.to_vec());
        entry.event.manifest = Some(prepared.manifest().clone());
        entry.prepared = Some(Box::new(prepared));
        return Ok(entry);
    }
    if bytes.starts_with(&ZSTD_MAGIC) {
        Ok(serde_json::from_slice(&decompress(bytes)?)?)
    } else {
        Ok(serde_json::from_slice(bytes)?)
    }
}

/// A part prefixed by its `u32` BE length, and what follows it.
fn split_len(bytes: &[u8]) -> Result<(&[u8], &[u8]), RecordError> {
    let (len, rest) = bytes
        .split_first_chunk::<4>()
        .ok_or(RecordError::CutShort)?;
    let len = u32::from_be_bytes(*len) as usize;
    if rest.len() < len {
        return Err(RecordError::CutShort);
    }
    Ok(rest.split_at(len))
}

/// A zstd frame's bytes, refusing to expand past [`crate::compression::MAX_OUTPUT`] whatever the frame claims.
fn decompress(frame: &[u8]) -> Result<Vec<u8>, RecordError> {
    crate::compression::decompress(frame).map_err(RecordError::Decompress)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::testing;

    fn rid(s: &str) -> Rid {
        Rid::parse(s).unwrap()
    }

    #[test]
    fn entries_written_before_the_hash_flag_existed_are_checked_when_processed() {
        let old = r#"{"source":"orn:koi-net.node:s+00","event":{"rid":"orn:github.event:a/b:1","event_type":"FORGET"}}"#;
        let entry = decode(old.as_bytes()).unwrap();
        assert!(!entry.hash_verified);
    }

    fn github_event(n: i64) -> Event {
        Event::from_bundle(EventType::New, testing::push(&n.to_string(), n))
    }

    #[test]
    fn a_checked_github_bundle_is_stored_prepared_and_read_back_whole() {
        let source = rid("orn:koi-net.node:s+00");
        let event = github_event(1);
        let entry = InboxEntry::new(source.clone(), event.clone(), true);
        let prepared = entry.prepared.as_ref().expect("prepared");
        assert_eq!(
            entry.event.contents, None,
            "the contents live in the prepared bundle"
        );
        assert_eq!(prepared.to_bundle().unwrap(), event.bundle().unwrap());
        let stored = encode(&entry);
        assert_eq!(stored[0], PREPARED_PLAIN);
        let back = decode(&stored).unwrap();
        assert_eq!(back, entry);
        assert_eq!(back.event.manifest, event.manifest);
        // The form the previous release wrote (the JSON part zstd-compressed) is still read.
        let (json, held) = split_len(&stored[1..]).unwrap();
        let packed = zstd::stream::encode_all(json, LEVEL).unwrap();
        let mut older = vec![PREPARED];
        older.extend_from_slice(&(packed.len() as u32).to_be_bytes());
        older.extend_from_slice(&packed);
        older.extend_from_slice(held);
        assert_eq!(decode(&older).unwrap(), entry);
        // A cut-short entry is an error, not a panic.
        for cut in [1, 5, 20, stored.len() / 2] {
            assert!(decode(&stored[..cut]).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn only_checked_github_bundles_of_the_event_itself_are_prepared() {
        let source = rid("orn:koi-net.node:s+00");
        let event = github_event(1);
        let unchecked = InboxEntry::new(source.clone(), event.clone(), false);
        assert!(unchecked.prepared.is_none());
        assert_eq!(unchecked.event, event);
        let mut other = event.clone();
        other.rid = github_event(2).rid;
        let mismatched = InboxEntry::new(source.clone(), other.clone(), true);
        assert!(mismatched.prepared.is_none());
        assert_eq!(
            mismatched.event, other,
            "left whole for the writer to refuse"
        );
        let forget = InboxEntry::new(source.clone(), Event::forget(event.rid.clone()), true);
        assert!(forget.prepared.is_none());
        // Unprepared entries keep the compressed JSON form.
        let stored = encode(&unchecked);
        assert!(stored.starts_with(&ZSTD_MAGIC));
        assert_eq!(decode(&stored).unwrap(), unchecked);
    }
}
