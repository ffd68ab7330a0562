//! `GET /health/live`, `GET /health/ready`

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::Utc;
use serde_json::{Value, json};
use spywatcher_gateway::ingester::GatewayStatus;

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
    let mut cache_body = json!({ "status": cache, "backend": state.service.cache.backend_name() });
    if cache_body["backend"] == "redis-cluster" {
        // Each master as the cache sees it: a master that does not answer
        // makes the cache skip Redis for its shard's work, not the instance
        // unready.
        let masters = state.service.cache.masters().await;
        cache_body["masters"] = masters
            .iter()
            .map(|m| {
                json!({
                    "address": m.address,
                    "slots": m.slots,
                    "replicas": m.replicas,
                    "status": if m.up { "up" } else { "down" },
                })
            })
            .collect();
    }
    let mut body = json!({
        "status": status,
        "database": {
            "status": if database_up { "up" } else { "down" },
            "backend": state.service.store.backend_name(),
        },
        "cache": cache_body,
        "timestamp": Utc::now().to_rfc3339(),
    });
    // Reported, not a reason to be unready: the API serves what is stored
    // whatever the gateway's state.
    if let Some(gateway) = &state.gateway {
        body["gateway"] = gateway_body(&gateway.status());
    }
    // Reported, not a reason to be unready: requests are served meanwhile.
    if let Some(warming) = &state.warm_on_start {
        let progress = warming.snapshot();
        body["warmOnStart"] = json!({
            "status": progress.status.as_str(),
            "guildsAsked": warming.wanted,
            "guilds": progress.guilds,
            "warmed": progress.warmed,
            "failed": progress.failed,
        });
    }
    (code, Json(body))
}

fn gateway_body(status: &GatewayStatus) -> Value {
    let (id, count) = status.shard;
    json!({
        "status": status.state.as_str(),
        "shard": format!("{id}/{count}"),
        "lastError": status.last_error,
        "buffered": status.buffered,
        "bufferCapacity": status.capacity,
        "eventsRead": status.read,
        "eventsStored": status.stored,
        "reconnects": status.reconnects,
    })
}
