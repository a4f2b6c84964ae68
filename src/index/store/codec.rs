//! Rows and repository records as stored: their compact encodings, and decoding with errors that name the key.

use super::*;

/// What is stored per repository.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct RepoRecord {
    pub(super) repo_rid: String,
    pub(super) first_indexed: String,
    pub(super) last_updated: String,
    pub(super) event_count: u64,
    #[serde(default)]
    pub(super) details: RepoDetails,
    /// Time (µs) of the source the details came from: an older source does not overwrite a newer one.
    #[serde(default)]
    pub(super) details_at: Option<i64>,
    /// Added by hand (`add-repo`), so it may be removed by hand (`remove-repo`) while it has no events.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub(super) manual: bool,
    /// Its number in index keys (schema 5; given on first write, or by the upgrade).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) id: Option<u32>,
}

pub(super) type TxResult<T> = Result<T, ConflictableTransactionError<IndexError>>;

pub(super) fn abort(e: IndexError) -> ConflictableTransactionError<IndexError> {
    ConflictableTransactionError::Abort(e)
}

/// A key for messages: text as is, other bytes (separators, times) escaped.
pub(super) fn printable(key: &[u8]) -> String {
    key.escape_ascii().to_string()
}

pub(super) fn decode<T: DeserializeOwned>(
    tree: &'static str,
    key: &[u8],
    bytes: &[u8],
) -> Result<T, IndexError> {
    serde_json::from_slice(bytes).map_err(|e| IndexError::Corrupt {
        tree,
        key: printable(key),
        problem: format!("cannot decode the entry: {e}"),
    })
}

/// A row as stored: short keys, and without the three RIDs, which its key (the event RID) gives.
#[derive(Serialize)]
pub(super) struct StoredRowOut<'a> {
    pub(super) t: &'a str,
    pub(super) ts: &'a str,
    #[serde(skip_serializing_if = "is_event_time")]
    pub(super) src: crate::index::TimeSource,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) sha: Option<&'a str>,
    pub(super) s: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) a: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) u: Option<&'a str>,
    /// The stream sequence number.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) q: Option<u64>,
    /// When this version was received (µs since the epoch).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) r: Option<i64>,
    /// Version number: 0 for the first, one more per UPDATE (the key of the replaced one in `index.history`).
    #[serde(skip_serializing_if = "is_zero")]
    pub(super) v: u32,
}

pub(super) fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// What a stored row says of itself beyond the [`EventRow`].
#[derive(Debug, Clone, Copy, Default, Deserialize)]
pub(in crate::index) struct StoredMeta {
    /// Stream sequence number (`None` for rows written before schema 4 and not migrated yet).
    #[serde(default)]
    pub(super) q: Option<u64>,
    /// Received (µs); `None` for rows written before it was kept.
    #[serde(default)]
    pub(super) r: Option<i64>,
    /// Version number.
    #[serde(default)]
    pub(super) v: u32,
}

pub(super) fn is_event_time(source: &crate::index::TimeSource) -> bool {
    *source == crate::index::TimeSource::Event
}

/// A row as stored: the compact form ([`row_codec`]), or JSON for a row with a text too long for it.
pub(super) fn encode_row(row: &EventRow, meta: StoredMeta) -> Result<Vec<u8>, IndexError> {
    let compact = row_codec::encode(
        row,
        row_codec::RowMeta {
            q: meta.q,
            r: meta.r,
            v: meta.v,
        },
    );
    match compact {
        Some(bytes) => Ok(bytes),
        None => encode_row_json(row, meta),
    }
}

/// A row as JSON with short keys: what schema 4 wrote, and the form for a row with a text too long for
/// [`row_codec`].
pub(in crate::index) fn encode_row_json(
    row: &EventRow,
    meta: StoredMeta,
) -> Result<Vec<u8>, IndexError> {
    Ok(serde_json::to_vec(&StoredRowOut {
        t: &row.event_type,
        ts: &row.timestamp,
        src: row.time_source,
        sha: row.commit_sha.as_deref(),
        s: &row.summary,
        a: row.action.as_deref(),
        u: row.actor.as_deref(),
        q: meta.q,
        r: meta.r,
        v: meta.v,
    })?)
}

/// A row's stream number, which its index entries name it by (every row has one from schema 4 on).
pub(super) fn stream_number(key: &[u8], meta: &StoredMeta) -> Result<u64, IndexError> {
    meta.q.ok_or_else(|| IndexError::Corrupt {
        tree: trees::EVENTS,
        key: printable(key),
        problem: "the row has no stream number".into(),
    })
}

/// The sequence number, received time and version of a stored row.
pub(in crate::index) fn stored_meta(key: &[u8], bytes: &[u8]) -> Result<StoredMeta, IndexError> {
    if bytes.first() == Some(&row_codec::MARK) {
        return row_codec::meta(bytes)
            .map(|m| StoredMeta {
                q: m.q,
                r: m.r,
                v: m.v,
            })
            .ok_or_else(|| IndexError::Corrupt {
                tree: trees::EVENTS,
                key: printable(key),
                problem: "the row is cut short or malformed".into(),
            });
    }
    decode::<StoredMeta>(trees::EVENTS, key, bytes)
}

/// RFC 3339 UTC with microseconds, of µs since the epoch.
pub(super) fn micros_text(micros: i64) -> String {
    chrono::DateTime::from_timestamp_micros(micros)
        .map(|t| t.to_rfc3339_opts(SecondsFormat::Micros, true))
        .unwrap_or_default()
}

/// The row stored under `key` (an event RID).
pub(in crate::index) fn decode_row(key: &[u8], bytes: &[u8]) -> Result<EventRow, IndexError> {
    let corrupt = |problem: String| IndexError::Corrupt {
        tree: trees::EVENTS,
        key: printable(key),
        problem,
    };
    let stored = if bytes.first() == Some(&row_codec::MARK) {
        row_codec::decode(bytes)
            .ok_or_else(|| corrupt("the row is cut short or malformed".into()))?
            .0
    } else {
        decode::<row_codec::StoredRow>(trees::EVENTS, key, bytes)?
    };
    let rid = std::str::from_utf8(key).map_err(|e| corrupt(format!("key is not UTF-8: {e}")))?;
    let event = Rid::parse(rid)
        .and_then(|r| GithubEventRid::from_rid(&r))
        .map_err(|e| corrupt(e.to_string()))?;
    Ok(stored.into_row(rid, event.repo_rid().rid().as_str()))
}

pub(super) fn now_text() -> String {
    Timestamp::now()
        .to_utc()
        .to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// The microsecond time an event row is filed under.
pub(super) fn row_micros(row: &EventRow) -> Result<i64, IndexError> {
    Timestamp::parse(&row.timestamp)
        .map(|t| t.unix_micros())
        .map_err(|e| IndexError::Corrupt {
            tree: trees::EVENTS,
            key: row.event_rid.clone(),
            problem: e.to_string(),
        })
}
