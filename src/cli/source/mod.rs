//! Where a command's answers come from: the running daemon's API ([`api`]), or the store opened here when it is
//! stopped ([`store`]). [`Source::connect`] decides which.

use super::*;
use crate::api::ActionSummary;
use crate::index::{Delivery, EventVersion};
use crate::protocol::GithubRepoRid;

mod api;
mod store;

pub(in crate::cli) use api::ApiAnswers;
pub(in crate::cli) use store::StoreAnswers;

/// The questions the query commands ask, each answered by the running daemon's API ([`ApiAnswers`]) or by the
/// store opened here ([`StoreAnswers`]). The commands are written once, against this trait, in [`super::answer`];
/// the arguments arrive parsed, so both sides refuse the same input with the same words.
pub(in crate::cli) trait Answers {
    async fn repositories(&self) -> anyhow::Result<Vec<Repository>>;
    async fn events(
        &self,
        repo: &GithubRepoRid,
        query: &EventQuery,
    ) -> anyhow::Result<Vec<EventRow>>;
    async fn event(&self, rid: &Rid) -> anyhow::Result<EventDetails>;
    async fn bundle(&self, rid: &Rid) -> anyhow::Result<BundleDetails>;
    async fn history(&self, rid: &Rid) -> anyhow::Result<Vec<EventVersion>>;
    /// The repository's row, and whether it was added now (not tracked already).
    async fn add_repository(&self, repo: &str) -> anyhow::Result<(Repository, bool)>;
    async fn remove_repository(&self, repo: &GithubRepoRid) -> anyhow::Result<()>;
    async fn summary(&self) -> anyhow::Result<Summary>;
    async fn rejected(&self, limit: usize, offset: usize) -> anyhow::Result<Vec<DeadLetter>>;
    async fn actions(&self) -> anyhow::Result<Vec<ActionSummary>>;
    async fn deliveries(
        &self,
        name: &str,
        limit: usize,
        offset: usize,
    ) -> anyhow::Result<Vec<Delivery>>;
    async fn redeliver(&self, name: &str, id: &str) -> anyhow::Result<Delivery>;
}

/// Where the answers come from, as [`Source::connect`] found out.
// One per command, so the size of the store variant does not matter.
#[allow(clippy::large_enum_variant)]
pub(in crate::cli) enum Source {
    /// The running daemon.
    Api(ApiAnswers),
    /// The store, opened by this process (the daemon is not running).
    Store(StoreAnswers),
}

/// Totals and the latest event.
#[derive(Debug, Clone, Serialize)]
pub(in crate::cli) struct Summary {
    pub(in crate::cli) events: u64,
    pub(in crate::cli) repositories: u64,
    pub(in crate::cli) event_types: std::collections::BTreeMap<String, u64>,
    pub(in crate::cli) latest_event: Option<EventRow>,
    /// From the statistics (`/stats`).
    pub(in crate::cli) top_repos: Vec<crate::index::RepoCount>,
    /// From the statistics (`/stats`).
    pub(in crate::cli) top_actors: Vec<crate::index::ActorCount>,
}

/// The part of `/stats` the summary shows.
#[derive(Debug, serde::Deserialize)]
pub(in crate::cli) struct StatsTops {
    pub(in crate::cli) top_repos: Vec<crate::index::RepoCount>,
    pub(in crate::cli) top_actors: Vec<crate::index::ActorCount>,
}

impl Source {
    pub(in crate::cli) async fn connect(
        local: &LocalStore,
        api: &Endpoint,
        cmd: &QueryCommand,
        verbose: bool,
    ) -> anyhow::Result<Source> {
        let base = api.base.clone();
        let client = api.client(Some(REQUEST_TIMEOUT))?;
        let health = format!("{base}{API_PREFIX}/health");
        let not_answering = match client.get(&health).send().await {
            Ok(response) if response.status().is_success() => {
                if verbose {
                    eprintln!("using the running daemon's API at {base}");
                }
                return Ok(Source::Api(ApiAnswers { client, base }));
            }
            Ok(response) => bail!(
                "{base} answers, but not as koi-github-indexer's API (HTTP {} on {health}): check --api or \
                 `api.listen`",
                response.status()
            ),
            Err(e) if e.is_connect() || e.is_timeout() => e,
            Err(e) => return Err(e).with_context(|| format!("calling {health}")),
        };
        let db_path = local.data_dir.join(crate::daemon::DB_DIR);
        if matches!(cmd, QueryCommand::Redeliver { .. }) {
            bail!(
                "no daemon answers at {base} ({}): `redeliver` needs the running daemon, which sends the delivery",
                error_chain(&not_answering)
            );
        }
        let writes = matches!(
            cmd,
            QueryCommand::AddRepo { .. }
                | QueryCommand::RemoveRepo { .. }
                | QueryCommand::Import { .. }
        );
        if !writes && !db_path.exists() {
            bail!(
                "no daemon answers at {base}, and there is no store at {}: nothing has been indexed with this \
                 data_dir (check --data-dir or `node.data_dir`)",
                db_path.display()
            );
        }
        if verbose {
            eprintln!(
                "no daemon answers at {base} ({}); opening the store at {} directly",
                error_chain(&not_answering),
                db_path.display()
            );
        }
        StoreAnswers::open(local).map(Source::Store).map_err(|e| {
            match e.downcast_ref::<crate::storage::StorageError>() {
                Some(crate::storage::StorageError::Locked { .. }) => anyhow!(
                    "the store at {} is locked by another process (a running koi-github-indexer?), but no daemon \
                     answers at {base} ({}). Check that --api or `api.listen` names the daemon's address, or wait \
                     until it has started",
                    db_path.display(),
                    error_chain(&not_answering)
                ),
                _ => e,
            }
        })
    }
}

/// A RID typed by the user.
pub(in crate::cli) fn parse_rid(text: &str) -> anyhow::Result<Rid> {
    Rid::parse(text.trim()).map_err(|e| {
        anyhow!("{e}; expected a RID such as orn:github.event:owner/name:id or orn:github.repo:owner/name")
    })
}

/// An event RID typed by the user.
pub(in crate::cli) fn parse_event_rid(text: &str) -> anyhow::Result<Rid> {
    Rid::parse(text.trim())
        .and_then(|rid| GithubEventRid::from_rid(&rid).map(|_| rid))
        .map_err(|e| {
            anyhow!("{e}; expected a GitHub event RID such as orn:github.event:owner/name:id")
        })
}

pub(in crate::cli) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let _ = write!(text, ": {s}");
        source = s.source();
    }
    text
}
