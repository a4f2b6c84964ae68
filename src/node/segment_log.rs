//! A durable queue of byte records in append-only segment files: what the inbox is stored in.
//!
//! Why not a sled tree: an inbox entry is written once, read once and removed. In sled that is an insert and a
//! removal of a value of about 1.5 KB, each copying a leaf of the tree, and both stay in sled's log as garbage
//! until sled cleans the segment they are in. Here an entry is part of one `write`, a removal is a few bytes, and
//! a segment file is deleted whole once every entry in it is done.
//!
//! # Layout
//! Files `<segment number, 20 digits>.seg` in one directory, oldest first. Each holds records:
//!
//! `[kind: u8][seq: u64 LE][payload length: u32 LE][CRC-32 of the 13 bytes before it and the payload: u32 LE][payload]`
//!
//! * kind [`ENTRY`]: the payload is an entry, `seq` its number (increasing in arrival order);
//! * kind [`REMOVED`]: the payload is the numbers of entries that are done, as `u64 LE` each (`seq` is 0).
//!
//! # Recovery
//! [`SegmentLog::open`] reads every segment in order: an entry is waiting until a later removal names it. A record
//! cut short or failing its check at the end of the newest segment is a write torn by a crash, and the file is cut
//! back to before it. Anywhere else it is damage: the rest of that segment cannot be delimited, so it is skipped,
//! and [`Recovery::damaged`] says where.
//!
//! # Why deleting segments is safe
//! Segments are deleted oldest first, once none of their entries waits. A removal is always written to the newest
//! segment, so it names entries of its own segment or older ones: deleting in order never deletes a removal whose
//! entry is still on disk, and a deletion lost in a crash brings back only entries whose removals survive. An
//! entry that waits long (for a neighbour) would keep every newer segment on disk; so when more than
//! [`Limits::max_segments`] segments exist, the oldest one's waiting entries are copied to the newest, synced, and it goes.
//! A crash between the copy and the deletion leaves two copies with one number, which recovery reads as one.

use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

/// Record kind: an entry.
const ENTRY: u8 = 1;
/// Record kind: entries that are done.
const REMOVED: u8 = 2;
/// `kind`, `seq`, `length`, `crc`.
pub(crate) const HEADER: usize = 1 + 8 + 4 + 4;
/// A record longer than this is damage, not data (an inbox entry is a few KB; a poll response is capped far
/// below this by `poll.max_response`).
const MAX_PAYLOAD: u32 = 256 * 1024 * 1024;

/// When segments are started and deleted.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// A segment takes appends until it is this long.
    pub segment_bytes: u64,
    /// More segments than this: the oldest one's waiting entries are moved to the newest (see the module docs).
    pub max_segments: usize,
    /// The newest segment is deleted as soon as nothing waits in it once it is this long; smaller, it is kept
    /// for the next appends, so a quiet node does not create and delete a file on every poll.
    pub drained_bytes: u64,
}

impl Default for Limits {
    /// 8 MiB segments (about 5,000 prepared GitHub events), at most 8 of them behind one long-waiting entry.
    fn default() -> Self {
        Limits {
            segment_bytes: 8 * 1024 * 1024,
            max_segments: 8,
            drained_bytes: 1024 * 1024,
        }
    }
}
/// Entry numbers never come near this (a billion a second for 290 years); a record claiming more is damage, and
/// refusing it keeps the numbers after it from overflowing.
const MAX_SEQ: u64 = 1 << 63;
/// Segment file extension.
const EXTENSION: &str = "seg";

/// A segment log problem.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// A file operation failed.
    #[error("{action} {}: {source}", path.display())]
    Io {
        /// What was being done ("cannot write to", …).
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The system's error.
        source: io::Error,
    },
}

/// Why a record could not be read back.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// Reading the file failed.
    #[error(transparent)]
    Log(#[from] LogError),
    /// The bytes on disk are not what was written.
    #[error("record {seq} in {} fails its check (the file was changed or damaged)", path.display())]
    Damaged {
        /// The record's number.
        seq: u64,
        /// Its segment file.
        path: PathBuf,
    },
}

