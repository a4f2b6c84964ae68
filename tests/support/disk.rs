//! Bytes a directory takes on disk, and this process's peak memory and CPU time, for the benchmarks.

/// The total size of the files below `path` (0 for what cannot be read).
pub fn dir_size(path: &std::path::Path) -> u64 {
    std::fs::read_dir(path)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => dir_size(&e.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        })
        .unwrap_or(0)
}

/// This process's peak resident set (`VmHWM`), in bytes.
#[allow(dead_code)] // not every bench that includes this file reports memory
pub fn peak_rss() -> u64 {
    peak_rss_of("self")
}

/// This process's CPU time so far (user and system, all threads), in seconds.
#[allow(dead_code)]
pub fn cpu_seconds() -> f64 {
    cpu_seconds_of("self")
}

/// The peak resident set of process `pid` (a number, or `self`), in bytes; 0 if it cannot be read.
pub fn peak_rss_of(pid: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .unwrap_or(0)
        * 1024
}

/// The CPU time of process `pid` (a number, or `self`) so far, user and system, all threads, in seconds, from
/// `/proc/<pid>/stat`; 0 if it cannot be read.
pub fn cpu_seconds_of(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The fields after the command name (in parentheses, which may hold spaces): utime and stime are the 12th and
    // 13th, in clock ticks (100 a second on Linux).
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}
