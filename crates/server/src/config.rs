//! Settings from environment variables (and a `.env` file, read by `main`).
//!
//! Everything is parsed once, at start-up, into typed values; a bad value
//! stops the start with a message naming the variable (SPEC 6).

use std::collections::HashMap;
use std::net::IpAddr;
use std::str::FromStr;
use std::time::Duration;

use spywatcher_analytics::AnalyticsKind;
use spywatcher_gateway::ingester::{IdentifyLimit, IngesterConfig, check_gateway_url};

/// A variable with an unusable value.
#[derive(Debug, thiserror::Error)]
#[error("{variable}: {message}")]
pub struct ConfigError {
    pub variable: &'static str,
    pub message: String,
}

/// Where the cache keeps its entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheBackend {
    /// In process (no `REDIS_URL`).
    Embedded,
    /// A standalone Redis.
    Redis { url: String },
    /// A Redis Cluster, reached through these nodes (`redis://` or
    /// `rediss://` URLs, the password in each); the rest of the cluster is
    /// discovered from them.
    RedisCluster { nodes: Vec<String> },
}

impl CacheBackend {
    /// The variable that chose this backend, for messages about it.
    pub fn variable(&self) -> &'static str {
        match self {
            CacheBackend::Embedded | CacheBackend::Redis { .. } => "REDIS_URL",
            CacheBackend::RedisCluster { .. } => "REDIS_CLUSTER_NODES",
        }
    }
}

/// Every setting of the service. `Settings::from_env()` reads the process
/// environment; tests build one with [`Settings::from_lookup`] or by hand.
#[derive(Debug, Clone)]
pub struct Settings {
    pub host: IpAddr,
    pub port: u16,
    pub database_url: String,
    pub cache: CacheBackend,
    pub redis_rate_limiting: bool,
    /// `CACHE_ENABLED` (default true): false serves every analytics request
    /// from the database, as a baseline to measure the cache against.
    pub caching: bool,
    pub admin_token: Option<String>,
    pub ingest_token: Option<String>,
    pub api_token: Option<String>,
    pub cache_prefix: String,
    /// TTL per analytics (SPEC 2.3), overridable by `CACHE_TTL_<KIND>` in seconds.
    pub ttls: HashMap<AnalyticsKind, Duration>,
    /// Grace per analytics (`CACHE_GRACE_<KIND>` in seconds; absent: strict).
    /// With a grace, an event marks the analytics stale instead of gone: a
    /// read within the grace gets the previous value (`X-Cache: stale`)
    /// while one refresh runs.
    pub graces: HashMap<AnalyticsKind, Duration>,
    /// Bound of the in-process cache, in bytes.
    pub cache_memory_bytes: u64,
    /// Bound of the L1 tier in front of Redis, in bytes; 0 turns it off.
    pub l1_memory_bytes: u64,
    pub compression_threshold: usize,
    pub cache_op_timeout: Duration,
    pub breaker_cooldown: Duration,
    pub journal_interval: Duration,
    /// How often the reads counted per guild are added to the database
    /// (`CACHE_READ_COUNTS_FLUSH_MS`); a graceful shutdown flushes too.
    pub read_counts_flush_interval: Duration,
    /// Guilds whose six analytics are warmed at start, the most read over
    /// the last day first (`CACHE_WARM_ON_START`; 0: none).
    pub warm_on_start: usize,
    /// Requests per minute per client on the analytics routes; 0 turns it off.
    pub rate_limit_per_minute: u32,
    pub body_limit_bytes: usize,
    /// How far in the future an event's `createdAt` may lie
    /// (`EVENT_MAX_FUTURE_SKEW_MS`): a sender's clock may run ahead.
    pub event_max_future_skew: Duration,
    /// Least time between two recomputations of one guild's analytics for
    /// its WebSocket subscribers (`WS_PUSH_INTERVAL_MS`): a burst of events
    /// becomes a few pushes, not a burst of queries.
    pub ws_push_interval: Duration,
    /// Most recomputations for WebSocket subscribers at once, over every
    /// guild (`WS_RECOMPUTE_CONCURRENCY`): the rest queue, leaving database
    /// connections to the HTTP routes.
    pub ws_recompute_concurrency: usize,
    /// WebSocket connections per instance (`WS_MAX_CONNECTIONS`).
    pub ws_max_connections: usize,
    /// WebSocket connections per token (`WS_MAX_CONNECTIONS_PER_TOKEN`).
    pub ws_max_connections_per_token: usize,
    /// Guilds per WebSocket connection (`WS_MAX_SUBSCRIPTIONS`).
    pub ws_max_subscriptions: usize,
    /// Timeouts and caps of the HTTP connections.
    pub http: HttpLimits,
    /// Failed authentications a client address may make per minute before
    /// its requests get 429 (`AUTH_FAILURES_PER_MINUTE`); 0 turns it off.
    pub auth_failures_per_minute: u32,
    /// Rate-limit units a cache miss costs a client; a hit costs 1
    /// (`RATE_LIMIT_MISS_COST`).
    pub rate_limit_miss_cost: u32,
    /// How long the Redis rate limiter waits for Redis before the request
    /// falls back to the in-process limiter (`RATE_LIMIT_REDIS_TIMEOUT_MS`).
    pub rate_limit_redis_timeout: Duration,
    /// The Discord gateway ingester (SPEC 2.5): set by `DISCORD_TOKEN`.
    pub discord: Option<DiscordSettings>,
}

