//! What every handler shares.

use std::sync::Arc;

use metrics_exporter_prometheus::PrometheusHandle;

use crate::auth::Tokens;
use crate::rate_limit::RateLimiter;
use crate::service::Spywatcher;
use crate::service::realtime::Realtime;

#[derive(Clone)]
pub struct AppState {
    pub service: Spywatcher,
    /// The guild feeds of the WebSocket connections.
    pub realtime: Realtime,
    pub tokens: Arc<Tokens>,
    pub rate_limiter: Arc<RateLimiter>,
    pub metrics: PrometheusHandle,
    pub body_limit: usize,
}
