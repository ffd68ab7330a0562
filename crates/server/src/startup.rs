//! Builds the whole application from [`Settings`]: database, cache, router,
//! listener. `main` and the tests start the service the same way.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::Context;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use spywatcher_analytics::EventStore;
use spywatcher_cache::{Backend, Cache, CacheConfig};
use spywatcher_gateway::ingester::{Ingester, IngesterConfig};
use tokio::net::TcpListener;
use tracing::{error, info};

use crate::auth::failures::AuthFailures;
use crate::auth::{Tokens, generate_token};
use crate::config::{CacheBackend, HttpLimits, Settings};
use crate::rate_limit::{RateLimiter, RedisLimits};
use crate::service::read_counts::Flusher;
use crate::service::realtime::{Realtime, RealtimeSettings};
use crate::service::warm_on_start::{self, WarmProgress};
use crate::service::{CachePolicy, Spywatcher, journal::DatabaseJournal, keys};
use crate::state::{AppState, Shared};
use crate::{http_server, routes};

pub struct Application {
    listener: TcpListener,
    state: AppState,
    http: HttpLimits,
    /// What the listener serves.
    routes: Routes,
    /// The gateway ingester, when `DISCORD_TOKEN` is set.
    gateway: Option<Ingester>,
    /// `CACHE_READ_COUNTS_FLUSH_MS`.
    read_counts_flush_interval: Duration,
    /// The admin token made at start when none was configured.
    pub generated_admin_token: Option<String>,
}

impl Application {
    /// The service and its HTTP API; with `DISCORD_TOKEN`, the gateway
    /// ingester too.
    pub async fn build(settings: &Settings) -> anyhow::Result<Application> {
        Application::build_serving(settings, Routes::Api).await
    }

    /// `spywatcher bot`: the gateway ingester, and on `PORT` only the
    /// probes (`/health/live`, `/health/ready`, `/metrics`), no API.
    pub async fn build_bot(settings: &Settings) -> anyhow::Result<Application> {
        if settings.discord.is_none() {
            return Err(crate::config::ConfigError {
                variable: "DISCORD_TOKEN",
                message:
                    "spywatcher bot needs the bot's token (see README.md, Events from Discord)"
                        .into(),
            }
            .into());
        }
        Application::build_serving(settings, Routes::Probes).await
    }

    async fn build_serving(settings: &Settings, routes: Routes) -> anyhow::Result<Application> {
        // First: metric handles taken before the recorder exists stay no-ops.
        let metrics = metrics_handle();
        let service = build_service(settings).await?;
        // The probes need no token: none is made up (and printed) for them.
        let generated_admin_token =
            (settings.admin_token.is_none() && routes == Routes::Api).then(generate_token);
        let admin = settings
            .admin_token
            .clone()
            .or_else(|| generated_admin_token.clone())
            .unwrap_or_default();
        let tokens = Tokens::new(
            admin,
            settings.ingest_token.clone(),
            settings.api_token.clone(),
        );
        let rate_limiter = build_rate_limiter(settings).await?;
        let address = SocketAddr::new(settings.host, settings.port);
        let listener = TcpListener::bind(address)
            .await
            .with_context(|| format!("PORT: cannot listen on {address}"))?;
        // After the last fallible step: a started ingester is not left
        // running by a failed build.
        let gateway = start_gateway(settings, &service);
        // Warming serves the API's readers: the probes alone need none.
        let warm_on_start = (settings.warm_on_start > 0 && routes == Routes::Api)
            .then(|| Arc::new(WarmProgress::new(settings.warm_on_start)));
        let state = AppState::new(Shared {
            warm_on_start,
            gateway: gateway.as_ref().map(Ingester::health),
            realtime: Realtime::new(service.clone(), realtime_settings(settings)),
            service,
            tokens: Arc::new(tokens),
            auth_failures: AuthFailures::new(settings.auth_failures_per_minute),
            rate_limiter: Arc::new(rate_limiter),
            metrics,
            body_limit: settings.body_limit_bytes,
            event_max_future_skew: settings.event_max_future_skew,
            body_timeout: settings.http.body_timeout,
        });
        Ok(Application {
            listener,
            state,
            http: settings.http.clone(),
            routes,
            gateway,
            read_counts_flush_interval: settings.read_counts_flush_interval,
            generated_admin_token,
        })
    }

