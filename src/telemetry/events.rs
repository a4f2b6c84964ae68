//! One struct per observable event. Each has `emit(&self, &Metrics)`, which writes the log line at the event's
//! level **and** updates its metric, so the log and `/metrics` never disagree. Build the struct where the thing
//! happens and emit it there; do not log the same fact separately.
//!
//! | event | level | metric |
//! |---|---|---|
//! | [`PollSucceeded`] | debug | `polls_total{outcome="ok"}`, `poll_duration_seconds`, `events_received_total` |
//! | [`PollFailed`] | warn | `polls_total{outcome=…}`, `poll_duration_seconds` |
//! | [`EventsReceived`] | debug | `events_received_total` |
//! | [`EventIndexed`] | debug | `events_indexed_total` |
//! | [`EventDeduplicated`] | debug | `events_deduplicated_total{reason}` |
//! | [`EventRejected`] | warn | `events_rejected_total{neighbour,reason}` |
//! | [`EventFiltered`] | debug | `events_filtered_total` |
//! | [`SinkProgress`] | debug | `sink_published_total`, `sink_lag` |
//! | [`SinkFailed`] | warn (once per outage) | `sink_errors_total{kind}` |
//! | [`SinkRecovered`] | info | |
//! | [`BundlesFetched`] | debug | `bundles_fetched_total` |
//! | [`LegacyHashAccepted`] | debug | `events_legacy_hash_total{neighbour}` |
//! | [`InboxDepth`] | trace | `inbox_depth` |
//! | [`IndexSizes`] | trace | `index_events`, `index_repositories` |
//! | [`ApiRequest`] | debug | `api_requests_total{route,status}`, `api_request_duration_seconds{route}` |
//! | [`ApiRequestRefused`] | debug | `api_requests_refused_total{reason}`, `api_requests_total{route,status}` |
//! | [`NodeStarted`] | info | `node_info` |
//! | [`HandshakeCompleted`] | info | `handshakes_total` |
//! | [`EdgeProposed`] | info | `edges_proposed_total` |
//!
//! Log targets group the events so `RUST_LOG` can pick them: `koi_github_indexer::poll`, `…::index`, `…::api`,
//! `…::node`. Neighbours, RIDs and URLs are plain `&str`: pass `&rid.to_string()` if you hold a typed RID.

use std::time::Duration;

use chrono::Utc;

pub use super::labels::{ConnectionClose, DedupReason, PollOutcome, RejectReason};
use super::metrics::{
    ActionLabels, ActionOutcomeLabels, CloseLabels, DedupLabels, EdgeLabels, Metrics,
    NeighbourLabels, NodeInfoLabels, PollLabels, RefusalLabels, RejectLabels, RouteLabels,
    RouteStatusLabels,
};
use super::poll_log::PollAttempt;

