//! `GET /health/live`, `GET /health/ready`

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::Utc;
use serde_json::{Value, json};

use crate::routes::admin::monitoring::cache::cache_status;
use crate::state::AppState;

pub async fn live() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// Ready while the database answers; a degraded cache still serves (from
/// the database), so it is reported but does not make the instance unready.
pub async fn ready(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let database_up = state.service.store.ping().await.is_ok();
    let cache = cache_status(&state);
    let (code, status) = match (database_up, cache) {
        (false, _) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
        (true, "degraded") => (StatusCode::OK, "degraded"),
        (true, _) => (StatusCode::OK, "ready"),
    };
    let body = json!({
        "status": status,
        "database": {
            "status": if database_up { "up" } else { "down" },
            "backend": state.service.store.backend_name(),
        },
        "cache": { "status": cache, "backend": state.service.cache.backend_name() },
        "timestamp": Utc::now().to_rfc3339(),
    });
    (code, Json(body))
}
