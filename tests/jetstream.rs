//! Issue 28's proof: the daemon publishes every indexed event version to a real 3-server NATS JetStream cluster on
//! loopback, exactly once, in index order, through a kill -9 of the daemon, a server down, and the whole cluster
//! down for 30 s; and two daemons with disjoint `index.repos` share one stream, every event once.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde_json::{json, Value};

use support::nats::{read_stream, Cluster, Stored};
use support::pynet::{fixture_items, push_items, Daemon, PyNode};

const STREAM: &str = "GITHUB_EVENTS";
const TOKEN_ENV: &str = "KOI_TEST_NATS_TOKEN";
const TOKEN: &str = "a-nats-token";

fn sink_config(cluster: &Cluster, extra: &str) -> String {
    format!(
        "[sink.nats]\nservers = {}\nreplicas = {}\nmax_in_flight = 16\n{extra}\n",
        cluster.toml_servers(),
        cluster.urls().len()
    )
}

/// Waits until the daemon holds `events` events and its sink has published everything.
fn wait_published(daemon: &Daemon, events: usize, timeout: Duration, what: &str) {
    daemon.wait_until(what, timeout, |d| {
        d["events"].as_u64() == Some(events as u64)
            && d["sink"]["lag"].as_u64() == Some(0)
            && d["sink"]["last_error"].is_null()
    });
}

/// Every message is a distinct event version: no `Nats-Msg-Id` twice. Returns the messages per event RID.
fn exactly_once(messages: &[Stored]) -> BTreeMap<String, Vec<&Stored>> {
    let mut ids = BTreeSet::new();
    let mut by_event: BTreeMap<String, Vec<&Stored>> = BTreeMap::new();
    for m in messages {
        assert!(
            ids.insert(m.header("Nats-Msg-Id").to_owned()),
            "{} published twice",
            m.header("Nats-Msg-Id")
        );
        by_event
            .entry(m.header("Koi-Event-Rid").to_owned())
            .or_default()
            .push(m);
    }
    by_event
}

