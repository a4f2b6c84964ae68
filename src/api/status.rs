//! The `/status` body: one typed struct that the API serves and the CLI reads.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::index::EventRow;
use crate::node::NeighbourStatus;

/// What the running node says about itself (the daemon fills it; the API adds the index's counts).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStatus {
    /// `node.name`.
    pub node_name: String,
    /// Our node RID.
    pub node_rid: String,
    /// Always `PARTIAL`.
    pub node_type: String,
    /// `node.data_dir`.
    pub data_dir: String,
    /// Events received and not yet indexed.
    pub inbox: u64,
    /// Rejected items held in the dead-letter tree (`GET /rejected`).
    pub rejected: u64,
    /// Each neighbour and how polling it goes.
    pub neighbours: Vec<NeighbourStatus>,
}

/// `details` of the `/status` body.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusDetails {
    /// The node's own part.
    #[serde(flatten)]
    pub node: NodeStatus,
    /// Event rows (a counter: no scan).
    pub events: u64,
    /// Repository rows (a counter).
    pub repositories: u64,
    /// Event rows per `event_type` (counters).
    pub event_types: BTreeMap<String, u64>,
    /// The newest event of all repositories.
    pub latest_event: Option<EventRow>,
    /// The stream sequence number of the last event indexed (0 before the first): `/stream?after=` this minus N
    /// replays the newest N events (the dashboard's feed opens so).
    #[serde(default)]
    pub last_seq: u64,
    /// The JetStream sink (`[sink.nats]`): its cursor, lag and last error; absent when none is configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sink: Option<crate::index::SinkStatus>,
}

/// `GET /api/processor/github/status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusBody {
    /// Always `active` while the daemon answers.
    pub status: String,
    /// One line for humans.
    pub message: String,
    /// The figures.
    pub details: StatusDetails,
}
