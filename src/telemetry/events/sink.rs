//! What the repository filter and the JetStream sink report.

use super::super::metrics::{Metrics, SinkErrorLabels};

/// An event dropped because its repository is outside `index.repos`.
#[derive(Debug, Clone)]
pub struct EventFiltered<'a> {
    /// The bundle's RID.
    pub rid: &'a str,
}

impl EventFiltered<'_> {
    /// Logs at debug and counts it.
    pub fn emit(&self, metrics: &Metrics) {
        tracing::debug!(target: "koi_github_indexer::index", rid = %self.rid, "not indexed: repository outside index.repos");
        metrics.families().events_filtered.inc();
    }
}

/// The sink's acknowledged progress: `published` more messages, `lag` entries left.
#[derive(Debug, Clone)]
pub struct SinkProgress {
    /// Messages acknowledged since the last report.
    pub published: u64,
    /// Log entries not yet published.
    pub lag: u64,
}

impl SinkProgress {
    /// Logs at debug, counts and sets the lag.
    pub fn emit(&self, metrics: &Metrics) {
        if self.published > 0 {
            tracing::debug!(target: "koi_github_indexer::sink", published = self.published, lag = self.lag, "published");
        }
        let m = metrics.families();
        m.sink_published.inc_by(self.published);
        m.sink_lag.set(i64::try_from(self.lag).unwrap_or(i64::MAX));
    }
}

/// The sink could not publish. Logged once per outage (`first`), counted every time.
#[derive(Debug, Clone)]
pub struct SinkFailed<'a> {
    /// `connect`, `stream`, `publish` or `store`.
    pub kind: &'static str,
    /// What went wrong, with the fix when there is one.
    pub error: &'a str,
    /// The first failure since the sink last worked: the one that is logged.
    pub first: bool,
    /// Entries waiting.
    pub lag: u64,
}

impl SinkFailed<'_> {
    /// Warns on the first failure of an outage; counts each by kind.
    pub fn emit(&self, metrics: &Metrics) {
        if self.first {
            tracing::warn!(
                target: "koi_github_indexer::sink", kind = self.kind, error = %self.error, lag = self.lag,
                "the JetStream sink cannot publish; the index is unaffected, and the sink resumes from its cursor \
                 when the cluster is back (one warning per outage)"
            );
        } else {
            tracing::debug!(target: "koi_github_indexer::sink", kind = self.kind, error = %self.error, "sink still failing");
        }
        metrics
            .families()
            .sink_errors
            .get_or_create(&SinkErrorLabels { kind: self.kind })
            .inc();
    }
}

/// The sink publishes again after an outage.
#[derive(Debug, Clone)]
pub struct SinkRecovered {
    /// How long it could not publish.
    pub after: std::time::Duration,
    /// Entries waiting when it recovered.
    pub lag: u64,
}

impl SinkRecovered {
    /// Logs at info.
    pub fn emit(&self, _metrics: &Metrics) {
        tracing::info!(
            target: "koi_github_indexer::sink",
            after = %humantime::format_duration(std::time::Duration::from_secs(self.after.as_secs())),
            lag = self.lag,
            "the JetStream sink publishes again"
        );
    }
}
