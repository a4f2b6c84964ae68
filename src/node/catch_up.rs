//! Catch-up: fetch what a provider already holds (manifests, then the bundles we lack, in batches) and push it
//! into the inbox, the same path polled events take. Each item is read on its own; a bad one is rejected alone.

use std::sync::Arc;

use crate::protocol::{Bundle, Event, EventType, Freshness, Item, Manifest, Rid, RidType};
use crate::telemetry::BundlesFetched;

use super::client::error_chain;
use super::inbox::InboxError;
use super::{bad_item_rejection, network_types, Node};

/// How a catch-up ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum CatchUp {
    /// Everything wanted is in the inbox.
    Done,
    /// A request failed (or shutdown): retried after a backoff.
    Failed,
    /// The provider does not know us yet (it has not processed our profile): retried within moments.
    NotKnownYet,
}

impl Node {
    /// Fetches what `provider` holds of our types that we lack, into the inbox. Says whether it completed; if
    /// not, the next subscription pass tries again.
    pub(super) async fn catch_up(self: &Arc<Self>, provider: &Rid) -> CatchUp {
        let peer = self.peer_for(provider);
        let Some(profile) = self.graph.node(provider).ok().flatten() else {
            return CatchUp::Failed;
        };
        let mut types: Vec<RidType> = self
            .settings
            .interest
            .iter()
            .filter(|t| profile.provides.state.contains(t))
            .cloned()
            .collect();
        if provider == &self.settings.first_contact_rid {
            // Node discovery: the profiles the first contact already holds, e.g. sensors that joined before us.
            types.extend(
                network_types()
                    .into_iter()
                    .filter(|t| t.as_str() == RidType::NODE),
            );
        }
        if types.is_empty() || peer.base_url.is_empty() {
            return CatchUp::Done;
        }
        tracing::info!(provider = %provider, types = ?types.iter().map(RidType::as_str).collect::<Vec<_>>(), "catching up");
        let fetched = tokio::select! {
            fetched = self.client.fetch_manifests(&peer, types, vec![], self.settings.catch_up_timeout) => fetched,
            _ = self.cancel.cancelled() => return CatchUp::Failed,
        };
        let manifests = match fetched {
            Ok(manifests) => manifests,
            Err(e) => {
                tracing::warn!(provider = %provider, url = %peer.base_url, cause = %error_chain(&e), "catch-up: fetching manifests failed; will retry");
                if e.is_unknown_node() {
                    self.introduce_to_provider(&peer).await;
                    return CatchUp::NotKnownYet;
                }
                return CatchUp::Failed;
            }
        };
        let held = manifests.len();
        let node = Arc::clone(self);
        let source = provider.clone();
        let wanted =
            match tokio::task::spawn_blocking(move || node.wanted(&source, manifests)).await {
                Ok(Ok(wanted)) => wanted,
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "index read failed during catch-up; will retry");
                    return CatchUp::Failed;
                }
                Err(e) => {
                    tracing::error!(error = %e, "catch-up task failed; will retry");
                    return CatchUp::Failed;
                }
            };
        let mut queued = 0;
        for batch in wanted.chunks(self.settings.fetch_batch) {
            // Backpressure: a catch-up of a million events waits for the writer instead of filling memory.
            if !self.wait_for_room().await {
                return CatchUp::Failed;
            }
            let fetched = tokio::select! {
                fetched = self.client.fetch_bundles(&peer, batch.to_vec(), self.settings.catch_up_timeout) => fetched,
                _ = self.cancel.cancelled() => return CatchUp::Failed,
            };
            let bundles = match fetched {
                Ok(bundles) => bundles,
                Err(e) => {
                    tracing::warn!(provider = %provider, url = %peer.base_url, cause = %error_chain(&e), "catch-up: fetching bundles failed; will retry");
                    if e.is_unknown_node() {
                        self.introduce_to_provider(&peer).await;
                        return CatchUp::NotKnownYet;
                    }
                    return CatchUp::Failed;
                }
            };
            BundlesFetched {
                neighbour: provider.as_str(),
                count: bundles.iter().filter(|b| b.is_ok()).count(),
            }
            .emit(&self.telemetry.metrics);
            let node = Arc::clone(self);
            let source = provider.clone();
            let stored =
                tokio::task::spawn_blocking(move || node.store_bundles(&source, bundles)).await;
            match stored {
                Ok(Ok(n)) => queued += n,
                Ok(Err(e)) => {
                    tracing::error!(provider = %provider, error = %e, "catch-up: cannot store fetched bundles; will retry");
                    return CatchUp::Failed;
                }
                Err(e) => {
                    tracing::error!(provider = %provider, error = %e, "catch-up task failed; will retry");
                    return CatchUp::Failed;
                }
            }
            if let Err(e) = self.db.flush_async().await {
                tracing::error!(error = %e, "flush during catch-up failed; will retry");
                return CatchUp::Failed;
            }
            self.wake_writer.notify();
        }
        tracing::info!(provider = %provider, held, fetched = wanted.len(), queued, "caught up");
        CatchUp::Done
    }

    /// The RIDs among `manifests` worth fetching: node profiles (other than ours), and GitHub objects newer than
    /// what the index holds ([`Manifest::freshness`]). Bad manifests are rejected. Blocking (index reads).
    fn wanted(
        &self,
        source: &Rid,
        manifests: Vec<Item<Manifest>>,
    ) -> Result<Vec<Rid>, crate::index::IndexError> {
        let mut wanted = Vec::new();
        let mut rejections = Vec::new();
        for manifest in manifests {
            let manifest = match manifest {
                Ok(m) => m,
                Err(bad) => {
                    rejections.push(bad_item_rejection(source, bad));
                    continue;
                }
            };
            if manifest.rid.is_type(RidType::NODE) {
                if &manifest.rid != self.rid() {
                    wanted.push(manifest.rid);
                }
                continue;
            }
            let held = self.index.cached_manifest(&manifest.rid)?;
            if manifest.freshness(held.as_ref()) == Freshness::Newer {
                wanted.push(manifest.rid);
            }
        }
        self.reject(rejections);
        Ok(wanted)
    }

    /// Checks each fetched bundle's hash and appends the good ones to the inbox as NEW events; bad ones are
    /// rejected one by one, exactly as polled events are. Blocking.
    fn store_bundles(&self, source: &Rid, bundles: Vec<Item<Bundle>>) -> Result<usize, InboxError> {
        let events = bundles
            .into_iter()
            .map(|bundle| bundle.map(|b| Event::from_bundle(EventType::New, b)))
            .collect();
        self.screen_and_store(source, events)
    }
}