/// Text from the network made safe for a log line: control characters escaped (`\u{0}`, `\u{1b}`, `\n`) and at
/// most 1,000 characters kept.
pub fn printable(text: &str) -> String {
    let mut out = String::with_capacity(text.len().min(1000));
    for (i, c) in text.chars().enumerate() {
        if i == 1000 {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// The dead-letter tree changed: its size, and how many letters were dropped to keep it bounded.
#[derive(Debug, Clone, Copy)]
pub struct DeadLetters {
    /// Letters held now.
    pub held: u64,
    /// Letters dropped by this write (oldest first).
    pub dropped: u64,
}

impl DeadLetters {
    /// Sets the gauge, counts the drops, and warns when letters were dropped.
    pub fn emit(&self, metrics: &Metrics) {
        if self.dropped > 0 {
            tracing::warn!(
                target: "koi_github_indexer::index",
                dropped = self.dropped, held = self.held,
                "dead letters dropped to stay within pipeline.dead_letters (oldest first)"
            );
        }
        let m = metrics.families();
        m.dead_letters
            .set(i64::try_from(self.held).unwrap_or(i64::MAX));
        m.dead_letters_dropped.inc_by(self.dropped);
    }
}

/// A duration rounded to milliseconds, for log lines (`1.234s` rather than `1.234567891s`).
fn ms(duration: Duration) -> Duration {
    Duration::from_millis(u64::try_from(duration.as_millis()).unwrap_or(u64::MAX))
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// A neighbour answered a poll with a verified events payload. Also counts the events received (do not emit
/// [`EventsReceived`] for the same poll).
#[derive(Debug, Clone)]
pub struct PollSucceeded<'a> {
    /// The neighbour's node RID.
    pub neighbour: &'a str,
    /// The base URL polled, to tell which address of the neighbour answered.
    pub url: &'a str,
    /// Events in the response.
    pub events: usize,
    /// Round-trip time of the poll request.
    pub duration: Duration,
}

impl PollSucceeded<'_> {
    /// Logs at debug, counts the poll (`ok`), its duration and the events received.
    pub fn emit(&self, metrics: &Metrics) {
        tracing::debug!(
            target: "koi_github_indexer::poll",
            neighbour = %self.neighbour, url = %self.url, events = self.events, elapsed = ?ms(self.duration),
            "polled"
        );
        let m = metrics.families();
        m.polls
            .get_or_create(&PollLabels {
                neighbour: self.neighbour.to_owned(),
                outcome: PollOutcome::Ok,
            })
            .inc();
        m.poll_duration
            .get_or_create(&NeighbourLabels {
                neighbour: self.neighbour.to_owned(),
            })
            .observe(self.duration.as_secs_f64());
        if self.events > 0 {
            EventsReceived {
                neighbour: self.neighbour,
                count: self.events,
            }
            .emit(metrics);
        }
    }

    /// This attempt as a poll log entry, stamped now.
    pub fn to_attempt(&self) -> PollAttempt {
        PollAttempt {
            neighbour: self.neighbour.to_owned(),
            time: Utc::now(),
            outcome: PollOutcome::Ok.as_str().to_owned(),
            events: self.events,
            duration_ms: millis(self.duration),
            error: None,
        }
    }
}

/// A poll failed. Logged at warn with the neighbour, the URL and the cause: the line an operator greps for.
#[derive(Debug, Clone)]
pub struct PollFailed<'a> {
    /// The neighbour's node RID.
    pub neighbour: &'a str,
    /// The base URL polled.
    pub url: &'a str,
    /// The error, as its `Display` says it (e.g. `connection refused`, `timed out after 5s`).
    pub cause: &'a str,
    /// The class of failure, the `outcome` label.
    pub outcome: PollOutcome,
    /// Time from sending the request to the failure (≈ `poll.timeout` for timeouts).
    pub duration: Duration,
    /// How long until this neighbour is tried again, if it is being backed off.
    pub backoff: Option<Duration>,
    /// A normal step of joining, not a fault: the neighbour answered before it had processed our handshake (or
    /// our profile), as a koi-net node does for a moment. Logged at info while it lasts a few tries.
    pub expected: bool,
}

impl PollFailed<'_> {
    /// Logs at warn (at info while `expected`), counts the poll under its outcome and its duration.
    pub fn emit(&self, metrics: &Metrics) {
        if self.expected {
            tracing::info!(
                target: "koi_github_indexer::poll",
                neighbour = %self.neighbour, outcome = %self.outcome,
                "waiting for the neighbour to learn about us (a normal first answer while joining)"
            );
        } else {
            self.warn();
        }
        self.count(metrics);
    }

    fn warn(&self) {
        match self.backoff {
            Some(backoff) => tracing::warn!(
                target: "koi_github_indexer::poll",
                neighbour = %self.neighbour, url = %self.url, outcome = %self.outcome, cause = %printable(self.cause),
                retry_in = ?ms(backoff), "poll failed"
            ),
            None => tracing::warn!(
                target: "koi_github_indexer::poll",
                neighbour = %self.neighbour, url = %self.url, outcome = %self.outcome, cause = %printable(self.cause),
                "poll failed"
            ),
        }
    }

    fn count(&self, metrics: &Metrics) {
        let m = metrics.families();
        m.polls
            .get_or_create(&PollLabels {
                neighbour: self.neighbour.to_owned(),
                outcome: self.outcome,
            })
            .inc();
        m.poll_duration
            .get_or_create(&NeighbourLabels {
                neighbour: self.neighbour.to_owned(),
            })
            .observe(self.duration.as_secs_f64());
    }

    /// This attempt as a poll log entry, stamped now.
    pub fn to_attempt(&self) -> PollAttempt {
        PollAttempt {
            neighbour: self.neighbour.to_owned(),
            time: Utc::now(),
            outcome: self.outcome.as_str().to_owned(),
            events: 0,
            duration_ms: millis(self.duration),
            error: Some(self.cause.to_owned()),
        }
    }
}

