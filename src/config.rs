//! The daemon's TOML configuration: every key, its default, and validation with errors that name the key and
//! the fix. `config.toml.example` documents the same keys; keep them in step.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use crate::protocol::{NodeRid, Rid, RidType};

/// A configuration problem, phrased for the person who has to fix the file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// TOML syntax, an unknown key, or a value of the wrong type. toml's message names the key and line.
    #[error("config file {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What toml said, including the key and line.
        message: String,
    },
    /// A value that parses but makes no sense.
    #[error("config file {path}: `{key}` {problem}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The dotted key, e.g. `poll.interval`.
        key: &'static str,
        /// What is wrong and how to fix it.
        problem: String,
    },
    /// The environment variable that should hold the key password is not set.
    #[error(
        "the node key password variable `{var}` (set by `node.key_password_env`) is not set: export it, or put \
         `{var}=…` in the service's EnvironmentFile"
    )]
    MissingPassword {
        /// The variable's name.
        var: String,
    },
    /// An action's HMAC secret variable is not set (or empty).
    #[error(
        "action `{action}`: its HMAC secret variable `{var}` (set by `secret_env`) is not set or empty: export it, or \
         put `{var}=…` in the service's EnvironmentFile"
    )]
    MissingSecret {
        /// The action's name.
        action: String,
        /// The variable's name.
        var: String,
    },
    /// `api.token_env` is set, but neither its variable nor its credential file holds a token.
    #[error(
        "the API token variable `{var}` (set by `api.token_env`) is not set or empty: export it, put `{var}=…` in \
         the service's EnvironmentFile, or pass it with LoadCredential={var}:FILE; or remove `api.token_env` to run \
         without a token"
    )]
    MissingToken {
        /// The variable's name.
        var: String,
    },
    /// A secret's variable or credential file could not be read.
    #[error(transparent)]
    Secret(#[from] crate::secrets::SecretError),
    /// The data directory cannot be created or written.
    #[error("data directory {path} (`node.data_dir`) is not usable: {source}. Create it, or fix its owner and permissions")]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Who this node is and where it keeps its state.
    #[serde(default)]
    pub node: NodeConfig,
    /// The node we join the network through (usually a coordinator). Required.
    pub first_contact: FirstContactConfig,
    /// How often and how patiently neighbours are polled.
    #[serde(default)]
    pub poll: PollConfig,
    /// The local query API.
    #[serde(default)]
    pub api: ApiConfig,
    /// What is indexed and for how long.
    #[serde(default)]
    pub index: IndexConfig,
    /// The path from poll to index: buffering, dead letters, shutdown.
    #[serde(default)]
    pub pipeline: PipelineConfig,
    /// The sled store.
    #[serde(default)]
    pub storage: StorageConfig,
    /// Logging.
    #[serde(default)]
    pub log: LogConfig,
    /// Outbound webhooks on new events, one `[[action]]` block each.
    #[serde(default, rename = "action")]
    pub actions: Vec<ActionConfig>,
    /// The file this was loaded from (relative paths inside it are relative to its directory).
    #[serde(skip)]
    pub source: PathBuf,
}

/// `[node]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// Name part of our node RID (`orn:koi-net.node:<name>+<hash>`).
    #[serde(default = "default_node_name")]
    pub name: String,
    /// Holds the sled store and the key file; relative to the config file's directory.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// Environment variable holding the private key password (never put the password in this file).
    #[serde(default = "default_key_password_env")]
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
#[serde(deny_unknown_fields)]
pub struct PollConfig {
    /// Time between polls (humantime, e.g. `5s`). Ignored when `cron` is set.
    #[serde(default = "default_interval", deserialize_with = "de_duration")]
    pub interval: Duration,
    /// A 6-field cron expression (seconds first) to poll on instead of `interval`.
    #[serde(default)]
    pub cron: Option<String>,
    /// Most events per poll request; 0 = all the neighbour holds (unbounded: not recommended).
    #[serde(default = "default_poll_limit")]
    pub limit: u32,
    /// Per-request timeout.
    #[serde(default = "default_timeout", deserialize_with = "de_duration")]
    pub timeout: Duration,
    /// Longest wait between retries of a failing neighbour.
    #[serde(default = "default_max_backoff", deserialize_with = "de_duration")]
    pub max_backoff: Duration,
    /// RIDs per `fetch_bundles` request during catch-up.
    #[serde(default = "default_fetch_batch")]
    pub fetch_batch: usize,
    /// Timeout of each catch-up request (`fetch_rids`, `fetch_manifests`, `fetch_bundles`): a sensor holding tens
    /// of thousands of events takes far longer to list them than to answer a poll.
    #[serde(default = "default_catch_up_timeout", deserialize_with = "de_duration")]
    pub catch_up_timeout: Duration,
    /// Largest response body read from a neighbour (e.g. `"64 MiB"`); a larger one is refused.
    #[serde(default = "default_max_response", deserialize_with = "de_size")]
    pub max_response: u64,
}

