//! The node against a scripted KOI-net full node written with our own protocol module, on 127.0.0.1. The real
//! Python peers are exercised in `tests/interop_network.rs`; this fake exists to misbehave on purpose (forged
//! and mis-targeted signatures, bad hashes), which the real ones never do.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use koi_github_indexer::index::Index;
use koi_github_indexer::node::identity::Identity;
use koi_github_indexer::node::{edges, Node, NodeSettings, NodeTelemetry};
use koi_github_indexer::protocol::{
    sign_envelope, Bundle, BundlesPayload, Contents, Event, EventType, EventsPayload,
    ManifestsPayload, NodeKey, NodeProfile, NodeProvides, NodeType, ReceivedEnvelope,
    RequestPayload, ResponsePayload, Rid, RidType, RidsPayload,
};
use koi_github_indexer::telemetry::{Metrics, PollLog};
use tokio::sync::{mpsc, watch};
use warp::Filter;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Misbehaviour {
    None,
    /// Poll responses signed with a key that is not the one its RID names.
    ForgedSignature,
    /// Poll responses addressed to another node.
    WrongTarget,
}

struct FakeState {
    key: NodeKey,
    rid: Rid,
    profile: Bundle,
    /// Events queued for the next poll.
    queue: Vec<Event>,
    /// Bundles served by fetch endpoints.
    state: HashMap<Rid, Bundle>,
    misbehaviour: Misbehaviour,
    /// Every request payload received, by path.
    received: Vec<(String, RequestPayload)>,
    /// Whether the profile was already sent in a poll.
    introduced: bool,
}

#[derive(Clone)]
struct FakePeer {
    state: Arc<Mutex<FakeState>>,
    addr: SocketAddr,
}

impl FakePeer {
    async fn start() -> FakePeer {
        let key = NodeKey::generate();
        let rid = key.node_rid("fake_sensor").unwrap().rid().clone();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let event_type = RidType::parse(RidType::GITHUB_EVENT).unwrap();
        let profile = NodeProfile {
            context: "orn:koi-net.context:koi-net.node".into(),
            base_url: Some(format!("http://{addr}/koi-net")),
            node_type: NodeType::Full,
            provides: NodeProvides {
                event: vec![event_type.clone()],
                state: vec![event_type],
            },
            public_key: Some(key.public_key().to_base64()),
        };
        let profile = Bundle::generate(rid.clone(), profile.to_contents());
        let state = Arc::new(Mutex::new(FakeState {
            key,
            rid,
            profile,
            queue: Vec::new(),
            state: HashMap::new(),
            misbehaviour: Misbehaviour::None,
            received: Vec::new(),
            introduced: false,
        }));
        let shared = Arc::clone(&state);
        let route = warp::post()
            .and(warp::path("koi-net"))
            .and(warp::path::tail())
            .and(warp::body::bytes())
            .map(move |tail: warp::path::Tail, body: bytes::Bytes| {
                let mut s = shared.lock().unwrap();
                let env = ReceivedEnvelope::parse(&body).unwrap();
                let requester = env.source_node().clone();
                let request: RequestPayload = env.payload().unwrap();
                s.received.push((tail.as_str().to_owned(), request.clone()));
                let response = match request {
                    RequestPayload::EventsPayload(_) => {
                        return warp::reply::with_status(
                            "null".to_owned(),
                            warp::http::StatusCode::OK,
                        )
                    }
                    RequestPayload::PollEvents(_) => {
                        let mut events = Vec::new();
                        if !s.introduced {
                            s.introduced = true;
                            events.push(Event::from_bundle(EventType::New, s.profile.clone()));
                        }
                        events.append(&mut s.queue);
                        ResponsePayload::EventsPayload(EventsPayload { events })
                    }
                    RequestPayload::FetchRids(_) => ResponsePayload::RidsPayload(RidsPayload {
                        rids: s.state.keys().cloned().collect(),
                    }),
                    RequestPayload::FetchManifests(_) => {
                        ResponsePayload::ManifestsPayload(ManifestsPayload {
                            manifests: s.state.values().map(|b| b.manifest.clone()).collect(),
                            not_found: vec![],
                        })
                    }
                    RequestPayload::FetchBundles(f) => {
                        ResponsePayload::BundlesPayload(BundlesPayload {
                            bundles: f
                                .rids
                                .iter()
                                .filter_map(|r| s.state.get(r).cloned())
                                .collect(),
                            not_found: vec![],
                            deferred: vec![],
                        })
                    }
                };
                let is_poll = matches!(response, ResponsePayload::EventsPayload(_));
                let (key, target) = match (s.misbehaviour, is_poll) {
                    (Misbehaviour::ForgedSignature, true) => (NodeKey::generate(), requester),
                    (Misbehaviour::WrongTarget, true) => (s.key.clone(), s.rid.clone()),
                    _ => (s.key.clone(), requester),
                };
                let body = sign_envelope(&response, &s.rid, &target, &key).unwrap();
                warp::reply::with_status(
                    String::from_utf8(body).unwrap(),
                    warp::http::StatusCode::OK,
                )
            });
        tokio::spawn(warp::serve(route).run(addr));
        tokio::time::sleep(Duration::from_millis(50)).await;
        FakePeer { state, addr }
    }

