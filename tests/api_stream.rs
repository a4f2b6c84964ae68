//! Issue 12 over real HTTP on 127.0.0.1: the live stream (SSE and WebSocket), its resume, the global event list
//! and the statistics.

mod index_support;

use std::time::Duration;

use serde_json::{json, Value};

use index_support::{bundle, Store};

/// A webhook-shaped push by `actor` in `repo` at `time`.
fn push(repo: &str, id: &str, actor: &str, time: &str) -> koi_github_indexer::protocol::Bundle {
    let Value::Object(contents) = json!({
        "webhook_event_type": "push",
        "payload": {
            "after": format!("{:0>40}", id.len()),
            "head_commit": {"id": format!("{:a>40}", id.len()), "message": format!("commit {id}"), "timestamp": time},
            "sender": {"login": actor},
        }
    }) else {
        unreachable!()
    };
    bundle(&format!("orn:github.event:{repo}:{id}"), time, contents)
}

fn issue(repo: &str, id: &str, actor: &str, time: &str) -> koi_github_indexer::protocol::Bundle {
    let Value::Object(contents) = json!({
        "webhook_event_type": "issues",
        "action": "opened",
        "payload": {"issue": {"number": 1, "title": id, "updated_at": time}, "sender": {"login": actor}}
    }) else {
        unreachable!()
    };
    bundle(&format!("orn:github.event:{repo}:{id}"), time, contents)
}

/// One SSE message.
#[derive(Debug, Clone, PartialEq)]
struct Sse {
    id: Option<u64>,
    event: String,
    data: Value,
}

/// Reads an SSE response message by message.
struct SseReader {
    response: reqwest::Response,
    buffer: String,
}

impl SseReader {
    async fn open(url: &str, last_event_id: Option<u64>) -> SseReader {
        let mut request = reqwest::Client::new().get(url);
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id.to_string());
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.headers()["content-type"].to_str().unwrap(),
            "text/event-stream"
        );
        SseReader {
            response,
            buffer: String::new(),
        }
    }

    /// The next message (keep-alive comments skipped), or `None` when the stream ends or `wait` passes.
    async fn next(&mut self, wait: Duration) -> Option<Sse> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut message = Sse {
                    id: None,
                    event: "message".into(),
                    data: Value::Null,
                };
                let mut data = String::new();
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("id:") {
                        message.id = v.trim().parse().ok();
                    } else if let Some(v) = line.strip_prefix("event:") {
                        message.event = v.trim().to_owned();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim_start());
                    }
                }
                if data.is_empty() {
                    continue; // a comment (keep-alive)
                }
                message.data = serde_json::from_str(&data).unwrap();
                return Some(message);
            }
            let chunk = tokio::time::timeout_at(deadline, self.response.chunk())
                .await
                .ok()?
                .ok()??;
            self.buffer.push_str(&String::from_utf8_lossy(&chunk));
        }
    }

    /// The next `n` messages; panics if they do not come.
    async fn take(&mut self, n: usize) -> Vec<Sse> {
        let mut got = Vec::new();
        while got.len() < n {
            match self.next(Duration::from_secs(10)).await {
                Some(m) => got.push(m),
                None => panic!("stream ended after {got:?}"),
            }
        }
        got
    }
}

fn ids(messages: &[Sse]) -> Vec<String> {
    messages
        .iter()
        .map(|m| {
            m.data["event_rid"]
                .as_str()
                .unwrap()
                .rsplit(':')
                .next()
                .unwrap()
                .to_owned()
        })
        .collect()
}