/// Events arrived from a neighbour other than through [`PollSucceeded`] (which counts its own).
#[derive(Debug, Clone)]
pub struct EventsReceived<'a> {
    /// The neighbour's node RID.
    pub neighbour: &'a str,
    /// How many events.
    pub count: usize,
}

impl EventsReceived<'_> {
    /// Logs at debug and adds `count` to `events_received_total{neighbour}`.
    pub fn emit(&self, metrics: &Metrics) {
        tracing::debug!(target: "koi_github_indexer::poll", neighbour = %self.neighbour, count = self.count, "events received");
        metrics
            .families()
            .events_received
            .get_or_create(&NeighbourLabels {
                neighbour: self.neighbour.to_owned(),
            })
            .inc_by(self.count as u64);
    }
}

/// An event changed the index (a new RID, or a newer version of a known one).
#[derive(Debug, Clone)]
pub struct EventIndexed<'a> {
    /// The event's RID.
    pub rid: &'a str,
}

impl EventIndexed<'_> {
    /// Logs at debug and counts it.
    pub fn emit(&self, metrics: &Metrics) {
        tracing::debug!(target: "koi_github_indexer::index", rid = %self.rid, "indexed");
        metrics.families().events_indexed.inc();
    }
}

/// An event was received again and left the index as it was.
#[derive(Debug, Clone)]
pub struct EventDeduplicated<'a> {
    /// The event's RID.
    pub rid: &'a str,
    /// Same hash, or older than what we hold.
    pub reason: DedupReason,
}

impl EventDeduplicated<'_> {
    /// Logs at debug and counts it by reason.
    pub fn emit(&self, metrics: &Metrics) {
        tracing::debug!(target: "koi_github_indexer::index", rid = %self.rid, reason = %self.reason, "not indexed: duplicate");
        metrics
            .families()
            .events_deduplicated
            .get_or_create(&DedupLabels {
                reason: self.reason,
            })
            .inc();
    }
}

/// An event was refused. Logged at warn: a neighbour is misbehaving or misconfigured.
#[derive(Debug, Clone)]
pub struct EventRejected<'a> {
    /// The node RID of the neighbour that sent it.
    pub neighbour: &'a str,
    /// The event's RID, as claimed (may be empty when it did not even parse).
    pub rid: &'a str,
    /// The class of the problem, the `reason` label.
    pub reason: RejectReason,
    /// The specifics, e.g. the two hashes that differ.
    pub detail: &'a str,
}

impl EventRejected<'_> {
    /// Logs at warn and counts it by neighbour and reason.
    pub fn emit(&self, metrics: &Metrics) {
        // RIDs and details come from the network: control characters are escaped, never written raw.
        tracing::warn!(
            target: "koi_github_indexer::index",
            neighbour = %self.neighbour, rid = %printable(self.rid), reason = %self.reason,
            detail = %printable(self.detail), "event rejected"
        );
        metrics
            .families()
            .events_rejected
            .get_or_create(&RejectLabels {
                neighbour: self.neighbour.to_owned(),
                reason: self.reason,
            })
            .inc();
    }
}

