//! The single writer: drains the inbox into the graph and the index on a thread of its own, never on a runtime
//! thread.
//!
//! Each pass reads a bounded chunk of the inbox, oldest first, and for each entry decides (see [`Handled`]):
//! node and edge events go to the graph, GitHub bundles are indexed together in one transaction per chunk (a
//! bundle that cannot be indexed comes back alone as a dead letter), FORGETs remove, and events that carried only
//! a manifest are either already held (dropped) or handed to a background fetch, which puts the whole event back
//! in the inbox or dead-letters it after [`FETCH_ATTEMPTS`]. Then the effects are flushed, and only then are the
//! entries removed: a crash in between replays them, and replaying is harmless (the index deduplicates).

use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::index::{ApplyOutcome, PreparedBundle, Rejection};
use crate::protocol::{Bundle, EventType, Freshness, HashScheme, Rid, RidType};
use crate::telemetry::{
    DedupReason, EventDeduplicated, EventFiltered, EventIndexed, LegacyHashAccepted, RejectReason,
};

use super::inbox::{InboxEntry, InboxError};
use super::membership::{EdgeApplied, NotApplied};
use super::{lock, rejection_of, Node, NodeError};

/// Entries read per pass, and most GitHub bundles per index transaction.
pub const CHUNK: usize = 256;
/// Entries worked on in the background at once (manifest-only events being fetched, edges being approved); more
/// wait in the inbox.
pub const MAX_FETCHES: usize = 32;
/// Tries to get a manifest-only event's bundle before it is dead-lettered as `unfetchable`.
pub const FETCH_ATTEMPTS: u32 = 5;
/// Longest the writer sleeps without being woken (a safety net; pushes wake it at once).
const IDLE_WAIT: Duration = Duration::from_millis(500);

/// Wakes the writer. A bounded channel of one: a wake-up while one is pending is merged into it.
pub(super) struct Wake {
    tx: SyncSender<()>,
    rx: Mutex<Option<Receiver<()>>>,
}

impl Wake {
    pub(super) fn new() -> Wake {
        let (tx, rx) = sync_channel(1);
        Wake {
            tx,
            rx: Mutex::new(Some(rx)),
        }
    }

    /// Wakes the writer (never blocks).
    pub(super) fn notify(&self) {
        let _ = self.tx.try_send(());
    }
}

/// GitHub bundles waiting to be indexed together, with the inbox key and source of each.
#[derive(Default)]
struct Pending {
    entries: Vec<(u64, Rid)>,
    bundles: Vec<PreparedBundle>,
}

/// What became of one inbox entry.
enum Handled {
    /// Its effects are written (or there were none): remove it.
    Done,
    /// A verified GitHub bundle, to be indexed with the others of this chunk in one transaction.
    Index(Box<PreparedBundle>),
    /// Refused: dead-letter it and remove it.
    Reject(RejectReason, String),
    /// Refused, with its bundle as evidence: dead-letter it and remove it.
    Refused(Box<Rejection>),
    /// A background task owns it now (a bundle fetch, an edge approval).
    Background,
    /// Not now (a neighbour was unreachable, too many fetches, shutdown): it stays for a later pass.
    Later(String),
}

/// Starts the writer thread. It runs until the node's cancellation token fires, then finishes the chunk in hand.
pub(super) fn spawn_writer(node: Arc<Node>) -> Result<std::thread::JoinHandle<()>, NodeError> {
    let wake = lock(&node.wake_writer.rx)
        .take()
        .ok_or_else(|| NodeError::Writer("the writer was already started".into()))?;
    let runtime = tokio::runtime::Handle::current();
    std::thread::Builder::new()
        .name("koi-indexer-writer".into())
        .spawn(move || node.write_until_cancelled(&wake, &runtime))
        .map_err(|e| NodeError::Writer(e.to_string()))
}