    fn rid(&self) -> Rid {
        self.state.lock().unwrap().rid.clone()
    }
    fn url(&self) -> String {
        format!("http://{}/koi-net", self.addr)
    }
    fn queue(&self, event: Event) {
        self.state.lock().unwrap().queue.push(event);
    }
    fn hold(&self, bundle: Bundle) {
        self.state
            .lock()
            .unwrap()
            .state
            .insert(bundle.rid().clone(), bundle);
    }
    fn misbehave(&self, m: Misbehaviour) {
        self.state.lock().unwrap().misbehaviour = m;
    }
    fn paths(&self) -> Vec<String> {
        self.state
            .lock()
            .unwrap()
            .received
            .iter()
            .map(|(p, _)| p.clone())
            .collect()
    }
}

fn github_bundle(id: &str, n: i64) -> Bundle {
    let mut contents = Contents::new();
    contents.insert("webhook_event_type".into(), "push".into());
    contents.insert("n".into(), n.into());
    Bundle::generate(
        Rid::parse(&format!("orn:github.event:octo-org/hello-world:{id}")).unwrap(),
        contents,
    )
}

struct Harness {
    _dir: tempfile::TempDir,
    index: Index,
    metrics: Metrics,
    node: Arc<Node>,
    ticks: mpsc::Sender<()>,
    shutdown: watch::Sender<bool>,
    task: tokio::task::JoinHandle<Result<(), koi_github_indexer::node::NodeError>>,
}

