//! The local query API (warp), under `/api/processor/github`, with the paths and JSON shapes of the Python processor
//! it replaces:
//!
//! | route | answer |
//! |---|---|
//! | `GET /health` | `{"status":"ok"}` |
//! | `GET /status` | `{"status":"active","message":…,"details":{…node details, events, repositories, event_types, latest_event}}` |
//! | `GET /repositories` | `[Repository]`, most recently updated first |
//! | `GET /repositories/{repo}` | one `Repository` |
//! | `GET /repositories/{repo}/events?limit&offset&event_type&since&until` | `[EventRow]`, newest first |
//! | `GET /events/{event_rid}` | `EventRow` plus `"bundle"` |
//! | `GET /commits/{sha}/events?limit&offset` | `[EventRow]`, newest first (`sha` may be abbreviated) |
//! | `GET /polls?neighbour&limit` | the poll log: recent poll attempts, newest first (`[PollAttempt]`) |
//! | `GET /rejected?limit&offset&items` | dead letters, newest first: `[{id, rid, source, reason, detail, received_at, item}]` |
//! | `POST /repositories` `{"repo":"owner/name"}` | adds a repository (201, or 200 if held); JSON only |
//! | `DELETE /repositories/{repo}` | removes a repository added by hand while it has no events (409 otherwise) |
//! | `GET /bundles/{rid}` | any bundle the node holds, event or repository: `{rid, manifest, contents, contents_kept, hash_scheme}` |
//! | `GET /events/{event_rid}/history` | the event's versions, newest first: `[{timestamp, sha256_hash, received_at, contents}]` |
//! | `GET /actions`, `GET /actions/{name}/deliveries`, `POST /actions/{name}/deliveries/{id}/redeliver` | outbound webhooks ([`actions`]) |
//! | `GET /export` | the index as NDJSON ([`crate::index::export`]) |
//!
//! and, outside that prefix, `GET /metrics`: Prometheus metrics (OpenMetrics text), and `GET /` with
//! `GET /assets/{file}`: the dashboard page ([`dashboard`]). Every request is counted and
//! timed by route template (`api_requests_total`, `api_request_duration_seconds`).
//!
//! `{repo}` is `owner/name` or the URL-encoded repository RID; `{event_rid}` is the event RID, URL-encoded or not.
//! Every error is JSON, `{"error": "…"}`: 400 for bad parameters (saying which and why), 404 for an unknown
//! repository, event or path, 405 for a wrong method, 500 when the store fails. Index reads run on tokio's
//! blocking pool: sled may touch the disk.

use std::convert::Infallible;
use std::sync::Arc;

use percent_encoding::percent_decode_str;
use serde::Serialize;
use serde_json::json;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::{Filter, Rejection, Reply};

mod actions;
pub mod dashboard;
mod feeds;
pub mod guard;
pub mod server;
pub mod status;

pub use actions::{is_event, ActionInfo, ActionSummary};
pub use status::{NodeStatus, StatusBody, StatusDetails};

use crate::index::{parse_repo_ref, DeadLetters, EventQuery, Index, IndexError, RepoRemoval};
use crate::protocol::{GithubEventRid, Rid, Timestamp};
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
struct ApiError(StatusCode, String);

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

