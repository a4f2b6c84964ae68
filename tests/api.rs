//! The query API over real HTTP on 127.0.0.1: the answers a client sees, and every error path.

mod index_support;

use serde_json::{json, Value};

use index_support::{fixture_bundles, Store};

const PUSH: &str = "orn:github.event:octo-org/hello-world:push-1a2b3c";

async fn get(url: &str) -> (u16, Value) {
    let response = reqwest::get(url).await.unwrap();
    let status = response.status().as_u16();
    let body = response.text().await.unwrap();
    let json =
        serde_json::from_str(&body).unwrap_or_else(|_| panic!("not JSON from {url}: {body}"));
    (status, json)
}

async fn send(method: reqwest::Method, url: &str, body: Option<&str>) -> (u16, Value) {
    let client = reqwest::Client::new();
    // Writes are JSON, with a body or without (the API refuses any other POST or DELETE with a 415).
    let mut request = client
        .request(method, url)
        .header("content-type", "application/json");
    if let Some(body) = body {
        request = request.body(body.to_owned());
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    let json =
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON from {url}: {text}"));
    (status, json)
}

fn event_rids(page: &Value) -> Vec<&str> {
    page.as_array()
        .unwrap()
        .iter()
        .map(|e| e["event_rid"].as_str().unwrap())
        .collect()
}

/// 400 (or `status`) with `{"error": …}` mentioning `needle`.
fn assert_error(answer: &(u16, Value), status: u16, needle: &str) {
    assert_eq!(answer.0, status, "{answer:?}");
    let message = answer.1["error"]
        .as_str()
        .unwrap_or_else(|| panic!("no error message: {answer:?}"));
    assert!(
        message.contains(needle),
        "`{message}` should mention `{needle}`"
    );
}

#[tokio::test]
async fn health_and_status_merge_node_details_with_index_counts() {
    let store = Store::with_fixtures();
    let api = store.serve();
    assert_eq!(
        get(&api.url("/health")).await,
        (200, json!({"status": "ok"}))
    );
    let (status, body) = get(&api.url("/status")).await;
    assert_eq!(status, 200);
    assert_eq!(body["status"], "active");
    assert!(body["message"].is_string());
    let details = &body["details"];
    assert_eq!(details["node_name"], "test_indexer");
    assert_eq!(details["node_type"], "PARTIAL");
    assert_eq!(details["events"], 8);
    assert_eq!(details["repositories"], 2);
    assert_eq!(details["event_types"]["pull_request"], 2);
    assert_eq!(details["latest_event"]["event_type"], "repository");
}

#[tokio::test]
async fn repositories_and_their_events_newest_first_by_name_or_encoded_rid() {
    let store = Store::with_fixtures();
    let api = store.serve();
    let (status, repos) = get(&api.url("/repositories")).await;
    assert_eq!(status, 200);
    let hello = repos
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["repo_rid"] == "orn:github.repo:octo-org/hello-world")
        .unwrap();
    for field in ["repo_url", "first_indexed", "last_updated"] {
        assert!(hello[field].is_string(), "{field}: {hello}");
    }
    assert_eq!(hello["event_count"], 4);
    assert_eq!(
        hello["latest_commit_sha"],
        "c0ffee0000000000000000000000000000000001"
    );

    let (status, page) = get(&api.url("/repositories/octo-org/hello-world/events")).await;
    assert_eq!(status, 200);
    assert_eq!(
        event_rids(&page),
        [
            "orn:github.event:octo-org/hello-world:release-v1.2.0",
            "orn:github.event:octo-org/hello-world:pull_request-PR_kwDOXYZ",
            "orn:github.event:octo-org/hello-world:issues-I_kwDOABC123",
            PUSH,
        ]
    );
    assert_eq!(
        page[3],
        json!({
            "event_rid": PUSH,
            "repo_rid": "orn:github.repo:octo-org/hello-world",
            "event_type": "push",
            "timestamp": "2026-11-20T14:15:02Z",
            "time_source": "event",
            "commit_sha": "7fd1a60b01f91b314f59955a4e4d4e80d8edf11d",
            "summary": "Push to octo-org/hello-world: 7fd1a60 Fix the thing — naïve café ☕",
            "bundle_rid": PUSH,
            "action": null,
            "actor": null,
        }),
        "one shape: every key is present, null when unknown"
    );
    let (_, by_rid) =
        get(&api.url("/repositories/orn%3Agithub.repo%3Aocto-org%2Fhello-world/events")).await;
    assert_eq!(by_rid, page);

    let (_, second) =
        get(&api.url("/repositories/octo-org/hello-world/events?limit=2&offset=1")).await;
    assert_eq!(event_rids(&second), event_rids(&page)[1..3]);
    assert_eq!(
        get(&api.url("/repositories/octo-org/hello-world/events?offset=4")).await,
        (200, json!([])),
        "a page past the end is empty"
    );
    let (_, issues) =
        get(&api.url("/repositories/octo-org/hello-world/events?event_type=issues")).await;
    assert_eq!(
        event_rids(&issues),
        ["orn:github.event:octo-org/hello-world:issues-I_kwDOABC123"]
    );
    let (_, window) = get(&api.url(
        "/repositories/octo-org/hello-world/events?since=2026-11-21&until=2026-11-22T08:30:00Z",
    ))
    .await;
    assert_eq!(event_rids(&window), event_rids(&page)[1..3]);

    let (status, one) = get(&api.url("/repositories/rust-lang/rust")).await;
    assert_eq!(
        (status, &one["stars"], &one["event_count"]),
        (200, &json!(99000), &json!(4))
    );
}