/// Bundles were fetched from a neighbour with `fetch_bundles` (catch-up, or events that carried only a manifest).
#[derive(Debug, Clone)]
pub struct BundlesFetched<'a> {
    /// The neighbour's node RID.
    pub neighbour: &'a str,
    /// Bundles in the response.
    pub count: usize,
}

impl BundlesFetched<'_> {
    /// Logs at debug and counts the bundles.
    pub fn emit(&self, metrics: &Metrics) {
        tracing::debug!(target: "koi_github_indexer::poll", neighbour = %self.neighbour, count = self.count, "bundles fetched");
        metrics
            .families()
            .bundles_fetched
            .get_or_create(&NeighbourLabels {
                neighbour: self.neighbour.to_owned(),
            })
            .inc_by(self.count as u64);
    }
}

/// A bundle whose manifest hash matches its contents only under the legacy scheme of rid-lib up to 3.2.6 (an
/// older node made it): accepted, and made visible.
#[derive(Debug, Clone)]
pub struct LegacyHashAccepted<'a> {
    /// The neighbour that sent it.
    pub neighbour: &'a str,
    /// The bundle's RID.
    pub rid: &'a str,
}

impl LegacyHashAccepted<'_> {
    /// Logs at debug and counts it by neighbour.
    pub fn emit(&self, metrics: &Metrics) {
        tracing::debug!(
            target: "koi_github_indexer::poll",
            neighbour = %self.neighbour, rid = %printable(self.rid),
            "bundle hashed with the legacy scheme (rid-lib before 3.2.7): accepted"
        );
        metrics
            .families()
            .events_legacy_hash
            .get_or_create(&NeighbourLabels {
                neighbour: self.neighbour.to_owned(),
            })
            .inc();
    }
}

/// The inbox's current depth. Emit after each push and each drain.
#[derive(Debug, Clone, Copy)]
pub struct InboxDepth {
    /// Events stored durably and not yet indexed.
    pub depth: usize,
}

impl InboxDepth {
    /// Logs at trace and sets the gauge.
    pub fn emit(&self, metrics: &Metrics) {
        tracing::trace!(target: "koi_github_indexer::node", depth = self.depth, "inbox depth");
        metrics
            .families()
            .inbox_depth
            .set(i64::try_from(self.depth).unwrap_or(i64::MAX));
    }
}

/// The index's current sizes. Emit after a batch is indexed (and once at start-up).
#[derive(Debug, Clone, Copy)]
pub struct IndexSizes {
    /// Events in the index.
    pub events: u64,
    /// Repositories in the index.
    pub repositories: u64,
}

impl IndexSizes {
    /// Logs at trace and sets the gauges.
    pub fn emit(&self, metrics: &Metrics) {
        tracing::trace!(target: "koi_github_indexer::index", events = self.events, repositories = self.repositories, "index sizes");
        let m = metrics.families();
        m.index_events
            .set(i64::try_from(self.events).unwrap_or(i64::MAX));
        m.index_repositories
            .set(i64::try_from(self.repositories).unwrap_or(i64::MAX));
    }
}

/// The query API closed a connection before its client did.
#[derive(Debug, Clone, Copy)]
pub struct ApiConnectionClosed {
    /// Why.
    pub reason: ConnectionClose,
}

impl ApiConnectionClosed {
    /// Logs at debug (a slow client is not news; the counter shows a flood) and counts it by reason.
    pub fn emit(&self, metrics: &Metrics) {
        tracing::debug!(target: "koi_github_indexer::api", reason = %self.reason, "api connection closed");
        metrics
            .families()
            .api_connections_closed
            .get_or_create(&CloseLabels {
                reason: self.reason,
            })
            .inc();
    }
}

/// The number of open API connections changed.
#[derive(Debug, Clone, Copy)]
pub struct ApiConnections {
    /// Open now.
    pub open: usize,
}

impl ApiConnections {
    /// Sets the gauge.
    pub fn emit(&self, metrics: &Metrics) {
        metrics
            .families()
            .api_connections
            .set(i64::try_from(self.open).unwrap_or(i64::MAX));
    }
}

