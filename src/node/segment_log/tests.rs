use super::*;

fn payload(i: u64) -> Vec<u8> {
    format!("entry {i} ")
        .repeat(1 + i as usize % 7)
        .into_bytes()
}

fn waiting(log: &SegmentLog) -> Vec<(u64, Vec<u8>)> {
    log.read(usize::MAX, |_| false)
        .into_iter()
        .map(|(seq, bytes)| (seq, bytes.unwrap()))
        .collect()
}

#[test]
fn entries_wait_in_order_until_removed_and_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let (log, recovery) = SegmentLog::open(dir.path()).unwrap();
    assert_eq!(recovery.waiting, 0);
    let numbers = log.append(&[payload(1), payload(2), payload(3)]).unwrap();
    assert_eq!(numbers, vec![1, 2, 3]);
    log.remove(&[2]).unwrap();
    let replaced = log.replace(1, &payload(4)).unwrap();
    assert_eq!(replaced, 4);
    log.sync().unwrap();
    let expected = vec![(3, payload(3)), (4, payload(4))];
    assert_eq!(waiting(&log), expected);
    assert_eq!(log.read(1, |seq| seq == 3)[0].0, 4);
    drop(log);

    let (log, recovery) = SegmentLog::open(dir.path()).unwrap();
    assert_eq!(recovery.waiting, 2);
    assert_eq!(waiting(&log), expected);
    // Numbers go on from where they were.
    assert_eq!(log.append(&[payload(5)]).unwrap(), vec![5]);
}

#[test]
fn a_torn_last_write_is_cut_off_and_nothing_before_it_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = SegmentLog::open(dir.path()).unwrap();
    log.append(&[payload(1), payload(2)]).unwrap();
    log.sync().unwrap();
    drop(log);
    let path = segment_path(dir.path(), 0);
    let whole = std::fs::metadata(&path).unwrap().len();
    // Half a record at the end, as a crash in the middle of a write leaves it.
    let mut torn = Vec::new();
    encode_record(&mut torn, ENTRY, 3, &payload(3));
    let file = File::options().append(true).open(&path).unwrap();
    std::io::Write::write_all(&mut &file, &torn[..torn.len() / 2]).unwrap();

    let (log, recovery) = SegmentLog::open(dir.path()).unwrap();
    assert_eq!(recovery.torn_bytes, (torn.len() / 2) as u64);
    assert!(recovery.damaged.is_empty());
    assert_eq!(std::fs::metadata(&path).unwrap().len(), whole);
    assert_eq!(waiting(&log), vec![(1, payload(1)), (2, payload(2))]);
}

#[test]
fn a_damaged_record_is_an_error_for_that_entry_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = SegmentLog::open(dir.path()).unwrap();
    log.append(&[payload(1), payload(2)]).unwrap();
    // Flip a byte of the first entry's payload behind the log's back.
    let path = segment_path(dir.path(), 0);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[HEADER + 1] ^= 0xff;
    std::fs::write(&path, &bytes).unwrap();
    let read = log.read(usize::MAX, |_| false);
    assert!(matches!(read[0].1, Err(ReadError::Damaged { seq: 1, .. })));
    assert_eq!(read[1].1.as_ref().unwrap(), &payload(2));
}

#[test]
fn drained_segments_are_deleted_and_a_long_waiting_entry_does_not_keep_them() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = SegmentLog::open(dir.path()).unwrap();
    let big = vec![7u8; 512 * 1024];
    // One entry that waits throughout, then many that come and go.
    let stuck = log.append(&[b"waiting for a neighbour".to_vec()]).unwrap()[0];
    let mut peak = 0;
    for _ in 0..200 {
        let numbers = log.append(std::slice::from_ref(&big)).unwrap();
        log.remove(&numbers).unwrap();
        peak = peak.max(log.segments());
    }
    let max = Limits::default().max_segments;
    assert!(peak <= max + 1, "{peak} segments");
    let files = std::fs::read_dir(dir.path()).unwrap().count();
    assert!(files <= max + 1, "{files} files");
    assert!(
        !segment_path(dir.path(), 0).exists(),
        "the entry moved on and its first segment went"
    );
    assert_eq!(
        waiting(&log),
        vec![(stuck, b"waiting for a neighbour".to_vec())]
    );
    drop(log);
    let (log, recovery) = SegmentLog::open(dir.path()).unwrap();
    assert_eq!(recovery.waiting, 1);
    log.remove(&[stuck]).unwrap();
    // Nothing waits: only a short newest segment may stay.
    assert!(log.segments() <= 1);
    drop(log);
    let (log, _) = SegmentLog::open(dir.path()).unwrap();
    assert!(log.is_empty());
}

