//! Signed envelopes: `{"payload":P,"source_node":…,"target_node":…,"signature":…}`.
//!
//! *Signing* serialises the unsigned envelope exactly as koi-net re-serialises it before verifying
//! ([`to_wire_json`]), so the Python side computes the same bytes. *Verifying* never re-serialises: it splices the
//! raw text of the received `payload` into `{"payload":…,"source_node":…,"target_node":…}`, which is what the
//! sender signed whatever its serialiser's habits.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::json::{push_json_string, to_wire_json};
use super::keys::{NodeKey, PublicKey, SignatureError};
use super::knowledge::{EventType, NodeProfile};
use super::payload::EventsPayload;
use super::rid::{NodeRid, Rid, RidError};

/// Why a received envelope was rejected. Each case is distinct so callers can count and log them apart.
#[derive(Debug, thiserror::Error)]
pub enum EnvelopeError {
    /// Not JSON, or not an envelope.
    #[error("malformed envelope: {0}")]
    Malformed(#[source] serde_json::Error),
    /// `source_node` is not a node RID.
    #[error("envelope source_node is not a node RID: {0}")]
    BadSource(#[source] RidError),
    /// Addressed to another node.
    #[error("envelope is addressed to {got}, not to this node ({expected})")]
    WrongTarget {
        /// This node.
        expected: Rid,
        /// The `target_node` it carried.
        got: Rid,
    },
    /// The key we hold (or were shown) for the sender does not hash to its RID.
    #[error("public key offered for {source_node} does not hash to its RID")]
    KeyMismatch {
        /// The sender.
        source_node: Rid,
    },
    /// The sender's key string is unusable.
    #[error("public key of {source_node} is unusable: {detail}")]
    BadKey {
        /// The sender.
        source_node: Rid,
        /// Why.
        detail: String,
    },
    /// We do not know the sender's key, and the payload does not introduce it.
    #[error("unknown sender {0}: no key known and the payload carries no NEW event with its own profile")]
    UnknownSource(Rid),
    /// The signature is malformed or does not match.
    #[error("signature from {source_node} rejected: {error}")]
    Signature {
        /// The sender.
        source_node: Rid,
        /// What was wrong.
        #[source]
        error: SignatureError,
    },
    /// The signature is good but the payload is not the expected type.
    #[error("payload from {source_node} is not the expected type: {error}")]
    Payload {
        /// The sender.
        source_node: Rid,
        /// The decode error.
        #[source]
        error: serde_json::Error,
    },
}

#[derive(Serialize)]
struct UnsignedEnvelope<'a, P: Serialize> {
    payload: &'a P,
    source_node: &'a Rid,
    target_node: &'a Rid,
}

#[derive(Serialize)]
struct SignedEnvelope<'a, P: Serialize> {
    payload: &'a P,
    source_node: &'a Rid,
    target_node: &'a Rid,
    signature: &'a str,
}

/// The bytes koi-net signs for `payload` from `source` to `target`.
pub fn unsigned_envelope_bytes<P: Serialize>(
    payload: &P,
    source: &Rid,
    target: &Rid,
) -> Result<Vec<u8>, serde_json::Error> {
    to_wire_json(&UnsignedEnvelope {
        payload,
        source_node: source,
        target_node: target,
    })
}

/// A request body: `payload` signed by `key` from `source` to `target`.
pub fn sign_envelope<P: Serialize>(
    payload: &P,
    source: &Rid,
    target: &Rid,
    key: &NodeKey,
) -> Result<Vec<u8>, serde_json::Error> {
    let signed_bytes = unsigned_envelope_bytes(payload, source, target)?;
    let signature = key.sign(&signed_bytes);
    to_wire_json(&SignedEnvelope {
        payload,
        source_node: source,
        target_node: target,
        signature: &signature,
    })
}

#[derive(Deserialize)]
struct RawEnvelope<'a> {
    #[serde(borrow)]
    payload: &'a RawValue,
    source_node: String,
    target_node: String,
    signature: String,
}

/// A parsed, not yet verified, envelope. The payload is kept as the exact text received.
#[derive(Debug)]
pub struct ReceivedEnvelope {
    payload: Box<RawValue>,
    source_node: Rid,
    target_node: Rid,
    signature: String,
}

impl ReceivedEnvelope {
    /// Parses a body; checks only its shape.
    pub fn parse(body: &[u8]) -> Result<ReceivedEnvelope, EnvelopeError> {
        let raw: RawEnvelope<'_> =
            serde_json::from_slice(body).map_err(EnvelopeError::Malformed)?;
        let source_node = Rid::parse(&raw.source_node).map_err(EnvelopeError::BadSource)?;
        NodeRid::from_rid(&source_node).map_err(EnvelopeError::BadSource)?;
        let target_node = Rid::parse(&raw.target_node).map_err(EnvelopeError::BadSource)?;
        Ok(ReceivedEnvelope {
            payload: raw.payload.to_owned(),
            source_node,
            target_node,
            signature: raw.signature,
        })
    }

    /// The sender.
    pub fn source_node(&self) -> &Rid {
        &self.source_node
    }

    /// The addressee.
    pub fn target_node(&self) -> &Rid {
        &self.target_node
    }

    /// The payload text exactly as received.
    pub fn raw_payload(&self) -> &str {
        self.payload.get()
    }

