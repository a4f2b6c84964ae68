//! The node's own routes: `/health`, `/status`, `/polls` (the poll log) and `/rejected` (dead letters).

use std::sync::Arc;

use warp::http::StatusCode;

use super::params::{once_each, parse_limit, parse_offset};
use super::{blocking, ok, on_blocking_pool, Answer, ApiContext, ApiError, DEFAULT_LIMIT};
use super::{StatusBody, StatusDetails};
use crate::protocol::Rid;

pub(super) async fn status(ctx: ApiContext) -> Answer {
    let node_status = Arc::clone(&ctx.status);
    let details = blocking(&ctx.index, move |index| {
        let counts = index.counts()?;
        Ok(StatusDetails {
            node: node_status(),
            events: counts.events,
            repositories: counts.repositories,
            event_types: counts.by_type,
            latest_event: index.latest_event()?,
            last_seq: index.last_seq()?,
        })
    })
    .await?;
    ok(&StatusBody {
        status: "active".into(),
        message: "koi-github-indexer is running".into(),
        details,
    })
}

/// `/polls?neighbour=&limit=`: the poll log, newest first, of one neighbour or of all.
pub(super) async fn polls(params: Vec<(String, String)>, ctx: ApiContext) -> Answer {
    let mut neighbour = None;
    let mut limit = DEFAULT_LIMIT;
    for (name, value) in once_each(&params, &["neighbour", "limit"])? {
        match name {
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
            _ => limit = parse_limit(value)?,
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

/// `GET /rejected?limit&offset`: dead letters, newest first (without the items' text: see the CLI's `--items`).
pub(super) async fn rejected(params: Vec<(String, String)>, ctx: ApiContext) -> Answer {
    let mut limit = DEFAULT_LIMIT;
    let mut offset = 0;
    let mut with_items = false;
    // The one rule every route follows: documented parameters only, each at most once.
    for (key, value) in once_each(&params, &["limit", "offset", "items"])? {
        match key {
            "limit" => limit = parse_limit(value)?,
            "offset" => offset = parse_offset(value)?,
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
