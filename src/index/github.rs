//! Parsing GitHubEvent bundle contents into an event row, for every format a GitHub sensor emits: webhook
//! (`webhook_event_type` + `repository` + `payload`), backfill (`event_source_type` = `backfill_*`), and anything
//! else (a generic row from the RID — never dropped, never a panic).

use serde::Serialize;
use serde_json::Value;

use crate::protocol::{Contents, GithubEventRid, Timestamp};

/// One indexed GitHub event, as the API will show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EventRow {
    /// The event's RID.
    pub event_rid: String,
    /// `orn:github.repo:<owner>/<name>`.
    pub repo_rid: String,
    /// GitHub's event name (`push`, `issues`, `pull_request`, …; backfill: `repository`, `commit`, `issue`,
    /// `pull_request`), or `unknown`.
    pub event_type: String,
    /// The event's own time, RFC 3339 UTC; the manifest's when the contents carry none.
    pub timestamp: String,
    /// The commit it is about, when there is one.
    pub commit_sha: Option<String>,
    /// One line for humans.
    pub summary: String,
    /// `opened`, `closed`, … when present.
    pub action: Option<String>,
    /// Who did it, when present.
    pub actor: Option<String>,
}

fn text<'a>(value: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter()
        .try_fold(value, |v, key| v.get(key))?
        .as_str()
        .filter(|s| !s.is_empty())
}

fn number(value: &Value, path: &[&str]) -> Option<i64> {
    path.iter().try_fold(value, |v, key| v.get(key))?.as_i64()
}

fn first_line(message: &str) -> &str {
    message.lines().next().unwrap_or("").trim()
}

fn short(sha: &str) -> &str {
    &sha[..sha.len().min(7)]
}

/// Normalises a time found in the contents to RFC 3339 UTC, if it parses.
fn utc(time: Option<&str>) -> Option<String> {
    time.and_then(|t| Timestamp::parse(t).ok())
        .map(|t| t.to_rfc3339_utc())
}

/// Parses `contents` of the event `rid` into a row.
pub fn parse_event(
    rid: &GithubEventRid,
    manifest_time: &Timestamp,
    contents: &Contents,
) -> EventRow {
    let c = Value::Object(contents.clone());
    let repo = rid.full_name();
    let payload = c.get("payload").cloned().unwrap_or(Value::Null);
    let (event_type, time, commit_sha, summary, action, actor) =
        if let Some(kind) = text(&c, &["webhook_event_type"]) {
            webhook(kind, &c, &payload, &repo)
        } else if let Some(kind) = text(&c, &["event_source_type"]) {
            backfill(kind, &payload, &repo)
        } else {
            (None, None, None, None, None, None)
        };
    EventRow {
        event_rid: rid.rid().to_string(),
        repo_rid: rid.repo_rid().rid().to_string(),
        event_type: event_type.unwrap_or_else(|| "unknown".to_owned()),
        timestamp: utc(time.as_deref()).unwrap_or_else(|| manifest_time.to_rfc3339_utc()),
        commit_sha,
        summary: summary.unwrap_or_else(|| format!("Event {} in {repo}", rid.event_id())),
        action,
        actor,
    }
}

type Parts = (
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
);

fn webhook(kind: &str, c: &Value, p: &Value, repo: &str) -> Parts {
    let action = text(c, &["action"])
        .or_else(|| text(p, &["action"]))
        .map(str::to_owned);
    let actor = text(p, &["sender", "login"])
        .or_else(|| text(p, &["pusher", "name"]))
        .map(str::to_owned);
    let (time, sha, summary) = match kind {
        "push" => {
            let sha = text(p, &["head_commit", "id"]).or_else(|| text(p, &["after"]));
            let message = text(p, &["head_commit", "message"])
                .map(first_line)
                .unwrap_or("");
            let summary = match sha {
                Some(sha) => format!("Push to {repo}: {} {message}", short(sha))
                    .trim_end()
                    .to_owned(),
                None => format!("Push to {repo}"),
            };
            (text(p, &["head_commit", "timestamp"]), sha, summary)
        }
        "pull_request" => {
            let pr = p.get("pull_request").unwrap_or(&Value::Null);
            let n = number(pr, &["number"])
                .or_else(|| number(p, &["number"]))
                .unwrap_or_default();
            let merged = pr.get("merged").and_then(Value::as_bool) == Some(true);
            let verb = action.clone().unwrap_or_else(|| "updated".to_owned());
            let suffix = if merged { " (merged)" } else { "" };
            let sha = if merged {
                text(pr, &["merge_commit_sha"])
            } else {
                text(pr, &["head", "sha"])
            };
            (
                text(pr, &["updated_at"]),
                sha,
                format!("Pull request #{n} {verb}{suffix} in {repo}"),
            )
        }
        "issues" => {
            let n = number(p, &["issue", "number"]).unwrap_or_default();
            let verb = action.clone().unwrap_or_else(|| "updated".to_owned());
            let title = text(p, &["issue", "title"]).unwrap_or("");
            (
                text(p, &["issue", "updated_at"]),
                None,
                format!("Issue #{n} {verb} in {repo}: {title}")
                    .trim_end_matches([' ', ':'])
                    .to_owned(),
            )
        }
        "release" => {
            let tag = text(p, &["release", "tag_name"]).unwrap_or("?");
            let verb = action.clone().unwrap_or_else(|| "updated".to_owned());
            (
                text(p, &["release", "published_at"]),
                None,
                format!("Release {tag} {verb} in {repo}"),
            )
        }
        other => {
            let verb = action
                .as_deref()
                .map(|a| format!(" {a}"))
                .unwrap_or_default();
            (None, None, format!("{other}{verb} in {repo}"))
        }
    };
    (
        Some(kind.to_owned()),
        time.map(str::to_owned),
        sha.map(str::to_owned),
        Some(summary),
        action,
        actor,
    )
}

