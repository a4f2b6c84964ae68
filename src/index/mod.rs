//! The index. Today: the RID cache — every `orn:github.event` / `orn:github.repo` bundle received, keyed by RID,
//! deduplicated by content hash and manifest timestamp. That dedupe is what makes the node's inbox replay
//! exactly-once. Parsed event rows, secondary indexes and queries (issue 4) are to be built on this interface.

pub mod github;

use crate::protocol::{Bundle, Manifest, Rid, RidType};

/// Index errors.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    /// sled failed.
    #[error("index storage: {0}")]
    Storage(#[from] sled::Error),
}

/// What applying a bundle did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApplyOutcome {
    /// Written.
    Indexed {
        /// First time seen.
        new: bool,
    },
    /// Same hash as held.
    Unchanged,
    /// Older than held.
    Stale,
    /// Not a type the index keeps.
    Ignored,
}

/// The index over one shared sled database (tree `index.rid_cache`).
#[derive(Clone)]
pub struct Index {
    bundles: sled::Tree,
}

impl Index {
    /// Opens the index trees in the shared database.
    pub fn open(db: &sled::Db) -> Result<Index, IndexError> {
        Ok(Index {
            bundles: db.open_tree("index.rid_cache")?,
        })
    }
    /// Stores a NEW/UPDATE bundle unless we hold the same hash or a newer version. The caller verified its hash.
    pub fn apply_bundle(&self, bundle: &Bundle) -> Result<ApplyOutcome, IndexError> {
        if !(bundle.rid().is_type(RidType::GITHUB_EVENT)
            || bundle.rid().is_type(RidType::GITHUB_REPO))
        {
            return Ok(ApplyOutcome::Ignored);
        }
        let old = self.cached_manifest(bundle.rid())?;
        if let Some(old) = &old {
            if old.sha256_hash == bundle.manifest.sha256_hash {
                return Ok(ApplyOutcome::Unchanged);
            }
            if old.timestamp > bundle.manifest.timestamp {
                return Ok(ApplyOutcome::Stale);
            }
        }
        self.bundles.insert(
            bundle.rid().as_str(),
            serde_json::to_vec(bundle).unwrap_or_default(),
        )?;
        Ok(ApplyOutcome::Indexed { new: old.is_none() })
    }
    /// Removes a RID (FORGET). Idempotent.
    pub fn forget(&self, rid: &Rid) -> Result<bool, IndexError> {
        Ok(self.bundles.remove(rid.as_str())?.is_some())
    }
    /// The manifest held for `rid`, if any (used to skip fetching bundles we already have).
    pub fn cached_manifest(&self, rid: &Rid) -> Result<Option<Manifest>, IndexError> {
        Ok(self
            .bundles
            .get(rid.as_str())?
            .and_then(|v| serde_json::from_slice::<Bundle>(&v).ok())
            .map(|b| b.manifest))
    }
    /// Number of bundles held.
    pub fn event_count(&self) -> usize {
        self.bundles.len()
    }
}
