//! Entry points for the fuzz targets in `fuzz/` and for their regression tests (`tests/fuzz_regressions.rs`): one
//! function per decoder of bytes the daemon did not write itself. Each takes arbitrary bytes, runs the decoder as
//! the daemon does, and panics only when an invariant breaks (a decoder's own panic, or a property below). Not an
//! API: hidden from the docs, and free to change with the decoders.
//!
//! The same function serves the fuzzer and the ordinary test suite, so a crash the fuzzer finds is replayed by
//! `cargo test` from `tests/fixtures/fuzz/<target>/` without cargo-fuzz.

mod seeds;

pub use seeds::seeds;

use std::path::Path;
use std::sync::OnceLock;

use crate::api::route::Route;
use crate::index::{export, held, row_codec, Index, IndexOptions, PreparedBundle};
use crate::node::inbox::record;
use crate::node::segment_log::{self, Limits, SegmentLog};
use crate::protocol::{
    Bundle, Contents, GithubEventRid, GithubRepoRid, Manifest, ReceivedEnvelope, ResponseItems,
    Rid, RidType, Timestamp,
};

/// A target: arbitrary bytes in, a panic only when an invariant breaks.
pub type Target = fn(&[u8]);

/// Every target by name: the name is its fuzz target's and its regression directory's.
pub const TARGETS: &[(&str, Target)] = &[
    ("envelope", envelope),
    ("response_items", response_items),
    ("rid", rid),
    ("canonical_json", canonical_json_alone),
    ("github_event", github_event),
    ("row_codec", row_codec),
    ("held_value", held_value),
    ("inbox_record", inbox_record),
    ("inbox_segment", inbox_segment),
    ("config_toml", config_toml),
    ("import_line", import_line),
    ("api_request", api_request),
];

/// A node's public key (koi-net's DER, base64) that no fuzz input holds the private half of: the recorded
/// session's partial node.
const SOME_PUBLIC_KEY: &str = "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEDuKqygU8lWKwL5fdDkxChjNwzXsEE/ypv1Jr1+vPan9bBwFQ5lcd+L6h5yxRf3BmazAeUAtI9fl+J7Rhf5j1wA==";

/// A signed envelope as a neighbour's answer or request: parsed, checked against a fixed key and against the key
/// it may introduce, its payload split into items.
pub fn envelope(data: &[u8]) {
    let Ok(envelope) = ReceivedEnvelope::parse(data) else {
        return;
    };
    let me = envelope.target_node().clone();
    let _ = envelope.verify(&me, SOME_PUBLIC_KEY);
    let _ = envelope.verify_with_known_or_introduced(&me, None);
    let _ = envelope.self_introduction();
    let _ = ResponseItems::parse(envelope.raw_payload());
}

/// A poll or fetch response's payload, split into items: each good item is usable, each bad one says why.
pub fn response_items(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(items) = ResponseItems::parse(text) else {
        return;
    };
    match items {
        ResponseItems::Events(items) => {
            for event in items.into_iter().flatten() {
                let _ = event.verify_hash();
                let _ = event.into_bundle();
            }
        }
        ResponseItems::Bundles { bundles, .. } => {
            for bundle in bundles.into_iter().flatten() {
                let _ = bundle.verify_hash();
            }
        }
        ResponseItems::Manifests { manifests, .. } => {
            for manifest in manifests.into_iter().flatten() {
                let _ = manifest.rid.as_str();
            }
        }
        ResponseItems::Rids(items) => {
            for rid in items.into_iter().flatten() {
                let _ = rid.as_str();
            }
        }
    }
}

/// A RID of any type: what parses prints back to itself and parses again the same; GitHub event and repository
/// RIDs name a repository GitHub allows.
pub fn rid(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = RidType::parse(text);
    let Ok(rid) = Rid::parse(text) else {
        return;
    };
    let again = Rid::parse(rid.as_str()).expect("a parsed RID parses again");
    assert_eq!(again, rid);
    assert_eq!(rid.to_string(), rid.as_str());
    if let Ok(event) = GithubEventRid::from_rid(&rid) {
        let repo = GithubRepoRid::parse_full_name(&event.full_name())
            .expect("an event RID's repository is a repository RID");
        assert_eq!(repo.full_name(), event.full_name());
    }
    if let Ok(repo) = GithubRepoRid::from_rid(&rid) {
        assert!(repo.full_name().contains('/'), "{rid}");
        let _ = crate::index::check_github_name(rid.as_str(), repo.full_name());
    }
    let _ = crate::protocol::NodeRid::from_rid(&rid);
    let _ = crate::protocol::EdgeRid::from_rid(&rid);
}