/// Where and how the gateway ingester connects, and its buffer.
#[derive(Clone)]
pub struct DiscordSettings {
    /// `DISCORD_TOKEN`: the bot's token (never printed).
    pub token: String,
    /// `DISCORD_SHARD=ID/COUNT` (default `0/1`).
    pub shard: (u32, u32),
    /// `DISCORD_GATEWAY_URL` (default Discord's).
    pub gateway_url: Option<String>,
    /// Events read from the gateway and not yet stored, at most
    /// (`DISCORD_BUFFER_CAPACITY`); a full buffer stops the reading.
    pub buffer_capacity: usize,
    /// Events per stored batch, at most (`DISCORD_BATCH_MAX`).
    pub batch_max: usize,
    /// How long a batch waits for more events once it has one.
    pub batch_wait: Duration,
    /// Discord's identify rate limit; tests against a fake gateway lift it.
    pub identify_limit: IdentifyLimit,
}

impl std::fmt::Debug for DiscordSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DiscordSettings")
            .field("token", &"***")
            .field("shard", &self.shard)
            .field("gateway_url", &self.gateway_url)
            .field("buffer_capacity", &self.buffer_capacity)
            .field("batch_max", &self.batch_max)
            .field("batch_wait", &self.batch_wait)
            .field("identify_limit", &self.identify_limit)
            .finish()
    }
}

impl DiscordSettings {
    pub fn ingester_config(&self) -> IngesterConfig {
        IngesterConfig {
            shard: self.shard,
            gateway_url: self.gateway_url.clone(),
            buffer_capacity: self.buffer_capacity,
            batch_max: self.batch_max,
            batch_wait: self.batch_wait,
            identify_limit: self.identify_limit,
            ..IngesterConfig::new(self.token.clone())
        }
    }
}

/// What a client connection may cost the server, in time and descriptors.
#[derive(Debug, Clone)]
pub struct HttpLimits {
    /// Time to receive a request line and headers, from the moment the
    /// connection waits for them: after accept, and after each response on
    /// a kept-alive connection, so it is the idle timeout too
    /// (`HTTP_HEADER_TIMEOUT_MS`).
    pub header_timeout: Duration,
    /// Time to receive a request body, from the end of its headers
    /// (`HTTP_BODY_TIMEOUT_MS`).
    pub body_timeout: Duration,
    /// Time to answer a request, body included; a WebSocket's life after
    /// its upgrade is not bounded (`HTTP_REQUEST_TIMEOUT_MS`).
    pub request_timeout: Duration,
    /// Open connections at most (`HTTP_MAX_CONNECTIONS`); by default the
    /// descriptor limit less a reserve for the database and Redis.
    pub max_connections: Option<usize>,
}

/// Most guilds `CACHE_WARM_ON_START` may ask for: each is six analytics
/// computed by the database, and a typo of a few digits must not ask for
/// every guild there is.
pub const MAX_WARM_ON_START: usize = 10_000;

/// The TTLs of SPEC 2.3.
pub fn default_ttl(kind: AnalyticsKind) -> Duration {
    let minutes = match kind {
        AnalyticsKind::Ghosts | AnalyticsKind::Lurkers | AnalyticsKind::Shifts => 5,
        AnalyticsKind::Heatmap => 15,
        AnalyticsKind::Roles => 10,
        AnalyticsKind::Clients => 2,
    };
    Duration::from_secs(minutes * 60)
}

