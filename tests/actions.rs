//! Issue 13's proof for actions: the daemon indexes from the real koi-net 2.1.2 coordinator and sensor and POSTs
//! the new events that match each `[[action]]` to a real HTTP receiver on loopback, which fails, stays silent past
//! the timeout, refuses, and is down for a while, across a kill -9 of the daemon.

mod support;

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use serde_json::{json, Value};

use support::pynet::{fixture_items, push_items, Daemon, PyNode};
use support::receiver::{Receiver, Reply};

const SECRET_ENV: &str = "KOI_TEST_ACTION_SECRET";
const SECRET: &str = "a shared secret, as on GitHub";
const HELLO: &str = "orn:github.repo:octo-org/hello-world";

/// `sha256=<hex>` of the body, computed here independently of the daemon (HMAC-SHA256 by its definition).
fn expected_signature(body: &[u8]) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Every event the daemon holds, as rows.
fn all_events(daemon: &Daemon) -> Vec<Value> {
    daemon
        .get("/api/processor/github/events?limit=100")
        .expect("/events answers")
        .as_array()
        .unwrap()
        .clone()
}

/// The event RIDs answered 2xx at `path`.
fn delivered(receiver: &Receiver, path: &str) -> BTreeSet<String> {
    receiver
        .received_at(path)
        .iter()
        .filter(|r| r.answered.is_some_and(|s| (200..300).contains(&s)))
        .map(|r| r.json()["event"]["event_rid"].as_str().unwrap().to_owned())
        .collect()
}

fn action(daemon: &Daemon, name: &str) -> Value {
    daemon
        .get("/api/processor/github/actions")
        .expect("/actions answers")
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == name)
        .cloned()
        .unwrap_or_else(|| panic!("action {name} is listed"))
}

fn post(daemon: &Daemon, path: &str) -> (u16, Value) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(&daemon.api).unwrap();
    write!(
        stream,
        "POST {path} HTTP/1.0\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: 0\r\n\r\n",
        daemon.api
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response[9..12].parse().unwrap();
    let body = response.split_once("\r\n\r\n").unwrap().1;
    (status, serde_json::from_str(body).unwrap())
}