/// Canonical JSON against a reference canonicaliser: any JSON value is written as `reference` writes it (RFC 8785:
/// serde_jcs, which the fuzz target and the regression test bring), or both refuse it.
pub fn canonical_json(data: &[u8], reference: impl Fn(&serde_json::Value) -> Option<Vec<u8>>) {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    let ours = crate::protocol::json::canonical_json(&value);
    match reference(&value) {
        Some(expected) => assert_eq!(
            String::from_utf8_lossy(&ours),
            String::from_utf8_lossy(&expected),
            "canonical JSON differs from the reference"
        ),
        None => panic!("the reference refuses a value we hash: {value}"),
    }
    if let serde_json::Value::Object(contents) = &value {
        assert_eq!(
            crate::protocol::knowledge::hash_contents(contents),
            hex_sha256(&ours)
        );
        let _ = crate::protocol::json::legacy_content_hash(contents);
    }
}

/// [`canonical_json`] without a reference (for [`TARGETS`]): the writer and the hashes never panic.
fn canonical_json_alone(data: &[u8]) {
    canonical_json(data, |value| {
        Some(crate::protocol::json::canonical_json(value))
    });
}

fn hex_sha256(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// GitHub contents of any shape (a webhook, an Events API event, a backfill kind, or anything else) as an event
/// and as a repository bundle: a row or a typed refusal, never a panic, and a summary of one line. The input is the
/// contents, or `{"rid": …, "contents": …}` (the fixtures' form) to choose the RID.
pub fn github_event(data: &[u8]) {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    let (rid, contents) = match value {
        serde_json::Value::Object(mut object)
            if object.contains_key("rid") && object.contains_key("contents") =>
        {
            let rid = object
                .remove("rid")
                .and_then(|r| r.as_str().and_then(|r| Rid::parse(r).ok()));
            match object.remove("contents") {
                Some(serde_json::Value::Object(contents)) => (rid, contents),
                _ => return,
            }
        }
        serde_json::Value::Object(contents) => (None, contents),
        _ => return,
    };
    let event_rid = rid
        .unwrap_or_else(|| Rid::parse("orn:github.event:octo-org/hello-world:1").expect("a RID"));
    for rid in [
        event_rid,
        Rid::parse("orn:github.repo:octo-org/hello-world").expect("a RID"),
    ] {
        let bundle = bundle_of(rid, contents.clone());
        if let Ok(prepared) = PreparedBundle::of(&bundle) {
            if let Some(row) = prepared.row() {
                assert!(
                    !row.summary.contains(['\n', '\r', '\u{2028}', '\u{2029}']),
                    "a summary is one line: {:?}",
                    row.summary
                );
                assert!(
                    row.summary.chars().count() <= crate::index::github::SUMMARY_MAX_CHARS + 1,
                    "a summary is cut at its length, with `…`: {:?}",
                    row.summary
                );
                crate::index::check_github_name(&row.repo_rid, &event_repo(&row.event_rid))
                    .expect("an indexed event names a repository GitHub allows");
            }
            assert_eq!(
                prepared.to_bundle().expect("a prepared bundle reads back"),
                bundle
            );
        }
    }
}

/// `owner/name` of an event RID's text.
fn event_repo(event_rid: &str) -> String {
    Rid::parse(event_rid)
        .and_then(|rid| GithubEventRid::from_rid(&rid))
        .map(|event| event.full_name())
        .expect("an indexed event's RID parses")
}

fn bundle_of(rid: Rid, contents: Contents) -> Bundle {
    let sha256_hash = crate::protocol::knowledge::hash_contents(&contents);
    Bundle {
        manifest: Manifest {
            rid,
            timestamp: Timestamp::parse("2026-11-24T12:00:00Z").expect("a timestamp"),
            sha256_hash,
            extra: serde_json::Map::new(),
        },
        contents,
    }
}

/// An event row as stored: whatever decodes encodes back to the same bytes (the decoder accepts only what the
/// encoder writes).
pub fn row_codec(data: &[u8]) {
    let _ = row_codec::meta(data);
    if let Some((stored, meta)) = row_codec::decode(data) {
        assert_eq!(row_codec::meta(data), Some(meta));
        let row = stored.into_row("orn:github.event:a/b:1", "orn:github.repo:a/b");
        assert_eq!(
            row_codec::encode(&row, meta).as_deref(),
            Some(data),
            "decoded {row:?}"
        );
    }
}

/// A held value (a bundle's manifest and compressed contents) as stored: whatever decodes is written again and
/// reads back the same (zstd frames have many encodings of one text, so the bytes need not be equal).
pub fn held_value(data: &[u8]) {
    let key = b"orn:github.event:octo-org/hello-world:1";
    let _ = held::manifest(key, data);
    let _ = held::has_contents(key, data);
    let _ = held::without_contents(key, data);
    let Ok((manifest, contents)) = held::decode(key, data) else {
        return;
    };
    let json = contents
        .as_ref()
        .map(|c| serde_json::to_vec(c).expect("contents serialise"));
    let again = held::encode_manifest(&manifest, json.as_deref()).expect("a decoded value encodes");
    let (manifest2, contents2) = held::decode(key, &again).expect("an encoded value decodes");
    assert_eq!(manifest2, manifest);
    assert_eq!(contents2, contents);
}

/// One inbox record (read back after a crash, or written by an older release): an entry or a typed error; an
/// entry is stored again as it was.
pub fn inbox_record(data: &[u8]) {
    let Ok(entry) = record::decode(data) else {
        return;
    };
    let again = record::decode(&record::encode(&entry)).expect("an encoded entry decodes");
    assert_eq!(again, entry);
}

/// A segment file of the inbox after a crash or damage. The first byte chooses:
///
/// * even: the rest is the whole file;
/// * odd: the rest makes entries written by the log itself (valid records), then damage at an offset the input
///   picks (cut there, or bytes written over it). Recovery keeps every entry whose record ends before the damage.
pub fn inbox_segment(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let dir = tempfile::tempdir().expect("a temp dir");
    let limits = Limits {
        segment_bytes: 1 << 30,
        ..Limits::default()
    };
    if mode % 2 == 0 {
        std::fs::write(dir.path().join("00000000000000000001.seg"), rest).expect("write a segment");
        read_all(dir.path(), limits);
        return;
    }
    // [count][damage at: u16 LE][cut?][then payloads, each [len: u8][bytes]] — whatever is left is written over
    // the file at the damage offset.
    let mut input = rest;
    let mut take = |n: usize| {
        let (head, tail) = input.split_at(n.min(input.len()));
        input = tail;
        head
    };
    let count = take(1).first().copied().unwrap_or(0) % 16;
    let at = take(2);
    let at = u16::from_le_bytes([
        at.first().copied().unwrap_or(0),
        at.get(1).copied().unwrap_or(0),
    ]);
    let cut = take(1).first().is_some_and(|b| b % 2 == 0);
    let mut payloads = Vec::new();
    for _ in 0..count {
        let len = take(1).first().copied().unwrap_or(0) as usize;
        payloads.push(take(len).to_vec());
    }
    let overwrite = input.to_vec();
    {
        let (log, _) = SegmentLog::open_with(dir.path(), limits).expect("open a new log");
        for payload in &payloads {
            log.append(std::slice::from_ref(payload)).expect("append");
        }
        log.sync().expect("sync");
    }
    let Some(path) = std::fs::read_dir(dir.path())
        .expect("list")
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "seg"))
    else {
        return;
    };
    let mut bytes = std::fs::read(&path).expect("read the segment");
    let at = usize::from(at).min(bytes.len());
    if cut {
        bytes.truncate(at);
    } else {
        let end = (at + overwrite.len()).min(bytes.len());
        bytes[at..end].copy_from_slice(&overwrite[..end - at]);
        if overwrite.len() > end - at {
            bytes.extend_from_slice(&overwrite[end - at..]);
        }
    }
    let damaged_from = if cut {
        at
    } else {
        // The first byte that differs from what the log wrote (an overwrite may write the same bytes).
        let written = std::fs::read(&path).expect("read the segment");
        written
            .iter()
            .zip(&bytes)
            .position(|(a, b)| a != b)
            .unwrap_or(written.len())
    };
    // Bytes that start at a record boundary could be a record of their own, checksum and all (the fuzzer forges
    // CRCs: it found a REMOVED record naming an entry, which the log rightly obeys). Damage is what is not a record,
    // so the first damaged byte gets a kind no record has.
    let boundaries: Vec<usize> = std::iter::once(0)
        .chain(payloads.iter().scan(0, |end, p| {
            *end += segment_log::HEADER + p.len();
            Some(*end)
        }))
        .collect();
    if boundaries.contains(&damaged_from) && damaged_from < bytes.len() {
        bytes[damaged_from] = 0;
    }
    std::fs::write(&path, &bytes).expect("write the damaged segment");
    let read = read_all(dir.path(), limits);
    let mut end = 0;
    for payload in &payloads {
        end += segment_log::HEADER + payload.len();
        if end > damaged_from {
            break;
        }
        assert!(
            read.contains(payload),
            "an entry written whole before the damage (at {damaged_from}) is lost"
        );
    }
}