#[tokio::test]
async fn an_event_with_its_bundle_and_events_by_commit() {
    let store = Store::with_fixtures();
    let api = store.serve();
    let encoded = "orn%3Agithub.event%3Aocto-org%2Fhello-world%3Apush-1a2b3c";
    let (status, event) = get(&api.url(&format!("/events/{encoded}"))).await;
    assert_eq!(status, 200);
    assert_eq!(event["event_rid"], PUSH);
    assert_eq!(
        event["summary"],
        "Push to octo-org/hello-world: 7fd1a60 Fix the thing — naïve café ☕"
    );
    assert_eq!(
        event["bundle"],
        serde_json::to_value(&fixture_bundles()[0]).unwrap()
    );
    let (_, raw) = get(&api.url(&format!("/events/{PUSH}"))).await;
    assert_eq!(raw, event, "an unencoded RID works too");

    let (status, by_sha) =
        get(&api.url("/commits/7fd1a60b01f91b314f59955a4e4d4e80d8edf11d/events")).await;
    assert_eq!((status, event_rids(&by_sha)), (200, vec![PUSH]));
    let (_, abbreviated) = get(&api.url("/commits/7fd1a60/events")).await;
    assert_eq!(abbreviated, by_sha);
    assert_eq!(
        get(&api.url("/commits/abcdef1/events")).await,
        (200, json!([]))
    );
}

