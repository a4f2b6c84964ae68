//! # koi-github-indexer
//!
//! A KOI-net **partial node**: it polls its neighbouring full nodes (a coordinator, GitHub sensors) for events,
//! indexes GitHub event metadata into an embedded sled store, and serves a read-only query API on localhost.
//!
//! Data flows one way through the modules:
//!
//! * [`protocol`] — the KOI-net 2.1 wire protocol: RIDs, knowledge objects, canonical JSON, keys, signed
//!   envelopes. Pure; knows nothing of storage or servers.

pub mod api;
pub mod config;
pub mod daemon;
pub mod index;
pub mod node;
pub mod protocol;