impl Settings {
    /// From the process environment.
    pub fn from_env() -> Result<Settings, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// From any source of variables (a map in tests).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Settings, ConfigError> {
        let vars = Vars(&get);
        let cache = match (vars.text("REDIS_URL"), vars.text("REDIS_CLUSTER_NODES")) {
            (Some(_), Some(_)) => {
                return Err(ConfigError {
                    variable: "REDIS_CLUSTER_NODES",
                    message: "set either REDIS_URL or REDIS_CLUSTER_NODES, not both".into(),
                });
            }
            (None, Some(nodes)) => CacheBackend::RedisCluster {
                nodes: cluster_nodes(
                    &nodes,
                    vars.text("REDIS_PASSWORD").as_deref(),
                    vars.bool("REDIS_TLS", false)?,
                )?,
            },
            (Some(url), None) => CacheBackend::Redis {
                url: redis_url(
                    &url,
                    vars.text("REDIS_PASSWORD"),
                    vars.bool("REDIS_TLS", false)?,
                )?,
            },
            (None, None) => CacheBackend::Embedded,
        };
        let mut ttls = HashMap::new();
        for &kind in AnalyticsKind::ALL {
            let variable = ttl_variable(kind);
            let ttl = match vars.parse::<u64>(variable, "a number of seconds")? {
                Some(0) => {
                    return Err(ConfigError {
                        variable,
                        message: "must be at least 1 second".into(),
                    });
                }
                Some(secs) => Duration::from_secs(secs),
                None => default_ttl(kind),
            };
            ttls.insert(kind, ttl);
        }
        let mut graces = HashMap::new();
        for &kind in AnalyticsKind::ALL {
            let variable = grace_variable(kind);
            if let Some(secs) = vars.parse::<u64>(variable, "a number of seconds (0: strict)")?
                && secs > 0
            {
                graces.insert(kind, Duration::from_secs(secs));
            }
        }
        let cache_prefix = vars
            .text("CACHE_PREFIX")
            .unwrap_or_else(|| "spywatcher:".into());
        if cache_prefix.contains(['*', '?', '[', ']']) {
            return Err(ConfigError {
                variable: "CACHE_PREFIX",
                message: format!("{cache_prefix:?} contains glob characters (* ? [ ])"),
            });
        }
        // Redis Cluster hashes only the part of a key between `{` and `}`
        // when there is one: a prefix with braces would put every key of
        // the cache in one slot, on one master.
        if matches!(cache, CacheBackend::RedisCluster { .. }) && cache_prefix.contains(['{', '}']) {
            return Err(ConfigError {
                variable: "CACHE_PREFIX",
                message: format!(
                    "{cache_prefix:?} contains {{ or }}: with REDIS_CLUSTER_NODES that would put every key in one cluster slot"
                ),
            });
        }
        Ok(Settings {
            host: vars
                .parse("HOST", "an IP address such as 0.0.0.0 or 127.0.0.1")?
                .unwrap_or(IpAddr::from([0, 0, 0, 0])),
            port: vars
                .parse("PORT", "a port number from 0 to 65535")?
                .unwrap_or(3001),
            database_url: vars
                .text("DATABASE_URL")
                .unwrap_or_else(|| "sqlite://spywatcher.db".into()),
            cache,
            redis_rate_limiting: vars.bool("ENABLE_REDIS_RATE_LIMITING", false)?,
            caching: vars.bool("CACHE_ENABLED", true)?,
            admin_token: vars.token("ADMIN_TOKEN")?,
            ingest_token: vars.token("INGEST_TOKEN")?,
            api_token: vars.token("API_TOKEN")?,
            cache_prefix,
            ttls,
            graces,
            l1_memory_bytes: vars
                .parse("CACHE_L1_MAX_BYTES", "a number of bytes (0 turns L1 off)")?
                .unwrap_or(32 * 1024 * 1024),
            cache_memory_bytes: vars
                .parse("CACHE_MEMORY_MAX_BYTES", "a number of bytes")?
                .unwrap_or(64 * 1024 * 1024),
            compression_threshold: vars
                .parse("CACHE_COMPRESSION_THRESHOLD", "a number of bytes")?
                .unwrap_or(1024),
            cache_op_timeout: vars
                .millis("CACHE_TIMEOUT_MS")?
                .unwrap_or(Duration::from_millis(250)),
            breaker_cooldown: vars
                .millis("CACHE_BREAKER_COOLDOWN_MS")?
                .unwrap_or(Duration::from_secs(1)),
            journal_interval: vars
                .millis("CACHE_JOURNAL_INTERVAL_MS")?
                .unwrap_or(Duration::from_secs(1)),
            read_counts_flush_interval: vars
                .positive_millis("CACHE_READ_COUNTS_FLUSH_MS")?
                .unwrap_or(Duration::from_secs(5)),
            warm_on_start: at_most(
                "CACHE_WARM_ON_START",
                vars.parse("CACHE_WARM_ON_START", "a number of guilds (0: none)")?,
                MAX_WARM_ON_START,
            )?
            .unwrap_or(0),
            rate_limit_per_minute: vars
                .parse(
                    "RATE_LIMIT_PER_MINUTE",
                    "a number of requests (0 turns limiting off)",
                )?
                .unwrap_or(6000),
            body_limit_bytes: vars
                .parse("BODY_LIMIT_BYTES", "a number of bytes")?
                .unwrap_or(1024 * 1024),
            event_max_future_skew: vars
                .millis("EVENT_MAX_FUTURE_SKEW_MS")?
                .unwrap_or(spywatcher_analytics::DEFAULT_MAX_FUTURE_SKEW),
            ws_push_interval: vars
                .positive_millis("WS_PUSH_INTERVAL_MS")?
                .unwrap_or(Duration::from_secs(1)),
            ws_recompute_concurrency: vars
                .at_least_one("WS_RECOMPUTE_CONCURRENCY", "a number of recomputations")?
                .unwrap_or(2),
            ws_max_connections: vars
                .at_least_one("WS_MAX_CONNECTIONS", "a number of connections")?
                .unwrap_or(1000),
            ws_max_connections_per_token: vars
                .at_least_one("WS_MAX_CONNECTIONS_PER_TOKEN", "a number of connections")?
                .unwrap_or(500),
            ws_max_subscriptions: vars
                .at_least_one("WS_MAX_SUBSCRIPTIONS", "a number of guilds")?
                .unwrap_or(100),
            http: HttpLimits {
                header_timeout: vars
                    .positive_millis("HTTP_HEADER_TIMEOUT_MS")?
                    .unwrap_or(Duration::from_secs(10)),
                body_timeout: vars
                    .positive_millis("HTTP_BODY_TIMEOUT_MS")?
                    .unwrap_or(Duration::from_secs(10)),
                request_timeout: vars
                    .positive_millis("HTTP_REQUEST_TIMEOUT_MS")?
                    .unwrap_or(Duration::from_secs(30)),
                max_connections: vars
                    .at_least_one("HTTP_MAX_CONNECTIONS", "a number of connections")?,
            },
            auth_failures_per_minute: vars
                .parse(
                    "AUTH_FAILURES_PER_MINUTE",
                    "a number of failures (0 turns the slowdown off)",
                )?
                .unwrap_or(30),
            // At least 1: the cost of a hit.
            rate_limit_miss_cost: vars
                .at_least_one("RATE_LIMIT_MISS_COST", "a number of requests")?
                .unwrap_or(10),
            rate_limit_redis_timeout: vars
                .positive_millis("RATE_LIMIT_REDIS_TIMEOUT_MS")?
                .unwrap_or(Duration::from_millis(250)),
            discord: discord(&vars)?,
        })
    }

    pub fn ttl(&self, kind: AnalyticsKind) -> Duration {
        self.ttls
            .get(&kind)
            .copied()
            .unwrap_or_else(|| default_ttl(kind))
    }
}

