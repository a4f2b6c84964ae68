#![allow(dead_code)] // each test binary that includes this file uses a part of it
//! Headless Chromium (Debian's package) driven over the DevTools protocol, for the dashboard's browser test.
//!
//! [`Browser::launch`] installs Chromium with `apt-get` when `/usr/bin/chromium` is missing, starts it with the
//! flags this closed network needs, and opens one page. [`Page`] navigates, evaluates JavaScript, takes
//! screenshots, and collects every console error, uncaught exception and browser log error (which includes
//! Content-Security-Policy violations and failed loads).

use std::collections::HashMap;
use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{SinkExt as _, StreamExt as _};
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;

const CHROMIUM: &str = "/usr/bin/chromium";

/// Installs Chromium from Debian's packages when it is missing (about 25 s).
fn ensure_chromium() {
    if Path::new(CHROMIUM).exists() {
        return;
    }
    eprintln!("{CHROMIUM} is missing: installing Debian's chromium package");
    let status = Command::new("apt-get")
        .args(["install", "-y", "--no-install-recommends", "chromium"])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .expect("run apt-get");
    if !status.success() {
        let _ = Command::new("apt-get").arg("update").status();
        let status = Command::new("apt-get")
            .args(["install", "-y", "--no-install-recommends", "chromium"])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .expect("run apt-get");
        assert!(
            status.success(),
            "could not install Chromium: run `apt-get install chromium` as root"
        );
    }
}

pub struct Browser {
    child: Child,
    _profile: tempfile::TempDir,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One message from the browser that is not the answer to a command.
pub type CdpEvent = Value;

pub struct Page {
    commands: mpsc::UnboundedSender<Message>,
    pending: Arc<Mutex<HashMap<u64, oneshot::Sender<Value>>>>,
    events: Arc<Mutex<Vec<CdpEvent>>>,
    session: String,
    next_id: u64,
}

impl Browser {
    /// Starts headless Chromium and opens a blank page in it.
    pub async fn launch() -> (Browser, Page) {
        Browser::launch_with(&[]).await
    }

    /// [`Browser::launch`] with extra command-line flags (e.g. `--host-resolver-rules=…`).
    pub async fn launch_with(flags: &[&str]) -> (Browser, Page) {
        ensure_chromium();
        let profile = tempfile::tempdir().expect("profile dir");
        let mut child = Command::new(CHROMIUM)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-dev-shm-usage",
                "--hide-scrollbars",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
            ])
            .args(flags)
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start chromium");
        // It prints its DevTools address on stderr.
        let stderr = child.stderr.take().expect("stderr");
        let (found_tx, found_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(at) = line.find("ws://") {
                    let _ = found_tx.send(line[at..].trim().to_owned());
                }
            }
        });
        let url = found_rx
            .recv_timeout(Duration::from_secs(30))
            .expect("Chromium prints its DevTools address within 30 s");
        let (socket, _) = tokio_tungstenite::connect_async(url.as_str())
            .await
            .expect("connect to DevTools");
        let (mut sink, mut stream) = socket.split();
        let (commands, mut outgoing) = mpsc::unbounded_channel::<Message>();
        tokio::spawn(async move {
            while let Some(message) = outgoing.recv().await {
                if sink.send(message).await.is_err() {
                    break;
                }
            }
        });
        let pending: Arc<Mutex<HashMap<u64, oneshot::Sender<Value>>>> = Arc::default();
        let events: Arc<Mutex<Vec<CdpEvent>>> = Arc::default();
        let (p, e) = (Arc::clone(&pending), Arc::clone(&events));
        tokio::spawn(async move {
            while let Some(Ok(message)) = stream.next().await {
                let Ok(text) = message.to_text() else {
                    continue;
                };
                let Ok(value) = serde_json::from_str::<Value>(text) else {
                    continue;
                };
                if let Some(id) = value["id"].as_u64() {
                    if let Some(answer) = p.lock().unwrap().remove(&id) {
                        let _ = answer.send(value);
                    }
                } else {
                    e.lock().unwrap().push(value);
                }
            }
        });
        let mut page = Page {
            commands,
            pending,
            events,
            session: String::new(),
            next_id: 0,
        };
        let target = page
            .command("Target.createTarget", json!({"url": "about:blank"}))
            .await;
        let attached = page
            .command(
                "Target.attachToTarget",
                json!({"targetId": target["targetId"], "flatten": true}),
            )
            .await;
        page.session = attached["sessionId"]
            .as_str()
            .expect("a session")
            .to_owned();
        for domain in ["Runtime.enable", "Log.enable", "Page.enable"] {
            page.command(domain, json!({})).await;
        }
        (
            Browser {
                child,
                _profile: profile,
            },
            page,
        )
    }
}

