//! Random NEW/UPDATE/FORGET/prune sequences: afterwards every index entry matches a row (and the other way
//! round), the counters match, and the rows are exactly those a simple model of the dedupe rules predicts.

use super::*;
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    /// NEW or UPDATE of event `rid` (index into the universe) with contents variant `v` at manifest hour `h`.
    Apply {
        rid: usize,
        v: u8,
        h: u8,
    },
    Forget {
        rid: usize,
    },
    Prune {
        h: u8,
    },
    AddRepo {
        repo: usize,
    },
}

const REPOS: [&str; 3] = ["a/one", "a/two", "b/three"];
const EVENTS: usize = 7;

fn rid(i: usize) -> String {
    format!("orn:github.event:{}:e{}", REPOS[i % REPOS.len()], i)
}

fn hour(h: u8) -> String {
    format!("2026-11-{:02}T{:02}:00:00Z", 1 + h / 24, h % 24)
}

/// Contents whose type, time and commit all depend on the variant, so updates move every index entry.
fn contents(v: u8, h: u8) -> Contents {
    let event_time = hour(h.saturating_sub(v % 3));
    match v % 4 {
        0 => push(&format!("{:x}", v % 16).repeat(40), &event_time, "m"),
        1 => obj(json!({"webhook_event_type": "issues", "action": "opened",
                        "payload": {"issue": {"number": v, "updated_at": event_time},
                                    "sender": {"login": format!("user{}", v % 3)}}})),
        2 => obj(json!({"event_source_type": "backfill_commit",
                        "payload": {"sha": format!("{:x}", (v / 4) % 16).repeat(40),
                                    "commit": {"author": {"date": event_time}, "message": "c"}}})),
        _ => obj(json!({"something": v})),
    }
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..EVENTS, any::<u8>(), 0u8..96).prop_map(|(rid, v, h)| Op::Apply { rid, v, h }),
        2 => (0..EVENTS).prop_map(|rid| Op::Forget { rid }),
        1 => (0u8..96).prop_map(|h| Op::Prune { h }),
        1 => (0..REPOS.len()).prop_map(|repo| Op::AddRepo { repo }),
    ]
}

#[derive(Default)]
struct Model {
    /// rid → (hash, manifest time)
    manifests: BTreeMap<String, (String, Timestamp)>,
    /// rid → event time (µs) of the row held
    rows: BTreeMap<String, i64>,
    /// rid → the hashes of the versions indexed since its row was made, oldest first
    versions: BTreeMap<String, Vec<String>>,
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn indexes_stay_consistent_with_rows(
        ops in proptest::collection::vec(op(), 1..40),
        keep_contents in any::<bool>(),
        history in 1u32..4,
    ) {
        let t = temp_index_with(IndexOptions { keep_contents, history, ..Default::default() });
        let mut model = Model::default();
        for op in &ops {
            match *op {
                Op::Apply { rid: i, v, h } => {
                    let b = bundle(&rid(i), &hour(h), contents(v, h));
                    let outcome = t.index.apply_bundle(&b).unwrap();
                    let expected = match model.manifests.get(&rid(i)) {
                        Some((hash, _)) if *hash == b.manifest.sha256_hash => ApplyOutcome::Unchanged,
                        Some((_, time)) if *time > b.manifest.timestamp => ApplyOutcome::Stale,
                        _ => ApplyOutcome::Indexed { new: !model.rows.contains_key(&rid(i)) },
                    };
                    prop_assert_eq!(&outcome, &expected, "{:?}", op);
                    if let ApplyOutcome::Indexed { .. } = outcome {
                        model.manifests.insert(rid(i), (b.manifest.sha256_hash.clone(), b.manifest.timestamp));
                        let row = parse_event(
                            &crate::protocol::GithubEventRid::from_rid(b.rid()).unwrap(),
                            &b.manifest.timestamp,
                            &b.contents,
                        );
                        model.rows.insert(rid(i), ts(&row.timestamp).unix_micros());
                        if outcome == (ApplyOutcome::Indexed { new: true }) {
                            model.versions.remove(&rid(i));
                        }
                        model.versions.entry(rid(i)).or_default().push(b.manifest.sha256_hash.clone());
                    }
                }
                Op::Forget { rid: i } => {
                    model.versions.remove(&rid(i));
                    let held = model.manifests.remove(&rid(i)).is_some() | model.rows.remove(&rid(i)).is_some();
                    prop_assert_eq!(t.index.forget(&Rid::parse(&rid(i)).unwrap()).unwrap(), held);
                }
                Op::Prune { h } => {
                    let cutoff = ts(&hour(h));
                    let before = model.rows.len();
                    model.rows.retain(|_, t| *t >= cutoff.unix_micros());
                    model.versions.retain(|rid, _| model.rows.contains_key(rid));
                    prop_assert_eq!(t.index.prune_older_than(cutoff).unwrap(), before - model.rows.len());
                }
                Op::AddRepo { repo } => {
                    t.index.add_repository(REPOS[repo]).unwrap();
                }
            }
            let problems = t.index.check_consistency().unwrap();
            prop_assert!(problems.is_empty(), "after {:?}: {:#?}", op, problems);
        }
        prop_assert_eq!(t.index.counts().unwrap().events, model.rows.len() as u64);
        // History: the last `history` versions of each event, newest first, contents as kept.
        for (rid, hashes) in &model.versions {
            let versions = t.index.history(&Rid::parse(rid).unwrap()).unwrap().unwrap();
            let expected: Vec<&String> = hashes.iter().rev().take(history as usize).collect();
            let got: Vec<&String> = versions.iter().map(|v| &v.sha256_hash).collect();
            prop_assert_eq!(got, expected, "{}", rid);
            prop_assert!(versions.iter().all(|v| v.contents.is_some() == keep_contents));
            prop_assert!(versions.iter().all(|v| v.received_at.is_some()));
        }
        // Statistics (counters kept at write time; check_consistency compared each with a recount of the rows).
        let stats = t.index.stats(&crate::index::StatsQuery { top: 100, ..Default::default() }).unwrap();
        prop_assert_eq!(stats.total, model.rows.len() as u64);
        prop_assert_eq!(stats.by_day.iter().map(|d| d.total).sum::<u64>(), stats.total);
        prop_assert_eq!(stats.by_repo.values().sum::<u64>(), stats.total);
        // The global list holds every row, newest first.
        let all = t.index.events_global(&crate::index::GlobalQuery {
            limit: 100, offset: 0, actor: None, event_type: None, repo: None, since: None, until: None,
        }).unwrap();
        prop_assert_eq!(all.len(), model.rows.len());
        prop_assert!(all.windows(2).all(|w| ts(&w[0].timestamp) >= ts(&w[1].timestamp)));
        for (i, name) in REPOS.iter().enumerate() {
            let held = model.rows.keys().filter(|r| r.contains(&format!("{name}:"))).count() as u64;
            let page = t.index.events_page(&repo(name), &EventQuery { limit: 100, ..EventQuery::default() })
                .unwrap()
                .unwrap_or_default();
            prop_assert_eq!(page.len() as u64, held, "repo {}", i);
            prop_assert!(page.windows(2).all(|w| ts(&w[0].timestamp) >= ts(&w[1].timestamp)));
        }
    }

