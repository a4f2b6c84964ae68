//! Knowledge objects: manifests, bundles, events, and the node and edge profiles carried in bundles.
//!
//! Field order in every struct is the order koi-net declares, because signatures cover the serialised bytes.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::json::content_hash;
use super::rid::{EdgeRid, Rid, RidType};
use super::timestamp::Timestamp;

/// The `@context` koi-net 2.1 adds to every manifest it writes.
pub const MANIFEST_CONTEXT: &str = "orn:koi-net.context:manifest";
/// The `@context` of node profile contents.
pub const NODE_PROFILE_CONTEXT: &str = "orn:koi-net.context:koi-net.node";
/// The `@context` of edge profile contents.
pub const EDGE_PROFILE_CONTEXT: &str = "orn:koi-net.context:koi-net.edge";

/// Bundle contents: always a JSON object.
pub type Contents = Map<String, Value>;

/// What a RID's current state is: when it was written and the hash of its contents.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// The object described.
    pub rid: Rid,
    /// When this version was produced.
    pub timestamp: Timestamp,
    /// Hex SHA-256 of the canonical JSON of the contents.
    pub sha256_hash: String,
    /// Keys beyond the three above (e.g. `@context`), kept in the order received so re-serialising is faithful.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Manifest {
    /// A manifest for `contents` as koi-net 2.1 makes one: now, the content hash, and its `@context`.
    pub fn generate(rid: Rid, contents: &Contents) -> Manifest {
        let mut extra = Map::new();
        extra.insert(
            "@context".to_owned(),
            Value::String(MANIFEST_CONTEXT.to_owned()),
        );
        Manifest {
            rid,
            timestamp: Timestamp::now(),
            sha256_hash: hash_contents(contents),
            extra,
        }
    }
}

/// How a received manifest compares with the one held for the same RID. This is the node's one dedupe rule: the
/// index, the catch-up, the inbox and the network graph all decide with [`Manifest::freshness`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    /// Nothing is held, or what is held is older with other contents: take it.
    Newer,
    /// The held manifest has the same hash: nothing changes.
    Unchanged,
    /// The held manifest is newer: the received one is dropped.
    Stale,
}

impl Manifest {
    /// Compares `self` (received) with `held` (what we have for its RID).
    pub fn freshness(&self, held: Option<&Manifest>) -> Freshness {
        match held {
            Some(held) if held.sha256_hash == self.sha256_hash => Freshness::Unchanged,
            Some(held) if held.timestamp > self.timestamp => Freshness::Stale,
            _ => Freshness::Newer,
        }
    }
}

/// Hex SHA-256 of the canonical JSON of `contents`.
pub fn hash_contents(contents: &Contents) -> String {
    // Hashed as it is: no copy.
    content_hash(contents)
}

/// How a manifest's `sha256_hash` was computed from its contents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HashScheme {
    /// RFC 8785 canonical JSON, as rid-lib 3.2.7 and later (every koi-net 1.2+ node) hash.
    Rfc8785,
    /// Python's `json.dumps(sort_keys=True, separators=(",", ":"))`, as rid-lib up to 3.2.6 hashed: the two
    /// differ on non-ASCII text and floats ([`super::json::legacy_json`]).
    Legacy,
}

/// Which scheme `sha256_hash` is the hash of `contents` under: RFC 8785 first, then the legacy one; `Err` with the
/// RFC 8785 hash when neither matches.
pub fn hash_scheme(contents: &Contents, sha256_hash: &str) -> Result<HashScheme, String> {
    let actual = hash_contents(contents);
    if actual == sha256_hash {
        Ok(HashScheme::Rfc8785)
    } else if super::json::legacy_content_hash(contents) == sha256_hash {
        Ok(HashScheme::Legacy)
    } else {
        Err(actual)
    }
}

/// A manifest with the contents it describes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Bundle {
    /// Identity, time and hash of the contents.
    pub manifest: Manifest,
    /// The object's data.
    pub contents: Contents,
}

/// A bundle's manifest hash does not match the hash of its contents.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bundle {rid}: manifest says sha256 {claimed} but the contents hash to {actual}")]
pub struct HashMismatch {
    /// The bundle's RID.
    pub rid: String,
    /// `sha256_hash` from the manifest.
    pub claimed: String,
    /// What the contents actually hash to.
    pub actual: String,
}

impl Bundle {
    /// A new bundle for `rid` holding `contents`, with a fresh manifest.
    pub fn generate(rid: Rid, contents: Contents) -> Bundle {
        Bundle {
            manifest: Manifest::generate(rid, &contents),
            contents,
        }
    }

    /// The bundle's RID.
    pub fn rid(&self) -> &Rid {
        &self.manifest.rid
    }

