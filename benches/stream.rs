//! Live-stream benchmark: what stream clients cost indexing, and how fast they get each event.
//!
//! ```sh
//! cargo bench --bench stream                                       # 20,000 events, 100 clients
//! STREAM_BENCH_EVENTS=50000 STREAM_BENCH_CLIENTS=200 cargo bench --bench stream
//! ```
//!
//! A fresh sled store in a temporary directory, the API served from it on 127.0.0.1 as the daemon serves it, and
//! `n` real-size webhook bundles (the fixtures of `tests/fixtures/webhooks/`) written by one thread with
//! `Index::apply_bundles` and a flush per chunk of `node::pipeline::CHUNK`, as the writer does. Four runs, each on a new store:
//!
//! 1. no stream client;
//! 2. one client that connects and never reads (a small receive buffer, so the server soon cannot write to it);
//! 3. `clients` SSE clients reading everything;
//! 4. both.
//!
//! For each: the ingest rate, and for the reading clients whether each got every event once and in order, and the
//! delivery latency, from the start of the write of an event's chunk to the client's receipt of it (p50, p99, max).
//! The clients run on the same two cores as the writer, as they would on a small host.

#[path = "../tests/support/webhooks.rs"]
mod webhooks;

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio_util::sync::CancellationToken;

use koi_github_indexer::api::server::{serve, ConnectionLimits};
use koi_github_indexer::api::{ApiContext, NodeStatus};
use koi_github_indexer::index::{DeadLetters, Index};
use koi_github_indexer::node::pipeline::CHUNK;
use koi_github_indexer::protocol::Bundle;
use koi_github_indexer::storage::StoreOptions;
use koi_github_indexer::telemetry::{Metrics, PollLog};

struct Served {
    index: Index,
    db: sled::Db,
    _store: koi_github_indexer::storage::Store,
    addr: std::net::SocketAddr,
    stop: CancellationToken,
    _dir: tempfile::TempDir,
}

async fn serve_fresh_store() -> Served {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = koi_github_indexer::storage::open(&dir.path().join("db"), StoreOptions::default())
        .expect("open sled");
    let db = store.db.clone();
    let index = Index::open(&db).expect("open index");
    let stop = CancellationToken::new();
    let limits = ConnectionLimits {
        header_timeout: Duration::from_secs(10),
        idle_timeout: Duration::from_secs(60),
        max_connections: 4096,
    };
    let ctx = ApiContext {
        index: index.clone(),
        status: Arc::new(NodeStatus::default),
        dead_letters: DeadLetters::open(&db, 100).expect("dead letters"),
        metrics: Metrics::new(),
        poll_log: PollLog::open(&db).expect("poll log"),
        shutdown: stop.clone(),
        stream_keep_alive: Duration::from_secs(15),
        actions: Arc::new(Vec::new()),
        node_rid: "orn:koi-net.node:test_indexer+0".into(),
        access: Default::default(),
    };
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("address");
    tokio::spawn(serve(listener, ctx, limits, stop.clone()));
    Served {
        index,
        db,
        _store: store,
        addr,
        stop,
        _dir: dir,
    }
}

/// A reading client: the receipt time of each event number, in order of arrival.
async fn reading_client(
    addr: std::net::SocketAddr,
    ready: tokio::sync::mpsc::Sender<()>,
    until: u64,
) -> Vec<(u64, Instant)> {
    let url = format!("http://{addr}/api/processor/github/stream");
    let mut response = reqwest::get(url).await.expect("stream");
    let _ = ready.send(()).await;
    let mut got = Vec::new();
    let mut text = String::new();
    while let Ok(Some(chunk)) = response.chunk().await {
        let now = Instant::now();
        text.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = text.find("\n\n") {
            let message: String = text.drain(..end + 2).collect();
            if let Some(id) = message
                .lines()
                .find_map(|line| line.strip_prefix("id:"))
                .and_then(|id| id.trim().parse::<u64>().ok())
            {
                got.push((id, now));
            }
        }
        if got.last().is_some_and(|(id, _)| *id >= until) {
            break;
        }
    }
    got
}

