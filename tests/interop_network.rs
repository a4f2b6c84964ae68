//! Issue 3's proof: our daemon in a network of the real koi-net 2.1.2 coordinator and a koi-net GitHub sensor.

mod support;

use std::time::Duration;

use support::pynet::{fixture_items, push_items, Daemon, PyNode};

fn events(details: &serde_json::Value) -> u64 {
    details["events"].as_u64().unwrap_or(0)
}

/// The real coordinator, a sensor that emits the GitHubEvent fixtures once joined, and the daemon (its config with
/// `extra` TOML appended). Returns the fixtures as items, then the three processes.
fn network_with_fixtures(
    root: &std::path::Path,
    extra: &str,
) -> (Vec<serde_json::Value>, PyNode, PyNode, Daemon) {
    let coordinator = PyNode::coordinator(root);
    let fixtures = fixture_items();
    let sensor = PyNode::sensor_with_items(
        root,
        &coordinator,
        &serde_json::Value::Array(fixtures.clone()),
    );
    let daemon = Daemon::start_with(root, &coordinator, extra);
    (fixtures, coordinator, sensor, daemon)
}

#[test]
fn events_from_before_and_after_joining_are_all_indexed_and_forget_removes() {
    let root = tempfile::tempdir().unwrap();
    let (fixtures, _coordinator, sensor, mut daemon) = network_with_fixtures(root.path(), "");

    // Held before we joined: found by discovery at the coordinator and catch-up at the sensor.
    daemon.wait_until(
        "the sensor's earlier events are indexed",
        Duration::from_secs(90),
        |d| events(d) == fixtures.len() as u64,
    );

    // Emitted after we joined: delivered by polling the sensor.
    sensor.emit(&serde_json::Value::Array(push_items("live", 5)));
    daemon.wait_until("live events are indexed", Duration::from_secs(60), |d| {
        events(d) == fixtures.len() as u64 + 5
    });

    sensor.emit(
        &serde_json::json!({"rid": "orn:github.event:octo-org/hello-world:live-0", "forget": true}),
    );
    let details = daemon.wait_until("FORGET removes the event", Duration::from_secs(60), |d| {
        events(d) == fixtures.len() as u64 + 4
    });
    assert_eq!(details["inbox"], 0);

    // What a user queries: the index over the real network, through the API.
    let repos = daemon.get("/api/processor/github/repositories").unwrap();
    let hello = repos
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["repo_rid"] == "orn:github.repo:octo-org/hello-world")
        .unwrap_or_else(|| panic!("octo-org/hello-world is listed: {repos}"));
    let page = daemon
        .get("/api/processor/github/repositories/octo-org/hello-world/events?limit=100")
        .unwrap();
    assert_eq!(
        hello["event_count"],
        page.as_array().unwrap().len(),
        "{page}"
    );
    assert!(
        page.as_array()
            .unwrap()
            .iter()
            .all(|e| e["event_rid"] != "orn:github.event:octo-org/hello-world:live-0"),
        "the forgotten event is gone from its repository's events: {page}"
    );
    let live = daemon
        .get("/api/processor/github/events/orn:github.event:octo-org%2Fhello-world:live-1")
        .unwrap();
    assert_eq!(live["event_type"], "push", "{live}");
    assert_eq!(
        live["bundle"]["manifest"]["rid"],
        "orn:github.event:octo-org/hello-world:live-1"
    );

    // What an operator watches: the metrics and the poll log.
    assert_eq!(
        daemon.metric("koi_indexer_events_indexed_total", &[]),
        (fixtures.len() + 5) as f64
    );
    assert_eq!(daemon.metric("koi_indexer_inbox_depth", &[]), 0.0);
    assert_eq!(
        daemon.metric("koi_indexer_index_events", &[]),
        (fixtures.len() + 4) as f64
    );
    assert!(daemon.metric("koi_indexer_polls_total", &[sensor.rid(), "outcome=\"ok\""]) >= 1.0);
    let polls = daemon
        .get(&format!(
            "/api/processor/github/polls?neighbour={}&limit=3",
            sensor.rid()
        ))
        .unwrap();
    let polls = polls.as_array().unwrap();
    assert_eq!(polls.len(), 3, "{polls:?}");
    assert!(polls
        .iter()
        .all(|p| p["neighbour"] == sensor.rid() && p["outcome"] == "ok"));

    // SIGTERM: finish, flush, exit 0 within a few seconds.
    let status = daemon
        .terminate(Duration::from_secs(10))
        .expect("daemon exits within 10 s of SIGTERM");
    assert!(status.success(), "exit status {status}\n{}", daemon.log());
}

