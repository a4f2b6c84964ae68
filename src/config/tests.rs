use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;

const MINIMAL: &str = r#"
[first_contact]
url = "http://127.0.0.1:8080/koi-net"
rid = "orn:koi-net.node:coordinator+7538f71072bc0505382389554aaff429b269546acf27178a028ef5ee26f4cc50"
"#;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, Path::new("/etc/koi/config.toml"))
}

/// `config.toml.example` is valid, every value in it is the default, and it mentions every optional key.
#[test]
fn the_example_file_documents_the_defaults() {
    let text = include_str!("../../config.toml.example");
    let example = parse(text).unwrap();
    let defaults = parse(MINIMAL).unwrap();
    let sections = |c: &Config| {
        format!(
            "{:?}\n{:?}\n{:?}\n{:?}\n{:?}\n{:?}\n{:?}",
            c.node, c.poll, c.api, c.index, c.pipeline, c.storage, c.log
        )
    };
    assert_eq!(sections(&example), sections(&defaults));
    assert!(
        example.warnings().iter().any(|w| w.contains("placeholder")),
        "the example's first contact is flagged until it is set"
    );
    assert!(defaults.warnings().is_empty());
    for optional in [
        "# cron = ",
        "# retention = ",
        "# [[action]]",
        "# secret_env = ",
        "# max_age = ",
        "# token_env = ",
        "# repos = ",
        "# [sink.nats]",
        "# subject_prefix = ",
        "# include_contents = ",
    ] {
        assert!(text.contains(optional), "{optional}");
    }
}

#[test]
fn every_key_but_first_contact_has_a_default() {
    let c = parse(MINIMAL).unwrap();
    assert_eq!(c.node.name, "github_indexer");
    assert_eq!(
        c.node.data_dir,
        PathBuf::from("/var/lib/koi-github-indexer")
    );
    assert_eq!(c.node.key_password_env, "KOI_KEY_PASSWORD");
    assert_eq!(c.poll.interval, Duration::from_secs(5));
    assert_eq!(c.poll.timeout, Duration::from_secs(5));
    assert_eq!(c.poll.limit, 1000);
    assert_eq!(c.poll.max_response, 64 * 1024 * 1024);
    assert_eq!(c.pipeline.max_buffered, 10_000);
    assert_eq!(c.pipeline.dead_letters, 1000);
    assert_eq!(c.pipeline.shutdown_timeout, Duration::from_secs(10));
    assert_eq!(c.storage.cache, 64 * 1024 * 1024);
    let sized = parse(&format!("[storage]\ncache = \"16 MiB\"\n{MINIMAL}")).unwrap();
    assert_eq!(sized.storage.cache, 16 * 1024 * 1024);
    assert_eq!(c.api.listen.to_string(), "127.0.0.1:8004");
    assert_eq!(c.index.rid_types.len(), 2);
    assert_eq!(c.log.format, LogFormat::Text);
    assert!(c.warnings().is_empty(), "{:?}", c.warnings());
    let slow = parse(&format!("[poll]\ntimeout = \"30s\"\n{MINIMAL}")).unwrap();
    assert!(slow.warnings().iter().any(|w| w.contains("poll.timeout")));
}

#[test]
fn relative_data_dir_is_relative_to_the_config_file() {
    let c = parse(&format!("[node]\ndata_dir = \"state\"\n{MINIMAL}")).unwrap();
    assert_eq!(c.node.data_dir, PathBuf::from("/etc/koi/state"));
}

#[test]
fn errors_name_the_key_and_the_fix() {
    let cases = [
        (
            format!("[poll]\nintervall = \"5s\"\n{MINIMAL}"),
            "intervall",
        ),
        (
            format!("[poll]\ninterval = \"5 parsecs\"\n{MINIMAL}"),
            "not a duration",
        ),
        (
            format!("[poll]\ncron = \"every tuesday\"\n{MINIMAL}"),
            "poll.cron",
        ),
        (format!("[log]\nlevel = \"loud\"\n{MINIMAL}"), "log.level"),
        (
            format!("[storage]\ncache = \"lots\"\n{MINIMAL}"),
            "not a size",
        ),
        (
            format!("[poll]\nmax_response = 10\n{MINIMAL}"),
            "poll.max_response",
        ),
        (
            format!("[pipeline]\nmax_buffered = 0\n{MINIMAL}"),
            "pipeline.max_buffered",
        ),
        ("[node]\nname = \"x\"\n".to_owned(), "first_contact"),
        (MINIMAL.replace("http://", "ftp://"), "first_contact.url"),
        (MINIMAL.replace("+7538", "+zz38"), "first_contact.rid"),
        (
            format!("[index]\nretention = \"0s\"\n{MINIMAL}"),
            "index.retention",
        ),
        (
            format!("[api]\nlisten = \"localhost\"\n{MINIMAL}"),
            "listen",
        ),
    ];
    for (text, needle) in cases {
        let err = parse(&text).unwrap_err().to_string();
        assert!(err.contains(needle), "expected `{needle}` in: {err}");
        assert!(err.contains("/etc/koi/config.toml"), "{err}");
    }
}

