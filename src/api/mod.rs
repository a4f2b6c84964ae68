//! The local query API (warp), under `/api/processor/github`, with the paths and JSON shapes of the Python processor
//! it replaces. `docs/api.md` is the reference for every route; [`route::ROUTES`] lists them, and the router, the
//! metrics' route templates and a test of the docs all come from [`route::Route`].
//!
//! A request goes: [`server`] (connection limits) → [`guard`] (Host, Origin, token, content type) → [`routes`]
//! ([`route::Route::parse`], then one handler) → a JSON answer. Handlers, one file per resource: `node`
//! (`/health`, `/status`, `/polls`, `/rejected`), `repositories`, `events` (`/events/{rid}`, `/bundles/{rid}`,
//! `/commits/{sha}/events`), `feeds` (the global list, statistics, the live stream), `actions` (webhooks and the
//! export) and [`dashboard`]; their query parameters all go through `params`.
//!
//! Every error is JSON, `{"error": "…"}`: 400 for bad parameters (saying which and why), 404 for an unknown
//! repository, event or path, 405 for a wrong method, 500 when the store fails. Every request is counted and timed
//! by route template (`api_requests_total`, `api_request_duration_seconds`). Index reads run on tokio's blocking
//! pool: sled may touch the disk.

use std::convert::Infallible;
use std::sync::Arc;

use serde::Serialize;
use serde_json::json;
use warp::http::{Method, StatusCode};
use warp::path::FullPath;
use warp::reply::Response;
use warp::{Filter, Rejection, Reply};

mod actions;
pub mod dashboard;
mod events;
mod feeds;
pub mod guard;
mod node;
pub(crate) mod params;
mod repositories;
pub mod route;
pub mod server;
pub mod status;

pub use actions::{is_event, ActionInfo, ActionSummary};
pub use status::{NodeStatus, StatusBody, StatusDetails};

use params::no_parameters;
use route::{NoRoute, Route};

use crate::index::{DeadLetters, Index, IndexError};
use crate::telemetry::{ApiRequest, Metrics, PollLog, METRICS_CONTENT_TYPE};

/// Where the API's routes live.
pub const API_PREFIX: &str = "/api/processor/github";

/// Largest page a client may ask for.
pub const MAX_LIMIT: usize = 100;
/// Page size when `limit` is not given.
pub const DEFAULT_LIMIT: usize = 50;
/// Largest request body accepted (`POST /repositories` takes a repository name).
const MAX_BODY: u64 = 4096;

/// What the handlers need.
#[derive(Clone)]
pub struct ApiContext {
    /// The index, for counts and queries.
    pub index: Index,
    /// The node's part of `/status` (name, RID, inbox, neighbours …); the handler adds the index's counts. Called
    /// on the blocking pool: it may read the store.
    pub status: Arc<dyn Fn() -> NodeStatus + Send + Sync>,
    /// The dead-letter tree behind `/rejected`.
    pub dead_letters: DeadLetters,
    /// The daemon's metrics: served by `/metrics`, and counting every API request.
    pub metrics: Metrics,
    /// The poll log behind `/polls`.
    pub poll_log: PollLog,
    /// Cancelled when the daemon stops: live streams end then.
    pub shutdown: tokio_util::sync::CancellationToken,
    /// How often a quiet live stream sends a keep-alive comment (below `api.idle_timeout`, at most 15 s).
    pub stream_keep_alive: std::time::Duration,
    /// The configured actions (`[[action]]`), in config order.
    pub actions: Arc<Vec<ActionInfo>>,
    /// This node's RID, for the export's header.
    pub node_rid: String,
    /// Who may call: the `Host` names besides loopback, and the token ([`guard`]).
    pub access: Access,
}

/// The `[api]` settings the [`guard::Guard`] is built from, with the address the API is bound to.
#[derive(Clone, Default)]
pub struct Access {
    /// `api.allowed_hosts`.
    pub allowed_hosts: Vec<String>,
    /// The token `api.token_env` names, if set.
    pub token: Option<String>,
}

impl std::fmt::Debug for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Access")
            .field("allowed_hosts", &self.allowed_hosts)
            .field("token", &self.token.is_some())
            .finish()
    }
}

/// A failed request: status and the message for `{"error": …}`.
#[derive(Debug)]
pub(crate) struct ApiError(StatusCode, String);

impl ApiError {
    fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError(StatusCode::BAD_REQUEST, message.into())
    }
    fn not_found(message: impl Into<String>) -> ApiError {
        ApiError(StatusCode::NOT_FOUND, message.into())
    }
}

impl From<IndexError> for ApiError {
    fn from(e: IndexError) -> Self {
        match e {
            IndexError::InvalidRepository { .. } => ApiError::bad_request(e.to_string()),
            e => {
                tracing::error!(error = %e, "index query failed");
                ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
            }
        }
    }
}

type Answer = Result<Response, ApiError>;

