//! The publish log: what the JetStream sink ([`crate::sink`]) has to publish, in the order the index changed.
//!
//! The stream numbers (`index.stream`) order events by their *first* indexing, and an UPDATE keeps its number, so
//! they cannot tell a sink that a new version exists. With a sink configured (`IndexOptions::sink_log`), every
//! write of an event — new, or a newer version — appends one entry here, **in the transaction that writes it**:
//!
//! | tree | key | value |
//! |---|---|---|
//! | `index.sink_log` | log number (u64 BE, from 1, never reused) | version (u32 BE) then the event RID |
//! | `index.meta` | `sink:last` | the last log number given |
//! | | `sink:cursor` | the last log number the sink has published (PubAck received), and all before it |
//! | | `sink:logged_seq` | the last stream number with an entry: events indexed while no sink was configured get theirs when one is |
//!
//! The sink reads entries after the cursor, publishes them, and moves the cursor, removing what it passed: the log
//! holds only what is not published yet.

use super::*;

pub(super) const LOG_TREE: &str = "index.sink_log";
const LAST_KEY: &[u8] = b"sink:last";
const CURSOR_KEY: &[u8] = b"sink:cursor";
const LOGGED_SEQ_KEY: &[u8] = b"sink:logged_seq";
const ERROR_KEY: &[u8] = b"sink:last_error";
/// Events logged per transaction when a sink is configured on a store that has events already.
const BACKFILL_CHUNK: usize = 1024;

/// One entry of the publish log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkEntry {
    /// Its log number.
    pub number: u64,
    /// The event.
    pub rid: String,
    /// The version written (0 for the first).
    pub version: u32,
}

/// The sink's state for `/status`: its cursor, how far behind it is, and its last error while it fails.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SinkStatus {
    /// The last publish-log entry acknowledged.
    pub cursor: u64,
    /// Entries not yet published.
    pub lag: u64,
    /// Why it cannot publish, while it cannot; `null` when it works.
    pub last_error: Option<String>,
}

/// What the sink publishes for a [`SinkEntry`] whose version is still the event's current one.
#[derive(Debug, Clone)]
pub struct SinkItem {
    /// The row, as `/events` gives it.
    pub row: EventRow,
    /// The event's stream number.
    pub seq: u64,
    /// Its version (0 for the first; more is an UPDATE).
    pub version: u32,
    /// The manifest's `sha256_hash`.
    pub sha256_hash: String,
    /// The contents, when asked for and kept.
    pub contents: Option<Contents>,
}

fn entry_value(version: u32, rid: &[u8]) -> Vec<u8> {
    [&version.to_be_bytes()[..], rid].concat()
}

fn read_u64(meta: &Tree, key: &'static [u8]) -> Result<u64, IndexError> {
    match meta.get(key)? {
        Some(bytes) => decode_u64(trees::META, key, &bytes),
        None => Ok(0),
    }
}

impl Tx<'_> {
    /// Appends `rid` at `version` to the publish log, and notes its stream number as logged.
    pub(super) fn log_for_sink(&self, rid: &[u8], version: u32, seq: u64) -> TxResult<()> {
        let last = match self.meta.get(LAST_KEY)? {
            Some(bytes) => decode_u64(trees::META, LAST_KEY, &bytes).map_err(abort)?,
            None => 0,
        };
        self.meta.insert(LAST_KEY, &(last + 1).to_be_bytes())?;
        self.sink_log
            .insert(&(last + 1).to_be_bytes(), entry_value(version, rid))?;
        let logged = match self.meta.get(LOGGED_SEQ_KEY)? {
            Some(bytes) => decode_u64(trees::META, LOGGED_SEQ_KEY, &bytes).map_err(abort)?,
            None => 0,
        };
        if seq > logged {
            self.meta.insert(LOGGED_SEQ_KEY, &seq.to_be_bytes())?;
        }
        Ok(())
    }
}

impl Index {
    /// Logs every event indexed while no sink was configured (its current version), oldest first: the first
    /// start with a sink publishes the whole index, and a restart after running without one publishes what came
    /// meanwhile. (An UPDATE made while no sink was configured is not logged: its event was logged already.)
    pub(super) fn log_unlogged_events(&self) -> Result<u64, IndexError> {
        let mut logged = 0;
        loop {
            let after = read_u64(&self.meta, LOGGED_SEQ_KEY)?;
            let batch = self.stream_keys_after(after, BACKFILL_CHUNK)?;
            if batch.is_empty() {
                return Ok(logged);
            }
            self.transaction(|tx| {
                for (seq, rid) in &batch {
                    let version = match tx.events.get(rid)? {
                        Some(bytes) => stored_meta(rid, &bytes).map_err(abort)?.v,
                        None => continue,
                    };
                    tx.log_for_sink(rid, version, *seq)?;
                }
                // Numbers whose events are gone are passed too.
                if let Some((seq, _)) = batch.last() {
                    tx.meta.insert(LOGGED_SEQ_KEY, &seq.to_be_bytes())?;
                }
                Ok(())
            })?;
            logged += batch.len() as u64;
        }
    }

