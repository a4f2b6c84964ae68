//! Everything needed to speak KOI-net 2.1 exactly as PyPI `koi-net` 2.1.2 does, and nothing else: this module
//! knows no storage, no HTTP server and no scheduling.
//!
//! * [`rid`] — RIDs, RID types and typed views of the ones this node understands.
//! * [`knowledge`] — manifests, bundles, events, node and edge profiles.
//! * [`payload`] — the request/response payloads of the five endpoints and `error_response`.
//! * [`json`] — the two byte-exact encodings: Pydantic-compatible wire JSON and RFC 8785 content hashing.
//! * [`timestamp`] — manifest timestamps written as Pydantic writes them.
//! * [`keys`] — P-256 node keys, the encrypted PKCS#8 key file, raw `r||s` signatures.
//! * [`items`] — verified response payloads read item by item, so one bad item costs only itself.
//! * [`envelope`] — signing requests and verifying received bodies by the raw-payload method.

pub mod envelope;
pub mod items;
pub mod json;
pub mod keys;
pub mod knowledge;
pub mod payload;
pub mod rid;
pub mod timestamp;

pub use envelope::{sign_envelope, EnvelopeError, ReceivedEnvelope};
pub use items::{BadItem, BadItemKind, Item, ResponseItems};
pub use keys::{KeyError, NodeKey, PublicKey, SignatureError};
pub use knowledge::{
    Bundle, Contents, EdgeProfile, EdgeStatus, EdgeType, Event, EventType, Freshness, HashScheme,
    Manifest, NodeProfile, NodeProvides, NodeType,
};
pub use payload::{
    BundlesPayload, ErrorResponse, EventsPayload, FetchBundles, FetchManifests, FetchRids,
    ManifestsPayload, PollEvents, ProtocolErrorKind, RequestPayload, ResponsePayload, RidsPayload,
};
pub use rid::{EdgeRid, GithubEventRid, GithubRepoRid, NodeRid, Rid, RidError, RidType};
pub use timestamp::Timestamp;
