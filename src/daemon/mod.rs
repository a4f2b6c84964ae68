//! `koi-github-indexer run`: opens the store, starts the node, the query API, the actions and retention, and stops
//! them all in bounded time on SIGTERM/SIGINT (cancel polls, commit the batch in hand, flush sled, exit 0 within
//! `pipeline.shutdown_timeout`). The parts: `open` (start-up), `schedule` (the poll clock and retention),
//! `shutdown` (one token, one flush).

use std::sync::Arc;

use crate::actions::{self, Action};
use crate::config::{Config, Secrets};
use crate::index::Index;

mod open;
mod schedule;
mod shutdown;

use shutdown::{Shutdown, Tasks};

/// File name of the sled database inside the data directory.
pub const DB_DIR: &str = "db";

/// Runs the daemon until a shutdown signal, with the secrets `main` took from the environment before any thread
/// started ([`Config::take_secrets`]).
pub async fn run(config: Config, secrets: Secrets) -> anyhow::Result<()> {
    for warning in config.warnings() {
        tracing::warn!("{warning}");
    }
    let Secrets {
        key_password,
        action_secrets,
        api_token,
        nats_token,
    } = secrets;
    let opened = open::open(&config, key_password).await?;
    let node = opened.node(&config)?;
    let shutdown = Shutdown {
        token: node.cancellation(),
        db: opened.store.db.clone(),
        limit: config.pipeline.shutdown_timeout,
    };
    let ticks = schedule::spawn_schedule(&config, shutdown.token.clone()).await?;
    let api = opened
        .start_api(&config, &node, api_token, &shutdown.token)
        .await?;
    warn_about_unconfigured_actions(&opened.index, &config);
    let actions = config
        .actions
        .iter()
        .cloned()
        .zip(action_secrets)
        .map(|(action, secret)| Action::new(action, secret))
        .collect();
    let mut others = actions::spawn(&opened.index, actions, &opened.metrics, &shutdown.token)?;
    if let Some(nats) = &config.sink.nats {
        others.push(crate::sink::spawn(
            nats.clone(),
            nats_token,
            config.node.name.clone(),
            opened.index.clone(),
            opened.metrics.clone(),
            shutdown.token.clone(),
        ));
    }
    if let Some(keep) = config.index.retention {
        others.push(tokio::spawn(schedule::prune_on_schedule(
            opened.index.clone(),
            keep,
            shutdown.token.clone(),
        )));
    }
    let tasks = Tasks {
        node: tokio::spawn(Arc::clone(&node).run(ticks)),
        api,
        others,
    };
    shutdown.run_until_stopped(tasks, &node).await
}

/// Deliveries queued for an action that is no longer in the config stay queued (and unsent) until it is back:
/// say so at start, so that a renamed or removed action is not a silent loss.
fn warn_about_unconfigured_actions(index: &Index, config: &Config) {
    let deliveries = index.deliveries();
    let names = match deliveries.action_names() {
        Ok(names) => names,
        Err(e) => {
            tracing::warn!(error = %e, "cannot list the actions the store holds deliveries for");
            return;
        }
    };
    for name in names {
        if config.actions.iter().any(|a| a.name == name) {
            continue;
        }
        if let Ok(counts) = deliveries.counts(&name) {
            if counts.queued > 0 {
                tracing::warn!(
                    action = %name, queued = counts.queued,
                    "the store holds deliveries queued for an action that is not in the config: they are kept, \
                     unsent, until an [[action]] of that name is configured again"
                );
            }
        }
    }
}
