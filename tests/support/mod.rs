//! Shared helpers for integration tests that run the real Python koi-net 2.1.2 (see `scripts/setup-python.sh`).
#![allow(dead_code)]

pub mod pynet;

use std::path::PathBuf;
use std::process::{Command, Output};

/// The virtual environment's Python. Panics, loudly and with the fix, when it is missing: these tests prove
/// interoperability with the real library and must not pass silently without it.
pub fn python() -> PathBuf {
    let venv = std::env::var_os("KOI_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv"));
    let python = venv.join("bin/python");
    if !python.exists() {
        panic!(
            "\n\n*** Python koi-net venv not found at {}.\n*** Run `scripts/setup-python.sh` (or `scripts/test.sh`, \
             which runs it) to install koi-net==2.1.2 for the interoperability tests.\n\n",
            venv.display()
        );
    }
    python
}

/// Path of a script under `tests/py/`.
pub fn py_script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/py")
        .join(name)
}

/// Runs `koi_tool.py` with `args`; returns the raw output.
pub fn koi_tool_output(args: &[&str], password: &str) -> Output {
    Command::new(python())
        .arg(py_script("koi_tool.py"))
        .args(args)
        .env("PRIV_KEY_PASSWORD", password)
        .output()
        .expect("run koi_tool.py")
}

/// Runs `koi_tool.py` and parses the JSON on the last line of its stdout (koi-net logs to stdout before it).
pub fn koi_tool(args: &[&str], password: &str) -> serde_json::Value {
    let out = koi_tool_output(args, password);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "koi_tool {args:?} failed:\nstdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let last = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .expect("JSON line from koi_tool");
    serde_json::from_str(last).expect("koi_tool JSON")
}
