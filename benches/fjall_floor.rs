//! The storage proposal of issue 10, measured: the writes of `benches/sled_floor.rs` in `fjall`, an LSM-tree
//! engine whose memory is a set budget (a block cache and a write buffer), instead of sled. The daemon does not use
//! fjall; this bench only gives the numbers a decision would need.
//!
//! ```sh
//! cargo bench --bench fjall_floor                                # 100,000 events
//! FJALL_FLOOR_EVENTS=1000000 cargo bench --bench fjall_floor
//! FJALL_FLOOR_CACHE_MIB=16 FJALL_FLOOR_WRITE_BUFFER_MIB=16 cargo bench --bench fjall_floor   # the defaults
//! FJALL_FLOOR_BATCH=64 cargo bench --bench fjall_floor           # events per batch (default 256)
//! FJALL_FLOOR_JOURNAL_MIB=512 cargo bench --bench fjall_floor    # the journals' total (default 32; fjall's, 512)
//! FJALL_FLOOR_MEMTABLE_MIB=4 cargo bench --bench fjall_floor     # each partition's memtable (default fjall's, 16)
//! ```
//!
//! Per event, as the sled floor: a 1,100-byte held value and a 220-byte row under the event's RID, a stream entry
//! (sequence number → RID), five 20-byte index keys with empty values, two hot counters; ten partitions (sled's
//! trees). One atomic write batch per 256 events, then the journal synced to disk (`fdatasync`), as the writer
//! flushes after each transaction. Values are incompressible bytes, as the held value is mostly zstd output, and
//! fjall's own compression is off. It reports wall time and the process's CPU time per event (fjall flushes and
//! compacts on threads of its own), the store on disk, peak RSS, and the time to open the store again and read.

#[path = "../tests/support/disk.rs"]
mod disk;

use std::time::Instant;

use fjall::{CompressionType, Config, PartitionCreateOptions, PersistMode};

/// Events per batch, as the writer's chunks; `FJALL_FLOOR_BATCH` sets another.
const PER_BATCH: u64 = 256;

fn env_number(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

/// `len` bytes that no compressor can shrink (a fixed xorshift sequence).
fn incompressible(len: usize, mut state: u64) -> Vec<u8> {
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

fn main() {
    // `cargo test --all-targets` runs this once, small, as a smoke test.
    let benching = std::env::args().any(|a| a == "--bench");
    let events = env_number("FJALL_FLOOR_EVENTS").unwrap_or(if benching { 100_000 } else { 2_000 });
    let per_batch = env_number("FJALL_FLOOR_BATCH")
        .filter(|b| *b > 0)
        .unwrap_or(PER_BATCH);
    let cache_mib = env_number("FJALL_FLOOR_CACHE_MIB").unwrap_or(16);
    let write_buffer_mib = env_number("FJALL_FLOOR_WRITE_BUFFER_MIB")
        .unwrap_or(16)
        .max(1);
    // Journals are kept until the memtables they hold are flushed: their total bounds the disk taken by what is
    // not in the trees yet (and the replay on the next open). fjall refuses less than 24 MiB.
    let journal_mib = env_number("FJALL_FLOOR_JOURNAL_MIB").unwrap_or(32).max(24);
    let memtable_mib = env_number("FJALL_FLOOR_MEMTABLE_MIB")
        .unwrap_or(16)
        .clamp(1, 1024) as u32;
    let dir = tempfile::tempdir().expect("temporary directory");
    let open = || {
        let keyspace = Config::new(dir.path())
            .cache_size(cache_mib << 20)
            .max_write_buffer_size(write_buffer_mib << 20)
            .max_journaling_size(journal_mib << 20)
            .open()
            .expect("open fjall");
        let partitions: Vec<_> = (0..10)
            .map(|i| {
                keyspace
                    .open_partition(
                        &format!("t{i}"),
                        PartitionCreateOptions::default()
                            .compression(CompressionType::None)
                            .max_memtable_size(memtable_mib << 20),
                    )
                    .expect("partition")
            })
            .collect();
        (keyspace, partitions)
    };
    let (keyspace, partitions) = open();
    let held = incompressible(1100, 0x9e37_79b9_7f4a_7c15);
    let row = incompressible(220, 0x2545_f491_4f6c_dd1d);
    let cpu_before = disk::cpu_seconds();
    let start = Instant::now();
    let mut first = 0;
    while first < events {
        let end = (first + per_batch).min(events);
        let mut batch = keyspace.batch();
        for n in first..end {
            let rid = format!("orn:github.event:bench-org/repo-{:02}:delivery-{n}", n % 20);
            batch.insert(&partitions[0], rid.as_bytes(), held.as_slice());
            batch.insert(&partitions[1], rid.as_bytes(), row.as_slice());
            batch.insert(&partitions[2], n.to_be_bytes(), rid.as_bytes());
            let time = (u64::MAX - n).to_be_bytes();
            for index in &partitions[3..8] {
                let key = [7u32.to_be_bytes().as_slice(), &time, &n.to_be_bytes()].concat();
                batch.insert(index, key, []);
            }
            batch.insert(&partitions[8], "count", n.to_be_bytes());
            batch.insert(&partitions[9], "seq", n.to_be_bytes());
        }
        batch.commit().expect("commit");
        keyspace
            .persist(PersistMode::SyncData)
            .expect("sync the journal");
        first = end;
    }
    let elapsed = start.elapsed();
    let cpu = disk::cpu_seconds() - cpu_before;
    let on_disk = disk::dir_size(dir.path());
    drop(partitions);
    drop(keyspace);

    let reopened = Instant::now();
    let (_keyspace, partitions) = open();
    let last = format!(
        "orn:github.event:bench-org/repo-{:02}:delivery-{}",
        (events - 1) % 20,
        events - 1
    );
    let found = partitions[0].get(last.as_bytes()).expect("read").is_some();
    let reopen = reopened.elapsed();
    assert!(found, "the last event is there after reopening");
    println!(
        "fjall floor: {events} events × (10 inserts + 2 counters), 20-byte index keys, {per_batch} per batch, cache \
         {cache_mib} MiB, write buffer {write_buffer_mib} MiB, memtables {memtable_mib} MiB, journals {journal_mib} MiB: {:.1} µs/event wall = {:.0} events/s, {:.1} µs/event \
         CPU; store {:.0} B/event on disk; peak RSS {:.1} MB; reopen and first read {:.0} ms",
        elapsed.as_secs_f64() * 1e6 / events as f64,
        events as f64 / elapsed.as_secs_f64(),
        cpu * 1e6 / events as f64,
        on_disk as f64 / events as f64,
        disk::peak_rss() as f64 / 1e6,
        reopen.as_secs_f64() * 1e3,
    );
}
