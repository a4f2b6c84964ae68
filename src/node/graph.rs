//! The network graph as this node knows it: node profiles and edge profiles, kept in sled so a restart resumes
//! polling the same neighbours without a new handshake.

use serde::{Deserialize, Serialize};

use crate::protocol::{Bundle, EdgeProfile, EdgeType, Freshness, Manifest, NodeProfile, Rid};

const NODES: &str = "node.graph.nodes";
const EDGES: &str = "node.graph.edges";
const META: &str = "node.graph.meta";

/// A graph storage problem.
#[derive(Debug, thiserror::Error)]
pub enum GraphError {
    /// sled failed.
    #[error("network graph storage: {0}")]
    Storage(#[from] sled::Error),
    /// A bundle's contents are not a valid profile.
    #[error("{rid}: contents are not a valid {what} profile: {source}")]
    BadProfile {
        /// The bundle.
        rid: String,
        /// `node` or `edge`.
        what: &'static str,
        /// Why.
        source: serde_json::Error,
    },
}

#[derive(Serialize, Deserialize)]
struct Stored<T> {
    manifest: Manifest,
    profile: T,
}

/// What storing a profile did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GraphChange<T> {
    /// New or newer than what we had.
    Updated(T),
    /// Same hash, or older than what we had.
    Unchanged,
}

/// Node and edge profiles in sled.
#[derive(Clone)]
pub struct Graph {
    nodes: sled::Tree,
    edges: sled::Tree,
    meta: sled::Tree,
}

impl Graph {
    /// Opens the graph in the shared database.
    pub fn open(db: &sled::Db) -> Result<Graph, GraphError> {
        Ok(Graph {
            nodes: db.open_tree(NODES)?,
            edges: db.open_tree(EDGES)?,
            meta: db.open_tree(META)?,
        })
    }

    fn upsert<T: Serialize + serde::de::DeserializeOwned + Clone>(
        tree: &sled::Tree,
        bundle: &Bundle,
        what: &'static str,
    ) -> Result<GraphChange<T>, GraphError> {
        let profile: T = bundle
            .contents_as()
            .map_err(|source| GraphError::BadProfile {
                rid: bundle.rid().to_string(),
                what,
                source,
            })?;
        let key = bundle.rid().as_str().as_bytes();
        if let Some(old) = tree.get(key)? {
            if let Ok(old) = serde_json::from_slice::<Stored<serde_json::Value>>(&old) {
                if bundle.manifest.freshness(Some(&old.manifest)) != Freshness::Newer {
                    return Ok(GraphChange::Unchanged);
                }
            }
        }
        let stored = Stored {
            manifest: bundle.manifest.clone(),
            profile: profile.clone(),
        };
        tree.insert(key, serde_json::to_vec(&stored).unwrap_or_default())?;
        Ok(GraphChange::Updated(profile))
    }

    /// Stores a node profile bundle (newer wins).
    pub fn upsert_node(&self, bundle: &Bundle) -> Result<GraphChange<NodeProfile>, GraphError> {
        Graph::upsert(&self.nodes, bundle, "node")
    }

    /// Stores an edge profile bundle (newer wins).
    pub fn upsert_edge(&self, bundle: &Bundle) -> Result<GraphChange<EdgeProfile>, GraphError> {
        Graph::upsert(&self.edges, bundle, "edge")
    }

    /// Forgets a node or edge.
    pub fn remove(&self, rid: &Rid) -> Result<bool, GraphError> {
        let key = rid.as_str().as_bytes();
        Ok(self.nodes.remove(key)?.is_some() | self.edges.remove(key)?.is_some())
    }

    /// A node's profile, if known.
    pub fn node(&self, rid: &Rid) -> Result<Option<NodeProfile>, GraphError> {
        Ok(self
            .nodes
            .get(rid.as_str().as_bytes())?
            .and_then(|v| serde_json::from_slice::<Stored<NodeProfile>>(&v).ok())
            .map(|s| s.profile))
    }

