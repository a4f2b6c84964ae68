//! Catch-up: fetch what a provider already holds and push it into the inbox, the same path polled events take.
//! First its RID list; then the bundles of the RIDs we do not hold, and, for those we hold, the manifests (in
//! batches) and the bundles of the newer ones. Each item is read on its own; a bad one is rejected alone.

use std::sync::Arc;

use crate::protocol::{Bundle, Event, EventType, Freshness, Item, Manifest, Rid, RidType};
use crate::telemetry::BundlesFetched;

use super::client::error_chain;
use super::inbox::InboxError;
use super::{bad_item_rejection, network_types, Node};

/// RIDs per `fetch_manifests` request, for the RIDs the index already holds (their manifests say whether the
/// provider's version is newer). A manifest is about 250 bytes of JSON.
const MANIFESTS_PER_REQUEST: usize = 1000;

/// A provider's RIDs, sorted by what catch-up does with them.
#[derive(Debug, Default)]
struct SortedRids {
    /// Not held (or node profiles): fetch the bundles.
    unknown: Vec<Rid>,
    /// Held: fetch the manifests first.
    known: Vec<Rid>,
}

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
        // The RIDs it holds (about 60 bytes each), not their manifests: a provider holding a million events is
        // listed in tens of MB, not hundreds, and lists a directory instead of reading every bundle.
        let fetched = tokio::select! {
            fetched = self.client.fetch_rids(&peer, types, self.settings.catch_up_timeout) => fetched,
            _ = self.cancel.cancelled() => return CatchUp::Failed,
        };
        let rids = match fetched {
            Ok(rids) => rids,
            Err(e) => {
                return self
                    .request_failed(provider, &peer, "the RID list", &e)
                    .await
            }
        };
        let held = rids.len();
        let source = provider.clone();
        let sorted = match self
            .index_read(move |node| node.sort_rids(&source, rids))
            .await
        {
            Ok(sorted) => sorted,
            Err(failed) => return failed,
        };
        // RIDs we do not hold are fetched as they are; for those we hold, the manifests say whether theirs is newer.
        let mut fetched_count = sorted.unknown.len();
        let mut queued = match self
            .fetch_bundles_into_inbox(provider, &peer, sorted.unknown)
            .await
        {
            Ok(n) => n,
            Err(failed) => return failed,
        };
        for chunk in sorted.known.chunks(MANIFESTS_PER_REQUEST) {
            let fetched = tokio::select! {
                fetched = self.client.fetch_manifests(&peer, vec![], chunk.to_vec(), self.settings.catch_up_timeout) => fetched,
                _ = self.cancel.cancelled() => return CatchUp::Failed,
            };
            let manifests = match fetched {
                Ok(manifests) => manifests,
                Err(e) => return self.request_failed(provider, &peer, "manifests", &e).await,
            };
            let source = provider.clone();
            let asked: std::collections::HashSet<Rid> = chunk.iter().cloned().collect();
            let wanted = match self
                .index_read(move |node| node.wanted(&source, &asked, manifests))
                .await
            {
                Ok(wanted) => wanted,
                Err(failed) => return failed,
            };
            fetched_count += wanted.len();
            match self.fetch_bundles_into_inbox(provider, &peer, wanted).await {
                Ok(n) => queued += n,
                Err(failed) => return failed,
            }
        }
        tracing::info!(provider = %provider, held, fetched = fetched_count, queued, "caught up");
        CatchUp::Done
    }

    /// Runs an index read off the runtime; a failure is logged and ends the catch-up (retried after a backoff).
    async fn index_read<T: Send + 'static>(
        self: &Arc<Self>,
        read: impl FnOnce(&Node) -> Result<T, crate::index::IndexError> + Send + 'static,
    ) -> Result<T, CatchUp> {
        let node = Arc::clone(self);
        match tokio::task::spawn_blocking(move || read(&node)).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => {
                tracing::error!(error = %e, "index read failed during catch-up; will retry");
                Err(CatchUp::Failed)
            }
            Err(e) => {
                tracing::error!(error = %e, "catch-up task failed; will retry");
                Err(CatchUp::Failed)
            }
        }
    }

    /// A catch-up request failed: logged; a provider that does not know us yet is introduced to (and the catch-up
    /// retried within moments), anything else is retried after a backoff.
    async fn request_failed(
        self: &Arc<Self>,
        provider: &Rid,
        peer: &super::client::Peer,
        what: &str,
        e: &super::client::ClientError,
    ) -> CatchUp {
        tracing::warn!(provider = %provider, url = %peer.base_url, cause = %error_chain(e), "catch-up: fetching {what} failed; will retry");
        if e.is_unknown_node() {
            self.introduce_to_provider(peer).await;
            return CatchUp::NotKnownYet;
        }
        CatchUp::Failed
    }

    /// Fetches the bundles of `rids` from `peer` in batches of `poll.fetch_batch` into the inbox, waiting for room
    /// before each. Returns how many were queued, or how the catch-up ends.
    ///
    /// One batch is stored (hash-checked, prepared, synced: off the runtime) while the next is fetched, in order:
    /// the provider's work and ours overlap (a 5,000-event catch-up's transfer about 15 % shorter). At most two
    /// batches are in memory.
    async fn fetch_bundles_into_inbox(
        self: &Arc<Self>,
        provider: &Rid,
        peer: &super::client::Peer,
        rids: Vec<Rid>,
    ) -> Result<usize, CatchUp> {
        let mut queued = 0;
        let mut storing: Option<tokio::task::JoinHandle<Result<usize, InboxError>>> = None;
        for batch in rids.chunks(self.settings.fetch_batch) {
            // Backpressure: a catch-up of a million events waits for the writer instead of filling memory.
            if !self.wait_for_room().await {
                return Err(CatchUp::Failed);
            }
            let fetched = tokio::select! {
                fetched = self.client.fetch_bundles(peer, batch.to_vec(), self.settings.catch_up_timeout) => fetched,
                _ = self.cancel.cancelled() => return Err(CatchUp::Failed),
            };
            let bundles = match fetched {
                Ok(bundles) => bundles,
                Err(e) => {
                    // What was fetched before is stored all the same (a failure to store it is logged there).
                    if let Some(previous) = storing.take() {
                        let _ = self.stored(provider, previous).await;
                    }
                    return Err(self.request_failed(provider, peer, "bundles", &e).await);
                }
            };
            BundlesFetched {
                neighbour: provider.as_str(),
                count: bundles.iter().filter(|b| b.is_ok()).count(),
            }
            .emit(&self.telemetry.metrics);
            if let Some(previous) = storing.take() {
                queued += self.stored(provider, previous).await?;
            }
            let node = Arc::clone(self);
            let source = provider.clone();
            storing = Some(tokio::task::spawn_blocking(move || {
                node.store_bundles(&source, bundles)
            }));
        }
        if let Some(last) = storing {
            queued += self.stored(provider, last).await?;
        }
        Ok(queued)
    }

    /// Waits for a batch being stored; wakes the writer once it is in the inbox.
    async fn stored(
        &self,
        provider: &Rid,
        storing: tokio::task::JoinHandle<Result<usize, InboxError>>,
    ) -> Result<usize, CatchUp> {
        match storing.await {
            Ok(Ok(n)) => {
                self.wake_writer.notify();
                Ok(n)
            }
            Ok(Err(e)) => {
                tracing::error!(provider = %provider, error = %e, "catch-up: cannot store fetched bundles; will retry");
                Err(CatchUp::Failed)
            }
            Err(e) => {
                tracing::error!(provider = %provider, error = %e, "catch-up task failed; will retry");
                Err(CatchUp::Failed)
            }
        }
    }

    /// Splits a provider's RID list: node profiles (other than ours) and GitHub objects the index does not hold
    /// are fetched straight away; those it holds need their manifests first. Bad RIDs are rejected. Blocking.
    fn sort_rids(
        &self,
        source: &Rid,
        rids: Vec<Item<Rid>>,
    ) -> Result<SortedRids, crate::index::IndexError> {
        let mut sorted = SortedRids::default();
        let mut rejections = Vec::new();
        for rid in rids {
            let rid = match rid {
                Ok(rid) => rid,
                Err(bad) => {
                    rejections.push(bad_item_rejection(source, bad));
                    continue;
                }
            };
            if rid.is_type(RidType::NODE) {
                if &rid != self.rid() {
                    sorted.unknown.push(rid);
                }
            } else if self.index.cached_manifest(&rid)?.is_some() {
                sorted.known.push(rid);
            } else {
                sorted.unknown.push(rid);
            }
        }
        self.reject(rejections);
        Ok(sorted)
    }

    /// The RIDs among `manifests` (of those `asked` for: a peer's extra answers are ignored) worth fetching: GitHub
    /// objects newer than what the index holds ([`Manifest::freshness`]). Bad manifests are rejected. Blocking
    /// (index reads).
    fn wanted(
        &self,
        source: &Rid,
        asked: &std::collections::HashSet<Rid>,
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
            if !asked.contains(&manifest.rid) {
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

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use crate::node::testing::{self, push as bundle};
    use crate::protocol::Rid;

    /// Of the manifests a provider lists, only those asked for and newer than what is held are fetched; an
    /// unreadable one is a dead letter and costs only itself.
    #[test]
    fn only_newer_manifests_that_were_asked_for_are_wanted() {
        let t = testing::node();
        let source = testing::sensor();
        let held = bundle("held", 1);
        t.node.index.apply_bundle(&held).unwrap();
        let fresh = bundle("fresh", 1);
        let extra = bundle("extra", 1);
        let asked: HashSet<Rid> = [held.rid().clone(), fresh.rid().clone()].into();
        let payload = format!(
            "{{\"type\": \"manifests_payload\", \"manifests\": [{}, {}, {}, {{\"rid\": 5}}], \"not_found\": []}}",
            serde_json::to_string(&held.manifest).unwrap(),
            serde_json::to_string(&fresh.manifest).unwrap(),
            serde_json::to_string(&extra.manifest).unwrap(),
        );
        let crate::protocol::ResponseItems::Manifests { manifests, .. } =
            crate::protocol::ResponseItems::parse(&payload).unwrap()
        else {
            panic!("a manifests payload");
        };
        let wanted = t.node.wanted(&source, &asked, manifests).unwrap();
        assert_eq!(wanted, vec![fresh.rid().clone()]);
        assert_eq!(t.dead_letters.page(0, 10, false).unwrap().len(), 1);
    }
}
