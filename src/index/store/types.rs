//! The public shapes of what the index holds and answers: repositories, events, bundles, queries, options.

use super::*;

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
pub(super) fn held_hash_scheme(
    manifest: &Manifest,
    contents: Option<&Contents>,
) -> Option<HashScheme> {
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
    /// The repositories indexed (`index.repos`); bundles of others are dropped as [`ApplyOutcome::Filtered`].
    pub repos: crate::index::RepoFilter,
    /// Keep the publish log a JetStream sink reads (`[sink.nats]` configured).
    pub sink_log: bool,
}

/// Versions kept per event when `index.history` is not set.
pub const DEFAULT_HISTORY: u32 = 10;

impl Default for IndexOptions {
    fn default() -> Self {
        IndexOptions {
            keep_contents: true,
            history: DEFAULT_HISTORY,
            actions: Vec::new(),
            repos: Default::default(),
            sink_log: false,
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
