//! One scheduler beat: start the polls that are due and a subscription pass, each as its own task, so a slow
//! neighbour never delays another. Beats come from the schedule (`poll.interval` or `poll.cron`) and from kicks
//! ([`Node::kick`]): a step that unblocks the next — joined, a provider learned, an edge approved, a poll that
//! returned a full page — runs it at once instead of waiting for the next tick.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use tokio::task::JoinSet;

use super::Node;

impl Node {
    /// Starts a poll of every neighbour that is not backed off and not already being polled, and a subscription
    /// pass unless one is running.
    pub(super) fn tick(self: &Arc<Self>, tasks: &mut JoinSet<()>) {
        if self.cancel.is_cancelled() {
            return;
        }
        let now = Instant::now();
        for peer in self.neighbours() {
            let due = self.with_peer(&peer.rid, |state| {
                let ready = state.backoff.as_ref().is_none_or(|b| b.ready(now));
                if ready && !state.in_flight {
                    state.in_flight = true;
                    true
                } else {
                    false
                }
            });
            if due {
                let node = Arc::clone(self);
                tasks.spawn(async move {
                    node.poll_neighbour(&peer).await;
                    node.with_peer(&peer.rid, |state| state.in_flight = false);
                });
            }
        }
        if self.maintaining.swap(true, Ordering::AcqRel) {
            // A pass is running and may have read the graph before this beat's news: it runs once more.
            self.maintain_again.store(true, Ordering::Release);
        } else {
            let node = Arc::clone(self);
            tasks.spawn(async move {
                Arc::clone(&node).maintain_subscriptions().await;
                node.maintaining.store(false, Ordering::Release);
                if node.maintain_again.swap(false, Ordering::AcqRel) {
                    node.kick();
                }
            });
        }
    }
}
