//! Serving the routes: our own accept loop around hyper, so that slow, idle or numerous clients cannot wear the
//! daemon down.
//!
//! warp's `serve` hands every accepted socket to hyper with no deadline for the request head, no idle timeout and
//! no limit on connections: 20,000 half-sent requests used up the file limit and left `/health` unanswered
//! (issue 11). Here each connection carries an [`Activity`] record that its socket and its requests keep up to
//! date, and a watchdog closes it when:
//! - its client takes longer than `api.header_timeout` to send a request head (counted from the connection's
//!   start, or from the first byte of each later request), or
//! - nothing has moved either way for `api.idle_timeout` (a live stream's keep-alive comments count as traffic).
//!
//! At most `api.max_connections` are open. At the cap, the oldest connection that has not yet sent one whole
//! request is closed to make room, so slow clients cannot lock out a quick one; when every connection is busy the
//! new one gets a 503.
//!
//! hyper answers requests it cannot parse (400, 414, 431) by itself, with an empty body and no content type, and
//! offers no hook to change that. [`TrackedIo`] recognises those heads as hyper writes them and sends the API's
//! JSON error shape instead.

use std::collections::{BTreeSet, HashMap};
use std::convert::Infallible;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{ready, Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use warp::hyper;

use super::guard::{Guard, Refusal};
use super::route::template_of;
use super::{routes, ApiContext};
use crate::telemetry::{
    ApiConnectionClosed, ApiConnections, ApiRequestRefused, ConnectionClose, Metrics,
};

/// The largest request head (request line and headers) read: beyond it (give or take one 16 KiB read) the client
/// gets a 431.
pub const MAX_REQUEST_HEAD: usize = 64 * 1024;

/// The most bytes handed to hyper per read, so that its head-size check (made between reads) holds within this.
const MAX_READ: usize = 16 * 1024;

/// How long open connections get to finish after a shutdown starts before they are dropped.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// The `[api]` limits on connections.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// Longest a client may take to send a request head.
    pub header_timeout: Duration,
    /// Longest a connection may go with nothing sent either way.
    pub idle_timeout: Duration,
    /// Most connections open at once.
    pub max_connections: usize,
}

impl From<&crate::config::ApiConfig> for ConnectionLimits {
    fn from(api: &crate::config::ApiConfig) -> Self {
        ConnectionLimits {
            header_timeout: api.header_timeout,
            idle_timeout: api.idle_timeout,
            max_connections: api.max_connections,
        }
    }
}

