//! The KOI-net HTTP client: signs each request, and verifies each response's envelope (addressed to us, sent by
//! the node we called, signed by that node's key) before any of its payload is used.

use std::time::Duration;

use crate::protocol::envelope::sign_envelope;
use crate::protocol::{
    Bundle, EnvelopeError, ErrorResponse, Event, EventsPayload, FetchBundles, FetchManifests,
    FetchRids, Item, Manifest, PollEvents, ProtocolErrorKind, ReceivedEnvelope, RequestPayload,
    ResponseItems, Rid, RidType,
};

use super::identity::Identity;

/// A request to a neighbour failed. Every case names the URL.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No answer within the timeout.
    #[error("{url}: no answer within {timeout:?}")]
    Timeout {
        /// Endpoint.
        url: String,
        /// The limit.
        timeout: Duration,
    },
    /// Connection refused, DNS, TLS, reset… (the message carries reqwest's whole cause chain).
    #[error("{url}: {}", error_chain(source))]
    Transport {
        /// Endpoint.
        url: String,
        /// reqwest's error.
        source: reqwest::Error,
    },
    /// The neighbour answered a KOI-net protocol error.
    #[error("{url}: neighbour answered protocol error `{kind}`")]
    Protocol {
        /// Endpoint.
        url: String,
        /// Which error.
        kind: ProtocolErrorKind,
    },
    /// Any other non-200 answer.
    #[error("{url}: HTTP {status}: {body}")]
    Status {
        /// Endpoint.
        url: String,
        /// HTTP status.
        status: u16,
        /// Start of the body.
        body: String,
    },
    /// The response envelope failed verification (forged, mis-targeted, malformed).
    #[error("{url}: response rejected: {source}")]
    Envelope {
        /// Endpoint.
        url: String,
        /// Why.
        source: EnvelopeError,
    },
    /// Signed by someone other than the node we called.
    #[error("{url}: response signed by {got}, but we called {expected}")]
    WrongSender {
        /// Endpoint.
        url: String,
        /// Who we called.
        expected: Rid,
        /// Who signed.
        got: Rid,
    },
    /// The body is larger than `poll.max_response`.
    #[error("{url}: response larger than poll.max_response ({cap} bytes); raise the cap or lower poll.limit / poll.fetch_batch")]
    TooLarge {
        /// Endpoint.
        url: String,
        /// The cap.
        cap: usize,
    },
    /// A verified payload that is not an object with its list of items.
    #[error("{url}: verified response payload is malformed: {source}")]
    BadPayload {
        /// Endpoint.
        url: String,
        /// Why.
        source: serde_json::Error,
    },
    /// A verified response of the wrong payload type.
    #[error("{url}: expected a {expected} response")]
    UnexpectedPayload {
        /// Endpoint.
        url: String,
        /// What we asked for.
        expected: &'static str,
    },
}

impl ClientError {
    /// Short outcome label for metrics and the poll log.
    pub fn outcome(&self) -> &'static str {
        match self {
            ClientError::Timeout { .. } => "timeout",
            ClientError::Protocol {
                kind: ProtocolErrorKind::UnknownNode,
                ..
            } => "unknown_node",
            ClientError::Envelope {
                source: EnvelopeError::Malformed(_),
                ..
            }
            | ClientError::BadPayload { .. }
            | ClientError::UnexpectedPayload { .. } => "malformed",
            ClientError::Envelope {
                source: EnvelopeError::WrongTarget { .. },
                ..
            } => "wrong_target",
            // Signed, but by a node whose key we have not learned yet (the first contact answering before it has
            // processed our handshake): unverifiable, not forged.
            ClientError::Envelope {
                source: EnvelopeError::UnknownSource(_),
                ..
            } => "unknown_sender",
            ClientError::Envelope { .. } | ClientError::WrongSender { .. } => "bad_signature",
            ClientError::TooLarge { .. } => "too_large",
            _ => "error",
        }
    }

    /// Whether the neighbour said it does not know us (so we should introduce ourselves again).
    pub fn is_unknown_node(&self) -> bool {
        matches!(
            self,
            ClientError::Protocol {
                kind: ProtocolErrorKind::UnknownNode,
                ..
            }
        )
    }
}

/// A neighbour to call: where, who, and the key we hold for it (if any).
#[derive(Debug, Clone)]
pub struct Peer {
    /// Its node RID.
    pub rid: Rid,
    /// Its KOI-net base URL (`…/koi-net`).
    pub base_url: String,
    /// Its public key from its profile; `None` until we learn it (then only a self-introducing payload verifies).
    pub public_key: Option<String>,
}

