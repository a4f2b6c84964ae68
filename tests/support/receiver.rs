//! A real webhook receiver on loopback (warp, on its own thread and runtime), scripted per path: it answers with
//! a status, stays silent past the sender's timeout, or is stopped (the port closed) and started again on the same
//! port. It records every request it gets, with what it answered.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use warp::Filter;

/// How to answer one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    /// This HTTP status.
    Status(u16),
    /// Nothing for this long, then 200 (the sender should have timed out by then).
    Silent(Duration),
}

/// One request received.
#[derive(Debug, Clone)]
pub struct Received {
    /// Path, e.g. `/hook`.
    pub path: String,
    /// Headers, names lower-case.
    pub headers: HashMap<String, String>,
    /// The body as sent.
    pub body: Vec<u8>,
    /// The status answered (`None` when it stayed silent).
    pub answered: Option<u16>,
}

impl Received {
    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }

    /// A header's value.
    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).map(String::as_str).unwrap_or("")
    }
}

#[derive(Default)]
struct Script {
    /// Answers to give first, per path.
    queued: HashMap<String, VecDeque<Reply>>,
    /// The answer after those, per path (200 when unset).
    default: HashMap<String, Reply>,
    received: Vec<Received>,
}

/// The receiver. Stopped when dropped.
pub struct Receiver {
    pub port: u16,
    script: Arc<Mutex<Script>>,
    running: Option<(
        tokio::sync::oneshot::Sender<()>,
        std::thread::JoinHandle<()>,
    )>,
}

impl Receiver {
    /// Starts on a free port.
    pub fn start() -> Receiver {
        let port = super::pynet::free_port();
        let mut receiver = Receiver {
            port,
            script: Arc::new(Mutex::new(Script::default())),
            running: None,
        };
        receiver.resume();
        receiver
    }

    /// `http://127.0.0.1:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Answers the next requests to `path` with `replies`, in order.
    pub fn script(&self, path: &str, replies: &[Reply]) {
        let mut script = self.script.lock().unwrap();
        script
            .queued
            .entry(path.to_owned())
            .or_default()
            .extend(replies.iter().copied());
    }

    /// Answers requests to `path` with `reply` once the scripted ones are used up.
    pub fn always(&self, path: &str, reply: Reply) {
        self.script
            .lock()
            .unwrap()
            .default
            .insert(path.to_owned(), reply);
    }

    /// Every request so far.
    pub fn received(&self) -> Vec<Received> {
        self.script.lock().unwrap().received.clone()
    }

    /// Requests to `path` so far.
    pub fn received_at(&self, path: &str) -> Vec<Received> {
        self.received()
            .into_iter()
            .filter(|r| r.path == path)
            .collect()
    }

    /// Waits (bounded) until `cond(requests)` holds; panics with what was received otherwise.
    pub fn wait_until(&self, what: &str, timeout: Duration, cond: impl Fn(&[Received]) -> bool) {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if cond(&self.received()) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let seen: Vec<String> = self
            .received()
            .iter()
            .map(|r| format!("{} {} {:?}", r.path, r.header("x-koi-delivery"), r.answered))
            .collect();
        panic!(
            "timed out waiting until {what}; received:\n{}",
            seen.join("\n")
        );
    }

    /// Closes the port: senders get "connection refused" until [`Receiver::resume`].
    pub fn stop(&mut self) {
        if let Some((stop, thread)) = self.running.take() {
            let _ = stop.send(());
            let _ = thread.join();
        }
    }

    /// Listens again on the same port.
    pub fn resume(&mut self) {
        let script = Arc::clone(&self.script);
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let route = warp::post()
                    .and(warp::path::full())
                    .and(warp::header::headers_cloned())
                    .and(warp::body::bytes())
                    .then(
                        move |path: warp::path::FullPath,
                              headers: warp::http::HeaderMap,
                              body: bytes::Bytes| {
                            let script = Arc::clone(&script);
                            async move {
                                let path = path.as_str().to_owned();
                                let reply = {
                                    let mut s = script.lock().unwrap();
                                    let next =
                                        s.queued.get_mut(&path).and_then(VecDeque::pop_front);
                                    next.or_else(|| s.default.get(&path).copied())
                                        .unwrap_or(Reply::Status(200))
                                };
                                let record = |answered| Received {
                                    path: path.clone(),
                                    headers: headers
                                        .iter()
                                        .map(|(k, v)| {
                                            (
                                                k.as_str().to_owned(),
                                                v.to_str().unwrap_or("").to_owned(),
                                            )
                                        })
                                        .collect(),
                                    body: body.to_vec(),
                                    answered,
                                };
                                let status = match reply {
                                    Reply::Status(code) => {
                                        script.lock().unwrap().received.push(record(Some(code)));
                                        code
                                    }
                                    Reply::Silent(wait) => {
                                        script.lock().unwrap().received.push(record(None));
                                        tokio::time::sleep(wait).await;
                                        200
                                    }
                                };
                                warp::reply::with_status(
                                    format!("answer {status}"),
                                    warp::http::StatusCode::from_u16(status).unwrap(),
                                )
                            }
                        },
                    );
                let listener = loop {
                    // The port may still be held for a moment after a stop.
                    match tokio::net::TcpListener::bind(addr).await {
                        Ok(listener) => break listener,
                        Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                    }
                };
                let incoming = tokio_stream_listener(listener);
                let server = warp::serve(route).serve_incoming(incoming);
                let _ = ready_tx.send(());
                // Stopping drops the runtime, and with it every connection: the port is closed at once, as when
                // a receiver goes down (a graceful stop would wait for the sender's idle keep-alive connection).
                tokio::select! {
                    _ = server => {}
                    _ = stop_rx => {}
                }
            });
        });
        ready_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("the receiver listens");
        self.running = Some((stop_tx, thread));
    }
}

/// A listener as the stream of connections warp serves.
fn tokio_stream_listener(
    listener: tokio::net::TcpListener,
) -> impl futures::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    futures::stream::unfold(listener, |listener| async move {
        let accepted = listener.accept().await.map(|(socket, _)| socket);
        Some((accepted, listener))
    })
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop();
    }
}
