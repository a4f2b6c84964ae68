//! Values that parse but make no sense: each section's rules, in file order. The first problem found is the error,
//! naming the key once and saying what to write instead.

use std::time::Duration;

use super::{ActionConfig, Config, ConfigError};
use crate::protocol::NodeRid;

/// A problem: the dotted key, and what is wrong with it and how to fix it.
type Problem = (&'static str, String);

impl Config {
    /// Checks every section; the first problem is the error.
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let problem = node(self)
            .or_else(|| first_contact(self))
            .or_else(|| poll(self))
            .or_else(|| pipeline(self))
            .or_else(|| api(self))
            .or_else(|| storage(self))
            .or_else(|| index(self))
            .or_else(|| log(self))
            .or_else(|| actions(self))
            .or_else(|| sink(self));
        match problem {
            Some((key, problem)) => Err(self.invalid(key, problem)),
            None => Ok(()),
        }
    }
}

fn positive(key: &'static str, value: Duration) -> Option<Problem> {
    value
        .is_zero()
        .then(|| (key, "must be greater than zero".to_owned()))
}

fn at_least_one(key: &'static str, value: u64) -> Option<Problem> {
    (value == 0).then(|| (key, "must be at least 1".to_owned()))
}

fn node(c: &Config) -> Option<Problem> {
    let name = &c.node.name;
    if name.is_empty()
        || !name
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || "-_.".contains(ch))
    {
        return Some((
            "node.name",
            format!("`{name}` must be non-empty letters, digits, `-`, `_` or `.`"),
        ));
    }
    c.node.key_password_env.is_empty().then(|| {
        (
            "node.key_password_env",
            "must name an environment variable".to_owned(),
        )
    })
}

fn first_contact(c: &Config) -> Option<Problem> {
    let url = &c.first_contact.url;
    if !(url.starts_with("http://") || url.starts_with("https://"))
        || reqwest::Url::parse(url).is_err()
    {
        return Some((
            "first_contact.url",
            format!("`{url}` is not an http(s) URL; write e.g. \"http://127.0.0.1:8080/koi-net\""),
        ));
    }
    NodeRid::from_rid(&c.first_contact.rid).err().map(|e| {
        (
            "first_contact.rid",
            format!("{e}; copy the coordinator's RID from its logs or /status"),
        )
    })
}

fn poll(c: &Config) -> Option<Problem> {
    let p = &c.poll;
    positive("poll.interval", p.interval)
        .or_else(|| positive("poll.timeout", p.timeout))
        .or_else(|| positive("poll.catch_up_timeout", p.catch_up_timeout))
        .or_else(|| at_least_one("poll.fetch_batch", p.fetch_batch as u64))
        .or_else(|| {
            (p.max_response < 64 * 1024).then(|| {
                (
                    "poll.max_response",
                    "must be at least 64 KiB (one node profile response); the default is \"64 MiB\""
                        .to_owned(),
                )
            })
        })
        .or_else(|| {
            let cron = p.cron.as_deref()?;
            check_cron(cron).err().map(|e| ("poll.cron", e))
        })
}

fn pipeline(c: &Config) -> Option<Problem> {
    let p = &c.pipeline;
    at_least_one("pipeline.max_buffered", p.max_buffered as u64)
        .or_else(|| at_least_one("pipeline.dead_letters", p.dead_letters))
        .or_else(|| positive("pipeline.shutdown_timeout", p.shutdown_timeout))
}

fn api(c: &Config) -> Option<Problem> {
    let a = &c.api;
    positive("api.header_timeout", a.header_timeout)
        .or_else(|| positive("api.idle_timeout", a.idle_timeout))
        .or_else(|| at_least_one("api.max_connections", a.max_connections as u64))
        .or_else(|| {
            a.allowed_hosts.iter().find_map(|host| {
                crate::api::guard::check_allowed_host(host)
                    .err()
                    .map(|problem| ("api.allowed_hosts", problem))
            })
        })
        .or_else(|| {
            let var = a.token_env.as_deref()?;
            (var.is_empty() || var.contains('=') || var.contains('\0')).then(|| {
                (
                    "api.token_env",
                    "must name an environment variable, e.g. \"KOI_API_TOKEN\"".to_owned(),
                )
            })
        })
}

fn storage(c: &Config) -> Option<Problem> {
    (c.storage.cache < 1024 * 1024).then(|| {
        (
            "storage.cache",
            "must be at least 1 MiB; the default is \"64 MiB\"".to_owned(),
        )
    })
}

