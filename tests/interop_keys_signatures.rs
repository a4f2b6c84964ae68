//! Issue 2, item 6: keys and signed envelopes against the real koi-net 2.1.2 library, both ways.

mod support;

use koi_github_indexer::protocol::{
    sign_envelope, Bundle, Contents, Event, EventType, EventsPayload, NodeKey, PollEvents,
    ReceivedEnvelope, RequestPayload, Rid,
};
use support::{koi_tool, koi_tool_output};

const PASSWORD: &str = "correct horse battery staple";
const ENV: &[(&str, &str)] = &[("PRIV_KEY_PASSWORD", PASSWORD)];

fn write_body(dir: &std::path::Path, body: &[u8]) -> String {
    let path = dir.join("body.json");
    std::fs::write(&path, body).unwrap();
    path.to_str().unwrap().to_owned()
}

/// `koi_tool verify` arguments for a body in `file` signed by the key `pk`, addressed to `target`.
fn verify_args<'a>(pk: &'a str, file: &'a str, target: &'a Rid) -> [&'a str; 7] {
    [
        "verify",
        "--public-key",
        pk,
        "--body",
        file,
        "--target",
        target.as_str(),
    ]
}

#[test]
fn python_loads_a_key_file_we_wrote_and_we_load_one_it_wrote() {
    let dir = tempfile::tempdir().unwrap();
    // Ours → koi-net.
    let ours = NodeKey::generate();
    let our_path = dir.path().join("ours.pem");
    ours.save(&our_path, PASSWORD).unwrap();
    let loaded = koi_tool(&["loadkey", "--in", our_path.to_str().unwrap()], ENV);
    assert_eq!(loaded["public_key"], ours.public_key().to_base64());
    assert_eq!(loaded["rid_hash"], ours.node_rid("x").unwrap().hash());
    // koi-net → ours.
    let their_path = dir.path().join("priv_key.pem");
    let made = koi_tool(&["genkey", "--out", their_path.to_str().unwrap()], ENV);
    let theirs = NodeKey::load(&their_path, PASSWORD).unwrap();
    assert_eq!(made["public_key"], theirs.public_key().to_base64());
    assert_eq!(made["rid_hash"], theirs.node_rid("x").unwrap().hash());
    // And a wrong password is a clear error on our side.
    assert!(NodeKey::load(&their_path, "wrong")
        .unwrap_err()
        .to_string()
        .contains("wrong password"));
}

fn sample_payloads(me: &Rid) -> Vec<RequestPayload> {
    let mut contents = Contents::new();
    // Floats, nulls, non-ASCII, nesting: the parts where serialisers differ.
    let value = serde_json::json!({"v": 1.5, "n": null, "s": "naïve café ☕ \"q\"", "e": 1e21, "small": 1e-7, "nested": {"z": [1, 2.0, {"a": null}]}});
    if let serde_json::Value::Object(map) = value {
        contents = map;
    }
    let bundle = Bundle::generate(
        Rid::parse("orn:github.event:octo-org/hello-world:push-1").unwrap(),
        contents,
    );
    vec![
        RequestPayload::PollEvents(PollEvents { limit: 0 }),
        RequestPayload::PollEvents(PollEvents { limit: 50 }),
        RequestPayload::EventsPayload(EventsPayload {
            events: vec![
                Event::forget(me.clone()),
                Event::from_bundle(EventType::New, bundle),
            ],
        }),
    ]
}

#[test]
fn python_verifies_envelopes_we_signed_and_rejects_tampered_ones() {
    let dir = tempfile::tempdir().unwrap();
    let key = NodeKey::generate();
    let me = key.node_rid("indexer").unwrap().rid().clone();
    let them = NodeKey::generate()
        .node_rid("coordinator")
        .unwrap()
        .rid()
        .clone();
    let pk = key.public_key().to_base64();
    for payload in sample_payloads(&me) {
        let body = sign_envelope(&payload, &me, &them, &key).unwrap();
        let file = write_body(dir.path(), &body);
        let ok = koi_tool(&verify_args(&pk, &file, &them), ENV);
        assert_eq!(ok["ok"], true, "{}", String::from_utf8_lossy(&body));
    }
    // One byte of payload changed: koi-net rejects the signature.
    let body =
        String::from_utf8(sign_envelope(&sample_payloads(&me)[1], &me, &them, &key).unwrap())
            .unwrap();
    let file = write_body(
        dir.path(),
        body.replace("\"limit\":50", "\"limit\":51").as_bytes(),
    );
    let out = koi_tool_output(&verify_args(&pk, &file, &them), ENV);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid_signature"));
}

#[test]
fn we_verify_envelopes_python_signed_and_reject_tampered_ones() {
    let dir = tempfile::tempdir().unwrap();
    let key_path = dir.path().join("priv_key.pem");
    let made = koi_tool(&["genkey", "--out", key_path.to_str().unwrap()], ENV);
    let their_key = made["public_key"].as_str().unwrap().to_owned();
    let them = NodeKey::load(&key_path, PASSWORD)
        .unwrap()
        .node_rid("sensor")
        .unwrap()
        .rid()
        .clone();
    let me = NodeKey::generate()
        .node_rid("indexer")
        .unwrap()
        .rid()
        .clone();
    for payload in sample_payloads(&them) {
        let payload_json = serde_json::to_string(&payload).unwrap();
        let signed = koi_tool(
            &[
                "sign",
                "--key",
                key_path.to_str().unwrap(),
                "--source",
                them.as_str(),
                "--target",
                me.as_str(),
                "--payload",
                &payload_json,
            ],
            ENV,
        );
        let body = serde_json::to_vec(&signed).unwrap();
        let env = ReceivedEnvelope::parse(&body).unwrap();
        env.verify(&me, &their_key)
            .unwrap_or_else(|e| panic!("{e}: {signed}"));
        assert_eq!(env.payload::<RequestPayload>().unwrap(), payload);
        // Re-serialised by serde_json the body may differ in float spelling; verification uses the raw payload,
        // so take the exact text koi-net printed for the tamper check.
        let text = serde_json::to_string(&signed)
            .unwrap()
            .replacen("\"type\"", " \"type\"", 1);
        let tampered = ReceivedEnvelope::parse(text.as_bytes()).unwrap();
        assert!(
            tampered.verify(&me, &their_key).is_err(),
            "a changed payload byte must fail"
        );
    }
}
