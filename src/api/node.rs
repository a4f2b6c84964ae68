//! The node's own routes: `/health`, `/status`, `/polls` (the poll log) and `/rejected` (dead letters).

use std::sync::Arc;

use warp::http::StatusCode;

use super::params::{self, PollsQuery, RejectedQuery};
use super::{blocking, ok, on_blocking_pool, Answer, ApiContext, ApiError};
use super::{StatusBody, StatusDetails};

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
            sink: index.sink_status()?,
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
    let PollsQuery { neighbour, limit } = params::polls_query(&params)?;
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
    let RejectedQuery {
        limit,
        offset,
        items: with_items,
    } = params::rejected_query(&params)?;
    let letters = ctx.dead_letters.clone();
    let page = on_blocking_pool(move || Ok(letters.page(offset, limit, with_items)?)).await?;
    ok(&page)
}