/// `[pipeline]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineConfig {
    /// Most events held in the inbox (received, not yet indexed); polling and catch-up wait beyond it.
    #[serde(default = "default_max_buffered")]
    pub max_buffered: usize,
    /// Most rejected items kept in the dead-letter tree; the oldest are dropped (and counted) beyond it.
    #[serde(default = "default_dead_letters")]
    pub dead_letters: u64,
    /// Longest a shutdown may take (humantime); keep it below the unit's `TimeoutStopSec` (30 s).
    #[serde(default = "default_shutdown_timeout", deserialize_with = "de_duration")]
    pub shutdown_timeout: Duration,
}

/// `[storage]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    /// sled's page cache (e.g. `"64 MiB"`). sled 0.34 holds more than this as the store grows
    /// (docs/benchmarks.md): a smaller value lowers the daemon's memory, it does not cap it.
    #[serde(default = "default_cache", deserialize_with = "de_size")]
    pub cache: u64,
    /// sled's own zstd compression of the pages it writes, for a store created now (an existing store keeps what
    /// it was created with): about 55 % of the disk, for about 1.5 times the writer's CPU and a much slower first
    /// open after a run.
    #[serde(default = "default_compression")]
    pub compression: bool,
}

/// `[api]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    /// Address the query API listens on. Keep it on loopback (see README, Security).
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// `Host` names accepted besides `127.0.0.1:PORT`, `localhost:PORT`, `[::1]:PORT` and the listen address, e.g.
    /// a reverse proxy's name: `name` (any port) or `name:port`. Every other `Host` gets a 403, which is what
    /// stops DNS rebinding.
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
    /// Environment variable holding a bearer token that every route but `/health`, `/` and `/assets` then
    /// requires (`Authorization: Bearer …`). Unset: no token.
    #[serde(default)]
    pub token_env: Option<String>,
    /// Longest a client may take to send a request's head (humantime); slower clients are disconnected.
    #[serde(default = "default_header_timeout", deserialize_with = "de_duration")]
    pub header_timeout: Duration,
    /// Longest a connection may sit with nothing sent either way and no request open (humantime).
    #[serde(default = "default_idle_timeout", deserialize_with = "de_duration")]
    pub idle_timeout: Duration,
    /// Most connections open at once. At the cap, the oldest connection that has not yet sent a whole request is
    /// closed to make room; if every connection is busy, the new one gets a 503.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
}

/// `[index]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IndexConfig {
    /// RID types of interest: we subscribe to nodes that provide events of these types.
    #[serde(default = "default_rid_types")]
    pub rid_types: Vec<RidType>,
    /// Drop events older than this (humantime, e.g. `90d`); unset keeps everything.
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub retention: Option<Duration>,
    /// Keep each event's contents (compressed) beside its row; `false` keeps rows and manifests only.
    #[serde(default = "default_true")]
    pub keep_contents: bool,
    /// Versions of an event kept, the current one included: an UPDATE keeps the one it replaces (1 keeps none).
    #[serde(default = "default_history")]
    pub history: u32,
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
            repos: self.repos.clone(),
            event_types: self.event_types.clone(),
            actors: self.actors.clone(),
        }
    }

    /// The HMAC secret, from the variable `secret_env` names (or its credential file).
    fn secret(&self) -> Result<String, ConfigError> {
        read_secret(&self.secret_env)?.ok_or_else(|| ConfigError::MissingSecret {
            action: self.name.clone(),
            var: self.secret_env.clone(),
        })
    }
}

/// The secrets the config names, as read at start-up.
#[derive(Clone)]
pub struct Secrets {
    /// Decrypts the node key (`node.key_password_env`).
    pub key_password: String,
    /// Each action's HMAC secret, in `actions` order.
    pub action_secrets: Vec<String>,
    /// The API's bearer token (`api.token_env`), if one is configured.
    pub api_token: Option<String>,
}

