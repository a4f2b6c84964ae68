//! The API's HTTP edges over raw sockets on 127.0.0.1: slow, idle and numerous clients, requests hyper cannot
//! parse, HEAD, chunked bodies (issue 11, items 1 and 5).

mod index_support;

use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use index_support::Store;
use koi_github_indexer::api::server::ConnectionLimits;

/// Sends `request` as raw bytes and reads the whole answer (the server closes, or answers with a length).
async fn raw(addr: std::net::SocketAddr, request: &[u8]) -> (u16, String, String) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer)).await;
    let text = String::from_utf8_lossy(&answer).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    (status, head.to_ascii_lowercase(), body.to_owned())
}

fn assert_json_error(answer: &(u16, String, String), status: u16, needle: &str) {
    assert_eq!(answer.0, status, "{answer:?}");
    assert!(
        answer.1.contains("content-type: application/json"),
        "{answer:?}"
    );
    let json: Value = serde_json::from_str(&answer.2).unwrap_or_else(|_| panic!("{answer:?}"));
    let message = json["error"].as_str().unwrap();
    assert!(
        message.contains(needle),
        "`{message}` should mention `{needle}`"
    );
}

fn quick_limits() -> ConnectionLimits {
    ConnectionLimits {
        header_timeout: Duration::from_millis(300),
        idle_timeout: Duration::from_millis(600),
        max_connections: 512,
    }
}

/// Reads until the server closes the connection; panics if it stays open for `within`.
async fn closed_by_server(stream: &mut TcpStream, within: Duration) -> Vec<u8> {
    let mut got = Vec::new();
    match tokio::time::timeout(within, stream.read_to_end(&mut got)).await {
        Ok(_) => got,
        Err(_) => panic!("the server kept the connection open for {within:?}"),
    }
}

#[tokio::test]
async fn requests_hyper_cannot_parse_get_json_errors() {
    let store = Store::with_fixtures();
    let api = store.serve();
    let long_path = format!(
        "GET /api/processor/github/{} HTTP/1.1\r\nhost: x\r\n\r\n",
        "a".repeat(100 * 1024)
    );
    assert_json_error(&raw(api.addr, long_path.as_bytes()).await, 431, "64 KiB");
    let long_header = format!(
        "GET /api/processor/github/health HTTP/1.1\r\nhost: x\r\nx-big: {}\r\n\r\n",
        "b".repeat(100 * 1024)
    );
    assert_json_error(&raw(api.addr, long_header.as_bytes()).await, 431, "headers");
    assert_json_error(
        &raw(api.addr, b"GARBAGE\x01 / HTTP/1.1\r\n\r\n").await,
        400,
        "malformed",
    );
    assert_json_error(
        &raw(api.addr, b"GET / HTTP/1.1\r\nbad header\r\n\r\n").await,
        400,
        "malformed",
    );
}

#[tokio::test]
async fn a_small_chunked_body_is_accepted_and_a_large_one_refused() {
    let store = Store::with_fixtures();
    let api = store.serve();
    let body = r#"{"repo":"new-org/chunked"}"#;
    let request = format!(
        "POST /api/processor/github/repositories HTTP/1.1\r\nhost: {}\r\ncontent-type: application/json\r\n\
         transfer-encoding: chunked\r\nconnection: close\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n",
        api.addr,
        body.len()
    );
    let answer = raw(api.addr, request.as_bytes()).await;
    assert_eq!(answer.0, 201, "{answer:?}");
    let big = "x".repeat(8192);
    let request = format!(
        "POST /api/processor/github/repositories HTTP/1.1\r\nhost: {}\r\ncontent-type: application/json\r\n\
         transfer-encoding: chunked\r\nconnection: close\r\n\r\n{:x}\r\n{big}\r\n0\r\n\r\n",
        api.addr,
        big.len()
    );
    assert_json_error(&raw(api.addr, request.as_bytes()).await, 413, "4096 bytes");
}

#[tokio::test]
async fn head_answers_every_get_route_like_get_without_a_body() {
    let store = Store::with_fixtures();
    let api = store.serve();
    let client = reqwest::Client::new();
    for path in [
        "/api/processor/github/health",
        "/api/processor/github/status",
        "/api/processor/github/repositories",
        "/api/processor/github/repositories/octo-org/hello-world",
        "/api/processor/github/repositories/octo-org/hello-world/events",
        "/api/processor/github/events/orn:github.event:octo-org%2Fhello-world:push-1a2b3c",
        "/api/processor/github/commits/1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b/events",
        "/api/processor/github/polls",
        "/api/processor/github/rejected",
        "/metrics",
        "/api/processor/github/no-such-route",
    ] {
        let url = format!("{}{path}", api.base());
        let get = client.get(&url).send().await.unwrap();
        let head = client.head(&url).send().await.unwrap();
        assert_eq!(head.status(), get.status(), "{path}");
        assert_eq!(
            head.headers().get("content-type"),
            get.headers().get("content-type"),
            "{path}"
        );
        assert!(head.bytes().await.unwrap().is_empty(), "{path}");
    }
}

