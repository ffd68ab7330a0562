//! Rate limiting of the analytics routes (SPEC 4): 429 with `Retry-After`.
//! The budget is per client: the caller's role and its IP address.
//!
//! In memory by default (GCRA, per client); with
//! `ENABLE_REDIS_RATE_LIMITING=true` the counters live in Redis, so every
//! instance shares one budget per client. A Redis fault lets the request
//! through: limiting is protection, not a reason to fail requests.

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
use redis::aio::ConnectionManager;

use crate::auth::Caller;
use crate::error::ApiError;

pub enum RateLimiter {
    Off,
    Memory(Arc<DefaultKeyedRateLimiter<Client>>),
    Redis {
        conn: ConnectionManager,
        prefix: String,
        per_minute: u32,
        script: Arc<redis::Script>,
    },
}

/// One fixed one-minute window per client: INCR, and set the window's
/// expiry on the first request. Returns the count and the window's ms left.
const WINDOW_SCRIPT: &str = r"
local count = redis.call('INCR', KEYS[1])
if count == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return {count, redis.call('PTTL', KEYS[1])}
";

impl RateLimiter {
    pub fn memory(per_minute: u32) -> Self {
        match NonZeroU32::new(per_minute) {
            None => RateLimiter::Off,
            Some(n) => {
                RateLimiter::Memory(Arc::new(governor::RateLimiter::keyed(Quota::per_minute(n))))
            }
        }
    }

    pub fn redis(url: &str, prefix: &str, per_minute: u32) -> anyhow::Result<Self> {
        if per_minute == 0 {
            return Ok(RateLimiter::Off);
        }
        let client = redis::Client::open(url)?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_millis(500)))
            .set_response_timeout(Some(Duration::from_millis(250)))
            .set_number_of_retries(1);
        let conn = ConnectionManager::new_lazy_with_config(client, config)?;
        Ok(RateLimiter::Redis {
            conn,
            prefix: format!("{prefix}ratelimit:"),
            per_minute,
            script: Arc::new(redis::Script::new(WINDOW_SCRIPT)),
        })
    }

    /// 429 when the client is over its budget.
    pub async fn admit(&self, caller: Caller, ClientIp(ip): ClientIp) -> Result<(), ApiError> {
        self.check((caller, ip))
            .await
            .map_err(ApiError::RateLimited)
    }

    /// `Err(seconds to wait)` when the client is over its budget.
    async fn check(&self, client: Client) -> Result<(), u64> {
        match self {
            RateLimiter::Off => Ok(()),
            RateLimiter::Memory(limiter) => limiter.check_key(&client).map_err(|not_until| {
                let wait = not_until.wait_time_from(DefaultClock::default().now());
                wait.as_secs() + 1
            }),
            RateLimiter::Redis {
                conn,
                prefix,
                per_minute,
                script,
            } => {
                let mut conn = conn.clone();
                let (caller, ip) = client;
                let ip = ip.map(|ip| ip.to_string()).unwrap_or_default();
                let key = format!("{prefix}{}:{ip}", caller.as_str());
                let mut invocation = script.key(key);
                invocation.arg(60_000);
                let call = invocation.invoke_async::<(u64, i64)>(&mut conn);
                match tokio::time::timeout(Duration::from_millis(250), call).await {
                    Ok(Ok((count, ms_left))) if count > u64::from(*per_minute) => {
                        Err((ms_left.max(0) as u64).div_ceil(1000).max(1))
                    }
                    Ok(Ok(_)) => Ok(()),
                    _ => Ok(()),
                }
            }
        }
    }
}

/// Who a budget belongs to.
type Client = (Caller, Option<IpAddr>);

/// The peer's IP address (none when the server runs without connection
/// info, as in some tests).
pub struct ClientIp(Option<IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(ClientIp(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|ConnectInfo(addr)| addr.ip()),
        ))
    }
}
