//! One poll of one neighbour: verified events become durable in the inbox before anything else happens to them.

use std::sync::Arc;
use std::time::Instant;

use crate::index::Rejection;
use crate::protocol::{EdgeStatus, Event, HashScheme, Item, Rid};
use crate::telemetry::{
    InboxDepth, LegacyHashAccepted, PollFailed, PollOutcome, PollSucceeded, RejectReason,
};

use super::client::{error_chain, ClientError, Peer};
use super::inbox::InboxError;
use super::{bad_item_rejection, rejection_of, Node};

impl Node {
    /// Polls `peer` and stores what it returns. Skipped while the inbox is full (the neighbour keeps its queue).
    pub async fn poll_neighbour(self: &Arc<Self>, peer: &Peer) {
        if self.inbox.len() >= self.settings.max_buffered {
            tracing::debug!(neighbour = %peer.rid, held = self.inbox.len(), "inbox full: poll deferred");
            return;
        }
        let is_first_contact = peer.rid == self.settings.first_contact_rid;
        if is_first_contact
            && !self.graph.joined(&peer.rid).unwrap_or(false)
            && self.with_peer(&peer.rid, |s| s.unknown_node == 0 && !s.handshaken)
        {
            // Not joined yet (or forgotten): introduce ourselves before polling.
            self.handshake(peer).await;
        }
        let started = Instant::now();
        let polled = tokio::select! {
            polled = self.client.poll(peer, self.settings.poll_limit, self.settings.timeout) => polled,
            _ = self.cancel.cancelled() => return,
        };
        match polled {
            Ok(verified) => {
                // From here the neighbour has forgotten these events: they are stored even during shutdown.
                let count = verified.payload.len();
                let node = Arc::clone(self);
                let source = peer.rid.clone();
                let stored = tokio::task::spawn_blocking(move || {
                    node.screen_and_store(&source, verified.payload)
                })
                .await;
                let stored = match stored {
                    Ok(result) => result,
                    Err(e) => {
                        tracing::error!(neighbour = %peer.rid, error = %e, "storing polled events failed");
                        return;
                    }
                };
                if let Err(e) = stored {
                    // The neighbour has already forgotten these events; all we can do is say so loudly.
                    tracing::error!(neighbour = %peer.rid, events = count, error = %e, "could not store polled events");
                    return;
                }
                self.poll_answered(peer, is_first_contact);
                let neighbour = peer.rid.to_string();
                let polled = PollSucceeded {
                    neighbour: &neighbour,
                    url: &peer.base_url,
                    events: count,
                    duration: started.elapsed(),
                };
                polled.emit(&self.telemetry.metrics);
                self.record_attempt(&polled.to_attempt());
                if count > 0 {
                    InboxDepth {
                        depth: self.inbox.len(),
                    }
                    .emit(&self.telemetry.metrics);
                    self.wake_writer.notify();
                }
                let limit = self.settings.poll_limit as usize;
                if limit > 0 && count >= limit {
                    // A full page: the neighbour has more. Poll again now, not at the next tick.
                    self.kick();
                }
                self.follow_up_pending_approval(peer);
            }
            Err(error) => {
                self.poll_failed(peer, is_first_contact, error, started)
                    .await
            }
        }
    }

    /// Reads each polled item on its own: bad ones are rejected one by one; events with contents are checked
    /// against their manifest's hash here (off the runtime, beside the writer's work) and bad ones rejected; the
    /// rest are appended to the inbox and synced. Blocking.
    pub(super) fn screen_and_store(
        &self,
        source: &Rid,
        items: Vec<Item<Event>>,
    ) -> Result<usize, InboxError> {
        let mut good = Vec::with_capacity(items.len());
        let mut rejections: Vec<Rejection> = Vec::new();
        for item in items {
            match item {
                Err(bad) => rejections.push(bad_item_rejection(source, bad)),
                Ok(event) => match event.verify_hash() {
                    Ok(scheme) => {
                        if scheme == Some(HashScheme::Legacy) {
                            LegacyHashAccepted {
                                neighbour: source.as_str(),
                                rid: event.rid.as_str(),
                            }
                            .emit(&self.telemetry.metrics);
                        }
                        good.push(event)
                    }
                    Err(mismatch) => rejections.push(rejection_of(
                        source,
                        &event.rid,
                        RejectReason::BadHash,
                        mismatch.to_string(),
                        &event,
                    )),
                },
            }
        }
        self.reject(rejections);
        let stored = self.inbox.push(source, good, true)?;
        // Most polls bring nothing: no sync for them.
        if stored > 0 {
            self.inbox.flush()?;
        }
        Ok(stored)
    }

