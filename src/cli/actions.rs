//! How `history`, `actions`, `deliveries` and `redeliver` print their answers.

use std::fmt::Write as _;

use super::{fit, short_time, WIDTH};
use crate::api::ActionSummary;
use crate::index::{Delivery, DeliveryState, EventVersion};

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
