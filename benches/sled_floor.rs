//! sled's own floor for this index's write pattern: no parsing, no JSON, no inbox, only the inserts.
//!
//! ```sh
//! cargo bench --bench sled_floor                          # 100,000 events
//! SLED_FLOOR_EVENTS=1000000 cargo bench --bench sled_floor
//! SLED_FLOOR_KEYS=long cargo bench --bench sled_floor      # index keys as schema 4 wrote them
//! SLED_FLOOR_CONTENTS=log cargo bench --bench sled_floor   # contents in an append-only file, not in sled
//! SLED_FLOOR_CACHE_MIB=16 cargo bench --bench sled_floor    # sled's cache_capacity (default: the daemon's)
//! SLED_FLOOR_BATCH=64 cargo bench --bench sled_floor         # events per transaction (default 256)
//! SLED_FLOOR_SEGMENT_KIB=128 cargo bench --bench sled_floor  # sled's segment_size (default 512 KiB, sled's own)
//! ```
//!
//! Each event inserts what the index inserts for a new webhook event, with the same sizes: a 1.1 KB held value and
//! a 220 B row under its RID, a stream entry, five index entries (empty values; 20-byte `repo time seq` keys as
//! schema 5 writes them, or with `SLED_FLOOR_KEYS=long` the 90-byte `repo_rid ␀ time event_rid` of schema 4) and
//! two hot counters, over ten trees, 256 events per transaction and a flush after each, as the writer does. What it
//! measures is the rate the index can never beat on sled with this many keys per event (issue 10's notes).
//!
//! `SLED_FLOOR_CONTENTS=log` measures the storage proposal (README, Benchmarks): the held value in sled keeps only
//! the manifest and a 20-byte location (78 B), and the compressed contents (the other 1,022 B) are appended to a
//! file, one write and one `fdatasync` per transaction, before it commits.

#[path = "../tests/support/disk.rs"]
mod disk;

use std::io::Write;
use std::time::Instant;

use sled::transaction::ConflictableTransactionError;
use sled::Transactional;

/// Events per transaction (a flush after each), as the writer's chunks; `SLED_FLOOR_BATCH` sets another.
const PER_TRANSACTION: u64 = 256;

