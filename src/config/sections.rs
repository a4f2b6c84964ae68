//! The configuration's sections as TOML gives them: every key, its type and its default (written once, in the
//! section's `Default`), with the doc that `config.toml.example` and `docs/configuration.md` repeat.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::units::{de_duration, de_opt_duration, de_size, de_socket_addr};
use super::{read_secret, ConfigError};
use crate::protocol::{Rid, RidType};

/// `[node]`
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NodeConfig {
    /// Name part of our node RID (`orn:koi-net.node:<name>+<hash>`).
    pub name: String,
    /// Holds the sled store and the key file; relative to the config file's directory.
    pub data_dir: PathBuf,
    /// Environment variable holding the private key password (never put the password in this file).
    pub key_password_env: String,
}

/// `[first_contact]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FirstContactConfig {
    /// Base URL of its KOI-net API, e.g. `http://127.0.0.1:8080/koi-net`.
    pub url: String,
    /// Its node RID, which pins its public key.
    pub rid: Rid,
}

/// `[poll]`
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PollConfig {
    /// Time between polls (humantime, e.g. `5s`). Ignored when `cron` is set.
    #[serde(deserialize_with = "de_duration")]
    pub interval: Duration,
    /// A 6-field cron expression (seconds first) to poll on instead of `interval`.
    pub cron: Option<String>,
    /// Most events per poll request; 0 = all the neighbour holds (unbounded: not recommended).
    pub limit: u32,
    /// Per-request timeout.
    #[serde(deserialize_with = "de_duration")]
    pub timeout: Duration,
    /// Longest wait between retries of a failing neighbour.
    #[serde(deserialize_with = "de_duration")]
    pub max_backoff: Duration,
    /// RIDs per `fetch_bundles` request during catch-up.
    pub fetch_batch: usize,
    /// Timeout of each catch-up request (`fetch_rids`, `fetch_manifests`, `fetch_bundles`): a sensor holding tens
    /// of thousands of events takes far longer to list them than to answer a poll.
    #[serde(deserialize_with = "de_duration")]
    pub catch_up_timeout: Duration,
    /// Largest response body read from a neighbour (e.g. `"64 MiB"`); a larger one is refused.
    #[serde(deserialize_with = "de_size")]
    pub max_response: u64,
}

/// `[pipeline]`
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PipelineConfig {
    /// Most events held in the inbox (received, not yet indexed); polling and catch-up wait beyond it.
    pub max_buffered: usize,
    /// Most rejected items kept in the dead-letter tree; the oldest are dropped (and counted) beyond it.
    pub dead_letters: u64,
    /// Longest a shutdown may take (humantime); keep it below the unit's `TimeoutStopSec` (30 s).
    #[serde(deserialize_with = "de_duration")]
    pub shutdown_timeout: Duration,
}

/// `[storage]`
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageConfig {
    /// sled's page cache (e.g. `"64 MiB"`). sled 0.34 holds more than this as the store grows
    /// (docs/benchmarks.md): a smaller value lowers the daemon's memory, it does not cap it.
    #[serde(deserialize_with = "de_size")]
    pub cache: u64,
    /// sled's own zstd compression of the pages it writes, for a store created now (an existing store keeps what
    /// it was created with): about 55 % of the disk, for about 1.5 times the writer's CPU and a much slower first
    /// open after a run.
    pub compression: bool,
}

/// `[api]`
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiConfig {
    /// Address the query API listens on. Keep it on loopback (see README, Security).
    #[serde(deserialize_with = "de_socket_addr")]
    pub listen: SocketAddr,
    /// `Host` names accepted besides `127.0.0.1:PORT`, `localhost:PORT`, `[::1]:PORT` and the listen address, e.g.
    /// a reverse proxy's name: `name` (any port) or `name:port`. Every other `Host` gets a 403, which is what
    /// stops DNS rebinding.
    pub allowed_hosts: Vec<String>,
    /// Environment variable holding a bearer token that every route but `/health`, `/` and `/assets` then
    /// requires (`Authorization: Bearer …`). Unset: no token.
    pub token_env: Option<String>,
    /// Longest a client may take to send a request's head (humantime); slower clients are disconnected.
    #[serde(deserialize_with = "de_duration")]
    pub header_timeout: Duration,
    /// Longest a connection may sit with nothing sent either way and no request open (humantime).
    #[serde(deserialize_with = "de_duration")]
    pub idle_timeout: Duration,
    /// Most connections open at once. At the cap, the oldest connection that has not yet sent a whole request is
    /// closed to make room; if every connection is busy, the new one gets a 503.
    pub max_connections: usize,
}

