//! Pure parsing of GitHub bundle contents — no storage here.
//!
//! * [`parse_event`]: an `orn:github.event` bundle's contents into an [`EventRow`], for every format a GitHub sensor
//!   emits: webhook (`webhook_event_type` + `repository` + `payload`, any webhook event type), backfill
//!   (`event_source_type` = `backfill_repo_details|backfill_commit|backfill_issue|backfill_pr`), and anything else
//!   (a generic row from the RID — never dropped, never a panic).
//! * [`repo_details_from_event`] and [`parse_repo_bundle`]: what an event's `repository` object, a
//!   `backfill_repo_details` payload or an `orn:github.repo` bundle tells about the repository.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::protocol::{Contents, GithubEventRid, Timestamp};

/// One indexed GitHub event, as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventRow {
    /// The event's RID.
    pub event_rid: String,
    /// `orn:github.repo:<owner>/<name>`.
    pub repo_rid: String,
    /// GitHub's event name (`push`, `issues`, `pull_request`, …; backfill: `repository`, `commit`, `issue`,
    /// `pull_request`), or `unknown`.
    pub event_type: String,
    /// The event's own time, RFC 3339 UTC; the manifest's when the contents carry none (or one outside
    /// 1970 … now + 1 day), and the time it was indexed when the manifest's is outside that range too.
    pub timestamp: String,
    /// Which time `timestamp` is: `event`, `manifest` or `received`.
    #[serde(default = "TimeSource::event")]
    pub time_source: TimeSource,
    /// The commit it is about, when there is one.
    pub commit_sha: Option<String>,
    /// One line for humans.
    pub summary: String,
    /// The RID of the bundle the row was made from (the event RID; kept for the Python processor's shape).
    pub bundle_rid: String,
    /// `opened`, `closed`, … when present (`null` otherwise: every row has every key).
    #[serde(default)]
    pub action: Option<String>,
    /// Who did it, when present (`null` otherwise).
    #[serde(default)]
    pub actor: Option<String>,
}

/// Where an event row's time came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimeSource {
    /// The event's own time (e.g. `head_commit.timestamp`, `created_at`).
    Event,
    /// The manifest's timestamp: the contents carry no usable time.
    Manifest,
    /// When this node indexed it: neither the contents nor the manifest carry a usable time.
    Received,
}

impl TimeSource {
    fn event() -> TimeSource {
        TimeSource::Event
    }
}

/// Longest summary kept, in characters: a summary is one line for humans, and contents come from the network.
pub const SUMMARY_MAX_CHARS: usize = 300;

/// Earliest event time accepted as is: the Unix epoch (GitHub did not exist before).
const EARLIEST_MICROS: i64 = 0;
/// How far in the future an event time may be (clock skew) before it is not believed.
const FUTURE_SLACK_MICROS: i64 = 24 * 3600 * 1_000_000;

/// `time` if it lies in 1970 … now + 1 day (so it can be filed and printed), as RFC 3339 UTC.
fn plausible(time: &Timestamp, now_micros: i64) -> Option<String> {
    let t = time.unix_micros();
    (EARLIEST_MICROS..=now_micros.saturating_add(FUTURE_SLACK_MICROS))
        .contains(&t)
        .then(|| time.to_rfc3339_utc())
}

/// What a bundle says about a repository. `None` = not said (never "cleared").
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepoDetails {
    /// Web address, e.g. `https://github.com/octo-org/hello-world`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repo_url: Option<String>,
    /// The repository's description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// e.g. `main`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_branch: Option<String>,
    /// Stargazers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stars: Option<u64>,
    /// Forks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forks: Option<u64>,
    /// SPDX id (or name) of the licence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub license: Option<String>,
}

impl RepoDetails {
    /// True when nothing is known.
    pub fn is_empty(&self) -> bool {
        *self == RepoDetails::default()
    }

