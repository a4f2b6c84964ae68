//! What the node refuses: each rejection logged and counted by reason, and kept as a dead letter (bounded).

use crate::index::{DeadLetters, Rejection};
use crate::protocol::{BadItem, BadItemKind, Rid};
use crate::telemetry::{DeadLetters as DeadLettersChanged, EventRejected, Metrics, RejectReason};

/// The one place rejections are reported.
#[derive(Clone)]
pub(super) struct Rejections {
    /// Where they are kept.
    dead_letters: DeadLetters,
    /// Where they are counted.
    metrics: Metrics,
}

impl Rejections {
    pub(super) fn new(dead_letters: DeadLetters, metrics: Metrics) -> Rejections {
        Rejections {
            dead_letters,
            metrics,
        }
    }

    /// Logs and counts each, and keeps them as dead letters. Writes sled: call it off the runtime.
    pub(super) fn record(&self, rejections: Vec<Rejection>) {
        if rejections.is_empty() {
            return;
        }
        for r in &rejections {
            EventRejected {
                neighbour: &r.source,
                rid: &r.rid,
                reason: RejectReason::from_label(r.reason).unwrap_or(RejectReason::Malformed),
                detail: &r.detail,
            }
            .emit(&self.metrics);
        }
        match self.dead_letters.record(&rejections) {
            Ok(written) => DeadLettersChanged {
                held: written.held,
                dropped: written.dropped,
            }
            .emit(&self.metrics),
            Err(e) => tracing::error!(error = %e, "cannot write dead letters"),
        }
    }
}

/// A bad item of a response as a rejection from `source`.
pub(super) fn bad_item_rejection(source: &Rid, item: BadItem) -> Rejection {
    Rejection {
        rid: item.rid.unwrap_or_default(),
        source: source.to_string(),
        reason: match item.kind {
            BadItemKind::BadRid => RejectReason::BadRid.as_str(),
            BadItemKind::Malformed => RejectReason::Malformed.as_str(),
        },
        detail: item.problem,
        item: item.raw,
    }
}

/// A rejection of something we hold parsed (re-serialised for the dead letter).
pub(super) fn rejection_of<T: serde::Serialize>(
    source: &Rid,
    rid: &Rid,
    reason: RejectReason,
    detail: impl Into<String>,
    item: &T,
) -> Rejection {
    Rejection {
        rid: rid.to_string(),
        source: source.to_string(),
        reason: reason.as_str(),
        detail: detail.into(),
        item: serde_json::to_string(item).unwrap_or_default(),
    }
}
