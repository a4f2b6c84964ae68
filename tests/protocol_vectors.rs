//! The protocol module against the recorded koi-net 2.1.2 session and test vectors in `tests/fixtures/`.

use std::collections::HashMap;

use koi_github_indexer::protocol::envelope::unsigned_envelope_bytes;
use koi_github_indexer::protocol::json::content_hash;
use koi_github_indexer::protocol::{
    Bundle, BundlesPayload, Event, EventsPayload, NodeProfile, ReceivedEnvelope, RequestPayload,
    ResponsePayload, Rid,
};
use serde_json::Value;

fn lines(name: &str) -> Vec<Value> {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{path}: {e}"))
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn content_hashes_equal_rid_lib_for_every_jcs_vector() {
    let vectors: Vec<_> = lines("canonical-vectors.ndjson")
        .into_iter()
        .filter(|v| v["kind"] == "jcs_sha256")
        .collect();
    assert!(vectors.len() >= 9);
    for v in vectors {
        let canonical = koi_github_indexer::protocol::json::canonical_json(&v["contents"]);
        assert_eq!(
            String::from_utf8(canonical).unwrap(),
            v["canonical"].as_str().unwrap()
        );
        let Some(contents) = v["contents"].as_object() else {
            continue; // a bare value: its canonical form is checked above
        };
        assert_eq!(
            content_hash(contents),
            v["sha256_hash"].as_str().unwrap(),
            "{}",
            v["contents"]
        );
    }
}

#[test]
fn signed_bytes_equal_every_unsigned_envelope_vector() {
    let vectors: Vec<_> = lines("canonical-vectors.ndjson")
        .into_iter()
        .filter(|v| v["kind"] == "unsigned_envelope")
        .collect();
    assert!(vectors.len() >= 11);
    for v in vectors {
        // Typed round trip: the payload parses into our types and serialises to the exact bytes koi-net signs.
        let payload: RequestPayload = serde_json::from_value(v["payload"].clone()).unwrap();
        let source = Rid::parse(v["source_node"].as_str().unwrap()).unwrap();
        let target = Rid::parse(v["target_node"].as_str().unwrap()).unwrap();
        let bytes = unsigned_envelope_bytes(&payload, &source, &target).unwrap();
        assert_eq!(
            String::from_utf8(bytes).unwrap(),
            v["signed_bytes"].as_str().unwrap()
        );
    }
}

/// Public keys of every node in the recording, from the profile bundles it carries.
fn recorded_keys(exchanges: &[Value]) -> HashMap<String, String> {
    let mut keys = HashMap::new();
    for ex in exchanges {
        for body in [&ex["request"], &ex["response"]] {
            let Some(text) = body.as_str() else { continue };
            let Ok(env) = ReceivedEnvelope::parse(text.as_bytes()) else {
                continue;
            };
            let mut bundles: Vec<Bundle> = Vec::new();
            if let Ok(events) = env.payload::<EventsPayload>() {
                bundles.extend(events.events.iter().filter_map(Event::bundle));
            }
            if let Ok(b) = env.payload::<BundlesPayload>() {
                bundles.extend(b.bundles);
            }
            for bundle in bundles
                .into_iter()
                .filter(|b| b.rid().is_type("orn:koi-net.node"))
            {
                let profile: NodeProfile = bundle.contents_as().unwrap();
                keys.insert(bundle.rid().to_string(), profile.public_key.unwrap());
            }
        }
    }
    keys
}

#[test]
fn every_signed_body_in_the_recorded_session_verifies() {
    let exchanges = lines("wire-koi-net-2.1.2.ndjson");
    let keys = recorded_keys(&exchanges);
    assert_eq!(
        keys.len(),
        3,
        "partial, coordinator and sensor profiles: {keys:?}"
    );
    let mut verified = 0;
    for ex in &exchanges {
        for body in [&ex["request"], &ex["response"]] {
            let Some(text) = body.as_str() else { continue };
            if text == "null" || text.contains("\"error_response\"") {
                continue;
            }
            let env = ReceivedEnvelope::parse(text.as_bytes()).unwrap();
            let key = &keys[env.source_node().as_str()];
            env.verify(&env.target_node().clone(), key)
                .unwrap_or_else(|e| panic!("{}: {e}", ex["url"]));
            // And every payload decodes into our types.
            if text == ex["request"].as_str().unwrap() {
                env.payload::<RequestPayload>().unwrap();
            } else {
                env.payload::<ResponsePayload>().unwrap();
            }
            verified += 1;
        }
    }
    assert!(verified >= 55, "verified {verified}");
}

#[test]
fn recorded_bundles_hash_to_their_manifests() {
    for ex in lines("wire-koi-net-2.1.2.ndjson") {
        let Some(text) = ex["response"].as_str() else {
            continue;
        };
        let Ok(env) = ReceivedEnvelope::parse(text.as_bytes()) else {
            continue;
        };
        if let Ok(b) = env.payload::<BundlesPayload>() {
            for bundle in b.bundles {
                bundle.verify_hash().unwrap();
            }
        }
    }
}
