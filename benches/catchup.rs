//! End-to-end catch-up benchmark: the real koi-net 2.1.2 coordinator and a koi-net GitHub sensor holding N webhook
//! events of real size; our daemon (the release build) joins and indexes them all. Reports wall time, the daemon's
//! CPU per event next to the sensor's, the daemon's peak RSS, and the store's bytes on disk per event.
//!
//! ```sh
//! cargo bench --bench catchup                              # N = 5000
//! CATCHUP_BENCH_EVENTS=5000,50000 cargo bench --bench catchup
//! CATCHUP_BENCH_CONFIG=$'[storage]\ncache = "16 MiB"' cargo bench --bench catchup   # appended to the config
//! CATCHUP_BENCH_EVENTS=1400 CATCHUP_BENCH_INTERVALS=1s,5s,30s CATCHUP_BENCH_LIVE=200 CATCHUP_BENCH_REFERENCE=5 \
//!     cargo bench --bench catchup                        # issue 15: joining, live latency, the Python reference
//! ```
//!
//! - `CATCHUP_BENCH_INTERVALS` (default `500ms`): one daemon per `poll.interval`, each a new node with its own store,
//!   against the same sensor. Besides the wall time it reports, from the daemon's log, the time from process start
//!   to its catch-up request to the sensor (the join) and from there to all N queryable (the transfer).
//! - `CATCHUP_BENCH_LIVE=K`: then K live events are emitted by the sensor, about 7 a second, and each is timed from
//!   its emission (the sensor hands it to koi-net) until `GET /events/{rid}` finds it: p50, p99 and max.
//! - `CATCHUP_BENCH_REFERENCE=S`: then koi-net's own `PartialNode` (`tests/py/partial.py`, polling every S seconds)
//!   joins the same network and is timed until it has cached all N events.
//!
//! Needs the Python venv (`scripts/setup-python.sh`). Events are the webhook fixtures of `tests/fixtures/webhooks/`
//! (push, pull_request, issues, issue_comment, release, create, delete, fork, star, watch, workflow_run, gollum),
//! spread over 50 repositories, each made unique by its delivery number. `cargo test` builds this bench but does not
//! run it (it is not a test); run it by hand, as above.

#[path = "../tests/support/disk.rs"]
mod disk;
#[path = "../tests/support/pynet.rs"]
#[allow(dead_code)]
mod pynet;
#[path = "../tests/support/webhooks.rs"]
mod webhooks;

use std::os::unix::fs::MetadataExt as _;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use pynet::{Daemon, PyNode};

/// `n` sensor items of real size over 50 repositories.
fn items(n: usize) -> (Vec<Value>, usize) {
    let fixtures = webhooks::fixture_contents();
    let mut bytes = 0;
    let items = (0..n)
        .map(|i| {
            let mut contents = fixtures[i % fixtures.len()].clone();
            let repo = format!("bench-org/repo-{:02}", i % 50);
            contents["repository"]["full_name"] = repo.clone().into();
            contents["repository"]["html_url"] = format!("https://github.com/{repo}").into();
            contents["payload"]["delivery"] = i.into();
            bytes += serde_json::to_vec(&contents).unwrap().len();
            serde_json::json!({"rid": format!("orn:github.event:{repo}:delivery-{i}"), "contents": contents})
        })
        .collect();
    (items, bytes / n.max(1))
}

/// (user + system CPU seconds, peak RSS in bytes) of a running process, from /proc.
fn cpu_and_peak(pid: u32) -> (f64, u64) {
    let pid = pid.to_string();
    (disk::cpu_seconds_of(&pid), disk::peak_rss_of(&pid))
}

/// What the bench was asked to do besides the catch-up at the default interval.
struct Plan {
    intervals: Vec<String>,
    live: usize,
    reference_interval_s: Option<u64>,
    extra: String,
}

fn run(n: usize, plan: &Plan) {
    let root = tempfile::tempdir().unwrap();
    let (items, mean_size) = items(n);
    let coordinator = PyNode::coordinator(root.path());
    let started = Instant::now();
    let sensor = PyNode::sensor_with_items(root.path(), &coordinator, &Value::Array(items));
    eprintln!(
        "sensor holds {n} events ({:.0?} to cache them)",
        started.elapsed()
    );
    for (i, interval) in plan.intervals.iter().enumerate() {
        let daemon_root = root.path().join(format!("daemon-{i}"));
        let daemon = catch_up(
            n,
            mean_size,
            interval,
            &daemon_root,
            &coordinator,
            &sensor,
            plan,
        );
        if i == 0 && plan.live > 0 {
            live_latency(plan.live, interval, &daemon, &sensor);
        }
        // A clean stop (SIGTERM), so a profiler wrapping the daemon (`KOI_DAEMON_WRAPPER`, e.g. callgrind) writes
        // what it gathered.
        let mut daemon = daemon;
        if daemon.terminate(Duration::from_secs(120)).is_none() {
            eprintln!("the daemon did not stop within 120 s of SIGTERM (killed)");
        }
    }
    if let Some(seconds) = plan.reference_interval_s {
        reference_partial_node(n, seconds, root.path(), &coordinator);
    }
}