const ACTION: &str = r#"
[[action]]
name = "deploy-bot"
url = "https://hooks.example.com/koi"
secret_env = "KOI_TEST_ACTION_SECRET_SURELY_UNSET"
repos = ["octo-org/hello-world", "rust-lang/*"]
event_types = ["push"]
"#;

#[test]
fn actions_parse_with_defaults_and_bad_ones_name_the_action_and_the_fix() {
    let c = parse(&format!("{MINIMAL}{ACTION}")).unwrap();
    let a = &c.actions[0];
    assert_eq!(a.name, "deploy-bot");
    assert_eq!(a.timeout, Duration::from_secs(10));
    assert_eq!(a.min_backoff, Duration::from_secs(1));
    assert_eq!(a.max_backoff, Duration::from_secs(60));
    assert_eq!(a.max_age, Duration::from_secs(24 * 3600));
    assert_eq!((a.keep_delivered, a.keep_failed), (1000, 1000));
    assert_eq!(a.filter().repos.0, ["octo-org/hello-world", "rust-lang/*"]);
    assert_eq!(c.index.history, 10);
    // PATH is always set: the password is found, and the action's secret is the one missing.
    let mut c = c;
    c.node.key_password_env = "PATH".into();
    let err = c.read_secrets().unwrap_err().to_string();
    assert!(
        err.contains("deploy-bot") && err.contains("KOI_TEST_ACTION_SECRET_SURELY_UNSET"),
        "{err}"
    );
    let cases = [
        (ACTION.replace("deploy-bot", "deploy bot"), "`name`"),
        (
            ACTION.replace("https://hooks.example.com/koi", "ftp://x"),
            "`url`",
        ),
        (
            ACTION.replace("KOI_TEST_ACTION_SECRET_SURELY_UNSET", "not a var"),
            "`secret_env`",
        ),
        (ACTION.replace("rust-lang/*", "rust lang"), "`repos`"),
        (ACTION.replace("[\"push\"]", "[\"\"]"), "`event_types`"),
        (format!("{ACTION}max_age = \"0s\"\n"), "`max_age`"),
        (format!("{ACTION}min_backoff = \"2m\"\n"), "`min_backoff`"),
        (format!("{ACTION}{ACTION}"), "named twice"),
        (format!("{ACTION}colour = \"red\"\n"), "colour"),
    ];
    for (action, needle) in cases {
        let err = parse(&format!("{MINIMAL}{action}"))
            .unwrap_err()
            .to_string();
        assert!(err.contains(needle), "expected `{needle}` in: {err}");
    }
    let err = parse(&format!("[index]\nhistory = 0\n{MINIMAL}"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("index.history"), "{err}");
}

#[test]
fn cron_and_retention_parse() {
    let c = parse(&format!(
        "[poll]\ncron = \"*/5 * * * * *\"\n[index]\nretention = \"90d\"\n{MINIMAL}"
    ))
    .unwrap();
    assert_eq!(c.poll.cron.as_deref(), Some("*/5 * * * * *"));
    assert_eq!(c.index.retention, Some(Duration::from_secs(90 * 86400)));
}

#[test]
fn missing_password_variable_names_the_variable() {
    let mut c = parse(MINIMAL).unwrap();
    c.node.key_password_env = "KOI_TEST_SURELY_UNSET_VAR".into();
    let err = c.read_secrets().unwrap_err().to_string();
    assert!(err.contains("KOI_TEST_SURELY_UNSET_VAR"), "{err}");
    c.node.key_password_env = "PATH".into();
    c.api.token_env = Some("KOI_TEST_SURELY_UNSET_TOKEN".into());
    let err = c.read_secrets().unwrap_err().to_string();
    assert!(
        err.contains("KOI_TEST_SURELY_UNSET_TOKEN") && err.contains("api.token_env"),
        "{err}"
    );
}

#[test]
fn unusable_data_dir_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, "x").unwrap();
    let mut c = parse(MINIMAL).unwrap();
    c.node.data_dir = file.join("sub");
    let err = c.prepare_data_dir().unwrap_err().to_string();
    assert!(err.contains("node.data_dir"), "{err}");
}

