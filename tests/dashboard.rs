//! Issue 14's proof: the dashboard in a real browser (Debian's headless Chromium), served by the daemon while it
//! indexes from the real koi-net 2.1.2 coordinator and sensor. Takes the README's screenshots (written under `docs/`
//! only by `scripts/screenshots.sh`).

#[path = "support/chromium.rs"]
mod chromium;
mod support;

use std::time::{Duration, Instant};

use serde_json::Value;

use chromium::Browser;
use support::pynet::{fixture_items, push_items, Daemon, PyNode};

/// The API's repositories as `(full_name, event_count)`, sorted by name.
fn api_repositories(daemon: &Daemon) -> Vec<(String, u64)> {
    let mut repos: Vec<(String, u64)> = daemon
        .get("/api/processor/github/repositories")
        .expect("/repositories answers")
        .as_array()
        .expect("an array")
        .iter()
        .map(|r| {
            (
                r["full_name"].as_str().unwrap().to_owned(),
                r["event_count"].as_u64().unwrap(),
            )
        })
        .collect();
    repos.sort();
    repos
}

/// The README's dashboard pictures, as bytes.
fn readme_pictures() -> Vec<Vec<u8>> {
    let docs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs");
    ["dashboard-desktop.png", "dashboard-phone.png"]
        .iter()
        .map(|name| std::fs::read(docs.join(name)).unwrap_or_default())
        .collect()
}

