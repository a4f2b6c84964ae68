//! The queries: a repository's events, one event, its versions, a commit's events, the global lists, counts.

use super::*;

impl Index {
    /// The row an index entry names by its stream number (the last 8 bytes of its key).
    pub(super) fn row_at(&self, index: &'static str, seq: &[u8]) -> Result<EventRow, IndexError> {
        match self.stream.get(seq)? {
            Some(rid) => self.row(index, &rid),
            None => Err(IndexError::Corrupt {
                tree: index,
                key: printable(seq),
                problem: "the index entry names a stream number with no event".into(),
            }),
        }
    }

    /// A repository's number in index keys; `None` when the repository is unknown.
    pub(super) fn repo_number(&self, repo_rid: &str) -> Result<Option<u32>, IndexError> {
        let Some(bytes) = self.repos.get(repo_rid)? else {
            return Ok(None);
        };
        let record: RepoRecord = decode(trees::REPOS, repo_rid.as_bytes(), &bytes)?;
        record.id.map(Some).ok_or_else(|| IndexError::Corrupt {
            tree: trees::REPOS,
            key: repo_rid.to_owned(),
            problem: "the repository has no number".into(),
        })
    }

    pub(super) fn row(&self, index: &'static str, rid: &[u8]) -> Result<EventRow, IndexError> {
        match self.events.get(rid)? {
            Some(bytes) => decode_row(rid, &bytes),
            None => Err(IndexError::Corrupt {
                tree: index,
                key: printable(rid),
                problem: "the index entry points at no event row".into(),
            }),
        }
    }

