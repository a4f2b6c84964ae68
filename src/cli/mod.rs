//! The query commands: `list-repos`, `show-events`, `event-details`, `add-repo`, `summary`, `tail`, `rejected`,
//! `history`, `actions`, `deliveries`, `redeliver`, and the snapshots `export` and `import` ([`snapshot`]).
//!
//! sled lets one process open a store, so while the daemon runs the commands ask its API, and when it is stopped
//! they open the store themselves. [`run_query`] first calls `GET /health` at the API address (short connect
//! timeout): an answer means "use the API"; a refused or timed-out connection means "open the store". If the
//! store is then locked, a process holds it but does not answer on that address, and the error says exactly
//! that. With `-v` the choice is printed on stderr; stdout carries only the result (a table, or JSON with
//! `--json`).

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use unicode_width::UnicodeWidthChar;

use crate::api::StatusBody;
use crate::index::{
    parse_repo_ref, BundleDetails, Counts, DeadLetter, DeadLetters, EventDetails, EventQuery,
    EventRow, Index, IndexOptions, RepoRemoval, Repository,
};
use crate::protocol::{GithubEventRid, Rid};
use crate::storage::StoreOptions;

mod actions;
pub mod http;
mod snapshot;
pub mod terminal;

pub use http::Endpoint;
use terminal::visible;

/// Path of the API under its base URL.
const API_PREFIX: &str = crate::api::API_PREFIX;
/// How long a query to a running daemon may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Tables are at most this wide, so they fit an 80-column terminal.
const WIDTH: usize = 79;

/// Where a query command finds the daemon or the store, and how it prints. Only query commands take these, so
/// `run --help` and `check-config --help` do not list them.
#[derive(Debug, Clone, Default, PartialEq, Eq, clap::Args)]
pub struct QueryOptions {
    /// The data dir holding the store (default: `node.data_dir` of the config).
    #[arg(long)]
    pub data_dir: Option<std::path::PathBuf>,
    /// Base URL of the running daemon's API (default: `http://` + `api.listen` of the config).
    #[arg(long)]
    pub api: Option<String>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Say on stderr whether the daemon's API or the store was used.
    #[arg(long, short)]
    pub verbose: bool,
}

