//! The one parser of query parameters and paths: every route's parameters become one typed value here
//! ([`events_query`], [`global_query`], [`stats_query`], [`polls_query`], [`rejected_query`],
//! [`StreamRequest::parse`]), before its handler runs. A route accepts the parameters it documents, each at most
//! once (`repo` and `event_type` of the stream excepted), and anything else is a 400 that names it.

use percent_encoding::percent_decode_str;
use warp::http::StatusCode;

use super::{ApiError, DEFAULT_LIMIT, MAX_LIMIT};
use crate::index::{check_github_name, parse_repo_ref, EventQuery, GlobalQuery, StatsQuery};
use crate::protocol::{GithubRepoRid, Rid, Timestamp};

/// Longest `top` list of `/stats`.
const MAX_TOP: usize = 100;

/// The one rule for query parameters: a route accepts the ones it documents, and any other is a 400 naming it.
/// This is the check for the routes that take none.
pub(crate) fn no_parameters(route: &str, params: &[(String, String)]) -> Result<(), ApiError> {
    match params.first() {
        None => Ok(()),
        Some((name, _)) => Err(ApiError::bad_request(format!(
            "unknown query parameter `{name}`: {route} takes none"
        ))),
    }
}

pub(crate) fn parse_limit(value: &str) -> Result<usize, ApiError> {
    value
        .parse()
        .ok()
        .filter(|n| (1..=MAX_LIMIT).contains(n))
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "limit must be a whole number from 1 to {MAX_LIMIT}, got `{value}`"
            ))
        })
}

pub(crate) fn decode_path(raw: &str) -> Result<String, ApiError> {
    percent_decode_str(raw)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| {
            ApiError::bad_request(format!("path `{raw}` is not valid percent-encoded UTF-8"))
        })
}

pub(crate) fn events_query(params: &[(String, String)]) -> Result<EventQuery, ApiError> {
    parse_params(params, &["limit", "offset", "event_type", "since", "until"])
}

/// Parses the query parameters named in `accepted` into an [`EventQuery`]; anything else is a 400 that says what
/// was wrong.
pub(crate) fn parse_params(
    params: &[(String, String)],
    accepted: &[&str],
) -> Result<EventQuery, ApiError> {
    let mut query = EventQuery {
        limit: DEFAULT_LIMIT,
        ..EventQuery::default()
    };
    for (name, value) in once_each(params, accepted)? {
        match name {
            "limit" => query.limit = parse_limit(value)?,
            "offset" => query.offset = parse_offset(value)?,
            "event_type" => {
                if value.is_empty() || value.chars().any(char::is_control) {
                    return Err(ApiError::bad_request(
                        "event_type must be a GitHub event name such as `push`",
                    ));
                }
                query.event_type = Some(value.to_owned());
            }
            "since" => query.since = Some(parse_time(name, value)?),
            "until" => query.until = Some(parse_time(name, value)?),
            _ => {}
        }
    }
    check_range(query.since, query.until)?;
    Ok(query)
}

/// `since` ≤ `until` when both are given.
pub(crate) fn check_range(
    since: Option<Timestamp>,
    until: Option<Timestamp>,
) -> Result<(), ApiError> {
    match (since, until) {
        (Some(since), Some(until)) if since > until => Err(ApiError::bad_request(format!(
            "since ({}) is after until ({})",
            since.to_rfc3339_utc(),
            until.to_rfc3339_utc()
        ))),
        _ => Ok(()),
    }
}

/// RFC 3339, or a date (midnight UTC).
pub(crate) fn parse_time(name: &str, value: &str) -> Result<Timestamp, ApiError> {
    Timestamp::parse(value)
        .or_else(|e| {
            chrono::NaiveDate::parse_from_str(value, "%Y-%m-%d")
                .ok()
                .and_then(|d| d.and_hms_opt(0, 0, 0))
                .map(|t| Timestamp::from(t.and_utc()))
                .ok_or(e)
        })
        .map_err(|_| {
            ApiError::bad_request(format!(
                "{name} must be an RFC 3339 time like 2026-11-24T12:00:00Z or a date like 2026-11-24, got \
                 `{value}` (write a `+` offset as %2B)"
            ))
        })
}