#[test]
fn a_copy_left_by_a_crash_during_a_move_is_read_once() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = SegmentLog::open(dir.path()).unwrap();
    log.append(&[payload(1)]).unwrap();
    log.sync().unwrap();
    drop(log);
    // The same entry in a newer segment, as a move that crashed before deleting the old segment leaves it.
    let mut copy = Vec::new();
    encode_record(&mut copy, ENTRY, 1, &payload(1));
    std::fs::write(segment_path(dir.path(), 1), &copy).unwrap();
    let (log, recovery) = SegmentLog::open(dir.path()).unwrap();
    assert_eq!(recovery.waiting, 1);
    log.remove(&[1]).unwrap();
    assert!(log.is_empty());
    // The old segment held nothing waiting any more: it is gone.
    assert!(!segment_path(dir.path(), 0).exists());
}

#[test]
fn damage_inside_an_older_segment_is_reported_and_the_rest_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let tiny = Limits {
        segment_bytes: 1,
        max_segments: 100,
        drained_bytes: 0,
    };
    let (log, _) = SegmentLog::open_with(dir.path(), tiny).unwrap();
    // One entry per segment.
    for i in 1..=3 {
        log.append(&[payload(i)]).unwrap();
    }
    log.sync().unwrap();
    drop(log);
    let path = segment_path(dir.path(), 1);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[3] ^= 0xff; // inside the header's number: the record fails its check
    std::fs::write(&path, &bytes).unwrap();
    let (log, recovery) = SegmentLog::open_with(dir.path(), tiny).unwrap();
    assert_eq!(recovery.damaged.len(), 1);
    assert_eq!(recovery.damaged[0].0, path);
    assert_eq!(recovery.damaged[0].2, bytes.len() as u64);
    assert_eq!(waiting(&log), vec![(1, payload(1)), (3, payload(3))]);
}

#[derive(Debug, Clone)]
enum Op {
    Append(Vec<u8>),
    /// Removes the waiting entries whose index (in order) is a multiple of `n`.
    Remove(usize),
    /// Replaces the oldest waiting entry.
    Replace(u8),
    Reopen,
}

fn op() -> impl proptest::strategy::Strategy<Value = Op> {
    use proptest::prelude::*;
    prop_oneof![
        4 => (1usize..6).prop_map(|n| Op::Append(vec![n as u8; n * 40])),
        3 => (1usize..4).prop_map(Op::Remove),
        1 => any::<u8>().prop_map(Op::Replace),
        1 => Just(Op::Reopen),
    ]
}

proptest::proptest! {
    /// Whatever the appends, removals, replacements and restarts, with segments small enough that they are
    /// started, moved and deleted all the time: the log holds exactly what a plain ordered map would, and
    /// never more than `max_segments + 1` files.
    #[test]
    fn the_log_is_an_ordered_map_that_survives_reopening(ops in proptest::collection::vec(op(), 1..80)) {
        let dir = tempfile::tempdir().unwrap();
        let limits = Limits { segment_bytes: 300, max_segments: 3, drained_bytes: 100 };
        let (mut log, _) = SegmentLog::open_with(dir.path(), limits).unwrap();
        let mut model: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
        for op in ops {
            match op {
                Op::Append(bytes) => {
                    let numbers = log.append(&[bytes.clone(), bytes.clone()]).unwrap();
                    for n in numbers {
                        proptest::prop_assert!(model.keys().all(|k| *k < n), "numbers increase");
                        model.insert(n, bytes.clone());
                    }
                }
                Op::Remove(every) => {
                    let gone: Vec<u64> = model.keys().copied().step_by(every).collect();
                    log.remove(&gone).unwrap();
                    for n in gone {
                        model.remove(&n);
                    }
                }
                Op::Replace(byte) => {
                    if let Some(&old) = model.keys().next() {
                        let new = log.replace(old, &[byte; 30]).unwrap();
                        model.remove(&old);
                        model.insert(new, vec![byte; 30]);
                    }
                }
                Op::Reopen => {
                    log.sync().unwrap();
                    drop(log);
                    let (reopened, recovery) = SegmentLog::open_with(dir.path(), limits).unwrap();
                    proptest::prop_assert_eq!(recovery.torn_bytes, 0);
                    proptest::prop_assert!(recovery.damaged.is_empty());
                    log = reopened;
                }
            }
            let expected: Vec<(u64, Vec<u8>)> = model.clone().into_iter().collect();
            proptest::prop_assert_eq!(waiting(&log), expected);
            proptest::prop_assert_eq!(log.len(), model.len());
            let files = std::fs::read_dir(dir.path()).unwrap().count();
            proptest::prop_assert!(files <= limits.max_segments + 1, "{} files", files);
        }
    }
}
