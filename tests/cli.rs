//! The query commands, run as the real binary: against a running API (served in-process here, on a loopback
//! port, from a store this process holds open), against a stopped daemon (the binary opens the store), and
//! against a store that is locked while nothing answers.

mod index_support;

use std::net::TcpListener;
use std::process::Output;

use serde_json::Value;
use warp::Filter;

use index_support::Store;

const BIN: &str = env!("CARGO_BIN_EXE_koi-github-indexer");

async fn run(args: &[&str]) -> Output {
    tokio::process::Command::new(BIN)
        .args(args)
        .output()
        .await
        .expect("run the binary")
}

fn stdout(out: &Output) -> String {
    assert!(
        out.status.success(),
        "exit {}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A loopback address where nothing listens.
fn closed_port() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{addr}")
}

fn assert_fits_80_columns(text: &str) {
    for line in text.lines() {
        // ☕ and friends take two columns; count them so.
        let width: usize = line.chars().map(|c| if c == '☕' { 2 } else { 1 }).sum();
        assert!(width <= 80, "{width} columns: {line}");
    }
}

/// Every command, once through `api` and once through `data_dir`, must print the same thing.
async fn every_command(data_dir: &str, api: &str) -> Vec<(String, String, String)> {
    let mut outputs = Vec::new();
    for command in [
        vec!["list-repos"],
        vec!["list-repos", "--json"],
        vec!["show-events", "octo-org/hello-world"],
        vec![
            "show-events",
            "orn:github.repo:octo-org/hello-world",
            "--limit",
            "2",
            "--json",
        ],
        vec!["show-events", "octo-org/hello-world", "--type", "push"],
        vec!["show-events", "octo-org/hello-world", "--type", "PUSH"],
        vec![
            "event-details",
            "orn:github.event:octo-org/hello-world:push-1a2b3c",
        ],
        vec![
            "event-details",
            "orn:github.event:octo-org/hello-world:push-1a2b3c",
            "--json",
        ],
        vec![
            "bundle",
            "orn:github.event:octo-org/hello-world:push-1a2b3c",
        ],
        vec![
            "bundle",
            "orn:github.event:octo-org/hello-world:push-1a2b3c",
            "--json",
        ],
        vec!["summary"],
        vec!["summary", "--json"],
        vec!["rejected"],
        vec!["rejected", "--json"],
    ] {
        let mut args = command.clone();
        args.extend(["--data-dir", data_dir, "--api", api, "-v"]);
        let out = run(&args).await;
        outputs.push((command.join(" "), stdout(&out), stderr(&out)));
    }
    outputs
}

fn check_answers(outputs: &[(String, String, String)]) {
    let find = |name: &str| &outputs.iter().find(|o| o.0 == name).unwrap().1;
    let repos = find("list-repos");
    assert!(repos.starts_with("REPOSITORY"), "{repos}");
    assert!(repos.contains("octo-org/hello-world"), "{repos}");
    assert!(repos.contains("c0ffee0"), "latest commit: {repos}");
    let json: Value = serde_json::from_str(find("list-repos --json")).unwrap();
    assert_eq!(json.as_array().unwrap().len(), 3);

    let none = find("show-events octo-org/hello-world --type PUSH");
    assert!(
        none.starts_with("No events of type `PUSH`") && none.contains("compared exactly"),
        "a filter that matches nothing says so: {none}"
    );

    let rejected = find("rejected");
    assert!(rejected.starts_with("WHEN"), "{rejected}");
    assert!(
        rejected.contains("bad_rid") && rejected.contains("hello-world:bad rid"),
        "{rejected}"
    );
    assert!(
        rejected.lines().all(|l| l.chars().count() <= 80),
        "{rejected}"
    );

    let events = find("show-events octo-org/hello-world");
    let lines: Vec<&str> = events.lines().collect();
    assert!(lines[0].starts_with("TIME (UTC)"), "{events}");
    assert!(
        lines[1].contains("Release v1.2.0 published"),
        "newest first: {events}"
    );
    assert!(lines[4].starts_with("2026-11-20 14:15  push"), "{events}");
    assert!(
        lines[4].contains("Push to octo-org/hello-world: 7fd1a60"),
        "{events}"
    );
    let page: Value = serde_json::from_str(find(
        "show-events orn:github.repo:octo-org/hello-world --limit 2 --json",
    ))
    .unwrap();
    assert_eq!(page.as_array().unwrap().len(), 2);
    let pushes = find("show-events octo-org/hello-world --type push");
    assert_eq!(pushes.lines().count(), 2, "{pushes}");

    let details = find("event-details orn:github.event:octo-org/hello-world:push-1a2b3c");
    assert!(
        details.contains("commit       7fd1a60b01f91b314f59955a4e4d4e80d8edf11d"),
        "{details}"
    );
    assert!(
        details.contains("\"webhook_event_type\": \"push\""),
        "the bundle is shown: {details}"
    );
    let details: Value = serde_json::from_str(find(
        "event-details orn:github.event:octo-org/hello-world:push-1a2b3c --json",
    ))
    .unwrap();
    assert_eq!(
        details["bundle"]["contents"]["payload"]["after"],
        "7fd1a60b01f91b314f59955a4e4d4e80d8edf11d"
    );

    let summary = find("summary");
    assert!(summary.contains("Events:        8"), "{summary}");
    assert!(summary.contains("Repositories:  3"), "{summary}");
    assert!(
        summary.contains("Repository details of rust-lang/rust"),
        "latest event: {summary}"
    );
    assert!(
        summary
            .lines()
            .any(|l| l.starts_with("pull_request ") && l.ends_with(" 2   25.0%")),
        "{summary}"
    );
    assert!(summary.contains("MOST ACTIVE REPOSITORIES"), "{summary}");
    let summary: Value = serde_json::from_str(find("summary --json")).unwrap();
    assert_eq!(summary["event_types"]["push"], 1);
    assert!(
        !summary["top_repos"].as_array().unwrap().is_empty(),
        "{summary}"
    );

    // Tables fit; JSON and the full bundle of event-details are shown whole.
    for (command, out, _) in outputs {
        if !command.contains("--json") && !command.starts_with("event-details") {
            assert_fits_80_columns(out);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_commands_ask_the_running_daemon_and_open_the_store_when_it_is_stopped() {
    let store = Store::with_fixtures();
    let data_dir = store.data_dir();
    let data_dir = data_dir.to_str().unwrap();

    // The daemon runs (this process holds the store and serves the API): the commands must use the API.
    let api = store.serve();
    let added = run(&[
        "add-repo",
        "new-org/new-repo",
        "--data-dir",
        data_dir,
        "--api",
        &api.base(),
    ])
    .await;
    assert_eq!(
        stdout(&added),
        "Added new-org/new-repo (orn:github.repo:new-org/new-repo)\n"
    );
    assert_eq!(stderr(&added), "", "without -v, nothing on stderr");
    let again = run(&[
        "add-repo",
        "new-org/new-repo",
        "--data-dir",
        data_dir,
        "--api",
        &api.base(),
    ])
    .await;
    assert!(stdout(&again).starts_with("Already tracked: new-org/new-repo"));
    assert_eq!(
        store.index.counts().unwrap().repositories,
        3,
        "written by the daemon"
    );
    let through_api = every_command(data_dir, &api.base()).await;
    for (command, _, err) in &through_api {
        assert!(
            err.contains("using the running daemon's API"),
            "{command}: {err}"
        );
    }
    check_answers(&through_api);

    // The daemon stops: the store is free, nothing answers; the same commands read the store, same answers.
    let api_base = api.base();
    api.stop().await;
    let Store {
        dir,
        store: lock,
        db,
        index,
        poll_log,
        ..
    } = store;
    drop(poll_log);
    drop(index);
    drop(db);
    drop(lock);
    let through_store = every_command(data_dir, &api_base).await;
    for (command, _, err) in &through_store {
        assert!(err.contains("opening the store at"), "{command}: {err}");
    }
    let answers = |outputs: &[(String, String, String)]| -> Vec<(String, String)> {
        outputs
            .iter()
            .map(|(c, o, _)| (c.clone(), o.clone()))
            .collect()
    };
    assert_eq!(answers(&through_store), answers(&through_api));

    // The daemon is stopped: every command below opens the store.
    let on_store = |args: &[&str]| {
        let mut full: Vec<&str> = args.to_vec();
        full.extend(["--data-dir", data_dir, "--api", &api_base]);
        let full: Vec<String> = full.into_iter().map(str::to_owned).collect();
        async move { run(&full.iter().map(String::as_str).collect::<Vec<_>>()).await }
    };
    let added = on_store(&["add-repo", "another/one"]).await;
    assert_eq!(
        stdout(&added),
        "Added another/one (orn:github.repo:another/one)\n"
    );
    let listed = stdout(&on_store(&["list-repos"]).await);
    assert!(listed.contains("another/one"), "{listed}");
    // What was added by hand can be removed by hand; what came from the network cannot.
    let removed = on_store(&["remove-repo", "another/one"]).await;
    assert_eq!(stdout(&removed), "Removed another/one\n");
    let listed = stdout(&on_store(&["list-repos"]).await);
    assert!(!listed.contains("another/one"), "{listed}");
    let refused = on_store(&["remove-repo", "octo-org/hello-world"]).await;
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("not added by hand"),
        "{}",
        stderr(&refused)
    );
    drop(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_are_clear_and_change_nothing() {
    let store = Store::with_fixtures();
    let data_dir = store.data_dir();
    let data_dir = data_dir.to_str().unwrap();
    let nobody = closed_port();

    // A process holds the store but does not answer where we look.
    let out = run(&["list-repos", "--data-dir", data_dir, "--api", &nobody]).await;
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("is locked by another process"), "{err}");
    assert!(err.contains(&nobody), "names the address tried: {err}");

    // Through the API: unknown things and bad input are errors with the API's message.
    let api = store.serve();
    for (args, needle) in [
        (
            vec!["show-events", "octo-org/nothing"],
            "repository octo-org/nothing is not indexed",
        ),
        (vec!["show-events", "not-a-repo"], "is not a repository"),
        (
            vec![
                "event-details",
                "orn:github.event:octo-org/hello-world:nope",
            ],
            "is not indexed",
        ),
        (
            vec!["event-details", "orn:github.repo:a/b"],
            "expected a GitHub event RID",
        ),
        (vec!["add-repo", "a/b/c"], "is not a repository"),
    ] {
        let mut full = args.clone();
        let base = api.base();
        full.extend(["--data-dir", data_dir, "--api", &base]);
        let out = run(&full).await;
        assert!(!out.status.success(), "{args:?}");
        assert!(stderr(&out).contains(needle), "{args:?}: {}", stderr(&out));
        assert!(out.stdout.is_empty(), "{args:?}");
    }
    let out = run(&[
        "show-events",
        "octo-org/hello-world",
        "--limit",
        "0",
        "--data-dir",
        data_dir,
        "--api",
        &nobody,
    ])
    .await;
    assert!(
        stderr(&out).contains("0 is not in 1..=100"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        store.index.counts().unwrap().repositories,
        2,
        "nothing was added"
    );
    drop(api);

    // No store at all, nothing answering.
    let empty = tempfile::tempdir().unwrap();
    let out = run(&[
        "summary",
        "--data-dir",
        empty.path().to_str().unwrap(),
        "--api",
        &nobody,
    ])
    .await;
    assert!(
        stderr(&out).contains("there is no store at"),
        "{}",
        stderr(&out)
    );
    assert!(
        !empty.path().join("db").exists(),
        "a read does not create a store"
    );

    // Something else answers on the API address.
    let other =
        warp::any().map(|| warp::reply::with_status("nope", warp::http::StatusCode::NOT_FOUND));
    let (addr, server) = warp::serve(other).bind_ephemeral(([127, 0, 0, 1], 0));
    let other = tokio::spawn(server);
    let out = run(&[
        "summary",
        "--data-dir",
        data_dir,
        "--api",
        &format!("http://{addr}"),
    ])
    .await;
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("answers, but not as koi-github-indexer's API"),
        "{}",
        stderr(&out)
    );
    other.abort();
}

/// Issue 12: `tail` follows the live stream and prints each newly indexed event once, filtered; `--json` prints
/// the stream's JSON (the row plus `repo`).
#[tokio::test]
async fn tail_follows_new_events_as_they_are_indexed() {
    use tokio::io::AsyncBufReadExt as _;
    let store = Store::with_fixtures();
    let api = store.serve();
    let data_dir = store.data_dir();
    let mut child = tokio::process::Command::new(BIN)
        .args(["tail", "--json", "--type", "push", "--api", &api.base()])
        .args(["--data-dir", data_dir.to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    // Let it connect, then index a push and an issue.
    tokio::time::sleep(std::time::Duration::from_millis(800)).await;
    let bundles = index_support::fixture_bundles();
    let push = bundles
        .iter()
        .find(|b| b.contents["webhook_event_type"] == "push")
        .unwrap();
    let mut fresh = push.clone();
    fresh.manifest.rid =
        koi_github_indexer::protocol::Rid::parse("orn:github.event:octo-org/hello-world:tailed-1")
            .unwrap();
    store.index.apply_bundle(&fresh).unwrap();
    let line = tokio::time::timeout(std::time::Duration::from_secs(10), lines.next_line())
        .await
        .expect("a line within 10 s")
        .unwrap()
        .expect("tail still runs");
    let row: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(
        row["event_rid"],
        "orn:github.event:octo-org/hello-world:tailed-1"
    );
    assert_eq!(row["repo"], "octo-org/hello-world");
    assert_eq!(row["event_type"], "push");
    child.kill().await.unwrap();
}

/// Issue 25, bug 1: with the daemon stopped, the CLI opens the store with the config's settings, not the defaults.
/// On a store kept with `index.keep_contents = false`, `export` is refused with the API's own message, and leaves
/// no file behind.
#[tokio::test]
async fn a_stopped_store_is_read_with_the_configs_settings() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = koi_github_indexer::storage::open(
            &dir.path().join("db"),
            koi_github_indexer::storage::StoreOptions::default(),
        )
        .unwrap();
        let index = koi_github_indexer::index::Index::open_with(
            &store.db,
            koi_github_indexer::index::IndexOptions {
                keep_contents: false,
                ..Default::default()
            },
        )
        .unwrap();
        for b in index_support::fixture_bundles() {
            index.apply_bundle(&b).unwrap();
        }
        store.db.flush().unwrap();
    }
    let nobody = closed_port();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[node]\ndata_dir = \"{}\"\n\n[first_contact]\nurl = \"http://127.0.0.1:8080/koi-net\"\n\
             rid = \"orn:koi-net.node:coordinator+7538f71072bc0505382389554aaff429b269546acf27178a028ef5ee26f4cc50\"\n\n\
             [api]\nlisten = \"{}\"\n\n[index]\nkeep_contents = false\n",
            dir.path().display(),
            nobody.trim_start_matches("http://")
        ),
    )
    .unwrap();
    let out_file = dir.path().join("backup.ndjson");
    let out = run(&[
        "export",
        "--out",
        out_file.to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
    ])
    .await;
    assert!(
        !out.status.success(),
        "export must be refused: {}",
        stderr(&out)
    );
    let expected = koi_github_indexer::index::IndexError::ContentsNotKept.to_string();
    assert!(stderr(&out).contains(&expected), "{}", stderr(&out));
    assert!(!out_file.exists(), "no file is left behind");
    // The rows are all there: the refusal is about the contents only.
    let listed = stdout(&run(&["list-repos", "--config", config.to_str().unwrap()]).await);
    assert!(listed.contains("octo-org/hello-world"), "{listed}");
}

/// `--api` alone is enough to ask a running daemon: no config file is needed (issue 25).
#[tokio::test]
async fn api_alone_needs_no_config_file() {
    let store = Store::with_fixtures();
    let api = store.serve();
    let empty = tempfile::tempdir().unwrap();
    let out = tokio::process::Command::new(BIN)
        .args(["list-repos", "--api", &api.base()])
        .current_dir(empty.path())
        .env_remove("KOI_GITHUB_INDEXER_CONFIG")
        .output()
        .await
        .unwrap();
    assert!(stdout(&out).contains("octo-org/hello-world"));
    // Without --api either, the error says what was tried and what to pass.
    let out = tokio::process::Command::new(BIN)
        .args(["list-repos"])
        .current_dir(empty.path())
        .env_remove("KOI_GITHUB_INDEXER_CONFIG")
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("no configuration file found") && stderr(&out).contains("--api"),
        "{}",
        stderr(&out)
    );
}

/// `import --data-dir NEWDIR` works while a daemon answers: NEWDIR is not the daemon's store (issue 25). Importing
/// into the daemon's own store is refused, saying why.
#[tokio::test]
async fn import_into_another_data_dir_works_while_a_daemon_runs() {
    let store = Store::with_fixtures();
    let api = store.serve();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("export.ndjson");
    stdout(
        &run(&[
            "export",
            "--out",
            file.to_str().unwrap(),
            "--api",
            &api.base(),
            "--data-dir",
            store.data_dir().to_str().unwrap(),
        ])
        .await,
    );
    let new_dir = dir.path().join("new");
    let out = run(&[
        "import",
        "--in",
        file.to_str().unwrap(),
        "--data-dir",
        new_dir.to_str().unwrap(),
        "--api",
        &api.base(),
    ])
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(new_dir.join("db").exists());
    let own = run(&[
        "import",
        "--in",
        file.to_str().unwrap(),
        "--data-dir",
        store.data_dir().to_str().unwrap(),
        "--api",
        &api.base(),
    ])
    .await;
    assert!(!own.status.success());
    assert!(stderr(&own).contains("in use"), "{}", stderr(&own));
}

/// Each command's help lists only the flags it uses (issue 25).
#[tokio::test]
async fn help_lists_only_the_flags_a_command_uses() {
    for (command, absent) in [
        ("export", "--json"),
        ("import", "--json"),
        ("tail", "--data-dir"),
    ] {
        let help = stdout(&run(&[command, "--help"]).await);
        assert!(
            !help.contains(absent),
            "`{command} --help` lists {absent}:\n{help}"
        );
    }
    let help = stdout(&run(&["list-repos", "--help"]).await);
    assert!(
        help.contains("--json") && help.contains("--data-dir"),
        "{help}"
    );
}
