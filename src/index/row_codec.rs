//! How an event row is stored in `index.events`: a compact binary form instead of JSON (about 60 bytes less per
//! event: no key names, no quotes, numbers and the commit SHA as bytes).
//!
//! ```text
//! [MARK][flags: u8][time source: u8][version: u32 BE][stream number: u64 BE][received: i64 BE]
//! [event type][timestamp][commit SHA: 20 bytes, or text when flags & SHA_TEXT][summary][action][actor]
//! ```
//!
//! Each text is `[length: u16 BE][UTF-8]`; the SHA, action and actor are there only when flags say so, the stream
//! number and received time only when flags say so. JSON rows (schema 1 and later, before this form) start with
//! `{` and are still read by the caller.

use super::github::{EventRow, TimeSource};

/// First byte of a row in this form.
pub(crate) const MARK: u8 = 0x01;

const HAS_SEQ: u8 = 1;
const HAS_RECEIVED: u8 = 2;
const HAS_SHA: u8 = 4;
const SHA_TEXT: u8 = 8;
const HAS_ACTION: u8 = 16;
const HAS_ACTOR: u8 = 32;
const KNOWN_FLAGS: u8 = HAS_SEQ | HAS_RECEIVED | HAS_SHA | SHA_TEXT | HAS_ACTION | HAS_ACTOR;

/// What a row says of itself beyond the [`EventRow`]: its stream number, when it was received (µs), its version.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct RowMeta {
    pub q: Option<u64>,
    pub r: Option<i64>,
    pub v: u32,
}

/// The parts of a row that are stored (its RIDs are its key's). Its serde form reads the JSON rows written before
/// this codec: the short field names, and the full [`EventRow`] names that schema 1 and 2 wrote (aliases).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub(crate) struct StoredRow {
    #[serde(rename = "t", alias = "event_type")]
    pub event_type: String,
    #[serde(rename = "ts", alias = "timestamp")]
    pub timestamp: String,
    #[serde(rename = "src", alias = "time_source", default = "event_time")]
    pub time_source: TimeSource,
    #[serde(rename = "sha", alias = "commit_sha", default)]
    pub commit_sha: Option<String>,
    #[serde(rename = "s", alias = "summary")]
    pub summary: String,
    #[serde(rename = "a", alias = "action", default)]
    pub action: Option<String>,
    #[serde(rename = "u", alias = "actor", default)]
    pub actor: Option<String>,
}

impl StoredRow {
    /// The whole row, with the RIDs its key gives.
    pub(crate) fn into_row(self, event_rid: &str, repo_rid: &str) -> EventRow {
        EventRow {
            event_rid: event_rid.to_owned(),
            repo_rid: repo_rid.to_owned(),
            event_type: self.event_type,
            timestamp: self.timestamp,
            time_source: self.time_source,
            commit_sha: self.commit_sha,
            summary: self.summary,
            bundle_rid: event_rid.to_owned(),
            action: self.action,
            actor: self.actor,
        }
    }
}

/// Rows written before the time source was recorded took the event's own time.
fn event_time() -> TimeSource {
    TimeSource::Event
}

fn source_code(source: TimeSource) -> u8 {
    match source {
        TimeSource::Event => 0,
        TimeSource::Manifest => 1,
        TimeSource::Received => 2,
    }
}

/// A commit SHA as 20 bytes, when it is the 40 lowercase hex digits GitHub writes (anything else is kept as text).
fn raw_sha(sha: &str) -> Option<Vec<u8>> {
    (sha.len() == 40 && sha.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
        .then(|| hex::decode(sha).ok())
        .flatten()
}

/// The row in this form, or `None` when a text is longer than 65,535 bytes (the caller writes JSON then).
pub(crate) fn encode(row: &EventRow, meta: RowMeta) -> Option<Vec<u8>> {
    let raw_sha = row.commit_sha.as_deref().and_then(raw_sha);
    let mut flags = 0;
    for (present, flag) in [
        (meta.q.is_some(), HAS_SEQ),
        (meta.r.is_some(), HAS_RECEIVED),
        (row.commit_sha.is_some(), HAS_SHA),
        (row.commit_sha.is_some() && raw_sha.is_none(), SHA_TEXT),
        (row.action.is_some(), HAS_ACTION),
        (row.actor.is_some(), HAS_ACTOR),
    ] {
        if present {
            flags |= flag;
        }
    }
    let mut out = Vec::with_capacity(64 + row.summary.len());
    out.extend_from_slice(&[MARK, flags, source_code(row.time_source)]);
    out.extend_from_slice(&meta.v.to_be_bytes());
    if let Some(q) = meta.q {
        out.extend_from_slice(&q.to_be_bytes());
    }
    if let Some(r) = meta.r {
        out.extend_from_slice(&r.to_be_bytes());
    }
    let text = |out: &mut Vec<u8>, s: &str| -> Option<()> {
        out.extend_from_slice(&u16::try_from(s.len()).ok()?.to_be_bytes());
        out.extend_from_slice(s.as_bytes());
        Some(())
    };
    text(&mut out, &row.event_type)?;
    text(&mut out, &row.timestamp)?;
    match (&raw_sha, &row.commit_sha) {
        (Some(raw), _) => out.extend_from_slice(raw),
        (None, Some(sha)) => text(&mut out, sha)?,
        (None, None) => {}
    }
    text(&mut out, &row.summary)?;
    if let Some(action) = &row.action {
        text(&mut out, action)?;
    }
    if let Some(actor) = &row.actor {
        text(&mut out, actor)?;
    }
    Some(out)
}

/// Reads a row in this form; `None` when it is malformed.
struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = self.bytes.split_at_checked(n)?;
        self.bytes = rest;
        Some(head)
    }

    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }

    fn text(&mut self) -> Option<String> {
        let len = u16::from_be_bytes(self.array()?) as usize;
        String::from_utf8(self.take(len)?.to_vec()).ok()
    }
}

