//! `/repositories`: the repositories indexed, one repository and its events, and repositories added and removed by
//! hand.

use serde_json::json;
use warp::http::StatusCode;

use super::params::{decode_path, events_query, no_parameters};
use super::{blocking, json_with_status, ok, Answer, ApiContext, ApiError};
use crate::index::{parse_repo_ref, RepoRemoval};

pub(super) async fn add(body: Vec<u8>, ctx: ApiContext) -> Answer {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Body {
        repo: String,
    }
    // `Content-Type: application/json` was checked before routing (`guard`), as for every write.
    let shape = || "the body must be a JSON object like {\"repo\": \"owner/name\"}".to_owned();
    // An object, not an array: serde would read `["owner/name"]` as the struct's fields in order.
    let value: serde_json::Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("{}: {e}", shape())))?;
    if !value.is_object() {
        return Err(ApiError::bad_request(shape()));
    }
    let body: Body = serde_json::from_value(value)
        .map_err(|e| ApiError::bad_request(format!("{}: {e}", shape())))?;
    let (repo, created) = blocking(&ctx.index, move |index| {
        Ok(index.add_repository(&body.repo)?)
    })
    .await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(json_with_status(status, &repo))
}

/// `DELETE /repositories/{repo}`: removes a repository added by hand that has no events yet.
pub(super) async fn remove(tail: String, ctx: ApiContext) -> Answer {
    let name = decode_path(tail.trim_end_matches('/'))?;
    let shown = name.clone();
    let removal = blocking(&ctx.index, move |index| Ok(index.remove_repository(&name)?)).await?;
    match removal.refusal(&shown) {
        None => ok(&json!({"removed": shown})),
        Some(why) if removal == RepoRemoval::NotFound => Err(ApiError::not_found(why)),
        Some(why) => Err(ApiError(StatusCode::CONFLICT, why)),
    }
}

/// `/repositories/{repo}` or `/repositories/{repo}/events`.
pub(super) async fn path(tail: String, params: Vec<(String, String)>, ctx: ApiContext) -> Answer {
    let tail = tail.trim_end_matches('/');
    let listing = tail
        .strip_suffix("/events")
        .map(decode_path)
        .transpose()?
        .and_then(|name| parse_repo_ref(&name).ok());
    match listing {
        Some(repo) => {
            let query = events_query(&params)?;
            let name = repo.full_name().to_owned();
            let page = blocking(&ctx.index, move |index| {
                Ok(index.events_page(&repo, &query)?)
            })
            .await?;
            match page {
                Some(rows) => ok(&rows),
                None => Err(ApiError::not_found(format!(
                    "repository {name} is not indexed"
                ))),
            }
        }
        None => {
            no_parameters("/repositories/{repo}", &params).map_err(
                |ApiError(status, message)| {
                    ApiError(status, format!("{message} (did you mean …/events?)"))
                },
            )?;
            let repo = parse_repo_ref(&decode_path(tail)?)?;
            let name = repo.full_name().to_owned();
            match blocking(&ctx.index, move |index| Ok(index.repository(&repo)?)).await? {
                Some(row) => ok(&row),
                None => Err(ApiError::not_found(format!(
                    "repository {name} is not indexed"
                ))),
            }
        }
    }
}
