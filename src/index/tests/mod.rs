//! Tests of the index over a real sled store in a temporary directory.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

pub(super) use super::*;
use crate::protocol::knowledge::hash_contents;
use crate::protocol::{Bundle, Contents, Manifest, Rid, Timestamp};

pub(crate) struct TempIndex {
    _dir: tempfile::TempDir,
    pub db: sled::Db,
    pub index: Index,
}

pub(crate) fn temp_index() -> TempIndex {
    temp_index_with(IndexOptions::default())
}

pub(crate) fn temp_index_with(options: IndexOptions) -> TempIndex {
    let dir = tempfile::tempdir().unwrap();
    let db = sled::open(dir.path().join("db")).unwrap();
    let index = Index::open_with(&db, options).unwrap();
    TempIndex {
        _dir: dir,
        db,
        index,
    }
}

pub(super) fn ts(text: &str) -> Timestamp {
    Timestamp::parse(text).unwrap()
}

pub(super) fn obj(v: Value) -> Contents {
    match v {
        Value::Object(m) => m,
        other => panic!("not an object: {other}"),
    }
}

/// A bundle with a manifest of the given time (as a sensor makes them).
pub(crate) fn bundle(rid: &str, manifest_time: &str, contents: Contents) -> Bundle {
    Bundle {
        manifest: Manifest {
            rid: Rid::parse(rid).unwrap(),
            timestamp: ts(manifest_time),
            sha256_hash: hash_contents(&contents),
            extra: Map::new(),
        },
        contents,
    }
}

/// A push webhook at `time` with head commit `sha`.
pub(crate) fn push(sha: &str, time: &str, message: &str) -> Contents {
    obj(json!({
        "webhook_event_type": "push",
        "repository": {"full_name": "octo-org/hello-world", "html_url": "https://github.com/octo-org/hello-world",
                       "default_branch": "main", "stargazers_count": 3},
        "payload": {"ref": "refs/heads/main", "after": sha,
                    "head_commit": {"id": sha, "message": message, "timestamp": time},
                    "pusher": {"name": "mona"}}
    }))
}

/// The event count of an indexed repository.
pub(super) fn event_count(index: &Index, name: &str) -> u64 {
    index
        .repository(&repo(name))
        .unwrap()
        .unwrap_or_else(|| panic!("{name} is indexed"))
        .event_count
}

pub(super) fn fixture_bundles() -> Vec<Bundle> {
    let items: Vec<Value> = serde_json::from_str(include_str!(
        "../../../tests/fixtures/github-event-contents.json"
    ))
    .unwrap();
    items
        .into_iter()
        .map(|i| {
            let rid = format!(
                "orn:github.event:{}:{}",
                i["rid_repo"].as_str().unwrap(),
                i["event_id"].as_str().unwrap()
            );
            bundle(&rid, "2026-11-24T12:00:00Z", obj(i["contents"].clone()))
        })
        .collect()
}

pub(super) fn repo(name: &str) -> crate::protocol::GithubRepoRid {
    parse_repo_ref(name).unwrap()
}

pub(super) fn rids(rows: &[EventRow]) -> Vec<&str> {
    rows.iter().map(|r| r.event_rid.as_str()).collect()
}

pub(super) fn assert_consistent(index: &Index) {
    let problems = index.check_consistency().unwrap();
    assert!(problems.is_empty(), "{problems:#?}");
}

mod deliveries;
mod property;
mod read;
mod sink;
mod snapshot;
mod upgrade;
mod write;
