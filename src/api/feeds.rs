//! The routes across repositories (issue 12): the global event list, statistics, and the live stream over
//! Server-Sent Events and WebSocket.
//!
//! A stream client is one task ([`feed`]) that subscribes to the index's live feed first, then replays from the
//! store what came after the client's resume point, then forwards live batches, skipping what the replay already
//! sent: no gap and no duplicate. Its messages go through a bounded channel to the connection; a client that
//! stops reading fills it, the task stops taking live batches, and once the feed has moved on by more than its
//! capacity the client gets `lagged` (with the sequence number to resume after) and is disconnected. Indexing
//! never waits for a client.

use std::convert::Infallible;

use futures::{SinkExt as _, StreamExt as _};
use tokio::sync::{broadcast, mpsc};
use warp::http::StatusCode;

use super::{
    blocking, check_range, ok, parse_limit, parse_time, Answer, ApiContext, ApiError, DEFAULT_LIMIT,
};
use crate::index::{
    check_github_name, parse_repo_ref, sampled, EventRow, GlobalQuery, Index, LiveEvent, StatsQuery,
};

/// Messages a stream client may have waiting before it counts as not reading.
const CLIENT_BUFFER: usize = 256;
/// How long a lagging client gets to take its `lagged` message before it is disconnected anyway.
const LAGGED_GRACE: std::time::Duration = std::time::Duration::from_secs(10);
/// Events read from the store per step of a replay.
const REPLAY_STEP: usize = 500;
/// Longest `top` list of `/stats`.
const MAX_TOP: usize = 100;

/// `GET /events?actor=&event_type=&repo=&since=&until=&limit=&offset=`: events across repositories, newest first.
pub(super) async fn global_events(params: Vec<(String, String)>, ctx: ApiContext) -> Answer {
    let mut query = GlobalQuery {
        limit: DEFAULT_LIMIT,
        offset: 0,
        actor: None,
        event_type: None,
        repo: None,
        since: None,
        until: None,
    };
    let accepted = [
        "actor",
        "event_type",
        "repo",
        "since",
        "until",
        "limit",
        "offset",
    ];
    for (name, value) in once_each(&params, &accepted)? {
        match name {
            "actor" => query.actor = Some(text_value(name, value)?),
            "event_type" => query.event_type = Some(text_value(name, value)?),
            "repo" => query.repo = Some(repo_filter(value)?),
            "since" => query.since = Some(parse_time(name, value)?),
            "until" => query.until = Some(parse_time(name, value)?),
            "limit" => query.limit = parse_limit(value)?,
            "offset" => query.offset = parse_offset(value)?,
            _ => {}
        }
    }
    check_range(query.since, query.until)?;
    let page = blocking(&ctx.index, move |index| Ok(index.events_global(&query)?)).await?;
    ok(&page)
}

/// `GET /stats?since=&until=&repo=&top=`: counts from the counters kept at write time.
pub(super) async fn stats(params: Vec<(String, String)>, ctx: ApiContext) -> Answer {
    let mut query = StatsQuery {
        top: 10,
        ..StatsQuery::default()
    };
    for (name, value) in once_each(&params, &["since", "until", "repo", "top"])? {
        match name {
            "since" => query.since = Some(parse_day(name, value)?),
            "until" => query.until = Some(parse_day(name, value)?),
            "repo" => query.repo = Some(repo_filter(value)?.full_name().to_owned()),
            "top" => {
                query.top = value
                    .parse()
                    .ok()
                    .filter(|n| (1..=MAX_TOP).contains(n))
                    .ok_or_else(|| {
                        ApiError::bad_request(format!(
                            "top must be a whole number from 1 to {MAX_TOP}, got `{value}`"
                        ))
                    })?
            }
            _ => {}
        }
    }
    if let (Some(since), Some(until)) = (query.since, query.until) {
        if since > until {
            return Err(ApiError::bad_request(format!(
                "since ({}) is after until ({})",
                crate::index::feeds::day_text(since),
                crate::index::feeds::day_text(until)
            )));
        }
    }
    let stats = blocking(&ctx.index, move |index| Ok(index.stats(&query)?)).await?;
    ok(&stats)
}

/// Which events a stream client wants, and from where.
#[derive(Debug, Clone, Default)]
pub(super) struct StreamRequest {
    repos: Vec<String>,
    event_types: Vec<String>,
    actor: Option<String>,
    sample: Option<f64>,
    /// Resume after this sequence number (`after=`, or the `Last-Event-ID` header); live from now when unset.
    after: Option<u64>,
}

