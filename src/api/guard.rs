//! The API's trust boundary: what every request must show before it is routed.
//!
//! Listening on loopback keeps other machines out, not other programs on this one, and not web pages: a page in
//! the operator's browser can send requests to `127.0.0.1`, and through DNS rebinding or a WebSocket it can read
//! the answers. The checks below are the ones established localhost services make (Jupyter's Host check and token,
//! Tornado's `check_origin`, Chrome's Private Network Access), applied in this order:
//!
//! 1. **Host** (403). The `Host` header must name this API: `127.0.0.1:PORT`, `localhost:PORT`, `[::1]:PORT`, the
//!    listen address, or a name in `api.allowed_hosts`. A rebound domain (`evil.example` resolving to 127.0.0.1)
//!    sends its own name, so this is what defeats DNS rebinding. A missing `Host` is refused too.
//! 2. **Origin** (403). A browser names the page that sent a request in `Origin`. A WebSocket upgrade or a request
//!    for the live stream from a foreign page is refused (WebSockets are not covered by CORS). A request that can
//!    change something (anything but GET and HEAD) is refused when its `Origin` is foreign, or when
//!    `Sec-Fetch-Site` says `cross-site` or `same-site`. Clients that send neither header (curl, the CLI) pass.
//! 3. **Token** (401), when `api.token_env` is set: `Authorization: Bearer <token>` on every route but
//!    `/api/processor/github/health`, `/` and `/assets/…` (the page itself holds no data). Compared in constant
//!    time.
//! 4. **Content type** (415). POST and DELETE must say `Content-Type: application/json`. A page can send
//!    `text/plain` or a form to another origin without asking first; `application/json` makes the browser send a
//!    CORS preflight, which this API never answers with permission.
//!
//! Each refusal is a JSON error that names the header and the setting to change.

use std::net::SocketAddr;

use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;
use warp::http::{header, HeaderMap, Method, StatusCode};

use super::API_PREFIX;

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// No `Host` header, or more than one.
    MissingHost,
    /// A `Host` that is not this API's.
    ForeignHost(String),
    /// A browser request from a page on another origin.
    ForeignOrigin(String),
    /// A write that the browser marks as sent by another site (`Sec-Fetch-Site`).
    CrossSite(String),
    /// No token, or the wrong one.
    Token,
    /// A POST or DELETE that is not `application/json`.
    ContentType(Option<String>),
}

impl Refusal {
    /// The HTTP status it is answered with.
    pub fn status(&self) -> StatusCode {
        match self {
            Refusal::MissingHost
            | Refusal::ForeignHost(_)
            | Refusal::ForeignOrigin(_)
            | Refusal::CrossSite(_) => StatusCode::FORBIDDEN,
            Refusal::Token => StatusCode::UNAUTHORIZED,
            Refusal::ContentType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        }
    }

    /// The metric label.
    pub fn reason(&self) -> &'static str {
        match self {
            Refusal::MissingHost | Refusal::ForeignHost(_) => "host",
            Refusal::ForeignOrigin(_) => "origin",
            Refusal::CrossSite(_) => "cross_site",
            Refusal::Token => "token",
            Refusal::ContentType(_) => "content_type",
        }
    }

    /// The `{"error": …}` text: what was wrong, and what to change.
    pub fn message(&self) -> String {
        match self {
            Refusal::MissingHost => "the request has no single `Host` header; send one that names this API, e.g. \
                                     `Host: 127.0.0.1:8004`"
                .to_owned(),
            Refusal::ForeignHost(host) => format!(
                "the `Host` header `{}` does not name this API (a defence against DNS rebinding); use \
                 127.0.0.1, localhost or [::1] with the API's port, or add the name to `api.allowed_hosts`",
                shown(host)
            ),
            Refusal::ForeignOrigin(origin) => format!(
                "requests from pages on other origins are refused (the `Origin` header is `{}`); open the \
                 dashboard from this API's own address, or add its host to `api.allowed_hosts`",
                shown(origin)
            ),
            Refusal::CrossSite(site) => format!(
                "the browser marks this request as sent by another site (`Sec-Fetch-Site: {}`); changes are \
                 accepted only from this API's own pages, the CLI or a client that sends no such header",
                shown(site)
            ),
            Refusal::Token => "this API requires a token (`api.token_env` is set): send `Authorization: Bearer \
                               <token>`; the CLI reads it from the same variable"
                .to_owned(),
            Refusal::ContentType(got) => format!(
                "POST and DELETE must send `Content-Type: application/json` (got {}); the body may be empty where \
                 the route takes none",
                got.as_deref()
                    .map_or("no content type".to_owned(), |t| format!("`{}`", shown(t)))
            ),
        }
    }
}

