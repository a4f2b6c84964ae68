//! [`Index::check_consistency`]: every invariant of the keyspace, checked (the property test runs it).

use std::collections::BTreeSet;

use super::*;

/// What the rows say the rest of the keyspace must hold, counted from scratch.
#[derive(Default)]
struct Recount {
    /// The index entries each tree must have.
    entries: BTreeMap<&'static str, BTreeSet<Vec<u8>>>,
    /// Rows by event type.
    by_type: BTreeMap<String, u64>,
    /// Rows by repository RID.
    per_repo: BTreeMap<String, u64>,
    /// Each statistics counter's value.
    stats: BTreeMap<Vec<u8>, u64>,
    /// Rows.
    events: u64,
}

impl Index {
    /// Checks that every index entry points at a row that files it there and every row has all its entries, and
    /// that the counters match. Returns the problems found (empty = consistent). Scans everything: for tests and
    /// repair tools, not for the hot path.
    pub fn check_consistency(&self) -> Result<Vec<String>, IndexError> {
        let mut problems = Vec::new();
        let recount = self.recount_rows(&mut problems)?;
        self.check_entries(&recount, &mut problems)?;
        self.check_counters(recount, &mut problems)?;
        self.check_history(&mut problems)?;
        Ok(problems)
    }

    /// Reads every row: what it must have in the other trees, and the counts.
    fn recount_rows(&self, problems: &mut Vec<String>) -> Result<Recount, IndexError> {
        let mut recount = Recount::default();
        for entry in self.events.iter() {
            let (key, value) = entry?;
            let row = decode_row(&key, &value)?;
            recount.events += 1;
            *recount.by_type.entry(row.event_type.clone()).or_default() += 1;
            *recount.per_repo.entry(row.repo_rid.clone()).or_default() += 1;
            match self.bundles.get(&key)? {
                None => problems.push(format!("{}: no cached bundle", printable(&key))),
                Some(value) if self.keep_contents && !held::has_contents(&key, &value)? => {
                    problems.push(format!("{}: no cached contents", printable(&key)))
                }
                Some(_) => {}
            }
            let seq = stream_number(&key, &stored_meta(&key, &value)?)?;
            let Some(repo) = self.repo_number(&row.repo_rid)? else {
                problems.push(format!(
                    "{}: its repository {} has no row",
                    printable(&key),
                    row.repo_rid
                ));
                continue;
            };
            let e = Entries::of(&row, seq, repo)?;
            let mut expect = |tree: &'static str, key: Vec<u8>| {
                recount.entries.entry(tree).or_default().insert(key);
            };
            for key in e.global {
                expect(trees::GLOBAL, key);
            }
            expect(trees::STREAM, seq.to_be_bytes().to_vec());
            expect(trees::BY_REPO_TIME, e.by_repo_time);
            expect(trees::BY_TYPE, e.by_type);
            if let Some((by_commit, repo_commit, _)) = e.commit {
                expect(trees::BY_COMMIT, by_commit);
                expect(trees::REPO_COMMITS, repo_commit);
            }
            for key in e.stats {
                *recount.stats.entry(key).or_default() += 1;
            }
        }
        Ok(recount)
    }

    /// Each index tree holds exactly the entries the rows file there.
    fn check_entries(
        &self,
        recount: &Recount,
        problems: &mut Vec<String>,
    ) -> Result<(), IndexError> {
        let none = BTreeSet::new();
        for (name, tree) in [
            (trees::BY_REPO_TIME, &self.by_repo_time),
            (trees::BY_TYPE, &self.by_type),
            (trees::BY_COMMIT, &self.by_commit),
            (trees::REPO_COMMITS, &self.repo_commits),
            (trees::GLOBAL, &self.global),
            (trees::STREAM, &self.stream),
        ] {
            let want = recount.entries.get(name).unwrap_or(&none);
            let mut have = BTreeSet::new();
            for key in tree.iter().keys() {
                have.insert(key?.to_vec());
            }
            for key in have.difference(want) {
                problems.push(format!(
                    "{name}: entry {} points at no row filed there",
                    printable(key)
                ));
            }
            for key in want.difference(&have) {
                problems.push(format!("{name}: entry {} is missing", printable(key)));
            }
        }
        Ok(())
    }

    /// The counters (statistics, events, types, repositories and their event counts) match the recount.
    fn check_counters(
        &self,
        recount: Recount,
        problems: &mut Vec<String>,
    ) -> Result<(), IndexError> {
        let Recount {
            by_type,
            mut per_repo,
            stats,
            events,
            ..
        } = recount;
        let mut held_stats = BTreeMap::new();
        for entry in self.stats.iter() {
            let (key, value) = entry?;
            held_stats.insert(key.to_vec(), decode_u64(trees::STATS, &key, &value)?);
        }
        if held_stats != stats {
            problems.push(format!(
                "statistics counters differ from a recount of the rows: held {} counters, recount {}",
                held_stats.len(),
                stats.len()
            ));
        }
        let counts = self.counts()?;
        if counts.events != events {
            problems.push(format!(
                "count:events is {} but there are {events} rows",
                counts.events
            ));
        }
        if counts.by_type != by_type {
            problems.push(format!(
                "type counters {:?} but rows say {by_type:?}",
                counts.by_type
            ));
        }
        let repos = self.repositories()?;
        if counts.repositories != repos.len() as u64 {
            problems.push(format!(
                "count:repos is {} but there are {} rows",
                counts.repositories,
                repos.len()
            ));
        }
        for repo in &repos {
            let rows = per_repo.remove(&repo.repo_rid).unwrap_or(0);
            if repo.event_count != rows {
                problems.push(format!(
                    "{}: event_count {} but {rows} rows",
                    repo.repo_rid, repo.event_count
                ));
            }
        }
        for (repo, n) in per_repo {
            problems.push(format!("{n} events of {repo}, which has no repository row"));
        }
        Ok(())
    }

    /// Every kept version belongs to a row, is older than the row's version, and within `history`.
    fn check_history(&self, problems: &mut Vec<String>) -> Result<(), IndexError> {
        for key in self.replaced_versions.iter().keys() {
            let key = key?;
            let Some((rid, version)) = key
                .len()
                .checked_sub(5)
                .map(|at| (&key[..at], &key[at + 1..]))
            else {
                problems.push(format!("history key {} is too short", printable(&key)));
                continue;
            };
            let version = u32::from_be_bytes(version.try_into().unwrap_or([0xff; 4]));
            match self.events.get(rid)? {
                None => problems.push(format!(
                    "history of {} (version {version}) without a row",
                    printable(rid)
                )),
                Some(row) => {
                    let current = stored_meta(rid, &row)?.v;
                    if version >= current || current - version >= self.versions_kept {
                        problems.push(format!(
                            "history of {} keeps version {version}, but the row is version {current} and \
                             index.history is {}",
                            printable(rid),
                            self.versions_kept
                        ));
                    }
                }
            }
        }
        Ok(())
    }
}