/// A query of the index.
#[derive(Debug, Clone, PartialEq, Eq, clap::Subcommand)]
pub enum QueryCommand {
    /// List the indexed repositories, most recently updated first.
    ListRepos {
        #[command(flatten)]
        opts: QueryOptions,
    },
    /// Show a repository's events, newest first.
    ShowEvents {
        #[command(flatten)]
        opts: QueryOptions,
        /// `owner/name` or `orn:github.repo:owner/name`.
        repo: String,
        /// Events per page (1–100).
        #[arg(long, short = 'n', default_value_t = 20, value_parser = clap::value_parser!(u16).range(1..=100))]
        limit: u16,
        /// Events to skip (for the next page).
        #[arg(long, default_value_t = 0)]
        offset: usize,
        /// Only events of this type (`push`, `issues`, `pull_request`, …).
        #[arg(long = "type")]
        event_type: Option<String>,
    },
    /// Show one event: its row and the bundle it came from.
    EventDetails {
        #[command(flatten)]
        opts: QueryOptions,
        /// The event RID, `orn:github.event:owner/name:id`.
        rid: String,
    },
    /// Show any bundle the node holds, event or repository: its manifest as received, how its hash was made, and
    /// its contents.
    Bundle {
        #[command(flatten)]
        opts: QueryOptions,
        /// The RID, e.g. `orn:github.event:owner/name:id` or `orn:github.repo:owner/name`.
        rid: String,
    },
    /// Track a repository (it is listed with no events until some arrive). Idempotent.
    AddRepo {
        #[command(flatten)]
        opts: QueryOptions,
        /// `owner/name`, `orn:github.repo:owner/name` or `https://github.com/owner/name`.
        repo: String,
    },
    /// Stop tracking a repository added by hand with `add-repo`, while no events of it have arrived.
    RemoveRepo {
        #[command(flatten)]
        opts: QueryOptions,
        /// `owner/name` or `orn:github.repo:owner/name`.
        repo: String,
    },
    /// Totals, the latest event, and events by type with percentages.
    Summary {
        #[command(flatten)]
        opts: QueryOptions,
    },
    /// Follow the live stream of newly indexed events (needs the running daemon); Ctrl-C stops.
    Tail {
        #[command(flatten)]
        opts: QueryOptions,
        /// Only this repository (`owner/name`); repeat for several.
        #[arg(long)]
        repo: Vec<String>,
        /// Only events of this type (`push`, `issues`, …); repeat for several.
        #[arg(long = "type")]
        event_type: Vec<String>,
        /// Only events by this GitHub login.
        #[arg(long)]
        actor: Option<String>,
        /// Start after this stream sequence number (replays what came since), instead of from now.
        #[arg(long)]
        after: Option<u64>,
    },
    /// An event's versions, newest first: each UPDATE keeps the one it replaced (`index.history` of them).
    History {
        #[command(flatten)]
        opts: QueryOptions,
        /// The event RID, `orn:github.event:owner/name:id`.
        rid: String,
    },
    /// The actions (`[[action]]`): where they POST, deliveries waiting, delivered and failed, the last error.
    Actions {
        #[command(flatten)]
        opts: QueryOptions,
    },
    /// An action's delivery log, newest first: each delivery's state, attempts and errors.
    Deliveries {
        #[command(flatten)]
        opts: QueryOptions,
        /// The action's name.
        name: String,
        /// Deliveries per page (1–100).
        #[arg(long, short = 'n', default_value_t = 20, value_parser = clap::value_parser!(u16).range(1..=100))]
        limit: u16,
        /// Deliveries to skip (for the next page).
        #[arg(long, default_value_t = 0)]
        offset: usize,
    },
    /// Send a delivery again (needs the running daemon): queued as a new delivery at the end of the action's queue.
    Redeliver {
        #[command(flatten)]
        opts: QueryOptions,
        /// The action's name.
        name: String,
        /// The delivery's id (from `deliveries`).
        id: String,
    },
    /// Write the whole index as NDJSON: through the running daemon's API without stopping it, or from the store
    /// when it is stopped. This is the backup.
    Export {
        #[command(flatten)]
        opts: QueryOptions,
        /// The file to write (replaced only once the export is complete), or `-` for stdout.
        #[arg(long)]
        out: String,
    },
    /// Load an export into the store (the daemon must be stopped). Events already held are deduplicated as when
    /// they come from the network; the data dir is created if needed.
    Import {
        #[command(flatten)]
        opts: QueryOptions,
        /// The export file, or `-` for stdin.
        #[arg(long = "in")]
        input: String,
    },
    /// Items the node received but could not use (dead letters), newest first: why, from whom, when.
    Rejected {
        #[command(flatten)]
        opts: QueryOptions,
        /// Letters per page (1–100).
        #[arg(long, short = 'n', default_value_t = 20, value_parser = clap::value_parser!(u16).range(1..=100))]
        limit: u16,
        /// Letters to skip (for the next page).
        #[arg(long, default_value_t = 0)]
        offset: usize,
    },
}

impl QueryCommand {
    /// The command's query options.
    pub fn options(&self) -> &QueryOptions {
        match self {
            QueryCommand::ListRepos { opts }
            | QueryCommand::ShowEvents { opts, .. }
            | QueryCommand::EventDetails { opts, .. }
            | QueryCommand::Bundle { opts, .. }
            | QueryCommand::AddRepo { opts, .. }
            | QueryCommand::RemoveRepo { opts, .. }
            | QueryCommand::Summary { opts }
            | QueryCommand::Tail { opts, .. }
            | QueryCommand::History { opts, .. }
            | QueryCommand::Actions { opts }
            | QueryCommand::Deliveries { opts, .. }
            | QueryCommand::Redeliver { opts, .. }
            | QueryCommand::Export { opts, .. }
            | QueryCommand::Import { opts, .. }
            | QueryCommand::Rejected { opts, .. } => opts,
        }
    }
}

/// How to print.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Output {
    /// JSON on stdout instead of a table.
    pub json: bool,
    /// Say on stderr whether the daemon's API or the store was used.
    pub verbose: bool,
}

/// How [`Source::call`] asks the API.
enum Method {
    Get,
    Post(Value),
    Delete,
}

/// Where the answers come from.
// One per command, so the size of the store variant does not matter.
#[allow(clippy::large_enum_variant)]
enum Source {
    /// The running daemon.
    Api {
        client: reqwest::Client,
        base: String,
    },
    /// The store, opened by this process (the daemon is not running).
    Store {
        index: Index,
        /// Kept open for `index`; flushed and closed on drop.
        _db: sled::Db,
        /// The store's lock, held while the command runs.
        _store: crate::storage::Store,
    },
}

/// The store a command opens itself when no daemon answers: where it is, and the config's settings for it, so
/// that the CLI reads and writes it as the daemon would (`index.keep_contents`, `index.history`, `[storage]`).
#[derive(Debug, Clone)]
pub struct LocalStore {
    /// `node.data_dir` (or `--data-dir`).
    pub data_dir: PathBuf,
    /// `[storage]`.
    pub store: StoreOptions,
    /// `[index]`. Never any actions: the CLI does not queue webhooks.
    pub index: IndexOptions,
}