fn main() {
    // `cargo test --all-targets` runs this once, small, as a smoke test.
    let benching = std::env::args().any(|a| a == "--bench");
    let events: u64 = match std::env::var("SLED_FLOOR_EVENTS") {
        Ok(n) => n.parse().expect("SLED_FLOOR_EVENTS: a number"),
        Err(_) if benching => 100_000,
        Err(_) => 2_000,
    };
    let dir = tempfile::tempdir().expect("temporary directory");
    let open = || {
        sled::Config::new()
            .path(dir.path())
            .cache_capacity(
                std::env::var("SLED_FLOOR_CACHE_MIB")
                    .ok()
                    .and_then(|m| m.parse::<u64>().ok())
                    .map_or(koi_github_indexer::storage::DEFAULT_CACHE_BYTES, |m| {
                        m << 20
                    }),
            )
            .segment_size(
                std::env::var("SLED_FLOOR_SEGMENT_KIB")
                    .ok()
                    .and_then(|k| k.parse::<usize>().ok())
                    .map_or(512 << 10, |k| k << 10),
            )
            .open()
            .expect("open sled")
    };
    let db = open();
    let trees: Vec<sled::Tree> = (0..10)
        .map(|i| db.open_tree(format!("t{i}")).expect("tree"))
        .collect();
    let long_keys = std::env::var("SLED_FLOOR_KEYS").as_deref() == Ok("long");
    let per_transaction: u64 = std::env::var("SLED_FLOOR_BATCH")
        .ok()
        .and_then(|b| b.parse().ok())
        .filter(|b| *b > 0)
        .unwrap_or(PER_TRANSACTION);
    let contents_log = std::env::var("SLED_FLOOR_CONTENTS").as_deref() == Ok("log");
    let mut log = std::fs::File::create(dir.path().join("contents.log")).expect("contents log");
    let held = vec![7u8; if contents_log { 78 } else { 1100 }];
    let contents = vec![7u8; 1100 - 78];
    let row = vec![7u8; 220];
    let cpu_before = disk::cpu_seconds();
    let start = Instant::now();
    let mut first = 0;
    while first < events {
        let end = (first + per_transaction).min(events);
        if contents_log {
            let mut batch = Vec::with_capacity(contents.len() * per_transaction as usize);
            for _ in first..end {
                batch.extend_from_slice(&contents);
            }
            log.write_all(&batch).expect("append contents");
            log.sync_data().expect("sync contents");
        }
        (
            &trees[0], &trees[1], &trees[2], &trees[3], &trees[4], &trees[5], &trees[6], &trees[7],
            &trees[8], &trees[9],
        )
            .transaction(|(bundles, rows, stream, i1, i2, i3, i4, i5, count, seq)| {
                for n in first..end {
                    let rid = format!("orn:github.event:bench-org/repo-{:02}:delivery-{n}", n % 20);
                    bundles.insert(rid.as_bytes(), held.as_slice())?;
                    rows.insert(rid.as_bytes(), row.as_slice())?;
                    stream.insert(&n.to_be_bytes(), rid.as_bytes())?;
                    let time = (u64::MAX - n).to_be_bytes();
                    for tree in [i1, i2, i3, i4, i5] {
                        let key = if long_keys {
                            [
                                b"orn:github.repo:bench-org/repo-00\0".as_slice(),
                                &time,
                                rid.as_bytes(),
                            ]
                            .concat()
                        } else {
                            [7u32.to_be_bytes().as_slice(), &time, &n.to_be_bytes()].concat()
                        };
                        tree.insert(key, &[])?;
                    }
                    count.insert(b"count", &n.to_be_bytes())?;
                    seq.insert(b"seq", &n.to_be_bytes())?;
                }
                Ok::<_, ConflictableTransactionError<()>>(())
            })
            .expect("transaction");
        db.flush().expect("flush");
        first = end;
    }
    let elapsed = start.elapsed();
    let cpu = disk::cpu_seconds() - cpu_before;
    let live: u64 = trees
        .iter()
        .flat_map(|t| t.iter())
        .map(|kv| kv.map(|(k, v)| (k.len() + v.len()) as u64).unwrap_or(0))
        .sum();
    let on_disk = disk::dir_size(dir.path());
    drop(trees);
    drop(db);
    // sled replays its log since the last open on the first open after a run (README, Benchmarks).
    let reopened = Instant::now();
    let db = open();
    let last = format!(
        "orn:github.event:bench-org/repo-{:02}:delivery-{}",
        (events - 1) % 20,
        events - 1
    );
    let found = db
        .open_tree("t0")
        .and_then(|t| t.get(last.as_bytes()))
        .expect("read")
        .is_some();
    let reopen = reopened.elapsed();
    assert!(found, "the last event is there after reopening");
    println!(
        "sled floor: {events} events × (10 inserts + 2 counters), {} index keys, contents {}, {per_transaction} per \
         transaction: {:.1} µs/event = {:.0} events/s, {:.1} µs/event CPU; store {:.0} B/event on disk for {:.0} \
         B/event live in sled; peak RSS {:.1} MB; reopen and first read {:.0} ms",
        if long_keys { "long" } else { "20-byte" },
        if contents_log { "in a file" } else { "in sled" },
        elapsed.as_secs_f64() * 1e6 / events as f64,
        events as f64 / elapsed.as_secs_f64(),
        cpu * 1e6 / events as f64,
        on_disk as f64 / events as f64,
        live as f64 / events as f64,
        disk::peak_rss() as f64 / 1e6,
        reopen.as_secs_f64() * 1e3,
    );
}
