//! What the index keeps for the views across repositories: the global lists (all events, by actor, by
//! type, newest first), the statistics counters, and the stream's sequence numbers.
//!
//! Each event row files these keys beside its per-repository ones ([`super::store`]'s `Entries`): written and
//! removed in the same transaction as the row, so the lists and the counters stay exact under UPDATE (old keys
//! out, new ones in), FORGET and retention pruning.
//!
//! `index.global` (values empty; `time` sorts newest first; `seq` is the event's stream number, u64 BE, which
//! `index.stream` turns into its RID):
//! - `T ␀ time seq` — every event
//! - `a ␀ actor ␀ time seq` — by actor
//! - `y ␀ event_type ␀ time seq` — by type
//!
//! `index.stats` (u64 BE counters; `day` is u32 BE, days since 1970-01-01 UTC, by the event's own time; a counter
//! at zero is removed):
//! - `d day type` — events per day and type
//! - `r day repo` — per day and repository (`owner/name`)
//! - `u day actor` — per day and actor
//! - `R repo ␀ day type` and `U repo ␀ day actor` — the same within one repository
//!
//! `index.stream`: sequence number (u64 BE, assigned when an event is first indexed, never reused) → event RID.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use super::github::EventRow;
use super::IndexError;

/// Separates the text parts of index keys. RIDs cannot contain it; event types, SHAs and actors are checked not to.
pub(super) const SEP: u8 = 0;

const MICROS_PER_DAY: i64 = 86_400_000_000;

/// Days since 1970-01-01 UTC of a time in µs (times before 1970 are not indexed: they fall back, see `TimeSource`).
pub fn day_of(micros: i64) -> u32 {
    u32::try_from(micros.div_euclid(MICROS_PER_DAY).max(0)).unwrap_or(u32::MAX)
}

/// `YYYY-MM-DD` of a day number.
pub fn day_text(day: u32) -> String {
    chrono::DateTime::from_timestamp(i64::from(day) * 86_400, 0)
        .map(|t| t.format("%Y-%m-%d").to_string())
        .unwrap_or_default()
}

/// The day number of `YYYY-MM-DD`.
pub fn parse_day(text: &str) -> Option<u32> {
    let date = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()?;
    let epoch = chrono::NaiveDate::from_ymd_opt(1970, 1, 1)?;
    u32::try_from((date - epoch).num_days()).ok()
}

/// `owner/name` of a repository RID.
pub(super) fn full_name(repo_rid: &str) -> &str {
    repo_rid
        .strip_prefix("orn:github.repo:")
        .unwrap_or(repo_rid)
}

/// A text may be part of a key only without the separator.
fn keyable(text: &str) -> bool {
    !text.as_bytes().contains(&SEP)
}

/// The keys one row files in `index.global`.
pub(super) fn global_keys(row: &EventRow, time: [u8; 8], seq: [u8; 8]) -> Vec<Vec<u8>> {
    let mut keys = vec![[b"T\0".as_slice(), &time, &seq].concat()];
    if let Some(actor) = row.actor.as_deref().filter(|a| keyable(a)) {
        keys.push([b"a\0", actor.as_bytes(), &[SEP], &time, &seq].concat());
    }
    keys.push([b"y\0", row.event_type.as_bytes(), &[SEP], &time, &seq].concat());
    keys
}

/// The counters one row adds one to in `index.stats`.
pub(super) fn stat_keys(row: &EventRow, micros: i64) -> Vec<Vec<u8>> {
    let day = day_of(micros).to_be_bytes();
    let repo = full_name(&row.repo_rid).as_bytes();
    let kind = row.event_type.as_bytes();
    let mut keys = vec![
        [b"d".as_slice(), &day, kind].concat(),
        [b"r".as_slice(), &day, repo].concat(),
        [b"R".as_slice(), repo, &[SEP], &day, kind].concat(),
    ];
    if let Some(actor) = row.actor.as_deref().filter(|a| keyable(a)) {
        keys.push([b"u".as_slice(), &day, actor.as_bytes()].concat());
        keys.push([b"U".as_slice(), repo, &[SEP], &day, actor.as_bytes()].concat());
    }
    keys
}

/// `/stats`: counts over whole UTC days.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    /// Events in the range.
    pub total: u64,
    /// Per event type.
    pub by_type: BTreeMap<String, u64>,
    /// Per repository (`owner/name`).
    pub by_repo: BTreeMap<String, u64>,
    /// Per day with events, oldest first.
    pub by_day: Vec<DayStats>,
    /// The most active actors, most first (ties by name).
    pub top_actors: Vec<ActorCount>,
    /// The most active repositories, most first (ties by name).
    pub top_repos: Vec<RepoCount>,
}

/// One day of [`Stats`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DayStats {
    /// `YYYY-MM-DD` (UTC).
    pub day: String,
    /// Events that day.
    pub total: u64,
    /// Per event type.
    pub by_type: BTreeMap<String, u64>,
}

/// An actor and its event count.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct ActorCount {
    /// GitHub login.
    pub actor: String,
    /// Events.
    pub count: u64,
}

/// A repository and its event count.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct RepoCount {
    /// `owner/name`.
    pub repo: String,
    /// Events.
    pub count: u64,
}

/// Which counts `/stats` sums.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatsQuery {
    /// First day, inclusive.
    pub since: Option<u32>,
    /// Last day, inclusive.
    pub until: Option<u32>,
    /// One repository (`owner/name`).
    pub repo: Option<String>,
    /// Length of the top lists.
    pub top: usize,
}

