//! The systemd unit passes `systemd-analyze verify` and keeps its sandbox: runs `scripts/verify-systemd.sh` with
//! ExecStart pointed at the binary cargo built for this test.
//!
//! Needs `systemd-analyze` (Debian package `systemd`). Without it this test fails and says how to install it;
//! `.ci/run` runs the script, which installs it, before the tests.

use std::path::Path;
use std::process::Command;

#[test]
fn systemd_unit_passes_systemd_analyze_verify() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let have_analyzer = Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        have_analyzer,
        "systemd-analyze is not installed, so the systemd unit cannot be checked. Install it with \
         `apt-get update && apt-get install -y --no-install-recommends systemd`, or run \
         `scripts/verify-systemd.sh` once as root (it installs it)."
    );
    let output = Command::new("bash")
        .arg(root.join("scripts/verify-systemd.sh"))
        .env("KOI_INDEXER_BIN", env!("CARGO_BIN_EXE_koi-github-indexer"))
        .current_dir(root)
        .output()
        .expect("run scripts/verify-systemd.sh");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "scripts/verify-systemd.sh failed:\n{stderr}{}",
        String::from_utf8_lossy(&output.stdout)
    );
    assert!(stderr.contains("OK"), "{stderr}");
}

#[test]
fn unit_keeps_the_settings_operations_rely_on() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let unit = std::fs::read_to_string(root.join("systemd/koi-github-indexer.service"))
        .expect("read the unit");
    let lines: Vec<&str> = unit.lines().map(str::trim).collect();
    for setting in [
        "Type=notify",
        "DynamicUser=yes",
        "StateDirectory=koi-github-indexer",
        "ConfigurationDirectory=koi-github-indexer",
        "EnvironmentFile=/etc/koi-github-indexer/env",
        "ExecStart=/usr/local/bin/koi-github-indexer run --config /etc/koi-github-indexer/config.toml",
        "Restart=on-failure",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "PrivateTmp=yes",
        "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
        "CapabilityBoundingSet=",
        "UMask=0077",
    ] {
        assert!(lines.contains(&setting), "the unit lost `{setting}`");
    }
    let settings: Vec<&str> = lines
        .iter()
        .copied()
        .filter(|l| !l.starts_with('#'))
        .collect();
    assert!(
        !settings
            .iter()
            .any(|l| l.starts_with("Environment=") || l.to_ascii_lowercase().contains("password")),
        "no password in the unit: it belongs in the EnvironmentFile"
    );
}