impl std::fmt::Debug for Secrets {
    // Never the values: a Debug print of the config's secrets must not be the leak.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Secrets")
            .field("action_secrets", &self.action_secrets.len())
            .field("api_token", &self.api_token.is_some())
            .finish_non_exhaustive()
    }
}

/// A secret from its variable or credential file.
fn read_secret(var: &str) -> Result<Option<String>, ConfigError> {
    Ok(crate::secrets::read(var)?.map(|(value, _source)| value))
}

/// `[log]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// `off`, `error`, `warn`, `info`, `debug` or `trace` (or a directive list such as
    /// `info,koi_github_indexer::poll=debug`); `RUST_LOG` overrides it.
    #[serde(default = "default_log_level")]
    pub level: String,
    /// `text` (for terminals and journald) or `json` (for log shippers).
    #[serde(default)]
    pub format: LogFormat,
}

pub use crate::telemetry::LogFormat;

fn default_node_name() -> String {
    "github_indexer".to_owned()
}
fn default_data_dir() -> PathBuf {
    PathBuf::from("/var/lib/koi-github-indexer")
}
fn default_key_password_env() -> String {
    "KOI_KEY_PASSWORD".to_owned()
}
fn default_interval() -> Duration {
    Duration::from_secs(5)
}
fn default_timeout() -> Duration {
    // Equal to the default interval: a poll never outlives its beat.
    Duration::from_secs(5)
}
fn default_max_backoff() -> Duration {
    Duration::from_secs(300)
}
fn default_fetch_batch() -> usize {
    100
}
fn default_catch_up_timeout() -> Duration {
    Duration::from_secs(120)
}
fn default_poll_limit() -> u32 {
    1000
}
fn default_max_response() -> u64 {
    64 * 1024 * 1024
}
fn default_compression() -> bool {
    crate::storage::DEFAULT_COMPRESSION
}

fn default_max_buffered() -> usize {
    10_000
}
fn default_dead_letters() -> u64 {
    1000
}
fn default_shutdown_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_cache() -> u64 {
    crate::storage::DEFAULT_CACHE_BYTES
}
fn default_header_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_idle_timeout() -> Duration {
    Duration::from_secs(60)
}
fn default_max_connections() -> usize {
    512
}
fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8004))
}
fn default_rid_types() -> Vec<RidType> {
    vec![
        RidType::parse(RidType::GITHUB_EVENT).unwrap_or_else(|_| unreachable!()),
        RidType::parse(RidType::GITHUB_REPO).unwrap_or_else(|_| unreachable!()),
    ]
}
fn default_true() -> bool {
    true
}
fn default_history() -> u32 {
    crate::index::DEFAULT_HISTORY
}
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
fn default_log_level() -> String {
    "info".to_owned()
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            name: default_node_name(),
            data_dir: default_data_dir(),
            key_password_env: default_key_password_env(),
        }
    }
}
impl Default for PollConfig {
    fn default() -> Self {
        PollConfig {
            interval: default_interval(),
            cron: None,
            limit: default_poll_limit(),
            timeout: default_timeout(),
            max_backoff: default_max_backoff(),
            fetch_batch: default_fetch_batch(),
            catch_up_timeout: default_catch_up_timeout(),
            max_response: default_max_response(),
        }
    }
}
impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            max_buffered: default_max_buffered(),
            dead_letters: default_dead_letters(),
            shutdown_timeout: default_shutdown_timeout(),
        }
    }
}
impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            cache: default_cache(),
            compression: default_compression(),
        }
    }
}
impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            listen: default_listen(),
            allowed_hosts: Vec::new(),
            token_env: None,
            header_timeout: default_header_timeout(),
            idle_timeout: default_idle_timeout(),
            max_connections: default_max_connections(),
        }
    }
}
impl Default for IndexConfig {
    fn default() -> Self {
        IndexConfig {
            rid_types: default_rid_types(),
            retention: None,
            keep_contents: true,
            history: default_history(),
        }
    }
}
impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: default_log_level(),
            format: LogFormat::default(),
        }
    }
}

/// A size: a number of bytes, or text such as `"64 MiB"` / `"1GB"`.
fn de_size<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Size {
        Bytes(u64),
        Text(String),
    }
    match Size::deserialize(deserializer)? {
        Size::Bytes(n) => Ok(n),
        Size::Text(text) => text
            .trim()
            .parse::<bytesize::ByteSize>()
            .map(|b| b.as_u64())
            .map_err(|e| {
                serde::de::Error::custom(format!(
                    "`{text}` is not a size ({e}); write e.g. \"64 MiB\", \"512 KiB\" or a number of bytes"
                ))
            }),
    }
}