    pub fn port(&self) -> u16 {
        self.listener.local_addr().map(|a| a.port()).unwrap_or(0)
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` resolves; requests in flight then finish,
    /// the reads counted per guild are flushed to the database, and the
    /// gateway ingester stores what it has read.
    ///
    /// With `CACHE_WARM_ON_START`, warming runs in the background as soon
    /// as the listener accepts: requests are served meanwhile.
    pub async fn run_until_stopped(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let service = &self.state.service;
        let flusher = (self.routes == Routes::Api).then(|| {
            Flusher::start(
                service.read_counts().clone(),
                service.store.clone(),
                self.read_counts_flush_interval,
            )
        });
        let warming = self
            .state
            .warm_on_start
            .clone()
            .map(|progress| AbortOnDrop(warm_on_start::start(service.clone(), progress)));
        let app = match self.routes {
            Routes::Api => routes::router(self.state),
            Routes::Probes => routes::probes(self.state),
        };
        let served = http_server::serve(self.listener, app, &self.http, shutdown).await;
        // A warming still running has nobody left to serve.
        drop(warming);
        if let Some(flusher) = flusher {
            flusher.stop().await;
        }
        if let Some(gateway) = self.gateway {
            stop_gateway(gateway).await;
        }
        served
    }
}

/// A background task that ends with its handle: also when the future
/// holding it is dropped (an instance aborted rather than shut down).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// What an [`Application`] serves over HTTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Routes {
    /// Everything (`spywatcher serve`).
    Api,
    /// `/health/live`, `/health/ready` and `/metrics` (`spywatcher bot`).
    Probes,
}

/// The service without its HTTP API: database, cache, caching policy.
/// `spywatcher bot` runs the gateway ingester on it alone.
pub async fn build_service(settings: &Settings) -> anyhow::Result<Spywatcher> {
    let store = connect_store(&settings.database_url).await?;
    let cache = build_cache(settings, &store)?;
    if settings.cache != CacheBackend::Embedded {
        // The cache bounds its ping by its op timeout; this is a backstop
        // so that no store's connection set-up can hold the start.
        if tokio::time::timeout(START_PING_BUDGET, cache.ping())
            .await
            .unwrap_or(false)
        {
            info!("Redis connected successfully");
        } else {
            error!(
                "Redis connection error: no answer at start; serving from the database until it answers"
            );
        }
    }
    let policy = CachePolicy {
        caching: settings.caching,
        ttls: settings.ttls.clone(),
        graces: settings.graces.clone(),
    };
    Ok(Spywatcher::new(store, cache, policy))
}

/// Starts the gateway ingester when `DISCORD_TOKEN` is set: it stores
/// through the service's own ingestion path.
pub fn start_gateway(settings: &Settings, service: &Spywatcher) -> Option<Ingester> {
    let discord = settings.discord.as_ref()?;
    let (id, count) = discord.shard;
    info!(
        "Discord gateway: connecting shard {id}/{count} to {}",
        discord
            .gateway_url
            .as_deref()
            .unwrap_or("Discord's gateway")
    );
    let config = IngesterConfig {
        concurrent_kinds: service.store.backend_name() == "postgres",
        ..discord.ingester_config()
    };
    Some(Ingester::start(config, service.clone()))
}

/// The longest a shutdown waits for the events read from the gateway to be
/// stored (a database that does not answer would hold it for ever).
pub const GATEWAY_DRAIN_BUDGET: Duration = Duration::from_secs(30);

/// Closes the gateway connection and stores what was read, within
/// [`GATEWAY_DRAIN_BUDGET`].
pub async fn stop_gateway(gateway: Ingester) {
    let health = gateway.health();
    if tokio::time::timeout(GATEWAY_DRAIN_BUDGET, gateway.shutdown())
        .await
        .is_err()
    {
        let status = health.status();
        error!(
            "Discord gateway: {} events read were not stored within {} s of the shutdown (last error: {})",
            status.read - status.stored,
            GATEWAY_DRAIN_BUDGET.as_secs(),
            status.last_error.unwrap_or_default()
        );
    } else {
        info!("Discord gateway: connection closed, every event read is stored");
    }
}

async fn build_rate_limiter(settings: &Settings) -> anyhow::Result<RateLimiter> {
    let (per_minute, miss_cost) = (
        settings.rate_limit_per_minute,
        settings.rate_limit_miss_cost,
    );
    if !settings.redis_rate_limiting {
        return Ok(RateLimiter::memory(per_minute, miss_cost));
    }
    let prefix = &settings.cache_prefix;
    let limits = RedisLimits {
        timeout: settings.rate_limit_redis_timeout,
        probe_interval: settings.breaker_cooldown,
    };
    let limiter = match &settings.cache {
        CacheBackend::Embedded => {
            anyhow::bail!("ENABLE_REDIS_RATE_LIMITING: needs REDIS_URL or REDIS_CLUSTER_NODES")
        }
        CacheBackend::Redis { url } => {
            RateLimiter::redis(url, prefix, per_minute, miss_cost, limits)
        }
        CacheBackend::RedisCluster { nodes } => {
            RateLimiter::redis_cluster(nodes, prefix, per_minute, miss_cost, limits).await
        }
    };
    limiter.context(settings.cache.variable())
}

/// The longest the start waits to tell whether Redis answers.
const START_PING_BUDGET: Duration = Duration::from_secs(2);

fn realtime_settings(settings: &Settings) -> RealtimeSettings {
    RealtimeSettings {
        push_interval: settings.ws_push_interval,
        recompute_concurrency: settings.ws_recompute_concurrency,
        max_connections: settings.ws_max_connections,
        max_connections_per_token: settings.ws_max_connections_per_token,
        max_subscriptions: settings.ws_max_subscriptions,
    }
}

pub async fn connect_store(database_url: &str) -> anyhow::Result<EventStore> {
    EventStore::connect(database_url)
        .await
        .with_context(|| format!("DATABASE_URL: cannot open {}", redact(database_url)))
}

fn build_cache(settings: &Settings, store: &EventStore) -> anyhow::Result<Cache> {
    let backend = match &settings.cache {
        CacheBackend::Embedded => Backend::Embedded,
        CacheBackend::Redis { url } => Backend::Redis { url: url.clone() },
        CacheBackend::RedisCluster { nodes } => Backend::RedisCluster {
            nodes: nodes.clone(),
        },
    };
    let config = CacheConfig {
        backend,
        prefix: settings.cache_prefix.clone(),
        compression_threshold: settings.compression_threshold,
        embedded_max_bytes: settings.cache_memory_bytes,
        l1_max_bytes: settings.l1_memory_bytes,
        op_timeout: settings.cache_op_timeout,
        breaker_cooldown: settings.breaker_cooldown,
        journal_interval: settings.journal_interval,
        // Invalidations are kept for as long as the longest-lived entry may
        // live, so a Redis that comes back with older data gets them all.
        journal_retention: settings
            .ttls
            .values()
            .copied()
            .max()
            .unwrap_or_default()
            .max(CacheConfig::default().journal_retention),
        stat_groups: keys::stat_groups(),
        ..CacheConfig::default()
    };
    let cache = match settings.cache {
        CacheBackend::Embedded => Cache::new(config),
        CacheBackend::Redis { .. } | CacheBackend::RedisCluster { .. } => {
            Cache::with_journal(config, DatabaseJournal::new(store.clone()))
        }
    };
    cache.context(settings.cache.variable())
}

/// One Prometheus recorder per process: the `metrics` facade is global.
fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            PrometheusBuilder::new()
                .install_recorder()
                .unwrap_or_else(|_| PrometheusBuilder::new().build_recorder().handle())
        })
        .clone()
}

/// A URL without its password, for messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let userinfo = &url[scheme_end + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme_end + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}
