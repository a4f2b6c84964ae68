//! `tail`: follows the live stream (Server-Sent Events), reconnecting after the last event seen.

use super::*;

/// What `tail` asks the stream for.
pub(super) struct TailFilter {
    pub(super) repos: Vec<String>,
    pub(super) event_types: Vec<String>,
    pub(super) actor: Option<String>,
}

/// Follows `GET /stream` (Server-Sent Events), printing each event as it is indexed. When the stream ends (the
/// daemon restarted, or this terminal fell behind) it reconnects after the last event seen, so nothing is
/// skipped or printed twice.
pub(super) async fn follow(
    api: &Endpoint,
    filter: &TailFilter,
    mut after: Option<u64>,
    output: Output,
) -> anyhow::Result<()> {
    let client = api.client(None)?;
    let mut query: Vec<(&str, String)> = Vec::new();
    for repo in &filter.repos {
        query.push(("repo", repo.clone()));
    }
    for kind in &filter.event_types {
        query.push(("event_type", kind.clone()));
    }
    if let Some(actor) = &filter.actor {
        query.push(("actor", actor.clone()));
    }
    let url = api.url("/stream");
    let mut connected_once = false;
    loop {
        let mut request = client.get(&url).query(&query);
        if let Some(after) = after {
            request = request.query(&[("after", after)]);
        }
        let response = match request.send().await {
            Ok(response) => response,
            Err(e) if connected_once && (e.is_connect() || e.is_timeout()) => {
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
            Err(e) => {
                return Err(anyhow!(
                    "cannot follow the live stream at {url}: {}. `tail` needs the running daemon (check --api or \
                     `api.listen`)",
                    error_chain(&e)
                ))
            }
        };
        if !response.status().is_success() {
            let status = response.status();
            let body = response.text().await.unwrap_or_default();
            let message = serde_json::from_str::<Value>(&body)
                .ok()
                .and_then(|v| v.get("error").and_then(Value::as_str).map(str::to_owned))
                .unwrap_or(body);
            bail!("{message} (HTTP {status} from {url})");
        }
        if !connected_once && output.verbose {
            eprintln!("following {url}");
        }
        connected_once = true;
        let mut response = response;
        let mut buffer = String::new();
        while let Ok(Some(chunk)) = response.chunk().await {
            buffer.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = buffer.find("\n\n") {
                let block: String = buffer.drain(..end + 2).collect();
                let (mut id, mut event, mut data) = (None, "message", String::new());
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("id:") {
                        id = v.trim().parse::<u64>().ok();
                    } else if let Some(v) = line.strip_prefix("event:") {
                        event = if v.trim() == "lagged" {
                            "lagged"
                        } else {
                            "github_event"
                        };
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim_start());
                    }
                }
                if event == "github_event" && !data.is_empty() {
                    if let Some(id) = id {
                        after = Some(id);
                    }
                    let line = if output.json {
                        data + "\n"
                    } else {
                        serde_json::from_str::<Value>(&data)
                            .map(|row| tail_line(&row))
                            .unwrap_or_default()
                    };
                    let mut stdout = std::io::stdout().lock();
                    if let Err(e) = stdout
                        .write_all(line.as_bytes())
                        .and_then(|()| stdout.flush())
                    {
                        if e.kind() == std::io::ErrorKind::BrokenPipe {
                            return Ok(());
                        }
                        return Err(e).context("writing to stdout");
                    }
                }
            }
        }
        // The stream ended: reconnect after the last event seen.
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// One event as `tail` prints it: time, repository, type, actor, summary.
pub(super) fn tail_line(row: &Value) -> String {
    let text = |key: &str| row.get(key).and_then(Value::as_str).unwrap_or("-");
    // 16 + 2 + 20 + 2 + 12 + 2 + 25 = 79 columns: the summary names the actor.
    format!(
        "{}  {}  {}  {}\n",
        short_time(text("timestamp")),
        fit(text("repo"), 20),
        fit(text("event_type"), 12),
        fit_summary(text("summary"), 25).trim_end()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tail_line_fits_80_columns() {
        let row = serde_json::json!({
            "timestamp": "2026-11-20T14:15:02Z",
            "repo": "a-long-organisation-name/a-long-repository-name",
            "event_type": "pull_request_review_comment",
            "actor": "someone-with-a-long-login",
            "summary": "x ".repeat(100),
        });
        let line = tail_line(&row);
        assert!(line.trim_end().chars().count() <= 80, "{line}");
    }
}
