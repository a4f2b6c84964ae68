//! Shared by the API and CLI tests: a real sled store in a temporary directory filled with the fixture bundles,
//! and the API served from it on a loopback port.

#![allow(dead_code)] // each test binary uses its own part

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::{Map, Value};
use tokio_util::sync::CancellationToken;

use koi_github_indexer::api::server::{serve, ConnectionLimits};
use koi_github_indexer::api::{ApiContext, NodeStatus};
use koi_github_indexer::index::{DeadLetters, Index};
use koi_github_indexer::protocol::knowledge::hash_contents;
use koi_github_indexer::protocol::{Bundle, Manifest, Rid, Timestamp};
use koi_github_indexer::telemetry::{Metrics, PollLog};

/// The GitHubEvent fixtures as bundles (manifest time 2026-11-24T12:00:00Z).
pub fn fixture_bundles() -> Vec<Bundle> {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/github-event-contents.json");
    let items: Vec<Value> = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    items
        .into_iter()
        .map(|i| {
            let rid = format!(
                "orn:github.event:{}:{}",
                i["rid_repo"].as_str().unwrap(),
                i["event_id"].as_str().unwrap()
            );
            let Value::Object(contents) = i["contents"].clone() else {
                panic!("contents must be an object")
            };
            bundle(&rid, "2026-11-24T12:00:00Z", contents)
        })
        .collect()
}

pub fn bundle(rid: &str, time: &str, contents: Map<String, Value>) -> Bundle {
    Bundle {
        manifest: Manifest {
            rid: Rid::parse(rid).unwrap(),
            timestamp: Timestamp::parse(time).unwrap(),
            sha256_hash: hash_contents(&contents),
            extra: Map::new(),
        },
        contents,
    }
}

/// A data dir whose store (`<dir>/db`, as the daemon lays it out) holds every fixture.
pub struct Store {
    pub dir: tempfile::TempDir,
    /// Holds the store's lock, as the daemon does.
    pub store: koi_github_indexer::storage::Store,
    pub db: sled::Db,
    pub index: Index,
    pub metrics: Metrics,
    pub poll_log: PollLog,
}

impl Store {
    pub fn with_fixtures() -> Store {
        let store = Store::open_in(tempfile::tempdir().unwrap(), Metrics::new());
        let (db, index) = (&store.db, &store.index);
        for b in fixture_bundles() {
            index.apply_bundle(&b).unwrap();
        }
        // One dead letter, so `rejected` has something to show.
        DeadLetters::open(db, 100)
            .unwrap()
            .record(&[koi_github_indexer::index::Rejection {
                rid: "orn:github.event:octo-org/hello-world:bad rid".into(),
                source: "orn:koi-net.node:sensor+00".into(),
                reason: "bad_rid",
                detail: "it contains ' '".into(),
                item: String::new(),
            }])
            .unwrap();
        db.flush().unwrap();
        store
    }

    /// Closes the store and opens it again, as a restarted daemon does. Stop every server on it first.
    pub fn reopen(self) -> Store {
        let Store {
            dir,
            store,
            db,
            index,
            metrics,
            poll_log,
        } = self;
        drop((index, poll_log));
        db.flush().unwrap();
        drop((db, store));
        Store::open_in(dir, metrics)
    }

    /// The store in `dir` (a data dir holding `db`), opened as the daemon opens it.
    pub fn open_in(dir: tempfile::TempDir, metrics: Metrics) -> Store {
        let store = koi_github_indexer::storage::open(
            &dir.path().join("db"),
            koi_github_indexer::storage::StoreOptions::default(),
        )
        .unwrap();
        let db = store.db.clone();
        let index = Index::open(&db).unwrap();
        let poll_log = PollLog::open(&db).unwrap();
        Store {
            dir,
            store,
            db,
            index,
            metrics,
            poll_log,
        }
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().to_owned()
    }

    /// Serves the API over this store on 127.0.0.1 (a free port), as the daemon does, with the default limits.
    pub fn serve(&self) -> Server {
        self.serve_with(ConnectionLimits {
            header_timeout: std::time::Duration::from_secs(10),
            idle_timeout: std::time::Duration::from_secs(60),
            max_connections: 512,
        })
    }

    /// Serves the API with these connection limits.
    pub fn serve_with(&self, limits: ConnectionLimits) -> Server {
        let stop = CancellationToken::new();
        let ctx = ApiContext {
            index: self.index.clone(),
            status: Arc::new(|| NodeStatus {
                node_name: "test_indexer".into(),
                node_type: "PARTIAL".into(),
                ..NodeStatus::default()
            }),
            dead_letters: DeadLetters::open(&self.db, 100).unwrap(),
            metrics: self.metrics.clone(),
            poll_log: self.poll_log.clone(),
            shutdown: stop.clone(),
            stream_keep_alive: (limits.idle_timeout / 2).min(std::time::Duration::from_secs(15)),
            actions: Arc::new(Vec::new()),
            node_rid: "orn:koi-net.node:test_indexer+0".into(),
            access: Default::default(),
        };
        let listener = std::net::TcpListener::bind(("127.0.0.1", 0)).unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let listener = tokio::net::TcpListener::from_std(listener).unwrap();
        let task = tokio::spawn(serve(listener, ctx, limits, stop.clone()));
        Server { addr, stop, task }
    }
}

/// A running API; stops when dropped.
pub struct Server {
    pub addr: SocketAddr,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Server {
    /// Stops serving and waits until the server task has ended (and dropped its handles on the store), as a
    /// daemon that has exited would have.
    #[allow(dead_code)] // not every test binary that includes this module stops a server
    pub async fn stop(mut self) {
        self.stop.cancel();
        let _ = (&mut self.task).await;
    }

    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}/api/processor/github{path}", self.addr)
    }
}
