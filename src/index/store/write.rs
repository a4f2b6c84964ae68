//! The transactional writes: [`Tx`] and its operations, and the `Index` methods that apply, forget and prune.

use std::borrow::Cow;

use super::*;

/// The trees inside one transaction.
pub(super) struct Tx<'a> {
    pub(super) meta: &'a TransactionalTree,
    pub(super) bundles: &'a TransactionalTree,
    pub(super) events: &'a TransactionalTree,
    pub(super) repos: &'a TransactionalTree,
    pub(super) by_repo_time: &'a TransactionalTree,
    pub(super) by_type: &'a TransactionalTree,
    pub(super) by_commit: &'a TransactionalTree,
    pub(super) repo_commits: &'a TransactionalTree,
    pub(super) global: &'a TransactionalTree,
    pub(super) stats: &'a TransactionalTree,
    pub(super) stream: &'a TransactionalTree,
    pub(super) history: &'a TransactionalTree,
    pub(super) actions: &'a TransactionalTree,
    pub(super) sink_log: &'a TransactionalTree,
}

/// One instant, read from the clock once per commit, in the forms the writes record it in.
pub(super) struct Now {
    /// RFC 3339, seconds: repository rows' times.
    pub(super) seconds: String,
    /// µs since the epoch: an event's received time unless the bundle brings one.
    pub(super) micros: i64,
    /// RFC 3339, milliseconds: deliveries' `created_at`.
    pub(super) millis: String,
}

impl Now {
    pub(super) fn at(time: chrono::DateTime<chrono::Utc>) -> Now {
        Now {
            seconds: time.to_rfc3339_opts(SecondsFormat::Secs, true),
            micros: time.timestamp_micros(),
            millis: deliveries::time_text(time),
        }
    }
}

/// What every write of one commit shares.
pub(super) struct WriteContext<'a> {
    /// When the commit is made.
    pub(super) now: &'a Now,
    /// Versions kept per event (`index.history`).
    pub(super) versions_kept: u32,
    /// Actions to queue new events for (empty for an import).
    pub(super) actions: &'a [ActionFilter],
    /// Log each event written for the sink ([`super::sink_log`]).
    pub(super) sink: bool,
}