/// GET, and HEAD on the same routes (hyper leaves the body out of a HEAD answer).
fn get_or_head() -> impl Filter<Extract = (), Error = Rejection> + Copy {
    warp::get().or(warp::head()).unify()
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

/// Every route, with JSON errors for anything unmatched.
pub fn routes(ctx: ApiContext) -> impl Filter<Extract = (impl Reply,), Error = Infallible> + Clone {
    let base = warp::path("api")
        .and(warp::path("processor"))
        .and(warp::path("github"));
    let metrics = ctx.metrics.clone();
    let ctx = warp::any().map(move || ctx.clone());
    let params = warp::query::<Vec<(String, String)>>();

    let health = base
        .and(warp::path("health"))
        .and(warp::path::end())
        .and(get_or_head())
        .and(params)
        .map(|params: Vec<(String, String)>| {
            finish(no_parameters("/health", &params).and_then(|()| ok(&json!({"status": "ok"}))))
        });
    let status = base
        .and(warp::path("status"))
        .and(warp::path::end())
        .and(get_or_head())
        .and(params)
        .and(ctx.clone())
        .then(
            |params: Vec<(String, String)>, ctx: ApiContext| async move {
                if let Err(e) = no_parameters("/status", &params) {
                    return finish(Err(e));
                }
                finish(status(ctx).await)
            },
        );
    let list_repos = base
        .and(warp::path("repositories"))
        .and(warp::path::end())
        .and(get_or_head())
        .and(params)
        .and(ctx.clone())
        .then(
            |params: Vec<(String, String)>, ctx: ApiContext| async move {
                if let Err(e) = no_parameters("/repositories", &params) {
                    return finish(Err(e));
                }
                finish(blocking(&ctx.index, |index| ok(&index.repositories()?)).await)
            },
        );
    let add_repo = base
        .and(warp::path("repositories"))
        .and(warp::path::end())
        .and(warp::post())
        .and(warp::header::optional::<u64>("content-length"))
        .and(warp::body::stream())
        .and(ctx.clone())
        .then(|length: Option<u64>, body, ctx: ApiContext| async move {
            let body = match read_body(length, body).await {
                Ok(body) => body,
                Err(e) => return finish(Err(e)),
            };
            finish(add_repository(body, ctx).await)
        });
    let remove_repo = base
        .and(warp::path("repositories"))
        .and(warp::path::tail())
        // `DELETE /repositories` itself is not a route (405, like any other wrong method).
        .and_then(|tail: warp::path::Tail| async move {
            if tail.as_str().trim_matches('/').is_empty() {
                Err(warp::reject::not_found())
            } else {
                Ok(tail)
            }
        })
        .and(warp::delete())
        .and(params)
        .and(ctx.clone())
        .then(
            |tail: warp::path::Tail, params: Vec<(String, String)>, ctx: ApiContext| async move {
                if let Err(e) = no_parameters("/repositories/{repo}", &params) {
                    return finish(Err(e));
                }
                finish(remove_repository(tail.as_str().to_owned(), ctx).await)
            },
        );
    let repo = base
        .and(warp::path("repositories"))
        .and(warp::path::tail())
        .and(get_or_head())
        .and(params)
        .and(ctx.clone())
        .then(
            |tail: warp::path::Tail, params, ctx: ApiContext| async move {
                finish(repository_path(tail.as_str().to_owned(), params, ctx).await)
            },
        );
    let global_events =
        base.and(warp::path("events"))
            .and(warp::path::end())
            .and(get_or_head())
            .and(params)
            .and(ctx.clone())
            .then(|params, ctx: ApiContext| async move {
                finish(feeds::global_events(params, ctx).await)
            });
    let stats_route = base
        .and(warp::path("stats"))
        .and(warp::path::end())
        .and(get_or_head())
        .and(params)
        .and(ctx.clone())
        .then(|params, ctx: ApiContext| async move { finish(feeds::stats(params, ctx).await) });
    let stream = base
        .and(warp::path("stream"))
        .and(warp::path::end())
        .and(warp::get())
        .and(params)
        .and(warp::header::optional::<String>("last-event-id"))
        .and(ctx.clone())
        .map(
            |params: Vec<(String, String)>, last: Option<String>, ctx: ApiContext| {
                match feeds::StreamRequest::parse(&params, last.as_deref()) {
                    Ok(request) => feeds::sse_reply(&ctx, request),
                    Err(e) => finish(Err(e)),
                }
            },
        );
    let stream_ws = base
        .and(warp::path("stream"))
        .and(warp::path("ws"))
        .and(warp::path::end())
        .and(warp::ws())
        .and(params)
        .and(ctx.clone())
        .map(
            |ws: warp::ws::Ws, params: Vec<(String, String)>, ctx: ApiContext| {
                match feeds::StreamRequest::parse(&params, None) {
                    Ok(request) => ws
                        .on_upgrade(move |socket| feeds::websocket(socket, ctx, request))
                        .into_response(),
                    Err(e) => finish(Err(e)),
                }
            },
        );
    let event = base
        .and(warp::path("events"))
        .and(warp::path::tail())
        .and(get_or_head())
        .and(params)
        .and(ctx.clone())
        .then(
            |tail: warp::path::Tail, params: Vec<(String, String)>, ctx: ApiContext| async move {
                if let Err(e) = no_parameters("/events/{rid}", &params) {
                    return finish(Err(e));
                }
                finish(event(tail.as_str().to_owned(), ctx).await)
            },
        );
    let bundle_route = base
        .and(warp::path("bundles"))
        .and(warp::path::tail())
        .and(get_or_head())
        .and(params)
        .and(ctx.clone())
        .then(
            |tail: warp::path::Tail, params: Vec<(String, String)>, ctx: ApiContext| async move {
                if let Err(e) = no_parameters("/bundles/{rid}", &params) {
                    return finish(Err(e));
                }
                finish(bundle(tail.as_str().to_owned(), ctx).await)
            },
        );
    let polls = base
        .and(warp::path("polls"))
        .and(warp::path::end())
        .and(get_or_head())
        .and(params)
        .and(ctx.clone())
        .then(|params, ctx: ApiContext| async move { finish(polls(params, ctx).await) });
    let metrics_route = warp::path("metrics")
        .and(warp::path::end())
        .and(get_or_head())
        .and(params)
        .and(ctx.clone())
        .map(|params: Vec<(String, String)>, ctx: ApiContext| {
            if let Err(e) = no_parameters("/metrics", &params) {
                return finish(Err(e));
            }
            warp::reply::with_header(ctx.metrics.encode(), "content-type", METRICS_CONTENT_TYPE)
                .into_response()
        });
    let dashboard_page =
        warp::path::end()
            .and(get_or_head())
            .and(params)
            .map(|params: Vec<(String, String)>| {
                if let Err(e) = no_parameters("/", &params) {
                    return finish(Err(e));
                }
                dashboard::page()
            });
    let dashboard_asset = warp::path("assets")
        .and(warp::path::param::<String>())
        .and(warp::path::end())
        .and(get_or_head())
        .and_then(|name: String| async move {
            dashboard::asset(&name).ok_or_else(warp::reject::not_found)
        });
    let rejected_route = base
        .and(warp::path("rejected"))
        .and(warp::path::end())
        .and(get_or_head())
        .and(params)
        .and(ctx.clone())
        .then(|params, ctx: ApiContext| async move { finish(rejected(params, ctx).await) });
    let actions_list = base
        .and(warp::path("actions"))
        .and(warp::path::end())
        .and(get_or_head())
        .and(params)
        .and(ctx.clone())
        .then(
            |params: Vec<(String, String)>, ctx: ApiContext| async move {
                if let Err(e) = no_parameters("/actions", &params) {
                    return finish(Err(e));
                }
                finish(actions::list(ctx).await)
            },
        );
    let action_deliveries = base
        .and(warp::path("actions"))
        .and(warp::path::param::<String>())
        .and(warp::path("deliveries"))
        .and(warp::path::end())
        .and(get_or_head())
        .and(params)
        .and(ctx.clone())
        .then(|name: String, params, ctx: ApiContext| async move {
            finish(actions::deliveries(name, params, ctx).await)
        });
    let redeliver = base
        .and(warp::path("actions"))
        .and(warp::path::param::<String>())
        .and(warp::path("deliveries"))
        .and(warp::path::param::<String>())
        .and(warp::path("redeliver"))
        .and(warp::path::end())
        .and(warp::post())
        .and(params)
        .and(ctx.clone())
        .then(
            |name: String, id: String, params: Vec<(String, String)>, ctx: ApiContext| async move {
                if let Err(e) = no_parameters("/actions/{name}/deliveries/{id}/redeliver", &params)
                {
                    return finish(Err(e));
                }
                finish(actions::redeliver(name, id, ctx).await)
            },
        );
    let export = base
        .and(warp::path("export"))
        .and(warp::path::end())
        .and(get_or_head())
        .and(params)
        .and(ctx.clone())
        .then(
            |params: Vec<(String, String)>, ctx: ApiContext| async move {
                if let Err(e) = no_parameters("/export", &params) {
                    return finish(Err(e));
                }
                finish(actions::export(ctx).await)
            },
        );
    let issue_13 = actions_list
        .or(action_deliveries)
        .unify()
        .or(redeliver)
        .unify()
        .or(export)
        .unify()
        .boxed();
    let commit = base
        .and(warp::path("commits"))
        .and(warp::path::param::<String>())
        .and(warp::path("events"))
        .and(warp::path::end())
        .and(get_or_head())
        .and(params)
        .and(ctx)
        .then(|sha: String, params, ctx: ApiContext| async move {
            finish(commit_events(sha, params, ctx).await)
        });
    health
        .or(status)
        .unify()
        .or(list_repos)
        .unify()
        .or(add_repo)
        .unify()
        .or(remove_repo)
        .unify()
        .or(repo)
        .unify()
        .or(global_events)
        .unify()
        .or(stats_route)
        .unify()
        .or(stream_ws)
        .unify()
        .boxed()
        .or(stream)
        .unify()
        .or(event)
        .unify()
        .or(commit)
        .unify()
        .or(polls)
        .unify()
        .or(bundle_route)
        .unify()
        .or(rejected_route)
        .unify()
        .or(metrics_route)
        .unify()
        // Boxed: each `or` nests the type once more, and past a depth rustc takes minutes over the whole chain.
        .boxed()
        .or(dashboard_page.or(dashboard_asset).unify().boxed())
        .unify()
        .or(issue_13)
        .unify()
        .recover(json_rejection)
        .with(warp::log::custom(move |info| {
            ApiRequest {
                route: route_template(info.path()),
                status: info.status().as_u16(),
                duration: info.elapsed(),
            }
            .emit(&metrics)
        }))
}

/// The route template a path belongs to, for metric labels: never the raw path, whose repository names and RIDs
/// would make one series each.
pub fn route_template(path: &str) -> &'static str {
    let Some(rest) = path.strip_prefix("/api/processor/github/") else {
        return match path {
            "/metrics" => "/metrics",
            "/" => "/",
            _ if path.starts_with("/assets/") => "/assets/{file}",
            _ => "other",
        };
    };
    let parts: Vec<&str> = rest.trim_end_matches('/').split('/').collect();
    match parts.as_slice() {
        ["health"] => "/api/processor/github/health",
        ["status"] => "/api/processor/github/status",
        ["polls"] => "/api/processor/github/polls",
        ["rejected"] => "/api/processor/github/rejected",
        ["repositories"] => "/api/processor/github/repositories",
        ["repositories", .., "events"] => "/api/processor/github/repositories/{repo}/events",
        ["repositories", ..] => "/api/processor/github/repositories/{repo}",
        ["events"] => "/api/processor/github/events",
        ["events", .., "history"] => "/api/processor/github/events/{event_rid}/history",
        ["events", _, ..] => "/api/processor/github/events/{event_rid}",
        ["bundles", _, ..] => "/api/processor/github/bundles/{rid}",
        ["stats"] => "/api/processor/github/stats",
        ["stream"] => "/api/processor/github/stream",
        ["stream", "ws"] => "/api/processor/github/stream/ws",
        ["commits", _, "events"] => "/api/processor/github/commits/{sha}/events",
        ["actions"] => "/api/processor/github/actions",
        ["actions", _, "deliveries"] => "/api/processor/github/actions/{name}/deliveries",
        ["actions", _, "deliveries", _, "redeliver"] => {
            "/api/processor/github/actions/{name}/deliveries/{id}/redeliver"
        }
        ["export"] => "/api/processor/github/export",
        _ => "other",
    }
}