/// A header value quoted back in an error: at most 100 characters, control characters escaped.
fn shown(text: &str) -> String {
    crate::telemetry::printable(&text.chars().take(100).collect::<String>())
}

/// Checks every request before routing. Built once at start-up.
#[derive(Clone)]
pub struct Guard {
    /// `Host` values accepted as they are (lower case, with the port).
    exact_hosts: Vec<String>,
    /// Names from `api.allowed_hosts` written without a port: accepted with any port, or none.
    any_port_hosts: Vec<String>,
    /// SHA-256 of the token, when one is required. Comparing digests keeps the comparison's time independent of
    /// the token's length as well as of its bytes.
    token_digest: Option<[u8; 32]>,
}

impl std::fmt::Debug for Guard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guard")
            .field("exact_hosts", &self.exact_hosts)
            .field("any_port_hosts", &self.any_port_hosts)
            .field("token", &self.token_digest.is_some())
            .finish()
    }
}

/// Whether `entry` can go in `api.allowed_hosts`: a host name or address, with or without `:port`.
pub fn check_allowed_host(entry: &str) -> Result<(), String> {
    let problem = |why: &str| {
        format!(
            "entry `{}` {why}; write a host name as a browser sends it in `Host`, e.g. \"indexer.example.com\" or \
             \"indexer.example.com:8443\"",
            shown(entry)
        )
    };
    if entry.is_empty() {
        return Err(problem("is empty"));
    }
    if entry.contains("://") {
        return Err(problem("has a scheme"));
    }
    if entry
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || "/@?#".contains(c))
    {
        return Err(problem("is not a bare host name"));
    }
    let (_, port) = split_port(entry);
    if let Some(port) = port {
        if port.parse::<u16>().is_err() {
            return Err(problem("has a port that is not a number from 0 to 65535"));
        }
    }
    Ok(())
}

/// `host:port` → (`host`, `Some(port)`); `[::1]:8004` → (`[::1]`, `Some("8004")`); a bare name or `[::1]` → no port.
fn split_port(authority: &str) -> (&str, Option<&str>) {
    if let Some(end) = authority.rfind(']') {
        return match authority[end + 1..].strip_prefix(':') {
            Some(port) => (&authority[..=end], Some(port)),
            None => (authority, None),
        };
    }
    match authority.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => (host, Some(port)),
        _ => (authority, None),
    }
}

impl Guard {
    /// The guard for an API listening on `listen`, accepting `allowed_hosts` too, and requiring `token` if given.
    pub fn new(listen: SocketAddr, allowed_hosts: &[String], token: Option<&str>) -> Guard {
        let port = listen.port();
        let mut loopback: Vec<String> =
            vec!["127.0.0.1".into(), "localhost".into(), "[::1]".into()];
        loopback.push(match listen {
            SocketAddr::V4(v4) => v4.ip().to_string(),
            SocketAddr::V6(v6) => format!("[{}]", v6.ip()),
        });
        let mut exact_hosts: Vec<String> = loopback.iter().map(|h| format!("{h}:{port}")).collect();
        // Browsers leave the port out when it is the scheme's default.
        if port == 80 {
            exact_hosts.extend(loopback);
        }
        let mut any_port_hosts = Vec::new();
        for entry in allowed_hosts {
            let entry = entry.to_ascii_lowercase();
            match split_port(&entry) {
                (_, Some(_)) => exact_hosts.push(entry),
                (_, None) => any_port_hosts.push(entry),
            }
        }
        exact_hosts.sort();
        exact_hosts.dedup();
        Guard {
            exact_hosts,
            any_port_hosts,
            token_digest: token.map(|t| Sha256::digest(t.as_bytes()).into()),
        }
    }

    /// Whether a token is required.
    pub fn requires_token(&self) -> bool {
        self.token_digest.is_some()
    }