    /// Applying runs of bundles as one batch (`apply`, as the node does per inbox pass, with bundles prepared
    /// when received) gives the same outcomes and the same index as applying them one by one, duplicates and
    /// updates within a batch included.
    #[test]
    fn a_batch_is_the_same_as_one_by_one(
        ops in proptest::collection::vec(op(), 1..40),
        keep_contents in any::<bool>(),
    ) {
        let single = temp_index_with(IndexOptions { keep_contents, ..Default::default() });
        let batched = temp_index_with(IndexOptions { keep_contents, ..Default::default() });
        let mut pending: Vec<Bundle> = Vec::new();
        let mut single_outcomes = Vec::new();
        let mut batch_outcomes = Vec::new();
        // The batched side goes the node's way: bundles prepared before the writer, most of them kept in their
        // stored form (as the inbox does) in between; those the index will not write get their outcome there.
        let flush = |pending: &mut Vec<Bundle>, out: &mut Vec<ApplyOutcome>| {
            let made: Vec<Result<PreparedBundle, ApplyOutcome>> = pending
                .drain(..)
                .enumerate()
                .map(|(n, b)| {
                    let p = PreparedBundle::of(&b)?;
                    if n % 3 == 2 {
                        return Ok(p);
                    }
                    let header = serde_json::to_vec(&p.header()).unwrap();
                    let stored = PreparedBundle::from_header(serde_json::from_slice(&header).unwrap(), p.held().to_vec());
                    assert_eq!(stored, p);
                    Ok(stored)
                })
                .collect();
            let ready: Vec<PreparedBundle> = made.iter().filter_map(|m| m.as_ref().ok().cloned()).collect();
            let mut applied = batched.index.apply(&ready).unwrap().into_iter();
            out.extend(made.into_iter().map(|m| match m {
                Ok(_) => applied.next().unwrap(),
                Err(outcome) => outcome,
            }));
        };
        for op in &ops {
            match *op {
                Op::Apply { rid: i, v, h } => {
                    let b = bundle(&rid(i), &hour(h), contents(v, h));
                    single_outcomes.push(single.index.apply_bundle(&b).unwrap());
                    pending.push(b);
                }
                Op::Forget { rid: i } => {
                    flush(&mut pending, &mut batch_outcomes);
                    let rid = Rid::parse(&rid(i)).unwrap();
                    prop_assert_eq!(single.index.forget(&rid).unwrap(), batched.index.forget(&rid).unwrap());
                }
                Op::Prune { h } => {
                    flush(&mut pending, &mut batch_outcomes);
                    let cutoff = ts(&hour(h));
                    prop_assert_eq!(
                        single.index.prune_older_than(cutoff).unwrap(),
                        batched.index.prune_older_than(cutoff).unwrap()
                    );
                }
                Op::AddRepo { repo } => {
                    flush(&mut pending, &mut batch_outcomes);
                    single.index.add_repository(REPOS[repo]).unwrap();
                    batched.index.add_repository(REPOS[repo]).unwrap();
                }
            }
        }
        flush(&mut pending, &mut batch_outcomes);
        prop_assert_eq!(&batch_outcomes, &single_outcomes);
        prop_assert!(batched.index.check_consistency().unwrap().is_empty());
        prop_assert_eq!(batched.index.counts().unwrap(), single.index.counts().unwrap());
        for name in REPOS {
            let query = EventQuery { limit: 100, ..EventQuery::default() };
            let rows = |t: &TempIndex| t.index.events_page(&repo(name), &query).unwrap();
            prop_assert_eq!(rows(&batched), rows(&single));
        }
    }
}
