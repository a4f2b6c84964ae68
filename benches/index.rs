//! Index benchmark: ingest rate of realistic GitHubEvent bundles, and latency of a repository's first page.
//!
//! ```sh
//! cargo bench --bench index                                  # 10k and 100k events
//! INDEX_BENCH_EVENTS=10000,1000000 cargo bench --bench index # the sizes of the README's table
//! ```
//!
//! For each size: a fresh sled store in a temporary directory (or under `INDEX_BENCH_DIR`), `n` bundles of a few KB
//! (webhook pushes, issues and pull requests with GitHub-sized repository objects, backfill commits) over 20
//! repositories, one of which gets half of all events. Ingest is what the node does with polled events, in its two
//! stages: one thread checks each bundle's hash and prepares it for the index into the inbox (the poll tasks do, on
//! tokio's blocking pool) while another reads the inbox and writes with `Index::apply` in batches of
//! `node::APPLY_BATCH` (the writer; one transaction each; `INDEX_BENCH_BATCH=1` for one per bundle); a flush after
//! each. Generating bundles is not timed. Then 2,000 first-page queries (limit 50) of the big repository, plain and
//! filtered by `event_type=push`, and their p50/p99. Last, the cold start: the store closed and opened again, timed
//! until the first page is served.
//!
//! Other switches: `INDEX_BENCH_MIX=synthetic|webhooks`, `INDEX_BENCH_KEEP_CONTENTS=0`, `INDEX_BENCH_ACTIONS=N`,
//! `INDEX_BENCH_SLED_COMPRESSION=0|1` (`[storage] compression`; default as the daemon's), `INDEX_BENCH_DIR`,
//! `INDEX_BENCH_CHECKPOINT=N` (every N events: the first page's p50/p99 and the store so far, for long runs).

#[path = "../tests/support/disk.rs"]
mod disk;
#[path = "../tests/support/webhooks.rs"]
mod webhooks;

use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};

use koi_github_indexer::index::{parse_repo_ref, EventQuery, Index, IndexOptions, PreparedBundle};
use koi_github_indexer::node::inbox::Inbox;
use koi_github_indexer::node::pipeline::CHUNK as APPLY_BATCH;
use koi_github_indexer::protocol::knowledge::hash_contents;
use koi_github_indexer::protocol::{Bundle, Event, EventType, Manifest, Rid, Timestamp};
use koi_github_indexer::storage::StoreOptions;

const REPOS: usize = 20;
const CHUNK: usize = 10_000;
const QUERIES: usize = 2_000;

fn repo_name(i: usize) -> String {
    format!("bench-org/repo-{i:02}")
}

/// The repository of event `n` of the webhook mix: half in one repository, the rest spread over the others.
fn webhook_repo(n: usize) -> String {
    repo_name(if n.is_multiple_of(2) {
        0
    } else {
        1 + n % (REPOS - 1)
    })
}

/// A repository object shaped like GitHub's webhook `repository` (about 2.5 KB of JSON).
fn repository(name: &str, i: usize) -> Value {
    let api = format!("https://api.github.com/repos/{name}");
    let mut repo = Map::new();
    for (key, value) in [
        ("id", json!(1_296_269 + i)),
        ("node_id", json!("MDEwOlJlcG9zaXRvcnkxMjk2MjY5")),
        ("name", json!(name.split('/').nth(1))),
        ("full_name", json!(name)),
        ("private", json!(false)),
        (
            "owner",
            json!({"login": "bench-org", "id": 1, "type": "Organization",
                          "avatar_url": "https://avatars.githubusercontent.com/u/1?v=4",
                          "html_url": "https://github.com/bench-org"}),
        ),
        ("html_url", json!(format!("https://github.com/{name}"))),
        (
            "description",
            json!("A repository used by the index benchmark, with a description of usual length"),
        ),
        ("fork", json!(false)),
        ("created_at", json!("2020-01-26T19:01:12Z")),
        ("updated_at", json!("2026-11-20T09:15:02Z")),
        ("pushed_at", json!("2026-11-20T09:15:02Z")),
        ("clone_url", json!(format!("https://github.com/{name}.git"))),
        ("size", json!(108)),
        ("stargazers_count", json!(80 + i)),
        ("watchers_count", json!(80 + i)),
        ("language", json!("Rust")),
        ("forks_count", json!(9)),
        ("open_issues_count", json!(2)),
        (
            "license",
            json!({"key": "mit", "name": "MIT License", "spdx_id": "MIT"}),
        ),
        ("topics", json!(["koi", "github", "index"])),
        ("default_branch", json!("main")),
    ] {
        repo.insert(key.to_owned(), value);
    }
    for url in [
        "forks",
        "keys",
        "collaborators",
        "teams",
        "hooks",
        "issue_events",
        "events",
        "assignees",
        "branches",
        "tags",
        "blobs",
        "git_tags",
        "git_refs",
        "trees",
        "statuses",
        "languages",
        "stargazers",
        "contributors",
        "subscribers",
        "subscription",
        "commits",
        "git_commits",
        "comments",
        "issue_comment",
        "contents",
        "compare",
        "merges",
        "archive",
        "downloads",
        "issues",
        "pulls",
        "milestones",
        "notifications",
        "labels",
        "releases",
        "deployments",
    ] {
        repo.insert(format!("{url}_url"), json!(format!("{api}/{url}")));
    }
    Value::Object(repo)
}

