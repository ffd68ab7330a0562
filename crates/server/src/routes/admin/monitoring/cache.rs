//! `/api/admin/monitoring/cache/{stats,clear,invalidate/{tag},warm}`

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::Uri;
use chrono::Utc;
use serde_json::{Value, json};

use crate::auth::{Administrator, Authorized};
use crate::error::ApiError;
use crate::routes::extract;
use crate::state::AppState;

/// `healthy` (Redis in use), `degraded` (Redis skipped), or `embedded`.
pub fn cache_status(state: &AppState) -> &'static str {
    let cache = &state.service.cache;
    if cache.backend_name() == "embedded" {
        "embedded"
    } else if cache.is_degraded() {
        "degraded"
    } else {
        "healthy"
    }
}

pub async fn stats(State(state): State<AppState>, _: Authorized<Administrator>) -> Json<Value> {
    let stats = state.service.cache.stats().await;
    // Invalidations in the database journal that Redis has not taken yet
    // (null if the database did not answer).
    let backlog = state
        .service
        .store
        .pending_invalidations()
        .await
        .ok()
        .map(|pending| pending.len());
    Json(json!({
        "stats": stats,
        "insights": crate::service::insights::insights(&state.service.cache),
        "status": cache_status(&state),
        "journalBacklog": backlog,
        "timestamp": Utc::now().to_rfc3339(),
    }))
}

pub async fn clear(State(state): State<AppState>, _: Authorized<Administrator>) -> Json<Value> {
    let deleted = state.service.cache.flush_all().await;
    Json(json!({
        "message": format!("Cleared {deleted} cache entries"),
        "deleted": deleted,
        "timestamp": Utc::now().to_rfc3339(),
    }))
}

pub async fn invalidate(
    State(state): State<AppState>,
    _: Authorized<Administrator>,
    tag: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let tag = extract::path(tag)?;
    validate_tag(&tag)?;
    let invalidated = state.service.cache.invalidate_by_tag(&tag).await;
    Ok(Json(json!({
        "tag": tag,
        "invalidated": invalidated,
        "timestamp": Utc::now().to_rfc3339(),
    })))
}

pub async fn warm(
    State(state): State<AppState>,
    _: Authorized<Administrator>,
    uri: Uri,
) -> Result<Json<Value>, ApiError> {
    let guild = extract::guild_id(extract::param(uri.query(), "guildId").as_deref())?;
    let warmed = state.service.warm(&guild).await?;
    Ok(Json(json!({
        "guildId": guild.as_str(),
        "warmed": warmed,
        "timestamp": Utc::now().to_rfc3339(),
    })))
}

/// A tag is `[A-Za-z0-9:_.-]{1,200}`: no glob characters, which the
/// reference design passed on to Redis pattern commands.
fn validate_tag(tag: &str) -> Result<(), ApiError> {
    if tag.contains(['*', '?', '[', ']']) {
        return Err(ApiError::BadRequest(format!(
            "tag {tag:?} contains glob characters (* ? [ ]), which are not allowed"
        )));
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, ':' | '_' | '.' | '-');
    if tag.is_empty() || tag.len() > 200 || !tag.chars().all(allowed) {
        return Err(ApiError::BadRequest(format!(
            "tag {tag:?} must be 1-200 characters of A-Z a-z 0-9 : _ . -"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::validate_tag;

    #[test]
    fn tags_are_checked() {
        assert!(validate_tag("guild:123").is_ok());
        assert!(validate_tag("analytics:ghosts:1.2_x-y").is_ok());
        for bad in [
            "",
            "guild:*",
            "a?b",
            "[x]",
            "with space",
            "é",
            &"x".repeat(201),
        ] {
            assert!(validate_tag(bad).is_err(), "{bad:?}");
        }
    }
}