/// The gateway settings: none without `DISCORD_TOKEN`. The other
/// variables are checked either way, so a typo is reported before it
/// matters.
fn discord<F: Fn(&str) -> Option<String>>(
    vars: &Vars<'_, F>,
) -> Result<Option<DiscordSettings>, ConfigError> {
    let shard = match vars.text("DISCORD_SHARD") {
        None => (0, 1),
        Some(text) => shard(&text).map_err(|message| ConfigError {
            variable: "DISCORD_SHARD",
            message,
        })?,
    };
    let gateway_url = vars.text("DISCORD_GATEWAY_URL");
    if let Some(url) = &gateway_url {
        check_gateway_url(url).map_err(|message| ConfigError {
            variable: "DISCORD_GATEWAY_URL",
            message,
        })?;
    }
    let buffer_capacity = at_most(
        "DISCORD_BUFFER_CAPACITY",
        vars.at_least_one("DISCORD_BUFFER_CAPACITY", "a number of events")?,
        1_000_000,
    )?
    .unwrap_or(10_000);
    let batch_max = at_most(
        "DISCORD_BATCH_MAX",
        vars.at_least_one("DISCORD_BATCH_MAX", "a number of events")?,
        100_000,
    )?
    .unwrap_or(5_000);
    let Some(token) = vars.text("DISCORD_TOKEN") else {
        return Ok(None);
    };
    if !token.chars().all(|c| c.is_ascii_graphic() || c == ' ') {
        return Err(ConfigError {
            variable: "DISCORD_TOKEN",
            message: "must be printable ASCII (the bot token from the Developer Portal)".into(),
        });
    }
    Ok(Some(DiscordSettings {
        token,
        shard,
        gateway_url,
        buffer_capacity,
        batch_max,
        batch_wait: Duration::from_millis(5),
        identify_limit: IdentifyLimit::Discord,
    }))
}

/// A count within `max` (a buffer or a batch is memory: a typo of a few
/// digits must not ask for all of it).
fn at_most(
    variable: &'static str,
    value: Option<usize>,
    max: usize,
) -> Result<Option<usize>, ConfigError> {
    match value {
        Some(n) if n > max => Err(ConfigError {
            variable,
            message: format!("must be at most {max}, got {n}"),
        }),
        value => Ok(value),
    }
}

/// `ID/COUNT`, with ID < COUNT.
fn shard(text: &str) -> Result<(u32, u32), String> {
    let expected = || format!("expected ID/COUNT such as 0/1 or 3/8, got {text:?}");
    let (id, count) = text.split_once('/').ok_or_else(expected)?;
    let id: u32 = id.trim().parse().map_err(|_| expected())?;
    let count: u32 = count.trim().parse().map_err(|_| expected())?;
    if count == 0 {
        return Err("the shard count must be at least 1".into());
    }
    if id >= count {
        return Err(format!(
            "shard id {id} is not below the shard count {count} (ids run from 0 to {})",
            count - 1
        ));
    }
    Ok((id, count))
}

/// `CACHE_TTL_GHOSTS`, `CACHE_TTL_LURKERS`, ...
pub fn ttl_variable(kind: AnalyticsKind) -> &'static str {
    match kind {
        AnalyticsKind::Ghosts => "CACHE_TTL_GHOSTS",
        AnalyticsKind::Lurkers => "CACHE_TTL_LURKERS",
        AnalyticsKind::Heatmap => "CACHE_TTL_HEATMAP",
        AnalyticsKind::Roles => "CACHE_TTL_ROLES",
        AnalyticsKind::Clients => "CACHE_TTL_CLIENTS",
        AnalyticsKind::Shifts => "CACHE_TTL_SHIFTS",
    }
}

/// `CACHE_GRACE_GHOSTS`, `CACHE_GRACE_LURKERS`, ...
pub fn grace_variable(kind: AnalyticsKind) -> &'static str {
    match kind {
        AnalyticsKind::Ghosts => "CACHE_GRACE_GHOSTS",
        AnalyticsKind::Lurkers => "CACHE_GRACE_LURKERS",
        AnalyticsKind::Heatmap => "CACHE_GRACE_HEATMAP",
        AnalyticsKind::Roles => "CACHE_GRACE_ROLES",
        AnalyticsKind::Clients => "CACHE_GRACE_CLIENTS",
        AnalyticsKind::Shifts => "CACHE_GRACE_SHIFTS",
    }
}

