//! The answers of the running daemon's API: one request each.

use super::*;

/// How [`ApiAnswers::call`] asks the API.
enum Method {
    Get,
    Post(Value),
    Delete,
}

/// The running daemon, at `base`.
pub(in crate::cli) struct ApiAnswers {
    pub(in crate::cli) client: reqwest::Client,
    pub(in crate::cli) base: String,
}

/// A value as one path segment: a RID's `:` and `/` are escaped, so the API reads it back whole.
fn segment(text: &str) -> impl std::fmt::Display + '_ {
    utf8_percent_encode(text, crate::cli::http::PATH_SEGMENT)
}

impl ApiAnswers {
    /// GET (or POST `body`, or DELETE) `path` under the API prefix; a non-2xx answer becomes its `{"error"}`
    /// message.
    async fn call<T: DeserializeOwned>(
        &self,
        path: &str,
        method: Method,
    ) -> anyhow::Result<(T, reqwest::StatusCode)> {
        let url = format!("{}{API_PREFIX}{path}", self.base);
        let request = match method {
            Method::Get => self.client.get(&url),
            Method::Post(body) => self.client.post(&url).json(&body),
            // The API takes writes as JSON only; a DELETE has no body, but says so all the same.
            Method::Delete => self
                .client
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

    async fn get<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        Ok(self.call(path, Method::Get).await?.0)
    }
}

impl Answers for ApiAnswers {
    async fn repositories(&self) -> anyhow::Result<Vec<Repository>> {
        self.get("/repositories").await
    }

    async fn events(
        &self,
        repo: &GithubRepoRid,
        query: &EventQuery,
    ) -> anyhow::Result<Vec<EventRow>> {
        let mut path = format!(
            "/repositories/{}/events?limit={}&offset={}",
            segment(repo.rid().as_str()),
            query.limit,
            query.offset
        );
        if let Some(t) = &query.event_type {
            let _ = write!(path, "&event_type={}", segment(t));
        }
        self.get(&path).await
    }

    async fn event(&self, rid: &Rid) -> anyhow::Result<EventDetails> {
        self.get(&format!("/events/{}", segment(rid.as_str())))
            .await
    }

    async fn bundle(&self, rid: &Rid) -> anyhow::Result<BundleDetails> {
        self.get(&format!("/bundles/{}", segment(rid.as_str())))
            .await
    }

    async fn history(&self, rid: &Rid) -> anyhow::Result<Vec<EventVersion>> {
        self.get(&format!("/events/{}/history", segment(rid.as_str())))
            .await
    }

    async fn add_repository(&self, repo: &str) -> anyhow::Result<(Repository, bool)> {
        let body = serde_json::json!({"repo": repo});
        let (row, status) = self.call("/repositories", Method::Post(body)).await?;
        Ok((row, status == reqwest::StatusCode::CREATED))
    }

    async fn remove_repository(&self, repo: &GithubRepoRid) -> anyhow::Result<()> {
        let path = format!("/repositories/{}", repo.full_name());
        let _: Value = self.call(&path, Method::Delete).await?.0;
        Ok(())
    }

    async fn summary(&self) -> anyhow::Result<Summary> {
        let status: StatusBody = self.get("/status").await?;
        let tops: StatsTops = self.get("/stats?top=5").await?;
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

    async fn rejected(&self, limit: usize, offset: usize) -> anyhow::Result<Vec<DeadLetter>> {
        self.get(&format!("/rejected?limit={limit}&offset={offset}"))
            .await
    }

    async fn actions(&self) -> anyhow::Result<Vec<ActionSummary>> {
        self.get("/actions").await
    }

    async fn deliveries(
        &self,
        name: &str,
        limit: usize,
        offset: usize,
    ) -> anyhow::Result<Vec<Delivery>> {
        self.get(&format!(
            "/actions/{}/deliveries?limit={limit}&offset={offset}",
            segment(name)
        ))
        .await
    }

    async fn redeliver(&self, name: &str, id: &str) -> anyhow::Result<Delivery> {
        let path = format!(
            "/actions/{}/deliveries/{}/redeliver",
            segment(name),
            segment(id)
        );
        Ok(self
            .call(&path, Method::Post(serde_json::json!({})))
            .await?
            .0)
    }
}
