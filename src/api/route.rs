//! Every route of the API, written once. [`Route::parse`] is the router (the handlers are dispatched from what it
//! gives), [`Route::template`] names a route in the metrics (never the raw path, whose repository names and RIDs
//! would make one series each), and [`ROUTES`] is the list `docs/api.md` is checked against.

use warp::http::Method;

use super::API_PREFIX;

/// One route, with the raw (still percent-encoded) path parts its handler reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `GET /health`
    Health,
    /// `GET /status`
    Status,
    /// `GET /repositories`
    Repositories,
    /// `POST /repositories`
    AddRepository,
    /// `GET /repositories/{repo}` or `GET /repositories/{repo}/events` (a repository name may end in `/events`
    /// only as the listing: the handler tells them apart).
    RepositoryPath(String),
    /// `DELETE /repositories/{repo}`
    RemoveRepository(String),
    /// `GET /events`
    Events,
    /// `GET /events/{rid}` or `GET /events/{rid}/history`
    EventPath(String),
    /// `GET /bundles/{rid}`
    Bundle(String),
    /// `GET /commits/{sha}/events`
    CommitEvents(String),
    /// `GET /stats`
    Stats,
    /// `GET /stream`
    Stream,
    /// `GET /stream/ws`
    StreamWs,
    /// `GET /polls`
    Polls,
    /// `GET /rejected`
    Rejected,
    /// `GET /actions`
    Actions,
    /// `GET /actions/{name}/deliveries`
    Deliveries(String),
    /// `POST /actions/{name}/deliveries/{id}/redeliver`
    Redeliver(String, String),
    /// `GET /export`
    Export,
    /// `GET /metrics` (outside the prefix)
    Metrics,
    /// `GET /` (outside the prefix): the dashboard
    Dashboard,
    /// `GET /assets/{file}` (outside the prefix)
    Asset(String),
}

/// Why no route answers a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoRoute {
    /// No route has this path.
    NotFound,
    /// A route has this path, but not for this method.
    MethodNotAllowed,
}

/// Every route template, as the metrics label them and `docs/api.md` lists them (a unit test checks the docs).
pub const ROUTES: &[&str] = &[
    "/api/processor/github/health",
    "/api/processor/github/status",
    "/api/processor/github/repositories",
    "/api/processor/github/repositories/{repo}",
    "/api/processor/github/repositories/{repo}/events",
    "/api/processor/github/events",
    "/api/processor/github/events/{event_rid}",
    "/api/processor/github/events/{event_rid}/history",
    "/api/processor/github/bundles/{rid}",
    "/api/processor/github/commits/{sha}/events",
    "/api/processor/github/stats",
    "/api/processor/github/stream",
    "/api/processor/github/stream/ws",
    "/api/processor/github/polls",
    "/api/processor/github/rejected",
    "/api/processor/github/actions",
    "/api/processor/github/actions/{name}/deliveries",
    "/api/processor/github/actions/{name}/deliveries/{id}/redeliver",
    "/api/processor/github/export",
    "/metrics",
    "/",
    "/assets/{file}",
];

/// The method a route is read with: HEAD is GET without the body (hyper leaves it out).
fn reading(method: &Method) -> bool {
    method == Method::GET || method == Method::HEAD
}

impl Route {
    /// The route for `method` and `path` (the path as received: percent-encoded).
    pub fn parse(method: &Method, path: &str) -> Result<Route, NoRoute> {
        let get = |route: Route| {
            if reading(method) {
                Ok(route)
            } else {
                Err(NoRoute::MethodNotAllowed)
            }
        };
        let Some(rest) = path.strip_prefix(API_PREFIX) else {
            return match path {
                "/" => get(Route::Dashboard),
                "/metrics" | "/metrics/" => get(Route::Metrics),
                _ => match path.strip_prefix("/assets/") {
                    Some(file) if !file.is_empty() && !file.contains('/') => {
                        get(Route::Asset(file.to_owned()))
                    }
                    _ => Err(NoRoute::NotFound),
                },
            };
        };
        let Some(rest) = rest.strip_prefix('/') else {
            return Err(NoRoute::NotFound);
        };
        let exact = rest.strip_suffix('/').unwrap_or(rest);
        match exact {
            "health" => return get(Route::Health),
            "status" => return get(Route::Status),
            "events" => return get(Route::Events),
            "stats" => return get(Route::Stats),
            "stream" => return get(Route::Stream),
            "stream/ws" => return get(Route::StreamWs),
            "polls" => return get(Route::Polls),
            "rejected" => return get(Route::Rejected),
            "actions" => return get(Route::Actions),
            "export" => return get(Route::Export),
            "repositories" => {
                return match *method {
                    Method::POST => Ok(Route::AddRepository),
                    _ => get(Route::Repositories),
                }
            }
            _ => {}
        }
        if let Some(tail) = rest.strip_prefix("repositories/") {
            return match *method {
                Method::DELETE => Ok(Route::RemoveRepository(tail.to_owned())),
                _ => get(Route::RepositoryPath(tail.to_owned())),
            };
        }
        if let Some(tail) = rest.strip_prefix("events/") {
            return get(Route::EventPath(tail.to_owned()));
        }
        if let Some(tail) = rest.strip_prefix("bundles/") {
            return get(Route::Bundle(tail.to_owned()));
        }
        let parts: Vec<&str> = exact.split('/').collect();
        match parts.as_slice() {
            ["commits", sha, "events"] => get(Route::CommitEvents((*sha).to_owned())),
            ["actions", name, "deliveries"] => get(Route::Deliveries((*name).to_owned())),
            ["actions", name, "deliveries", id, "redeliver"] => match *method {
                Method::POST => Ok(Route::Redeliver((*name).to_owned(), (*id).to_owned())),
                _ => Err(NoRoute::MethodNotAllowed),
            },
            _ => Err(NoRoute::NotFound),
        }
    }

