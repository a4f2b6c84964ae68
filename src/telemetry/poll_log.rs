//! The poll log: the last poll attempts per neighbour (time, outcome, events, duration, error), like a check log,
//! kept in sled so it survives restarts and served by `GET /api/processor/github/polls?neighbour=&limit=`.
//!
//! It lives in the sled tree `telemetry.poll_log` of the daemon's one database. Keys are
//! `u32 BE length of neighbour ‖ neighbour ‖ u64 BE sequence`, so one neighbour's attempts are contiguous and in
//! order; each write removes what fell out of the window (normally exactly one key), so the log stays bounded
//! without ever scanning it. Writes are not flushed one by one: sled flushes on its own within half a second and the
//! daemon flushes on shutdown, and losing the last poll record in a crash is harmless.

use std::ops::Bound;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::TelemetryError;

/// Name of the sled tree holding the poll log.
pub const TREE: &str = "telemetry.poll_log";

/// Attempts kept per neighbour unless configured otherwise: at the default 5 s interval, the last ~8 minutes.
pub const DEFAULT_ATTEMPTS_PER_NEIGHBOUR: usize = 100;

/// One poll attempt, as stored and as served (JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PollAttempt {
    /// The polled neighbour's node RID.
    pub neighbour: String,
    /// When the attempt ended (UTC).
    pub time: DateTime<Utc>,
    /// `ok`, `error`, `timeout`, `unknown_node` or `bad_signature` (the `outcome` label of `polls_total`).
    pub outcome: String,
    /// Events received (0 for failures).
    pub events: usize,
    /// Round-trip time in milliseconds.
    pub duration_ms: u64,
    /// The failure's cause, as logged; `None` when it succeeded.
    pub error: Option<String>,
}

/// The bounded poll log. Clones share the tree and its write lock; open it once per database.
#[derive(Clone)]
pub struct PollLog {
    /// The `telemetry.poll_log` tree.
    tree: sled::Tree,
    /// Attempts kept per neighbour (at least 1).
    keep: u64,
    /// Serialises `record`, whose read-next-sequence-then-insert must not interleave for one neighbour.
    write: Arc<Mutex<()>>,
}

impl std::fmt::Debug for PollLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PollLog").field("keep", &self.keep).finish()
    }
}

/// `len(neighbour) ‖ neighbour`: the key prefix of one neighbour's attempts, unambiguous whatever the name holds.
fn prefix(neighbour: &str) -> Vec<u8> {
    let len = u32::try_from(neighbour.len()).unwrap_or(u32::MAX);
    let mut key = Vec::with_capacity(4 + neighbour.len() + 8);
    key.extend_from_slice(&len.to_be_bytes());
    key.extend_from_slice(neighbour.as_bytes());
    key
}

fn key(prefix: &[u8], seq: u64) -> Vec<u8> {
    let mut key = prefix.to_vec();
    key.extend_from_slice(&seq.to_be_bytes());
    key
}

/// The sequence number at the end of a key (0 for a key too short to hold one, which we never write).
fn seq_of(key: &[u8]) -> u64 {
    key.len()
        .checked_sub(8)
        .and_then(|start| key.get(start..))
        .and_then(|tail| <[u8; 8]>::try_from(tail).ok())
        .map(u64::from_be_bytes)
        .unwrap_or(0)
}

/// The neighbour prefix at the start of a key, if the key is well formed.
fn prefix_of(key: &[u8]) -> Option<&[u8]> {
    let len = u32::from_be_bytes(<[u8; 4]>::try_from(key.get(..4)?).ok()?) as usize;
    key.get(..4 + len)
}

impl PollLog {
    /// Opens (or creates) the poll log in `db`, keeping [`DEFAULT_ATTEMPTS_PER_NEIGHBOUR`] per neighbour.
    pub fn open(db: &sled::Db) -> Result<Self, TelemetryError> {
        Self::open_with_capacity(db, DEFAULT_ATTEMPTS_PER_NEIGHBOUR)
    }

