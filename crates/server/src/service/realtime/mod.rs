//! Real time (SPEC 3): the publish helpers of the service, and the hub that
//! feeds the WebSocket subscribers of a guild with its invalidations and
//! its analytics, recomputed as they change.
//!
//! - `publish`: the channels and messages of SPEC 3, and their helpers;
//! - this module: the hub, one watcher per guild with local subscribers,
//!   and the subscribers' feeds;
//! - `watch`: what one guild's watcher does (forward, recompute, publish);
//! - `schedule`: when a watcher recomputes an analytics;
//! - `frames`: the JSON text frames subscribers receive.
//!
//! # How a push happens
//! Ingestion publishes `cache:invalidated:{guildId}` once it has
//! invalidated; every instance receives it (through Redis, or in process
//! in the embedded mode). In each instance, one watcher task per guild with
//! local subscribers:
//! 1. forwards the invalidation to them at once;
//! 2. marks the analytics the event changes ([`EventKind::invalidates`]) as
//!    stale and recomputes each at most once per push interval
//!    (`WS_PUSH_INTERVAL_MS`): the first change after a quiet interval at
//!    once, every change within the interval together at its end. A burst of
//!    events becomes a few queries, and one query serves every subscriber of
//!    the guild in this instance. It computes through
//!    [`Spywatcher::analytics`], so the result is cached, and instances
//!    recomputing the same analytics share one computation (stampede
//!    protection);
//! 3. publishes the result with [`Spywatcher::publish_analytics_update`] on
//!    `analytics:{type}:{guildId}`, and forwards whatever arrives on that
//!    channel to its subscribers.
//!
//! Publishing instead of pushing locally keeps one path for every push,
//! whoever made it (this instance, another one, any other publisher), and
//! lets consumers outside the process see the updates. With N instances
//! watching a guild, each update arrives N times; a watcher forwards an
//! analytics only when its data differs from the last it forwarded, so a
//! subscriber sees each change once (and nothing when a recomputation
//! changed nothing). When a result cannot be published (Redis down), the
//! watcher forwards it locally.
//!
//! Pushes are rendered once per guild, as the JSON text frames the
//! WebSocket protocol sends (`routes::ws` documents the protocol).

mod frames;
mod publish;
mod schedule;
mod watch;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use spywatcher_analytics::{AnalyticsKind, GuildId};
use tokio::sync::{broadcast, watch as watch_channel};
use tokio::task::AbortHandle;
use tracing::warn;

use self::watch::GuildWatch;
use super::Spywatcher;

pub use self::frames::{Frame, error_frame};
pub use self::publish::{
    AnalyticsUpdate, analytics_channel, notification_channel, presence_channel,
};

/// Frames a guild's watcher keeps for a subscriber that reads slowly; one
/// that falls further behind is told how many it missed.
const FEED_CAPACITY: usize = 1024;

/// How long a new subscriber waits for the watcher to listen. Longer means
/// Redis is not answering: the subscriber gets its feed anyway, and the
/// subscriber connection subscribes when Redis is back.
const LISTEN_TIMEOUT: Duration = Duration::from_secs(2);

/// The hub: guild feeds for the WebSocket connections of this instance.
#[derive(Clone)]
pub struct Realtime {
    hub: Arc<Hub>,
}

struct Hub {
    service: Spywatcher,
    interval: Duration,
    guilds: Mutex<HashMap<GuildId, Watcher>>,
    connections: AtomicUsize,
    /// Per analytics, in the order of [`AnalyticsKind::ALL`].
    recomputations: Arc<[AtomicU64; 6]>,
}

/// The watcher of one guild, shared by its local subscribers.
struct Watcher {
    frames: broadcast::Sender<Frame>,
    /// True once the watcher listens to the guild's channels.
    listening: watch_channel::Receiver<bool>,
    subscribers: usize,
    task: AbortHandle,
}

impl Realtime {
    /// `interval`: least time between two recomputations of one analytics
    /// of one guild.
    pub fn new(service: Spywatcher, interval: Duration) -> Realtime {
        Realtime {
            hub: Arc::new(Hub {
                service,
                interval,
                guilds: Mutex::new(HashMap::new()),
                connections: AtomicUsize::new(0),
                recomputations: Arc::new(Default::default()),
            }),
        }
    }