/// Each common mistake gets the line to write instead, naming the key once.
#[test]
fn common_mistakes_get_a_suggestion() {
    let err = parse(&format!("[poll]\ntimeout = 5\n{MINIMAL}"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("\"5s\"") && err.contains("timeout"), "{err}");

    let c = parse(&format!("[api]\nlisten = \"localhost:8010\"\n{MINIMAL}")).unwrap();
    assert_eq!(c.api.listen.to_string(), "127.0.0.1:8010");
    let err = parse(&format!("[api]\nlisten = \"indexer.lan:8010\"\n{MINIMAL}"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("127.0.0.1:8004") && err.contains("listen"),
        "{err}"
    );

    let err = parse(&format!("[poll]\nintervall = \"5s\"\n{MINIMAL}"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("did you mean `interval`?"), "{err}");
    let err = parse(&format!("[poll]\ncolour = \"red\"\n{MINIMAL}"))
        .unwrap_err()
        .to_string();
    assert!(
        !err.contains("did you mean"),
        "no suggestion for a stranger: {err}"
    );

    let err = parse(&format!("[log]\nlevel = \"loud\"\n{MINIMAL}"))
        .unwrap_err()
        .to_string();
    assert_eq!(err.matches("log.level").count(), 1, "{err}");
    assert!(err.contains("loud") && err.contains("debug"), "{err}");
}

#[test]
fn the_examples_placeholder_and_password_are_refused() {
    let example = parse(include_str!("../../config.toml.example")).unwrap();
    let secrets = |password: &str| Secrets {
        key_password: password.to_owned(),
        action_secrets: Vec::new(),
        api_token: None,
        nats_token: None,
    };
    let err = example
        .refuse_placeholders(&secrets("good"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("first_contact.rid") && err.contains("placeholder"),
        "{err}"
    );
    let real = parse(MINIMAL).unwrap();
    assert!(real.refuse_placeholders(&secrets("good")).is_ok());
    let err = real
        .refuse_placeholders(&secrets(EXAMPLE_PASSWORD))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("KOI_KEY_PASSWORD") && err.contains("change-me"),
        "{err}"
    );
}

#[test]
fn the_nats_sink_has_defaults_and_its_mistakes_name_the_key() {
    let c = parse(&format!(
        "{MINIMAL}\n[sink.nats]\nservers = [\"nats://127.0.0.1:4222\"]\ncreds_file = \"nats.creds\"\n"
    ))
    .unwrap();
    let n = c.sink.nats.as_ref().unwrap();
    assert_eq!(
        (n.stream.as_str(), n.subject_prefix.as_str()),
        ("GITHUB_EVENTS", "github")
    );
    assert_eq!((n.replicas, n.max_in_flight), (3, 256));
    assert_eq!(n.duplicate_window, Duration::from_secs(120));
    assert!(!n.include_contents && n.max_age.is_none());
    assert_eq!(
        n.creds_file.as_deref(),
        Some(Path::new("/etc/koi/nats.creds")),
        "relative to the config"
    );
    assert!(c.index_options().sink_log);
    assert!(!parse(MINIMAL).unwrap().index_options().sink_log);
    for (keys, key, says) in [
        ("servers = []", "sink.nats.servers", "is empty"),
        (
            "servers = [\"http://x:1\"]",
            "sink.nats.servers",
            "not a NATS server URL",
        ),
        (
            "servers = [\"nats://a:4222\"]\nstream = \"a.b\"",
            "sink.nats.stream",
            "not a stream name",
        ),
        (
            "servers = [\"nats://a:4222\"]\nsubject_prefix = \"gh.*\"",
            "sink.nats.subject_prefix",
            "not a subject prefix",
        ),
        (
            "servers = [\"nats://a:4222\"]\nreplicas = 7",
            "sink.nats.replicas",
            "1 to 5",
        ),
        (
            "servers = [\"nats://a:4222\"]\nmax_in_flight = 0",
            "sink.nats.max_in_flight",
            "at least 1",
        ),
        (
            "servers = [\"nats://a:4222\"]\ntoken_env = \"T\"\ncreds_file = \"c\"",
            "sink.nats",
            "choose one",
        ),
    ] {
        let err = parse(&format!("{MINIMAL}\n[sink.nats]\n{keys}\n"))
            .unwrap_err()
            .to_string();
        assert!(err.contains(key) && err.contains(says), "{keys}: {err}");
    }
    let err = parse(&format!("{MINIMAL}\n[index]\nrepos = [\"not a repo\"]\n"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("index.repos") && err.contains("not a repo"),
        "{err}"
    );
    let c = parse(&format!(
        "{MINIMAL}\n[index]\nrepos = [\"octo-org/*\", \"rust-lang/rust\"]\n"
    ))
    .unwrap();
    assert_eq!(c.index_options().repos.0, ["octo-org/*", "rust-lang/rust"]);
}
