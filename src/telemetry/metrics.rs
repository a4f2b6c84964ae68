//! The Prometheus metrics behind `GET /metrics`.
//!
//! [`Metrics`] owns a `prometheus-client` registry and every metric family in it. It is cheap to clone (one `Arc`)
//! and meant to be created once in the daemon and handed to the node and the API. Code outside this module does not
//! touch the families: it emits an event from [`super::events`], which logs *and* counts.
//!
//! Every name starts with `koi_indexer_`. Labels are bounded: a neighbour is a node RID (a handful per network), an
//! API route is the route *template*, never a raw path; event RIDs are never labels.

use std::fmt::Write as _;
use std::sync::Arc;

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use super::labels::{ConnectionClose, DedupReason, PollOutcome, RejectReason};

/// The `Content-Type` to serve [`Metrics::encode`] with: OpenMetrics 1.0 text, which Prometheus (2.x and later)
/// and other OpenMetrics scrapers negotiate and parse. The body ends with the `# EOF` line the format requires.
pub const METRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Prefix of every metric name.
pub const PREFIX: &str = "koi_indexer";

/// Histogram buckets (seconds) for API latency: a local sled read takes well under a millisecond, a large page
/// a few milliseconds; anything near a second is a problem.
pub const API_LATENCY_BUCKETS: [f64; 11] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
];

/// Histogram buckets (seconds) for poll round trips: milliseconds on a LAN, up to `poll.timeout` when a neighbour
/// is struggling.
pub const POLL_DURATION_BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// All metrics of one daemon. Clone it freely; clones share the same series.
#[derive(Clone)]
pub struct Metrics(Arc<Families>);

/// The metric families; `pub(super)` so that only the events in this module bump them.
pub(super) struct Families {
    /// Owns the families for encoding.
    registry: Registry,
    /// Poll attempts, by neighbour and outcome: the first thing to look at when no events arrive.
    pub(super) polls: Family<PollLabels, Counter>,
    /// Poll round-trip time per neighbour: a neighbour getting slow shows here before it times out.
    pub(super) poll_duration: Family<NeighbourLabels, Histogram, fn() -> Histogram>,
    /// Events a neighbour handed us in poll responses (before verification and dedup).
    pub(super) events_received: Family<NeighbourLabels, Counter>,
    /// Events that changed the index (new, or a newer version of a known RID).
    pub(super) events_indexed: Counter,
    /// Events that left the index as it was: same hash (`unchanged`) or older than what we hold (`stale`).
    pub(super) events_deduplicated: Family<DedupLabels, Counter>,
    /// Events refused, by who sent them and why: a non-zero rate here is a misbehaving or misconfigured neighbour.
    pub(super) events_rejected: Family<RejectLabels, Counter>,
    /// Dead letters dropped (oldest first) to keep the dead-letter tree within `pipeline.dead_letters`.
    pub(super) dead_letters_dropped: Counter,
    /// Dead letters held.
    pub(super) dead_letters: Gauge,
    /// Bundles fetched with `fetch_bundles` (catch-up, manifest-only events).
    pub(super) bundles_fetched: Family<NeighbourLabels, Counter>,
    /// Bundles accepted under the legacy hash scheme (rid-lib before 3.2.7), by the neighbour that sent them.
    pub(super) events_legacy_hash: Family<NeighbourLabels, Counter>,
    /// Events polled and stored durably but not yet indexed: should hover near zero.
    pub(super) inbox_depth: Gauge,
    /// Events in the index.
    pub(super) index_events: Gauge,
    /// Repositories in the index.
    pub(super) index_repositories: Gauge,
    /// Query API requests by route template and HTTP status.
    pub(super) api_requests: Family<RouteStatusLabels, Counter>,
    /// Query API requests refused before routing (foreign Host or Origin, cross-site write, no token, not JSON), by
    /// reason: a browser page trying the API, or a client or proxy that needs `api.allowed_hosts` or the token.
    pub(super) api_refused: Family<RefusalLabels, Counter>,
    /// Query API latency by route template.
    pub(super) api_latency: Family<RouteLabels, Histogram, fn() -> Histogram>,
    /// Open connections to the query API.
    pub(super) api_connections: Gauge,
    /// Connections the query API closed itself, by reason: slow or idle clients, or too many connections.
    pub(super) api_connections_closed: Family<CloseLabels, Counter>,
    /// Handshakes (`FORGET` + `NEW` of our profile) a neighbour accepted: repeated ones mean it keeps forgetting us.
    pub(super) handshakes: Family<NeighbourLabels, Counter>,
    /// POLL edges we proposed, by the provider (edge source) asked to serve us.
    pub(super) edges_proposed: Family<EdgeLabels, Counter>,
    /// Always 1, labelled with this node's RID and the program version, so dashboards can show which node it is.
    pub(super) node_info: Family<NodeInfoLabels, Gauge>,
    /// Webhook delivery attempts by action and outcome (delivered, retry, failed).
    pub(super) action_attempts: Family<ActionOutcomeLabels, Counter>,
    /// Webhook attempt time by action.
    pub(super) action_duration: Family<ActionLabels, Histogram, fn() -> Histogram>,
    /// Deliveries waiting per action.
    pub(super) action_queued: Family<ActionLabels, Gauge>,
    /// Events dropped because their repository is outside `index.repos` (another node indexes them).
    pub(super) events_filtered: Counter,
    /// Messages the JetStream sink published and the cluster acknowledged (duplicates the server dropped included).
    pub(super) sink_published: Counter,
    /// Entries of the publish log not yet acknowledged: grows while the cluster is away.
    pub(super) sink_lag: Gauge,
    /// Sink failures by kind (connect, stream, publish, store).
    pub(super) sink_errors: Family<SinkErrorLabels, Counter>,
}

