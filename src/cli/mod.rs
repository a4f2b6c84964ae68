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
use percent_encoding::utf8_percent_encode;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use unicode_width::UnicodeWidthChar;

use crate::api::StatusBody;
use crate::index::{
    parse_repo_ref, BundleDetails, Counts, DeadLetter, DeadLetters, EventDetails, EventQuery,
    EventRow, Index, IndexOptions, Repository,
};
use crate::protocol::{GithubEventRid, Rid};
use crate::storage::StoreOptions;

mod actions;
mod args;
pub mod http;
mod render;
mod snapshot;
mod source;
mod tail;
pub mod terminal;

pub use args::{QueryCommand, QueryOptions};
use render::*;
use source::*;

pub use http::Endpoint;
use terminal::visible;

/// Path of the API under its base URL.
const API_PREFIX: &str = crate::api::API_PREFIX;
/// How long a query to a running daemon may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Tables are at most this wide, so they fit an 80-column terminal.
const WIDTH: usize = 79;

/// How to print.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Output {
    /// JSON on stdout instead of a table.
    pub json: bool,
    /// Say on stderr whether the daemon's API or the store was used.
    pub verbose: bool,
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
        let filter = tail::TailFilter {
            repos: repo.clone(),
            event_types: event_type.clone(),
            actor: actor.clone(),
        };
        return tail::follow(api, &filter, *after, output).await;
    }
    match cmd {
        QueryCommand::Export { out, .. } => {
            return snapshot::export(cmd, local, api, out, output.verbose).await
        }
        QueryCommand::Import { input, .. } => {
            return snapshot::import(local, input, output.verbose).await
        }
        _ => {}
    }
    let text = match Source::connect(local, api, cmd, output.verbose).await? {
        Source::Api(daemon) => answer(cmd, &daemon, output).await?,
        Source::Store(store) => {
            let text = answer(cmd, &store, output).await?;
            store
                .index
                .flush_async()
                .await
                .context("flushing the store")?;
            text
        }
    };
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e).context("writing to stdout"),
        _ => Ok(()),
    }
}

/// A query answered from `source`, as the text to print: a table, or JSON with `--json`. Arguments are parsed
/// here, once for both sources.
async fn answer(
    cmd: &QueryCommand,
    source: &impl Answers,
    output: Output,
) -> anyhow::Result<String> {
    Ok(match cmd {
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
            let rows = source.events(&parse_repo_ref(repo)?, &query).await?;
            render(output, &rows, |rows| event_table(rows, &query))?
        }
        QueryCommand::EventDetails { rid, .. } => {
            let details = source.event(&parse_event_rid(rid)?).await?;
            render(output, &details, event_details)?
        }
        QueryCommand::Bundle { rid, .. } => {
            let details = source.bundle(&parse_rid(rid)?).await?;
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
            let repo = parse_repo_ref(repo)?;
            source.remove_repository(&repo).await?;
            let removed = repo.full_name();
            render(output, &serde_json::json!({"removed": removed}), |_| {
                format!("Removed {}\n", visible(removed))
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
            let versions = source.history(&parse_event_rid(rid)?).await?;
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
    })
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
