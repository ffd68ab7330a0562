//! What every handler shares.

use std::sync::Arc;

use std::time::Duration;

use metrics_exporter_prometheus::PrometheusHandle;
use spywatcher_gateway::ingester::GatewayHealth;

use crate::auth::Tokens;
use crate::auth::failures::AuthFailures;
use crate::rate_limit::RateLimiter;
use crate::service::Spywatcher;
use crate::service::realtime::Realtime;
use crate::service::warm_on_start::WarmProgress;

/// Cloned for every request (by each middleware and handler): one shared
/// pointer, so a clone is one atomic increment, not one per field.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl AppState {
    pub fn new(shared: Shared) -> Self {
        AppState(Arc::new(shared))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

pub struct Shared {
    pub service: Spywatcher,
    /// Warming on start's progress, when `CACHE_WARM_ON_START` is set.
    pub warm_on_start: Option<Arc<WarmProgress>>,
    /// The gateway ingester's state, when it runs in this process.
    pub gateway: Option<GatewayHealth>,
    /// The guild feeds of the WebSocket connections.
    pub realtime: Realtime,
    pub tokens: Arc<Tokens>,
    pub auth_failures: AuthFailures,
    pub rate_limiter: Arc<RateLimiter>,
    pub metrics: PrometheusHandle,
    pub body_limit: usize,
    /// How far in the future an event's `createdAt` may lie.
    pub event_max_future_skew: std::time::Duration,
    /// `HTTP_BODY_TIMEOUT_MS`, for the 408's message.
    pub body_timeout: Duration,
}
