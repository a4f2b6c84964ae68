//! The webhook fixtures of `tests/fixtures/webhooks/` (GitHub's documented payload shapes), shared by the
//! benchmarks that need real-size events.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use koi_github_indexer::protocol::knowledge::hash_contents;
use koi_github_indexer::protocol::{Bundle, Manifest, Rid, Timestamp};

/// The fixture files, in name order.
pub fn fixture_files() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/webhooks");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("tests/fixtures/webhooks")
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    files
}

/// Each fixture's bundle contents (`webhook_event_type`, `repository`, `payload`).
pub fn fixture_contents() -> Vec<Value> {
    fixture_files()
        .iter()
        .map(|f| {
            let doc: Value = serde_json::from_slice(&std::fs::read(f).expect("read fixture"))
                .expect("fixture is JSON");
            doc["contents"].clone()
        })
        .collect()
}

/// Event `n` of a webhook mix: fixture `n % len` in repository `repo` (`owner/name`), made unique by its delivery
/// number.
#[allow(dead_code)] // not every bench builds bundles
pub fn webhook_bundle(fixtures: &[Value], n: usize, repo: &str) -> Bundle {
    let mut contents = fixtures[n % fixtures.len()].clone();
    contents["repository"]["full_name"] = repo.into();
    contents["repository"]["html_url"] = format!("https://github.com/{repo}").into();
    contents["payload"]["delivery"] = n.into();
    let Value::Object(contents) = contents else {
        unreachable!("fixture contents are objects")
    };
    let rid = Rid::parse(&format!("orn:github.event:{repo}:delivery-{n}")).expect("valid RID");
    Bundle {
        manifest: Manifest {
            rid,
            timestamp: Timestamp::parse("2026-11-24T12:00:00Z").expect("valid time"),
            sha256_hash: hash_contents(&contents),
            extra: Map::new(),
        },
        contents,
    }
}