/// The query API answered a request.
#[derive(Debug, Clone)]
pub struct ApiRequest<'a> {
    /// The route **template** (e.g. `/api/processor/github/repos/{owner}/{name}`), never the raw path: raw paths
    /// would make one series per repository. Unmatched requests use `other`.
    pub route: &'a str,
    /// HTTP status sent.
    pub status: u16,
    /// Time from receiving the request to the response being ready.
    pub duration: Duration,
}

impl ApiRequest<'_> {
    /// Logs at debug, counts it by route and status, and records its latency by route.
    pub fn emit(&self, metrics: &Metrics) {
        tracing::debug!(
            target: "koi_github_indexer::api",
            route = %self.route, status = self.status, elapsed = ?self.duration, "api request"
        );
        let m = metrics.families();
        m.api_requests
            .get_or_create(&RouteStatusLabels {
                route: self.route.to_owned(),
                status: self.status,
            })
            .inc();
        m.api_latency
            .get_or_create(&RouteLabels {
                route: self.route.to_owned(),
            })
            .observe(self.duration.as_secs_f64());
    }
}

/// A request the API's guard refused before routing it (see `api::guard`).
#[derive(Debug, Clone, Copy)]
pub struct ApiRequestRefused<'a> {
    /// The route template of the path asked for.
    pub route: &'a str,
    /// Why: `host`, `origin`, `cross_site`, `token` or `content_type`.
    pub reason: &'static str,
    /// HTTP status sent (403, 401 or 415).
    pub status: u16,
}

impl ApiRequestRefused<'_> {
    /// Logs at debug (a page in a browser can send these in a loop: a warning each would flood the log), and counts
    /// it by reason and as an API request.
    pub fn emit(&self, metrics: &Metrics) {
        tracing::debug!(
            target: "koi_github_indexer::api",
            route = %self.route, reason = self.reason, status = self.status, "api request refused"
        );
        let m = metrics.families();
        m.api_refused
            .get_or_create(&RefusalLabels {
                reason: self.reason,
            })
            .inc();
        m.api_requests
            .get_or_create(&RouteStatusLabels {
                route: self.route.to_owned(),
                status: self.status,
            })
            .inc();
    }
}

/// A webhook delivery was attempted.
#[derive(Debug, Clone)]
pub struct DeliveryAttempted<'a> {
    /// The action's name.
    pub action: &'a str,
    /// The delivery's id.
    pub delivery: &'a str,
    /// The event delivered.
    pub event_rid: &'a str,
    /// `delivered`, `retry` or `failed`.
    pub outcome: &'static str,
    /// The receiver's HTTP status, when it answered.
    pub status: Option<u16>,
    /// What went wrong, if anything.
    pub error: Option<&'a str>,
    /// How long the attempt took.
    pub duration: Duration,
    /// Deliveries left waiting for this action.
    pub queued: u64,
}

impl DeliveryAttempted<'_> {
    /// Logs (debug when delivered, warn otherwise), counts it by action and outcome, records its time and the
    /// action's queue.
    pub fn emit(&self, metrics: &Metrics) {
        if self.outcome == "delivered" {
            tracing::debug!(
                target: "koi_github_indexer::actions",
                action = %self.action, delivery = %self.delivery, event = %self.event_rid,
                status = ?self.status, elapsed = ?self.duration, "webhook delivered"
            );
        } else {
            tracing::warn!(
                target: "koi_github_indexer::actions",
                action = %self.action, delivery = %self.delivery, event = %self.event_rid,
                status = ?self.status, error = self.error.unwrap_or(""), outcome = self.outcome,
                "webhook not delivered"
            );
        }
        let m = metrics.families();
        m.action_attempts
            .get_or_create(&ActionOutcomeLabels {
                action: self.action.to_owned(),
                outcome: self.outcome,
            })
            .inc();
        let labels = ActionLabels {
            action: self.action.to_owned(),
        };
        m.action_duration
            .get_or_create(&labels)
            .observe(self.duration.as_secs_f64());
        m.action_queued
            .get_or_create(&labels)
            .set(i64::try_from(self.queued).unwrap_or(i64::MAX));
    }
}