/// The stream number, received time and version of a row in this form (without reading its texts).
pub(crate) fn meta(bytes: &[u8]) -> Option<RowMeta> {
    let mut r = Reader { bytes };
    let [mark, flags, _source] = r.array()?;
    // Only what `encode` writes: no unknown flag, and a text SHA only beside the SHA flag.
    if mark != MARK || flags & !KNOWN_FLAGS != 0 || (flags & SHA_TEXT != 0 && flags & HAS_SHA == 0)
    {
        return None;
    }
    let v = u32::from_be_bytes(r.array()?);
    let q = if flags & HAS_SEQ != 0 {
        Some(u64::from_be_bytes(r.array()?))
    } else {
        None
    };
    let received = if flags & HAS_RECEIVED != 0 {
        Some(i64::from_be_bytes(r.array()?))
    } else {
        None
    };
    Some(RowMeta { q, r: received, v })
}

/// A row in this form.
pub(crate) fn decode(bytes: &[u8]) -> Option<(StoredRow, RowMeta)> {
    let meta = meta(bytes)?;
    let mut r = Reader { bytes };
    let [_, flags, source] = r.array()?;
    let fixed = 4 + 8 * usize::from(meta.q.is_some()) + 8 * usize::from(meta.r.is_some());
    r.take(fixed)?;
    let time_source = match source {
        0 => TimeSource::Event,
        1 => TimeSource::Manifest,
        2 => TimeSource::Received,
        _ => return None,
    };
    let event_type = r.text()?;
    let timestamp = r.text()?;
    let commit_sha = match (flags & HAS_SHA != 0, flags & SHA_TEXT != 0) {
        (false, _) => None,
        // A SHA `encode` would have written as 20 bytes is not a text one: the decoder reads one form per row.
        (true, true) => {
            let sha = r.text()?;
            if raw_sha(&sha).is_some() {
                return None;
            }
            Some(sha)
        }
        (true, false) => Some(hex::encode(r.take(20)?)),
    };
    let summary = r.text()?;
    let action = if flags & HAS_ACTION != 0 {
        Some(r.text()?)
    } else {
        None
    };
    let actor = if flags & HAS_ACTOR != 0 {
        Some(r.text()?)
    } else {
        None
    };
    if !r.bytes.is_empty() {
        return None;
    }
    Some((
        StoredRow {
            event_type,
            timestamp,
            time_source,
            commit_sha,
            summary,
            action,
            actor,
        },
        meta,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn row(stored: &StoredRow) -> EventRow {
        EventRow {
            event_rid: "orn:github.event:a/b:1".into(),
            repo_rid: "orn:github.repo:a/b".into(),
            event_type: stored.event_type.clone(),
            timestamp: stored.timestamp.clone(),
            time_source: stored.time_source,
            commit_sha: stored.commit_sha.clone(),
            summary: stored.summary.clone(),
            bundle_rid: "orn:github.event:a/b:1".into(),
            action: stored.action.clone(),
            actor: stored.actor.clone(),
        }
    }

    proptest! {
        #[test]
        fn every_row_reads_back_as_written(
            event_type in "[a-z_]{0,20}",
            timestamp in "[0-9TZ:.-]{0,30}",
            source in 0u8..3,
            sha in proptest::option::of(prop_oneof!["[0-9a-f]{40}", "[0-9a-fA-F]{0,45}", "\\PC{0,10}"]),
            summary in "\\PC{0,300}",
            action in proptest::option::of("\\PC{0,12}"),
            actor in proptest::option::of("\\PC{0,39}"),
            q in proptest::option::of(any::<u64>()),
            r in proptest::option::of(any::<i64>()),
            v in any::<u32>(),
        ) {
            let stored = StoredRow {
                event_type,
                timestamp,
                time_source: [TimeSource::Event, TimeSource::Manifest, TimeSource::Received][source as usize],
                commit_sha: sha,
                summary,
                action,
                actor,
            };
            let meta = RowMeta { q, r, v };
            let bytes = encode(&row(&stored), meta).unwrap();
            prop_assert_eq!(decode(&bytes), Some((stored, meta)));
            prop_assert_eq!(super::meta(&bytes), Some(meta));
            // Cut short: never a panic, never a wrong row.
            for cut in 0..bytes.len() {
                prop_assert_eq!(decode(&bytes[..cut]), None);
            }
        }
    }

    #[test]
    fn a_push_row_is_small() {
        let stored = StoredRow {
            event_type: "push".into(),
            timestamp: "2026-11-24T12:00:00Z".into(),
            time_source: TimeSource::Event,
            commit_sha: Some("7fd1a60b01f91b314f59955a4e4d4e80d8edf11d".into()),
            summary: "octocat pushed 1 commit to main: Update README.md".into(),
            action: None,
            actor: Some("octocat".into()),
        };
        let meta = RowMeta {
            q: Some(12_345),
            r: Some(1_764_000_000_000_000),
            v: 0,
        };
        let bytes = encode(&row(&stored), meta).unwrap();
        assert_eq!(bytes.len(), 3 + 4 + 8 + 8 + 6 + 22 + 20 + 51 + 9);
        assert_eq!(decode(&bytes), Some((stored, meta)));
    }
}