fn json_with_status(status: StatusCode, body: &impl Serialize) -> Response {
    warp::reply::with_status(warp::reply::json(body), status).into_response()
}

fn ok(body: &impl Serialize) -> Answer {
    Ok(json_with_status(StatusCode::OK, body))
}

fn finish(answer: Answer) -> Response {
    answer.unwrap_or_else(|ApiError(status, message)| {
        json_with_status(status, &json!({"error": message}))
    })
}

/// Reads a request body of at most [`MAX_BODY`] bytes, with or without a Content-Length (chunked).
async fn read_body<B: warp::hyper::body::Buf>(
    length: Option<u64>,
    body: impl futures::Stream<Item = Result<B, warp::Error>>,
) -> Result<Vec<u8>, ApiError> {
    use futures::StreamExt as _;
    let too_large = || {
        ApiError(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the body is larger than {MAX_BODY} bytes"),
        )
    };
    if length.is_some_and(|length| length > MAX_BODY) {
        return Err(too_large());
    }
    let mut read = Vec::new();
    futures::pin_mut!(body);
    while let Some(chunk) = body.next().await {
        let mut chunk = chunk.map_err(|e| {
            ApiError(
                StatusCode::BAD_REQUEST,
                format!("reading the request body: {e}"),
            )
        })?;
        if read.len() + chunk.remaining() > MAX_BODY as usize {
            return Err(too_large());
        }
        while chunk.has_remaining() {
            let part = chunk.chunk();
            read.extend_from_slice(part);
            let n = part.len();
            chunk.advance(n);
        }
    }
    Ok(read)
}

/// Runs a store read on tokio's blocking pool (sled may touch the disk).
async fn on_blocking_pool<T: Send + 'static>(
    read: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(read).await.map_err(|e| {
        ApiError(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("query task failed: {e}"),
        )
    })?
}

/// Runs an index query on the blocking pool.
async fn blocking<T: Send + 'static>(
    index: &Index,
    query: impl FnOnce(Index) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    let index = index.clone();
    on_blocking_pool(move || query(index)).await
}

/// Every route, with JSON errors for anything unmatched: one filter that extracts what any handler may need, then
/// `dispatch`.
pub fn routes(ctx: ApiContext) -> impl Filter<Extract = (impl Reply,), Error = Infallible> + Clone {
    let metrics = ctx.metrics.clone();
    let ctx = warp::any().map(move || ctx.clone());
    // A WebSocket upgrade when the request is one; `None` otherwise (only `/stream/ws` needs it).
    let websocket = warp::ws().map(Some).or(warp::any().map(|| None)).unify();
    warp::method()
        .and(warp::path::full())
        .and(warp::query::<Vec<(String, String)>>())
        .and(warp::header::optional::<String>("last-event-id"))
        .and(warp::header::optional::<u64>("content-length"))
        .and(websocket)
        .and(warp::body::stream())
        .and(ctx)
        .then(
            |method: Method,
             path: FullPath,
             params: Vec<(String, String)>,
             last_event_id: Option<String>,
             length: Option<u64>,
             websocket: Option<warp::ws::Ws>,
             body,
             ctx: ApiContext| async move {
                let request = Request {
                    params,
                    last_event_id,
                    websocket,
                    ctx,
                };
                match Route::parse(&method, path.as_str()) {
                    Ok(Route::AddRepository) => match read_body(length, body).await {
                        Ok(body) => finish(repositories::add(body, request.ctx).await),
                        Err(e) => finish(Err(e)),
                    },
                    Ok(route) => dispatch(route, request).await,
                    Err(NoRoute::NotFound) => finish(Err(ApiError::not_found(
                        "no such endpoint; see docs/api.md",
                    ))),
                    Err(NoRoute::MethodNotAllowed) => finish(Err(ApiError(
                        StatusCode::METHOD_NOT_ALLOWED,
                        "method not allowed: this API is read-only (GET and HEAD), except POST and DELETE \
                         …/repositories/… for repositories added by hand, and POST …/redeliver"
                            .to_owned(),
                    ))),
                }
            },
        )
        .recover(json_rejection)
        .with(warp::log::custom(move |info| {
            ApiRequest {
                route: route::template_of(info.path()),
                status: info.status().as_u16(),
                duration: info.elapsed(),
            }
            .emit(&metrics)
        }))
}

/// What a handler may read of a request besides its route.
struct Request {
    /// The query parameters, in order (a name may repeat: [`params`] decides whether it may).
    params: Vec<(String, String)>,
    /// `Last-Event-ID`, for the SSE stream's resume.
    last_event_id: Option<String>,
    /// The WebSocket upgrade, when the request is one.
    websocket: Option<warp::ws::Ws>,
    ctx: ApiContext,
}

