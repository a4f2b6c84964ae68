//! Schema upgrades from every older store, and a store from a newer version refused.

use super::*;

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
