//! Issue 3's proof: our daemon in a network of the real koi-net 2.1.2 coordinator and a koi-net GitHub sensor.

mod support;

use std::time::Duration;

use support::pynet::{fixture_items, push_items, Daemon, PyNode};

fn events(details: &serde_json::Value) -> u64 {
    details["events"].as_u64().unwrap_or(0)
}

#[test]
fn events_from_before_and_after_joining_are_all_indexed_and_forget_removes() {
    let root = tempfile::tempdir().unwrap();
    let coordinator = PyNode::coordinator(root.path());
    let fixtures = fixture_items();
    let sensor = PyNode::sensor_with_items(
        root.path(),
        &coordinator,
        &serde_json::Value::Array(fixtures.clone()),
    );
    let mut daemon = Daemon::start(root.path(), &coordinator);

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
