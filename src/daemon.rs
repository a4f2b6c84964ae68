//! `koi-github-indexer run`: wires configuration, identity, storage, the node and the query API together, and
//! shuts them down in bounded time on SIGTERM/SIGINT (cancel polls, commit the batch in hand, flush sled, exit 0
//! within `pipeline.shutdown_timeout`).

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::actions::{self, Action};
use crate::api::NodeStatus;
use crate::config::{Config, Secrets};
use crate::index::{DeadLetters, Index};
use crate::node::identity::Identity;
use crate::node::inbox::Inbox;
use crate::node::{Node, NodeTelemetry};
use crate::protocol::Timestamp;
use crate::storage;
use crate::telemetry::{self, Metrics, NodeStarted, PollLog};

/// File name of the sled database inside the data directory.
pub const DB_DIR: &str = "db";

/// Runs the daemon until a shutdown signal, with the secrets `main` took from the environment before any thread
/// started ([`Config::take_secrets`]).
pub async fn run(config: Config, secrets: Secrets) -> anyhow::Result<()> {
    for warning in config.warnings() {
        tracing::warn!("{warning}");
    }
    let Secrets {
        key_password: password,
        action_secrets: secrets,
        api_token,
    } = secrets;
    let data_dir = config.prepare_data_dir()?;
    if let Some(warning) = crate::config::data_dir_exposure(&data_dir) {
        tracing::warn!("{warning}");
    }
    // The key's PBKDF2 decryption, opening sled and any schema migration are slow and blocking: off the runtime.
    let (identity, store, index) = {
        let data_dir = data_dir.clone();
        let name = config.node.name.clone();
        let store_options = config.store_options();
        let options = config.index_options();
        tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
            let identity = Identity::load_or_create(&data_dir, &name, &password)?;
            let db_path = data_dir.join(DB_DIR);
            let store = storage::open(&db_path, store_options)?;
            let index = Index::open_with(&store.db, options)
                .with_context(|| format!("cannot open the index in {}", db_path.display()))?;
            Ok((identity, store, index))
        })
        .await
        .context("start-up task failed")??
    };
    if identity.created {
        tracing::info!(key = %identity.key_path.display(), "created a new node key (new identity)");
    }
    let db = store.db.clone();
    let db_path = data_dir.join(DB_DIR);
    let dead_letters = DeadLetters::open(&db, config.pipeline.dead_letters)
        .with_context(|| format!("cannot open the dead letters in {}", db_path.display()))?;

    let settings = config.node_settings();
    let metrics = Metrics::new();
    let poll_log = PollLog::open(&db)
        .with_context(|| format!("cannot open the poll log in {}", db_path.display()))?;
    let node_telemetry = NodeTelemetry {
        metrics: metrics.clone(),
        poll_log: poll_log.clone(),
    };
    let inbox = Inbox::open(&store.inbox_dir(), &db)
        .with_context(|| format!("cannot open the inbox in {}", store.inbox_dir().display()))?;
    let node = Node::new(
        settings,
        identity.clone(),
        db.clone(),
        inbox,
        index.clone(),
        dead_letters.clone(),
        node_telemetry,
    )?;
    let shutdown = node.cancellation();
    let ticks = spawn_schedule(&config, shutdown.clone()).await?;

    let api_ctx = crate::api::ApiContext {
        index: index.clone(),
        status: {
            let node = Arc::clone(&node);
            let letters = dead_letters.clone();
            let name = config.node.name.clone();
            let data_dir = data_dir.display().to_string();
            Arc::new(move || NodeStatus {
                node_name: name.clone(),
                node_rid: node.rid().to_string(),
                node_type: "PARTIAL".into(),
                data_dir: data_dir.clone(),
                inbox: node.inbox_depth() as u64,
                rejected: letters.len(),
                neighbours: node.neighbour_status(),
            })
        },
        metrics: metrics.clone(),
        poll_log,
        dead_letters,
        shutdown: shutdown.clone(),
        stream_keep_alive: (config.api.idle_timeout / 2).min(std::time::Duration::from_secs(15)),
        actions: Arc::new(
            config
                .actions
                .iter()
                .map(|a| crate::api::ActionInfo {
                    name: a.name.clone(),
                    url: actions::shown_url(&a.url),
                })
                .collect(),
        ),
        node_rid: identity.rid.to_string(),
        access: crate::api::Access {
            allowed_hosts: config.api.allowed_hosts.clone(),
            token: api_token,
        },
    };
    let listener = tokio::net::TcpListener::bind(config.api.listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {} (`api.listen`): is the port in use?",
                config.api.listen
            )
        })?;
    let api_addr = listener
        .local_addr()
        .context("reading the API's listening address")?;
    let api_task = tokio::spawn(crate::api::server::serve(
        listener,
        api_ctx,
        (&config.api).into(),
        shutdown.clone(),
    ));
    NodeStarted {
        node_rid: identity.rid.as_str(),
        data_dir: &data_dir.display().to_string(),
        api_addr: &api_addr.to_string(),
        neighbours: &node
            .neighbour_status()
            .into_iter()
            .map(|n| n.rid)
            .collect::<Vec<_>>(),
    }
    .emit(&metrics);
    // systemd (Type=notify): ready once the API answers. A no-op outside systemd.
    telemetry::notify_ready();

    warn_about_unconfigured_actions(&index, &config);
    let action_tasks = actions::spawn(
        &index,
        config
            .actions
            .iter()
            .cloned()
            .zip(secrets)
            .map(|(config, secret)| Action::new(config, secret))
            .collect(),
        &metrics,
        &shutdown,
    )?;
    let mut node_task = tokio::spawn(Arc::clone(&node).run(ticks));
    let retention_task = config
        .index
        .retention
        .map(|keep| tokio::spawn(prune_on_schedule(index.clone(), keep, shutdown.clone())));
    let ended_by_itself = tokio::select! {
        _ = wait_for_signal() => {
            tracing::info!("shutdown signal received");
            None
        }
        // The node stops by itself only on a fatal error: shut everything else down too.
        ended = &mut node_task => Some(ended),
    };
    telemetry::notify_stopping();
    shutdown.cancel();
    if let Some(ended) = ended_by_itself {
        let _ = api_task.await;
        db.flush_async().await.context("final flush of the store")?;
        ended.context("node task panicked")??;
        anyhow::bail!("the node stopped by itself");
    }
    let limit = config.pipeline.shutdown_timeout;
    let stopped = tokio::time::timeout(limit, async {
        let left = node_task.await.context("node task panicked")??;
        if let Some(task) = retention_task {
            let _ = task.await;
        }
        for task in action_tasks {
            let _ = task.await;
        }
        let _ = api_task.await;
        anyhow::Ok(left)
    })
    .await;
    let flushed = db.flush_async().await.context("final flush of the store");
    match stopped {
        Ok(Ok(left)) => {
            flushed?;
            tracing::info!(
                left_in_inbox = left,
                "stopped cleanly; events left in the inbox are indexed at the next start"
            );
            Ok(())
        }
        Ok(Err(e)) => Err(e),
        Err(_) => {
            flushed?;
            tracing::warn!(
                timeout = %humantime::format_duration(limit),
                left_in_inbox = node.inbox_depth(),
                "shutdown took longer than pipeline.shutdown_timeout; stopping now (what is not indexed stays in \
                 the inbox for the next start)"
            );
            Ok(())
        }
    }
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