#[test]
fn every_event_version_is_published_once_in_order_through_kill_9_and_outages() {
    let root = tempfile::tempdir().unwrap();
    let mut cluster = Cluster::start(root.path(), 3);
    let coordinator = PyNode::coordinator(root.path());
    let mut items = fixture_items();
    items.extend(push_items("first", 20));
    let sensor = PyNode::sensor_with_items(root.path(), &coordinator, &Value::Array(items.clone()));
    let mut daemon = Daemon::start_with(root.path(), &coordinator, &sink_config(&cluster, ""));
    let mut total = items.len();
    wait_published(
        &daemon,
        total,
        Duration::from_secs(120),
        "the first events are published",
    );

    // 1. Every event once, in index order, with the documented subject, headers and body.
    let messages = read_stream(&cluster, STREAM);
    assert_eq!(messages.len(), total, "{}", cluster.log_tail());
    let by_event = exactly_once(&messages);
    assert_eq!(by_event.len(), total);
    let seqs: Vec<u64> = messages
        .iter()
        .map(|m| m.header("Koi-Seq").parse().unwrap())
        .collect();
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "index order: {seqs:?}"
    );
    let rows: Vec<Value> = daemon
        .get("/api/processor/github/events?limit=100")
        .unwrap()
        .as_array()
        .unwrap()
        .clone();
    for m in &messages {
        let rid = m.header("Koi-Event-Rid");
        let row = rows
            .iter()
            .find(|r| r["event_rid"] == rid)
            .expect("an indexed event");
        for key in [
            "event_rid",
            "repo_rid",
            "event_type",
            "timestamp",
            "summary",
            "actor",
        ] {
            assert_eq!(m.body[key], row[key], "{key} of {rid}");
        }
        let repo = row["repo_rid"]
            .as_str()
            .unwrap()
            .trim_start_matches("orn:github.repo:");
        assert_eq!(m.body["repo"], repo);
        assert_eq!(m.header("Koi-Repo"), repo);
        assert_eq!(
            m.body["seq"].as_u64().unwrap().to_string(),
            m.header("Koi-Seq")
        );
        assert_eq!(m.header("Koi-Event-Type"), row["event_type"]);
        assert_eq!(m.header("Koi-Format-Version"), "1");
        assert!(m.header("Nats-Msg-Id").starts_with(&format!("{rid}@")));
        assert_eq!(m.header("Koi-Update"), "", "first versions are not updates");
        assert!(
            m.body.get("contents").is_none(),
            "include_contents is off by default"
        );
        let (owner, name) = repo.split_once('/').unwrap();
        assert_eq!(
            m.subject,
            format!(
                "github.{}.{}.{}",
                owner,
                name,
                row["event_type"].as_str().unwrap()
            ),
            "these names need no escaping"
        );
    }

    // 2. An UPDATE is a new message, marked so.
    let updated = json!([{
        "rid": "orn:github.event:octo-org/hello-world:first-0",
        "contents": {"webhook_event_type": "push", "repository": {"full_name": "octo-org/hello-world"},
                     "payload": {"after": "f".repeat(40), "head_commit": {"id": "f".repeat(40), "message": "amended"}}},
    }]);
    sensor.emit(&updated);
    sensor.wait_emitted(Duration::from_secs(30));
    daemon.wait_until("the update is published", Duration::from_secs(60), |d| {
        d["sink"]["cursor"].as_u64() == Some(total as u64 + 1)
    });
    let messages = read_stream(&cluster, STREAM);
    assert_eq!(messages.len(), total + 1);
    let last = messages.last().unwrap();
    assert_eq!(
        last.header("Koi-Event-Rid"),
        "orn:github.event:octo-org/hello-world:first-0"
    );
    assert_eq!(last.header("Koi-Update"), "true");
    assert_eq!(last.body["version"], 1);
    let versions = 1;

    // 3. kill -9 while publishing, and restart: still exactly once.
    sensor.emit(&Value::Array(push_items("burst", 300)));
    total += 300;
    daemon.wait_until("publishing has started", Duration::from_secs(60), |d| {
        d["sink"]["cursor"].as_u64().unwrap_or(0) > (total - 300 + versions) as u64
    });
    daemon.kill9();
    daemon.restart();
    wait_published(
        &daemon,
        total,
        Duration::from_secs(120),
        "everything is published after kill -9",
    );
    let messages = read_stream(&cluster, STREAM);
    assert_eq!(messages.len(), total + versions, "{}", daemon.log());
    exactly_once(&messages);

    // 4. One server down: R3 keeps publishing.
    cluster.stop_server(0);
    sensor.emit(&Value::Array(push_items("one-down", 20)));
    total += 20;
    wait_published(
        &daemon,
        total,
        Duration::from_secs(120),
        "published with a server down",
    );
    cluster.start_all();

    // 5. All three down for 30 s: the index goes on, the sink falls behind and says so, then catches up.
    cluster.stop_all();
    sensor.emit(&Value::Array(push_items("outage", 20)));
    total += 20;
    daemon.wait_until("indexed during the outage", Duration::from_secs(60), |d| {
        d["events"].as_u64() == Some(total as u64)
    });
    daemon.wait_until(
        "the sink reports the outage",
        Duration::from_secs(60),
        |d| d["sink"]["lag"].as_u64().unwrap_or(0) > 0 && d["sink"]["last_error"].is_string(),
    );
    std::thread::sleep(Duration::from_secs(30));
    assert!(
        daemon.get("/api/processor/github/events?limit=1").is_some(),
        "the API answers"
    );
    cluster.start_all();
    wait_published(
        &daemon,
        total,
        Duration::from_secs(180),
        "caught up after the outage",
    );
    let messages = read_stream(&cluster, STREAM);
    assert_eq!(
        messages.len(),
        total + versions,
        "nothing lost, nothing doubled"
    );
    let by_event = exactly_once(&messages);
    assert_eq!(by_event.len(), total);

    // The counters are the process's own (since the restart after kill -9): what it published after the outage.
    assert!(daemon.metric("koi_indexer_sink_published_total", &[]) >= 40.0);
    assert_eq!(daemon.metric("koi_indexer_sink_lag", &[]), 0.0);
    assert!(daemon.metric("koi_indexer_sink_errors_total", &[]) >= 1.0);
    let log = daemon.log();
    let warnings = log.matches("the JetStream sink cannot publish").count();
    assert!(warnings >= 1, "one warning per outage:\n{log}");
    assert!(log.contains("the JetStream sink publishes again"), "{log}");
}

