//! The trust boundary in a real browser (Debian's headless Chromium), against the real binary indexing from the
//! real koi-net 2.1.2 coordinator and sensor (issue 24):
//! - a page on another origin cannot read the live stream (WebSocket or SSE) nor trigger a redelivery, by any of
//!   the means a page has (a simple `no-cors` POST, a JSON POST, a form);
//! - a page whose domain was rebound to 127.0.0.1 reads nothing, even with the token;
//! - the dashboard still works with a token set: it asks for it, or takes it from the link's fragment, and its
//!   live feed reads the stream with the token.

#[path = "support/chromium.rs"]
mod chromium;
mod support;

use std::time::Duration;

use serde_json::Value;

use chromium::Browser;
use support::pynet::{fixture_items, push_items, Daemon, PyNode};
use support::receiver::Receiver;

const TOKEN: &str = "browser-token-7c1d";
const SECRET_ENV: &str = "KOI_TEST_BROWSER_ACTION_SECRET";

/// A web server on another port of 127.0.0.1 (so another origin) that answers every request with an empty page.
fn attacker_site() -> u16 {
    support::stub_server(|_| {
        let body = "<!doctype html><title>another site</title><p>another site</p>";
        format!(
            "HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        )
    })
}

/// Deliveries of all states of every action, from `/actions`.
fn delivery_count(daemon: &Daemon) -> u64 {
    daemon
        .get("/api/processor/github/actions")
        .and_then(|list| list.as_array().cloned())
        .unwrap_or_default()
        .iter()
        .map(|a| {
            ["queued", "delivered", "failed"]
                .iter()
                .map(|k| a[*k].as_u64().unwrap_or(0))
                .sum::<u64>()
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_origins_cannot_read_the_stream_or_redeliver_and_the_dashboard_works_with_a_token() {
    std::env::set_var(SECRET_ENV, "browser-test-secret");
    let root = tempfile::tempdir().unwrap();
    let coordinator = PyNode::coordinator(root.path());
    let fixtures = fixture_items();
    let sensor =
        PyNode::sensor_with_items(root.path(), &coordinator, &Value::Array(fixtures.clone()));
    let receiver = Receiver::start();
    let action = format!(
        "[[action]]\nname = \"hook\"\nurl = \"{}\"\nsecret_env = \"{SECRET_ENV}\"\n",
        receiver.url("/hook")
    );
    // The default configuration (no token): what a page can do to it is the threat.
    let open = Daemon::start_with(root.path(), &coordinator, &action);
    open.wait_until("the events are indexed", Duration::from_secs(90), |d| {
        d["events"].as_u64() == Some(fixtures.len() as u64)
    });
    receiver.wait_until("the deliveries arrive", Duration::from_secs(30), |r| {
        r.len() >= fixtures.len()
    });
    let delivery = open
        .get("/api/processor/github/actions/hook/deliveries?limit=1")
        .unwrap();
    let id = delivery[0]["id"].as_str().unwrap().to_owned();
    let before = delivery_count(&open);

    let (_browser, mut page) =
        Browser::launch_with(&["--host-resolver-rules=MAP rebound.test 127.0.0.1"]).await;
    let attacker = attacker_site();
    page.goto(&format!("http://127.0.0.1:{attacker}/")).await;
    let api = format!("http://{}/api/processor/github", open.api);
    let ws = format!("ws://{}/api/processor/github/stream/ws?after=0", open.api);
    let redeliver = format!("{api}/actions/hook/deliveries/{id}/redeliver");
    let attempts = page
        .eval(&format!(
            r#"(async () => {{
                const out = {{}};
                out.websocket = await new Promise((resolve) => {{
                    const socket = new WebSocket("{ws}");
                    socket.onmessage = (m) => resolve("read: " + m.data.slice(0, 80));
                    socket.onerror = () => resolve("refused");
                    setTimeout(() => resolve("no answer"), 5000);
                }});
                try {{ const r = await fetch("{api}/stream?after=0"); out.sse = "read " + r.status; }}
                catch (e) {{ out.sse = "blocked"; }}
                try {{ const r = await fetch("{api}/export"); out.export = "read " + r.status + " " + (await r.text()).slice(0, 80); }}
                catch (e) {{ out.export = "blocked"; }}
                // A simple request: the browser sends it without asking; the page only cannot see the answer.
                await fetch("{redeliver}", {{ method: "POST", mode: "no-cors", headers: {{ "Content-Type": "text/plain" }}, body: "{{}}" }})
                    .catch(() => {{}});
                try {{ const r = await fetch("{redeliver}", {{ method: "POST", headers: {{ "Content-Type": "application/json" }}, body: "{{}}" }}); out.json_post = "sent " + r.status; }}
                catch (e) {{ out.json_post = "blocked"; }}
                // A form, posted into a frame.
                const frame = document.createElement("iframe");
                frame.name = "sink";
                document.body.append(frame);
                const form = document.createElement("form");
                form.method = "POST";
                form.action = "{redeliver}";
                form.enctype = "text/plain";
                form.target = "sink";
                const field = document.createElement("input");
                field.name = "{{}}";
                form.append(field);
                document.body.append(form);
                await new Promise((resolve) => {{ frame.onload = resolve; form.submit(); setTimeout(resolve, 5000); }});
                return out;
            }})()"#
        ))
        .await;
    assert_eq!(attempts["websocket"], "refused", "{attempts}");
    assert_eq!(attempts["sse"], "blocked", "{attempts}");
    assert_eq!(attempts["export"], "blocked", "{attempts}");
    assert_eq!(attempts["json_post"], "blocked", "{attempts}");
    // The server itself refused them (not only the browser's CORS rule): nothing was redelivered.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(delivery_count(&open), before, "no redelivery was queued");
    assert!(
        receiver
            .received()
            .iter()
            .all(|r| r.header("x-koi-redelivery-of").is_empty()),
        "nothing was sent again"
    );
    let by_origin = open.metric(
        "koi_indexer_api_requests_refused_total",
        &["reason=\"origin\""],
    );
    assert!(by_origin >= 3.0, "refused for their Origin: {by_origin}");

    // DNS rebinding: a page whose own domain now resolves to 127.0.0.1 is same-origin with what it asks for.
    page.goto(&format!(
        "http://rebound.test:{}/",
        open.api.rsplit(':').next().unwrap()
    ))
    .await;
    let shown = page.eval("document.body.innerText").await;
    assert!(
        shown.as_str().unwrap_or_default().contains("`Host`"),
        "the rebound name gets the 403, not the dashboard: {shown}"
    );
    let read = page
        .eval("fetch('/api/processor/github/export').then(r => r.status)")
        .await;
    assert_eq!(read, 403);
    drop(open);

    // With a token: the dashboard asks for it once, keeps it for the tab, and sends it with every request.
    let guarded = Daemon::start_with_env(
        &root.path().join("guarded"),
        &coordinator,
        "token_env = \"KOI_API_TOKEN\"\n",
        "",
        &[("KOI_API_TOKEN", TOKEN)],
    );
    guarded.wait_until("the events are indexed", Duration::from_secs(90), |d| {
        d["events"].as_u64() == Some(fixtures.len() as u64)
    });
    let base = format!("http://{}", guarded.api);
    // The refusals above were logged as errors by the browser, as they should be: only what follows counts.
    let earlier = page.errors().len();
    page.goto(&format!("{base}/")).await;
    page.wait_until(
        "the page asks for the token",
        Duration::from_secs(20),
        "getComputedStyle(document.querySelector('#token-form')).display !== 'none'",
        "document.body.innerText.slice(0, 400)",
    )
    .await;
    page.eval(&format!(
        "(() => {{ document.querySelector('#token-input').value = '{TOKEN}'; \
         document.querySelector('#token-form').requestSubmit(); }})()"
    ))
    .await;
    page.wait_until(
        "the health cards fill with the token",
        Duration::from_secs(20),
        &format!(
            "document.querySelector('#events-indexed').textContent === '{}' && \
             getComputedStyle(document.querySelector('#token-form')).display === 'none'",
            fixtures.len()
        ),
        "[document.querySelector('#events-indexed').textContent, document.querySelector('#banner').textContent]",
    )
    .await;
    page.wait_until(
        "the stream is read with the token",
        Duration::from_secs(20),
        "document.querySelector('#stream-state').textContent === 'Stream: live'",
        "document.querySelector('#stream-state').textContent",
    )
    .await;
    sensor.emit(&Value::Array(push_items("guarded", 3)));
    page.wait_until(
        "live events reach the feed",
        Duration::from_secs(30),
        "[...document.querySelectorAll('#feed-table tbody tr')].filter(tr => tr.dataset.rid.includes(':guarded-')).length === 3",
        "document.querySelector('#feed-table').innerText",
    )
    .await;

    // A link that carries the token in its fragment (never sent to the server) works in a fresh tab's storage,
    // and the token leaves the address bar at once.
    page.eval("sessionStorage.clear()").await;
    page.goto("about:blank").await;
    page.goto(&format!("{base}/#token={TOKEN}")).await;
    page.wait_until(
        "the page works from a token link",
        Duration::from_secs(20),
        &format!(
            "document.querySelector('#events-indexed').textContent === '{}' && \
             document.querySelector('#stream-state').textContent === 'Stream: live'",
            fixtures.len() + 3
        ),
        "[document.querySelector('#events-indexed').textContent, location.href]",
    )
    .await;
    assert_eq!(page.eval("location.hash").await, "");
    assert_eq!(
        page.eval("document.querySelector('#token-form').hidden")
            .await,
        true
    );
    let errors: Vec<String> = page
        .errors()
        .into_iter()
        .skip(earlier)
        // The 401 that made the page ask for the token is the browser's own log line, and expected.
        .filter(|e| !e.contains("401"))
        .collect();
    assert!(errors.is_empty(), "console errors: {errors:#?}");
}
