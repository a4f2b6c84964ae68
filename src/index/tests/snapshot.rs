//! Export and import.

use super::*;

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