/// Opens the log in `dir` and reads every entry (good or refused); never panics.
fn read_all(dir: &Path, limits: Limits) -> Vec<Vec<u8>> {
    let Ok((log, _)) = SegmentLog::open_with(dir, limits) else {
        return Vec::new();
    };
    log.read(usize::MAX, |_| false)
        .into_iter()
        .filter_map(|(_, r)| r.ok())
        .collect()
}

/// A configuration file, as `check-config` and `run` load it: a config or an error, never a panic.
pub fn config_toml(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(config) = crate::config::Config::parse(text, Path::new("fuzz.toml")) else {
        return;
    };
    let _ = config.warnings();
    let _ = config.store_options();
    let _ = config.index_options();
}

/// One line of an export file after its header, as `import` reads it: a line that passes the check is loaded
/// into a store without an error (the check runs over the whole file before anything is written, so an import
/// that fails halfway would leave half a store).
pub fn import_line(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(line) = export::parse_line(text.trim_end()) else {
        return;
    };
    static STORE: OnceLock<(tempfile::TempDir, Index)> = OnceLock::new();
    let (_, index) = STORE.get_or_init(|| {
        let dir = tempfile::tempdir().expect("a temp dir");
        let db = sled::Config::new()
            .path(dir.path())
            .temporary(true)
            .open()
            .expect("a sled store");
        let index = Index::open_with(&db, IndexOptions::default()).expect("an index");
        (dir, index)
    });
    if let Err(e) = index.import_lines(std::slice::from_ref(&line)) {
        panic!("a line that passed the check failed the import: {e}\n{text}");
    }
}

