//! Issue 13's proof for history and snapshots: the daemon indexes from the real koi-net 2.1.2 coordinator and
//! sensor; an UPDATE keeps the version it replaced; `export` runs while the daemon ingests, and again from the
//! stopped store; `import` loads each into a fresh store; then the API over each answers as the source does.

mod index_support;
mod support;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};

use index_support::Store;
use support::pynet::{fixture_items, push_items, Daemon, PyNode};

const BIN: &str = env!("CARGO_BIN_EXE_koi-github-indexer");
/// An API address where nothing answers: the commands open the store.
const NOWHERE: &str = "http://127.0.0.1:9";

fn cli(args: &[&str]) -> String {
    let out = Command::new(BIN).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `import --in file --data-dir dir`, with no daemon anywhere.
fn run_import(file: &Path, dir: &Path) -> std::process::Output {
    let (file, dir) = (file.to_str().unwrap(), dir.to_str().unwrap());
    Command::new(BIN)
        .args(["import", "--in", file, "--data-dir", dir, "--api", NOWHERE])
        .output()
        .unwrap()
}

/// An import that must succeed: its output (stdout, then stderr).
fn import(file: &Path, dir: &Path) -> String {
    let out = run_import(file, dir);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "importing {}: {text}", file.display());
    text
}

/// An import that must be refused: its error output.
fn import_refused(file: &Path, dir: &Path) -> String {
    let out = run_import(file, dir);
    assert!(!out.status.success(), "{} was imported", file.display());
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A copy of a data dir's store in a new temporary directory (the daemon's own stays untouched).
fn copy_store(data_dir: &Path) -> tempfile::TempDir {
    let copy = tempfile::tempdir().unwrap();
    let status = Command::new("cp")
        .arg("-r")
        .arg(data_dir.join("db"))
        .arg(copy.path())
        .status()
        .unwrap();
    assert!(status.success());
    copy
}

fn read_export(path: &Path) -> (Value, Vec<Value>) {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap());
    let header = lines.next().unwrap();
    (header, lines.collect())
}

fn event_rids(lines: &[Value]) -> Vec<String> {
    lines
        .iter()
        .filter(|l| l["kind"] == "bundle")
        .map(|l| l["manifest"]["rid"].as_str().unwrap().to_owned())
        .filter(|rid| rid.starts_with("orn:github.event:"))
        .collect()
}

async fn get(client: &reqwest::Client, base: &str, path: &str) -> Value {
    let url = format!("{base}/api/processor/github{path}");
    let response = client.get(&url).send().await.unwrap();
    assert!(
        response.status().is_success(),
        "{url}: {}",
        response.status()
    );
    response.json().await.unwrap()
}

/// `/repositories` without the two fields an import sets anew, by name.
fn comparable_repos(mut repos: Value) -> Value {
    let list = repos.as_array_mut().unwrap();
    for r in list.iter_mut() {
        let r = r.as_object_mut().unwrap();
        r.remove("first_indexed");
        r.remove("last_updated");
    }
    list.sort_by(|a, b| a["repo_rid"].as_str().cmp(&b["repo_rid"].as_str()));
    repos
}

/// Every per-event answer for `rids`: details and history.
async fn event_answers(base: &str, rids: &[String]) -> Vec<(Value, Value)> {
    let client = reqwest::Client::new();
    let mut out = Vec::new();
    for rid in rids {
        let encoded =
            percent_encoding::utf8_percent_encode(rid, percent_encoding::NON_ALPHANUMERIC);
        out.push((
            get(&client, base, &format!("/events/{encoded}")).await,
            get(&client, base, &format!("/events/{encoded}/history")).await,
        ));
    }
    out
}

