//! Reads: pages, filters and paging; Events API items as rows.

use super::*;

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

/// Issue 12: a GitHub Events API / GH Archive item of every documented type becomes a row like a webhook: type in
/// webhook naming, the actor, the action, the item's `created_at`, the push's `head`, and a summary.
#[test]
fn events_api_items_of_every_documented_type_become_rows() {
    let text = include_str!("../../../tests/fixtures/events-api.json");
    let items: Vec<serde_json::Value> = serde_json::from_str(text).unwrap();
    let expected: Vec<serde_json::Value> =
        serde_json::from_str(include_str!("../../../tests/fixtures/events-api-rows.json")).unwrap();
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