    /// Opens (or creates) the poll log in `db`, keeping the last `per_neighbour` attempts (at least 1) of each
    /// neighbour. Lowering it trims each neighbour's older entries on its next write.
    pub fn open_with_capacity(db: &sled::Db, per_neighbour: usize) -> Result<Self, TelemetryError> {
        Ok(PollLog {
            tree: db.open_tree(TREE)?,
            keep: u64::try_from(per_neighbour.max(1)).unwrap_or(u64::MAX),
            write: Arc::new(Mutex::new(())),
        })
    }

    /// Appends an attempt and drops that neighbour's attempts beyond the window.
    pub fn record(&self, attempt: &PollAttempt) -> Result<(), TelemetryError> {
        let value = serde_json::to_vec(attempt)?;
        let prefix = prefix(&attempt.neighbour);
        let _guard = self
            .write
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let next = match self.tree.scan_prefix(&prefix).next_back() {
            Some(last) => seq_of(&last?.0).saturating_add(1),
            None => 0,
        };
        self.tree.insert(key(&prefix, next), value)?;
        // Keep sequences next+1-keep ..= next; everything below goes (normally the one key that just fell out).
        if let Some(cutoff) = (next + 1).checked_sub(self.keep).filter(|c| *c > 0) {
            let expired = self.tree.range(key(&prefix, 0)..key(&prefix, cutoff));
            for entry in expired {
                self.tree.remove(entry?.0)?;
            }
        }
        Ok(())
    }

