//! `GET /metrics`: Prometheus text format.

use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::IntoResponse;

use crate::state::AppState;

pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let stats = state.service.cache.stats().await;
    for (name, value) in [
        ("spywatcher_cache_hits", stats.hits),
        ("spywatcher_cache_misses", stats.misses),
        ("spywatcher_cache_errors", stats.errors),
        ("spywatcher_cache_skipped", stats.skipped),
        ("spywatcher_cache_loader_runs", stats.loader_runs),
        ("spywatcher_cache_keys", stats.key_count),
        ("spywatcher_cache_evicted_keys", stats.evicted_keys),
    ] {
        metrics::gauge!(name).set(value as f64);
    }
    metrics::gauge!("spywatcher_cache_degraded").set(if state.service.cache.is_degraded() {
        1.0
    } else {
        0.0
    });
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4"),
        )],
        state.metrics.render(),
    )
}
