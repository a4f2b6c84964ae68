use super::*;
use crate::telemetry::logging::tests::capture;
use crate::telemetry::LogFormat;

const N: &str = "orn:koi-net.node:sensor+abc";

#[test]
fn poll_failed_warns_with_neighbour_url_and_cause_and_counts_the_outcome() {
    let metrics = Metrics::new();
    let out = capture("info", LogFormat::Text, || {
        PollFailed {
            neighbour: N,
            url: "http://127.0.0.1:9/koi-net",
            cause: "connection refused",
            outcome: PollOutcome::Timeout,
            duration: Duration::from_millis(5000),
            backoff: Some(Duration::from_millis(10_250)),
            expected: false,
        }
        .emit(&metrics);
    });
    assert!(out.contains("WARN"), "{out}");
    assert!(out.contains(&format!("neighbour={N}")), "{out}");
    assert!(out.contains("url=http://127.0.0.1:9/koi-net"), "{out}");
    assert!(out.contains("cause=connection refused"), "{out}");
    assert!(out.contains("retry_in=10.25s"), "{out}");
    let text = metrics.encode();
    assert!(
        text.contains(&format!(
            r#"koi_indexer_polls_total{{neighbour="{N}",outcome="timeout"}} 1"#
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            r#"koi_indexer_poll_duration_seconds_count{{neighbour="{N}"}} 1"#
        )),
        "{text}"
    );
}

#[test]
fn a_normal_first_unknown_node_answer_is_info_not_a_warning() {
    let metrics = Metrics::new();
    let out = capture("info", LogFormat::Text, || {
        PollFailed {
            neighbour: N,
            url: "http://127.0.0.1:9/koi-net",
            cause: "unknown_node",
            outcome: PollOutcome::UnknownNode,
            duration: Duration::from_millis(5),
            backoff: Some(Duration::from_millis(150)),
            expected: true,
        }
        .emit(&metrics);
    });
    assert!(out.contains("INFO") && !out.contains("WARN"), "{out}");
    assert!(
        out.contains("waiting for the neighbour to learn about us"),
        "{out}"
    );
    assert!(metrics.encode().contains(&format!(
        r#"koi_indexer_polls_total{{neighbour="{N}",outcome="unknown_node"}} 1"#
    )));
}

#[test]
fn poll_succeeded_is_debug_and_counts_poll_and_events() {
    let metrics = Metrics::new();
    let event = PollSucceeded {
        neighbour: N,
        url: "http://127.0.0.1:8001/koi-net",
        events: 3,
        duration: Duration::from_millis(12),
    };
    let quiet = capture("info", LogFormat::Text, || event.emit(&metrics));
    assert!(quiet.is_empty(), "a poll is not logged at info: {quiet}");
    let loud = capture("debug", LogFormat::Text, || event.emit(&metrics));
    assert!(
        loud.contains("DEBUG") && loud.contains("polled") && loud.contains("events=3"),
        "{loud}"
    );
    let text = metrics.encode();
    assert!(
        text.contains(&format!(
            r#"koi_indexer_polls_total{{neighbour="{N}",outcome="ok"}} 2"#
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            r#"koi_indexer_events_received_total{{neighbour="{N}"}} 6"#
        )),
        "{text}"
    );
    let attempt = event.to_attempt();
    assert_eq!(
        (
            attempt.outcome.as_str(),
            attempt.events,
            attempt.duration_ms
        ),
        ("ok", 3, 12)
    );
    assert_eq!(attempt.error, None);
}