/// The page's repository table, as JavaScript giving `[[full_name, event_count], …]` sorted by name.
const PAGE_REPOSITORIES: &str = "[...document.querySelectorAll('#repo-table tbody tr[data-repo]')]
    .map(tr => [tr.dataset.repo, Number(tr.cells[1].textContent.replace(/,/g, ''))])
    .sort((a, b) => a[0] < b[0] ? -1 : 1)";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_health_live_events_charts_and_repositories_in_a_real_browser() {
    let root = tempfile::tempdir().unwrap();
    let coordinator = PyNode::coordinator(root.path());
    // The page opens on a store that already holds events: the fixtures and 20 pushes.
    let mut fixtures = fixture_items();
    fixtures.extend(push_items("before", 20));
    let sensor =
        PyNode::sensor_with_items(root.path(), &coordinator, &Value::Array(fixtures.clone()));
    // A JetStream sink whose cluster is not there: it falls behind, and the dashboard shows its lag in red.
    let absent_nats = support::pynet::free_port();
    let daemon = Daemon::start_with(
        root.path(),
        &coordinator,
        &format!("[sink.nats]\nservers = [\"nats://127.0.0.1:{absent_nats}\"]\n"),
    );
    daemon.wait_until(
        "the sensor's events are indexed",
        Duration::from_secs(90),
        |d| d["events"].as_u64() == Some(fixtures.len() as u64),
    );
    let last_seq = daemon.status().unwrap()["last_seq"].as_u64().unwrap();
    assert!(last_seq >= fixtures.len() as u64, "{last_seq}");

    let pictures_before = readme_pictures();
    let (_browser, mut page) = Browser::launch().await;
    let base = format!("http://{}", daemon.api);
    // /polls and /metrics answer nothing until the test says so: the cards must not wait for them.
    page.command(
        "Page.addScriptToEvaluateOnNewDocument",
        serde_json::json!({"source": "(() => { const real = window.fetch; window.__holdSlow = true; \
            window.fetch = function (input, init) { const url = String(input && input.url || input); \
            if (window.__holdSlow && (url.includes('/polls') || url.includes('/metrics'))) return new Promise(() => {}); \
            return real.call(this, input, init); }; })()"}),
    )
    .await;
    page.goto(&format!("{base}/")).await;
    assert_eq!(
        page.eval("getComputedStyle(document.querySelector('#token-form')).display")
            .await,
        "none",
        "no token is configured: the token form is not shown"
    );

    // Health: the cards fill from /status alone, while /polls and /metrics have not answered.
    page.wait_until(
        "the health cards show the index's counts",
        Duration::from_secs(20),
        &format!(
            "document.querySelector('#events-indexed').textContent === '{}' && \
             document.querySelector('#repositories-count').textContent !== '–' && \
             document.querySelector('#inbox-depth').textContent === '0'",
            fixtures.len()
        ),
        "document.querySelector('#health').innerText",
    )
    .await;
    page.wait_until(
        "the JetStream card shows the lag, failing",
        Duration::from_secs(20),
        &format!(
            "!document.querySelector('#sink-card').hidden && \
             document.querySelector('#sink-lag').textContent === '{}' && \
             document.querySelector('#sink-card').classList.contains('failing') && \
             document.querySelector('#sink-card').title.startsWith('Cannot publish')",
            fixtures.len()
        ),
        "document.querySelector('#health').innerText",
    )
    .await;
    // The feed opens with the newest 20 events already indexed, newest first.
    page.wait_until(
        "the feed shows the newest 20 events on opening",
        Duration::from_secs(20),
        "document.querySelectorAll('#feed-table tbody tr').length === 20",
        "document.querySelector('#feed-table').innerText",
    )
    .await;
    let opening: Vec<u64> = serde_json::from_value(
        page.eval("[...document.querySelectorAll('#feed-table tbody tr')].map(tr => Number(tr.dataset.seq))")
            .await,
    )
    .unwrap();
    assert_eq!(opening.first(), Some(&last_seq), "{opening:?}");
    assert!(opening.windows(2).all(|w| w[0] > w[1]), "{opening:?}");
    assert!(opening.iter().all(|&s| s > last_seq - 20), "{opening:?}");
    assert_eq!(
        page.eval("document.querySelector('#feed-empty').hidden")
            .await,
        true,
        "no 'waiting' line over a full feed"
    );
    page.eval("window.__holdSlow = false").await;
    page.wait_until(
        "every neighbour is listed with a poll outcome",
        Duration::from_secs(30),
        "[...document.querySelectorAll('#neighbours tbody tr')].length >= 2 && \
         [...document.querySelectorAll('#neighbours tbody tr')].every(tr => tr.cells[1].textContent.startsWith('ok'))",
        "document.querySelector('#neighbours').innerText",
    )
    .await;
    assert_eq!(
        page.eval("document.querySelector('#inbox-depth').textContent")
            .await,
        "0"
    );

    // The live feed: events emitted by the sensor appear within seconds of being indexed.
    page.wait_until(
        "the stream is connected",
        Duration::from_secs(20),
        "document.querySelector('#stream-state').textContent === 'Stream: live'",
        "document.querySelector('#stream-state').textContent",
    )
    .await;
    let live = push_items("dash", 5);
    let emitted = Instant::now();
    sensor.emit(&Value::Array(live.clone()));
    page.wait_until(
        "the five live events are in the feed",
        Duration::from_secs(30),
        "[...document.querySelectorAll('#feed-table tbody tr')].filter(tr => tr.dataset.rid.includes(':dash-')).length === 5",
        "document.querySelector('#feed-table').innerText",
    )
    .await;
    eprintln!(
        "live events in the page {:?} after the sensor emitted them",
        emitted.elapsed()
    );
    let first_row = page
        .eval("(() => { const tr = document.querySelector('#feed-table tbody tr'); return [tr.dataset.rid, tr.querySelector('a').getAttribute('href')]; })()")
        .await;
    let rid = first_row[0].as_str().unwrap();
    // Newest first, by stream number (the order of indexing, which need not be the order of emission).
    let feed_seqs: Vec<u64> = serde_json::from_value(
        page.eval("[...document.querySelectorAll('#feed-table tbody tr')].map(tr => Number(tr.dataset.seq))")
            .await,
    )
    .unwrap();
    assert!(
        feed_seqs.windows(2).all(|w| w[0] > w[1]),
        "newest first: {feed_seqs:?}"
    );
    assert_eq!(
        first_row[1].as_str().unwrap(),
        format!(
            "/api/processor/github/events/{}",
            rid.replace(':', "%3A").replace('/', "%2F")
        ),
        "each row links to the event's details"
    );
    let details = daemon
        .get(first_row[1].as_str().unwrap())
        .expect("the linked details answer");
    assert_eq!(details["event_rid"], rid);

    // The charts, from /stats over the whole index.
    page.eval("(() => { const r = document.querySelector('#range'); r.value = 'all'; r.dispatchEvent(new Event('change')); })()")
        .await;
    let stats = daemon.get("/api/processor/github/stats?top=10").unwrap();
    let total = stats["total"].as_u64().unwrap();
    assert_eq!(total, fixtures.len() as u64 + 5);
    page.wait_until(
        "the charts are drawn from /stats",
        Duration::from_secs(20),
        &format!(
            "document.querySelector('#chart-days').dataset.total === '{total}' && \
             ['#chart-days', '#chart-repos', '#chart-actors'].every(id => document.querySelector(id + ' canvas'))"
        ),
        "[document.querySelector('#chart-days').dataset.total, document.querySelector('#stats-total').textContent]",
    )
    .await;
    let labels: Vec<String> = serde_json::from_str(
        page.eval("document.querySelector('#chart-repos').dataset.labels")
            .await
            .as_str()
            .unwrap(),
    )
    .unwrap();
    let top_repos: Vec<String> = stats["top_repos"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["repo"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(labels, top_repos, "the top-repositories chart is /stats's");
    // Per day: bars stacked by type, each day's stack as tall as /stats's count that day.
    assert_eq!(
        page.eval("document.querySelector('#chart-days').dataset.style")
            .await,
        "stacked-bars"
    );
    let drawn_days: Vec<(String, u64)> = serde_json::from_str(
        page.eval("document.querySelector('#chart-days').dataset.days")
            .await
            .as_str()
            .unwrap(),
    )
    .unwrap();
    let stats_days: Vec<(String, u64)> = stats["by_day"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["day"].as_str().unwrap().to_owned(),
                d["total"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(drawn_days, stats_days, "one stack per day of /stats");
    // A drawn canvas is not blank.
    let drawn = page
        .eval("(() => { const c = document.querySelector('#chart-days canvas'); const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data; for (let i = 3; i < d.length; i += 4) if (d[i] !== 0) return true; return false; })()")
        .await;
    assert_eq!(drawn, true, "the per-day chart has pixels");

    // The repository table matches /repositories (it refreshes as events arrive).
    let expected = serde_json::to_value(api_repositories(&daemon)).unwrap();
    page.wait_until(
        "the repository table matches /repositories",
        Duration::from_secs(20),
        &format!("JSON.stringify({PAGE_REPOSITORIES}) === '{expected}'"),
        &format!("JSON.stringify({PAGE_REPOSITORIES})"),
    )
    .await;
    // Sortable: by events, most first.
    page.eval("document.querySelector('#repo-table th button[data-key=event_count]').click()")
        .await;
    let counts = page
        .eval("[...document.querySelectorAll('#repo-table tbody tr')].map(tr => Number(tr.cells[1].textContent.replace(/,/g, '')))")
        .await;
    let counts: Vec<u64> = serde_json::from_value(counts).unwrap();
    assert!(counts.windows(2).all(|w| w[0] >= w[1]), "{counts:?}");
    assert_eq!(
        page.eval("document.querySelector('#repo-table th button[data-key=event_count]').parentElement.getAttribute('aria-sort')").await,
        "descending"
    );
    // Clicking a repository shows its events.
    page.eval("document.querySelector('#repo-table tbody tr[data-repo=\"octo-org/hello-world\"] button').click()")
        .await;
    let hello = api_repositories(&daemon)
        .into_iter()
        .find(|(name, _)| name == "octo-org/hello-world")
        .unwrap()
        .1;
    page.wait_until(
        "the repository's events are shown",
        Duration::from_secs(10),
        &format!(
            "!document.querySelector('#repo-events').hidden && \
             document.querySelectorAll('#repo-events tbody tr').length === {}",
            hello.min(20)
        ),
        "document.querySelector('#repo-events').innerText",
    )
    .await;

    // The page is served under a strict policy and loads nothing from elsewhere.
    let head = reqwest::get(format!("{base}/")).await.unwrap();
    let policy = head.headers()["content-security-policy"].to_str().unwrap();
    assert!(
        policy.contains("default-src 'none'") && policy.contains("script-src 'self'"),
        "{policy}"
    );
    let outside = page
        .eval("performance.getEntriesByType('resource').map(e => e.name).filter(n => !n.startsWith(location.origin))")
        .await;
    assert_eq!(outside, Value::Array(vec![]), "loads from elsewhere");

    let errors = page.errors();
    assert!(errors.is_empty(), "console errors: {errors:#?}");

    // Screenshots at a laptop's width and a phone's: into a temp dir, so that running the tests leaves the work
    // tree as it was; `scripts/screenshots.sh` sets KOI_SCREENSHOTS_DIR=docs to refresh the README's pictures.
    let shots = tempfile::tempdir().unwrap();
    let docs = std::env::var_os("KOI_SCREENSHOTS_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| shots.path().to_owned());
    std::fs::write(
        docs.join("dashboard-desktop.png"),
        page.screenshot(1280, false).await,
    )
    .unwrap();
    std::fs::write(
        docs.join("dashboard-phone.png"),
        page.screenshot(390, true).await,
    )
    .unwrap();
    // Running the tests leaves the work tree as it was (issue 25): the README's pictures are not rewritten.
    if std::env::var_os("KOI_SCREENSHOTS_DIR").is_none() {
        assert_eq!(readme_pictures(), pictures_before, "docs/*.png changed");
    }
    let phone_overflow = page
        .eval("document.documentElement.scrollWidth > window.innerWidth + 1")
        .await;
    assert_eq!(phone_overflow, false, "the page fits a phone's width");

    // The stream goes down with the daemon: a banner says so; it comes back with it and resumes with
    // Last-Event-ID: what was indexed while the page was disconnected is shown too.
    let mut daemon = daemon;
    daemon.terminate(Duration::from_secs(10));
    page.wait_until(
        "the banner says the stream is disconnected",
        Duration::from_secs(15),
        "!document.querySelector('#banner').hidden && document.querySelector('#banner').textContent.includes('stream is disconnected')",
        "document.querySelector('#banner').outerHTML",
    )
    .await;
    sensor.emit(&Value::Array(push_items("gap", 3)));
    daemon.restart();
    page.wait_until(
        "the stream is back and the banner gone",
        Duration::from_secs(60),
        "document.querySelector('#stream-state').textContent === 'Stream: live' && document.querySelector('#banner').hidden",
        "[document.querySelector('#stream-state').textContent, document.querySelector('#banner').textContent]",
    )
    .await;
    page.wait_until(
        "events indexed during the disconnection are in the feed, once each",
        Duration::from_secs(60),
        "[...document.querySelectorAll('#feed-table tbody tr')].filter(tr => tr.dataset.rid.includes(':gap-')).length === 3",
        "document.querySelector('#feed-table').innerText",
    )
    .await;
    let seqs: Vec<u64> = serde_json::from_value(
        page.eval("[...document.querySelectorAll('#feed-table tbody tr')].map(tr => Number(tr.dataset.seq))")
            .await,
    )
    .unwrap();
    let mut unique = seqs.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), seqs.len(), "no event twice: {seqs:?}");
}
