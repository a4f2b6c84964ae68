//! # koi-github-indexer
//!
//! A KOI-net **partial node**: it polls its neighbouring full nodes (a coordinator, GitHub sensors) for events,
//! indexes GitHub event metadata into an embedded sled store, and serves a read-only query API on localhost.
//!
//! Data flows one way through the modules:
//!
//! * [`protocol`] — the KOI-net 2.1 wire protocol: RIDs, knowledge objects, canonical JSON, keys, signed
//!   envelopes. Pure; knows nothing of storage or servers.
//! * [`index`] — GitHub event and repository bundles parsed into rows, kept in sled with secondary indexes (a
//!   repository's events by time, by type, by commit), deduplicated by hash and timestamp; the queries.
//! * [`actions`] — outbound webhooks (`[[action]]`): sends the deliveries the index queued with each new event,
//!   signed, in order, retried with backoff.
//! * [`api`] — the local HTTP API (warp) over the index, in the Python processor's paths and JSON shapes.
//! * [`cli`] — the query commands (`list-repos`, `show-events`, …): through the running daemon's API, or straight
//!   from the store when the daemon is stopped.
//! * [`secrets`] — the key password, action secrets and API token: read from the environment or systemd's
//!   credentials, then wiped from the environment.
//! * [`storage`] — opening the sled database one way for the daemon, the CLI and the tests, with a lock that
//!   tells "held by another process" apart by type.
//! * [`telemetry`] — what an operator sees: one struct per observable event that logs and counts at once,
//!   Prometheus metrics, the bounded poll log, log set-up and systemd readiness. Depends on no other module.

pub mod actions;
pub mod api;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod index;
pub mod node;
pub mod protocol;
pub mod secrets;
pub mod storage;
pub mod telemetry;
