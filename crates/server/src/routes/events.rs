//! `POST /api/events/{messages,typing,presence,role-changes,member-joins}`

use axum::Json;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use bytes::Bytes;
use serde_json::{Value, json};
use spywatcher_analytics::{EventKind, parse_events};

use super::extract;
use crate::auth::{Authorized, Ingester};
use crate::error::ApiError;
use crate::state::AppState;

pub async fn ingest(
    State(state): State<AppState>,
    _: Authorized<Ingester>,
    kind: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let kind: EventKind =
        extract::path(kind)?
            .parse()
            .map_err(|e: spywatcher_analytics::domain::UnknownKind| {
                ApiError::NotFound(e.to_string())
            })?;
    let body = extract::body(body, state.body_limit)?;
    let events = parse_events(kind, extract::json(&body)?, state.event_max_future_skew)
        .map_err(ApiError::Validation)?;
    let stored = state.service.ingest(kind, &events).await?;
    Ok((StatusCode::CREATED, Json(json!({ "stored": stored }))))
}
