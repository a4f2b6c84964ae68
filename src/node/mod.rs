//! The partial node: joins the network, negotiates edges, polls neighbours on a schedule, and feeds every
//! verified event through the durable inbox into the index.
//!
//! Read top to bottom:
//! * [`Node::run`] — the main loop: replay the inbox, then on every tick start a poll of each neighbour that is
//!   due (each its own task with its own timeout and backoff), subscribe to newly learned providers, and catch up.
//! * [`Node::poll_neighbour`] — one poll: verified events are made durable in the [`inbox`] before anything else.
//! * [`Node::process_inbox`] — the single consumer of the inbox: node/edge events update the [`graph`], GitHub
//!   events go to the index, and entries leave the inbox only after their effects are flushed.
//! * [`Node::catch_up`] — fetch what a provider already holds (manifests, then bundles in batches).
//!
//! Submodules: [`identity`] (our key, RID, profile), [`client`] (signed requests, verified responses),
//! [`graph`] (profiles and edges in sled), [`inbox`], [`edges`] (negotiation decisions), [`backoff`].

pub mod backoff;
pub mod client;
pub mod edges;
pub mod graph;
pub mod identity;
pub mod inbox;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{watch, Notify};
use tokio::task::JoinSet;

use crate::index::{ApplyOutcome, Index};
use crate::protocol::{
    Bundle, EdgeProfile, EnvelopeError, Event, EventType, NodeProfile, Rid, RidType,
};
use crate::telemetry::{
    self, BundlesFetched, DedupReason, EdgeProposed, EventDeduplicated, EventIndexed,
    EventRejected, HandshakeCompleted, InboxDepth, IndexSizes, Metrics, PollFailed, PollLog,
    PollOutcome, PollSucceeded, RejectReason,
};

use backoff::Backoff;
use client::{ClientError, KoiClient, Peer};
use edges::{decide_edge, EdgeDecision};
use graph::{Graph, GraphChange};
use identity::Identity;
use inbox::{Inbox, InboxEntry};

/// Most GitHub bundles indexed in one index transaction by an inbox pass (catch-up uses `poll.fetch_batch`).
pub const APPLY_BATCH: usize = 256;

/// What the node needs from the configuration.
#[derive(Debug, Clone)]
pub struct NodeSettings {
    /// First contact's base URL.
    pub first_contact_url: String,
    /// First contact's RID.
    pub first_contact_rid: Rid,
    /// RID types we subscribe to and index.
    pub interest: Vec<RidType>,
    /// Max events per poll (0 = all).
    pub poll_limit: u32,
    /// Per-request timeout.
    pub timeout: Duration,
    /// Poll interval (also the first backoff step).
    pub interval: Duration,
    /// Longest backoff.
    pub max_backoff: Duration,
    /// RIDs per fetch_bundles request.
    pub fetch_batch: usize,
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
}

/// Why handling one inbox entry did not finish; decides whether the entry stays.
enum Unhandled {
    /// Try again later (a neighbour was unreachable); the entry stays in the inbox.
    Retry(String),
    /// The event is bad (bad hash, bad profile); it is dropped.
    Reject(RejectReason, String),
}

impl Unhandled {
    fn malformed(why: impl Into<String>) -> Unhandled {
        Unhandled::Reject(RejectReason::Malformed, why.into())
    }
    fn bad_hash(why: impl std::fmt::Display) -> Unhandled {
        Unhandled::Reject(RejectReason::BadHash, why.to_string())
    }
}

/// What handling an inbox entry came to.
enum Handled {
    /// Its effects are written (or there were none).
    Done,
    /// A verified GitHub bundle, to be indexed with the others of this pass in one transaction.
    Index(Box<Bundle>),
}

/// What the node reports through: metrics (and logs, via the telemetry events) and the poll log.
#[derive(Clone, Debug)]
pub struct NodeTelemetry {
    /// The daemon's metrics, shared with `GET /metrics`.
    pub metrics: Metrics,
    /// The bounded poll log, shared with `GET /api/processor/github/polls`.
    pub poll_log: PollLog,
}

/// Per-neighbour poll state, in memory.
#[derive(Debug, Default)]
struct NeighbourState {
    backoff: Option<Backoff>,
    in_flight: bool,
    /// Consecutive `unknown_node` answers (first join: the coordinator may not have processed our handshake yet).
    unknown_node: u32,
}

/// A snapshot of a neighbour for the status API.
#[derive(Debug, Clone, serde::Serialize)]
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

