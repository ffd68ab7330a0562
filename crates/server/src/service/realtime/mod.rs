//! Real time (SPEC 3): the publish helpers of the service, and the hub that
//! feeds the WebSocket subscribers of a guild with its invalidations and
//! its analytics, recomputed as they change.
//!
//! - `publish`: the channels and messages of SPEC 3, and their helpers;
//! - this module: the public face ([`Realtime`], its settings and refusals);
//! - `hub`: who subscribed to which guild, what each guild was last sent,
//!   the connection counts the caps are checked against;
//! - `connection`: one WebSocket connection's subscriptions and inbox;
//! - `outbox`: a connection's bounded queue of frames;
//! - `watch`: the instance's one watcher task (demultiplex, forward,
//!   recompute, publish);
//! - `schedule`: when an analytics is recomputed, and how many at once;
//! - `frames`: the JSON text frames subscribers receive.
//!
//! # How a push happens
//! Ingestion publishes `cache:invalidated:{guildId}` once it has
//! invalidated; every instance receives it (through Redis, or in process
//! in the embedded mode). Each instance with at least one watched guild has
//! one watcher task, with two pattern subscriptions whatever the number of
//! guilds watched: `cache:invalidated:*` and `analytics:*`. What arrives is
//! demultiplexed by the guild in its channel name, with a map lookup in the
//! hub; a guild nobody watches here costs that lookup. For a watched guild,
//! the watcher:
//! 1. forwards the invalidation to its subscribers at once;
//! 2. marks the analytics the event changes ([`EventKind::invalidates`]) as
//!    stale and queues each for recomputation, at most once per push
//!    interval (`WS_PUSH_INTERVAL_MS`) and never two at once for one guild
//!    and analytics: the first change after a quiet interval at once, every
//!    change within the interval together at its end. A burst of events
//!    becomes a few queries, and one query serves every subscriber of the
//!    guild in this instance. Over all guilds, at most
//!    `WS_RECOMPUTE_CONCURRENCY` recomputations run at once; the rest wait
//!    in the queue, in the order they became due, so a burst over thousands
//!    of guilds leaves the runtime and the database pool to the HTTP
//!    routes. It computes through [`Spywatcher::analytics`], so the result
//!    is cached, and instances recomputing the same analytics share one
//!    computation (stampede protection);
//! 3. publishes the result with [`Spywatcher::publish_analytics_update`] on
//!    `analytics:{type}:{guildId}`, and forwards whatever arrives on those
//!    channels for a watched guild to its subscribers.
//!
//! Publishing instead of pushing locally keeps one path for every push,
//! whoever made it (this instance, another one, any other publisher), and
//! lets consumers outside the process see the updates. With N instances
//! watching a guild, each update arrives N times; the hub forwards an
//! analytics only when its data differs from the last it forwarded (it
//! keeps a hash of it), so a subscriber sees each change once (and nothing
//! when a recomputation changed nothing). When a result cannot be
//! published (Redis down), the watcher forwards it locally.
//!
//! A push is rendered once per guild, as the JSON text frame the WebSocket
//! protocol sends (`routes::ws` documents the protocol), and handed to each
//! subscriber's outbox: one bounded queue per connection, which the watcher
//! never waits on. A connection that falls behind misses updates and is
//! told how many. An idle watched guild is an entry in the hub's map: its
//! subscribers' outboxes, and a few hundred bytes of schedule and hashes.
//!
//! # Caps
//! Connections per instance (`WS_MAX_CONNECTIONS`) and per token
//! (`WS_MAX_CONNECTIONS_PER_TOKEN`) are taken before the upgrade
//! ([`Realtime::connect`]), guilds per connection (`WS_MAX_SUBSCRIPTIONS`)
//! on subscribe. Every refusal is counted in
//! `spywatcher_ws_refused_total{reason}`.

mod connection;
mod frames;
mod hub;
mod outbox;
mod publish;
mod schedule;
mod watch;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use spywatcher_analytics::AnalyticsKind;
#[cfg(doc)]
use spywatcher_analytics::EventKind;

use self::hub::Hub;
use super::Spywatcher;

pub use self::connection::Connection;
pub use self::frames::{Frame, error_frame};
pub use self::publish::{
    AnalyticsUpdate, analytics_channel, notification_channel, presence_channel,
};

/// The knobs of real time (`WS_*`).
#[derive(Debug, Clone)]
pub struct RealtimeSettings {
    /// Least time between two recomputations of one analytics of one guild.
    pub push_interval: Duration,
    /// Most recomputations for subscribers at once, over every guild.
    pub recompute_concurrency: usize,
    pub max_connections: usize,
    pub max_connections_per_token: usize,
    /// Guilds per connection.
    pub max_subscriptions: usize,
}

/// Why a connection or a subscription is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("this instance serves at most {0} WebSocket connections; retry later")]
    Connections(usize),
    #[error("at most {0} WebSocket connections per token")]
    TokenConnections(usize),
    #[error("at most {0} guilds per connection")]
    Subscriptions(usize),
}

impl Refused {
    /// Its `reason` label in `spywatcher_ws_refused_total`.
    pub fn reason(&self) -> &'static str {
        match self {
            Refused::Connections(_) => "connections",
            Refused::TokenConnections(_) => "token_connections",
            Refused::Subscriptions(_) => "subscriptions",
        }
    }
}

/// Counts a refusal in `spywatcher_ws_refused_total{reason}`; the route
/// counts its own (`handshake_rate`, `message_size`) here too.
pub fn count_refusal(reason: &'static str) {
    metrics::counter!("spywatcher_ws_refused_total", "reason" => reason).increment(1);
}

/// The hub: guild feeds for the WebSocket connections of this instance.
#[derive(Clone)]
pub struct Realtime {
    hub: Arc<Hub>,
}

impl Realtime {
    pub fn new(service: Spywatcher, settings: RealtimeSettings) -> Realtime {
        Realtime {
            hub: Arc::new(Hub::new(service, settings)),
        }
    }

    /// A connection for a client of `token` (the token's role name), within
    /// the caps; counted until dropped.
    pub fn connect(&self, token: &'static str) -> Result<Connection, Refused> {
        match self.hub.admit(token) {
            Ok(id) => Ok(Connection::new(self.hub.clone(), token, id)),
            Err(refused) => {
                count_refusal(refused.reason());
                Err(refused)
            }
        }
    }

    /// Live WebSocket connections.
    pub fn connections(&self) -> usize {
        self.hub.connection_count()
    }

    /// Guilds with at least one subscriber in this instance.
    pub fn watched_guilds(&self) -> usize {
        self.hub.table().watched()
    }

    /// Subscriptions of this instance's connections, over all guilds.
    pub fn subscriptions(&self) -> usize {
        self.hub.table().subscriptions()
    }

    /// Recomputations of `kind` for subscribers since start, in this instance.
    pub fn recomputations(&self, kind: AnalyticsKind) -> u64 {
        self.hub.stats.recomputations[index(kind)].load(Ordering::Relaxed)
    }

    /// Recomputations running now.
    pub fn recomputations_running(&self) -> usize {
        self.hub.stats.running.load(Ordering::Relaxed)
    }

    /// The most recomputations that ran at once since start.
    pub fn most_recomputations_at_once(&self) -> usize {
        self.hub.stats.most_running.load(Ordering::Relaxed)
    }
}

fn index(kind: AnalyticsKind) -> usize {
    AnalyticsKind::ALL
        .iter()
        .position(|&k| k == kind)
        .unwrap_or_default()
}
