//! The JetStream sink: publishes every indexed event version to a NATS JetStream stream, exactly once, on its own
//! task, never in the way of indexing.
//!
//! How it works, top to bottom:
//! 1. The index writes one entry in its publish log ([`crate::index`]'s `index.sink_log`) in the transaction that
//!    writes an event or a newer version of it. The log is the sink's queue; the sink's cursor (in sled) is the
//!    last entry the cluster acknowledged.
//! 2. The sink reads up to `max_in_flight` entries after the cursor, sends them all (pipelined), then awaits the
//!    acknowledgements in order, moving the cursor past each. A message counts as published only after its PubAck.
//! 3. On any failure (no connection, no stream, a refused or unacknowledged publish) it reports once per outage,
//!    waits, reconnects and starts again from the cursor. Messages sent but not acknowledged are sent again with
//!    the same `Nats-Msg-Id` (`<event RID>@<hash>`), which JetStream drops as duplicates within its window.
//!
//! Why replays stay within the duplicate window: only the messages after the cursor are ever sent again, and they
//! are at most `max_in_flight` messages sent in the last moments before the failure (the cursor moves after each
//! batch, within seconds when the cluster answers). The window (2 minutes by default) has to cover the time
//! between a send and its resend: the failure's detection (at most the 5 s acknowledgement timeout) plus the
//! retry backoff (at most 30 s). A kill -9 is the same: the cursor on disk is at most half a second behind (sled's
//! flush interval), and a restart within the window resends those batches as duplicates. Only a restart more than the window after a crash
//! mid-batch can store up to `max_in_flight` messages twice; consumers that need exactly-once then dedupe on
//! `Nats-Msg-Id`, which is in every message.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::context::PublishErrorKind;
use futures::stream::{FuturesOrdered, StreamExt};
use tokio_util::sync::CancellationToken;

use crate::config::NatsSinkConfig;
use crate::index::{Index, IndexError, SinkEntry};
use crate::telemetry::{Metrics, SinkFailed, SinkProgress, SinkRecovered};

pub mod message;
mod nats;

pub use message::{subject_token, Message, FORMAT_VERSION};

/// The first pause after a failure; doubled after each one, up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// How long an idle sink waits before looking at the log again without being woken (a safety net).
const IDLE_RECHECK: Duration = Duration::from_secs(5);

/// What stops the sink from publishing, by kind (the `kind` label of `sink_errors_total`).
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// A setting the sink cannot use (an unreadable credentials file): fixed by editing the config.
    #[error("{0}")]
    Config(String),
    /// No connection to any of `sink.nats.servers`.
    #[error("cannot connect to the NATS servers: {0}")]
    Connect(String),
    /// The stream is missing and cannot be made, or does not capture the sink's subjects.
    #[error("{0}")]
    Stream(String),
    /// A publish was refused or not acknowledged in time.
    #[error("publish failed: {0}")]
    Publish(String),
    /// The index could not be read, or the cursor not written.
    #[error("the store: {0}")]
    Store(#[from] IndexError),
    /// A store operation's task failed.
    #[error("the store task failed: {0}")]
    Task(String),
}

impl SinkError {
    fn kind(&self) -> &'static str {
        match self {
            SinkError::Config(_) | SinkError::Connect(_) => "connect",
            SinkError::Stream(_) => "stream",
            SinkError::Publish(_) => "publish",
            SinkError::Store(_) | SinkError::Task(_) => "store",
        }
    }
}

/// Starts the sink's task. It ends when `shutdown` is cancelled; entries sent but not acknowledged then are sent
/// again at the next start (and dropped by the server as duplicates).
pub fn spawn(
    config: NatsSinkConfig,
    token: Option<String>,
    node_name: String,
    index: Index,
    metrics: Metrics,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let sink = Sink {
        config: Arc::new(config),
        token,
        node_name,
        index,
        metrics,
        outage: None,
    };
    tokio::spawn(sink.run(shutdown))
}

struct Sink {
    config: Arc<NatsSinkConfig>,
    token: Option<String>,
    node_name: String,
    index: Index,
    metrics: Metrics,
    /// Since when the sink has been failing, if it is.
    outage: Option<Instant>,
}

