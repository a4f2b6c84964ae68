//! The index: every `orn:github.event` and `orn:github.repo` bundle the node receives, as rows that can be queried
//! fast, plus the bundles themselves (the RID cache).
//!
//! * [`github`] — pure parsing of bundle contents into an [`EventRow`] and [`RepoDetails`].
//! * [`store`] — the sled keyspace and [`Index`], its writes (apply, forget, prune, add a repository) and queries.
//! * [`dead_letters`] — the bounded tree of items the node received but could not use ([`DeadLetters`]).
//! * [`error`] — [`IndexError`].
//!
//! # Keyspace
//!
//! The index lives in the daemon's one sled database, beside the node's trees, in trees named `index.*`
//! (`␀` is a 0 byte; `time` is 8 big-endian bytes that sort newest first: the event's µs since the epoch, sign bit
//! flipped, all bits inverted; `repo` is the repository's number, u32 BE, given when it is first written; `seq` is
//! the event's stream number, u64 BE, which `index.stream` turns into its RID — so an index key is 20 bytes plus
//! its text part, short enough for sled to keep inline):
//!
//! | tree | key | value |
//! |---|---|---|
//! | `index.meta` | `schema_version` | u32 BE ([`SCHEMA_VERSION`]) |
//! | | `count:events`, `count:repos`, `type:<event_type>`, `seq:last`, `repo_id:last` | u64 BE counters |
//! | `index.bundles` | RID | manifest JSON and zstd-compressed contents JSON as one value ([`held`]; the dedupe state; contents dropped when retention prunes the event or `keep_contents` is off) |
//! | `index.events` | event RID | the row, compact JSON with its stream sequence number `q`, received time `r` (µs) and version `v` |
//! | `index.repos` | repo RID | repository record JSON (details, first/last update, event count, its number `id`) |
//! | `index.by_repo_time` | `repo time seq` | empty |
//! | `index.by_type` | `event_type ␀ repo time seq` | empty |
//! | `index.by_commit` | `sha ␀ time seq` | empty |
//! | `index.dead_letters` | id (u64 BE, arrival order) | [`DeadLetter`] JSON (bounded: oldest dropped) |
//! | `index.repo_commits` | `repo time seq` | SHA (a repository's latest commit is its first entry) |
//! | `index.global` | `T ␀ time seq`, `a ␀ actor ␀ time seq`, `y ␀ type ␀ time seq` | empty ([`feeds`]) |
//! | `index.stats` | `d day type`, `r day repo`, `u day actor`, `R repo ␀ day type`, `U repo ␀ day actor` | u64 BE counters ([`feeds`]) |
//! | `index.stream` | sequence number (u64 BE) | event RID |
//! | `index.history` | `event_rid ␀ version` (u32 BE) | a version an UPDATE replaced: received time (i64 BE µs) and the held value (bounded by `index.history`) |
//! | `actions` | see [`deliveries`] | the outbound webhook queue and log, written in the same transaction as the event |
//!
//! Every write (apply, forget, prune, add) is one sled transaction over all these trees: a row and its index
//! entries and counters change together or not at all, and the dedupe check (same hash → unchanged, older →
//! stale) is inside the same transaction, so an inbox replayed after a crash never counts an event twice.
//! [`Index::check_consistency`] verifies the invariants (the property test runs it after random sequences).

pub mod dead_letters;
pub mod deliveries;
pub mod error;
pub mod export;
pub mod feeds;
pub mod github;
pub mod held;
pub mod live;
pub mod repo_filter;
pub(crate) mod row_codec;
pub mod store;

pub use dead_letters::{DeadLetter, DeadLetters, Rejection};
pub use deliveries::{
    ActionCounts, ActionFilter, Attempt, AttemptOutcome, Deliveries, Delivery, DeliveryState,
};
pub use error::IndexError;
pub use feeds::{sampled, ActorCount, DayStats, RepoCount, Stats, StatsQuery};
pub use github::{
    parse_event, parse_repo_bundle, repo_details_from_event, EventRow, RepoDetails, TimeSource,
};
pub use live::{stream_json, LiveBatch, LiveEvent};
pub use repo_filter::RepoFilter;
pub use store::{
    check_github_name, parse_repo_ref, BundleDetails, Counts, EventDetails, EventQuery,
    EventVersion, GlobalQuery, HeldBundle, Index, IndexOptions, PreparedBundle, PreparedHeader,
    RepoRemoval, Repository, SinkEntry, SinkItem, SinkStatus, DEFAULT_HISTORY, SCHEMA_VERSION,
};

/// What applying a bundle did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApplyOutcome {
    /// Written (row, index entries, cached bundle).
    Indexed {
        /// No row (or, for a repository, no bundle) was held for the RID before.
        new: bool,
    },
    /// The manifest held has the same hash: nothing to do.
    Unchanged,
    /// The manifest held is newer: dropped.
    Stale,
    /// Not a RID type the index keeps.
    Ignored,
    /// For a repository outside `index.repos`: dropped (another node indexes it), counted, not a dead letter.
    Filtered,
    /// A RID of an indexed type that is malformed (e.g. `orn:github.event:` without an event id): dropped, with
    /// the reason. Retrying cannot help.
    BadRid(String),
    /// A bundle that cannot be indexed (the store refused it): dropped, with the reason.
    Invalid(String),
}

#[cfg(test)]
mod tests;