    /// Whether `authority` (a `Host` value, or an origin's host and port) names this API.
    fn is_allowed(&self, authority: &str) -> bool {
        let authority = authority.to_ascii_lowercase();
        if self.exact_hosts.contains(&authority) {
            return true;
        }
        let (host, _) = split_port(&authority);
        self.any_port_hosts.iter().any(|h| h == host)
    }

    /// Whether an `Origin` value names one of this API's own pages.
    fn is_own_origin(&self, origin: &str) -> bool {
        let authority = origin
            .strip_prefix("http://")
            .or_else(|| origin.strip_prefix("https://"));
        // `null` (a sandboxed frame, a file: page) and other schemes are never ours.
        authority.is_some_and(|a| !a.contains('/') && self.is_allowed(a))
    }

    /// Checks one request; `Ok` lets it through to the routes.
    pub fn check(&self, method: &Method, path: &str, headers: &HeaderMap) -> Result<(), Refusal> {
        self.check_host(headers)?;
        self.check_origin(method, path, headers)?;
        self.check_token(path, headers)?;
        check_content_type(method, headers)
    }

    fn check_host(&self, headers: &HeaderMap) -> Result<(), Refusal> {
        let mut hosts = headers.get_all(header::HOST).iter();
        let (Some(host), None) = (hosts.next(), hosts.next()) else {
            return Err(Refusal::MissingHost);
        };
        let host = host.to_str().map_err(|_| {
            Refusal::ForeignHost(String::from_utf8_lossy(host.as_bytes()).into_owned())
        })?;
        if self.is_allowed(host) {
            Ok(())
        } else {
            Err(Refusal::ForeignHost(host.to_owned()))
        }
    }

    fn check_origin(
        &self,
        method: &Method,
        path: &str,
        headers: &HeaderMap,
    ) -> Result<(), Refusal> {
        let writes = method != Method::GET && method != Method::HEAD;
        if !writes && !is_stream_request(path, headers) {
            return Ok(());
        }
        // Every Origin header present must be ours (a browser sends one).
        for origin in headers.get_all(header::ORIGIN) {
            let text = String::from_utf8_lossy(origin.as_bytes());
            if !self.is_own_origin(&text) {
                return Err(Refusal::ForeignOrigin(text.into_owned()));
            }
        }
        if writes {
            if let Some(site) = headers.get("sec-fetch-site") {
                let site = String::from_utf8_lossy(site.as_bytes()).to_ascii_lowercase();
                if site == "cross-site" || site == "same-site" {
                    return Err(Refusal::CrossSite(site));
                }
            }
        }
        Ok(())
    }

    fn check_token(&self, path: &str, headers: &HeaderMap) -> Result<(), Refusal> {
        let Some(expected) = &self.token_digest else {
            return Ok(());
        };
        if is_public(path) {
            return Ok(());
        }
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                let (scheme, token) = v.trim().split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
            })
            .ok_or(Refusal::Token)?;
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        if bool::from(digest.ct_eq(expected)) {
            Ok(())
        } else {
            Err(Refusal::Token)
        }
    }
}

/// The paths that need no token: the health check, and the dashboard's page and files (they hold no data; the
/// page asks for the token and sends it with its own requests).
fn is_public(path: &str) -> bool {
    path == "/"
        || path.starts_with("/assets/")
        || path
            .strip_prefix(API_PREFIX)
            .is_some_and(|rest| rest.trim_end_matches('/') == "/health")
}

/// A WebSocket upgrade, or a request for the live stream (Server-Sent Events).
fn is_stream_request(path: &str, headers: &HeaderMap) -> bool {
    let websocket = headers.get_all(header::UPGRADE).iter().any(|v| {
        String::from_utf8_lossy(v.as_bytes())
            .to_ascii_lowercase()
            .contains("websocket")
    });
    let event_stream = headers
        .get_all(header::ACCEPT)
        .iter()
        .any(|v| String::from_utf8_lossy(v.as_bytes()).contains("text/event-stream"));
    let stream_path = path
        .strip_prefix(API_PREFIX)
        .is_some_and(|rest| rest.trim_end_matches('/').starts_with("/stream"));
    websocket || event_stream || stream_path
}

