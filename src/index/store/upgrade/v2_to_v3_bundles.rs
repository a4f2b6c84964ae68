//! Schema 2 → 3: one held value per RID.

use super::super::*;

impl Index {
    /// Schema 2 → 3: `index.manifests` and `index.contents` become one value per RID in `index.bundles`, contents
    /// compressed ([`held`]). Safe to repeat after a crash: `index.bundles` is rebuilt from scratch while the old
    /// trees exist, the version is written after, and only then are the old trees dropped.
    pub(in crate::index::store) fn migrate_bundles(&self, db: &sled::Db) -> Result<(), IndexError> {
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
}