/// The parameters, each known and given once, as `(name, value)`.
pub(crate) fn once_each<'a>(
    params: &'a [(String, String)],
    accepted: &[&str],
) -> Result<Vec<(&'a str, &'a str)>, ApiError> {
    let mut seen: Vec<&str> = Vec::new();
    let mut out = Vec::with_capacity(params.len());
    for (name, value) in params {
        if !accepted.contains(&name.as_str()) {
            return Err(ApiError::bad_request(format!(
                "unknown query parameter `{name}`: accepted here are {}",
                accepted.join(", ")
            )));
        }
        if seen.contains(&name.as_str()) {
            return Err(ApiError::bad_request(format!(
                "`{name}` is given more than once"
            )));
        }
        seen.push(name);
        out.push((name.as_str(), value.as_str()));
    }
    Ok(out)
}

pub(crate) fn parse_offset(value: &str) -> Result<usize, ApiError> {
    value.parse().map_err(|_| {
        ApiError::bad_request(format!("offset must be a whole number ≥ 0, got `{value}`"))
    })
}

/// `GET /events?actor=&event_type=&repo=&since=&until=&limit=&offset=`.
pub(crate) fn global_query(params: &[(String, String)]) -> Result<GlobalQuery, ApiError> {
    let mut query = GlobalQuery {
        limit: DEFAULT_LIMIT,
        ..GlobalQuery::default()
    };
    let accepted = [
        "actor",
        "event_type",
        "repo",
        "since",
        "until",
        "limit",
        "offset",
    ];
    for (name, value) in once_each(params, &accepted)? {
        match name {
            "actor" => query.actor = Some(text_value(name, value)?),
            "event_type" => query.event_type = Some(text_value(name, value)?),
            "repo" => query.repo = Some(repo_filter(value)?),
            "since" => query.since = Some(parse_time(name, value)?),
            "until" => query.until = Some(parse_time(name, value)?),
            "limit" => query.limit = parse_limit(value)?,
            "offset" => query.offset = parse_offset(value)?,
            _ => {}
        }
    }
    check_range(query.since, query.until)?;
    Ok(query)
}

/// `GET /stats?since=&until=&repo=&top=`.
pub(crate) fn stats_query(params: &[(String, String)]) -> Result<StatsQuery, ApiError> {
    let mut query = StatsQuery {
        top: 10,
        ..StatsQuery::default()
    };
    for (name, value) in once_each(params, &["since", "until", "repo", "top"])? {
        match name {
            "since" => query.since = Some(parse_day(name, value)?),
            "until" => query.until = Some(parse_day(name, value)?),
            "repo" => query.repo = Some(repo_filter(value)?.full_name().to_owned()),
            _ => {
                query.top = value
                    .parse()
                    .ok()
                    .filter(|n| (1..=MAX_TOP).contains(n))
                    .ok_or_else(|| {
                        ApiError::bad_request(format!(
                            "top must be a whole number from 1 to {MAX_TOP}, got `{value}`"
                        ))
                    })?
            }
        }
    }
    if let (Some(since), Some(until)) = (query.since, query.until) {
        if since > until {
            return Err(ApiError::bad_request(format!(
                "since ({}) is after until ({})",
                crate::index::feeds::day_text(since),
                crate::index::feeds::day_text(until)
            )));
        }
    }
    Ok(query)
}

/// `GET /polls`'s parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PollsQuery {
    /// One neighbour's attempts only (its RID as written by [`Rid`]).
    pub(crate) neighbour: Option<String>,
    pub(crate) limit: usize,
}

/// `GET /polls?neighbour=&limit=`.
pub(crate) fn polls_query(params: &[(String, String)]) -> Result<PollsQuery, ApiError> {
    let mut query = PollsQuery {
        neighbour: None,
        limit: DEFAULT_LIMIT,
    };
    for (name, value) in once_each(params, &["neighbour", "limit"])? {
        match name {
            "neighbour" => {
                // Node RIDs have a `+` before the key hash, which form decoding turns into a space; RIDs never
                // hold spaces, so `?neighbour=orn:koi-net.node:sensor+ab12` works as typed, unencoded.
                let value = value.replace(' ', "+");
                let rid = Rid::parse(&value).map_err(|e| {
                    ApiError::bad_request(format!(
                        "neighbour must be a node RID such as `orn:koi-net.node:coordinator+…`: {e}"
                    ))
                })?;
                query.neighbour = Some(rid.to_string());
            }
            _ => query.limit = parse_limit(value)?,
        }
    }
    Ok(query)
}