impl StreamRequest {
    /// Reads the query parameters (`repo` and `event_type` may repeat) and the `Last-Event-ID` header.
    pub(super) fn parse(
        params: &[(String, String)],
        last_event_id: Option<&str>,
    ) -> Result<StreamRequest, ApiError> {
        let mut request = StreamRequest::default();
        let mut seen: Vec<&str> = Vec::new();
        for (name, value) in params {
            let repeatable = matches!(name.as_str(), "repo" | "event_type");
            if !repeatable && seen.contains(&name.as_str()) {
                return Err(ApiError::bad_request(format!(
                    "`{name}` is given more than once"
                )));
            }
            seen.push(name);
            match name.as_str() {
                "repo" => request
                    .repos
                    .push(repo_filter(value)?.rid().as_str().to_owned()),
                "event_type" => request.event_types.push(text_value(name, value)?),
                "actor" => request.actor = Some(text_value(name, value)?),
                "sample" => {
                    request.sample = Some(
                        value
                            .parse::<f64>()
                            .ok()
                            .filter(|r| *r > 0.0 && *r <= 1.0)
                            .ok_or_else(|| {
                                ApiError::bad_request(format!(
                                    "sample must be a fraction with 0 < sample ≤ 1, got `{value}`"
                                ))
                            })?,
                    )
                }
                "after" => request.after = Some(parse_seq("after", value)?),
                _ => {
                    return Err(ApiError::bad_request(format!(
                        "unknown query parameter `{name}`: accepted here are repo, event_type, actor, sample, after"
                    )))
                }
            }
        }
        if let Some(id) = last_event_id.filter(|id| !id.trim().is_empty()) {
            request.after = Some(parse_seq("Last-Event-ID", id.trim())?);
        }
        Ok(request)
    }

    fn wants(&self, row: &EventRow) -> bool {
        (self.repos.is_empty() || self.repos.contains(&row.repo_rid))
            && (self.event_types.is_empty() || self.event_types.contains(&row.event_type))
            && self
                .actor
                .as_ref()
                .is_none_or(|a| row.actor.as_ref() == Some(a))
            && self.sample.is_none_or(|rate| sampled(&row.event_rid, rate))
    }
}

/// What a stream client is sent.
#[derive(Debug)]
pub(super) enum StreamMessage {
    /// An event: its number and its JSON (the row plus `repo`).
    Event { seq: u64, json: String },
    /// The client fell behind: it may resume after this number.
    Lagged { resume_after: u64 },
}