/// One daemon, a new node, joins and catches up; returns it still running.
fn catch_up(
    n: usize,
    mean_size: usize,
    interval: &str,
    root: &Path,
    coordinator: &PyNode,
    sensor: &PyNode,
    plan: &Plan,
) -> Daemon {
    let sensor_pid = sensor.pid().expect("sensor runs");
    let (sensor_cpu_before, _) = cpu_and_peak(sensor_pid);
    let spawned_at = SystemTime::now();
    let started = Instant::now();
    let poll_keys = format!("interval = \"{interval}\"");
    let daemon = if std::env::var("CATCHUP_BENCH_TRACE").is_ok_and(|v| v == "debug") {
        Daemon::start_configured(root, coordinator, &poll_keys, &plan.extra)
    } else {
        Daemon::start_quiet(root, coordinator, &poll_keys, &plan.extra)
    };
    let pid = daemon.pid().expect("daemon runs");
    // Poll /status often: the join is timed to the tenth of a second.
    let deadline = Instant::now() + Duration::from_secs(3600);
    while daemon
        .status()
        .and_then(|s| s["events"].as_u64())
        .unwrap_or(0)
        < n as u64
    {
        assert!(
            Instant::now() < deadline,
            "not caught up:\n{}",
            daemon.log()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let wall = started.elapsed();
    let (cpu, peak) = cpu_and_peak(pid);
    let (sensor_cpu_after, _) = cpu_and_peak(sensor_pid);
    let sensor_cpu = sensor_cpu_after - sensor_cpu_before;
    let join = log_time(&daemon.log(), "catching up", sensor.rid())
        .and_then(|at| at.duration_since(spawned_at).ok());
    let db = daemon.config.parent().unwrap().join("data").join("db");
    let disk = disk::dir_size(&db);
    // The inbox's segment files (inside the store's directory): what was still in flight, or a drained newest
    // segment under 1 MiB that is kept for the next events.
    let inbox = disk::dir_size(&db.join("inbox"));
    let sensor_cache = disk::dir_size(&sensor.dir().join(".rid_cache"));
    println!(
        "catch-up N={n:>6} (mean contents {mean_size} B), poll.interval {interval}: wall {:>6.2} s (join {} + transfer \
         {}) | daemon CPU {:>6.2} s = {:>5.0} µs/event | sensor CPU {:>6.2} s = {:>5.0} µs/event | daemon peak RSS \
         {:>5.1} MB | store {:>7.1} MB = {:>6.0} B/event, inbox files {:.1} MB of it (sensor cache {:.0} B/event)",
        wall.as_secs_f64(),
        join.map_or("?".into(), |j| format!("{:.2} s", j.as_secs_f64())),
        join.map_or("?".into(), |j| format!("{:.2} s", (wall.saturating_sub(j)).as_secs_f64())),
        cpu,
        cpu / n as f64 * 1e6,
        sensor_cpu,
        sensor_cpu / n as f64 * 1e6,
        peak as f64 / 1e6,
        disk as f64 / 1e6,
        disk as f64 / n as f64,
        inbox as f64 / 1e6,
        sensor_cache as f64 / n as f64,
    );
    if std::env::var_os("CATCHUP_BENCH_TRACE").is_some() {
        eprintln!("--- daemon log ---\n{}", daemon.log());
    }
    daemon
}

/// The time of the first log line holding `message` and `needle` (text log format: the line starts with it).
fn log_time(log: &str, message: &str, needle: &str) -> Option<SystemTime> {
    let line = log
        .lines()
        .find(|l| l.contains(message) && l.contains(needle))?;
    let stamp = line.split_whitespace().next()?;
    let at = chrono::DateTime::parse_from_rfc3339(stamp).ok()?;
    let micros = u64::try_from(at.timestamp_micros()).ok()?;
    Some(UNIX_EPOCH + Duration::from_micros(micros))
}

/// Emits `count` live events, about 7 a second (a pace unrelated to the poll interval), and times each from its
/// emission until the API serves it.
fn live_latency(count: usize, interval: &str, daemon: &Daemon, sensor: &PyNode) {
    let fixtures = webhooks::fixture_contents();
    let mut pending: Vec<(String, std::path::PathBuf)> = Vec::new();
    let mut latencies = Vec::new();
    let mut emitted = 0;
    let mut next_emit = Instant::now();
    while latencies.len() < count {
        if emitted < count && Instant::now() >= next_emit {
            let mut contents = fixtures[emitted % fixtures.len()].clone();
            contents["payload"]["delivery"] = format!("live-{emitted}").into();
            let rid = format!("orn:github.event:bench-org/repo-00:live-{emitted}");
            let file = sensor.emit(&serde_json::json!({"rid": rid, "contents": contents}));
            pending.push((rid, file.with_extension("done")));
            emitted += 1;
            next_emit += Duration::from_millis(137);
        }
        pending.retain(|(rid, done)| {
            let path = format!("/api/processor/github/events/{}", rid.replace('/', "%2F"));
            let found = daemon
                .get(&path)
                .is_some_and(|e| e.get("event_rid").is_some());
            if !found {
                return true;
            }
            let now = SystemTime::now();
            // The sensor renames the spool file right after handing the item to koi-net: its ctime is the emission.
            let emitted_at = std::fs::metadata(done)
                .ok()
                .map(|m| UNIX_EPOCH + Duration::new(m.ctime() as u64, m.ctime_nsec() as u32));
            if let Some(at) = emitted_at {
                latencies.push(now.duration_since(at).unwrap_or_default());
            } else {
                latencies.push(Duration::ZERO);
            }
            false
        });
        std::thread::sleep(Duration::from_millis(5));
    }
    latencies.sort();
    let pick = |q: f64| {
        latencies[((latencies.len() as f64 * q).ceil() as usize).clamp(1, latencies.len()) - 1]
    };
    println!(
        "live events, poll.interval {interval}: {count} events, emission → queryable p50 {} ms, p99 {} ms, max {} ms",
        pick(0.50).as_millis(),
        pick(0.99).as_millis(),
        pick(1.0).as_millis(),
    );
}

/// koi-net's own PartialNode on the same network: time until it has cached all `n` events.
fn reference_partial_node(n: usize, interval_s: u64, root: &Path, coordinator: &PyNode) {
    let dir = root.join("reference-partial");
    let started = Instant::now();
    let status = Command::new(pynet::python())
        .arg(pynet::py_script("partial.py"))
        .arg("--dir")
        .arg(&dir)
        .args(["--coordinator-url", coordinator.base_url()])
        .args(["--coordinator-rid", coordinator.rid()])
        .args(["--interval", &interval_s.to_string()])
        .args(["--expect", &n.to_string()])
        .args(["--timeout", "900"])
        .env("PRIV_KEY_PASSWORD", "koi-harness-password")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(root.join("reference-partial.log")).unwrap())
        .status()
        .expect("runs partial.py");
    let wall = started.elapsed();
    let progress: Value = std::fs::read_to_string(dir.join("progress.json"))
        .ok()
        .and_then(|text| serde_json::from_str(&text).ok())
        .unwrap_or_default();
    // Timed by the node itself (from its start to the poll that saw all N cached); its stop afterwards is not.
    let done = progress["done"].as_bool().unwrap_or(false);
    println!(
        "reference koi-net PartialNode, polling_interval {interval_s} s: {} events cached after {} s{} (process \
         {:.1} s, {status})",
        progress["events"],
        progress["elapsed_s"],
        if done { "" } else { " — NOT all" },
        wall.as_secs_f64(),
    );
}

fn main() {
    // `cargo test --all-targets` builds benches and runs them with `--bench` absent: skip then (needs minutes).
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let sizes = std::env::var("CATCHUP_BENCH_EVENTS").unwrap_or_else(|_| "5000".to_owned());
    if std::env::var_os("KOI_READY_TIMEOUT_S").is_none() {
        // The sensor is ready only once it has cached every item: tens of thousands take minutes in koi-net.
        std::env::set_var("KOI_READY_TIMEOUT_S", "3600");
    }
    let list = |name: &str, default: &str| -> Vec<String> {
        std::env::var(name)
            .unwrap_or_else(|_| default.to_owned())
            .split(',')
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect()
    };
    let plan = Plan {
        intervals: list("CATCHUP_BENCH_INTERVALS", "500ms"),
        live: std::env::var("CATCHUP_BENCH_LIVE")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0),
        reference_interval_s: std::env::var("CATCHUP_BENCH_REFERENCE")
            .ok()
            .and_then(|v| v.parse().ok()),
        // Extra configuration sections for experiments, e.g. CATCHUP_BENCH_CONFIG=$'[storage]\ncache = "16 MiB"'.
        extra: std::env::var("CATCHUP_BENCH_CONFIG").unwrap_or_default(),
    };
    for n in sizes.split(',').filter_map(|s| s.trim().parse().ok()) {
        run(n, &plan);
    }
}
