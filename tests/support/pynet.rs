//! The real Python koi-net 2.1.2 peers (`tests/py/`), run as child processes on 127.0.0.1 for integration tests,
//! and `koi_tool.py` (keys and envelopes done by koi-net itself). See `tests/py/README.md`.
//!
//! Everything here waits with a bound and panics with the node's log tail when something does not come up; every
//! child process is killed when its handle drops (also while a test panics, when the log tails are printed too).

use std::ffi::OsString;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// `PRIV_KEY_PASSWORD` given to the Python nodes (and the key password the daemon gets).
pub const PASSWORD: &str = "test-password";
/// How long a node may take to come up (a sensor: to serve and join the coordinator). A join takes about 1.5 s.
pub const READY_TIMEOUT: Duration = Duration::from_secs(75);
/// [`READY_TIMEOUT`], or `KOI_READY_TIMEOUT_S` seconds (benchmarks whose sensor caches tens of thousands of items
/// before it is ready).
fn ready_timeout() -> Duration {
    std::env::var("KOI_READY_TIMEOUT_S")
        .ok()
        .and_then(|s| s.parse().ok())
        .map_or(READY_TIMEOUT, Duration::from_secs)
}

/// The sensor's own limit for joining (it exits 2 past it); shorter than [`READY_TIMEOUT`] so its reason is seen.
const SENSOR_JOIN_TIMEOUT_S: &str = "60";
/// SIGTERM grace before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// The koi-net virtual environment: `$KOI_VENV`, or `<repo>/.venv`.
pub fn venv() -> PathBuf {
    std::env::var_os("KOI_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv"))
}

/// The venv's Python. Panics, loudly and with the fix, when it is missing: these tests prove interoperability with
/// the real library and must not pass silently without it.
pub fn python() -> PathBuf {
    let venv = venv();
    let python = venv.join("bin/python");
    if !python.exists() {
        panic!(
            "\n\n*** Python koi-net venv not found at {}: run scripts/setup-python.sh (tests/py/README.md and the \
             README explain; KOI_VENV overrides the location).\n\n",
            venv.display()
        );
    }
    python
}

/// Path of a script under `tests/py/`.
pub fn py_script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/py")
        .join(name)
}

/// Runs `koi_tool.py ARGS` with exactly `env` added (an inherited `PRIV_KEY_PASSWORD` is removed first, so a
/// test sees only what it passes); returns the raw output, for negative tests.
pub fn koi_tool_output(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(python());
    cmd.arg(py_script("koi_tool.py"))
        .args(args)
        .env_remove("PRIV_KEY_PASSWORD")
        .stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run tests/py/koi_tool.py")
}

/// Runs `koi_tool.py` and returns its stdout line exactly as printed (e.g. a signed envelope in koi-net's own
/// serialisation, byte for byte). Panics with stderr when it fails.
pub fn koi_tool_text(args: &[&str], env: &[(&str, &str)]) -> String {
    let out = koi_tool_output(args, env);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "koi_tool {args:?} failed ({}):\nstderr: {}\nstdout: {stdout}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout.trim_end_matches(['\n', '\r']).to_owned()
}

/// Runs `koi_tool.py` and parses its JSON output. Panics with stderr when it fails.
pub fn koi_tool(args: &[&str], env: &[(&str, &str)]) -> serde_json::Value {
    let text = koi_tool_text(args, env);
    serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("koi_tool {args:?}: not JSON ({e}): {text}"))
}

/// A free loopback port (bound to 127.0.0.1:0, then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn accepts(port: u16) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    TcpStream::connect_timeout(&addr, Duration::from_millis(300)).is_ok()
}

/// The last `n` lines of a text file, without terminal colour codes (koi-net's console log is coloured).
pub fn tail_file(path: &Path, n: usize) -> String {
    tail_file_where(path, n, |_| true)
}