impl LocalStore {
    /// The store in `data_dir` with the default settings (no config file was read).
    pub fn with_defaults(data_dir: PathBuf) -> LocalStore {
        LocalStore {
            data_dir,
            store: StoreOptions::default(),
            index: IndexOptions::default(),
        }
    }

    /// The store in `data_dir`, opened with `config`'s settings.
    pub fn from_config(data_dir: PathBuf, config: &crate::config::Config) -> LocalStore {
        LocalStore {
            data_dir,
            store: config.store_options(),
            index: IndexOptions {
                actions: Vec::new(),
                ..config.index_options()
            },
        }
    }
}

/// Runs a query command against the daemon at `api` (e.g. `http://127.0.0.1:8004`), or, if nothing answers
/// there, against the store in `local`.
pub async fn run_query(
    cmd: &QueryCommand,
    local: &LocalStore,
    api: &Endpoint,
    output: Output,
) -> anyhow::Result<()> {
    if let QueryCommand::Tail {
        repo,
        event_type,
        actor,
        after,
        ..
    } = cmd
    {
        let filter = TailFilter {
            repos: repo.clone(),
            event_types: event_type.clone(),
            actor: actor.clone(),
        };
        return tail(api, &filter, *after, output).await;
    }
    match cmd {
        QueryCommand::Export { out, .. } => {
            return snapshot::export(cmd, local, api, out, output.verbose).await
        }
        QueryCommand::Import { input, .. } => {
            return snapshot::import(cmd, local, api, input, output.verbose).await
        }
        _ => {}
    }
    let source = Source::connect(local, api, cmd, output.verbose).await?;
    let text = match cmd {
        QueryCommand::ListRepos { .. } => {
            let repos = source.repositories().await?;
            render(output, &repos, repo_table)?
        }
        QueryCommand::ShowEvents {
            repo,
            limit,
            offset,
            event_type,
            ..
        } => {
            let query = EventQuery {
                limit: usize::from(*limit),
                offset: *offset,
                event_type: event_type.clone(),
                since: None,
                until: None,
            };
            let rows = source.events(repo, &query).await?;
            render(output, &rows, |rows| event_table(rows, &query))?
        }
        QueryCommand::EventDetails { rid, .. } => {
            let details = source.event(rid).await?;
            render(output, &details, event_details)?
        }
        QueryCommand::Bundle { rid, .. } => {
            let details = source.bundle(rid).await?;
            render(output, &details, bundle_details)?
        }
        QueryCommand::AddRepo { repo, .. } => {
            let (row, created) = source.add_repository(repo).await?;
            render(output, &row, |row| {
                let verb = if created { "Added" } else { "Already tracked:" };
                format!(
                    "{verb} {} ({})\n",
                    visible(&row.full_name),
                    visible(&row.repo_rid)
                )
            })?
        }
        QueryCommand::RemoveRepo { repo, .. } => {
            let removed = source.remove_repository(repo).await?;
            render(output, &serde_json::json!({"removed": removed}), |_| {
                format!("Removed {}\n", visible(&removed))
            })?
        }
        QueryCommand::Summary { .. } => {
            let summary = source.summary().await?;
            render(output, &summary, summary_text)?
        }
        QueryCommand::Rejected { limit, offset, .. } => {
            let letters = source.rejected(usize::from(*limit), *offset).await?;
            render(output, &letters, rejected_table)?
        }
        QueryCommand::History { rid, .. } => {
            let versions = source.history(rid).await?;
            render(output, &versions, actions::history_text)?
        }
        QueryCommand::Actions { .. } => {
            let list = source.actions().await?;
            render(output, &list, actions::actions_table)?
        }
        QueryCommand::Deliveries {
            name,
            limit,
            offset,
            ..
        } => {
            let page = source
                .deliveries(name, usize::from(*limit), *offset)
                .await?;
            render(output, &page, actions::deliveries_table)?
        }
        QueryCommand::Redeliver { name, id, .. } => {
            let delivery = source.redeliver(name, id).await?;
            render(output, &delivery, |d| {
                format!(
                    "Queued delivery {} (sends {} again) for {}\n",
                    visible(&d.id),
                    visible(id),
                    visible(&d.event_rid)
                )
            })?
        }
        QueryCommand::Tail { .. } | QueryCommand::Export { .. } | QueryCommand::Import { .. } => {
            String::new() // handled above
        }
    };
    if let Source::Store { index, .. } = &source {
        index.flush_async().await.context("flushing the store")?;
    }
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e).context("writing to stdout"),
        _ => Ok(()),
    }
}