    /// A page of a repository's events, newest first; `None` when the repository is unknown.
    pub fn events_page(
        &self,
        repo: &GithubRepoRid,
        query: &EventQuery,
    ) -> Result<Option<Vec<EventRow>>, IndexError> {
        let Some(id) = self.repo_number(repo.rid().as_str())? else {
            return Ok(None);
        };
        let (tree, name, prefix) = match &query.event_type {
            Some(t) => (
                &self.by_type,
                trees::BY_TYPE,
                [t.as_bytes(), &[SEP], &id.to_be_bytes()].concat(),
            ),
            None => (
                &self.by_repo_time,
                trees::BY_REPO_TIME,
                id.to_be_bytes().to_vec(),
            ),
        };
        let (start, end) = time_range(&prefix, query.since, query.until);
        if start >= end {
            return Ok(Some(Vec::new()));
        }
        tree.range(start..end)
            .keys()
            .skip(query.offset)
            .take(query.limit)
            .map(|key| {
                let key = key?;
                self.row_at(name, key.get(prefix.len() + 8..).unwrap_or_default())
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }

    /// An event's stored row and its held value; `None` when the event has no row.
    pub(super) fn row_and_held(&self, key: &[u8]) -> Result<Option<(IVec, IVec)>, IndexError> {
        let Some(row) = self.events.get(key)? else {
            return Ok(None);
        };
        let held = self.bundles.get(key)?.ok_or_else(|| IndexError::Corrupt {
            tree: trees::BUNDLES,
            key: printable(key),
            problem: "the event row has no cached bundle".into(),
        })?;
        Ok(Some((row, held)))
    }

    /// One event with its bundle.
    pub fn event(&self, rid: &Rid) -> Result<Option<EventDetails>, IndexError> {
        let key = rid.as_str().as_bytes();
        let Some((bytes, value)) = self.row_and_held(key)? else {
            return Ok(None);
        };
        let row = decode_row(key, &bytes)?;
        let (manifest, contents) = held::decode(key, &value)?;
        Ok(Some(EventDetails {
            row,
            contents_kept: contents.is_some(),
            hash_scheme: held_hash_scheme(&manifest, contents.as_ref()),
            bundle: HeldBundle { manifest, contents },
        }))
    }

    /// Any bundle held for `rid` (an event or a repository), with its manifest as received.
    pub fn bundle(&self, rid: &Rid) -> Result<Option<BundleDetails>, IndexError> {
        let key = rid.as_str().as_bytes();
        let Some(value) = self.bundles.get(key)? else {
            return Ok(None);
        };
        let (manifest, contents) = held::decode(key, &value)?;
        Ok(Some(BundleDetails {
            rid: rid.to_string(),
            hash_scheme: held_hash_scheme(&manifest, contents.as_ref()),
            contents_kept: contents.is_some(),
            manifest,
            contents,
        }))
    }

    /// The versions of an event, newest first, starting with the current one (at most `index.history`); `None`
    /// when the event is not indexed.
    pub fn history(&self, rid: &Rid) -> Result<Option<Vec<EventVersion>>, IndexError> {
        let key = rid.as_str().as_bytes();
        let Some(versions) = self.held_versions(key)? else {
            return Ok(None);
        };
        versions
            .into_iter()
            .map(|(received, held_value)| {
                let (manifest, contents) = held::decode(key, &held_value)?;
                Ok(EventVersion {
                    timestamp: manifest.timestamp,
                    sha256_hash: manifest.sha256_hash,
                    received_at: received.map(micros_text),
                    contents,
                })
            })
            .collect::<Result<Vec<_>, IndexError>>()
            .map(Some)
    }

    /// An event's held values, newest first, the current one first (at most `index.history`), each with the time
    /// it was received; `None` when the event has no row.
    #[allow(clippy::type_complexity)]
    pub(super) fn held_versions(
        &self,
        rid: &[u8],
    ) -> Result<Option<Vec<(Option<i64>, Vec<u8>)>>, IndexError> {
        let Some((row, current)) = self.row_and_held(rid)? else {
            return Ok(None);
        };
        let meta = stored_meta(rid, &row)?;
        let mut versions = vec![(meta.r, current.to_vec())];
        let prefix = [rid, &[SEP]].concat();
        for entry in self
            .replaced_versions
            .scan_prefix(&prefix)
            .rev()
            .take(self.versions_kept as usize - 1)
        {
            let (k, v) = entry?;
            let (received, held_value) = decode_version(&k, &v)?;
            versions.push((received, held_value.to_vec()));
        }
        Ok(Some(versions))
    }
}

impl Index {
    /// The outbound webhook queue and log.
    pub fn deliveries(&self) -> &Deliveries {
        &self.deliveries
    }

    /// Changes each time a commit queues deliveries: the senders wait on it.
    pub fn queued_signal(&self) -> tokio::sync::watch::Receiver<u64> {
        self.queued.subscribe()
    }

    /// Queues delivery `id` of `action` again ([`Deliveries::redeliver`]) and wakes the sender.
    pub fn redeliver(
        &self,
        action: &str,
        id: &str,
    ) -> Result<Option<deliveries::Delivery>, IndexError> {
        let delivery = self.deliveries.redeliver(action, id)?;
        if delivery.is_some() {
            self.queued.send_modify(|n| *n = n.wrapping_add(1));
        }
        Ok(delivery)
    }

    /// A page of the events naming a commit, newest first. `sha` may be abbreviated (at least 4 hex digits).
    ///
    /// A full SHA is one range of `index.by_commit` in time order, so only the page's rows are read. An
    /// abbreviated one may match several commits: their keys (not rows) are merged by time, then the page is read.
    pub fn events_by_commit(
        &self,
        sha: &str,
        offset: usize,
        limit: usize,
    ) -> Result<Vec<EventRow>, IndexError> {
        let sha = sha.to_ascii_lowercase();
        // `sha ␀ time rid` → (time key, rid)
        let split = |key: &[u8]| -> Option<(Vec<u8>, Vec<u8>)> {
            let sep = key.iter().position(|b| *b == SEP)?;
            let rest = key.get(sep + 1..)?;
            Some((rest.get(..8)?.to_vec(), rest.get(8..)?.to_vec()))
        };
        let rids: Vec<Vec<u8>> = if sha.len() >= 40 {
            let mut rids = Vec::with_capacity(limit.min(1024));
            for key in self
                .by_commit
                .scan_prefix(key_prefix(&[&sha]))
                .keys()
                .skip(offset)
                .take(limit)
            {
                if let Some((_, rid)) = split(&key?) {
                    rids.push(rid);
                }
            }
            rids
        } else {
            let mut keys = Vec::new();
            for key in self.by_commit.scan_prefix(sha.as_bytes()).keys() {
                if let Some(pair) = split(&key?) {
                    keys.push(pair);
                }
            }
            keys.sort();
            keys.into_iter()
                .skip(offset)
                .take(limit)
                .map(|(_, rid)| rid)
                .collect()
        };
        rids.iter()
            .map(|seq| self.row_at(trees::BY_COMMIT, seq))
            .collect()
    }

    /// Totals: events, repositories and events per type.
    pub fn counts(&self) -> Result<Counts, IndexError> {
        let counter = |key: &[u8]| -> Result<u64, IndexError> {
            match self.meta.get(key)? {
                Some(bytes) => decode_u64(trees::META, key, &bytes),
                None => Ok(0),
            }
        };
        let mut by_type = BTreeMap::new();
        for entry in self.meta.scan_prefix(TYPE_COUNT_PREFIX) {
            let (key, value) = entry?;
            let name = String::from_utf8_lossy(&key[TYPE_COUNT_PREFIX.len()..]).into_owned();
            by_type.insert(name, decode_u64(trees::META, &key, &value)?);
        }
        Ok(Counts {
            events: counter(EVENTS_COUNT)?,
            repositories: counter(REPOS_COUNT)?,
            by_type,
        })
    }

    /// Number of event rows (a counter: no scan).
    pub fn event_count(&self) -> Result<u64, IndexError> {
        Ok(self.counts()?.events)
    }

    /// The newest event of all (the first key of the global list: one read).
    pub fn latest_event(&self) -> Result<Option<EventRow>, IndexError> {
        match self.global.scan_prefix(b"T\0").keys().next() {
            Some(key) => {
                let key = key?;
                Ok(Some(self.row_at(
                    trees::GLOBAL,
                    key.get(2 + 8..).unwrap_or_default(),
                )?))
            }
            None => Ok(None),
        }
    }

    /// A page of events across repositories, newest first, filtered ([`GlobalQuery`]). The list read is the
    /// narrowest the query allows (by actor, by repository, by type, or all); other filters are checked on rows.
    pub fn events_global(&self, query: &GlobalQuery) -> Result<Vec<EventRow>, IndexError> {
        if let (Some(repo), None) = (&query.repo, &query.actor) {
            let filter = EventQuery {
                limit: query.limit,
                offset: query.offset,
                event_type: query.event_type.clone(),
                since: query.since,
                until: query.until,
            };
            return Ok(self.events_page(repo, &filter)?.unwrap_or_default());
        }
        let (prefix, type_checked) = match (&query.actor, &query.event_type) {
            (Some(actor), _) => ([b"a\0", actor.as_bytes(), &[SEP]].concat(), false),
            (None, Some(kind)) => ([b"y\0", kind.as_bytes(), &[SEP]].concat(), true),
            (None, None) => (b"T\0".to_vec(), true),
        };
        let (start, end) = time_range(&prefix, query.since, query.until);
        if start >= end {
            return Ok(Vec::new());
        }
        let repo_rid = query.repo.as_ref().map(|r| r.rid().as_str().to_owned());
        let mut page = Vec::with_capacity(query.limit.min(1024));
        let mut skipped = 0;
        for key in self.global.range(start..end).keys() {
            let key = key?;
            let row = self.row_at(
                trees::GLOBAL,
                key.get(prefix.len() + 8..).unwrap_or_default(),
            )?;
            let wanted = (type_checked
                || query
                    .event_type
                    .as_ref()
                    .is_none_or(|t| &row.event_type == t))
                && repo_rid.as_ref().is_none_or(|r| &row.repo_rid == r);
            if !wanted {
                continue;
            }
            if skipped < query.offset {
                skipped += 1;
                continue;
            }
            page.push(row);
            if page.len() >= query.limit {
                break;
            }
        }
        Ok(page)
    }

    /// Statistics from the counters kept at write time ([`feeds`]).
    pub fn stats(&self, query: &StatsQuery) -> Result<Stats, IndexError> {
        feeds::stats(&self.stats, query)
    }

    /// The last stream sequence number given (0 before the first event).
    pub fn last_seq(&self) -> Result<u64, IndexError> {
        match self.meta.get(SEQ_KEY)? {
            Some(bytes) => decode_u64(trees::META, SEQ_KEY, &bytes),
            None => Ok(0),
        }
    }

    /// Up to `limit` events indexed after sequence number `after`, in sequence order, with their numbers. Events
    /// forgotten or pruned since are not there.
    pub fn stream_after(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(u64, EventRow)>, IndexError> {
        let Some(first) = after.checked_add(1) else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for entry in self.stream.range(first.to_be_bytes()..).take(limit) {
            let (key, rid) = entry?;
            let seq = decode_u64(trees::STREAM, &key, &key)?;
            out.push((seq, self.row(trees::STREAM, &rid)?));
        }
        Ok(out)
    }
}

/// The keys under `prefix` (followed by a [`time_key`]) of the events from `since` to `until`, both included: the
/// newest first, as the keys sort.
fn time_range(
    prefix: &[u8],
    since: Option<Timestamp>,
    until: Option<Timestamp>,
) -> (Vec<u8>, Vec<u8>) {
    let start = match until {
        Some(until) => [prefix, &time_key(until.unix_micros())].concat(),
        None => prefix.to_vec(),
    };
    let end = match since
        .and_then(|since| u64::from_be_bytes(time_key(since.unix_micros())).checked_add(1))
    {
        Some(after) => [prefix, &after.to_be_bytes()].concat(),
        None => prefix_end(prefix),
    };
    (start, end)
}
