use super::*;
use crate::protocol::Rid;

fn fixtures() -> Vec<(GithubEventRid, Contents)> {
    let text = include_str!("../../../tests/fixtures/github-event-contents.json");
    let items: Vec<Value> = serde_json::from_str(text).unwrap();
    items
        .into_iter()
        .map(|i| {
            let rid = Rid::parse(&format!(
                "orn:github.event:{}:{}",
                i["rid_repo"].as_str().unwrap(),
                i["event_id"].as_str().unwrap()
            ))
            .unwrap();
            let Value::Object(contents) = i["contents"].clone() else {
                panic!()
            };
            (GithubEventRid::from_rid(&rid).unwrap(), contents)
        })
        .collect()
}

fn obj(v: Value) -> Contents {
    match v {
        Value::Object(m) => m,
        _ => unreachable!(),
    }
}

#[test]
fn every_fixture_format_parses_into_the_right_row() {
    let manifest_time = Timestamp::parse("2026-11-24T12:00:00Z").unwrap();
    let rows: Vec<EventRow> = fixtures()
        .iter()
        .map(|(rid, c)| parse_event(rid, &manifest_time, c))
        .collect();
    let got: Vec<(&str, &str, Option<&str>, &str)> = rows
        .iter()
        .map(|r| {
            (
                r.event_type.as_str(),
                r.timestamp.as_str(),
                r.commit_sha.as_deref(),
                r.summary.as_str(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (
                "push",
                "2026-11-20T14:15:02Z",
                Some("7fd1a60b01f91b314f59955a4e4d4e80d8edf11d"),
                "Push to octo-org/hello-world: 7fd1a60 Fix the thing — naïve café ☕"
            ),
            (
                "issues",
                "2026-11-21T10:00:00Z",
                None,
                "Issue #42 opened in octo-org/hello-world: Crash on empty input"
            ),
            (
                "pull_request",
                "2026-11-22T08:30:00Z",
                Some("c0ffee0000000000000000000000000000000001"),
                "Pull request #7 closed (merged) in octo-org/hello-world"
            ),
            (
                "release",
                "2026-11-23T12:00:00Z",
                None,
                "Release v1.2.0 published in octo-org/hello-world"
            ),
            (
                "repository",
                "2026-11-24T00:00:00Z",
                None,
                "Repository details of rust-lang/rust"
            ),
            (
                "commit",
                "2026-11-23T23:59:59Z",
                Some("3b1c2f0e9d8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c"),
                "Commit 3b1c2f0 in rust-lang/rust: Auto merge of #12345 - x:y, r=z"
            ),
            (
                "issue",
                "2026-11-18T04:05:06Z",
                None,
                "Issue #130000 (closed) in rust-lang/rust: ICE: unexpected region"
            ),
            (
                "pull_request",
                "2026-11-19T07:08:09Z",
                None,
                "Pull request #130001 (open) in rust-lang/rust: Stabilize feature"
            ),
        ]
    );
    assert_eq!(rows[1].action.as_deref(), Some("opened"));
    assert_eq!(rows[5].actor.as_deref(), Some("bors"));
    assert_eq!(rows[0].repo_rid, "orn:github.repo:octo-org/hello-world");
    assert_eq!(rows[0].bundle_rid, rows[0].event_rid);
}

#[test]
fn unknown_and_malformed_contents_still_give_a_row() {
    let rid = GithubEventRid::from_rid(&Rid::parse("orn:github.event:a/b:x:1").unwrap()).unwrap();
    let t = Timestamp::parse("2026-11-24T12:00:00+02:00").unwrap();
    for contents in [
        serde_json::json!({}),
        serde_json::json!({"webhook_event_type": "push", "payload": "not an object"}),
        serde_json::json!({"webhook_event_type": "push", "payload": {"head_commit": {"id": "é€"}}}),
        serde_json::json!({"webhook_event_type": "create", "payload": {"ref_type": "", "ref": 3}}),
        serde_json::json!({"webhook_event_type": 7, "event_source_type": ["x"]}),
        serde_json::json!({"event_source_type": "backfill_somethingnew", "payload": [1, 2]}),
        serde_json::json!({"event_source_type": "backfill_commit", "payload": {"commit": {"author": {"date": "not a date"}}}}),
    ] {
        let row = parse_event(&rid, &t, &obj(contents.clone()));
        assert!(!row.summary.is_empty(), "{contents}");
        assert_eq!(row.timestamp, "2026-11-24T10:00:00Z", "{contents}");
    }
    let row = parse_event(&rid, &t, &obj(serde_json::json!({})));
    assert_eq!(
        (row.event_type.as_str(), row.summary.as_str()),
        ("unknown", "Event x:1 in a/b")
    );
}

#[test]
fn a_deleted_branch_push_has_no_commit() {
    let rid = GithubEventRid::from_rid(&Rid::parse("orn:github.event:a/b:d").unwrap()).unwrap();
    let t = Timestamp::parse("2026-11-24T12:00:00Z").unwrap();
    let row = parse_event(
        &rid,
        &t,
        &obj(
            serde_json::json!({"webhook_event_type": "push", "payload": {
            "ref": "refs/heads/topic", "deleted": true, "head_commit": null,
            "after": "0000000000000000000000000000000000000000"}}),
        ),
    );
    assert_eq!(row.commit_sha, None);
    assert_eq!(row.summary, "Branch topic deleted in a/b");
}

#[test]
fn a_summary_is_one_line_whatever_the_commit_message_holds() {
    let rid = GithubEventRid::from_rid(&Rid::parse("orn:github.event:a/b:m").unwrap()).unwrap();
    let t = Timestamp::parse("2026-11-24T12:00:00Z").unwrap();
    let row = parse_event(
        &rid,
        &t,
        &obj(
            serde_json::json!({"webhook_event_type": "push", "payload": {
            "ref": "refs/heads/main", "after": "ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12",
            "head_commit": {"id": "ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12",
                "message": "fix\r\n\u{1b}[2Jwiped\rsecond\nthird\u{2028}fourth"}}}),
        ),
    );
    assert!(
        !row.summary.contains(['\r', '\n', '\u{2028}']),
        "{:?}",
        row.summary
    );
}

#[test]
fn implausible_event_times_fall_back_to_the_manifest_then_to_now() {
    let rid = GithubEventRid::from_rid(&Rid::parse("orn:github.event:a/b:1").unwrap()).unwrap();
    let push = |time: &str| {
        obj(serde_json::json!({"webhook_event_type": "push",
            "payload": {"head_commit": {"id": "7fd1a60b01f91b314f59955a4e4d4e80d8edf11d", "timestamp": time,
                "message": "x".repeat(5_000_000)}}}))
    };
    let good_manifest = Timestamp::parse("2026-11-24T12:00:00Z").unwrap();
    let row = parse_event(&rid, &good_manifest, &push("2026-11-20T10:00:00+01:00"));
    assert_eq!(
        (row.timestamp.as_str(), row.time_source),
        ("2026-11-20T09:00:00Z", TimeSource::Event)
    );
    assert!(
        row.summary.chars().count() <= SUMMARY_MAX_CHARS + 1,
        "a 5 MB message is cut"
    );
    for bad in [
        "0000-01-01T00:00:00+01:00",
        "9999-12-31T23:30:00-01:00",
        "1969-12-31T23:59:59Z",
        "soon",
    ] {
        let row = parse_event(&rid, &good_manifest, &push(bad));
        assert_eq!(
            (row.timestamp.as_str(), row.time_source),
            ("2026-11-24T12:00:00Z", TimeSource::Manifest),
            "{bad}"
        );
        let far = Timestamp::parse("9999-12-31T23:30:00-01:00").unwrap();
        let row = parse_event(&rid, &far, &push(bad));
        assert_eq!(row.time_source, TimeSource::Received, "{bad}");
        assert!(Timestamp::parse(&row.timestamp).is_ok());
    }
}

#[test]
fn repository_details_come_from_events_and_repo_bundles() {
    let (rid, push) = &fixtures()[0];
    let d = repo_details_from_event(&rid.full_name(), push);
    assert_eq!(
        repo_details_from_event("someone/else", push),
        RepoDetails::default(),
        "a repository object naming another repository tells nothing"
    );
    assert_eq!(
        d.repo_url.as_deref(),
        Some("https://github.com/octo-org/hello-world")
    );
    assert_eq!(d.default_branch.as_deref(), Some("main"));
    assert_eq!(d.description, None);
    let (rid, backfill) = &fixtures()[4];
    assert_eq!(
        repo_details_from_event(&rid.full_name(), backfill).stars,
        Some(99000)
    );

    let (d, time) = parse_repo_bundle(&obj(
        serde_json::json!({"owner": "a", "repo": "b", "description": "Bee", "stars": 5,
            "forks": 2, "updated_at": "2026-11-01T00:00:00Z", "readme_content": "# b",
            "license": "MIT", "default_branch": "trunk"}),
    ));
    assert_eq!(
        d,
        RepoDetails {
            repo_url: None,
            description: Some("Bee".into()),
            default_branch: Some("trunk".into()),
            stars: Some(5),
            forks: Some(2),
            license: Some("MIT".into()),
        }
    );
    assert_eq!(time.unwrap().to_rfc3339_utc(), "2026-11-01T00:00:00Z");
    let (d, _) = parse_repo_bundle(&obj(
        serde_json::json!({"license": {"key": "apache-2.0", "spdx_id": "Apache-2.0"}, "stars": "many"}),
    ));
    assert_eq!((d.license.as_deref(), d.stars), (Some("Apache-2.0"), None));
}
