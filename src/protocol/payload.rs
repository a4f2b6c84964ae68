//! Request and response payloads of the five KOI-net endpoints, and the protocol error response.
//!
//! Each payload serialises with its `type` discriminator first and its fields in koi-net's declared order.

use serde::{Deserialize, Serialize};

use super::knowledge::{Bundle, Event, Manifest};
use super::rid::{Rid, RidType};

/// `POST /events/poll`: hand me (and forget) the events queued for me.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PollEvents {
    /// At most this many events; 0 means all.
    #[serde(default)]
    pub limit: u32,
}

/// `POST /rids/fetch`: which RIDs of these types do you hold?
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FetchRids {
    /// Types asked about; empty means all.
    #[serde(default)]
    pub rid_types: Vec<RidType>,
}

/// `POST /manifests/fetch`: manifests of these types or these RIDs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FetchManifests {
    /// Types asked about.
    #[serde(default)]
    pub rid_types: Vec<RidType>,
    /// RIDs asked about.
    #[serde(default)]
    pub rids: Vec<Rid>,
}

/// `POST /bundles/fetch`: bundles of these RIDs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FetchBundles {
    /// RIDs asked for.
    pub rids: Vec<Rid>,
}

/// `POST /events/broadcast` body, and the answer to a poll.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventsPayload {
    /// The events, oldest first.
    pub events: Vec<Event>,
}

/// Answer to [`FetchRids`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RidsPayload {
    /// The RIDs held.
    pub rids: Vec<Rid>,
}

/// Answer to [`FetchManifests`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ManifestsPayload {
    /// Manifests found.
    pub manifests: Vec<Manifest>,
    /// RIDs asked for but not held.
    #[serde(default)]
    pub not_found: Vec<Rid>,
}

/// Answer to [`FetchBundles`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BundlesPayload {
    /// Bundles found.
    pub bundles: Vec<Bundle>,
    /// RIDs asked for but not held.
    #[serde(default)]
    pub not_found: Vec<Rid>,
    /// RIDs the node would not serve now.
    #[serde(default)]
    pub deferred: Vec<Rid>,
}

/// A request payload, tagged by `type`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum RequestPayload {
    /// `poll_events`
    PollEvents(PollEvents),
    /// `fetch_rids`
    FetchRids(FetchRids),
    /// `fetch_manifests`
    FetchManifests(FetchManifests),
    /// `fetch_bundles`
    FetchBundles(FetchBundles),
    /// `events_payload` (broadcast)
    EventsPayload(EventsPayload),
}

impl RequestPayload {
    /// The endpoint path (after the node's base URL) this payload is posted to.
    pub fn path(&self) -> &'static str {
        match self {
            RequestPayload::PollEvents(_) => "/events/poll",
            RequestPayload::FetchRids(_) => "/rids/fetch",
            RequestPayload::FetchManifests(_) => "/manifests/fetch",
            RequestPayload::FetchBundles(_) => "/bundles/fetch",
            RequestPayload::EventsPayload(_) => "/events/broadcast",
        }
    }
}

/// A response payload, tagged by `type`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ResponsePayload {
    /// `rids_payload`
    RidsPayload(RidsPayload),
    /// `manifests_payload`
    ManifestsPayload(ManifestsPayload),
    /// `bundles_payload`
    BundlesPayload(BundlesPayload),
    /// `events_payload`
    EventsPayload(EventsPayload),
}

/// The protocol errors a node answers with (HTTP 400).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProtocolErrorKind {
    /// The receiver does not know the sender's node RID (handshake not processed yet).
    UnknownNode,
    /// The sender's RID hash does not match its key.
    InvalidKey,
    /// The signature did not verify.
    InvalidSignature,
    /// The envelope was addressed to another node.
    InvalidTarget,
}

impl std::fmt::Display for ProtocolErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ProtocolErrorKind::UnknownNode => "unknown_node",
            ProtocolErrorKind::InvalidKey => "invalid_key",
            ProtocolErrorKind::InvalidSignature => "invalid_signature",
            ProtocolErrorKind::InvalidTarget => "invalid_target",
        })
    }
}

/// `{"type":"error_response","error":…}`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename = "error_response")]
pub struct ErrorResponse {
    /// Which protocol error.
    pub error: ProtocolErrorKind,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::json::to_wire_json;

    fn wire(p: &RequestPayload) -> String {
        String::from_utf8(to_wire_json(p).unwrap()).unwrap()
    }

    #[test]
    fn payloads_serialise_type_first_in_declared_order() {
        assert_eq!(
            wire(&RequestPayload::PollEvents(PollEvents { limit: 0 })),
            r#"{"type":"poll_events","limit":0}"#
        );
        assert_eq!(
            wire(&RequestPayload::FetchManifests(FetchManifests {
                rid_types: vec![],
                rids: vec![Rid::parse("orn:github.event:a/b:1").unwrap()],
            })),
            r#"{"type":"fetch_manifests","rid_types":[],"rids":["orn:github.event:a/b:1"]}"#
        );
    }

    #[test]
    fn error_response_parses() {
        let err: ErrorResponse =
            serde_json::from_str(r#"{"type":"error_response","error":"unknown_node"}"#).unwrap();
        assert_eq!(err.error, ProtocolErrorKind::UnknownNode);
        assert_eq!(
            serde_json::to_string(&err).unwrap(),
            r#"{"type":"error_response","error":"unknown_node"}"#
        );
    }
}