#[test]
fn matching_new_events_are_delivered_signed_in_order_through_failures_and_a_kill_9() {
    std::env::set_var(SECRET_ENV, SECRET);
    let root = tempfile::tempdir().unwrap();
    let mut receiver = Receiver::start();
    // The hello-world hook fails twice, then stays silent past the timeout once, then takes everything.
    receiver.script(
        "/hello",
        &[
            Reply::Status(500),
            Reply::Status(503),
            Reply::Silent(Duration::from_millis(1500)),
            Reply::Status(429),
        ],
    );
    receiver.always("/gone", Reply::Status(410));
    receiver.always("/flaky", Reply::Status(502));
    let hook = |name: &str, path: &str, filters: &str, extra: &str| {
        format!(
            "[[action]]\nname = \"{name}\"\nurl = \"{}\"\nsecret_env = \"{SECRET_ENV}\"\n{filters}\ntimeout = \"500ms\"\n\
             min_backoff = \"50ms\"\nmax_backoff = \"200ms\"\n{extra}\n",
            receiver.url(path)
        )
    };
    let config = [
        hook("hello", "/hello", "repos = [\"Octo-Org/Hello-World\"]", ""),
        hook("issues", "/issues", "event_types = [\"issues\"]", ""),
        hook("gone", "/gone", "event_types = [\"pull_request\"]", ""),
        hook(
            "flaky",
            "/flaky",
            "event_types = [\"release\"]",
            "max_age = \"1s\"",
        ),
    ]
    .concat();

    let coordinator = PyNode::coordinator(root.path());
    let mut items = fixture_items();
    items.extend(push_items("first", 5));
    let sensor = PyNode::sensor_with_items(root.path(), &coordinator, &Value::Array(items.clone()));
    let mut daemon = Daemon::start_with(root.path(), &coordinator, &config);
    daemon.wait_until(
        "the sensor's events are indexed",
        Duration::from_secs(90),
        |d| d["events"].as_u64() == Some(items.len() as u64),
    );
    let events = all_events(&daemon);
    let matching = |f: &dyn Fn(&Value) -> bool| -> BTreeSet<String> {
        events
            .iter()
            .filter(|e| f(e))
            .map(|e| e["event_rid"].as_str().unwrap().to_owned())
            .collect()
    };
    let hello = matching(&|e| e["repo_rid"] == HELLO);
    let issues = matching(&|e| e["event_type"] == "issues");
    let pulls = matching(&|e| e["event_type"] == "pull_request");
    assert!(hello.len() >= 5 && !issues.is_empty() && !pulls.is_empty());

    receiver.wait_until(
        "every matching event is delivered",
        Duration::from_secs(60),
        |_| delivered(&receiver, "/hello") == hello && delivered(&receiver, "/issues") == issues,
    );
    // Every request is signed over its exact body, and says what it carries.
    for r in receiver.received() {
        assert_eq!(
            r.header("x-koi-signature-256"),
            expected_signature(&r.body),
            "{}",
            r.path
        );
        let body = r.json();
        assert_eq!(r.header("x-koi-event"), body["event"]["event_type"]);
        assert_eq!(r.header("x-koi-delivery"), body["delivery"]);
        assert!(r.header("user-agent").starts_with("koi-github-indexer/"));
        assert_eq!(r.header("content-type"), "application/json");
        assert!(
            body["contents"].is_object(),
            "contents are kept, so they are sent"
        );
        let rid = body["event"]["event_rid"].as_str().unwrap();
        let expected_in = match r.path.as_str() {
            "/hello" => &hello,
            "/issues" => &issues,
            "/gone" => &pulls,
            "/flaky" => &matching(&|e| e["event_type"] == "release"),
            other => panic!("unexpected path {other}"),
        };
        assert!(expected_in.contains(rid), "{rid} does not match {}", r.path);
    }
    // In order: the first attempt of each delivery comes in queue order, and a delivery is retried until it is
    // through before the next one is tried.
    let log: Vec<Value> = daemon
        .get("/api/processor/github/actions/hello/deliveries?limit=100")
        .unwrap()
        .as_array()
        .unwrap()
        .clone();
    let number: HashMap<String, u64> = log
        .iter()
        .map(|d| {
            (
                d["id"].as_str().unwrap().to_owned(),
                d["number"].as_u64().unwrap(),
            )
        })
        .collect();
    let arrivals: Vec<u64> = receiver
        .received_at("/hello")
        .iter()
        .map(|r| number[r.header("x-koi-delivery")])
        .collect();
    assert!(arrivals.windows(2).all(|w| w[0] <= w[1]), "{arrivals:?}");
    let first = log.iter().find(|d| d["number"] == 1).unwrap();
    assert_eq!(first["state"], "delivered");
    assert_eq!(
        first["attempts"], 5,
        "500, 503, silent, 429, then 200: {first}"
    );
    let errors: Vec<&str> = first["log"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|a| a["error"].as_str())
        .collect();
    assert!(
        errors[2].contains("no answer within the timeout"),
        "{errors:?}"
    );
    assert!(errors[3].contains("429"), "{errors:?}");

    // 410 is final: each pull request is tried once and kept in the failed list; 502 until max_age gives up.
    daemon.wait_until(
        "refused and expired deliveries are given up",
        Duration::from_secs(30),
        |_| {
            action(&daemon, "gone")["failed"].as_u64() == Some(pulls.len() as u64)
                && action(&daemon, "flaky")["queued"] == 0
        },
    );
    assert_eq!(receiver.received_at("/gone").len(), pulls.len());
    let gone = action(&daemon, "gone");
    assert!(
        gone["last_error"].as_str().unwrap().contains("410"),
        "{gone}"
    );
    assert_eq!(gone["delivered"], 0);
    let flaky = action(&daemon, "flaky");
    assert!(flaky["failed"].as_u64().unwrap() >= 1, "{flaky}");
    assert!(
        flaky["last_error"].as_str().unwrap().contains("max_age"),
        "{flaky}"
    );
    assert!(
        receiver.received_at("/flaky").len() > 1,
        "retried before giving up"
    );

    // An UPDATE of a delivered event fires nothing.
    let before = receiver.received_at("/hello").len();
    let mut update = push_items("first", 1).remove(0);
    update["contents"]["payload"]["head_commit"]["message"] = json!("amended");
    sensor.emit(&update);
    sensor.wait_emitted(Duration::from_secs(20));
    daemon.wait_until("the update is indexed", Duration::from_secs(30), |_| {
        daemon
            .get("/api/processor/github/events/orn:github.event:octo-org/hello-world:first-0/history")
            .is_some_and(|h| h.as_array().is_some_and(|a| a.len() == 2))
    });

    // Metrics per action (before the restart, which starts them from zero).
    assert!(
        daemon.metric(
            "koi_indexer_action_attempts_total",
            &["action=\"hello\"", "outcome=\"retry\""]
        ) >= 4.0
    );
    assert!(
        daemon.metric(
            "koi_indexer_action_attempts_total",
            &["action=\"hello\"", "outcome=\"delivered\""]
        ) >= 1.0
    );
    assert!(
        daemon.metric(
            "koi_indexer_action_attempts_total",
            &["action=\"gone\"", "outcome=\"failed\""]
        ) >= 1.0
    );

    // The receiver goes down; new events queue up; the daemon is killed while they wait.
    receiver.stop();
    let later = push_items("later", 3);
    sensor.emit(&Value::Array(later.clone()));
    sensor.wait_emitted(Duration::from_secs(20));
    daemon.wait_until(
        "the new events are indexed and their delivery fails",
        Duration::from_secs(30),
        |d| {
            d["events"].as_u64() == Some(items.len() as u64 + 3)
                && action(&daemon, "hello")["last_error"]
                    .as_str()
                    .is_some_and(|e| e.contains("connect"))
        },
    );
    assert_eq!(
        receiver.received_at("/hello").len(),
        before,
        "nothing for the UPDATE"
    );
    assert_eq!(
        action(&daemon, "hello")["queued"],
        3,
        "all three wait when the daemon is killed"
    );
    daemon.kill9();
    receiver.resume();
    daemon.restart();
    let later_rids: BTreeSet<String> = later
        .iter()
        .map(|i| i["rid"].as_str().unwrap().to_owned())
        .collect();
    receiver.wait_until(
        "the deliveries queued before the kill -9 are delivered after the restart",
        Duration::from_secs(60),
        |_| delivered(&receiver, "/hello").is_superset(&later_rids),
    );
    // The receiver records a request before it answers, and the daemon records the delivery once it has the
    // answer: wait for the daemon's side too.
    daemon.wait_until(
        "the daemon has recorded the deliveries the receiver got",
        Duration::from_secs(30),
        |_| action(&daemon, "hello")["queued"] == 0,
    );
    let hello_now = action(&daemon, "hello");
    assert_eq!(hello_now["queued"], 0, "{hello_now}");
    assert_eq!(
        hello_now["delivered"].as_u64(),
        Some(hello.len() as u64 + 3),
        "each delivered once in the log"
    );

    // Redelivery: the same event again, as a new delivery naming the original.
    let original = &log[0];
    let (status, again) = post(
        &daemon,
        &format!(
            "/api/processor/github/actions/hello/deliveries/{}/redeliver",
            original["id"].as_str().unwrap()
        ),
    );
    assert_eq!(status, 202, "{again}");
    assert_eq!(again["redelivery_of"], original["id"]);
    receiver.wait_until("the redelivery arrives", Duration::from_secs(20), |r| {
        r.iter()
            .any(|r| r.header("x-koi-redelivery-of") == original["id"])
    });
    let redelivered = receiver
        .received()
        .into_iter()
        .find(|r| r.header("x-koi-redelivery-of") == original["id"])
        .unwrap();
    assert_eq!(
        redelivered.json()["event"]["event_rid"],
        original["event_rid"]
    );
    assert_eq!(redelivered.json()["delivery"], again["id"]);
    let (status, missing) = post(
        &daemon,
        "/api/processor/github/actions/hello/deliveries/nope/redeliver",
    );
    assert_eq!(status, 404, "{missing}");
    let (status, unknown) = post(
        &daemon,
        "/api/processor/github/actions/nope/deliveries/x/redeliver",
    );
    assert_eq!(status, 404);
    assert!(
        unknown["error"].as_str().unwrap().contains("hello"),
        "names the configured ones: {unknown}"
    );

    // The CLI shows the same.
    let cli = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_koi-github-indexer"))
            .args(args)
            .arg("--config")
            .arg(&daemon.config)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let table = cli(&["actions"]);
    for name in ["hello", "issues", "gone", "flaky"] {
        assert!(table.contains(name), "{table}");
    }
    let deliveries = cli(&["deliveries", "hello", "-n", "5"]);
    assert!(deliveries.contains("delivered"), "{deliveries}");
    assert!(
        deliveries.contains(again["id"].as_str().unwrap()),
        "{deliveries}"
    );
}