/// `/polls?neighbour=&limit=`: the poll log, newest first, of one neighbour or of all.
async fn polls(params: Vec<(String, String)>, ctx: ApiContext) -> Answer {
    let mut neighbour = None;
    let mut limit = DEFAULT_LIMIT;
    let mut seen: Vec<&str> = Vec::new();
    for (name, value) in &params {
        if seen.contains(&name.as_str()) {
            return Err(ApiError::bad_request(format!(
                "`{name}` is given more than once"
            )));
        }
        seen.push(name);
        match name.as_str() {
            "neighbour" => {
                // Node RIDs have a `+` before the key hash, which form decoding turns into a space; RIDs never
                // hold spaces, so `?neighbour=orn:koi-net.node:sensor+ab12` works as typed, unencoded.
                let value = value.replace(' ', "+");
                let rid = Rid::parse(&value).map_err(|e| {
                    ApiError::bad_request(format!(
                        "neighbour must be a node RID such as `orn:koi-net.node:coordinator+…`: {e}"
                    ))
                })?;
                neighbour = Some(rid.to_string());
            }
            "limit" => limit = parse_limit(value)?,
            _ => {
                return Err(ApiError::bad_request(format!(
                    "unknown query parameter `{name}`: accepted here are neighbour, limit"
                )))
            }
        }
    }
    let log = ctx.poll_log.clone();
    let (attempts, known) = on_blocking_pool(move || {
        let read = || {
            let attempts = log.recent(neighbour.as_deref(), limit)?;
            let known = match &neighbour {
                Some(_) if attempts.is_empty() => Some(log.neighbours()?),
                _ => None,
            };
            Ok((attempts, known))
        };
        read().map_err(|e: crate::telemetry::TelemetryError| {
            ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
        })
    })
    .await?;
    if let Some(known) = known {
        return Err(ApiError::not_found(format!(
            "no poll attempts recorded for that neighbour; neighbours in the poll log: {}",
            if known.is_empty() {
                "none yet".to_owned()
            } else {
                known.join(", ")
            }
        )));
    }
    ok(&attempts)
}

