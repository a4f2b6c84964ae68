//! The node against a scripted KOI-net full node written with our own protocol module, on 127.0.0.1. The real
//! Python peers are exercised in `tests/interop_network.rs`; this fake exists to misbehave on purpose (forged
//! and mis-targeted signatures, bad hashes), which the real ones never do.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use koi_github_indexer::index::{DeadLetters, Index};
use koi_github_indexer::node::identity::Identity;
use koi_github_indexer::node::{edges, Node, NodeSettings, NodeTelemetry};
use koi_github_indexer::protocol::{
    Bundle, Contents, Event, EventType, NodeKey, NodeProfile, NodeProvides, NodeType,
    ReceivedEnvelope, RequestPayload, Rid, RidType,
};
use koi_github_indexer::telemetry::{Metrics, PollLog};
use tokio::sync::mpsc;
use warp::Filter;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Misbehaviour {
    None,
    /// Poll responses signed with a key that is not the one its RID names.
    ForgedSignature,
    /// Poll responses addressed to another node.
    WrongTarget,
    /// The next polls answer `unknown_node`, as a koi-net node does until it has processed our handshake.
    UnknownNode(usize),
}

struct FakeState {
    key: NodeKey,
    rid: Rid,
    profile: Bundle,
    /// Event JSON texts queued for the next poll (raw, so they may be anything).
    queue: Vec<String>,
    /// Held state served by the fetch endpoints: RID text → (manifest JSON text, bundle JSON text).
    state: BTreeMap<String, (String, String)>,
    misbehaviour: Misbehaviour,
    /// Every request payload received, by path.
    received: Vec<(String, RequestPayload)>,
    /// Whether the profile was already sent in a poll.
    introduced: bool,
    /// How long to wait before answering a broadcast (`events/broadcast`).
    broadcast_delay: Duration,
    /// Broadcasts received (counted on arrival, before any delay) and answered so far.
    broadcasts_arrived: usize,
    broadcasts_answered: usize,
}

fn json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap()
}