/// Feeds one client: replay from the store after the resume point, then live. Ends when the client goes away,
/// lags, or the daemon stops.
pub(super) async fn feed(
    index: Index,
    request: StreamRequest,
    out: mpsc::Sender<StreamMessage>,
    shutdown: tokio_util::sync::CancellationToken,
) {
    // Subscribe before reading the store: what is committed from here on arrives live, what was before is in
    // the store; the overlap is skipped by number.
    let mut live = index.subscribe();
    let replay_from = match request.after {
        Some(after) => after,
        None => match blocking(&index, |index| Ok(index.last_seq()?)).await {
            Ok(last) => last,
            Err(_) => return,
        },
    };
    let mut last = replay_from;
    if request.after.is_some() {
        loop {
            let from = last;
            let step = match blocking(&index, move |index| {
                Ok(index.stream_after(from, REPLAY_STEP)?)
            })
            .await
            {
                Ok(step) => step,
                Err(_) => return,
            };
            if step.is_empty() {
                break;
            }
            for (seq, row) in step {
                last = seq;
                if request.wants(&row) {
                    let event = LiveEvent::new(seq, row);
                    if !send(&out, &shutdown, event.seq, event.json).await {
                        return;
                    }
                }
            }
        }
    }
    loop {
        let batch = tokio::select! {
            received = live.recv() => received,
            () = shutdown.cancelled() => return,
            () = out.closed() => return,
        };
        match batch {
            Ok(batch) => {
                for event in batch.iter() {
                    if event.seq <= last {
                        continue;
                    }
                    last = event.seq;
                    if request.wants(&event.row)
                        && !send(&out, &shutdown, event.seq, event.json.clone()).await
                    {
                        return;
                    }
                }
            }
            Err(broadcast::error::RecvError::Lagged(_)) => {
                // Tell it where to resume, if it reads within a while; then the connection ends.
                let lagged = out.send(StreamMessage::Lagged { resume_after: last });
                let _ = tokio::time::timeout(LAGGED_GRACE, lagged).await;
                return;
            }
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

async fn send(
    out: &mpsc::Sender<StreamMessage>,
    shutdown: &tokio_util::sync::CancellationToken,
    seq: u64,
    json: String,
) -> bool {
    tokio::select! {
        sent = out.send(StreamMessage::Event { seq, json }) => sent.is_ok(),
        () = shutdown.cancelled() => false,
    }
}

/// Starts a client's feed; its messages come out of the returned receiver.
pub(super) fn start_feed(
    ctx: &ApiContext,
    request: StreamRequest,
) -> mpsc::Receiver<StreamMessage> {
    let (tx, rx) = mpsc::channel(CLIENT_BUFFER);
    tokio::spawn(feed(ctx.index.clone(), request, tx, ctx.shutdown.clone()));
    rx
}

/// `GET /stream`: Server-Sent Events.
pub(super) fn sse_reply(ctx: &ApiContext, request: StreamRequest) -> warp::reply::Response {
    use warp::Reply as _;
    let messages = start_feed(ctx, request);
    let events = futures::stream::unfold(messages, |mut messages| async move {
        let message = messages.recv().await?;
        let event = match message {
            StreamMessage::Event { seq, json } => warp::sse::Event::default()
                .id(seq.to_string())
                .event("github_event")
                .data(json),
            StreamMessage::Lagged { resume_after } => warp::sse::Event::default()
                .event("lagged")
                .data(serde_json::json!({ "resume_after": resume_after }).to_string()),
        };
        Some((Ok::<_, Infallible>(event), messages))
    });
    let keep_alive = warp::sse::keep_alive().interval(ctx.stream_keep_alive);
    warp::sse::reply(keep_alive.stream(events)).into_response()
}

/// `GET /stream/ws`: the same over WebSocket, one JSON text message per event: `{"seq": N, "event": {row}}`; a
/// lagging client gets `{"lagged": {"resume_after": N}}` and a close.
pub(super) async fn websocket(
    socket: warp::ws::WebSocket,
    ctx: ApiContext,
    request: StreamRequest,
) {
    let mut messages = start_feed(&ctx, request);
    let (mut sink, mut incoming) = socket.split();
    loop {
        tokio::select! {
            message = messages.recv() => {
                let Some(message) = message else { break };
                let (text, last) = match message {
                    StreamMessage::Event { seq, json } => (format!("{{\"seq\":{seq},\"event\":{json}}}"), false),
                    StreamMessage::Lagged { resume_after } => (
                        serde_json::json!({ "lagged": { "resume_after": resume_after } }).to_string(),
                        true,
                    ),
                };
                if sink.send(warp::ws::Message::text(text)).await.is_err() || last {
                    break;
                }
            }
            received = incoming.next() => match received {
                // Pings are answered by the library; anything else from the client is ignored.
                Some(Ok(message)) if !message.is_close() => {}
                _ => break,
            },
        }
    }
    let _ = sink.close().await;
}

/// The parameters, each known and given once, as `(name, value)`.
pub(super) fn once_each<'a>(
    params: &'a [(String, String)],
    accepted: &[&str],
) -> Result<Vec<(&'a str, &'a str)>, ApiError> {
    let mut seen: Vec<&str> = Vec::new();
    let mut out = Vec::with_capacity(params.len());
    for (name, value) in params {
        if !accepted.contains(&name.as_str()) {
            return Err(ApiError::bad_request(format!(
                "unknown query parameter `{name}`: accepted here are {}",
                accepted.join(", ")
            )));
        }
        if seen.contains(&name.as_str()) {
            return Err(ApiError::bad_request(format!(
                "`{name}` is given more than once"
            )));
        }
        seen.push(name);
        out.push((name.as_str(), value.as_str()));
    }
    Ok(out)
}

/// A repository named in a filter: `owner/name` or its RID, a name GitHub allows.
fn repo_filter(value: &str) -> Result<crate::protocol::GithubRepoRid, ApiError> {
    let repo = parse_repo_ref(value)?;
    check_github_name(value, repo.full_name())?;
    Ok(repo)
}

fn text_value(name: &str, value: &str) -> Result<String, ApiError> {
    if value.is_empty() || value.chars().any(char::is_control) {
        return Err(ApiError::bad_request(format!(
            "{name} must be a non-empty name without control characters"
        )));
    }
    Ok(value.to_owned())
}

pub(super) fn parse_offset(value: &str) -> Result<usize, ApiError> {
    value.parse().map_err(|_| {
        ApiError::bad_request(format!("offset must be a whole number ≥ 0, got `{value}`"))
    })
}

fn parse_seq(name: &str, value: &str) -> Result<u64, ApiError> {
    value.parse().map_err(|_| {
        ApiError::bad_request(format!(
            "{name} must be a stream sequence number (a whole number ≥ 0), got `{value}`"
        ))
    })
}

fn parse_day(name: &str, value: &str) -> Result<u32, ApiError> {
    crate::index::feeds::parse_day(value).ok_or_else(|| {
        ApiError(
            StatusCode::BAD_REQUEST,
            format!("{name} must be a day like 2026-11-20 (UTC, inclusive), got `{value}`"),
        )
    })
}
