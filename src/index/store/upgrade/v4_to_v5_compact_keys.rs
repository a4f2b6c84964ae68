//! Schema 4 → 5: numbered repositories and 20-byte index keys.

use super::super::*;

impl Index {
    /// Schema 4 → 5: every repository gets a number, and the index entries are rebuilt with 20-byte keys that
    /// name the repository by its number and the event by its stream number ([`Entries::of`]). Safe to repeat
    /// after a crash: the numbers are given again from 1, the entry trees are rebuilt from scratch, and the version
    /// is written after.
    pub(in crate::index::store) fn migrate_compact_keys(&self) -> Result<(), IndexError> {
        tracing::info!("upgrading the index to schema 5: compact index keys");
        let mut ids: std::collections::HashMap<String, u32> = std::collections::HashMap::new();
        let mut records = sled::Batch::default();
        for entry in self.repos.iter() {
            let (key, bytes) = entry?;
            let mut record: RepoRecord = decode(trees::REPOS, &key, &bytes)?;
            let id = ids.len() as u32 + 1;
            record.id = Some(id);
            ids.insert(record.repo_rid.clone(), id);
            records.insert(key, serde_json::to_vec(&record)?);
        }
        self.repos.apply_batch(records)?;
        self.meta
            .insert(REPO_ID_KEY, &(ids.len() as u64).to_be_bytes())?;
        let trees = [
            &self.by_repo_time,
            &self.by_type,
            &self.by_commit,
            &self.repo_commits,
            &self.global,
        ];
        for tree in trees {
            tree.clear()?;
        }
        let mut batches: [sled::Batch; 5] = Default::default();
        let mut done = 0u64;
        for entry in self.events.iter() {
            let (key, bytes) = entry?;
            let row = decode_row(&key, &bytes)?;
            let seq = stream_number(&key, &stored_meta(&key, &bytes)?)?;
            let repo = *ids.get(&row.repo_rid).ok_or_else(|| IndexError::Corrupt {
                tree: trees::EVENTS,
                key: printable(&key),
                problem: format!("its repository {} has no row", row.repo_rid),
            })?;
            let e = Entries::of(&row, seq, repo)?;
            batches[0].insert(e.by_repo_time, &[]);
            batches[1].insert(e.by_type, &[]);
            if let Some((by_commit, repo_commit, sha)) = e.commit {
                batches[2].insert(by_commit, &[]);
                batches[3].insert(repo_commit, sha.as_bytes());
            }
            for k in e.global {
                batches[4].insert(k, &[]);
            }
            done += 1;
            if done.is_multiple_of(1000) {
                for (tree, batch) in trees.iter().zip(batches.iter_mut()) {
                    tree.apply_batch(std::mem::take(batch))?;
                }
                if done.is_multiple_of(100_000) {
                    tracing::info!(events = done, "upgrading the index: events done so far");
                }
            }
        }
        for (tree, batch) in trees.iter().zip(batches) {
            tree.apply_batch(batch)?;
        }
        self.meta
            .insert(SCHEMA_KEY, &SCHEMA_VERSION.to_be_bytes())?;
        self.meta.flush()?;
        tracing::info!(
            events = done,
            repositories = ids.len(),
            "upgraded the index to schema 5"
        );
        Ok(())
    }
}
