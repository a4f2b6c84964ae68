//! The live feed: each event the index takes in for the first time, in stream order, to whoever listens (the
//! API's stream routes). An UPDATE of a known event is not sent again.
//!
//! The writer commits, then [`LiveFeed::publish`] reads back what the commit added to `index.stream` and sends it
//! as one batch on a broadcast channel: senders never wait, so a slow listener never slows indexing. A listener
//! that falls more than [`CAPACITY`] batches behind is told so ([`broadcast::error::RecvError::Lagged`]) and
//! resumes from the store, where every event is under its sequence number.

use std::sync::{Arc, Mutex};

use serde::Serialize;
use tokio::sync::broadcast;

use super::feeds::full_name;
use super::github::EventRow;

/// Batches (one per commit, up to the writer's chunk of 256 events) a listener may fall behind before it lags.
pub const CAPACITY: usize = 64;

/// One newly indexed event, serialised once for every listener.
#[derive(Debug)]
pub struct LiveEvent {
    /// Its stream sequence number.
    pub seq: u64,
    /// Its row.
    pub row: EventRow,
    /// The row plus `repo`, as JSON: what the stream sends.
    pub json: String,
}

impl LiveEvent {
    /// Builds one from a row and its number.
    pub fn new(seq: u64, row: EventRow) -> LiveEvent {
        LiveEvent {
            seq,
            json: stream_json(&row),
            row,
        }
    }
}

/// What the stream sends for an event: its row plus `repo` (`owner/name`), as JSON.
pub fn stream_json(row: &EventRow) -> String {
    #[derive(Serialize)]
    struct WithRepo<'a> {
        #[serde(flatten)]
        row: &'a EventRow,
        repo: &'a str,
    }
    serde_json::to_string(&WithRepo {
        row,
        repo: full_name(&row.repo_rid),
    })
    .unwrap_or_else(|_| "{}".to_owned())
}

/// A batch as sent: shared by every listener.
pub type LiveBatch = Arc<Vec<LiveEvent>>;

/// The broadcast side, shared by every clone of the index.
pub struct LiveFeed {
    sender: broadcast::Sender<LiveBatch>,
    /// The last sequence number published.
    published: Mutex<u64>,
}

impl LiveFeed {
    /// A feed whose next event is the one after `last_seq`.
    pub fn new(last_seq: u64) -> LiveFeed {
        let (sender, _) = broadcast::channel(CAPACITY);
        LiveFeed {
            sender,
            published: Mutex::new(last_seq),
        }
    }

    /// A new listener, and the last number published before it: it receives every event after that number.
    /// Taken under the lock `publish` holds while it sends, so no event falls between the two.
    pub fn subscribe(&self) -> (broadcast::Receiver<LiveBatch>, u64) {
        let published = self
            .published
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        (self.sender.subscribe(), *published)
    }

    /// Publishes what was committed after the last published number, up to `last_seq`: `read(after, until)`
    /// gives those events from the store. Without listeners nothing is read.
    pub fn publish<E>(
        &self,
        last_seq: u64,
        read: impl FnOnce(u64, u64) -> Result<Vec<(u64, EventRow)>, E>,
    ) -> Result<(), E> {
        let mut published = self
            .published
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if last_seq <= *published {
            return Ok(());
        }
        if self.sender.receiver_count() > 0 {
            let batch: Vec<LiveEvent> = read(*published, last_seq)?
                .into_iter()
                .map(|(seq, row)| LiveEvent::new(seq, row))
                .collect();
            if !batch.is_empty() {
                // Err only when every listener left meanwhile: nothing to do.
                let _ = self.sender.send(Arc::new(batch));
            }
        }
        *published = last_seq;
        Ok(())
    }
}

impl std::fmt::Debug for LiveFeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveFeed")
            .field("listeners", &self.sender.receiver_count())
            .finish()
    }
}
