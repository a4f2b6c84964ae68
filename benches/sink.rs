//! JetStream sink benchmark: how fast the sink publishes, and how far it falls behind a burst of indexing.
//!
//! ```sh
//! cargo bench --bench sink                          # 50,000 events, one server, then a 3-server cluster
//! SINK_BENCH_EVENTS=20000 cargo bench --bench sink
//! ```
//!
//! Real `nats-server` processes on loopback (the venv's, from `scripts/setup-python.sh`, or `$NATS_SERVER`), a fresh
//! sled store in a temporary directory, and real-size webhook bundles (`tests/fixtures/webhooks/`). Runs, each on a
//! new store and a new stream:
//!
//! 1. **publish**: the events are indexed first, then the sink publishes the whole log: events/s, without and with
//!    contents (`include_contents`);
//! 2. **burst**: the sink runs while one thread indexes the events in chunks of `node::pipeline::CHUNK` as fast as
//!    it can (the daemon's catch-up rate): the largest lag seen (sampled every 50 ms), and how long after the last
//!    commit the sink is caught up.
//!
//! Everything shares the machine's two cores: the servers, the writer and the sink.

#[path = "../tests/support/webhooks.rs"]
mod webhooks;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use koi_github_indexer::config::NatsSinkConfig;
use koi_github_indexer::index::{Index, IndexOptions};
use koi_github_indexer::node::pipeline::CHUNK;
use koi_github_indexer::protocol::Bundle;
use koi_github_indexer::telemetry::Metrics;

struct Servers {
    children: Vec<Child>,
    urls: Vec<String>,
}