fn backfill(kind: &str, p: &Value, repo: &str) -> Parts {
    let (event_type, time, sha, summary): (&str, Option<&str>, Option<&str>, String) = match kind {
        "backfill_repo_details" => (
            "repository",
            text(p, &["updated_at"]),
            None,
            format!("Repository details of {repo}"),
        ),
        "backfill_commit" => {
            let sha = text(p, &["sha"]);
            let message = text(p, &["commit", "message"])
                .map(first_line)
                .unwrap_or("");
            let summary = format!(
                "Commit {} in {repo}: {message}",
                sha.map(short).unwrap_or("?")
            );
            (
                "commit",
                text(p, &["commit", "author", "date"]),
                sha,
                summary.trim_end_matches([' ', ':']).to_owned(),
            )
        }
        "backfill_issue" => {
            let n = number(p, &["number"]).unwrap_or_default();
            let state = text(p, &["state"]).unwrap_or("?");
            let title = text(p, &["title"]).unwrap_or("");
            (
                "issue",
                text(p, &["updated_at"]),
                None,
                format!("Issue #{n} ({state}) in {repo}: {title}"),
            )
        }
        "backfill_pr" => {
            let n = number(p, &["number"]).unwrap_or_default();
            let state = text(p, &["state"]).unwrap_or("?");
            let title = text(p, &["title"]).unwrap_or("");
            let sha = text(p, &["merge_commit_sha"]);
            (
                "pull_request",
                text(p, &["updated_at"]),
                sha,
                format!("Pull request #{n} ({state}) in {repo}: {title}"),
            )
        }
        _ => return (None, None, None, None, None, None),
    };
    let actor = text(p, &["commit", "author", "name"])
        .or_else(|| text(p, &["user", "login"]))
        .map(str::to_owned);
    (
        Some(event_type.to_owned()),
        time.map(str::to_owned),
        sha.map(str::to_owned),
        Some(summary),
        None,
        actor,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Rid;

    fn fixtures() -> Vec<(GithubEventRid, Contents)> {
        let text = include_str!("../../tests/fixtures/github-event-contents.json");
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
        assert_eq!(rows[0].repo_rid, "orn:github.repo:octo-org/hello-world");
    }

    #[test]
    fn unknown_and_malformed_contents_still_give_a_row() {
        let rid =
            GithubEventRid::from_rid(&Rid::parse("orn:github.event:a/b:x:1").unwrap()).unwrap();
        let t = Timestamp::parse("2026-11-24T12:00:00+02:00").unwrap();
        for contents in [
            serde_json::json!({}),
            serde_json::json!({"webhook_event_type": "star", "action": "created", "payload": {"sender": {"login": "mona"}}}),
            serde_json::json!({"webhook_event_type": "push", "payload": "not an object"}),
            serde_json::json!({"event_source_type": "backfill_somethingnew", "payload": [1, 2]}),
        ] {
            let Value::Object(c) = contents else {
                unreachable!()
            };
            let row = parse_event(&rid, &t, &c);
            assert!(!row.summary.is_empty());
            assert_eq!(row.timestamp, "2026-11-24T10:00:00Z");
        }
        let Value::Object(star) = serde_json::json!({"webhook_event_type": "star", "action": "created", "payload": {"sender": {"login": "mona"}}})
        else {
            unreachable!()
        };
        let row = parse_event(&rid, &t, &star);
        assert_eq!(
            (
                row.event_type.as_str(),
                row.summary.as_str(),
                row.actor.as_deref()
            ),
            ("star", "star created in a/b", Some("mona"))
        );
    }
}
