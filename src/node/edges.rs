//! Edge negotiation decisions, kept pure so they can be tested without a network.
//!
//! A partial node can only be the *target* of POLL edges: it asks providers to queue events for it. It also
//! approves the WEBHOOK edge a coordinator proposes from us to it (as the reference partial node does); having
//! nothing to publish, we never send along it.

use crate::protocol::{EdgeProfile, EdgeStatus, EdgeType, NodeProfile, NodeType, Rid, RidType};

/// What to do about an edge profile we received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EdgeDecision {
    /// A neighbour proposed an edge from us to it: approve it (send it back APPROVED as an UPDATE).
    Approve,
    /// An APPROVED POLL edge from `source` to us: poll `source` for these types.
    Subscribed {
        /// The provider to poll.
        source: Rid,
    },
    /// Not about us, or nothing to do (e.g. our own proposal echoed back).
    Ignore,
}

/// Decides how to react to `edge`, an edge profile seen in an event or fetched.
pub fn decide_edge(me: &Rid, edge: &EdgeProfile) -> EdgeDecision {
    match (edge.status, edge.edge_type) {
        (EdgeStatus::Proposed, _) if &edge.source == me && &edge.target != me => {
            EdgeDecision::Approve
        }
        (EdgeStatus::Approved, EdgeType::Poll) if &edge.target == me && &edge.source != me => {
            EdgeDecision::Subscribed {
                source: edge.source.clone(),
            }
        }
        _ => EdgeDecision::Ignore,
    }
}

/// The RID types we should ask `node` (with `profile`) to send us: those of interest it provides events for.
/// Empty when it is us, a partial node (which cannot serve polls), or provides nothing we want.
pub fn wanted_types(
    me: &Rid,
    node: &Rid,
    profile: &NodeProfile,
    interest: &[RidType],
) -> Vec<RidType> {
    if node == me || profile.node_type != NodeType::Full || profile.base_url.is_none() {
        return Vec::new();
    }
    interest
        .iter()
        .filter(|t| profile.provides.event.contains(t))
        .cloned()
        .collect()
}

/// The POLL edge we propose from `provider` to us.
pub fn poll_edge_proposal(me: &Rid, provider: &Rid, rid_types: Vec<RidType>) -> EdgeProfile {
    EdgeProfile::new(
        provider.clone(),
        me.clone(),
        EdgeType::Poll,
        EdgeStatus::Proposed,
        rid_types,
    )
}

/// `edge` approved, as we send it back.
pub fn approved(edge: &EdgeProfile) -> EdgeProfile {
    EdgeProfile {
        status: EdgeStatus::Approved,
        ..edge.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::NodeProvides;

    fn rid(name: &str) -> Rid {
        Rid::parse(&format!("orn:koi-net.node:{name}+{}", "0".repeat(64))).unwrap()
    }
    fn t(s: &str) -> RidType {
        RidType::parse(s).unwrap()
    }

    #[test]
    fn approves_a_webhook_edge_proposed_from_us_to_the_coordinator() {
        let (me, coord) = (rid("me"), rid("coord"));
        let edge = EdgeProfile::new(
            me.clone(),
            coord,
            EdgeType::Webhook,
            EdgeStatus::Proposed,
            vec![t(RidType::NODE)],
        );
        assert_eq!(decide_edge(&me, &edge), EdgeDecision::Approve);
        assert_eq!(approved(&edge).status, EdgeStatus::Approved);
        assert_eq!(approved(&edge).rid(), edge.rid());
    }

    #[test]
    fn an_approved_poll_edge_to_us_means_poll_its_source() {
        let (me, sensor) = (rid("me"), rid("sensor"));
        let edge = EdgeProfile::new(
            sensor.clone(),
            me.clone(),
            EdgeType::Poll,
            EdgeStatus::Approved,
            vec![t(RidType::GITHUB_EVENT)],
        );
        assert_eq!(
            decide_edge(&me, &edge),
            EdgeDecision::Subscribed { source: sensor }
        );
    }

    #[test]
    fn our_own_proposal_and_other_nodes_edges_are_ignored() {
        let (me, a, b) = (rid("me"), rid("a"), rid("b"));
        let ours = poll_edge_proposal(&me, &a, vec![t(RidType::GITHUB_EVENT)]);
        assert_eq!(decide_edge(&me, &ours), EdgeDecision::Ignore);
        let theirs = EdgeProfile::new(a, b, EdgeType::Poll, EdgeStatus::Approved, vec![]);
        assert_eq!(decide_edge(&me, &theirs), EdgeDecision::Ignore);
    }

    #[test]
    fn subscribe_only_to_full_nodes_that_provide_events_of_interest() {
        let me = rid("me");
        let interest = [t(RidType::GITHUB_EVENT), t(RidType::GITHUB_REPO)];
        let mut sensor = NodeProfile {
            context: String::new(),
            base_url: Some("http://127.0.0.1:8007/koi-net".into()),
            node_type: NodeType::Full,
            provides: NodeProvides {
                event: vec![t(RidType::GITHUB_EVENT)],
                state: vec![t(RidType::GITHUB_EVENT)],
            },
            public_key: None,
        };
        assert_eq!(
            wanted_types(&me, &rid("s"), &sensor, &interest),
            vec![t(RidType::GITHUB_EVENT)]
        );
        assert!(wanted_types(&me, &me, &sensor, &interest).is_empty());
        sensor.provides.event = vec![t(RidType::NODE)];
        assert!(wanted_types(&me, &rid("s"), &sensor, &interest).is_empty());
        sensor.provides.event = vec![t(RidType::GITHUB_EVENT)];
        sensor.node_type = NodeType::Partial;
        assert!(wanted_types(&me, &rid("s"), &sensor, &interest).is_empty());
    }
}