#[tokio::test]
async fn a_client_too_slow_with_its_request_head_is_disconnected() {
    let store = Store::with_fixtures();
    let api = store.serve_with(quick_limits());
    let mut slow = TcpStream::connect(api.addr).await.unwrap();
    slow.write_all(b"GET /api/processor/github/health HTTP/1.1\r\nhost: x\r\n")
        .await
        .unwrap();
    let answer = closed_by_server(&mut slow, Duration::from_secs(10)).await;
    assert!(answer.is_empty(), "{:?}", String::from_utf8_lossy(&answer));
    // A client that connects and sends nothing at all goes the same way.
    let mut silent = TcpStream::connect(api.addr).await.unwrap();
    closed_by_server(&mut silent, Duration::from_secs(10)).await;
    let metrics = reqwest::get(format!("{}/metrics", api.base()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(r#"koi_indexer_api_connections_closed_total{reason="header_timeout"} 2"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout() {
    let store = Store::with_fixtures();
    let api = store.serve_with(quick_limits());
    let mut client = TcpStream::connect(api.addr).await.unwrap();
    client
        .write_all(
            format!(
                "GET /api/processor/github/health HTTP/1.1\r\nhost: {}\r\n\r\n",
                api.addr
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    let mut first = [0u8; 512];
    let n = client.read(&mut first).await.unwrap();
    assert!(
        String::from_utf8_lossy(&first[..n]).starts_with("HTTP/1.1 200"),
        "{:?}",
        String::from_utf8_lossy(&first[..n])
    );
    // Kept alive, then closed once idle.
    closed_by_server(&mut client, Duration::from_secs(10)).await;
}

#[tokio::test]
async fn at_the_connection_cap_slow_clients_make_room_for_a_quick_one() {
    let store = Store::with_fixtures();
    let api = store.serve_with(ConnectionLimits {
        header_timeout: Duration::from_secs(60),
        idle_timeout: Duration::from_secs(60),
        max_connections: 16,
    });
    let mut slow = Vec::new();
    for _ in 0..64 {
        let mut stream = TcpStream::connect(api.addr).await.unwrap();
        stream
            .write_all(b"GET /api/processor/github/he")
            .await
            .unwrap();
        slow.push(stream);
    }
    let health = reqwest::get(api.url("/health")).await.unwrap();
    assert_eq!(health.status(), 200);
    let metrics = reqwest::get(format!("{}/metrics", api.base()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let evicted = metrics
        .lines()
        .find(|l| l.starts_with(r#"koi_indexer_api_connections_closed_total{reason="evicted"}"#))
        .unwrap_or_else(|| panic!("{metrics}"));
    let evicted: u64 = evicted.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(evicted >= 48, "{evicted} evicted:\n{metrics}");
}

/// Thousands of half-sent requests (5,000, or fewer if this process's file limit is low) while `/health` is
/// timed. The numbers are printed for the notes, never asserted on: the host is shared and noisy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_answers_while_thousands_of_slow_clients_hold_connections() {
    let store = Store::with_fixtures();
    let api = store.serve_with(ConnectionLimits {
        header_timeout: Duration::from_secs(10),
        idle_timeout: Duration::from_secs(60),
        max_connections: 512,
    });
    let clients = open_file_limit().saturating_sub(1_500).min(5_000);
    let rss_before = rss_kib();
    let started = Instant::now();
    let mut slow = Vec::with_capacity(clients);
    for _ in 0..clients {
        let Ok(mut stream) = TcpStream::connect(api.addr).await else {
            break;
        };
        let _ = stream
            .write_all(b"GET /api/processor/github/health HTTP/1.1\r\nhost: x\r\n")
            .await;
        slow.push(stream);
    }
    let opened = started.elapsed();
    let mut timings = Vec::new();
    for _ in 0..20 {
        let asked = Instant::now();
        let health = reqwest::get(api.url("/health")).await.unwrap();
        assert_eq!(health.status(), 200);
        timings.push(asked.elapsed());
    }
    timings.sort();
    let rss_during = rss_kib();
    drop(slow);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_after = rss_kib();
    println!(
        "{} slow clients opened in {opened:.1?}; /health over 20 tries: median {:.1?}, max {:.1?}; \
         test process RSS before {rss_before} KiB, with them {rss_during} KiB, after {rss_after} KiB",
        clients,
        timings[timings.len() / 2],
        timings[timings.len() - 1],
    );
}

/// Field `field` (whitespace-separated, from 0) of the first line of `/proc/self/<file>` starting with `prefix`.
fn proc_self(file: &str, prefix: &str, field: usize) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/self/{file}")).ok()?;
    let line = text.lines().find(|l| l.starts_with(prefix))?;
    line.split_whitespace().nth(field)?.parse().ok()
}

fn open_file_limit() -> usize {
    proc_self("limits", "Max open files", 3).map_or(1024, |n| n as usize)
}

fn rss_kib() -> u64 {
    proc_self("status", "VmRSS:", 1).unwrap_or(0)
}