/// `[index]`
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IndexConfig {
    /// RID types of interest: we subscribe to nodes that provide events of these types.
    pub rid_types: Vec<RidType>,
    /// Drop events older than this (humantime, e.g. `90d`); unset keeps everything.
    #[serde(deserialize_with = "de_opt_duration")]
    pub retention: Option<Duration>,
    /// Keep each event's contents (compressed) beside its row; `false` keeps rows and manifests only.
    pub keep_contents: bool,
    /// Versions of an event kept, the current one included: an UPDATE keeps the one it replaces (1 keeps none).
    pub history: u32,
    /// The repositories this node indexes, `owner/name` or `owner/*`; empty (the default) indexes all. Events of
    /// others are counted (`events_filtered_total`) and dropped: several nodes can share the work by repository.
    pub repos: Vec<String>,
}

/// `[sink]`: where indexed events are published beside the index.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SinkConfig {
    /// `[sink.nats]`: a NATS JetStream stream.
    pub nats: Option<NatsSinkConfig>,
}

/// `[sink.nats]`: publish every indexed event (each version once) to a JetStream stream (docs/operations.md,
/// "Scaling out").
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NatsSinkConfig {
    /// Server URLs (`nats://host:4222`, `tls://…`); the client finds the rest of the cluster from them.
    pub servers: Vec<String>,
    /// The stream; created when missing.
    #[serde(default = "default_stream")]
    pub stream: String,
    /// Subjects are `<subject_prefix>.<owner>.<repo>.<event_type>`.
    #[serde(default = "default_subject_prefix")]
    pub subject_prefix: String,
    /// A `.creds` file (user JWT and NKey seed).
    #[serde(default)]
    pub creds_file: Option<PathBuf>,
    /// The environment variable (or credential file, systemd's `LoadCredential`) holding a token.
    #[serde(default)]
    pub token_env: Option<String>,
    /// A file holding an NKey seed (`SU…`).
    #[serde(default)]
    pub nkey_seed_file: Option<PathBuf>,
    /// A PEM file of the CA that signed the servers' certificates; TLS is then required.
    #[serde(default)]
    pub tls_ca: Option<PathBuf>,
    /// Copies of the stream the cluster keeps, when the node creates it (1, 3 or 5).
    #[serde(default = "default_replicas")]
    pub replicas: usize,
    /// How long the stream keeps messages, when the node creates it; unset keeps them until limits say otherwise.
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub max_age: Option<Duration>,
    /// The server drops a message whose `Nats-Msg-Id` it has seen within this window.
    #[serde(default = "default_duplicate_window", deserialize_with = "de_duration")]
    pub duplicate_window: Duration,
    /// Publishes awaiting their acknowledgement at once.
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight: usize,
    /// Put each event's contents (the GitHub payload) in its message.
    #[serde(default)]
    pub include_contents: bool,
}

fn default_stream() -> String {
    "GITHUB_EVENTS".to_owned()
}
fn default_subject_prefix() -> String {
    "github".to_owned()
}
fn default_replicas() -> usize {
    3
}
fn default_duplicate_window() -> Duration {
    Duration::from_secs(120)
}
fn default_max_in_flight() -> usize {
    256
}

