//! Deliveries queued with new events, and history kept across UPDATEs.

use super::*;

/// Issue 13: deliveries are queued with the event, for new matching events only, in order per action.
#[test]
fn new_matching_events_queue_deliveries_in_order_and_updates_and_imports_do_not() {
    let hello_pushes = ActionFilter {
        name: "hello-pushes".into(),
        repos: RepoFilter(vec!["Octo-Org/hello-world".into()]),
        event_types: vec!["push".into()],
        actors: Vec::new(),
    };
    let octo_owner = ActionFilter {
        name: "octo".into(),
        repos: RepoFilter(vec!["octo-org/*".into()]),
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
