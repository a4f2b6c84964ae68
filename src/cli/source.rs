//! Where a command's answers come from: the running daemon's API, or the store opened here when it is stopped; each query written once, for both.

use super::*;

/// How [`Source::call`] asks the API.
pub(super) enum Method {
    Get,
    Post(Value),
    Delete,
}

/// Where the answers come from.
// One per command, so the size of the store variant does not matter.
#[allow(clippy::large_enum_variant)]
pub(super) enum Source {
    /// The running daemon.
    Api {
        client: reqwest::Client,
        base: String,
    },
    /// The store, opened by this process (the daemon is not running).
    Store {
        index: Index,
        /// Kept open for `index`; flushed and closed on drop.
        _db: sled::Db,
        /// The store's lock, held while the command runs.
        _store: crate::storage::Store,
    },
}

/// Totals and the latest event.
#[derive(Debug, Clone, Serialize)]
pub(super) struct Summary {
    pub(super) events: u64,
    pub(super) repositories: u64,
    pub(super) event_types: std::collections::BTreeMap<String, u64>,
    pub(super) latest_event: Option<EventRow>,
    /// From the statistics (`/stats`).
    pub(super) top_repos: Vec<crate::index::RepoCount>,
    /// From the statistics (`/stats`).
    pub(super) top_actors: Vec<crate::index::ActorCount>,
}

/// The part of `/stats` the summary shows.
#[derive(Debug, serde::Deserialize)]
pub(super) struct StatsTops {
    pub(super) top_repos: Vec<crate::index::RepoCount>,
    pub(super) top_actors: Vec<crate::index::ActorCount>,
}

impl Source {
    pub(super) async fn connect(
        local: &LocalStore,
        api: &Endpoint,
        cmd: &QueryCommand,
        verbose: bool,
    ) -> anyhow::Result<Source> {
        let base = api.base.clone();
        let client = api.client(Some(REQUEST_TIMEOUT))?;
        let health = format!("{base}{API_PREFIX}/health");
        let not_answering = match client.get(&health).send().await {
            Ok(response) if response.status().is_success() => {
                if verbose {
                    eprintln!("using the running daemon's API at {base}");
                }
                return Ok(Source::Api { client, base });
            }
            Ok(response) => bail!(
                "{base} answers, but not as koi-github-indexer's API (HTTP {} on {health}): check --api or \
                 `api.listen`",
                response.status()
            ),
            Err(e) if e.is_connect() || e.is_timeout() => e,
            Err(e) => return Err(e).with_context(|| format!("calling {health}")),
        };
        let db_path = local.data_dir.join(crate::daemon::DB_DIR);
        if matches!(cmd, QueryCommand::Redeliver { .. }) {
            bail!(
                "no daemon answers at {base} ({}): `redeliver` needs the running daemon, which sends the delivery",
                error_chain(&not_answering)
            );
        }
        let writes = matches!(
            cmd,
            QueryCommand::AddRepo { .. }
                | QueryCommand::RemoveRepo { .. }
                | QueryCommand::Import { .. }
        );
        if !writes && !db_path.exists() {
            bail!(
                "no daemon answers at {base}, and there is no store at {}: nothing has been indexed with this \
                 data_dir (check --data-dir or `node.data_dir`)",
                db_path.display()
            );
        }
        if verbose {
            eprintln!(
                "no daemon answers at {base} ({}); opening the store at {} directly",
                error_chain(&not_answering),
                db_path.display()
            );
        }
        Source::open_store(local).map_err(|e| {
            match e.downcast_ref::<crate::storage::StorageError>() {
                Some(crate::storage::StorageError::Locked { .. }) => anyhow!(
                    "the store at {} is locked by another process (a running koi-github-indexer?), but no daemon \
                     answers at {base} ({}). Check that --api or `api.listen` names the daemon's address, or wait \
                     until it has started",
                    db_path.display(),
                    error_chain(&not_answering)
                ),
                _ => e,
            }
        })
    }