    /// Every known node.
    pub fn nodes(&self) -> Result<Vec<(Rid, NodeProfile)>, GraphError> {
        let mut out = Vec::new();
        for item in self.nodes.iter() {
            let (_, v) = item?;
            if let Ok(s) = serde_json::from_slice::<Stored<NodeProfile>>(&v) {
                out.push((s.manifest.rid, s.profile));
            }
        }
        Ok(out)
    }

    /// Every known edge.
    pub fn edges(&self) -> Result<Vec<EdgeProfile>, GraphError> {
        let mut out = Vec::new();
        for item in self.edges.iter() {
            let (_, v) = item?;
            if let Ok(s) = serde_json::from_slice::<Stored<EdgeProfile>>(&v) {
                out.push(s.profile);
            }
        }
        Ok(out)
    }

    /// Sources of POLL edges to `me` (proposed or approved): the providers we poll.
    pub fn poll_sources(&self, me: &Rid) -> Result<Vec<EdgeProfile>, GraphError> {
        Ok(self
            .edges()?
            .into_iter()
            .filter(|e| &e.target == me && e.edge_type == EdgeType::Poll && &e.source != me)
            .collect())
    }

    /// Records that the handshake with `neighbour` went through.
    pub fn set_joined(&self, neighbour: &Rid, joined: bool) -> Result<(), GraphError> {
        let key = format!("joined:{neighbour}");
        if joined {
            self.meta.insert(key.as_bytes(), b"1".to_vec())?;
        } else {
            self.meta.remove(key.as_bytes())?;
        }
        Ok(())
    }

    /// Whether the handshake with `neighbour` went through.
    pub fn joined(&self, neighbour: &Rid) -> Result<bool, GraphError> {
        Ok(self
            .meta
            .contains_key(format!("joined:{neighbour}").as_bytes())?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{EdgeStatus, NodeProvides, NodeType, RidType};

    fn rid(name: &str) -> Rid {
        Rid::parse(&format!("orn:koi-net.node:{name}+{}", "0".repeat(64))).unwrap()
    }

    #[test]
    fn profiles_persist_and_newer_wins() {
        let dir = tempfile::tempdir().unwrap();
        let (me, sensor) = (rid("me"), rid("sensor"));
        let profile = NodeProfile {
            context: crate::protocol::knowledge::NODE_PROFILE_CONTEXT.into(),
            base_url: Some("http://127.0.0.1:1/koi-net".into()),
            node_type: NodeType::Full,
            provides: NodeProvides::default(),
            public_key: Some("k".into()),
        };
        let edge = EdgeProfile::new(
            sensor.clone(),
            me.clone(),
            EdgeType::Poll,
            EdgeStatus::Approved,
            vec![RidType::parse("orn:github.event").unwrap()],
        );
        {
            let db = sled::open(dir.path()).unwrap();
            let g = Graph::open(&db).unwrap();
            let bundle = Bundle::generate(sensor.clone(), profile.to_contents());
            assert!(matches!(
                g.upsert_node(&bundle).unwrap(),
                GraphChange::Updated(_)
            ));
            assert_eq!(g.upsert_node(&bundle).unwrap(), GraphChange::Unchanged);
            g.upsert_edge(&edge.to_bundle()).unwrap();
            g.set_joined(&sensor, true).unwrap();
        }
        let store =
            crate::storage::open(dir.path(), crate::storage::StoreOptions::default()).unwrap();
        let db = store.db.clone();
        let g = Graph::open(&db).unwrap();
        assert_eq!(g.node(&sensor).unwrap(), Some(profile));
        assert_eq!(g.poll_sources(&me).unwrap(), vec![edge.clone()]);
        assert!(g.joined(&sensor).unwrap());
        assert!(g.remove(edge.rid().rid()).unwrap());
        assert!(g.poll_sources(&me).unwrap().is_empty());
    }

    #[test]
    fn a_bad_profile_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let g = Graph::open(&db).unwrap();
        let bundle = Bundle::generate(rid("x"), serde_json::Map::new());
        assert!(matches!(
            g.upsert_node(&bundle),
            Err(GraphError::BadProfile { .. })
        ));
    }
}