/// A request's path and query string, as the API reads them before any handler: the route matcher, the trust
/// boundary's path rules and every route's parameter parser. The input is `METHOD PATH?QUERY` (first line).
pub fn api_request(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let line = text.lines().next().unwrap_or_default();
    let (method, target) = line.split_once(' ').unwrap_or(("GET", line));
    let Ok(method) = warp::http::Method::from_bytes(method.as_bytes()) else {
        return;
    };
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let _ = crate::api::route::template_of(path);
    if let Ok(route) = Route::parse(&method, path) {
        let _ = route.template();
        for part in route_parts(&route) {
            let _ = crate::api::params::decode_path(part);
        }
    }
    let Ok(params) = serde_urlencoded::from_str::<Vec<(String, String)>>(query) else {
        return;
    };
    use crate::api::params;
    let _ = params::events_query(&params);
    let _ = params::parse_params(&params, &["limit", "offset"]);
    let _ = params::global_query(&params);
    let _ = params::stats_query(&params);
    let _ = params::polls_query(&params);
    let _ = params::rejected_query(&params);
    let _ = params::no_parameters("/fuzz", &params);
    let _ = params::StreamRequest::parse(&params, params.first().map(|(_, v)| v.as_str()));
}

fn route_parts(route: &Route) -> Vec<&str> {
    match route {
        Route::RepositoryPath(p)
        | Route::RemoveRepository(p)
        | Route::EventPath(p)
        | Route::Bundle(p)
        | Route::CommitEvents(p)
        | Route::Deliveries(p)
        | Route::Asset(p) => vec![p.as_str()],
        Route::Redeliver(a, b) => vec![a.as_str(), b.as_str()],
        _ => Vec::new(),
    }
}