/// A client that sends its request and never reads again.
async fn stalled_client(addr: std::net::SocketAddr) -> tokio::net::TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    let mut stream = socket.connect(addr).await.expect("connect");
    stream
        .write_all(
            format!("GET /api/processor/github/stream HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes(),
        )
        .await
        .expect("request");
    let mut head = [0u8; 512];
    let _ = stream.read(&mut head).await;
    stream
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

async fn run(bundles: &[Bundle], readers: usize, stalled: bool) {
    let served = serve_fresh_store().await;
    let _stalled = if stalled {
        Some(stalled_client(served.addr).await)
    } else {
        None
    };
    let n = bundles.len() as u64;
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel(readers.max(1));
    let clients: Vec<_> = (0..readers)
        .map(|_| tokio::spawn(reading_client(served.addr, ready_tx.clone(), n)))
        .collect();
    for _ in 0..readers {
        ready_rx.recv().await;
    }
    // Let every feed subscribe (the response head comes once it has).
    tokio::time::sleep(Duration::from_millis(200)).await;

    let index = served.index.clone();
    let db = served.db.clone();
    let chunks: Vec<Vec<Bundle>> = bundles.chunks(CHUNK).map(<[Bundle]>::to_vec).collect();
    let (elapsed, chunk_starts) = tokio::task::spawn_blocking(move || {
        let mut starts = Vec::new(); // (last seq of the chunk, when its write started)
        let began = Instant::now();
        for chunk in &chunks {
            let started = Instant::now();
            index.apply_bundles(chunk).expect("apply");
            db.flush().expect("flush"); // as the writer does after each chunk
            starts.push((index.last_seq().expect("last seq"), started));
        }
        (began.elapsed(), starts)
    })
    .await
    .expect("writer");

    let mut latencies = Vec::new();
    let mut complete = 0;
    for client in clients {
        let got = tokio::time::timeout(Duration::from_secs(120), client)
            .await
            .expect("a reading client gets everything within 2 minutes")
            .expect("client task");
        if got.iter().map(|(id, _)| *id).eq(1..=n) {
            complete += 1;
        }
        for (id, at) in got {
            let started = chunk_starts[chunk_starts.partition_point(|(last, _)| *last < id)].1;
            latencies.push(at.saturating_duration_since(started));
        }
    }
    latencies.sort();
    let rate = n as f64 / elapsed.as_secs_f64();
    let who = match (readers, stalled) {
        (0, false) => "no client".to_owned(),
        (0, true) => "1 client that never reads".to_owned(),
        (r, false) => format!("{r} reading clients"),
        (r, true) => format!("{r} reading clients + 1 that never reads"),
    };
    if latencies.is_empty() {
        println!("{who:<42} ingest {rate:>8.0} events/s");
    } else {
        println!(
            "{who:<42} ingest {rate:>8.0} events/s · {complete}/{readers} clients got all {n} once, in order · delivery p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            percentile(&latencies, 0.5).as_secs_f64() * 1e3,
            percentile(&latencies, 0.99).as_secs_f64() * 1e3,
            latencies.last().map_or(0.0, |d| d.as_secs_f64() * 1e3),
        );
    }
    served.stop.cancel();
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --all-targets` runs this without it, as a smoke test: 500 events,
    // 3 clients.
    let smoke = !std::env::args().any(|a| a == "--bench");
    let events: usize = std::env::var("STREAM_BENCH_EVENTS")
        .map(|v| v.parse().expect("STREAM_BENCH_EVENTS: a number"))
        .unwrap_or(if smoke { 500 } else { 20_000 });
    let clients: usize = std::env::var("STREAM_BENCH_CLIENTS")
        .map(|v| v.parse().expect("STREAM_BENCH_CLIENTS: a number"))
        .unwrap_or(if smoke { 3 } else { 100 });
    let fixtures = webhooks::fixture_contents();
    let bundles: Vec<Bundle> = (0..events)
        .map(|n| webhooks::webhook_bundle(&fixtures, n, &format!("bench-org/repo-{:02}", n % 20)))
        .collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    println!("{events} webhook events in chunks of {CHUNK}");
    runtime.block_on(async {
        run(&bundles, 0, false).await;
        run(&bundles, 0, true).await;
        run(&bundles, clients, false).await;
        run(&bundles, clients, true).await;
    });
}