/// What [`SegmentLog::open`] found.
#[derive(Debug, Default)]
pub struct Recovery {
    /// Entries waiting.
    pub waiting: usize,
    /// Bytes of a torn last write that were cut off the newest segment.
    pub torn_bytes: u64,
    /// Segments with damage before their end: the file, the offset of the damage, the bytes skipped after it.
    pub damaged: Vec<(PathBuf, u64, u64)>,
}

/// Where a waiting entry is.
#[derive(Debug, Clone, Copy)]
struct Location {
    segment: u64,
    offset: u64,
    len: u32,
}

#[derive(Debug)]
struct Segment {
    path: PathBuf,
    file: Arc<File>,
    /// Bytes written (the next append's offset).
    len: u64,
    /// Entries in it still waiting.
    waiting: usize,
}

#[derive(Debug, Default)]
struct State {
    /// By number, oldest first; the last is the one appended to.
    segments: BTreeMap<u64, Segment>,
    /// Waiting entries by number: arrival order.
    waiting: BTreeMap<u64, Location>,
    next_seq: u64,
    next_segment: u64,
}

/// The log. Appends, removals and reads may come from any thread; reads do not block appends while they read.
#[derive(Debug)]
pub struct SegmentLog {
    dir: PathBuf,
    limits: Limits,
    state: Mutex<State>,
}

impl SegmentLog {
    /// Opens the log in `dir` (created if missing) and recovers what it holds.
    pub fn open(dir: &Path) -> Result<(SegmentLog, Recovery), LogError> {
        SegmentLog::open_with(dir, Limits::default())
    }

