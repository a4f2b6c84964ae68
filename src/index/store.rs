//! The sled keyspace behind [`Index`] (described in the [module doc](super)): writes in one transaction per
//! bundle, reads as prefix and range scans.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::SecondsFormat;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sled::transaction::{ConflictableTransactionError, Transactional, TransactionalTree};
use sled::{IVec, Tree};

use super::deliveries::{self, ActionFilter, Deliveries};
use super::error::IndexError;
use super::export;
use super::feeds::{self, Stats, StatsQuery, SEP};
use super::github::{
    parse_event, parse_repo_bundle, repo_details_from_event, EventRow, RepoDetails,
};
use super::held;
use super::live::{LiveBatch, LiveFeed};
use super::row_codec;
use super::ApplyOutcome;
use crate::protocol::{
    Bundle, Contents, Freshness, GithubEventRid, GithubRepoRid, HashScheme, Manifest, Rid, RidType,
    Timestamp,
};

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
mod trees {
    pub const META: &str = "index.meta";
    pub const BUNDLES: &str = super::super::held::TREE;
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

const SCHEMA_KEY: &[u8] = b"schema_version";
const EVENTS_COUNT: &[u8] = b"count:events";
const REPOS_COUNT: &[u8] = b"count:repos";
const TYPE_COUNT_PREFIX: &[u8] = b"type:";
/// The last stream sequence number given to an event.
const SEQ_KEY: &[u8] = b"seq:last";
/// The last repository number given.
const REPO_ID_KEY: &[u8] = b"repo_id:last";
/// Events removed per transaction by [`Index::prune_older_than`].
const PRUNE_CHUNK: usize = 256;

/// A bundle parsed and serialised, ready to be written inside a transaction (which may run its closure more than
/// once, so nothing costly happens in it).
enum Prepared<'a> {
    /// Not written: not an indexed type, or a malformed RID.
    Done(ApplyOutcome),
    /// An `orn:github.event` or `orn:github.repo` bundle to write, prepared elsewhere.
    Borrowed(&'a PreparedBundle),
    /// The same, prepared here.
    Owned(Box<PreparedBundle>),
}

/// A GitHub bundle made into what the index writes for it: the held value (manifest and compressed contents), the
/// repository details it tells, and for an event its row. Making it is the costly part of indexing (parsing the
/// contents, serialising and compressing them), so the node does it once, where the event is received, beside the
/// single writer rather than on it ([`crate::node::inbox`] keeps it in this form); the writer then only writes.
#[derive(Debug, Clone, PartialEq)]
pub struct PreparedBundle {
    rid: Rid,
    manifest: Manifest,
    /// The held value ([`held`]), with the contents unless they were left out.
    held: Vec<u8>,
    /// Repository details the bundle tells, and the time they are from.
    details: RepoDetails,
    at: i64,
    /// For an event: its row. `None` for a repository bundle.
    row: Option<EventRow>,
    /// When this node received it (µs), if not when it is written: an import keeps the source's time.
    received: Option<i64>,
}

/// [`PreparedBundle`]'s fields but the held value, as [`PreparedBundle::encode`] writes them.
#[derive(Serialize, Deserialize)]
struct PreparedHeader {
    rid: Rid,
    manifest: Manifest,
    #[serde(default, skip_serializing_if = "RepoDetails::is_empty")]
    details: RepoDetails,
    at: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    row: Option<EventRow>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    received: Option<i64>,
}

impl PreparedBundle {
    /// Makes `bundle` ready to be written, contents included. `None` when the index would not write it (not an
    /// indexed type, a malformed RID, contents that make no row): such a bundle is left to
    /// [`Index::apply_bundles`], which says why.
    pub fn of(bundle: &Bundle) -> Option<PreparedBundle> {
        match Prepared::try_of(bundle, None, true) {
            Ok(Prepared::Owned(prepared)) => Some(*prepared),
            _ => None,
        }
    }

    /// The RID of its bundle.
    pub fn rid(&self) -> &Rid {
        &self.rid
    }

    /// Its bundle again (decompressing and parsing the contents): for the rare paths that need it whole, such
    /// as a dead letter.
    pub fn to_bundle(&self) -> Result<Bundle, IndexError> {
        let key = self.rid.as_str().as_bytes();
        let (manifest, contents) = held::decode(key, &self.held)?;
        Ok(Bundle {
            manifest,
            contents: contents.unwrap_or_default(),
        })
    }

    /// Everything but the held value, as JSON (stored apart by [`crate::node::inbox`]).
    pub fn header_json(&self) -> Vec<u8> {
        let header = PreparedHeader {
            rid: self.rid.clone(),
            manifest: self.manifest.clone(),
            details: self.details.clone(),
            at: self.at,
            row: self.row.clone(),
            received: self.received,
        };
        // Serialising our own types to JSON cannot fail.
        serde_json::to_vec(&header).unwrap_or_default()
    }

    /// The held value: the manifest and the compressed contents ([`held`]).
    pub fn held(&self) -> &[u8] {
        &self.held
    }

    /// Put together again from [`PreparedBundle::header_json`] and [`PreparedBundle::held`].
    pub fn from_parts(
        header_json: &[u8],
        held: Vec<u8>,
    ) -> Result<PreparedBundle, serde_json::Error> {
        let header: PreparedHeader = serde_json::from_slice(header_json)?;
        Ok(PreparedBundle {
            rid: header.rid,
            manifest: header.manifest,
            held,
            details: header.details,
            at: header.at,
            row: header.row,
            received: header.received,
        })
    }

    /// Its manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }
}

/// A bundle for [`Index::apply`]: prepared where it was received, or as received.
#[derive(Debug, Clone)]
pub enum Ingest {
    /// Made ready by [`PreparedBundle::of`].
    Prepared(Box<PreparedBundle>),
    /// Not prepared (yet): [`Index::apply`] prepares it.
    Bundle(Box<Bundle>),
}

impl Ingest {
    /// Its RID.
    pub fn rid(&self) -> &Rid {
        match self {
            Ingest::Prepared(p) => p.rid(),
            Ingest::Bundle(b) => b.rid(),
        }
    }
}

impl<'a> Prepared<'a> {
    /// Parses and serialises `bundle`. Never fails: a bundle that cannot be made into a row is
    /// [`ApplyOutcome::Invalid`] with the reason, and costs no other bundle of its batch anything.
    fn of(bundle: &Bundle, received: Option<i64>, keep_contents: bool) -> Prepared<'a> {
        Prepared::try_of(bundle, received, keep_contents)
            .unwrap_or_else(|e| Prepared::Done(ApplyOutcome::Invalid(e.to_string())))
    }

    /// What to write for an [`Ingest`]: a prepared bundle as it is (without its contents if the store keeps
    /// none), a bundle prepared now.
    fn of_ingest(item: &'a Ingest, keep_contents: bool) -> Prepared<'a> {
        match item {
            Ingest::Prepared(p) if keep_contents => Prepared::Borrowed(p),
            Ingest::Prepared(p) => {
                let key = p.rid.as_str().as_bytes();
                match held::without_contents(key, &p.held) {
                    Ok(stripped) => {
                        let mut owned = PreparedBundle::clone(p);
                        if let Some(stripped) = stripped {
                            owned.held = stripped;
                        }
                        Prepared::Owned(Box::new(owned))
                    }
                    Err(e) => Prepared::Done(ApplyOutcome::Invalid(e.to_string())),
                }
            }
            Ingest::Bundle(b) => Prepared::of(b, None, keep_contents),
        }
    }

    fn try_of(
        bundle: &Bundle,
        received: Option<i64>,
        keep_contents: bool,
    ) -> Result<Prepared<'a>, IndexError> {
        let rid = bundle.rid();
        let (details, at, row) = if rid.is_type(RidType::GITHUB_EVENT) {
            let event = match GithubEventRid::from_rid(rid) {
                Ok(event) => event,
                Err(e) => return Ok(Prepared::Done(ApplyOutcome::BadRid(e.to_string()))),
            };
            let row = parse_event(&event, &bundle.manifest.timestamp, &bundle.contents);
            // Checked here, so that writing cannot fail on it: it is all `Entries::of` can fail on.
            let at = row_micros(&row)?;
            (
                repo_details_from_event(&event.full_name(), &bundle.contents),
                at,
                Some(row),
            )
        } else if rid.is_type(RidType::GITHUB_REPO) {
            if let Err(e) = GithubRepoRid::from_rid(rid) {
                return Ok(Prepared::Done(ApplyOutcome::BadRid(e.to_string())));
            }
            let (details, time) = parse_repo_bundle(&bundle.contents);
            let at = time.unwrap_or(bundle.manifest.timestamp).unix_micros();
            (details, at, None)
        } else {
            return Ok(Prepared::Done(ApplyOutcome::Ignored));
        };
        Ok(Prepared::Owned(Box::new(PreparedBundle {
            rid: rid.clone(),
            manifest: bundle.manifest.clone(),
            held: held::encode_manifest(
                &bundle.manifest,
                keep_contents
                    .then(|| serde_json::to_vec(&bundle.contents))
                    .transpose()?
                    .as_deref(),
            )?,
            details,
            at,
            row,
            received,
        })))
    }
}

/// The index over one shared sled database. Cheap to clone (it holds tree handles).
#[derive(Clone)]
pub struct Index {
    /// Schema version and counters (`count:events`, `count:repos`, `type:<event_type>`).
    meta: Tree,
    /// RID → manifest JSON of the bundle held (the dedupe state; kept as a tombstone when retention prunes).
    bundles: Tree,
    /// Whether bundle contents are kept (`index.keep_contents`); rows and manifests always are.
    keep_contents: bool,
    /// event RID → [`EventRow`] JSON.
    events: Tree,
    /// repo RID → repository record JSON.
    repos: Tree,
    /// `repo time seq` → empty: a repository's events, newest first. `repo` is the repository's number (u32 BE,
    /// in its row), `time` sorts newest first, `seq` is the event's stream number (u64 BE; `stream` gives its RID).
    by_repo_time: Tree,
    /// `type ␀ repo time seq` → empty: a repository's events of one type, newest first.
    by_type: Tree,
    /// `sha ␀ time seq` → empty: events about a commit.
    by_commit: Tree,
    /// `repo time seq` → SHA: a repository's events that name a commit, newest first.
    repo_commits: Tree,
    /// Lists across repositories ([`feeds`]).
    global: Tree,
    /// Statistics counters ([`feeds`]).
    stats: Tree,
    /// Stream sequence number → event RID.
    stream: Tree,
    /// Versions replaced by UPDATEs (`index.history`).
    history_tree: Tree,
    /// Versions of an event kept, the current one included (`index.history`, at least 1).
    history: u32,
    /// The outbound webhook queue ([`deliveries`]).
    deliveries: Deliveries,
    /// Which new events are queued for which action.
    actions: Arc<[ActionFilter]>,
    /// Bumped after a commit that queued deliveries: the senders wait on it.
    queued: Arc<tokio::sync::watch::Sender<u64>>,
    /// Newly indexed events, to the stream's listeners.
    live: Arc<LiveFeed>,
}