impl Tx<'_> {
    pub(super) fn get<T: DeserializeOwned>(
        tree: &TransactionalTree,
        name: &'static str,
        key: &[u8],
    ) -> TxResult<Option<T>> {
        match tree.get(key)? {
            Some(bytes) => decode(name, key, &bytes).map(Some).map_err(abort),
            None => Ok(None),
        }
    }

    /// Adds `delta` to a counter in `index.meta`; a counter at zero is removed.
    pub(super) fn add(&self, key: &[u8], delta: i64) -> TxResult<()> {
        Tx::add_in(self.meta, trees::META, key, delta)
    }

    /// Adds `delta` to a u64 counter of `tree`; a counter at zero is removed.
    pub(super) fn add_in(
        tree: &TransactionalTree,
        name: &'static str,
        key: &[u8],
        delta: i64,
    ) -> TxResult<()> {
        let old = match tree.get(key)? {
            Some(bytes) => decode_u64(name, key, &bytes).map_err(abort)?,
            None => 0,
        };
        match old.saturating_add_signed(delta) {
            0 => tree.remove(key).map(drop)?,
            n => tree.insert(key, &n.to_be_bytes()).map(drop)?,
        }
        Ok(())
    }

    /// The next stream sequence number.
    pub(super) fn next_seq(&self) -> TxResult<u64> {
        let last = match self.meta.get(SEQ_KEY)? {
            Some(bytes) => decode_u64(trees::META, SEQ_KEY, &bytes).map_err(abort)?,
            None => 0,
        };
        let next = last + 1;
        self.meta.insert(SEQ_KEY, &next.to_be_bytes())?;
        Ok(next)
    }

    /// `Some(outcome)` when the bundle must not be written ([`Manifest::freshness`]: same hash as held, or older).
    pub(super) fn dedupe(&self, rid: &Rid, manifest: &Manifest) -> TxResult<Option<ApplyOutcome>> {
        let key = rid.as_str().as_bytes();
        let held = match self.bundles.get(key)? {
            Some(value) => Some(held::manifest(key, &value).map_err(abort)?),
            None => None,
        };
        Ok(match manifest.freshness(held.as_ref()) {
            Freshness::Unchanged => Some(ApplyOutcome::Unchanged),
            Freshness::Stale => Some(ApplyOutcome::Stale),
            Freshness::Newer => None,
        })
    }

    pub(super) fn insert_entries(&self, e: &Entries) -> TxResult<()> {
        self.by_repo_time.insert(e.by_repo_time.as_slice(), &[])?;
        self.by_type.insert(e.by_type.as_slice(), &[])?;
        if let Some((by_commit, repo_commit, sha)) = &e.commit {
            self.by_commit.insert(by_commit.as_slice(), &[])?;
            self.repo_commits
                .insert(repo_commit.as_slice(), sha.as_bytes())?;
        }
        for key in &e.global {
            self.global.insert(key.as_slice(), &[])?;
        }
        for key in &e.stats {
            Tx::add_in(self.stats, trees::STATS, key, 1)?;
        }
        self.add(&e.type_count, 1)
    }

    pub(super) fn remove_entries(&self, e: &Entries) -> TxResult<()> {
        self.by_repo_time.remove(e.by_repo_time.as_slice())?;
        self.by_type.remove(e.by_type.as_slice())?;
        if let Some((by_commit, repo_commit, _)) = &e.commit {
            self.by_commit.remove(by_commit.as_slice())?;
            self.repo_commits.remove(repo_commit.as_slice())?;
        }
        for key in &e.global {
            self.global.remove(key.as_slice())?;
        }
        for key in &e.stats {
            Tx::add_in(self.stats, trees::STATS, key, -1)?;
        }
        self.add(&e.type_count, -1)
    }

    /// Creates the repository row if needed, adds `events` to its count, and takes `details` unless the ones held
    /// come from a newer source.
    pub(super) fn touch_repo(
        &self,
        repo_rid: &str,
        now: &str,
        events: i64,
        details: Option<(&RepoDetails, i64)>,
    ) -> TxResult<u32> {
        let mut record = match Tx::get::<RepoRecord>(self.repos, trees::REPOS, repo_rid.as_bytes())?
        {
            Some(record) => record,
            None => {
                self.add(REPOS_COUNT, 1)?;
                RepoRecord {
                    repo_rid: repo_rid.to_owned(),
                    first_indexed: now.to_owned(),
                    last_updated: now.to_owned(),
                    event_count: 0,
                    details: RepoDetails::default(),
                    details_at: None,
                    manual: false,
                    id: None,
                }
            }
        };
        let id = match record.id {
            Some(id) => id,
            None => {
                let id = self.next_repo_id()?;
                record.id = Some(id);
                id
            }
        };
        record.event_count = record.event_count.saturating_add_signed(events);
        now.clone_into(&mut record.last_updated);
        if let Some((details, at)) = details {
            if !details.is_empty() && record.details_at.is_none_or(|held| at >= held) {
                record.details.merge(details.clone());
                record.details_at = Some(at);
            }
        }
        let bytes = serde_json::to_vec(&record).map_err(|e| abort(e.into()))?;
        self.repos.insert(repo_rid.as_bytes(), bytes)?;
        Ok(id)
    }

    /// The next repository number (they start at 1 and are never reused).
    pub(super) fn next_repo_id(&self) -> TxResult<u32> {
        let last = match self.meta.get(REPO_ID_KEY)? {
            Some(bytes) => decode_u64(trees::META, REPO_ID_KEY, &bytes).map_err(abort)?,
            None => 0,
        };
        let next = u32::try_from(last + 1).map_err(|_| {
            abort(IndexError::Corrupt {
                tree: trees::META,
                key: printable(REPO_ID_KEY),
                problem: "more than 4 billion repositories".into(),
            })
        })?;
        self.meta
            .insert(REPO_ID_KEY, &u64::from(next).to_be_bytes())?;
        Ok(next)
    }

    /// Writes one prepared bundle (see [`Index::apply_bundles`]), unless the store already holds it or a newer one.
    pub(super) fn write(
        &self,
        prepared: &Result<Cow<'_, PreparedBundle>, ApplyOutcome>,
        ctx: &WriteContext<'_>,
    ) -> TxResult<ApplyOutcome> {
        let w = match prepared {
            Err(outcome) => return Ok(outcome.clone()),
            Ok(w) => &**w,
        };
        if let Some(outcome) = self.dedupe(&w.rid, &w.manifest)? {
            return Ok(outcome);
        }
        let key = w.rid.as_str().as_bytes();
        let old_held = self.bundles.insert(key, w.held.as_slice())?;
        let details = Some((&w.details, w.at));
        match &w.row {
            Some(row) => {
                let old = self.events.get(key)?;
                let repo = self.touch_repo(
                    &row.repo_rid,
                    &ctx.now.seconds,
                    i64::from(old.is_none()),
                    details,
                )?;
                let received = Some(w.received.unwrap_or(ctx.now.micros));
                // A new event gets the next stream sequence number; an UPDATE keeps its own (it is not streamed
                // again) and files the version it replaces in the history.
                let meta = match &old {
                    Some(bytes) => {
                        let old_row = decode_row(key, bytes).map_err(abort)?;
                        let old_meta = stored_meta(key, bytes).map_err(abort)?;
                        let old_seq = stream_number(key, &old_meta).map_err(abort)?;
                        self.remove_entries(&Entries::of(&old_row, old_seq, repo).map_err(abort)?)?;
                        if let (Some(old_value), true) = (&old_held, ctx.versions_kept > 1) {
                            self.history.insert(
                                history_key(key, old_meta.v),
                                encode_version(old_meta.r, old_value),
                            )?;
                            // Versions kept: the new one and `history - 1` replaced ones.
                            if let Some(dropped) = (old_meta.v + 1).checked_sub(ctx.versions_kept) {
                                self.history.remove(history_key(key, dropped))?;
                            }
                        }
                        StoredMeta {
                            q: old_meta.q,
                            r: received,
                            v: old_meta.v.saturating_add(1),
                        }
                    }
                    None => {
                        self.add(EVENTS_COUNT, 1)?;
                        let seq = self.next_seq()?;
                        self.stream.insert(&seq.to_be_bytes(), key)?;
                        for action in ctx.actions.iter().filter(|a| a.matches(row)) {
                            deliveries::enqueue(
                                self.actions,
                                &action.name,
                                &row.event_rid,
                                &ctx.now.millis,
                                None,
                            )?;
                        }
                        StoredMeta {
                            q: Some(seq),
                            r: received,
                            v: 0,
                        }
                    }
                };
                let seq = stream_number(key, &meta).map_err(abort)?;
                if ctx.sink {
                    self.log_for_sink(key, meta.v, seq)?;
                }
                let entries = Entries::of(row, seq, repo).map_err(abort)?;
                let row_bytes = encode_row(row, meta).map_err(abort)?;
                self.events.insert(key, row_bytes)?;
                self.insert_entries(&entries)?;
                Ok(ApplyOutcome::Indexed { new: old.is_none() })
            }
            None => {
                self.touch_repo(w.rid.as_str(), &ctx.now.seconds, 0, details)?;
                Ok(ApplyOutcome::Indexed {
                    new: old_held.is_none(),
                })
            }
        }
    }

    /// Removes an event row, its index entries and its contents; adjusts the counts. The manifest is left to the
    /// caller (FORGET removes it, retention keeps it as a tombstone).
    pub(super) fn remove_event(&self, rid: &[u8], now: &str) -> TxResult<bool> {
        if let Some(value) = self.bundles.get(rid)? {
            if let Some(tombstone) = held::without_contents(rid, &value).map_err(abort)? {
                self.bundles.insert(rid, tombstone)?;
            }
        }
        let Some(bytes) = self.events.remove(rid)? else {
            return Ok(false);
        };
        let row = decode_row(rid, &bytes).map_err(abort)?;
        let meta = stored_meta(rid, &bytes).map_err(abort)?;
        let seq = stream_number(rid, &meta).map_err(abort)?;
        let repo = self.touch_repo(&row.repo_rid, now, -1, None)?;
        self.remove_entries(&Entries::of(&row, seq, repo).map_err(abort)?)?;
        self.stream.remove(&seq.to_be_bytes())?;
        // The versions it replaced go with it (they hold contents too).
        for version in 0..meta.v {
            self.history.remove(history_key(rid, version))?;
        }
        self.add(EVENTS_COUNT, -1)?;
        Ok(true)
    }
}