fn parse_limit(value: &str) -> Result<usize, ApiError> {
    value
        .parse()
        .ok()
        .filter(|n| (1..=MAX_LIMIT).contains(n))
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "limit must be a whole number from 1 to {MAX_LIMIT}, got `{value}`"
            ))
        })
}

async fn status(ctx: ApiContext) -> Answer {
    let node_status = Arc::clone(&ctx.status);
    let details = blocking(&ctx.index, move |index| {
        let counts = index.counts()?;
        Ok(StatusDetails {
            node: node_status(),
            events: counts.events,
            repositories: counts.repositories,
            event_types: counts.by_type,
            latest_event: index.latest_event()?,
        })
    })
    .await?;
    ok(&StatusBody {
        status: "active".into(),
        message: "koi-github-indexer is running".into(),
        details,
    })
}

/// `GET /rejected?limit&offset`: dead letters, newest first (without the items' text: see the CLI's `--items`).
async fn rejected(params: Vec<(String, String)>, ctx: ApiContext) -> Answer {
    let mut limit = DEFAULT_LIMIT;
    let mut offset = 0;
    let mut with_items = false;
    // The one rule every route follows: documented parameters only, each at most once.
    for (key, value) in feeds::once_each(&params, &["limit", "offset", "items"])? {
        match key {
            "limit" => limit = parse_limit(value)?,
            "offset" => offset = feeds::parse_offset(value)?,
            _ => {
                with_items = match value {
                    "true" | "1" => true,
                    "false" | "0" => false,
                    _ => {
                        return Err(ApiError::bad_request(format!(
                            "items must be true or false, got `{value}`"
                        )))
                    }
                }
            }
        }
    }
    let letters = ctx.dead_letters.clone();
    let page = on_blocking_pool(move || Ok(letters.page(offset, limit, with_items)?)).await?;
    ok(&page)
}

