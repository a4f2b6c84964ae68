//! `history`, `actions`, `deliveries` and `redeliver`: through the running daemon's API, or (but `redeliver`) from
//! the store.

use std::fmt::Write as _;

use anyhow::{anyhow, bail};
use percent_encoding::utf8_percent_encode;

use super::{fit, parse_event_rid, short_time, Method, Source, WIDTH};
use crate::api::ActionSummary;
use crate::index::{Delivery, DeliveryState, EventVersion};

impl Source {
    pub(super) async fn history(&self, rid: &str) -> anyhow::Result<Vec<EventVersion>> {
        let rid = parse_event_rid(rid)?;
        match self {
            Source::Api { client, base } => {
                let path = format!(
                    "/events/{}/history",
                    utf8_percent_encode(rid.as_str(), super::http::PATH_SEGMENT)
                );
                Source::get(client, base, &path).await
            }
            Source::Store { index, .. } => index
                .history(&rid)?
                .ok_or_else(|| anyhow!("event {rid} is not indexed")),
        }
    }

    pub(super) async fn actions(&self) -> anyhow::Result<Vec<ActionSummary>> {
        match self {
            Source::Api { client, base } => Source::get(client, base, "/actions").await,
            // Stopped: the actions the store has queued for (their URLs are in the config, not the store).
            Source::Store { index, .. } => index
                .deliveries()
                .action_names()?
                .into_iter()
                .map(|name| {
                    let counts = index.deliveries().counts(&name)?;
                    Ok(ActionSummary {
                        name,
                        url: String::new(),
                        queued: counts.queued,
                        delivered: counts.delivered,
                        failed: counts.failed,
                        last_error: counts.last_error,
                    })
                })
                .collect(),
        }
    }

    pub(super) async fn deliveries(
        &self,
        name: &str,
        limit: usize,
        offset: usize,
    ) -> anyhow::Result<Vec<Delivery>> {
        match self {
            Source::Api { client, base } => {
                let path = format!(
                    "/actions/{}/deliveries?limit={limit}&offset={offset}",
                    utf8_percent_encode(name, super::http::PATH_SEGMENT)
                );
                Source::get(client, base, &path).await
            }
            Source::Store { index, .. } => {
                if !index.deliveries().action_names()?.iter().any(|n| n == name) {
                    bail!("the store holds no deliveries of an action `{name}`");
                }
                Ok(index.deliveries().page(name, offset, limit)?)
            }
        }
    }

    pub(super) async fn redeliver(&self, name: &str, id: &str) -> anyhow::Result<Delivery> {
        match self {
            Source::Api { client, base } => {
                let path = format!(
                    "/actions/{}/deliveries/{}/redeliver",
                    utf8_percent_encode(name, super::http::PATH_SEGMENT),
                    utf8_percent_encode(id, super::http::PATH_SEGMENT)
                );
                Ok(
                    Source::call(client, base, &path, Method::Post(serde_json::json!({})))
                        .await?
                        .0,
                )
            }
            Source::Store { .. } => bail!("`redeliver` needs the running daemon"),
        }
    }
}

pub(super) fn history_text(versions: &Vec<EventVersion>) -> String {
    let mut out = format!(
        "{}  {}  {}\n",
        fit("VERSION TIME", 20),
        fit("RECEIVED", 20),
        "SHA-256"
    );
    for v in versions {
        let _ = writeln!(
            out,
            "{}  {}  {}",
            fit(&v.timestamp.to_rfc3339_utc(), 20),
            fit(v.received_at.as_deref().unwrap_or("-"), 20),
            v.sha256_hash.get(..16).unwrap_or(&v.sha256_hash)
        );
    }
    out
}

pub(super) fn actions_table(actions: &Vec<ActionSummary>) -> String {
    if actions.is_empty() {
        return "No actions. Add an [[action]] block to the config (see config.toml.example).\n"
            .into();
    }
    let mut out = format!(
        "{} {:>7} {:>10} {:>7}  {}\n",
        fit("ACTION", 16),
        "QUEUED",
        "DELIVERED",
        "FAILED",
        "URL / LAST ERROR"
    );
    for a in actions {
        let _ = writeln!(
            out,
            "{} {:>7} {:>10} {:>7}  {}",
            fit(&a.name, 16),
            a.queued,
            a.delivered,
            a.failed,
            fit(&a.url, WIDTH - 46).trim_end()
        );
        if let Some(error) = &a.last_error {
            let _ = writeln!(out, "{:>46}{}", "", fit(error, WIDTH - 46).trim_end());
        }
    }
    out
}

pub(super) fn deliveries_table(page: &Vec<Delivery>) -> String {
    if page.is_empty() {
        return "No deliveries.\n".into();
    }
    let mut out = format!(
        "{}  {}  {}  {}\n",
        fit("QUEUED (UTC)", 16),
        fit("DELIVERY ID", 36),
        fit("STATE", 9),
        "TRIES"
    );
    for d in page {
        let state = match d.state {
            DeliveryState::Queued => "queued",
            DeliveryState::Delivered => "delivered",
            DeliveryState::Failed => "failed",
        };
        let _ = writeln!(
            out,
            "{}  {}  {}  {}",
            fit(&short_time(&d.created_at), 16),
            fit(&d.id, 36),
            fit(state, 9),
            d.attempts
        );
        let _ = writeln!(out, "{:18}{}", "", fit(&d.event_rid, WIDTH - 18).trim_end());
        if let Some(error) = d
            .last_error
            .as_ref()
            .filter(|_| d.state != DeliveryState::Delivered)
        {
            let _ = writeln!(out, "{:18}{}", "", fit(error, WIDTH - 18).trim_end());
        }
    }
    out
}