impl Index {
    /// Runs `f` in one transaction over every index tree: all its writes land, or none.
    pub(super) fn transaction<T>(&self, f: impl Fn(&Tx) -> TxResult<T>) -> Result<T, IndexError> {
        Ok((
            &self.meta,
            &self.bundles,
            &self.events,
            &self.repos,
            &self.by_repo_time,
            &self.by_type,
            &self.by_commit,
            &self.repo_commits,
            &self.global,
            &self.stats,
            &self.stream,
            &self.replaced_versions,
            self.deliveries.tree(),
            &self.sink_log,
        )
            .transaction(
                |(
                    meta,
                    bundles,
                    events,
                    repos,
                    by_repo_time,
                    by_type,
                    by_commit,
                    repo_commits,
                    global,
                    stats,
                    stream,
                    history,
                    actions,
                    sink_log,
                )| {
                    f(&Tx {
                        history,
                        actions,
                        sink_log,
                        meta,
                        bundles,
                        events,
                        repos,
                        by_repo_time,
                        by_type,
                        by_commit,
                        repo_commits,
                        global,
                        stats,
                        stream,
                    })
                },
            )?)
    }

    /// Indexes a NEW/UPDATE bundle of an `orn:github.event` or `orn:github.repo`, unless the manifest held for its
    /// RID has the same hash ([`ApplyOutcome::Unchanged`]) or a newer timestamp ([`ApplyOutcome::Stale`]). The
    /// check and the writes are one transaction, so replaying a bundle never counts it twice. The caller has
    /// verified the bundle's hash.
    pub fn apply_bundle(&self, bundle: &Bundle) -> Result<ApplyOutcome, IndexError> {
        let mut outcomes = self.apply_bundles(std::slice::from_ref(bundle))?;
        Ok(outcomes.pop().unwrap_or(ApplyOutcome::Ignored))
    }