impl Sink {
    async fn run(mut self, shutdown: CancellationToken) {
        let mut backoff = MIN_BACKOFF;
        loop {
            let result = tokio::select! {
                _ = shutdown.cancelled() => return,
                result = self.session(&shutdown) => result,
            };
            let Err(error) = result else { return };
            if self.outage.is_none() {
                // A new outage (the session had worked, or this is the first try): start the pauses afresh.
                backoff = MIN_BACKOFF;
            }
            self.failed(&error).await;
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// Connects, checks the stream, then publishes until an error (or forever).
    async fn session(&mut self, shutdown: &CancellationToken) -> Result<(), SinkError> {
        let client = nats::connect(&self.config, self.token.as_deref(), &self.node_name).await?;
        let js = nats::context(client);
        nats::ensure_stream(&js, &self.config).await?;
        let mut signal = self.index.sink_signal();
        let mut cursor = self.store(|index, _| index.sink_cursor()).await?;
        loop {
            signal.borrow_and_update();
            let limit = self.config.max_in_flight;
            let prefix = self.config.subject_prefix.clone();
            let batch = self
                .store(move |index, with_contents| {
                    let entries = index.sink_entries_after(cursor, limit)?;
                    entries
                        .into_iter()
                        .map(|entry| prepare(index, entry, with_contents, &prefix))
                        .collect::<Result<Vec<_>, _>>()
                })
                .await?;
            let Some(last) = batch.last().map(|(number, _)| *number) else {
                self.report(0, cursor).await?;
                tokio::select! {
                    _ = shutdown.cancelled() => return Ok(()),
                    _ = signal.changed() => {}
                    _ = tokio::time::sleep(IDLE_RECHECK) => {}
                }
                continue;
            };
            let published = self.publish(&js, batch).await?;
            cursor = last;
            self.store(move |index, _| index.advance_sink_cursor(last))
                .await?;
            self.report(published, cursor).await?;
        }
    }

    /// Sends every message of `batch`, then awaits the acknowledgements in order. All acknowledged, or an error.
    async fn publish(
        &self,
        js: &async_nats::jetstream::Context,
        batch: Vec<(u64, Option<message::Message>)>,
    ) -> Result<u64, SinkError> {
        let mut acks = FuturesOrdered::new();
        for (_, message) in batch {
            let Some(message) = message else { continue };
            let ack = match send(js, &message).await {
                // Contents larger than the server takes (its `max_payload`, 1 MiB by default) would stop the sink
                // at this message for ever: the event goes out without them, marked so, and is not lost.
                Err(e) if matches!(e.kind(), PublishErrorKind::MaxPayloadExceeded) => {
                    match message.without_contents() {
                        Some(smaller) => send(js, &smaller).await,
                        None => Err(e),
                    }
                }
                other => other,
            }
            .map_err(|e| SinkError::Publish(e.to_string()))?;
            acks.push_back(std::future::IntoFuture::into_future(ack));
        }
        let mut published = 0;
        while let Some(ack) = acks.next().await {
            ack.map_err(|e| SinkError::Publish(e.to_string()))?;
            published += 1;
        }
        Ok(published)
    }

    /// Progress to metrics and, after an outage, the recovery to the log.
    async fn report(&mut self, published: u64, cursor: u64) -> Result<(), SinkError> {
        let lag = self
            .store(move |index, _| Ok(index.sink_last()?.saturating_sub(cursor)))
            .await?;
        if let Some(since) = self.outage.take() {
            SinkRecovered {
                after: since.elapsed(),
                lag,
            }
            .emit(&self.metrics);
            let index = self.index.clone();
            let _ = tokio::task::spawn_blocking(move || index.set_sink_error(None)).await;
        }
        SinkProgress { published, lag }.emit(&self.metrics);
        Ok(())
    }

    async fn failed(&mut self, error: &SinkError) {
        let first = self.outage.is_none();
        if first {
            self.outage = Some(Instant::now());
        }
        let lag = self
            .store(|index, _| Ok(index.sink_last()?.saturating_sub(index.sink_cursor()?)))
            .await
            .unwrap_or(0);
        // Server errors carry the server's text: escaped and bounded before it reaches logs and `/status`.
        let text = crate::telemetry::printable(&error.to_string());
        SinkFailed {
            kind: error.kind(),
            error: &text,
            first,
            lag,
        }
        .emit(&self.metrics);
        SinkProgress { published: 0, lag }.emit(&self.metrics);
        let index = self.index.clone();
        let _ = tokio::task::spawn_blocking(move || index.set_sink_error(Some(&text))).await;
    }

    /// Runs a store operation off the runtime, with `include_contents`.
    async fn store<T: Send + 'static>(
        &self,
        op: impl FnOnce(&Index, bool) -> Result<T, IndexError> + Send + 'static,
    ) -> Result<T, SinkError> {
        let index = self.index.clone();
        let with_contents = self.config.include_contents;
        tokio::task::spawn_blocking(move || op(&index, with_contents))
            .await
            .map_err(|e| SinkError::Task(e.to_string()))?
            .map_err(SinkError::Store)
    }
}

/// Sends one message; its acknowledgement is awaited later.
async fn send(
    js: &async_nats::jetstream::Context,
    message: &message::Message,
) -> Result<
    async_nats::jetstream::context::PublishAckFuture,
    async_nats::jetstream::context::PublishError,
> {
    let mut publish = async_nats::jetstream::message::PublishMessage::build()
        .payload(message.body.clone().into())
        .message_id(&message.id);
    for (name, value) in &message.headers {
        publish = publish.header(*name, value.as_str());
    }
    js.send_publish(message.subject.clone(), publish).await
}

/// One log entry as a message to send (`None`: nothing to send, the version is gone; the cursor passes it).
fn prepare(
    index: &Index,
    entry: SinkEntry,
    with_contents: bool,
    prefix: &str,
) -> Result<(u64, Option<message::Message>), IndexError> {
    let message = match index.sink_item(&entry, with_contents)? {
        Some(item) => Some(message::Message::of(&item, prefix).map_err(IndexError::Encode)?),
        None => None,
    };
    Ok((entry.number, message))
}
