//! The trust boundary (issue 24), against the real binary indexing from the real koi-net 2.1.2 coordinator and
//! sensor: what a web page, another local user or a peer's text can and cannot make the daemon do.
//!
//! - Host allow-list (DNS rebinding), Origin checks (cross-site WebSocket hijacking), JSON-only writes (CSRF) and
//!   the optional token, each refusal with its status and a JSON error naming the header and the setting; and
//!   the requests that must still pass (curl without an Origin, the CLI with and without a token).
//! - No secret of an action's URL (user-info, query, path) in `/actions`, the delivery log, the log or `/metrics`.
//! - Escape sequences from a peer shown, not obeyed, by `show-events` and `event-details`.
//! - File modes under umask 022, and the secrets gone from `/proc/PID/environ`.

mod support;

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::Output;
use std::time::Duration;

use serde_json::{json, Value};

use support::pynet::{fixture_items, Daemon, PyNode, PASSWORD};

const BIN: &str = env!("CARGO_BIN_EXE_koi-github-indexer");
const TOKEN: &str = "tok-3f9a8c1e-trust-boundary";
const ACTION_SECRET: &str = "hmac-secret-5d2e";
const EVIL_RID: &str = "orn:github.event:octo-org/hello-world:evil-1";

/// An HTTP/1.1 request with exactly these headers (plus `Connection: close`), read until the head and, unless
/// it upgraded, the whole body. Returns the status and the body.
fn request(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut text = format!("{method} {path} HTTP/1.1\r\n");
    for (name, value) in headers {
        text.push_str(&format!("{name}: {value}\r\n"));
    }
    if !headers
        .iter()
        .any(|(n, _)| n.eq_ignore_ascii_case("upgrade"))
    {
        text.push_str("Connection: close\r\n");
    }
    text.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    stream.write_all(text.as_bytes()).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(_) => break,
        }
        let head_done = got.windows(4).any(|w| w == b"\r\n\r\n");
        if head_done && got.starts_with(b"HTTP/1.1 101") {
            break;
        }
    }
    let text = String::from_utf8_lossy(&got).into_owned();
    let status = text.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// Asserts a JSON error with this status whose message holds every needle.
fn assert_refused(answer: &(u16, String), status: u16, needles: &[&str]) {
    assert_eq!(answer.0, status, "{answer:?}");
    let body: Value =
        serde_json::from_str(&answer.1).unwrap_or_else(|_| panic!("JSON: {answer:?}"));
    let message = body["error"].as_str().unwrap_or_default();
    for needle in needles {
        assert!(message.contains(needle), "`{needle}` in {message}");
    }
}

fn cli(config: &Path, args: &[&str], token: Option<&str>) -> Output {
    let mut command = std::process::Command::new(BIN);
    command.args(args).arg("--config").arg(config);
    command.env_remove("KOI_API_TOKEN");
    if let Some(token) = token {
        command.env("KOI_API_TOKEN", token);
    }
    command.env("KOI_KEY_PASSWORD", PASSWORD);
    command.env(ACTION_SECRET_ENV, ACTION_SECRET);
    command.output().expect("run the CLI")
}

const ACTION_SECRET_ENV: &str = "KOI_TEST_TRUST_ACTION_SECRET";

