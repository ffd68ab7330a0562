//! Rate limiting of the analytics routes (SPEC 4): 429 with `Retry-After`.
//! The budget is per client: the caller's role and its IP address.
//!
//! A request is admitted for one unit; when its answer was a cache miss
//! (a query), the client is charged `RATE_LIMIT_MISS_COST − 1` more, so a
//! client asking for ever new `since` values runs out of budget ten times
//! sooner than one reading cached answers. The charge may take the budget
//! below what is left (the query has already run): the client then waits.
//!
//! In memory by default (GCRA, per client); with
//! `ENABLE_REDIS_RATE_LIMITING=true` the counters live in Redis, so every
//! instance shares one budget per client. Redis is behind a breaker of its
//! own: after one failed or slow call, requests are limited in process
//! (each instance's own budget) and do not wait on Redis until a background
//! probe hears it answer again. Limiting is protection, not a reason to
//! fail or slow requests. (The cache's breaker is not used: it closes only
//! once the cache's invalidation journal is applied, which is nothing to
//! the limiter.)
//!
//! On a Redis Cluster the same: a client's window is one key, so its
//! script runs on that key's master ([`link`]); the breaker opens when any
//! call fails and closes when every master answers.

mod link;

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
use tracing::{info, warn};

use self::link::Link;

use crate::auth::Caller;
use crate::error::{ApiError, retry_after_secs};

pub struct RateLimiter {
    limiter: Limiter,
    /// Extra units a miss costs on top of the unit it was admitted for.
    miss_extra: u32,
}

enum Limiter {
    Off,
    Memory(Memory),
    Redis(Arc<RedisWindow>),
}

/// How the Redis limiter reaches Redis.
pub struct RedisLimits {
    /// The longest a request waits for Redis before it is limited in
    /// process instead.
    pub timeout: Duration,
    /// Time between two probes while Redis is away.
    pub probe_interval: Duration,
}

impl RateLimiter {
    /// `per_minute` requests per client (0 turns limiting off); a miss costs
    /// `miss_cost` units.
    pub fn memory(per_minute: u32, miss_cost: u32) -> Self {
        let limiter = match NonZeroU32::new(per_minute) {
            None => Limiter::Off,
            Some(n) => Limiter::Memory(Memory::new(n)),
        };
        RateLimiter::with(limiter, miss_cost)
    }

    /// Counters on a standalone Redis at `url`, under `prefix`.
    pub fn redis(
        url: &str,
        prefix: &str,
        per_minute: u32,
        miss_cost: u32,
        limits: RedisLimits,
    ) -> anyhow::Result<Self> {
        let link = Link::standalone(url, limits.timeout)?;
        Ok(RateLimiter::shared(
            link, prefix, per_minute, miss_cost, limits,
        ))
    }

    /// Counters on a Redis Cluster reached through `nodes` (URLs), under
    /// `prefix`. Waits for the cluster connection a bounded time; a cluster
    /// that does not answer by then leaves the limiter in process (and
    /// probing) until it does, so the start never hangs on it.
    pub async fn redis_cluster(
        nodes: &[String],
        prefix: &str,
        per_minute: u32,
        miss_cost: u32,
        limits: RedisLimits,
    ) -> anyhow::Result<Self> {
        let link = Link::cluster(nodes, limits.timeout)?;
        let limiter = RateLimiter::shared(link, prefix, per_minute, miss_cost, limits);
        if let Limiter::Redis(window) = &limiter.limiter
            && let Err(e) = window.link.connect().await
        {
            window.went_away(&e.to_string());
        }
        Ok(limiter)
    }

    fn shared(
        link: Link,
        prefix: &str,
        per_minute: u32,
        miss_cost: u32,
        limits: RedisLimits,
    ) -> Self {
        let Some(per_minute) = NonZeroU32::new(per_minute) else {
            return RateLimiter::with(Limiter::Off, miss_cost);
        };
        let window = RedisWindow {
            link,
            prefix: format!("{prefix}ratelimit:"),
            per_minute,
            script: redis::Script::new(WINDOW_SCRIPT),
            limits,
            away: AtomicBool::new(false),
            fallback: Memory::new(per_minute),
        };
        RateLimiter::with(Limiter::Redis(Arc::new(window)), miss_cost)
    }

    /// Whether the Redis limiter's breaker is open (requests limited in
    /// process); false for the in-process limiter.
    pub fn redis_away(&self) -> bool {
        match &self.limiter {
            Limiter::Redis(window) => window.away.load(Ordering::Acquire),
            Limiter::Off | Limiter::Memory(_) => false,
        }
    }

    fn with(limiter: Limiter, miss_cost: u32) -> Self {
        RateLimiter {
            limiter,
            miss_extra: miss_cost.saturating_sub(1),
        }
    }