    /// A verified answer: the neighbour is healthy again, and if it had been failing it may have lost what it
    /// queued for us, so it is caught up with again.
    fn poll_answered(&self, peer: &Peer, is_first_contact: bool) {
        let recovered = self.with_peer(&peer.rid, |state| {
            state.unknown_node = 0;
            state.joining = None;
            state.backoff.take().is_some()
        });
        if recovered {
            // koi-net keeps poll queues in memory: a restart meanwhile lost them. Catching up again (one manifests
            // request, then only what we lack) recovers them.
            self.catch_up_again(&peer.rid);
        }
        if is_first_contact && !self.graph.joined(&peer.rid).unwrap_or(true) {
            let _ = self.graph.set_joined(&peer.rid, true);
            tracing::info!(neighbour = %peer.rid, "joined the network through the first contact");
            // Next step at once: subscribe to the network's node and edge events and discover providers.
            self.kick();
        }
    }

    async fn poll_failed(
        self: &Arc<Self>,
        peer: &Peer,
        is_first_contact: bool,
        error: ClientError,
        started: Instant,
    ) {
        let duration = started.elapsed();
        if error.is_unknown_node() {
            let n = self.with_peer(&peer.rid, |state| {
                state.unknown_node += 1;
                state.unknown_node
            });
            // It lost its state about us (a restart without state, or it forgot us after failed requests):
            // whatever it received meanwhile was never queued for us, so catch up with it again once it knows us.
            self.catch_up_again(&peer.rid);
            // Right after a handshake the neighbour may simply not have processed it yet: retry the poll a few
            // times, then introduce ourselves again.
            if n.is_multiple_of(4) {
                if is_first_contact {
                    let _ = self.graph.set_joined(&peer.rid, false);
                    self.handshake(peer).await;
                } else {
                    self.introduce_to_provider(peer).await;
                }
            }
        }
        let outcome = PollOutcome::from_label(error.outcome());
        // Right after our handshake (or our profile reached a provider) a koi-net node answers `unknown_node`, or
        // without introducing itself, until it has processed what we sent: that clears within moments, so retry
        // soon rather than after a whole poll interval (issue 15: the join waited one interval per such step).
        let soon = matches!(
            outcome,
            PollOutcome::UnknownNode | PollOutcome::UnknownSender
        );
        let expected = soon
            && self.with_peer(&peer.rid, |state| {
                state.not_known_yet(std::time::Instant::now())
            });
        let retry_in = self.backoff_failed(&peer.rid, soon);
        if soon {
            self.kick_after(retry_in);
        }
        let neighbour = peer.rid.to_string();
        let cause = error_chain(&error);
        let failed = PollFailed {
            neighbour: &neighbour,
            url: &peer.base_url,
            cause: &cause,
            outcome,
            duration,
            backoff: Some(retry_in),
            expected,
        };
        failed.emit(&self.telemetry.metrics);
        self.record_attempt(&failed.to_attempt());
        // A response refused whole (its items unverified, so unknowable) counts as one rejection, under its true
        // reason.
        let reason = match outcome {
            PollOutcome::BadSignature => Some(RejectReason::BadSignature),
            PollOutcome::WrongTarget => Some(RejectReason::WrongTarget),
            PollOutcome::Malformed => Some(RejectReason::Malformed),
            _ => None,
        };
        if let Some(reason) = reason {
            self.reject_async(vec![Rejection {
                rid: String::new(),
                source: neighbour,
                reason: reason.as_str(),
                detail: cause,
                item: String::new(),
            }])
            .await;
        }
    }

