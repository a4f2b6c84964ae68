//! Issue 27: every bundle a real network holds. A real koi-net 2.1.2 sensor serves bundles whose manifests carry
//! the hash rid-lib 3.2.5 computed (as the first generation of the upstream GitHub sensor did), over contents with
//! non-ASCII text and floats: the node indexes them, says so, and gives each back exactly as the peer holds it at
//! `GET /bundles/{rid}`. A bundle whose hash matches neither scheme is still refused as `bad_hash`.

mod support;

use std::time::Duration;

use serde_json::{json, Value};

use support::pynet::{Daemon, PyNode};

const LEGACY_EVENT: &str = "orn:github.event:octo-org/hello-world:legacy-1";
const MODERN_EVENT: &str = "orn:github.event:octo-org/hello-world:modern-1";
const FORGED_EVENT: &str = "orn:github.event:octo-org/hello-world:forged-1";
const LEGACY_REPO: &str = "orn:github.repo:octo-org/hello-world";

fn push(message: &str) -> Value {
    json!({
        "webhook_event_type": "push",
        "repository": {"full_name": "octo-org/hello-world"},
        "sender": {"login": "zoë"},
        "payload": {
            "ref": "refs/heads/main",
            "after": "a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1",
            "head_commit": {"id": "a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1", "message": message},
            "score": 1e-05,
            "ratio": 1.0,
        },
    })
}

fn encoded(rid: &str) -> String {
    rid.replace(':', "%3A").replace('/', "%2F")
}

/// The bundle the sensor emitted for `rid`, as koi-net serialised it.
fn emitted(sensor: &PyNode, rid: &str) -> Value {
    let text = std::fs::read_to_string(sensor.dir().join("emitted.ndjson")).unwrap();
    text.lines()
        .rev()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|b| b["manifest"]["rid"] == rid)
        .unwrap_or_else(|| panic!("the sensor emitted {rid}"))
}

#[test]
fn bundles_hashed_by_older_rid_lib_are_indexed_and_given_back_exactly() {
    let root = tempfile::tempdir().unwrap();
    let coordinator = PyNode::coordinator(root.path());
    let items = json!([
        {"rid": LEGACY_EVENT, "contents": push("Fix 🐛 in the naïve parser — thanks 👍"), "hash": "legacy"},
        {"rid": MODERN_EVENT, "contents": push("Ünïcode, hashed as RFC 8785 ✓")},
        {"rid": FORGED_EVENT, "contents": push("forged ✗"), "hash": "0".repeat(64)},
        {"rid": LEGACY_REPO, "contents": {"full_name": "octo-org/hello-world", "description": "Café ☕ tools", "stars": 1.5}, "hash": "legacy"},
    ]);
    let sensor = PyNode::sensor_with_items(root.path(), &coordinator, &items);
    let daemon = Daemon::start(root.path(), &coordinator);
    daemon.wait_until(
        "both good events are indexed and the forged one refused",
        Duration::from_secs(90),
        |d| d["events"].as_u64() == Some(2) && d["rejected"].as_u64() >= Some(1),
    );

    // Each event says how its hash was made.
    let legacy = daemon
        .get(&format!(
            "/api/processor/github/events/{}",
            encoded(LEGACY_EVENT)
        ))
        .unwrap();
    assert_eq!(legacy["hash_scheme"], "legacy", "{legacy}");
    assert!(
        legacy["summary"].as_str().unwrap().contains("🐛"),
        "{legacy}"
    );
    let modern = daemon
        .get(&format!(
            "/api/processor/github/events/{}",
            encoded(MODERN_EVENT)
        ))
        .unwrap();
    assert_eq!(modern["hash_scheme"], "rfc8785", "{modern}");

    // Any bundle held, event or repository, exactly as the peer holds it.
    for rid in [LEGACY_EVENT, MODERN_EVENT, LEGACY_REPO] {
        let held = daemon
            .get(&format!("/api/processor/github/bundles/{}", encoded(rid)))
            .unwrap_or_else(|| panic!("/bundles/{rid} answers"));
        let peer = emitted(&sensor, rid);
        assert_eq!(held["rid"], rid);
        assert_eq!(
            held["manifest"], peer["manifest"],
            "{rid}: the manifest as received"
        );
        assert_eq!(held["contents"], peer["contents"], "{rid}: the contents");
        assert_eq!(held["contents_kept"], true);
        let expected = if rid == MODERN_EVENT {
            "rfc8785"
        } else {
            "legacy"
        };
        assert_eq!(held["hash_scheme"], expected, "{rid}");
    }
    // Unencoded RIDs work too; unknown and malformed ones are a 404 and a 400.
    let plain = daemon
        .get(&format!("/api/processor/github/bundles/{LEGACY_REPO}"))
        .unwrap();
    assert_eq!(plain["rid"], LEGACY_REPO);
    let unknown = daemon
        .get("/api/processor/github/bundles/orn:github.event:octo-org/hello-world:nope")
        .unwrap();
    assert!(
        unknown["error"]
            .as_str()
            .unwrap()
            .contains("no bundle is held"),
        "{unknown}"
    );
    let malformed = daemon
        .get("/api/processor/github/bundles/not-a-rid")
        .unwrap();
    assert!(
        malformed["error"].as_str().unwrap().contains("RID"),
        "{malformed}"
    );

    // Visible: a metric by neighbour, and the forged one is still a bad hash.
    let sensor_rid = sensor.rid().to_owned();
    assert!(
        daemon.metric(
            "koi_indexer_events_legacy_hash_total",
            &[&format!("neighbour=\"{sensor_rid}\"")]
        ) >= 2.0,
        "{}",
        daemon.get_text("/metrics").unwrap()
    );
    let rejected = daemon.get("/api/processor/github/rejected").unwrap();
    let forged = rejected
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["rid"] == FORGED_EVENT)
        .unwrap_or_else(|| panic!("the forged bundle is a dead letter: {rejected}"));
    assert_eq!(forged["reason"], "bad_hash");
    assert!(
        daemon.log().contains("legacy scheme"),
        "a debug line says so"
    );

    // The CLI shows the same.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_koi-github-indexer"))
        .args(["bundle", LEGACY_EVENT, "--config"])
        .arg(&daemon.config)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("legacy") && text.contains(LEGACY_EVENT),
        "{text}"
    );
}