async fn add_repository(body: Vec<u8>, ctx: ApiContext) -> Answer {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Body {
        repo: String,
    }
    // `Content-Type: application/json` was checked before routing (`guard`), as for every write.
    let shape = || "the body must be a JSON object like {\"repo\": \"owner/name\"}".to_owned();
    // An object, not an array: serde would read `["owner/name"]` as the struct's fields in order.
    let value: serde_json::Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("{}: {e}", shape())))?;
    if !value.is_object() {
        return Err(ApiError::bad_request(shape()));
    }
    let body: Body = serde_json::from_value(value)
        .map_err(|e| ApiError::bad_request(format!("{}: {e}", shape())))?;
    let (repo, created) = blocking(&ctx.index, move |index| {
        Ok(index.add_repository(&body.repo)?)
    })
    .await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(json_with_status(status, &repo))
}

/// The one rule for query parameters: a route accepts the ones it documents, and any other is a 400 naming it.
/// This is the check for the routes that take none.
fn no_parameters(route: &str, params: &[(String, String)]) -> Result<(), ApiError> {
    match params.first() {
        None => Ok(()),
        Some((name, _)) => Err(ApiError::bad_request(format!(
            "unknown query parameter `{name}`: {route} takes none"
        ))),
    }
}

/// `DELETE /repositories/{repo}`: removes a repository added by hand that has no events yet.
async fn remove_repository(tail: String, ctx: ApiContext) -> Answer {
    let name = decode_path(tail.trim_end_matches('/'))?;
    let shown = name.clone();
    match blocking(&ctx.index, move |index| Ok(index.remove_repository(&name)?)).await? {
        RepoRemoval::Removed => ok(&json!({"removed": shown})),
        RepoRemoval::NotFound => Err(ApiError::not_found(format!(
            "repository {shown} is not indexed"
        ))),
        RepoRemoval::NotAddedByHand => Err(ApiError(
            StatusCode::CONFLICT,
            format!("repository {shown} was not added by hand: its events came from the network, and it stays while they do"),
        )),
        RepoRemoval::HasEvents(n) => Err(ApiError(
            StatusCode::CONFLICT,
            format!("repository {shown} has {n} events now; it can be removed only while it has none"),
        )),
    }
}

