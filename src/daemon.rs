//! `koi-github-indexer run`: wires configuration, identity, storage, the node and the query API together, and
//! shuts them down in order on SIGTERM/SIGINT (stop polling, drain the inbox, flush sled, exit 0).

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::{mpsc, watch};

use crate::config::Config;
use crate::index::Index;
use crate::node::identity::Identity;
use crate::node::{Node, NodeSettings, NodeTelemetry};
use crate::protocol::Timestamp;
use crate::telemetry::{self, Metrics, NodeStarted, PollLog};

/// File name of the sled database inside the data directory.
pub const DB_DIR: &str = "db";

/// Runs the daemon until a shutdown signal.
pub async fn run(config: Config) -> anyhow::Result<()> {
    for warning in config.warnings() {
        tracing::warn!("{warning}");
    }
    let password = config.key_password()?;
    let data_dir = config.prepare_data_dir()?;
    let identity = Identity::load_or_create(&data_dir, &config.node.name, &password)?;
    if identity.created {
        tracing::info!(key = %identity.key_path.display(), "created a new node key (new identity)");
    }
    let db_path = data_dir.join(DB_DIR);
    let db = sled::open(&db_path).with_context(|| {
        format!(
            "cannot open the store at {}: is another koi-github-indexer running on this data_dir? (sled allows one \
             process)",
            db_path.display()
        )
    })?;
    let index = Index::open(&db)
        .with_context(|| format!("cannot open the index in {}", db_path.display()))?;

    let settings = NodeSettings {
        first_contact_url: config.first_contact.url.clone(),
        first_contact_rid: config.first_contact.rid.clone(),
        interest: config.index.rid_types.clone(),
        poll_limit: config.poll.limit,
        timeout: config.poll.timeout,
        interval: config.poll.interval,
        max_backoff: config.poll.max_backoff,
        fetch_batch: config.poll.fetch_batch,
    };
    let metrics = Metrics::new();
    let poll_log = PollLog::open(&db)
        .with_context(|| format!("cannot open the poll log in {}", db_path.display()))?;
    let node_telemetry = NodeTelemetry {
        metrics: metrics.clone(),
        poll_log: poll_log.clone(),
    };
    let node = Node::new(
        settings,
        identity.clone(),
        db.clone(),
        index.clone(),
        node_telemetry,
    )?;

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let ticks = spawn_schedule(&config, shutdown_rx.clone()).await?;

    let api_ctx = crate::api::ApiContext {
        index: index.clone(),
        status: {
            let node = Arc::clone(&node);
            let name = config.node.name.clone();
            let data_dir = data_dir.display().to_string();
            Arc::new(move || {
                let mut details = serde_json::Map::new();
                details.insert("node_name".into(), name.clone().into());
                details.insert("node_rid".into(), node.rid().to_string().into());
                details.insert("node_type".into(), "PARTIAL".into());
                details.insert("data_dir".into(), data_dir.clone().into());
                details.insert("inbox".into(), node.inbox_depth().into());
                details.insert(
                    "neighbours".into(),
                    serde_json::to_value(node.neighbour_status()).unwrap_or_default(),
                );
                details
            })
        },
        metrics: metrics.clone(),
        poll_log,
    };
    let mut api_shutdown = shutdown_rx.clone();
    let (api_addr, api_server) = warp::serve(crate::api::routes(api_ctx))
        .try_bind_with_graceful_shutdown(config.api.listen, async move {
            let _ = api_shutdown.changed().await;
        })
        .with_context(|| {
            format!(
                "cannot listen on {} (`api.listen`): is the port in use?",
                config.api.listen
            )
        })?;
    let api_task = tokio::spawn(api_server);
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

    let node_task = tokio::spawn(Arc::clone(&node).run(ticks, shutdown_rx.clone()));
    let retention_task = config
        .index
        .retention
        .map(|keep| tokio::spawn(prune_on_schedule(index.clone(), keep, shutdown_rx.clone())));
    wait_for_signal().await;
    tracing::info!("shutdown signal received");
    telemetry::notify_stopping();
    let _ = shutdown_tx.send(true);
    node_task.await.context("node task panicked")??;
    if let Some(task) = retention_task {
        let _ = task.await;
    }
    let _ = api_task.await;
    db.flush_async().await.context("final flush of the store")?;
    tracing::info!("stopped cleanly");
    Ok(())
}

/// How often retention pruning runs: hourly, or more often when the retention itself is short.
fn prune_period(retention: Duration) -> Duration {
    (retention / 10).clamp(Duration::from_secs(1), Duration::from_secs(3600))
}

/// `[index] retention`: at start and then every [`prune_period`], removes events older than `keep` (rows and index
/// entries, in transactions of a few hundred; the manifests stay as tombstones so catch-up does not fetch them
/// again). A failure is logged and retried on the next round.
async fn prune_on_schedule(index: Index, keep: Duration, mut shutdown: watch::Receiver<bool>) {
    let mut timer = tokio::time::interval(prune_period(keep));
    timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = timer.tick() => {}
            _ = shutdown.changed() => return,
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
    mut shutdown: watch::Receiver<bool>,
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
            let _ = shutdown.changed().await;
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
                    _ = shutdown.changed() => break,
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