    /// The newest attempts first: of `neighbour`, or of all neighbours merged by time when `None`. At most `limit`.
    /// Entries that no longer decode are skipped (and logged), so one bad entry never hides the rest.
    pub fn recent(
        &self,
        neighbour: Option<&str>,
        limit: usize,
    ) -> Result<Vec<PollAttempt>, TelemetryError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        match neighbour {
            Some(neighbour) => self.newest_of(&prefix(neighbour), limit),
            None => {
                let mut all = Vec::new();
                for prefix in self.prefixes()? {
                    all.extend(self.newest_of(&prefix, limit)?);
                }
                // Stable sort keeps each neighbour's own order for equal times.
                all.sort_by_key(|a| std::cmp::Reverse(a.time));
                all.truncate(limit);
                Ok(all)
            }
        }
    }

    /// The neighbours that have attempts in the log, in key order.
    pub fn neighbours(&self) -> Result<Vec<String>, TelemetryError> {
        Ok(self
            .prefixes()?
            .iter()
            .filter_map(|p| p.get(4..))
            .map(|name| String::from_utf8_lossy(name).into_owned())
            .collect())
    }

    fn newest_of(&self, prefix: &[u8], limit: usize) -> Result<Vec<PollAttempt>, TelemetryError> {
        let mut out = Vec::with_capacity(limit.min(self.keep as usize));
        for entry in self.tree.scan_prefix(prefix).rev() {
            if out.len() == limit {
                break;
            }
            let (key, value) = entry?;
            match serde_json::from_slice::<PollAttempt>(&value) {
                Ok(attempt) => out.push(attempt),
                Err(e) => tracing::warn!(
                    target: "koi_github_indexer::telemetry",
                    key = ?key, error = %e, "skipping an unreadable poll log entry"
                ),
            }
        }
        Ok(out)
    }

    /// One prefix per neighbour, found by seeking past each neighbour's keys: O(neighbours), not O(entries).
    fn prefixes(&self) -> Result<Vec<Vec<u8>>, TelemetryError> {
        let mut prefixes = Vec::new();
        let mut from = Bound::Unbounded;
        while let Some(entry) = self
            .tree
            .range::<Vec<u8>, _>((from, Bound::Unbounded))
            .next()
        {
            let (key, _) = entry?;
            let Some(prefix) = prefix_of(&key) else {
                // Not a key we write; step over it.
                from = Bound::Excluded(key.to_vec());
                continue;
            };
            from = Bound::Excluded(self::key(prefix, u64::MAX));
            prefixes.push(prefix.to_vec());
        }
        Ok(prefixes)
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn db() -> sled::Db {
        sled::Config::new()
            .temporary(true)
            .open()
            .expect("temporary sled")
    }

    fn attempt(neighbour: &str, second: i64, events: usize) -> PollAttempt {
        PollAttempt {
            neighbour: neighbour.to_owned(),
            time: Utc
                .timestamp_opt(1_700_000_000 + second, 0)
                .single()
                .expect("valid time"),
            outcome: if events.is_multiple_of(2) {
                "ok"
            } else {
                "timeout"
            }
            .to_owned(),
            events,
            duration_ms: 3,
            error: (events % 2 == 1).then(|| "timed out after 5s".to_owned()),
        }
    }

    #[test]
    fn keeps_the_last_n_per_neighbour_newest_first() {
        let db = db();
        let log = PollLog::open_with_capacity(&db, 5).unwrap();
        for i in 0..12 {
            log.record(&attempt("a", i, i as usize)).unwrap();
        }
        let recent = log.recent(Some("a"), 100).unwrap();
        let events: Vec<usize> = recent.iter().map(|a| a.events).collect();
        assert_eq!(events, vec![11, 10, 9, 8, 7]);
        assert_eq!(
            log.tree.len(),
            5,
            "older entries are removed, not just hidden"
        );
        assert_eq!(log.recent(Some("a"), 2).unwrap().len(), 2);
        assert!(log.recent(Some("a"), 0).unwrap().is_empty());
        assert!(log.recent(Some("nobody"), 10).unwrap().is_empty());
    }

    #[test]
    fn merges_neighbours_by_time_and_bounds_each() {
        let db = db();
        let log = PollLog::open_with_capacity(&db, 3).unwrap();
        // Interleaved in time; "a" is a prefix of "ab" as a string but not as a key.
        for i in 0..6 {
            log.record(&attempt("a", 2 * i, i as usize)).unwrap();
            log.record(&attempt("ab", 2 * i + 1, 100 + i as usize))
                .unwrap();
        }
        assert_eq!(
            log.neighbours().unwrap(),
            vec!["a".to_owned(), "ab".to_owned()]
        );
        let all = log.recent(None, 10).unwrap();
        let seen: Vec<(&str, usize)> = all
            .iter()
            .map(|a| (a.neighbour.as_str(), a.events))
            .collect();
        assert_eq!(
            seen,
            vec![
                ("ab", 105),
                ("a", 5),
                ("ab", 104),
                ("a", 4),
                ("ab", 103),
                ("a", 3)
            ]
        );
        assert_eq!(log.recent(None, 2).unwrap().len(), 2);
        assert_eq!(log.recent(Some("ab"), 10).unwrap().len(), 3);
    }

    #[test]
    fn survives_reopening_and_continues_the_sequence() {
        let db = db();
        {
            let log = PollLog::open_with_capacity(&db, 4).unwrap();
            for i in 0..3 {
                log.record(&attempt("a", i, i as usize)).unwrap();
            }
        }
        let log = PollLog::open_with_capacity(&db, 2).unwrap();
        log.record(&attempt("a", 10, 10)).unwrap();
        let events: Vec<usize> = log
            .recent(Some("a"), 10)
            .unwrap()
            .iter()
            .map(|a| a.events)
            .collect();
        assert_eq!(
            events,
            vec![10, 2],
            "a lower capacity trims on the next write"
        );
    }

    #[test]
    fn unreadable_entries_are_skipped() {
        let db = db();
        let log = PollLog::open(&db).unwrap();
        log.record(&attempt("a", 0, 0)).unwrap();
        log.tree
            .insert(key(&prefix("a"), 1), &b"not json"[..])
            .unwrap();
        log.record(&attempt("a", 2, 2)).unwrap();
        let events: Vec<usize> = log
            .recent(None, 10)
            .unwrap()
            .iter()
            .map(|a| a.events)
            .collect();
        assert_eq!(events, vec![2, 0]);
    }

    #[test]
    fn attempts_serialise_as_the_api_serves_them() {
        let json = serde_json::to_value(attempt("a", 0, 1)).unwrap();
        assert_eq!(json["neighbour"], "a");
        assert_eq!(json["outcome"], "timeout");
        assert_eq!(json["error"], "timed out after 5s");
        assert_eq!(json["duration_ms"], 3);
        assert!(
            json["time"]
                .as_str()
                .unwrap_or("")
                .starts_with("2023-11-14T22:13:20"),
            "{json}"
        );
    }
}
