//! Outbound webhooks: each `[[action]]` POSTs the newly indexed events that match its filters to its URL, signed
//! as GitHub signs its own webhooks.
//!
//! The index queues a delivery in the transaction that indexes the event ([`crate::index::deliveries`]); this module
//! sends the queue. Each action has one task, so deliveries go out **one at a time, in queue order**: a delivery
//! being retried holds back the ones after it. An attempt is recorded only once it is over, so a delivery in flight
//! when the daemon is killed is sent again at the next start (at-least-once: receivers dedupe on
//! `X-Koi-Delivery`).
//!
//! What an answer means:
//! - 2xx: delivered.
//! - 4xx other than 408 and 429: the receiver refuses it; failed for good.
//! - anything else, a timeout or no connection: retried after `min_backoff`, doubling, with jitter, at most
//!   `max_backoff` apart, until `max_age` after it was queued; then failed. A `Retry-After` (in seconds) on a
//!   429 or 503 is honoured up to `max_backoff`.
//!
//! The request body is `{"action", "delivery", "event": row, "contents"}` (contents left out when not kept), with
//! `X-Koi-Event`, `X-Koi-Delivery`, `X-Koi-Signature-256: sha256=<hex HMAC-SHA256 of the body>` and
//! `User-Agent: koi-github-indexer/<version>`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use hmac::{Hmac, Mac};
use rand::Rng;
use sha2::Sha256;
use tokio_util::sync::CancellationToken;

use crate::config::ActionConfig;
use crate::index::deliveries::{parse_time, time_text};
use crate::index::{Attempt, AttemptOutcome, Delivery, Index, IndexError};
use crate::node::client::error_chain;
use crate::protocol::Rid;
use crate::telemetry::{ActionQueue, DeliveryAttempted, Metrics};

/// `User-Agent` of every delivery.
pub const USER_AGENT: &str = concat!("koi-github-indexer/", env!("CARGO_PKG_VERSION"));
/// How long an idle sender waits before looking at its queue again without being woken (a safety net).
const IDLE_RECHECK: Duration = Duration::from_secs(30);
/// Pause after the store failed, before trying again.
const STORE_RETRY: Duration = Duration::from_secs(5);
/// Longest error text kept from a receiver's answer.
const MAX_ERROR_BODY: usize = 200;

/// An action with its secret, ready to send.
#[derive(Debug, Clone)]
pub struct Action {
    /// From the config.
    pub config: ActionConfig,
    /// The HMAC key.
    secret: String,
}

impl Action {
    /// An action and the secret its `secret_env` holds.
    pub fn new(config: ActionConfig, secret: String) -> Action {
        Action { config, secret }
    }
}

/// `sha256=<hex HMAC-SHA256 of body>`: the `X-Koi-Signature-256` header, as GitHub's `X-Hub-Signature-256`.
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    // HMAC takes a key of any length: `new_from_slice` cannot fail for it.
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC accepts keys of any length"),
    };
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// `url` as `/actions`, delivery errors, logs and metrics show it: `scheme://host[:port]`, then `/…` when it has
/// anything more. User-info, the query and the path are never shown: receivers put secrets in all three (a
/// `?token=`, a Slack-style `/services/T000/B000/XXXX` path).
pub fn shown_url(url: &str) -> String {
    let Ok(parsed) = reqwest::Url::parse(url) else {
        return "(not a valid URL)".to_owned();
    };
    let mut shown = format!("{}://{}", parsed.scheme(), parsed.host_str().unwrap_or(""));
    if let Some(port) = parsed.port() {
        shown.push_str(&format!(":{port}"));
    }
    if parsed.path() != "/" || parsed.query().is_some() || parsed.fragment().is_some() {
        shown.push_str("/…");
    }
    shown
}

/// `text` (an error about a delivery to `url`) with every secret part of `url` taken out: the whole URL becomes
/// its [`shown_url`], and the user-info, path and query, wherever else they appear (a receiver may echo them),
/// become `…`.
pub fn redact_url(text: &str, url: &str) -> String {
    let mut text = text.replace(url, &shown_url(url));
    let Ok(parsed) = reqwest::Url::parse(url) else {
        return text;
    };
    let path = parsed.path();
    let secrets = [
        parsed.as_str().to_owned(),
        Some(parsed.username())
            .filter(|u| !u.is_empty())
            .map(str::to_owned)
            .unwrap_or_default(),
        parsed.password().unwrap_or_default().to_owned(),
        parsed.query().unwrap_or_default().to_owned(),
        if path.len() > 1 {
            path.to_owned()
        } else {
            String::new()
        },
    ];
    for secret in secrets.iter().filter(|s| s.len() >= 3) {
        text = text.replace(secret.as_str(), "…");
    }
    text
}

