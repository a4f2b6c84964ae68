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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::testing;

    /// A neighbour being polled is not polled again by the next beat; the first contact is polled from the
    /// first beat. (A current-thread runtime: the polls spawned do not run before the checks, which do not await.)
    #[tokio::test]
    async fn a_beat_polls_each_due_neighbour_once_at_a_time() {
        let t = testing::node();
        let mut tasks = JoinSet::new();
        t.node.tick(&mut tasks);
        let first_contact = t.node.settings.first_contact_rid.clone();
        assert!(
            t.node.with_peer(&first_contact, |state| state.in_flight),
            "the first contact is being polled"
        );
        let started = tasks.len();
        assert!(started >= 2, "a poll and a subscription pass: {started}");
        t.node.tick(&mut tasks);
        assert!(
            tasks.len() <= started + 1,
            "no second poll of a neighbour in flight (at most another subscription pass)"
        );
        t.node.cancellation().cancel();
        t.node.tick(&mut tasks);
        let after_cancel = tasks.len();
        assert!(after_cancel <= started + 1, "nothing starts after shutdown");
        tasks.abort_all();
    }
}
