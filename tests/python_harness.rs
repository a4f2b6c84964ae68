//! Smoke tests of the Python koi-net 2.1.2 harness itself (`tests/py/`, `tests/support/pynet.rs`): the real
//! coordinator and sensor start, join, take items and keep their identity across a restart; `koi_tool` round-trips
//! keys and signs/verifies envelopes with koi-net's own code.

mod support;

use std::time::Duration;

use support::pynet::{koi_tool, koi_tool_output, koi_tool_text, push_items, PyNode};

const ENV: &[(&str, &str)] = &[("PRIV_KEY_PASSWORD", "harness smoke password")];

/// `orn:koi-net.node:<name>+<64 lowercase hex>`.
fn assert_node_rid(rid: &str, name: &str) {
    let rest = rid
        .strip_prefix("orn:koi-net.node:")
        .unwrap_or_else(|| panic!("not a node RID: {rid}"));
    let (n, hash) = rest
        .split_once('+')
        .unwrap_or_else(|| panic!("no +hash: {rid}"));
    assert_eq!(n, name, "{rid}");
    assert_eq!(hash.len(), 64, "{rid}");
    assert!(
        hash.chars()
            .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c)),
        "{rid}"
    );
}

/// A file in the sensor's koi-net cache whose content mentions `needle` (the cache holds one JSON bundle per RID).
fn cache_mentions(node: &PyNode, needle: &str) -> bool {
    std::fs::read_dir(node.dir().join(".rid_cache"))
        .map(|d| {
            d.filter_map(|e| e.ok())
                .any(|e| std::fs::read_to_string(e.path()).is_ok_and(|t| t.contains(needle)))
        })
        .unwrap_or(false)
}

fn wait_for(what: &str, node: &PyNode, timeout: Duration, cond: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + timeout;
    while !cond() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting until {what}\n{}",
            node.log_tail()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn coordinator_and_sensor_start_join_emit_and_the_sensor_restarts_as_itself() {
    let root = tempfile::tempdir().unwrap();
    let coordinator = PyNode::coordinator(root.path());
    assert_node_rid(coordinator.rid(), "coordinator");
    assert_eq!(
        coordinator.base_url(),
        format!("http://127.0.0.1:{}/koi-net", coordinator.port())
    );

    let mut sensor = PyNode::sensor(root.path(), &coordinator, None);
    assert_node_rid(sensor.rid(), "github_sensor");
    assert_ne!(sensor.rid(), coordinator.rid());
    // Joined: the coordinator has cached the sensor's profile.
    assert!(
        cache_mentions(&coordinator, sensor.rid()),
        "{}",
        coordinator.log_tail()
    );

    let items = serde_json::Value::Array(push_items("smoke", 1));
    sensor.emit(&items);
    sensor.wait_emitted(Duration::from_secs(10));
    wait_for(
        "the emitted event is in the sensor's cache",
        &sensor,
        Duration::from_secs(10),
        || cache_mentions(&sensor, "orn:github.event:octo-org/hello-world:smoke-0"),
    );

    let rid = sensor.rid().to_owned();
    let port = sensor.port();
    let status = sensor.stop().expect("the sensor exits on SIGTERM");
    assert!(
        status.success(),
        "exit status {status}\n{}",
        sensor.log_tail()
    );
    assert!(!sensor.is_running());
    sensor.restart();
    assert_eq!(sensor.rid(), rid, "same directory, same identity");
    assert_eq!(sensor.port(), port);
    assert!(sensor.is_running());
    // Still takes items after the restart.
    sensor.emit(&serde_json::json!({"rid": "orn:github.event:octo-org/hello-world:smoke-0", "forget": true}));
    sensor.wait_emitted(Duration::from_secs(10));
    wait_for(
        "the FORGET removes the event from the sensor's cache",
        &sensor,
        Duration::from_secs(10),
        || !cache_mentions(&sensor, "orn:github.event:octo-org/hello-world:smoke-0"),
    );
}

#[test]
fn koi_tool_genkey_then_loadkey_gives_the_same_public_key() {
    let dir = tempfile::tempdir().unwrap();
    let pem = dir.path().join("priv_key.pem");
    let pem = pem.to_str().unwrap();
    let made = koi_tool(&["genkey", "--out", pem], ENV);
    let loaded = koi_tool(&["loadkey", "--in", pem], ENV);
    assert_eq!(made, loaded);
    let public = made["public_key"].as_str().unwrap();
    assert!(
        public.starts_with("MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE"),
        "P-256 SPKI DER: {public}"
    );
    let hash = made["rid_hash"].as_str().unwrap();
    assert_eq!(hash.len(), 64);
    let text = std::fs::read_to_string(pem).unwrap();
    assert!(
        text.starts_with("-----BEGIN ENCRYPTED PRIVATE KEY-----"),
        "{text}"
    );

    let wrong = koi_tool_output(
        &["loadkey", "--in", pem],
        &[("PRIV_KEY_PASSWORD", "not the password")],
    );
    assert!(!wrong.status.success());
    assert!(!String::from_utf8_lossy(&wrong.stderr).is_empty());
}

#[test]
fn koi_tool_sign_then_verify_and_a_tampered_body_fails() {
    let dir = tempfile::tempdir().unwrap();
    let pem = dir.path().join("priv_key.pem");
    let pem = pem.to_str().unwrap();
    let key = koi_tool(&["genkey", "--out", pem], ENV);
    let public = key["public_key"].as_str().unwrap();
    let source = format!(
        "orn:koi-net.node:indexer+{}",
        key["rid_hash"].as_str().unwrap()
    );
    let target = format!("orn:koi-net.node:coordinator+{}", "ab".repeat(32));

    let body = koi_tool_text(
        &[
            "sign",
            "--key",
            pem,
            "--source",
            &source,
            "--target",
            &target,
            "--payload",
            r#"{"type":"poll_events","limit":0}"#,
        ],
        ENV,
    );
    assert!(
        body.starts_with(&format!(
            r#"{{"payload":{{"type":"poll_events","limit":0}},"source_node":"{source}","target_node":"{target}","signature":""#
        )),
        "{body}"
    );
    let file = dir.path().join("body.json");
    let verify = |file: &std::path::Path, target: &str| {
        koi_tool_output(
            &[
                "verify",
                "--public-key",
                public,
                "--body",
                file.to_str().unwrap(),
                "--target",
                target,
            ],
            &[],
        )
    };

    std::fs::write(&file, &body).unwrap();
    let ok = verify(&file, &target);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let out: serde_json::Value = serde_json::from_slice(&ok.stdout).unwrap();
    assert_eq!(out, serde_json::json!({"ok": true}));

    std::fs::write(&file, body.replace(r#""limit":0"#, r#""limit":1"#)).unwrap();
    let tampered = verify(&file, &target);
    assert_eq!(tampered.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&tampered.stderr).contains("invalid_signature"),
        "{}",
        String::from_utf8_lossy(&tampered.stderr)
    );

    std::fs::write(&file, &body).unwrap();
    let elsewhere = verify(
        &file,
        &format!("orn:koi-net.node:other+{}", "cd".repeat(32)),
    );
    assert_eq!(elsewhere.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&elsewhere.stderr).contains("invalid_target"));
}