#[test]
fn index_events_count_by_reason() {
    let metrics = Metrics::new();
    let out = capture("info", LogFormat::Text, || {
        EventIndexed {
            rid: "orn:github.event:1",
        }
        .emit(&metrics);
        EventDeduplicated {
            rid: "orn:github.event:1",
            reason: DedupReason::Unchanged,
        }
        .emit(&metrics);
        EventDeduplicated {
            rid: "orn:github.event:1",
            reason: DedupReason::Stale,
        }
        .emit(&metrics);
        EventRejected {
            neighbour: N,
            rid: "orn:github.event:2",
            reason: RejectReason::BadHash,
            detail: "contents hash to ab…, manifest says cd…",
        }
        .emit(&metrics);
    });
    assert_eq!(
        out.lines().count(),
        1,
        "only the rejection is above debug: {out}"
    );
    assert!(
        out.contains("event rejected") && out.contains("reason=bad_hash"),
        "{out}"
    );
    let text = metrics.encode();
    for series in [
        "koi_indexer_events_indexed_total 1".to_owned(),
        r#"koi_indexer_events_deduplicated_total{reason="unchanged"} 1"#.to_owned(),
        r#"koi_indexer_events_deduplicated_total{reason="stale"} 1"#.to_owned(),
        format!(r#"koi_indexer_events_rejected_total{{neighbour="{N}",reason="bad_hash"}} 1"#),
    ] {
        assert!(text.contains(&series), "{series} missing:\n{text}");
    }
}

#[test]
fn gauges_follow_the_latest_value() {
    let metrics = Metrics::new();
    InboxDepth { depth: 7 }.emit(&metrics);
    InboxDepth { depth: 2 }.emit(&metrics);
    IndexSizes {
        events: 40,
        repositories: 3,
    }
    .emit(&metrics);
    BundlesFetched {
        neighbour: N,
        count: 5,
    }
    .emit(&metrics);
    let text = metrics.encode();
    assert!(text.contains("koi_indexer_inbox_depth 2"), "{text}");
    assert!(text.contains("koi_indexer_index_events 40"), "{text}");
    assert!(text.contains("koi_indexer_index_repositories 3"), "{text}");
    assert!(
        text.contains(&format!(
            r#"koi_indexer_bundles_fetched_total{{neighbour="{N}"}} 5"#
        )),
        "{text}"
    );
}

#[test]
fn api_requests_count_by_route_and_status_with_latency_buckets() {
    let metrics = Metrics::new();
    let route = "/api/processor/github/events";
    ApiRequest {
        route,
        status: 200,
        duration: Duration::from_micros(300),
    }
    .emit(&metrics);
    ApiRequest {
        route,
        status: 400,
        duration: Duration::from_millis(2),
    }
    .emit(&metrics);
    let text = metrics.encode();
    assert!(
        text.contains(&format!(
            r#"koi_indexer_api_requests_total{{route="{route}",status="200"}} 1"#
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            r#"koi_indexer_api_requests_total{{route="{route}",status="400"}} 1"#
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            r#"koi_indexer_api_request_duration_seconds_bucket{{le="0.0005",route="{route}"}} 1"#
        )) || text.contains(&format!(
            r#"koi_indexer_api_request_duration_seconds_bucket{{route="{route}",le="0.0005"}} 1"#
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            r#"koi_indexer_api_request_duration_seconds_count{{route="{route}"}} 2"#
        )),
        "{text}"
    );
}

#[test]
fn start_up_line_names_rid_data_dir_api_and_neighbours() {
    let metrics = Metrics::new();
    let neighbours = vec![N.to_owned(), "orn:koi-net.node:coordinator+def".to_owned()];
    let out = capture("info", LogFormat::Json, || {
        NodeStarted {
            node_rid: "orn:koi-net.node:github_indexer+123",
            data_dir: "/var/lib/koi-github-indexer",
            api_addr: "127.0.0.1:8004",
            neighbours: &neighbours,
        }
        .emit(&metrics);
        HandshakeCompleted { neighbour: N }.emit(&metrics);
        EdgeProposed {
            source: N,
            target: "orn:koi-net.node:github_indexer+123",
            rid_types: &["orn:github.event".to_owned()],
        }
        .emit(&metrics);
    });
    let first: serde_json::Value = serde_json::from_str(out.lines().next().unwrap_or("")).unwrap();
    assert_eq!(first["level"], "INFO");
    assert_eq!(
        first["fields"]["node_rid"],
        "orn:koi-net.node:github_indexer+123"
    );
    assert_eq!(first["fields"]["data_dir"], "/var/lib/koi-github-indexer");
    assert_eq!(first["fields"]["api"], "127.0.0.1:8004");
    assert!(
        first["fields"]["neighbours"]
            .as_str()
            .unwrap_or("")
            .contains("coordinator"),
        "{out}"
    );
    assert_eq!(out.lines().count(), 3, "{out}");
    let text = metrics.encode();
    assert!(
        text.contains(r#"node_rid="orn:koi-net.node:github_indexer+123""#),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            r#"koi_indexer_handshakes_total{{neighbour="{N}"}} 1"#
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            r#"koi_indexer_edges_proposed_total{{source="{N}"}} 1"#
        )),
        "{text}"
    );
}

#[test]
fn outcome_labels_round_trip() {
    for outcome in [
        PollOutcome::Ok,
        PollOutcome::Error,
        PollOutcome::Timeout,
        PollOutcome::UnknownNode,
        PollOutcome::BadSignature,
    ] {
        assert_eq!(PollOutcome::from_label(outcome.as_str()), outcome);
    }
    assert_eq!(PollOutcome::from_label("something new"), PollOutcome::Error);
}