fn counter(tree: &'static str, key: &[u8], value: &[u8]) -> Result<u64, IndexError> {
    <[u8; 8]>::try_from(value)
        .map(u64::from_be_bytes)
        .map_err(|_| IndexError::Corrupt {
            tree,
            key: key.escape_ascii().to_string(),
            problem: format!("expected an 8-byte counter, found {} bytes", value.len()),
        })
}

/// Sums the counters of `index.stats` for `query` (reads counters, never rows).
pub(super) fn stats(tree: &sled::Tree, query: &StatsQuery) -> Result<Stats, IndexError> {
    const NAME: &str = "index.stats";
    let since = query.since.unwrap_or(0);
    let until = query.until.unwrap_or(u32::MAX);
    let mut out = Stats::default();
    if since > until {
        return Ok(out);
    }
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    // Walks `prefix day rest` for days in range, giving (day, rest, count).
    let days = |prefix: &[u8], f: &mut dyn FnMut(u32, &[u8], u64)| -> Result<(), IndexError> {
        let start = [prefix, &since.to_be_bytes()].concat();
        let end = match until.checked_add(1) {
            Some(next) => [prefix, &next.to_be_bytes()].concat(),
            None => {
                let mut end = prefix.to_vec();
                if let Some(last) = end.last_mut() {
                    *last += 1;
                }
                end
            }
        };
        for entry in tree.range(start..end) {
            let (key, value) = entry?;
            let rest = &key[prefix.len()..];
            let Some(day) = rest.get(..4).and_then(|d| <[u8; 4]>::try_from(d).ok()) else {
                continue;
            };
            f(
                u32::from_be_bytes(day),
                &rest[4..],
                counter(NAME, &key, &value)?,
            );
        }
        Ok(())
    };
    let mut by_day: BTreeMap<u32, DayStats> = BTreeMap::new();
    let mut actors: HashMap<String, u64> = HashMap::new();
    let mut per_type = |day: u32, kind: &[u8], n: u64| {
        let entry = by_day.entry(day).or_insert_with(|| DayStats {
            day: day_text(day),
            ..DayStats::default()
        });
        entry.total += n;
        *entry.by_type.entry(text(kind)).or_default() += n;
    };
    match &query.repo {
        Some(repo) => {
            let scoped = |tag: u8| [&[tag], repo.as_bytes(), &[SEP]].concat();
            days(&scoped(b'R'), &mut per_type)?;
            days(&scoped(b'U'), &mut |_, actor, n| {
                *actors.entry(text(actor)).or_default() += n
            })?;
        }
        None => {
            days(b"d", &mut per_type)?;
            days(b"r", &mut |_, repo, n| {
                *out.by_repo.entry(text(repo)).or_default() += n
            })?;
            days(b"u", &mut |_, actor, n| {
                *actors.entry(text(actor)).or_default() += n
            })?;
        }
    }
    for day in by_day.values() {
        out.total += day.total;
        for (kind, n) in &day.by_type {
            *out.by_type.entry(kind.clone()).or_default() += n;
        }
    }
    if let Some(repo) = &query.repo {
        if out.total > 0 {
            out.by_repo.insert(repo.clone(), out.total);
        }
    }
    out.by_day = by_day.into_values().collect();
    let mut actors: Vec<ActorCount> = actors
        .into_iter()
        .map(|(actor, count)| ActorCount { actor, count })
        .collect();
    actors.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.actor.cmp(&b.actor)));
    actors.truncate(query.top);
    out.top_actors = actors;
    let mut repos: Vec<RepoCount> = out
        .by_repo
        .iter()
        .map(|(repo, &count)| RepoCount {
            repo: repo.clone(),
            count,
        })
        .collect();
    repos.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.repo.cmp(&b.repo)));
    repos.truncate(query.top);
    out.top_repos = repos;
    Ok(out)
}

/// Deterministic sampling: whether the event `rid` is in a sample of about `rate` of all events (the same events
/// for every client with the same rate).
pub fn sampled(rid: &str, rate: f64) -> bool {
    if rate >= 1.0 {
        return true;
    }
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(rid.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    (u64::from_be_bytes(first) as f64) < rate * (u64::MAX as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_round_trip_and_sort() {
        assert_eq!(parse_day("1970-01-01"), Some(0));
        assert_eq!(day_text(parse_day("2026-11-20").unwrap()), "2026-11-20");
        assert_eq!(day_of(MICROS_PER_DAY - 1), 0);
        assert_eq!(day_of(MICROS_PER_DAY), 1);
        assert_eq!(parse_day("2026-02-30"), None);
        assert_eq!(parse_day("yesterday"), None);
    }

    #[test]
    fn sampling_is_deterministic_and_about_the_rate() {
        let rids: Vec<String> = (0..10_000)
            .map(|i| format!("orn:github.event:o/r:{i}"))
            .collect();
        let a: Vec<bool> = rids.iter().map(|r| sampled(r, 0.1)).collect();
        let b: Vec<bool> = rids.iter().map(|r| sampled(r, 0.1)).collect();
        assert_eq!(a, b);
        let n = a.iter().filter(|x| **x).count();
        assert!((800..1200).contains(&n), "{n}");
        assert!(rids.iter().all(|r| sampled(r, 1.0)));
    }
}
