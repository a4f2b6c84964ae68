//! The daemon's TOML configuration: loading it, the secrets it names, and the data directory. The parts:
//!
//! * `sections` — every key as TOML gives it, with its default (written once); `config.toml.example` and
//!   `docs/configuration.md` document the same keys (a unit test keeps the example equal to the defaults);
//! * `units` — sizes and durations as a value may be written;
//! * `validate` — values that parse but make no sense, with errors that name the key and the fix;
//! * `settings` — the store, index and node settings derived from it, for the daemon and the CLI alike.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The key password `systemd/env.example` ships with: refused by `run` and `check-config`.
pub const EXAMPLE_PASSWORD: &str = "change-me";

mod sections;
mod settings;
mod units;
mod validate;

#[cfg(test)]
mod tests;

pub use sections::*;

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
    /// `sink.nats.token_env` is set, but neither its variable nor its credential file holds a token.
    #[error(
        "the NATS token variable `{var}` (set by `sink.nats.token_env`) is not set or empty: export it, put `{var}=…` \
         in the service's EnvironmentFile, or pass it with LoadCredential={var}:FILE"
    )]
    MissingNatsToken {
        /// The variable's name.
        var: String,
    },
    /// A secret's variable or credential file could not be read.
    #[error(transparent)]
    Secret(#[from] crate::secrets::SecretError),
    /// The key password is the one `systemd/env.example` ships with.
    #[error(
        "the key password in `{var}` is `change-me`, the example's: choose a password of your own (it encrypts the \
         node key; an existing key keeps the password it was made with)"
    )]
    ExamplePassword {
        /// The variable's name.
        var: String,
    },
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
    /// Where indexed events are published beside the index (`[sink.nats]`).
    #[serde(default)]
    pub sink: SinkConfig,
    /// Outbound webhooks on new events, one `[[action]]` block each.
    #[serde(default, rename = "action")]
    pub actions: Vec<ActionConfig>,
    /// The file this was loaded from (relative paths inside it are relative to its directory).
    #[serde(skip)]
    pub source: PathBuf,
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
    /// The NATS token (`sink.nats.token_env`), if one is configured.
    pub nats_token: Option<String>,
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
            message: with_suggestion(e.to_string().trim_end()).replace('\n', "\n  "),
        })?;
        config.source = path.to_owned();
        let base = path.parent().unwrap_or_else(|| Path::new("."));
        if config.node.data_dir.is_relative() {
            config.node.data_dir = base.join(&config.node.data_dir);
        }
        if let Some(nats) = &mut config.sink.nats {
            for path in [
                &mut nats.creds_file,
                &mut nats.nkey_seed_file,
                &mut nats.tls_ca,
            ]
            .into_iter()
            .flatten()
            {
                if path.is_relative() {
                    *path = base.join(&*path);
                }
            }
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

    /// What `run` and `check-config` refuse although it parses: the placeholder first contact of
    /// `config.toml.example` (every request would be refused) and its example key password.
    pub fn refuse_placeholders(&self, secrets: &Secrets) -> Result<(), ConfigError> {
        if self.first_contact.rid.as_str().ends_with(&"0".repeat(64)) {
            return Err(self.invalid(
                "first_contact.rid",
                "is the placeholder from config.toml.example: set it to your coordinator's node RID (koi-net keeps \
                 it in its config.yaml as koi_net.node_rid)",
            ));
        }
        if secrets.key_password == EXAMPLE_PASSWORD {
            return Err(ConfigError::ExamplePassword {
                var: self.node.key_password_env.clone(),
            });
        }
        Ok(())
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
                .chain(self.api.token_env.iter())
                .chain(self.sink.nats.iter().flat_map(|n| n.token_env.iter()));
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
        let nats_token = match self.sink.nats.as_ref().and_then(|n| n.token_env.as_ref()) {
            None => None,
            Some(var) => Some(
                read_secret(var)?
                    .ok_or_else(|| ConfigError::MissingNatsToken { var: var.clone() })?,
            ),
        };
        Ok(Secrets {
            key_password,
            action_secrets,
            api_token,
            nats_token,
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

/// toml's "… unknown field `intervall`, expected one of `interval`, `cron`, …" with the closest known key added:
/// "(did you mean `interval`?)".
fn with_suggestion(message: &str) -> String {
    let Some(rest) = message.split("unknown field `").nth(1) else {
        return message.to_owned();
    };
    let Some((unknown, rest)) = rest.split_once('`') else {
        return message.to_owned();
    };
    let known = rest
        .split("expected one of ")
        .nth(1)
        .or_else(|| rest.split("expected ").nth(1))
        .unwrap_or_default();
    let closest = known
        .split('`')
        .skip(1)
        .step_by(2)
        .map(|name| (edit_distance(unknown, name), name))
        .min();
    match closest {
        Some((distance, name)) if distance <= (unknown.len() / 3).max(2) => {
            format!("{message} (did you mean `{name}`?)")
        }
        _ => message.to_owned(),
    }
}

/// Levenshtein distance, for "did you mean".
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut previous = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous + usize::from(ca != *cb);
            previous = row[j + 1];
            row[j + 1] = substitution.min(row[j] + 1).min(row[j + 1] + 1);
        }
    }
    row[b.len()]
}
