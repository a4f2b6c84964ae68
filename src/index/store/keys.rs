//! Tree names, key layouts and the small byte codecs of keys: one place for how the keyspace is spelled.

use super::*;

/// Version of the keyspace below. Bump it (and add a migration in [`Index::open`]) when it changes.
///
/// * 0: bundles only (`index.rid_cache`).
/// * 1: rows and indexes; `index.by_commit` keys were `sha ␀ event_rid`.
/// * 2: `index.by_commit` keys are `sha ␀ time event_rid`, so commit queries page in time order inside the index.
/// * 3: `index.manifests` + `index.contents` became `index.bundles`, one value per RID with the contents compressed.
/// * 4: global lists, statistics counters and stream sequence numbers (issue 12).
/// * 5: index keys name the repository by a number (in its row) and the event by its stream number (20-byte keys).
pub const SCHEMA_VERSION: u32 = 5;

/// Tree names. All start with `index.`: the database is shared with the node's own trees.
pub(super) mod trees {
    pub const META: &str = "index.meta";
    pub const BUNDLES: &str = crate::index::held::TREE;
    /// Schema 2 and before kept manifests and contents apart; migrated into `BUNDLES` by [`super::Index::open`].
    pub const LEGACY_MANIFESTS: &str = "index.manifests";
    pub const LEGACY_CONTENTS: &str = "index.contents";
    pub const EVENTS: &str = "index.events";
    pub const REPOS: &str = "index.repos";
    pub const BY_REPO_TIME: &str = "index.by_repo_time";
    pub const BY_TYPE: &str = "index.by_type";
    pub const BY_COMMIT: &str = "index.by_commit";
    pub const REPO_COMMITS: &str = "index.repo_commits";
    /// Lists across repositories: all events, by actor, by type ([`super::feeds`]).
    pub const GLOBAL: &str = "index.global";
    /// Statistics counters ([`super::feeds`]).
    pub const STATS: &str = "index.stats";
    /// Stream sequence number → event RID ([`super::feeds`]).
    pub const STREAM: &str = "index.stream";
    /// The RID cache of the first, row-less index (schema 0); migrated by [`super::Index::open`].
    pub const LEGACY_RID_CACHE: &str = "index.rid_cache";
    /// Versions an UPDATE replaced: `event_rid ␀ version (u32 BE)` → received time (i64 BE µs) + held value.
    pub const HISTORY: &str = "index.history";
}

pub(super) const SCHEMA_KEY: &[u8] = b"schema_version";
pub(super) const EVENTS_COUNT: &[u8] = b"count:events";
pub(super) const REPOS_COUNT: &[u8] = b"count:repos";
pub(super) const TYPE_COUNT_PREFIX: &[u8] = b"type:";
/// The last stream sequence number given to an event.
pub(super) const SEQ_KEY: &[u8] = b"seq:last";
/// The last repository number given.
pub(super) const REPO_ID_KEY: &[u8] = b"repo_id:last";
/// Events removed per transaction by [`Index::prune_older_than`].
pub(super) const PRUNE_CHUNK: usize = 256;

/// `event_rid ␀ version`: where `index.history` keeps a replaced version.
pub(super) fn history_key(rid: &[u8], version: u32) -> Vec<u8> {
    [rid, &[SEP], &version.to_be_bytes()].concat()
}

/// A replaced version as `index.history` keeps it: received time, then the held value ([`held`]).
pub(super) fn encode_version(received: Option<i64>, held_value: &[u8]) -> Vec<u8> {
    [&received.unwrap_or(i64::MIN).to_be_bytes(), held_value].concat()
}

/// [`encode_version`] read back: the received time (`None` when unknown) and the held value.
pub(super) fn decode_version<'v>(
    key: &[u8],
    value: &'v [u8],
) -> Result<(Option<i64>, &'v [u8]), IndexError> {
    let (time, held_value) = value
        .split_at_checked(8)
        .ok_or_else(|| IndexError::Corrupt {
            tree: trees::HISTORY,
            key: printable(key),
            problem: "a version shorter than its 8-byte time".into(),
        })?;
    let micros = i64::from_be_bytes(time.try_into().unwrap_or([0; 8]));
    Ok(((micros != i64::MIN).then_some(micros), held_value))
}

pub(super) fn decode_u64(tree: &'static str, key: &[u8], bytes: &[u8]) -> Result<u64, IndexError> {
    <[u8; 8]>::try_from(bytes)
        .map(u64::from_be_bytes)
        .map_err(|_| IndexError::Corrupt {
            tree,
            key: printable(key),
            problem: format!("expected an 8-byte counter, found {} bytes", bytes.len()),
        })
}

/// 8 bytes that sort newest first: order-preserving map of i64 to u64, inverted.
pub(super) fn time_key(micros: i64) -> [u8; 8] {
    (!((micros as u64) ^ (1 << 63))).to_be_bytes()
}

pub(super) fn time_from_key(bytes: &[u8]) -> Option<i64> {
    let bytes = <[u8; 8]>::try_from(bytes.get(..8)?).ok()?;
    Some(((!u64::from_be_bytes(bytes)) ^ (1 << 63)) as i64)
}

/// The first key after `key` (for resuming a scan after it).
pub(super) fn after_key(key: &[u8]) -> Vec<u8> {
    [key, &[0]].concat()
}

/// `part ␀ part ␀ …`
pub(super) fn key_prefix(parts: &[&str]) -> Vec<u8> {
    let mut key = Vec::with_capacity(parts.iter().map(|p| p.len() + 1).sum::<usize>() + 48);
    for part in parts {
        key.extend_from_slice(part.as_bytes());
        key.push(SEP);
    }
    key
}

/// The first key after every key starting with `prefix` (which ends in [`SEP`]).
pub(super) fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    if let Some(last) = end.last_mut() {
        *last += 1;
    }
    end
}

pub(super) fn type_count_key(event_type: &str) -> Vec<u8> {
    [TYPE_COUNT_PREFIX, event_type.as_bytes()].concat()
}

/// The index entries of one event row.
pub(super) struct Entries {
    pub(super) by_repo_time: Vec<u8>,
    pub(super) by_type: Vec<u8>,
    /// `(by_commit key, repo_commits key, sha)`
    pub(super) commit: Option<(Vec<u8>, Vec<u8>, String)>,
    pub(super) type_count: Vec<u8>,
    /// Keys in `index.global`.
    pub(super) global: Vec<Vec<u8>>,
    /// Counters in `index.stats`.
    pub(super) stats: Vec<Vec<u8>>,
}

impl Entries {
    /// The entries of `row`, whose stream number is `seq`, in the repository numbered `repo`. Index keys name the
    /// event by its stream number and the repository by its number (schema 5): a 20-byte key instead of about 100,
    /// which sled keeps inline, without an allocation of its own.
    pub(super) fn of(row: &EventRow, seq: u64, repo: u32) -> Result<Entries, IndexError> {
        let micros = row_micros(row)?;
        let time = time_key(micros);
        let event = seq.to_be_bytes();
        let repo = repo.to_be_bytes();
        let in_repo = [repo.as_slice(), &time, &event].concat();
        Ok(Entries {
            by_type: [row.event_type.as_bytes(), &[SEP], &in_repo].concat(),
            commit: row.commit_sha.as_ref().map(|sha| {
                (
                    [sha.as_bytes(), &[SEP], &time, &event].concat(),
                    in_repo.clone(),
                    sha.clone(),
                )
            }),
            by_repo_time: in_repo,
            type_count: type_count_key(&row.event_type),
            global: feeds::global_keys(row, time, event),
            stats: feeds::stat_keys(row, micros),
        })
    }
}
