//! `scripts/demo.sh` end to end, as a new user runs it: it starts the real koi-net coordinator and sensor and the
//! daemon, prints its ready block (the dashboard's URL, the commands to try with the `--config` they need, how to
//! stop) only once `/health` answers and the first catch-up is indexed, and stops everything cleanly on Ctrl+C.
//! The test runs the binary cargo built for it (`KOI_INDEXER_BIN`) rather than a release build, on free ports and in
//! a temp dir.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use support::pynet::free_port;

fn get(port: u16, path: &str) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    Some(response.split_once("\r\n\r\n")?.1.to_owned())
}

#[test]
fn the_demo_says_when_it_is_ready_and_stops_cleanly_on_ctrl_c() {
    let dir = tempfile::tempdir().unwrap();
    let (coordinator, sensor, api) = (free_port(), free_port(), free_port());
    let repo = env!("CARGO_MANIFEST_DIR");
    let mut child = Command::new("bash")
        .arg(format!("{repo}/scripts/demo.sh"))
        .env("DEMO_DIR", dir.path())
        .env("DEMO_COORDINATOR_PORT", coordinator.to_string())
        .env("DEMO_SENSOR_PORT", sensor.to_string())
        .env("DEMO_API_PORT", api.to_string())
        .env("KOI_INDEXER_BIN", env!("CARGO_BIN_EXE_koi-github-indexer"))
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run scripts/demo.sh");
    let (tx, lines) = mpsc::channel::<String>();
    let stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut seen: Vec<String> = Vec::new();
    let mut ready_at = None;
    let deadline = Instant::now() + Duration::from_secs(180);
    while Instant::now() < deadline {
        let Ok(line) = lines.recv_timeout(Duration::from_secs(1)) else {
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "the demo exited ({status}) before it was ready:\n{}",
                    seen.join("\n")
                );
            }
            continue;
        };
        if line.starts_with("demo: ready") {
            // The block comes after /health answers and the catch-up is indexed: both hold the moment it shows.
            assert!(
                get(api, "/api/processor/github/health").is_some(),
                "/health answers"
            );
            let status = get(api, "/api/processor/github/status").unwrap();
            let status: serde_json::Value = serde_json::from_str(&status).unwrap();
            assert_eq!(status["details"]["events"], 8, "{status}");
            ready_at = Some(seen.len());
        }
        seen.push(line);
        if ready_at.is_some()
            && seen
                .last()
                .is_some_and(|l| l.trim_start().starts_with("Stop:"))
        {
            break;
        }
    }
    let ready_at = ready_at.unwrap_or_else(|| panic!("no ready block:\n{}", seen.join("\n")));
    let block = seen[ready_at..].join("\n");
    assert!(block.contains("8 events from 2 repositories"), "{block}");
    assert!(
        block.contains(&format!("Dashboard:  http://127.0.0.1:{api}/")),
        "{block}"
    );
    let config = format!("--config {}/config.toml", dir.path().display());
    for command in ["list-repos", "show-events octo-org/hello-world"] {
        assert!(
            block.contains(&format!("{command} {config}")),
            "{command} in\n{block}"
        );
    }
    assert!(
        block.contains(&format!(
            "curl -s http://127.0.0.1:{api}/api/processor/github/status"
        )),
        "{block}"
    );
    assert!(block.contains("Ctrl+C"), "{block}");
    let before_ready = seen[..ready_at].join("\n");
    assert!(
        before_ready.contains("demo: starting koi-github-indexer"),
        "each stage says what it does:\n{before_ready}"
    );
    assert!(
        !before_ready.contains(" WARN "),
        "a normal start logs no warning:\n{before_ready}"
    );

    // Ctrl+C: the script stops the three processes and exits 0.
    // SAFETY: kill(2) on our own child's pid.
    assert_eq!(
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) },
        0
    );
    let stop_deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < stop_deadline,
            "the demo did not stop within 30 s of Ctrl+C"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    reader.join().unwrap();
    let after: Vec<String> = lines.try_iter().collect();
    let after = after.join("\n");
    assert!(status.success(), "{status}:\n{after}");
    assert!(
        after.contains("stopped cleanly"),
        "the daemon shut down gracefully:\n{after}"
    );
    assert!(after.contains("demo: stopped"), "{after}");
    for port in [coordinator, sensor, api] {
        assert!(
            TcpStream::connect(("127.0.0.1", port)).is_err(),
            "nothing listens on :{port} any more"
        );
    }
}
