//! Real-world webhook payloads (modelled on GitHub's documented examples, in `tests/fixtures/webhooks/`) become
//! the right rows. Each file holds the event RID, the bundle contents as a GitHub sensor wraps a delivery, and the
//! row fields expected.

#[path = "support/webhooks.rs"]
#[allow(dead_code)] // the benches use the rest
mod webhooks;

use serde_json::Value;

use koi_github_indexer::index::{parse_event, repo_details_from_event};
use koi_github_indexer::protocol::{GithubEventRid, Rid, Timestamp};

#[test]
fn every_webhook_fixture_parses_into_the_expected_row() {
    let files = webhooks::fixture_files();
    assert!(files.len() >= 10, "fixtures in tests/fixtures/webhooks");
    let mut kinds = Vec::new();
    for file in &files {
        let doc: Value = serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
        let rid =
            GithubEventRid::from_rid(&Rid::parse(doc["rid"].as_str().unwrap()).unwrap()).unwrap();
        let manifest_time = Timestamp::parse(doc["manifest_timestamp"].as_str().unwrap()).unwrap();
        let Value::Object(contents) = doc["contents"].clone() else {
            panic!("{}: contents is not an object", file.display())
        };
        let row = parse_event(&rid, &manifest_time, &contents);
        let got = serde_json::json!({
            "event_type": row.event_type,
            "timestamp": row.timestamp,
            "commit_sha": row.commit_sha,
            "summary": row.summary,
            "action": row.action,
            "actor": row.actor,
        });
        assert_eq!(got, doc["expected"], "{}", file.display());
        assert_eq!(row.repo_rid, "orn:github.repo:Codertocat/Hello-World");
        let details = repo_details_from_event(&rid.full_name(), &contents);
        assert_eq!(
            details.repo_url.as_deref(),
            Some("https://github.com/Codertocat/Hello-World"),
            "{}",
            file.display()
        );
        kinds.push(row.event_type);
    }
    for kind in [
        "push",
        "pull_request",
        "issues",
        "release",
        "create",
        "fork",
        "star",
        "watch",
        "workflow_run",
        "issue_comment",
    ] {
        assert!(kinds.iter().any(|k| k == kind), "no `{kind}` fixture");
    }
}