    /// The store in `local`, opened here (created if missing), with the config's settings.
    pub(super) fn open_store(local: &LocalStore) -> anyhow::Result<Source> {
        let db_path = local.data_dir.join(crate::daemon::DB_DIR);
        let store = crate::storage::open(&db_path, local.store)?;
        let db = store.db.clone();
        let index = Index::open_with(&db, local.index.clone())
            .with_context(|| format!("opening the index in {}", db_path.display()))?;
        Ok(Source::Store {
            index,
            _db: db,
            _store: store,
        })
    }

    /// GET (or POST `body`) `path` under the API prefix; a non-2xx answer becomes its `{"error"}` message.
    pub(super) async fn call<T: DeserializeOwned>(
        client: &reqwest::Client,
        base: &str,
        path: &str,
        method: Method,
    ) -> anyhow::Result<(T, reqwest::StatusCode)> {
        let url = format!("{base}{API_PREFIX}{path}");
        let request = match method {
            Method::Get => client.get(&url),
            Method::Post(body) => client.post(&url).json(&body),
            // The API takes writes as JSON only; a DELETE has no body, but says so all the same.
            Method::Delete => client
                .delete(&url)
                .header(reqwest::header::CONTENT_TYPE, "application/json"),
        };
        let response = request
            .send()
            .await
            .with_context(|| format!("calling {url}"))?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .with_context(|| format!("reading the answer of {url}"))?;
        if !status.is_success() {
            let message = serde_json::from_slice::<Value>(&bytes)
                .ok()
                .and_then(|v| v.get("error").and_then(Value::as_str).map(str::to_owned))
                .unwrap_or_else(|| String::from_utf8_lossy(&bytes).into_owned());
            bail!("{message} (HTTP {status} from {url})");
        }
        let value = serde_json::from_slice(&bytes)
            .with_context(|| format!("unexpected answer from {url}"))?;
        Ok((value, status))
    }

    pub(super) async fn get<T: DeserializeOwned>(
        client: &reqwest::Client,
        base: &str,
        path: &str,
    ) -> anyhow::Result<T> {
        Ok(Source::call(client, base, path, Method::Get).await?.0)
    }

    pub(super) async fn rejected(
        &self,
        limit: usize,
        offset: usize,
    ) -> anyhow::Result<Vec<DeadLetter>> {
        match self {
            Source::Api { client, base } => {
                Source::get(
                    client,
                    base,
                    &format!("/rejected?limit={limit}&offset={offset}"),
                )
                .await
            }
            Source::Store { _db: db, .. } => {
                // Opened without a bound: reading must not trim what the daemon keeps.
                Ok(DeadLetters::open(db, u64::MAX)?.page(offset, limit, false)?)
            }
        }
    }

    pub(super) async fn repositories(&self) -> anyhow::Result<Vec<Repository>> {
        match self {
            Source::Api { client, base } => Source::get(client, base, "/repositories").await,
            Source::Store { index, .. } => Ok(index.repositories()?),
        }
    }

    pub(super) async fn events(
        &self,
        repo: &str,
        query: &EventQuery,
    ) -> anyhow::Result<Vec<EventRow>> {
        let repo = parse_repo_ref(repo)?;
        match self {
            Source::Api { client, base } => {
                let mut path = format!(
                    "/repositories/{}/events?limit={}&offset={}",
                    utf8_percent_encode(repo.rid().as_str(), super::http::PATH_SEGMENT),
                    query.limit,
                    query.offset
                );
                if let Some(t) = &query.event_type {
                    let _ = write!(
                        path,
                        "&event_type={}",
                        utf8_percent_encode(t, super::http::PATH_SEGMENT)
                    );
                }
                Source::get(client, base, &path).await
            }
            Source::Store { index, .. } => index
                .events_page(&repo, query)?
                .ok_or_else(|| anyhow!("repository {} is not indexed", repo.full_name())),
        }
    }

