//! The webhook fixtures of `tests/fixtures/webhooks/` (GitHub's documented payload shapes), shared by the
//! benchmarks that need real-size events.

use std::path::{Path, PathBuf};

use serde_json::Value;

/// The fixture files, in name order.
pub fn fixture_files() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/webhooks");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("tests/fixtures/webhooks")
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    files
}

/// Each fixture's bundle contents (`webhook_event_type`, `repository`, `payload`).
pub fn fixture_contents() -> Vec<Value> {
    fixture_files()
        .iter()
        .map(|f| {
            let doc: Value = serde_json::from_slice(&std::fs::read(f).expect("read fixture"))
                .expect("fixture is JSON");
            doc["contents"].clone()
        })
        .collect()
}
