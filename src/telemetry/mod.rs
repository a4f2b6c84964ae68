//! Observability: what the daemon tells its operator, and how.
//!
//! Everything an operator can observe about a running node goes through this module, so the log, the Prometheus
//! metrics and the poll log always tell the same story:
//!
//! * [`events`] — **one small struct per observable event** (a poll succeeded, an event was rejected, an API
//!   request was served, …). Its `emit(&metrics)` writes the tracing line at the right level *and* bumps the
//!   metric; code elsewhere never calls `tracing::…!` and `Metrics` separately for the same fact.
//! * [`labels`] — the label values (poll outcomes, dedupe and reject reasons) both of those use.
//! * [`metrics`] — the Prometheus registry behind `GET /metrics` ([`Metrics::encode`], [`METRICS_CONTENT_TYPE`]).
//! * [`poll_log`] — the bounded, durable check log of poll attempts per neighbour behind
//!   `GET /api/processor/github/polls`.
//! * [`logging`] — `tracing-subscriber` set-up from `[log] level` / `format`, overridable by `RUST_LOG`.
//! * [`notify`] — systemd readiness (`Type=notify`): `READY=1` once the API listens, `STOPPING=1` on shutdown.
//!
//! This module depends on no other module of the crate: neighbours, RIDs and URLs are plain strings here.

pub mod events;
pub mod labels;
pub mod logging;
pub mod metrics;
pub mod notify;
pub mod poll_log;

pub use events::*;
pub use logging::{init_logging, LogFormat};
pub use metrics::{Metrics, METRICS_CONTENT_TYPE};
pub use notify::{notify_ready, notify_status, notify_stopping};
pub use poll_log::{PollAttempt, PollLog, DEFAULT_ATTEMPTS_PER_NEIGHBOUR};

/// What can go wrong in telemetry set-up or in the poll log. None of it should stop the node once it runs: callers
/// log poll-log errors and carry on.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// `[log] level` is not a level (nor a filter directive list).
    #[error(
        "invalid log level `{value}` (`log.level`): use one of off, error, warn, info, debug, trace \
         (or a RUST_LOG-style directive list such as `info,koi_github_indexer=debug`)"
    )]
    InvalidLevel {
        /// The value as configured.
        value: String,
    },
    /// `RUST_LOG` is set but does not parse as a filter.
    #[error("invalid RUST_LOG `{value}`: {message}; unset it or use e.g. `RUST_LOG=debug`")]
    InvalidRustLog {
        /// The variable's value.
        value: String,
        /// What the filter parser said.
        message: String,
    },
    /// A global tracing subscriber is already installed (`init_logging` was called twice, or a test set one).
    #[error("logging is already initialised: {0}")]
    AlreadyInitialised(String),
    /// The poll log's sled tree could not be read or written.
    #[error("poll log store: {0}")]
    Store(#[from] sled::Error),
    /// A poll log entry could not be encoded or decoded (a corrupt or foreign entry).
    #[error("poll log entry: {0}")]
    Entry(#[from] serde_json::Error),
}