fn ok_stdout(out: &Output) -> String {
    assert!(
        out.status.success(),
        "exit {}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

/// A webhook receiver that answers every request with a 500 whose body echoes the request line (path and query
/// included), as some receivers do: the daemon must not store or log those.
fn echoing_receiver() -> u16 {
    support::stub_server(|line| {
        let body = format!("no route for {line}");
        format!(
            "HTTP/1.1 500 Internal Server Error\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        )
    })
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// Every file and directory below `dir` is private to its owner.
fn assert_private_tree(dir: &Path) {
    let mut seen = 0;
    let mut stack = vec![dir.to_owned()];
    while let Some(path) = stack.pop() {
        let m = mode(&path);
        assert_eq!(m & 0o077, 0, "{} has mode {m:04o}", path.display());
        seen += 1;
        if path.is_dir() {
            for entry in std::fs::read_dir(&path).unwrap() {
                stack.push(entry.unwrap().path());
            }
        }
    }
    assert!(seen > 3, "the store has files: {seen}");
}

#[test]
fn no_web_page_other_user_or_peer_text_can_turn_the_daemon_against_its_operator() {
    // As a shell started without systemd usually has it: new files readable by everyone.
    // SAFETY: umask only sets this process's file-creation mask; children (the daemon, the CLI) inherit it.
    unsafe {
        libc::umask(0o022);
    }
    let root = tempfile::tempdir().unwrap();
    let coordinator = PyNode::coordinator(root.path());
    let mut items = fixture_items();
    items.push(json!({
        "rid": EVIL_RID,
        "contents": {
            "webhook_event_type": "push",
            "repository": {"full_name": "octo-org/hello-world"},
            "sender": {"login": "mallory\u{1b}]0;pwned\u{7}"},
            "payload": {
                "ref": "refs/heads/main",
                "after": "e7e7e7e7e7e7e7e7e7e7e7e7e7e7e7e7e7e7e7e7",
                "sender": {"login": "mallory\u{1b}]0;pwned\u{7}"},
                "head_commit": {
                    "id": "e7e7e7e7e7e7e7e7e7e7e7e7e7e7e7e7e7e7e7e7",
                    "message": "\u{1b}[2Jcleared\r\nsecond line\u{9b}31m",
                },
            },
        },
    }));
    let total = items.len() as u64;
    let _sensor = PyNode::sensor_with_items(root.path(), &coordinator, &Value::Array(items));

    let echo_port = echoing_receiver();
    let closed_port = support::pynet::free_port();
    let echo_url = format!(
        "http://hookuser:pa55word@127.0.0.1:{echo_port}/services/T000/s3cretpath?token=t0k3nvalue"
    );
    let refused_url =
        format!("http://hookuser:pa55word@127.0.0.1:{closed_port}/services/T000/s3cretpath?token=t0k3nvalue");
    let action = |name: &str, url: &str| {
        format!(
            "[[action]]\nname = \"{name}\"\nurl = \"{url}\"\nsecret_env = \"{ACTION_SECRET_ENV}\"\n\
             timeout = \"500ms\"\nmin_backoff = \"100ms\"\nmax_backoff = \"300ms\"\n\n"
        )
    };
    let mut daemon = Daemon::start_with_env(
        root.path(),
        &coordinator,
        "allowed_hosts = [\"indexer.example.test\"]\ntoken_env = \"KOI_API_TOKEN\"\n",
        &format!(
            "{}{}",
            action("echo", &echo_url),
            action("refused", &refused_url)
        ),
        &[("KOI_API_TOKEN", TOKEN), (ACTION_SECRET_ENV, ACTION_SECRET)],
    );
    daemon.wait_until("every event is indexed", Duration::from_secs(90), |d| {
        d["events"].as_u64() == Some(total)
    });
    let api = daemon.api.clone();
    let host = ("Host", api.as_str());
    let bearer = format!("Bearer {TOKEN}");
    let auth = ("Authorization", bearer.as_str());
    const STATUS: &str = "/api/processor/github/status";

    // 1. Host: a rebound name, a missing Host, a name of the allow-list.
    assert_refused(
        &request(
            &api,
            "GET",
            STATUS,
            &[("Host", "evil.example:8004"), auth],
            "",
        ),
        403,
        &["`Host`", "evil.example", "api.allowed_hosts"],
    );
    assert_refused(&request(&api, "GET", STATUS, &[auth], ""), 403, &["`Host`"]);
    for path in [
        "/",
        "/assets/app.js",
        "/metrics",
        "/api/processor/github/export",
    ] {
        assert_eq!(
            request(&api, "GET", path, &[("Host", "rebound.example"), auth], "").0,
            403,
            "{path}"
        );
    }
    assert_eq!(
        request(
            &api,
            "GET",
            STATUS,
            &[("Host", "indexer.example.test"), auth],
            ""
        )
        .0,
        200
    );
    assert_eq!(
        request(&api, "GET", STATUS, &[("Host", "localhost:1"), auth], "").0,
        403,
        "loopback names only with the API's port"
    );

    // 2. The token: every route but /health and the page's own files.
    assert_refused(
        &request(&api, "GET", STATUS, &[host], ""),
        401,
        &["token", "Authorization: Bearer"],
    );
    assert_refused(
        &request(
            &api,
            "GET",
            STATUS,
            &[host, ("Authorization", "Bearer wrong")],
            "",
        ),
        401,
        &["token"],
    );
    assert_eq!(request(&api, "GET", "/metrics", &[host], "").0, 401);
    assert_eq!(
        request(&api, "GET", "/api/processor/github/export", &[host], "").0,
        401
    );
    for public in ["/api/processor/github/health", "/", "/assets/app.js"] {
        assert_eq!(request(&api, "GET", public, &[host], "").0, 200, "{public}");
    }
    // curl: no Origin, no Sec-Fetch-*, just the token.
    assert_eq!(request(&api, "GET", STATUS, &[host, auth], "").0, 200);

    // 3. The live stream from another origin: a WebSocket (not covered by CORS) and SSE.
    let ws = [
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ("Sec-WebSocket-Version", "13"),
    ];
    let ws_path = "/api/processor/github/stream/ws?after=0";
    let mut foreign_ws = vec![host, auth, ("Origin", "http://evil.example")];
    foreign_ws.extend(ws);
    assert_refused(
        &request(&api, "GET", ws_path, &foreign_ws, ""),
        403,
        &["`Origin`", "evil.example"],
    );
    let own_origin = format!("http://{api}");
    let mut own_ws = vec![host, auth, ("Origin", own_origin.as_str())];
    own_ws.extend(ws);
    assert_eq!(
        request(&api, "GET", ws_path, &own_ws, "").0,
        101,
        "the dashboard's own origin"
    );
    let mut no_origin_ws = vec![host, auth];
    no_origin_ws.extend(ws);
    assert_eq!(
        request(&api, "GET", ws_path, &no_origin_ws, "").0,
        101,
        "a client without a browser"
    );
    assert_eq!(
        request(
            &api,
            "GET",
            "/api/processor/github/stream?after=0",
            &[
                host,
                auth,
                ("Origin", "http://127.0.0.1:1"),
                ("Accept", "text/event-stream")
            ],
            ""
        )
        .0,
        403
    );

    // 4. Writes: a redelivery only as JSON, never from another site.
    // Every delivery of both actions, whatever its state: a refused request must not add one.
    let delivery_count = || -> u64 {
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
    };
    let mut id = None;
    for _ in 0..100 {
        let page = daemon
            .get("/api/processor/github/actions/echo/deliveries?limit=1")
            .unwrap_or(Value::Null);
        id = page[0]["id"].as_str().map(str::to_owned);
        if id.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let id = id.expect("the echo action has a delivery");
    let redeliver = format!("/api/processor/github/actions/echo/deliveries/{id}/redeliver");
    let count_before = delivery_count();
    let json_type = ("Content-Type", "application/json");
    assert_refused(
        &request(
            &api,
            "POST",
            &redeliver,
            &[host, auth, ("Content-Type", "text/plain")],
            "x",
        ),
        415,
        &["Content-Type: application/json", "text/plain"],
    );
    assert_refused(
        &request(&api, "POST", &redeliver, &[host, auth], ""),
        415,
        &["no content type"],
    );
    assert_refused(
        &request(
            &api,
            "POST",
            &redeliver,
            &[host, auth, json_type, ("Origin", "http://evil.example")],
            "{}",
        ),
        403,
        &["`Origin`"],
    );
    assert_refused(
        &request(
            &api,
            "POST",
            &redeliver,
            &[host, auth, json_type, ("Sec-Fetch-Site", "cross-site")],
            "{}",
        ),
        403,
        &["Sec-Fetch-Site"],
    );
    assert_eq!(
        request(&api, "POST", &redeliver, &[host, json_type], "{}").0,
        401
    );
    assert_refused(
        &request(
            &api,
            "DELETE",
            "/api/processor/github/repositories/a/b",
            &[host, auth],
            "",
        ),
        415,
        &["Content-Type"],
    );
    assert_eq!(
        delivery_count(),
        count_before,
        "no refused request queued a delivery"
    );
    assert_eq!(
        request(&api, "POST", &redeliver, &[host, auth, json_type], "").0,
        202
    );
    assert_eq!(
        request(
            &api,
            "POST",
            &redeliver,
            &[host, auth, json_type, ("Origin", own_origin.as_str())],
            "{}"
        )
        .0,
        202
    );
    let refused_metric = daemon.metric(
        "koi_indexer_api_requests_refused_total",
        &["reason=\"host\""],
    );
    assert!(
        refused_metric >= 5.0,
        "refusals are counted: {refused_metric}"
    );

    // 5. The CLI: with the token it works; without, it says what is missing.
    let repos = ok_stdout(&cli(&daemon.config, &["list-repos"], Some(TOKEN)));
    assert!(repos.contains("octo-org/hello-world"), "{repos}");
    let refused = cli(&daemon.config, &["list-repos"], None);
    assert!(!refused.status.success());
    let message = String::from_utf8_lossy(&refused.stderr);
    assert!(
        message.contains("token") && message.contains("401"),
        "{message}"
    );
    let checked = ok_stdout(&cli(&daemon.config, &["check-config"], Some(TOKEN)));
    assert!(checked.contains("API token: required"), "{checked}");

    // 6. Peer text in a terminal: shown escaped, never raw; --json stays exact.
    for args in [
        vec!["show-events", "octo-org/hello-world", "--limit", "100"],
        vec!["event-details", EVIL_RID],
    ] {
        let out = ok_stdout(&cli(&daemon.config, &args, Some(TOKEN)));
        assert!(
            !out.contains(['\u{1b}', '\u{7}', '\r', '\u{9b}']),
            "{args:?} printed a control character: {out:?}"
        );
        // The table may cut the summary before its escape; the details show it whole.
        if args[0] == "event-details" {
            assert!(out.contains("\\u{1b}"), "{args:?} shows the escape: {out}");
        }
    }
    let details = ok_stdout(&cli(
        &daemon.config,
        &["event-details", EVIL_RID, "--json"],
        Some(TOKEN),
    ));
    let details: Value = serde_json::from_str(&details).unwrap();
    let summary = details["summary"].as_str().unwrap();
    assert!(
        summary.contains('\u{1b}'),
        "JSON keeps the exact text: {summary:?}"
    );
    assert!(
        !summary.contains(['\r', '\n']),
        "a summary is one line: {summary:?}"
    );

    // 7. Secrets of the action URLs, after both actions failed at least once.
    daemon.wait_until("both actions have failed", Duration::from_secs(30), |_| {
        let list = daemon
            .get("/api/processor/github/actions")
            .unwrap_or(Value::Null);
        list.as_array()
            .is_some_and(|a| a.len() == 2 && a.iter().all(|a| a["last_error"].is_string()))
    });
    let actions = daemon.get_text("/api/processor/github/actions").unwrap();
    let listed: Value = serde_json::from_str(&actions).unwrap();
    assert_eq!(listed[0]["url"], format!("http://127.0.0.1:{echo_port}/…"));
    assert!(
        listed[0]["last_error"]
            .as_str()
            .unwrap()
            .contains("HTTP 500"),
        "{actions}"
    );
    let mut seen = vec![
        ("/actions", actions),
        ("/metrics", daemon.get_text("/metrics").unwrap()),
        ("the log", daemon.log()),
    ];
    for name in ["echo", "refused"] {
        seen.push((
            "a delivery log",
            daemon
                .get_text(&format!(
                    "/api/processor/github/actions/{name}/deliveries?limit=100"
                ))
                .unwrap(),
        ));
    }
    for (place, text) in &seen {
        for secret in [
            "pa55word",
            "hookuser",
            "s3cretpath",
            "t0k3nvalue",
            "/services/",
            TOKEN,
            ACTION_SECRET,
        ] {
            assert!(!text.contains(secret), "`{secret}` in {place}");
        }
    }
    assert!(seen[2].1.contains("HTTP 500"), "the log has the failures");

    // 8. The secrets are gone from the process's environment.
    let pid = daemon.pid().unwrap();
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    let environ = String::from_utf8_lossy(&environ);
    for secret in [PASSWORD, TOKEN, ACTION_SECRET] {
        assert!(
            !environ.contains(secret),
            "`{secret}` in /proc/{pid}/environ"
        );
    }

    // 9. Files: private whatever the umask, and an export too.
    let data = daemon.config.parent().unwrap().join("data");
    assert_eq!(mode(&data), 0o700);
    assert_private_tree(&data);
    let export = root.path().join("export.ndjson");
    ok_stdout(&cli(
        &daemon.config,
        &["export", "--out", export.to_str().unwrap()],
        Some(TOKEN),
    ));
    assert_eq!(mode(&export), 0o600);

    // 10. An existing data dir open to others is reported at start.
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    daemon.restart();
    daemon.wait_until("the daemon is back", Duration::from_secs(60), |d| {
        d["events"].as_u64() == Some(total)
    });
    let log = daemon.log();
    assert!(
        log.contains("open to other users") && log.contains("chmod 700"),
        "the start-up warns about the data dir's mode"
    );
}