/// A repository as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Repository {
    /// `orn:github.repo:<owner>/<name>`.
    pub repo_rid: String,
    /// `<owner>/<name>`.
    pub full_name: String,
    /// Web address (from the bundles, else `https://github.com/<owner>/<name>`).
    pub repo_url: String,
    /// When this node first indexed anything of it (RFC 3339 UTC).
    pub first_indexed: String,
    /// When this node last changed anything of it.
    pub last_updated: String,
    /// The commit of its newest event that names one.
    pub latest_commit_sha: Option<String>,
    /// Events indexed.
    pub event_count: u64,
    /// From the bundles, when known.
    pub description: Option<String>,
    /// From the bundles, when known.
    pub default_branch: Option<String>,
    /// From the bundles, when known.
    pub stars: Option<u64>,
    /// From the bundles, when known.
    pub forks: Option<u64>,
    /// From the bundles, when known.
    pub license: Option<String>,
}

/// One event with the bundle it was made from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventDetails {
    /// The row.
    #[serde(flatten)]
    pub row: EventRow,
    /// The bundle held in the RID cache (its contents `null` when not kept).
    pub bundle: HeldBundle,
    /// Whether the contents are kept (`index.keep_contents`, and not pruned).
    pub contents_kept: bool,
    /// How the manifest's hash was made from the contents: `rfc8785`, or `legacy` for a bundle made by a node
    /// on rid-lib before 3.2.7; `null` when the contents are not kept (nothing to tell it from).
    #[serde(default)]
    pub hash_scheme: Option<HashScheme>,
}

/// Any bundle the node holds, event or repository, as `GET /bundles/{rid}` gives it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BundleDetails {
    /// The bundle's RID.
    pub rid: String,
    /// Its manifest, exactly as received.
    pub manifest: Manifest,
    /// Its contents; `null` when not kept (`index.keep_contents = false`, or pruned by retention).
    pub contents: Option<Contents>,
    /// Whether the contents are kept.
    pub contents_kept: bool,
    /// As in [`EventDetails::hash_scheme`].
    pub hash_scheme: Option<HashScheme>,
}

/// Which scheme the held manifest's hash follows, when the contents are there to tell.
fn held_hash_scheme(manifest: &Manifest, contents: Option<&Contents>) -> Option<HashScheme> {
    crate::protocol::knowledge::hash_scheme(contents?, &manifest.sha256_hash).ok()
}

/// A held bundle: the manifest always, the contents when kept.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeldBundle {
    /// Identity, time and hash of the contents.
    pub manifest: Manifest,
    /// The contents, as received; `None` when `index.keep_contents = false`.
    pub contents: Option<Contents>,
}

/// How the index keeps what it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexOptions {
    /// Keep each bundle's contents (compressed) beside its row and manifest (`index.keep_contents`).
    pub keep_contents: bool,
    /// Versions of an event kept, the current one included (`index.history`; 1 keeps no older version).
    pub history: u32,
    /// The actions new events are queued for (`[[action]]`).
    pub actions: Vec<ActionFilter>,
}

/// Versions kept per event when `index.history` is not set.
pub const DEFAULT_HISTORY: u32 = 10;

impl Default for IndexOptions {
    fn default() -> Self {
        IndexOptions {
            keep_contents: true,
            history: DEFAULT_HISTORY,
            actions: Vec::new(),
        }
    }
}

/// One version of an event (`GET /events/{rid}/history`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventVersion {
    /// The manifest's timestamp.
    pub timestamp: Timestamp,
    /// The manifest's hash of the contents.
    pub sha256_hash: String,
    /// When this node received this version (RFC 3339 UTC, µs); `null` for versions stored before it was kept.
    pub received_at: Option<String>,
    /// The contents, when kept.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub contents: Option<Contents>,
}

/// Totals for `/status` and `summary`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// Event rows.
    pub events: u64,
    /// Repository rows.
    pub repositories: u64,
    /// Event rows per `event_type`.
    pub by_type: BTreeMap<String, u64>,
}

/// Which events of a repository to list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventQuery {
    /// Page size.
    pub limit: usize,
    /// Events skipped (newest first).
    pub offset: usize,
    /// Only this `event_type`.
    pub event_type: Option<String>,
    /// Only events at or after this time.
    pub since: Option<Timestamp>,
    /// Only events at or before this time.
    pub until: Option<Timestamp>,
}

impl Default for EventQuery {
    fn default() -> Self {
        EventQuery {
            limit: 50,
            offset: 0,
            event_type: None,
            since: None,
            until: None,
        }
    }
}

/// Which events across repositories to list (`GET /events`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GlobalQuery {
    /// Page size.
    pub limit: usize,
    /// Events skipped (newest first).
    pub offset: usize,
    /// Only events by this actor (GitHub login, exact).
    pub actor: Option<String>,
    /// Only this `event_type`.
    pub event_type: Option<String>,
    /// Only this repository.
    pub repo: Option<GithubRepoRid>,
    /// Only events at or after this time.
    pub since: Option<Timestamp>,
    /// Only events at or before this time.
    pub until: Option<Timestamp>,
}

impl Default for GlobalQuery {
    fn default() -> Self {
        GlobalQuery {
            limit: 50,
            offset: 0,
            actor: None,
            event_type: None,
            repo: None,
            since: None,
            until: None,
        }
    }
}

/// What is stored per repository.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct RepoRecord {
    repo_rid: String,
    first_indexed: String,
    last_updated: String,
    event_count: u64,
    #[serde(default)]
    details: RepoDetails,
    /// Time (µs) of the source the details came from: an older source does not overwrite a newer one.
    #[serde(default)]
    details_at: Option<i64>,
    /// Added by hand (`add-repo`), so it may be removed by hand (`remove-repo`) while it has no events.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    manual: bool,
    /// Its number in index keys (schema 5; given on first write, or by the upgrade).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    id: Option<u32>,
}

type TxResult<T> = Result<T, ConflictableTransactionError<IndexError>>;

fn abort(e: IndexError) -> ConflictableTransactionError<IndexError> {
    ConflictableTransactionError::Abort(e)
}

/// A key for messages: text as is, other bytes (separators, times) escaped.
fn printable(key: &[u8]) -> String {
    key.escape_ascii().to_string()
}