    /// Takes every field `newer` knows.
    pub fn merge(&mut self, newer: RepoDetails) {
        fn take<T>(slot: &mut Option<T>, value: Option<T>) {
            if value.is_some() {
                *slot = value;
            }
        }
        take(&mut self.repo_url, newer.repo_url);
        take(&mut self.description, newer.description);
        take(&mut self.default_branch, newer.default_branch);
        take(&mut self.stars, newer.stars);
        take(&mut self.forks, newer.forks);
        take(&mut self.license, newer.license);
    }
}

/// Follows `path` through nested objects.
fn at<'a>(value: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(value, |v, key| v.get(key))
}

fn text<'a>(value: &'a Value, path: &[&str]) -> Option<&'a str> {
    at(value, path)?.as_str().filter(|s| !s.is_empty())
}

fn number(value: &Value, path: &[&str]) -> Option<i64> {
    at(value, path)?.as_i64()
}

fn first_line(message: &str) -> &str {
    message.lines().next().unwrap_or("").trim()
}

/// The first 7 characters of a SHA (characters, not bytes: a malformed SHA must not split a code point).
fn short(sha: &str) -> &str {
    match sha.char_indices().nth(7) {
        Some((i, _)) => &sha[..i],
        None => sha,
    }
}

/// A SHA if it looks like one (hex), unless it is GitHub's all-zero "no commit" (a deleted branch's `after`).
fn real_sha(sha: Option<&str>) -> Option<&str> {
    sha.filter(|s| s.bytes().all(|b| b.is_ascii_hexdigit()) && !s.bytes().all(|b| b == b'0'))
}

/// The summary as stored: one line (each line break, `\r\n`, `\r`, `\n` or a Unicode line or paragraph
/// separator, becomes a space: a commit message's first line is not always its only one), and at most
/// [`SUMMARY_MAX_CHARS`] characters, with `…` when cut.
fn capped(summary: String) -> String {
    let mut summary = if summary.contains(['\r', '\n', '\u{2028}', '\u{2029}']) {
        summary
            .replace("\r\n", " ")
            .replace(['\r', '\n', '\u{2028}', '\u{2029}'], " ")
    } else {
        summary
    };
    if let Some((cut, _)) = summary.char_indices().nth(SUMMARY_MAX_CHARS) {
        summary.truncate(cut);
        summary.push('…');
    }
    summary
}