fn render<T: Serialize>(
    output: Output,
    value: &T,
    table: impl FnOnce(&T) -> String,
) -> anyhow::Result<String> {
    if output.json {
        Ok(serde_json::to_string_pretty(value)? + "\n")
    } else {
        Ok(table(value))
    }
}

/// Totals and the latest event.
#[derive(Debug, Clone, Serialize)]
struct Summary {
    events: u64,
    repositories: u64,
    event_types: std::collections::BTreeMap<String, u64>,
    latest_event: Option<EventRow>,
    /// From the statistics (`/stats`).
    top_repos: Vec<crate::index::RepoCount>,
    /// From the statistics (`/stats`).
    top_actors: Vec<crate::index::ActorCount>,
}

/// The part of `/stats` the summary shows.
#[derive(Debug, serde::Deserialize)]
struct StatsTops {
    top_repos: Vec<crate::index::RepoCount>,
    top_actors: Vec<crate::index::ActorCount>,
}

impl Source {
    async fn connect(
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
                return Ok(Source::Api { client, base });
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
        let store = crate::storage::open(&db_path, local.store)
            .map_err(|e| match e {
                crate::storage::StorageError::Locked { .. } => anyhow!(
                    "the store at {} is locked by another process (a running koi-github-indexer?), but no daemon \
                     answers at {base} ({}). Check that --api or `api.listen` names the daemon's address, or wait \
                     until it has started",
                    db_path.display(),
                    error_chain(&not_answering)
                ),
                other => anyhow!(other),
            })?;
        let db = store.db.clone();
        let index = Index::open_with(&db, local.index.clone())
            .with_context(|| format!("opening the index in {}", db_path.display()))?;
        Ok(Source::Store {
            index,
            _db: db,
            _store: store,
        })
    }

    /// GET (or POST `body`) `path` under the API prefix; a non-2xx answer becomes its `{"error"}` message.
    async fn call<T: DeserializeOwned>(
        client: &reqwest::Client,
        base: &str,
        path: &str,
        method: Method,
    ) -> anyhow::Result<(T, reqwest::StatusCode)> {
        let url = format!("{base}{API_PREFIX}{path}");
        let request = match method {
            Method::Get => client.get(&url),
            Method::Post(body) => client.post(&url).json(&body),
            // The API takes writes as JSON only; a DELETE has no body, but says so all the same.
            Method::Delete => client
                .delete(&url)
                .header(reqwest::header::CONTENT_TYPE, "application/json"),
        };
        let response = request
            .send()
            .await
            .with_context(|| format!("calling {url}"))?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .with_context(|| format!("reading the answer of {url}"))?;
        if !status.is_success() {
            let message = serde_json::from_slice::<Value>(&bytes)
                .ok()
                .and_then(|v| v.get("error").and_then(Value::as_str).map(str::to_owned))
                .unwrap_or_else(|| String::from_utf8_lossy(&bytes).into_owned());
            bail!("{message} (HTTP {status} from {url})");
        }
        let value = serde_json::from_slice(&bytes)
            .with_context(|| format!("unexpected answer from {url}"))?;
        Ok((value, status))
    }

    async fn get<T: DeserializeOwned>(
        client: &reqwest::Client,
        base: &str,
        path: &str,
    ) -> anyhow::Result<T> {
        Ok(Source::call(client, base, path, Method::Get).await?.0)
    }

    async fn rejected(&self, limit: usize, offset: usize) -> anyhow::Result<Vec<DeadLetter>> {
        match self {
            Source::Api { client, base } => {
                Source::get(
                    client,
                    base,
                    &format!("/rejected?limit={limit}&offset={offset}"),
                )
                .await
            }
            Source::Store { _db: db, .. } => {
                // Opened without a bound: reading must not trim what the daemon keeps.
                Ok(DeadLetters::open(db, u64::MAX)?.page(offset, limit, false)?)
            }
        }
    }

    async fn repositories(&self) -> anyhow::Result<Vec<Repository>> {
        match self {
            Source::Api { client, base } => Source::get(client, base, "/repositories").await,
            Source::Store { index, .. } => Ok(index.repositories()?),
        }
    }

    async fn events(&self, repo: &str, query: &EventQuery) -> anyhow::Result<Vec<EventRow>> {
        let repo = parse_repo_ref(repo)?;
        match self {
            Source::Api { client, base } => {
                let mut path = format!(
                    "/repositories/{}/events?limit={}&offset={}",
                    utf8_percent_encode(repo.rid().as_str(), NON_ALPHANUMERIC),
                    query.limit,
                    query.offset
                );
                if let Some(t) = &query.event_type {
                    let _ = write!(
                        path,
                        "&event_type={}",
                        utf8_percent_encode(t, NON_ALPHANUMERIC)
                    );
                }
                Source::get(client, base, &path).await
            }
            Source::Store { index, .. } => index
                .events_page(&repo, query)?
                .ok_or_else(|| anyhow!("repository {} is not indexed", repo.full_name())),
        }
    }