impl Harness {
    async fn start(peer: &FakePeer) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let identity = Identity::load_or_create(dir.path(), "indexer", "pw").unwrap();
        let db = sled::open(dir.path().join("db")).unwrap();
        let index = Index::open(&db).unwrap();
        let settings = NodeSettings {
            first_contact_url: peer.url(),
            first_contact_rid: peer.rid(),
            interest: vec![RidType::parse(RidType::GITHUB_EVENT).unwrap()],
            poll_limit: 0,
            timeout: Duration::from_secs(5),
            interval: Duration::from_millis(100),
            max_backoff: Duration::from_millis(200),
            fetch_batch: 2,
        };
        let metrics = Metrics::new();
        let telemetry = NodeTelemetry {
            metrics: metrics.clone(),
            poll_log: PollLog::open(&db).unwrap(),
        };
        let node = Node::new(settings, identity, db, index.clone(), telemetry).unwrap();
        let (ticks, rx) = mpsc::channel(1);
        let (shutdown, srx) = watch::channel(false);
        let task = tokio::spawn(Arc::clone(&node).run(rx, srx));
        Harness {
            _dir: dir,
            index,
            metrics,
            node,
            ticks,
            shutdown,
            task,
        }
    }

    /// Ticks until `cond` holds (bounded: panics after ~15 s with `what`).
    async fn until(&self, what: &str, cond: impl Fn(&Harness) -> bool) {
        for _ in 0..150 {
            if cond(self) {
                return;
            }
            let _ = self.ticks.try_send(());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("timed out waiting until {what}");
    }

    fn has(&self, id: &str) -> bool {
        let rid = Rid::parse(&format!("orn:github.event:octo-org/hello-world:{id}")).unwrap();
        self.index.cached_manifest(&rid).unwrap().is_some()
    }

    /// The sum of a metric's series in `/metrics` text, e.g. `koi_indexer_events_indexed_total`; 0 if absent.
    fn metric(&self, series: &str) -> f64 {
        self.metrics
            .encode()
            .lines()
            .filter(|l| {
                l.strip_prefix(series)
                    .is_some_and(|rest| rest.starts_with([' ', '{']))
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// The sum over all series of a metric whose labels contain `label` (e.g. `reason="bad_hash"`).
    fn metric_with(&self, name: &str, label: &str) -> f64 {
        self.metrics
            .encode()
            .lines()
            .filter(|l| l.starts_with(&format!("{name}{{")) && l.contains(label))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    async fn stop(self) {
        self.shutdown.send(true).unwrap();
        self.task.await.unwrap().unwrap();
    }
}

#[tokio::test]
async fn joins_subscribes_catches_up_and_indexes_polled_events() {
    let peer = FakePeer::start().await;
    peer.hold(github_bundle("held-1", 1));
    peer.hold(github_bundle("held-2", 2));
    peer.hold(github_bundle("held-3", 3));
    let h = Harness::start(&peer).await;

    // Catch-up: the three bundles the provider held before we joined, fetched in batches of two.
    h.until("held bundles are indexed", |h| {
        h.has("held-1") && h.has("held-2") && h.has("held-3")
    })
    .await;
    let paths = peer.paths();
    assert_eq!(
        paths.first().map(String::as_str),
        Some("events/broadcast"),
        "handshake first: {paths:?}"
    );
    assert_eq!(
        paths.iter().filter(|p| *p == "bundles/fetch").count(),
        2,
        "{paths:?}"
    );

    // A polled event with contents, one with a manifest only (fetched), and a FORGET.
    peer.queue(Event::from_bundle(
        EventType::New,
        github_bundle("live-1", 10),
    ));
    let manifest_only = github_bundle("live-2", 11);
    peer.hold(manifest_only.clone());
    peer.queue(Event {
        contents: None,
        ..Event::from_bundle(EventType::New, manifest_only)
    });
    peer.queue(Event::forget(github_bundle("held-1", 1).rid().clone()));
    h.until("live events are indexed and held-1 forgotten", |h| {
        h.has("live-1") && h.has("live-2") && !h.has("held-1")
    })
    .await;
    assert_eq!(h.node.inbox_depth(), 0);
    // live-1 and live-2 indexed after the three held ones; held-1 was forgotten.
    assert_eq!(h.metric("koi_indexer_events_indexed_total"), 5.0);
    assert_eq!(h.metric("koi_indexer_index_events"), 4.0);
    assert!(h.metric_with("koi_indexer_bundles_fetched_total", "neighbour=") >= 4.0);
    assert!(h.metric_with("koi_indexer_polls_total", "outcome=\"ok\"") >= 1.0);
    h.stop().await;
}

#[tokio::test]
async fn bad_hash_bundles_are_rejected_and_nothing_else_is_lost() {
    let peer = FakePeer::start().await;
    let h = Harness::start(&peer).await;
    h.until("joined", |_| {
        peer.paths().iter().any(|p| p == "events/poll")
    })
    .await;
    let mut tampered = github_bundle("tampered", 1);
    tampered.contents.insert("n".into(), 999.into());
    peer.queue(Event::from_bundle(EventType::New, tampered));
    peer.queue(Event::from_bundle(EventType::New, github_bundle("good", 2)));
    h.until("the good event is indexed", |h| h.has("good"))
        .await;
    assert!(!h.has("tampered"));
    assert_eq!(h.node.inbox_depth(), 0, "rejected events leave the inbox");
    assert_eq!(
        h.metric_with("koi_indexer_events_rejected_total", "reason=\"bad_hash\""),
        1.0
    );
    h.stop().await;
}

async fn misbehaving_peer_indexes_nothing(m: Misbehaviour) {
    let peer = FakePeer::start().await;
    let h = Harness::start(&peer).await;
    h.until("first poll answered", |_| {
        peer.paths().iter().filter(|p| *p == "events/poll").count() >= 1
    })
    .await;
    // From now on every poll response is forged or mis-targeted.
    peer.misbehave(m);
    peer.queue(Event::from_bundle(
        EventType::New,
        github_bundle("forged", 1),
    ));
    h.until("several more polls", |_| {
        peer.paths().iter().filter(|p| *p == "events/poll").count() >= 4
    })
    .await;
    assert!(
        !h.has("forged"),
        "{m:?}: a response that fails verification must never be indexed"
    );
    let failures: u32 = h.node.neighbour_status().iter().map(|n| n.failures).sum();
    assert!(failures >= 1, "{m:?}: the neighbour is backed off");
    let reason = match m {
        Misbehaviour::WrongTarget => "reason=\"wrong_target\"",
        _ => "reason=\"bad_signature\"",
    };
    assert!(
        h.metric_with("koi_indexer_events_rejected_total", reason) >= 1.0,
        "{m:?}: rejected responses are counted under {reason}:\n{}",
        h.metrics.encode()
    );
    assert!(h.metric_with("koi_indexer_polls_total", "outcome=\"bad_signature\"") >= 1.0);
    assert_eq!(h.metric("koi_indexer_events_indexed_total"), 0.0);
    h.stop().await;
}

#[tokio::test]
async fn forged_responses_are_dropped() {
    misbehaving_peer_indexes_nothing(Misbehaviour::ForgedSignature).await;
}

#[tokio::test]
async fn mis_targeted_responses_are_dropped() {
    misbehaving_peer_indexes_nothing(Misbehaviour::WrongTarget).await;
}

/// A provider queues events for us only once it has approved our POLL edge. Whatever it received between our
/// proposal (when the first catch-up runs) and its approval reaches us only by catching up again on the approval.
#[tokio::test]
async fn an_edge_approval_triggers_another_catch_up() {
    let peer = FakePeer::start().await;
    peer.hold(github_bundle("held-1", 1));
    let h = Harness::start(&peer).await;
    h.until("the first catch-up is done", |h| h.has("held-1"))
        .await;
    h.until("the provider counts as caught up", |h| {
        h.node.neighbour_status().iter().all(|n| n.caught_up)
    })
    .await;

    // Received by the provider before it approved our edge: never queued for us, only held.
    peer.hold(github_bundle("before-approval", 2));
    let approved = edges::approved(&edges::poll_edge_proposal(
        h.node.rid(),
        &peer.rid(),
        vec![RidType::parse(RidType::GITHUB_EVENT).unwrap()],
    ));
    peer.queue(Event::from_bundle(EventType::Update, approved.to_bundle()));
    h.until("the event held before the approval is indexed", |h| {
        h.has("before-approval")
    })
    .await;
    h.stop().await;
}