    /// [`SegmentLog::open`] with other limits.
    pub fn open_with(dir: &Path, limits: Limits) -> Result<(SegmentLog, Recovery), LogError> {
        let io_error = |action, path: &Path| {
            let path = path.to_owned();
            move |source| LogError::Io {
                action,
                path,
                source,
            }
        };
        crate::storage::create_private_dir(dir).map_err(io_error("cannot create", dir))?;
        let numbers = segment_numbers(dir).map_err(io_error("cannot list", dir))?;
        let mut state = State::default();
        let mut recovery = Recovery::default();
        let newest = numbers.last().copied();
        for number in numbers {
            let path = segment_path(dir, number);
            let file = File::options()
                .read(true)
                .write(true)
                .open(&path)
                .map_err(io_error("cannot open", &path))?;
            let file_len = file
                .metadata()
                .map_err(io_error("cannot read", &path))?
                .len();
            // Streamed, not read whole: recovery costs a buffer, whatever the segments hold.
            let reader = io::BufReader::with_capacity(64 * 1024, &file);
            let offset = state
                .replay(number, reader, file_len)
                .map_err(io_error("cannot read", &path))?;
            let mut len = file_len;
            if offset < file_len {
                let rest = file_len - offset;
                if Some(number) == newest {
                    file.set_len(offset)
                        .and_then(|()| file.sync_data())
                        .map_err(io_error("cannot cut a torn write off", &path))?;
                    recovery.torn_bytes = rest;
                    len = offset;
                } else {
                    recovery.damaged.push((path.clone(), offset, rest));
                }
            }
            let waiting = state
                .waiting
                .values()
                .filter(|l| l.segment == number)
                .count();
            state.segments.insert(
                number,
                Segment {
                    path,
                    file: Arc::new(file),
                    len,
                    waiting,
                },
            );
            state.next_segment = number + 1;
        }
        state.next_seq = state.next_seq.max(1);
        recovery.waiting = state.waiting.len();
        let log = SegmentLog {
            dir: dir.to_owned(),
            limits,
            state: Mutex::new(state),
        };
        // Segments left with nothing waiting (a deletion lost in a crash) go now.
        log.delete_drained(&mut log.lock())?;
        Ok((log, recovery))
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere while holding the lock leaves the state as consistent as any write it was making: the
        // maps are updated only after the file write succeeded.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends entries, in order, in one write; returns their numbers. Not synced: call [`SegmentLog::sync`]
    /// before telling anyone they are stored.
    pub fn append(&self, payloads: &[Vec<u8>]) -> Result<Vec<u64>, LogError> {
        if payloads.is_empty() {
            return Ok(Vec::new());
        }
        let mut state = self.lock();
        let first = state.next_seq;
        let mut buffer =
            Vec::with_capacity(payloads.iter().map(|p| HEADER + p.len()).sum::<usize>());
        for (i, payload) in payloads.iter().enumerate() {
            encode_record(&mut buffer, ENTRY, first + i as u64, payload);
        }
        let (segment, offset) = self.write(&mut state, &buffer)?;
        let mut at = offset;
        let mut numbers = Vec::with_capacity(payloads.len());
        for (i, payload) in payloads.iter().enumerate() {
            let seq = first + i as u64;
            state.waiting.insert(
                seq,
                Location {
                    segment,
                    offset: at,
                    len: payload.len() as u32,
                },
            );
            at += (HEADER + payload.len()) as u64;
            numbers.push(seq);
        }
        state.next_seq = first + payloads.len() as u64;
        if let Some(s) = state.segments.get_mut(&segment) {
            s.waiting += payloads.len();
        }
        Ok(numbers)
    }

    /// Appends `payload` as a new entry and removes entry `old`, in one write; returns the new entry's number.
    pub fn replace(&self, old: u64, payload: &[u8]) -> Result<u64, LogError> {
        let mut state = self.lock();
        let seq = state.next_seq;
        let mut buffer = Vec::with_capacity(2 * HEADER + payload.len() + 8);
        encode_record(&mut buffer, ENTRY, seq, payload);
        encode_record(&mut buffer, REMOVED, 0, &old.to_le_bytes());
        let (segment, offset) = self.write(&mut state, &buffer)?;
        state.next_seq = seq + 1;
        state.waiting.insert(
            seq,
            Location {
                segment,
                offset,
                len: payload.len() as u32,
            },
        );
        if let Some(s) = state.segments.get_mut(&segment) {
            s.waiting += 1;
        }
        Self::forget(&mut state, &[old]);
        self.delete_drained(&mut state)?;
        Ok(seq)
    }

    /// Marks entries done. Not synced: a removal lost in a crash makes its entries wait again, which the caller
    /// must be able to bear (the inbox is: indexing is idempotent).
    pub fn remove(&self, numbers: &[u64]) -> Result<(), LogError> {
        if numbers.is_empty() {
            return Ok(());
        }
        let mut state = self.lock();
        let mut payload = Vec::with_capacity(numbers.len() * 8);
        for n in numbers {
            payload.extend_from_slice(&n.to_le_bytes());
        }
        let mut buffer = Vec::with_capacity(HEADER + payload.len());
        encode_record(&mut buffer, REMOVED, 0, &payload);
        self.write(&mut state, &buffer)?;
        Self::forget(&mut state, numbers);
        self.delete_drained(&mut state)
    }

    /// Up to `max` waiting entries, oldest first, leaving out those `skip` says to. The files are read without
    /// holding the lock.
    pub fn read(
        &self,
        max: usize,
        skip: impl Fn(u64) -> bool,
    ) -> Vec<(u64, Result<Vec<u8>, ReadError>)> {
        let wanted: Vec<(u64, Location, Arc<File>)> = {
            let state = self.lock();
            state
                .waiting
                .iter()
                .filter(|(seq, _)| !skip(**seq))
                .take(max)
                .filter_map(|(seq, location)| {
                    let segment = state.segments.get(&location.segment)?;
                    Some((*seq, *location, Arc::clone(&segment.file)))
                })
                .collect()
        };
        wanted
            .into_iter()
            .map(|(seq, location, file)| (seq, read_entry(&file, &self.dir, seq, location)))
            .collect()
    }

    /// Makes every append so far durable.
    pub fn sync(&self) -> Result<(), LogError> {
        let newest = {
            let state = self.lock();
            state
                .segments
                .values()
                .next_back()
                .map(|s| (Arc::clone(&s.file), s.path.clone()))
        };
        match newest {
            Some((file, path)) => file.sync_data().map_err(|source| LogError::Io {
                action: "cannot sync",
                path,
                source,
            }),
            None => Ok(()),
        }
    }

    /// Entries waiting.
    pub fn len(&self) -> usize {
        self.lock().waiting.len()
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Segment files on disk (tests and tools).
    pub fn segments(&self) -> usize {
        self.lock().segments.len()
    }

    /// Writes `bytes` at the end of the newest segment (a new one when it is full); returns the segment and the
    /// offset written at. On failure the segment is cut back, so a failed write leaves nothing behind.
    fn write(&self, state: &mut State, bytes: &[u8]) -> Result<(u64, u64), LogError> {
        let full = match state.segments.values().next_back() {
            Some(newest) => newest.len >= self.limits.segment_bytes,
            None => true,
        };
        if full {
            self.start_segment(state)?;
        }
        let Some((&number, segment)) = state.segments.iter_mut().next_back() else {
            return Err(LogError::Io {
                action: "cannot write to",
                path: self.dir.clone(),
                source: io::Error::other("no segment to write to"),
            });
        };
        let offset = segment.len;
        if let Err(source) = segment.file.write_all_at(bytes, offset) {
            let _ = segment.file.set_len(offset);
            return Err(LogError::Io {
                action: "cannot write to",
                path: segment.path.clone(),
                source,
            });
        }
        segment.len += bytes.len() as u64;
        Ok((number, offset))
    }

    /// Starts a new newest segment: the previous one is synced first (a sync then only has to cover the newest),
    /// and when there are too many, the oldest one's waiting entries move into the new one.
    fn start_segment(&self, state: &mut State) -> Result<(), LogError> {
        if let Some(previous) = state.segments.values().next_back() {
            previous.file.sync_data().map_err(|source| LogError::Io {
                action: "cannot sync",
                path: previous.path.clone(),
                source,
            })?;
        }
        let number = state.next_segment;
        let path = segment_path(&self.dir, number);
        let file = File::options()
            .read(true)
            .write(true)
            .create_new(true)
            // Events from the network, in flight: private to the daemon's user whatever the umask.
            .mode(0o600)
            .open(&path)
            .map_err(|source| LogError::Io {
                action: "cannot create",
                path: path.clone(),
                source,
            })?;
        sync_dir(&self.dir)?;
        state.next_segment = number + 1;
        state.segments.insert(
            number,
            Segment {
                path,
                file: Arc::new(file),
                len: 0,
                waiting: 0,
            },
        );
        if state.segments.len() > self.limits.max_segments {
            self.move_oldest(state)?;
        }
        Ok(())
    }

    /// Copies the oldest segment's waiting entries into the newest, syncs, and deletes the oldest.
    fn move_oldest(&self, state: &mut State) -> Result<(), LogError> {
        let Some((&oldest, segment)) = state.segments.iter().next() else {
            return Ok(());
        };
        let (file, path) = (Arc::clone(&segment.file), segment.path.clone());
        let moving: Vec<(u64, Location)> = state
            .waiting
            .iter()
            .filter(|(_, l)| l.segment == oldest)
            .map(|(seq, l)| (*seq, *l))
            .collect();
        let mut buffer = Vec::new();
        let mut payloads = Vec::with_capacity(moving.len());
        for (_, location) in &moving {
            // An entry that fails its check is moved as it is: whoever reads it is told.
            let record = read_record(&file, *location).map_err(|source| LogError::Io {
                action: "cannot read",
                path: path.clone(),
                source,
            })?;
            buffer.extend_from_slice(&record);
            payloads.push(location.len as usize);
        }
        let Some((&newest, target)) = state.segments.iter_mut().next_back() else {
            return Ok(());
        };
        let start = target.len;
        target
            .file
            .write_all_at(&buffer, start)
            .and_then(|()| target.file.sync_data())
            .map_err(|source| LogError::Io {
                action: "cannot write to",
                path: target.path.clone(),
                source,
            })?;
        target.len += buffer.len() as u64;
        target.waiting += moving.len();
        let mut at = start;
        for ((seq, _), len) in moving.iter().zip(payloads) {
            state.waiting.insert(
                *seq,
                Location {
                    segment: newest,
                    offset: at,
                    len: len as u32,
                },
            );
            at += (HEADER + len) as u64;
        }
        if let Some(s) = state.segments.get_mut(&oldest) {
            s.waiting = 0;
        }
        tracing::debug!(segment = %path.display(), entries = moving.len(), "inbox: moved long-waiting entries forward");
        self.delete_drained(state)
    }

    /// Forgets entries that are done.
    fn forget(state: &mut State, numbers: &[u64]) {
        for n in numbers {
            if let Some(location) = state.waiting.remove(n) {
                if let Some(segment) = state.segments.get_mut(&location.segment) {
                    segment.waiting = segment.waiting.saturating_sub(1);
                }
            }
        }
    }

    /// Deletes the oldest segments while nothing waits in them; the newest only once it is long enough (see
    /// [`Limits::drained_bytes`]).
    fn delete_drained(&self, state: &mut State) -> Result<(), LogError> {
        while let Some((&number, segment)) = state.segments.iter().next() {
            let newest = state.segments.len() == 1;
            // An empty newest segment stays: it is the one the next write goes to.
            if segment.waiting > 0
                || (newest && (segment.len == 0 || segment.len < self.limits.drained_bytes))
            {
                break;
            }
            std::fs::remove_file(&segment.path).map_err(|source| LogError::Io {
                action: "cannot delete",
                path: segment.path.clone(),
                source,
            })?;
            state.segments.remove(&number);
        }
        Ok(())
    }
}

fn segment_path(dir: &Path, number: u64) -> PathBuf {
    dir.join(format!("{number:020}.{EXTENSION}"))
}

fn sync_dir(dir: &Path) -> Result<(), LogError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|source| LogError::Io {
            action: "cannot sync the directory",
            path: dir.to_owned(),
            source,
        })
}

