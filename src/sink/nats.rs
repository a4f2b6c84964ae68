//! The NATS side of the sink: connecting with the configured credentials, and making sure the stream exists and
//! captures the sink's subjects.

use std::time::Duration;

use async_nats::jetstream::{self, stream};

use super::SinkError;
use crate::config::NatsSinkConfig;

/// How long connecting may take before the attempt counts as failed (the client keeps trying behind it).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a request to the JetStream API, or a publish's acknowledgement, may take.
pub(super) const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// A client for `config.servers`, with its credentials (`token`: the value `token_env` names).
pub(super) async fn connect(
    config: &NatsSinkConfig,
    token: Option<&str>,
    node_name: &str,
) -> Result<async_nats::Client, SinkError> {
    let mut options = async_nats::ConnectOptions::new()
        .name(format!("koi-github-indexer {node_name}"))
        .connection_timeout(CONNECT_TIMEOUT)
        // Once connected, the client reconnects by itself, forever; publishes fail meanwhile and are retried
        // from the cursor.
        .max_reconnects(None);
    if let Some(path) = &config.creds_file {
        options = options.credentials_file(path).await.map_err(|e| {
            SinkError::Config(format!("sink.nats.creds_file {}: {e}", path.display()))
        })?;
    }
    if let Some(token) = token {
        options = options.token(token.to_owned());
    }
    if let Some(path) = &config.nkey_seed_file {
        let seed = std::fs::read_to_string(path).map_err(|e| {
            SinkError::Config(format!("sink.nats.nkey_seed_file {}: {e}", path.display()))
        })?;
        options = options.nkey(seed.trim().to_owned());
    }
    if let Some(ca) = &config.tls_ca {
        options = options.add_root_certificates(ca.clone()).require_tls(true);
    }
    options
        .connect(config.servers.as_slice())
        .await
        .map_err(|e| SinkError::Connect(e.to_string()))
}

/// The JetStream context the sink publishes through.
pub(super) fn context(client: async_nats::Client) -> jetstream::Context {
    jetstream::ContextBuilder::new()
        .timeout(REQUEST_TIMEOUT)
        .build(client)
}

/// `<prefix>.>`: every subject the sink publishes on.
pub(super) fn subjects(config: &NatsSinkConfig) -> String {
    format!("{}.>", config.subject_prefix)
}

/// Whether a stream subject filter captures every subject under `<prefix>.>`.
fn captures(filter: &str, prefix: &str) -> bool {
    if filter == ">" {
        return true;
    }
    let wanted: Vec<&str> = prefix.split('.').collect();
    let tokens: Vec<&str> = filter.split('.').collect();
    for (i, token) in tokens.iter().enumerate() {
        if *token == ">" {
            return true;
        }
        match wanted.get(i) {
            Some(w) if *token == "*" || token == w => continue,
            _ => return false,
        }
    }
    false
}

/// Creates the stream when it is missing; checks an existing one. A stream that does not capture the sink's
/// subjects is an error that names what differs; a shorter duplicate window is a warning (replays after a long
/// outage may then be stored twice).
pub(super) async fn ensure_stream(
    js: &jetstream::Context,
    config: &NatsSinkConfig,
) -> Result<(), SinkError> {
    match js.get_stream(&config.stream).await {
        Ok(mut existing) => {
            let info = existing
                .info()
                .await
                .map_err(|e| SinkError::Stream(format!("reading stream {}: {e}", config.stream)))?;
            let held = &info.config;
            if !held
                .subjects
                .iter()
                .any(|f| captures(f, &config.subject_prefix))
            {
                return Err(SinkError::Stream(format!(
                    "stream {} captures {:?}, not {}: add that subject to the stream, or set sink.nats.stream or \
                     sink.nats.subject_prefix to match it",
                    config.stream,
                    held.subjects,
                    subjects(config)
                )));
            }
            if held.duplicate_window < config.duplicate_window {
                tracing::warn!(
                    target: "koi_github_indexer::sink",
                    stream = %config.stream,
                    "the stream's duplicate window is {}, shorter than sink.nats.duplicate_window ({}): a replay \
                     after an outage longer than it may store messages twice",
                    humantime::format_duration(held.duplicate_window),
                    humantime::format_duration(config.duplicate_window)
                );
            }
            Ok(())
        }
        Err(e)
            if matches!(e.kind(), jetstream::context::GetStreamErrorKind::JetStream(j)
            if j.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND) =>
        {
            js.create_stream(stream::Config {
                name: config.stream.clone(),
                subjects: vec![subjects(config)],
                num_replicas: config.replicas,
                max_age: config.max_age.unwrap_or_default(),
                duplicate_window: config.duplicate_window,
                ..Default::default()
            })
            .await
            .map_err(|e| {
                SinkError::Stream(format!(
                    "creating stream {} ({} replicas): {e}",
                    config.stream, config.replicas
                ))
            })?;
            tracing::info!(
                target: "koi_github_indexer::sink",
                stream = %config.stream, subjects = %subjects(config), replicas = config.replicas,
                "created the JetStream stream"
            );
            Ok(())
        }
        Err(e) => Err(SinkError::Stream(format!(
            "looking up stream {}: {e}",
            config.stream
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::captures;

    #[test]
    fn subject_filters_that_capture_the_prefix() {
        assert!(captures("github.>", "github"));
        assert!(captures(">", "github"));
        assert!(captures("*.>", "github"));
        assert!(captures("a.*.>", "a.b"));
        assert!(!captures("github.*", "github"));
        assert!(!captures("github.octo.>", "github"));
        assert!(!captures("gitlab.>", "github"));
    }
}