impl Page {
    /// Sends a command (to the page once attached) and waits for its result; panics on a protocol error.
    pub async fn command(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut message = json!({"id": id, "method": method, "params": params});
        if !self.session.is_empty() {
            message["sessionId"] = self.session.clone().into();
        }
        let (tx, rx) = oneshot::channel();
        self.pending.lock().unwrap().insert(id, tx);
        self.commands
            .send(Message::text(message.to_string()))
            .expect("DevTools connection");
        let answer = tokio::time::timeout(Duration::from_secs(30), rx)
            .await
            .unwrap_or_else(|_| panic!("{method}: no answer in 30 s"))
            .expect("answer");
        assert!(answer["error"].is_null(), "{method}: {}", answer["error"]);
        answer["result"].clone()
    }

    /// Opens `url` and waits until it has loaded.
    pub async fn goto(&mut self, url: &str) {
        self.command("Page.navigate", json!({"url": url})).await;
        self.wait_until(
            "the page has loaded",
            Duration::from_secs(30),
            "document.readyState === 'complete'",
            "document.readyState",
        )
        .await;
    }

    /// The value of a JavaScript expression (awaited if it is a promise); panics if it throws.
    pub async fn eval(&mut self, expression: &str) -> Value {
        let result = self
            .command(
                "Runtime.evaluate",
                json!({"expression": expression, "returnByValue": true, "awaitPromise": true}),
            )
            .await;
        assert!(
            result["exceptionDetails"].is_null(),
            "{expression}: {}",
            result["exceptionDetails"]
        );
        result["result"]["value"].clone()
    }

    /// Polls the JavaScript expression `condition` every 100 ms until it is true; panics with `what` and the
    /// expression `show`'s value after `timeout`.
    pub async fn wait_until(&mut self, what: &str, timeout: Duration, condition: &str, show: &str) {
        let deadline = tokio::time::Instant::now() + timeout;
        while self.eval(condition).await != Value::Bool(true) {
            if tokio::time::Instant::now() >= deadline {
                let shown = self.eval(show).await;
                panic!("timed out after {timeout:?} waiting until {what}: {shown}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// A PNG of the whole page at `width` CSS pixels (`mobile` emulates a phone).
    pub async fn screenshot(&mut self, width: u32, mobile: bool) -> Vec<u8> {
        use base64::Engine as _;
        let metrics = |height: u64| json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile});
        self.command("Emulation.setDeviceMetricsOverride", metrics(800))
            .await;
        // Let the page lay itself out (and the charts redraw) at that width.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let height = self
            .eval("document.documentElement.scrollHeight")
            .await
            .as_u64()
            .unwrap_or(800);
        self.command("Emulation.setDeviceMetricsOverride", metrics(height))
            .await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let shot = self
            .command("Page.captureScreenshot", json!({"format": "png"}))
            .await;
        base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().expect("PNG data"))
            .expect("base64")
    }

    /// Every console error, uncaught exception and browser log error so far, as text.
    pub fn errors(&self) -> Vec<String> {
        self.events
            .lock()
            .unwrap()
            .iter()
            .filter_map(|event| {
                let params = &event["params"];
                match event["method"].as_str()? {
                    "Runtime.consoleAPICalled"
                        if matches!(params["type"].as_str(), Some("error" | "assert")) =>
                    {
                        Some(format!("console: {}", params["args"]))
                    }
                    "Runtime.exceptionThrown" => {
                        Some(format!("exception: {}", params["exceptionDetails"]))
                    }
                    "Log.entryAdded" if params["entry"]["level"] == "error" => Some(format!(
                        "log: {} {}",
                        params["entry"]["text"], params["entry"]["url"]
                    )),
                    _ => None,
                }
            })
            .collect()
    }
}