    async fn event(&self, rid: &str) -> anyhow::Result<EventDetails> {
        let rid = parse_event_rid(rid)?;
        match self {
            Source::Api { client, base } => {
                let path = format!(
                    "/events/{}",
                    utf8_percent_encode(rid.as_str(), NON_ALPHANUMERIC)
                );
                Source::get(client, base, &path).await
            }
            Source::Store { index, .. } => index
                .event(&rid)?
                .ok_or_else(|| anyhow!("event {rid} is not indexed")),
        }
    }

    async fn bundle(&self, rid: &str) -> anyhow::Result<BundleDetails> {
        let rid = Rid::parse(rid.trim()).map_err(|e| {
            anyhow!("{e}; expected a RID such as orn:github.event:owner/name:id or orn:github.repo:owner/name")
        })?;
        match self {
            Source::Api { client, base } => {
                let path = format!(
                    "/bundles/{}",
                    utf8_percent_encode(rid.as_str(), NON_ALPHANUMERIC)
                );
                Source::get(client, base, &path).await
            }
            Source::Store { index, .. } => index
                .bundle(&rid)?
                .ok_or_else(|| anyhow!("no bundle is held for {rid}")),
        }
    }

    async fn add_repository(&self, repo: &str) -> anyhow::Result<(Repository, bool)> {
        match self {
            Source::Api { client, base } => {
                let body = serde_json::json!({"repo": repo});
                let (row, status) =
                    Source::call(client, base, "/repositories", Method::Post(body)).await?;
                Ok((row, status == reqwest::StatusCode::CREATED))
            }
            Source::Store { index, .. } => Ok(index.add_repository(repo)?),
        }
    }

    /// Removes a repository added by hand; returns its name.
    async fn remove_repository(&self, repo: &str) -> anyhow::Result<String> {
        let name = parse_repo_ref(repo)?.full_name().to_owned();
        match self {
            Source::Api { client, base } => {
                let path = format!("/repositories/{name}");
                let _: Value = Source::call(client, base, &path, Method::Delete).await?.0;
                Ok(name)
            }
            Source::Store { index, .. } => match index.remove_repository(repo)? {
                RepoRemoval::Removed => Ok(name),
                RepoRemoval::NotFound => bail!("repository {name} is not indexed"),
                RepoRemoval::NotAddedByHand => bail!(
                    "repository {name} was not added by hand: its events came from the network, and it stays \
                     while they do"
                ),
                RepoRemoval::HasEvents(n) => bail!(
                    "repository {name} has {n} events now; it can be removed only while it has none"
                ),
            },
        }
    }

    async fn summary(&self) -> anyhow::Result<Summary> {
        match self {
            Source::Api { client, base } => {
                let status: StatusBody = Source::get(client, base, "/status").await?;
                let tops: StatsTops = Source::get(client, base, "/stats?top=5").await?;
                let details = status.details;
                Ok(Summary {
                    events: details.events,
                    repositories: details.repositories,
                    event_types: details.event_types,
                    latest_event: details.latest_event,
                    top_repos: tops.top_repos,
                    top_actors: tops.top_actors,
                })
            }
            Source::Store { index, .. } => {
                let Counts {
                    events,
                    repositories,
                    by_type,
                } = index.counts()?;
                let stats = index.stats(&crate::index::StatsQuery {
                    top: 5,
                    ..Default::default()
                })?;
                Ok(Summary {
                    events,
                    repositories,
                    event_types: by_type,
                    latest_event: index.latest_event()?,
                    top_repos: stats.top_repos,
                    top_actors: stats.top_actors,
                })
            }
        }
    }
}

/// An event RID typed by the user.
fn parse_event_rid(text: &str) -> anyhow::Result<Rid> {
    Rid::parse(text.trim())
        .and_then(|rid| GithubEventRid::from_rid(&rid).map(|_| rid))
        .map_err(|e| {
            anyhow!("{e}; expected a GitHub event RID such as orn:github.event:owner/name:id")
        })
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let _ = write!(text, ": {s}");
        source = s.source();
    }
    text
}

/// Terminal columns a character takes: 2 for East Asian wide characters and emoji, 0 for combining marks.
fn char_width(c: char) -> usize {
    UnicodeWidthChar::width(c).unwrap_or(0)
}