fn decode_path(raw: &str) -> Result<String, ApiError> {
    percent_decode_str(raw)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| {
            ApiError::bad_request(format!("path `{raw}` is not valid percent-encoded UTF-8"))
        })
}

/// `/repositories/{repo}` or `/repositories/{repo}/events`.
async fn repository_path(tail: String, params: Vec<(String, String)>, ctx: ApiContext) -> Answer {
    let tail = tail.trim_end_matches('/');
    let listing = tail
        .strip_suffix("/events")
        .map(decode_path)
        .transpose()?
        .and_then(|name| parse_repo_ref(&name).ok());
    match listing {
        Some(repo) => {
            let query = events_query(&params)?;
            let name = repo.full_name().to_owned();
            let page = blocking(&ctx.index, move |index| {
                Ok(index.events_page(&repo, &query)?)
            })
            .await?;
            match page {
                Some(rows) => ok(&rows),
                None => Err(ApiError::not_found(format!(
                    "repository {name} is not indexed"
                ))),
            }
        }
        None => {
            no_parameters("/repositories/{repo}", &params).map_err(
                |ApiError(status, message)| {
                    ApiError(status, format!("{message} (did you mean …/events?)"))
                },
            )?;
            let repo = parse_repo_ref(&decode_path(tail)?)?;
            let name = repo.full_name().to_owned();
            match blocking(&ctx.index, move |index| Ok(index.repository(&repo)?)).await? {
                Some(row) => ok(&row),
                None => Err(ApiError::not_found(format!(
                    "repository {name} is not indexed"
                ))),
            }
        }
    }
}

async fn event(tail: String, ctx: ApiContext) -> Answer {
    if let Some(rid) = tail.strip_suffix("/history") {
        return event_history(rid, ctx).await;
    }
    let text = decode_path(&tail)?;
    let rid = Rid::parse(&text)
        .and_then(|rid| GithubEventRid::from_rid(&rid).map(|_| rid))
        .map_err(|e| {
            ApiError::bad_request(format!("{e}; expected a GitHub event RID, URL-encoded"))
        })?;
    let shown = rid.to_string();
    match blocking(&ctx.index, move |index| Ok(index.event(&rid)?)).await? {
        Some(details) => ok(&details),
        None => Err(ApiError::not_found(format!("event {shown} is not indexed"))),
    }
}