#[tokio::test]
async fn a_stream_client_gets_each_new_event_once_in_order_with_its_filters() {
    let store = Store::with_fixtures();
    let api = store.serve();
    let mut all = SseReader::open(&api.url("/stream"), None).await;
    let mut pushes_by_ann = SseReader::open(
        &api.url("/stream?event_type=push&actor=ann&repo=a/one"),
        None,
    )
    .await;
    // Give both feeds time to subscribe before the first commit.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let index = store.index.clone();
    tokio::task::spawn_blocking(move || {
        index
            .apply_bundles(&[
                push("a/one", "p1", "ann", "2026-11-20T10:00:00Z"),
                issue("a/one", "i1", "ann", "2026-11-20T10:01:00Z"),
                push("b/two", "p2", "ann", "2026-11-20T10:02:00Z"),
            ])
            .unwrap();
        index
            .apply_bundle(&push("a/one", "p3", "bob", "2026-11-20T10:03:00Z"))
            .unwrap();
        // An UPDATE of a known event is not streamed again; a new event after it is.
        index
            .apply_bundle(&push("a/one", "p1", "ann", "2026-11-21T10:00:00Z"))
            .unwrap();
        index
            .apply_bundle(&push("a/one", "p4", "ann", "2026-11-20T10:04:00Z"))
            .unwrap();
    })
    .await
    .unwrap();
    let got = all.take(5).await;
    assert_eq!(ids(&got), ["p1", "i1", "p2", "p3", "p4"]);
    assert!(got.iter().all(|m| m.event == "github_event"));
    let seqs: Vec<u64> = got.iter().map(|m| m.id.unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    assert_eq!(got[0].data["repo"], "a/one");
    assert_eq!(got[0].data["event_type"], "push");
    assert_eq!(got[0].data["actor"], "ann");
    assert!(
        all.next(Duration::from_millis(500)).await.is_none(),
        "nothing more"
    );
    assert_eq!(ids(&pushes_by_ann.take(2).await), ["p1", "p4"]);
}

#[tokio::test]
async fn a_client_resumes_after_a_disconnect_and_after_a_restart_with_no_gap_and_no_duplicate() {
    let store = Store::with_fixtures();
    let api = store.serve();
    let mut first = SseReader::open(&api.url("/stream"), None).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let index = store.index.clone();
    tokio::task::spawn_blocking(move || {
        for i in 0..3 {
            index
                .apply_bundle(&push(
                    "a/one",
                    &format!("e{i}"),
                    "ann",
                    "2026-11-20T10:00:00Z",
                ))
                .unwrap();
        }
    })
    .await
    .unwrap();
    let seen = first.take(3).await;
    let resume_at = seen[1].id.unwrap(); // as if it dropped after the second
    drop(first);
    let index = store.index.clone();
    tokio::task::spawn_blocking(move || {
        index
            .apply_bundle(&push("a/one", "e3", "ann", "2026-11-20T10:00:00Z"))
            .unwrap();
    })
    .await
    .unwrap();
    // Last-Event-ID: the third and fourth, from the store.
    let mut again = SseReader::open(&api.url("/stream"), Some(resume_at)).await;
    assert_eq!(ids(&again.take(2).await), ["e2", "e3"]);
    drop(again);
    // The daemon restarts; events arrive meanwhile; `after=` picks up exactly there.
    api.stop().await;
    // The stream feeds end on the stop signal at their next turn; let them run once, so that nothing holds the
    // store when it is opened again (as when a daemon process exits).
    tokio::time::sleep(Duration::from_millis(100)).await;
    let store = store.reopen();
    let last = store.index.last_seq().unwrap();
    store
        .index
        .apply_bundle(&push("a/one", "e4", "ann", "2026-11-20T10:00:00Z"))
        .unwrap();
    let api = store.serve();
    let mut after_restart = SseReader::open(&api.url(&format!("/stream?after={last}")), None).await;
    let replayed = after_restart.take(1).await;
    assert_eq!(ids(&replayed), ["e4"]);
    assert_eq!(
        replayed[0].id,
        Some(last + 1),
        "numbers go on across restarts"
    );
    // ... and then goes on live.
    let index = store.index.clone();
    tokio::task::spawn_blocking(move || {
        index
            .apply_bundle(&push("a/one", "e5", "ann", "2026-11-20T10:00:00Z"))
            .unwrap();
    })
    .await
    .unwrap();
    assert_eq!(ids(&after_restart.take(1).await), ["e5"]);
}

#[tokio::test]
async fn the_websocket_stream_carries_the_same_messages() {
    use futures::StreamExt as _;
    let store = Store::with_fixtures();
    let api = store.serve();
    let url = format!("ws://{}/api/processor/github/stream/ws?after=0", api.addr);
    let (mut socket, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    // `after=0` replays everything held: the 8 fixture events, in sequence order.
    let mut seqs = Vec::new();
    while seqs.len() < 8 {
        let message = tokio::time::timeout(Duration::from_secs(10), socket.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        let value: Value = serde_json::from_str(message.to_text().unwrap()).unwrap();
        assert!(value["event"]["event_rid"].is_string(), "{value}");
        assert!(value["event"]["repo"].is_string(), "{value}");
        seqs.push(value["seq"].as_u64().unwrap());
    }
    assert_eq!(seqs, (1..=8).collect::<Vec<_>>());
}

#[tokio::test]
async fn bad_stream_parameters_are_refused_with_a_reason() {
    let store = Store::with_fixtures();
    let api = store.serve();
    for (query, needle) in [
        ("?sample=0", "sample"),
        ("?sample=1.5", "sample"),
        ("?after=-1", "after"),
        ("?repo=../..", "repository"),
        ("?colour=red", "unknown query parameter `colour`"),
        ("?actor=a&actor=b", "more than once"),
    ] {
        let response = reqwest::get(api.url(&format!("/stream{query}")))
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{query}");
        let body: Value = response.json().await.unwrap();
        let message = body["error"].as_str().unwrap();
        assert!(message.contains(needle), "{query}: {message}");
    }
}

#[tokio::test]
async fn the_global_list_filters_by_actor_type_repo_and_time_newest_first() {
    let store = Store::with_fixtures();
    store
        .index
        .apply_bundles(&[
            push("a/one", "p1", "ann", "2026-11-20T10:00:00Z"),
            issue("a/one", "i1", "ann", "2026-11-20T11:00:00Z"),
            push("b/two", "p2", "ann", "2026-11-21T10:00:00Z"),
            push("b/two", "p3", "bob", "2026-11-22T10:00:00Z"),
        ])
        .unwrap();
    let api = store.serve();
    let get = |path: String| {
        let url = api.url(&path);
        async move {
            let response = reqwest::get(url).await.unwrap();
            (
                response.status().as_u16(),
                response.json::<Value>().await.unwrap(),
            )
        }
    };
    let rids = |v: &Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|e| {
                e["event_rid"]
                    .as_str()
                    .unwrap()
                    .rsplit(':')
                    .next()
                    .unwrap()
                    .to_owned()
            })
            .collect()
    };
    let (status, by_ann) = get("/events?actor=ann".into()).await;
    assert_eq!(status, 200);
    assert_eq!(rids(&by_ann), ["p2", "i1", "p1"]);
    assert_eq!(
        rids(&get("/events?actor=ann&event_type=push".into()).await.1),
        ["p2", "p1"]
    );
    assert_eq!(
        rids(&get("/events?actor=ann&repo=b/two".into()).await.1),
        ["p2"]
    );
    assert_eq!(
        rids(
            &get("/events?event_type=push&since=2026-11-21&limit=1&offset=1".into())
                .await
                .1
        ),
        ["p2"]
    );
    let (_, everything) = get("/events?limit=100".into()).await;
    assert_eq!(everything.as_array().unwrap().len(), 12);
    let (status, error) = get("/events?limit=1000".into()).await;
    assert_eq!(status, 400, "{error}");
    let (status, error) = get("/events?since=2026-11-22&until=2026-11-21".into()).await;
    assert_eq!(status, 400, "{error}");
}

#[tokio::test]
async fn statistics_count_by_day_type_repo_and_actor() {
    let store = Store::with_fixtures();
    let fresh = Store::with_fixtures();
    let before = fresh.index.stats(&Default::default()).unwrap();
    store
        .index
        .apply_bundles(&[
            push("a/one", "p1", "ann", "2025-01-10T10:00:00Z"),
            issue("a/one", "i1", "ann", "2025-01-10T11:00:00Z"),
            push("b/two", "p2", "ann", "2025-01-11T10:00:00Z"),
            push("b/two", "p3", "bob", "2025-01-12T10:00:00Z"),
        ])
        .unwrap();
    let api = store.serve();
    let stats = |query: &str| {
        let url = api.url(&format!("/stats{query}"));
        async move {
            reqwest::get(url)
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        }
    };
    let all = stats("").await;
    assert_eq!(all["total"], before.total + 4);
    let window = stats("?since=2025-01-10&until=2025-01-11").await;
    assert_eq!(window["total"], 3);
    assert_eq!(window["by_type"], json!({"issues": 1, "push": 2}));
    assert_eq!(window["by_repo"], json!({"a/one": 2, "b/two": 1}));
    assert_eq!(
        window["by_day"],
        json!([
            {"day": "2025-01-10", "total": 2, "by_type": {"issues": 1, "push": 1}},
            {"day": "2025-01-11", "total": 1, "by_type": {"push": 1}},
        ])
    );
    assert_eq!(window["top_actors"], json!([{"actor": "ann", "count": 3}]));
    assert_eq!(
        window["top_repos"],
        json!([{"repo": "a/one", "count": 2}, {"repo": "b/two", "count": 1}])
    );
    let one_repo = stats("?repo=b/two").await;
    assert_eq!(one_repo["total"], 2);
    assert_eq!(
        one_repo["top_actors"],
        json!([{"actor": "ann", "count": 1}, {"actor": "bob", "count": 1}])
    );
    // A FORGET takes its counts away.
    store
        .index
        .forget(&koi_github_indexer::protocol::Rid::parse("orn:github.event:b/two:p3").unwrap())
        .unwrap();
    assert_eq!(stats("?repo=b/two").await["total"], 1);
    let bad = reqwest::get(api.url("/stats?since=yesterday"))
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
}
