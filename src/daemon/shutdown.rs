//! Stopping in bounded time: on SIGTERM or SIGINT (or when the node stops by itself, which only a fatal error
//! makes it do), every task is told through one cancellation token, each gets until `pipeline.shutdown_timeout` to
//! finish (polls in flight end, the writer commits the chunk in hand), and sled is flushed once, whatever happened.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::node::{Node, NodeError};
use crate::telemetry;

/// The daemon's tasks, and how to stop them.
pub(super) struct Shutdown {
    /// Cancelled to stop everything: the node, the API, the actions and retention all watch it.
    pub(super) token: CancellationToken,
    /// Flushed once at the end, however the daemon stops.
    pub(super) db: sled::Db,
    /// `pipeline.shutdown_timeout`.
    pub(super) limit: Duration,
}

/// The tasks to wait for.
pub(super) struct Tasks {
    /// The node: polls, catch-ups and the writer. Gives the events left in the inbox.
    pub(super) node: JoinHandle<Result<usize, NodeError>>,
    /// The query API.
    pub(super) api: JoinHandle<()>,
    /// Everything else (actions, retention): waited for, their results unused.
    pub(super) others: Vec<JoinHandle<()>>,
}

impl Shutdown {
    /// Runs until a signal or the node's own end, then stops everything within the limit and flushes.
    pub(super) async fn run_until_stopped(
        self,
        mut tasks: Tasks,
        node: &Arc<Node>,
    ) -> anyhow::Result<()> {
        let ended_by_itself = tokio::select! {
            () = wait_for_signal() => {
                tracing::info!("shutdown signal received");
                None
            }
            ended = &mut tasks.node => Some(ended),
        };
        telemetry::notify_stopping();
        self.token.cancel();
        if let Some(ended) = ended_by_itself {
            let _ = tasks.api.await;
            self.flush().await?;
            ended.context("node task panicked")??;
            anyhow::bail!("the node stopped by itself");
        }
        let stopped = tokio::time::timeout(self.limit, async {
            let left = tasks.node.await.context("node task panicked")??;
            for task in tasks.others {
                let _ = task.await;
            }
            let _ = tasks.api.await;
            anyhow::Ok(left)
        })
        .await;
        // Flushed whether or not everything stopped in time: what was committed must be on disk.
        let flushed = self.flush().await;
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
                    timeout = %humantime::format_duration(self.limit),
                    left_in_inbox = node.inbox_depth(),
                    "shutdown took longer than pipeline.shutdown_timeout; stopping now (what is not indexed stays \
                     in the inbox for the next start)"
                );
                Ok(())
            }
        }
    }

    /// The one final flush of the store.
    async fn flush(&self) -> anyhow::Result<()> {
        self.db
            .flush_async()
            .await
            .map(drop)
            .context("final flush of the store")
    }
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
