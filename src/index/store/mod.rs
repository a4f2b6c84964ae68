//! The sled keyspace behind [`Index`] (described in the [module doc](super)): writes in one transaction per
//! bundle, reads as prefix and range scans. One `Index` type, its jobs in one file each:
//!
//! * `mod.rs` — the type, and opening it (with the upgrades an older store needs);
//! * [`keys`] — tree names and key layouts; [`codec`] — rows and repository records as stored;
//! * [`prepare`] — a bundle made into what is written, once, off the writer;
//! * [`write`] — the transaction ([`write::Tx`]) and the writes: apply, forget, prune;
//! * [`repos`] — repository names, added and removed by hand, listed;
//! * [`read`] — the queries; [`types`] — the shapes they answer with, and the options;
//! * [`snapshot`] — export and import; [`upgrade`] — one step per schema version; [`check`] — the invariants.

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

mod check;
mod codec;
mod keys;
mod prepare;
mod read;
mod repos;
mod sink_log;
mod snapshot;
mod types;
mod upgrade;
mod write;

use self::{codec::*, keys::*, types::*, write::*};

// The row codec, for the rest of the index (and its tests).
#[cfg(test)]
pub(super) use codec::encode_row_json;
pub(super) use codec::{decode_row, stored_meta, StoredMeta};
pub use keys::SCHEMA_VERSION;
pub use prepare::{PreparedBundle, PreparedHeader};
pub use repos::{check_github_name, check_repository_name, parse_repo_ref, RepoRemoval};
pub use sink_log::{SinkEntry, SinkItem, SinkStatus};
pub use types::{
    BundleDetails, Counts, EventDetails, EventQuery, EventVersion, GlobalQuery, HeldBundle,
    IndexOptions, Repository, DEFAULT_HISTORY,
};

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
    /// Versions replaced by UPDATEs, bounded by `versions_kept` (the tree `index.history`).
    replaced_versions: Tree,
    /// Versions of an event kept, the current one included (`index.history`, at least 1).
    versions_kept: u32,
    /// The outbound webhook queue ([`deliveries`]).
    deliveries: Deliveries,
    /// Which new events are queued for which action.
    actions: Arc<[ActionFilter]>,
    /// Bumped after a commit that queued deliveries: the senders wait on it.
    queued: Arc<tokio::sync::watch::Sender<u64>>,
    /// Newly indexed events, to the stream's listeners.
    live: Arc<LiveFeed>,
    /// The repositories this node indexes (`index.repos`; empty: all).
    repo_filter: super::RepoFilter,
    /// The publish log ([`sink_log`]), written only when `sink_enabled`.
    sink_log: Tree,
    sink_enabled: bool,
    /// Bumped after a commit that logged entries for the sink.
    sink_logged: Arc<tokio::sync::watch::Sender<u64>>,
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
            replaced_versions: db.open_tree(trees::HISTORY)?,
            versions_kept: options.history.max(1),
            deliveries: Deliveries::open(db)?,
            actions: options.actions.into(),
            queued: Arc::new(tokio::sync::watch::Sender::new(0)),
            live: Arc::new(LiveFeed::new(0)),
            repo_filter: options.repos,
            sink_log: db.open_tree(sink_log::LOG_TREE)?,
            sink_enabled: options.sink_log,
            sink_logged: Arc::new(tokio::sync::watch::Sender::new(0)),
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
        if index.sink_enabled {
            index.log_unlogged_events()?;
        }
        let live = Arc::new(LiveFeed::new(index.last_seq()?));
        Ok(Index { live, ..index })
    }
}
