//! `check-config` as the real binary: it decrypts the node key when there is one, so a wrong or empty password
//! fails there with the message `run` would give, instead of `OK`.

use std::process::Command;

use koi_github_indexer::protocol::NodeKey;

const BIN: &str = env!("CARGO_BIN_EXE_koi-github-indexer");

fn check(config: &std::path::Path, password: &str) -> (bool, String) {
    let out = Command::new(BIN)
        .args(["check-config", "--config"])
        .arg(config)
        .env("KOI_KEY_PASSWORD", password)
        .output()
        .expect("run the binary");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[test]
fn check_config_decrypts_the_key_like_run_does() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        "[node]\ndata_dir = \"data\"\n\n[first_contact]\nurl = \"http://127.0.0.1:8080/koi-net\"\n\
         rid = \"orn:koi-net.node:coordinator+7538f71072bc0505382389554aaff429b269546acf27178a028ef5ee26f4cc50\"\n",
    )
    .unwrap();
    // No key yet: the password cannot be checked, and `run` would create the key with it.
    let (ok, text) = check(&config, "right");
    assert!(ok, "{text}");
    std::fs::create_dir_all(dir.path().join("data")).unwrap();
    NodeKey::generate()
        .save(&dir.path().join("data/priv_key.pem"), "right")
        .unwrap();
    let (ok, text) = check(&config, "right");
    assert!(ok && text.contains("OK"), "{text}");
    for wrong in ["wrong", ""] {
        let (ok, text) = check(&config, wrong);
        assert!(!ok, "password `{wrong}` must fail: {text}");
        assert!(text.contains("could not be decrypted"), "{text}");
    }
}

fn run_in(dir: &std::path::Path, args: &[&str], env: &[(&str, &str)]) -> (bool, String) {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .current_dir(dir)
        .env_remove("KOI_GITHUB_INDEXER_CONFIG")
        .env("KOI_KEY_PASSWORD", "pw");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run the binary");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

const MINIMAL: &str = "[node]\ndata_dir = \"data\"\n\n[first_contact]\nurl = \"http://127.0.0.1:8080/koi-net\"\n\
    rid = \"orn:koi-net.node:coordinator+7538f71072bc0505382389554aaff429b269546acf27178a028ef5ee26f4cc50\"\n";

#[test]
fn without_config_it_looks_in_the_working_dir_then_the_environment_and_says_what_it_tried() {
    let empty = tempfile::tempdir().unwrap();
    let (ok, text) = run_in(empty.path(), &["check-config"], &[]);
    assert!(!ok);
    assert!(
        text.contains("./config.toml")
            && text.contains("$KOI_GITHUB_INDEXER_CONFIG (not set)")
            && text.contains("/etc/koi-github-indexer/config.toml"),
        "{text}"
    );
    let elsewhere = tempfile::tempdir().unwrap();
    let file = elsewhere.path().join("indexer.toml");
    std::fs::write(&file, MINIMAL).unwrap();
    let (ok, text) = run_in(
        empty.path(),
        &["check-config"],
        &[("KOI_GITHUB_INDEXER_CONFIG", file.to_str().unwrap())],
    );
    assert!(ok && text.contains("indexer.toml: OK"), "{text}");
    std::fs::write(empty.path().join("config.toml"), MINIMAL).unwrap();
    let (ok, text) = run_in(empty.path(), &["check-config"], &[]);
    assert!(
        ok && text.contains("config.toml: OK"),
        "./config.toml first: {text}"
    );
}

#[test]
fn an_os_error_is_said_once() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, text) = run_in(
        dir.path(),
        &["check-config", "--config", "missing.toml"],
        &[],
    );
    assert!(!ok);
    assert_eq!(text.matches("os error 2").count(), 1, "{text}");
}

#[test]
fn run_and_check_config_do_not_list_the_query_options() {
    let dir = tempfile::tempdir().unwrap();
    for command in ["run", "check-config"] {
        let (_, help) = run_in(dir.path(), &[command, "--help"], &[]);
        for option in ["--json", "--api", "--data-dir", "--verbose"] {
            assert!(
                !help.contains(option),
                "{command} --help lists {option}: {help}"
            );
        }
        assert!(help.contains("--config"), "{help}");
    }
    let (_, help) = run_in(dir.path(), &["list-repos", "--help"], &[]);
    for option in ["--json", "--api", "--data-dir", "--verbose", "--config"] {
        assert!(
            help.contains(option),
            "list-repos --help lists {option}: {help}"
        );
    }
}

#[test]
fn check_config_validates_actions_and_their_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    let base = "[node]\ndata_dir = \"data\"\n\n[first_contact]\nurl = \"http://127.0.0.1:8080/koi-net\"\n\
         rid = \"orn:koi-net.node:coordinator+7538f71072bc0505382389554aaff429b269546acf27178a028ef5ee26f4cc50\"\n\n\
         [[action]]\nname = \"deploy-bot\"\nurl = \"https://hooks.example.com/koi\"\nsecret_env = \"KOI_TEST_HOOK_SECRET\"\n";
    std::fs::write(&config, base).unwrap();
    let (ok, text) = run_in(
        dir.path(),
        &["check-config", "--config", "config.toml"],
        &[],
    );
    assert!(!ok, "{text}");
    assert!(
        text.contains("deploy-bot") && text.contains("KOI_TEST_HOOK_SECRET"),
        "{text}"
    );
    let (ok, text) = run_in(
        dir.path(),
        &["check-config", "--config", "config.toml"],
        &[("KOI_TEST_HOOK_SECRET", "s3cret")],
    );
    assert!(ok, "{text}");
    std::fs::write(&config, format!("{base}repos = [\"not a repo\"]\n")).unwrap();
    let (ok, text) = run_in(
        dir.path(),
        &["check-config", "--config", "config.toml"],
        &[("KOI_TEST_HOOK_SECRET", "s3cret")],
    );
    assert!(
        !ok && text.contains("`repos`") && text.contains("deploy-bot"),
        "{text}"
    );
}

/// `check-config` refuses what cannot work: the example's placeholder first contact, and its example password.
#[test]
fn the_example_config_and_password_are_refused_not_ok() {
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config.toml.example");
    let (ok, text) = check(&example, "a-real-password");
    assert!(!ok, "{text}");
    assert!(
        text.contains("placeholder") && text.contains("first_contact.rid"),
        "{text}"
    );

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    let example_text = std::fs::read_to_string(&example).unwrap();
    let real = example_text.replace(
        &"0".repeat(64),
        "7538f71072bc0505382389554aaff429b269546acf27178a028ef5ee26f4cc50",
    );
    std::fs::write(&config, real).unwrap();
    let (ok, text) = check(&config, "change-me");
    assert!(!ok, "{text}");
    assert!(text.contains("change-me"), "{text}");
}
