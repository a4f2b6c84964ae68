//! Tests of the index over a real sled store in a temporary directory.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use super::*;
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

fn ts(text: &str) -> Timestamp {
    Timestamp::parse(text).unwrap()
}

fn obj(v: Value) -> Contents {
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
fn event_count(index: &Index, name: &str) -> u64 {
    index
        .repository(&repo(name))
        .unwrap()
        .unwrap_or_else(|| panic!("{name} is indexed"))
        .event_count
}

fn fixture_bundles() -> Vec<Bundle> {
    let items: Vec<Value> = serde_json::from_str(include_str!(
        "../../tests/fixtures/github-event-contents.json"
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

fn repo(name: &str) -> crate::protocol::GithubRepoRid {
    parse_repo_ref(name).unwrap()
}

fn rids(rows: &[EventRow]) -> Vec<&str> {
    rows.iter().map(|r| r.event_rid.as_str()).collect()
}

fn assert_consistent(index: &Index) {
    let problems = index.check_consistency().unwrap();
    assert!(problems.is_empty(), "{problems:#?}");
}

#[test]
fn every_fixture_becomes_a_row_with_repositories_and_counts() {
    let t = temp_index();
    for b in fixture_bundles() {
        assert_eq!(
            t.index.apply_bundle(&b).unwrap(),
            ApplyOutcome::Indexed { new: true }
        );
    }
    let counts = t.index.counts().unwrap();
    assert_eq!(counts.events, 8);
    assert_eq!(counts.repositories, 2);
    let by_type: BTreeMap<String, u64> = [
        ("commit", 1),
        ("issue", 1),
        ("issues", 1),
        ("pull_request", 2),
        ("push", 1),
        ("release", 1),
        ("repository", 1),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    assert_eq!(counts.by_type, by_type);

    let page = t
        .index
        .events_page(&repo("octo-org/hello-world"), &EventQuery::default())
        .unwrap()
        .unwrap();
    assert_eq!(
        rids(&page),
        [
            "orn:github.event:octo-org/hello-world:release-v1.2.0",
            "orn:github.event:octo-org/hello-world:pull_request-PR_kwDOXYZ",
            "orn:github.event:octo-org/hello-world:issues-I_kwDOABC123",
            "orn:github.event:octo-org/hello-world:push-1a2b3c",
        ]
    );

    let repos = t.index.repositories().unwrap();
    let hello = repos
        .iter()
        .find(|r| r.full_name == "octo-org/hello-world")
        .unwrap();
    assert_eq!(hello.event_count, 4);
    assert_eq!(
        hello.latest_commit_sha.as_deref(),
        Some("c0ffee0000000000000000000000000000000001"),
        "the merged PR (11-22) is newer than the push (11-20)"
    );
    assert_eq!(hello.default_branch.as_deref(), Some("main"));
    assert_eq!(hello.repo_url, "https://github.com/octo-org/hello-world");
    let rust = repos
        .iter()
        .find(|r| r.repo_rid == "orn:github.repo:rust-lang/rust")
        .unwrap();
    assert_eq!((rust.event_count, rust.stars), (4, Some(99000)));

    let latest = t.index.latest_event().unwrap().unwrap();
    assert_eq!(
        latest.event_rid,
        "orn:github.event:rust-lang/rust:details_MDEwOlJlcG9zaXRvcnk3MjQ3MTI="
    );
    let details = t
        .index
        .event(&Rid::parse(&page[0].event_rid).unwrap())
        .unwrap()
        .unwrap();
    assert_eq!(details.row, page[0]);
    let held = fixture_bundles()[3].clone();
    assert_eq!(details.bundle.manifest, held.manifest);
    assert_eq!(details.bundle.contents, Some(held.contents));
    assert!(details.contents_kept);
    assert_consistent(&t.index);
}

#[test]
fn a_replayed_bundle_is_unchanged_an_older_one_stale_and_an_update_replaces_row_and_entries() {
    let t = temp_index();
    let rid = "orn:github.event:octo-org/hello-world:push-1";
    let first = bundle(
        rid,
        "2026-11-20T10:00:00Z",
        push(&"a".repeat(40), "2026-11-20T10:00:00Z", "first"),
    );
    assert_eq!(
        t.index.apply_bundle(&first).unwrap(),
        ApplyOutcome::Indexed { new: true }
    );
    // A crash replays the inbox: the same bundle again must not count twice.
    assert_eq!(
        t.index.apply_bundle(&first).unwrap(),
        ApplyOutcome::Unchanged
    );
    let older = bundle(
        rid,
        "2026-11-19T10:00:00Z",
        push(&"b".repeat(40), "2026-11-19T10:00:00Z", "older"),
    );
    assert_eq!(t.index.apply_bundle(&older).unwrap(), ApplyOutcome::Stale);
    let hello = repo("octo-org/hello-world");
    assert_eq!(t.index.repository(&hello).unwrap().unwrap().event_count, 1);

    let update = bundle(
        rid,
        "2026-11-21T10:00:00Z",
        push(&"c".repeat(40), "2026-11-21T09:00:00Z", "amended"),
    );
    assert_eq!(
        t.index.apply_bundle(&update).unwrap(),
        ApplyOutcome::Indexed { new: false }
    );
    assert!(t
        .index
        .events_by_commit(&"a".repeat(40), 0, 1000)
        .unwrap()
        .is_empty());
    let by_new_sha = t.index.events_by_commit(&"c".repeat(40), 0, 1000).unwrap();
    assert_eq!(by_new_sha.len(), 1);
    assert_eq!(
        by_new_sha[0].summary,
        "Push to octo-org/hello-world: ccccccc amended"
    );
    assert_eq!(by_new_sha[0].timestamp, "2026-11-21T09:00:00Z");
    let row = t.index.repository(&hello).unwrap().unwrap();
    assert_eq!(row.event_count, 1);
    assert_eq!(row.latest_commit_sha, Some("c".repeat(40)));
    assert_eq!(t.index.counts().unwrap().events, 1);
    assert_eq!(
        t.index.cached_manifest(update.rid()).unwrap(),
        Some(update.manifest.clone())
    );
    assert_consistent(&t.index);
}

#[test]
fn forget_removes_row_entries_bundle_and_counts() {
    let t = temp_index();
    for b in fixture_bundles() {
        t.index.apply_bundle(&b).unwrap();
    }
    let push = Rid::parse("orn:github.event:octo-org/hello-world:push-1a2b3c").unwrap();
    assert!(t.index.forget(&push).unwrap());
    assert!(!t.index.forget(&push).unwrap(), "FORGET is idempotent");
    assert_eq!(t.index.event(&push).unwrap(), None);
    assert_eq!(t.index.cached_manifest(&push).unwrap(), None);
    assert!(t
        .index
        .events_by_commit("7fd1a60b01f91b314f59955a4e4d4e80d8edf11d", 0, 1000)
        .unwrap()
        .is_empty());
    let counts = t.index.counts().unwrap();
    assert_eq!((counts.events, counts.by_type.get("push")), (7, None));
    assert_eq!(event_count(&t.index, "octo-org/hello-world"), 3);
    assert_consistent(&t.index);

    // A repository RID: kept while events name it, removed once none do.
    let rust = Rid::parse("orn:github.repo:rust-lang/rust").unwrap();
    t.index.forget(&rust).unwrap();
    assert!(t
        .index
        .repository(&repo("rust-lang/rust"))
        .unwrap()
        .is_some());
    for b in fixture_bundles()
        .iter()
        .filter(|b| b.rid().as_str().contains("rust-lang"))
    {
        t.index.forget(b.rid()).unwrap();
    }
    assert!(t.index.forget(&rust).unwrap());
    assert!(t
        .index
        .repository(&repo("rust-lang/rust"))
        .unwrap()
        .is_none());
    assert_eq!(t.index.counts().unwrap().repositories, 1);
    assert_consistent(&t.index);
}

#[test]
fn repo_bundles_set_details_and_older_sources_do_not_overwrite_newer_ones() {
    let t = temp_index();
    let contents = |stars: u64, updated: &str| {
        obj(
            json!({"owner": "octo-org", "repo": "hello-world", "description": "Hi", "stars": stars,
                   "forks": 1, "updated_at": updated, "readme_content": "# hi", "license": "MIT",
                   "default_branch": "main"}),
        )
    };
    let rid = "orn:github.repo:octo-org/hello-world";
    let b = bundle(
        rid,
        "2026-11-24T00:00:00Z",
        contents(10, "2026-11-24T00:00:00Z"),
    );
    assert_eq!(
        t.index.apply_bundle(&b).unwrap(),
        ApplyOutcome::Indexed { new: true }
    );
    // An event from before the repo bundle carries older star counts: they must not win.
    t.index
        .apply_bundle(&bundle(
            "orn:github.event:octo-org/hello-world:p",
            "2026-11-25T00:00:00Z",
            push(&"1".repeat(40), "2026-11-01T00:00:00Z", "old push"),
        ))
        .unwrap();
    let row = t
        .index
        .repository(&repo("octo-org/hello-world"))
        .unwrap()
        .unwrap();
    assert_eq!(
        (
            row.stars,
            row.description.as_deref(),
            row.license.as_deref(),
            row.event_count
        ),
        (Some(10), Some("Hi"), Some("MIT"), 1)
    );
    let newer = bundle(
        rid,
        "2026-11-26T00:00:00Z",
        contents(12, "2026-11-26T00:00:00Z"),
    );
    assert_eq!(
        t.index.apply_bundle(&newer).unwrap(),
        ApplyOutcome::Indexed { new: false }
    );
    let row = t
        .index
        .repository(&repo("octo-org/hello-world"))
        .unwrap()
        .unwrap();
    assert_eq!(row.stars, Some(12));
    assert_eq!(
        t.index.counts().unwrap().events,
        1,
        "a repo bundle is not an event"
    );
    assert_consistent(&t.index);
}

#[test]
fn other_and_malformed_rids_are_not_indexed() {
    let t = temp_index();
    let node = bundle("orn:koi-net.node:x+abc", "2026-11-24T00:00:00Z", Map::new());
    assert_eq!(t.index.apply_bundle(&node).unwrap(), ApplyOutcome::Ignored);
    let bad = bundle(
        "orn:github.event:no-slash",
        "2026-11-24T00:00:00Z",
        Map::new(),
    );
    assert!(matches!(
        t.index.apply_bundle(&bad).unwrap(),
        ApplyOutcome::BadRid(reason) if reason.contains("no-slash")
    ));
    assert_eq!(t.index.counts().unwrap(), Counts::default());
}

#[test]
fn pages_filters_and_paging_past_the_end() {
    let t = temp_index();
    for day in 1..=9 {
        let time = format!("2026-11-0{day}T12:00:00Z");
        let sha = format!("{day}").repeat(40);
        t.index
            .apply_bundle(&bundle(
                &format!("orn:github.event:octo-org/hello-world:push-{day}"),
                &time,
                push(&sha, &time, "m"),
            ))
            .unwrap();
        let issue = obj(json!({"webhook_event_type": "issues", "action": "opened",
            "payload": {"issue": {"number": day, "title": "t", "updated_at": time}}}));
        t.index
            .apply_bundle(&bundle(
                &format!("orn:github.event:octo-org/hello-world:issue-{day}"),
                &time,
                issue,
            ))
            .unwrap();
    }
    let hello = repo("octo-org/hello-world");
    let page = |q: EventQuery| t.index.events_page(&hello, &q).unwrap().unwrap();
    let all = page(EventQuery {
        limit: 100,
        ..EventQuery::default()
    });
    assert_eq!(all.len(), 18);
    assert!(all.windows(2).all(|w| w[0].timestamp >= w[1].timestamp));

    let pushes = page(EventQuery {
        limit: 3,
        offset: 2,
        event_type: Some("push".into()),
        ..EventQuery::default()
    });
    assert_eq!(
        rids(&pushes),
        [
            "orn:github.event:octo-org/hello-world:push-7",
            "orn:github.event:octo-org/hello-world:push-6",
            "orn:github.event:octo-org/hello-world:push-5"
        ]
    );
    let window = page(EventQuery {
        since: Some(ts("2026-11-03T12:00:00Z")),
        until: Some(ts("2026-11-05T12:00:00Z")),
        event_type: Some("issues".into()),
        ..EventQuery::default()
    });
    assert_eq!(
        rids(&window),
        [
            "orn:github.event:octo-org/hello-world:issue-5",
            "orn:github.event:octo-org/hello-world:issue-4",
            "orn:github.event:octo-org/hello-world:issue-3"
        ],
        "since and until are inclusive"
    );
    assert!(page(EventQuery {
        offset: 18,
        ..EventQuery::default()
    })
    .is_empty());
    assert!(page(EventQuery {
        event_type: Some("release".into()),
        ..EventQuery::default()
    })
    .is_empty());
    assert_eq!(
        t.index
            .events_page(&repo("octo-org/nothing"), &EventQuery::default())
            .unwrap(),
        None
    );
    // Abbreviated SHAs find the commit.
    assert_eq!(
        t.index.events_by_commit("3333333", 0, 1000).unwrap().len(),
        1
    );
    assert_eq!(
        t.index
            .repository(&hello)
            .unwrap()
            .unwrap()
            .latest_commit_sha,
        Some("9".repeat(40))
    );
}

#[test]
fn retention_prunes_old_events_and_keeps_their_manifests_as_tombstones() {
    let t = temp_index();
    let mut bundles = Vec::new();
    for (i, time) in [
        "2026-01-01T00:00:00Z",
        "2026-06-01T00:00:00Z",
        "2026-11-01T00:00:00Z",
    ]
    .iter()
    .enumerate()
    {
        let b = bundle(
            &format!("orn:github.event:octo-org/hello-world:e{i}"),
            time,
            push(&format!("{i}").repeat(40), time, "m"),
        );
        t.index.apply_bundle(&b).unwrap();
        bundles.push(b);
    }
    t.index.add_repository("empty/repo").unwrap();
    assert_eq!(
        t.index
            .prune_older_than(ts("2026-07-01T00:00:00Z"))
            .unwrap(),
        2
    );
    assert_eq!(t.index.counts().unwrap().events, 1);
    assert_eq!(t.index.event(bundles[0].rid()).unwrap(), None);
    assert_eq!(
        t.index.cached_manifest(bundles[0].rid()).unwrap(),
        Some(bundles[0].manifest.clone()),
        "the manifest stays so the node does not fetch the event again"
    );
    assert_eq!(
        t.index.apply_bundle(&bundles[0]).unwrap(),
        ApplyOutcome::Unchanged
    );
    assert_eq!(
        t.index
            .prune_older_than(ts("2026-07-01T00:00:00Z"))
            .unwrap(),
        0
    );
    assert_eq!(event_count(&t.index, "octo-org/hello-world"), 1);
    assert_consistent(&t.index);
}

#[test]
fn add_repository_is_idempotent_and_refuses_bad_names() {
    let t = temp_index();
    let (row, created) = t.index.add_repository("octo-org/hello-world").unwrap();
    assert!(created);
    assert_eq!(
        (
            row.repo_rid.as_str(),
            row.event_count,
            row.latest_commit_sha
        ),
        ("orn:github.repo:octo-org/hello-world", 0, None)
    );
    for same in [
        "orn:github.repo:octo-org/hello-world",
        "https://github.com/octo-org/hello-world.git",
    ] {
        assert!(!t.index.add_repository(same).unwrap().1, "{same}");
    }
    for bad in [
        "hello-world",
        "a/b/c",
        "",
        "orn:github.event:a/b:1",
        "a b/c",
    ] {
        let err = t.index.add_repository(bad).unwrap_err();
        assert!(
            matches!(err, IndexError::InvalidRepository { .. }),
            "{bad}: {err}"
        );
    }
    assert_eq!(t.index.counts().unwrap().repositories, 1);
}

#[test]
fn a_store_written_by_a_newer_version_is_refused_clearly() {
    let t = temp_index();
    t.db.open_tree("index.meta")
        .unwrap()
        .insert("schema_version", &99u32.to_be_bytes())
        .unwrap();
    let err = Index::open(&t.db).err().unwrap();
    assert!(matches!(err, IndexError::NewerSchema { found: 99, .. }));
    assert!(err.to_string().contains("newer version"), "{err}");
}

/// Turns a current store back into what schema 4 wrote: index keys that spell out the repository's RID and end
/// with the event's RID, repository rows without a number.
fn downgrade_to_schema_4(db: &sled::Db) {
    let tree = |name: &str| db.open_tree(name).unwrap();
    let (events, repos, stream) = (
        tree("index.events"),
        tree("index.repos"),
        tree("index.stream"),
    );
    let mut repo_rids: BTreeMap<[u8; 4], Vec<u8>> = BTreeMap::new();
    for entry in repos.iter() {
        let (key, value) = entry.unwrap();
        let mut record: Value = serde_json::from_slice(&value).unwrap();
        let id = record.as_object_mut().unwrap().remove("id").unwrap();
        repo_rids.insert((id.as_u64().unwrap() as u32).to_be_bytes(), key.to_vec());
        repos
            .insert(&key, serde_json::to_vec(&record).unwrap())
            .unwrap();
    }
    tree("index.meta").remove("repo_id:last").unwrap();
    // Rows as JSON with short keys, manifests as JSON.
    for entry in events.iter() {
        let (key, value) = entry.unwrap();
        let row = super::store::decode_row(&key, &value).unwrap();
        let meta = super::store::stored_meta(&key, &value).unwrap();
        events
            .insert(&key, super::store::encode_row_json(&row, meta).unwrap())
            .unwrap();
    }
    let bundles = tree("index.bundles");
    for entry in bundles.iter() {
        let (key, value) = entry.unwrap();
        let (manifest, contents) = crate::index::held::decode(&key, &value).unwrap();
        let contents = contents.map(|c| serde_json::to_vec(&c).unwrap());
        let old = crate::index::held::encode(
            &serde_json::to_vec(&manifest).unwrap(),
            contents.as_deref(),
        )
        .unwrap();
        bundles.insert(&key, old).unwrap();
    }
    let rid_of = |seq: &[u8]| stream.get(seq).unwrap().unwrap().to_vec();
    // `repo time seq` → `repo_rid ␀ time event_rid`, after a text part ending in ␀ (or none).
    let old_key = |key: &[u8], text: usize, with_repo: bool| -> Vec<u8> {
        let mut out = key[..text].to_vec();
        let mut rest = &key[text..];
        if with_repo {
            out.extend_from_slice(&repo_rids[&<[u8; 4]>::try_from(&rest[..4]).unwrap()]);
            out.push(0);
            rest = &rest[4..];
        }
        out.extend_from_slice(&rest[..8]);
        out.extend_from_slice(&rid_of(&rest[8..16]));
        out
    };
    let text_len = |key: &[u8], parts: usize| -> usize {
        let mut at = 0;
        for _ in 0..parts {
            at += key[at..].iter().position(|b| *b == 0).unwrap() + 1;
        }
        at
    };
    for (name, parts, with_repo) in [
        ("index.by_repo_time", 0, true),
        ("index.by_type", 1, true),
        ("index.by_commit", 1, false),
        ("index.repo_commits", 0, true),
    ] {
        let t = tree(name);
        let old: Vec<_> = t.iter().map(Result::unwrap).collect();
        t.clear().unwrap();
        for (key, value) in old {
            t.insert(old_key(&key, text_len(&key, parts), with_repo), value)
                .unwrap();
        }
    }
    let global = tree("index.global");
    let old: Vec<_> = global.iter().keys().map(Result::unwrap).collect();
    global.clear().unwrap();
    for key in old {
        let parts = if key[0] == b'T' { 1 } else { 2 };
        global
            .insert(old_key(&key, text_len(&key, parts), false), &[])
            .unwrap();
    }
    assert!(!events.is_empty());
    tree("index.meta")
        .insert("schema_version", &4u32.to_be_bytes())
        .unwrap();
}

/// Turns a current store back into what schema 1 wrote: rows as full `EventRow` JSON, manifests and contents in
/// two trees (JSON), commit keys without their time, no global lists, statistics or stream, and `schema_version` 1.
fn downgrade_to_schema_1(db: &sled::Db, index: &Index) {
    downgrade_to_schema_4(db);
    let events = db.open_tree("index.events").unwrap();
    let keys: Vec<_> = events.iter().keys().map(Result::unwrap).collect();
    for key in keys {
        let rid = Rid::parse(std::str::from_utf8(&key).unwrap()).unwrap();
        let row = index.event(&rid).unwrap().unwrap().row;
        events
            .insert(&key, serde_json::to_vec(&row).unwrap())
            .unwrap();
    }
    let bundles = db.open_tree("index.bundles").unwrap();
    let manifests = db.open_tree("index.manifests").unwrap();
    let contents = db.open_tree("index.contents").unwrap();
    for entry in bundles.iter() {
        let (key, value) = entry.unwrap();
        let (manifest, held) = crate::index::held::decode(&key, &value).unwrap();
        manifests
            .insert(&key, serde_json::to_vec(&manifest).unwrap())
            .unwrap();
        if let Some(held) = held {
            contents
                .insert(&key, serde_json::to_vec(&held).unwrap())
                .unwrap();
        }
    }
    db.drop_tree("index.bundles").unwrap();
    for name in ["index.global", "index.stats", "index.stream"] {
        db.drop_tree(name).unwrap();
    }
    db.open_tree("index.meta")
        .unwrap()
        .remove("seq:last")
        .unwrap();
    let by_commit = db.open_tree("index.by_commit").unwrap();
    let old: Vec<_> = by_commit.iter().keys().map(Result::unwrap).collect();
    by_commit.clear().unwrap();
    for key in old {
        let sep = key.iter().position(|b| *b == 0).unwrap();
        let mut v1 = key[..=sep].to_vec();
        v1.extend_from_slice(&key[sep + 1 + 8..]);
        by_commit.insert(v1, &[]).unwrap();
    }
    db.open_tree("index.meta")
        .unwrap()
        .insert("schema_version", &1u32.to_be_bytes())
        .unwrap();
}

/// What a user sees of the fixture store: repositories, one event with its bundle, a commit query, the counts,
/// a repository's page (plain and by type) and the lists across repositories (all, by type, by actor).
#[allow(clippy::type_complexity)]
fn answers(
    index: &Index,
) -> (
    Vec<Repository>,
    Option<EventDetails>,
    Vec<EventRow>,
    Counts,
    Vec<Vec<EventRow>>,
) {
    let rid = Rid::parse("orn:github.event:octo-org/hello-world:push-1a2b3c").unwrap();
    let repo = parse_repo_ref("octo-org/hello-world").unwrap();
    let page = |event_type: Option<&str>| {
        index
            .events_page(
                &repo,
                &EventQuery {
                    event_type: event_type.map(str::to_owned),
                    ..EventQuery::default()
                },
            )
            .unwrap()
            .unwrap()
    };
    let global = |query: GlobalQuery| index.events_global(&query).unwrap();
    let actor = index.latest_event().unwrap().and_then(|row| row.actor);
    (
        index.repositories().unwrap(),
        index.event(&rid).unwrap(),
        index
            .events_by_commit("7fd1a60b01f91b314f59955a4e4d4e80d8edf11d", 0, 10)
            .unwrap(),
        index.counts().unwrap(),
        vec![
            page(None),
            page(Some("push")),
            global(GlobalQuery::default()),
            global(GlobalQuery {
                event_type: Some("push".into()),
                ..GlobalQuery::default()
            }),
            global(GlobalQuery {
                actor,
                ..GlobalQuery::default()
            }),
        ],
    )
}

/// A store holding the fixture bundles, and its index.
fn fixture_store() -> (tempfile::TempDir, sled::Db, Index) {
    let dir = tempfile::tempdir().unwrap();
    let db = sled::open(dir.path().join("db")).unwrap();
    let index = Index::open(&db).unwrap();
    for b in fixture_bundles() {
        index.apply_bundle(&b).unwrap();
    }
    (dir, db, index)
}

#[test]
fn a_schema_4_store_is_upgraded_in_place_and_answers_the_same() {
    let (_dir, db, index) = fixture_store();
    index.add_repository("octo-org/added-by-hand").unwrap();
    let before = answers(&index);
    assert!(before.4.iter().all(|list| !list.is_empty()), "{before:#?}");
    drop(index);
    downgrade_to_schema_4(&db);
    let index = Index::open(&db).unwrap();
    assert_consistent(&index);
    assert_eq!(answers(&index), before);
    // New events land in the upgraded store as in a new one.
    let more = bundle(
        "orn:github.event:octo-org/hello-world:later-1",
        "2026-11-25T00:00:00Z",
        push(&"e".repeat(40), "2026-11-25T00:00:00Z", "later"),
    );
    assert_eq!(
        index.apply_bundle(&more).unwrap(),
        ApplyOutcome::Indexed { new: true }
    );
    assert_consistent(&index);
    drop(index);
    assert_eq!(
        Index::open(&db).unwrap().counts().unwrap().events,
        before.3.events + 1
    );
}

#[test]
fn a_schema_1_store_is_upgraded_in_place_and_answers_the_same() {
    let (_dir, db, index) = fixture_store();
    let before = answers(&index);
    downgrade_to_schema_1(&db, &index);
    drop(index);
    let index = Index::open(&db).unwrap();
    let names: Vec<_> = db.tree_names();
    assert!(!names.iter().any(|n| n.as_ref() == b"index.manifests"));
    assert!(!names.iter().any(|n| n.as_ref() == b"index.contents"));
    assert_consistent(&index);
    assert_eq!(answers(&index), before);
    assert_eq!(
        index.events_by_commit("7fd1a60", 0, 10).unwrap().len(),
        1,
        "abbreviated SHAs still match"
    );
    drop(index);
    // Opening again changes nothing.
    assert_eq!(Index::open(&db).unwrap().counts().unwrap(), before.3);
}

#[test]
fn without_contents_rows_and_manifests_are_kept_and_details_say_so() {
    let t = temp_index_with(IndexOptions {
        keep_contents: false,
        ..Default::default()
    });
    for b in fixture_bundles() {
        t.index.apply_bundle(&b).unwrap();
    }
    assert_consistent(&t.index);
    let rid = Rid::parse("orn:github.event:octo-org/hello-world:push-1a2b3c").unwrap();
    let details = t.index.event(&rid).unwrap().unwrap();
    assert!(!details.contents_kept);
    assert_eq!(details.bundle.contents, None);
    assert_eq!(details.row.event_type, "push");
    // Dedupe still works on the manifests.
    assert_eq!(
        t.index.apply_bundle(&fixture_bundles()[3]).unwrap(),
        ApplyOutcome::Unchanged
    );
}

#[test]
fn a_schema_0_rid_cache_is_migrated_into_rows() {
    let dir = tempfile::tempdir().unwrap();
    let db = sled::open(dir.path().join("db")).unwrap();
    let legacy = db.open_tree("index.rid_cache").unwrap();
    for b in fixture_bundles() {
        legacy
            .insert(b.rid().as_str(), serde_json::to_vec(&b).unwrap())
            .unwrap();
    }
    let index = Index::open(&db).unwrap();
    assert_eq!(index.counts().unwrap().events, 8);
    assert!(!db
        .tree_names()
        .iter()
        .any(|n| n.as_ref() == b"index.rid_cache"));
    assert_consistent(&index);
    drop(index);
    assert_eq!(Index::open(&db).unwrap().counts().unwrap().events, 8);
}

mod property {
    //! Random NEW/UPDATE/FORGET/prune sequences: afterwards every index entry matches a row (and the other way
    //! round), the counters match, and the rows are exactly those a simple model of the dedupe rules predicts.

    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Op {
        /// NEW or UPDATE of event `rid` (index into the universe) with contents variant `v` at manifest hour `h`.
        Apply {
            rid: usize,
            v: u8,
            h: u8,
        },
        Forget {
            rid: usize,
        },
        Prune {
            h: u8,
        },
        AddRepo {
            repo: usize,
        },
    }

    const REPOS: [&str; 3] = ["a/one", "a/two", "b/three"];
    const EVENTS: usize = 7;

    fn rid(i: usize) -> String {
        format!("orn:github.event:{}:e{}", REPOS[i % REPOS.len()], i)
    }

    fn hour(h: u8) -> String {
        format!("2026-11-{:02}T{:02}:00:00Z", 1 + h / 24, h % 24)
    }

    /// Contents whose type, time and commit all depend on the variant, so updates move every index entry.
    fn contents(v: u8, h: u8) -> Contents {
        let event_time = hour(h.saturating_sub(v % 3));
        match v % 4 {
            0 => push(&format!("{:x}", v % 16).repeat(40), &event_time, "m"),
            1 => obj(json!({"webhook_event_type": "issues", "action": "opened",
                            "payload": {"issue": {"number": v, "updated_at": event_time},
                                        "sender": {"login": format!("user{}", v % 3)}}})),
            2 => obj(json!({"event_source_type": "backfill_commit",
                            "payload": {"sha": format!("{:x}", (v / 4) % 16).repeat(40),
                                        "commit": {"author": {"date": event_time}, "message": "c"}}})),
            _ => obj(json!({"something": v})),
        }
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            6 => (0..EVENTS, any::<u8>(), 0u8..96).prop_map(|(rid, v, h)| Op::Apply { rid, v, h }),
            2 => (0..EVENTS).prop_map(|rid| Op::Forget { rid }),
            1 => (0u8..96).prop_map(|h| Op::Prune { h }),
            1 => (0..REPOS.len()).prop_map(|repo| Op::AddRepo { repo }),
        ]
    }

    #[derive(Default)]
    struct Model {
        /// rid → (hash, manifest time)
        manifests: BTreeMap<String, (String, Timestamp)>,
        /// rid → event time (µs) of the row held
        rows: BTreeMap<String, i64>,
        /// rid → the hashes of the versions indexed since its row was made, oldest first
        versions: BTreeMap<String, Vec<String>>,
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

        #[test]
        fn indexes_stay_consistent_with_rows(
            ops in proptest::collection::vec(op(), 1..40),
            keep_contents in any::<bool>(),
            history in 1u32..4,
        ) {
            let t = temp_index_with(IndexOptions { keep_contents, history, ..Default::default() });
            let mut model = Model::default();
            for op in &ops {
                match *op {
                    Op::Apply { rid: i, v, h } => {
                        let b = bundle(&rid(i), &hour(h), contents(v, h));
                        let outcome = t.index.apply_bundle(&b).unwrap();
                        let expected = match model.manifests.get(&rid(i)) {
                            Some((hash, _)) if *hash == b.manifest.sha256_hash => ApplyOutcome::Unchanged,
                            Some((_, time)) if *time > b.manifest.timestamp => ApplyOutcome::Stale,
                            _ => ApplyOutcome::Indexed { new: !model.rows.contains_key(&rid(i)) },
                        };
                        prop_assert_eq!(&outcome, &expected, "{:?}", op);
                        if let ApplyOutcome::Indexed { .. } = outcome {
                            model.manifests.insert(rid(i), (b.manifest.sha256_hash.clone(), b.manifest.timestamp));
                            let row = parse_event(
                                &crate::protocol::GithubEventRid::from_rid(b.rid()).unwrap(),
                                &b.manifest.timestamp,
                                &b.contents,
                            );
                            model.rows.insert(rid(i), ts(&row.timestamp).unix_micros());
                            if outcome == (ApplyOutcome::Indexed { new: true }) {
                                model.versions.remove(&rid(i));
                            }
                            model.versions.entry(rid(i)).or_default().push(b.manifest.sha256_hash.clone());
                        }
                    }
                    Op::Forget { rid: i } => {
                        model.versions.remove(&rid(i));
                        let held = model.manifests.remove(&rid(i)).is_some() | model.rows.remove(&rid(i)).is_some();
                        prop_assert_eq!(t.index.forget(&Rid::parse(&rid(i)).unwrap()).unwrap(), held);
                    }
                    Op::Prune { h } => {
                        let cutoff = ts(&hour(h));
                        let before = model.rows.len();
                        model.rows.retain(|_, t| *t >= cutoff.unix_micros());
                        model.versions.retain(|rid, _| model.rows.contains_key(rid));
                        prop_assert_eq!(t.index.prune_older_than(cutoff).unwrap(), before - model.rows.len());
                    }
                    Op::AddRepo { repo } => {
                        t.index.add_repository(REPOS[repo]).unwrap();
                    }
                }
                let problems = t.index.check_consistency().unwrap();
                prop_assert!(problems.is_empty(), "after {:?}: {:#?}", op, problems);
            }
            prop_assert_eq!(t.index.counts().unwrap().events, model.rows.len() as u64);
            // History: the last `history` versions of each event, newest first, contents as kept.
            for (rid, hashes) in &model.versions {
                let versions = t.index.history(&Rid::parse(rid).unwrap()).unwrap().unwrap();
                let expected: Vec<&String> = hashes.iter().rev().take(history as usize).collect();
                let got: Vec<&String> = versions.iter().map(|v| &v.sha256_hash).collect();
                prop_assert_eq!(got, expected, "{}", rid);
                prop_assert!(versions.iter().all(|v| v.contents.is_some() == keep_contents));
                prop_assert!(versions.iter().all(|v| v.received_at.is_some()));
            }
            // Statistics (counters kept at write time; check_consistency compared each with a recount of the rows).
            let stats = t.index.stats(&crate::index::StatsQuery { top: 100, ..Default::default() }).unwrap();
            prop_assert_eq!(stats.total, model.rows.len() as u64);
            prop_assert_eq!(stats.by_day.iter().map(|d| d.total).sum::<u64>(), stats.total);
            prop_assert_eq!(stats.by_repo.values().sum::<u64>(), stats.total);
            // The global list holds every row, newest first.
            let all = t.index.events_global(&crate::index::GlobalQuery {
                limit: 100, offset: 0, actor: None, event_type: None, repo: None, since: None, until: None,
            }).unwrap();
            prop_assert_eq!(all.len(), model.rows.len());
            prop_assert!(all.windows(2).all(|w| ts(&w[0].timestamp) >= ts(&w[1].timestamp)));
            for (i, name) in REPOS.iter().enumerate() {
                let held = model.rows.keys().filter(|r| r.contains(&format!("{name}:"))).count() as u64;
                let page = t.index.events_page(&repo(name), &EventQuery { limit: 100, ..EventQuery::default() })
                    .unwrap()
                    .unwrap_or_default();
                prop_assert_eq!(page.len() as u64, held, "repo {}", i);
                prop_assert!(page.windows(2).all(|w| ts(&w[0].timestamp) >= ts(&w[1].timestamp)));
            }
        }

        /// Applying runs of bundles as one batch (`apply`, as the node does per inbox pass, with bundles prepared
        /// when received) gives the same outcomes and the same index as applying them one by one, duplicates and
        /// updates within a batch included.
        #[test]
        fn a_batch_is_the_same_as_one_by_one(
            ops in proptest::collection::vec(op(), 1..40),
            keep_contents in any::<bool>(),
        ) {
            let single = temp_index_with(IndexOptions { keep_contents, ..Default::default() });
            let batched = temp_index_with(IndexOptions { keep_contents, ..Default::default() });
            let mut pending: Vec<Bundle> = Vec::new();
            let mut single_outcomes = Vec::new();
            let mut batch_outcomes = Vec::new();
            // The batched side goes the node's way: most bundles prepared where they are received and kept in
            // their stored form (as the inbox does) in between, the others prepared by the writer.
            let flush = |pending: &mut Vec<Bundle>, out: &mut Vec<ApplyOutcome>| {
                let items: Vec<Ingest> = pending
                    .drain(..)
                    .enumerate()
                    .map(|(n, b)| match PreparedBundle::of(&b) {
                        Some(p) if n % 3 != 2 => {
                            let stored = PreparedBundle::from_parts(&p.header_json(), p.held().to_vec()).unwrap();
                            assert_eq!(stored, p);
                            Ingest::Prepared(Box::new(stored))
                        }
                        _ => Ingest::Bundle(Box::new(b)),
                    })
                    .collect();
                out.extend(batched.index.apply(&items).unwrap());
            };
            for op in &ops {
                match *op {
                    Op::Apply { rid: i, v, h } => {
                        let b = bundle(&rid(i), &hour(h), contents(v, h));
                        single_outcomes.push(single.index.apply_bundle(&b).unwrap());
                        pending.push(b);
                    }
                    Op::Forget { rid: i } => {
                        flush(&mut pending, &mut batch_outcomes);
                        let rid = Rid::parse(&rid(i)).unwrap();
                        prop_assert_eq!(single.index.forget(&rid).unwrap(), batched.index.forget(&rid).unwrap());
                    }
                    Op::Prune { h } => {
                        flush(&mut pending, &mut batch_outcomes);
                        let cutoff = ts(&hour(h));
                        prop_assert_eq!(
                            single.index.prune_older_than(cutoff).unwrap(),
                            batched.index.prune_older_than(cutoff).unwrap()
                        );
                    }
                    Op::AddRepo { repo } => {
                        flush(&mut pending, &mut batch_outcomes);
                        single.index.add_repository(REPOS[repo]).unwrap();
                        batched.index.add_repository(REPOS[repo]).unwrap();
                    }
                }
            }
            flush(&mut pending, &mut batch_outcomes);
            prop_assert_eq!(&batch_outcomes, &single_outcomes);
            prop_assert!(batched.index.check_consistency().unwrap().is_empty());
            prop_assert_eq!(batched.index.counts().unwrap(), single.index.counts().unwrap());
            for name in REPOS {
                let query = EventQuery { limit: 100, ..EventQuery::default() };
                let rows = |t: &TempIndex| t.index.events_page(&repo(name), &query).unwrap();
                prop_assert_eq!(rows(&batched), rows(&single));
            }
        }
    }
}

/// Issue 12: a GitHub Events API / GH Archive item of every documented type becomes a row like a webhook: type in
/// webhook naming, the actor, the action, the item's `created_at`, the push's `head`, and a summary.
#[test]
fn events_api_items_of_every_documented_type_become_rows() {
    let text = include_str!("../../tests/fixtures/events-api.json");
    let items: Vec<serde_json::Value> = serde_json::from_str(text).unwrap();
    let expected: Vec<serde_json::Value> =
        serde_json::from_str(include_str!("../../tests/fixtures/events-api-rows.json")).unwrap();
    if std::env::var_os("PRINT_EVENTS_API_ROWS").is_none() {
        assert_eq!(items.len(), expected.len());
    }
    let none = serde_json::Value::Null;
    for (i, item) in items.iter().enumerate() {
        let want = expected.get(i).unwrap_or(&none);
        let rid = Rid::parse(&format!(
            "orn:github.event:{}:{}",
            item["rid_repo"].as_str().unwrap(),
            item["event_id"].as_str().unwrap()
        ))
        .unwrap();
        let serde_json::Value::Object(contents) = item["contents"].clone() else {
            panic!("contents must be an object")
        };
        let row = parse_event(
            &crate::protocol::GithubEventRid::from_rid(&rid).unwrap(),
            &ts("2026-11-24T12:00:00Z"),
            &contents,
        );
        let got = serde_json::json!({
            "type": contents["type"],
            "event_type": row.event_type,
            "actor": row.actor,
            "action": row.action,
            "commit_sha": row.commit_sha,
            "timestamp": row.timestamp,
            "time_source": row.time_source,
            "summary": row.summary,
        });
        if std::env::var_os("PRINT_EVENTS_API_ROWS").is_some() {
            println!("{got},");
        } else {
            assert_eq!(&got, want);
        }
    }
}

/// Issue 13: deliveries are queued with the event, for new matching events only, in order per action.
#[test]
fn new_matching_events_queue_deliveries_in_order_and_updates_and_imports_do_not() {
    let hello_pushes = ActionFilter {
        name: "hello-pushes".into(),
        repos: vec!["Octo-Org/hello-world".into()],
        event_types: vec!["push".into()],
        actors: Vec::new(),
    };
    let octo_owner = ActionFilter {
        name: "octo".into(),
        repos: vec!["octo-org/*".into()],
        ..ActionFilter::default()
    };
    let t = temp_index_with(IndexOptions {
        actions: vec![hello_pushes, octo_owner],
        ..Default::default()
    });
    let mut signal = t.index.queued_signal();
    signal.borrow_and_update();
    let rid = |i: usize| format!("orn:github.event:octo-org/hello-world:p{i}");
    let batch: Vec<Bundle> = (0..5)
        .map(|i| {
            bundle(
                &rid(i),
                "2026-11-20T10:00:00Z",
                push(&format!("{i:040x}"), "2026-11-20T10:00:00Z", "m"),
            )
        })
        .collect();
    t.index.apply_bundles(&batch).unwrap();
    assert!(signal.has_changed().unwrap(), "the senders are woken");
    // Another repository of the owner, and one of another owner: only `octo` takes the first.
    let other = bundle(
        "orn:github.event:octo-org/other:x1",
        "2026-11-20T10:00:00Z",
        push(&"e".repeat(40), "2026-11-20T10:00:00Z", "m"),
    );
    let elsewhere = bundle(
        "orn:github.event:someone/else:x2",
        "2026-11-20T10:00:00Z",
        push(&"f".repeat(40), "2026-11-20T10:00:00Z", "m"),
    );
    t.index.apply_bundles(&[other, elsewhere]).unwrap();
    // An UPDATE and a replay fire nothing.
    let update = bundle(
        &rid(0),
        "2026-11-21T10:00:00Z",
        push(&"c".repeat(40), "2026-11-21T09:00:00Z", "amended"),
    );
    t.index.apply_bundles(&[update, batch[1].clone()]).unwrap();
    // An import fires nothing.
    let imported = bundle(
        "orn:github.event:octo-org/hello-world:imported",
        "2026-11-20T10:00:00Z",
        push(&"d".repeat(40), "2026-11-20T10:00:00Z", "m"),
    );
    t.index.import_bundles(&[(imported, None)]).unwrap();

    let d = t.index.deliveries();
    let queued = |name: &str| -> Vec<String> {
        let mut page = d.page(name, 0, 100).unwrap();
        page.reverse();
        page.into_iter().map(|x| x.event_rid).collect()
    };
    assert_eq!(queued("hello-pushes"), (0..5).map(rid).collect::<Vec<_>>());
    let mut octo: Vec<String> = (0..5).map(rid).collect();
    octo.push("orn:github.event:octo-org/other:x1".into());
    assert_eq!(queued("octo"), octo);
    assert_eq!(d.counts("octo").unwrap().queued, 6);
    assert_eq!(d.action_names().unwrap(), vec!["hello-pushes", "octo"]);

    // Sent in order; attempts recorded; finished ones leave the queue; the log is bounded.
    let first = d.next_pending("hello-pushes").unwrap().unwrap();
    assert_eq!(first.event_rid, rid(0));
    let attempt = |error: Option<&str>| Attempt {
        at: "2026-11-27T00:00:00.000Z".into(),
        duration_ms: 5,
        status: Some(if error.is_some() { 500 } else { 200 }),
        error: error.map(str::to_owned),
    };
    let retry_at = chrono::Utc::now();
    let after = d
        .record_attempt(
            "hello-pushes",
            first.number,
            attempt(Some("HTTP 500")),
            &AttemptOutcome::RetryAt(retry_at),
            (2, 2),
        )
        .unwrap();
    assert_eq!(after.state, DeliveryState::Queued);
    assert_eq!(after.attempts, 1);
    assert!(after.next_attempt_at.is_some());
    assert_eq!(
        d.next_pending("hello-pushes").unwrap().unwrap().number,
        first.number,
        "a delivery being retried holds back the ones after it"
    );
    for _ in 0..4 {
        let next = d.next_pending("hello-pushes").unwrap().unwrap();
        d.record_attempt(
            "hello-pushes",
            next.number,
            attempt(None),
            &AttemptOutcome::Delivered,
            (2, 2),
        )
        .unwrap();
    }
    let next = d.next_pending("hello-pushes").unwrap().unwrap();
    assert_eq!(next.event_rid, rid(4));
    d.record_attempt(
        "hello-pushes",
        next.number,
        attempt(Some("HTTP 410 Gone")),
        &AttemptOutcome::GiveUp,
        (2, 2),
    )
    .unwrap();
    assert!(d.next_pending("hello-pushes").unwrap().is_none());
    let counts = d.counts("hello-pushes").unwrap();
    assert_eq!((counts.queued, counts.delivered, counts.failed), (0, 4, 1));
    assert_eq!(counts.last_error.as_deref(), Some("HTTP 410 Gone"));
    let log = d.page("hello-pushes", 0, 100).unwrap();
    assert_eq!(
        log.iter().map(|x| x.state).collect::<Vec<_>>(),
        vec![
            DeliveryState::Failed,
            DeliveryState::Delivered,
            DeliveryState::Delivered
        ],
        "two delivered kept, the oldest dropped"
    );
    assert_eq!(log[1].log.len(), 1);

    // Redelivery: a new delivery at the end of the queue, naming the original.
    let failed = &log[0];
    let again = t
        .index
        .redeliver("hello-pushes", &failed.id)
        .unwrap()
        .unwrap();
    assert_ne!(again.id, failed.id);
    assert_eq!(again.redelivery_of.as_deref(), Some(failed.id.as_str()));
    assert_eq!(again.event_rid, rid(4));
    assert_eq!(
        d.next_pending("hello-pushes").unwrap().unwrap().id,
        again.id
    );
    assert!(t.index.redeliver("hello-pushes", "nope").unwrap().is_none());
    assert_consistent(&t.index);
}

#[test]
fn history_keeps_replaced_versions_newest_first_and_goes_with_the_event() {
    let t = temp_index_with(IndexOptions {
        history: 3,
        ..Default::default()
    });
    let rid = "orn:github.event:octo-org/hello-world:h1";
    let versions: Vec<Bundle> = (0..5)
        .map(|i| {
            bundle(
                rid,
                &format!("2026-11-2{i}T10:00:00Z"),
                push(
                    &format!("{i:040x}"),
                    "2026-11-20T10:00:00Z",
                    &format!("v{i}"),
                ),
            )
        })
        .collect();
    let parsed = Rid::parse(rid).unwrap();
    t.index.apply_bundle(&versions[0]).unwrap();
    let one = t.index.history(&parsed).unwrap().unwrap();
    assert_eq!(one.len(), 1);
    assert_eq!(one[0].sha256_hash, versions[0].manifest.sha256_hash);
    assert_eq!(one[0].contents.as_ref(), Some(&versions[0].contents));
    for v in &versions[1..] {
        t.index.apply_bundle(v).unwrap();
    }
    let history = t.index.history(&parsed).unwrap().unwrap();
    let hashes: Vec<&str> = history.iter().map(|v| v.sha256_hash.as_str()).collect();
    assert_eq!(
        hashes,
        [4, 3, 2]
            .iter()
            .map(|&i| versions[i].manifest.sha256_hash.as_str())
            .collect::<Vec<_>>()
    );
    assert_eq!(history[1].timestamp, versions[3].manifest.timestamp);
    assert_eq!(history[2].contents.as_ref(), Some(&versions[2].contents));
    assert!(history[0].received_at >= history[1].received_at);
    assert_consistent(&t.index);
    assert!(t.index.forget(&parsed).unwrap());
    assert!(t.index.history(&parsed).unwrap().is_none());
    assert_consistent(&t.index);
    assert!(t
        .index
        .history(&Rid::parse("orn:github.event:octo-org/hello-world:unknown").unwrap())
        .unwrap()
        .is_none());
}

/// Everything an export holds, read back through `export_page` in small pages.
fn export_all(index: &Index) -> (export::Header, Vec<export::Line>, export::Point) {
    let (header, point) = index
        .export_start(Some("orn:koi-net.node:test+0".into()))
        .unwrap();
    (header, export_from(index, point), point)
}

fn export_from(index: &Index, point: export::Point) -> Vec<export::Line> {
    let mut lines = Vec::new();
    let mut cursor = export::Cursor::Manual(Vec::new());
    while cursor != export::Cursor::Done {
        let (page, next) = index.export_page(cursor, point, 2).unwrap();
        lines.extend(page);
        cursor = next;
    }
    lines
}

#[test]
fn an_export_imported_into_a_fresh_store_answers_the_same() {
    let source = temp_index();
    let mut bundles = fixture_bundles();
    let rid = "orn:github.event:octo-org/hello-world:up";
    bundles.push(bundle(
        rid,
        "2026-11-20T10:00:00Z",
        push(&"a".repeat(40), "2026-11-20T10:00:00Z", "one"),
    ));
    bundles.push(bundle(
        rid,
        "2026-11-21T10:00:00Z",
        push(&"b".repeat(40), "2026-11-20T10:00:00Z", "two"),
    ));
    for b in &bundles {
        source.index.apply_bundle(b).unwrap();
    }
    source.index.add_repository("someone/by-hand").unwrap();
    let repo_bundle = bundle(
        "orn:github.repo:octo-org/hello-world",
        "2026-11-22T10:00:00Z",
        obj(
            json!({"full_name": "octo-org/hello-world", "description": "from the repo bundle", "stargazers_count": 9}),
        ),
    );
    source.index.apply_bundle(&repo_bundle).unwrap();

    // An update after the export started is not part of it: the version it replaced is exported.
    let (header, point) = source.index.export_start(None).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(2));
    source
        .index
        .apply_bundle(&bundle(
            rid,
            "2026-11-22T10:00:00Z",
            push(&"c".repeat(40), "2026-11-20T10:00:00Z", "three"),
        ))
        .unwrap();
    let lines = export_from(&source.index, point);
    assert_eq!(header.events, source.index.counts().unwrap().events);
    let exported = lines
        .iter()
        .find_map(|l| match l {
            export::Line::Bundle(b) if b.manifest.rid.as_str() == rid => Some(b),
            _ => None,
        })
        .unwrap();
    assert_eq!(
        exported.contents,
        bundles.last().unwrap().contents,
        "as at the start"
    );
    assert_eq!(exported.history.len(), 1);
    assert!(lines.contains(&export::Line::Repository {
        full_name: "someone/by-hand".into()
    }));
    assert_eq!(
        lines.iter().filter(|l| crate::api::is_event(l)).count() as u64,
        header.events
    );

    // Into a fresh store, and again (an import is deduplicated).
    let (_, lines, _) = export_all(&source.index);
    let target = temp_index();
    let outcomes = target.index.import_lines(&lines).unwrap();
    assert!(
        outcomes
            .iter()
            .all(|o| matches!(o, ApplyOutcome::Indexed { .. })),
        "{outcomes:?}"
    );
    let again = target.index.import_lines(&lines).unwrap();
    // The current versions are held already; the older ones are older than held.
    assert!(
        again
            .iter()
            .all(|o| matches!(o, ApplyOutcome::Unchanged | ApplyOutcome::Stale)),
        "{again:?}"
    );
    assert_consistent(&target.index);

    let strip = |mut repos: Vec<Repository>| {
        for r in &mut repos {
            r.first_indexed.clear();
            r.last_updated.clear();
        }
        repos.sort_by(|a, b| a.repo_rid.cmp(&b.repo_rid));
        repos
    };
    assert_eq!(
        strip(target.index.repositories().unwrap()),
        strip(source.index.repositories().unwrap())
    );
    assert_eq!(
        target.index.counts().unwrap(),
        source.index.counts().unwrap()
    );
    let all = GlobalQuery {
        limit: 1000,
        ..GlobalQuery::default()
    };
    let events = source.index.events_global(&all).unwrap();
    assert_eq!(target.index.events_global(&all).unwrap(), events);
    for row in &events {
        let rid = Rid::parse(&row.event_rid).unwrap();
        assert_eq!(
            target.index.event(&rid).unwrap(),
            source.index.event(&rid).unwrap()
        );
        assert_eq!(
            target.index.history(&rid).unwrap(),
            source.index.history(&rid).unwrap()
        );
    }
    let stats = StatsQuery {
        top: 100,
        ..Default::default()
    };
    assert_eq!(
        serde_json::to_value(target.index.stats(&stats).unwrap()).unwrap(),
        serde_json::to_value(source.index.stats(&stats).unwrap()).unwrap()
    );
}

#[test]
fn a_store_without_contents_refuses_to_export_and_a_damaged_line_is_refused() {
    let t = temp_index_with(IndexOptions {
        keep_contents: false,
        ..Default::default()
    });
    assert!(matches!(
        t.index.export_start(None),
        Err(IndexError::ContentsNotKept)
    ));
    let source = temp_index();
    for b in fixture_bundles() {
        source.index.apply_bundle(&b).unwrap();
    }
    let (_, mut lines, _) = export_all(&source.index);
    if let Some(export::Line::Bundle(b)) = lines
        .iter_mut()
        .find(|l| matches!(l, export::Line::Bundle(_)))
    {
        b.contents.insert("tampered".into(), json!(true));
    }
    let target = temp_index();
    let err = target.index.import_lines(&lines).unwrap_err().to_string();
    assert!(err.contains("hash"), "{err}");
    assert_eq!(
        target.index.counts().unwrap().events,
        0,
        "nothing of the batch is written"
    );
}