/// The running node. Shared between its tasks behind an `Arc`.
pub struct Node {
    settings: NodeSettings,
    identity: Identity,
    client: KoiClient,
    db: sled::Db,
    graph: Graph,
    inbox: Inbox,
    index: Index,
    telemetry: NodeTelemetry,
    /// Backoff and in-flight flags per neighbour.
    neighbours: Mutex<HashMap<Rid, NeighbourState>>,
    /// Providers whose catch-up finished this run, and those being caught up right now.
    caught_up: Mutex<HashSet<Rid>>,
    catching_up: Mutex<HashSet<Rid>>,
    /// Bumped by [`Node::catch_up_again`]: a catch-up that started under an older epoch does not count as done.
    catch_up_epochs: Mutex<HashMap<Rid, u64>>,
    /// Set while a subscription pass runs, so slow passes never pile up.
    maintaining: std::sync::atomic::AtomicBool,
    /// Wakes the inbox consumer after a poll added events.
    inbox_ready: Notify,
    /// One inbox pass at a time: processing is sequential so events apply in arrival order.
    inbox_lock: tokio::sync::Mutex<()>,
}

impl Node {
    /// Assembles a node over an open database.
    pub fn new(
        settings: NodeSettings,
        identity: Identity,
        db: sled::Db,
        index: Index,
        telemetry: NodeTelemetry,
    ) -> Result<Arc<Node>, NodeError> {
        Ok(Arc::new(Node {
            client: KoiClient::new(identity.clone()),
            graph: Graph::open(&db)?,
            inbox: Inbox::open(&db)?,
            settings,
            identity,
            db,
            index,
            telemetry,
            neighbours: Mutex::new(HashMap::new()),
            caught_up: Mutex::new(HashSet::new()),
            catch_up_epochs: Mutex::new(HashMap::new()),
            catching_up: Mutex::new(HashSet::new()),
            maintaining: std::sync::atomic::AtomicBool::new(false),
            inbox_ready: Notify::new(),
            inbox_lock: tokio::sync::Mutex::new(()),
        }))
    }

    /// Our RID.
    pub fn rid(&self) -> &Rid {
        &self.identity.rid
    }

    /// Events waiting in the inbox.
    pub fn inbox_depth(&self) -> usize {
        self.inbox.len()
    }