/// Applies `REDIS_PASSWORD` and `REDIS_TLS` to `REDIS_URL`, and checks it.
fn redis_url(url: &str, password: Option<String>, tls: bool) -> Result<String, ConfigError> {
    let bad = |message: String| ConfigError {
        variable: "REDIS_URL",
        message,
    };
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| bad(format!("{url:?} is not a URL like redis://host:6379")))?;
    let scheme = match (scheme, tls) {
        ("redis", false) => "redis",
        ("redis" | "rediss", true) | ("rediss", false) => "rediss",
        _ => {
            return Err(bad(format!(
                "scheme {scheme:?} is not redis:// or rediss://"
            )));
        }
    };
    let rest = match password {
        Some(password) if !rest.contains('@') => format!(":{}@{rest}", percent_encode(&password)),
        _ => rest.to_string(),
    };
    let url = format!("{scheme}://{rest}");
    redis::Client::open(url.as_str()).map_err(|e| bad(e.to_string()))?;
    Ok(url)
}

/// Parses `REDIS_CLUSTER_NODES` (`host:port,host:port,...`) into node URLs
/// carrying `REDIS_PASSWORD` and the scheme `REDIS_TLS` asks for. A node
/// pasted as a URL (`redis://host:port`, `rediss://host:port`) is taken
/// too; `rediss://` on any node means TLS for the whole cluster, which
/// cannot be half encrypted. Credentials and database numbers are refused
/// in a node: one password is for every node (`REDIS_PASSWORD`), and a
/// cluster has only database 0.
fn cluster_nodes(
    nodes: &str,
    password: Option<&str>,
    tls: bool,
) -> Result<Vec<String>, ConfigError> {
    let bad = |message: String| ConfigError {
        variable: "REDIS_CLUSTER_NODES",
        message,
    };
    let mut parsed = Vec::new();
    let mut schemes = Vec::new();
    for (i, node) in nodes.split(',').map(str::trim).enumerate() {
        let position = i + 1;
        if node.is_empty() {
            return Err(bad(format!(
                "node {position} is empty; expected host:port,host:port,..."
            )));
        }
        let (scheme, address) = match node.split_once("://") {
            Some((scheme @ ("redis" | "rediss"), address)) => (Some(scheme), address),
            Some((scheme, _)) => {
                return Err(bad(format!(
                    "node {position}: scheme {scheme:?} is not redis:// or rediss://; plain host:port is enough"
                )));
            }
            None => (None, node),
        };
        // Not echoed: it may hold a password.
        if address.contains('@') {
            return Err(bad(format!(
                "node {position} carries credentials; put the password in REDIS_PASSWORD, which applies to every node"
            )));
        }
        let address = address.strip_suffix('/').unwrap_or(address);
        if address.contains(['/', '?', '#']) {
            return Err(bad(format!(
                "node {position} ({node:?}) has a path or query; a cluster has only database 0, so give host:port alone"
            )));
        }
        let (host, port) = address.rsplit_once(':').ok_or_else(|| {
            bad(format!(
                "node {position} ({node:?}) has no port; expected host:port"
            ))
        })?;
        let port = match port.parse::<u16>() {
            Ok(port @ 1..) => port,
            _ => {
                return Err(bad(format!(
                    "node {position} ({node:?}): port {port:?} is not a number from 1 to 65535"
                )));
            }
        };
        let bracketed = host.starts_with('[') && host.ends_with(']') && host.len() > 2;
        if host.is_empty() || host == "[]" {
            return Err(bad(format!(
                "node {position} ({node:?}) has no host; expected host:port"
            )));
        }
        if host.contains(':') && !bracketed {
            return Err(bad(format!(
                "node {position} ({node:?}): write an IPv6 address in brackets, like [::1]:{port}"
            )));
        }
        if host.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad(format!(
                "node {position} ({node:?}): the host contains spaces"
            )));
        }
        schemes.extend(scheme);
        parsed.push((host.to_string(), port));
    }
    if schemes.contains(&"redis") && schemes.contains(&"rediss") {
        return Err(bad(
            "mixes redis:// and rediss:// nodes; a cluster is reached with TLS on every node or none (REDIS_TLS=true)".into(),
        ));
    }
    let scheme = if tls || schemes.contains(&"rediss") {
        "rediss"
    } else {
        "redis"
    };
    let credentials = password
        .map(|password| format!(":{}@", percent_encode(password)))
        .unwrap_or_default();
    parsed
        .into_iter()
        .enumerate()
        .map(|(i, (host, port))| {
            let url = format!("{scheme}://{credentials}{host}:{port}");
            redis::Client::open(url.as_str())
                .map(|_| url)
                .map_err(|e| bad(format!("node {}: {e}", i + 1)))
        })
        .collect()
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Typed access to the variables, each error naming its variable.
struct Vars<'a, F: Fn(&str) -> Option<String>>(&'a F);

