//! The partial node: joins the network, negotiates edges, polls neighbours, and feeds every verified event through
//! the durable inbox into the index.
//!
//! How an event flows (each step is one file):
//!
//! 1. [`scheduler`] — on every tick, start a poll of each neighbour that is due and not backed off, and a
//!    subscription pass.
//! 2. [`poller`] — one poll: the response is verified over its raw bytes, then each event in it is read on its
//!    own ([`crate::protocol::ResponseItems`]); bad items are rejected one by one (metrics, log, dead letters),
//!    good ones are hash-checked off the runtime and made durable in the [`inbox`]. When the inbox holds
//!    `pipeline.max_buffered` events, polls wait: memory never grows with a backlog.
//! 3. [`catch_up`] — what a provider already holds: its manifests (read item by item), then the bundles we lack,
//!    in batches, each pushed into the same inbox (one path), waiting for room like polls.
//! 4. [`pipeline`] — the single writer, on a thread of its own: it drains the inbox in bounded chunks, applies
//!    node and edge events to the [`graph`], indexes GitHub bundles in one transaction per chunk (one bundle that
//!    cannot be indexed is dead-lettered without failing the others), flushes, and only then removes the entries.
//!    Events that carried only a manifest are fetched by a bounded background task and re-queued whole.
//! 5. [`membership`] — the handshake, edge proposals and approvals, profiles learned.
//!
//! Shutdown is one [`CancellationToken`]: polls and catch-ups in flight are cancelled (a response already
//! received is still made durable), the writer commits the chunk in hand and stops, what is not indexed stays in
//! the inbox for the next start, and no network call is made after it fires.
//!
//! Other submodules: [`identity`] (our key, RID, profile), [`client`] (signed requests, verified responses),
//! [`edges`] (negotiation decisions), [`backoff`], [`segment_log`] (the append-only files the inbox is kept in).

mod background;
pub mod backoff;
pub mod catch_up;
pub mod client;
pub mod edges;
pub mod graph;
pub mod identity;
pub mod inbox;
pub mod membership;
mod peers;
pub mod pipeline;
pub mod poller;
mod rejections;
pub mod scheduler;
pub mod segment_log;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::index::{DeadLetters, Index, Rejection};
use crate::protocol::{Rid, RidType};
use crate::telemetry::{self, InboxDepth, IndexSizes, Metrics, PollLog};

use background::Background;
use backoff::Backoff;
use client::{KoiClient, Peer};
use graph::Graph;
use identity::Identity;
use inbox::Inbox;
use peers::{PeerState, Peers};
use rejections::{bad_item_rejection, rejection_of, Rejections};

/// What the node needs from the configuration.
#[derive(Debug, Clone)]
pub struct NodeSettings {
    /// First contact's base URL.
    pub first_contact_url: String,
    /// First contact's RID.
    pub first_contact_rid: Rid,
    /// RID types we subscribe to and index.
    pub interest: Vec<RidType>,
    /// Max events per poll (0 = all; the default is bounded).
    pub poll_limit: u32,
    /// Per-request timeout.
    pub timeout: Duration,
    /// Poll interval (also the first backoff step).
    pub interval: Duration,
    /// Longest backoff.
    pub max_backoff: Duration,
    /// RIDs per fetch_bundles request.
    pub fetch_batch: usize,
    /// Timeout of each catch-up request.
    pub catch_up_timeout: Duration,
    /// Largest response body read from a neighbour.
    pub max_response: usize,
    /// Most events held in the inbox before polling and catch-up wait.
    pub max_buffered: usize,
}