#[test]
fn two_daemons_with_disjoint_repositories_publish_every_event_once() {
    let root = tempfile::tempdir().unwrap();
    // This server requires a token: the daemons give it from `token_env`.
    let cluster = Cluster::start_with_token(root.path(), 1, Some(TOKEN));
    let coordinator = PyNode::coordinator(root.path());
    let mut items = fixture_items();
    items.extend(push_items("more", 10));
    let _sensor =
        PyNode::sensor_with_items(root.path(), &coordinator, &Value::Array(items.clone()));
    let hello = items
        .iter()
        .filter(|i| {
            i["rid"]
                .as_str()
                .unwrap()
                .contains(":octo-org/hello-world:")
        })
        .count();
    let other_root = tempfile::tempdir().unwrap();
    let sink = sink_config(&cluster, &format!("token_env = \"{TOKEN_ENV}\""));
    let env = [(TOKEN_ENV, TOKEN)];
    let octo = Daemon::start_with_env(
        root.path(),
        &coordinator,
        "",
        &format!("[index]\nrepos = [\"octo-org/*\"]\n\n{sink}"),
        &env,
    );
    let rust = Daemon::start_with_env(
        other_root.path(),
        &coordinator,
        "",
        &format!("[index]\nrepos = [\"rust-lang/rust\"]\n\n{sink}"),
        &env,
    );
    wait_published(
        &octo,
        hello,
        Duration::from_secs(120),
        "octo-org's events are published",
    );
    wait_published(
        &rust,
        items.len() - hello,
        Duration::from_secs(120),
        "rust-lang's are",
    );
    let messages = read_stream(&cluster, STREAM);
    let by_event = exactly_once(&messages);
    let expected: BTreeSet<String> = items
        .iter()
        .map(|i| i["rid"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(by_event.keys().cloned().collect::<BTreeSet<_>>(), expected);
    assert!(octo.metric("koi_indexer_events_filtered_total", &[]) >= (items.len() - hello) as f64);
    assert!(rust.metric("koi_indexer_events_filtered_total", &[]) >= hello as f64);
}

#[test]
fn a_stream_that_does_not_capture_the_subjects_is_reported_and_indexing_goes_on() {
    let root = tempfile::tempdir().unwrap();
    let cluster = Cluster::start(root.path(), 1);
    support::nats::create_stream(&cluster, STREAM, &["elsewhere.>"]);
    let coordinator = PyNode::coordinator(root.path());
    let items = fixture_items();
    let _sensor =
        PyNode::sensor_with_items(root.path(), &coordinator, &Value::Array(items.clone()));
    let daemon = Daemon::start_with(root.path(), &coordinator, &sink_config(&cluster, ""));
    daemon.wait_until(
        "indexed, and the sink says what differs",
        Duration::from_secs(90),
        |d| {
            d["events"].as_u64() == Some(items.len() as u64)
                && d["sink"]["lag"].as_u64() == Some(items.len() as u64)
                && d["sink"]["last_error"]
                    .as_str()
                    .is_some_and(|e| e.contains("elsewhere.>") && e.contains("github.>"))
        },
    );
    assert!(daemon.metric("koi_indexer_sink_errors_total", &["kind=\"stream\""]) >= 1.0);
    assert!(read_stream(&cluster, STREAM).is_empty());
}

/// A CA, and a certificate for 127.0.0.1 it signed: (CA PEM, certificate PEM, key PEM).
fn certificates() -> (String, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, SanType};
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_key = KeyPair::generate().unwrap();
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let mut params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    params
        .subject_alt_names
        .push(SanType::IpAddress(std::net::Ipv4Addr::LOCALHOST.into()));
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();
    (ca.pem(), cert.pem(), key.serialize_pem())
}

#[test]
fn the_sink_connects_with_tls_and_an_nkey_as_configured() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path();
    let (ca, cert, key) = certificates();
    for (name, text) in [("ca.pem", &ca), ("server.pem", &cert), ("server.key", &key)] {
        std::fs::write(dir.join(name), text).unwrap();
    }
    let user = nkeys::KeyPair::new_user();
    std::fs::write(dir.join("nats.nk"), user.seed().unwrap()).unwrap();
    // One server that takes nothing but TLS and this user's NKey.
    let port = support::pynet::free_port();
    let conf = dir.join("nats.conf");
    std::fs::write(
        &conf,
        format!(
            "listen: 127.0.0.1:{port}\njetstream {{ store_dir: \"{}\" }}\n\
             tls {{ cert_file: \"{}\", key_file: \"{}\" }}\n\
             authorization {{ users = [ {{ nkey: \"{}\" }} ] }}\n",
            dir.join("js").display(),
            dir.join("server.pem").display(),
            dir.join("server.key").display(),
            user.public_key()
        ),
    )
    .unwrap();
    let sink = format!(
        "servers = [\"tls://127.0.0.1:{port}\"]\nnkey_seed_file = \"{}\"\ntls_ca = \"{}\"\n",
        dir.join("nats.nk").display(),
        dir.join("ca.pem").display()
    );
    fixtures_published_through(dir, &conf, port, &sink, "published over TLS with the NKey");
}