/// `branch` → `Branch`.
fn capitalised(word: &str) -> String {
    let mut chars = word.chars();
    chars
        .next()
        .map(|c| c.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

/// `"<prefix>: <title>"`, or just the prefix when the title is empty.
fn titled(prefix: String, title: Option<&str>) -> String {
    match title.map(first_line).filter(|t| !t.is_empty()) {
        Some(title) => format!("{prefix}: {title}"),
        None => prefix,
    }
}

/// What a format-specific parser found; anything `None` falls back to the generic value.
#[derive(Default)]
struct Found<'a> {
    event_type: Option<std::borrow::Cow<'a, str>>,
    time: Option<&'a str>,
    sha: Option<&'a str>,
    summary: Option<String>,
    action: Option<&'a str>,
    actor: Option<&'a str>,
}

/// Parses the contents of the event `rid` into a row. Total: every input gives a row.
pub fn parse_event(
    rid: &GithubEventRid,
    manifest_timestamp: &Timestamp,
    contents: &Contents,
) -> EventRow {
    let repo = rid.full_name();
    let payload = contents.get("payload").unwrap_or(&Value::Null);
    let found = if let Some(kind) = contents
        .get("webhook_event_type")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
    {
        let action = contents
            .get("action")
            .and_then(Value::as_str)
            .or_else(|| text(payload, &["action"]));
        Found {
            event_type: Some(kind.into()),
            ..webhook(kind, action, payload, &repo)
        }
    } else if let Some(kind) = contents.get("event_source_type").and_then(Value::as_str) {
        backfill(kind, payload, &repo)
    } else if let Some(kind) = events_api_type(contents) {
        events_api(kind, contents, payload, &repo)
    } else {
        Found::default()
    };
    let event_rid = rid.rid().to_string();
    let now = Timestamp::now();
    let now_micros = now.unix_micros();
    let event_time = found
        .time
        .and_then(|t| Timestamp::parse(t).ok())
        .and_then(|t| plausible(&t, now_micros));
    let (timestamp, time_source) = match event_time {
        Some(t) => (t, TimeSource::Event),
        None => match plausible(manifest_timestamp, now_micros) {
            Some(t) => (t, TimeSource::Manifest),
            None => (now.to_rfc3339_utc(), TimeSource::Received),
        },
    };
    EventRow {
        repo_rid: rid.repo_rid().rid().to_string(),
        // Index keys use NUL as separator: a type name with control characters is not a real one.
        event_type: found
            .event_type
            .filter(|t| !t.is_empty() && !t.chars().any(char::is_control))
            .map_or_else(|| "unknown".to_owned(), |t| t.into_owned()),
        timestamp,
        time_source,
        commit_sha: real_sha(found.sha).map(str::to_ascii_lowercase),
        summary: capped(
            found
                .summary
                .unwrap_or_else(|| format!("Event {} in {repo}", rid.event_id())),
        ),
        action: found.action.map(str::to_owned),
        actor: found.actor.map(str::to_owned),
        bundle_rid: event_rid.clone(),
        event_rid,
    }
}

/// The type of a GitHub Events API / GH Archive item (`{"type": "PushEvent", "actor", "repo", "payload",
/// "created_at"}`) in webhook naming: `PushEvent` → `push`, `PullRequestReviewCommentEvent` →
/// `pull_request_review_comment`, `IssuesEvent` → `issues`.
fn events_api_type(contents: &Contents) -> Option<String> {
    let name = contents.get("type")?.as_str()?.strip_suffix("Event")?;
    if name.is_empty()
        || !name.chars().all(|c| c.is_ascii_alphanumeric())
        || !contents.contains_key("payload")
    {
        return None;
    }
    let mut kind = String::with_capacity(name.len() + 4);
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            kind.push('_');
        }
        kind.push(c.to_ascii_lowercase());
    }
    Some(kind)
}

/// An Events API item: its payload is a webhook payload without `sender` and `repository` (those are `actor` and
/// `repo` at the top), and a push carries `head`, `ref` and `commits` instead of `head_commit`.
fn events_api<'a>(kind: String, contents: &'a Contents, p: &'a Value, repo: &str) -> Found<'a> {
    let action = text(p, &["action"]);
    let mut found = webhook(&kind, action, p, repo);
    if kind == "push" {
        let sha = real_sha(text(p, &["head"]));
        let message = p
            .get("commits")
            .and_then(Value::as_array)
            .and_then(|commits| commits.last())
            .and_then(|c| c.get("message"))
            .and_then(Value::as_str)
            .map_or("", first_line);
        let branch = text(p, &["ref"]).map(|r| r.trim_start_matches("refs/heads/"));
        found.sha = sha;
        found.summary = Some(match (sha, branch) {
            (Some(sha), _) => format!("Push to {repo}: {} {message}", short(sha))
                .trim_end()
                .to_owned(),
            (None, Some(branch)) => format!("Push to {branch} in {repo}"),
            (None, None) => format!("Push to {repo}"),
        });
    }
    found.time = contents.get("created_at").and_then(Value::as_str);
    found.actor = contents
        .get("actor")
        .and_then(|a| a.get("login"))
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty());
    if kind == "watch" {
        // A webhook names the stargazer in `sender`; an Events API item in `actor`.
        found.summary = Some(format!(
            "{repo} starred by {}",
            found.actor.unwrap_or("someone")
        ));
    }
    found.event_type = Some(kind.into());
    found
}