fn checksum(header: &[u8], payload: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(header);
    hasher.update(payload);
    hasher.finalize()
}

fn encode_record(out: &mut Vec<u8>, kind: u8, seq: u64, payload: &[u8]) {
    let start = out.len();
    out.push(kind);
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    let crc = checksum(&out[start..], payload);
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(payload);
}

/// The record at the start of `bytes`: kind, number and payload; `None` if it is cut short or fails its check.
fn parse_record(bytes: &[u8]) -> Option<(u8, u64, &[u8])> {
    let (kind, seq, len, crc) = parse_header(bytes.get(..HEADER)?)?;
    let payload = bytes.get(HEADER..HEADER + len as usize)?;
    (checksum(&bytes[..13], payload) == crc).then_some((kind, seq, payload))
}

/// Kind, number, payload length and CRC from a record header; `None` if it cannot be one.
fn parse_header(header: &[u8]) -> Option<(u8, u64, u32, u32)> {
    let kind = *header.first()?;
    let seq = u64::from_le_bytes(header.get(1..9)?.try_into().ok()?);
    let len = u32::from_le_bytes(header.get(9..13)?.try_into().ok()?);
    let crc = u32::from_le_bytes(header.get(13..17)?.try_into().ok()?);
    ((kind == ENTRY || kind == REMOVED) && len <= MAX_PAYLOAD && seq <= MAX_SEQ)
        .then_some((kind, seq, len, crc))
}