/// Labels of `sink_errors_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct SinkErrorLabels {
    pub(super) kind: &'static str,
}

/// Labels of per-action series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct ActionLabels {
    pub(super) action: String,
}

/// Labels of `action_attempts_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct ActionOutcomeLabels {
    pub(super) action: String,
    pub(super) outcome: &'static str,
}

/// Labels of `polls_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct PollLabels {
    pub(super) neighbour: String,
    pub(super) outcome: PollOutcome,
}

/// Labels of per-neighbour series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct NeighbourLabels {
    pub(super) neighbour: String,
}

/// Labels of `events_deduplicated_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct DedupLabels {
    pub(super) reason: DedupReason,
}

/// Labels of `events_rejected_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct RejectLabels {
    pub(super) neighbour: String,
    pub(super) reason: RejectReason,
}

/// Labels of `api_connections_closed_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct CloseLabels {
    pub(super) reason: ConnectionClose,
}

/// Labels of `api_requests_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct RouteStatusLabels {
    pub(super) route: String,
    pub(super) status: u16,
}

/// Labels of `api_requests_refused_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct RefusalLabels {
    pub(super) reason: &'static str,
}

/// Labels of `api_request_duration_seconds`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct RouteLabels {
    pub(super) route: String,
}

/// Labels of `edges_proposed_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct EdgeLabels {
    pub(super) source: String,
}

/// Labels of `node_info`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct NodeInfoLabels {
    pub(super) node_rid: String,
    pub(super) version: String,
}

fn api_latency_histogram() -> Histogram {
    Histogram::new(API_LATENCY_BUCKETS.into_iter())
}

fn poll_duration_histogram() -> Histogram {
    Histogram::new(POLL_DURATION_BUCKETS.into_iter())
}

impl EncodeLabelValue for PollOutcome {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        encoder.write_str(self.as_str())
    }
}

impl EncodeLabelValue for DedupReason {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        encoder.write_str(self.as_str())
    }
}

impl EncodeLabelValue for ConnectionClose {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        encoder.write_str(self.as_str())
    }
}

impl EncodeLabelValue for RejectReason {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        encoder.write_str(self.as_str())
    }
}