    /// [`Index::apply_bundle`] for several bundles, in order, in **one** transaction: all of them land or none.
    /// Each is deduplicated against the store and against those before it in the batch. One outcome per bundle.
    ///
    /// This is the fast path: a transaction over the index's trees costs about as much as the writes of one event,
    /// so the node applies what one inbox pass brings as a batch.
    ///
    /// One bundle that cannot be indexed never fails the others: it comes back as [`ApplyOutcome::Invalid`] with
    /// the reason. Should the batch's transaction fail for any reason but storage, the bundles are written one by
    /// one, so only the culprit is refused. The outer error is a storage failure only: nothing was written.
    pub fn apply_bundles(&self, bundles: &[Bundle]) -> Result<Vec<ApplyOutcome>, IndexError> {
        let prepared: Vec<_> = bundles
            .iter()
            .map(|b| PreparedBundle::made(b, None, self.keep_contents).map(Cow::Owned))
            .collect();
        self.apply_prepared(&prepared, &self.actions)
    }

    /// [`Index::apply_bundles`] for bundles prepared already ([`PreparedBundle::of`]): the node's writer, which
    /// gets them prepared where they were received.
    pub fn apply(&self, bundles: &[PreparedBundle]) -> Result<Vec<ApplyOutcome>, IndexError> {
        let prepared: Vec<_> = bundles
            .iter()
            .map(|p| p.for_store(self.keep_contents))
            .collect();
        self.apply_prepared(&prepared, &self.actions)
    }

    /// Loads bundles from an export ([`super::export`]): each with the time the source received it, oldest version
    /// of an event first (each later one is an UPDATE, so the history is rebuilt). Deduplicated as
    /// [`Index::apply_bundles`]; no action fires (these are not new events).
    pub fn import_bundles(
        &self,
        bundles: &[(Bundle, Option<i64>)],
    ) -> Result<Vec<ApplyOutcome>, IndexError> {
        let prepared: Vec<_> = bundles
            .iter()
            .map(|(b, received)| {
                PreparedBundle::made(b, *received, self.keep_contents).map(Cow::Owned)
            })
            .collect();
        self.apply_prepared(&prepared, &[])
    }