/// The delay before retry number `attempts` (1 for the first): `min` doubling per attempt, capped at `max`, then
/// a random point in its upper half (jitter, so that many deliveries failing together do not retry together).
pub fn backoff(attempts: u32, min: Duration, max: Duration) -> Duration {
    let doubled = min.saturating_mul(1u32 << attempts.saturating_sub(1).min(20));
    let capped = doubled.min(max);
    let half = capped / 2;
    half + capped
        .saturating_sub(half)
        .mul_f64(rand::thread_rng().gen_range(0.0..=1.0))
}

/// How an attempt went.
#[derive(Debug)]
enum Sent {
    /// 2xx.
    Delivered(u16),
    /// Refused for good (4xx other than 408/429), or the event is gone.
    Refused(Option<u16>, String),
    /// Worth another try; with the receiver's `Retry-After`, if any.
    Failed(Option<u16>, String, Option<Duration>),
}

/// Starts one sender task per action. They end when `shutdown` is cancelled; a delivery in flight then is left
/// queued (sent again at the next start).
pub fn spawn(
    index: &Index,
    actions: Vec<Action>,
    metrics: &Metrics,
    shutdown: &CancellationToken,
) -> anyhow::Result<Vec<tokio::task::JoinHandle<()>>> {
    let client = reqwest::Client::builder()
        .user_agent(USER_AGENT)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| anyhow::anyhow!("building the webhook HTTP client: {e}"))?;
    Ok(actions
        .into_iter()
        .map(|action| {
            let sender = ActionSender {
                action: Arc::new(action),
                index: index.clone(),
                client: client.clone(),
                metrics: metrics.clone(),
            };
            tokio::spawn(sender.run(shutdown.clone()))
        })
        .collect())
}

/// One action's sender.
struct ActionSender {
    action: Arc<Action>,
    index: Index,
    client: reqwest::Client,
    metrics: Metrics,
}

impl ActionSender {
    fn name(&self) -> &str {
        &self.action.config.name
    }

