//! Membership: the join handshake, POLL edge proposals to providers, approvals of edges proposed to us, and the
//! node profiles we learn. Decides when a provider must be caught up with (again).

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;

use crate::protocol::{
    Bundle, EdgeProfile, EdgeStatus, Event, EventType, NodeProfile, Rid, RidType,
};
use crate::telemetry::{EdgeProposed, HandshakeCompleted, RejectReason};

use super::catch_up::CatchUp;
use super::client::{error_chain, Peer};
use super::edges::{self, decide_edge, EdgeDecision};
use super::graph::GraphChange;
use super::{network_types, Node};

/// What applying an edge profile leaves to do.
pub(super) enum EdgeApplied {
    /// Nothing more: its effects are written (or there were none).
    Done,
    /// A neighbour proposed an edge from us to it: `approved` must be sent to `peer`. That is a network call, so
    /// the writer hands it to [`Node::approve_edge`] on the runtime instead of making it itself.
    Approve {
        /// The edge, approved.
        approved: EdgeProfile,
        /// Who to send it to.
        peer: Peer,
    },
}

/// Why a node or edge event could not be applied now.
pub(super) enum NotApplied {
    /// Try again later (a neighbour was unreachable, or we are shutting down); the event stays in the inbox.
    Later(String),
    /// The event is bad; it is rejected.
    Reject(RejectReason, String),
}

impl Node {
    /// `f`, unless shutdown comes first (then `None`: no network call outlives the cancellation).
    pub(super) async fn unless_cancelled<T>(&self, f: impl Future<Output = T>) -> Option<T> {
        tokio::select! {
            out = f => Some(out),
            _ = self.cancel.cancelled() => None,
        }
    }

    /// Join handshake: `[FORGET(me), NEW(my profile)]` to the first contact.
    pub(super) async fn handshake(&self, peer: &Peer) {
        let events = vec![
            Event::forget(self.rid().clone()),
            Event::from_bundle(EventType::New, self.client.profile_bundle()),
        ];
        match self
            .unless_cancelled(self.client.broadcast(peer, events, self.settings.timeout))
            .await
        {
            Some(Ok(())) => {
                self.with_peer(&peer.rid, |state| state.handshaken = true);
                HandshakeCompleted {
                    neighbour: peer.rid.as_str(),
                }
                .emit(&self.telemetry.metrics)
            }
            Some(Err(e)) => {
                tracing::warn!(neighbour = %peer.rid, url = %peer.base_url, cause = %error_chain(&e), "handshake failed")
            }
            None => {}
        }
    }

    /// Sends a provider our profile and our POLL edge proposal in one payload: it accepts a node it does not
    /// know yet when the payload carries that node's own profile (PROTOCOL.md, join step 7).
    pub(super) async fn introduce_to_provider(&self, peer: &Peer) {
        let edge = self
            .graph
            .poll_sources(self.rid())
            .ok()
            .and_then(|edges| edges.into_iter().find(|e| e.source == peer.rid));
        let Some(edge) = edge else { return };
        let proposal = edges::poll_edge_proposal(self.rid(), &peer.rid, edge.rid_types.clone());
        let events = vec![
            Event::from_bundle(EventType::New, self.client.profile_bundle()),
            Event::from_bundle(EventType::New, proposal.to_bundle()),
        ];
        match self
            .unless_cancelled(self.client.broadcast(peer, events, self.settings.timeout))
            .await
        {
            Some(Ok(())) => self.edge_proposed(&peer.rid, &proposal.rid_types),
            Some(Err(e)) => {
                tracing::warn!(provider = %peer.rid, url = %peer.base_url, cause = %error_chain(&e), "edge proposal failed")
            }
            None => {}
        }
    }

    fn edge_proposed(&self, source: &Rid, rid_types: &[RidType]) {
        let rid_types: Vec<String> = rid_types.iter().map(|t| t.to_string()).collect();
        EdgeProposed {
            source: source.as_str(),
            target: self.rid().as_str(),
            rid_types: &rid_types,
        }
        .emit(&self.telemetry.metrics);
    }

