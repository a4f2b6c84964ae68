//! The answers of the store, opened by this process while the daemon is stopped.

use super::*;

/// The store, opened here with the config's settings.
pub(in crate::cli) struct StoreAnswers {
    pub(in crate::cli) index: Index,
    /// Kept open for `index`; flushed and closed on drop.
    db: sled::Db,
    /// The store's lock, held while the command runs.
    _store: crate::storage::Store,
}

impl StoreAnswers {
    /// The store in `local`, opened here (created if missing), with the config's settings.
    pub(in crate::cli) fn open(local: &LocalStore) -> anyhow::Result<StoreAnswers> {
        let db_path = local.data_dir.join(crate::daemon::DB_DIR);
        let store = crate::storage::open(&db_path, local.store)?;
        let db = store.db.clone();
        let index = Index::open_with(&db, local.index.clone())
            .with_context(|| format!("opening the index in {}", db_path.display()))?;
        Ok(StoreAnswers {
            index,
            db,
            _store: store,
        })
    }
}

impl Answers for StoreAnswers {
    async fn repositories(&self) -> anyhow::Result<Vec<Repository>> {
        Ok(self.index.repositories()?)
    }

    async fn events(
        &self,
        repo: &GithubRepoRid,
        query: &EventQuery,
    ) -> anyhow::Result<Vec<EventRow>> {
        self.index
            .events_page(repo, query)?
            .ok_or_else(|| anyhow!("repository {} is not indexed", repo.full_name()))
    }

    async fn event(&self, rid: &Rid) -> anyhow::Result<EventDetails> {
        self.index
            .event(rid)?
            .ok_or_else(|| anyhow!("event {rid} is not indexed"))
    }

    async fn bundle(&self, rid: &Rid) -> anyhow::Result<BundleDetails> {
        self.index
            .bundle(rid)?
            .ok_or_else(|| anyhow!("no bundle is held for {rid}"))
    }

    async fn history(&self, rid: &Rid) -> anyhow::Result<Vec<EventVersion>> {
        self.index
            .history(rid)?
            .ok_or_else(|| anyhow!("event {rid} is not indexed"))
    }

    async fn add_repository(&self, repo: &str) -> anyhow::Result<(Repository, bool)> {
        Ok(self.index.add_repository(repo)?)
    }

    async fn remove_repository(&self, repo: &GithubRepoRid) -> anyhow::Result<()> {
        let removal = self.index.remove_repository(repo.full_name())?;
        match removal.refusal(repo.full_name()) {
            None => Ok(()),
            Some(why) => bail!(why),
        }
    }

    async fn summary(&self) -> anyhow::Result<Summary> {
        let Counts {
            events,
            repositories,
            by_type,
        } = self.index.counts()?;
        let stats = self.index.stats(&crate::index::StatsQuery {
            top: 5,
            ..Default::default()
        })?;
        Ok(Summary {
            events,
            repositories,
            event_types: by_type,
            latest_event: self.index.latest_event()?,
            top_repos: stats.top_repos,
            top_actors: stats.top_actors,
        })
    }

    async fn rejected(&self, limit: usize, offset: usize) -> anyhow::Result<Vec<DeadLetter>> {
        // Opened without a bound: reading must not trim what the daemon keeps.
        Ok(DeadLetters::open(&self.db, u64::MAX)?.page(offset, limit, false)?)
    }

    /// The actions the store has queued for (their URLs are in the config, not the store).
    async fn actions(&self) -> anyhow::Result<Vec<ActionSummary>> {
        let deliveries = self.index.deliveries();
        deliveries
            .action_names()?
            .into_iter()
            .map(|name| {
                let counts = deliveries.counts(&name)?;
                Ok(ActionSummary {
                    name,
                    url: String::new(),
                    queued: counts.queued,
                    delivered: counts.delivered,
                    failed: counts.failed,
                    last_error: counts.last_error,
                })
            })
            .collect()
    }

    async fn deliveries(
        &self,
        name: &str,
        limit: usize,
        offset: usize,
    ) -> anyhow::Result<Vec<Delivery>> {
        let deliveries = self.index.deliveries();
        if !deliveries.action_names()?.iter().any(|n| n == name) {
            bail!("the store holds no deliveries of an action `{name}`");
        }
        Ok(deliveries.page(name, offset, limit)?)
    }

    async fn redeliver(&self, _name: &str, _id: &str) -> anyhow::Result<Delivery> {
        bail!("`redeliver` needs the running daemon")
    }
}