/// The first line of `text` in exactly `width` columns: control characters shown as escapes ([`visible`]), then
/// cut with `…`, or padded.
fn fit(text: &str, width: usize) -> String {
    let text = visible(text.lines().next().unwrap_or(""));
    let total: usize = text.chars().map(char_width).sum();
    let mut out = String::with_capacity(width + 4);
    let mut used = 0;
    if total <= width {
        out.push_str(&text);
        used = total;
    } else {
        for c in text.chars() {
            if used + char_width(c) > width.saturating_sub(1) {
                break;
            }
            out.push(c);
            used += char_width(c);
        }
        out.push('…');
        used += 1;
    }
    out.extend(std::iter::repeat_n(' ', width.saturating_sub(used)));
    out
}

/// `2026-11-20T14:15:02Z` → `2026-11-20 14:15`.
fn short_time(rfc3339: &str) -> String {
    rfc3339
        .get(..16)
        .map(|t| t.replacen('T', " ", 1))
        .unwrap_or_else(|| rfc3339.to_owned())
}

fn short_sha(sha: Option<&str>) -> &str {
    sha.and_then(|s| s.get(..7)).unwrap_or("-")
}

fn rejected_table(letters: &Vec<DeadLetter>) -> String {
    if letters.is_empty() {
        return "Nothing rejected.\n".into();
    }
    // 16 + 2 + 12 + 2 + 48 = 80 columns
    let mut out = format!("{:<16}  {:<12}  {}\n", "WHEN", "REASON", "RID / DETAIL");
    for l in letters {
        let what = if l.rid.is_empty() {
            l.detail.clone()
        } else {
            format!("{} — {}", l.rid, l.detail)
        };
        let _ = writeln!(
            out,
            "{}  {}  {}",
            fit(&short_time(&l.received_at), 16),
            fit(&l.reason, 12),
            fit(&what, WIDTH - 32).trim_end()
        );
    }
    out
}

fn repo_table(repos: &Vec<Repository>) -> String {
    if repos.is_empty() {
        return "No repositories indexed yet. Track one with `koi-github-indexer add-repo owner/name`.\n".into();
    }
    // 36 + 2 + 8 + 2 + 7 + 2 + 16 = 73 columns
    let mut out = format!(
        "{} {:>8}  {:<7}  {}\n",
        fit("REPOSITORY", 37),
        "EVENTS",
        "COMMIT",
        "LAST UPDATED"
    );
    for r in repos {
        let _ = writeln!(
            out,
            "{} {:>8}  {:<7}  {}",
            fit(&r.full_name, 37),
            r.event_count,
            short_sha(r.latest_commit_sha.as_deref()),
            short_time(&r.last_updated)
        );
    }
    out
}

fn event_table(rows: &Vec<EventRow>, query: &EventQuery) -> String {
    if rows.is_empty() {
        return match (&query.event_type, query.offset) {
            (_, offset) if offset > 0 => format!("No events after the first {offset}.\n"),
            (Some(kind), _) => format!(
                "No events of type `{kind}` in this repository.\nEvent types are lower-case and compared exactly \
                 (`push`, `pull_request`, …);\n`summary` lists the types indexed.\n"
            ),
            (None, _) => "No events indexed for this repository yet.\n".into(),
        };
    }
    const TIME: usize = 16;
    const TYPE: usize = 13;
    let summary_width = WIDTH - TIME - TYPE - 4;
    let mut out = format!(
        "{}  {}  SUMMARY\n",
        fit("TIME (UTC)", TIME),
        fit("TYPE", TYPE)
    );
    for row in rows {
        let _ = writeln!(
            out,
            "{}  {}  {}",
            fit(&short_time(&row.timestamp), TIME),
            fit(&row.event_type, TYPE),
            fit(&row.summary, summary_width).trim_end()
        );
    }
    if rows.len() == query.limit {
        let _ = writeln!(
            out,
            "(more may follow: --offset {})",
            query.offset + rows.len()
        );
    }
    out
}

fn event_details(details: &EventDetails) -> String {
    let row = &details.row;
    let mut out = String::new();
    for (name, value) in [
        ("event", Some(row.event_rid.as_str())),
        ("repository", Some(row.repo_rid.as_str())),
        ("type", Some(row.event_type.as_str())),
        ("action", row.action.as_deref()),
        ("actor", row.actor.as_deref()),
        ("time", Some(row.timestamp.as_str())),
        ("commit", row.commit_sha.as_deref()),
        ("summary", Some(row.summary.as_str())),
        (
            "bundle hash",
            Some(details.bundle.manifest.sha256_hash.as_str()),
        ),
        (
            "received",
            Some(&*details.bundle.manifest.timestamp.to_string()),
        ),
    ] {
        if let Some(value) = value {
            let _ = writeln!(out, "{name:<12} {}", visible(value));
        }
    }
    match &details.bundle.contents {
        Some(contents) => {
            let contents = serde_json::to_value(contents)
                .map(|value| terminal::visible_json(&value))
                .unwrap_or_default();
            let _ = writeln!(out, "contents:\n{contents}");
        }
        None => {
            let _ = writeln!(
                out,
                "contents:    not kept (index.keep_contents = false, or pruned by retention)"
            );
        }
    }
    out
}