/// `GET /rejected`'s parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RejectedQuery {
    pub(crate) limit: usize,
    pub(crate) offset: usize,
    /// Each dead letter's item as received, too.
    pub(crate) items: bool,
}

/// `GET /rejected?limit=&offset=&items=`.
pub(crate) fn rejected_query(params: &[(String, String)]) -> Result<RejectedQuery, ApiError> {
    let mut query = RejectedQuery {
        limit: DEFAULT_LIMIT,
        offset: 0,
        items: false,
    };
    for (name, value) in once_each(params, &["limit", "offset", "items"])? {
        match name {
            "limit" => query.limit = parse_limit(value)?,
            "offset" => query.offset = parse_offset(value)?,
            _ => {
                query.items = match value {
                    "true" | "1" => true,
                    "false" | "0" => false,
                    _ => {
                        return Err(ApiError::bad_request(format!(
                            "items must be true or false, got `{value}`"
                        )))
                    }
                }
            }
        }
    }
    Ok(query)
}

/// Which events a stream client wants (`GET /stream`, `GET /stream/ws`), and from where.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct StreamRequest {
    pub(crate) repos: Vec<String>,
    pub(crate) event_types: Vec<String>,
    pub(crate) actor: Option<String>,
    pub(crate) sample: Option<f64>,
    /// Resume after this sequence number (`after=`, or the `Last-Event-ID` header); live from now when unset.
    pub(crate) after: Option<u64>,
}

impl StreamRequest {
    /// Reads the query parameters (`repo` and `event_type` may repeat) and the `Last-Event-ID` header.
    pub(crate) fn parse(
        params: &[(String, String)],
        last_event_id: Option<&str>,
    ) -> Result<StreamRequest, ApiError> {
        let mut request = StreamRequest::default();
        let mut seen: Vec<&str> = Vec::new();
        for (name, value) in params {
            let repeatable = matches!(name.as_str(), "repo" | "event_type");
            if !repeatable && seen.contains(&name.as_str()) {
                return Err(ApiError::bad_request(format!(
                    "`{name}` is given more than once"
                )));
            }
            seen.push(name);
            match name.as_str() {
                "repo" => request
                    .repos
                    .push(repo_filter(value)?.rid().as_str().to_owned()),
                "event_type" => request.event_types.push(text_value(name, value)?),
                "actor" => request.actor = Some(text_value(name, value)?),
                "sample" => {
                    request.sample = Some(
                        value
                            .parse::<f64>()
                            .ok()
                            .filter(|r| *r > 0.0 && *r <= 1.0)
                            .ok_or_else(|| {
                                ApiError::bad_request(format!(
                                    "sample must be a fraction with 0 < sample ≤ 1, got `{value}`"
                                ))
                            })?,
                    )
                }
                "after" => request.after = Some(parse_seq("after", value)?),
                _ => {
                    return Err(ApiError::bad_request(format!(
                        "unknown query parameter `{name}`: accepted here are repo, event_type, actor, sample, after"
                    )))
                }
            }
        }
        if let Some(id) = last_event_id.filter(|id| !id.trim().is_empty()) {
            request.after = Some(parse_seq("Last-Event-ID", id.trim())?);
        }
        Ok(request)
    }
}

/// A repository named in a filter: `owner/name` or its RID, a name GitHub allows.
fn repo_filter(value: &str) -> Result<GithubRepoRid, ApiError> {
    let repo = parse_repo_ref(value)?;
    check_github_name(value, repo.full_name())?;
    Ok(repo)
}

fn text_value(name: &str, value: &str) -> Result<String, ApiError> {
    if value.is_empty() || value.chars().any(char::is_control) {
        return Err(ApiError::bad_request(format!(
            "{name} must be a non-empty name without control characters"
        )));
    }
    Ok(value.to_owned())
}

fn parse_seq(name: &str, value: &str) -> Result<u64, ApiError> {
    value.parse().map_err(|_| {
        ApiError::bad_request(format!(
            "{name} must be a stream sequence number (a whole number ≥ 0), got `{value}`"
        ))
    })
}

fn parse_day(name: &str, value: &str) -> Result<u32, ApiError> {
    crate::index::feeds::parse_day(value).ok_or_else(|| {
        ApiError(
            StatusCode::BAD_REQUEST,
            format!("{name} must be a day like 2026-11-20 (UTC, inclusive), got `{value}`"),
        )
    })
}
