//! The one parser of query parameters and paths: every route accepts the parameters it documents, each at most
//! once (`repo` and `event_type` of the stream excepted), and anything else is a 400 that names it.

use percent_encoding::percent_decode_str;

use super::{ApiError, DEFAULT_LIMIT, MAX_LIMIT};
use crate::index::EventQuery;
use crate::protocol::Timestamp;

/// The one rule for query parameters: a route accepts the ones it documents, and any other is a 400 naming it.
/// This is the check for the routes that take none.
pub(super) fn no_parameters(route: &str, params: &[(String, String)]) -> Result<(), ApiError> {
    match params.first() {
        None => Ok(()),
        Some((name, _)) => Err(ApiError::bad_request(format!(
            "unknown query parameter `{name}`: {route} takes none"
        ))),
    }
}

pub(super) fn parse_limit(value: &str) -> Result<usize, ApiError> {
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

pub(super) fn decode_path(raw: &str) -> Result<String, ApiError> {
    percent_decode_str(raw)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| {
            ApiError::bad_request(format!("path `{raw}` is not valid percent-encoded UTF-8"))
        })
}

pub(super) fn events_query(params: &[(String, String)]) -> Result<EventQuery, ApiError> {
    parse_params(params, &["limit", "offset", "event_type", "since", "until"])
}

/// Parses the query parameters named in `accepted` into an [`EventQuery`]; anything else is a 400 that says what
/// was wrong.
pub(super) fn parse_params(
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
pub(super) fn check_range(
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
pub(super) fn parse_time(name: &str, value: &str) -> Result<Timestamp, ApiError> {
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
pub(super) fn once_each<'a>(
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

pub(super) fn parse_offset(value: &str) -> Result<usize, ApiError> {
    value.parse().map_err(|_| {
        ApiError::bad_request(format!("offset must be a whole number ≥ 0, got `{value}`"))
    })
}