/// A verified response, with the key that verified it if the response itself introduced it.
#[derive(Debug)]
pub struct Verified<T> {
    /// The payload.
    pub payload: T,
    /// The key the payload introduced, when we had none for the sender.
    pub introduced_key: Option<String>,
}

/// Signs and sends requests as this node.
#[derive(Clone)]
pub struct KoiClient {
    http: reqwest::Client,
    identity: Identity,
    /// Largest response body read; a larger one is an error naming the neighbour and the cap.
    max_response: usize,
}

impl KoiClient {
    /// A client speaking as `identity`, reading responses of at most `max_response` bytes.
    pub fn new(identity: Identity, max_response: usize) -> KoiClient {
        let http = reqwest::Client::builder()
            .user_agent(concat!("koi-github-indexer/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_default();
        KoiClient {
            http,
            identity,
            max_response,
        }
    }

    /// Our RID.
    pub fn me(&self) -> &Rid {
        &self.identity.rid
    }

    /// Reads the body, refusing it as soon as it grows past the cap (a Content-Length over it is refused unread).
    async fn read_capped(
        &self,
        url: &str,
        timeout: Duration,
        mut response: reqwest::Response,
    ) -> Result<Vec<u8>, ClientError> {
        let too_large = || ClientError::TooLarge {
            url: url.to_owned(),
            cap: self.max_response,
        };
        if response
            .content_length()
            .is_some_and(|n| n > self.max_response as u64)
        {
            return Err(too_large());
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|source| transport(url, timeout, source))?
        {
            if body.len() + chunk.len() > self.max_response {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }

    /// Sends `payload` to `peer`; returns the verified response payload split into items (`None` for a
    /// broadcast's `null`).
    async fn call(
        &self,
        peer: &Peer,
        payload: &RequestPayload,
        timeout: Duration,
    ) -> Result<Verified<Option<ResponseItems>>, ClientError> {
        let url = format!("{}{}", peer.base_url.trim_end_matches('/'), payload.path());
        // Serialising our own payload types cannot fail.
        let body = sign_envelope(payload, &self.identity.rid, &peer.rid, &self.identity.key)
            .unwrap_or_default();
        let response = self
            .http
            .post(&url)
            .header("content-type", "application/json")
            .body(body)
            .timeout(timeout)
            .send()
            .await
            .map_err(|source| transport(&url, timeout, source))?;
        let status = response.status();
        let bytes = self.read_capped(&url, timeout, response).await?;
        if status.as_u16() == 400 {
            if let Ok(err) = serde_json::from_slice::<ErrorResponse>(&bytes) {
                return Err(ClientError::Protocol {
                    url,
                    kind: err.error,
                });
            }
        }
        if !status.is_success() {
            return Err(ClientError::Status {
                url,
                status: status.as_u16(),
                body: snippet(&bytes),
            });
        }
        if bytes.trim_ascii() == b"null" {
            return Ok(Verified {
                payload: None,
                introduced_key: None,
            });
        }
        let envelope = ReceivedEnvelope::parse(&bytes).map_err(|source| ClientError::Envelope {
            url: url.clone(),
            source,
        })?;
        if envelope.source_node() != &peer.rid {
            return Err(ClientError::WrongSender {
                url,
                expected: peer.rid.clone(),
                got: envelope.source_node().clone(),
            });
        }
        let used_key = envelope
            .verify_with_known_or_introduced(&self.identity.rid, peer.public_key.as_deref())
            .map_err(|source| ClientError::Envelope {
                url: url.clone(),
                source,
            })?;
        // The signature holds: from here on, one bad item costs only itself.
        let items = ResponseItems::parse(envelope.raw_payload())
            .map_err(|source| ClientError::BadPayload { url, source })?;
        Ok(Verified {
            payload: Some(items),
            introduced_key: peer.public_key.is_none().then_some(used_key),
        })
    }

    /// `POST /events/poll`: the events, each parsed on its own.
    pub async fn poll(
        &self,
        peer: &Peer,
        limit: u32,
        timeout: Duration,
    ) -> Result<Verified<Vec<Item<Event>>>, ClientError> {
        let r = self
            .call(
                peer,
                &RequestPayload::PollEvents(PollEvents { limit }),
                timeout,
            )
            .await?;
        match r.payload {
            Some(ResponseItems::Events(events)) => Ok(Verified {
                payload: events,
                introduced_key: r.introduced_key,
            }),
            _ => Err(unexpected(peer, "/events/poll", "events_payload")),
        }
    }

    /// `POST /rids/fetch`.
    pub async fn fetch_rids(
        &self,
        peer: &Peer,
        rid_types: Vec<RidType>,
        timeout: Duration,
    ) -> Result<Vec<Item<Rid>>, ClientError> {
        match self
            .call(
                peer,
                &RequestPayload::FetchRids(FetchRids { rid_types }),
                timeout,
            )
            .await?
            .payload
        {
            Some(ResponseItems::Rids(rids)) => Ok(rids),
            _ => Err(unexpected(peer, "/rids/fetch", "rids_payload")),
        }
    }

    /// `POST /manifests/fetch`: the manifests, each parsed on its own.
    pub async fn fetch_manifests(
        &self,
        peer: &Peer,
        rid_types: Vec<RidType>,
        rids: Vec<Rid>,
        timeout: Duration,
    ) -> Result<Vec<Item<Manifest>>, ClientError> {
        let payload = RequestPayload::FetchManifests(FetchManifests { rid_types, rids });
        match self.call(peer, &payload, timeout).await?.payload {
            Some(ResponseItems::Manifests { manifests, .. }) => Ok(manifests),
            _ => Err(unexpected(peer, "/manifests/fetch", "manifests_payload")),
        }
    }

    /// `POST /bundles/fetch`: the bundles, each parsed on its own.
    pub async fn fetch_bundles(
        &self,
        peer: &Peer,
        rids: Vec<Rid>,
        timeout: Duration,
    ) -> Result<Vec<Item<Bundle>>, ClientError> {
        match self
            .call(
                peer,
                &RequestPayload::FetchBundles(FetchBundles { rids }),
                timeout,
            )
            .await?
            .payload
        {
            Some(ResponseItems::Bundles { bundles, .. }) => Ok(bundles),
            _ => Err(unexpected(peer, "/bundles/fetch", "bundles_payload")),
        }
    }

    /// `POST /events/broadcast`.
    pub async fn broadcast(
        &self,
        peer: &Peer,
        events: Vec<Event>,
        timeout: Duration,
    ) -> Result<(), ClientError> {
        self.call(
            peer,
            &RequestPayload::EventsPayload(EventsPayload { events }),
            timeout,
        )
        .await?;
        Ok(())
    }

    /// A fresh bundle of our own profile.
    pub fn profile_bundle(&self) -> Bundle {
        self.identity.profile_bundle()
    }
}

/// The start of a body, as printable text, for error messages.
fn snippet(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(200)]);
    let mut out: String = text.chars().flat_map(char::escape_default).collect();
    if bytes.len() > 200 {
        out.push('…');
    }
    out
}

/// An error and its causes, each said once: `a: b: c`.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let part = s.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = s.source();
    }
    text
}