    /// Runs a store operation off the runtime.
    async fn store<T: Send + 'static>(
        &self,
        op: impl FnOnce(&Index, &str) -> Result<T, IndexError> + Send + 'static,
    ) -> Result<T, IndexError> {
        let index = self.index.clone();
        let name = self.name().to_owned();
        tokio::task::spawn_blocking(move || op(&index, &name))
            .await
            .unwrap_or_else(|e| {
                Err(IndexError::Corrupt {
                    tree: crate::index::deliveries::TREE,
                    key: String::new(),
                    problem: format!("the store task failed: {e}"),
                })
            })
    }

    async fn run(self, shutdown: CancellationToken) {
        let mut queued = self.index.queued_signal();
        loop {
            queued.borrow_and_update();
            match self
                .store(|index, name| index.deliveries().counts(name))
                .await
            {
                Ok(counts) => ActionQueue {
                    action: self.name(),
                    queued: counts.queued,
                }
                .emit(&self.metrics),
                Err(e) => {
                    tracing::error!(action = %self.name(), error = %e, "reading the action's counts")
                }
            }
            let next = self
                .store(|index, name| index.deliveries().next_pending(name))
                .await;
            let delivery = match next {
                Ok(Some(delivery)) => delivery,
                Ok(None) => {
                    tokio::select! {
                        _ = queued.changed() => {}
                        _ = tokio::time::sleep(IDLE_RECHECK) => {}
                        _ = shutdown.cancelled() => return,
                    }
                    continue;
                }
                Err(e) => {
                    tracing::error!(action = %self.name(), error = %e, "reading the delivery queue; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(STORE_RETRY) => {}
                        _ = shutdown.cancelled() => return,
                    }
                    continue;
                }
            };
            if let Some(due) = delivery.next_attempt_at.as_deref().and_then(parse_time) {
                if let Ok(wait) = (due - Utc::now()).to_std() {
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = shutdown.cancelled() => return,
                    }
                }
            }
            let attempt = tokio::select! {
                attempt = self.attempt(&delivery) => attempt,
                // Not recorded: the delivery stays queued and is sent again at the next start.
                _ = shutdown.cancelled() => return,
            };
            if let Err(e) = self.record(&delivery, attempt).await {
                tracing::error!(action = %self.name(), delivery = %delivery.id, error = %e,
                    "recording a delivery attempt; it will be sent again");
                tokio::select! {
                    _ = tokio::time::sleep(STORE_RETRY) => {}
                    _ = shutdown.cancelled() => return,
                }
            }
        }
    }

    /// Sends `delivery` once. Returns when it started, how long it took, and how it went.
    async fn attempt(&self, delivery: &Delivery) -> (chrono::DateTime<Utc>, Duration, Sent) {
        let started = Utc::now();
        let clock = Instant::now();
        let sent = self.send(delivery).await;
        (started, clock.elapsed(), sent)
    }

    async fn send(&self, delivery: &Delivery) -> Sent {
        let rid = match Rid::parse(&delivery.event_rid) {
            Ok(rid) => rid,
            Err(e) => return Sent::Refused(None, format!("the queued event RID is invalid: {e}")),
        };
        let details = match self.store(move |index, _| index.event(&rid)).await {
            Ok(Some(details)) => details,
            Ok(None) => {
                return Sent::Refused(
                    None,
                    "the event is no longer indexed (forgotten, or pruned by retention) and cannot be sent".into(),
                )
            }
            Err(e) => return Sent::Failed(None, format!("reading the event: {e}"), None),
        };
        let mut body = serde_json::json!({
            "action": self.name(),
            "delivery": delivery.id,
            "event": details.row,
        });
        if let Some(contents) = &details.bundle.contents {
            body["contents"] = serde_json::to_value(contents).unwrap_or(serde_json::Value::Null);
        }
        let body = match serde_json::to_vec(&body) {
            Ok(body) => body,
            Err(e) => return Sent::Refused(None, format!("encoding the body: {e}")),
        };
        let mut request = self
            .client
            .post(&self.action.config.url)
            .timeout(self.action.config.timeout)
            .header("content-type", "application/json")
            // An event type is text from the network: one that is not a valid header value is sent as `unknown`
            // (the body has it as it is) rather than failing the request.
            .header(
                "x-koi-event",
                reqwest::header::HeaderValue::from_str(&details.row.event_type)
                    .unwrap_or_else(|_| reqwest::header::HeaderValue::from_static("unknown")),
            )
            .header("x-koi-delivery", &delivery.id)
            .header(
                "x-koi-signature-256",
                signature(self.action.secret.as_bytes(), &body),
            );
        if let Some(original) = &delivery.redelivery_of {
            request = request.header("x-koi-redelivery-of", original);
        }
        let response = match request.body(body).send().await {
            Ok(response) => response,
            // The request could not even be built: retrying cannot help.
            Err(e) if e.is_builder() => return Sent::Refused(None, error_chain(&e.without_url())),
            Err(e) => {
                // reqwest puts the whole URL in its errors' text; the URL may hold secrets.
                let e = e.without_url();
                let what = if e.is_timeout() {
                    format!(
                        "no answer within the timeout ({})",
                        humantime::format_duration(self.action.config.timeout)
                    )
                } else if e.is_connect() {
                    format!("cannot connect: {}", error_chain(&e))
                } else {
                    error_chain(&e)
                };
                return Sent::Failed(None, what, None);
            }
        };
        let status = response.status();
        let code = status.as_u16();
        if status.is_success() {
            return Sent::Delivered(code);
        }
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let text = match tokio::time::timeout(self.action.config.timeout, response.text()).await {
            Ok(Ok(text)) => text,
            _ => String::new(),
        };
        let mut error = format!("HTTP {status}");
        let text = text.trim();
        if !text.is_empty() {
            let cut: String = text.chars().take(MAX_ERROR_BODY).collect();
            error = format!("{error}: {cut}");
        }
        if status.is_client_error() && code != 408 && code != 429 {
            Sent::Refused(Some(code), error)
        } else {
            Sent::Failed(Some(code), error, retry_after)
        }
    }

    /// Records an attempt: delivered, given up, or due again after the backoff.
    async fn record(
        &self,
        delivery: &Delivery,
        (started, took, sent): (chrono::DateTime<Utc>, Duration, Sent),
    ) -> Result<(), IndexError> {
        let config = &self.action.config;
        // Errors quote the URL (a connection error names it, a receiver may echo it): never with its secrets.
        let sent = match sent {
            Sent::Refused(code, error) => Sent::Refused(code, redact_url(&error, &config.url)),
            Sent::Failed(code, error, retry_after) => {
                Sent::Failed(code, redact_url(&error, &config.url), retry_after)
            }
            delivered => delivered,
        };
        let (status, error, outcome, label) = match sent {
            Sent::Delivered(code) => (Some(code), None, AttemptOutcome::Delivered, "delivered"),
            Sent::Refused(code, error) => (code, Some(error), AttemptOutcome::GiveUp, "failed"),
            Sent::Failed(code, error, retry_after) => {
                let wait = backoff(
                    delivery.attempts + 1,
                    config.min_backoff,
                    config.max_backoff,
                )
                .max(retry_after.unwrap_or_default().min(config.max_backoff));
                let due = Utc::now() + chrono::Duration::from_std(wait).unwrap_or_default();
                let created = parse_time(&delivery.created_at).unwrap_or(started);
                let age_limit =
                    chrono::Duration::from_std(config.max_age).unwrap_or(chrono::Duration::MAX);
                if due - created > age_limit {
                    let error = format!(
                        "{error}; given up: not delivered within max_age ({}) after {} attempts",
                        humantime::format_duration(config.max_age),
                        delivery.attempts + 1
                    );
                    (code, Some(error), AttemptOutcome::GiveUp, "failed")
                } else {
                    (code, Some(error), AttemptOutcome::RetryAt(due), "retry")
                }
            }
        };
        let attempt = Attempt {
            at: time_text(started),
            duration_ms: u64::try_from(took.as_millis()).unwrap_or(u64::MAX),
            status,
            error: error.clone(),
        };
        let number = delivery.number;
        let keep = (config.keep_delivered, config.keep_failed);
        let queued = self
            .store(move |index, name| {
                index
                    .deliveries()
                    .record_attempt(name, number, attempt, &outcome, keep)?;
                Ok(index.deliveries().counts(name)?.queued)
            })
            .await?;
        DeliveryAttempted {
            action: self.name(),
            delivery: &delivery.id,
            event_rid: &delivery.event_rid,
            outcome: label,
            status,
            error: error.as_deref(),
            duration: took,
            queued,
        }
        .emit(&self.metrics);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example from GitHub's "Validating webhook deliveries" page: secret "It's a Secret to Everybody",
    /// payload "Hello, World!".
    #[test]
    fn the_signature_is_githubs() {
        assert_eq!(
            signature(b"It's a Secret to Everybody", b"Hello, World!"),
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
        );
    }

    #[test]
    fn an_action_url_is_shown_without_its_secrets() {
        assert_eq!(
            shown_url("https://bot:s3cret@hooks.example.com/koi?token=t0k3n"),
            "https://hooks.example.com/…"
        );
        assert_eq!(
            shown_url("https://hooks.slack.com/services/T000/B000/XXXXSECRET"),
            "https://hooks.slack.com/…"
        );
        assert_eq!(shown_url("http://127.0.0.1:9/hook"), "http://127.0.0.1:9/…");
        assert_eq!(shown_url("http://[::1]:9"), "http://[::1]:9");
        assert_eq!(
            shown_url("https://example.com/?a=b"),
            "https://example.com/…"
        );
        assert_eq!(shown_url("not a url"), "(not a valid URL)");
        let url = "http://bot:pa55word@127.0.0.1:9/secret-path?token=t0k3n";
        let text = format!(
            "error sending request for url ({url}): HTTP 404: no route /secret-path?token=t0k3n for user bot:pa55word"
        );
        let redacted = redact_url(&text, url);
        for secret in ["pa55word", "secret-path", "t0k3n", "bot:"] {
            assert!(!redacted.contains(secret), "{secret} in {redacted}");
        }
        assert!(redacted.contains("http://127.0.0.1:9/…"), "{redacted}");
    }

    #[test]
    fn backoff_doubles_with_jitter_and_is_capped() {
        let (min, max) = (Duration::from_secs(1), Duration::from_secs(60));
        for _ in 0..100 {
            let first = backoff(1, min, max);
            assert!(first >= min / 2 && first <= min, "{first:?}");
            let fourth = backoff(4, min, max);
            assert!(fourth >= Duration::from_secs(4) && fourth <= Duration::from_secs(8));
            let late = backoff(40, min, max);
            assert!(late >= max / 2 && late <= max, "{late:?}");
        }
    }
}