    /// Checks that the contents hash to the manifest's `sha256_hash`, under RFC 8785 or else the legacy scheme
    /// ([`hash_scheme`]); says which.
    pub fn verify_hash(&self) -> Result<HashScheme, HashMismatch> {
        hash_scheme(&self.contents, &self.manifest.sha256_hash).map_err(|actual| HashMismatch {
            rid: self.manifest.rid.to_string(),
            claimed: self.manifest.sha256_hash.clone(),
            actual,
        })
    }

    /// The contents as a typed value (a node or edge profile).
    pub fn contents_as<T: serde::de::DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_value(Value::Object(self.contents.clone()))
    }
}

/// What happened to a RID.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum EventType {
    /// First seen.
    New,
    /// Changed.
    Update,
    /// Gone: forget it.
    Forget,
}

/// A change to a RID, as nodes exchange them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// The RID the event is about.
    pub rid: Rid,
    /// NEW, UPDATE or FORGET.
    pub event_type: EventType,
    /// The new state's manifest; absent for FORGET (never written as `null`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest: Option<Manifest>,
    /// The new state's contents, when the sender included them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contents: Option<Contents>,
}

impl Event {
    /// Checks that the contents, when the event carries them, hash to its manifest's `sha256_hash` (under either
    /// scheme: [`hash_scheme`]). An event without contents (or without a manifest) has nothing to check: `Ok(None)`.
    pub fn verify_hash(&self) -> Result<Option<HashScheme>, HashMismatch> {
        let (Some(manifest), Some(contents)) = (&self.manifest, &self.contents) else {
            return Ok(None);
        };
        hash_scheme(contents, &manifest.sha256_hash)
            .map(Some)
            .map_err(|actual| HashMismatch {
                rid: self.rid.to_string(),
                claimed: manifest.sha256_hash.clone(),
                actual,
            })
    }

    /// An event carrying a whole bundle.
    pub fn from_bundle(event_type: EventType, bundle: Bundle) -> Event {
        Event {
            rid: bundle.manifest.rid.clone(),
            event_type,
            manifest: Some(bundle.manifest),
            contents: Some(bundle.contents),
        }
    }

    /// A FORGET event for `rid`.
    pub fn forget(rid: Rid) -> Event {
        Event {
            rid,
            event_type: EventType::Forget,
            manifest: None,
            contents: None,
        }
    }

    /// The bundle this event carries, without copying it; the event back when it lacks manifest or contents.
    pub fn into_bundle(self) -> Result<Bundle, Box<Event>> {
        match self {
            Event {
                manifest: Some(manifest),
                contents: Some(contents),
                ..
            } => Ok(Bundle { manifest, contents }),
            other => Err(Box::new(other)),
        }
    }

    /// The bundle this event carries, if it carries both manifest and contents.
    pub fn bundle(&self) -> Option<Bundle> {
        match (&self.manifest, &self.contents) {
            (Some(manifest), Some(contents)) => Some(Bundle {
                manifest: manifest.clone(),
                contents: contents.clone(),
            }),
            _ => None,
        }
    }
}

/// FULL nodes serve HTTP; PARTIAL nodes (like this one) only call out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum NodeType {
    /// Has a `base_url` and answers requests.
    Full,
    /// Has no `base_url`; polls.
    Partial,
}

/// RID types a node provides events and state for.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeProvides {
    /// Types whose events the node emits.
    #[serde(default)]
    pub event: Vec<RidType>,
    /// Types whose current state the node serves.
    #[serde(default)]
    pub state: Vec<RidType>,
}

/// The contents of an `orn:koi-net.node` bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeProfile {
    /// Always [`NODE_PROFILE_CONTEXT`].
    #[serde(rename = "@context", default = "node_profile_context")]
    pub context: String,
    /// Where a FULL node answers (`…/koi-net`); `null` for PARTIAL nodes.
    pub base_url: Option<String>,
    /// FULL or PARTIAL.
    pub node_type: NodeType,
    /// What it provides.
    #[serde(default)]
    pub provides: NodeProvides,
    /// Base64 DER SubjectPublicKeyInfo; its SHA-256 is the hash in the node's RID.
    pub public_key: Option<String>,
}

fn node_profile_context() -> String {
    NODE_PROFILE_CONTEXT.to_owned()
}

fn edge_profile_context() -> String {
    EDGE_PROFILE_CONTEXT.to_owned()
}

impl NodeProfile {
    /// Serialises into bundle contents.
    pub fn to_contents(&self) -> Contents {
        match serde_json::to_value(self) {
            Ok(Value::Object(map)) => map,
            _ => Contents::new(),
        }
    }
}

/// How events travel along an edge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum EdgeType {
    /// The source pushes to the target's `/events/broadcast`.
    Webhook,
    /// The target polls the source.
    Poll,
}

/// Whether the source has agreed to an edge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum EdgeStatus {
    /// Asked for.
    Proposed,
    /// Agreed.
    Approved,
}

