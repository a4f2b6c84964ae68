//! The routes across repositories: the global event list, statistics, and the live stream over
//! Server-Sent Events and WebSocket.
//!
//! A stream client is a [`Feed`] pulled by its connection. It subscribes to the index's live feed first, then
//! replays from the store what came after the client's resume point, then forwards live batches, skipping what
//! the replay already sent: no gap and no duplicate. It spawns no task and holds at most one batch; a client that
//! stops reading stops pulling, and once the index has moved on by more than the live feed's capacity it gets
//! `lagged` (with the sequence number to resume after) and the stream ends. Indexing never waits for a client.

use std::convert::Infallible;

use futures::{SinkExt as _, StreamExt as _};
use std::collections::VecDeque;

use tokio::sync::broadcast;

use super::params::{self, StreamRequest};
use super::{blocking, ok, Answer, ApiContext, ApiError};
use crate::index::{sampled, stream_json, EventRow, Index, LiveBatch};

/// Events read from the store per step of a replay.
const REPLAY_STEP: usize = 500;

/// `GET /events?actor=&event_type=&repo=&since=&until=&limit=&offset=`: events across repositories, newest first.
pub(super) async fn global_events(params: Vec<(String, String)>, ctx: ApiContext) -> Answer {
    let query = params::global_query(&params)?;
    let page = blocking(&ctx.index, move |index| Ok(index.events_global(&query)?)).await?;
    ok(&page)
}

/// `GET /stats?since=&until=&repo=&top=`: counts from the counters kept at write time.
pub(super) async fn stats(params: Vec<(String, String)>, ctx: ApiContext) -> Answer {
    let query = params::stats_query(&params)?;
    let stats = blocking(&ctx.index, move |index| Ok(index.stats(&query)?)).await?;
    ok(&stats)
}

impl StreamRequest {
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

/// One client's feed, pulled by its connection: [`Feed::next`] is called only when the connection can take
/// more, so the bytes waiting for a client are bounded by its socket and one batch. A client that stops reading
/// stops pulling; once the index has committed more than [`live::CAPACITY`](crate::index::live::CAPACITY)
/// batches past it, its next pull is `lagged` and the end of the stream. Indexing never waits for it.
pub(super) struct Feed {
    index: Index,
    request: StreamRequest,
    shutdown: tokio_util::sync::CancellationToken,
    live: broadcast::Receiver<LiveBatch>,
    /// The last number taken from the store or the live feed (sent, waiting in `pending`, or filtered out).
    taken: u64,
    /// The number a client that lags now may resume after: everything up to it has been handed to the connection.
    handed: u64,
    /// Whether the store still holds events after `taken` that the live feed will not bring.
    replaying: bool,
    /// Whether a live batch has come since the last replay ended: a lag before that is the replay's, not the
    /// client's.
    live_since_replay: bool,
    /// Messages taken but not yet handed over (at most one batch or one replay step).
    pending: VecDeque<StreamMessage>,
    ended: bool,
}

impl Feed {
    /// A feed that replays after `request.after`, or starts live from now. It subscribes to the live feed before
    /// reading the store: what is committed from here on arrives live, what was before is in the store, and the
    /// overlap is skipped by number.
    pub(super) fn new(ctx: &ApiContext, request: StreamRequest) -> Feed {
        let (live, now) = ctx.index.subscribe();
        let after = request.after.unwrap_or(now);
        Feed {
            live,
            index: ctx.index.clone(),
            taken: after,
            handed: after,
            replaying: request.after.is_some(),
            // With nothing to replay, a lag is the client's from the start.
            live_since_replay: request.after.is_none(),
            request,
            shutdown: ctx.shutdown.clone(),
            pending: VecDeque::new(),
            ended: false,
        }
    }

    /// Takes the event numbered `seq` from the store or the live feed: queued for the client if it wants it.
    fn take(&mut self, seq: u64, row: &EventRow, json: impl FnOnce() -> String) {
        self.taken = seq;
        if self.request.wants(row) {
            self.pending
                .push_back(StreamMessage::Event { seq, json: json() });
        }
    }