    pub(super) fn apply_prepared(
        &self,
        prepared: &[Result<Cow<'_, PreparedBundle>, ApplyOutcome>],
        actions: &[ActionFilter],
    ) -> Result<Vec<ApplyOutcome>, IndexError> {
        let filtered: Vec<_>;
        let prepared = if self.repo_filter.is_all() {
            prepared
        } else {
            filtered = prepared
                .iter()
                .map(|p| match p {
                    Ok(p) if !self.repo_filter.matches_rid(p.repo_rid()) => {
                        Err(ApplyOutcome::Filtered)
                    }
                    other => other.clone(),
                })
                .collect();
            &filtered
        };
        if prepared.iter().all(Result::is_err) {
            return Ok(prepared
                .iter()
                .map(|p| p.as_ref().err().cloned().unwrap_or(ApplyOutcome::Ignored))
                .collect());
        }
        let now = Now::at(chrono::Utc::now());
        let ctx = WriteContext {
            now: &now,
            versions_kept: self.versions_kept,
            actions,
            sink: self.sink_enabled,
        };
        let outcomes = self.write_prepared(prepared, &ctx)?;
        if self.sink_enabled
            && outcomes
                .iter()
                .any(|o| matches!(o, ApplyOutcome::Indexed { .. }))
        {
            self.sink_logged.send_modify(|n| *n = n.wrapping_add(1));
        }
        if outcomes
            .iter()
            .any(|o| matches!(o, ApplyOutcome::Indexed { new: true }))
        {
            if !actions.is_empty() {
                self.queued.send_modify(|n| *n = n.wrapping_add(1));
            }
            let last = self.last_seq()?;
            self.live.publish(last, |after, until| {
                self.stream_after(after, usize::try_from(until - after).unwrap_or(usize::MAX))
            })?;
        }
        Ok(outcomes)
    }

    /// The listeners' side of the live feed: every event indexed for the first time after the number returned
    /// with it (the last one published when it subscribed).
    pub fn subscribe(&self) -> (tokio::sync::broadcast::Receiver<LiveBatch>, u64) {
        self.live.subscribe()
    }

    pub(super) fn write_prepared(
        &self,
        prepared: &[Result<Cow<'_, PreparedBundle>, ApplyOutcome>],
        ctx: &WriteContext<'_>,
    ) -> Result<Vec<ApplyOutcome>, IndexError> {
        match self.transaction(|tx| prepared.iter().map(|p| tx.write(p, ctx)).collect()) {
            Err(IndexError::Storage(e)) => Err(IndexError::Storage(e)),
            Err(_) if prepared.len() > 1 => prepared
                .iter()
                .map(|p| match self.transaction(|tx| tx.write(p, ctx)) {
                    Err(IndexError::Storage(e)) => Err(IndexError::Storage(e)),
                    Err(other) => Ok(ApplyOutcome::Invalid(other.to_string())),
                    Ok(outcome) => Ok(outcome),
                })
                .collect(),
            Err(other) => Ok(vec![ApplyOutcome::Invalid(other.to_string())]),
            Ok(outcomes) => Ok(outcomes),
        }
    }

    /// FORGET: removes the RID's row, index entries and cached bundle, and adjusts the counts. A repository row
    /// is removed only when no events of it remain (its events still name it). Returns whether anything was held.
    pub fn forget(&self, rid: &Rid) -> Result<bool, IndexError> {
        let key = rid.as_str().as_bytes();
        let is_repo = rid.is_type(RidType::GITHUB_REPO);
        let now = now_text();
        self.transaction(|tx| {
            let had_bundle = tx.bundles.remove(key)?.is_some();
            let had_row = tx.remove_event(key, &now)?;
            let mut had_repo = false;
            if is_repo {
                if let Some(record) = Tx::get::<RepoRecord>(tx.repos, trees::REPOS, key)? {
                    had_repo = true;
                    if record.event_count == 0 {
                        tx.repos.remove(key)?;
                        tx.add(REPOS_COUNT, -1)?;
                    }
                }
            }
            Ok(had_bundle || had_row || had_repo)
        })
    }

    /// The manifest held for `rid`, if any (the node skips fetching bundles it already has).
    pub fn cached_manifest(&self, rid: &Rid) -> Result<Option<Manifest>, IndexError> {
        let key = rid.as_str().as_bytes();
        self.bundles
            .get(key)?
            .map(|value| held::manifest(key, &value))
            .transpose()
    }

    /// Retention: removes every event whose time is before `cutoff` (row, index entries, contents). Its manifest
    /// is kept as a tombstone so the node does not fetch and index it again. Returns how many were removed.
    pub fn prune_older_than(&self, cutoff: Timestamp) -> Result<usize, IndexError> {
        let cutoff = cutoff.unix_micros();
        let now = now_text();
        let mut removed = 0;
        for entry in self.repos.iter() {
            let (key, bytes) = entry?;
            let record: RepoRecord = decode(trees::REPOS, &key, &bytes)?;
            let Some(id) = record.id else { continue };
            let prefix = id.to_be_bytes();
            let mut doomed: Vec<IVec> = Vec::new();
            // Newest first, so the oldest are at the end: walk back until an event at or after the cutoff.
            for key in self.by_repo_time.scan_prefix(prefix).keys().rev() {
                let key = key?;
                let tail = &key[prefix.len()..];
                match time_from_key(tail) {
                    Some(t) if t < cutoff => {
                        if let Some(rid) = self.stream.get(&tail[8..])? {
                            doomed.push(rid);
                        }
                    }
                    _ => break,
                }
            }
            for chunk in doomed.chunks(PRUNE_CHUNK) {
                removed += self.transaction(|tx| {
                    let mut n = 0;
                    for rid in chunk {
                        n += usize::from(tx.remove_event(rid, &now)?);
                    }
                    Ok(n)
                })?;
            }
        }
        Ok(removed)
    }
}