/// POST and DELETE must be `application/json` (any parameters, such as a charset, are fine).
fn check_content_type(method: &Method, headers: &HeaderMap) -> Result<(), Refusal> {
    if method != Method::POST && method != Method::DELETE {
        return Ok(());
    }
    let value = headers
        .get(header::CONTENT_TYPE)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let is_json = value.as_deref().is_some_and(|t| {
        t.split(';')
            .next()
            .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"))
    });
    if is_json {
        Ok(())
    } else {
        Err(Refusal::ContentType(value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use warp::http::HeaderValue;

    const PORT: u16 = 8004;

    fn guard(token: Option<&str>) -> Guard {
        Guard::new(
            SocketAddr::from(([127, 0, 0, 1], PORT)),
            &["indexer.example.com".into(), "proxy.local:8443".into()],
            token,
        )
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    const STATUS: &str = "/api/processor/github/status";
    const REDELIVER: &str = "/api/processor/github/actions/a/deliveries/d/redeliver";

    #[test]
    fn only_hosts_that_name_this_api_pass() {
        let g = guard(None);
        for host in [
            "127.0.0.1:8004",
            "localhost:8004",
            "LOCALHOST:8004",
            "[::1]:8004",
            "indexer.example.com",
            "indexer.example.com:443",
            "proxy.local:8443",
        ] {
            assert_eq!(
                g.check(&Method::GET, STATUS, &headers(&[("host", host)])),
                Ok(()),
                "{host}"
            );
        }
        for host in [
            "evil.example",
            "evil.example:8004",
            "127.0.0.1:9999",
            "127.0.0.1",
            "localhost.:8004",
            "proxy.local:8444",
            "127.0.0.1:8004.evil.example",
        ] {
            assert_eq!(
                g.check(&Method::GET, STATUS, &headers(&[("host", host)])),
                Err(Refusal::ForeignHost(host.into())),
                "{host}"
            );
        }
        assert_eq!(
            g.check(&Method::GET, "/", &HeaderMap::new()),
            Err(Refusal::MissingHost)
        );
        assert_eq!(
            g.check(
                &Method::GET,
                "/",
                &headers(&[("host", "127.0.0.1:8004"), ("host", "evil.example")])
            ),
            Err(Refusal::MissingHost)
        );
        let message = Refusal::ForeignHost("evil.example".into()).message();
        assert!(
            message.contains("`Host`") && message.contains("api.allowed_hosts"),
            "{message}"
        );
    }

    #[test]
    fn port_80_also_accepts_hosts_without_a_port() {
        let g = Guard::new(SocketAddr::from(([127, 0, 0, 1], 80)), &[], None);
        assert!(g.is_allowed("localhost"));
        assert!(g.is_allowed("127.0.0.1:80"));
        assert!(!g.is_allowed("localhost:8004"));
    }

    #[test]
    fn foreign_pages_cannot_open_the_stream_or_write() {
        let g = guard(None);
        let host = ("host", "127.0.0.1:8004");
        let evil = ("origin", "http://evil.example");
        let ws = [("upgrade", "websocket"), ("connection", "Upgrade")];
        let ws_path = "/api/processor/github/stream/ws";
        assert_eq!(
            g.check(&Method::GET, ws_path, &headers(&[host, evil, ws[0], ws[1]])),
            Err(Refusal::ForeignOrigin("http://evil.example".into()))
        );
        assert_eq!(
            g.check(
                &Method::GET,
                "/api/processor/github/stream",
                &headers(&[host, evil])
            ),
            Err(Refusal::ForeignOrigin("http://evil.example".into()))
        );
        assert_eq!(
            g.check(&Method::GET, ws_path, &headers(&[host, ("origin", "null")])),
            Err(Refusal::ForeignOrigin("null".into()))
        );
        // Another port on loopback is another origin.
        assert!(g
            .check(
                &Method::GET,
                ws_path,
                &headers(&[host, ("origin", "http://127.0.0.1:9999")])
            )
            .is_err());
        // The dashboard itself, and clients that send no Origin.
        let own = ("origin", "http://127.0.0.1:8004");
        assert_eq!(
            g.check(&Method::GET, ws_path, &headers(&[host, own, ws[0]])),
            Ok(())
        );
        assert_eq!(
            g.check(&Method::GET, ws_path, &headers(&[host, ws[0]])),
            Ok(())
        );
        // A plain read from another origin is answered (the browser keeps the answer from the page: no CORS).
        assert_eq!(
            g.check(&Method::GET, STATUS, &headers(&[host, evil])),
            Ok(())
        );

        let json = ("content-type", "application/json");
        assert_eq!(
            g.check(&Method::POST, REDELIVER, &headers(&[host, evil, json])),
            Err(Refusal::ForeignOrigin("http://evil.example".into()))
        );
        for site in ["cross-site", "same-site"] {
            assert_eq!(
                g.check(
                    &Method::POST,
                    REDELIVER,
                    &headers(&[host, json, ("sec-fetch-site", site)])
                ),
                Err(Refusal::CrossSite(site.into()))
            );
        }
        for site in ["same-origin", "none"] {
            assert_eq!(
                g.check(
                    &Method::POST,
                    REDELIVER,
                    &headers(&[host, own, json, ("sec-fetch-site", site)])
                ),
                Ok(())
            );
        }
        assert_eq!(
            g.check(&Method::POST, REDELIVER, &headers(&[host, json])),
            Ok(())
        );
    }

    #[test]
    fn writes_must_be_json() {
        let g = guard(None);
        let host = ("host", "127.0.0.1:8004");
        assert_eq!(
            g.check(&Method::POST, REDELIVER, &headers(&[host])),
            Err(Refusal::ContentType(None))
        );
        assert_eq!(
            g.check(
                &Method::POST,
                REDELIVER,
                &headers(&[host, ("content-type", "text/plain")])
            ),
            Err(Refusal::ContentType(Some("text/plain".into())))
        );
        assert_eq!(
            g.check(
                &Method::DELETE,
                "/api/processor/github/repositories/a/b",
                &headers(&[host, ("content-type", "application/x-www-form-urlencoded")])
            )
            .map_err(|r| r.status()),
            Err(StatusCode::UNSUPPORTED_MEDIA_TYPE)
        );
        assert_eq!(
            g.check(
                &Method::POST,
                REDELIVER,
                &headers(&[host, ("content-type", "Application/JSON; charset=utf-8")])
            ),
            Ok(())
        );
        assert_eq!(g.check(&Method::GET, STATUS, &headers(&[host])), Ok(()));
    }

    #[test]
    fn a_configured_token_is_required_except_for_health_and_the_page() {
        let g = guard(Some("s3cret-token"));
        let host = ("host", "127.0.0.1:8004");
        assert_eq!(
            g.check(&Method::GET, STATUS, &headers(&[host])),
            Err(Refusal::Token)
        );
        for wrong in [
            "Bearer nope",
            "Basic czNjcmV0LXRva2Vu",
            "Bearer",
            "s3cret-token",
        ] {
            assert_eq!(
                g.check(
                    &Method::GET,
                    STATUS,
                    &headers(&[host, ("authorization", wrong)])
                ),
                Err(Refusal::Token),
                "{wrong}"
            );
        }
        for right in ["Bearer s3cret-token", "bearer s3cret-token"] {
            assert_eq!(
                g.check(
                    &Method::GET,
                    STATUS,
                    &headers(&[host, ("authorization", right)])
                ),
                Ok(())
            );
        }
        for public in ["/api/processor/github/health", "/", "/assets/app.js"] {
            assert_eq!(
                g.check(&Method::GET, public, &headers(&[host])),
                Ok(()),
                "{public}"
            );
        }
        assert_eq!(
            g.check(&Method::GET, "/metrics", &headers(&[host])),
            Err(Refusal::Token)
        );
        // The Host check comes first: a rebound page learns nothing, even whether a token is needed.
        assert_eq!(
            g.check(&Method::GET, STATUS, &headers(&[("host", "evil.example")])),
            Err(Refusal::ForeignHost("evil.example".into()))
        );
        assert!(g.requires_token() && !guard(None).requires_token());
    }

    #[test]
    fn allowed_hosts_entries_are_checked() {
        for good in [
            "indexer.example.com",
            "indexer:8443",
            "[::1]:9000",
            "10.0.0.5",
        ] {
            assert_eq!(check_allowed_host(good), Ok(()), "{good}");
        }
        for bad in [
            "",
            "http://indexer",
            "indexer/api",
            "a b",
            "user@host",
            "host:99999",
            "host:x",
        ] {
            assert!(check_allowed_host(bad).is_err(), "{bad}");
        }
    }
}
