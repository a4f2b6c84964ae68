//! The local, read-only query API (warp), under `/api/processor/github`.
//!
//! Today it serves `/health` and `/status`; the repository and event queries of issue 4 build on the same
//! context. Every error is JSON (`{"error": …}`), including unknown paths.

use std::convert::Infallible;
use std::sync::Arc;

use serde_json::{json, Map, Value};
use warp::http::StatusCode;
use warp::{Filter, Rejection, Reply};

use crate::index::Index;

/// What the handlers need.
#[derive(Clone)]
pub struct ApiContext {
    /// The index, for counts and queries.
    pub index: Index,
    /// Node-provided details for `/status` (node_name, node_rid, node_type, data_dir, neighbours, inbox …).
    pub status: Arc<dyn Fn() -> Map<String, Value> + Send + Sync>,
}

/// All routes, with JSON errors for anything unmatched.
pub fn routes(ctx: ApiContext) -> impl Filter<Extract = (impl Reply,), Error = Infallible> + Clone {
    let base = warp::path("api")
        .and(warp::path("processor"))
        .and(warp::path("github"));
    let health = base
        .and(warp::path("health"))
        .and(warp::path::end())
        .and(warp::get())
        .map(|| warp::reply::json(&json!({"status": "ok"})));
    let status = base
        .and(warp::path("status"))
        .and(warp::path::end())
        .and(warp::get())
        .map(move || {
            let mut details = (ctx.status)();
            details.insert("events".into(), json!(ctx.index.event_count()));
            warp::reply::json(&json!({
                "status": "active",
                "message": "koi-github-indexer is running",
                "details": details,
            }))
        });
    health.or(status).recover(json_rejection)
}

async fn json_rejection(rejection: Rejection) -> Result<impl Reply, Infallible> {
    let (code, message) = if rejection.is_not_found() {
        (
            StatusCode::NOT_FOUND,
            "no such endpoint; see README.md, API reference".to_owned(),
        )
    } else if rejection.find::<warp::reject::MethodNotAllowed>().is_some() {
        (
            StatusCode::METHOD_NOT_ALLOWED,
            "this API is read-only: use GET".to_owned(),
        )
    } else {
        (StatusCode::BAD_REQUEST, format!("{rejection:?}"))
    };
    Ok(warp::reply::with_status(
        warp::reply::json(&json!({"error": message})),
        code,
    ))
}