/// `GET /bundles/{rid}`: any bundle held, event or repository.
async fn bundle(tail: String, ctx: ApiContext) -> Answer {
    let text = decode_path(tail.trim_end_matches('/'))?;
    let rid = Rid::parse(&text).map_err(|e| {
        ApiError::bad_request(format!(
            "{e}; expected a RID such as orn:github.event:owner/name:id or orn:github.repo:owner/name, URL-encoded"
        ))
    })?;
    let shown = rid.to_string();
    match blocking(&ctx.index, move |index| Ok(index.bundle(&rid)?)).await? {
        Some(details) => ok(&details),
        None => Err(ApiError::not_found(format!(
            "no bundle is held for {shown}"
        ))),
    }
}

/// `GET /events/{rid}/history`.
async fn event_history(tail: &str, ctx: ApiContext) -> Answer {
    let text = decode_path(tail)?;
    let rid = Rid::parse(&text)
        .and_then(|rid| GithubEventRid::from_rid(&rid).map(|_| rid))
        .map_err(|e| {
            ApiError::bad_request(format!("{e}; expected a GitHub event RID, URL-encoded"))
        })?;
    let shown = rid.to_string();
    match blocking(&ctx.index, move |index| Ok(index.history(&rid)?)).await? {
        Some(versions) => ok(&versions),
        None => Err(ApiError::not_found(format!("event {shown} is not indexed"))),
    }
}

async fn commit_events(sha: String, params: Vec<(String, String)>, ctx: ApiContext) -> Answer {
    if !(4..=64).contains(&sha.len()) || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ApiError::bad_request(format!(
            "`{sha}` is not a commit SHA: expected 4 to 64 hex digits"
        )));
    }
    let query = parse_params(&params, &["limit", "offset"])?;
    let page = blocking(&ctx.index, move |index| {
        Ok(index.events_by_commit(&sha, query.offset, query.limit)?)
    })
    .await?;
    ok(&page)
}

fn events_query(params: &[(String, String)]) -> Result<EventQuery, ApiError> {
    parse_params(params, &["limit", "offset", "event_type", "since", "until"])
}

/// Parses the query parameters named in `accepted` into an [`EventQuery`]; anything else is a 400 that says what
/// was wrong.
fn parse_params(params: &[(String, String)], accepted: &[&str]) -> Result<EventQuery, ApiError> {
    let mut query = EventQuery {
        limit: DEFAULT_LIMIT,
        ..EventQuery::default()
    };
    for (name, value) in feeds::once_each(params, accepted)? {
        match name {
            "limit" => query.limit = parse_limit(value)?,
            "offset" => query.offset = feeds::parse_offset(value)?,
            "event_type" => {
                if value.is_empty() || value.chars().any(char::is_control) {
                    return Err(ApiError::bad_request(
                        "event_type must be a GitHub event name such as `push`",
                    ));
                }
                query.event_type = Some(value.to_owned());
            }
            "since" => query.since = Some(parse_time(name, value)?),
            "until" => query.until = Some(parse_time(name, value)?),
            _ => {}
        }
    }
    check_range(query.since, query.until)?;
    Ok(query)
}

/// `since` ≤ `until` when both are given.
fn check_range(since: Option<Timestamp>, until: Option<Timestamp>) -> Result<(), ApiError> {
    match (since, until) {
        (Some(since), Some(until)) if since > until => Err(ApiError::bad_request(format!(
            "since ({}) is after until ({})",
            since.to_rfc3339_utc(),
            until.to_rfc3339_utc()
        ))),
        _ => Ok(()),
    }
}

/// RFC 3339, or a date (midnight UTC).
fn parse_time(name: &str, value: &str) -> Result<Timestamp, ApiError> {
    Timestamp::parse(value)
        .or_else(|e| {
            chrono::NaiveDate::parse_from_str(value, "%Y-%m-%d")
                .ok()
                .and_then(|d| d.and_hms_opt(0, 0, 0))
                .map(|t| Timestamp::from(t.and_utc()))
                .ok_or(e)
        })
        .map_err(|_| {
            ApiError::bad_request(format!(
                "{name} must be an RFC 3339 time like 2026-11-24T12:00:00Z or a date like 2026-11-24, got \
                 `{value}` (write a `+` offset as %2B)"
            ))
        })
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
