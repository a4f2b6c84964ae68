//! The inbox entries handed to background tasks (bundle fetches, edge approvals): whatever waits on a neighbour
//! runs on the runtime, never on the writer thread, and the writer leaves those entries alone meanwhile.

use std::collections::HashSet;
use std::sync::Mutex;

use super::lock;
use super::pipeline::MAX_FETCHES;

/// The entries being worked on.
#[derive(Debug, Default)]
pub(super) struct Background {
    busy: Mutex<HashSet<u64>>,
}

impl Background {
    /// Takes `key` for a background task; `false` when [`MAX_FETCHES`] are running already.
    pub(super) fn start(&self, key: u64) -> bool {
        let mut busy = lock(&self.busy);
        if busy.len() >= MAX_FETCHES {
            return false;
        }
        busy.insert(key)
    }

    /// The task for `key` ended: the writer may look at the entry again.
    pub(super) fn finish(&self, key: u64) {
        lock(&self.busy).remove(&key);
    }

    /// The entries the writer must skip now.
    pub(super) fn busy(&self) -> HashSet<u64> {
        lock(&self.busy).clone()
    }
}