/// How often retention pruning runs: hourly, or more often when the retention itself is short.
fn prune_period(retention: Duration) -> Duration {
    (retention / 10).clamp(Duration::from_secs(1), Duration::from_secs(3600))
}

/// `[index] retention`: at start and then every [`prune_period`], removes events older than `keep` (rows and index
/// entries, in transactions of a few hundred; the manifests stay as tombstones so catch-up does not fetch them
/// again). A failure is logged and retried on the next round.
async fn prune_on_schedule(index: Index, keep: Duration, shutdown: CancellationToken) {
    let mut timer = tokio::time::interval(prune_period(keep));
    timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = timer.tick() => {}
            _ = shutdown.cancelled() => return,
        }
        let Some(cutoff) = chrono::Duration::from_std(keep)
            .ok()
            .and_then(|keep| chrono::Utc::now().checked_sub_signed(keep))
        else {
            continue; // a retention longer than the calendar: nothing can be old enough
        };
        let cutoff = Timestamp::from(cutoff);
        let index = index.clone();
        match tokio::task::spawn_blocking(move || index.prune_older_than(cutoff)).await {
            Ok(Ok(0)) => {
                tracing::debug!(retention = %humantime::format_duration(keep), "retention: nothing to prune")
            }
            Ok(Ok(pruned)) => tracing::info!(
                pruned, retention = %humantime::format_duration(keep), cutoff = %cutoff.to_rfc3339_utc(),
                "retention: pruned events older than the cutoff"
            ),
            Ok(Err(e)) => tracing::error!(error = %e, "retention: pruning failed; will retry"),
            Err(e) => tracing::error!(error = %e, "retention: pruning task failed; will retry"),
        }
    }
}

/// Ticks on `poll.interval`, or on `poll.cron` when set. A tick that finds the previous one unconsumed is dropped.
async fn spawn_schedule(
    config: &Config,
    shutdown: CancellationToken,
) -> anyhow::Result<mpsc::Receiver<()>> {
    let (tx, rx) = mpsc::channel(1);
    if let Some(expr) = config.poll.cron.clone() {
        let scheduler = tokio_cron_scheduler::JobScheduler::new()
            .await
            .context("starting the cron scheduler")?;
        let job_tx = tx.clone();
        let job = tokio_cron_scheduler::Job::new_async(expr.as_str(), move |_, _| {
            let tx = job_tx.clone();
            Box::pin(async move {
                let _ = tx.try_send(());
            })
        })
        .map_err(|e| anyhow::anyhow!("poll.cron `{expr}`: {e:?}"))?;
        scheduler
            .add(job)
            .await
            .map_err(|e| anyhow::anyhow!("poll.cron: {e:?}"))?;
        scheduler
            .start()
            .await
            .map_err(|e| anyhow::anyhow!("poll.cron: {e:?}"))?;
        let _ = tx.try_send(()); // poll once at start rather than waiting for the first cron beat
        tokio::spawn(async move {
            let mut scheduler = scheduler;
            shutdown.cancelled().await;
            let _ = scheduler.shutdown().await;
            drop(tx);
        });
    } else {
        let interval = config.poll.interval;
        tokio::spawn(async move {
            let mut timer = tokio::time::interval(interval);
            timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            loop {
                tokio::select! {
                    _ = timer.tick() => { let _ = tx.try_send(()); }
                    _ = shutdown.cancelled() => break,
                }
            }
        });
    }
    Ok(rx)
}

/// Resolves on SIGTERM or SIGINT.
async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
