//! # koi-github-indexer
//!
//! A KOI-net **partial node**: it polls its neighbouring full nodes (a coordinator, GitHub sensors) for events,
//! indexes GitHub event metadata into an embedded sled store, and serves a read-only query API on localhost.
//!
//! Data flows one way through the modules (each opens with its own map):
//!
//! * [`protocol`] — the KOI-net 2.1 wire protocol: RIDs, knowledge objects, canonical and legacy JSON hashing,
//!   keys, signed envelopes, per-item payload reading. Pure; knows nothing of storage or servers.
//! * [`node`] — the partial node: identity, the network graph, the client, the poller and catch-up, the durable
//!   inbox (a segment log; one entry's bytes in `node::inbox::record`), the single writer, membership
//!   (handshake, edges), the scheduler.
//! * [`index`] — GitHub event and repository bundles parsed into rows, kept in sled with secondary indexes (a
//!   repository's events by time, by type, by commit), deduplicated by hash and timestamp; the queries, dead
//!   letters, deliveries and the live feed. `index::store` gives each job of the one `Index` type a file.
//! * [`actions`] — outbound webhooks (`[[action]]`): sends the deliveries the index queued with each new event,
//!   signed, in order, retried with backoff.
//! * [`api`] — the local HTTP API: the connection limits ([`api::server`]), the trust boundary ([`api::guard`]),
//!   one route table ([`api::route`]), the handlers one file per resource, and the dashboard.
//! * [`cli`] — the query commands, written once against one trait (`cli::source::Answers`) answered by the
//!   running daemon's API or, when the daemon is stopped, by the store opened directly; text made safe for a
//!   terminal.
//! * [`config`] — the TOML configuration: sections with their defaults, validation, the settings derived from it.
//! * [`secrets`] — the key password, action secrets and API token: read from the environment or systemd's
//!   credentials, then wiped from the environment.
//! * [`compression`] — zstd frames read back with a bound (the store's held values, the inbox's records).
//! * [`storage`] — opening the sled database one way for the daemon, the CLI and the tests, with a lock that
//!   tells "held by another process" apart by type; files private whatever the umask.
//! * [`telemetry`] — what an operator sees: one struct per observable event that logs and counts at once,
//!   Prometheus metrics, the bounded poll log, log set-up and systemd readiness. Depends on no other module.
//! * [`daemon`] — `run`: start-up, the schedules, and shutdown in bounded time.

pub mod actions;
pub mod api;
pub mod cli;
pub mod compression;
pub mod config;
pub mod daemon;
#[doc(hidden)]
pub mod fuzzing;
pub mod index;
pub mod node;
pub mod protocol;
pub mod secrets;
pub mod sink;
pub mod storage;
pub mod telemetry;
