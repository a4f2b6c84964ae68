//! Shared by the API and CLI tests: a real sled store in a temporary directory filled with the fixture bundles,
//! and the API served from it on a loopback port.

#![allow(dead_code)] // each test binary uses its own part

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::{Map, Value};
use tokio::sync::oneshot;

use koi_github_indexer::api::{routes, ApiContext, NodeStatus};
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
        let dir = tempfile::tempdir().unwrap();
        let store = koi_github_indexer::storage::open(
            &dir.path().join("db"),
            koi_github_indexer::storage::StoreOptions::default(),
        )
        .unwrap();
        let db = store.db.clone();
        let index = Index::open(&db).unwrap();
        for b in fixture_bundles() {
            index.apply_bundle(&b).unwrap();
        }
        // One dead letter, so `rejected` has something to show.
        DeadLetters::open(&db, 100)
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
        let poll_log = PollLog::open(&db).unwrap();
        Store {
            dir,
            store,
            db,
            index,
            metrics: Metrics::new(),
            poll_log,
        }
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().to_owned()
    }

    /// Serves the API over this store on 127.0.0.1 (a free port), as the daemon does.
    pub fn serve(&self) -> Server {
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
        };
        let (stop, stopped) = oneshot::channel::<()>();
        let (addr, server) =
            warp::serve(routes(ctx)).bind_with_graceful_shutdown(([127, 0, 0, 1], 0), async {
                let _ = stopped.await;
            });
        let task = tokio::spawn(server);
        Server {
            addr,
            stop_signal: stop,
            task,
        }
    }
}

/// A running API; stops when dropped.
pub struct Server {
    pub addr: SocketAddr,
    stop_signal: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    /// Stops serving and waits until the server task has ended (and dropped its handles on the store), as a
    /// daemon that has exited would have.
    #[allow(dead_code)] // not every test binary that includes this module stops a server
    pub async fn stop(self) {
        let _ = self.stop_signal.send(());
        let _ = self.task.await;
    }

    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}/api/processor/github{path}", self.addr)
    }
}