/// The next record from `reader`: its kind and number, its payload in `payload`. `None` if it is cut short or
/// fails its check; only other I/O failures are errors. `remaining` is what the file holds from the record on: a length field claiming more is a cut-short record, found
/// without allocating what it claims.
fn next_record(
    reader: &mut impl io::Read,
    payload: &mut Vec<u8>,
    remaining: u64,
) -> io::Result<Option<(u8, u64)>> {
    let cut_short = |e: io::Error| match e.kind() {
        io::ErrorKind::UnexpectedEof => Ok(None),
        _ => Err(e),
    };
    let mut header = [0u8; HEADER];
    if let Err(e) = reader.read_exact(&mut header) {
        return cut_short(e);
    }
    let Some((kind, seq, len, crc)) = parse_header(&header) else {
        return Ok(None);
    };
    if (HEADER as u64).saturating_add(u64::from(len)) > remaining {
        return Ok(None);
    }
    payload.clear();
    payload.resize(len as usize, 0);
    if let Err(e) = reader.read_exact(payload) {
        return cut_short(e);
    }
    Ok((checksum(&header[..13], payload) == crc).then_some((kind, seq)))
}

/// The whole record (header and payload) at `location`, unchecked.
fn read_record(file: &File, location: Location) -> io::Result<Vec<u8>> {
    let mut record = vec![0; HEADER + location.len as usize];
    file.read_exact_at(&mut record, location.offset)?;
    Ok(record)
}

