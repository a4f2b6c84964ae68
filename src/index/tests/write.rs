//! Writes: rows, entries and counters from bundles; dedupe, UPDATE, FORGET, retention, repositories added by hand.

use super::*;

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