    /// Makes the next subscription pass catch up with `provider` again, even if a catch-up is running right now.
    pub(super) fn catch_up_again(&self, provider: &Rid) {
        self.with_peer(provider, |state| {
            state.caught_up = false;
            state.catch_up_epoch += 1;
        });
    }

    /// Proposes POLL edges to providers we learned of, and runs the catch-ups not yet done this run.
    pub(super) async fn maintain_subscriptions(self: Arc<Self>) {
        let nodes = match self.graph.nodes() {
            Ok(nodes) => nodes,
            Err(e) => return tracing::error!(error = %e, "cannot read the network graph"),
        };
        let edges = self.graph.poll_sources(self.rid()).unwrap_or_default();
        let sources: HashSet<Rid> = edges.iter().map(|e| e.source.clone()).collect();
        // Catch up only once a provider has approved our edge: it queues events for us from its approval on, so a
        // catch-up that started earlier would have to run again to cover the time in between.
        let approved: Vec<Rid> = edges
            .into_iter()
            .filter(|e| e.status == EdgeStatus::Approved)
            .map(|e| e.source)
            .collect();
        let first_contact = self.settings.first_contact_rid.clone();
        let joined = self.graph.joined(&first_contact).unwrap_or(false);
        if joined
            && !sources.contains(&first_contact)
            && !self.subscribe_to_network(&first_contact).await
        {
            return;
        }
        for (rid, profile) in &nodes {
            let wanted = edges::wanted_types(self.rid(), rid, profile, &self.settings.interest);
            if !wanted.is_empty() && !sources.contains(rid) {
                self.propose_to_provider(rid, wanted).await;
            }
        }
        let mut to_catch_up = approved;
        if joined && !to_catch_up.contains(&first_contact) {
            to_catch_up.push(first_contact);
        }
        for source in to_catch_up {
            if self.cancel.is_cancelled() {
                return;
            }
            self.catch_up_unless_done(&source).await;
        }
    }

    /// Proposes a POLL edge from the first contact for node and edge events, so that we hear of new providers.
    /// `false` when shutdown came first.
    async fn subscribe_to_network(&self, first_contact: &Rid) -> bool {
        let proposal = edges::poll_edge_proposal(self.rid(), first_contact, network_types());
        let peer = self.peer_for(first_contact);
        let events = vec![Event::from_bundle(EventType::New, proposal.to_bundle())];
        match self
            .unless_cancelled(self.client.broadcast(&peer, events, self.settings.timeout))
            .await
        {
            Some(Ok(())) => {
                self.edge_proposed(first_contact, &proposal.rid_types);
                if let Err(e) = self.graph.upsert_edge(&proposal.to_bundle()) {
                    tracing::error!(error = %e, "cannot store edge proposal");
                }
                true
            }
            Some(Err(e)) => {
                tracing::warn!(neighbour = %first_contact, cause = %error_chain(&e), "edge proposal failed; will retry");
                true
            }
            None => false,
        }
    }

    /// Proposes a POLL edge to a provider of `wanted` types, recorded first so that it is polled (and
    /// re-introduced to) from now on.
    async fn propose_to_provider(&self, provider: &Rid, wanted: Vec<RidType>) {
        // The graph may have changed since the pass read it (an approval polled meanwhile): never turn an approved
        // edge back into a proposal.
        if self
            .graph
            .poll_sources(self.rid())
            .unwrap_or_default()
            .iter()
            .any(|e| &e.source == provider)
        {
            return;
        }
        let proposal = edges::poll_edge_proposal(self.rid(), provider, wanted);
        if let Err(e) = self.graph.upsert_edge(&proposal.to_bundle()) {
            tracing::error!(error = %e, "cannot store edge proposal");
            return;
        }
        self.introduce_to_provider(&self.peer_for(provider)).await;
    }