    /// 429 when the client is over its budget; otherwise one unit spent.
    pub async fn admit(&self, caller: Caller, ClientIp(ip): ClientIp) -> Result<(), ApiError> {
        let client = (caller, ip);
        let over = match &self.limiter {
            Limiter::Off => None,
            Limiter::Memory(memory) => memory.take(&client, 1),
            Limiter::Redis(redis) => redis.take(client, 1).await,
        };
        match over {
            Some(wait) => Err(ApiError::RateLimited(wait)),
            None => Ok(()),
        }
    }

    /// Charges the extra cost of a cache miss to a client already admitted.
    pub async fn charge_miss(&self, caller: Caller, ClientIp(ip): ClientIp) {
        if self.miss_extra == 0 {
            return;
        }
        let client = (caller, ip);
        match &self.limiter {
            Limiter::Off => {}
            Limiter::Memory(memory) => memory.drain(&client, self.miss_extra),
            Limiter::Redis(redis) => {
                redis.take(client, self.miss_extra).await;
            }
        }
    }
}

/// Who a budget belongs to.
type Client = (Caller, Option<IpAddr>);

/// The in-process limiter: GCRA per client, a minute's budget as burst.
struct Memory {
    limiter: DefaultKeyedRateLimiter<Client>,
}

impl Memory {
    fn new(per_minute: NonZeroU32) -> Self {
        Memory {
            limiter: governor::RateLimiter::keyed(Quota::per_minute(per_minute)),
        }
    }

    /// Takes `units`; `Some(seconds to wait)` (and nothing taken) when they
    /// are not there.
    fn take(&self, client: &Client, units: u32) -> Option<u64> {
        let units = NonZeroU32::new(units)?;
        match self.limiter.check_key_n(client, units) {
            Ok(Ok(())) => None,
            Ok(Err(not_until)) => {
                let wait = not_until.wait_time_from(DefaultClock::default().now());
                Some(retry_after_secs(wait))
            }
            // More units than a whole budget: never there.
            Err(_) => Some(60),
        }
    }

    /// Takes `units`, or all that is left when fewer are: a cost incurred
    /// is charged even when the budget cannot cover it. (GCRA has no debt:
    /// emptying the budget is the most it can charge.)
    fn drain(&self, client: &Client, units: u32) {
        if self.take(client, units).is_some() {
            for _ in 1..units {
                if self.take(client, 1).is_some() {
                    break;
                }
            }
        }
    }
}

/// One fixed one-minute window per client: INCRBY the cost, and give the
/// window its expiry when it has none (the first request of the window).
/// Returns the count and the window's ms left.
const WINDOW_SCRIPT: &str = r"
local count = redis.call('INCRBY', KEYS[1], ARGV[2])
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  ttl = tonumber(ARGV[1])
end
return {count, ttl}
";

/// The Redis limiter with its breaker and in-process fallback.
struct RedisWindow {
    link: Link,
    prefix: String,
    per_minute: NonZeroU32,
    script: redis::Script,
    limits: RedisLimits,
    /// Open breaker: Redis failed and no probe has heard it since.
    away: AtomicBool,
    /// Limits while Redis is away.
    fallback: Memory,
}

impl RedisWindow {
    /// Takes `units` from the client's window; `Some(seconds to wait)` when
    /// the window is over budget.
    async fn take(self: &Arc<Self>, client: Client, units: u32) -> Option<u64> {
        if self.away.load(Ordering::Acquire) {
            return self.fallback.take(&client, units);
        }
        let (caller, ip) = client;
        let ip = ip.map(|ip| ip.to_string()).unwrap_or_default();
        let mut invocation = self
            .script
            .key(format!("{}{}:{ip}", self.prefix, caller.as_str()));
        invocation.arg(60_000).arg(units);
        let call = self.link.invoke::<(u64, i64)>(&invocation);
        let why = match tokio::time::timeout(self.limits.timeout, call).await {
            Ok(Ok((count, ms_left))) => {
                return (count > u64::from(self.per_minute.get()))
                    .then(|| retry_after_secs(Duration::from_millis(ms_left.max(0) as u64)));
            }
            Ok(Err(e)) => e.to_string(),
            Err(_) => "no answer in time".to_string(),
        };
        self.went_away(&why);
        self.fallback.take(&client, units)
    }

    /// Opens the breaker, starting the probe if this call opened it.
    fn went_away(self: &Arc<Self>, why: &str) {
        if !self.away.swap(true, Ordering::AcqRel) {
            warn!(
                error = why,
                "rate limiter: Redis unavailable; limiting in process until it answers"
            );
            tokio::spawn(Arc::clone(self).probe());
        }
    }

    /// Asks Redis (on a cluster, every master) until it answers, then
    /// closes the breaker.
    async fn probe(self: Arc<Self>) {
        loop {
            tokio::time::sleep(self.limits.probe_interval).await;
            if self.link.ping(self.limits.timeout).await.is_ok() {
                self.away.store(false, Ordering::Release);
                info!("rate limiter: Redis answers again; limits are shared again");
                return;
            }
        }
    }
}

/// The peer's IP address (none when the server runs without connection
/// info, as in some tests).
#[derive(Debug, Clone, Copy)]
pub struct ClientIp(pub Option<IpAddr>);

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
