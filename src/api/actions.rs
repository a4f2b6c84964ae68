//! The actions (outbound webhooks) and their delivery logs, redelivery, and the export.
//!
//! | route | answer |
//! |---|---|
//! | `GET /actions` | `[{"name","url","queued","delivered","failed","last_error"}]`, in config order |
//! | `GET /actions/{name}/deliveries?limit&offset` | `[Delivery]`, newest first |
//! | `POST /actions/{name}/deliveries/{id}/redeliver` | 202 and the new delivery (queued at the end) |
//! | `GET /export` | NDJSON: the header, then one line per stored bundle ([`crate::index::export`]) |

use serde::Serialize;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::Reply;

use super::params::parse_params;
use super::{blocking, json_with_status, ok, Answer, ApiContext, ApiError};
use crate::index::export::{Cursor, Line};
use crate::index::IndexError;

/// Lines read from the store per step of an export.
const EXPORT_STEP: usize = 256;

/// An action as the config defines it (the secret stays out).
#[derive(Debug, Clone)]
pub struct ActionInfo {
    /// Its name.
    pub name: String,
    /// Where it POSTs.
    pub url: String,
}

/// One element of `GET /actions`.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct ActionSummary {
    /// Its name.
    pub name: String,
    /// Where it POSTs.
    pub url: String,
    /// Deliveries waiting.
    pub queued: u64,
    /// Delivered, ever.
    pub delivered: u64,
    /// Given up, ever.
    pub failed: u64,
    /// The last error of any attempt.
    pub last_error: Option<String>,
}

fn unknown_action(ctx: &ApiContext, name: &str) -> Result<(), ApiError> {
    if ctx.actions.iter().any(|a| a.name == name) {
        return Ok(());
    }
    let known: Vec<&str> = ctx.actions.iter().map(|a| a.name.as_str()).collect();
    Err(ApiError::not_found(if known.is_empty() {
        format!("no action `{name}`: none is configured (add an [[action]] block to the config)")
    } else {
        format!("no action `{name}`; configured: {}", known.join(", "))
    }))
}

/// `GET /actions`.
pub(super) async fn list(ctx: ApiContext) -> Answer {
    let actions = ctx.actions.clone();
    let summaries = blocking(&ctx.index, move |index| {
        actions
            .iter()
            .map(|a| {
                let counts = index.deliveries().counts(&a.name)?;
                Ok(ActionSummary {
                    name: a.name.clone(),
                    url: a.url.clone(),
                    queued: counts.queued,
                    delivered: counts.delivered,
                    failed: counts.failed,
                    last_error: counts.last_error,
                })
            })
            .collect::<Result<Vec<_>, ApiError>>()
    })
    .await?;
    ok(&summaries)
}

/// `GET /actions/{name}/deliveries?limit&offset`.
pub(super) async fn deliveries(
    name: String,
    params: Vec<(String, String)>,
    ctx: ApiContext,
) -> Answer {
    unknown_action(&ctx, &name)?;
    let query = parse_params(&params, &["limit", "offset"])?;
    let page = blocking(&ctx.index, move |index| {
        Ok(index.deliveries().page(&name, query.offset, query.limit)?)
    })
    .await?;
    ok(&page)
}

/// `POST /actions/{name}/deliveries/{id}/redeliver`.
pub(super) async fn redeliver(name: String, id: String, ctx: ApiContext) -> Answer {
    unknown_action(&ctx, &name)?;
    let shown = id.clone();
    let action = name.clone();
    match blocking(&ctx.index, move |index| Ok(index.redeliver(&action, &id)?)).await? {
        Some(delivery) => Ok(json_with_status(StatusCode::ACCEPTED, &delivery)),
        None => Err(ApiError::not_found(format!(
            "action `{name}` has no delivery `{shown}` in its log (the log keeps the latest keep_delivered and \
             keep_failed)"
        ))),
    }
}

/// `GET /export`: the whole index as NDJSON, read a step at a time while the client takes it.
pub(super) async fn export(ctx: ApiContext) -> Answer {
    let node_rid = ctx.node_rid.clone();
    let (header, point) = blocking(&ctx.index, move |index| {
        index.export_start(Some(node_rid)).map_err(|e| match e {
            IndexError::ContentsNotKept => ApiError(StatusCode::CONFLICT, e.to_string()),
            e => e.into(),
        })
    })
    .await?;
    let first =
        ndjson(std::iter::once(&header)).map_err(|e| ApiError::from(IndexError::from(e)))?;
    let index = ctx.index.clone();
    let shutdown = ctx.shutdown.clone();
    // State: where the export stands and how many lines it has written; `None` once the end line is out.
    let rest = futures::stream::unfold(Some((Cursor::Manual(Vec::new()), 0u64)), move |state| {
        let index = index.clone();
        let shutdown = shutdown.clone();
        async move {
            let (cursor, written) = state?;
            if shutdown.is_cancelled() {
                // An error, not an end: the client must not take a cut-short export for a whole one.
                let e = std::io::Error::other("the daemon is stopping; the export is incomplete");
                return Some((Err(e), None));
            }
            if cursor == Cursor::Done {
                let end = ndjson(std::iter::once(&Line::End { lines: written }))
                    .map_err(std::io::Error::other);
                return Some((end, None));
            }
            let step = tokio::task::spawn_blocking(move || {
                let (lines, next) = index.export_page(cursor, point, EXPORT_STEP)?;
                Ok::<_, IndexError>((ndjson(lines.iter())?, lines.len() as u64, next))
            })
            .await;
            match step {
                Ok(Ok((bytes, n, next))) => {
                    Some((Ok::<_, std::io::Error>(bytes), Some((next, written + n))))
                }
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "export failed part-way; the client gets a broken response");
                    Some((Err(std::io::Error::other(e.to_string())), None))
                }
                Err(e) => Some((Err(std::io::Error::other(e.to_string())), None)),
            }
        }
    });
    let body = futures::StreamExt::chain(
        futures::stream::once(async move { Ok::<_, std::io::Error>(first) }),
        rest,
    );
    let mut response = Response::new(warp::hyper::Body::wrap_stream(body));
    response.headers_mut().insert(
        "content-type",
        warp::http::HeaderValue::from_static("application/x-ndjson"),
    );
    Ok(response.into_response())
}

/// Lines of JSON, each ending in `\n`.
fn ndjson<'a, T: Serialize + 'a>(
    items: impl Iterator<Item = &'a T>,
) -> Result<Vec<u8>, serde_json::Error> {
    let mut out = Vec::new();
    for item in items {
        serde_json::to_writer(&mut out, item)?;
        out.push(b'\n');
    }
    Ok(out)
}

/// Whether `line` is an event (for counting).
pub fn is_event(line: &Line) -> bool {
    matches!(line, Line::Bundle(b) if b.manifest.rid.as_str().starts_with("orn:github.event:"))
}