#[test]
fn sigkill_mid_stream_then_restart_loses_nothing_and_doubles_nothing() {
    let root = tempfile::tempdir().unwrap();
    let coordinator = PyNode::coordinator(root.path());
    let sensor = PyNode::sensor(root.path(), &coordinator, None);
    let mut daemon = Daemon::start(root.path(), &coordinator);
    daemon.wait_until("subscribed to the sensor", Duration::from_secs(90), |d| {
        d["neighbours"].as_array().is_some_and(|n| {
            n.iter().any(|x| {
                x["rid"].as_str().unwrap_or("").contains("github_sensor") && x["caught_up"] == true
            })
        })
    });

    // A stream of events, with the daemon killed (no flush, no drain) while it is arriving.
    let total = 60;
    for batch in 0..6 {
        sensor.emit(&serde_json::Value::Array(push_items(
            &format!("kill{batch}"),
            total / 6,
        )));
        std::thread::sleep(Duration::from_millis(300));
        if batch == 2 {
            daemon.kill9();
        }
    }
    daemon.restart();
    let details = daemon.wait_until(
        "every event is indexed after the restart",
        Duration::from_secs(90),
        |d| events(d) >= total as u64,
    );
    assert_eq!(events(&details), total as u64, "nothing doubled");
    std::thread::sleep(Duration::from_secs(2));
    let details = daemon.status().unwrap();
    assert_eq!(
        events(&details),
        total as u64,
        "still exactly {total} after further polls"
    );
    assert_eq!(details["inbox"], 0);
    let log = daemon.log();
    assert!(!log.contains("panicked"), "{log}");
}

#[test]
fn a_stopped_sensor_does_not_stop_the_coordinator_polls_and_its_later_events_arrive() {
    let root = tempfile::tempdir().unwrap();
    let coordinator = PyNode::coordinator(root.path());
    let mut sensor = PyNode::sensor_with_items(
        root.path(),
        &coordinator,
        &serde_json::Value::Array(push_items("before", 3)),
    );
    let daemon = Daemon::start(root.path(), &coordinator);
    daemon.wait_until("the first events arrive", Duration::from_secs(90), |d| {
        events(d) == 3
    });

    sensor.stop();
    let details = daemon.wait_until("the sensor is backed off", Duration::from_secs(30), |d| {
        d["neighbours"].as_array().is_some_and(|n| {
            n.iter().any(|x| {
                x["rid"].as_str().unwrap_or("").contains("github_sensor")
                    && x["failures"].as_u64().unwrap_or(0) >= 2
            })
        })
    });
    let coordinator_ok = details["neighbours"]
        .as_array()
        .unwrap()
        .iter()
        .any(|x| x["rid"].as_str().unwrap_or("").contains("coordinator") && x["failures"] == 0);
    assert!(
        coordinator_ok,
        "the coordinator is still polled on time: {details}"
    );

    sensor.restart();
    sensor.emit(&serde_json::Value::Array(push_items("after", 4)));
    daemon.wait_until(
        "events emitted after the sensor returned arrive",
        Duration::from_secs(90),
        |d| events(d) == 7,
    );
    let _ = sensor.log_tail();
}

#[test]
fn retention_prunes_old_events_and_they_are_not_fetched_again() {
    let root = tempfile::tempdir().unwrap();
    // The fixtures' events are days old; a 60 s retention prunes them all (every 6 s), while fresh ones stay.
    let (fixtures, _coordinator, sensor, mut daemon) =
        network_with_fixtures(root.path(), "[index]\nretention = \"60s\"\n");
    daemon.wait_until(
        "the old events are indexed, then pruned",
        Duration::from_secs(90),
        |d| {
            events(d) == 0
                && daemon.metric("koi_indexer_events_indexed_total", &[]) == fixtures.len() as f64
        },
    );
    assert!(daemon
        .log()
        .contains("retention: pruned events older than the cutoff"));

    sensor.emit(&serde_json::Value::Array(push_items("fresh", 2)));
    daemon.wait_until("fresh events are indexed", Duration::from_secs(30), |d| {
        events(d) == 2
    });

    // After a restart, catch-up sees the pruned events' manifests (kept as tombstones) and fetches none again.
    let status = daemon
        .terminate(Duration::from_secs(10))
        .expect("exits on SIGTERM");
    assert!(status.success());
    daemon.restart();
    daemon.wait_until(
        "caught up again after the restart",
        Duration::from_secs(60),
        |d| {
            d["neighbours"].as_array().is_some_and(|n| {
                n.iter().any(|x| {
                    x["rid"].as_str().unwrap_or("").contains("github_sensor")
                        && x["caught_up"] == true
                })
            })
        },
    );
    assert_eq!(daemon.metric("koi_indexer_events_indexed_total", &[]), 0.0);
    assert_eq!(events(&daemon.status().unwrap()), 2);
}