    /// Catches up with `source` unless that is done this run, under way, or backed off; on failure, backs off (or
    /// retries soon, when the provider only has not processed our profile yet).
    async fn catch_up_unless_done(self: &Arc<Self>, source: &Rid) {
        let now = std::time::Instant::now();
        let start = self.with_peer(source, |state| {
            let backed_off = state
                .catch_up_backoff
                .as_ref()
                .is_some_and(|b| !b.ready(now));
            if state.caught_up || state.catching_up || backed_off {
                None
            } else {
                state.catching_up = true;
                Some(state.catch_up_epoch)
            }
        });
        let Some(epoch) = start else { return };
        let ended = self.catch_up(source).await;
        let ok = ended == CatchUp::Done;
        let (interval, max) = (self.settings.interval, self.settings.max_backoff);
        let retry_soon = self.with_peer(source, |state| {
            state.catching_up = false;
            if ok {
                state.catch_up_backoff = None;
                if state.catch_up_epoch == epoch {
                    state.caught_up = true;
                }
                None
            } else if !self.cancel.is_cancelled() {
                let backoff = state
                    .catch_up_backoff
                    .get_or_insert_with(|| super::Backoff::new(interval, max));
                let now = std::time::Instant::now();
                if ended == CatchUp::NotKnownYet {
                    // It has our profile now (introduced above) and processes it within moments.
                    Some(backoff.failed_soon(now))
                } else {
                    backoff.failed(now);
                    None
                }
            } else {
                None
            }
        });
        if let Some(wait) = retry_soon {
            self.kick_after(wait);
        }
    }

    /// Stores a node profile we received (verified bundle). Blocking (graph write).
    pub(super) fn apply_node_bundle(&self, bundle: &Bundle) -> Result<(), NotApplied> {
        if bundle.rid() == self.rid() {
            return Ok(());
        }
        let profile: NodeProfile = bundle.contents_as().map_err(|e| {
            NotApplied::Reject(RejectReason::Malformed, format!("bad node profile: {e}"))
        })?;
        // A profile must carry the key its RID names, or it could redirect us to an impostor.
        let key_ok = match (
            crate::protocol::NodeRid::from_rid(bundle.rid()),
            &profile.public_key,
        ) {
            (Ok(node), Some(key)) => node.matches_public_key(key),
            _ => false,
        };
        if !key_ok {
            return Err(NotApplied::Reject(
                RejectReason::BadSignature,
                "node profile's public key does not hash to its RID".into(),
            ));
        }
        match self.graph.upsert_node(bundle) {
            Ok(GraphChange::Updated(p)) => {
                tracing::info!(node = %bundle.rid(), base_url = ?p.base_url, provides = ?p.provides.event, "learned node profile");
                // A new provider may want an edge proposal: the subscription pass runs now.
                self.kick();
                Ok(())
            }
            Ok(GraphChange::Unchanged) => Ok(()),
            Err(e) => Err(NotApplied::Later(e.to_string())),
        }
    }

    /// Applies an edge profile we received (verified bundle): notes that a provider approved ours, or says that an
    /// edge proposed to us is to be approved ([`EdgeApplied::Approve`]). Blocking (it writes the graph), but it
    /// makes no network call: it runs on the writer thread, which must never wait on a neighbour.
    pub(super) fn apply_edge_bundle(
        &self,
        bundle: &Bundle,
        source: &Rid,
    ) -> Result<EdgeApplied, NotApplied> {
        let edge: EdgeProfile = bundle.contents_as().map_err(|e| {
            NotApplied::Reject(RejectReason::Malformed, format!("bad edge profile: {e}"))
        })?;
        if edge.rid().rid() != bundle.rid() {
            return Err(NotApplied::Reject(
                RejectReason::Malformed,
                "edge RID does not match its source and target".into(),
            ));
        }
        if &edge.source != self.rid() && &edge.target != self.rid() {
            // Edges between other nodes: nothing for a partial node to do.
            return Ok(EdgeApplied::Done);
        }
        match decide_edge(self.rid(), &edge) {
            EdgeDecision::Approve => {
                let peer = self.peer_for(&edge.target);
                let peer = if peer.base_url.is_empty() {
                    self.peer_for(source)
                } else {
                    peer
                };
                return Ok(EdgeApplied::Approve {
                    approved: edges::approved(&edge),
                    peer,
                });
            }
            EdgeDecision::Subscribed { source } => {
                self.graph
                    .upsert_edge(bundle)
                    .map_err(|e| NotApplied::Later(e.to_string()))?;
                tracing::info!(provider = %source, rid_types = ?edge.rid_types, "POLL edge approved; polling it");
                // The provider queues events for us only from its approval on; what it received between our
                // proposal and then (a catch-up may already have run) is fetched by catching up once more.
                self.catch_up_again(&source);
                self.kick();
            }
            EdgeDecision::Ignore => {}
        }
        Ok(EdgeApplied::Done)
    }