/// `[[action]]`: POST each newly indexed event that matches the filters to `url`, signed with HMAC-SHA256.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionConfig {
    /// Unique name: letters, digits, `-` and `_` (it is in the API's paths and the metrics).
    pub name: String,
    /// Where to POST (http or https).
    pub url: String,
    /// Environment variable holding the HMAC secret (never put the secret in this file).
    pub secret_env: String,
    /// Only these repositories (`owner/name`, or `owner/*` for all of an owner's); empty: all.
    #[serde(default)]
    pub repos: Vec<String>,
    /// Only these event types (`push`, `issues`, …); empty: all.
    #[serde(default)]
    pub event_types: Vec<String>,
    /// Only events by these GitHub logins; empty: all.
    #[serde(default)]
    pub actors: Vec<String>,
    /// How long one attempt may take.
    #[serde(default = "default_action_timeout", deserialize_with = "de_duration")]
    pub timeout: Duration,
    /// The first retry's delay; each next one doubles (with jitter) up to `max_backoff`.
    #[serde(default = "default_min_backoff", deserialize_with = "de_duration")]
    pub min_backoff: Duration,
    /// The longest delay between retries.
    #[serde(
        default = "default_action_max_backoff",
        deserialize_with = "de_duration"
    )]
    pub max_backoff: Duration,
    /// A delivery not delivered this long after it was queued is given up (kept in the failed list).
    #[serde(default = "default_max_age", deserialize_with = "de_duration")]
    pub max_age: Duration,
    /// Delivered deliveries kept in the log (oldest dropped).
    #[serde(default = "default_keep_deliveries")]
    pub keep_delivered: u64,
    /// Failed deliveries kept (oldest dropped).
    #[serde(default = "default_keep_deliveries")]
    pub keep_failed: u64,
}

impl ActionConfig {
    /// The filter the index queues new events with.
    pub fn filter(&self) -> crate::index::ActionFilter {
        crate::index::ActionFilter {
            name: self.name.clone(),
            repos: crate::index::RepoFilter(self.repos.clone()),
            event_types: self.event_types.clone(),
            actors: self.actors.clone(),
        }
    }

    /// The HMAC secret, from the variable `secret_env` names (or its credential file).
    pub(super) fn secret(&self) -> Result<String, ConfigError> {
        read_secret(&self.secret_env)?.ok_or_else(|| ConfigError::MissingSecret {
            action: self.name.clone(),
            var: self.secret_env.clone(),
        })
    }
}

/// `[log]`
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// `off`, `error`, `warn`, `info`, `debug` or `trace` (or a directive list such as
    /// `info,koi_github_indexer::poll=debug`); `RUST_LOG` overrides it.
    pub level: String,
    /// `text` (for terminals and journald) or `json` (for log shippers).
    pub format: LogFormat,
}

pub use crate::telemetry::LogFormat;

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            name: "github_indexer".to_owned(),
            data_dir: PathBuf::from("/var/lib/koi-github-indexer"),
            key_password_env: "KOI_KEY_PASSWORD".to_owned(),
        }
    }
}
impl Default for PollConfig {
    fn default() -> Self {
        PollConfig {
            interval: Duration::from_secs(5),
            cron: None,
            limit: 1000,
            // Equal to the default interval: a poll never outlives its beat.
            timeout: Duration::from_secs(5),
            max_backoff: Duration::from_secs(300),
            fetch_batch: 100,
            catch_up_timeout: Duration::from_secs(120),
            max_response: 64 * 1024 * 1024,
        }
    }
}
impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            max_buffered: 10_000,
            dead_letters: 1000,
            shutdown_timeout: Duration::from_secs(10),
        }
    }
}
impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            cache: crate::storage::DEFAULT_CACHE_BYTES,
            compression: crate::storage::DEFAULT_COMPRESSION,
        }
    }
}
impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8004)),
            allowed_hosts: Vec::new(),
            token_env: None,
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections: 512,
        }
    }
}
impl Default for IndexConfig {
    fn default() -> Self {
        IndexConfig {
            rid_types: vec![
                RidType::parse(RidType::GITHUB_EVENT).unwrap_or_else(|_| unreachable!()),
                RidType::parse(RidType::GITHUB_REPO).unwrap_or_else(|_| unreachable!()),
            ],
            retention: None,
            keep_contents: true,
            history: crate::index::DEFAULT_HISTORY,
            repos: Vec::new(),
        }
    }
}
impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".to_owned(),
            format: LogFormat::default(),
        }
    }
}

/// The defaults of `[[action]]` keys (an action has required keys too, so it has no `Default`).
fn default_action_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_min_backoff() -> Duration {
    Duration::from_secs(1)
}
fn default_action_max_backoff() -> Duration {
    Duration::from_secs(60)
}
fn default_max_age() -> Duration {
    Duration::from_secs(24 * 3600)
}
fn default_keep_deliveries() -> u64 {
    1000
}