/// How many deliveries wait for an action (at start, and when new ones are queued).
#[derive(Debug, Clone)]
pub struct ActionQueue<'a> {
    /// The action's name.
    pub action: &'a str,
    /// Deliveries waiting.
    pub queued: u64,
}

impl ActionQueue<'_> {
    /// Sets the gauge (no log line: it changes with every event).
    pub fn emit(&self, metrics: &Metrics) {
        let m = metrics.families();
        for outcome in ["delivered", "retry", "failed"] {
            m.action_attempts
                .get_or_create(&ActionOutcomeLabels {
                    action: self.action.to_owned(),
                    outcome,
                })
                .inc_by(0);
        }
        m.action_queued
            .get_or_create(&ActionLabels {
                action: self.action.to_owned(),
            })
            .set(i64::try_from(self.queued).unwrap_or(i64::MAX));
    }
}

/// The daemon is up: the start-up line with what an operator needs to find its way.
#[derive(Debug, Clone)]
pub struct NodeStarted<'a> {
    /// Our node RID (changes only when the key does).
    pub node_rid: &'a str,
    /// Where the store and key live.
    pub data_dir: &'a str,
    /// Where the query API listens.
    pub api_addr: &'a str,
    /// Node RIDs of the neighbours known at start-up (at least the first contact).
    pub neighbours: &'a [String],
}

impl NodeStarted<'_> {
    /// Logs at info and sets `node_info{node_rid,version}` to 1.
    pub fn emit(&self, metrics: &Metrics) {
        tracing::info!(
            target: "koi_github_indexer::node",
            node_rid = %self.node_rid, data_dir = %self.data_dir, api = %self.api_addr,
            neighbours = %self.neighbours.join(" "), version = env!("CARGO_PKG_VERSION"),
            "koi-github-indexer started"
        );
        metrics
            .families()
            .node_info
            .get_or_create(&NodeInfoLabels {
                node_rid: self.node_rid.to_owned(),
                version: env!("CARGO_PKG_VERSION").to_owned(),
            })
            .set(1);
    }
}

/// A neighbour accepted our handshake (`FORGET` + `NEW` of our profile).
#[derive(Debug, Clone)]
pub struct HandshakeCompleted<'a> {
    /// The neighbour's node RID.
    pub neighbour: &'a str,
}

impl HandshakeCompleted<'_> {
    /// Logs at info and counts it.
    pub fn emit(&self, metrics: &Metrics) {
        tracing::info!(target: "koi_github_indexer::node", neighbour = %self.neighbour, "handshake completed");
        metrics
            .families()
            .handshakes
            .get_or_create(&NeighbourLabels {
                neighbour: self.neighbour.to_owned(),
            })
            .inc();
    }
}

/// We proposed an edge: `source` is asked to serve events of `rid_types` to `target` (us).
#[derive(Debug, Clone)]
pub struct EdgeProposed<'a> {
    /// The provider's node RID.
    pub source: &'a str,
    /// The subscriber's node RID (ours).
    pub target: &'a str,
    /// The RID types the edge carries.
    pub rid_types: &'a [String],
}

impl EdgeProposed<'_> {
    /// Logs at info and counts it by source.
    pub fn emit(&self, metrics: &Metrics) {
        tracing::info!(
            target: "koi_github_indexer::node",
            source = %self.source, target_node = %self.target, rid_types = %self.rid_types.join(" "),
            "proposed a POLL edge"
        );
        metrics
            .families()
            .edges_proposed
            .get_or_create(&EdgeLabels {
                source: self.source.to_owned(),
            })
            .inc();
    }
}

mod sink;
pub use sink::{EventFiltered, SinkFailed, SinkProgress, SinkRecovered};

#[cfg(test)]
mod tests;