#[tokio::test]
async fn bad_parameters_are_400_saying_what_and_why() {
    let store = Store::with_fixtures();
    let api = store.serve();
    let events = api.url("/repositories/octo-org/hello-world/events");
    for (query, needle) in [
        (
            "limit=0",
            "limit must be a whole number from 1 to 100, got `0`",
        ),
        ("limit=101", "limit must be"),
        ("limit=ten", "got `ten`"),
        ("limit=", "limit must be"),
        ("offset=-1", "offset must be a whole number ≥ 0, got `-1`"),
        ("offset=1.5", "offset must be"),
        ("page=2", "unknown query parameter `page`"),
        ("limit=5&limit=6", "`limit` is given more than once"),
        ("since=yesterday", "since must be an RFC 3339 time"),
        ("until=2026-13-01", "until must be"),
        ("since=2026-11-22&until=2026-11-21", "is after until"),
        ("event_type=", "event_type must be"),
    ] {
        let answer = get(&format!("{events}?{query}")).await;
        assert_error(&answer, 400, needle);
    }
    assert_error(
        &get(&api.url("/commits/xyz/events")).await,
        400,
        "not a commit SHA",
    );
    assert_error(
        &get(&api.url("/commits/7fd1a60/events?limit=0")).await,
        400,
        "limit",
    );
    assert_error(
        &get(&api.url("/commits/7fd1a60/events?event_type=push")).await,
        400,
        "unknown query parameter",
    );
    assert_error(
        &get(&api.url("/events/not-a-rid")).await,
        400,
        "expected a GitHub event RID",
    );
    assert_error(
        &get(&api.url("/events/orn%3Agithub.repo%3Aocto-org%2Fhello-world")).await,
        400,
        "expected a GitHub event RID",
    );
    assert_error(
        &get(&api.url("/events/%FF%FE")).await,
        400,
        "percent-encoded UTF-8",
    );
    assert_error(
        &get(&api.url("/repositories/not a repo")).await,
        400,
        "is not a repository",
    );
    assert_error(
        &get(&api.url("/repositories/rust-lang/rust?limit=5")).await,
        400,
        "…/events",
    );
}

#[tokio::test]
async fn unknown_things_are_404_and_wrong_methods_405_all_in_json() {
    let store = Store::with_fixtures();
    let api = store.serve();
    assert_error(
        &get(&api.url("/repositories/octo-org/nothing/events")).await,
        404,
        "octo-org/nothing is not indexed",
    );
    assert_error(
        &get(&api.url("/repositories/octo-org/nothing")).await,
        404,
        "not indexed",
    );
    assert_error(
        &get(&api.url("/events/orn:github.event:octo-org/hello-world:nope")).await,
        404,
        "is not indexed",
    );
    assert_error(
        &get(&api.url("/no/such/thing")).await,
        404,
        "no such endpoint",
    );
    assert_error(
        &get(&format!("{}/elsewhere", api.base())).await,
        404,
        "no such endpoint",
    );
    assert_error(
        &send(reqwest::Method::POST, &api.url("/status"), Some("{}")).await,
        405,
        "read-only",
    );
    assert_error(
        &send(reqwest::Method::DELETE, &api.url("/repositories"), None).await,
        405,
        "read-only",
    );
    assert_error(
        &send(
            reqwest::Method::PUT,
            &api.url("/repositories/octo-org/hello-world/events"),
            None,
        )
        .await,
        405,
        "read-only",
    );
}

