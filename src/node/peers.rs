//! What the node keeps in memory about each neighbour (backoff, polls and catch-ups in flight, join progress), in
//! one place behind one lock that is never held across an `.await` nor while reading sled.

use std::collections::HashMap;
use std::sync::Mutex;

use super::backoff::Backoff;
use super::client::Peer;
use super::{lock, NeighbourStatus};
use crate::protocol::Rid;

/// Everything the node keeps in memory about one neighbour, in one place.
#[derive(Debug, Default)]
pub(super) struct PeerState {
    /// Set after a failed poll; `None` while it answers.
    pub(super) backoff: Option<Backoff>,
    /// A poll of it is running.
    pub(super) in_flight: bool,
    /// Consecutive `unknown_node` answers (first join: the coordinator may not have processed our handshake yet).
    pub(super) unknown_node: u32,
    /// Its catch-up completed this run (under the current epoch).
    pub(super) caught_up: bool,
    /// Its catch-up is running.
    pub(super) catching_up: bool,
    /// Bumped when it must be caught up with again: a catch-up started under an older epoch does not count.
    pub(super) catch_up_epoch: u64,
    /// Set after a failed catch-up: the next is not tried before it is ready (a provider that takes long to list
    /// what it holds is not asked again on every tick).
    pub(super) catch_up_backoff: Option<Backoff>,
    /// Polls answered while our POLL edge from it was still only proposed: it is polled again soon (sooner than
    /// the schedule) so its approval is seen within moments; the wait doubles with each such poll.
    pub(super) awaiting_approval: u32,
    /// Our handshake reached it this run. It is not sent again before each poll: its FORGET of our RID, relayed
    /// to the providers, would make them drop us and our edges mid-join. Only repeated `unknown_node` answers
    /// (it forgot us) send it again.
    pub(super) handshaken: bool,
    /// Answers in a row that only say the neighbour does not know us yet (`unknown_node`, or signed by a key we do
    /// not know yet), and since when: a normal step of joining while it lasts [`JOINING_ANSWERS`] tries within
    /// [`JOINING_WINDOW`], a fault after.
    pub(super) joining: Option<(u32, std::time::Instant)>,
}

/// How many "does not know us yet" answers in a row are a normal part of joining.
pub(super) const JOINING_ANSWERS: u32 = 3;
/// How long "does not know us yet" answers are a normal part of joining.
pub(super) const JOINING_WINDOW: std::time::Duration = std::time::Duration::from_secs(10);

impl PeerState {
    /// Notes one more "does not know us yet" answer; whether it is still a normal part of joining.
    pub(super) fn not_known_yet(&mut self, now: std::time::Instant) -> bool {
        let (count, since) = self.joining.get_or_insert((0, now));
        *count += 1;
        *count <= JOINING_ANSWERS && now.duration_since(*since) <= JOINING_WINDOW
    }
}

/// Every neighbour's [`PeerState`].
#[derive(Debug, Default)]
pub(super) struct Peers {
    states: Mutex<HashMap<Rid, PeerState>>,
}

impl Peers {
    /// Runs `f` on the neighbour's state (created if new). The lock is held for `f` only.
    pub(super) fn with<T>(&self, rid: &Rid, f: impl FnOnce(&mut PeerState) -> T) -> T {
        let mut states = lock(&self.states);
        f(states.entry(rid.clone()).or_default())
    }

    /// The status API's view of `neighbours`.
    pub(super) fn status(&self, neighbours: Vec<Peer>) -> Vec<NeighbourStatus> {
        let states = lock(&self.states);
        neighbours
            .into_iter()
            .map(|p| {
                let state = states.get(&p.rid);
                NeighbourStatus {
                    failures: state
                        .and_then(|s| s.backoff.as_ref())
                        .map_or(0, |b| b.failures()),
                    caught_up: state.is_some_and(|s| s.caught_up),
                    base_url: (!p.base_url.is_empty()).then_some(p.base_url),
                    rid: p.rid.to_string(),
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_few_early_not_known_answers_are_normal_then_a_fault() {
        let start = std::time::Instant::now();
        let second = std::time::Duration::from_secs(1);
        let mut state = PeerState::default();
        assert!(state.not_known_yet(start));
        assert!(state.not_known_yet(start + second));
        assert!(state.not_known_yet(start + 2 * second));
        assert!(
            !state.not_known_yet(start + 3 * second),
            "the fourth in a row"
        );
        let mut slow = PeerState::default();
        assert!(slow.not_known_yet(start));
        assert!(
            !slow.not_known_yet(start + JOINING_WINDOW + second),
            "past the window"
        );
    }
}