    /// What the sender signed: the raw payload spliced into an unsigned envelope.
    pub fn signed_bytes(&self) -> Vec<u8> {
        let raw = self.payload.get();
        let mut out = Vec::with_capacity(raw.len() + 200);
        out.extend_from_slice(b"{\"payload\":");
        out.extend_from_slice(raw.as_bytes());
        out.extend_from_slice(b",\"source_node\":");
        push_json_string(&mut out, self.source_node.as_str());
        out.extend_from_slice(b",\"target_node\":");
        push_json_string(&mut out, self.target_node.as_str());
        out.push(b'}');
        out
    }

    /// Verifies the envelope: addressed to `me`, `source_key_b64` hashes to the sender's RID, and the signature.
    pub fn verify(&self, me: &Rid, source_key_b64: &str) -> Result<(), EnvelopeError> {
        if &self.target_node != me {
            return Err(EnvelopeError::WrongTarget {
                expected: me.clone(),
                got: self.target_node.clone(),
            });
        }
        let source = NodeRid::from_rid(&self.source_node).map_err(EnvelopeError::BadSource)?;
        if !source.matches_public_key(source_key_b64) {
            return Err(EnvelopeError::KeyMismatch {
                source_node: self.source_node.clone(),
            });
        }
        let key = PublicKey::from_base64(source_key_b64).map_err(|e| EnvelopeError::BadKey {
            source_node: self.source_node.clone(),
            detail: e.to_string(),
        })?;
        key.verify(&self.signed_bytes(), &self.signature)
            .map_err(|error| EnvelopeError::Signature {
                source_node: self.source_node.clone(),
                error,
            })
    }

    /// Verifies with the key we hold for the sender or, failing that, the key the payload introduces (a NEW
    /// event carrying the sender's own profile — how koi-net accepts a node it does not know yet).
    /// Returns the key used, so the caller can remember a newly introduced one.
    pub fn verify_with_known_or_introduced(
        &self,
        me: &Rid,
        known_key_b64: Option<&str>,
    ) -> Result<String, EnvelopeError> {
        let key = match known_key_b64 {
            Some(key) => key.to_owned(),
            None => self
                .self_introduction()
                .ok_or_else(|| EnvelopeError::UnknownSource(self.source_node.clone()))?,
        };
        self.verify(me, &key)?;
        Ok(key)
    }

    /// The public key from a NEW event in an `events_payload` carrying the sender's own profile, if any.
    pub fn self_introduction(&self) -> Option<String> {
        let events: EventsPayload = serde_json::from_str(self.payload.get()).ok()?;
        events.events.into_iter().find_map(|event| {
            if event.rid != self.source_node || event.event_type != EventType::New {
                return None;
            }
            let bundle = event.bundle()?;
            bundle.verify_hash().ok()?;
            bundle.contents_as::<NodeProfile>().ok()?.public_key
        })
    }

    /// Decodes the payload. Call after [`ReceivedEnvelope::verify`].
    pub fn payload<T: DeserializeOwned>(&self) -> Result<T, EnvelopeError> {
        serde_json::from_str(self.payload.get()).map_err(|error| EnvelopeError::Payload {
            source_node: self.source_node.clone(),
            error,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::payload::{PollEvents, RequestPayload};

    #[test]
    fn a_signed_body_verifies_and_each_tampering_fails_distinctly() {
        let key = NodeKey::generate();
        let me = key.node_rid("me").unwrap().rid().clone();
        let them = Rid::parse("orn:koi-net.node:coordinator+7538f71072bc0505382389554aaff429b269546acf27178a028ef5ee26f4cc50").unwrap();
        let payload = RequestPayload::PollEvents(PollEvents { limit: 0 });
        let body = sign_envelope(&payload, &me, &them, &key).unwrap();
        let pk = key.public_key().to_base64();

        let env = ReceivedEnvelope::parse(&body).unwrap();
        env.verify(&them, &pk).unwrap();
        assert_eq!(env.payload::<RequestPayload>().unwrap(), payload);

        let tampered = String::from_utf8(body.clone())
            .unwrap()
            .replace("\"limit\":0", "\"limit\":1");
        assert!(matches!(
            ReceivedEnvelope::parse(tampered.as_bytes())
                .unwrap()
                .verify(&them, &pk),
            Err(EnvelopeError::Signature {
                error: SignatureError::Mismatch,
                ..
            })
        ));
        assert!(matches!(
            env.verify(&me, &pk),
            Err(EnvelopeError::WrongTarget { .. })
        ));
        let other = NodeKey::generate().public_key().to_base64();
        assert!(matches!(
            env.verify(&them, &other),
            Err(EnvelopeError::KeyMismatch { .. })
        ));
        let short = String::from_utf8(body).unwrap();
        let sig_start = short.find("\"signature\":\"").unwrap() + 13;
        let short = format!("{}AAAA\"}}", &short[..sig_start]);
        assert!(matches!(
            ReceivedEnvelope::parse(short.as_bytes())
                .unwrap()
                .verify(&them, &pk),
            Err(EnvelopeError::Signature {
                error: SignatureError::WrongLength(3),
                ..
            })
        ));
        assert!(matches!(
            ReceivedEnvelope::parse(b"{\"payload\":"),
            Err(EnvelopeError::Malformed(_))
        ));
    }
}
