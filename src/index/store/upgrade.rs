//! Schema upgrades, each one step (0 → 1 … 4 → 5), run by [`Index::open_with`] in order.

use super::*;

impl Index {
    /// Schema 2 → 3: `index.manifests` and `index.contents` become one value per RID in `index.bundles`, contents
    /// compressed ([`held`]). Safe to repeat after a crash: `index.bundles` is rebuilt from scratch while the old
    /// trees exist, the version is written after, and only then are the old trees dropped.
    pub(super) fn migrate_bundles(&self, db: &sled::Db) -> Result<(), IndexError> {
        let has = |name: &str| {
            db.tree_names()
                .iter()
                .any(|n| n.as_ref() == name.as_bytes())
        };
        if has(trees::LEGACY_MANIFESTS) {
            tracing::info!(
                "upgrading the index to schema 3: manifest and compressed contents as one value"
            );
            let manifests = db.open_tree(trees::LEGACY_MANIFESTS)?;
            let contents = db.open_tree(trees::LEGACY_CONTENTS)?;
            self.bundles.clear()?;
            let mut batch = sled::Batch::default();
            let mut done = 0u64;
            for entry in manifests.iter() {
                let (key, manifest) = entry?;
                let kept = if self.keep_contents {
                    contents.get(&key)?
                } else {
                    None
                };
                batch.insert(key, held::encode(&manifest, kept.as_deref())?);
                done += 1;
                if done.is_multiple_of(1000) {
                    self.bundles.apply_batch(std::mem::take(&mut batch))?;
                    if done.is_multiple_of(100_000) {
                        tracing::info!(
                            bundles = done,
                            "upgrading the index: bundles rewritten so far"
                        );
                    }
                }
            }
            self.bundles.apply_batch(batch)?;
            self.bundles.flush()?;
            tracing::info!(bundles = done, "upgraded the index to schema 3");
        }
        self.meta.insert(SCHEMA_KEY, &3u32.to_be_bytes())?;
        self.meta.flush()?;
        for name in [trees::LEGACY_MANIFESTS, trees::LEGACY_CONTENTS] {
            if has(name) {
                db.drop_tree(name)?;
            }
        }
        Ok(())
    }

    /// Schema 3 → 4: every row gets a stream sequence number (in key order) and files its statistics counters
    /// ([`feeds`]); the global lists are built by the upgrade to schema 5 that follows. Safe to repeat after a
    /// crash: the trees and the sequence are rebuilt from scratch, and the version is written after.
    pub(super) fn migrate_feeds(&self) -> Result<(), IndexError> {
        tracing::info!("upgrading the index to schema 4: statistics and stream sequence numbers");
        self.stats.clear()?;
        self.stream.clear()?;
        let mut counters: BTreeMap<Vec<u8>, u64> = BTreeMap::new();
        let (mut rows, mut stream) = (sled::Batch::default(), sled::Batch::default());
        let mut seq = 0u64;
        for entry in self.events.iter() {
            let (key, bytes) = entry?;
            let row = decode_row(&key, &bytes)?;
            let stats = feeds::stat_keys(&row, row_micros(&row)?);
            seq += 1;
            let meta = StoredMeta {
                q: Some(seq),
                ..stored_meta(&key, &bytes)?
            };
            rows.insert(key.clone(), encode_row(&row, meta)?);
            stream.insert(&seq.to_be_bytes(), key);
            for k in stats {
                *counters.entry(k).or_default() += 1;
            }
            if seq.is_multiple_of(1000) {
                self.events.apply_batch(std::mem::take(&mut rows))?;
                self.stream.apply_batch(std::mem::take(&mut stream))?;
                if seq.is_multiple_of(100_000) {
                    tracing::info!(events = seq, "upgrading the index: events done so far");
                }
            }
        }
        self.events.apply_batch(rows)?;
        self.stream.apply_batch(stream)?;
        let mut batch = sled::Batch::default();
        for (key, n) in counters {
            batch.insert(key, &n.to_be_bytes());
        }
        self.stats.apply_batch(batch)?;
        self.meta.insert(SEQ_KEY, &seq.to_be_bytes())?;
        self.meta.insert(SCHEMA_KEY, &4u32.to_be_bytes())?;
        self.meta.flush()?;
        tracing::info!(events = seq, "upgraded the index to schema 4");
        Ok(())
    }

    /// Schema 4 → 5: every repository gets a number, and the index entries are rebuilt with 20-byte keys that
    /// name the repository by its number and the event by its stream number ([`Entries::of`]). Safe to repeat
    /// after a crash: the numbers are given again from 1, the entry trees are rebuilt from scratch, and the version
    /// is written after.
    pub(super) fn migrate_compact_keys(&self) -> Result<(), IndexError> {
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

    /// Schema 0 kept only bundles, in `index.rid_cache`: index them into rows, then drop that tree. Safe to repeat
    /// after a crash (applying is idempotent; the version is written after).
    pub(super) fn migrate_rid_cache(&self, db: &sled::Db) -> Result<(), IndexError> {
        if !db
            .tree_names()
            .iter()
            .any(|n| n.as_ref() == trees::LEGACY_RID_CACHE.as_bytes())
        {
            return Ok(());
        }
        let legacy = db.open_tree(trees::LEGACY_RID_CACHE)?;
        for entry in legacy.iter() {
            let (key, value) = entry?;
            let bundle: Bundle = decode(trees::LEGACY_RID_CACHE, &key, &value)?;
            self.apply_bundle(&bundle)?;
        }
        db.drop_tree(trees::LEGACY_RID_CACHE)?;
        Ok(())
    }

    /// Schema 1 → 2: `index.by_commit` is rebuilt from `index.repo_commits` (`repo ␀ time rid` → sha), which holds
    /// the same entries with their times. Safe to repeat after a crash: the tree is cleared first, and the version
    /// is written after.
    pub(super) fn migrate_commit_keys(&self) -> Result<(), IndexError> {
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
