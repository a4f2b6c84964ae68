//! Real koi-net 2.1.2 nodes (`tests/py/koi_node.py`) and our daemon as child processes on 127.0.0.1.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{py_script, python};

const PASSWORD: &str = "test-password";

/// A free loopback port (bound, then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<_> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// SIGTERM, then SIGKILL after `grace`.
fn terminate(child: &mut Child, grace: Duration) -> Option<std::process::ExitStatus> {
    unsafe_kill(child.id(), "TERM");
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

fn unsafe_kill(pid: u32, signal: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status();
}

/// A koi-net node process.
pub struct PyNode {
    child: Option<Child>,
    args: Vec<String>,
    pub dir: PathBuf,
    pub rid: String,
    pub base_url: String,
    log: PathBuf,
}

impl PyNode {
    fn spawn(args: Vec<String>, dir: PathBuf) -> PyNode {
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("node.log");
        let mut node = PyNode {
            child: None,
            args,
            dir,
            rid: String::new(),
            base_url: String::new(),
            log,
        };
        node.start();
        node
    }

    fn start(&mut self) {
        let _ = std::fs::remove_file(self.dir.join("ready.json"));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(python())
            .arg(py_script("koi_node.py"))
            .args(&self.args)
            .env("PRIV_KEY_PASSWORD", PASSWORD)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start koi_node.py");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(text) = std::fs::read_to_string(self.dir.join("ready.json")) {
                let ready: serde_json::Value = serde_json::from_str(&text).unwrap();
                self.rid = ready["rid"].as_str().unwrap().to_owned();
                self.base_url = ready["base_url"].as_str().unwrap().to_owned();
                return;
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!("koi node exited early ({status}):\n{}", tail(&self.log));
            }
            if Instant::now() > deadline {
                panic!("koi node not ready within 60 s:\n{}", tail(&self.log));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The real coordinator.
    pub fn coordinator(root: &Path) -> PyNode {
        let dir = root.join("coordinator");
        let port = free_port().to_string();
        PyNode::spawn(
            vec![
                "coordinator".into(),
                "--dir".into(),
                dir.display().to_string(),
                "--port".into(),
                port,
            ],
            dir,
        )
    }

    /// A GitHub sensor joined to `coordinator`, emitting `initial` (a JSON list of items) at start.
    pub fn sensor(
        root: &Path,
        coordinator: &PyNode,
        initial: Option<&serde_json::Value>,
    ) -> PyNode {
        let dir = root.join("sensor");
        std::fs::create_dir_all(&dir).unwrap();
        let mut args = vec![
            "sensor".into(),
            "--dir".into(),
            dir.display().to_string(),
            "--port".into(),
            free_port().to_string(),
            "--coordinator-url".into(),
            coordinator.base_url.clone(),
            "--coordinator-rid".into(),
            coordinator.rid.clone(),
            "--spool".into(),
            dir.join("spool").display().to_string(),
        ];
        if let Some(items) = initial {
            let path = dir.join("initial.json");
            std::fs::write(&path, serde_json::to_vec(items).unwrap()).unwrap();
            args.extend(["--initial".into(), path.display().to_string()]);
        }
        PyNode::spawn(args, dir)
    }

    /// Emits items (one or a list) through the sensor's spool, atomically.
    pub fn emit(&self, items: &serde_json::Value) {
        let spool = self.dir.join("spool");
        std::fs::create_dir_all(&spool).unwrap();
        let name = format!(
            "{}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        );
        let tmp = spool.join(format!("{name}.tmp"));
        std::fs::write(&tmp, serde_json::to_vec(items).unwrap()).unwrap();
        std::fs::rename(&tmp, spool.join(format!("{name}.json"))).unwrap();
    }

    /// Stops the process (SIGTERM, then SIGKILL).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            terminate(&mut child, Duration::from_secs(10));
        }
    }

    /// Starts it again with the same directory (same identity, same port).
    pub fn restart(&mut self) {
        self.stop();
        self.start();
    }

    /// The end of its log, for failure messages.
    pub fn log_tail(&self) -> String {
        tail(&self.log)
    }
}

impl Drop for PyNode {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Our daemon as a child process, with its own data dir and API port.
pub struct Daemon {
    child: Option<Child>,
    pub config: PathBuf,
    pub api: String,
    log: PathBuf,
}

impl Daemon {
    /// Writes a config joined to `coordinator` and starts the daemon.
    pub fn start(root: &Path, coordinator: &PyNode) -> Daemon {
        let dir = root.join("indexer");
        std::fs::create_dir_all(&dir).unwrap();
        let port = free_port();
        let config = dir.join("config.toml");
        std::fs::write(
            &config,
            format!(
                "[node]\nname = \"indexer\"\ndata_dir = \"data\"\n\n[first_contact]\nurl = \"{}\"\nrid = \"{}\"\n\n\
                 [poll]\ninterval = \"500ms\"\ntimeout = \"3s\"\nmax_backoff = \"2s\"\n\n[api]\nlisten = \"127.0.0.1:{port}\"\n\n\
                 [log]\nlevel = \"debug\"\n",
                coordinator.base_url, coordinator.rid
            ),
        )
        .unwrap();
        let mut daemon = Daemon {
            child: None,
            config,
            api: format!("127.0.0.1:{port}"),
            log: dir.join("daemon.log"),
        };
        daemon.spawn();
        daemon
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_koi-github-indexer"))
            .args(["run", "--config"])
            .arg(&self.config)
            .env("KOI_KEY_PASSWORD", PASSWORD)
            .env("RUST_LOG", "koi_github_indexer=debug")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start the daemon");
        self.child = Some(child);
    }

    /// GET a path of the API; `None` while it does not answer.
    pub fn get(&self, path: &str) -> Option<serde_json::Value> {
        let mut stream = TcpStream::connect(&self.api).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        write!(stream, "GET {path} HTTP/1.0\r\nHost: {}\r\n\r\n", self.api).ok()?;
        let mut response = String::new();
        stream.read_to_string(&mut response).ok()?;
        let body = response.split("\r\n\r\n").nth(1)?;
        serde_json::from_str(body).ok()
    }

    /// `details` of `/status`.
    pub fn status(&self) -> Option<serde_json::Value> {
        self.get("/api/processor/github/status")
            .map(|s| s["details"].clone())
    }

    /// Waits (bounded) until `cond(status details)` holds; panics with the daemon log otherwise.
    pub fn wait_until(
        &self,
        what: &str,
        timeout: Duration,
        cond: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = Instant::now() + timeout;
        let mut last = serde_json::Value::Null;
        while Instant::now() < deadline {
            if let Some(details) = self.status() {
                if cond(&details) {
                    return details;
                }
                last = details;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!(
            "timed out waiting until {what}; last status: {last}\n--- daemon log ---\n{}",
            tail(&self.log)
        );
    }

    /// SIGKILL: no chance to flush or drain.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM; returns the exit status if it exited within `grace`.
    pub fn terminate(&mut self, grace: Duration) -> Option<std::process::ExitStatus> {
        self.child.take().and_then(|mut c| terminate(&mut c, grace))
    }

    /// Starts again on the same config and data dir.
    pub fn restart(&mut self) {
        self.kill9();
        self.spawn();
    }

    /// The daemon's log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// The GitHubEvent fixture as sensor items `{rid, contents}`.
pub fn fixture_items() -> Vec<serde_json::Value> {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/github-event-contents.json");
    let fixtures: Vec<serde_json::Value> =
        serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    fixtures
        .into_iter()
        .map(|f| {
            serde_json::json!({
                "rid": format!("orn:github.event:{}:{}", f["rid_repo"].as_str().unwrap(), f["event_id"].as_str().unwrap()),
                "contents": f["contents"],
            })
        })
        .collect()
}

/// `n` synthetic push events with ids `<prefix>-<i>`.
pub fn push_items(prefix: &str, n: usize) -> Vec<serde_json::Value> {
    (0..n)
        .map(|i| {
            serde_json::json!({
                "rid": format!("orn:github.event:octo-org/hello-world:{prefix}-{i}"),
                "contents": {
                    "webhook_event_type": "push",
                    "repository": {"full_name": "octo-org/hello-world"},
                    "payload": {"after": format!("{:040x}", i), "head_commit": {"id": format!("{:040x}", i), "message": format!("commit {i}")}},
                },
            })
        })
        .collect()
}