impl Drop for Servers {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// `$NATS_SERVER`, or the koi-net venv's (`$KOI_VENV`, default `.venv`).
fn nats_server() -> std::path::PathBuf {
    if let Some(path) = std::env::var_os("NATS_SERVER") {
        return path.into();
    }
    let venv = std::env::var_os("KOI_VENV")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv"));
    venv.join("bin/nats-server")
}

fn start_servers(dir: &Path, n: usize) -> Servers {
    let ports: Vec<u16> = (0..n).map(|_| free_port()).collect();
    let routes: Vec<u16> = (0..n).map(|_| free_port()).collect();
    let route_list: Vec<String> = routes
        .iter()
        .map(|p| format!("nats://127.0.0.1:{p}"))
        .collect();
    let children = (0..n)
        .map(|i| {
            let mut args = vec![
                "-a".to_owned(),
                "127.0.0.1".into(),
                "-p".into(),
                ports[i].to_string(),
                "-n".into(),
                format!("n{i}"),
                "-js".into(),
                "-sd".into(),
                dir.join(format!("n{i}")).display().to_string(),
            ];
            if n > 1 {
                args.extend([
                    "--cluster_name".into(),
                    "bench".into(),
                    "--cluster".into(),
                    route_list[i].clone(),
                    "--routes".into(),
                    route_list.join(","),
                ]);
            }
            Command::new(nats_server())
                .args(&args)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("nats-server (run scripts/setup-python.sh, or set NATS_SERVER)")
        })
        .collect();
    let urls: Vec<String> = ports
        .iter()
        .map(|p| format!("nats://127.0.0.1:{p}"))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        loop {
            let ready = async {
                let client = async_nats::connect(urls.as_slice()).await.ok()?;
                async_nats::jetstream::new(client)
                    .query_account()
                    .await
                    .ok()
            };
            if tokio::time::timeout(Duration::from_secs(5), ready)
                .await
                .ok()
                .flatten()
                .is_some()
            {
                break;
            }
            assert!(Instant::now() < deadline, "JetStream did not become ready");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    Servers { children, urls }
}

fn sink_config(servers: &Servers, include_contents: bool) -> NatsSinkConfig {
    let text = format!(
        "servers = {:?}\nreplicas = {}\ninclude_contents = {include_contents}\n",
        servers.urls,
        servers.urls.len()
    );
    toml::from_str(&text).expect("a sink config")
}

/// A stream and subjects of its own for each run (two streams may not capture the same subjects).
fn fresh_stream(config: NatsSinkConfig) -> NatsSinkConfig {
    let run = uuid::Uuid::new_v4().simple().to_string();
    NatsSinkConfig {
        stream: format!("BENCH_{run}"),
        subject_prefix: format!("bench{run}"),
        ..config
    }
}

fn open_index(dir: &Path) -> (sled::Db, Index) {
    let db = sled::open(dir.join("db")).expect("open sled");
    let options = IndexOptions {
        sink_log: true,
        ..Default::default()
    };
    let index = Index::open_with(&db, options).expect("open index");
    (db, index)
}

fn index_all(db: &sled::Db, index: &Index, bundles: &[Bundle]) {
    for chunk in bundles.chunks(CHUNK) {
        index.apply_bundles(chunk).expect("apply");
        db.flush().expect("flush");
    }
}

/// Waits until the sink's lag is 0, sampling it; the largest lag seen.
async fn until_caught_up(index: &Index, timeout: Duration) -> u64 {
    let deadline = Instant::now() + timeout;
    let mut most = 0;
    loop {
        let status = index.sink_status().expect("status").expect("a sink");
        most = most.max(status.lag);
        if status.lag == 0 && index.sink_last().unwrap() > 0 {
            return most;
        }
        assert!(
            Instant::now() < deadline,
            "the sink did not catch up: {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn publish_run(servers: &Servers, bundles: &[Bundle], include_contents: bool) {
    let dir = tempfile::tempdir().unwrap();
    let (db, index) = open_index(dir.path());
    index_all(&db, &index, bundles);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let stop = CancellationToken::new();
    let config = fresh_stream(sink_config(servers, include_contents));
    let started = Instant::now();
    runtime.block_on(async {
        let task = koi_github_indexer::sink::spawn(
            config,
            None,
            "bench".into(),
            index.clone(),
            Metrics::new(),
            stop.clone(),
        );
        until_caught_up(&index, Duration::from_secs(600)).await;
        let took = started.elapsed();
        stop.cancel();
        let _ = task.await;
        println!(
            "  publish {:>6} events, contents {:<5}: {:>7.0} events/s ({:.2} s)",
            bundles.len(),
            include_contents,
            bundles.len() as f64 / took.as_secs_f64(),
            took.as_secs_f64()
        );
    });
}

fn burst_run(servers: &Servers, bundles: &[Bundle]) {
    let dir = tempfile::tempdir().unwrap();
    let (db, index) = open_index(dir.path());
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let stop = CancellationToken::new();
    let config = fresh_stream(sink_config(servers, false));
    runtime.block_on(async {
        let task = koi_github_indexer::sink::spawn(config, None, "bench".into(), index.clone(), Metrics::new(), stop.clone());
        let writer = {
            let (db, index, bundles) = (db.clone(), index.clone(), bundles.to_vec());
            tokio::task::spawn_blocking(move || {
                let started = Instant::now();
                index_all(&db, &index, &bundles);
                started.elapsed()
            })
        };
        let mut most = 0;
        while !writer.is_finished() {
            if let Ok(Some(status)) = index.sink_status() {
                most = most.max(status.lag);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let indexing = writer.await.unwrap();
        let done = Instant::now();
        most = most.max(until_caught_up(&index, Duration::from_secs(600)).await);
        let behind = done.elapsed();
        stop.cancel();
        let _ = task.await;
        println!(
            "  burst   {:>6} events indexed in {:.2} s ({:.0}/s): largest lag {most}, caught up {:.2} s after the last commit",
            bundles.len(),
            indexing.as_secs_f64(),
            bundles.len() as f64 / indexing.as_secs_f64(),
            behind.as_secs_f64()
        );
    });
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --all-targets` runs this without it, as a smoke test: 300 events.
    let smoke = !std::env::args().any(|a| a == "--bench");
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_writer(std::io::stderr)
            .init();
    }
    if !nats_server().exists() {
        println!(
            "sink bench: no nats-server at {} (run scripts/setup-python.sh): skipped",
            nats_server().display()
        );
        return;
    }
    let events: usize = std::env::var("SINK_BENCH_EVENTS")
        .map(|v| v.parse().expect("SINK_BENCH_EVENTS: a number"))
        .unwrap_or(if smoke { 300 } else { 50_000 });
    let fixtures = webhooks::fixture_contents();
    let bundles: Vec<Bundle> = (0..events)
        .map(|n| webhooks::webhook_bundle(&fixtures, n, &format!("bench-org/repo-{:02}", n % 20)))
        .collect();
    for n in if smoke { vec![1] } else { vec![1, 3] } {
        let dir = tempfile::tempdir().unwrap();
        let servers = start_servers(dir.path(), n);
        println!("{n} server(s), stream replicas {n}, max_in_flight 256:");
        publish_run(&servers, &bundles, false);
        publish_run(&servers, &bundles, true);
        burst_run(&servers, &bundles);
    }
}