fn de_duration<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(deserializer)?;
    humantime::parse_duration(&text).map_err(|e| {
        serde::de::Error::custom(format!(
            "`{text}` is not a duration ({e}); write e.g. \"5s\", \"2m\", \"90d\""
        ))
    })
}

fn de_opt_duration<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Duration>, D::Error> {
    de_duration(deserializer).map(Some)
}

impl Config {
    /// Reads, parses and validates the file. Does not touch the data directory or the environment.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Config::parse(&text, path)
    }

    /// Parses and validates TOML text as if read from `path`.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let mut config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string().trim_end().replace('\n', "\n  "),
        })?;
        config.source = path.to_owned();
        let base = path.parent().unwrap_or_else(|| Path::new("."));
        if config.node.data_dir.is_relative() {
            config.node.data_dir = base.join(&config.node.data_dir);
        }
        config.validate()?;
        Ok(config)
    }

    fn invalid(&self, key: &'static str, problem: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            path: self.source.clone(),
            key,
            problem: problem.into(),
        }
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let name = &self.node.name;
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            return Err(self.invalid(
                "node.name",
                format!("`{name}` must be non-empty letters, digits, `-`, `_` or `.`"),
            ));
        }
        if self.node.key_password_env.is_empty() {
            return Err(self.invalid("node.key_password_env", "must name an environment variable"));
        }
        let url = &self.first_contact.url;
        if !(url.starts_with("http://") || url.starts_with("https://"))
            || reqwest::Url::parse(url).is_err()
        {
            return Err(self.invalid(
                "first_contact.url",
                format!(
                    "`{url}` is not an http(s) URL; write e.g. \"http://127.0.0.1:8080/koi-net\""
                ),
            ));
        }
        if let Err(e) = NodeRid::from_rid(&self.first_contact.rid) {
            return Err(self.invalid(
                "first_contact.rid",
                format!("{e}; copy the coordinator's RID from its logs or /status"),
            ));
        }
        if self.poll.interval.is_zero() {
            return Err(self.invalid("poll.interval", "must be greater than zero"));
        }
        if self.poll.timeout.is_zero() {
            return Err(self.invalid("poll.timeout", "must be greater than zero"));
        }
        if self.poll.catch_up_timeout.is_zero() {
            return Err(self.invalid("poll.catch_up_timeout", "must be greater than zero"));
        }
        if self.poll.fetch_batch == 0 {
            return Err(self.invalid("poll.fetch_batch", "must be at least 1"));
        }
        if self.poll.max_response < 64 * 1024 {
            return Err(self.invalid(
                "poll.max_response",
                "must be at least 64 KiB (one node profile response); the default is \"64 MiB\"",
            ));
        }
        if self.pipeline.max_buffered == 0 {
            return Err(self.invalid("pipeline.max_buffered", "must be at least 1"));
        }
        if self.pipeline.dead_letters == 0 {
            return Err(self.invalid("pipeline.dead_letters", "must be at least 1"));
        }
        if self.pipeline.shutdown_timeout.is_zero() {
            return Err(self.invalid("pipeline.shutdown_timeout", "must be greater than zero"));
        }
        if self.api.header_timeout.is_zero() {
            return Err(self.invalid("api.header_timeout", "must be greater than zero"));
        }
        if self.api.idle_timeout.is_zero() {
            return Err(self.invalid("api.idle_timeout", "must be greater than zero"));
        }
        if self.api.max_connections == 0 {
            return Err(self.invalid("api.max_connections", "must be at least 1"));
        }
        for host in &self.api.allowed_hosts {
            if let Err(problem) = crate::api::guard::check_allowed_host(host) {
                return Err(self.invalid("api.allowed_hosts", problem));
            }
        }
        if let Some(var) = &self.api.token_env {
            if var.is_empty() || var.contains('=') || var.contains('\0') {
                return Err(self.invalid(
                    "api.token_env",
                    "must name an environment variable, e.g. \"KOI_API_TOKEN\"",
                ));
            }
        }
        if self.storage.cache < 1024 * 1024 {
            return Err(self.invalid(
                "storage.cache",
                "must be at least 1 MiB; the default is \"64 MiB\"",
            ));
        }
        if let Some(cron) = &self.poll.cron {
            if let Err(e) = check_cron(cron) {
                return Err(self.invalid("poll.cron", e));
            }
        }
        if self.index.rid_types.is_empty() {
            return Err(self.invalid(
                "index.rid_types",
                "is empty: list at least \"orn:github.event\"",
            ));
        }
        if let Some(r) = self.index.retention {
            if r.is_zero() {
                return Err(self.invalid(
                    "index.retention",
                    "must be greater than zero; remove the key to keep everything",
                ));
            }
        }
        if self.index.history == 0 {
            return Err(self.invalid(
                "index.history",
                "must be at least 1 (the current version); the default is 10",
            ));
        }
        if let Err(e) = crate::telemetry::logging::filter_directives(&self.log.level, None) {
            return Err(self.invalid("log.level", e.to_string()));
        }
        let mut names = std::collections::HashSet::new();
        for action in &self.actions {
            if let Err(problem) = check_action(action) {
                return Err(self.invalid("action", format!("`{}`: {problem}", action.name)));
            }
            if !names.insert(action.name.as_str()) {
                return Err(self.invalid(
                    "action",
                    format!(
                        "`{}` is named twice: each action needs its own name",
                        action.name
                    ),
                ));
            }
        }
        Ok(())
    }

    /// `node.data_dir` when the config does not set it.
    pub fn default_data_dir() -> PathBuf {
        default_data_dir()
    }

    /// How to open the sled store (`[storage]`): the daemon and the CLI open it the same way.
    pub fn store_options(&self) -> crate::storage::StoreOptions {
        crate::storage::StoreOptions {
            cache_bytes: self.storage.cache,
            compression: self.storage.compression,
        }
    }

    /// How the index keeps what it is given (`[index]`, and the `[[action]]` filters new events are queued for).
    pub fn index_options(&self) -> crate::index::IndexOptions {
        crate::index::IndexOptions {
            keep_contents: self.index.keep_contents,
            history: self.index.history,
            actions: self.actions.iter().map(ActionConfig::filter).collect(),
        }
    }

    /// Every secret the daemon needs, read from the environment (or `$CREDENTIALS_DIRECTORY`) and then removed
    /// from it, so that `/proc/PID/environ` does not keep them for the life of the process. Call it before any
    /// thread starts (`main` does, before the runtime); the first missing secret is the error.
    pub fn take_secrets(&self) -> Result<Secrets, ConfigError> {
        self.secrets(true)
    }

    /// [`Config::take_secrets`] without touching the environment (`check-config`).
    pub fn read_secrets(&self) -> Result<Secrets, ConfigError> {
        self.secrets(false)
    }

    fn secrets(&self, take: bool) -> Result<Secrets, ConfigError> {
        let secrets = self.read_all_secrets()?;
        if take {
            // Only once every secret is read: two actions may share one variable.
            let names = std::iter::once(&self.node.key_password_env)
                .chain(self.actions.iter().map(|a| &a.secret_env))
                .chain(self.api.token_env.iter());
            for name in names {
                crate::secrets::scrub(name);
            }
        }
        Ok(secrets)
    }

    fn read_all_secrets(&self) -> Result<Secrets, ConfigError> {
        let var = &self.node.key_password_env;
        // An empty password is a password (a key may be encrypted with one): only an unset variable is missing.
        let set_empty = std::env::var_os(var).is_some_and(|v| v.is_empty());
        let key_password = match read_secret(var)? {
            Some(password) => password,
            None if set_empty => String::new(),
            None => return Err(ConfigError::MissingPassword { var: var.clone() }),
        };
        let action_secrets = self
            .actions
            .iter()
            .map(ActionConfig::secret)
            .collect::<Result<_, _>>()?;
        let api_token = match &self.api.token_env {
            None => None,
            Some(var) => Some(
                read_secret(var)?.ok_or_else(|| ConfigError::MissingToken { var: var.clone() })?,
            ),
        };
        Ok(Secrets {
            key_password,
            action_secrets,
            api_token,
        })
    }

    /// Creates the data directory if needed (mode 0700, whatever the umask: it holds the key and the index) and
    /// checks it is writable. An existing directory keeps its mode; [`data_dir_exposure`] says when that is open.
    pub fn prepare_data_dir(&self) -> Result<PathBuf, ConfigError> {
        let dir = &self.node.data_dir;
        let err = |source| ConfigError::DataDir {
            path: dir.clone(),
            source,
        };
        crate::storage::create_private_dir(dir).map_err(err)?;
        let probe = dir.join(".write-test");
        std::fs::write(&probe, b"ok").map_err(err)?;
        let _ = std::fs::remove_file(&probe);
        Ok(dir.clone())
    }

    /// Warnings that do not stop start-up (e.g. a timeout longer than the interval).
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.first_contact.rid.as_str().ends_with(&"0".repeat(64)) {
            out.push(
                "first_contact.rid is the placeholder from config.toml.example: set it to your coordinator's node RID \
                 (koi-net keeps it in its config.yaml as koi_net.node_rid), or every request will be refused"
                    .to_owned(),
            );
        }
        if self.poll.cron.is_none() && self.poll.timeout > self.poll.interval {
            out.push(format!(
                "poll.timeout ({}) is longer than poll.interval ({}): a slow neighbour's polls will overlap its schedule \
                 and be skipped",
                humantime::format_duration(self.poll.timeout),
                humantime::format_duration(self.poll.interval)
            ));
        }
        if !self.api.listen.ip().is_loopback() {
            out.push(format!(
                "api.listen {} is not a loopback address: the query API has no authentication",
                self.api.listen
            ));
        }
        out
    }
}

