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
