//! Seed inputs for the fuzz targets, made from the project's fixtures with the real encoders, so that a fuzzer
//! begins past the decoders' first checks. One function per source of seeds.

use std::collections::BTreeSet;
use std::path::Path;

use super::*;

/// Seeds: `(target, input)`.
type Seeds = Vec<(&'static str, Vec<u8>)>;

/// Seed inputs for every target, made from the project's fixtures (`fixtures` is `tests/fixtures/`) and the config
/// example beside them. `scripts/fuzz.sh` writes them into each target's corpus; the suite runs every one.
pub fn seeds(fixtures: &Path) -> Seeds {
    let mut out = Seeds::new();
    let mut rids = BTreeSet::new();
    let events = wire(fixtures, &mut out, &mut rids);
    let bundles = github(fixtures, &mut out, &mut rids);
    stored(&bundles, events, &mut out);
    rid_seeds(rids, &mut out);
    canonical(fixtures, &mut out);
    segments(&mut out);
    config(fixtures, &mut out);
    api(&mut out);
    out
}

fn read(fixtures: &Path, name: &str) -> Vec<u8> {
    std::fs::read(fixtures.join(name)).unwrap_or_default()
}

/// The recorded session: signed envelopes both ways, and their payloads; returns the events they carry.
fn wire(
    fixtures: &Path,
    out: &mut Seeds,
    rids: &mut BTreeSet<String>,
) -> Vec<crate::protocol::Event> {
    // The recorded session: signed envelopes both ways, and their payloads.
    let wire = String::from_utf8(read(fixtures, "wire-koi-net-2.1.2.ndjson")).unwrap_or_default();
    let mut events = Vec::new();
    for line in wire.lines() {
        let Ok(record) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        for side in ["request", "response"] {
            let Some(text) = record[side].as_str() else {
                continue;
            };
            out.push(("envelope", text.as_bytes().to_vec()));
            if let Ok(envelope) = serde_json::from_str::<serde_json::Value>(text) {
                out.push((
                    "response_items",
                    envelope["payload"].to_string().into_bytes(),
                ));
                collect_rids(&envelope, rids);
                if let Some(list) = envelope["payload"]["events"].as_array() {
                    events.extend(list.iter().filter_map(|e| {
                        serde_json::from_value::<crate::protocol::Event>(e.clone()).ok()
                    }));
                }
            }
        }
    }

    events
}

/// GitHub contents in every format the fixtures hold; returns them as bundles.
fn github(fixtures: &Path, out: &mut Seeds, rids: &mut BTreeSet<String>) -> Vec<Bundle> {
    // GitHub contents in every format the fixtures hold, as `{"rid", "contents"}`.
    let mut github = Vec::new();
    if let Ok(dir) = std::fs::read_dir(fixtures.join("webhooks")) {
        for file in dir.flatten() {
            github.push(std::fs::read(file.path()).unwrap_or_default());
        }
    }
    for name in ["events-api.json", "github-event-contents.json"] {
        let list: Vec<serde_json::Value> =
            serde_json::from_slice(&read(fixtures, name)).unwrap_or_default();
        for item in list {
            let rid = format!(
                "orn:github.event:{}:{}",
                item["rid_repo"].as_str().unwrap_or("octo-org/hello-world"),
                item["event_id"].as_str().unwrap_or("1")
            );
            github.push(
                serde_json::json!({"rid": rid, "contents": item["contents"]})
                    .to_string()
                    .into_bytes(),
            );
        }
    }
    let mut bundles = Vec::new();
    for seed in &github {
        out.push(("github_event", seed.clone()));
        let Ok(value) = serde_json::from_slice::<serde_json::Value>(seed) else {
            continue;
        };
        if let (Some(rid), serde_json::Value::Object(contents)) = (
            value["rid"].as_str().and_then(|r| Rid::parse(r).ok()),
            value["contents"].clone(),
        ) {
            rids.insert(rid.to_string());
            bundles.push(bundle_of(rid, contents));
        }
    }

    bundles
}

/// Stored forms, written by the encoders themselves: rows, held values, inbox records, export lines.
fn stored(bundles: &[Bundle], events: Vec<crate::protocol::Event>, out: &mut Seeds) {
    // Stored forms, written by the encoders themselves.
    let source = Rid::parse(&format!("orn:koi-net.node:sensor+{}", "0".repeat(64))).expect("a RID");
    for (n, bundle) in bundles.iter().enumerate() {
        if let Ok(prepared) = PreparedBundle::of(bundle) {
            out.push(("held_value", prepared.held().to_vec()));
            if let Some(row) = prepared.row() {
                let meta = row_codec::RowMeta {
                    q: Some(n as u64 + 1),
                    r: Some(1_764_000_000_000_000),
                    v: 1,
                };
                if let Some(bytes) = row_codec::encode(row, meta) {
                    out.push(("row_codec", bytes));
                }
            }
        }
        let event =
            crate::protocol::Event::from_bundle(crate::protocol::EventType::New, bundle.clone());
        for checked in [true, false] {
            out.push((
                "inbox_record",
                record::encode(&record::InboxEntry::new(
                    source.clone(),
                    event.clone(),
                    checked,
                )),
            ));
        }
        let line = export::Line::Bundle(Box::new(export::ExportedBundle {
            manifest: bundle.manifest.clone(),
            contents: bundle.contents.clone(),
            received_at: Some("2026-11-24T12:00:01.000000Z".into()),
            history: Vec::new(),
        }));
        out.push(("import_line", serde_json::to_vec(&line).unwrap_or_default()));
    }
    for event in events {
        out.push((
            "inbox_record",
            record::encode(&record::InboxEntry::new(source.clone(), event, false)),
        ));
    }
    for line in [
        export::Line::Repository {
            full_name: "octo-org/hello-world".into(),
        },
        export::Line::End { lines: 3 },
    ] {
        out.push(("import_line", serde_json::to_vec(&line).unwrap_or_default()));
    }
}

/// RIDs of every type, and the edge cases of the event RID's id.
fn rid_seeds(mut rids: BTreeSet<String>, out: &mut Seeds) {
    // RIDs of every type, and the edge cases of the event RID's id.
    rids.extend(
        [
            "orn:github.event:octo-org/hello-world:id:with:colons",
            "orn:github.repo:octo-org/hello-world",
            "orn:koi-net.edge:0123456789abcdef",
            "https://example.com/path?q=1",
            "orn:github.event:a/b:",
        ]
        .map(String::from),
    );
    out.extend(rids.into_iter().map(|r| ("rid", r.into_bytes())));
}

/// Canonical JSON vectors (RFC 8785 and the legacy ones).
fn canonical(fixtures: &Path, out: &mut Seeds) {
    // Canonical JSON vectors (RFC 8785 and the legacy ones).
    for name in ["canonical-vectors.ndjson", "legacy-hash-vectors.ndjson"] {
        for line in String::from_utf8(read(fixtures, name))
            .unwrap_or_default()
            .lines()
        {
            if let Ok(vector) = serde_json::from_str::<serde_json::Value>(line) {
                let contents = match vector.get("contents_json").and_then(|c| c.as_str()) {
                    Some(text) => text.as_bytes().to_vec(),
                    None => vector["contents"].to_string().into_bytes(),
                };
                out.push(("canonical_json", contents));
            }
        }
    }
}

/// Segment files: whole ones written by the log (even mode), and the structured mode's shape (odd).
fn segments(out: &mut Seeds) {
    // Segment files: whole ones written by the log (even mode), and the structured mode's shape (odd).
    let dir = tempfile::tempdir().expect("a temp dir");
    if let Ok((log, _)) = SegmentLog::open(dir.path()) {
        let payloads: Vec<Vec<u8>> = out
            .iter()
            .filter(|(t, _)| *t == "inbox_record")
            .take(4)
            .map(|(_, b)| b.clone())
            .collect();
        if log.append(&payloads).and_then(|_| log.sync()).is_ok() {
            if let Ok(keys) = log.append(&[b"second".to_vec()]) {
                let _ = log.remove(&keys);
            }
            let _ = log.sync();
            for file in std::fs::read_dir(dir.path())
                .into_iter()
                .flatten()
                .flatten()
            {
                let mut seed = vec![0];
                seed.extend(std::fs::read(file.path()).unwrap_or_default());
                out.push(("inbox_segment", seed));
            }
        }
    }
    out.push((
        "inbox_segment",
        vec![
            1, 3, 40, 0, 1, 5, b'h', b'e', b'l', b'l', b'o', 2, b'h', b'i', 0,
        ],
    ));
    out.push((
        "inbox_segment",
        vec![1, 2, 20, 0, 0, 3, b'a', b'b', b'c', 1, b'd', 0xff, 0xff],
    ));
}

/// The configuration example, as shipped and as the demo writes it.
fn config(fixtures: &Path, out: &mut Seeds) {
    // The configuration example, as shipped and as the demo writes it.
    let example =
        std::fs::read_to_string(fixtures.join("../../config.toml.example")).unwrap_or_default();
    out.push(("config_toml", example.clone().into_bytes()));
    out.push((
        "config_toml",
        example
            .replace("/var/lib/koi-github-indexer", "indexer-data")
            .into_bytes(),
    ));
}

/// Every route, with its parameters.
fn api(out: &mut Seeds) {
    // Every route, with its parameters.
    for route in crate::api::route::ROUTES {
        let path = route
            .replace("{repo}", "octo-org/hello-world")
            .replace(
                "{event_rid}",
                "orn%3Agithub.event%3Aocto-org%2Fhello-world%3A1",
            )
            .replace("{rid}", "orn%3Agithub.repo%3Aocto-org%2Fhello-world")
            .replace("{sha}", "0123456789abcdef0123456789abcdef01234567")
            .replace("{name}", "hook")
            .replace("{id}", "d-1")
            .replace("{file}", "app.js");
        out.push(("api_request", format!("GET {path}").into_bytes()));
    }
    for query in [
        "limit=5&offset=10&event_type=push&since=2026-11-01&until=2026-11-30T00:00:00Z",
        "repo=octo-org/hello-world&event_type=push&event_type=issues&actor=octocat&sample=0.5&after=12",
        "since=2026-11-01&until=2026-11-30&repo=octo-org%2Fhello-world&top=5",
        "neighbour=orn:koi-net.node:sensor+00&limit=3",
        "items=true&limit=1",
    ] {
        out.push((
            "api_request",
            format!("GET /api/processor/github/events?{query}").into_bytes(),
        ));
    }
    out.push((
        "api_request",
        b"POST /api/processor/github/repositories".to_vec(),
    ));
    out.push((
        "api_request",
        b"DELETE /api/processor/github/repositories/octo-org/hello-world".to_vec(),
    ));
}

/// Every string in `value` that reads as a RID.
fn collect_rids(value: &serde_json::Value, out: &mut BTreeSet<String>) {
    match value {
        serde_json::Value::String(s) if Rid::parse(s).is_ok() && s.contains(':') => {
            out.insert(s.clone());
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| collect_rids(v, out)),
        serde_json::Value::Object(map) => map.values().for_each(|v| collect_rids(v, out)),
        serde_json::Value::String(s) => {
            // Envelopes carry their payload as an object, but records may hold JSON text.
            if let Ok(inner) = serde_json::from_str::<serde_json::Value>(s) {
                collect_rids(&inner, out);
            }
        }
        _ => {}
    }
}