/// A warning when the data directory can be read or entered by other users (group or others have any access):
/// the index, the inbox and the encrypted key are inside.
pub fn data_dir_exposure(dir: &Path) -> Option<String> {
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(dir).ok()?.permissions().mode() & 0o777;
    (mode & 0o077 != 0).then(|| {
        format!(
            "data directory {} (`node.data_dir`) is open to other users (mode {mode:04o}): they can read the index. \
             Run `chmod 700 {}`",
            dir.display(),
            dir.display()
        )
    })
}

/// What is wrong with an `[[action]]` block, phrased with the fix.
fn check_action(action: &ActionConfig) -> Result<(), String> {
    let name = &action.name;
    if name.is_empty()
        || name.len() > 64
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_".contains(c))
    {
        return Err("`name` must be 1 to 64 letters, digits, `-` or `_`".into());
    }
    let url = &action.url;
    if !(url.starts_with("http://") || url.starts_with("https://"))
        || reqwest::Url::parse(url).is_err()
    {
        return Err(format!(
            "`url` `{url}` is not an http(s) URL; write e.g. \"https://hooks.example.com/koi\""
        ));
    }
    if action.secret_env.is_empty()
        || !action
            .secret_env
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_')
    {
        return Err(
            "`secret_env` must name an environment variable (letters, digits, `_`), e.g. \"KOI_ACTION_SECRET\""
                .into(),
        );
    }
    for repo in &action.repos {
        let full_name = repo
            .strip_suffix("/*")
            .map_or(repo.clone(), |owner| format!("{owner}/x"));
        if crate::index::check_github_name(repo, &full_name).is_err() {
            return Err(format!(
                "`repos` entry `{repo}` is not `owner/name` or `owner/*` as GitHub spells them"
            ));
        }
    }
    if let Some(bad) = action
        .event_types
        .iter()
        .chain(&action.actors)
        .find(|t| t.trim().is_empty() || t.contains(char::is_whitespace))
    {
        return Err(format!(
            "`event_types` and `actors` entries must be single words; `{bad}` is not"
        ));
    }
    for (key, value) in [
        ("timeout", action.timeout),
        ("min_backoff", action.min_backoff),
        ("max_backoff", action.max_backoff),
        ("max_age", action.max_age),
    ] {
        if value.is_zero() {
            return Err(format!("`{key}` must be greater than zero"));
        }
    }
    if action.min_backoff > action.max_backoff {
        return Err("`min_backoff` must not be longer than `max_backoff`".into());
    }
    if action.keep_delivered == 0 || action.keep_failed == 0 {
        return Err("`keep_delivered` and `keep_failed` must be at least 1".into());
    }
    Ok(())
}