    /// Sends the approval of an edge proposed to us (inbox entry `key`), on the runtime, bounded by `poll.timeout`
    /// and by shutdown. Once the neighbour has it, the approved edge is stored and the entry removed. If it fails,
    /// the entry stays: after `poll.interval` the writer hands it back here. On shutdown it stays for the next
    /// start.
    pub(super) async fn approve_edge(
        self: &Arc<Self>,
        key: u64,
        approved: EdgeProfile,
        peer: Peer,
    ) {
        let events = vec![Event::from_bundle(EventType::Update, approved.to_bundle())];
        let sent = self
            .unless_cancelled(self.client.broadcast(&peer, events, self.settings.timeout))
            .await;
        match sent {
            None => {}
            Some(Err(e)) => {
                tracing::warn!(
                    edge = %approved.rid().rid(), neighbour = %peer.rid, cause = %error_chain(&e),
                    "approving an edge failed; will retry"
                );
                self.unless_cancelled(tokio::time::sleep(self.settings.interval))
                    .await;
            }
            Some(Ok(())) => {
                tracing::info!(edge = %approved.rid().rid(), target = %approved.target, "approved edge proposed by neighbour");
                let node = Arc::clone(self);
                let stored = tokio::task::spawn_blocking(move || -> Result<(), String> {
                    // Effects first, then forget the entry: a crash in between approves it again, harmlessly.
                    node.graph
                        .upsert_edge(&approved.to_bundle())
                        .map_err(|e| e.to_string())?;
                    node.db.flush().map_err(|e| e.to_string())?;
                    node.inbox.remove(&[key]).map_err(|e| e.to_string())?;
                    node.room.notify_waiters();
                    Ok(())
                })
                .await;
                match stored {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => {
                        tracing::error!(error = %e, "cannot store an approved edge; it will be approved again")
                    }
                    Err(e) => tracing::error!(error = %e, "storing an approved edge failed"),
                }
            }
        }
    }

    /// Whether a catch-up of `provider` has completed this run (tests).
    pub fn caught_up(&self, provider: &Rid) -> bool {
        self.with_peer(provider, |s| s.caught_up)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::testing;
    use crate::protocol::NodeKey;

    fn peer_rid() -> Rid {
        NodeKey::generate()
            .node_rid("provider")
            .unwrap()
            .rid()
            .clone()
    }

    #[test]
    fn an_edge_proposed_from_us_is_to_be_approved_without_a_network_call_here() {
        let t = testing::node();
        let provider = peer_rid();
        let proposal = edges::poll_edge_proposal(&provider, t.node.rid(), Vec::new());
        match t.node.apply_edge_bundle(&proposal.to_bundle(), &provider) {
            Ok(EdgeApplied::Approve { approved, .. }) => {
                assert_eq!(approved.status, EdgeStatus::Approved);
                assert_eq!(&approved.source, t.node.rid());
            }
            _ => panic!("an edge from us, proposed by a neighbour, is ours to approve"),
        }
    }

    #[test]
    fn an_approved_poll_edge_to_us_is_stored_and_its_provider_polled() {
        let t = testing::node();
        let provider = peer_rid();
        let approved = edges::approved(&edges::poll_edge_proposal(
            t.node.rid(),
            &provider,
            vec![RidType::parse(RidType::GITHUB_EVENT).unwrap()],
        ));
        assert!(matches!(
            t.node.apply_edge_bundle(&approved.to_bundle(), &provider),
            Ok(EdgeApplied::Done)
        ));
        let sources = t.node.graph.poll_sources(t.node.rid()).unwrap();
        assert!(sources.iter().any(|e| e.source == provider));
        // Edges between two other nodes are none of ours.
        let elsewhere = edges::poll_edge_proposal(&peer_rid(), &provider, Vec::new());
        assert!(matches!(
            t.node.apply_edge_bundle(&elsewhere.to_bundle(), &provider),
            Ok(EdgeApplied::Done)
        ));
    }
}
