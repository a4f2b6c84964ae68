//! End-to-end catch-up benchmark: the real koi-net 2.1.2 coordinator and a koi-net GitHub sensor holding N webhook
//! events of real size; our daemon (the release build) joins and indexes them all. Reports wall time, the daemon's
//! CPU per event next to the sensor's, the daemon's peak RSS, and the store's bytes on disk per event.
//!
//! ```sh
//! cargo bench --bench catchup                              # N = 5000
//! CATCHUP_BENCH_EVENTS=5000,50000 cargo bench --bench catchup
//! CATCHUP_BENCH_CONFIG=$'[storage]\ncache = "16 MiB"' cargo bench --bench catchup   # appended to the config
//! ```
//!
//! Needs the Python venv (`scripts/setup-python.sh`). Events are the webhook fixtures of `tests/fixtures/webhooks/`
//! (push, pull_request, issues, issue_comment, release, create, delete, fork, star, watch, workflow_run, gollum),
//! spread over 50 repositories, each made unique by its delivery number. `cargo test` builds this bench but does not
//! run it (it is not a test); run it by hand, as above.

#[path = "../tests/support/pynet.rs"]
#[allow(dead_code)]
mod pynet;
#[path = "../tests/support/webhooks.rs"]
mod webhooks;

use std::path::Path;
use std::time::{Duration, Instant};

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
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which is in parentheses and may hold spaces).
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of the whole line: 11 and 12 after the name.
    let cpu = (ticks(11) + ticks(12)) / 100.0;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let peak = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .unwrap_or(0)
        * 1024;
    (cpu, peak)
}

fn du(path: &Path) -> u64 {
    let mut total = 0;
    if let Ok(entries) = std::fs::read_dir(path) {
        for e in entries.flatten() {
            let meta = match e.metadata() {
                Ok(m) => m,
                Err(_) => continue,
            };
            total += if meta.is_dir() {
                du(&e.path())
            } else {
                meta.len()
            };
        }
    }
    total
}

fn run(n: usize) {
    let root = tempfile::tempdir().unwrap();
    let (items, mean_size) = items(n);
    let coordinator = PyNode::coordinator(root.path());
    let started = Instant::now();
    let sensor = PyNode::sensor_with_items(root.path(), &coordinator, &Value::Array(items));
    eprintln!(
        "sensor holds {n} events ({:.0?} to cache them)",
        started.elapsed()
    );
    let sensor_pid = sensor.pid().expect("sensor runs");
    let (sensor_cpu_before, _) = cpu_and_peak(sensor_pid);

    let started = Instant::now();
    // Extra configuration sections for experiments, e.g. CATCHUP_BENCH_CONFIG=$'[storage]\ncache = "16 MiB"'.
    let extra = std::env::var("CATCHUP_BENCH_CONFIG").unwrap_or_default();
    let mut daemon = Daemon::start_quiet(root.path(), &coordinator, "", &extra);
    let pid = daemon.pid().expect("daemon runs");
    daemon.wait_until("every event is indexed", Duration::from_secs(3600), |d| {
        d["events"].as_u64().unwrap_or(0) >= n as u64
    });
    let wall = started.elapsed();
    let (cpu, peak) = cpu_and_peak(pid);
    let (sensor_cpu_after, _) = cpu_and_peak(sensor_pid);
    let sensor_cpu = sensor_cpu_after - sensor_cpu_before;
    let status = daemon
        .terminate(Duration::from_secs(30))
        .expect("stops on SIGTERM");
    assert!(status.success());
    let db = daemon.config.parent().unwrap().join("data").join("db");
    let disk = du(&db);
    let sensor_cache = du(&sensor.dir().join(".rid_cache"));
    println!(
        "catch-up N={n:>6} (mean contents {mean_size} B): wall {:>6.2} s | daemon CPU {:>6.2} s = {:>5.0} µs/event \
         | sensor CPU {:>6.2} s = {:>5.0} µs/event | daemon peak RSS {:>5.1} MB | store {:>7.1} MB = {:>6.0} B/event \
         (sensor cache {:.0} B/event)",
        wall.as_secs_f64(),
        cpu,
        cpu / n as f64 * 1e6,
        sensor_cpu,
        sensor_cpu / n as f64 * 1e6,
        peak as f64 / 1e6,
        disk as f64 / 1e6,
        disk as f64 / n as f64,
        sensor_cache as f64 / n as f64,
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
    for n in sizes.split(',').filter_map(|s| s.trim().parse().ok()) {
        run(n);
    }
}