fn transport(url: &str, timeout: Duration, source: reqwest::Error) -> ClientError {
    if source.is_timeout() {
        ClientError::Timeout {
            url: url.to_owned(),
            timeout,
        }
    } else {
        ClientError::Transport {
            url: url.to_owned(),
            source,
        }
    }
}

fn unexpected(peer: &Peer, path: &str, expected: &'static str) -> ClientError {
    ClientError::UnexpectedPayload {
        url: format!("{}{path}", peer.base_url.trim_end_matches('/')),
        expected,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Layer(&'static str, Option<Box<Layer>>);
    impl std::fmt::Display for Layer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }
    impl std::error::Error for Layer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1.as_deref().map(|l| l as _)
        }
    }

    #[test]
    fn an_error_chain_says_each_cause_once() {
        let e = Layer(
            "polling x: connection refused",
            Some(Box::new(Layer(
                "connection refused",
                Some(Box::new(Layer("os error 111", None))),
            ))),
        );
        assert_eq!(
            error_chain(&e),
            "polling x: connection refused: os error 111"
        );
    }

    #[test]
    fn a_body_quoted_in_an_error_is_short_and_printable() {
        assert_eq!(snippet(b"bad\x1b[2J"), "bad\\u{1b}[2J");
        let long = snippet(&[b'a'; 500]);
        assert!(long.ends_with('…') && long.chars().count() == 201);
    }

    #[test]
    fn outcomes_name_what_went_wrong() {
        let unknown = ClientError::Protocol {
            url: "u".into(),
            kind: ProtocolErrorKind::UnknownNode,
        };
        assert_eq!(unknown.outcome(), "unknown_node");
        assert!(unknown.is_unknown_node());
        let large = ClientError::TooLarge {
            url: "u".into(),
            cap: 1,
        };
        assert_eq!(large.outcome(), "too_large");
        assert!(!large.is_unknown_node());
    }
}
