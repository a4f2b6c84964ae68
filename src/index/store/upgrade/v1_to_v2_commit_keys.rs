//! Schema 1 → 2: commit index keys in time order.

use super::super::*;

impl Index {
    /// Schema 1 → 2: `index.by_commit` is rebuilt from `index.repo_commits` (`repo ␀ time rid` → sha), which holds
    /// the same entries with their times. Safe to repeat after a crash: the tree is cleared first, and the version
    /// is written after.
    pub(in crate::index::store) fn migrate_commit_keys(&self) -> Result<(), IndexError> {
        tracing::info!("upgrading the index from schema 1 to 2: rebuilding the commit index");
        self.by_commit.clear()?;
        let mut batch = sled::Batch::default();
        let mut done = 0u64;
        for entry in self.repo_commits.iter() {
            let (key, sha) = entry?;
            let Some(sep) = key.iter().position(|b| *b == SEP) else {
                continue;
            };
            let mut new_key = sha.to_vec();
            new_key.push(SEP);
            new_key.extend_from_slice(&key[sep + 1..]);
            batch.insert(new_key, &[]);
            done += 1;
            if done.is_multiple_of(10_000) {
                self.by_commit.apply_batch(std::mem::take(&mut batch))?;
                if done.is_multiple_of(100_000) {
                    tracing::info!(
                        entries = done,
                        "upgrading the index: commit entries rebuilt so far"
                    );
                }
            }
        }
        self.by_commit.apply_batch(batch)?;
        self.by_commit.flush()?;
        tracing::info!(entries = done, "upgraded the index to schema 2");
        Ok(())
    }
}
