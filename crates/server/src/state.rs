//! What every handler shares.

use std::sync::Arc;

use metrics_exporter_prometheus::PrometheusHandle;

use crate::auth::Tokens;
use crate::rate_limit::RateLimiter;
use crate::service::Spywatcher;

#[derive(Clone)]
pub struct AppState {
    pub service: Spywatcher,
    pub tokens: Arc<Tokens>,
    pub rate_limiter: Arc<RateLimiter>,
    pub metrics: PrometheusHandle,
    pub body_limit: usize,
}