#[tokio::test]
async fn post_repositories_adds_one_idempotently_and_refuses_bad_bodies() {
    let store = Store::with_fixtures();
    let api = store.serve();
    let url = api.url("/repositories");
    let (status, created) = send(
        reqwest::Method::POST,
        &url,
        Some(r#"{"repo":"new-org/new-repo"}"#),
    )
    .await;
    assert_eq!(status, 201);
    assert_eq!(created["repo_rid"], "orn:github.repo:new-org/new-repo");
    assert_eq!(created["event_count"], 0);
    let (status, again) = send(
        reqwest::Method::POST,
        &url,
        Some(r#"{"repo":"orn:github.repo:new-org/new-repo"}"#),
    )
    .await;
    assert_eq!((status, &again["repo_rid"]), (200, &created["repo_rid"]));
    assert_eq!(
        get(&api.url("/repositories/new-org/new-repo/events")).await,
        (200, json!([]))
    );
    assert_eq!(
        get(&api.url("/status")).await.1["details"]["repositories"],
        3
    );

    for (body, needle) in [
        ("not json", "the body must be a JSON object like"),
        (r#"{"name":"a/b"}"#, "the body must be a JSON object like"),
        (r#"["a/b"]"#, "the body must be a JSON object like"),
        (r#"{"repo":"just-a-name"}"#, "is not a repository"),
        (r#"{"repo":"a/b/c"}"#, "is not a repository"),
        (r#"{"repo":"../.."}"#, "owner must be 1 to 39"),
        (r#"{"repo":"☕/😀"}"#, "is not a repository"),
        (r#"{"repo":"octo/.."}"#, "not `.` or `..`"),
        (r#"{"repo":"a_b/c"}"#, "owner must be"),
    ] {
        assert_error(
            &send(reqwest::Method::POST, &url, Some(body)).await,
            400,
            needle,
        );
    }
    let (status, plain) = {
        let response = reqwest::Client::new()
            .post(&url)
            .header("content-type", "text/plain")
            .body(r#"{"repo":"a/b"}"#)
            .send()
            .await
            .unwrap();
        (
            response.status().as_u16(),
            response.json::<Value>().await.unwrap(),
        )
    };
    assert_error(&(status, plain), 415, "Content-Type: application/json");
    let huge = format!(r#"{{"repo":"{}"}}"#, "a".repeat(10_000));
    assert_error(
        &send(reqwest::Method::POST, &url, Some(&huge)).await,
        413,
        "larger than",
    );
    assert_eq!(
        get(&api.url("/status")).await.1["details"]["repositories"],
        3,
        "nothing changed"
    );
}

#[tokio::test]
async fn metrics_are_prometheus_text_and_count_requests_by_route_template() {
    let store = Store::with_fixtures();
    let api = store.serve();
    let _ = get(&api.url("/repositories/octo-org%2Fhello-world/events?limit=2")).await;
    let _ = get(&api.url("/repositories/octo-org/hello-world/events")).await;
    let _ = get(&api.url("/repositories/octo-org/hello-world/events?limit=0")).await;
    let _ = get(&api.url("/nope")).await;

    let response = reqwest::get(format!("{}/metrics", api.base()))
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    let text = response.text().await.unwrap();
    assert!(text.trim_end().ends_with("# EOF"), "{text}");
    let route = r#"route="/api/processor/github/repositories/{repo}/events""#;
    let count = |status: &str| -> f64 {
        text.lines()
            .filter(|l| {
                l.starts_with("koi_indexer_api_requests_total{")
                    && l.contains(route)
                    && l.contains(&format!("status=\"{status}\""))
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    assert_eq!(count("200"), 2.0, "{text}");
    assert_eq!(count("400"), 1.0, "{text}");
    assert!(
        text.contains(r#"koi_indexer_api_requests_total{route="other",status="404"} 1"#),
        "{text}"
    );
    assert!(
        text.contains("koi_indexer_api_request_duration_seconds_bucket{"),
        "{text}"
    );
    assert!(
        !text.contains("hello-world"),
        "raw paths never become labels: {text}"
    );
}

#[tokio::test]
async fn polls_lists_recent_attempts_per_neighbour_and_rejects_bad_parameters() {
    use koi_github_indexer::telemetry::PollAttempt;
    let store = Store::with_fixtures();
    let coordinator = "orn:koi-net.node:coordinator+0a1b";
    let sensor = "orn:koi-net.node:sensor+2c3d";
    for (i, (neighbour, outcome)) in [
        (coordinator, "ok"),
        (sensor, "timeout"),
        (coordinator, "ok"),
    ]
    .into_iter()
    .enumerate()
    {
        store
            .poll_log
            .record(&PollAttempt {
                neighbour: neighbour.to_owned(),
                time: chrono::Utc::now() + chrono::Duration::seconds(i as i64),
                outcome: outcome.to_owned(),
                events: if outcome == "ok" { i } else { 0 },
                duration_ms: 12,
                error: (outcome != "ok").then(|| "no answer within 5s".to_owned()),
            })
            .unwrap();
    }
    let api = store.serve();

    let (status, all) = get(&api.url("/polls")).await;
    assert_eq!(status, 200);
    let outcomes: Vec<&str> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["ok", "timeout", "ok"], "newest first: {all}");

    let (status, one) = get(&api.url(&format!("/polls?neighbour={sensor}&limit=5"))).await;
    assert_eq!(status, 200);
    assert_eq!(one.as_array().unwrap().len(), 1);
    assert_eq!(one[0]["neighbour"], sensor);
    assert_eq!(one[0]["error"], "no answer within 5s");
    assert_eq!(one[0]["duration_ms"], 12);

    let (_, limited) = get(&api.url("/polls?limit=1")).await;
    assert_eq!(limited.as_array().unwrap().len(), 1);

    assert_error(
        &get(&api.url("/polls?neighbour=orn:koi-net.node:other+9")).await,
        404,
        "coordinator+0a1b",
    );
    assert_error(&get(&api.url("/polls?limit=0")).await, 400, "limit");
    assert_error(&get(&api.url("/polls?limit=many")).await, 400, "limit");
    assert_error(
        &get(&api.url("/polls?neighbour=nobody")).await,
        400,
        "node RID",
    );
    assert_error(&get(&api.url("/polls?since=today")).await, 400, "since");
}

#[tokio::test]
async fn rejected_lists_dead_letters_newest_first_and_rejects_bad_parameters() {
    let store = Store::with_fixtures();
    let letters = koi_github_indexer::index::DeadLetters::open(&store.db, 100).unwrap();
    letters
        .record(&[
            koi_github_indexer::index::Rejection {
                rid: "orn:github.event:a/b:one space".into(),
                source: "orn:koi-net.node:s+00".into(),
                reason: "bad_rid",
                detail: "it contains ' '".into(),
                item: r#"{"rid":"orn:github.event:a/b:one space"}"#.into(),
            },
            koi_github_indexer::index::Rejection {
                rid: "orn:github.event:a/b:nul\u{0}".into(),
                source: "orn:koi-net.node:s+00".into(),
                reason: "malformed",
                detail: "recursion limit exceeded".into(),
                item: "[[[".into(),
            },
        ])
        .unwrap();
    let api = store.serve();
    let (status, page) = get(&api.url("/rejected")).await;
    assert_eq!(status, 200);
    let page = page.as_array().unwrap();
    assert_eq!(
        page.len(),
        3,
        "the store's own letter, then these two: {page:?}"
    );
    assert_eq!(
        page[0]["rid"], "orn:github.event:a/b:nul\\u{0}",
        "newest first, escaped"
    );
    assert_eq!(page[0]["reason"], "malformed");
    assert_eq!(page[0]["item"], "", "items only on request");
    assert_eq!(page[1]["reason"], "bad_rid");
    let (_, with_items) = get(&api.url("/rejected?items=true&limit=1&offset=1")).await;
    assert_eq!(
        with_items[0]["item"],
        r#"{"rid":"orn:github.event:a/b:one space"}"#
    );
    assert_error(&get(&api.url("/rejected?limit=0")).await, 400, "limit");
    assert_error(&get(&api.url("/rejected?offset=-1")).await, 400, "offset");
    assert_error(&get(&api.url("/rejected?items=maybe")).await, 400, "items");
    assert_error(&get(&api.url("/rejected?nope=1")).await, 400, "nope");
    // Like every other route, a parameter given twice is refused, not silently taken twice.
    assert_error(
        &get(&api.url("/rejected?limit=1&limit=2")).await,
        400,
        "`limit` is given more than once",
    );
}

/// One rule for every route: a query parameter the route does not document is a 400 naming it.
#[tokio::test]
async fn every_route_refuses_unknown_query_parameters_naming_them() {
    let store = Store::with_fixtures();
    let api = store.serve();
    for path in [
        "/health?x=1",
        "/status?verbose=1",
        "/repositories?sort=name",
        "/repositories/octo-org/hello-world?x=1",
        "/repositories/octo-org/hello-world/events?page=2",
        "/events/orn:github.event:octo-org%2Fhello-world:push-1a2b3c?full=1",
        "/commits/7fd1a60/events?page=1",
        "/polls?page=1",
        "/rejected?page=1",
    ] {
        let answer = get(&api.url(path)).await;
        let name = path.split_once('?').unwrap().1.split('=').next().unwrap();
        assert_error(&answer, 400, &format!("`{name}`"));
    }
    let metrics = reqwest::get(format!("{}/metrics?x=1", api.base()))
        .await
        .unwrap();
    assert_eq!(metrics.status().as_u16(), 400);
    assert!(metrics.text().await.unwrap().contains("`x`"));
}

#[tokio::test]
async fn delete_removes_a_repository_added_by_hand_while_it_has_no_events() {
    let store = Store::with_fixtures();
    let api = store.serve();
    let (status, _) = send(
        reqwest::Method::POST,
        &api.url("/repositories"),
        Some(r#"{"repo":"new-org/new-repo"}"#),
    )
    .await;
    assert_eq!(status, 201);
    let (status, removed) = send(
        reqwest::Method::DELETE,
        &api.url("/repositories/new-org/new-repo"),
        None,
    )
    .await;
    assert_eq!(
        (status, removed),
        (200, json!({"removed": "new-org/new-repo"}))
    );
    assert_error(
        &get(&api.url("/repositories/new-org/new-repo")).await,
        404,
        "not indexed",
    );
    assert_error(
        &send(
            reqwest::Method::DELETE,
            &api.url("/repositories/new-org/new-repo"),
            None,
        )
        .await,
        404,
        "not indexed",
    );
    // A repository whose events came from the network stays.
    assert_error(
        &send(
            reqwest::Method::DELETE,
            &api.url("/repositories/octo-org/hello-world"),
            None,
        )
        .await,
        409,
        "not added by hand",
    );
    assert_eq!(
        get(&api.url("/status")).await.1["details"]["repositories"],
        2
    );
}

/// Issue 13's routes over the fixture store: history, actions (none configured here) and the export.
#[tokio::test]
async fn history_actions_and_export_routes_answer_and_refuse_clearly() {
    let store = Store::with_fixtures();
    let api = store.serve();
    let encoded = PUSH.replace(':', "%3A").replace('/', "%2F");
    let (status, history) = get(&api.url(&format!("/events/{encoded}/history"))).await;
    assert_eq!(status, 200);
    let versions = history.as_array().unwrap();
    assert_eq!(versions.len(), 1, "{history}");
    assert!(versions[0]["contents"].is_object() && versions[0]["sha256_hash"].is_string());
    // Unencoded works too, as for the event itself.
    assert_eq!(
        get(&api.url(&format!("/events/{PUSH}/history"))).await.0,
        200
    );
    assert_error(
        &get(&api.url("/events/orn:github.event:octo-org/hello-world:nope/history")).await,
        404,
        "not indexed",
    );
    assert_error(
        &get(&api.url("/events/not-a-rid/history")).await,
        400,
        "RID",
    );

    assert_eq!(get(&api.url("/actions")).await, (200, json!([])));
    assert_error(
        &get(&api.url("/actions/deploy/deliveries")).await,
        404,
        "none is configured",
    );
    assert_error(
        &send(
            reqwest::Method::POST,
            &api.url("/actions/deploy/deliveries/x/redeliver"),
            None,
        )
        .await,
        404,
        "deploy",
    );
    assert_error(
        &get(&api.url("/actions?x=1")).await,
        400,
        "unknown query parameter",
    );

    let response = reqwest::get(api.url("/export")).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/x-ndjson");
    let text = response.text().await.unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines[0]["format"], "koi-github-indexer/export");
    assert_eq!(lines[0]["events"], fixture_bundles().len());
    let bundles = lines.iter().filter(|l| l["kind"] == "bundle").count();
    assert_eq!(bundles, fixture_bundles().len());
    assert_eq!(
        lines.last().unwrap(),
        &json!({"kind": "end", "lines": lines.len() - 2})
    );
    assert_error(
        &get(&api.url("/export?since=1")).await,
        400,
        "unknown query parameter",
    );

    let metrics = reqwest::get(format!("{}/metrics", api.base()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for route in [
        "/api/processor/github/events/{event_rid}/history",
        "/api/processor/github/actions",
        "/api/processor/github/actions/{name}/deliveries",
        "/api/processor/github/export",
    ] {
        assert!(metrics.contains(&format!("route=\"{route}\"")), "{route}");
    }
}