/// A NATS JWT (`header.claims.signature`) of `claims`, signed by `signer`, with its `jti` as nats-server's own
/// tooling computes it (base32hex of the SHA-256 of the claims without it).
fn nats_jwt(mut claims: Value, signer: &nkeys::KeyPair) -> String {
    use base64::Engine as _;
    use sha2::Digest as _;
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    claims["iat"] = json!(1_700_000_000);
    claims["iss"] = json!(signer.public_key());
    claims["jti"] = json!("");
    let hash = sha2::Sha256::digest(serde_json::to_vec(&claims).unwrap());
    claims["jti"] = json!(data_encoding::BASE32HEX_NOPAD.encode(&hash));
    let signed = format!(
        "{}.{}",
        b64(br#"{"typ":"JWT","alg":"ed25519-nkey"}"#),
        b64(&serde_json::to_vec(&claims).unwrap())
    );
    let signature = signer.sign(signed.as_bytes()).unwrap();
    format!("{signed}.{}", b64(&signature))
}

#[test]
fn the_sink_connects_with_a_creds_file() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path();
    // An operator, an account with JetStream, and a user of it: the decentralised set-up a creds file belongs to.
    let operator = nkeys::KeyPair::new_operator();
    let account = nkeys::KeyPair::new_account();
    let user = nkeys::KeyPair::new_user();
    let operator_jwt = nats_jwt(
        json!({"name": "op", "sub": operator.public_key(), "nats": {"type": "operator", "version": 2}}),
        &operator,
    );
    let unlimited = json!({"subs": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1, "wildcards": true,
        "conn": -1, "leaf": -1, "mem_storage": -1, "disk_storage": -1, "streams": -1, "consumer": -1});
    let account_jwt = nats_jwt(
        json!({"name": "indexers", "sub": account.public_key(),
               "nats": {"limits": unlimited, "type": "account", "version": 2}}),
        &operator,
    );
    // JetStream needs a system account.
    let system = nkeys::KeyPair::new_account();
    let system_jwt = nats_jwt(
        json!({"name": "SYS", "sub": system.public_key(), "nats": {"type": "account", "version": 2}}),
        &operator,
    );
    let user_jwt = nats_jwt(
        json!({"name": "indexer", "sub": user.public_key(),
               "nats": {"pub": {}, "sub": {}, "subs": -1, "data": -1, "payload": -1, "type": "user", "version": 2}}),
        &account,
    );
    std::fs::write(
        dir.join("indexer.creds"),
        format!(
            "-----BEGIN NATS USER JWT-----\n{user_jwt}\n------END NATS USER JWT------\n\n\
             -----BEGIN USER NKEY SEED-----\n{}\n------END USER NKEY SEED------\n",
            user.seed().unwrap()
        ),
    )
    .unwrap();
    let port = support::pynet::free_port();
    let conf = dir.join("nats.conf");
    std::fs::write(
        &conf,
        format!(
            "listen: 127.0.0.1:{port}\njetstream {{ store_dir: \"{}\" }}\noperator: \"{operator_jwt}\"\n\
             system_account: {}\nresolver: MEMORY\n\
             resolver_preload: {{ {}: \"{account_jwt}\", {}: \"{system_jwt}\" }}\n",
            dir.join("js").display(),
            system.public_key(),
            account.public_key(),
            system.public_key()
        ),
    )
    .unwrap();
    let sink = format!(
        "servers = [\"nats://127.0.0.1:{port}\"]\ncreds_file = \"{}\"\n",
        dir.join("indexer.creds").display()
    );
    fixtures_published_through(dir, &conf, port, &sink, "published with the creds file");
}

/// Starts `nats-server -c conf` (listening on `port`), the koi-net coordinator and a sensor with the fixtures, and
/// a daemon with `[sink.nats]` `sink_keys` (replicas 1); waits until every fixture is indexed and published.
fn fixtures_published_through(
    dir: &std::path::Path,
    conf: &std::path::Path,
    port: u16,
    sink_keys: &str,
    what: &str,
) {
    let _server = support::nats::Server::start_with_config(conf, port, &dir.join("nats.log"));
    let coordinator = PyNode::coordinator(dir);
    let items = fixture_items();
    let _sensor = PyNode::sensor_with_items(dir, &coordinator, &Value::Array(items.clone()));
    let daemon = Daemon::start_with(
        dir,
        &coordinator,
        &format!("[sink.nats]\nreplicas = 1\n{sink_keys}"),
    );
    wait_published(&daemon, items.len(), Duration::from_secs(120), what);
    assert_eq!(
        daemon.metric("koi_indexer_sink_published_total", &[]),
        items.len() as f64
    );
}
