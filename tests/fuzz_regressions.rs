//! The fuzz targets' inputs, replayed in the ordinary suite without cargo-fuzz: every input a fuzzer once crashed
//! on (`tests/fixtures/fuzz/<target>/`, kept after the fix) and every seed the corpora start from. Each goes
//! through the same entry point as its fuzz target (`src/fuzzing.rs`), so a fixed finding stays fixed.

use std::path::{Path, PathBuf};

use koi_github_indexer::fuzzing::{self, TARGETS};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// Runs `data` through target `name` (the canonical JSON target against serde_jcs, as in `fuzz/`).
fn run(name: &str, data: &[u8]) {
    if name == "canonical_json" {
        fuzzing::canonical_json(data, |value| serde_jcs::to_vec(value).ok());
        return;
    }
    let (_, target) = TARGETS
        .iter()
        .find(|(n, _)| *n == name)
        .unwrap_or_else(|| panic!("no fuzz target `{name}`"));
    target(data);
}

#[test]
fn every_input_a_fuzzer_found_stays_fixed() {
    let root = fixtures().join("fuzz");
    let mut replayed = 0;
    for dir in std::fs::read_dir(&root).unwrap().flatten() {
        let name = dir.file_name().to_string_lossy().into_owned();
        if !dir.path().is_dir() {
            continue;
        }
        assert!(
            TARGETS.iter().any(|(n, _)| *n == name),
            "tests/fixtures/fuzz/{name}/ names no fuzz target"
        );
        for input in std::fs::read_dir(dir.path()).unwrap().flatten() {
            let data = std::fs::read(input.path()).unwrap();
            eprintln!("{name}: {}", input.file_name().to_string_lossy());
            run(&name, &data);
            replayed += 1;
        }
    }
    assert!(
        replayed > 0,
        "no regression inputs under {}",
        root.display()
    );
}

#[test]
fn every_seed_passes_its_target() {
    let seeds = fuzzing::seeds(&fixtures());
    for (name, _) in TARGETS {
        let count = seeds.iter().filter(|(n, _)| n == name).count();
        assert!(count > 0, "no seeds for `{name}`");
    }
    for (name, data) in &seeds {
        run(name, data);
    }
}

/// `scripts/fuzz.sh` writes the seed corpora with this (`KOI_FUZZ_CORPUS=DIR`, run with `--ignored`).
#[test]
#[ignore]
fn write_seed_corpus() {
    let dir = PathBuf::from(std::env::var_os("KOI_FUZZ_CORPUS").expect("KOI_FUZZ_CORPUS"));
    for (n, (name, data)) in fuzzing::seeds(&fixtures()).into_iter().enumerate() {
        let target = dir.join(name);
        std::fs::create_dir_all(&target).unwrap();
        std::fs::write(target.join(format!("seed-{n:04}")), data).unwrap();
    }
}
