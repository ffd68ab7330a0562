//! `GET|POST /api/analytics/{type}?guildId=&since=`

use axum::extract::FromRequestParts;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use spywatcher_analytics::AnalyticsKind;

use super::extract::{self, Params};
use crate::error::ApiError;
use crate::state::AppState;

pub async fn analytics(
    State(state): State<AppState>,
    kind: Result<Path<String>, PathRejection>,
    query: Result<Query<Params>, QueryRejection>,
    IfNoneMatch(if_none_match): IfNoneMatch,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let kind: AnalyticsKind =
        extract::path(kind)?
            .parse()
            .map_err(|e: spywatcher_analytics::domain::UnknownKind| {
                ApiError::NotFound(e.to_string())
            })?;
    let mut params = extract::query(query)?;
    // The POST alias may carry its parameters in a JSON body instead.
    let body = extract::body(body, state.body_limit)?;
    if !body.is_empty() {
        merge_body_params(&mut params, &extract::json(&body)?)?;
    }
    let guild = extract::guild_id(&params)?;
    let since = extract::since(&params)?;

    let (json, origin) = state.service.analytics(kind, &guild, since).await?;
    let etag = format!("\"{:016x}\"", xxhash_rust::xxh3::xxh3_64(&json));
    let x_cache = HeaderValue::from_static(if origin.is_hit() { "hit" } else { "miss" });
    let etag_value = HeaderValue::from_str(&etag).map_err(|e| ApiError::Internal(e.to_string()))?;
    if matches_etag(if_none_match.as_ref(), &etag) {
        return Ok((
            StatusCode::NOT_MODIFIED,
            [
                (header::ETAG, etag_value),
                (header::HeaderName::from_static("x-cache"), x_cache),
            ],
        )
            .into_response());
    }
    Ok((
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ),
            (header::ETAG, etag_value),
            (header::HeaderName::from_static("x-cache"), x_cache),
        ],
        json,
    )
        .into_response())
}

fn merge_body_params(params: &mut Params, body: &serde_json::Value) -> Result<(), ApiError> {
    let serde_json::Value::Object(fields) = body else {
        return Err(ApiError::BadRequest(
            "the body must be a JSON object".into(),
        ));
    };
    for name in ["guildId", "since"] {
        match fields.get(name) {
            Some(serde_json::Value::String(s)) => {
                params.insert(name.to_string(), s.clone());
            }
            Some(serde_json::Value::Number(n)) => {
                params.insert(name.to_string(), n.to_string());
            }
            Some(serde_json::Value::Null) | None => {}
            Some(_) => {
                return Err(ApiError::BadRequest(format!(
                    "{name} must be a string or a number"
                )));
            }
        }
    }
    Ok(())
}

/// The `If-None-Match` header alone: the handler needs no other header, and
/// cloning the whole map on the hottest route costs allocations.
pub struct IfNoneMatch(Option<HeaderValue>);

impl<S: Send + Sync> FromRequestParts<S> for IfNoneMatch {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(IfNoneMatch(
            parts.headers.get(header::IF_NONE_MATCH).cloned(),
        ))
    }
}

/// Does `If-None-Match` name the current ETag (or `*`)?
fn matches_etag(if_none_match: Option<&HeaderValue>, etag: &str) -> bool {
    if_none_match
        .and_then(|v| v.to_str().ok())
        .into_iter()
        .flat_map(|v| v.split(','))
        .map(|tag| tag.trim().trim_start_matches("W/"))
        .any(|tag| tag == "*" || tag == etag)
}
