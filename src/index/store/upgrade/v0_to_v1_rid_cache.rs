//! Schema 0 → 1: rows from the first release's RID cache.

use super::super::*;

impl Index {
    /// Schema 0 kept only bundles, in `index.rid_cache`: index them into rows, then drop that tree. Safe to repeat
    /// after a crash (applying is idempotent; the version is written after).
    pub(in crate::index::store) fn migrate_rid_cache(
        &self,
        db: &sled::Db,
    ) -> Result<(), IndexError> {
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
}