/// Every answer about the store as a whole.
async fn store_answers(base: &str) -> Vec<Value> {
    let client = reqwest::Client::new();
    let mut out = vec![
        comparable_repos(get(&client, base, "/repositories").await),
        get(&client, base, "/events?limit=100").await,
        get(&client, base, "/stats?top=100").await,
    ];
    for repo in ["octo-org/hello-world", "rust-lang/rust"] {
        out.push(
            get(
                &client,
                base,
                &format!("/repositories/{repo}/events?limit=100"),
            )
            .await,
        );
    }
    let status = get(&client, base, "/status").await;
    out.push(json!([
        status["details"]["events"],
        status["details"]["event_types"]
    ]));
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_is_kept_and_an_export_made_while_ingesting_imports_to_the_same_answers() {
    let root = tempfile::tempdir().unwrap();
    let coordinator = PyNode::coordinator(root.path());
    let mut items = fixture_items();
    items.extend(push_items("before", 100));
    let sensor = PyNode::sensor_with_items(root.path(), &coordinator, &Value::Array(items.clone()));
    let mut daemon = Daemon::start(root.path(), &coordinator);
    daemon.wait_until(
        "the sensor's events are indexed",
        Duration::from_secs(90),
        |d| d["events"].as_u64() == Some(items.len() as u64),
    );

    // Two UPDATEs: the history holds three versions, newest first, each with its contents.
    let rid = "orn:github.event:octo-org/hello-world:before-0";
    let path = format!("/api/processor/github/events/{rid}/history");
    for message in ["amended once", "amended twice"] {
        let mut update = push_items("before", 1).remove(0);
        update["contents"]["payload"]["head_commit"]["message"] = json!(message);
        sensor.emit(&update);
        sensor.wait_emitted(Duration::from_secs(20));
        daemon.wait_until("the update is indexed", Duration::from_secs(30), |_| {
            daemon
                .get(&path)
                .is_some_and(|h| h[0]["contents"]["payload"]["head_commit"]["message"] == message)
        });
    }
    let history = daemon.get(&path).unwrap();
    let messages: Vec<&Value> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|v| &v["contents"]["payload"]["head_commit"]["message"])
        .collect();
    assert_eq!(
        messages,
        [
            &json!("amended twice"),
            &json!("amended once"),
            &json!("commit 0")
        ]
    );
    let times: Vec<&str> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["timestamp"].as_str().unwrap())
        .collect();
    assert!(
        times.windows(2).all(|w| w[0] > w[1]),
        "newest first: {times:?}"
    );
    assert!(history[0]["sha256_hash"].is_string() && history[0]["received_at"].is_string());
    let details = daemon
        .get(&format!("/api/processor/github/events/{rid}"))
        .unwrap();
    assert_eq!(
        details["bundle"]["contents"], history[0]["contents"],
        "the first is the current one"
    );
    assert!(daemon
        .get_text(
            "/api/processor/github/events/orn:github.event:octo-org/hello-world:unknown/history"
        )
        .unwrap()
        .contains("not indexed"));

    // Export while the sensor keeps emitting new events.
    let live_file = root.path().join("live.ndjson");
    let config = daemon.config.to_str().unwrap().to_owned();
    let emitting = {
        let batches: Vec<Value> = (0..10)
            .map(|i| Value::Array(push_items(&format!("live{i}"), 20)))
            .collect();
        let spool_sensor = &sensor;
        std::thread::scope(|scope| {
            let emitter = scope.spawn(move || {
                for batch in &batches {
                    spool_sensor.emit(batch);
                    std::thread::sleep(Duration::from_millis(100));
                }
            });
            std::thread::sleep(Duration::from_millis(250));
            let said = cli(&[
                "export",
                "--out",
                live_file.to_str().unwrap(),
                "--config",
                &config,
            ]);
            emitter.join().unwrap();
            said
        })
    };
    assert!(emitting.contains("exported"), "{emitting}");
    let (live_header, live_lines) = read_export(&live_file);
    assert_eq!(live_header["format"], "koi-github-indexer/export");
    let live_events = event_rids(&live_lines);
    assert_eq!(
        live_events.len() as u64,
        live_header["events"].as_u64().unwrap(),
        "the events as at the start"
    );
    assert!(!root.path().join(".live.ndjson.partial").exists());

    let total = items.len() as u64 + 200;
    sensor.wait_emitted(Duration::from_secs(30));
    daemon.wait_until("every event is indexed", Duration::from_secs(60), |d| {
        d["events"].as_u64() == Some(total)
    });
    daemon
        .terminate(Duration::from_secs(20))
        .expect("the daemon stops on SIGTERM");

    // Export again, from the stopped store.
    let data_dir = root.path().join("indexer/data");
    let stopped_file = root.path().join("stopped.ndjson");
    let said = cli(&[
        "export",
        "--out",
        stopped_file.to_str().unwrap(),
        "--config",
        &config,
    ]);
    assert!(said.contains(&format!("{total} events")), "{said}");
    let (_, stopped_lines) = read_export(&stopped_file);
    assert_eq!(event_rids(&stopped_lines).len() as u64, total);

    // Import each into a fresh data dir (which does not exist yet), then the second into the first (not empty).
    let fresh_live = tempfile::tempdir().unwrap();
    let live_dir = fresh_live.path().join("new-data-dir");
    let said = import(&live_file, &live_dir);
    assert!(
        said.contains(&format!("{} events", live_events.len())),
        "{said}"
    );
    let fresh_stopped = tempfile::tempdir().unwrap();
    let stopped_dir = fresh_stopped.path().join("data");
    import(&stopped_file, &stopped_dir);

    let source = Store::open_in(
        copy_store(&data_dir),
        koi_github_indexer::telemetry::Metrics::new(),
    );
    let from_live = Store::open_in(
        copy_store(&live_dir),
        koi_github_indexer::telemetry::Metrics::new(),
    );
    let from_stopped = Store::open_in(
        copy_store(&stopped_dir),
        koi_github_indexer::telemetry::Metrics::new(),
    );
    let (source_api, live_api, stopped_api) =
        (source.serve(), from_live.serve(), from_stopped.serve());

    // The live export: every exported event answers as in the source.
    assert_eq!(
        event_answers(&live_api.base(), &live_events).await,
        event_answers(&source_api.base(), &live_events).await
    );
    // The stopped export: every answer.
    let all: Vec<String> = event_rids(&stopped_lines);
    assert_eq!(all.iter().collect::<BTreeSet<_>>().len(), all.len());
    assert_eq!(
        event_answers(&stopped_api.base(), &all).await,
        event_answers(&source_api.base(), &all).await
    );
    assert_eq!(
        store_answers(&stopped_api.base()).await,
        store_answers(&source_api.base()).await
    );

    // Importing into a store that is not empty: what it holds is deduplicated, the rest added.
    source_api.stop().await;
    live_api.stop().await;
    stopped_api.stop().await;
    drop(from_live);
    let said = import(&stopped_file, &live_dir);
    assert!(said.contains("already held"), "{said}");
    let merged = Store::open_in(
        copy_store(&live_dir),
        koi_github_indexer::telemetry::Metrics::new(),
    );
    let (merged_api, source_api) = (merged.serve(), source.serve());
    assert_eq!(
        store_answers(&merged_api.base()).await,
        store_answers(&source_api.base()).await
    );

    // The last line says how many came before it; a file cut short is refused whole.
    let (_, lines) = read_export(&stopped_file);
    let end = lines.last().unwrap();
    assert_eq!(end["kind"], "end");
    assert_eq!(end["lines"].as_u64().unwrap() as usize, lines.len() - 1);
    let text = std::fs::read_to_string(&stopped_file).unwrap();
    let cut = root.path().join("cut.ndjson");
    let kept: Vec<&str> = text.lines().collect();
    std::fs::write(&cut, kept[..kept.len() - 1].join("\n") + "\n").unwrap();
    let cut_dir = tempfile::tempdir().unwrap();
    let err = import_refused(&cut, cut_dir.path());
    assert!(err.contains("cut short"), "{err}");
    // Refused before anything is created (issue 25: it used to leave an empty store behind).
    assert!(!cut_dir.path().join("db").exists(), "no store is created");

    // A damaged file changes nothing.
    let damaged = root.path().join("damaged.ndjson");
    let mut text = std::fs::read_to_string(&stopped_file).unwrap();
    text = text.replacen("commit 5", "commit five", 1);
    std::fs::write(&damaged, text).unwrap();
    let empty = tempfile::tempdir().unwrap();
    let err = import_refused(&damaged, empty.path());
    assert!(err.contains("line") && err.contains("hash"), "{err}");
    assert!(!empty.path().join("db").exists(), "no store is created");
    let out = Command::new(BIN)
        .args([
            "summary",
            "--json",
            "--data-dir",
            empty.path().to_str().unwrap(),
            "--api",
            NOWHERE,
        ])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("there is no store"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
