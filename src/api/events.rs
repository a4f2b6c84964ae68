//! `/events/{rid}` (with `/history`), `/bundles/{rid}` and `/commits/{sha}/events`: one event, its versions, any
//! bundle held, and the events that name a commit.

use super::params::{decode_path, parse_params};
use super::{blocking, ok, Answer, ApiContext, ApiError};
use crate::protocol::{GithubEventRid, Rid};

/// The event RID a path part names (URL-encoded or not), or a 400 saying what was expected.
fn event_rid(raw: &str) -> Result<Rid, ApiError> {
    let text = decode_path(raw)?;
    Rid::parse(&text)
        .and_then(|rid| GithubEventRid::from_rid(&rid).map(|_| rid))
        .map_err(|e| {
            ApiError::bad_request(format!("{e}; expected a GitHub event RID, URL-encoded"))
        })
}

/// `GET /events/{rid}`, or its history.
pub(super) async fn event(tail: String, ctx: ApiContext) -> Answer {
    if let Some(rid) = tail.strip_suffix("/history") {
        return event_history(rid, ctx).await;
    }
    let rid = event_rid(&tail)?;
    let shown = rid.to_string();
    match blocking(&ctx.index, move |index| Ok(index.event(&rid)?)).await? {
        Some(details) => ok(&details),
        None => Err(ApiError::not_found(format!("event {shown} is not indexed"))),
    }
}

/// `GET /events/{rid}/history`.
async fn event_history(tail: &str, ctx: ApiContext) -> Answer {
    let rid = event_rid(tail)?;
    let shown = rid.to_string();
    match blocking(&ctx.index, move |index| Ok(index.history(&rid)?)).await? {
        Some(versions) => ok(&versions),
        None => Err(ApiError::not_found(format!("event {shown} is not indexed"))),
    }
}

/// `GET /bundles/{rid}`: any bundle held, event or repository.
pub(super) async fn bundle(tail: String, ctx: ApiContext) -> Answer {
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

pub(super) async fn commit_events(
    sha: String,
    params: Vec<(String, String)>,
    ctx: ApiContext,
) -> Answer {
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