/// A runtime failure of the node's own storage (network failures are handled and retried, not returned).
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The inbox failed.
    #[error(transparent)]
    Inbox(#[from] inbox::InboxError),
    /// The graph failed.
    #[error(transparent)]
    Graph(#[from] graph::GraphError),
    /// The index failed.
    #[error(transparent)]
    Index(#[from] crate::index::IndexError),
    /// sled failed.
    #[error("storage: {0}")]
    Storage(#[from] sled::Error),
    /// The writer thread could not be started or joined.
    #[error("the pipeline writer thread: {0}")]
    Writer(String),
}

/// What the node reports through: metrics (and logs, via the telemetry events) and the poll log.
#[derive(Clone, Debug)]
pub struct NodeTelemetry {
    /// The daemon's metrics, shared with `GET /metrics`.
    pub metrics: Metrics,
    /// The bounded poll log, shared with `GET /api/processor/github/polls`.
    pub poll_log: PollLog,
}

/// A snapshot of a neighbour for the status API.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NeighbourStatus {
    /// Its RID.
    pub rid: String,
    /// Its base URL, when known.
    pub base_url: Option<String>,
    /// Consecutive failed polls.
    pub failures: u32,
    /// Whether its catch-up has completed since start.
    pub caught_up: bool,
}

/// The running node. Shared between its tasks (and the writer thread) behind an `Arc`.
pub struct Node {
    settings: NodeSettings,
    identity: Identity,
    client: KoiClient,
    db: sled::Db,
    graph: Graph,
    inbox: Inbox,
    index: Index,
    /// Reports and keeps what is refused (dead letters).
    rejections: Rejections,
    telemetry: NodeTelemetry,
    /// What the node keeps in memory about each neighbour.
    peers: Peers,
    /// Set while a subscription pass runs, so slow passes never pile up.
    maintaining: std::sync::atomic::AtomicBool,
    /// A kick came while a subscription pass ran: the pass runs once more when it ends.
    maintain_again: std::sync::atomic::AtomicBool,
    /// Wakes the scheduler before its next tick: a step that unblocks the next one runs it at once.
    kick: Notify,
    /// Inbox entries a background task works on (a bundle fetch, an edge approval): the writer leaves them alone
    /// meanwhile.
    background: Background,
    /// Wakes the writer: something was pushed into the inbox.
    wake_writer: pipeline::Wake,
    /// Wakes pollers and catch-ups waiting for room in the inbox.
    room: Notify,
    /// Fires on shutdown.
    cancel: CancellationToken,
}

impl Node {
    /// Assembles a node over an open database.
    pub fn new(
        settings: NodeSettings,
        identity: Identity,
        db: sled::Db,
        inbox: Inbox,
        index: Index,
        dead_letters: DeadLetters,
        telemetry: NodeTelemetry,
    ) -> Result<Arc<Node>, NodeError> {
        Ok(Arc::new(Node {
            client: KoiClient::new(identity.clone(), settings.max_response),
            graph: Graph::open(&db)?,
            inbox,
            settings,
            identity,
            db,
            index,
            rejections: Rejections::new(dead_letters, telemetry.metrics.clone()),
            telemetry,
            peers: Peers::default(),
            maintaining: std::sync::atomic::AtomicBool::new(false),
            maintain_again: std::sync::atomic::AtomicBool::new(false),
            kick: Notify::new(),
            background: Background::default(),
            wake_writer: pipeline::Wake::new(),
            room: Notify::new(),
            cancel: CancellationToken::new(),
        }))
    }

    /// Runs the scheduler's next beat now rather than at the next tick: a step has unblocked the next (joined,
    /// a provider learned, an edge approved, a poll that returned a full page).
    pub(super) fn kick(&self) {
        self.kick.notify_one();
    }

    /// Our RID.
    pub fn rid(&self) -> &Rid {
        &self.identity.rid
    }

    /// Events waiting in the inbox (a counter: no scan).
    pub fn inbox_depth(&self) -> usize {
        self.inbox.len()
    }

    /// The network graph.
    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    /// The token that stops the node: cancel it (or let [`Node::run`]'s caller do so) to shut down.
    pub fn cancellation(&self) -> CancellationToken {
        self.cancel.clone()
    }

    /// Runs until the node's cancellation token fires: starts the writer thread (which first replays what a
    /// previous run left in the inbox), then on every tick from `ticks` starts due polls and subscription passes.
    /// On shutdown, polls and catch-ups in flight are cancelled, the writer commits the chunk in hand and stops,
    /// and sled is flushed. Returns how many events were left in the inbox for the next start.
    pub async fn run(
        self: Arc<Self>,
        mut ticks: tokio::sync::mpsc::Receiver<()>,
    ) -> Result<usize, NodeError> {
        let replay = self.inbox.len();
        if replay > 0 {
            tracing::info!(
                events = replay,
                "replaying events left in the inbox by the previous run"
            );
        }
        let writer = pipeline::spawn_writer(Arc::clone(&self))?;
        self.report_sizes();

        let mut tasks = tokio::task::JoinSet::new();
        // At start, with or without a known graph: poll and catch up at once, not at the first tick.
        self.kick();
        let mut last_beat = tokio::time::Instant::now() - KICK_GAP;
        loop {
            tokio::select! {
                tick = ticks.recv() => if tick.is_none() { break },
                _ = self.kick.notified() => {
                    // Kicks run the next step at once, but at most one beat per KICK_GAP: a neighbour that always
                    // has more cannot spin the node.
                    let wait = tokio::time::sleep_until(last_beat + KICK_GAP);
                    tokio::select! {
                        _ = wait => {}
                        _ = self.cancel.cancelled() => break,
                    }
                }
                _ = self.cancel.cancelled() => break,
            }
            last_beat = tokio::time::Instant::now();
            while tasks.try_join_next().is_some() {}
            self.tick(&mut tasks);
        }
        self.cancel.cancel();
        self.wake_writer.notify(); // so it sees the cancellation now, not after its idle wait
        tracing::info!(
            "shutting down: cancelling polls and catch-ups, committing the batch in hand"
        );
        // Every task watches the token: polls drop their request (a response already read is still stored), so
        // this join is short.
        while tasks.join_next().await.is_some() {}
        let joined = tokio::task::spawn_blocking(move || writer.join())
            .await
            .map_err(|e| NodeError::Writer(e.to_string()))?;
        joined.map_err(|_| NodeError::Writer("the writer thread panicked".into()))?;
        self.db.flush_async().await?;
        // Entries were synced when pushed; this makes the last removals durable, so the next start does not replay
        // what was indexed (a replay would be harmless, so a failure here is only reported).
        let inbox = self.inbox.clone();
        let synced = match tokio::task::spawn_blocking(move || inbox.flush()).await {
            Ok(result) => result.map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        if let Err(e) = synced {
            tracing::warn!(error = %e, "syncing the inbox at shutdown failed; its last entries may be replayed at the next start");
        }
        let left = self.inbox.len();
        Ok(left)
    }

    /// The neighbours to poll: the first contact, and every source of a POLL edge to us. Reads the graph.
    fn neighbours(&self) -> Vec<Peer> {
        let mut peers = vec![self.peer_for(&self.settings.first_contact_rid)];
        match self.graph.poll_sources(self.rid()) {
            Ok(edges) => {
                for edge in edges {
                    if peers.iter().all(|p| p.rid != edge.source) {
                        let peer = self.peer_for(&edge.source);
                        if !peer.base_url.is_empty() {
                            peers.push(peer);
                        }
                    }
                }
            }
            Err(e) => tracing::error!(error = %e, "cannot read the network graph"),
        }
        peers
    }

    /// Where and with which key to reach `rid`, from the graph (and the config for the first contact).
    fn peer_for(&self, rid: &Rid) -> Peer {
        let profile = self.graph.node(rid).ok().flatten();
        let base_url = if rid == &self.settings.first_contact_rid {
            Some(self.settings.first_contact_url.clone())
        } else {
            profile.as_ref().and_then(|p| p.base_url.clone())
        };
        Peer {
            rid: rid.clone(),
            base_url: base_url.unwrap_or_default(),
            public_key: profile.and_then(|p| p.public_key),
        }
    }

    /// Runs `f` on the neighbour's state (created if new). The lock is held for `f` only.
    fn with_peer<T>(&self, rid: &Rid, f: impl FnOnce(&mut PeerState) -> T) -> T {
        self.peers.with(rid, f)
    }

    /// Sets the inbox and index gauges.
    fn report_sizes(&self) {
        let metrics = &self.telemetry.metrics;
        InboxDepth {
            depth: self.inbox.len(),
        }
        .emit(metrics);
        match self.index.counts() {
            Ok(counts) => IndexSizes {
                events: counts.events,
                repositories: counts.repositories,
            }
            .emit(metrics),
            Err(e) => tracing::error!(error = %e, "cannot read the index counters"),
        }
    }

    /// Records a poll attempt in the poll log. A failure here never affects polling: it is logged and dropped.
    fn record_attempt(&self, attempt: &telemetry::PollAttempt) {
        if let Err(e) = self.telemetry.poll_log.record(attempt) {
            tracing::error!(error = %e, "cannot write the poll log");
        }
    }

    /// The one place rejections are reported ([`Rejections::record`]). Writes sled: call it off the runtime (the
    /// writer thread, or a blocking task).
    fn reject(&self, rejections: Vec<Rejection>) {
        self.rejections.record(rejections);
    }

    /// [`Node::reject`] from async code: on the blocking pool.
    async fn reject_async(self: &Arc<Self>, rejections: Vec<Rejection>) {
        if rejections.is_empty() {
            return;
        }
        let node = Arc::clone(self);
        let _ = tokio::task::spawn_blocking(move || node.reject(rejections)).await;
    }

    /// Waits until the inbox has room for more (backpressure), or shutdown. Returns false on shutdown.
    async fn wait_for_room(&self) -> bool {
        loop {
            let room = self.room.notified();
            if self.cancel.is_cancelled() {
                return false;
            }
            if self.inbox.len() < self.settings.max_buffered {
                return true;
            }
            tokio::select! {
                _ = room => {}
                _ = self.cancel.cancelled() => return false,
                // A safety net: the writer notifies after every chunk, but never wait on one notification alone.
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    }

    /// Neighbour states for the status API. Reads the graph first, then takes the state lock briefly.
    pub fn neighbour_status(&self) -> Vec<NeighbourStatus> {
        self.peers.status(self.neighbours())
    }
}

/// Shortest time between two scheduler beats caused by kicks (ticks are not limited: they come on the schedule).
const KICK_GAP: Duration = Duration::from_millis(20);

/// The RID types a node subscribes to at its first contact to follow the network itself.
fn network_types() -> Vec<RidType> {
    [RidType::NODE, RidType::EDGE]
        .iter()
        .filter_map(|t| RidType::parse(t).ok())
        .collect()
}

/// Locks a std mutex, recovering from poisoning (a panicked task must not wedge the node).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A node over a store in a temp dir, for the unit tests of the files that carry the flow. Its first contact is a
/// node that does not exist: nothing here reaches the network unless a test asks it to.
#[cfg(test)]
pub(crate) mod testing {
    use std::sync::Arc;
    use std::time::Duration;

    use super::identity::Identity;
    use super::inbox::Inbox;
    use super::{Node, NodeSettings, NodeTelemetry};
    use crate::index::{DeadLetters, Index};
    use crate::protocol::{NodeKey, RidType};
    use crate::telemetry::{Metrics, PollLog};

    /// The node and what must live as long as it.
    pub(crate) struct TestNode {
        pub(crate) node: Arc<Node>,
        pub(crate) dead_letters: DeadLetters,
        /// Holds the store's lock.
        _store: crate::storage::Store,
        _dir: tempfile::TempDir,
    }

    /// A push event's bundle, `orn:github.event:octo/hello:<id>`, told apart from others by `n`.
    pub(crate) fn push(id: &str, n: i64) -> crate::protocol::Bundle {
        let mut contents = crate::protocol::Contents::new();
        contents.insert("webhook_event_type".into(), "push".into());
        contents.insert("n".into(), n.into());
        crate::protocol::Bundle::generate(
            crate::protocol::Rid::parse(&format!("orn:github.event:octo/hello:{id}")).unwrap(),
            contents,
        )
    }

    /// A neighbour's RID for events' sources.
    pub(crate) fn sensor() -> crate::protocol::Rid {
        crate::protocol::Rid::parse(&format!("orn:koi-net.node:sensor+{}", "0".repeat(64))).unwrap()
    }

    pub(crate) fn node() -> TestNode {
        let dir = tempfile::tempdir().unwrap();
        let identity = Identity::load_or_create(dir.path(), "unit", "pw").unwrap();
        let store = crate::storage::open(
            &dir.path().join("db"),
            crate::storage::StoreOptions::default(),
        )
        .unwrap();
        let db = store.db.clone();
        let index = Index::open(&db).unwrap();
        let dead_letters = DeadLetters::open(&db, 100).unwrap();
        let first_contact = NodeKey::generate()
            .node_rid("coordinator")
            .unwrap()
            .rid()
            .clone();
        let settings = NodeSettings {
            first_contact_url: "http://127.0.0.1:9/koi-net".into(),
            first_contact_rid: first_contact,
            interest: vec![RidType::parse(RidType::GITHUB_EVENT).unwrap()],
            poll_limit: 100,
            timeout: Duration::from_secs(1),
            interval: Duration::from_millis(100),
            max_backoff: Duration::from_millis(200),
            fetch_batch: 10,
            catch_up_timeout: Duration::from_secs(1),
            max_response: 1024 * 1024,
            max_buffered: 1000,
        };
        let inbox = Inbox::open(&store.inbox_dir(), &db).unwrap();
        let telemetry = NodeTelemetry {
            metrics: Metrics::new(),
            poll_log: PollLog::open(&db).unwrap(),
        };
        let node = Node::new(
            settings,
            identity,
            db,
            inbox,
            index,
            dead_letters.clone(),
            telemetry,
        )
        .unwrap();
        TestNode {
            node,
            dead_letters,
            _store: store,
            _dir: dir,
        }
    }
}