    /// The network graph.
    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    /// Runs until `shutdown` turns true: replays the inbox, then polls on every tick from `ticks`.
    /// On shutdown, in-flight polls finish (each bounded by its timeout), the inbox is drained, and sled flushed.
    pub async fn run(
        self: Arc<Self>,
        mut ticks: tokio::sync::mpsc::Receiver<()>,
        mut shutdown: watch::Receiver<bool>,
    ) -> Result<(), NodeError> {
        // Crash recovery: whatever a previous run received but did not finish is handled first.
        let replay = self.inbox.len();
        if replay > 0 {
            tracing::info!(
                events = replay,
                "replaying events left in the inbox by the previous run"
            );
        }
        self.process_inbox().await?;
        self.report_sizes();

        let consumer = {
            let node = Arc::clone(&self);
            let mut shutdown = shutdown.clone();
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        _ = node.inbox_ready.notified() => {}
                        _ = shutdown.changed() => break,
                    }
                    if let Err(e) = node.process_inbox().await {
                        tracing::error!(error = %e, "inbox processing failed; will retry on the next poll");
                    }
                }
            })
        };

        let mut tasks = JoinSet::new();
        loop {
            tokio::select! {
                tick = ticks.recv() => if tick.is_none() { break },
                _ = shutdown.changed() => break,
            }
            while tasks.try_join_next().is_some() {}
            self.tick(&mut tasks);
        }

        tracing::info!("shutting down: finishing polls in flight and draining the inbox");
        while tasks.join_next().await.is_some() {}
        let _ = consumer.await;
        self.process_inbox().await?;
        self.db.flush_async().await?;
        let _ = shutdown.borrow_and_update();
        Ok(())
    }

    /// One scheduler beat: start due polls, subscriptions and catch-ups as independent tasks.
    fn tick(self: &Arc<Self>, tasks: &mut JoinSet<()>) {
        let now = Instant::now();
        for peer in self.peers() {
            let due = {
                let mut states = lock(&self.neighbours);
                let state = states.entry(peer.rid.clone()).or_default();
                let ready = state.backoff.as_ref().is_none_or(|b| b.ready(now));
                if ready && !state.in_flight {
                    state.in_flight = true;
                    true
                } else {
                    false
                }
            };
            if due {
                let node = Arc::clone(self);
                tasks.spawn(async move {
                    node.poll_neighbour(&peer).await;
                    if let Some(state) = lock(&node.neighbours).get_mut(&peer.rid) {
                        state.in_flight = false;
                    }
                });
            }
        }
        if !self
            .maintaining
            .swap(true, std::sync::atomic::Ordering::AcqRel)
        {
            let node = Arc::clone(self);
            tasks.spawn(async move {
                Arc::clone(&node).maintain_subscriptions().await;
                node.maintaining
                    .store(false, std::sync::atomic::Ordering::Release);
            });
        }
    }

    /// The neighbours to poll: the first contact, and every source of a POLL edge to us.
    fn peers(&self) -> Vec<Peer> {
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

    /// Counts a failed poll against `peer`'s backoff; returns how long until it is tried again.
    fn backoff_failed(&self, peer: &Peer) -> Duration {
        let mut states = lock(&self.neighbours);
        let state = states.entry(peer.rid.clone()).or_default();
        let backoff = state
            .backoff
            .get_or_insert_with(|| Backoff::new(self.settings.interval, self.settings.max_backoff));
        backoff.failed(Instant::now())
    }

    /// Records a poll attempt in the poll log. A failure here never affects polling: it is logged and dropped.
    fn record_attempt(&self, attempt: &telemetry::PollAttempt) {
        if let Err(e) = self.telemetry.poll_log.record(attempt) {
            tracing::error!(error = %e, "cannot write the poll log");
        }
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

    /// Polls one neighbour and makes what it returns durable.
    pub async fn poll_neighbour(&self, peer: &Peer) {
        let is_first_contact = peer.rid == self.settings.first_contact_rid;
        if is_first_contact
            && !self.graph.joined(&peer.rid).unwrap_or(false)
            && self.unknown_node_count(&peer.rid) == 0
        {
            // Not joined yet (or forgotten): introduce ourselves before polling.
            self.handshake(peer).await;
        }
        let started = Instant::now();
        match self
            .client
            .poll(peer, self.settings.poll_limit, self.settings.timeout)
            .await
        {
            Ok(verified) => {
                let count = verified.payload.len();
                let events = self.drop_bad_hashes(&peer.rid, verified.payload).await;
                match self.inbox.push_durable(&peer.rid, events, true).await {
                    Ok(_) => {}
                    Err(e) => {
                        // The neighbour has already forgotten these events; all we can do is say so loudly.
                        tracing::error!(neighbour = %peer.rid, events = count, error = %e, "could not store polled events");
                        return;
                    }
                }
                let recovered = {
                    let mut states = lock(&self.neighbours);
                    let state = states.entry(peer.rid.clone()).or_default();
                    state.unknown_node = 0;
                    state.backoff.take().is_some()
                };
                if recovered {
                    // It was unreachable: if it restarted meanwhile, the events it had queued for us (koi-net
                    // keeps poll queues in memory) are gone. Catching up again (one manifests request, then only
                    // what we lack) recovers them.
                    self.catch_up_again(&peer.rid);
                }
                if is_first_contact && !self.graph.joined(&peer.rid).unwrap_or(true) {
                    let _ = self.graph.set_joined(&peer.rid, true);
                    tracing::info!(neighbour = %peer.rid, "joined the network through the first contact");
                }
                let neighbour = peer.rid.to_string();
                let polled = PollSucceeded {
                    neighbour: &neighbour,
                    url: &peer.base_url,
                    events: count,
                    duration: started.elapsed(),
                };
                polled.emit(&self.telemetry.metrics);
                self.record_attempt(&polled.to_attempt());
                if count > 0 {
                    InboxDepth {
                        depth: self.inbox.len(),
                    }
                    .emit(&self.telemetry.metrics);
                    self.inbox_ready.notify_one();
                }
            }
            Err(error) => {
                let duration = started.elapsed();
                if error.is_unknown_node() {
                    let n = {
                        let mut states = lock(&self.neighbours);
                        let state = states.entry(peer.rid.clone()).or_default();
                        state.unknown_node += 1;
                        state.unknown_node
                    };
                    // It lost its state about us (a restart without state, or it forgot us after failed
                    // requests): whatever it received meanwhile was never queued for us, so catch up with it
                    // again once it knows us.
                    self.catch_up_again(&peer.rid);
                    // Right after a handshake the neighbour may simply not have processed it yet: retry the
                    // poll a few times, then introduce ourselves again.
                    if n % 4 == 0 {
                        if is_first_contact {
                            let _ = self.graph.set_joined(&peer.rid, false);
                            self.handshake(peer).await;
                        } else {
                            self.introduce_to_provider(peer).await;
                        }
                    }
                }
                let retry_in = self.backoff_failed(peer);
                let neighbour = peer.rid.to_string();
                let cause = error.to_string();
                let outcome = PollOutcome::from_label(error.outcome());
                let failed = PollFailed {
                    neighbour: &neighbour,
                    url: &peer.base_url,
                    cause: &cause,
                    outcome,
                    duration,
                    backoff: Some(retry_in),
                };
                failed.emit(&self.telemetry.metrics);
                self.record_attempt(&failed.to_attempt());
                if outcome == PollOutcome::BadSignature {
                    // The response's events are unverified, so unknowable: the response counts as one rejection.
                    let reason = match &error {
                        ClientError::Envelope {
                            source: EnvelopeError::WrongTarget { .. },
                            ..
                        } => RejectReason::WrongTarget,
                        _ => RejectReason::BadSignature,
                    };
                    EventRejected {
                        neighbour: &neighbour,
                        rid: "",
                        reason,
                        detail: &cause,
                    }
                    .emit(&self.telemetry.metrics);
                }
            }
        }
    }

    /// Checks each polled event's contents against its manifest's hash, on the blocking pool: in the poll task, so
    /// it runs beside the inbox consumer's index writes instead of before them. Events that fail are rejected here
    /// and never stored.
    async fn drop_bad_hashes(&self, source: &Rid, events: Vec<Event>) -> Vec<Event> {
        let checked = tokio::task::spawn_blocking(move || {
            events
                .into_iter()
                .map(|event| {
                    let check = event.verify_hash();
                    (event, check)
                })
                .collect::<Vec<_>>()
        })
        .await;
        let checked = match checked {
            Ok(checked) => checked,
            Err(e) => {
                // Only a panic inside the check gets here; the events are gone with it.
                tracing::error!(neighbour = %source, error = %e, "checking polled events' hashes failed");
                return Vec::new();
            }
        };
        let mut good = Vec::with_capacity(checked.len());
        for (event, check) in checked {
            match check {
                Ok(()) => good.push(event),
                Err(mismatch) => EventRejected {
                    neighbour: source.as_str(),
                    rid: event.rid.as_str(),
                    reason: RejectReason::BadHash,
                    detail: &mismatch.to_string(),
                }
                .emit(&self.telemetry.metrics),
            }
        }
        good
    }

    fn unknown_node_count(&self, rid: &Rid) -> u32 {
        lock(&self.neighbours)
            .get(rid)
            .map_or(0, |s| s.unknown_node)
    }

    /// Join handshake: `[FORGET(me), NEW(my profile)]` to the first contact.
    async fn handshake(&self, peer: &Peer) {
        let events = vec![
            Event::forget(self.rid().clone()),
            Event::from_bundle(EventType::New, self.client.profile_bundle()),
        ];
        match self
            .client
            .broadcast(peer, events, self.settings.timeout)
            .await
        {
            Ok(()) => HandshakeCompleted {
                neighbour: peer.rid.as_str(),
            }
            .emit(&self.telemetry.metrics),
            Err(e) => {
                tracing::warn!(neighbour = %peer.rid, url = %peer.base_url, cause = %e, "handshake failed")
            }
        }
    }

    /// Sends a provider our profile and our POLL edge proposal in one payload: it accepts a node it does not
    /// know yet when the payload carries that node's own profile (PROTOCOL.md, join step 7).
    async fn introduce_to_provider(&self, peer: &Peer) {
        let edge = self
            .graph
            .poll_sources(self.rid())
            .ok()
            .and_then(|edges| edges.into_iter().find(|e| e.source == peer.rid));
        let Some(edge) = edge else { return };
        let proposal = edges::poll_edge_proposal(self.rid(), &peer.rid, edge.rid_types.clone());
        let events = vec![
            Event::from_bundle(EventType::New, self.client.profile_bundle()),
            Event::from_bundle(EventType::New, proposal.to_bundle()),
        ];
        match self
            .client
            .broadcast(peer, events, self.settings.timeout)
            .await
        {
            Ok(()) => self.edge_proposed(&peer.rid, &proposal.rid_types),
            Err(e) => {
                tracing::warn!(provider = %peer.rid, url = %peer.base_url, cause = %e, "edge proposal failed")
            }
        }
    }

    fn edge_proposed(&self, source: &Rid, rid_types: &[RidType]) {
        let rid_types: Vec<String> = rid_types.iter().map(|t| t.to_string()).collect();
        EdgeProposed {
            source: source.as_str(),
            target: self.rid().as_str(),
            rid_types: &rid_types,
        }
        .emit(&self.telemetry.metrics);
    }

    /// Makes the next subscription pass catch up with `provider` again, even if a catch-up is running right now.
    fn catch_up_again(&self, provider: &Rid) {
        lock(&self.caught_up).remove(provider);
        *lock(&self.catch_up_epochs)
            .entry(provider.clone())
            .or_default() += 1;
    }

    fn catch_up_epoch(&self, provider: &Rid) -> u64 {
        lock(&self.catch_up_epochs)
            .get(provider)
            .copied()
            .unwrap_or(0)
    }

    /// Proposes POLL edges to providers we learned of, and starts catch-ups not yet done this run.
    async fn maintain_subscriptions(self: Arc<Self>) {
        let nodes = match self.graph.nodes() {
            Ok(nodes) => nodes,
            Err(e) => return tracing::error!(error = %e, "cannot read the network graph"),
        };
        let sources: HashSet<Rid> = self
            .graph
            .poll_sources(self.rid())
            .unwrap_or_default()
            .into_iter()
            .map(|e| e.source)
            .collect();
        // Subscribe to the first contact's node and edge events once joined, so we hear of new providers.
        let first_contact = self.settings.first_contact_rid.clone();
        let joined = self.graph.joined(&first_contact).unwrap_or(false);
        if joined && !sources.contains(&first_contact) {
            let proposal = edges::poll_edge_proposal(self.rid(), &first_contact, network_types());
            let peer = self.peer_for(&first_contact);
            let events = vec![Event::from_bundle(EventType::New, proposal.to_bundle())];
            match self
                .client
                .broadcast(&peer, events, self.settings.timeout)
                .await
            {
                Ok(()) => {
                    self.edge_proposed(&first_contact, &proposal.rid_types);
                    if let Err(e) = self.graph.upsert_edge(&proposal.to_bundle()) {
                        tracing::error!(error = %e, "cannot store edge proposal");
                    }
                }
                Err(e) => {
                    tracing::warn!(neighbour = %first_contact, cause = %e, "edge proposal failed; will retry")
                }
            }
        }
        for (rid, profile) in &nodes {
            let wanted = edges::wanted_types(self.rid(), rid, profile, &self.settings.interest);
            if wanted.is_empty() || sources.contains(rid) {
                continue;
            }
            // Record our proposal first, so the provider is polled (and re-introduced to) from now on.
            let proposal = edges::poll_edge_proposal(self.rid(), rid, wanted);
            if let Err(e) = self.graph.upsert_edge(&proposal.to_bundle()) {
                tracing::error!(error = %e, "cannot store edge proposal");
                continue;
            }
            self.introduce_to_provider(&self.peer_for(rid)).await;
        }
        let mut to_catch_up: Vec<Rid> = sources.into_iter().collect();
        if joined && !to_catch_up.contains(&first_contact) {
            to_catch_up.push(first_contact);
        }
        for source in to_catch_up {
            if lock(&self.caught_up).contains(&source)
                || !lock(&self.catching_up).insert(source.clone())
            {
                continue;
            }
            let epoch = self.catch_up_epoch(&source);
            let node = Arc::clone(&self);
            let ok = node.catch_up(&source).await;
            lock(&self.catching_up).remove(&source);
            if ok && self.catch_up_epoch(&source) == epoch {
                lock(&self.caught_up).insert(source);
            }
        }
    }

    /// Fetches what `provider` holds of our types: manifests first (one request), then bundles of what is new
    /// or changed, in batches. Returns whether it completed.
    pub async fn catch_up(&self, provider: &Rid) -> bool {
        let peer = self.peer_for(provider);
        let profile: Option<NodeProfile> = self.graph.node(provider).ok().flatten();
        let mut types: Vec<RidType> = match &profile {
            Some(p) => self
                .settings
                .interest
                .iter()
                .filter(|t| p.provides.state.contains(t))
                .cloned()
                .collect(),
            None => return false,
        };
        if provider == &self.settings.first_contact_rid {
            // Node discovery: the profiles the first contact already holds, e.g. sensors that joined before us.
            types.extend(
                network_types()
                    .into_iter()
                    .filter(|t| t.as_str() == RidType::NODE),
            );
        }
        if types.is_empty() || peer.base_url.is_empty() {
            return true;
        }
        let manifests = match self
            .client
            .fetch_manifests(&peer, types.clone(), vec![], self.settings.timeout)
            .await
        {
            Ok(m) => m.manifests,
            Err(e) => {
                tracing::warn!(provider = %provider, url = %peer.base_url, cause = %e, "catch-up: fetching manifests failed; will retry");
                if e.is_unknown_node() {
                    self.introduce_to_provider(&peer).await;
                }
                return false;
            }
        };
        let mut wanted = Vec::new();
        for manifest in &manifests {
            if manifest.rid.is_type(RidType::NODE) {
                if &manifest.rid != self.rid() {
                    wanted.push(manifest.rid.clone());
                }
                continue;
            }
            match self.index.cached_manifest(&manifest.rid) {
                Ok(Some(held))
                    if held.sha256_hash == manifest.sha256_hash
                        || held.timestamp > manifest.timestamp => {}
                Ok(_) => wanted.push(manifest.rid.clone()),
                Err(e) => {
                    tracing::error!(error = %e, "index read failed during catch-up");
                    return false;
                }
            }
        }
        let mut indexed = 0;
        for batch in wanted.chunks(self.settings.fetch_batch) {
            let bundles = match self
                .client
                .fetch_bundles(&peer, batch.to_vec(), self.settings.timeout)
                .await
            {
                Ok(b) => {
                    BundlesFetched {
                        neighbour: provider.as_str(),
                        count: b.bundles.len(),
                    }
                    .emit(&self.telemetry.metrics);
                    b.bundles
                }
                Err(e) => {
                    tracing::warn!(provider = %provider, url = %peer.base_url, cause = %e, "catch-up: fetching bundles failed; will retry");
                    return false;
                }
            };
            let mut github = Vec::with_capacity(bundles.len());
            for bundle in bundles {
                let checked = if bundle.rid().is_type(RidType::NODE) {
                    self.apply_node_bundle(&bundle)
                } else {
                    bundle.verify_hash().map_err(Unhandled::bad_hash)
                };
                match checked {
                    Ok(()) if !bundle.rid().is_type(RidType::NODE) => github.push(bundle),
                    Ok(()) => {}
                    Err(Unhandled::Reject(reason, detail)) => EventRejected {
                        neighbour: provider.as_str(),
                        rid: bundle.rid().as_str(),
                        reason,
                        detail: &detail,
                    }
                    .emit(&self.telemetry.metrics),
                    Err(Unhandled::Retry(why)) => {
                        tracing::warn!(provider = %provider, reason = %why, "catch-up interrupted; will retry");
                        return false;
                    }
                }
            }
            match self.index_bundles(&github) {
                Ok(outcomes) => {
                    for (bundle, outcome) in github.iter().zip(outcomes) {
                        match outcome {
                            Ok(true) => indexed += 1,
                            Ok(false) => {}
                            Err(detail) => EventRejected {
                                neighbour: provider.as_str(),
                                rid: bundle.rid().as_str(),
                                reason: RejectReason::Malformed,
                                detail: &detail,
                            }
                            .emit(&self.telemetry.metrics),
                        }
                    }
                }
                Err(e) => {
                    tracing::error!(provider = %provider, error = %e, "catch-up: index write failed; will retry");
                    return false;
                }
            }
        }
        if let Err(e) = self.db.flush_async().await {
            tracing::error!(error = %e, "flush after catch-up failed");
            return false;
        }
        tracing::info!(provider = %provider, held = manifests.len(), fetched = wanted.len(), indexed, "caught up");
        self.report_sizes();
        true
    }

    /// Handles every inbox entry once; removes those whose effects are durable (or which are rejected).
    ///
    /// GitHub bundles are indexed in batches of up to [`APPLY_BATCH`], one index transaction each (a transaction
    /// costs about as much as the writes of one event). Order is kept: the pending batch is written before any entry
    /// that reads or removes from the index (a FORGET, or a manifest-only event checked against what is held).
    pub async fn process_inbox(&self) -> Result<(), NodeError> {
        let _pass = self.inbox_lock.lock().await;
        let mut done = Vec::new();
        let mut pending: Vec<(u64, InboxEntry, Bundle)> = Vec::new();
        let entries: Vec<_> = self.inbox.entries().collect();
        for entry in entries {
            let (key, entry) = match entry {
                Ok(pair) => pair,
                Err(inbox::InboxError::Corrupt { key, source }) => {
                    tracing::error!(entry = key, error = %source, "dropping unreadable inbox entry");
                    done.push(key);
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            if !pending.is_empty() && entry.event.contents.is_none() {
                self.index_pending(&mut pending, &mut done);
            }
            match self.handle(&entry).await {
                Ok(Handled::Done) => done.push(key),
                Ok(Handled::Index(bundle)) => {
                    pending.push((key, entry, *bundle));
                    if pending.len() >= APPLY_BATCH {
                        self.index_pending(&mut pending, &mut done);
                    }
                }
                Err(Unhandled::Reject(reason, detail)) => {
                    EventRejected {
                        neighbour: entry.source.as_str(),
                        rid: entry.event.rid.as_str(),
                        reason,
                        detail: &detail,
                    }
                    .emit(&self.telemetry.metrics);
                    done.push(key);
                }
                Err(Unhandled::Retry(reason)) => {
                    tracing::warn!(neighbour = %entry.source, rid = %entry.event.rid, reason = %reason, "event kept in the inbox for retry");
                }
            }
        }
        self.index_pending(&mut pending, &mut done);
        if !done.is_empty() {
            // Effects first, then forget the entries: a crash in between replays them, harmlessly.
            self.db.flush_async().await?;
            self.inbox.remove(&done)?;
            self.report_sizes();
        }
        Ok(())
    }

    /// Indexes the pending bundles in one transaction; their inbox keys join `done`, unless the write failed, in
    /// which case they stay in the inbox for the next pass.
    fn index_pending(&self, pending: &mut Vec<(u64, InboxEntry, Bundle)>, done: &mut Vec<u64>) {
        if pending.is_empty() {
            return;
        }
        let (entries, bundles): (Vec<(u64, InboxEntry)>, Vec<Bundle>) = std::mem::take(pending)
            .into_iter()
            .map(|(key, entry, bundle)| ((key, entry), bundle))
            .unzip();
        match self.index_bundles(&bundles) {
            Ok(outcomes) => {
                for (((key, entry), bundle), outcome) in
                    entries.into_iter().zip(&bundles).zip(outcomes)
                {
                    if let Err(detail) = outcome {
                        EventRejected {
                            neighbour: entry.source.as_str(),
                            rid: bundle.rid().as_str(),
                            reason: RejectReason::Malformed,
                            detail: &detail,
                        }
                        .emit(&self.telemetry.metrics);
                    }
                    done.push(key);
                }
            }
            Err(e) => tracing::error!(
                events = bundles.len(), error = %e,
                "index write failed; the events stay in the inbox for the next pass"
            ),
        }
    }

    /// Applies one received event, except that a GitHub bundle is verified and handed back to be indexed in a batch.
    async fn handle(&self, entry: &InboxEntry) -> Result<Handled, Unhandled> {
        let event = &entry.event;
        let rid = &event.rid;
        let is_node = rid.is_type(RidType::NODE);
        let is_edge = rid.is_type(RidType::EDGE);
        let is_interest = self
            .settings
            .interest
            .iter()
            .any(|t| rid.is_type(t.as_str()));
        if !(is_node || is_edge || is_interest) {
            return Ok(Handled::Done);
        }
        if event.event_type == EventType::Forget {
            if is_interest {
                self.index
                    .forget(rid)
                    .map_err(|e| Unhandled::Retry(e.to_string()))?;
                tracing::debug!(rid = %rid, "forgotten");
            } else if rid != self.rid() {
                self.graph
                    .remove(rid)
                    .map_err(|e| Unhandled::Retry(e.to_string()))?;
            }
            return Ok(Handled::Done);
        }
        let carried = event.bundle();
        let hash_checked = carried.is_some() && entry.hash_verified;
        let bundle = match carried {
            Some(bundle) => bundle,
            None => {
                let Some(manifest) = &event.manifest else {
                    return Err(Unhandled::malformed(
                        "NEW/UPDATE event with neither manifest nor contents",
                    ));
                };
                if is_interest {
                    if let Ok(Some(held)) = self.index.cached_manifest(rid) {
                        if held.sha256_hash == manifest.sha256_hash
                            || held.timestamp > manifest.timestamp
                        {
                            // Already held (or a newer version is): no need to fetch it.
                            let reason = if held.sha256_hash == manifest.sha256_hash {
                                DedupReason::Unchanged
                            } else {
                                DedupReason::Stale
                            };
                            EventDeduplicated {
                                rid: rid.as_str(),
                                reason,
                            }
                            .emit(&self.telemetry.metrics);
                            return Ok(Handled::Done);
                        }
                    }
                }
                self.fetch_bundle(rid, &entry.source).await?
            }
        };
        if bundle.rid() != rid {
            return Err(Unhandled::malformed(format!(
                "event for {rid} carries a bundle for {}",
                bundle.rid()
            )));
        }
        if is_node {
            self.apply_node_bundle(&bundle).map(|()| Handled::Done)
        } else if is_edge {
            self.apply_edge_bundle(&bundle, &entry.source)
                .await
                .map(|()| Handled::Done)
        } else {
            if !hash_checked {
                bundle.verify_hash().map_err(Unhandled::bad_hash)?;
            }
            Ok(Handled::Index(Box::new(bundle)))
        }
    }

    /// Fetches `rid`'s bundle from the event's source first, then any other provider of its state.
    async fn fetch_bundle(&self, rid: &Rid, source: &Rid) -> Result<Bundle, Unhandled> {
        let mut candidates = vec![source.clone()];
        for (node, profile) in self.graph.nodes().unwrap_or_default() {
            if &node != source
                && profile
                    .provides
                    .state
                    .iter()
                    .any(|t| rid.is_type(t.as_str()))
            {
                candidates.push(node);
            }
        }
        let mut last_error = String::from("no node provides its state");
        for candidate in candidates {
            let peer = self.peer_for(&candidate);
            if peer.base_url.is_empty() {
                continue;
            }
            match self
                .client
                .fetch_bundles(&peer, vec![rid.clone()], self.settings.timeout)
                .await
            {
                Ok(payload) => {
                    BundlesFetched {
                        neighbour: candidate.as_str(),
                        count: payload.bundles.len(),
                    }
                    .emit(&self.telemetry.metrics);
                    if let Some(bundle) = payload.bundles.into_iter().find(|b| b.rid() == rid) {
                        return Ok(bundle);
                    }
                    last_error = format!("{candidate} does not hold it");
                }
                Err(e) => last_error = e.to_string(),
            }
        }
        Err(Unhandled::Retry(format!(
            "could not fetch bundle of {rid}: {last_error}"
        )))
    }

    /// Indexes hash-verified GitHub bundles in one transaction and reports each outcome. Per bundle: `Ok(true)` if
    /// it changed the index, `Ok(false)` if it was a duplicate (or not an indexed type), `Err(why)` if its RID is
    /// malformed. The outer error is a store failure: nothing was written.
    fn index_bundles(
        &self,
        bundles: &[Bundle],
    ) -> Result<Vec<Result<bool, String>>, crate::index::IndexError> {
        let outcomes = self.index.apply_bundles(bundles)?;
        let metrics = &self.telemetry.metrics;
        Ok(bundles
            .iter()
            .zip(outcomes)
            .map(|(bundle, outcome)| {
                let rid = bundle.rid().as_str();
                let dedup = |reason| EventDeduplicated { rid, reason }.emit(metrics);
                match outcome {
                    ApplyOutcome::Indexed { .. } => {
                        EventIndexed { rid }.emit(metrics);
                        Ok(true)
                    }
                    ApplyOutcome::Unchanged => {
                        dedup(DedupReason::Unchanged);
                        Ok(false)
                    }
                    ApplyOutcome::Stale => {
                        dedup(DedupReason::Stale);
                        Ok(false)
                    }
                    ApplyOutcome::Ignored => Ok(false),
                    ApplyOutcome::Invalid(why) => Err(why),
                }
            })
            .collect())
    }

    fn apply_node_bundle(&self, bundle: &Bundle) -> Result<(), Unhandled> {
        bundle.verify_hash().map_err(Unhandled::bad_hash)?;
        if bundle.rid() == self.rid() {
            return Ok(());
        }
        let profile: NodeProfile = bundle
            .contents_as()
            .map_err(|e| Unhandled::malformed(format!("bad node profile: {e}")))?;
        // A profile must carry the key its RID names, or it could redirect us to an impostor.
        let key_ok = match (
            crate::protocol::NodeRid::from_rid(bundle.rid()),
            &profile.public_key,
        ) {
            (Ok(node), Some(key)) => node.matches_public_key(key),
            _ => false,
        };
        if !key_ok {
            return Err(Unhandled::Reject(
                RejectReason::BadSignature,
                "node profile's public key does not hash to its RID".into(),
            ));
        }
        match self.graph.upsert_node(bundle) {
            Ok(GraphChange::Updated(p)) => {
                tracing::info!(node = %bundle.rid(), base_url = ?p.base_url, provides = ?p.provides.event, "learned node profile");
                Ok(())
            }
            Ok(GraphChange::Unchanged) => Ok(()),
            Err(e) => Err(Unhandled::Retry(e.to_string())),
        }
    }

    async fn apply_edge_bundle(&self, bundle: &Bundle, source: &Rid) -> Result<(), Unhandled> {
        bundle.verify_hash().map_err(Unhandled::bad_hash)?;
        let edge: EdgeProfile = bundle
            .contents_as()
            .map_err(|e| Unhandled::malformed(format!("bad edge profile: {e}")))?;
        if edge.rid().rid() != bundle.rid() {
            return Err(Unhandled::malformed(
                "edge RID does not match its source and target",
            ));
        }
        if &edge.source != self.rid() && &edge.target != self.rid() {
            // Edges between other nodes: nothing for a partial node to do.
            return Ok(());
        }
        match decide_edge(self.rid(), &edge) {
            EdgeDecision::Approve => {
                let approved = edges::approved(&edge);
                let peer = self.peer_for(&edge.target);
                let peer = if peer.base_url.is_empty() {
                    self.peer_for(source)
                } else {
                    peer
                };
                self.client
                    .broadcast(
                        &peer,
                        vec![Event::from_bundle(EventType::Update, approved.to_bundle())],
                        self.settings.timeout,
                    )
                    .await
                    .map_err(|e| Unhandled::Retry(format!("approving edge failed: {e}")))?;
                tracing::info!(edge = %bundle.rid(), target = %edge.target, "approved edge proposed by neighbour");
                self.graph
                    .upsert_edge(&approved.to_bundle())
                    .map_err(|e| Unhandled::Retry(e.to_string()))?;
            }
            EdgeDecision::Subscribed { source } => {
                self.graph
                    .upsert_edge(bundle)
                    .map_err(|e| Unhandled::Retry(e.to_string()))?;
                tracing::info!(provider = %source, rid_types = ?edge.rid_types, "POLL edge approved; polling it");
                // The provider queues events for us only from its approval on; what it received between our
                // proposal and then (a catch-up may already have run) is fetched by catching up once more.
                self.catch_up_again(&source);
            }
            EdgeDecision::Ignore => {}
        }
        Ok(())
    }

    /// Neighbour states for the status API.
    pub fn neighbour_status(&self) -> Vec<NeighbourStatus> {
        let states = lock(&self.neighbours);
        let caught_up = lock(&self.caught_up);
        self.peers()
            .into_iter()
            .map(|p| NeighbourStatus {
                failures: states
                    .get(&p.rid)
                    .and_then(|s| s.backoff.as_ref())
                    .map_or(0, |b| b.failures()),
                caught_up: caught_up.contains(&p.rid),
                base_url: (!p.base_url.is_empty()).then_some(p.base_url),
                rid: p.rid.to_string(),
            })
            .collect()
    }
}

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

/// Opens a sled database, retrying briefly: sled's background flusher may still hold the file lock for a moment
/// after the previous handle in this process was dropped (seen in tests that reopen a store).
pub fn open_db_retrying(path: &std::path::Path) -> Result<sled::Db, sled::Error> {
    let mut attempt = 0;
    loop {
        match sled::open(path) {
            Ok(db) => return Ok(db),
            Err(_) if attempt < 50 => {
                attempt += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => return Err(e),
        }
    }
}