    /// The route's template, one of [`ROUTES`].
    pub fn template(&self) -> &'static str {
        match self {
            Route::Health => ROUTES[0],
            Route::Status => ROUTES[1],
            Route::Repositories | Route::AddRepository => ROUTES[2],
            Route::RemoveRepository(_) => ROUTES[3],
            Route::RepositoryPath(tail) => {
                if tail.trim_end_matches('/').ends_with("/events") {
                    ROUTES[4]
                } else {
                    ROUTES[3]
                }
            }
            Route::Events => ROUTES[5],
            Route::EventPath(tail) => {
                if tail.trim_end_matches('/').ends_with("/history") {
                    ROUTES[7]
                } else {
                    ROUTES[6]
                }
            }
            Route::Bundle(_) => ROUTES[8],
            Route::CommitEvents(_) => ROUTES[9],
            Route::Stats => ROUTES[10],
            Route::Stream => ROUTES[11],
            Route::StreamWs => ROUTES[12],
            Route::Polls => ROUTES[13],
            Route::Rejected => ROUTES[14],
            Route::Actions => ROUTES[15],
            Route::Deliveries(_) => ROUTES[16],
            Route::Redeliver(..) => ROUTES[17],
            Route::Export => ROUTES[18],
            Route::Metrics => ROUTES[19],
            Route::Dashboard => ROUTES[20],
            Route::Asset(_) => ROUTES[21],
        }
    }
}

/// The template of whatever route `path` belongs to (any method), or `other`: the metrics' label.
pub fn template_of(path: &str) -> &'static str {
    [Method::GET, Method::POST, Method::DELETE]
        .iter()
        .find_map(|method| Route::parse(method, path).ok())
        .map_or("other", |route| route.template())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_path_has_its_route_and_template() {
        let p = |path: &str| format!("{API_PREFIX}{path}");
        for (method, path, route, template) in [
            (Method::GET, p("/health"), Route::Health, 0),
            (Method::HEAD, p("/status/"), Route::Status, 1),
            (Method::POST, p("/repositories"), Route::AddRepository, 2),
            (
                Method::GET,
                p("/repositories/octo/hello/events"),
                Route::RepositoryPath("octo/hello/events".into()),
                4,
            ),
            (
                Method::DELETE,
                p("/repositories/octo/hello"),
                Route::RemoveRepository("octo/hello".into()),
                3,
            ),
            (
                Method::GET,
                p("/events/orn%3Agithub.event%3Aa%2Fb%3A1/history"),
                Route::EventPath("orn%3Agithub.event%3Aa%2Fb%3A1/history".into()),
                7,
            ),
            (Method::GET, p("/bundles/x"), Route::Bundle("x".into()), 8),
            (
                Method::GET,
                p("/commits/abc1/events"),
                Route::CommitEvents("abc1".into()),
                9,
            ),
            (Method::GET, p("/stream/ws"), Route::StreamWs, 12),
            (
                Method::POST,
                p("/actions/a/deliveries/d/redeliver"),
                Route::Redeliver("a".into(), "d".into()),
                17,
            ),
            (Method::GET, "/metrics".into(), Route::Metrics, 19),
            (Method::GET, "/".into(), Route::Dashboard, 20),
            (
                Method::GET,
                "/assets/app.js".into(),
                Route::Asset("app.js".into()),
                21,
            ),
        ] {
            let parsed = Route::parse(&method, &path).unwrap();
            assert_eq!(parsed, route, "{method} {path}");
            assert_eq!(parsed.template(), ROUTES[template], "{path}");
            assert_eq!(template_of(&path), ROUTES[template], "{path}");
        }
        assert_eq!(
            Route::parse(&Method::POST, &p("/status")),
            Err(NoRoute::MethodNotAllowed)
        );
        assert_eq!(
            Route::parse(&Method::DELETE, &p("/repositories")),
            Err(NoRoute::MethodNotAllowed)
        );
        for unknown in [
            p("/nope"),
            p(""),
            "/api".into(),
            "/assets/".into(),
            "/assets/a/b".into(),
        ] {
            assert_eq!(
                Route::parse(&Method::GET, &unknown),
                Err(NoRoute::NotFound),
                "{unknown}"
            );
            assert_eq!(template_of(&unknown), "other");
        }
    }

    /// The docs list every route: `docs/api.md` is where a user looks them up.
    #[test]
    fn docs_api_md_names_every_route() {
        let docs = include_str!("../../docs/api.md");
        for template in ROUTES.iter().filter(|t| **t != "/") {
            let short = template.strip_prefix(API_PREFIX).unwrap_or(template);
            assert!(
                docs.contains(&format!("{short}`")),
                "docs/api.md does not list {template}"
            );
        }
    }
}