impl Metrics {
    /// A fresh registry with every family registered and all counters at zero.
    ///
    /// Long on purpose: one registration per metric family, with its name and help text, in one list, so that
    /// everything `/metrics` can show is read in one place.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix(PREFIX);
        let families = Families {
            polls: Family::default(),
            poll_duration: Family::new_with_constructor(poll_duration_histogram),
            events_received: Family::default(),
            events_indexed: Counter::default(),
            events_deduplicated: Family::default(),
            events_rejected: Family::default(),
            bundles_fetched: Family::default(),
            events_legacy_hash: Family::default(),
            dead_letters_dropped: Counter::default(),
            dead_letters: Gauge::default(),
            inbox_depth: Gauge::default(),
            index_events: Gauge::default(),
            index_repositories: Gauge::default(),
            api_requests: Family::default(),
            api_refused: Family::default(),
            api_latency: Family::new_with_constructor(api_latency_histogram),
            api_connections: Gauge::default(),
            api_connections_closed: Family::default(),
            handshakes: Family::default(),
            edges_proposed: Family::default(),
            node_info: Family::default(),
            action_attempts: Family::default(),
            action_duration: Family::new_with_constructor(poll_duration_histogram),
            action_queued: Family::default(),
            events_filtered: Counter::default(),
            sink_published: Counter::default(),
            sink_lag: Gauge::default(),
            sink_errors: Family::default(),
            registry: Registry::default(), // replaced below, once everything is registered
        };
        // Both dedup reasons exist from the start, so rate() and ratios work before the first duplicate.
        for reason in [DedupReason::Unchanged, DedupReason::Stale] {
            families
                .events_deduplicated
                .get_or_create(&DedupLabels { reason })
                .inc_by(0);
        }
        registry.register(
            "polls",
            "Poll attempts by neighbour and outcome (ok, error, timeout, unknown_node, bad_signature, wrong_target, \
             malformed, too_large, unknown_sender)",
            families.polls.clone(),
        );
        registry.register_with_unit(
            "poll_duration",
            "Poll round-trip time by neighbour, failed polls included",
            Unit::Seconds,
            families.poll_duration.clone(),
        );
        registry.register(
            "events_received",
            "Events received in poll responses, by neighbour, before verification and deduplication",
            families.events_received.clone(),
        );
        registry.register(
            "events_indexed",
            "Events that changed the index (new RID, or a newer version of a known one)",
            families.events_indexed.clone(),
        );
        registry.register(
            "events_deduplicated",
            "Events that left the index unchanged: same hash (unchanged) or older than held (stale)",
            families.events_deduplicated.clone(),
        );
        registry.register(
            "events_filtered",
            "Events dropped because their repository is outside index.repos (another node indexes them)",
            families.events_filtered.clone(),
        );
        registry.register(
            "sink_published",
            "Messages the JetStream sink published and the cluster acknowledged",
            families.sink_published.clone(),
        );
        registry.register(
            "sink_lag",
            "Indexed event versions the JetStream sink has not published yet",
            families.sink_lag.clone(),
        );
        registry.register(
            "sink_errors",
            "JetStream sink failures by kind (connect, stream, publish, store)",
            families.sink_errors.clone(),
        );
        registry.register(
            "events_rejected",
            "Events refused, by neighbour and reason (bad_signature, bad_hash, wrong_target, malformed, bad_rid, \
             unfetchable, unindexable)",
            families.events_rejected.clone(),
        );
        registry.register(
            "dead_letters_dropped",
            "Dead letters dropped, oldest first, to keep within pipeline.dead_letters",
            families.dead_letters_dropped.clone(),
        );
        registry.register(
            "dead_letters",
            "Rejected items held in the dead-letter tree (GET /api/processor/github/rejected)",
            families.dead_letters.clone(),
        );
        registry.register(
            "bundles_fetched",
            "Bundles fetched with fetch_bundles, by neighbour",
            families.bundles_fetched.clone(),
        );
        registry.register(
            "events_legacy_hash",
            "Bundles accepted whose manifest hash uses the legacy scheme of rid-lib before 3.2.7, by neighbour",
            families.events_legacy_hash.clone(),
        );
        registry.register(
            "inbox_depth",
            "Events stored durably but not yet indexed",
            families.inbox_depth.clone(),
        );
        registry.register(
            "index_events",
            "Events in the index",
            families.index_events.clone(),
        );
        registry.register(
            "index_repositories",
            "Repositories in the index",
            families.index_repositories.clone(),
        );
        registry.register(
            "api_requests",
            "Query API requests by route template and HTTP status",
            families.api_requests.clone(),
        );
        registry.register(
            "api_requests_refused",
            "Query API requests refused before routing, by reason (host, origin, cross_site, token, content_type)",
            families.api_refused.clone(),
        );
        registry.register_with_unit(
            "api_request_duration",
            "Query API latency by route template",
            Unit::Seconds,
            families.api_latency.clone(),
        );
        registry.register(
            "api_connections",
            "Open connections to the query API",
            families.api_connections.clone(),
        );
        registry.register(
            "api_connections_closed",
            "Connections the query API closed itself, by reason (header_timeout, idle, evicted, refused)",
            families.api_connections_closed.clone(),
        );
        registry.register(
            "handshakes",
            "Handshakes (FORGET + NEW of our profile) sent successfully, by neighbour",
            families.handshakes.clone(),
        );
        registry.register(
            "edges_proposed",
            "POLL edges proposed, by the provider asked to serve us",
            families.edges_proposed.clone(),
        );
        registry.register(
            "node_info",
            "Always 1: this node's RID and the program version",
            families.node_info.clone(),
        );
        registry.register(
            "action_attempts",
            "Webhook delivery attempts by action and outcome (delivered, retry, failed)",
            families.action_attempts.clone(),
        );
        registry.register_with_unit(
            "action_attempt_duration",
            "Webhook delivery attempt time by action, failed attempts included",
            Unit::Seconds,
            families.action_duration.clone(),
        );
        registry.register(
            "action_queued",
            "Webhook deliveries waiting, by action",
            families.action_queued.clone(),
        );
        Metrics(Arc::new(Families {
            registry,
            ..families
        }))
    }

    /// Every series in OpenMetrics text format, ending with `# EOF`; serve it as [`METRICS_CONTENT_TYPE`].
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if let Err(e) = encode(&mut out, &self.0.registry) {
            // Writing to a String cannot fail; a metric that fails to encode itself is a bug, not a reason to
            // fail the scrape.
            tracing::error!(target: "koi_github_indexer::telemetry", error = %e, "encoding metrics failed");
        }
        out
    }

    /// The families, for the events that bump them.
    pub(super) fn families(&self) -> &Families {
        &self.0
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics { .. }")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fresh_registry_lists_every_family_and_ends_with_eof() {
        let text = Metrics::new().encode();
        for name in [
            "koi_indexer_polls",
            "koi_indexer_poll_duration_seconds",
            "koi_indexer_events_received",
            "koi_indexer_events_indexed",
            "koi_indexer_events_deduplicated",
            "koi_indexer_events_rejected",
            "koi_indexer_bundles_fetched",
            "koi_indexer_events_legacy_hash",
            "koi_indexer_inbox_depth",
            "koi_indexer_index_events",
            "koi_indexer_index_repositories",
            "koi_indexer_api_requests",
            "koi_indexer_api_requests_refused",
            "koi_indexer_api_request_duration_seconds",
            "koi_indexer_api_connections",
            "koi_indexer_api_connections_closed",
            "koi_indexer_handshakes",
            "koi_indexer_edges_proposed",
            "koi_indexer_node_info",
        ] {
            assert!(
                text.contains(&format!("# TYPE {name} ")),
                "{name} missing:\n{text}"
            );
        }
        assert!(
            text.contains("koi_indexer_events_indexed_total 0"),
            "{text}"
        );
        assert!(
            text.contains(r#"koi_indexer_events_deduplicated_total{reason="stale"} 0"#),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"), "{text}");
    }

    #[test]
    fn clones_share_series() {
        let a = Metrics::new();
        let b = a.clone();
        b.families().events_indexed.inc();
        assert!(a.encode().contains("koi_indexer_events_indexed_total 1"));
    }
}