/// Validates a cron expression by building the scheduler job it will drive.
fn check_cron(expr: &str) -> Result<(), String> {
    tokio_cron_scheduler::Job::new_async(expr, |_, _| Box::pin(async {}))
        .map(|_| ())
        .map_err(|e| {
            format!("`{expr}` is not a valid cron expression ({e:?}); write 6 fields with seconds first, e.g. \"*/5 * * * * *\"")
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
[first_contact]
url = "http://127.0.0.1:8080/koi-net"
rid = "orn:koi-net.node:coordinator+7538f71072bc0505382389554aaff429b269546acf27178a028ef5ee26f4cc50"
"#;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("/etc/koi/config.toml"))
    }

    /// `config.toml.example` is valid, every value in it is the default, and it mentions every optional key.
    #[test]
    fn the_example_file_documents_the_defaults() {
        let text = include_str!("../config.toml.example");
        let example = parse(text).unwrap();
        let defaults = parse(MINIMAL).unwrap();
        let sections = |c: &Config| {
            format!(
                "{:?}\n{:?}\n{:?}\n{:?}\n{:?}\n{:?}\n{:?}",
                c.node, c.poll, c.api, c.index, c.pipeline, c.storage, c.log
            )
        };
        assert_eq!(sections(&example), sections(&defaults));
        assert!(
            example.warnings().iter().any(|w| w.contains("placeholder")),
            "the example's first contact is flagged until it is set"
        );
        assert!(defaults.warnings().is_empty());
        for optional in [
            "# cron = ",
            "# retention = ",
            "# [[action]]",
            "# secret_env = ",
            "# max_age = ",
            "# token_env = ",
        ] {
            assert!(text.contains(optional), "{optional}");
        }
    }

    #[test]
    fn every_key_but_first_contact_has_a_default() {
        let c = parse(MINIMAL).unwrap();
        assert_eq!(c.node.name, "github_indexer");
        assert_eq!(
            c.node.data_dir,
            PathBuf::from("/var/lib/koi-github-indexer")
        );
        assert_eq!(c.node.key_password_env, "KOI_KEY_PASSWORD");
        assert_eq!(c.poll.interval, Duration::from_secs(5));
        assert_eq!(c.poll.timeout, Duration::from_secs(5));
        assert_eq!(c.poll.limit, 1000);
        assert_eq!(c.poll.max_response, 64 * 1024 * 1024);
        assert_eq!(c.pipeline.max_buffered, 10_000);
        assert_eq!(c.pipeline.dead_letters, 1000);
        assert_eq!(c.pipeline.shutdown_timeout, Duration::from_secs(10));
        assert_eq!(c.storage.cache, 64 * 1024 * 1024);
        let sized = parse(&format!("[storage]\ncache = \"16 MiB\"\n{MINIMAL}")).unwrap();
        assert_eq!(sized.storage.cache, 16 * 1024 * 1024);
        assert_eq!(c.api.listen.to_string(), "127.0.0.1:8004");
        assert_eq!(c.index.rid_types.len(), 2);
        assert_eq!(c.log.format, LogFormat::Text);
        assert!(c.warnings().is_empty(), "{:?}", c.warnings());
        let slow = parse(&format!("[poll]\ntimeout = \"30s\"\n{MINIMAL}")).unwrap();
        assert!(slow.warnings().iter().any(|w| w.contains("poll.timeout")));
    }

    #[test]
    fn relative_data_dir_is_relative_to_the_config_file() {
        let c = parse(&format!("[node]\ndata_dir = \"state\"\n{MINIMAL}")).unwrap();
        assert_eq!(c.node.data_dir, PathBuf::from("/etc/koi/state"));
    }

    #[test]
    fn errors_name_the_key_and_the_fix() {
        let cases = [
            (
                format!("[poll]\nintervall = \"5s\"\n{MINIMAL}"),
                "intervall",
            ),
            (
                format!("[poll]\ninterval = \"5 parsecs\"\n{MINIMAL}"),
                "not a duration",
            ),
            (
                format!("[poll]\ncron = \"every tuesday\"\n{MINIMAL}"),
                "poll.cron",
            ),
            (format!("[log]\nlevel = \"loud\"\n{MINIMAL}"), "log.level"),
            (
                format!("[storage]\ncache = \"lots\"\n{MINIMAL}"),
                "not a size",
            ),
            (
                format!("[poll]\nmax_response = 10\n{MINIMAL}"),
                "poll.max_response",
            ),
            (
                format!("[pipeline]\nmax_buffered = 0\n{MINIMAL}"),
                "pipeline.max_buffered",
            ),
            ("[node]\nname = \"x\"\n".to_owned(), "first_contact"),
            (MINIMAL.replace("http://", "ftp://"), "first_contact.url"),
            (MINIMAL.replace("+7538", "+zz38"), "first_contact.rid"),
            (
                format!("[index]\nretention = \"0s\"\n{MINIMAL}"),
                "index.retention",
            ),
            (
                format!("[api]\nlisten = \"localhost\"\n{MINIMAL}"),
                "listen",
            ),
        ];
        for (text, needle) in cases {
            let err = parse(&text).unwrap_err().to_string();
            assert!(err.contains(needle), "expected `{needle}` in: {err}");
            assert!(err.contains("/etc/koi/config.toml"), "{err}");
        }
    }

    const ACTION: &str = r#"
[[action]]
name = "deploy-bot"
url = "https://hooks.example.com/koi"
secret_env = "KOI_TEST_ACTION_SECRET_SURELY_UNSET"
repos = ["octo-org/hello-world", "rust-lang/*"]
event_types = ["push"]
"#;

    #[test]
    fn actions_parse_with_defaults_and_bad_ones_name_the_action_and_the_fix() {
        let c = parse(&format!("{MINIMAL}{ACTION}")).unwrap();
        let a = &c.actions[0];
        assert_eq!(a.name, "deploy-bot");
        assert_eq!(a.timeout, Duration::from_secs(10));
        assert_eq!(a.min_backoff, Duration::from_secs(1));
        assert_eq!(a.max_backoff, Duration::from_secs(60));
        assert_eq!(a.max_age, Duration::from_secs(24 * 3600));
        assert_eq!((a.keep_delivered, a.keep_failed), (1000, 1000));
        assert_eq!(a.filter().repos, ["octo-org/hello-world", "rust-lang/*"]);
        assert_eq!(c.index.history, 10);
        // PATH is always set: the password is found, and the action's secret is the one missing.
        let mut c = c;
        c.node.key_password_env = "PATH".into();
        let err = c.read_secrets().unwrap_err().to_string();
        assert!(
            err.contains("deploy-bot") && err.contains("KOI_TEST_ACTION_SECRET_SURELY_UNSET"),
            "{err}"
        );
        let cases = [
            (ACTION.replace("deploy-bot", "deploy bot"), "`name`"),
            (
                ACTION.replace("https://hooks.example.com/koi", "ftp://x"),
                "`url`",
            ),
            (
                ACTION.replace("KOI_TEST_ACTION_SECRET_SURELY_UNSET", "not a var"),
                "`secret_env`",
            ),
            (ACTION.replace("rust-lang/*", "rust lang"), "`repos`"),
            (ACTION.replace("[\"push\"]", "[\"\"]"), "`event_types`"),
            (format!("{ACTION}max_age = \"0s\"\n"), "`max_age`"),
            (format!("{ACTION}min_backoff = \"2m\"\n"), "`min_backoff`"),
            (format!("{ACTION}{ACTION}"), "named twice"),
            (format!("{ACTION}colour = \"red\"\n"), "colour"),
        ];
        for (action, needle) in cases {
            let err = parse(&format!("{MINIMAL}{action}"))
                .unwrap_err()
                .to_string();
            assert!(err.contains(needle), "expected `{needle}` in: {err}");
        }
        let err = parse(&format!("[index]\nhistory = 0\n{MINIMAL}"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("index.history"), "{err}");
    }

    #[test]
    fn cron_and_retention_parse() {
        let c = parse(&format!(
            "[poll]\ncron = \"*/5 * * * * *\"\n[index]\nretention = \"90d\"\n{MINIMAL}"
        ))
        .unwrap();
        assert_eq!(c.poll.cron.as_deref(), Some("*/5 * * * * *"));
        assert_eq!(c.index.retention, Some(Duration::from_secs(90 * 86400)));
    }

    #[test]
    fn missing_password_variable_names_the_variable() {
        let mut c = parse(MINIMAL).unwrap();
        c.node.key_password_env = "KOI_TEST_SURELY_UNSET_VAR".into();
        let err = c.read_secrets().unwrap_err().to_string();
        assert!(err.contains("KOI_TEST_SURELY_UNSET_VAR"), "{err}");
        c.node.key_password_env = "PATH".into();
        c.api.token_env = Some("KOI_TEST_SURELY_UNSET_TOKEN".into());
        let err = c.read_secrets().unwrap_err().to_string();
        assert!(
            err.contains("KOI_TEST_SURELY_UNSET_TOKEN") && err.contains("api.token_env"),
            "{err}"
        );
    }

    #[test]
    fn unusable_data_dir_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("not-a-dir");
        std::fs::write(&file, "x").unwrap();
        let mut c = parse(MINIMAL).unwrap();
        c.node.data_dir = file.join("sub");
        let err = c.prepare_data_dir().unwrap_err().to_string();
        assert!(err.contains("node.data_dir"), "{err}");
    }
}