/// A signed response body around a payload given as raw text, exactly as a KOI-net node signs it.
fn signed_body(payload: &str, source: &Rid, target: &Rid, key: &NodeKey) -> String {
    let unsigned = format!(
        r#"{{"payload":{payload},"source_node":{},"target_node":{}}}"#,
        json(&source.as_str()),
        json(&target.as_str())
    );
    let signature = key.sign(unsigned.as_bytes());
    format!(
        r#"{{"payload":{payload},"source_node":{},"target_node":{},"signature":{}}}"#,
        json(&source.as_str()),
        json(&target.as_str()),
        json(&signature)
    )
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
            state: BTreeMap::new(),
            misbehaviour: Misbehaviour::None,
            received: Vec::new(),
            introduced: false,
            broadcast_delay: Duration::ZERO,
            broadcasts_arrived: 0,
            broadcasts_answered: 0,
        }));
        let shared = Arc::clone(&state);
        let delays = Arc::clone(&state);
        let respond = move |tail: warp::path::Tail, body: bytes::Bytes| {
            let mut s = shared.lock().unwrap();
            let env = ReceivedEnvelope::parse(&body).unwrap();
            let requester = env.source_node().clone();
            let request: RequestPayload = env.payload().unwrap();
            s.received.push((tail.as_str().to_owned(), request.clone()));
            let payload = match request {
                RequestPayload::EventsPayload(_) => {
                    return warp::reply::with_status("null".to_owned(), warp::http::StatusCode::OK)
                }
                RequestPayload::PollEvents(_) => {
                    if let Misbehaviour::UnknownNode(left) = s.misbehaviour {
                        s.misbehaviour = if left > 1 {
                            Misbehaviour::UnknownNode(left - 1)
                        } else {
                            Misbehaviour::None
                        };
                        return warp::reply::with_status(
                            r#"{"type":"error_response","error":"unknown_node"}"#.to_owned(),
                            warp::http::StatusCode::BAD_REQUEST,
                        );
                    }
                    let mut events = Vec::new();
                    if !s.introduced {
                        s.introduced = true;
                        events.push(json(&Event::from_bundle(EventType::New, s.profile.clone())));
                    }
                    events.append(&mut s.queue);
                    format!(
                        r#"{{"type":"events_payload","events":[{}]}}"#,
                        events.join(",")
                    )
                }
                RequestPayload::FetchRids(_) => format!(
                    r#"{{"type":"rids_payload","rids":[{}]}}"#,
                    s.state.keys().map(json).collect::<Vec<_>>().join(",")
                ),
                RequestPayload::FetchManifests(_) => format!(
                    r#"{{"type":"manifests_payload","manifests":[{}],"not_found":[]}}"#,
                    s.state
                        .values()
                        .map(|(m, _)| m.clone())
                        .collect::<Vec<_>>()
                        .join(",")
                ),
                RequestPayload::FetchBundles(f) => format!(
                    r#"{{"type":"bundles_payload","bundles":[{}],"not_found":[],"deferred":[]}}"#,
                    f.rids
                        .iter()
                        .filter_map(|r| s.state.get(r.as_str()).map(|(_, b)| b.clone()))
                        .collect::<Vec<_>>()
                        .join(",")
                ),
            };
            let is_poll = tail.as_str() == "events/poll";
            let (key, target) = match (s.misbehaviour, is_poll) {
                (Misbehaviour::ForgedSignature, true) => (NodeKey::generate(), requester),
                (Misbehaviour::WrongTarget, true) => (s.key.clone(), s.rid.clone()),
                _ => (s.key.clone(), requester),
            };
            let body = signed_body(&payload, &s.rid, &target, &key);
            warp::reply::with_status(body, warp::http::StatusCode::OK)
        };
        let route = warp::post()
            .and(warp::path("koi-net"))
            .and(warp::path::tail())
            .and(warp::body::bytes())
            .then(move |tail: warp::path::Tail, body: bytes::Bytes| {
                let respond = respond.clone();
                let delays = Arc::clone(&delays);
                async move {
                    let broadcast = tail.as_str() == "events/broadcast";
                    if broadcast {
                        let delay = {
                            let mut s = delays.lock().unwrap();
                            s.broadcasts_arrived += 1;
                            s.broadcast_delay
                        };
                        tokio::time::sleep(delay).await;
                    }
                    let reply = respond(tail, body);
                    if broadcast {
                        delays.lock().unwrap().broadcasts_answered += 1;
                    }
                    reply
                }
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
        self.queue_raw(json(&event));
    }
    /// Queues an event given as raw JSON text (anything at all).
    fn queue_raw(&self, event: String) {
        self.state.lock().unwrap().queue.push(event);
    }
    fn hold(&self, bundle: Bundle) {
        self.hold_raw(bundle.rid().as_str(), json(&bundle.manifest), json(&bundle));
    }
    /// Holds a manifest and a bundle given as raw JSON text, served by catch-up requests.
    fn hold_raw(&self, rid: &str, manifest: String, bundle: String) {
        self.state
            .lock()
            .unwrap()
            .state
            .insert(rid.to_owned(), (manifest, bundle));
    }
    fn delay_broadcasts(&self, delay: Duration) {
        self.state.lock().unwrap().broadcast_delay = delay;
    }
    /// (broadcasts received, broadcasts answered).
    fn broadcasts(&self) -> (usize, usize) {
        let s = self.state.lock().unwrap();
        (s.broadcasts_arrived, s.broadcasts_answered)
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
    _store: koi_github_indexer::storage::Store,
    index: Index,
    dead_letters: DeadLetters,
    poll_log: PollLog,
    metrics: Metrics,
    node: Arc<Node>,
    ticks: mpsc::Sender<()>,
    task: tokio::task::JoinHandle<Result<usize, koi_github_indexer::node::NodeError>>,
}

impl Harness {
    async fn start(peer: &FakePeer) -> Harness {
        Harness::start_with(peer, |_| {}).await
    }

    async fn start_with(peer: &FakePeer, adjust: impl FnOnce(&mut NodeSettings)) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let identity = Identity::load_or_create(dir.path(), "indexer", "pw").unwrap();
        let store = koi_github_indexer::storage::open(
            &dir.path().join("db"),
            koi_github_indexer::storage::StoreOptions::default(),
        )
        .unwrap();
        let db = store.db.clone();
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
            catch_up_timeout: Duration::from_secs(5),
            max_response: 64 * 1024 * 1024,
            max_buffered: 10_000,
        };
        let mut settings = settings;
        adjust(&mut settings);
        let metrics = Metrics::new();
        let poll_log = PollLog::open(&db).unwrap();
        let telemetry = NodeTelemetry {
            metrics: metrics.clone(),
            poll_log: poll_log.clone(),
        };
        let dead_letters = DeadLetters::open(&db, 1000).unwrap();
        let inbox = koi_github_indexer::node::inbox::Inbox::open(&store.inbox_dir(), &db).unwrap();
        let node = Node::new(
            settings,
            identity,
            db,
            inbox,
            index.clone(),
            dead_letters.clone(),
            telemetry,
        )
        .unwrap();
        let (ticks, rx) = mpsc::channel(1);
        let task = tokio::spawn(Arc::clone(&node).run(rx));
        Harness {
            _dir: dir,
            _store: store,
            index,
            dead_letters,
            poll_log,
            metrics,
            node,
            ticks,
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
        self.node.cancellation().cancel();
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
    let polls = || peer.paths().iter().filter(|p| *p == "events/poll").count();
    peer.misbehave(m);
    let before = polls();
    peer.queue(Event::from_bundle(
        EventType::New,
        github_bundle("forged", 1),
    ));
    h.until("several more polls", |_| polls() >= before + 3)
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
    let outcome = reason.replace("reason=", "outcome=");
    assert!(h.metric_with("koi_indexer_polls_total", &outcome) >= 1.0);
    assert_eq!(h.metric("koi_indexer_events_indexed_total"), 0.0);
    let letters = h.dead_letters.page(0, 10, false).unwrap();
    assert!(
        letters.iter().any(|l| reason.contains(&l.reason)),
        "{m:?}: the refused response is in /rejected: {letters:?}"
    );
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

/// One kind of bad item, as raw JSON, and what must become of it.
struct Pill {
    name: &'static str,
    /// The event (for polls) or the bundle (for catch-up), as raw JSON.
    raw: String,
    /// `Some(reason)`: rejected under that reason; `None`: indexed anyway (with what can be read).
    rejected: Option<&'static str>,
}

fn hashed(rid: &str, time: &str, contents: serde_json::Value) -> (String, String) {
    let serde_json::Value::Object(contents) = contents else {
        unreachable!()
    };
    let hash = koi_github_indexer::protocol::knowledge::hash_contents(&contents);
    let manifest = format!(
        r#"{{"rid":{},"timestamp":{},"sha256_hash":"{hash}"}}"#,
        json(&rid),
        json(&time)
    );
    let bundle = format!(
        r#"{{"manifest":{manifest},"contents":{}}}"#,
        json(&contents)
    );
    (manifest, bundle)
}

fn push_contents(time: &str) -> serde_json::Value {
    serde_json::json!({"webhook_event_type": "push", "repository": {"full_name": "octo-org/hello-world"},
        "payload": {"head_commit": {"id": "7fd1a60b01f91b314f59955a4e4d4e80d8edf11d", "timestamp": time,
            "message": "fix"}, "sender": {"login": "octocat"}}})
}

/// Poison pills, each for the RID `orn:github.event:octo-org/hello-world:<prefix>-<name>`. Returns for each its
/// name, manifest JSON, bundle JSON and expected fate. `as_event` wraps bundles as NEW events.
fn pills(prefix: &str) -> Vec<(Pill, String)> {
    let rid = |name: &str| format!("orn:github.event:octo-org/hello-world:{prefix}-{name}");
    let ok_time = "2026-11-24T12:00:00Z";
    let deep = format!("{}1{}", "[".repeat(500), "]".repeat(500));
    let mut out = Vec::new();
    let mut add = |name: &'static str, manifest: String, bundle: String, rejected| {
        out.push((
            Pill {
                name,
                raw: bundle,
                rejected,
            },
            manifest,
        ))
    };
    for (name, time, manifest_time) in [
        ("year-0", "0000-01-01T00:00:00+01:00", ok_time),
        ("year-10000", "9999-12-31T23:30:00-01:00", ok_time),
        ("bad-event-time", "last tuesday", ok_time),
        ("manifest-year-10000", "nope", "9999-12-31T23:30:00-01:00"),
    ] {
        let (m, b) = hashed(&rid(name), manifest_time, push_contents(time));
        add(name, m, b, None);
    }
    let mut other_repo = push_contents(ok_time);
    other_repo["repository"] =
        serde_json::json!({"full_name": "evil/elsewhere", "html_url": "https://evil.example"});
    let (m, b) = hashed(&rid("other-repo"), ok_time, other_repo);
    add("other-repo", m, b, None);
    let mut big = push_contents(ok_time);
    big["payload"]["head_commit"]["message"] = "x".repeat(5_000_000).into();
    let (m, b) = hashed(&rid("five-mb"), ok_time, big);
    add("five-mb", m, b, None);
    // Items that cannot be read: each rejected alone.
    let (m, _) = hashed(&rid("list"), ok_time, serde_json::json!({}));
    add(
        "list",
        m.clone(),
        format!(r#"{{"manifest":{m},"contents":[1,2,3]}}"#),
        Some("malformed"),
    );
    let (m, _) = hashed(&rid("string"), ok_time, serde_json::json!({}));
    add(
        "string",
        m.clone(),
        format!(r#"{{"manifest":{m},"contents":"text"}}"#),
        Some("malformed"),
    );
    let (m, _) = hashed(&rid("deep"), ok_time, serde_json::json!({}));
    add(
        "deep",
        m.clone(),
        format!(r#"{{"manifest":{m},"contents":{{"x":{deep}}}}}"#),
        Some("malformed"),
    );
    let (m, _) = hashed(&rid("missing-field"), ok_time, serde_json::json!({}));
    let m = m.replace(r#","sha256_hash""#, r#","hash""#);
    add(
        "missing-field",
        m.clone(),
        format!(r#"{{"manifest":{m},"contents":{{}}}}"#),
        Some("malformed"),
    );
    let m = format!(
        r#"{{"rid":"orn:github.event:octo-org/hello-world:{prefix} space","timestamp":"{ok_time}","sha256_hash":"00"}}"#
    );
    add(
        "space",
        m.clone(),
        format!(r#"{{"manifest":{m},"contents":{{}}}}"#),
        Some("bad_rid"),
    );
    let m = format!(
        r#"{{"rid":"orn:github.event:octo-org/hello-world:{prefix}\u0000nul","timestamp":"{ok_time}","sha256_hash":"00"}}"#
    );
    add(
        "nul",
        m.clone(),
        format!(r#"{{"manifest":{m},"contents":{{}}}}"#),
        Some("bad_rid"),
    );
    out
}

/// A bundle's JSON as a NEW event's JSON.
fn as_event(bundle: &str) -> String {
    let value: Result<serde_json::Value, _> = serde_json::from_str(bundle);
    match value {
        Ok(serde_json::Value::Object(mut b)) => {
            let mut e = serde_json::Map::new();
            let rid = b["manifest"]["rid"].clone();
            e.insert("rid".into(), rid);
            e.insert("event_type".into(), "NEW".into());
            e.insert("manifest".into(), b.remove("manifest").unwrap());
            e.insert("contents".into(), b.remove("contents").unwrap());
            json(&e)
        }
        // Too deep for serde_json to rebuild: splice the text instead.
        _ => {
            let manifest_end = bundle.find(r#","contents":"#).unwrap();
            let manifest = &bundle[r#"{"manifest":"#.len()..manifest_end];
            let contents = &bundle[manifest_end + r#","contents":"#.len()..bundle.len() - 1];
            let rid_start = manifest.find(r#""rid":"#).unwrap() + 6;
            let rid_end = rid_start + manifest[rid_start + 1..].find('"').unwrap() + 2;
            format!(
                r#"{{"rid":{},"event_type":"NEW","manifest":{manifest},"contents":{contents}}}"#,
                &manifest[rid_start..rid_end]
            )
        }
    }
}

fn assert_pills(h: &Harness, prefix: &str, pills: &[(Pill, String)]) {
    let letters = h.dead_letters.page(0, 1000, false).unwrap();
    for (pill, _) in pills {
        let id = format!("{prefix}-{}", pill.name);
        match pill.rejected {
            None => assert!(h.has(&id), "{id} is indexed with what can be read"),
            Some(reason) => {
                assert!(!h.has(&id), "{id} is not indexed");
                let wanted = match pill.name {
                    "space" => format!("{prefix} space"),
                    "nul" => format!("{prefix}\\u{{0}}nul"),
                    _ => id.clone(),
                };
                assert!(
                    letters
                        .iter()
                        .any(|l| l.rid.ends_with(&wanted) && l.reason == reason),
                    "{id} is in /rejected as {reason}: {letters:#?}"
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_pills_in_one_poll_response_cost_only_themselves() {
    let peer = FakePeer::start().await;
    let h = Harness::start(&peer).await;
    h.until("joined", |_| {
        peer.paths().iter().any(|p| p == "events/poll")
    })
    .await;
    let pills = pills("poll");
    peer.queue(Event::from_bundle(
        EventType::New,
        github_bundle("good-before", 1),
    ));
    for (pill, _) in &pills {
        peer.queue_raw(as_event(&pill.raw));
    }
    // contents null: a manifest-only event whose bundle no one holds: retried, then dead-lettered.
    let (m, _) = hashed(
        "orn:github.event:octo-org/hello-world:poll-null",
        "2026-11-24T12:00:00Z",
        serde_json::json!({"a": 1}),
    );
    peer.queue_raw(format!(
        r#"{{"rid":"orn:github.event:octo-org/hello-world:poll-null","event_type":"NEW","manifest":{m},"contents":null}}"#
    ));
    peer.queue(Event::from_bundle(
        EventType::New,
        github_bundle("good-after", 2),
    ));
    h.until("the good events in the same response are indexed", |h| {
        h.has("good-before") && h.has("good-after")
    })
    .await;
    assert_pills(&h, "poll", &pills);
    h.until(
        "the manifest-only event is dead-lettered after its retries",
        |h| {
            h.dead_letters
                .page(0, 100, false)
                .unwrap()
                .iter()
                .any(|l| l.rid.ends_with("poll-null") && l.reason == "unfetchable")
        },
    )
    .await;
    // Times that cannot be believed fall back, and the row says which time it used.
    let row = |id: &str| {
        h.index
            .event(&Rid::parse(&format!("orn:github.event:octo-org/hello-world:{id}")).unwrap())
            .unwrap()
            .unwrap()
            .row
    };
    assert_eq!(row("poll-year-0").timestamp, "2026-11-24T12:00:00Z");
    assert_eq!(
        serde_json::to_value(row("poll-year-10000").time_source).unwrap(),
        "manifest"
    );
    assert_eq!(
        serde_json::to_value(row("poll-manifest-year-10000").time_source).unwrap(),
        "received"
    );
    // A repository object naming another repository changes nothing about it, nor about ours.
    let repos = h.index.repositories().unwrap();
    assert!(
        repos.iter().all(|r| !r.repo_url.contains("evil")),
        "{repos:?}"
    );
    // Nothing is stuck, and the next poll proceeds.
    peer.queue(Event::from_bundle(
        EventType::New,
        github_bundle("next-poll", 3),
    ));
    h.until("the next poll is indexed", |h| h.has("next-poll"))
        .await;
    h.until("the inbox is empty", |h| h.node.inbox_depth() == 0)
        .await;
    assert_eq!(
        h.metric_with("koi_indexer_events_rejected_total", "reason=\"bad_rid\""),
        2.0
    );
    assert!(h.index.check_consistency().unwrap().is_empty());
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_pills_in_one_catch_up_batch_cost_only_themselves() {
    let peer = FakePeer::start().await;
    let pills = pills("held");
    peer.hold(github_bundle("held-good-1", 1));
    for (pill, manifest) in &pills {
        let rid = serde_json::from_str::<serde_json::Value>(manifest)
            .map(|m| m["rid"].as_str().unwrap_or_default().to_owned())
            .unwrap_or_default();
        peer.hold_raw(&rid, manifest.clone(), pill.raw.clone());
    }
    peer.hold(github_bundle("held-good-2", 2));
    let h = Harness::start(&peer).await;
    h.until("the good held events are indexed", |h| {
        h.has("held-good-1") && h.has("held-good-2")
    })
    .await;
    h.until("every pill's fate is settled", |h| {
        pills
            .iter()
            .filter(|(p, _)| p.rejected.is_none())
            .all(|(p, _)| h.has(&format!("held-{}", p.name)))
    })
    .await;
    // Bad RIDs are refused at the manifest; the other unreadable items when their bundle arrives.
    assert_pills(&h, "held", &pills);
    h.until("caught up", |h| h.node.caught_up(&peer.rid()))
        .await;
    assert!(h.index.check_consistency().unwrap().is_empty());
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_over_the_cap_is_refused_naming_the_neighbour_and_the_cap() {
    let peer = FakePeer::start().await;
    let h = Harness::start_with(&peer, |s| s.max_response = 16 * 1024).await;
    h.until("joined", |_| {
        peer.paths().iter().any(|p| p == "events/poll")
    })
    .await;
    let mut big = github_bundle("big", 1);
    big.contents
        .insert("blob".into(), "x".repeat(64 * 1024).into());
    let big = Bundle::generate(big.rid().clone(), big.contents);
    peer.queue(Event::from_bundle(EventType::New, big));
    h.until("the oversized response is refused", |h| {
        h.metric_with("koi_indexer_polls_total", "outcome=\"too_large\"") >= 1.0
    })
    .await;
    assert!(!h.has("big"));
    let attempts = h.poll_log.recent(None, 10).unwrap();
    assert!(
        attempts.iter().any(|a| a
            .error
            .as_deref()
            .is_some_and(|e| e.contains("16384 bytes") && e.contains(&peer.url()))),
        "{attempts:?}"
    );
    h.stop().await;
}

/// Issue 15: each step of the join triggers the next (handshake → poll → joined → edge proposal and catch-up),
/// with no scheduler tick at all. This harness never sends one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_join_runs_step_after_step_without_waiting_for_ticks() {
    let peer = FakePeer::start().await;
    peer.hold(github_bundle("held-1", 1));
    peer.hold(github_bundle("held-2", 2));
    let h = Harness::start(&peer).await;
    let mut indexed = false;
    for _ in 0..100 {
        if h.has("held-1") && h.has("held-2") {
            indexed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let paths = peer.paths();
    assert!(indexed, "caught up without any tick: {paths:?}");
    // The order of the steps, each caused by the one before.
    let first = |p: &str| paths.iter().position(|x| x == p);
    let handshake = first("events/broadcast").expect("handshake");
    let poll = first("events/poll").expect("poll");
    let listing = first("rids/fetch").expect("catch-up");
    let bundles = first("bundles/fetch").expect("bundles");
    assert!(
        handshake < poll && poll < listing && listing < bundles,
        "{paths:?}"
    );
    let proposal = paths[poll..]
        .iter()
        .position(|p| p == "events/broadcast")
        .map(|i| i + poll)
        .expect("an edge proposal after joining");
    assert!(proposal < listing, "proposal before catch-up: {paths:?}");
    h.stop().await;
}

/// Issue 15: right after the handshake a koi-net node answers `unknown_node` until it has processed it. Those polls
/// are retried within moments, not at the next tick (this harness never sends one, as if `poll.interval` were
/// endless), so the join still ends in a catch-up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polls_answered_unknown_node_are_retried_without_waiting_for_a_tick() {
    let peer = FakePeer::start().await;
    peer.hold(github_bundle("held-1", 1));
    peer.misbehave(Misbehaviour::UnknownNode(3));
    let h = Harness::start(&peer).await;
    let mut indexed = false;
    for _ in 0..100 {
        if h.has("held-1") {
            indexed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(indexed, "caught up without any tick: {:?}", peer.paths());
    assert_eq!(
        h.metric_with("koi_indexer_polls_total", "outcome=\"unknown_node\""),
        3.0
    );
    h.stop().await;
}

/// Issue 11 item 3: a failed poll says why, with the whole cause chain (here: the connection was refused), in the
/// poll log as in the log line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_poll_gives_its_cause() {
    let peer = FakePeer::start().await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/koi-net", closed.local_addr().unwrap());
    drop(closed);
    let h = Harness::start_with(&peer, |s| s.first_contact_url = url.clone()).await;
    h.until("a poll failed", |h| {
        !h.poll_log.recent(None, 5).unwrap().is_empty()
    })
    .await;
    let attempts = h.poll_log.recent(None, 5).unwrap();
    let error = attempts[0].error.clone().unwrap_or_default();
    assert!(
        error.to_lowercase().contains("connection refused") && error.contains(&url),
        "{error}"
    );
    h.stop().await;
}

/// Issue 25, bug 2: approving an edge a neighbour proposed is a network call, and it never holds up indexing. The
/// neighbour takes 8 s to answer the approval; events polled meanwhile are indexed while it is still unanswered,
/// and the approval is stored once it is answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approving_an_edge_never_blocks_the_writer() {
    let peer = FakePeer::start().await;
    let h = Harness::start_with(&peer, |s| s.timeout = Duration::from_secs(30)).await;
    peer.queue(Event::from_bundle(
        EventType::New,
        github_bundle("first", 1),
    ));
    // Joined: the handshake and our POLL edge proposal are both sent and answered.
    h.until("the node has joined, proposed its edge and indexes", |h| {
        let (received, answered) = peer.broadcasts();
        h.has("first") && received >= 2 && answered == received
    })
    .await;
    let (before, _) = peer.broadcasts();
    peer.delay_broadcasts(Duration::from_secs(8));
    // An edge from us to the peer, proposed by it: ours to approve.
    let proposal = edges::poll_edge_proposal(&peer.rid(), h.node.rid(), Vec::new());
    peer.queue(Event::from_bundle(EventType::New, proposal.to_bundle()));
    h.until("the approval is on its way", |_| {
        peer.broadcasts().0 > before
    })
    .await;
    for n in 0..50 {
        peer.queue(Event::from_bundle(
            EventType::New,
            github_bundle(&format!("meanwhile-{n}"), n),
        ));
    }
    h.until("the events polled meanwhile are indexed", |h| {
        (0..50).all(|n| h.has(&format!("meanwhile-{n}")))
    })
    .await;
    let (received, answered) = peer.broadcasts();
    assert!(
        received > answered,
        "indexed while the approval was still unanswered ({received} sent, {answered} answered)"
    );
    h.until(
        "the approval is answered and the entry leaves the inbox",
        |h| peer.broadcasts().1 == peer.broadcasts().0 && h.node.inbox_depth() == 0,
    )
    .await;
    h.stop().await;
}