    /// Reads the store on the blocking pool; `None` (and the end of the stream) if it fails or the daemon stops.
    async fn read<T: Send + 'static>(
        &mut self,
        read: impl FnOnce(Index) -> Result<T, ApiError> + Send + 'static,
    ) -> Option<T> {
        let result = tokio::select! {
            biased;
            () = self.shutdown.cancelled() => None,
            result = blocking(&self.index, read) => result.ok(),
        };
        if result.is_none() {
            self.ended = true;
        }
        result
    }

    /// The next message, or `None` when the stream ends (the daemon stops, the store fails, or after `lagged`).
    /// Cancel-safe: state changes only after each await has completed.
    pub(super) async fn next(&mut self) -> Option<StreamMessage> {
        loop {
            if let Some(message) = self.pending.pop_front() {
                if let StreamMessage::Event { seq, .. } = &message {
                    self.handed = *seq;
                }
                if self.pending.is_empty() {
                    self.handed = self.handed.max(self.taken);
                }
                return Some(message);
            }
            if self.ended {
                return None;
            }
            let taken = self.taken;
            if self.replaying {
                let step = self
                    .read(move |index| Ok(index.stream_after(taken, REPLAY_STEP)?))
                    .await?;
                if step.is_empty() {
                    self.replaying = false;
                    self.live_since_replay = false;
                }
                for (seq, row) in step {
                    self.take(seq, &row, || stream_json(&row));
                }
                continue;
            }
            let received = tokio::select! {
                biased;
                () = self.shutdown.cancelled() => None,
                received = self.live.recv() => Some(received),
            };
            match received {
                Some(Ok(batch)) => {
                    self.live_since_replay = true;
                    for event in batch.iter() {
                        if event.seq > taken {
                            self.take(event.seq, &event.row, || event.json.clone());
                        }
                    }
                }
                Some(Err(broadcast::error::RecvError::Lagged(_))) => {
                    // Everything missed is in the store. The client is at fault only when it stopped pulling
                    // while live; when what it missed came in while it was replaying (it reads as fast as the
                    // store gives), it reads the rest from the store too.
                    if self.live_since_replay {
                        self.ended = true;
                        return Some(StreamMessage::Lagged {
                            resume_after: self.handed,
                        });
                    }
                    self.live = self.index.subscribe().0;
                    self.replaying = true;
                }
                Some(Err(broadcast::error::RecvError::Closed)) | None => {
                    self.ended = true;
                }
            }
        }
    }
}
/// `GET /stream`: Server-Sent Events. The response asks for the connection to close when it ends (after
/// `lagged`, or when the daemon stops): a stream client reconnects rather than reusing it.
pub(super) fn sse_reply(ctx: &ApiContext, request: StreamRequest) -> warp::reply::Response {
    use warp::Reply as _;
    let feed = Feed::new(ctx, request);
    let events = futures::stream::unfold(feed, |mut feed| async move {
        let event = match feed.next().await? {
            StreamMessage::Event { seq, json } => warp::sse::Event::default()
                .id(seq.to_string())
                .event("github_event")
                .data(json),
            StreamMessage::Lagged { resume_after } => warp::sse::Event::default()
                .event("lagged")
                .data(serde_json::json!({ "resume_after": resume_after }).to_string()),
        };
        Some((Ok::<_, Infallible>(event), feed))
    });
    let keep_alive = warp::sse::keep_alive().interval(ctx.stream_keep_alive);
    let mut response = warp::sse::reply(keep_alive.stream(events)).into_response();
    response.headers_mut().insert(
        warp::http::header::CONNECTION,
        warp::http::HeaderValue::from_static("close"),
    );
    response
}

/// `GET /stream/ws`: the same over WebSocket, one JSON text message per event: `{"seq": N, "event": {row}}`; a
/// lagging client gets `{"lagged": {"resume_after": N}}` and a close.
pub(super) async fn websocket(
    socket: warp::ws::WebSocket,
    ctx: ApiContext,
    request: StreamRequest,
) {
    let mut feed = Feed::new(&ctx, request);
    let (mut sink, mut incoming) = socket.split();
    loop {
        tokio::select! {
            message = feed.next() => {
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
