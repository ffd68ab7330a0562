//! The HTTP API (SPEC 4). The module tree mirrors the URL tree: the handler
//! of `/api/admin/monitoring/cache/stats` is `admin::monitoring::cache::stats`.

pub mod admin;
pub mod analytics;
pub mod dashboard;
pub mod events;
pub mod extract;
pub mod framing;
pub mod guilds;
pub mod health;
pub mod metrics;
pub mod openapi;
pub mod ws;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::middleware::from_fn;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::trace::TraceLayer;

use spywatcher_analytics::AnalyticsKind;

use crate::error::ApiError;
use crate::state::AppState;

/// Every route. Each handler takes an [`Authorized`](crate::auth::Authorized)
/// extractor first when it needs a token (see `auth`).
pub fn router(state: AppState) -> Router {
    // One static route per type, so the hottest route captures no path
    // parameter; `{kind}` takes any other spelling (404 or percent-encoded).
    let methods = get(analytics::get).post(analytics::post);
    let mut analytics = Router::new().route("/api/analytics/{kind}", methods.clone());
    for &kind in AnalyticsKind::ALL {
        let path = format!("/api/analytics/{}", kind.as_str());
        analytics = analytics.route(&path, methods.clone());
    }

    let events = Router::new().route("/api/events/{kind}", post(events::ingest));

    // The token may come as `?token=` (browsers set no headers on a
    // WebSocket): moved into the header before the handler checks it.
    let realtime = Router::new()
        .route("/ws", get(ws::connect))
        .route_layer(from_fn(ws::token_from_query));

    use admin::monitoring::cache;
    let admin = Router::new()
        .route("/api/admin/monitoring/cache/stats", get(cache::stats))
        .route("/api/admin/monitoring/cache/clear", delete(cache::clear))
        .route(
            "/api/admin/monitoring/cache/invalidate/{tag}",
            delete(cache::invalidate),
        )
        .route("/api/admin/monitoring/cache/warm", post(cache::warm));

    let guilds = Router::new().route("/api/guilds", get(guilds::list));

    let public = Router::new()
        .route("/health/live", get(health::live))
        .route("/health/ready", get(health::ready))
        .route("/metrics", get(metrics::metrics))
        .route("/api/openapi.json", get(openapi::document));

    Router::new()
        .merge(analytics)
        .merge(events)
        .merge(admin)
        .merge(realtime)
        .merge(public)
        .merge(guilds)
        .merge(dashboard::routes())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(state.body_limit))
        .layer(TraceLayer::new_for_http().make_span_with(request_span))
        .layer(CatchPanicLayer::custom(panic_response))
        .with_state(state)
}

/// The probes alone, for `spywatcher bot` (no API: nothing to
/// authenticate): `/health/live`, `/health/ready`, `/metrics`.
pub fn probes(state: AppState) -> Router {
    Router::new()
        .route("/health/live", get(health::live))
        .route("/health/ready", get(health::ready))
        .route("/metrics", get(metrics::metrics))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(TraceLayer::new_for_http().make_span_with(request_span))
        .layer(CatchPanicLayer::custom(panic_response))
        .with_state(state)
}

/// The span of a request: method and path, not the query string, which may
/// carry a WebSocket client's `?token=`.
fn request_span(request: &axum::http::Request<axum::body::Body>) -> tracing::Span {
    tracing::debug_span!("request", method = %request.method(), path = %request.uri().path())
}

async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::NotFound(format!("no route for {}", uri.path()))
}

async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError::MethodNotAllowed(format!("{method} is not allowed on {}", uri.path()))
}

fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    ApiError::Internal("a handler panicked".into()).into_response()
}
