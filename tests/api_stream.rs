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

/// One SSE message block; `None` for a comment (keep-alive).
fn parse_sse(block: &str) -> Option<Sse> {
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
        return None;
    }
    message.data = serde_json::from_str(&data).unwrap();
    Some(message)
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
                match parse_sse(&block) {
                    Some(message) => return Some(message),
                    None => continue, // a comment (keep-alive)
                }
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
    // No wait: a client that has the response head is subscribed (the feed subscribes as the response is made).
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

/// A raw HTTP/1.1 stream client with a small receive buffer, so that it can stop reading and be sure the server
/// soon cannot write to it.
struct RawStreamClient {
    socket: tokio::net::TcpStream,
    /// Bytes read and not yet de-chunked.
    raw: Vec<u8>,
}

impl RawStreamClient {
    async fn open(api: &index_support::Server, query: &str) -> RawStreamClient {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        let mut socket = socket.connect(api.addr).await.unwrap();
        let request = format!(
            "GET /api/processor/github/stream{query} HTTP/1.1\r\nHost: {}\r\nAccept: text/event-stream\r\n\r\n",
            api.addr
        );
        socket.write_all(request.as_bytes()).await.unwrap();
        let mut raw = Vec::new();
        while !raw.windows(4).any(|w| w == b"\r\n\r\n") {
            let mut buf = [0u8; 1024];
            let n = socket.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed before the response head");
            raw.extend_from_slice(&buf[..n]);
        }
        let end = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        let head = String::from_utf8_lossy(&raw[..end]).to_lowercase();
        assert!(head.starts_with("http/1.1 200"), "{head}");
        assert!(head.contains("transfer-encoding: chunked"), "{head}");
        raw.drain(..end);
        RawStreamClient { socket, raw }
    }

    /// Reads until the server closes the connection (or `wait` passes: a panic), and gives the body's SSE text.
    async fn read_to_close(mut self, wait: Duration) -> String {
        use tokio::io::AsyncReadExt as _;
        tokio::time::timeout(wait, self.socket.read_to_end(&mut self.raw))
            .await
            .expect("the server closes the connection")
            .unwrap();
        // De-chunk: `size CRLF data CRLF`, ending with a zero size.
        let mut body = Vec::new();
        let mut rest = &self.raw[..];
        loop {
            let line_end = rest
                .windows(2)
                .position(|w| w == b"\r\n")
                .expect("a chunk size line");
            let size =
                usize::from_str_radix(std::str::from_utf8(&rest[..line_end]).unwrap().trim(), 16)
                    .unwrap();
            if size == 0 {
                break;
            }
            body.extend_from_slice(&rest[line_end + 2..line_end + 2 + size]);
            rest = &rest[line_end + 2 + size + 2..];
        }
        String::from_utf8(body).unwrap()
    }
}

/// The SSE messages in a body; comments skipped.
fn sse_messages(body: &str) -> Vec<Sse> {
    body.split("\n\n").filter_map(parse_sse).collect()
}

#[tokio::test]
async fn a_client_that_stops_reading_gets_lagged_and_is_disconnected_while_indexing_goes_on() {
    let store = Store::with_fixtures();
    let api = store.serve();
    let first = store.index.last_seq().unwrap();
    let stalled = RawStreamClient::open(&api, "").await;
    // A reading client beside it must see every event, lagged or not.
    let mut reading = SseReader::open(&api.url("/stream"), None).await;
    // Far more commits than the live feed holds (64 batches), and more bytes than the sockets and hyper buffer
    // (the server's send buffer grows to 4 MiB): long event ids make each message about 2.5 KB.
    const COMMITS: usize = 150;
    const PER_COMMIT: usize = 20;
    let long = "x".repeat(1000);
    let index = store.index.clone();
    let ingest = tokio::task::spawn_blocking(move || {
        for c in 0..COMMITS {
            let bundles: Vec<_> = (0..PER_COMMIT)
                .map(|i| {
                    push(
                        "a/one",
                        &format!("lag-{c}-{i}-{long}"),
                        "ann",
                        "2026-11-20T10:00:00Z",
                    )
                })
                .collect();
            index.apply_bundles(&bundles).unwrap();
        }
    });
    let total = COMMITS * PER_COMMIT;
    let mut got = 0;
    while got < total {
        let message = reading
            .next(Duration::from_secs(30))
            .await
            .expect("the reading client keeps getting events");
        assert_eq!(message.event, "github_event");
        got += 1;
    }
    ingest.await.unwrap();
    assert_eq!(
        store.index.last_seq().unwrap(),
        first + total as u64,
        "indexing went on"
    );

    // The stalled client now reads what was written to it: events in order with no gap, then `lagged` naming the
    // last one it got, then the end of the connection.
    let body = stalled.read_to_close(Duration::from_secs(30)).await;
    let messages = sse_messages(&body);
    let (last, events) = messages.split_last().expect("some messages");
    assert_eq!(last.event, "lagged", "the last message: {last:?}");
    let ids: Vec<u64> = events.iter().map(|m| m.id.unwrap()).collect();
    assert!(
        !ids.is_empty() && ids.len() < total,
        "{} events before lagging",
        ids.len()
    );
    assert_eq!(
        ids,
        (first + 1..=first + ids.len() as u64).collect::<Vec<_>>()
    );
    eprintln!(
        "the stalled client got {} of {total} events, then lagged",
        ids.len()
    );
    let resume_after = last.data["resume_after"].as_u64().unwrap();
    assert_eq!(resume_after, *ids.last().unwrap());
    // Resuming from there gives the rest, with no gap.
    let mut resumed =
        SseReader::open(&api.url(&format!("/stream?after={resume_after}")), None).await;
    let rest = resumed.take(total - ids.len()).await;
    assert_eq!(rest.first().unwrap().id, Some(resume_after + 1));
    assert_eq!(rest.last().unwrap().id, Some(first + total as u64));
}

#[tokio::test]
async fn sampling_gives_every_client_at_one_rate_the_same_events() {
    let store = Store::with_fixtures();
    let after = store.index.last_seq().unwrap();
    let bundles: Vec<_> = (0..200)
        .map(|i| push("a/one", &format!("s{i}"), "ann", "2026-11-20T10:00:00Z"))
        .collect();
    store.index.apply_bundles(&bundles).unwrap();
    let api = store.serve();
    let mut samples = Vec::new();
    for _ in 0..2 {
        let mut client = SseReader::open(
            &api.url(&format!("/stream?after={after}&sample=0.25")),
            None,
        )
        .await;
        let mut got = Vec::new();
        while let Some(message) = client.next(Duration::from_millis(500)).await {
            got.push(message.id.unwrap());
        }
        samples.push(got);
    }
    assert_eq!(samples[0], samples[1], "the same events at the same rate");
    let n = samples[0].len();
    assert!((20..=80).contains(&n), "about a quarter of 200, got {n}");
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
