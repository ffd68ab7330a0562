//! `GET /metrics`: Prometheus text format.

use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::IntoResponse;

use crate::service::insights::AnalyticsInsights;
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
    export_insights(&crate::service::insights::insights(&state.service.cache));
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

/// The cache insights per analytics type, as gauges (their figures are
/// already aggregates: quantiles, ratios, counts since the start).
fn export_insights(insights: &AnalyticsInsights) {
    let seconds = |ms: u64| ms as f64 / 1000.0;
    for (kind, t) in &insights.by_type {
        let kind = kind.clone();
        for (name, value) in [
            ("spywatcher_cache_insight_reads", t.reads as f64),
            ("spywatcher_cache_insight_hit_rate_percent", t.hit_rate),
            ("spywatcher_cache_insight_stale_serves", t.stale as f64),
            (
                "spywatcher_cache_entry_lifetime_p50_seconds",
                seconds(t.lifetime.p50_ms),
            ),
            (
                "spywatcher_cache_entry_lifetime_p95_seconds",
                seconds(t.lifetime.p95_ms),
            ),
            (
                "spywatcher_cache_entries_expired_unread",
                t.ended.expired_unread as f64,
            ),
            (
                "spywatcher_cache_miss_cost_p50_seconds",
                seconds(t.miss_cost.p50_ms),
            ),
            (
                "spywatcher_cache_miss_cost_p95_seconds",
                seconds(t.miss_cost.p95_ms),
            ),
            (
                "spywatcher_cache_entry_bytes_mean",
                t.bytes_per_entry as f64,
            ),
        ] {
            metrics::gauge!(name, "type" => kind.clone()).set(value);
        }
        for (cause, n) in [
            ("invalidated", t.ended.invalidated),
            ("expired", t.ended.expired),
            ("replaced", t.ended.replaced),
        ] {
            metrics::gauge!("spywatcher_cache_entries_ended", "type" => kind.clone(), "cause" => cause)
                .set(n as f64);
        }
        let suggested = insights
            .suggestions
            .iter()
            .filter(|s| s.kind == kind)
            .count();
        metrics::gauge!("spywatcher_cache_suggestions", "type" => kind).set(suggested as f64);
    }
}
