//! The label values of the metrics, shared by [`super::events`] (which emits them) and [`super::metrics`] (which
//! encodes them). Kept apart so neither of those two modules imports the other's internals.

use std::fmt;

/// How a poll attempt ended. The label values of `polls_total{outcome}` and the poll log's `outcome`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PollOutcome {
    /// The neighbour answered with a verified events payload.
    Ok,
    /// Any other failure: connection refused, HTTP error, unexpected payload.
    Error,
    /// No answer within `poll.timeout`.
    Timeout,
    /// The neighbour does not know us (it forgot us or restarted without state); we re-introduce ourselves.
    UnknownNode,
    /// The response's envelope did not verify (bad signature or wrong sender).
    BadSignature,
    /// The response was addressed to another node.
    WrongTarget,
    /// The response is not a KOI-net envelope, or its verified payload is not a list of items.
    Malformed,
    /// The response was larger than `poll.max_response`.
    TooLarge,
    /// Signed by a node whose key we do not hold yet, without introducing it: unverifiable, so unused (it happens
    /// once while the first contact processes our handshake).
    UnknownSender,
}

impl PollOutcome {
    /// The label value: `ok`, `error`, `timeout`, `unknown_node`, `bad_signature`, `wrong_target`, `malformed`,
    /// `too_large` or `unknown_sender`.
    pub fn as_str(self) -> &'static str {
        match self {
            PollOutcome::Ok => "ok",
            PollOutcome::Error => "error",
            PollOutcome::Timeout => "timeout",
            PollOutcome::UnknownNode => "unknown_node",
            PollOutcome::BadSignature => "bad_signature",
            PollOutcome::WrongTarget => "wrong_target",
            PollOutcome::Malformed => "malformed",
            PollOutcome::TooLarge => "too_large",
            PollOutcome::UnknownSender => "unknown_sender",
        }
    }

    /// The outcome for a label such as `ClientError::outcome()` returns; anything unknown is [`PollOutcome::Error`].
    pub fn from_label(label: &str) -> Self {
        match label {
            "ok" => PollOutcome::Ok,
            "timeout" => PollOutcome::Timeout,
            "unknown_node" => PollOutcome::UnknownNode,
            "bad_signature" => PollOutcome::BadSignature,
            "wrong_target" => PollOutcome::WrongTarget,
            "malformed" => PollOutcome::Malformed,
            "too_large" => PollOutcome::TooLarge,
            "unknown_sender" => PollOutcome::UnknownSender,
            _ => PollOutcome::Error,
        }
    }
}

impl fmt::Display for PollOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why an event left the index as it was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DedupReason {
    /// We already hold this RID with the same hash (a replay, or two neighbours relaying one event).
    Unchanged,
    /// We hold a newer version of this RID.
    Stale,
}

impl DedupReason {
    /// The label value: `unchanged` or `stale`.
    pub fn as_str(self) -> &'static str {
        match self {
            DedupReason::Unchanged => "unchanged",
            DedupReason::Stale => "stale",
        }
    }
}

impl fmt::Display for DedupReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why the query API closed a connection before its client did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConnectionClose {
    /// The client did not finish sending a request head within `api.header_timeout`.
    HeaderTimeout,
    /// The connection sat idle between requests longer than `api.idle_timeout`.
    Idle,
    /// At `api.max_connections`, the oldest connection that had not yet sent a whole request made room for a new one.
    Evicted,
    /// At `api.max_connections` with every connection busy: the new connection got a 503 and was closed.
    Refused,
}

impl ConnectionClose {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            ConnectionClose::HeaderTimeout => "header_timeout",
            ConnectionClose::Idle => "idle",
            ConnectionClose::Evicted => "evicted",
            ConnectionClose::Refused => "refused",
        }
    }
}

impl fmt::Display for ConnectionClose {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why an event was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RejectReason {
    /// Its envelope's signature did not verify, or it came from a node other than the one we asked.
    BadSignature,
    /// Its contents do not hash to its manifest's `sha256_hash`.
    BadHash,
    /// The envelope was addressed to another node.
    WrongTarget,
    /// It does not parse as a KOI-net event, manifest or bundle (wrong types, missing fields, too deep).
    Malformed,
    /// Its RID does not parse (whitespace, control characters, …) or is not a valid RID of its type.
    BadRid,
    /// It carried no contents and no neighbour could give its bundle, after the bounded retries.
    Unfetchable,
    /// It parsed but could not be indexed (the index refused it); the dead letter says why.
    Unindexable,
}

impl RejectReason {
    /// Every reason, for pre-registering metric series.
    pub const ALL: [RejectReason; 7] = [
        RejectReason::BadSignature,
        RejectReason::BadHash,
        RejectReason::WrongTarget,
        RejectReason::Malformed,
        RejectReason::BadRid,
        RejectReason::Unfetchable,
        RejectReason::Unindexable,
    ];

    /// The label value: `bad_signature`, `bad_hash`, `wrong_target`, `malformed`, `bad_rid`, `unfetchable` or
    /// `unindexable`.
    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::BadSignature => "bad_signature",
            RejectReason::BadHash => "bad_hash",
            RejectReason::WrongTarget => "wrong_target",
            RejectReason::Malformed => "malformed",
            RejectReason::BadRid => "bad_rid",
            RejectReason::Unfetchable => "unfetchable",
            RejectReason::Unindexable => "unindexable",
        }
    }

    /// The reason for a label value, if it is one.
    pub fn from_label(label: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == label)
    }
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
