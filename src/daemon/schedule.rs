//! What runs on a clock: the poll schedule's ticks (`poll.interval` or `poll.cron`) and retention pruning.

use std::time::Duration;

use anyhow::Context;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::index::Index;
use crate::protocol::Timestamp;

/// How often retention pruning runs: hourly, or more often when the retention itself is short.
pub(super) fn prune_period(retention: Duration) -> Duration {
    (retention / 10).clamp(Duration::from_secs(1), Duration::from_secs(3600))
}

/// `[index] retention`: at start and then every [`prune_period`], removes events older than `keep` (rows and index
/// entries, in transactions of a few hundred; the manifests stay as tombstones so catch-up does not fetch them
/// again). A failure is logged and retried on the next round.
pub(super) async fn prune_on_schedule(index: Index, keep: Duration, shutdown: CancellationToken) {
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
pub(super) async fn spawn_schedule(
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
