//! This node's identity: its key (loaded from, or created in, the data directory), RID and profile.

use std::path::{Path, PathBuf};

use crate::protocol::{
    Bundle, KeyError, NodeKey, NodeProfile, NodeProvides, NodeRid, NodeType, Rid,
};

/// File name of the key inside the data directory; the same name koi-net uses, so keys can move between them.
pub const KEY_FILE: &str = "priv_key.pem";

/// Who we are on the network.
#[derive(Debug, Clone)]
pub struct Identity {
    /// Signs every request we send.
    pub key: NodeKey,
    /// `orn:koi-net.node:<name>+<key hash>`.
    pub rid: Rid,
    /// Where the key lives.
    pub key_path: PathBuf,
    /// Whether the key was created by this start (a new identity), for the start-up log.
    pub created: bool,
}

impl Identity {
    /// Loads `<data_dir>/priv_key.pem`, or creates it on first start. A key that exists but fails to load is an
    /// error, never a reason to make a new identity.
    pub fn load_or_create(
        data_dir: &Path,
        name: &str,
        password: &str,
    ) -> Result<Identity, KeyError> {
        let key_path = data_dir.join(KEY_FILE);
        let (key, created) = NodeKey::load_or_generate(&key_path, password)?;
        let rid = key.node_rid(name)?.rid().clone();
        Ok(Identity {
            key,
            rid,
            key_path,
            created,
        })
    }

    /// Our profile: a PARTIAL node (no `base_url`) that provides nothing.
    pub fn profile(&self) -> NodeProfile {
        NodeProfile {
            context: crate::protocol::knowledge::NODE_PROFILE_CONTEXT.to_owned(),
            base_url: None,
            node_type: NodeType::Partial,
            provides: NodeProvides::default(),
            public_key: Some(self.key.public_key().to_base64()),
        }
    }

    /// A fresh bundle of our profile, for handshakes and introductions.
    pub fn profile_bundle(&self) -> Bundle {
        Bundle::generate(self.rid.clone(), self.profile().to_contents())
    }

    /// Our RID as a typed node RID.
    pub fn node_rid(&self) -> NodeRid {
        // Built from our own key by `load_or_create`, so it is always a valid node RID.
        NodeRid::from_rid(&self.rid).unwrap_or_else(|_| unreachable!("own RID is a node RID"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_is_made_once_and_the_same_identity_loads_after() {
        let dir = tempfile::tempdir().unwrap();
        let first = Identity::load_or_create(dir.path(), "indexer", "pw").unwrap();
        assert!(first.created);
        let again = Identity::load_or_create(dir.path(), "indexer", "pw").unwrap();
        assert!(!again.created);
        assert_eq!(again.rid, first.rid, "the same RID across restarts");
        assert!(Identity::load_or_create(dir.path(), "indexer", "wrong").is_err());
        // A partial node: no base URL, provides nothing, and its key hashes to its RID.
        let profile = first.profile();
        assert_eq!(profile.node_type, NodeType::Partial);
        assert!(profile.base_url.is_none());
        assert!(first
            .node_rid()
            .matches_public_key(profile.public_key.as_deref().unwrap()));
        assert!(first.profile_bundle().verify_hash().is_ok());
    }
}