fn index(c: &Config) -> Option<Problem> {
    let i = &c.index;
    if i.rid_types.is_empty() {
        return Some((
            "index.rid_types",
            "is empty: list at least \"orn:github.event\"".to_owned(),
        ));
    }
    if i.retention.is_some_and(|r| r.is_zero()) {
        return Some((
            "index.retention",
            "must be greater than zero; remove the key to keep everything".to_owned(),
        ));
    }
    if let Some(bad) = i.repos.iter().find(|repo| !repo_pattern_ok(repo)) {
        return Some((
            "index.repos",
            format!("entry `{bad}` is not `owner/name` or `owner/*` as GitHub spells them"),
        ));
    }
    (i.history == 0).then(|| {
        (
            "index.history",
            "must be at least 1 (the current version); the default is 10".to_owned(),
        )
    })
}

fn log(c: &Config) -> Option<Problem> {
    // The error names the key itself; say the problem once, after the key the config error puts first.
    crate::telemetry::logging::filter_directives(&c.log.level, None)
        .err()
        .map(|_| {
            (
                "log.level",
                format!(
                    "`{}` is not a level: use one of off, error, warn, info, debug, trace (or a RUST_LOG-style \
                     directive list such as \"info,koi_github_indexer=debug\")",
                    c.log.level
                ),
            )
        })
}

fn actions(c: &Config) -> Option<Problem> {
    let mut names = std::collections::HashSet::new();
    for action in &c.actions {
        if let Err(problem) = check_action(action) {
            return Some(("action", format!("`{}`: {problem}", action.name)));
        }
        if !names.insert(action.name.as_str()) {
            return Some((
                "action",
                format!(
                    "`{}` is named twice: each action needs its own name",
                    action.name
                ),
            ));
        }
    }
    None
}

/// What is wrong with an `[[action]]` block, phrased with the fix.
pub(super) fn check_action(action: &ActionConfig) -> Result<(), String> {
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
    if let Some(repo) = action.repos.iter().find(|repo| !repo_pattern_ok(repo)) {
        return Err(format!(
            "`repos` entry `{repo}` is not `owner/name` or `owner/*` as GitHub spells them"
        ));
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

/// An `owner/name` or `owner/*` GitHub could have.
fn repo_pattern_ok(repo: &str) -> bool {
    let full_name = repo
        .strip_suffix("/*")
        .map_or(repo.to_owned(), |owner| format!("{owner}/x"));
    crate::index::check_github_name(repo, &full_name).is_ok()
}

/// A NATS subject token or stream name: no whitespace, `.`, `*`, `>` (nor `/` and `\\` in a stream name).
fn nats_name_ok(name: &str, extra: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && !name
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || "*>".contains(c) || extra.contains(c))
}

fn sink(c: &Config) -> Option<Problem> {
    let n = c.sink.nats.as_ref()?;
    if n.servers.is_empty() {
        return Some((
            "sink.nats.servers",
            "is empty: list the cluster's servers, e.g. [\"nats://127.0.0.1:4222\"]".to_owned(),
        ));
    }
    if let Some(bad) = n
        .servers
        .iter()
        .find(|s| s.parse::<async_nats::ServerAddr>().is_err())
    {
        return Some((
            "sink.nats.servers",
            format!("entry `{bad}` is not a NATS server URL (nats://host:port, tls://host:port)"),
        ));
    }
    if !nats_name_ok(&n.stream, "./\\") {
        return Some((
            "sink.nats.stream",
            format!(
                "`{}` is not a stream name: no spaces, `.`, `*`, `>`, `/` or `\\`",
                n.stream
            ),
        ));
    }
    if !n
        .subject_prefix
        .split('.')
        .all(|token| nats_name_ok(token, ""))
    {
        return Some((
            "sink.nats.subject_prefix",
            format!(
                "`{}` is not a subject prefix: dot-separated tokens without spaces, `*` or `>`",
                n.subject_prefix
            ),
        ));
    }
    let credentials = [
        n.creds_file.is_some(),
        n.token_env.is_some(),
        n.nkey_seed_file.is_some(),
    ];
    if credentials.iter().filter(|set| **set).count() > 1 {
        return Some((
            "sink.nats",
            "sets more than one of `creds_file`, `token_env` and `nkey_seed_file`: choose one"
                .to_owned(),
        ));
    }
    if !(1..=5).contains(&n.replicas) {
        return Some((
            "sink.nats.replicas",
            format!(
                "is {}: JetStream keeps 1 to 5 copies (3 is usual)",
                n.replicas
            ),
        ));
    }
    if n.max_age.is_some_and(|a| a.is_zero()) {
        return Some((
            "sink.nats.max_age",
            "must be greater than zero; remove the key to keep messages by the stream's other limits".to_owned(),
        ));
    }
    positive("sink.nats.duplicate_window", n.duplicate_window)
        .or_else(|| at_least_one("sink.nats.max_in_flight", n.max_in_flight as u64))
}
