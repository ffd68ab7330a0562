//! Request parts parsed with JSON errors: axum's own extractor rejections
//! answer in plain text, which SPEC 4 rules out.

use std::collections::HashMap;

use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query};
use axum::http::StatusCode;
use bytes::Bytes;
use spywatcher_analytics::{GuildId, Since};

use crate::error::ApiError;

pub type Params = HashMap<String, String>;

pub fn query(query: Result<Query<Params>, QueryRejection>) -> Result<Params, ApiError> {
    query
        .map(|Query(params)| params)
        .map_err(|e| ApiError::BadRequest(format!("invalid query string: {}", e.body_text())))
}

pub fn path(path: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    path.map(|Path(segment)| segment)
        .map_err(|e| ApiError::BadRequest(format!("invalid path: {}", e.body_text())))
}

pub fn body(body: Result<Bytes, BytesRejection>, limit: usize) -> Result<Bytes, ApiError> {
    body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge(limit)
        } else {
            ApiError::BadRequest(format!("unreadable body: {}", e.body_text()))
        }
    })
}

pub fn json(body: &[u8]) -> Result<serde_json::Value, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::BadRequest(format!("malformed JSON: {e}")))
}

/// The required `guildId` parameter.
pub fn guild_id(params: &Params) -> Result<GuildId, ApiError> {
    let raw = params
        .get("guildId")
        .ok_or_else(|| ApiError::BadRequest("guildId is required".into()))?;
    GuildId::parse(raw.as_str()).map_err(|e| ApiError::BadRequest(format!("guildId {raw:?}: {e}")))
}

/// The optional `since` parameter.
pub fn since(params: &Params) -> Result<Option<Since>, ApiError> {
    params
        .get("since")
        .filter(|s| !s.is_empty())
        .map(|raw| {
            Since::parse(raw).map_err(|e| ApiError::BadRequest(format!("since {raw:?}: {e}")))
        })
        .transpose()
}