    /// Counts a failed request against `rid`'s backoff (`soon`: a failure expected to clear within moments);
    /// returns how long until it is tried again.
    fn backoff_failed(&self, rid: &Rid, soon: bool) -> std::time::Duration {
        let (interval, max) = (self.settings.interval, self.settings.max_backoff);
        self.with_peer(rid, |state| {
            let backoff = state
                .backoff
                .get_or_insert_with(|| super::Backoff::new(interval, max));
            if soon {
                backoff.failed_soon(Instant::now())
            } else {
                backoff.failed(Instant::now())
            }
        })
    }

    /// A provider we proposed a POLL edge to approves it on one of our polls, once it has processed the proposal
    /// (koi-net does so within moments). Until then it is polled again soon, not at the next tick: the catch-up
    /// waits for the approval (issue 15).
    fn follow_up_pending_approval(self: &Arc<Self>, peer: &Peer) {
        let pending = self
            .graph
            .poll_sources(self.rid())
            .unwrap_or_default()
            .iter()
            .any(|e| e.source == peer.rid && e.status == EdgeStatus::Proposed);
        let polls = self.with_peer(&peer.rid, |state| {
            if pending {
                state.awaiting_approval += 1;
            } else {
                state.awaiting_approval = 0;
            }
            state.awaiting_approval
        });
        if pending {
            let exp = polls.saturating_sub(1).min(20);
            let wait = super::backoff::SOON
                .saturating_mul(1u32 << exp)
                .min(self.settings.interval);
            if wait < self.settings.interval {
                self.kick_after(wait);
            }
        }
    }

    /// A beat after `wait`, for a retry that must not wait for the next tick.
    pub(super) fn kick_after(self: &Arc<Self>, wait: std::time::Duration) {
        let node = Arc::clone(self);
        tokio::spawn(async move {
            tokio::select! {
                () = tokio::time::sleep(wait) => node.kick(),
                () = node.cancel.cancelled() => {}
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use crate::node::testing;
    use crate::protocol::{Bundle, Contents, Event, EventType, Rid};

    #[test]
    fn each_polled_item_is_screened_on_its_own() {
        let t = testing::node();
        let source = testing::sensor();
        let mut contents = Contents::new();
        contents.insert("webhook_event_type".into(), "push".into());
        let good = Bundle::generate(
            Rid::parse("orn:github.event:octo/hello:good").unwrap(),
            contents.clone(),
        );
        let mut bad = Bundle::generate(
            Rid::parse("orn:github.event:octo/hello:bad").unwrap(),
            contents,
        );
        bad.contents.insert("forged".into(), true.into());
        let payload = format!(
            "{{\"type\": \"events_payload\", \"events\": [{}, {}, {{\"rid\": \"orn:github.event:a b\"}}]}}",
            serde_json::to_string(&Event::from_bundle(EventType::New, good)).unwrap(),
            serde_json::to_string(&Event::from_bundle(EventType::New, bad)).unwrap(),
        );
        let crate::protocol::ResponseItems::Events(items) =
            crate::protocol::ResponseItems::parse(&payload).unwrap()
        else {
            panic!("an events payload");
        };
        let stored = t.node.screen_and_store(&source, items).unwrap();
        assert_eq!(stored, 1, "only the good event is stored");
        assert_eq!(t.node.inbox_depth(), 1);
        let letters = t.dead_letters.page(0, 10, false).unwrap();
        let reasons: Vec<&str> = letters.iter().map(|l| l.reason.as_str()).collect();
        assert!(reasons.contains(&"bad_hash"), "{reasons:?}");
        assert_eq!(
            letters.len(),
            2,
            "the bad hash and the unreadable item: {reasons:?}"
        );
    }
}
