//! The one way the CLI talks to the daemon's API: its base URL, the token it sends, and the HTTP client built from
//! them. Every request carries `Authorization: Bearer …` when a token is set, and every write is JSON (the API
//! refuses a POST or DELETE that is not: see `api::guard`).

use std::time::Duration;

use anyhow::Context as _;
use percent_encoding::{AsciiSet, CONTROLS};
use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION};

/// The variable the CLI reads the token from when no config names one (`api.token_env`'s usual value).
pub const DEFAULT_TOKEN_ENV: &str = "KOI_API_TOKEN";

/// How long to wait for the daemon to accept a connection before deciding it is not running.
pub const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);

/// What a path segment must escape: a RID (`orn:github.event:owner/name:id`) keeps its `:` and `.` readable in
/// URLs and in the errors that quote them, and its `/` escaped (`%2F`), so that it stays one segment.
pub const PATH_SEGMENT: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'/')
    .add(b'?')
    .add(b'<')
    .add(b'>')
    .add(b'`')
    .add(b'{')
    .add(b'}')
    .add(b'+')
    .add(b'&');

/// The running daemon's API, as the CLI reaches it.
#[derive(Clone)]
pub struct Endpoint {
    /// Base URL, e.g. `http://127.0.0.1:8004`, without a trailing `/`.
    pub base: String,
    /// The bearer token, when the daemon requires one.
    token: Option<String>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("base", &self.base)
            .field("token", &self.token.is_some())
            .finish()
    }
}

impl Endpoint {
    /// The API at `base`, sending `token` if given.
    pub fn new(base: &str, token: Option<String>) -> Endpoint {
        Endpoint {
            base: base.trim_end_matches('/').to_owned(),
            token,
        }
    }

    /// The API at `base`, with the token from the variable `token_env` (or its systemd credential file), if set.
    pub fn from_env(base: &str, token_env: &str) -> anyhow::Result<Endpoint> {
        let token = crate::secrets::read(token_env)?.map(|(token, _)| token);
        Ok(Endpoint::new(base, token))
    }

    /// A client for this API: connects within [`CONNECT_TIMEOUT`], gives up on a request after `timeout` (none:
    /// streams and exports take as long as they take), follows no redirects, and sends the token.
    pub fn client(&self, timeout: Option<Duration>) -> anyhow::Result<reqwest::Client> {
        let mut headers = HeaderMap::new();
        if let Some(token) = &self.token {
            let mut value = HeaderValue::from_str(&format!("Bearer {token}")).context(
                "the API token holds characters an HTTP header cannot carry (check the token variable)",
            )?;
            value.set_sensitive(true);
            headers.insert(AUTHORIZATION, value);
        }
        let mut builder = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .default_headers(headers);
        if let Some(timeout) = timeout {
            builder = builder.timeout(timeout);
        }
        builder.build().context("building the HTTP client")
    }

    /// `{base}/api/processor/github{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{}{path}", self.base, crate::api::API_PREFIX)
    }
}