/// A webhook delivery: `kind` is the `X-GitHub-Event` name.
///
/// Long on purpose: one short match arm per webhook kind GitHub documents, read top to bottom like the table of
/// formats it is; split up, each kind's few lines would sit in a function of their own, far from the others.
fn webhook<'a>(kind: &str, action: Option<&'a str>, p: &'a Value, repo: &str) -> Found<'a> {
    let verb = action.unwrap_or("updated");
    let mut found = Found {
        action,
        actor: text(p, &["sender", "login"]).or_else(|| text(p, &["pusher", "name"])),
        ..Found::default()
    };
    let (time, sha, summary) = match kind {
        "push" => {
            let sha = real_sha(text(p, &["head_commit", "id"]).or_else(|| text(p, &["after"])));
            let deleted = p.get("deleted").and_then(Value::as_bool) == Some(true);
            let summary = match sha {
                Some(sha) => {
                    let message = text(p, &["head_commit", "message"]).map_or("", first_line);
                    format!("Push to {repo}: {} {message}", short(sha))
                        .trim_end()
                        .to_owned()
                }
                None if deleted => match text(p, &["ref"]).unwrap_or("?") {
                    r if r.starts_with("refs/tags/") => {
                        format!("Tag {} deleted in {repo}", &r["refs/tags/".len()..])
                    }
                    r => format!(
                        "Branch {} deleted in {repo}",
                        r.trim_start_matches("refs/heads/")
                    ),
                },
                None => format!("Push to {repo}"),
            };
            (text(p, &["head_commit", "timestamp"]), sha, summary)
        }
        "pull_request" | "pull_request_review" | "pull_request_review_comment" => {
            let pr = p.get("pull_request").unwrap_or(&Value::Null);
            let n = number(pr, &["number"])
                .or_else(|| number(p, &["number"]))
                .unwrap_or_default();
            let merged = pr.get("merged").and_then(Value::as_bool) == Some(true);
            let sha = if merged {
                text(pr, &["merge_commit_sha"])
            } else {
                text(pr, &["head", "sha"])
            };
            let summary = match kind {
                "pull_request" => {
                    let suffix = if merged { " (merged)" } else { "" };
                    format!("Pull request #{n} {verb}{suffix} in {repo}")
                }
                "pull_request_review" => format!("Review {verb} on pull request #{n} in {repo}"),
                _ => format!("Review comment {verb} on pull request #{n} in {repo}"),
            };
            let time = match kind {
                "pull_request_review" => text(p, &["review", "submitted_at"]),
                "pull_request_review_comment" => text(p, &["comment", "updated_at"]),
                _ => None,
            }
            .or_else(|| text(pr, &["updated_at"]));
            (time, sha, summary)
        }
        "issues" => {
            let n = number(p, &["issue", "number"]).unwrap_or_default();
            (
                text(p, &["issue", "updated_at"]),
                None,
                titled(
                    format!("Issue #{n} {verb} in {repo}"),
                    text(p, &["issue", "title"]),
                ),
            )
        }
        "issue_comment" => {
            let n = number(p, &["issue", "number"]).unwrap_or_default();
            let on = if p.get("issue").and_then(|i| i.get("pull_request")).is_some() {
                "pull request"
            } else {
                "issue"
            };
            (
                text(p, &["comment", "updated_at"]).or_else(|| text(p, &["comment", "created_at"])),
                None,
                format!("Comment {verb} on {on} #{n} in {repo}"),
            )
        }
        "release" => {
            let tag = text(p, &["release", "tag_name"]).unwrap_or("?");
            (
                text(p, &["release", "published_at"])
                    .or_else(|| text(p, &["release", "created_at"])),
                None,
                format!("Release {tag} {verb} in {repo}"),
            )
        }
        "create" | "delete" => {
            let ref_type = text(p, &["ref_type"]).unwrap_or("ref");
            let name = text(p, &["ref"]).unwrap_or("?");
            let done = if kind == "create" {
                "created"
            } else {
                "deleted"
            };
            (
                None,
                None,
                format!("{} {name} {done} in {repo}", capitalised(ref_type)),
            )
        }
        "fork" => {
            let to = text(p, &["forkee", "full_name"]).unwrap_or("?");
            (
                text(p, &["forkee", "created_at"]),
                None,
                format!("{repo} forked to {to}"),
            )
        }
        "star" => {
            let what = if action == Some("deleted") {
                "unstarred"
            } else {
                "starred"
            };
            let who = found.actor.unwrap_or("someone");
            (
                text(p, &["starred_at"]),
                None,
                format!("{repo} {what} by {who}"),
            )
        }
        "watch" => {
            let who = found.actor.unwrap_or("someone");
            (None, None, format!("{repo} starred by {who}"))
        }
        "workflow_run" | "check_suite" | "check_run" => {
            let run = p.get(kind).unwrap_or(&Value::Null);
            let name = text(run, &["name"])
                .or_else(|| text(run, &["app", "name"]))
                .unwrap_or(kind);
            let outcome = text(run, &["conclusion"])
                .or_else(|| text(run, &["status"]))
                .map(|c| format!(" ({c})"))
                .unwrap_or_default();
            (
                text(run, &["updated_at"]).or_else(|| text(run, &["completed_at"])),
                text(run, &["head_sha"]),
                format!("Workflow {name} {verb}{outcome} in {repo}"),
            )
        }
        "gollum" => {
            let pages = p.get("pages").and_then(Value::as_array);
            let first = pages.and_then(|pages| pages.first());
            let title = first.and_then(|page| text(page, &["title"])).unwrap_or("?");
            let done = first
                .and_then(|page| text(page, &["action"]))
                .unwrap_or("edited");
            let more = pages.map_or(0, |pages| pages.len().saturating_sub(1));
            let more = if more > 0 {
                format!(" (and {more} more)")
            } else {
                String::new()
            };
            (
                None,
                None,
                format!("Wiki page {title} {done}{more} in {repo}"),
            )
        }
        "member" => {
            let who = text(p, &["member", "login"]).unwrap_or("someone");
            (None, None, format!("Member {who} {verb} in {repo}"))
        }
        "public" => (None, None, format!("{repo} made public")),
        "commit_comment" => {
            let sha = text(p, &["comment", "commit_id"]);
            let on = sha
                .map(|s| format!(" on commit {}", short(s)))
                .unwrap_or_default();
            (
                text(p, &["comment", "created_at"]),
                sha,
                format!("Comment {verb}{on} in {repo}"),
            )
        }
        "pull_request_review_thread" => {
            let n = number(p, &["pull_request", "number"]).unwrap_or_default();
            (
                None,
                text(p, &["pull_request", "head", "sha"]),
                format!("Review thread {verb} on pull request #{n} in {repo}"),
            )
        }
        "sponsorship" => {
            let sponsor = text(p, &["sponsorship", "sponsor", "login"]).unwrap_or("someone");
            let tier = text(p, &["sponsorship", "tier", "name"])
                .map(|t| format!(" ({t})"))
                .unwrap_or_default();
            (
                None,
                None,
                format!("Sponsorship {verb} by {sponsor}{tier} for {repo}"),
            )
        }
        other => {
            let verb = action.map(|a| format!(" {a}")).unwrap_or_default();
            (None, None, format!("{other}{verb} in {repo}"))
        }
    };
    found.time = time;
    found.sha = sha;
    found.summary = Some(summary);
    found
}