    /// Counts a live connection until the guard is dropped.
    pub fn connect(&self) -> Connection {
        self.hub.connections.fetch_add(1, Ordering::Relaxed);
        metrics::gauge!("spywatcher_ws_connections").increment(1.0);
        Connection {
            hub: self.hub.clone(),
        }
    }

    /// The guild's pushes, from when this returns: it waits until the
    /// guild's watcher listens (up to [`LISTEN_TIMEOUT`]), so an event
    /// ingested afterwards is seen.
    pub async fn watch(&self, guild: &GuildId) -> Feed {
        let (frames, mut listening) = {
            let mut guilds = self.hub.lock();
            let watcher = guilds
                .entry(guild.clone())
                .or_insert_with(|| self.hub.start(guild));
            watcher.subscribers += 1;
            (watcher.frames.subscribe(), watcher.listening.clone())
        };
        // Made before waiting, so the count is released if this is dropped.
        let feed = Feed {
            frames,
            guild: guild.clone(),
            hub: self.hub.clone(),
        };
        let listens = listening.wait_for(|listening| *listening);
        if tokio::time::timeout(LISTEN_TIMEOUT, listens).await.is_err() {
            warn!(
                guild = guild.as_str(),
                "pub/sub subscription not confirmed in time; pushes start when it is"
            );
        }
        feed
    }

    /// Live WebSocket connections.
    pub fn connections(&self) -> usize {
        self.hub.connections.load(Ordering::Relaxed)
    }

    /// Guilds with at least one subscriber in this instance.
    pub fn watched_guilds(&self) -> usize {
        self.hub.lock().len()
    }

    /// Subscriptions of this instance's connections, over all guilds.
    pub fn subscriptions(&self) -> usize {
        self.hub.lock().values().map(|w| w.subscribers).sum()
    }

    /// Recomputations of `kind` for subscribers since start, in this instance.
    pub fn recomputations(&self, kind: AnalyticsKind) -> u64 {
        self.hub.recomputations[index(kind)].load(Ordering::Relaxed)
    }
}

fn index(kind: AnalyticsKind) -> usize {
    AnalyticsKind::ALL
        .iter()
        .position(|&k| k == kind)
        .unwrap_or_default()
}

impl Hub {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<GuildId, Watcher>> {
        self.guilds.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn start(&self, guild: &GuildId) -> Watcher {
        let (frames, _) = broadcast::channel(FEED_CAPACITY);
        let (listening_tx, listening) = watch_channel::channel(false);
        let task = tokio::spawn(
            GuildWatch::new(
                self.service.clone(),
                guild.clone(),
                frames.clone(),
                self.interval,
                self.recomputations.clone(),
            )
            .run(listening_tx),
        )
        .abort_handle();
        metrics::gauge!("spywatcher_ws_watched_guilds").increment(1.0);
        Watcher {
            frames,
            listening,
            subscribers: 0,
            task,
        }
    }

    /// One subscriber of `guild` less; the last one stops its watcher, which
    /// drops its pub/sub subscriptions.
    fn release(&self, guild: &GuildId) {
        let mut guilds = self.lock();
        if let Some(watcher) = guilds.get_mut(guild) {
            watcher.subscribers -= 1;
            if watcher.subscribers == 0 {
                watcher.task.abort();
                guilds.remove(guild);
                metrics::gauge!("spywatcher_ws_watched_guilds").decrement(1.0);
            }
        }
    }
}

/// A live connection, counted until dropped.
pub struct Connection {
    hub: Arc<Hub>,
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.hub.connections.fetch_sub(1, Ordering::Relaxed);
        metrics::gauge!("spywatcher_ws_connections").decrement(1.0);
    }
}

/// The pushes of one guild to one subscriber; dropping it unsubscribes.
pub struct Feed {
    frames: broadcast::Receiver<Frame>,
    guild: GuildId,
    hub: Arc<Hub>,
}

impl Feed {
    /// The next frame; a subscriber that fell behind gets an error frame
    /// saying how many it missed. `None` once the hub is gone.
    pub async fn recv(&mut self) -> Option<Frame> {
        match self.frames.recv().await {
            Ok(frame) => Some(frame),
            Err(broadcast::error::RecvError::Lagged(missed)) => Some(error_frame(&format!(
                "missed {missed} updates of guild {} (reading too slowly); re-read its analytics",
                self.guild.as_str()
            ))),
            Err(broadcast::error::RecvError::Closed) => None,
        }
    }
}

impl Drop for Feed {
    fn drop(&mut self) {
        self.hub.release(&self.guild);
    }
}