impl Node {
    fn write_until_cancelled(
        self: &Arc<Self>,
        wake: &Receiver<()>,
        runtime: &tokio::runtime::Handle,
    ) {
        while !self.cancel.is_cancelled() {
            let handled = match self.drain_chunk(runtime) {
                Ok(n) => n,
                Err(e) => {
                    tracing::error!(error = %e, "writing the inbox into the index failed; the events stay in the inbox and are retried");
                    0
                }
            };
            if handled == 0 {
                match wake.recv_timeout(IDLE_WAIT) {
                    Ok(()) | Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => break,
                }
            }
        }
    }

    /// One pass over up to [`CHUNK`] entries. Returns how many left the inbox or went to a fetch.
    fn drain_chunk(self: &Arc<Self>, runtime: &tokio::runtime::Handle) -> Result<usize, NodeError> {
        let busy = self.background.busy();
        let entries = self.inbox.chunk(CHUNK, |key| busy.contains(&key));
        if entries.is_empty() {
            return Ok(0);
        }
        let mut done: Vec<u64> = Vec::with_capacity(entries.len());
        let mut pending = Pending::default();
        let mut rejections: Vec<Rejection> = Vec::new();
        let mut moved = 0;
        for entry in entries {
            let (key, entry) = match entry {
                Ok(pair) => pair,
                Err(InboxError::Corrupt { key, reason }) => {
                    rejections.push(Rejection {
                        rid: String::new(),
                        source: "inbox".into(),
                        reason: RejectReason::Malformed.as_str(),
                        detail: format!("unreadable inbox entry {key}: {reason}"),
                        item: String::new(),
                    });
                    done.push(key);
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            // Order: what reads or removes from the index sees every bundle before it written.
            if !pending.bundles.is_empty()
                && ((entry.prepared.is_none() && entry.event.contents.is_none())
                    || entry.event.event_type == EventType::Forget)
            {
                self.index_pending(&mut pending, &mut done, &mut rejections)?;
            }
            let (rid, source) = (entry.event.rid.clone(), entry.source.clone());
            match self.handle(key, entry, runtime) {
                Handled::Done => done.push(key),
                Handled::Index(bundle) => {
                    pending.entries.push((key, source));
                    pending.bundles.push(*bundle);
                    if pending.bundles.len() >= CHUNK {
                        self.index_pending(&mut pending, &mut done, &mut rejections)?;
                    }
                }
                Handled::Reject(reason, detail) => {
                    rejections.push(Rejection {
                        rid: rid.to_string(),
                        source: source.to_string(),
                        reason: reason.as_str(),
                        detail,
                        item: String::new(),
                    });
                    done.push(key);
                }
                Handled::Refused(rejection) => {
                    rejections.push(*rejection);
                    done.push(key);
                }
                Handled::Background => moved += 1,
                Handled::Later(why) => {
                    tracing::debug!(neighbour = %source, rid = %rid, reason = %why, "event kept in the inbox for later");
                }
            }
        }
        self.index_pending(&mut pending, &mut done, &mut rejections)?;
        self.reject(rejections);
        if !done.is_empty() {
            // Effects first, then forget the entries: a crash in between replays them, harmlessly.
            self.db.flush()?;
            self.inbox.remove(&done)?;
            self.room.notify_waiters();
            self.report_sizes();
        }
        Ok(done.len() + moved)
    }

    /// Indexes the pending bundles in one transaction. Every one of them is then done: indexed, deduplicated, or
    /// refused alone (dead-lettered). A storage failure leaves them all in the inbox.
    fn index_pending(
        &self,
        pending: &mut Pending,
        done: &mut Vec<u64>,
        rejections: &mut Vec<Rejection>,
    ) -> Result<(), NodeError> {
        if pending.bundles.is_empty() {
            return Ok(());
        }
        let Pending { entries, bundles } = std::mem::take(pending);
        let outcomes = self.index.apply(&bundles)?;
        let metrics = &self.telemetry.metrics;
        for (((key, source), bundle), outcome) in entries.into_iter().zip(&bundles).zip(outcomes) {
            let rid = bundle.rid().as_str();
            let dedup = |reason| EventDeduplicated { rid, reason }.emit(metrics);
            let refused = |reason, why| rejection_of_prepared(&source, bundle, reason, why);
            match outcome {
                ApplyOutcome::Indexed { .. } => EventIndexed { rid }.emit(metrics),
                ApplyOutcome::Unchanged => dedup(DedupReason::Unchanged),
                ApplyOutcome::Stale => dedup(DedupReason::Stale),
                ApplyOutcome::Ignored => {}
                ApplyOutcome::Filtered => EventFiltered { rid }.emit(metrics),
                ApplyOutcome::BadRid(why) => rejections.push(refused(RejectReason::BadRid, why)),
                ApplyOutcome::Invalid(why) => {
                    rejections.push(refused(RejectReason::Unindexable, why))
                }
            }
            done.push(key);
        }
        Ok(())
    }

    /// Decides what one entry needs. Blocking: the writer thread's.
    fn handle(
        self: &Arc<Self>,
        key: u64,
        entry: InboxEntry,
        runtime: &tokio::runtime::Handle,
    ) -> Handled {
        let rid = entry.event.rid.clone();
        let is_node = rid.is_type(RidType::NODE);
        let is_edge = rid.is_type(RidType::EDGE);
        let is_interest = self
            .settings
            .interest
            .iter()
            .any(|t| rid.is_type(t.as_str()));
        if !(is_node || is_edge || is_interest) {
            return Handled::Done;
        }
        if entry.event.event_type == EventType::Forget {
            return self.forget(&rid, is_interest);
        }
        let InboxEntry {
            source,
            event,
            hash_verified,
            prepared,
        } = entry;
        if let Some(prepared) = prepared {
            // Only GitHub bundles are prepared, and only the event's own, hash-checked.
            return if is_interest {
                Handled::Index(prepared)
            } else {
                Handled::Done
            };
        }
        let bundle = match event.into_bundle() {
            Ok(bundle) => bundle,
            Err(event) => {
                let entry = InboxEntry {
                    source,
                    event: *event,
                    hash_verified,
                    prepared: None,
                };
                return self.manifest_only(key, entry, is_interest, runtime);
            }
        };
        if bundle.rid() != &rid {
            return Handled::Reject(
                RejectReason::Malformed,
                format!("event for {rid} carries a bundle for {}", bundle.rid()),
            );
        }
        if !hash_verified {
            match bundle.verify_hash() {
                Err(mismatch) => {
                    return Handled::Reject(RejectReason::BadHash, mismatch.to_string())
                }
                Ok(HashScheme::Legacy) => LegacyHashAccepted {
                    neighbour: source.as_str(),
                    rid: bundle.rid().as_str(),
                }
                .emit(&self.telemetry.metrics),
                Ok(HashScheme::Rfc8785) => {}
            }
        }
        let applied = if is_node {
            self.apply_node_bundle(&bundle).map(|()| EdgeApplied::Done)
        } else if is_edge {
            self.apply_edge_bundle(&bundle, &source)
        } else {
            return prepare_or_refuse(&source, &rid, &bundle);
        };
        match applied {
            Ok(EdgeApplied::Done) => Handled::Done,
            Ok(EdgeApplied::Approve { approved, peer }) => {
                self.in_background(key, runtime, move |node| async move {
                    node.approve_edge(key, approved, peer).await
                })
            }
            Err(NotApplied::Reject(reason, why)) => Handled::Reject(reason, why),
            Err(NotApplied::Later(why)) => Handled::Later(why),
        }
    }

    /// A FORGET: the event's row (a GitHub RID) or the graph's node or edge goes.
    fn forget(&self, rid: &Rid, is_interest: bool) -> Handled {
        let removed = if is_interest {
            self.index.forget(rid).map(drop).map_err(|e| e.to_string())
        } else if rid != self.rid() {
            self.graph.remove(rid).map(drop).map_err(|e| e.to_string())
        } else {
            Ok(())
        };
        match removed {
            Ok(()) => Handled::Done,
            Err(why) => Handled::Later(why),
        }
    }

    /// An event that carried only a manifest: done if we hold that version (or a newer one), else its bundle is
    /// fetched in the background.
    fn manifest_only(
        self: &Arc<Self>,
        key: u64,
        entry: InboxEntry,
        is_interest: bool,
        runtime: &tokio::runtime::Handle,
    ) -> Handled {
        let rid = &entry.event.rid;
        let Some(manifest) = &entry.event.manifest else {
            return Handled::Reject(
                RejectReason::Malformed,
                "NEW/UPDATE event with neither manifest nor contents".into(),
            );
        };
        if is_interest {
            if let Ok(held) = self.index.cached_manifest(rid) {
                let reason = match manifest.freshness(held.as_ref()) {
                    Freshness::Newer => None,
                    Freshness::Unchanged => Some(DedupReason::Unchanged),
                    Freshness::Stale => Some(DedupReason::Stale),
                };
                if let Some(reason) = reason {
                    EventDeduplicated {
                        rid: rid.as_str(),
                        reason,
                    }
                    .emit(&self.telemetry.metrics);
                    return Handled::Done;
                }
            }
        }
        self.start_fetch(key, entry, runtime)
    }

    /// Hands a manifest-only event to a background fetch.
    fn start_fetch(
        self: &Arc<Self>,
        key: u64,
        entry: InboxEntry,
        runtime: &tokio::runtime::Handle,
    ) -> Handled {
        self.in_background(key, runtime, move |node| async move {
            node.fetch_into_inbox(key, entry).await
        })
    }

    /// Runs `work` for inbox entry `key` on the runtime (at most [`MAX_FETCHES`] at once): whatever waits on a
    /// neighbour runs there, never on the writer thread. The writer leaves the entry alone until `work` ends, then
    /// looks at the inbox again (the work removed the entry, replaced it, or left it for another try).
    fn in_background<F, Fut>(
        self: &Arc<Self>,
        key: u64,
        runtime: &tokio::runtime::Handle,
        work: F,
    ) -> Handled
    where
        F: FnOnce(Arc<Node>) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        if self.cancel.is_cancelled() {
            return Handled::Later("shutting down".into());
        }
        if !self.background.start(key) {
            return Handled::Later("too many background fetches and approvals in flight".into());
        }
        let node = Arc::clone(self);
        runtime.spawn(async move {
            work(Arc::clone(&node)).await;
            node.background.finish(key);
            node.wake_writer.notify();
        });
        Handled::Background
    }

    /// Gets the bundle of a manifest-only event and puts the whole event back in the inbox in its place; after
    /// [`FETCH_ATTEMPTS`] failures (with backoff) it is dead-lettered as `unfetchable`. On shutdown the entry is
    /// left as it is, for the next start.
    async fn fetch_into_inbox(self: &Arc<Self>, key: u64, entry: InboxEntry) {
        let rid = entry.event.rid.clone();
        let mut last_error = String::new();
        let mut delay = self.settings.interval;
        for attempt in 1..=FETCH_ATTEMPTS {
            let fetched = match self
                .unless_cancelled(self.fetch_bundle(&rid, &entry.source))
                .await
            {
                None => return,
                Some(fetched) => fetched,
            };
            match fetched {
                Ok(bundle) => {
                    let node = Arc::clone(self);
                    let _ =
                        tokio::task::spawn_blocking(move || node.requeue(key, entry, bundle)).await;
                    return;
                }
                Err(why) => last_error = why,
            }
            if attempt < FETCH_ATTEMPTS {
                tracing::debug!(rid = %rid, attempt, cause = %last_error, "bundle fetch failed; will retry");
                if self
                    .unless_cancelled(tokio::time::sleep(delay))
                    .await
                    .is_none()
                {
                    return;
                }
                delay = (delay * 2).min(self.settings.max_backoff);
            }
        }
        let node = Arc::clone(self);
        let _ = tokio::task::spawn_blocking(move || {
            let rejection = rejection_of(
                &entry.source,
                &rid,
                RejectReason::Unfetchable,
                format!("no neighbour gave its bundle after {FETCH_ATTEMPTS} tries: {last_error}"),
                &entry.event,
            );
            node.reject(vec![rejection]);
            if let Err(e) = node.inbox.remove(&[key]) {
                tracing::error!(error = %e, "cannot remove a dead-lettered inbox entry");
            }
        })
        .await;
    }

    /// Replaces a manifest-only entry with the event carrying its fetched bundle (hash-checked). Blocking.
    fn requeue(&self, key: u64, entry: InboxEntry, bundle: Bundle) {
        let result = match bundle.verify_hash() {
            Ok(scheme) => {
                if scheme == HashScheme::Legacy {
                    LegacyHashAccepted {
                        neighbour: entry.source.as_str(),
                        rid: bundle.rid().as_str(),
                    }
                    .emit(&self.telemetry.metrics);
                }
                let event = crate::protocol::Event::from_bundle(entry.event.event_type, bundle);
                self.inbox
                    .replace(key, &InboxEntry::new(entry.source, event, true))
            }
            Err(mismatch) => {
                self.reject(vec![rejection_of(
                    &entry.source,
                    &entry.event.rid,
                    RejectReason::BadHash,
                    mismatch.to_string(),
                    &bundle,
                )]);
                self.inbox.remove(&[key])
            }
        };
        if let Err(e) = result {
            tracing::error!(error = %e, "cannot requeue a fetched bundle; the event stays in the inbox");
        }
    }

    /// Fetches `rid`'s bundle from the event's source first, then any other provider of its state.
    async fn fetch_bundle(self: &Arc<Self>, rid: &Rid, source: &Rid) -> Result<Bundle, String> {
        let mut candidates = vec![source.clone()];
        for (node, profile) in self.graph.nodes().unwrap_or_default() {
            if &node != source
                && profile
                    .provides
                    .state
                    .iter()
                    .any(|t| rid.is_type(t.as_str()))
            {
                candidates.push(node);
            }
        }
        let mut last_error = String::from("no node provides its state");
        for candidate in candidates {
            let peer = self.peer_for(&candidate);
            if peer.base_url.is_empty() {
                continue;
            }
            match self
                .client
                .fetch_bundles(&peer, vec![rid.clone()], self.settings.timeout)
                .await
            {
                Ok(items) => {
                    crate::telemetry::BundlesFetched {
                        neighbour: candidate.as_str(),
                        count: items.iter().filter(|b| b.is_ok()).count(),
                    }
                    .emit(&self.telemetry.metrics);
                    if let Some(bundle) = items.into_iter().flatten().find(|b| b.rid() == rid) {
                        return Ok(bundle);
                    }
                    last_error = format!("{candidate} does not hold it");
                }
                Err(e) => last_error = super::client::error_chain(&e),
            }
        }
        Err(format!("could not fetch the bundle of {rid}: {last_error}"))
    }
}

/// A GitHub bundle not prepared when it was received (an entry of an older release, or one the index will not
/// write): prepared now, or refused with the reason the index gives and the bundle as evidence.
fn prepare_or_refuse(source: &Rid, rid: &Rid, bundle: &Bundle) -> Handled {
    let refused =
        |reason, why| Handled::Refused(Box::new(rejection_of(source, rid, reason, why, bundle)));
    match PreparedBundle::of(bundle) {
        Ok(prepared) => Handled::Index(Box::new(prepared)),
        Err(ApplyOutcome::BadRid(why)) => refused(RejectReason::BadRid, why),
        Err(ApplyOutcome::Invalid(why)) => refused(RejectReason::Unindexable, why),
        Err(_) => Handled::Done,
    }
}

/// A dead letter for a bundle the index refused, with the whole bundle as evidence.
fn rejection_of_prepared(
    source: &Rid,
    prepared: &PreparedBundle,
    reason: RejectReason,
    why: String,
) -> Rejection {
    match prepared.to_bundle() {
        Ok(bundle) => rejection_of(source, prepared.rid(), reason, why, &bundle),
        Err(e) => rejection_of(
            source,
            prepared.rid(),
            reason,
            format!("{why} (its bundle cannot be shown: {e})"),
            &prepared.rid().as_str(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::testing::{self, push};
    use crate::protocol::{Contents, Event};

    fn entry(t: &testing::TestNode, event: Event, verified: bool) -> InboxEntry {
        let _ = t;
        InboxEntry::new(testing::sensor(), event, verified)
    }

    #[tokio::test]
    async fn a_verified_bundle_is_indexed_and_a_forget_removes_it() {
        let t = testing::node();
        let runtime = tokio::runtime::Handle::current();
        let bundle = push("a", 1);
        let e = entry(&t, Event::from_bundle(EventType::New, bundle.clone()), true);
        let Handled::Index(item) = t.node.handle(1, e, &runtime) else {
            panic!("a verified GitHub bundle goes to the index");
        };
        t.node.index.apply(&[*item]).unwrap();
        assert!(t.node.index.event(bundle.rid()).unwrap().is_some());
        let forget = entry(&t, Event::forget(bundle.rid().clone()), true);
        assert!(matches!(t.node.handle(2, forget, &runtime), Handled::Done));
        assert!(t.node.index.event(bundle.rid()).unwrap().is_none());
    }

    #[tokio::test]
    async fn a_bundle_the_index_will_not_write_is_refused_with_the_bundle_as_evidence() {
        let t = testing::node();
        let runtime = tokio::runtime::Handle::current();
        let mut contents = Contents::new();
        contents.insert("webhook_event_type".into(), "push".into());
        let bad = crate::protocol::Bundle::generate(
            crate::protocol::Rid::parse("orn:github.event:no-repository-here").unwrap(),
            contents,
        );
        let e = entry(&t, Event::from_bundle(EventType::New, bad.clone()), true);
        assert!(e.prepared.is_none(), "left whole at receipt");
        let Handled::Refused(rejection) = t.node.handle(1, e, &runtime) else {
            panic!("a bad event RID is refused");
        };
        assert_eq!(rejection.reason, "bad_rid");
        assert_eq!(rejection.item, serde_json::to_string(&bad).unwrap());
    }

    #[tokio::test]
    async fn a_manifest_for_a_version_held_is_done_without_a_fetch() {
        let t = testing::node();
        let runtime = tokio::runtime::Handle::current();
        let bundle = push("held", 1);
        t.node.index.apply_bundle(&bundle).unwrap();
        let manifest_only = Event {
            rid: bundle.rid().clone(),
            event_type: EventType::Update,
            manifest: Some(bundle.manifest.clone()),
            contents: None,
        };
        let e = entry(&t, manifest_only, false);
        assert!(matches!(t.node.handle(3, e, &runtime), Handled::Done));
        assert!(t.node.background.busy().is_empty(), "nothing fetched");
    }

    #[tokio::test]
    async fn bad_events_are_refused_with_their_reason() {
        let t = testing::node();
        let runtime = tokio::runtime::Handle::current();
        // A bundle for another RID than the event's.
        let mut event = Event::from_bundle(EventType::New, push("other", 1));
        event.rid = Rid::parse("orn:github.event:octo/hello:this").unwrap();
        let e = entry(&t, event, false);
        assert!(matches!(
            t.node.handle(4, e, &runtime),
            Handled::Reject(RejectReason::Malformed, _)
        ));
        // Contents that do not hash to the manifest, not checked on receipt.
        let mut tampered = push("tampered", 1);
        tampered.contents.insert("n".into(), 2.into());
        let e = entry(&t, Event::from_bundle(EventType::New, tampered), false);
        assert!(matches!(
            t.node.handle(5, e, &runtime),
            Handled::Reject(RejectReason::BadHash, _)
        ));
        // A NEW with neither manifest nor contents.
        let bare = Event {
            rid: Rid::parse("orn:github.event:octo/hello:bare").unwrap(),
            event_type: EventType::New,
            manifest: None,
            contents: None,
        };
        let e = entry(&t, bare, false);
        assert!(matches!(
            t.node.handle(6, e, &runtime),
            Handled::Reject(RejectReason::Malformed, _)
        ));
        // Not a type of interest: nothing to do.
        let mut other = Contents::new();
        other.insert("x".into(), 1.into());
        let unrelated = Bundle::generate(Rid::parse("orn:slack.message:a/b").unwrap(), other);
        let e = entry(&t, Event::from_bundle(EventType::New, unrelated), false);
        assert!(matches!(t.node.handle(7, e, &runtime), Handled::Done));
    }
}