fn sender() -> Value {
    json!({"login": "octocat", "id": 583231, "node_id": "MDQ6VXNlcjU4MzIzMQ==", "type": "User",
           "avatar_url": "https://avatars.githubusercontent.com/u/583231?v=4",
           "html_url": "https://github.com/octocat", "site_admin": false})
}

/// The `n`-th benchmark bundle. Event times are spread over a year, one minute apart per repository.
fn event(n: usize) -> Bundle {
    let repo_index = if n.is_multiple_of(2) {
        0
    } else {
        1 + (n / 2) % (REPOS - 1)
    };
    let name = repo_name(repo_index);
    let time = Timestamp::from(
        chrono::DateTime::from_timestamp(1_764_000_000 - (n as i64) * 30, 0).unwrap_or_default(),
    )
    .to_string();
    let sha = format!("{:040x}", n as u128 * 0x9e37_79b9_7f4a_7c15);
    let (event_id, contents) = match n % 4 {
        0 | 1 => {
            let commits: Vec<Value> = (0..3)
                .map(|c| {
                    json!({"id": format!("{:040x}", (n * 3 + c) as u128 * 0x9e37_79b9), "tree_id": sha,
                           "distinct": true, "message": format!("Change {c} of push {n}\n\nA longer body explaining it."),
                           "timestamp": time, "url": format!("https://github.com/{name}/commit/{sha}"),
                           "author": {"name": "Mona Lisa", "email": "mona@example.com", "username": "mona"},
                           "committer": {"name": "GitHub", "email": "noreply@github.com", "username": "web-flow"},
                           "added": [], "removed": [], "modified": ["src/lib.rs", "README.md"]})
                })
                .collect();
            (
                format!("push-{n}"),
                json!({"webhook_event_type": "push", "repository": repository(&name, repo_index),
                       "payload": {"ref": "refs/heads/main", "before": format!("{:040x}", n), "after": sha,
                                   "created": false, "deleted": false, "forced": false,
                                   "compare": format!("https://github.com/{name}/compare/a...b"),
                                   "commits": commits, "head_commit": {"id": sha, "message": format!("Change of push {n}"),
                                   "timestamp": time}, "pusher": {"name": "mona", "email": "mona@example.com"},
                                   "sender": sender()}}),
            )
        }
        2 => (
            format!("issues-{n}"),
            json!({"webhook_event_type": "issues", "action": "opened", "repository": repository(&name, repo_index),
                   "payload": {"action": "opened", "issue": {"number": n, "title": format!("Issue {n}"),
                               "state": "open", "created_at": time, "updated_at": time, "user": sender(),
                               "body": "Steps to reproduce: run it. Expected: it works. Actual: it does not.",
                               "labels": [{"name": "bug", "color": "d73a4a"}], "comments": 0},
                               "sender": sender()}}),
        ),
        _ => (
            format!("commit_{sha}"),
            json!({"event_source_type": "backfill_commit",
                   "payload": {"sha": sha, "node_id": "C_kwDOA", "url": format!("https://api.github.com/repos/{name}/commits/{sha}"),
                               "html_url": format!("https://github.com/{name}/commit/{sha}"),
                               "commit": {"author": {"name": "bors", "email": "bors@rust-lang.org", "date": time},
                                          "committer": {"name": "bors", "email": "bors@rust-lang.org", "date": time},
                                          "message": format!("Auto merge of #{n}\n\nDetails of the change."),
                                          "tree": {"sha": sha}, "comment_count": 0},
                               "author": sender(), "committer": sender(), "parents": [{"sha": sha}],
                               "stats": {"total": 12, "additions": 10, "deletions": 2}}}),
        ),
    };
    let Value::Object(contents) = contents else {
        unreachable!("a JSON object literal")
    };
    let rid = Rid::parse(&format!("orn:github.event:{name}:{event_id}")).expect("valid RID");
    Bundle {
        manifest: Manifest {
            rid,
            timestamp: Timestamp::parse(&time).expect("valid time"),
            sha256_hash: hash_contents(&contents),
            extra: Map::new(),
        },
        contents,
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn first_page_latency(index: &Index, query: &EventQuery) -> (Duration, Duration) {
    let repo = parse_repo_ref(&repo_name(0)).expect("valid name");
    let mut times = Vec::with_capacity(QUERIES);
    for _ in 0..QUERIES {
        let start = Instant::now();
        let page = index
            .events_page(&repo, query)
            .expect("query")
            .expect("repo exists");
        times.push(start.elapsed());
        assert_eq!(page.len(), query.limit);
    }
    times.sort();
    (percentile(&times, 0.5), percentile(&times, 0.99))
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mix {
    /// The synthetic 4.3 KB bundles of [`event`].
    Synthetic,
    /// The webhook fixtures (4–11 KB).
    Webhooks,
}

fn run(n: usize, batch_size: usize, mix: Mix, keep_contents: bool) {
    let dir = match std::env::var_os("INDEX_BENCH_DIR") {
        Some(base) => tempfile::tempdir_in(base),
        None => tempfile::tempdir(),
    }
    .expect("temporary directory");
    let db_path = dir.path().join("db");
    // INDEX_BENCH_SLED_COMPRESSION=0|1: `[storage] compression` (sled compresses every page it writes; the
    // default, as for the daemon, is `storage::DEFAULT_COMPRESSION`).
    let options = StoreOptions {
        compression: match std::env::var("INDEX_BENCH_SLED_COMPRESSION").as_deref() {
            Ok("0") => false,
            Ok("1") => true,
            _ => koi_github_indexer::storage::DEFAULT_COMPRESSION,
        },
        ..StoreOptions::default()
    };
    let store = koi_github_indexer::storage::open(&db_path, options).expect("open sled");
    let db = store.db.clone();
    let pages = if store.compressed {
        "compressed"
    } else {
        "plain"
    };
    // INDEX_BENCH_ACTIONS=N: N actions that take every event (each new event queues N deliveries in its
    // transaction; nothing sends them here).
    let actions = std::env::var("INDEX_BENCH_ACTIONS")
        .ok()
        .and_then(|n| n.parse::<usize>().ok())
        .unwrap_or(0);
    let index = Index::open_with(
        &db,
        IndexOptions {
            keep_contents,
            actions: (0..actions)
                .map(|i| koi_github_indexer::index::ActionFilter {
                    name: format!("action-{i}"),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        },
    )
    .expect("open index");
    let inbox = Inbox::open(&store.inbox_dir(), &db).expect("open inbox");
    let source = Rid::parse(
        "orn:koi-net.node:bench_sensor+0000000000000000000000000000000000000000000000000000000000000000",
    )
    .expect("valid RID");
    let fixtures = webhooks::fixture_contents();

    let checkpoint = std::env::var("INDEX_BENCH_CHECKPOINT")
        .ok()
        .and_then(|n| n.parse::<usize>().ok())
        .filter(|&n| n > 0);
    let mut ingest = Duration::ZERO;
    let mut bytes = 0usize;
    let mut done = 0;
    while done < n {
        let chunk: Vec<Bundle> = (done..n.min(done + CHUNK))
            .map(|i| match mix {
                Mix::Synthetic => event(i),
                Mix::Webhooks => webhooks::webhook_bundle(&fixtures, i, &webhook_repo(i)),
            })
            .collect();
        bytes += chunk
            .iter()
            .map(|b| serde_json::to_vec(b).map(|v| v.len()).unwrap_or(0))
            .sum::<usize>();
        let total = chunk.len();
        // Owned batches, as the poll task holds them (splitting is not timed).
        let batches: Vec<Vec<Bundle>> = chunk.chunks(batch_size).map(<[Bundle]>::to_vec).collect();
        drop(chunk);
        let start = Instant::now();
        // Two stages, as in the node: a poll task checks hashes and makes the events durable in the inbox, while
        // the writer thread reads the inbox in chunks, indexes them in one transaction each, flushes, and removes
        // the entries.
        let (pushed_tx, pushed_rx) = std::sync::mpsc::sync_channel::<()>(4);
        std::thread::scope(|scope| {
            let inbox_w = inbox.clone();
            let source = &source;
            scope.spawn(move || {
                for batch in batches {
                    let events: Vec<Event> = batch
                        .into_iter()
                        .map(|bundle| {
                            bundle.verify_hash().expect("hash");
                            Event::from_bundle(EventType::New, bundle)
                        })
                        .collect();
                    inbox_w.push(source, events, true).expect("inbox push");
                    inbox_w.flush().expect("flush inbox");
                    // A wake-up, never a wait: the writer may be done reading already.
                    let _ = pushed_tx.try_send(());
                }
            });
            let mut indexed = 0;
            while indexed < total {
                let entries = inbox.chunk(batch_size, |_| false);
                if entries.is_empty() {
                    let _ = pushed_rx.recv_timeout(Duration::from_millis(50));
                    continue;
                }
                let mut keys = Vec::with_capacity(entries.len());
                let items: Vec<PreparedBundle> = entries
                    .into_iter()
                    .map(|entry| {
                        let (key, entry) = entry.expect("inbox entry");
                        keys.push(key);
                        match entry.prepared {
                            Some(prepared) => *prepared,
                            None => {
                                PreparedBundle::of(&entry.event.into_bundle().expect("full event"))
                                    .expect("an indexable event")
                            }
                        }
                    })
                    .collect();
                index.apply(&items).expect("apply");
                db.flush().expect("flush");
                inbox.remove(&keys).expect("remove");
                indexed += keys.len();
            }
        });
        ingest += start.elapsed();
        done += total;
        // INDEX_BENCH_CHECKPOINT=N: every N events, the first page's latency and the store so far (a long run
        // tells something even if it is stopped).
        if checkpoint.is_some_and(|every| done % every == 0 && done < n) {
            let (p50, p99) = first_page_latency(&index, &EventQuery::default());
            println!(
                "  checkpoint {done:>9} events: ingest {:>6.0} events/s so far; first page p50 {:>4.0} µs p99 {:>5.0} µs; \
                 store {:.0} B/event",
                done as f64 / ingest.as_secs_f64(),
                p50.as_secs_f64() * 1e6,
                p99.as_secs_f64() * 1e6,
                disk::dir_size(&db_path) as f64 / done as f64,
            );
        }
    }
    assert_eq!(index.counts().expect("counts").events, n as u64);

    let plain = first_page_latency(&index, &EventQuery::default());
    let pushes = first_page_latency(
        &index,
        &EventQuery {
            event_type: Some("push".into()),
            ..EventQuery::default()
        },
    );
    db.flush().expect("flush");
    let on_disk = disk::dir_size(&db_path);
    // What the trees hold (keys and values), to tell the data from sled's own overhead and garbage.
    let mut live = 0u64;
    let mut by_tree = Vec::new();
    for name in db.tree_names() {
        let tree = db.open_tree(&name).expect("tree");
        let bytes: u64 = tree
            .iter()
            .map(|kv| kv.map(|(k, v)| (k.len() + v.len()) as u64).unwrap_or(0))
            .sum();
        live += bytes;
        by_tree.push((String::from_utf8_lossy(&name).into_owned(), bytes));
    }
    by_tree.sort_by_key(|(_, b)| std::cmp::Reverse(*b));
    let top: Vec<String> = by_tree
        .iter()
        .take(6)
        .map(|(name, b)| format!("{name} {:.0}", *b as f64 / n as f64))
        .collect();
    println!(
        "{:<9} {n:>9} events ({:.1} KB/bundle, contents {}, sled pages {pages}, {batch_size} per transaction): ingest {:>7.0} events/s \
         ({:.1} s, inbox write and read included); first page p50 {:>4.0} µs p99 {:>5.0} µs; with event_type p50 \
         {:>4.0} µs p99 {:>5.0} µs; store {:.1} MB = {:.0} B/event (live data {:.0} B/event: {}); peak RSS {:.0} MB",
        match mix {
            Mix::Synthetic => "synthetic",
            Mix::Webhooks => "webhooks",
        },
        bytes as f64 / n as f64 / 1024.0,
        if keep_contents { "kept" } else { "not kept" },
        n as f64 / ingest.as_secs_f64(),
        ingest.as_secs_f64(),
        plain.0.as_secs_f64() * 1e6,
        plain.1.as_secs_f64() * 1e6,
        pushes.0.as_secs_f64() * 1e6,
        pushes.1.as_secs_f64() * 1e6,
        on_disk as f64 / 1e6,
        on_disk as f64 / n as f64,
        live as f64 / n as f64,
        top.join(", "),
        disk::peak_rss() as f64 / 1e6,
    );

    // Cold start: the store closed, then opened again as the daemon opens it, until the first page is served
    // (the daemon's own start adds its config, key and HTTP listener, a few milliseconds). Twice: sled 0.34 writes
    // its page-table snapshot only when it opens a store, so the first open after the ingest replays the whole log
    // written since the store was created, and the second only what was written since the first.
    drop((index, inbox, db, store));
    let cold_start = || {
        let start = Instant::now();
        let store = koi_github_indexer::storage::open(&db_path, StoreOptions::default())
            .expect("reopen sled");
        let opened = start.elapsed();
        let index = Index::open_with(
            &store.db,
            IndexOptions {
                keep_contents,
                ..Default::default()
            },
        )
        .expect("reopen index");
        let counts = index.counts().expect("counts");
        let repo = parse_repo_ref(&repo_name(0)).expect("valid name");
        let page = index
            .events_page(&repo, &EventQuery::default())
            .expect("query")
            .expect("repo exists");
        let served = start.elapsed();
        assert_eq!(counts.events, n as u64);
        assert!(!page.is_empty());
        (served, opened)
    };
    let (first, first_open) = cold_start();
    let (second, second_open) = cold_start();
    println!(
        "{:<9} {n:>9} events: cold start to the first page {:.0} ms (sled open {:.0} ms) after the ingest, {:.0} ms \
         (sled open {:.0} ms) the next time",
        "",
        first.as_secs_f64() * 1e3,
        first_open.as_secs_f64() * 1e3,
        second.as_secs_f64() * 1e3,
        second_open.as_secs_f64() * 1e3,
    );
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` runs it once at the smallest size as a smoke test.
    let smoke = !std::env::args().any(|a| a == "--bench");
    let sizes = std::env::var("INDEX_BENCH_EVENTS").unwrap_or_else(|_| "10000,100000".to_owned());
    let sizes: Vec<usize> = if smoke {
        vec![1_000]
    } else {
        sizes
            .split(',')
            .map(|s| {
                s.trim()
                    .replace('_', "")
                    .parse()
                    .expect("INDEX_BENCH_EVENTS: numbers, comma-separated")
            })
            .collect()
    };
    // As the node writes: `APPLY_BATCH` bundles per transaction from an inbox pass. `INDEX_BENCH_BATCH=1` measures
    // one transaction per bundle.
    let batch_size = std::env::var("INDEX_BENCH_BATCH")
        .ok()
        .map(|b| b.parse().expect("INDEX_BENCH_BATCH: a number ≥ 1"))
        .unwrap_or(APPLY_BATCH)
        .max(1);
    let mixes = match std::env::var("INDEX_BENCH_MIX").as_deref() {
        Ok("synthetic") => vec![Mix::Synthetic],
        Ok("webhooks") => vec![Mix::Webhooks],
        _ => vec![Mix::Synthetic, Mix::Webhooks],
    };
    let keep_contents = std::env::var("INDEX_BENCH_KEEP_CONTENTS").as_deref() != Ok("0");
    for n in sizes {
        for &mix in &mixes {
            run(n, batch_size, mix, keep_contents);
        }
    }
}