fn decode<T: DeserializeOwned>(
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
struct StoredRowOut<'a> {
    t: &'a str,
    ts: &'a str,
    #[serde(skip_serializing_if = "is_event_time")]
    src: super::TimeSource,
    #[serde(skip_serializing_if = "Option::is_none")]
    sha: Option<&'a str>,
    s: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    a: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    u: Option<&'a str>,
    /// The stream sequence number.
    #[serde(skip_serializing_if = "Option::is_none")]
    q: Option<u64>,
    /// When this version was received (µs since the epoch).
    #[serde(skip_serializing_if = "Option::is_none")]
    r: Option<i64>,
    /// Version number: 0 for the first, one more per UPDATE (the key of the replaced one in `index.history`).
    #[serde(skip_serializing_if = "is_zero")]
    v: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// What a stored row says of itself beyond the [`EventRow`].
#[derive(Debug, Clone, Copy, Default, Deserialize)]
pub(super) struct StoredMeta {
    /// Stream sequence number (`None` for rows written before schema 4 and not migrated yet).
    #[serde(default)]
    q: Option<u64>,
    /// Received (µs); `None` for rows written before it was kept.
    #[serde(default)]
    r: Option<i64>,
    /// Version number.
    #[serde(default)]
    v: u32,
}

fn is_event_time(source: &super::TimeSource) -> bool {
    *source == super::TimeSource::Event
}

/// A row as stored: the compact form ([`row_codec`]), or JSON for a row with a text too long for it.
fn encode_row(row: &EventRow, meta: StoredMeta) -> Result<Vec<u8>, IndexError> {
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
pub(super) fn encode_row_json(row: &EventRow, meta: StoredMeta) -> Result<Vec<u8>, IndexError> {
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
fn stream_number(key: &[u8], meta: &StoredMeta) -> Result<u64, IndexError> {
    meta.q.ok_or_else(|| IndexError::Corrupt {
        tree: trees::EVENTS,
        key: printable(key),
        problem: "the row has no stream number".into(),
    })
}

/// The sequence number, received time and version of a stored row.
pub(super) fn stored_meta(key: &[u8], bytes: &[u8]) -> Result<StoredMeta, IndexError> {
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

/// `event_rid ␀ version`: where `index.history` keeps a replaced version.
fn history_key(rid: &[u8], version: u32) -> Vec<u8> {
    [rid, &[SEP], &version.to_be_bytes()].concat()
}

/// A replaced version as `index.history` keeps it: received time, then the held value ([`held`]).
fn encode_version(received: Option<i64>, held_value: &[u8]) -> Vec<u8> {
    [&received.unwrap_or(i64::MIN).to_be_bytes(), held_value].concat()
}

/// [`encode_version`] read back: the received time (`None` when unknown) and the held value.
fn decode_version<'v>(key: &[u8], value: &'v [u8]) -> Result<(Option<i64>, &'v [u8]), IndexError> {
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

/// RFC 3339 UTC with microseconds, of µs since the epoch.
fn micros_text(micros: i64) -> String {
    chrono::DateTime::from_timestamp_micros(micros)
        .map(|t| t.to_rfc3339_opts(SecondsFormat::Micros, true))
        .unwrap_or_default()
}

/// The row stored under `key` (an event RID).
pub(super) fn decode_row(key: &[u8], bytes: &[u8]) -> Result<EventRow, IndexError> {
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
    Ok(EventRow {
        event_rid: rid.to_owned(),
        repo_rid: event.repo_rid().rid().to_string(),
        event_type: stored.event_type,
        timestamp: stored.timestamp,
        time_source: stored.time_source,
        commit_sha: stored.commit_sha,
        summary: stored.summary,
        bundle_rid: rid.to_owned(),
        action: stored.action,
        actor: stored.actor,
    })
}

fn decode_u64(tree: &'static str, key: &[u8], bytes: &[u8]) -> Result<u64, IndexError> {
    <[u8; 8]>::try_from(bytes)
        .map(u64::from_be_bytes)
        .map_err(|_| IndexError::Corrupt {
            tree,
            key: printable(key),
            problem: format!("expected an 8-byte counter, found {} bytes", bytes.len()),
        })
}

/// 8 bytes that sort newest first: order-preserving map of i64 to u64, inverted.
fn time_key(micros: i64) -> [u8; 8] {
    (!((micros as u64) ^ (1 << 63))).to_be_bytes()
}

fn time_from_key(bytes: &[u8]) -> Option<i64> {
    let bytes = <[u8; 8]>::try_from(bytes.get(..8)?).ok()?;
    Some(((!u64::from_be_bytes(bytes)) ^ (1 << 63)) as i64)
}

/// The first key after `key` (for resuming a scan after it).
fn after_key(key: &[u8]) -> Vec<u8> {
    [key, &[0]].concat()
}

/// `part ␀ part ␀ …`
fn key_prefix(parts: &[&str]) -> Vec<u8> {
    let mut key = Vec::with_capacity(parts.iter().map(|p| p.len() + 1).sum::<usize>() + 48);
    for part in parts {
        key.extend_from_slice(part.as_bytes());
        key.push(SEP);
    }
    key
}

/// The first key after every key starting with `prefix` (which ends in [`SEP`]).
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    if let Some(last) = end.last_mut() {
        *last += 1;
    }
    end
}

fn type_count_key(event_type: &str) -> Vec<u8> {
    [TYPE_COUNT_PREFIX, event_type.as_bytes()].concat()
}

fn now_text() -> String {
    Timestamp::now()
        .to_utc()
        .to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// The microsecond time an event row is filed under.
fn row_micros(row: &EventRow) -> Result<i64, IndexError> {
    Timestamp::parse(&row.timestamp)
        .map(|t| t.unix_micros())
        .map_err(|e| IndexError::Corrupt {
            tree: trees::EVENTS,
            key: row.event_rid.clone(),
            problem: e.to_string(),
        })
}

/// The index entries of one event row.
struct Entries {
    by_repo_time: Vec<u8>,
    by_type: Vec<u8>,
    /// `(by_commit key, repo_commits key, sha)`
    commit: Option<(Vec<u8>, Vec<u8>, String)>,
    type_count: Vec<u8>,
    /// Keys in `index.global`.
    global: Vec<Vec<u8>>,
    /// Counters in `index.stats`.
    stats: Vec<Vec<u8>>,
}

impl Entries {
    /// The entries of `row`, whose stream number is `seq`, in the repository numbered `repo`. Index keys name the
    /// event by its stream number and the repository by its number (schema 5): a 20-byte key instead of about 100,
    /// which sled keeps inline, without an allocation of its own.
    fn of(row: &EventRow, seq: u64, repo: u32) -> Result<Entries, IndexError> {
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

/// The trees inside one transaction.
struct Tx<'a> {
    meta: &'a TransactionalTree,
    bundles: &'a TransactionalTree,
    events: &'a TransactionalTree,
    repos: &'a TransactionalTree,
    by_repo_time: &'a TransactionalTree,
    by_type: &'a TransactionalTree,
    by_commit: &'a TransactionalTree,
    repo_commits: &'a TransactionalTree,
    global: &'a TransactionalTree,
    stats: &'a TransactionalTree,
    stream: &'a TransactionalTree,
    history: &'a TransactionalTree,
    actions: &'a TransactionalTree,
}

/// What every write of one commit shares.
struct WriteContext<'a> {
    /// RFC 3339, seconds: repository rows' times.
    now: &'a str,
    /// Now, µs: an event's received time unless the bundle brings one.
    now_micros: i64,
    /// Now, RFC 3339 ms: deliveries' `created_at`.
    now_ms: &'a str,
    /// Versions kept per event.
    history: u32,
    /// Actions to queue new events for (empty for an import).
    actions: &'a [ActionFilter],
}

impl Tx<'_> {
    fn get<T: DeserializeOwned>(
        tree: &TransactionalTree,
        name: &'static str,
        key: &[u8],
    ) -> TxResult<Option<T>> {
        match tree.get(key)? {
            Some(bytes) => decode(name, key, &bytes).map(Some).map_err(abort),
            None => Ok(None),
        }
    }

    /// Adds `delta` to a counter in `index.meta`; a counter at zero is removed.
    fn add(&self, key: &[u8], delta: i64) -> TxResult<()> {
        Tx::add_in(self.meta, trees::META, key, delta)
    }

    /// Adds `delta` to a u64 counter of `tree`; a counter at zero is removed.
    fn add_in(
        tree: &TransactionalTree,
        name: &'static str,
        key: &[u8],
        delta: i64,
    ) -> TxResult<()> {
        let old = match tree.get(key)? {
            Some(bytes) => decode_u64(name, key, &bytes).map_err(abort)?,
            None => 0,
        };
        match old.saturating_add_signed(delta) {
            0 => tree.remove(key).map(drop)?,
            n => tree.insert(key, &n.to_be_bytes()).map(drop)?,
        }
        Ok(())
    }

    /// The next stream sequence number.
    fn next_seq(&self) -> TxResult<u64> {
        let last = match self.meta.get(SEQ_KEY)? {
            Some(bytes) => decode_u64(trees::META, SEQ_KEY, &bytes).map_err(abort)?,
            None => 0,
        };
        let next = last + 1;
        self.meta.insert(SEQ_KEY, &next.to_be_bytes())?;
        Ok(next)
    }

    /// `Some(outcome)` when the bundle must not be written ([`Manifest::freshness`]: same hash as held, or older).
    fn dedupe(&self, rid: &Rid, manifest: &Manifest) -> TxResult<Option<ApplyOutcome>> {
        let key = rid.as_str().as_bytes();
        let held = match self.bundles.get(key)? {
            Some(value) => Some(held::manifest(key, &value).map_err(abort)?),
            None => None,
        };
        Ok(match manifest.freshness(held.as_ref()) {
            Freshness::Unchanged => Some(ApplyOutcome::Unchanged),
            Freshness::Stale => Some(ApplyOutcome::Stale),
            Freshness::Newer => None,
        })
    }

    fn insert_entries(&self, e: &Entries) -> TxResult<()> {
        self.by_repo_time.insert(e.by_repo_time.as_slice(), &[])?;
        self.by_type.insert(e.by_type.as_slice(), &[])?;
        if let Some((by_commit, repo_commit, sha)) = &e.commit {
            self.by_commit.insert(by_commit.as_slice(), &[])?;
            self.repo_commits
                .insert(repo_commit.as_slice(), sha.as_bytes())?;
        }
        for key in &e.global {
            self.global.insert(key.as_slice(), &[])?;
        }
        for key in &e.stats {
            Tx::add_in(self.stats, trees::STATS, key, 1)?;
        }
        self.add(&e.type_count, 1)
    }

    fn remove_entries(&self, e: &Entries) -> TxResult<()> {
        self.by_repo_time.remove(e.by_repo_time.as_slice())?;
        self.by_type.remove(e.by_type.as_slice())?;
        if let Some((by_commit, repo_commit, _)) = &e.commit {
            self.by_commit.remove(by_commit.as_slice())?;
            self.repo_commits.remove(repo_commit.as_slice())?;
        }
        for key in &e.global {
            self.global.remove(key.as_slice())?;
        }
        for key in &e.stats {
            Tx::add_in(self.stats, trees::STATS, key, -1)?;
        }
        self.add(&e.type_count, -1)
    }

    /// Creates the repository row if needed, adds `events` to its count, and takes `details` unless the ones held
    /// come from a newer source.
    fn touch_repo(
        &self,
        repo_rid: &str,
        now: &str,
        events: i64,
        details: Option<(&RepoDetails, i64)>,
    ) -> TxResult<u32> {
        let mut record = match Tx::get::<RepoRecord>(self.repos, trees::REPOS, repo_rid.as_bytes())?
        {
            Some(record) => record,
            None => {
                self.add(REPOS_COUNT, 1)?;
                RepoRecord {
                    repo_rid: repo_rid.to_owned(),
                    first_indexed: now.to_owned(),
                    last_updated: now.to_owned(),
                    event_count: 0,
                    details: RepoDetails::default(),
                    details_at: None,
                    manual: false,
                    id: None,
                }
            }
        };
        let id = match record.id {
            Some(id) => id,
            None => {
                let id = self.next_repo_id()?;
                record.id = Some(id);
                id
            }
        };
        record.event_count = record.event_count.saturating_add_signed(events);
        now.clone_into(&mut record.last_updated);
        if let Some((details, at)) = details {
            if !details.is_empty() && record.details_at.is_none_or(|held| at >= held) {
                record.details.merge(details.clone());
                record.details_at = Some(at);
            }
        }
        let bytes = serde_json::to_vec(&record).map_err(|e| abort(e.into()))?;
        self.repos.insert(repo_rid.as_bytes(), bytes)?;
        Ok(id)
    }

    /// The next repository number (they start at 1 and are never reused).
    fn next_repo_id(&self) -> TxResult<u32> {
        let last = match self.meta.get(REPO_ID_KEY)? {
            Some(bytes) => decode_u64(trees::META, REPO_ID_KEY, &bytes).map_err(abort)?,
            None => 0,
        };
        let next = u32::try_from(last + 1).map_err(|_| {
            abort(IndexError::Corrupt {
                tree: trees::META,
                key: printable(REPO_ID_KEY),
                problem: "more than 4 billion repositories".into(),
            })
        })?;
        self.meta
            .insert(REPO_ID_KEY, &u64::from(next).to_be_bytes())?;
        Ok(next)
    }

    /// Writes one prepared bundle (see [`Index::apply_bundles`]), unless the store already holds it or a newer one.
    fn write(&self, prepared: &Prepared<'_>, ctx: &WriteContext<'_>) -> TxResult<ApplyOutcome> {
        let w = match prepared {
            Prepared::Done(outcome) => return Ok(outcome.clone()),
            Prepared::Borrowed(w) => *w,
            Prepared::Owned(w) => &**w,
        };
        if let Some(outcome) = self.dedupe(&w.rid, &w.manifest)? {
            return Ok(outcome);
        }
        let key = w.rid.as_str().as_bytes();
        let old_held = self.bundles.insert(key, w.held.as_slice())?;
        let details = Some((&w.details, w.at));
        match &w.row {
            Some(row) => {
                let old = self.events.get(key)?;
                let repo =
                    self.touch_repo(&row.repo_rid, ctx.now, i64::from(old.is_none()), details)?;
                let received = Some(w.received.unwrap_or(ctx.now_micros));
                // A new event gets the next stream sequence number; an UPDATE keeps its own (it is not streamed
                // again) and files the version it replaces in the history.
                let meta = match &old {
                    Some(bytes) => {
                        let old_row = decode_row(key, bytes).map_err(abort)?;
                        let old_meta = stored_meta(key, bytes).map_err(abort)?;
                        let old_seq = stream_number(key, &old_meta).map_err(abort)?;
                        self.remove_entries(&Entries::of(&old_row, old_seq, repo).map_err(abort)?)?;
                        if let (Some(old_value), true) = (&old_held, ctx.history > 1) {
                            self.history.insert(
                                history_key(key, old_meta.v),
                                encode_version(old_meta.r, old_value),
                            )?;
                            // Versions kept: the new one and `history - 1` replaced ones.
                            if let Some(dropped) = (old_meta.v + 1).checked_sub(ctx.history) {
                                self.history.remove(history_key(key, dropped))?;
                            }
                        }
                        StoredMeta {
                            q: old_meta.q,
                            r: received,
                            v: old_meta.v.saturating_add(1),
                        }
                    }
                    None => {
                        self.add(EVENTS_COUNT, 1)?;
                        let seq = self.next_seq()?;
                        self.stream.insert(&seq.to_be_bytes(), key)?;
                        for action in ctx.actions.iter().filter(|a| a.matches(row)) {
                            deliveries::enqueue(
                                self.actions,
                                &action.name,
                                &row.event_rid,
                                ctx.now_ms,
                                None,
                            )?;
                        }
                        StoredMeta {
                            q: Some(seq),
                            r: received,
                            v: 0,
                        }
                    }
                };
                let seq = stream_number(key, &meta).map_err(abort)?;
                let entries = Entries::of(row, seq, repo).map_err(abort)?;
                let row_bytes = encode_row(row, meta).map_err(abort)?;
                self.events.insert(key, row_bytes)?;
                self.insert_entries(&entries)?;
                Ok(ApplyOutcome::Indexed { new: old.is_none() })
            }
            None => {
                self.touch_repo(w.rid.as_str(), ctx.now, 0, details)?;
                Ok(ApplyOutcome::Indexed {
                    new: old_held.is_none(),
                })
            }
        }
    }

    /// Removes an event row, its index entries and its contents; adjusts the counts. The manifest is left to the
    /// caller (FORGET removes it, retention keeps it as a tombstone).
    fn remove_event(&self, rid: &[u8], now: &str) -> TxResult<bool> {
        if let Some(value) = self.bundles.get(rid)? {
            if let Some(tombstone) = held::without_contents(rid, &value).map_err(abort)? {
                self.bundles.insert(rid, tombstone)?;
            }
        }
        let Some(bytes) = self.events.remove(rid)? else {
            return Ok(false);
        };
        let row = decode_row(rid, &bytes).map_err(abort)?;
        let meta = stored_meta(rid, &bytes).map_err(abort)?;
        let seq = stream_number(rid, &meta).map_err(abort)?;
        let repo = self.touch_repo(&row.repo_rid, now, -1, None)?;
        self.remove_entries(&Entries::of(&row, seq, repo).map_err(abort)?)?;
        self.stream.remove(&seq.to_be_bytes())?;
        // The versions it replaced go with it (they hold contents too).
        for version in 0..meta.v {
            self.history.remove(history_key(rid, version))?;
        }
        self.add(EVENTS_COUNT, -1)?;
        Ok(true)
    }
}

/// What [`Index::remove_repository`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RepoRemoval {
    /// Removed.
    Removed,
    /// Not indexed.
    NotFound,
    /// Indexed from the network, not added by hand: it stays.
    NotAddedByHand,
    /// Added by hand, but events of it have arrived since: it stays.
    HasEvents(u64),
}

/// A repository name as GitHub allows it: owner 1–39 of `[A-Za-z0-9-]`, name 1–100 of `[A-Za-z0-9._-]`, and
/// neither `.` nor `..`.
pub fn check_github_name(input: &str, full_name: &str) -> Result<(), IndexError> {
    let invalid = |problem: &str| IndexError::InvalidRepository {
        input: input.to_owned(),
        problem: problem.to_owned(),
    };
    let (owner, name) = full_name
        .split_once('/')
        .ok_or_else(|| invalid("expected owner/name"))?;
    if owner.is_empty()
        || owner.len() > 39
        || !owner.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    {
        return Err(invalid(
            "the owner must be 1 to 39 letters, digits or hyphens, as on GitHub",
        ));
    }
    if name.is_empty()
        || name.len() > 100
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
        || name == "."
        || name == ".."
    {
        return Err(invalid(
            "the name must be 1 to 100 letters, digits, `.`, `_` or `-` (not `.` or `..`), as on GitHub",
        ));
    }
    Ok(())
}

/// How `rid` is stored, from user or URL text: `owner/name`, `orn:github.repo:owner/name` or a GitHub URL.
pub fn parse_repo_ref(text: &str) -> Result<GithubRepoRid, IndexError> {
    let invalid = |problem: String| IndexError::InvalidRepository {
        input: text.to_owned(),
        problem,
    };
    let trimmed = text.trim();
    if trimmed.starts_with("orn:") {
        let rid = Rid::parse(trimmed).map_err(|e| invalid(e.problem))?;
        return GithubRepoRid::from_rid(&rid).map_err(|e| invalid(e.problem));
    }
    let name = ["https://github.com/", "http://github.com/", "github.com/"]
        .iter()
        .find_map(|p| trimmed.strip_prefix(p))
        .map(|rest| rest.trim_end_matches('/').trim_end_matches(".git"))
        .unwrap_or(trimmed);
    GithubRepoRid::parse_full_name(name).map_err(|e| invalid(e.problem))
}

impl Index {
    /// Opens (creating if needed) the index trees in the shared database with the default options (contents kept),
    /// checks their schema version, and upgrades an older store in place.
    pub fn open(db: &sled::Db) -> Result<Index, IndexError> {
        Index::open_with(db, IndexOptions::default())
    }

    /// [`Index::open`] with options. Blocking (an upgrade rewrites the store): call it off the async runtime.
    pub fn open_with(db: &sled::Db, options: IndexOptions) -> Result<Index, IndexError> {
        let index = Index {
            meta: db.open_tree(trees::META)?,
            bundles: db.open_tree(trees::BUNDLES)?,
            keep_contents: options.keep_contents,
            events: db.open_tree(trees::EVENTS)?,
            repos: db.open_tree(trees::REPOS)?,
            by_repo_time: db.open_tree(trees::BY_REPO_TIME)?,
            by_type: db.open_tree(trees::BY_TYPE)?,
            by_commit: db.open_tree(trees::BY_COMMIT)?,
            repo_commits: db.open_tree(trees::REPO_COMMITS)?,
            global: db.open_tree(trees::GLOBAL)?,
            stats: db.open_tree(trees::STATS)?,
            stream: db.open_tree(trees::STREAM)?,
            history_tree: db.open_tree(trees::HISTORY)?,
            history: options.history.max(1),
            deliveries: Deliveries::open(db)?,
            actions: options.actions.into(),
            queued: Arc::new(tokio::sync::watch::Sender::new(0)),
            live: Arc::new(LiveFeed::new(0)),
        };
        match index.meta.get(SCHEMA_KEY)? {
            Some(bytes) => {
                let found = <[u8; 4]>::try_from(bytes.as_ref())
                    .map(u32::from_be_bytes)
                    .map_err(|_| IndexError::Corrupt {
                        tree: trees::META,
                        key: printable(SCHEMA_KEY),
                        problem: "the schema version is not a 4-byte number".into(),
                    })?;
                if found > SCHEMA_VERSION {
                    return Err(IndexError::NewerSchema {
                        found,
                        supported: SCHEMA_VERSION,
                    });
                }
                if found == 1 {
                    index.migrate_commit_keys()?;
                    index.meta.insert(SCHEMA_KEY, &2u32.to_be_bytes())?;
                }
                if found <= 2 {
                    index.migrate_bundles(db)?;
                    index.meta.insert(SCHEMA_KEY, &3u32.to_be_bytes())?;
                }
                if found <= 3 {
                    index.migrate_feeds()?;
                }
                if found <= 4 {
                    index.migrate_compact_keys()?;
                }
            }
            None => {
                index.migrate_rid_cache(db)?;
                index
                    .meta
                    .insert(SCHEMA_KEY, &SCHEMA_VERSION.to_be_bytes())?;
            }
        }
        let live = Arc::new(LiveFeed::new(index.last_seq()?));
        Ok(Index { live, ..index })
    }

    /// Schema 2 → 3: `index.manifests` and `index.contents` become one value per RID in `index.bundles`, contents
    /// compressed ([`held`]). Safe to repeat after a crash: `index.bundles` is rebuilt from scratch while the old
    /// trees exist, the version is written after, and only then are the old trees dropped.
    fn migrate_bundles(&self, db: &sled::Db) -> Result<(), IndexError> {
        let has = |name: &str| {
            db.tree_names()
                .iter()
                .any(|n| n.as_ref() == name.as_bytes())
        };
        if has(trees::LEGACY_MANIFESTS) {
            tracing::info!(
                "upgrading the index to schema 3: manifest and compressed contents as one value"
            );
            let manifests = db.open_tree(trees::LEGACY_MANIFESTS)?;
            let contents = db.open_tree(trees::LEGACY_CONTENTS)?;
            self.bundles.clear()?;
            let mut batch = sled::Batch::default();
            let mut done = 0u64;
            for entry in manifests.iter() {
                let (key, manifest) = entry?;
                let kept = if self.keep_contents {
                    contents.get(&key)?
                } else {
                    None
                };
                batch.insert(key, held::encode(&manifest, kept.as_deref())?);
                done += 1;
                if done.is_multiple_of(1000) {
                    self.bundles.apply_batch(std::mem::take(&mut batch))?;
                    if done.is_multiple_of(100_000) {
                        tracing::info!(
                            bundles = done,
                            "upgrading the index: bundles rewritten so far"
                        );
                    }
                }
            }
            self.bundles.apply_batch(batch)?;
            self.bundles.flush()?;
            tracing::info!(bundles = done, "upgraded the index to schema 3");
        }
        self.meta.insert(SCHEMA_KEY, &3u32.to_be_bytes())?;
        self.meta.flush()?;
        for name in [trees::LEGACY_MANIFESTS, trees::LEGACY_CONTENTS] {
            if has(name) {
                db.drop_tree(name)?;
            }
        }
        Ok(())
    }

    /// Schema 3 → 4: every row gets a stream sequence number (in key order) and files its statistics counters
    /// ([`feeds`]); the global lists are built by the upgrade to schema 5 that follows. Safe to repeat after a
    /// crash: the trees and the sequence are rebuilt from scratch, and the version is written after.
    fn migrate_feeds(&self) -> Result<(), IndexError> {
        tracing::info!("upgrading the index to schema 4: statistics and stream sequence numbers");
        self.stats.clear()?;
        self.stream.clear()?;
        let mut counters: BTreeMap<Vec<u8>, u64> = BTreeMap::new();
        let (mut rows, mut stream) = (sled::Batch::default(), sled::Batch::default());
        let mut seq = 0u64;
        for entry in self.events.iter() {
            let (key, bytes) = entry?;
            let row = decode_row(&key, &bytes)?;
            let stats = feeds::stat_keys(&row, row_micros(&row)?);
            seq += 1;
            let meta = StoredMeta {
                q: Some(seq),
                ..stored_meta(&key, &bytes)?
            };
            rows.insert(key.clone(), encode_row(&row, meta)?);
            stream.insert(&seq.to_be_bytes(), key);
            for k in stats {
                *counters.entry(k).or_default() += 1;
            }
            if seq.is_multiple_of(1000) {
                self.events.apply_batch(std::mem::take(&mut rows))?;
                self.stream.apply_batch(std::mem::take(&mut stream))?;
                if seq.is_multiple_of(100_000) {
                    tracing::info!(events = seq, "upgrading the index: events done so far");
                }
            }
        }
        self.events.apply_batch(rows)?;
        self.stream.apply_batch(stream)?;
        let mut batch = sled::Batch::default();
        for (key, n) in counters {
            batch.insert(key, &n.to_be_bytes());
        }
        self.stats.apply_batch(batch)?;
        self.meta.insert(SEQ_KEY, &seq.to_be_bytes())?;
        self.meta.insert(SCHEMA_KEY, &4u32.to_be_bytes())?;
        self.meta.flush()?;
        tracing::info!(events = seq, "upgraded the index to schema 4");
        Ok(())
    }

    /// Schema 4 → 5: every repository gets a number, and the index entries are rebuilt with 20-byte keys that
    /// name the repository by its number and the event by its stream number ([`Entries::of`]). Safe to repeat
    /// after a crash: the numbers are given again from 1, the entry trees are rebuilt from scratch, and the version
    /// is written after.
    fn migrate_compact_keys(&self) -> Result<(), IndexError> {
        tracing::info!("upgrading the index to schema 5: compact index keys");
        let mut ids: std::collections::HashMap<String, u32> = std::collections::HashMap::new();
        let mut records = sled::Batch::default();
        for entry in self.repos.iter() {
            let (key, bytes) = entry?;
            let mut record: RepoRecord = decode(trees::REPOS, &key, &bytes)?;
            let id = ids.len() as u32 + 1;
            record.id = Some(id);
            ids.insert(record.repo_rid.clone(), id);
            records.insert(key, serde_json::to_vec(&record)?);
        }
        self.repos.apply_batch(records)?;
        self.meta
            .insert(REPO_ID_KEY, &(ids.len() as u64).to_be_bytes())?;
        let trees = [
            &self.by_repo_time,
            &self.by_type,
            &self.by_commit,
            &self.repo_commits,
            &self.global,
        ];
        for tree in trees {
            tree.clear()?;
        }
        let mut batches: [sled::Batch; 5] = Default::default();
        let mut done = 0u64;
        for entry in self.events.iter() {
            let (key, bytes) = entry?;
            let row = decode_row(&key, &bytes)?;
            let seq = stream_number(&key, &stored_meta(&key, &bytes)?)?;
            let repo = *ids.get(&row.repo_rid).ok_or_else(|| IndexError::Corrupt {
                tree: trees::EVENTS,
                key: printable(&key),
                problem: format!("its repository {} has no row", row.repo_rid),
            })?;
            let e = Entries::of(&row, seq, repo)?;
            batches[0].insert(e.by_repo_time, &[]);
            batches[1].insert(e.by_type, &[]);
            if let Some((by_commit, repo_commit, sha)) = e.commit {
                batches[2].insert(by_commit, &[]);
                batches[3].insert(repo_commit, sha.as_bytes());
            }
            for k in e.global {
                batches[4].insert(k, &[]);
            }
            done += 1;
            if done.is_multiple_of(1000) {
                for (tree, batch) in trees.iter().zip(batches.iter_mut()) {
                    tree.apply_batch(std::mem::take(batch))?;
                }
                if done.is_multiple_of(100_000) {
                    tracing::info!(events = done, "upgrading the index: events done so far");
                }
            }
        }
        for (tree, batch) in trees.iter().zip(batches) {
            tree.apply_batch(batch)?;
        }
        self.meta
            .insert(SCHEMA_KEY, &SCHEMA_VERSION.to_be_bytes())?;
        self.meta.flush()?;
        tracing::info!(
            events = done,
            repositories = ids.len(),
            "upgraded the index to schema 5"
        );
        Ok(())
    }

    /// Schema 0 kept only bundles, in `index.rid_cache`: index them into rows, then drop that tree. Safe to repeat
    /// after a crash (applying is idempotent; the version is written after).
    fn migrate_rid_cache(&self, db: &sled::Db) -> Result<(), IndexError> {
        if !db
            .tree_names()
            .iter()
            .any(|n| n.as_ref() == trees::LEGACY_RID_CACHE.as_bytes())
        {
            return Ok(());
        }
        let legacy = db.open_tree(trees::LEGACY_RID_CACHE)?;
        for entry in legacy.iter() {
            let (key, value) = entry?;
            let bundle: Bundle = decode(trees::LEGACY_RID_CACHE, &key, &value)?;
            self.apply_bundle(&bundle)?;
        }
        db.drop_tree(trees::LEGACY_RID_CACHE)?;
        Ok(())
    }

    /// Schema 1 → 2: `index.by_commit` is rebuilt from `index.repo_commits` (`repo ␀ time rid` → sha), which holds
    /// the same entries with their times. Safe to repeat after a crash: the tree is cleared first, and the version
    /// is written after.
    fn migrate_commit_keys(&self) -> Result<(), IndexError> {
        tracing::info!("upgrading the index from schema 1 to 2: rebuilding the commit index");
        self.by_commit.clear()?;
        let mut batch = sled::Batch::default();
        let mut done = 0u64;
        for entry in self.repo_commits.iter() {
            let (key, sha) = entry?;
            let Some(sep) = key.iter().position(|b| *b == SEP) else {
                continue;
            };
            let mut new_key = sha.to_vec();
            new_key.push(SEP);
            new_key.extend_from_slice(&key[sep + 1..]);
            batch.insert(new_key, &[]);
            done += 1;
            if done.is_multiple_of(10_000) {
                self.by_commit.apply_batch(std::mem::take(&mut batch))?;
                if done.is_multiple_of(100_000) {
                    tracing::info!(
                        entries = done,
                        "upgrading the index: commit entries rebuilt so far"
                    );
                }
            }
        }
        self.by_commit.apply_batch(batch)?;
        self.by_commit.flush()?;
        tracing::info!(entries = done, "upgraded the index to schema 2");
        Ok(())
    }

    /// Runs `f` in one transaction over every index tree: all its writes land, or none.
    fn transaction<T>(&self, f: impl Fn(&Tx) -> TxResult<T>) -> Result<T, IndexError> {
        Ok((
            &self.meta,
            &self.bundles,
            &self.events,
            &self.repos,
            &self.by_repo_time,
            &self.by_type,
            &self.by_commit,
            &self.repo_commits,
            &self.global,
            &self.stats,
            &self.stream,
            &self.history_tree,
            self.deliveries.tree(),
        )
            .transaction(
                |(
                    meta,
                    bundles,
                    events,
                    repos,
                    by_repo_time,
                    by_type,
                    by_commit,
                    repo_commits,
                    global,
                    stats,
                    stream,
                    history,
                    actions,
                )| {
                    f(&Tx {
                        history,
                        actions,
                        meta,
                        bundles,
                        events,
                        repos,
                        by_repo_time,
                        by_type,
                        by_commit,
                        repo_commits,
                        global,
                        stats,
                        stream,
                    })
                },
            )?)
    }

    /// Indexes a NEW/UPDATE bundle of an `orn:github.event` or `orn:github.repo`, unless the manifest held for its
    /// RID has the same hash ([`ApplyOutcome::Unchanged`]) or a newer timestamp ([`ApplyOutcome::Stale`]). The
    /// check and the writes are one transaction, so replaying a bundle never counts it twice. The caller has
    /// verified the bundle's hash.
    pub fn apply_bundle(&self, bundle: &Bundle) -> Result<ApplyOutcome, IndexError> {
        let mut outcomes = self.apply_bundles(std::slice::from_ref(bundle))?;
        Ok(outcomes.pop().unwrap_or(ApplyOutcome::Ignored))
    }

    /// [`Index::apply_bundle`] for several bundles, in order, in **one** transaction: all of them land or none.
    /// Each is deduplicated against the store and against those before it in the batch. One outcome per bundle.
    ///
    /// This is the fast path: a transaction over the index's trees costs about as much as the writes of one event,
    /// so the node applies what one inbox pass brings as a batch.
    ///
    /// One bundle that cannot be indexed never fails the others: it comes back as [`ApplyOutcome::Invalid`] with
    /// the reason. Should the batch's transaction fail for any reason but storage, the bundles are written one by
    /// one, so only the culprit is refused. The outer error is a storage failure only: nothing was written.
    pub fn apply_bundles(&self, bundles: &[Bundle]) -> Result<Vec<ApplyOutcome>, IndexError> {
        let prepared: Vec<Prepared<'_>> = bundles
            .iter()
            .map(|b| Prepared::of(b, None, self.keep_contents))
            .collect();
        self.apply_prepared(&prepared, &self.actions)
    }

    /// [`Index::apply_bundles`] for bundles prepared where they were received ([`PreparedBundle`]) or not: the
    /// node's writer.
    pub fn apply(&self, items: &[Ingest]) -> Result<Vec<ApplyOutcome>, IndexError> {
        let prepared: Vec<Prepared<'_>> = items
            .iter()
            .map(|item| Prepared::of_ingest(item, self.keep_contents))
            .collect();
        self.apply_prepared(&prepared, &self.actions)
    }

    /// Loads bundles from an export ([`super::export`]): each with the time the source received it, oldest version
    /// of an event first (each later one is an UPDATE, so the history is rebuilt). Deduplicated as
    /// [`Index::apply_bundles`]; no action fires (these are not new events).
    pub fn import_bundles(
        &self,
        bundles: &[(Bundle, Option<i64>)],
    ) -> Result<Vec<ApplyOutcome>, IndexError> {
        let prepared: Vec<Prepared<'_>> = bundles
            .iter()
            .map(|(b, received)| Prepared::of(b, *received, self.keep_contents))
            .collect();
        self.apply_prepared(&prepared, &[])
    }

    fn apply_prepared(
        &self,
        prepared: &[Prepared<'_>],
        actions: &[ActionFilter],
    ) -> Result<Vec<ApplyOutcome>, IndexError> {
        if prepared.iter().all(|p| matches!(p, Prepared::Done(_))) {
            return Ok(prepared
                .iter()
                .map(|p| match p {
                    Prepared::Done(outcome) => outcome.clone(),
                    _ => ApplyOutcome::Ignored,
                })
                .collect());
        }
        let now = now_text();
        let now_utc = chrono::Utc::now();
        let now_ms = deliveries::time_text(now_utc);
        let ctx = WriteContext {
            now: &now,
            now_micros: now_utc.timestamp_micros(),
            now_ms: &now_ms,
            history: self.history,
            actions,
        };
        let outcomes = self.write_prepared(prepared, &ctx)?;
        if outcomes
            .iter()
            .any(|o| matches!(o, ApplyOutcome::Indexed { new: true }))
        {
            if !actions.is_empty() {
                self.queued.send_modify(|n| *n = n.wrapping_add(1));
            }
            let last = self.last_seq()?;
            self.live.publish(last, |after, until| {
                self.stream_after(after, usize::try_from(until - after).unwrap_or(usize::MAX))
            })?;
        }
        Ok(outcomes)
    }

    /// The listeners' side of the live feed: every event indexed for the first time after the number returned
    /// with it (the last one published when it subscribed).
    pub fn subscribe(&self) -> (tokio::sync::broadcast::Receiver<LiveBatch>, u64) {
        self.live.subscribe()
    }

    fn write_prepared(
        &self,
        prepared: &[Prepared<'_>],
        ctx: &WriteContext<'_>,
    ) -> Result<Vec<ApplyOutcome>, IndexError> {
        match self.transaction(|tx| prepared.iter().map(|p| tx.write(p, ctx)).collect()) {
            Err(IndexError::Storage(e)) => Err(IndexError::Storage(e)),
            Err(_) if prepared.len() > 1 => prepared
                .iter()
                .map(|p| match self.transaction(|tx| tx.write(p, ctx)) {
                    Err(IndexError::Storage(e)) => Err(IndexError::Storage(e)),
                    Err(other) => Ok(ApplyOutcome::Invalid(other.to_string())),
                    Ok(outcome) => Ok(outcome),
                })
                .collect(),
            Err(other) => Ok(vec![ApplyOutcome::Invalid(other.to_string())]),
            Ok(outcomes) => Ok(outcomes),
        }
    }

    /// FORGET: removes the RID's row, index entries and cached bundle, and adjusts the counts. A repository row
    /// is removed only when no events of it remain (its events still name it). Returns whether anything was held.
    pub fn forget(&self, rid: &Rid) -> Result<bool, IndexError> {
        let key = rid.as_str().as_bytes();
        let is_repo = rid.is_type(RidType::GITHUB_REPO);
        let now = now_text();
        self.transaction(|tx| {
            let had_bundle = tx.bundles.remove(key)?.is_some();
            let had_row = tx.remove_event(key, &now)?;
            let mut had_repo = false;
            if is_repo {
                if let Some(record) = Tx::get::<RepoRecord>(tx.repos, trees::REPOS, key)? {
                    had_repo = true;
                    if record.event_count == 0 {
                        tx.repos.remove(key)?;
                        tx.add(REPOS_COUNT, -1)?;
                    }
                }
            }
            Ok(had_bundle || had_row || had_repo)
        })
    }

    /// The manifest held for `rid`, if any (the node skips fetching bundles it already has).
    pub fn cached_manifest(&self, rid: &Rid) -> Result<Option<Manifest>, IndexError> {
        let key = rid.as_str().as_bytes();
        self.bundles
            .get(key)?
            .map(|value| held::manifest(key, &value))
            .transpose()
    }

    /// Retention: removes every event whose time is before `cutoff` (row, index entries, contents). Its manifest
    /// is kept as a tombstone so the node does not fetch and index it again. Returns how many were removed.
    pub fn prune_older_than(&self, cutoff: Timestamp) -> Result<usize, IndexError> {
        let cutoff = cutoff.unix_micros();
        let now = now_text();
        let mut removed = 0;
        for entry in self.repos.iter() {
            let (key, bytes) = entry?;
            let record: RepoRecord = decode(trees::REPOS, &key, &bytes)?;
            let Some(id) = record.id else { continue };
            let prefix = id.to_be_bytes();
            let mut doomed: Vec<IVec> = Vec::new();
            // Newest first, so the oldest are at the end: walk back until an event at or after the cutoff.
            for key in self.by_repo_time.scan_prefix(prefix).keys().rev() {
                let key = key?;
                let tail = &key[prefix.len()..];
                match time_from_key(tail) {
                    Some(t) if t < cutoff => {
                        if let Some(rid) = self.stream.get(&tail[8..])? {
                            doomed.push(rid);
                        }
                    }
                    _ => break,
                }
            }
            for chunk in doomed.chunks(PRUNE_CHUNK) {
                removed += self.transaction(|tx| {
                    let mut n = 0;
                    for rid in chunk {
                        n += usize::from(tx.remove_event(rid, &now)?);
                    }
                    Ok(n)
                })?;
            }
        }
        Ok(removed)
    }

    /// Adds a repository with no events yet (`add-repo`). Idempotent: returns the row and whether it was created.
    /// The name must be one GitHub allows ([`check_github_name`]).
    pub fn add_repository(&self, full_name_or_rid: &str) -> Result<(Repository, bool), IndexError> {
        let repo = parse_repo_ref(full_name_or_rid)?;
        check_github_name(full_name_or_rid, repo.full_name())?;
        let key = repo.rid().as_str();
        let now = now_text();
        let created = self.transaction(|tx| {
            if tx.repos.get(key)?.is_some() {
                return Ok(false);
            }
            tx.touch_repo(key, &now, 0, None)?;
            let mut record: RepoRecord = Tx::get(tx.repos, trees::REPOS, key.as_bytes())?
                .ok_or_else(|| {
                    abort(IndexError::Corrupt {
                        tree: trees::REPOS,
                        key: key.to_owned(),
                        problem: "the row just written is missing".into(),
                    })
                })?;
            record.manual = true;
            let bytes = serde_json::to_vec(&record).map_err(|e| abort(e.into()))?;
            tx.repos.insert(key.as_bytes(), bytes)?;
            Ok(true)
        })?;
        let row = self.repository(&repo)?.ok_or_else(|| IndexError::Corrupt {
            tree: trees::REPOS,
            key: key.to_owned(),
            problem: "the row just written is missing".into(),
        })?;
        Ok((row, created))
    }

    /// Removes a repository added by hand that has no events (`remove-repo`).
    pub fn remove_repository(&self, full_name_or_rid: &str) -> Result<RepoRemoval, IndexError> {
        let repo = parse_repo_ref(full_name_or_rid)?;
        let key = repo.rid().as_str();
        self.transaction(|tx| {
            let Some(record) = Tx::get::<RepoRecord>(tx.repos, trees::REPOS, key.as_bytes())?
            else {
                return Ok(RepoRemoval::NotFound);
            };
            if !record.manual {
                return Ok(RepoRemoval::NotAddedByHand);
            }
            if record.event_count > 0 {
                return Ok(RepoRemoval::HasEvents(record.event_count));
            }
            tx.repos.remove(key.as_bytes())?;
            tx.add(REPOS_COUNT, -1)?;
            Ok(RepoRemoval::Removed)
        })
    }

    /// Makes every write so far durable.
    pub async fn flush_async(&self) -> Result<(), IndexError> {
        self.meta.flush_async().await?;
        Ok(())
    }

    fn repository_from(&self, key: &[u8], bytes: &[u8]) -> Result<Repository, IndexError> {
        let record: RepoRecord = decode(trees::REPOS, key, bytes)?;
        let latest_commit_sha = match record.id.and_then(|id| {
            self.repo_commits
                .scan_prefix(id.to_be_bytes())
                .values()
                .next()
        }) {
            Some(sha) => Some(String::from_utf8_lossy(&sha?).into_owned()),
            None => None,
        };
        let full_name = record
            .repo_rid
            .strip_prefix("orn:github.repo:")
            .unwrap_or(&record.repo_rid)
            .to_owned();
        let RepoDetails {
            repo_url,
            description,
            default_branch,
            stars,
            forks,
            license,
        } = record.details;
        Ok(Repository {
            repo_url: repo_url.unwrap_or_else(|| format!("https://github.com/{full_name}")),
            repo_rid: record.repo_rid,
            full_name,
            first_indexed: record.first_indexed,
            last_updated: record.last_updated,
            latest_commit_sha,
            event_count: record.event_count,
            description,
            default_branch,
            stars,
            forks,
            license,
        })
    }

    /// Every repository, most recently updated first.
    pub fn repositories(&self) -> Result<Vec<Repository>, IndexError> {
        let mut out = self
            .repos
            .iter()
            .map(|entry| {
                let (key, value) = entry?;
                self.repository_from(&key, &value)
            })
            .collect::<Result<Vec<_>, _>>()?;
        out.sort_by(|a, b| {
            b.last_updated
                .cmp(&a.last_updated)
                .then_with(|| a.repo_rid.cmp(&b.repo_rid))
        });
        Ok(out)
    }

    /// One repository.
    pub fn repository(&self, repo: &GithubRepoRid) -> Result<Option<Repository>, IndexError> {
        let key = repo.rid().as_str().as_bytes();
        match self.repos.get(key)? {
            Some(bytes) => self.repository_from(key, &bytes).map(Some),
            None => Ok(None),
        }
    }

    /// The row an index entry names by its stream number (the last 8 bytes of its key).
    fn row_at(&self, index: &'static str, seq: &[u8]) -> Result<EventRow, IndexError> {
        match self.stream.get(seq)? {
            Some(rid) => self.row(index, &rid),
            None => Err(IndexError::Corrupt {
                tree: index,
                key: printable(seq),
                problem: "the index entry names a stream number with no event".into(),
            }),
        }
    }

    /// A repository's number in index keys; `None` when the repository is unknown.
    fn repo_number(&self, repo_rid: &str) -> Result<Option<u32>, IndexError> {
        let Some(bytes) = self.repos.get(repo_rid)? else {
            return Ok(None);
        };
        let record: RepoRecord = decode(trees::REPOS, repo_rid.as_bytes(), &bytes)?;
        record.id.map(Some).ok_or_else(|| IndexError::Corrupt {
            tree: trees::REPOS,
            key: repo_rid.to_owned(),
            problem: "the repository has no number".into(),
        })
    }

    fn row(&self, index: &'static str, rid: &[u8]) -> Result<EventRow, IndexError> {
        match self.events.get(rid)? {
            Some(bytes) => decode_row(rid, &bytes),
            None => Err(IndexError::Corrupt {
                tree: index,
                key: printable(rid),
                problem: "the index entry points at no event row".into(),
            }),
        }
    }

    /// A page of a repository's events, newest first; `None` when the repository is unknown.
    pub fn events_page(
        &self,
        repo: &GithubRepoRid,
        query: &EventQuery,
    ) -> Result<Option<Vec<EventRow>>, IndexError> {
        let Some(id) = self.repo_number(repo.rid().as_str())? else {
            return Ok(None);
        };
        let (tree, name, prefix) = match &query.event_type {
            Some(t) => (
                &self.by_type,
                trees::BY_TYPE,
                [t.as_bytes(), &[SEP], &id.to_be_bytes()].concat(),
            ),
            None => (
                &self.by_repo_time,
                trees::BY_REPO_TIME,
                id.to_be_bytes().to_vec(),
            ),
        };
        let start = match query.until {
            Some(until) => [prefix.as_slice(), &time_key(until.unix_micros())].concat(),
            None => prefix.clone(),
        };
        let end = match query
            .since
            .and_then(|since| u64::from_be_bytes(time_key(since.unix_micros())).checked_add(1))
        {
            Some(after) => [prefix.as_slice(), &after.to_be_bytes()].concat(),
            None => prefix_end(&prefix),
        };
        if start >= end {
            return Ok(Some(Vec::new()));
        }
        tree.range(start..end)
            .keys()
            .skip(query.offset)
            .take(query.limit)
            .map(|key| {
                let key = key?;
                self.row_at(name, key.get(prefix.len() + 8..).unwrap_or_default())
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }

    /// An event's stored row and its held value; `None` when the event has no row.
    fn row_and_held(&self, key: &[u8]) -> Result<Option<(IVec, IVec)>, IndexError> {
        let Some(row) = self.events.get(key)? else {
            return Ok(None);
        };
        let held = self.bundles.get(key)?.ok_or_else(|| IndexError::Corrupt {
            tree: trees::BUNDLES,
            key: printable(key),
            problem: "the event row has no cached bundle".into(),
        })?;
        Ok(Some((row, held)))
    }

    /// One event with its bundle.
    pub fn event(&self, rid: &Rid) -> Result<Option<EventDetails>, IndexError> {
        let key = rid.as_str().as_bytes();
        let Some((bytes, value)) = self.row_and_held(key)? else {
            return Ok(None);
        };
        let row = decode_row(key, &bytes)?;
        let (manifest, contents) = held::decode(key, &value)?;
        Ok(Some(EventDetails {
            row,
            contents_kept: contents.is_some(),
            hash_scheme: held_hash_scheme(&manifest, contents.as_ref()),
            bundle: HeldBundle { manifest, contents },
        }))
    }

    /// Any bundle held for `rid` (an event or a repository), with its manifest as received.
    pub fn bundle(&self, rid: &Rid) -> Result<Option<BundleDetails>, IndexError> {
        let key = rid.as_str().as_bytes();
        let Some(value) = self.bundles.get(key)? else {
            return Ok(None);
        };
        let (manifest, contents) = held::decode(key, &value)?;
        Ok(Some(BundleDetails {
            rid: rid.to_string(),
            hash_scheme: held_hash_scheme(&manifest, contents.as_ref()),
            contents_kept: contents.is_some(),
            manifest,
            contents,
        }))
    }

    /// The versions of an event, newest first, starting with the current one (at most `index.history`); `None`
    /// when the event is not indexed.
    pub fn history(&self, rid: &Rid) -> Result<Option<Vec<EventVersion>>, IndexError> {
        let key = rid.as_str().as_bytes();
        let Some(versions) = self.held_versions(key)? else {
            return Ok(None);
        };
        versions
            .into_iter()
            .map(|(received, held_value)| {
                let (manifest, contents) = held::decode(key, &held_value)?;
                Ok(EventVersion {
                    timestamp: manifest.timestamp,
                    sha256_hash: manifest.sha256_hash,
                    received_at: received.map(micros_text),
                    contents,
                })
            })
            .collect::<Result<Vec<_>, IndexError>>()
            .map(Some)
    }

    /// An event's held values, newest first, the current one first (at most `index.history`), each with the time
    /// it was received; `None` when the event has no row.
    #[allow(clippy::type_complexity)]
    fn held_versions(&self, rid: &[u8]) -> Result<Option<Vec<(Option<i64>, Vec<u8>)>>, IndexError> {
        let Some((row, current)) = self.row_and_held(rid)? else {
            return Ok(None);
        };
        let meta = stored_meta(rid, &row)?;
        let mut versions = vec![(meta.r, current.to_vec())];
        let prefix = [rid, &[SEP]].concat();
        for entry in self
            .history_tree
            .scan_prefix(&prefix)
            .rev()
            .take(self.history as usize - 1)
        {
            let (k, v) = entry?;
            let (received, held_value) = decode_version(&k, &v)?;
            versions.push((received, held_value.to_vec()));
        }
        Ok(Some(versions))
    }

    /// Starts an export: its header (counts as of now) and what it will include ([`export`]).
    pub fn export_start(
        &self,
        node_rid: Option<String>,
    ) -> Result<(export::Header, export::Point), IndexError> {
        if !self.keep_contents {
            return Err(IndexError::ContentsNotKept);
        }
        let counts = self.counts()?;
        let now = chrono::Utc::now();
        let point = export::Point {
            last_seq: self.last_seq()?,
            at: now.timestamp_micros(),
        };
        let header = export::Header {
            format: export::FORMAT.to_owned(),
            format_version: export::FORMAT_VERSION,
            schema_version: SCHEMA_VERSION,
            node_rid,
            program: concat!("koi-github-indexer ", env!("CARGO_PKG_VERSION")).to_owned(),
            exported_at: micros_text(point.at),
            last_seq: point.last_seq,
            events: counts.events,
            repositories: counts.repositories,
        };
        Ok((header, point))
    }

    /// Up to about `max` lines of an export from `cursor` on, and the cursor after them.
    pub fn export_page(
        &self,
        cursor: export::Cursor,
        point: export::Point,
        max: usize,
    ) -> Result<(Vec<export::Line>, export::Cursor), IndexError> {
        use export::{Cursor, Line};
        let mut lines = Vec::new();
        let mut cursor = cursor;
        while lines.len() < max {
            cursor = match cursor {
                Cursor::Manual(after) => {
                    let mut next = Cursor::Events(0);
                    for entry in self.repos.range(after_key(&after)..) {
                        let (key, value) = entry?;
                        let record: RepoRecord = decode(trees::REPOS, &key, &value)?;
                        if record.manual {
                            lines.push(Line::Repository {
                                full_name: feeds::full_name(&record.repo_rid).to_owned(),
                            });
                            if lines.len() >= max {
                                next = Cursor::Manual(key.to_vec());
                                break;
                            }
                        }
                    }
                    next
                }
                Cursor::Events(after) => {
                    let mut next = Cursor::RepoBundles(Vec::new());
                    let Some(first) = after.checked_add(1).filter(|f| *f <= point.last_seq) else {
                        cursor = next;
                        continue;
                    };
                    for entry in self
                        .stream
                        .range(first.to_be_bytes()..=point.last_seq.to_be_bytes())
                    {
                        let (key, rid) = entry?;
                        let seq = decode_u64(trees::STREAM, &key, &key)?;
                        if let Some(bundle) = self.exported_event(&rid, point.at)? {
                            lines.push(Line::Bundle(Box::new(bundle)));
                        }
                        if lines.len() >= max {
                            next = Cursor::Events(seq);
                            break;
                        }
                    }
                    next
                }
                Cursor::RepoBundles(after) => {
                    let prefix = b"orn:github.repo:";
                    let start = if after.is_empty() {
                        prefix.to_vec()
                    } else {
                        after_key(&after)
                    };
                    let mut next = Cursor::Done;
                    for entry in self.bundles.range(start..) {
                        let (key, value) = entry?;
                        if !key.starts_with(prefix) {
                            break;
                        }
                        if let (manifest, Some(contents)) = held::decode(&key, &value)? {
                            lines.push(Line::Bundle(Box::new(export::ExportedBundle {
                                manifest,
                                contents,
                                received_at: None,
                                history: Vec::new(),
                            })));
                        }
                        if lines.len() >= max {
                            next = Cursor::RepoBundles(key.to_vec());
                            break;
                        }
                    }
                    next
                }
                Cursor::Done => return Ok((lines, Cursor::Done)),
            };
        }
        Ok((lines, cursor))
    }

    /// An event as it was at `at` (µs): the newest version received by then, and the older ones.
    fn exported_event(
        &self,
        rid: &[u8],
        at: i64,
    ) -> Result<Option<export::ExportedBundle>, IndexError> {
        let Some(mut versions) = self.held_versions(rid)? else {
            return Ok(None); // forgotten since
        };
        // Versions received after the export started are not part of it.
        while versions.len() > 1 && versions[0].0.is_some_and(|r| r > at) {
            versions.remove(0);
        }
        let mut decoded = Vec::with_capacity(versions.len());
        for (received, value) in versions.into_iter().rev() {
            let (manifest, contents) = held::decode(rid, &value)?;
            let Some(contents) = contents else {
                return Ok(None); // contents not kept (pruned, or keep_contents off when written)
            };
            decoded.push(export::ExportedVersion {
                manifest,
                contents,
                received_at: received.map(micros_text),
            });
        }
        let Some(current) = decoded.pop() else {
            return Ok(None);
        };
        Ok(Some(export::ExportedBundle {
            manifest: current.manifest,
            contents: current.contents,
            received_at: current.received_at,
            history: decoded,
        }))
    }

    /// Loads export lines ([`export`]): a repository added by hand is added; a bundle's versions are applied
    /// oldest first with the source's received times, after their hashes are checked. Deduplicated as the network
    /// path; no action fires. One outcome per bundle applied (per version).
    pub fn import_lines(&self, lines: &[export::Line]) -> Result<Vec<ApplyOutcome>, IndexError> {
        let mut bundles = Vec::new();
        for line in lines {
            match line {
                export::Line::Repository { full_name } => {
                    self.add_repository(full_name)?;
                }
                export::Line::End { .. } => {}
                export::Line::Bundle(bundle) => {
                    for (version, received) in bundle.versions() {
                        version
                            .verify_hash()
                            .map_err(|e| IndexError::Import(e.to_string()))?;
                        bundles.push((version, received));
                    }
                }
            }
        }
        self.import_bundles(&bundles)
    }

    /// The outbound webhook queue and log.
    pub fn deliveries(&self) -> &Deliveries {
        &self.deliveries
    }

    /// Changes each time a commit queues deliveries: the senders wait on it.
    pub fn queued_signal(&self) -> tokio::sync::watch::Receiver<u64> {
        self.queued.subscribe()
    }

    /// Queues delivery `id` of `action` again ([`Deliveries::redeliver`]) and wakes the sender.
    pub fn redeliver(
        &self,
        action: &str,
        id: &str,
    ) -> Result<Option<deliveries::Delivery>, IndexError> {
        let delivery = self.deliveries.redeliver(action, id)?;
        if delivery.is_some() {
            self.queued.send_modify(|n| *n = n.wrapping_add(1));
        }
        Ok(delivery)
    }

    /// A page of the events naming a commit, newest first. `sha` may be abbreviated (at least 4 hex digits).
    ///
    /// A full SHA is one range of `index.by_commit` in time order, so only the page's rows are read. An
    /// abbreviated one may match several commits: their keys (not rows) are merged by time, then the page is read.
    pub fn events_by_commit(
        &self,
        sha: &str,
        offset: usize,
        limit: usize,
    ) -> Result<Vec<EventRow>, IndexError> {
        let sha = sha.to_ascii_lowercase();
        // `sha ␀ time rid` → (time key, rid)
        let split = |key: &[u8]| -> Option<(Vec<u8>, Vec<u8>)> {
            let sep = key.iter().position(|b| *b == SEP)?;
            let rest = key.get(sep + 1..)?;
            Some((rest.get(..8)?.to_vec(), rest.get(8..)?.to_vec()))
        };
        let rids: Vec<Vec<u8>> = if sha.len() >= 40 {
            let mut rids = Vec::with_capacity(limit.min(1024));
            for key in self
                .by_commit
                .scan_prefix(key_prefix(&[&sha]))
                .keys()
                .skip(offset)
                .take(limit)
            {
                if let Some((_, rid)) = split(&key?) {
                    rids.push(rid);
                }
            }
            rids
        } else {
            let mut keys = Vec::new();
            for key in self.by_commit.scan_prefix(sha.as_bytes()).keys() {
                if let Some(pair) = split(&key?) {
                    keys.push(pair);
                }
            }
            keys.sort();
            keys.into_iter()
                .skip(offset)
                .take(limit)
                .map(|(_, rid)| rid)
                .collect()
        };
        rids.iter()
            .map(|seq| self.row_at(trees::BY_COMMIT, seq))
            .collect()
    }

    /// Totals: events, repositories and events per type.
    pub fn counts(&self) -> Result<Counts, IndexError> {
        let counter = |key: &[u8]| -> Result<u64, IndexError> {
            match self.meta.get(key)? {
                Some(bytes) => decode_u64(trees::META, key, &bytes),
                None => Ok(0),
            }
        };
        let mut by_type = BTreeMap::new();
        for entry in self.meta.scan_prefix(TYPE_COUNT_PREFIX) {
            let (key, value) = entry?;
            let name = String::from_utf8_lossy(&key[TYPE_COUNT_PREFIX.len()..]).into_owned();
            by_type.insert(name, decode_u64(trees::META, &key, &value)?);
        }
        Ok(Counts {
            events: counter(EVENTS_COUNT)?,
            repositories: counter(REPOS_COUNT)?,
            by_type,
        })
    }

    /// Number of event rows (a counter: no scan).
    pub fn event_count(&self) -> Result<u64, IndexError> {
        Ok(self.counts()?.events)
    }

    /// The newest event of all (the first key of the global list: one read).
    pub fn latest_event(&self) -> Result<Option<EventRow>, IndexError> {
        match self.global.scan_prefix(b"T\0").keys().next() {
            Some(key) => {
                let key = key?;
                Ok(Some(self.row_at(
                    trees::GLOBAL,
                    key.get(2 + 8..).unwrap_or_default(),
                )?))
            }
            None => Ok(None),
        }
    }

    /// A page of events across repositories, newest first, filtered ([`GlobalQuery`]). The list read is the
    /// narrowest the query allows (by actor, by repository, by type, or all); other filters are checked on rows.
    pub fn events_global(&self, query: &GlobalQuery) -> Result<Vec<EventRow>, IndexError> {
        if let (Some(repo), None) = (&query.repo, &query.actor) {
            let filter = EventQuery {
                limit: query.limit,
                offset: query.offset,
                event_type: query.event_type.clone(),
                since: query.since,
                until: query.until,
            };
            return Ok(self.events_page(repo, &filter)?.unwrap_or_default());
        }
        let (prefix, type_checked) = match (&query.actor, &query.event_type) {
            (Some(actor), _) => ([b"a\0", actor.as_bytes(), &[SEP]].concat(), false),
            (None, Some(kind)) => ([b"y\0", kind.as_bytes(), &[SEP]].concat(), true),
            (None, None) => (b"T\0".to_vec(), true),
        };
        let start = match query.until {
            Some(until) => [prefix.as_slice(), &time_key(until.unix_micros())].concat(),
            None => prefix.clone(),
        };
        let end = match query
            .since
            .and_then(|since| u64::from_be_bytes(time_key(since.unix_micros())).checked_add(1))
        {
            Some(after) => [prefix.as_slice(), &after.to_be_bytes()].concat(),
            None => prefix_end(&prefix),
        };
        if start >= end {
            return Ok(Vec::new());
        }
        let repo_rid = query.repo.as_ref().map(|r| r.rid().as_str().to_owned());
        let mut page = Vec::with_capacity(query.limit.min(1024));
        let mut skipped = 0;
        for key in self.global.range(start..end).keys() {
            let key = key?;
            let row = self.row_at(
                trees::GLOBAL,
                key.get(prefix.len() + 8..).unwrap_or_default(),
            )?;
            let wanted = (type_checked
                || query
                    .event_type
                    .as_ref()
                    .is_none_or(|t| &row.event_type == t))
                && repo_rid.as_ref().is_none_or(|r| &row.repo_rid == r);
            if !wanted {
                continue;
            }
            if skipped < query.offset {
                skipped += 1;
                continue;
            }
            page.push(row);
            if page.len() >= query.limit {
                break;
            }
        }
        Ok(page)
    }

    /// Statistics from the counters kept at write time ([`feeds`]).
    pub fn stats(&self, query: &StatsQuery) -> Result<Stats, IndexError> {
        feeds::stats(&self.stats, query)
    }

    /// The last stream sequence number given (0 before the first event).
    pub fn last_seq(&self) -> Result<u64, IndexError> {
        match self.meta.get(SEQ_KEY)? {
            Some(bytes) => decode_u64(trees::META, SEQ_KEY, &bytes),
            None => Ok(0),
        }
    }

    /// Up to `limit` events indexed after sequence number `after`, in sequence order, with their numbers. Events
    /// forgotten or pruned since are not there.
    pub fn stream_after(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(u64, EventRow)>, IndexError> {
        let Some(first) = after.checked_add(1) else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for entry in self.stream.range(first.to_be_bytes()..).take(limit) {
            let (key, rid) = entry?;
            let seq = decode_u64(trees::STREAM, &key, &key)?;
            out.push((seq, self.row(trees::STREAM, &rid)?));
        }
        Ok(out)
    }

    /// Checks that every index entry points at a row that files it there and every row has all its entries, and
    /// that the counters match. Returns the problems found (empty = consistent). Scans everything: for tests and
    /// repair tools, not for the hot path.
    pub fn check_consistency(&self) -> Result<Vec<String>, IndexError> {
        let mut problems = Vec::new();
        let mut expected: BTreeMap<&'static str, std::collections::BTreeSet<Vec<u8>>> =
            BTreeMap::new();
        let mut by_type: BTreeMap<String, u64> = BTreeMap::new();
        let mut per_repo: BTreeMap<String, u64> = BTreeMap::new();
        let mut stats: BTreeMap<Vec<u8>, u64> = BTreeMap::new();
        let mut events = 0;
        for entry in self.events.iter() {
            let (key, value) = entry?;
            let row = decode_row(&key, &value)?;
            events += 1;
            *by_type.entry(row.event_type.clone()).or_default() += 1;
            *per_repo.entry(row.repo_rid.clone()).or_default() += 1;
            match self.bundles.get(&key)? {
                None => problems.push(format!("{}: no cached bundle", printable(&key))),
                Some(value) if self.keep_contents && !held::has_contents(&key, &value)? => {
                    problems.push(format!("{}: no cached contents", printable(&key)))
                }
                Some(_) => {}
            }
            let seq = stream_number(&key, &stored_meta(&key, &value)?)?;
            let Some(repo) = self.repo_number(&row.repo_rid)? else {
                problems.push(format!(
                    "{}: its repository {} has no row",
                    printable(&key),
                    row.repo_rid
                ));
                continue;
            };
            let e = Entries::of(&row, seq, repo)?;
            for key in e.global {
                expected.entry(trees::GLOBAL).or_default().insert(key);
            }
            for key in e.stats {
                *stats.entry(key).or_default() += 1;
            }
            expected
                .entry(trees::STREAM)
                .or_default()
                .insert(seq.to_be_bytes().to_vec());
            expected
                .entry(trees::BY_REPO_TIME)
                .or_default()
                .insert(e.by_repo_time);
            expected
                .entry(trees::BY_TYPE)
                .or_default()
                .insert(e.by_type);
            if let Some((by_commit, repo_commit, _)) = e.commit {
                expected
                    .entry(trees::BY_COMMIT)
                    .or_default()
                    .insert(by_commit);
                expected
                    .entry(trees::REPO_COMMITS)
                    .or_default()
                    .insert(repo_commit);
            }
        }
        for (name, tree) in [
            (trees::BY_REPO_TIME, &self.by_repo_time),
            (trees::BY_TYPE, &self.by_type),
            (trees::BY_COMMIT, &self.by_commit),
            (trees::REPO_COMMITS, &self.repo_commits),
            (trees::GLOBAL, &self.global),
            (trees::STREAM, &self.stream),
        ] {
            let want = expected.remove(name).unwrap_or_default();
            let mut have = std::collections::BTreeSet::new();
            for key in tree.iter().keys() {
                have.insert(key?.to_vec());
            }
            for key in have.difference(&want) {
                problems.push(format!(
                    "{name}: entry {} points at no row filed there",
                    printable(key)
                ));
            }
            for key in want.difference(&have) {
                problems.push(format!("{name}: entry {} is missing", printable(key)));
            }
        }
        let mut held_stats = BTreeMap::new();
        for entry in self.stats.iter() {
            let (key, value) = entry?;
            held_stats.insert(key.to_vec(), decode_u64(trees::STATS, &key, &value)?);
        }
        if held_stats != stats {
            problems.push(format!(
                "statistics counters differ from a recount of the rows: held {} counters, recount {}",
                held_stats.len(),
                stats.len()
            ));
        }
        let counts = self.counts()?;
        if counts.events != events {
            problems.push(format!(
                "count:events is {} but there are {events} rows",
                counts.events
            ));
        }
        if counts.by_type != by_type {
            problems.push(format!(
                "type counters {:?} but rows say {by_type:?}",
                counts.by_type
            ));
        }
        let repos = self.repositories()?;
        if counts.repositories != repos.len() as u64 {
            problems.push(format!(
                "count:repos is {} but there are {} rows",
                counts.repositories,
                repos.len()
            ));
        }
        for repo in &repos {
            let rows = per_repo.remove(&repo.repo_rid).unwrap_or(0);
            if repo.event_count != rows {
                problems.push(format!(
                    "{}: event_count {} but {rows} rows",
                    repo.repo_rid, repo.event_count
                ));
            }
        }
        for (repo, n) in per_repo {
            problems.push(format!("{n} events of {repo}, which has no repository row"));
        }
        // Every kept version belongs to a row, is older than the row's version, and within `history`.
        for key in self.history_tree.iter().keys() {
            let key = key?;
            let Some((rid, version)) = key
                .len()
                .checked_sub(5)
                .map(|at| (&key[..at], &key[at + 1..]))
            else {
                problems.push(format!("history key {} is too short", printable(&key)));
                continue;
            };
            let version = u32::from_be_bytes(version.try_into().unwrap_or([0xff; 4]));
            match self.events.get(rid)? {
                None => problems.push(format!(
                    "history of {} (version {version}) without a row",
                    printable(rid)
                )),
                Some(row) => {
                    let current = stored_meta(rid, &row)?.v;
                    if version >= current || current - version >= self.history {
                        problems.push(format!(
                            "history of {} keeps version {version}, but the row is version {current} and \
                             index.history is {}",
                            printable(rid),
                            self.history
                        ));
                    }
                }
            }
        }
        Ok(problems)
    }
}