    fn stream_keys_after(&self, after: u64, limit: usize) -> Result<Vec<(u64, IVec)>, IndexError> {
        let Some(first) = after.checked_add(1) else {
            return Ok(Vec::new());
        };
        self.stream
            .range(first.to_be_bytes()..)
            .take(limit)
            .map(|entry| {
                let (key, rid) = entry?;
                Ok((decode_u64(trees::STREAM, &key, &key)?, rid))
            })
            .collect()
    }

    /// The sink's cursor: every entry up to it is published.
    pub fn sink_cursor(&self) -> Result<u64, IndexError> {
        read_u64(&self.meta, CURSOR_KEY)
    }

    /// The last log number given (the cursor equals it when the sink is caught up).
    pub fn sink_last(&self) -> Result<u64, IndexError> {
        read_u64(&self.meta, LAST_KEY)
    }

    /// Up to `limit` entries after `after`, in order.
    pub fn sink_entries_after(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<Vec<SinkEntry>, IndexError> {
        let Some(first) = after.checked_add(1) else {
            return Ok(Vec::new());
        };
        self.sink_log
            .range(first.to_be_bytes()..)
            .take(limit)
            .map(|entry| {
                let (key, value) = entry?;
                let number = decode_u64(LOG_TREE, &key, &key)?;
                let corrupt = || IndexError::Corrupt {
                    tree: LOG_TREE,
                    key: printable(&key),
                    problem: "not a version and an event RID".into(),
                };
                let (version, rid) = value.split_first_chunk::<4>().ok_or_else(corrupt)?;
                Ok(SinkEntry {
                    number,
                    rid: String::from_utf8(rid.to_vec()).map_err(|_| corrupt())?,
                    version: u32::from_be_bytes(*version),
                })
            })
            .collect()
    }

    /// What to publish for `entry`; `None` when there is nothing to (the event was forgotten or pruned, or a newer
    /// version replaced this one: a later entry publishes that).
    pub fn sink_item(
        &self,
        entry: &SinkEntry,
        with_contents: bool,
    ) -> Result<Option<SinkItem>, IndexError> {
        let key = entry.rid.as_bytes();
        let Some((row_bytes, held_value)) = self.row_and_held(key)? else {
            return Ok(None);
        };
        let meta = stored_meta(key, &row_bytes)?;
        if meta.v != entry.version {
            return Ok(None);
        }
        let row = decode_row(key, &row_bytes)?;
        let (manifest, contents) = if with_contents {
            held::decode(key, &held_value)?
        } else {
            (held::manifest(key, &held_value)?, None)
        };
        Ok(Some(SinkItem {
            row,
            seq: stream_number(key, &meta)?,
            version: meta.v,
            sha256_hash: manifest.sha256_hash,
            contents,
        }))
    }

    /// Moves the cursor to `number` (everything up to it is published) and drops those entries.
    pub fn advance_sink_cursor(&self, number: u64) -> Result<(), IndexError> {
        self.meta.insert(CURSOR_KEY, &number.to_be_bytes())?;
        let mut batch = sled::Batch::default();
        for key in self.sink_log.range(..=number.to_be_bytes()).keys() {
            batch.remove(key?);
        }
        self.sink_log.apply_batch(batch)?;
        Ok(())
    }

    /// The sink's state; `None` when no sink is configured.
    pub fn sink_status(&self) -> Result<Option<SinkStatus>, IndexError> {
        if !self.sink_enabled {
            return Ok(None);
        }
        let cursor = self.sink_cursor()?;
        Ok(Some(SinkStatus {
            cursor,
            lag: self.sink_last()?.saturating_sub(cursor),
            last_error: self
                .meta
                .get(ERROR_KEY)?
                .map(|text| String::from_utf8_lossy(&text).into_owned()),
        }))
    }

    /// Notes why the sink cannot publish (`None`: it can again). Kept in the store so that `/status` and the CLI
    /// see it.
    pub fn set_sink_error(&self, error: Option<&str>) -> Result<(), IndexError> {
        match error {
            Some(text) => self.meta.insert(ERROR_KEY, text.as_bytes())?,
            None => self.meta.remove(ERROR_KEY)?,
        };
        Ok(())
    }

    /// The signal bumped after each commit that logged entries: the sink waits on it.
    pub fn sink_signal(&self) -> tokio::sync::watch::Receiver<u64> {
        self.sink_logged.subscribe()
    }
}