impl<F: Fn(&str) -> Option<String>> Vars<'_, F> {
    /// The value, trimmed; unset and empty are the same.
    fn text(&self, variable: &str) -> Option<String> {
        (self.0)(variable)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    }

    fn parse<T: FromStr>(
        &self,
        variable: &'static str,
        expected: &str,
    ) -> Result<Option<T>, ConfigError> {
        self.text(variable)
            .map(|v| {
                v.parse().map_err(|_| ConfigError {
                    variable,
                    message: format!("expected {expected}, got {v:?}"),
                })
            })
            .transpose()
    }

    /// A count of at least 1.
    /// A count, 0 refused.
    fn at_least_one<T: FromStr + From<u8> + PartialEq>(
        &self,
        variable: &'static str,
        expected: &str,
    ) -> Result<Option<T>, ConfigError> {
        match self.parse::<T>(variable, expected)? {
            Some(n) if n == T::from(0) => Err(ConfigError {
                variable,
                message: "must be at least 1".into(),
            }),
            n => Ok(n),
        }
    }

    fn millis(&self, variable: &'static str) -> Result<Option<Duration>, ConfigError> {
        Ok(self
            .parse::<u64>(variable, "a number of milliseconds")?
            .map(Duration::from_millis))
    }

    /// Milliseconds, 0 refused (a zero timeout would refuse everything).
    fn positive_millis(&self, variable: &'static str) -> Result<Option<Duration>, ConfigError> {
        match self.millis(variable)? {
            Some(Duration::ZERO) => Err(ConfigError {
                variable,
                message: "must be at least 1 millisecond".into(),
            }),
            millis => Ok(millis),
        }
    }

    fn bool(&self, variable: &'static str, default: bool) -> Result<bool, ConfigError> {
        match self
            .text(variable)
            .map(|v| v.to_ascii_lowercase())
            .as_deref()
        {
            None => Ok(default),
            Some("true" | "1" | "yes" | "on") => Ok(true),
            Some("false" | "0" | "no" | "off") => Ok(false),
            Some(other) => Err(ConfigError {
                variable,
                message: format!("expected true or false, got {other:?}"),
            }),
        }
    }

    /// A bearer token: long enough to resist guessing, and sendable in a header.
    fn token(&self, variable: &'static str) -> Result<Option<String>, ConfigError> {
        let Some(token) = self.text(variable) else {
            return Ok(None);
        };
        if token.len() < 16 {
            return Err(ConfigError {
                variable,
                message: "must be at least 16 characters".into(),
            });
        }
        if !token.chars().all(|c| c.is_ascii_graphic()) {
            return Err(ConfigError {
                variable,
                message: "must be printable ASCII without spaces".into(),
            });
        }
        Ok(Some(token))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(vars: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::from_lookup(|name| map.get(name).cloned())
    }

    #[test]
    fn defaults_need_no_configuration() {
        let s = settings(&[]).unwrap();
        assert_eq!(s.port, 3001);
        assert_eq!(s.cache, CacheBackend::Embedded);
        assert_eq!(s.cache_prefix, "spywatcher:");
        assert_eq!(s.ttl(AnalyticsKind::Heatmap), Duration::from_secs(900));
        assert_eq!(s.ttl(AnalyticsKind::Clients), Duration::from_secs(120));
        assert!(s.graces.is_empty(), "strict unless a grace is set");
        assert_eq!(s.ws_push_interval, Duration::from_secs(1));
        assert_eq!(s.ws_recompute_concurrency, 2);
        assert_eq!(s.ws_max_subscriptions, 100);
        assert_eq!(s.event_max_future_skew, Duration::from_secs(300));
        assert_eq!(s.warm_on_start, 0, "no warming unless asked");
        assert_eq!(s.read_counts_flush_interval, Duration::from_secs(5));
        let s = settings(&[
            ("CACHE_WARM_ON_START", "25"),
            ("CACHE_READ_COUNTS_FLUSH_MS", "750"),
        ])
        .unwrap();
        assert_eq!(s.warm_on_start, 25);
        assert_eq!(s.read_counts_flush_interval, Duration::from_millis(750));
    }

    #[test]
    fn bad_values_name_their_variable() {
        for (vars, variable) in [
            (vec![("PORT", "eighty")], "PORT"),
            (vec![("PORT", "70000")], "PORT"),
            (vec![("REDIS_URL", "localhost:6379")], "REDIS_URL"),
            (vec![("REDIS_URL", "http://x")], "REDIS_URL"),
            (
                vec![("ENABLE_REDIS_RATE_LIMITING", "maybe")],
                "ENABLE_REDIS_RATE_LIMITING",
            ),
            (vec![("ADMIN_TOKEN", "short")], "ADMIN_TOKEN"),
            (vec![("CACHE_TTL_GHOSTS", "0")], "CACHE_TTL_GHOSTS"),
            (vec![("CACHE_TTL_ROLES", "ten")], "CACHE_TTL_ROLES"),
            (vec![("CACHE_GRACE_SHIFTS", "-5")], "CACHE_GRACE_SHIFTS"),
            (vec![("CACHE_PREFIX", "spy*")], "CACHE_PREFIX"),
            (vec![("WS_PUSH_INTERVAL_MS", "0")], "WS_PUSH_INTERVAL_MS"),
            (vec![("WS_PUSH_INTERVAL_MS", "soon")], "WS_PUSH_INTERVAL_MS"),
            (
                vec![("WS_RECOMPUTE_CONCURRENCY", "0")],
                "WS_RECOMPUTE_CONCURRENCY",
            ),
            (vec![("WS_MAX_CONNECTIONS", "many")], "WS_MAX_CONNECTIONS"),
            (
                vec![("WS_MAX_CONNECTIONS_PER_TOKEN", "-1")],
                "WS_MAX_CONNECTIONS_PER_TOKEN",
            ),
            (vec![("WS_MAX_SUBSCRIPTIONS", "0")], "WS_MAX_SUBSCRIPTIONS"),
            (
                vec![("EVENT_MAX_FUTURE_SKEW_MS", "5min")],
                "EVENT_MAX_FUTURE_SKEW_MS",
            ),
            (
                vec![("HTTP_HEADER_TIMEOUT_MS", "0")],
                "HTTP_HEADER_TIMEOUT_MS",
            ),
            (vec![("HTTP_BODY_TIMEOUT_MS", "1s")], "HTTP_BODY_TIMEOUT_MS"),
            (
                vec![("HTTP_REQUEST_TIMEOUT_MS", "-5")],
                "HTTP_REQUEST_TIMEOUT_MS",
            ),
            (vec![("HTTP_MAX_CONNECTIONS", "0")], "HTTP_MAX_CONNECTIONS"),
            (
                vec![("HTTP_MAX_CONNECTIONS", "many")],
                "HTTP_MAX_CONNECTIONS",
            ),
            (
                vec![("AUTH_FAILURES_PER_MINUTE", "lots")],
                "AUTH_FAILURES_PER_MINUTE",
            ),
            (vec![("RATE_LIMIT_MISS_COST", "0")], "RATE_LIMIT_MISS_COST"),
            (vec![("CACHE_WARM_ON_START", "ten")], "CACHE_WARM_ON_START"),
            (vec![("CACHE_WARM_ON_START", "-1")], "CACHE_WARM_ON_START"),
            (
                vec![("CACHE_WARM_ON_START", "10001")],
                "CACHE_WARM_ON_START",
            ),
            (
                vec![("CACHE_READ_COUNTS_FLUSH_MS", "0")],
                "CACHE_READ_COUNTS_FLUSH_MS",
            ),
            (
                vec![("CACHE_READ_COUNTS_FLUSH_MS", "5s")],
                "CACHE_READ_COUNTS_FLUSH_MS",
            ),
            (
                vec![("RATE_LIMIT_REDIS_TIMEOUT_MS", "0")],
                "RATE_LIMIT_REDIS_TIMEOUT_MS",
            ),
            (vec![("DISCORD_SHARD", "1")], "DISCORD_SHARD"),
            (vec![("DISCORD_SHARD", "2/2")], "DISCORD_SHARD"),
            (vec![("DISCORD_SHARD", "0/0")], "DISCORD_SHARD"),
            (vec![("DISCORD_SHARD", "a/b")], "DISCORD_SHARD"),
            (
                vec![("DISCORD_GATEWAY_URL", "http://gateway")],
                "DISCORD_GATEWAY_URL",
            ),
            (
                vec![("DISCORD_GATEWAY_URL", "ws://host with space")],
                "DISCORD_GATEWAY_URL",
            ),
            (
                vec![("DISCORD_BUFFER_CAPACITY", "0")],
                "DISCORD_BUFFER_CAPACITY",
            ),
            (vec![("DISCORD_BATCH_MAX", "lots")], "DISCORD_BATCH_MAX"),
            (
                vec![("DISCORD_BATCH_MAX", "18446744073709551615")],
                "DISCORD_BATCH_MAX",
            ),
            (
                vec![("DISCORD_BUFFER_CAPACITY", "99999999999")],
                "DISCORD_BUFFER_CAPACITY",
            ),
            (vec![("DISCORD_TOKEN", "tok\u{7}en")], "DISCORD_TOKEN"),
        ] {
            let err = settings(&vars).unwrap_err();
            assert_eq!(err.variable, variable, "{err}");
            assert!(err.to_string().starts_with(variable));
        }
    }

    #[test]
    fn the_gateway_runs_only_with_a_token() {
        let s = settings(&[("DISCORD_SHARD", "3/8")]).unwrap();
        assert!(s.discord.is_none());
        let s = settings(&[
            ("DISCORD_TOKEN", "MTIz.secret"),
            ("DISCORD_GATEWAY_URL", "ws://127.0.0.1:9000"),
        ])
        .unwrap();
        let discord = s.discord.expect("a token runs the gateway");
        assert_eq!(discord.shard, (0, 1));
        assert_eq!(discord.gateway_url.as_deref(), Some("ws://127.0.0.1:9000"));
        assert_eq!(discord.buffer_capacity, 10_000);
        assert!(
            !format!("{discord:?}").contains("secret"),
            "the token is not printed"
        );
        let s = settings(&[("DISCORD_TOKEN", "t"), ("DISCORD_SHARD", " 3 / 8 ")]).unwrap();
        assert_eq!(s.discord.unwrap().shard, (3, 8));
    }

    #[test]
    fn password_and_tls_are_applied_to_the_redis_url() {
        let s = settings(&[
            ("REDIS_URL", "redis://cache.internal:6380/2"),
            ("REDIS_PASSWORD", "p@ss word"),
            ("REDIS_TLS", "true"),
        ])
        .unwrap();
        assert_eq!(
            s.cache,
            CacheBackend::Redis {
                url: "rediss://:p%40ss%20word@cache.internal:6380/2".into()
            }
        );
    }

    fn cluster(vars: &[(&str, &str)]) -> Vec<String> {
        match settings(vars).unwrap().cache {
            CacheBackend::RedisCluster { nodes } => nodes,
            other => panic!("not a cluster: {other:?}"),
        }
    }

    #[test]
    fn cluster_nodes_become_node_urls() {
        assert_eq!(
            cluster(&[(
                "REDIS_CLUSTER_NODES",
                " 10.0.0.1:7000, redis-2.internal:7001 ,[::1]:7002"
            )]),
            [
                "redis://10.0.0.1:7000",
                "redis://redis-2.internal:7001",
                "redis://[::1]:7002"
            ]
        );
    }

    #[test]
    fn password_and_tls_are_applied_to_every_cluster_node() {
        assert_eq!(
            cluster(&[
                ("REDIS_CLUSTER_NODES", "a.internal:7000,b.internal:7001"),
                ("REDIS_PASSWORD", "p@ss:w/rd %?#"),
                ("REDIS_TLS", "true"),
            ]),
            [
                "rediss://:p%40ss%3Aw%2Frd%20%25%3F%23@a.internal:7000",
                "rediss://:p%40ss%3Aw%2Frd%20%25%3F%23@b.internal:7001",
            ]
        );
        // What redis-rs reads back: the password as given, over TLS.
        for node in cluster(&[
            ("REDIS_CLUSTER_NODES", "a.internal:7000"),
            ("REDIS_PASSWORD", "p@ss:w/rd %?#"),
            ("REDIS_TLS", "true"),
        ]) {
            let info = redis::IntoConnectionInfo::into_connection_info(node.as_str()).unwrap();
            assert_eq!(info.redis_settings().password(), Some("p@ss:w/rd %?#"));
            assert!(
                matches!(info.addr(), redis::ConnectionAddr::TcpTls { host, port: 7000, .. } if host == "a.internal"),
                "{:?}",
                info.addr()
            );
        }
        // Without TLS, the password alone.
        assert_eq!(
            cluster(&[
                ("REDIS_CLUSTER_NODES", "a:7000"),
                ("REDIS_PASSWORD", "secret"),
            ]),
            ["redis://:secret@a:7000"]
        );
    }

    #[test]
    fn cluster_nodes_pasted_as_urls_are_taken() {
        assert_eq!(
            cluster(&[("REDIS_CLUSTER_NODES", "redis://a:7000/,b:7001")]),
            ["redis://a:7000", "redis://b:7001"]
        );
        // rediss:// on one node is TLS for the whole cluster.
        assert_eq!(
            cluster(&[("REDIS_CLUSTER_NODES", "rediss://a:7000,b:7001")]),
            ["rediss://a:7000", "rediss://b:7001"]
        );
        assert_eq!(
            cluster(&[
                ("REDIS_CLUSTER_NODES", "redis://a:7000"),
                ("REDIS_TLS", "true")
            ]),
            ["rediss://a:7000"]
        );
    }

    #[test]
    fn bad_cluster_nodes_are_refused_naming_the_variable_and_the_node() {
        for (nodes, says) in [
            ("a:7000,,b:7001", "node 2 is empty"),
            ("a:7000,", "node 2 is empty"),
            (":7000", "no host"),
            ("[]:7000", "no host"),
            ("a.internal", "no port"),
            ("a.internal:", "port \"\""),
            ("a:0", "from 1 to 65535"),
            ("a:65536", "from 1 to 65535"),
            ("a:http", "from 1 to 65535"),
            ("::1:7000", "in brackets"),
            ("my host:7000", "spaces"),
            ("http://a:7000", "not redis:// or rediss://"),
            ("redis://a:7000/2", "only database 0"),
            (
                "redis://a:7000,rediss://b:7001",
                "mixes redis:// and rediss://",
            ),
            ("redis://:hunter2@a:7000", "REDIS_PASSWORD"),
        ] {
            let err = settings(&[("REDIS_CLUSTER_NODES", nodes)]).unwrap_err();
            assert_eq!(err.variable, "REDIS_CLUSTER_NODES", "{nodes}: {err}");
            let message = err.to_string();
            assert!(message.starts_with("REDIS_CLUSTER_NODES: "), "{message}");
            assert!(message.contains(says), "{nodes}: {message}");
            assert!(!message.contains("hunter2"), "a password echoed: {message}");
        }
    }

    #[test]
    fn redis_url_and_cluster_nodes_together_are_refused() {
        let err = settings(&[
            ("REDIS_URL", "redis://a:6379"),
            ("REDIS_CLUSTER_NODES", "a:7000"),
        ])
        .unwrap_err();
        assert_eq!(err.variable, "REDIS_CLUSTER_NODES");
        assert!(err.message.contains("not both"), "{err}");
    }

    #[test]
    fn a_prefix_with_braces_is_refused_on_a_cluster_only() {
        for prefix in ["{spywatcher}:", "spy}watcher:", "spy{watcher:"] {
            let err = settings(&[("REDIS_CLUSTER_NODES", "a:7000"), ("CACHE_PREFIX", prefix)])
                .unwrap_err();
            assert_eq!(err.variable, "CACHE_PREFIX", "{err}");
            assert!(err.message.contains("one cluster slot"), "{err}");
            // A standalone Redis has no slots: braces are just characters.
            let s = settings(&[("REDIS_URL", "redis://a:6379"), ("CACHE_PREFIX", prefix)]).unwrap();
            assert_eq!(s.cache_prefix, prefix);
        }
    }
}