/// A backfill item: a GitHub REST object fetched by the sensor.
fn backfill<'a>(kind: &str, p: &'a Value, repo: &str) -> Found<'a> {
    let (event_type, time, sha, summary) = match kind {
        "backfill_repo_details" => (
            "repository",
            text(p, &["updated_at"]),
            None,
            format!("Repository details of {repo}"),
        ),
        "backfill_commit" => {
            let sha = text(p, &["sha"]);
            (
                "commit",
                text(p, &["commit", "author", "date"])
                    .or_else(|| text(p, &["commit", "committer", "date"])),
                sha,
                titled(
                    format!("Commit {} in {repo}", sha.map(short).unwrap_or("?")),
                    text(p, &["commit", "message"]),
                ),
            )
        }
        "backfill_issue" | "backfill_pr" => {
            let n = number(p, &["number"]).unwrap_or_default();
            let state = text(p, &["state"]).unwrap_or("?");
            let (event_type, noun, sha) = if kind == "backfill_issue" {
                ("issue", "Issue", None)
            } else {
                (
                    "pull_request",
                    "Pull request",
                    text(p, &["merge_commit_sha"]),
                )
            };
            (
                event_type,
                text(p, &["updated_at"]),
                sha,
                titled(
                    format!("{noun} #{n} ({state}) in {repo}"),
                    text(p, &["title"]),
                ),
            )
        }
        _ => return Found::default(),
    };
    Found {
        event_type: Some(event_type.into()),
        time,
        sha,
        summary: Some(summary),
        action: None,
        actor: text(p, &["author", "login"])
            .or_else(|| text(p, &["commit", "author", "name"]))
            .or_else(|| text(p, &["user", "login"])),
    }
}