/// The contents of an `orn:koi-net.edge` bundle: events of `rid_types` flow from `source` to `target`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EdgeProfile {
    /// Always [`EDGE_PROFILE_CONTEXT`].
    #[serde(rename = "@context", default = "edge_profile_context")]
    pub context: String,
    /// The node events come from.
    pub source: Rid,
    /// The node events go to.
    pub target: Rid,
    /// WEBHOOK or POLL.
    pub edge_type: EdgeType,
    /// PROPOSED or APPROVED.
    pub status: EdgeStatus,
    /// Which RID types flow along it.
    pub rid_types: Vec<RidType>,
}

impl EdgeProfile {
    /// A new profile for the edge `source -> target`.
    pub fn new(
        source: Rid,
        target: Rid,
        edge_type: EdgeType,
        status: EdgeStatus,
        rid_types: Vec<RidType>,
    ) -> Self {
        EdgeProfile {
            context: EDGE_PROFILE_CONTEXT.to_owned(),
            source,
            target,
            edge_type,
            status,
            rid_types,
        }
    }

    /// The edge's RID.
    pub fn rid(&self) -> EdgeRid {
        EdgeRid::between(&self.source, &self.target)
    }

    /// Serialises into bundle contents.
    pub fn to_contents(&self) -> Contents {
        match serde_json::to_value(self) {
            Ok(Value::Object(map)) => map,
            _ => Contents::new(),
        }
    }

    /// A fresh bundle for this edge.
    pub fn to_bundle(&self) -> Bundle {
        Bundle::generate(self.rid().rid().clone(), self.to_contents())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::json::to_wire_json;

    #[test]
    fn an_event_checks_its_contents_against_its_manifest() {
        let mut contents = Contents::new();
        contents.insert("n".into(), 1.into());
        let rid = Rid::parse("orn:github.event:a/b:1").unwrap();
        let event = Event::from_bundle(EventType::New, Bundle::generate(rid.clone(), contents));
        assert!(event.verify_hash().is_ok());
        let mut tampered = event.clone();
        if let Some(c) = tampered.contents.as_mut() {
            c.insert("n".into(), 2.into());
        }
        let err = tampered.verify_hash().unwrap_err();
        assert_eq!(err.rid, rid.to_string());
        let manifest_only = Event {
            contents: None,
            ..tampered
        };
        assert!(manifest_only.verify_hash().is_ok(), "nothing to check");
        assert!(Event::forget(rid).verify_hash().is_ok());
    }

    #[test]
    fn manifest_keeps_extra_keys_in_order_after_the_three() {
        let text = r#"{"rid":"orn:github.event:a/b:1","timestamp":"2026-11-24T12:00:00Z","sha256_hash":"00","@context":"orn:koi-net.context:manifest","z":1,"a":2}"#;
        let manifest: Manifest = serde_json::from_str(text).unwrap();
        assert_eq!(
            manifest.extra.keys().collect::<Vec<_>>(),
            ["@context", "z", "a"]
        );
        assert_eq!(
            String::from_utf8(to_wire_json(&manifest).unwrap()).unwrap(),
            text
        );
    }

    #[test]
    fn forget_event_omits_manifest_and_contents() {
        let event = Event::forget(Rid::parse("orn:github.event:a/b:2").unwrap());
        assert_eq!(
            String::from_utf8(to_wire_json(&event).unwrap()).unwrap(),
            r#"{"rid":"orn:github.event:a/b:2","event_type":"FORGET"}"#
        );
        let back: Event =
            serde_json::from_str(r#"{"rid":"orn:github.event:a/b:2","event_type":"FORGET"}"#)
                .unwrap();
        assert_eq!(back, event);
    }

    #[test]
    fn tampered_bundle_is_detected() {
        let mut contents = Contents::new();
        contents.insert("x".into(), 1.into());
        let mut bundle = Bundle::generate(Rid::parse("orn:github.event:a/b:1").unwrap(), contents);
        assert!(bundle.verify_hash().is_ok());
        bundle.contents.insert("x".into(), 2.into());
        let err = bundle.verify_hash().unwrap_err();
        assert!(err.to_string().contains("orn:github.event:a/b:1"));
    }

    #[test]
    fn node_profile_round_trips_in_koi_net_field_order() {
        let text = r#"{"@context":"orn:koi-net.context:koi-net.node","base_url":null,"node_type":"PARTIAL","provides":{"event":[],"state":[]},"public_key":"MFk"}"#;
        let profile: NodeProfile = serde_json::from_str(text).unwrap();
        assert_eq!(profile.node_type, NodeType::Partial);
        assert_eq!(
            String::from_utf8(to_wire_json(&profile).unwrap()).unwrap(),
            text
        );
    }
}