/// One route, one handler. Routes that take no parameters say so here, in one place.
async fn dispatch(route: Route, request: Request) -> Response {
    let Request {
        params,
        last_event_id,
        websocket,
        ctx,
    } = request;
    let none = |name: &str| no_parameters(name, &params);
    match route {
        Route::Health => finish(none("/health").and_then(|()| ok(&json!({"status": "ok"})))),
        Route::Status => match none("/status") {
            Ok(()) => finish(node::status(ctx).await),
            Err(e) => finish(Err(e)),
        },
        Route::Polls => finish(node::polls(params, ctx).await),
        Route::Rejected => finish(node::rejected(params, ctx).await),
        Route::Repositories => match none("/repositories") {
            Ok(()) => finish(blocking(&ctx.index, |index| ok(&index.repositories()?)).await),
            Err(e) => finish(Err(e)),
        },
        // The body was read by `routes`.
        Route::AddRepository => finish(Err(ApiError::bad_request("no body"))),
        Route::RepositoryPath(tail) => finish(repositories::path(tail, params, ctx).await),
        Route::RemoveRepository(tail) => match none("/repositories/{repo}") {
            Ok(()) => finish(repositories::remove(tail, ctx).await),
            Err(e) => finish(Err(e)),
        },
        Route::Events => finish(feeds::global_events(params, ctx).await),
        Route::EventPath(tail) => match none("/events/{rid}") {
            Ok(()) => finish(events::event(tail, ctx).await),
            Err(e) => finish(Err(e)),
        },
        Route::Bundle(tail) => match none("/bundles/{rid}") {
            Ok(()) => finish(events::bundle(tail, ctx).await),
            Err(e) => finish(Err(e)),
        },
        Route::CommitEvents(sha) => finish(events::commit_events(sha, params, ctx).await),
        Route::Stats => finish(feeds::stats(params, ctx).await),
        Route::Stream => match params::StreamRequest::parse(&params, last_event_id.as_deref()) {
            Ok(request) => feeds::sse_reply(&ctx, request),
            Err(e) => finish(Err(e)),
        },
        Route::StreamWs => match (websocket, params::StreamRequest::parse(&params, None)) {
            (Some(ws), Ok(request)) => ws
                .on_upgrade(move |socket| feeds::websocket(socket, ctx, request))
                .into_response(),
            (None, _) => finish(Err(ApiError::bad_request(
                "…/stream/ws is a WebSocket: connect with a WebSocket client (`Upgrade: websocket`), or read \
                 …/stream (Server-Sent Events)",
            ))),
            (_, Err(e)) => finish(Err(e)),
        },
        Route::Actions => match none("/actions") {
            Ok(()) => finish(actions::list(ctx).await),
            Err(e) => finish(Err(e)),
        },
        Route::Deliveries(name) => finish(actions::deliveries(name, params, ctx).await),
        Route::Redeliver(name, id) => match none("/actions/{name}/deliveries/{id}/redeliver") {
            Ok(()) => finish(actions::redeliver(name, id, ctx).await),
            Err(e) => finish(Err(e)),
        },
        Route::Export => match none("/export") {
            Ok(()) => finish(actions::export(ctx).await),
            Err(e) => finish(Err(e)),
        },
        Route::Metrics => match none("/metrics") {
            Ok(()) => warp::reply::with_header(ctx.metrics.encode(), "content-type", METRICS_CONTENT_TYPE)
                .into_response(),
            Err(e) => finish(Err(e)),
        },
        Route::Dashboard => match none("/") {
            Ok(()) => dashboard::page(),
            Err(e) => finish(Err(e)),
        },
        // A query string on an asset (a cache-buster) is harmless: not checked.
        Route::Asset(name) => dashboard::asset(&name).unwrap_or_else(|| {
            finish(Err(ApiError::not_found("no such endpoint; see docs/api.md")))
        }),
    }
}

/// Turns warp's rejections into JSON errors. A request refused by several routes carries all their reasons: the
/// specific ones (body too large, …) are checked before "wrong method", which the other routes add.
async fn json_rejection(rejection: Rejection) -> Result<Response, Infallible> {
    use warp::reject::{InvalidQuery, MethodNotAllowed};
    let (status, message) = if rejection.is_not_found() {
        (
            StatusCode::NOT_FOUND,
            "no such endpoint; see docs/api.md".to_owned(),
        )
    } else if rejection.find::<InvalidQuery>().is_some() {
        (
            StatusCode::BAD_REQUEST,
            "the query string cannot be decoded".to_owned(),
        )
    } else if rejection.find::<MethodNotAllowed>().is_some() {
        (
            StatusCode::METHOD_NOT_ALLOWED,
            "method not allowed: this API is read-only (GET and HEAD), except POST and DELETE …/repositories/… for repositories added by hand"
                .to_owned(),
        )
    } else {
        (
            StatusCode::BAD_REQUEST,
            format!("bad request: {rejection:?}"),
        )
    };
    Ok(json_with_status(status, &json!({"error": message})))
}