/// Serves the API on `listener` until `shutdown` is cancelled, then lets open requests finish (a few seconds at
/// most) and returns.
pub async fn serve(
    listener: TcpListener,
    ctx: ApiContext,
    limits: ConnectionLimits,
    shutdown: CancellationToken,
) {
    let metrics = ctx.metrics.clone();
    // The guard needs the address actually bound (port 0 picks one), which only the listener knows.
    let guard = match listener.local_addr() {
        Ok(addr) => Arc::new(Guard::new(
            addr,
            &ctx.access.allowed_hosts,
            ctx.access.token.as_deref(),
        )),
        Err(e) => {
            tracing::error!(target: "koi_github_indexer::api", error = %e, "cannot read the API's own address");
            return;
        }
    };
    let service = warp::service(routes(ctx));
    let mut http = hyper::server::conn::Http::new();
    http.http1_only(true).max_buf_size(MAX_REQUEST_HEAD);
    let tracker = Arc::new(Tracker::new(limits.max_connections));
    let tasks = TaskTracker::new();
    let mut out_of_files = RateLimitedWarning::default();
    loop {
        let stream = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => stream,
                Err(e) => {
                    // Usually EMFILE: out of file descriptors. Retrying at once would spin; the watchdogs and the
                    // cap free descriptors soon.
                    out_of_files.warn(&e);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let Some(admitted) = tracker.admit(&metrics) else {
            tasks.spawn(refuse(stream, metrics.clone()));
            continue;
        };
        let connection = ConnectionTask {
            admitted,
            guard: Arc::clone(&guard),
            tracker: Arc::clone(&tracker),
            limits,
            metrics: metrics.clone(),
            shutdown: shutdown.clone(),
        };
        tasks.spawn(connection.run(stream, service.clone(), http.clone()));
    }
    tasks.close();
    tasks.wait().await;
}

/// One admitted connection and what it needs to run and to end.
struct ConnectionTask {
    admitted: Admitted,
    /// Checked on every request before it reaches the routes.
    guard: Arc<Guard>,
    tracker: Arc<Tracker>,
    limits: ConnectionLimits,
    metrics: Metrics,
    shutdown: CancellationToken,
}

impl ConnectionTask {
    async fn run<S>(self, stream: TcpStream, service: S, http: hyper::server::conn::Http)
    where
        S: hyper::service::Service<
                hyper::Request<hyper::Body>,
                Response = hyper::Response<hyper::Body>,
                Error = Infallible,
            > + Clone
            + Send
            + 'static,
        S::Future: Send + 'static,
    {
        let Admitted {
            id,
            activity,
            evicted,
        } = self.admitted;
        let io = TrackedIo {
            stream,
            activity: Arc::clone(&activity),
            owed: Vec::new(),
        };
        let requests = {
            let activity = Arc::clone(&activity);
            let tracker = Arc::clone(&self.tracker);
            let guard = Arc::clone(&self.guard);
            let metrics = self.metrics.clone();
            hyper::service::service_fn(move |request: hyper::Request<hyper::Body>| {
                let mut service = service.clone();
                let open = activity.request_started(&tracker, id);
                let refused = guard
                    .check(request.method(), request.uri().path(), request.headers())
                    .err();
                let metrics = metrics.clone();
                async move {
                    let response = match refused {
                        Some(refusal) => {
                            Ok(refusal_response(&refusal, request.uri().path(), &metrics))
                        }
                        None => service.call(request).await,
                    };
                    drop(open);
                    response
                }
            })
        };
        let connection = http.serve_connection(io, requests).with_upgrades();
        tokio::pin!(connection);
        let closed_by_us = tokio::select! {
            ended = &mut connection => {
                if let Err(e) = ended {
                    tracing::debug!(target: "koi_github_indexer::api", error = %e, "api connection ended with an error");
                }
                None
            }
            reason = watchdog(&activity, &self.limits) => Some(reason),
            () = evicted.cancelled() => Some(ConnectionClose::Evicted),
            () = self.shutdown.cancelled() => {
                connection.as_mut().graceful_shutdown();
                let _ = tokio::time::timeout(SHUTDOWN_GRACE, connection).await;
                None
            }
        };
        if let Some(reason) = closed_by_us {
            ApiConnectionClosed { reason }.emit(&self.metrics);
        }
        self.tracker.release(id, &self.metrics);
    }
}

/// The JSON answer to a request the guard refused, counted.
fn refusal_response(
    refusal: &Refusal,
    path: &str,
    metrics: &Metrics,
) -> hyper::Response<hyper::Body> {
    let status = refusal.status();
    ApiRequestRefused {
        route: template_of(path),
        reason: refusal.reason(),
        status: status.as_u16(),
    }
    .emit(metrics);
    let body = serde_json::json!({ "error": refusal.message() }).to_string();
    let mut response = hyper::Response::new(hyper::Body::from(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    if matches!(refusal, Refusal::Token) {
        headers.insert(
            hyper::header::WWW_AUTHENTICATE,
            hyper::header::HeaderValue::from_static("Bearer realm=\"koi-github-indexer\""),
        );
    }
    response
}

/// Sleeps until the connection has outstayed a limit, and says which.
async fn watchdog(activity: &Activity, limits: &ConnectionLimits) -> ConnectionClose {
    loop {
        match activity.check(limits, Instant::now()) {
            Ok(reason) => return reason,
            Err(next_check) => tokio::time::sleep_until(next_check).await,
        }
    }
}

/// Tells a connection over the cap that the API is busy, and closes it.
async fn refuse(mut stream: TcpStream, metrics: Metrics) {
    ApiConnectionClosed {
        reason: ConnectionClose::Refused,
    }
    .emit(&metrics);
    let reply = json_error_response(
        503,
        "Service Unavailable",
        "too many open connections to the API (`api.max_connections`); try again shortly",
    );
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let _ = stream.write_all(&reply).await;
        let _ = stream.shutdown().await;
    })
    .await;
}

/// What a connection has been doing, kept by its socket ([`TrackedIo`]) and its requests.
struct Activity {
    state: Mutex<ActivityState>,
}

struct ActivityState {
    /// The last time a byte moved either way, or a request ended.
    last_io: Instant,
    /// When the request head now being received began: the connection's start, or the first byte after a
    /// response. `None` while no head is awaited.
    head_since: Option<Instant>,
    /// Requests handed to the routes and not answered yet.
    open_requests: usize,
    /// Requests received on this connection so far.
    requests: u64,
}

/// Ends a request's accounting when the routes have answered it (or given up).
struct OpenRequest {
    activity: Arc<Activity>,
}

impl Drop for OpenRequest {
    fn drop(&mut self) {
        let mut state = self.activity.lock();
        state.open_requests = state.open_requests.saturating_sub(1);
        state.last_io = Instant::now();
    }
}

impl Activity {
    fn new(now: Instant) -> Self {
        Activity {
            state: Mutex::new(ActivityState {
                last_io: now,
                head_since: Some(now),
                open_requests: 0,
                requests: 0,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, ActivityState> {
        // The state is a few plain fields, consistent after every statement: a panic elsewhere cannot corrupt it.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A whole request head arrived and goes to the routes.
    fn request_started(self: &Arc<Self>, tracker: &Tracker, id: u64) -> OpenRequest {
        let first = {
            let mut state = self.lock();
            state.head_since = None;
            state.open_requests += 1;
            state.requests += 1;
            state.requests == 1
        };
        if first {
            tracker.served(id);
        }
        OpenRequest {
            activity: Arc::clone(self),
        }
    }

    fn bytes_read(&self) {
        let now = Instant::now();
        let mut state = self.lock();
        state.last_io = now;
        if state.open_requests == 0 && state.head_since.is_none() {
            state.head_since = Some(now);
        }
    }

    fn bytes_written(&self) {
        self.lock().last_io = Instant::now();
    }

    /// `Ok(reason)` when the connection has outstayed a limit, or else when to look again.
    fn check(&self, limits: &ConnectionLimits, now: Instant) -> Result<ConnectionClose, Instant> {
        let state = self.lock();
        if let Some(since) = state.head_since {
            let deadline = since + limits.header_timeout;
            return if now >= deadline {
                Ok(ConnectionClose::HeaderTimeout)
            } else {
                Err(deadline)
            };
        }
        let deadline = state.last_io + limits.idle_timeout;
        if now >= deadline {
            Ok(ConnectionClose::Idle)
        } else {
            Err(deadline)
        }
    }
}

/// The open connections, and which of them may be closed to make room.
struct Tracker {
    max: usize,
    state: Mutex<TrackerState>,
}

#[derive(Default)]
struct TrackerState {
    next_id: u64,
    open: HashMap<u64, CancellationToken>,
    /// Open connections that have not sent a whole request yet, oldest first (ids grow with time).
    unserved: BTreeSet<u64>,
}

/// A connection let in.
struct Admitted {
    id: u64,
    activity: Arc<Activity>,
    /// Cancelled when the connection is closed to make room for a newer one.
    evicted: CancellationToken,
}

impl Tracker {
    fn new(max: usize) -> Self {
        Tracker {
            max,
            state: Mutex::new(TrackerState::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, TrackerState> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Lets a new connection in, closing the oldest unserved one if at the cap; `None` if all are busy.
    fn admit(&self, metrics: &Metrics) -> Option<Admitted> {
        let mut state = self.lock();
        if state.open.len() >= self.max {
            let oldest = state.unserved.pop_first()?;
            if let Some(evicted) = state.open.remove(&oldest) {
                evicted.cancel();
            }
        }
        let id = state.next_id;
        state.next_id += 1;
        let evicted = CancellationToken::new();
        state.open.insert(id, evicted.clone());
        state.unserved.insert(id);
        ApiConnections {
            open: state.open.len(),
        }
        .emit(metrics);
        Some(Admitted {
            id,
            activity: Arc::new(Activity::new(Instant::now())),
            evicted,
        })
    }

    /// The connection sent its first whole request: it is no longer the first to go at the cap.
    fn served(&self, id: u64) {
        self.lock().unserved.remove(&id);
    }

    fn release(&self, id: u64, metrics: &Metrics) {
        let mut state = self.lock();
        state.open.remove(&id);
        state.unserved.remove(&id);
        ApiConnections {
            open: state.open.len(),
        }
        .emit(metrics);
    }
}

/// The socket as hyper sees it: notes every byte moved in the connection's [`Activity`], and swaps hyper's own
/// bodiless error answers for JSON ones.
struct TrackedIo {
    stream: TcpStream,
    activity: Arc<Activity>,
    /// Bytes we owe the socket: a JSON error answer that replaced one of hyper's.
    owed: Vec<u8>,
}

impl TrackedIo {
    /// Writes out what is owed before anything else.
    fn poll_pay_owed(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.owed.is_empty() {
            let n = ready!(Pin::new(&mut self.stream).poll_write(cx, &self.owed))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.owed.drain(..n);
            self.activity.bytes_written();
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncRead for TrackedIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        if buf.remaining() > MAX_READ {
            // hyper checks its head-size limit only between reads, so one large read could carry a head far past
            // it: hand it at most MAX_READ bytes at a time.
            let mut chunk = [0u8; MAX_READ];
            let mut limited = ReadBuf::new(&mut chunk);
            ready!(Pin::new(&mut self.stream).poll_read(cx, &mut limited))?;
            buf.put_slice(limited.filled());
        } else {
            ready!(Pin::new(&mut self.stream).poll_read(cx, buf))?;
        }
        if buf.filled().len() > before {
            self.activity.bytes_read();
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for TrackedIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        ready!(self.poll_pay_owed(cx))?;
        if let Some(answer) = json_for_automatic_error(buf) {
            // Take hyper's bytes as written and owe the socket ours; hyper flushes and closes next.
            self.owed = answer;
            if let Poll::Ready(Err(e)) = self.poll_pay_owed(cx) {
                return Poll::Ready(Err(e));
            }
            return Poll::Ready(Ok(buf.len()));
        }
        let n = ready!(Pin::new(&mut self.stream).poll_write(cx, buf))?;
        if n > 0 {
            self.activity.bytes_written();
        }
        Poll::Ready(Ok(n))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_pay_owed(cx))?;
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_pay_owed(cx))?;
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    // Not vectored: hyper then writes each response head as one contiguous buffer, which is what lets
    // `json_for_automatic_error` see a head whole.
    fn is_write_vectored(&self) -> bool {
        false
    }
}

/// If `written` is one of hyper's automatic answers to a request it could not parse (a 400, 414 or 431 head with
/// no content type: every answer of our routes has one), the JSON answer to send instead.
fn json_for_automatic_error(written: &[u8]) -> Option<Vec<u8>> {
    const PREFIX: &[u8] = b"HTTP/1.1 4";
    if !written.starts_with(PREFIX) {
        return None;
    }
    let head_end = written.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = written[..head_end].to_ascii_lowercase();
    if head.windows(14).any(|w| w == b"\ncontent-type:") {
        return None;
    }
    let (status, reason, message) = match written.get(9..12)? {
        b"400" => (
            400,
            "Bad Request",
            "malformed HTTP request: the request line or a header could not be parsed",
        ),
        b"414" => (
            414,
            "URI Too Long",
            "request target too long (the limit is 64 KiB)",
        ),
        b"431" => (
            431,
            "Request Header Fields Too Large",
            "request line and headers too large (the limit is 64 KiB)",
        ),
        _ => return None,
    };
    Some(json_error_response(status, reason, message))
}

/// A whole HTTP/1.1 response carrying `{"error": message}` that closes the connection.
fn json_error_response(status: u16, reason: &str, message: &str) -> Vec<u8> {
    let body = serde_json::json!({ "error": message }).to_string();
    format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Warns about accept errors at most once every 10 s, with how many there were.
#[derive(Default)]
struct RateLimitedWarning {
    last: Option<Instant>,
    since_last: u64,
}

impl RateLimitedWarning {
    fn warn(&mut self, error: &io::Error) {
        self.since_last += 1;
        let now = Instant::now();
        if self
            .last
            .is_some_and(|last| now < last + Duration::from_secs(10))
        {
            return;
        }
        tracing::warn!(
            target: "koi_github_indexer::api",
            error = %error,
            errors = self.since_last,
            "cannot accept API connections (out of file descriptors? see `api.max_connections` and LimitNOFILE)"
        );
        self.last = Some(now);
        self.since_last = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hypers_bodiless_parse_errors_become_json() {
        let hyper_head = b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\ndate: Thu, 26 Nov 2026 22:00:00 GMT\r\n\r\n";
        let answer = String::from_utf8(json_for_automatic_error(hyper_head).unwrap()).unwrap();
        assert!(answer.starts_with("HTTP/1.1 431 "), "{answer}");
        assert!(answer.contains("content-type: application/json"));
        let body = answer.split("\r\n\r\n").nth(1).unwrap();
        let json: serde_json::Value = serde_json::from_str(body).unwrap();
        assert!(json["error"].as_str().unwrap().contains("64 KiB"));
    }

    #[test]
    fn our_own_answers_pass_untouched() {
        let ours =
            b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}";
        assert!(json_for_automatic_error(ours).is_none());
        assert!(json_for_automatic_error(b"HTTP/1.1 200 OK\r\n\r\n").is_none());
        assert!(json_for_automatic_error(b"{\"HTTP/1.1 400\": 1}").is_none());
    }

    #[test]
    fn a_connection_must_send_its_head_in_time_then_may_idle() {
        let limits = ConnectionLimits {
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections: 1,
        };
        let start = Instant::now();
        let activity = Arc::new(Activity::new(start));
        assert_eq!(
            activity.check(&limits, start),
            Err(start + Duration::from_secs(10))
        );
        assert_eq!(
            activity.check(&limits, start + Duration::from_secs(10)),
            Ok(ConnectionClose::HeaderTimeout)
        );
        let tracker = Tracker::new(1);
        let open = activity.request_started(&tracker, 0);
        drop(open);
        let idle_from = activity.lock().last_io;
        assert_eq!(
            activity.check(&limits, idle_from),
            Err(idle_from + Duration::from_secs(60))
        );
        assert_eq!(
            activity.check(&limits, idle_from + Duration::from_secs(60)),
            Ok(ConnectionClose::Idle)
        );
    }

    #[test]
    fn at_the_cap_the_oldest_unserved_connection_makes_room() {
        let metrics = Metrics::new();
        let tracker = Tracker::new(2);
        let first = tracker.admit(&metrics).unwrap();
        let second = tracker.admit(&metrics).unwrap();
        let _served = second.activity.request_started(&tracker, second.id);
        let third = tracker.admit(&metrics).unwrap();
        assert!(first.evicted.is_cancelled());
        assert!(!second.evicted.is_cancelled());
        let _served = third.activity.request_started(&tracker, third.id);
        assert!(
            tracker.admit(&metrics).is_none(),
            "every connection busy: refuse"
        );
    }
}