fn bundle_details(details: &BundleDetails) -> String {
    let scheme = match details.hash_scheme {
        Some(crate::protocol::HashScheme::Rfc8785) => "rfc8785",
        Some(crate::protocol::HashScheme::Legacy) => "legacy (rid-lib before 3.2.7)",
        None => "unknown (contents not kept)",
    };
    let mut out = String::new();
    for (name, value) in [
        ("rid", details.rid.as_str()),
        ("received", &*details.manifest.timestamp.to_string()),
        ("hash", details.manifest.sha256_hash.as_str()),
        ("hash scheme", scheme),
    ] {
        let _ = writeln!(out, "{name:<12} {}", visible(value));
    }
    match &details.contents {
        Some(contents) => {
            let contents = serde_json::to_value(contents)
                .map(|value| terminal::visible_json(&value))
                .unwrap_or_default();
            let _ = writeln!(out, "contents:\n{contents}");
        }
        None => {
            let _ = writeln!(
                out,
                "contents:    not kept (index.keep_contents = false, or pruned by retention)"
            );
        }
    }
    out
}

/// What `tail` asks the stream for.
struct TailFilter {
    repos: Vec<String>,
    event_types: Vec<String>,
    actor: Option<String>,
}

/// Follows `GET /stream` (Server-Sent Events), printing each event as it is indexed. When the stream ends (the
/// daemon restarted, or this terminal fell behind) it reconnects after the last event seen, so nothing is
/// skipped or printed twice.
async fn tail(
    api: &Endpoint,
    filter: &TailFilter,
    mut after: Option<u64>,
    output: Output,
) -> anyhow::Result<()> {
    let client = api.client(None)?;
    let mut query: Vec<(&str, String)> = Vec::new();
    for repo in &filter.repos {
        query.push(("repo", repo.clone()));
    }
    for kind in &filter.event_types {
        query.push(("event_type", kind.clone()));
    }
    if let Some(actor) = &filter.actor {
        query.push(("actor", actor.clone()));
    }
    let url = api.url("/stream");
    let mut connected_once = false;
    loop {
        let mut request = client.get(&url).query(&query);
        if let Some(after) = after {
            request = request.query(&[("after", after)]);
        }
        let response = match request.send().await {
            Ok(response) => response,
            Err(e) if connected_once && (e.is_connect() || e.is_timeout()) => {
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
            Err(e) => {
                return Err(anyhow!(
                    "cannot follow the live stream at {url}: {}. `tail` needs the running daemon (check --api or \
                     `api.listen`)",
                    error_chain(&e)
                ))
            }
        };
        if !response.status().is_success() {
            let status = response.status();
            let body = response.text().await.unwrap_or_default();
            let message = serde_json::from_str::<Value>(&body)
                .ok()
                .and_then(|v| v.get("error").and_then(Value::as_str).map(str::to_owned))
                .unwrap_or(body);
            bail!("{message} (HTTP {status} from {url})");
        }
        if !connected_once && output.verbose {
            eprintln!("following {url}");
        }
        connected_once = true;
        let mut response = response;
        let mut buffer = String::new();
        while let Ok(Some(chunk)) = response.chunk().await {
            buffer.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = buffer.find("\n\n") {
                let block: String = buffer.drain(..end + 2).collect();
                let (mut id, mut event, mut data) = (None, "message", String::new());
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("id:") {
                        id = v.trim().parse::<u64>().ok();
                    } else if let Some(v) = line.strip_prefix("event:") {
                        event = if v.trim() == "lagged" {
                            "lagged"
                        } else {
                            "github_event"
                        };
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim_start());
                    }
                }
                if event == "github_event" && !data.is_empty() {
                    if let Some(id) = id {
                        after = Some(id);
                    }
                    let line = if output.json {
                        data + "\n"
                    } else {
                        serde_json::from_str::<Value>(&data)
                            .map(|row| tail_line(&row))
                            .unwrap_or_default()
                    };
                    let mut stdout = std::io::stdout().lock();
                    if let Err(e) = stdout
                        .write_all(line.as_bytes())
                        .and_then(|()| stdout.flush())
                    {
                        if e.kind() == std::io::ErrorKind::BrokenPipe {
                            return Ok(());
                        }
                        return Err(e).context("writing to stdout");
                    }
                }
            }
        }
        // The stream ended: reconnect after the last event seen.
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// One event as `tail` prints it: time, repository, type, actor, summary.
fn tail_line(row: &Value) -> String {
    let text = |key: &str| row.get(key).and_then(Value::as_str).unwrap_or("-");
    format!(
        "{}  {}  {}  {}  {}\n",
        short_time(text("timestamp")),
        fit(text("repo"), 24),
        fit(text("event_type"), 13),
        fit(text("actor"), 14),
        visible(text("summary"))
    )
}

fn summary_text(s: &Summary) -> String {
    let mut out = format!(
        "Events:        {}\nRepositories:  {}\n",
        s.events, s.repositories
    );
    match &s.latest_event {
        Some(e) => {
            let _ = writeln!(
                out,
                "Latest event:  {}",
                fit(
                    &format!("{}  {}", short_time(&e.timestamp), e.summary),
                    WIDTH - 15
                )
                .trim_end()
            );
        }
        None => out.push_str("Latest event:  none yet\n"),
    }
    if !s.event_types.is_empty() {
        out.push_str("\nEVENT TYPE                  EVENTS   SHARE\n");
        let mut types: Vec<_> = s.event_types.iter().collect();
        types.sort_by(|a, b| b.1.cmp(a.1).then_with(|| a.0.cmp(b.0)));
        let total = s.event_types.values().sum::<u64>().max(1) as f64;
        for (name, n) in types {
            let _ = writeln!(
                out,
                "{} {:>7}  {:>5.1}%",
                fit(name, 26),
                n,
                *n as f64 * 100.0 / total
            );
        }
    }
    if !s.top_repos.is_empty() {
        out.push_str("\nMOST ACTIVE REPOSITORIES    EVENTS\n");
        for r in &s.top_repos {
            let _ = writeln!(out, "{} {:>7}", fit(&r.repo, 26), r.count);
        }
    }
    if !s.top_actors.is_empty() {
        out.push_str("\nMOST ACTIVE ACTORS          EVENTS\n");
        for a in &s.top_actors {
            let _ = writeln!(out, "{} {:>7}", fit(&a.actor, 26), a.count);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fit_cuts_and_pads_by_columns() {
        assert_eq!(fit("abc", 5), "abc  ");
        assert_eq!(fit("abcdef", 5), "abcd…");
        assert_eq!(fit("naïve café ☕ ok", 13), "naïve café … ");
        assert_eq!(fit("naïve café ☕", 13), "naïve café ☕");
        assert_eq!(fit("☕☕☕☕", 5), "☕☕…");
        assert_eq!(fit("☕☕☕☕", 6), "☕☕… ");
        assert_eq!(fit("line one\nline two", 20).trim_end(), "line one");
        assert_eq!(fit("a\u{1b}[2J\rb", 20).trim_end(), "a\\u{1b}[2J\\rb");
    }

    #[test]
    fn tables_fit_80_columns() {
        let row = EventRow {
            event_rid: "orn:github.event:a/b:1".into(),
            repo_rid: "orn:github.repo:a/b".into(),
            event_type: "pull_request_review_comment".into(),
            timestamp: "2026-11-20T14:15:02Z".into(),
            time_source: crate::index::TimeSource::Event,
            commit_sha: None,
            summary: "x".repeat(200),
            bundle_rid: "orn:github.event:a/b:1".into(),
            action: None,
            actor: None,
        };
        let text = event_table(&vec![row.clone()], &EventQuery::default());
        let repo = Repository {
            repo_rid: "orn:github.repo:a/b".into(),
            full_name: format!("{}/{}", "o".repeat(39), "n".repeat(100)),
            repo_url: String::new(),
            first_indexed: "2026-11-20T14:15:02Z".into(),
            last_updated: "2026-11-20T14:15:02Z".into(),
            latest_commit_sha: Some("f".repeat(40)),
            event_count: 12_345_678,
            description: None,
            default_branch: None,
            stars: None,
            forks: None,
            license: None,
        };
        let summary = Summary {
            events: 1,
            repositories: 1,
            event_types: [("x".repeat(60), 1)].into_iter().collect(),
            latest_event: Some(row),
            top_repos: vec![crate::index::RepoCount {
                repo: "o".repeat(39) + "/" + &"r".repeat(100),
                count: 1,
            }],
            top_actors: vec![crate::index::ActorCount {
                actor: "a".repeat(39),
                count: 1,
            }],
        };
        for text in [text, repo_table(&vec![repo]), summary_text(&summary)] {
            for line in text.lines() {
                assert!(line.chars().map(char_width).sum::<usize>() <= 80, "{line}");
            }
        }
    }
}