    pub(super) async fn event(&self, rid: &str) -> anyhow::Result<EventDetails> {
        let rid = parse_event_rid(rid)?;
        match self {
            Source::Api { client, base } => {
                let path = format!(
                    "/events/{}",
                    utf8_percent_encode(rid.as_str(), super::http::PATH_SEGMENT)
                );
                Source::get(client, base, &path).await
            }
            Source::Store { index, .. } => index
                .event(&rid)?
                .ok_or_else(|| anyhow!("event {rid} is not indexed")),
        }
    }

    pub(super) async fn bundle(&self, rid: &str) -> anyhow::Result<BundleDetails> {
        let rid = Rid::parse(rid.trim()).map_err(|e| {
            anyhow!("{e}; expected a RID such as orn:github.event:owner/name:id or orn:github.repo:owner/name")
        })?;
        match self {
            Source::Api { client, base } => {
                let path = format!(
                    "/bundles/{}",
                    utf8_percent_encode(rid.as_str(), super::http::PATH_SEGMENT)
                );
                Source::get(client, base, &path).await
            }
            Source::Store { index, .. } => index
                .bundle(&rid)?
                .ok_or_else(|| anyhow!("no bundle is held for {rid}")),
        }
    }

    pub(super) async fn add_repository(&self, repo: &str) -> anyhow::Result<(Repository, bool)> {
        match self {
            Source::Api { client, base } => {
                let body = serde_json::json!({"repo": repo});
                let (row, status) =
                    Source::call(client, base, "/repositories", Method::Post(body)).await?;
                Ok((row, status == reqwest::StatusCode::CREATED))
            }
            Source::Store { index, .. } => Ok(index.add_repository(repo)?),
        }
    }

    /// Removes a repository added by hand; returns its name.
    pub(super) async fn remove_repository(&self, repo: &str) -> anyhow::Result<String> {
        let name = parse_repo_ref(repo)?.full_name().to_owned();
        match self {
            Source::Api { client, base } => {
                let path = format!("/repositories/{name}");
                let _: Value = Source::call(client, base, &path, Method::Delete).await?.0;
                Ok(name)
            }
            Source::Store { index, .. } => match index.remove_repository(repo)? {
                RepoRemoval::Removed => Ok(name),
                RepoRemoval::NotFound => bail!("repository {name} is not indexed"),
                RepoRemoval::NotAddedByHand => bail!(
                    "repository {name} was not added by hand: its events came from the network, and it stays \
                     while they do"
                ),
                RepoRemoval::HasEvents(n) => bail!(
                    "repository {name} has {n} events now; it can be removed only while it has none"
                ),
            },
        }
    }

    pub(super) async fn summary(&self) -> anyhow::Result<Summary> {
        match self {
            Source::Api { client, base } => {
                let status: StatusBody = Source::get(client, base, "/status").await?;
                let tops: StatsTops = Source::get(client, base, "/stats?top=5").await?;
                let details = status.details;
                Ok(Summary {
                    events: details.events,
                    repositories: details.repositories,
                    event_types: details.event_types,
                    latest_event: details.latest_event,
                    top_repos: tops.top_repos,
                    top_actors: tops.top_actors,
                })
            }
            Source::Store { index, .. } => {
                let Counts {
                    events,
                    repositories,
                    by_type,
                } = index.counts()?;
                let stats = index.stats(&crate::index::StatsQuery {
                    top: 5,
                    ..Default::default()
                })?;
                Ok(Summary {
                    events,
                    repositories,
                    event_types: by_type,
                    latest_event: index.latest_event()?,
                    top_repos: stats.top_repos,
                    top_actors: stats.top_actors,
                })
            }
        }
    }
}

/// An event RID typed by the user.
pub(super) fn parse_event_rid(text: &str) -> anyhow::Result<Rid> {
    Rid::parse(text.trim())
        .and_then(|rid| GithubEventRid::from_rid(&rid).map(|_| rid))
        .map_err(|e| {
            anyhow!("{e}; expected a GitHub event RID such as orn:github.event:owner/name:id")
        })
}

pub(super) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let _ = write!(text, ": {s}");
        source = s.source();
    }
    text
}