/// The payload of entry `seq` at `location`, checked. `dir` names the file only in an error.
fn read_entry(file: &File, dir: &Path, seq: u64, location: Location) -> Result<Vec<u8>, ReadError> {
    let path = || segment_path(dir, location.segment);
    let mut record = read_record(file, location).map_err(|source| LogError::Io {
        action: "cannot read",
        path: path(),
        source,
    })?;
    match parse_record(&record) {
        Some((ENTRY, found, _)) if found == seq => {
            record.drain(..HEADER);
            Ok(record)
        }
        _ => Err(ReadError::Damaged { seq, path: path() }),
    }
}

/// The numbers of the segment files in `dir`, oldest first.
fn segment_numbers(dir: &Path) -> io::Result<Vec<u64>> {
    let mut numbers = Vec::new();
    for item in std::fs::read_dir(dir)? {
        let path = item?.path();
        if path.extension().and_then(|e| e.to_str()) != Some(EXTENSION) {
            continue;
        }
        if let Some(n) = path
            .file_stem()
            .and_then(|s| s.to_str())
            .and_then(|s| s.parse::<u64>().ok())
        {
            numbers.push(n);
        }
    }
    numbers.sort_unstable();
    Ok(numbers)
}

impl State {
    /// Reads segment `number`'s records into the state, up to `file_len` or the first record that does not read
    /// whole; returns where the whole records end.
    fn replay(&mut self, number: u64, mut reader: impl io::Read, file_len: u64) -> io::Result<u64> {
        let mut payload = Vec::new();
        let mut offset = 0u64;
        while offset < file_len {
            let Some((kind, seq)) = next_record(&mut reader, &mut payload, file_len - offset)?
            else {
                break;
            };
            match kind {
                ENTRY => {
                    let location = Location {
                        segment: number,
                        offset,
                        len: payload.len() as u32,
                    };
                    if let Some(moved) = self.waiting.insert(seq, location) {
                        // A copy made before a crash (module docs): the newer one stands.
                        if let Some(segment) = self.segments.get_mut(&moved.segment) {
                            segment.waiting = segment.waiting.saturating_sub(1);
                        }
                    }
                    self.next_seq = self.next_seq.max(seq.saturating_add(1));
                }
                _ => {
                    for done in payload.chunks_exact(8) {
                        let done = u64::from_le_bytes(done.try_into().unwrap_or_default());
                        // Numbers never go back, even when only a removal is left to name them.
                        self.next_seq = self.next_seq.max(done.saturating_add(1));
                        let Some(location) = self.waiting.remove(&done) else {
                            continue;
                        };
                        // This segment's own count is taken when it has been read.
                        if let Some(segment) = self.segments.get_mut(&location.segment) {
                            segment.waiting = segment.waiting.saturating_sub(1);
                        }
                    }
                }
            }
            offset += (HEADER + payload.len()) as u64;
        }
        Ok(offset)
    }
}

#[cfg(test)]
mod tests;