/// Licence as GitHub writes it (`{"spdx_id": "MIT", "name": …}`) or as a plain string.
fn license(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Object(o) => o
            .get("spdx_id")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty() && *s != "NOASSERTION")
            .or_else(|| o.get("name").and_then(Value::as_str))
            .or_else(|| o.get("key").and_then(Value::as_str))
            .map(str::to_owned),
        _ => None,
    }
}

/// Details of a GitHub REST/webhook repository object (or an `orn:github.repo` bundle, which uses `stars`).
fn details_of_repository_object(r: &Map<String, Value>) -> RepoDetails {
    let text = |key: &str| {
        r.get(key)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    let count = |keys: &[&str]| keys.iter().find_map(|k| r.get(*k).and_then(Value::as_u64));
    RepoDetails {
        repo_url: text("html_url"),
        description: text("description"),
        default_branch: text("default_branch"),
        stars: count(&["stargazers_count", "stars", "stargazers"]),
        forks: count(&["forks_count", "forks"]),
        license: license(r.get("license")),
    }
}

/// What an event's contents say about its repository: the webhook's `repository` object, or the payload of a
/// `backfill_repo_details` item. Empty for anything else.
///
/// `full_name` is the repository the event's RID names: a `repository` object naming another repository (a
/// confused or hostile sensor) tells nothing, so it cannot overwrite that other repository's details.
pub fn repo_details_from_event(full_name: &str, contents: &Contents) -> RepoDetails {
    if let Some(repository) = contents.get("repository").and_then(Value::as_object) {
        let names_it = repository
            .get("full_name")
            .and_then(Value::as_str)
            .is_none_or(|n| n.eq_ignore_ascii_case(full_name));
        return if names_it {
            details_of_repository_object(repository)
        } else {
            RepoDetails::default()
        };
    }
    match (
        contents.get("event_source_type").and_then(Value::as_str),
        contents.get("payload").and_then(Value::as_object),
    ) {
        (Some("backfill_repo_details"), Some(payload)) => details_of_repository_object(payload),
        _ => RepoDetails::default(),
    }
}

/// An `orn:github.repo` bundle's contents (`{owner, repo, description, stars, forks, updated_at, readme_content,
/// license, default_branch}`; a GitHub REST repository object works too). Returns the details and the time they
/// are from (`updated_at`), if it is given and parses.
pub fn parse_repo_bundle(contents: &Contents) -> (RepoDetails, Option<Timestamp>) {
    let time = contents
        .get("updated_at")
        .and_then(Value::as_str)
        .and_then(|t| Timestamp::parse(t).ok());
    (details_of_repository_object(contents), time)
}

#[cfg(test)]
mod tests;