/// The last `n` lines of a file that `keep` keeps (e.g. a daemon log without its DEBUG lines, so that a failure
/// shows what the node did, not only its last seconds of polls).
pub fn tail_file_where(path: &Path, n: usize, keep: impl Fn(&str) -> bool) -> String {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| format!("({}: {e})", path.display()));
    let lines: Vec<&str> = text.lines().filter(|l| keep(&strip_ansi(l))).collect();
    strip_ansi(&lines[lines.len().saturating_sub(n)..].join("\n"))
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' && chars.peek() == Some(&'[') {
            chars.next();
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// SIGTERM, then SIGKILL once `grace` has passed. Returns the exit status when it exited on SIGTERM.
fn terminate(child: &mut Child, grace: Duration) -> Option<ExitStatus> {
    if let Ok(Some(status)) = child.try_wait() {
        return Some(status);
    }
    // std has no signal API; kill(1) is in every base system.
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .stderr(Stdio::null())
        .status();
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

/// A fresh directory `<root>/<base>`, `<root>/<base>-2`, ... so several nodes of one kind can share a root.
fn unique_dir(root: &Path, base: &str) -> PathBuf {
    (1..)
        .map(|i| {
            if i == 1 {
                root.join(base)
            } else {
                root.join(format!("{base}-{i}"))
            }
        })
        .find(|p| !p.exists())
        .unwrap()
}

/// A real koi-net node process: `tests/py/coordinator.py` or `tests/py/sensor.py`.
pub struct PyNode {
    child: Option<Child>,
    role: &'static str,
    args: Vec<OsString>,
    dir: PathBuf,
    port: u16,
    rid: String,
    base_url: String,
    log: PathBuf,
    spool: Option<PathBuf>,
}

impl PyNode {
    /// Starts the coordinator in a new directory under `root` on a free port; returns once it serves.
    pub fn coordinator(root: &Path) -> PyNode {
        let dir = unique_dir(root, "coordinator");
        let port = free_port();
        let args = vec![
            "--port".into(),
            port.to_string().into(),
            "--dir".into(),
            dir.clone().into(),
        ];
        PyNode::launch("coordinator", "coordinator.py", args, dir, port, None)
    }

    /// Starts a GitHub sensor (first contact: `coordinator`) in a new directory under `root`; returns once it
    /// serves and has joined the coordinator. `initial` is a JSON file of items it emits right after joining
    /// (already in its cache when this returns).
    pub fn sensor(root: &Path, coordinator: &PyNode, initial: Option<&Path>) -> PyNode {
        let dir = unique_dir(root, "sensor");
        let port = free_port();
        let spool = dir.join("spool");
        let mut args: Vec<OsString> = vec![
            "--port".into(),
            port.to_string().into(),
            "--dir".into(),
            dir.clone().into(),
            "--coordinator-url".into(),
            coordinator.base_url.clone().into(),
            "--coordinator-rid".into(),
            coordinator.rid.clone().into(),
            "--spool".into(),
            spool.clone().into(),
            "--join-timeout".into(),
            SENSOR_JOIN_TIMEOUT_S.into(),
        ];
        if let Some(path) = initial {
            args.extend(["--initial".into(), path.as_os_str().to_owned()]);
        }
        PyNode::launch("sensor", "sensor.py", args, dir, port, Some(spool))
    }

    /// [`PyNode::sensor`] with the initial items given as JSON (an item or a list), written to a file for it.
    pub fn sensor_with_items(
        root: &Path,
        coordinator: &PyNode,
        items: &serde_json::Value,
    ) -> PyNode {
        std::fs::create_dir_all(root).unwrap();
        let file = tempfile::Builder::new()
            .prefix("initial-")
            .suffix(".json")
            .tempfile_in(root)
            .unwrap();
        std::fs::write(file.path(), serde_json::to_vec(items).unwrap()).unwrap();
        let (_, path) = file.keep().unwrap();
        PyNode::sensor(root, coordinator, Some(&path))
    }

    fn launch(
        role: &'static str,
        script: &str,
        mut args: Vec<OsString>,
        dir: PathBuf,
        port: u16,
        spool: Option<PathBuf>,
    ) -> PyNode {
        std::fs::create_dir_all(&dir).unwrap();
        args.insert(0, py_script(script).into());
        let mut node = PyNode {
            child: None,
            role,
            args,
            log: dir.join("node.log"),
            dir,
            port,
            rid: String::new(),
            base_url: String::new(),
            spool,
        };
        node.start();
        node
    }

    /// Spawns the process and waits (bounded) until it is ready: `rid.txt` written (the sensor writes it only
    /// once joined) and its port accepting connections.
    fn start(&mut self) {
        assert!(self.child.is_none(), "{} already running", self.role);
        for f in ["rid.txt", "ready.json"] {
            let _ = std::fs::remove_file(self.dir.join(f));
        }
        let mut log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let _ = writeln!(
            log,
            "===== harness: starting {} on port {} =====",
            self.role, self.port
        );
        let child = Command::new(python())
            .args(&self.args)
            .env("PRIV_KEY_PASSWORD", PASSWORD)
            .env("PYTHONUNBUFFERED", "1")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {} ({:?}): {e}", self.role, self.args));
        self.child = Some(child);

        let deadline = Instant::now() + ready_timeout();
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.child = None;
                panic!(
                    "koi-net {} exited before it was ready ({status}); log {}:\n{}",
                    self.role,
                    self.log.display(),
                    self.log_tail()
                );
            }
            if self.dir.join("rid.txt").exists() {
                let ready: serde_json::Value = serde_json::from_slice(
                    &std::fs::read(self.dir.join("ready.json")).expect("ready.json beside rid.txt"),
                )
                .expect("ready.json is JSON");
                let port = ready["port"].as_u64().unwrap() as u16;
                if port != self.port {
                    panic!(
                        "koi-net {} serves on port {port}, not {} (koi-net's PortManager moves to the next free \
                         port when its own is taken)\n{}",
                        self.role,
                        self.port,
                        self.log_tail()
                    );
                }
                if accepts(self.port) {
                    let rid = std::fs::read_to_string(self.dir.join("rid.txt")).unwrap();
                    self.rid = rid.trim().to_owned();
                    self.base_url = ready["base_url"].as_str().unwrap().to_owned();
                    return;
                }
            }
            if Instant::now() > deadline {
                panic!(
                    "koi-net {} not ready within {:?} (dir {}); log:\n{}",
                    self.role,
                    ready_timeout(),
                    self.dir.display(),
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The node RID, `orn:koi-net.node:<name>+<sha256 hex of its public key>`.
    pub fn rid(&self) -> &str {
        &self.rid
    }

    /// `http://127.0.0.1:<port>/koi-net`.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Its working directory: config.yaml, priv_key.pem, .rid_cache/, log.ndjson (koi-net's JSON log), node.log.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The process's stdout+stderr (koi-net's console log and the harness's own lines), across restarts.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether the process is alive.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Hands items (`{"rid", "contents"}` or `{"rid", "forget": true}`, one or a JSON list) to the sensor: written
    /// as `<n>.tmp` in its spool and renamed to `<n>.json` (atomic), picked up within ~0.2 s.
    pub fn emit(&self, items: &serde_json::Value) -> PathBuf {
        let spool = self.spool.as_ref().expect("emit() is for sensors");
        std::fs::create_dir_all(spool).unwrap();
        let stamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let tmp = spool.join(format!("{stamp:020}.tmp"));
        let done = spool.join(format!("{stamp:020}.json"));
        std::fs::write(&tmp, serde_json::to_vec(items).unwrap()).unwrap();
        std::fs::rename(&tmp, &done).unwrap();
        done
    }

    /// Waits (bounded) until every spool file has been handed to koi-net (renamed `.done`). Panics with the log
    /// when one failed (`.failed`) or the time is up.
    pub fn wait_emitted(&self, timeout: Duration) {
        let spool = self.spool.as_ref().expect("wait_emitted() is for sensors");
        let deadline = Instant::now() + timeout;
        loop {
            let names: Vec<String> = std::fs::read_dir(spool)
                .map(|d| {
                    d.filter_map(|e| e.ok())
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .collect()
                })
                .unwrap_or_default();
            if let Some(bad) = names.iter().find(|n| n.ends_with(".failed")) {
                panic!("sensor could not emit {bad}:\n{}", self.log_tail());
            }
            if !names.iter().any(|n| n.ends_with(".json")) {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "sensor did not pick up its spool files within {timeout:?}:\n{}",
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the process: SIGTERM (koi-net stops its components, flushing webhook buffers), SIGKILL after 10 s.
    /// Returns the exit status when it exited by itself.
    pub fn stop(&mut self) -> Option<ExitStatus> {
        self.child
            .take()
            .and_then(|mut c| terminate(&mut c, STOP_GRACE))
    }

    /// SIGKILL: no shutdown at all.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Stops it (if running) and starts it again: same directory, so the same key and RID, on the same port.
    /// Returns once it is ready again (a sensor: joined). Panics if the identity changed.
    pub fn restart(&mut self) {
        let before = self.rid.clone();
        self.stop();
        // koi-net's PortManager would move to the next port while ours still answers: wait until it is free.
        let deadline = Instant::now() + Duration::from_secs(10);
        while accepts(self.port) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        self.start();
        assert_eq!(
            self.rid,
            before,
            "{} came back with another identity\n{}",
            self.role,
            self.log_tail()
        );
    }

    /// The end of its logs (console log, then koi-net's JSON log), for failure messages.
    pub fn log_tail(&self) -> String {
        format!(
            "--- {} {} (last 40 lines) ---\n{}\n--- {} log.ndjson (last 15 lines) ---\n{}",
            self.role,
            self.log.display(),
            tail_file(&self.log, 40),
            self.role,
            tail_file(&self.dir.join("log.ndjson"), 15),
        )
    }
}

impl Drop for PyNode {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("\n{}\n", self.log_tail());
        }
        self.kill();
    }
}

/// Our daemon as a child process, with its own data dir and API port.
pub struct Daemon {
    child: Option<Child>,
    pub config: PathBuf,
    pub api: String,
    log: PathBuf,
    rust_log: String,
    /// Variables set for the daemon besides the key password and RUST_LOG (an API token, a secret).
    env: Vec<(String, String)>,
    /// The API token the daemon requires (`KOI_API_TOKEN` in `env`), sent by [`Daemon::get`] and friends.
    pub token: Option<String>,
}

impl Daemon {
    /// [`Daemon::start_with`], with `api_keys` (TOML lines) added to the `[api]` section and these variables in
    /// the daemon's environment.
    pub fn start_with_env(
        root: &Path,
        coordinator: &PyNode,
        api_keys: &str,
        extra: &str,
        env: &[(&str, &str)],
    ) -> Daemon {
        Daemon::launch_with_env(root, coordinator, "", api_keys, extra, "debug", env)
    }

    /// Writes a config joined to `coordinator` and starts the daemon.
    pub fn start(root: &Path, coordinator: &PyNode) -> Daemon {
        Daemon::start_with(root, coordinator, "")
    }

    /// [`Daemon::start`] with `extra` TOML appended to the config (whole sections, e.g. `[index]\nretention = …`).
    pub fn start_with(root: &Path, coordinator: &PyNode, extra: &str) -> Daemon {
        Daemon::start_configured(root, coordinator, "", extra)
    }

    /// [`Daemon::start_with`], with `poll_keys` (TOML lines) added to the `[poll]` section.
    pub fn start_configured(
        root: &Path,
        coordinator: &PyNode,
        poll_keys: &str,
        extra: &str,
    ) -> Daemon {
        Daemon::launch(root, coordinator, poll_keys, extra, "debug")
    }

    /// [`Daemon::start_configured`] logging at info only, as in production (benchmarks).
    pub fn start_quiet(root: &Path, coordinator: &PyNode, poll_keys: &str, extra: &str) -> Daemon {
        Daemon::launch(root, coordinator, poll_keys, extra, "info")
    }

    fn launch(
        root: &Path,
        coordinator: &PyNode,
        poll_keys: &str,
        extra: &str,
        level: &str,
    ) -> Daemon {
        Daemon::launch_with_env(root, coordinator, poll_keys, "", extra, level, &[])
    }

    fn launch_with_env(
        root: &Path,
        coordinator: &PyNode,
        poll_keys: &str,
        api_keys: &str,
        extra: &str,
        level: &str,
        env: &[(&str, &str)],
    ) -> Daemon {
        let dir = root.join("indexer");
        std::fs::create_dir_all(&dir).unwrap();
        let port = free_port();
        let config = dir.join("config.toml");
        // Test defaults for [poll], unless `poll_keys` sets the key itself.
        let poll_defaults: String = [
            ("interval", "\"500ms\""),
            ("timeout", "\"3s\""),
            ("max_backoff", "\"2s\""),
        ]
        .iter()
        .filter(|(key, _)| {
            !poll_keys
                .lines()
                .any(|l| l.split('=').next().is_some_and(|k| k.trim() == *key))
        })
        .map(|(key, value)| format!("{key} = {value}\n"))
        .collect();
        std::fs::write(
            &config,
            format!(
                "[node]\nname = \"indexer\"\ndata_dir = \"data\"\n\n[first_contact]\nurl = \"{}\"\nrid = \"{}\"\n\n\
                 [poll]\n{poll_defaults}{poll_keys}\n\n[api]\nlisten = \"127.0.0.1:{port}\"\n{api_keys}\n\
                 [log]\nlevel = \"{level}\"\n\n{extra}",
                coordinator.base_url(),
                coordinator.rid()
            ),
        )
        .unwrap();
        let mut daemon = Daemon {
            child: None,
            config,
            api: format!("127.0.0.1:{port}"),
            log: dir.join("daemon.log"),
            rust_log: format!("koi_github_indexer={level}"),
            env: env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            token: env
                .iter()
                .find(|(k, _)| *k == "KOI_API_TOKEN")
                .map(|(_, v)| (*v).to_owned()),
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
        let mut command = match std::env::var_os("KOI_DAEMON_WRAPPER") {
            Some(wrapper) => {
                let mut c = Command::new(wrapper);
                c.arg(env!("CARGO_BIN_EXE_koi-github-indexer"));
                c
            }
            None => Command::new(env!("CARGO_BIN_EXE_koi-github-indexer")),
        };
        let child = command
            .args(["run", "--config"])
            .arg(&self.config)
            .env("KOI_KEY_PASSWORD", PASSWORD)
            .env("RUST_LOG", &self.rust_log)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start the daemon");
        self.child = Some(child);
    }

    /// GET a path of the API; `None` while it does not answer.
    pub fn get(&self, path: &str) -> Option<serde_json::Value> {
        serde_json::from_str(&self.get_text(path)?).ok()
    }

    /// GET a path of the API, the body as text; `None` while it does not answer.
    pub fn get_text(&self, path: &str) -> Option<String> {
        let mut stream = TcpStream::connect(&self.api).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        let auth = self
            .token
            .as_ref()
            .map(|t| format!("Authorization: Bearer {t}\r\n"))
            .unwrap_or_default();
        write!(
            stream,
            "GET {path} HTTP/1.0\r\nHost: {}\r\n{auth}\r\n",
            self.api
        )
        .ok()?;
        let mut response = String::new();
        stream.read_to_string(&mut response).ok()?;
        Some(response.split_once("\r\n\r\n")?.1.to_owned())
    }

    /// The sum of a metric's series in `GET /metrics` whose line contains every one of `labels`; 0 if none.
    pub fn metric(&self, name: &str, labels: &[&str]) -> f64 {
        self.get_text("/metrics")
            .unwrap_or_default()
            .lines()
            .filter(|l| {
                l.strip_prefix(name)
                    .is_some_and(|rest| rest.starts_with([' ', '{']))
            })
            .filter(|l| labels.iter().all(|label| l.contains(label)))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
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
            "timed out waiting until {what}; last status: {last}\n--- daemon log, info and above (last 40 \
             lines) ---\n{}\n--- daemon log ---\n{}",
            tail_file_where(&self.log, 40, |line| !line.contains(" DEBUG ")
                && !line.contains(" TRACE ")),
            tail_file(&self.log, 40)
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
    pub fn terminate(&mut self, grace: Duration) -> Option<ExitStatus> {
        self.child.take().and_then(|mut c| terminate(&mut c, grace))
    }

    /// Starts again on the same config and data dir.
    pub fn restart(&mut self) {
        self.kill9();
        self.spawn();
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The daemon's log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "\n--- daemon log (last 40 lines) ---\n{}\n",
                tail_file(&self.log, 40)
            );
        }
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
