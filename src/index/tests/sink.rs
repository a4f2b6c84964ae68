//! The publish log a JetStream sink reads, and the repository filter (`index.repos`).

use super::*;

fn event(id: &str, repo: &str, time: &str, sha: &str) -> Bundle {
    bundle(
        &format!("orn:github.event:{repo}:{id}"),
        time,
        push(sha, time, "m"),
    )
}

fn logged(index: &Index) -> Vec<(String, u32)> {
    index
        .sink_entries_after(index.sink_cursor().unwrap(), 1000)
        .unwrap()
        .into_iter()
        .map(|e| (e.rid, e.version))
        .collect()
}

#[test]
fn every_version_is_logged_in_order_and_the_cursor_drops_what_it_passes() {
    let t = temp_index_with(IndexOptions {
        sink_log: true,
        ..Default::default()
    });
    let a = event(
        "a",
        "octo-org/hello-world",
        "2026-11-20T10:00:00Z",
        &"a".repeat(40),
    );
    let b = event(
        "b",
        "octo-org/hello-world",
        "2026-11-20T10:00:00Z",
        &"b".repeat(40),
    );
    t.index.apply_bundles(&[a.clone(), b]).unwrap();
    // A replay logs nothing; an UPDATE logs the new version.
    let a2 = event(
        "a",
        "octo-org/hello-world",
        "2026-11-21T10:00:00Z",
        &"c".repeat(40),
    );
    t.index.apply_bundles(&[a.clone(), a2]).unwrap();
    let rid = |id: &str| format!("orn:github.event:octo-org/hello-world:{id}");
    assert_eq!(
        logged(&t.index),
        [(rid("a"), 0), (rid("b"), 0), (rid("a"), 1)]
    );
    let entries = t.index.sink_entries_after(0, 10).unwrap();
    // The first version of `a` was replaced before it was published: nothing to send for it.
    assert!(t.index.sink_item(&entries[0], false).unwrap().is_none());
    let update = t.index.sink_item(&entries[2], true).unwrap().unwrap();
    assert_eq!((update.version, update.seq), (1, 1));
    assert_eq!(
        update.sha256_hash,
        t.index
            .bundle(&Rid::parse(&rid("a")).unwrap())
            .unwrap()
            .unwrap()
            .manifest
            .sha256_hash
    );
    assert!(update.contents.is_some());
    let status = t.index.sink_status().unwrap().unwrap();
    assert_eq!((status.cursor, status.lag, status.last_error), (0, 3, None));

    t.index.advance_sink_cursor(2).unwrap();
    assert_eq!(logged(&t.index), [(rid("a"), 1)]);
    assert_eq!(
        t.index.sink_entries_after(0, 10).unwrap().len(),
        1,
        "passed entries are removed"
    );
    t.index.set_sink_error(Some("no servers")).unwrap();
    let status = t.index.sink_status().unwrap().unwrap();
    assert_eq!((status.cursor, status.lag), (2, 1));
    assert_eq!(status.last_error.as_deref(), Some("no servers"));
    t.index.check_consistency().unwrap();
}

#[test]
fn a_sink_configured_later_logs_the_events_indexed_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let db = sled::open(dir.path().join("db")).unwrap();
    let index = Index::open_with(&db, IndexOptions::default()).unwrap();
    let events: Vec<Bundle> = (0..5)
        .map(|i| {
            event(
                &format!("e{i}"),
                "octo-org/hello-world",
                "2026-11-20T10:00:00Z",
                &format!("{i:040x}"),
            )
        })
        .collect();
    index.apply_bundles(&events).unwrap();
    assert!(index.sink_status().unwrap().is_none(), "no sink, no status");
    assert_eq!(
        index.sink_last().unwrap(),
        0,
        "nothing is logged without a sink"
    );
    drop(index);
    let with_sink = IndexOptions {
        sink_log: true,
        ..Default::default()
    };
    let index = Index::open_with(&db, with_sink.clone()).unwrap();
    let first: Vec<String> = logged(&index).into_iter().map(|(rid, _)| rid).collect();
    let expected: Vec<String> = events.iter().map(|b| b.manifest.rid.to_string()).collect();
    assert_eq!(first, expected, "in index order");
    drop(index);
    // Opening again logs nothing twice.
    let index = Index::open_with(&db, with_sink).unwrap();
    assert_eq!(index.sink_last().unwrap(), 5);
}

#[test]
fn bundles_of_repositories_outside_the_filter_are_dropped_and_said_so() {
    let t = temp_index_with(IndexOptions {
        repos: RepoFilter(vec!["octo-org/*".into()]),
        ..Default::default()
    });
    let mine = event(
        "m",
        "octo-org/hello-world",
        "2026-11-20T10:00:00Z",
        &"a".repeat(40),
    );
    let theirs = event(
        "t",
        "rust-lang/rust",
        "2026-11-20T10:00:00Z",
        &"b".repeat(40),
    );
    let outcomes = t.index.apply_bundles(&[mine, theirs]).unwrap();
    assert_eq!(
        outcomes,
        [ApplyOutcome::Indexed { new: true }, ApplyOutcome::Filtered]
    );
    assert_eq!(t.index.event_count().unwrap(), 1);
    let theirs_rid = Rid::parse("orn:github.event:rust-lang/rust:t").unwrap();
    assert!(
        t.index.bundle(&theirs_rid).unwrap().is_none(),
        "nothing of it is kept"
    );
    t.index.check_consistency().unwrap();
}
