//! Real time (SPEC 3): the publish helpers of the service, and the hub that
//! feeds the WebSocket subscribers of a guild with its invalidations and
//! its analytics, recomputed as they change.
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

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use chrono::Utc;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use spywatcher_analytics::{AnalyticsKind, EventKind, GuildId, UserId};
use tokio::sync::{broadcast, watch};
use tokio::task::{AbortHandle, JoinSet};
use tokio::time::Instant;
use tracing::{debug, warn};

use super::{Spywatcher, keys};

/// One JSON text frame for subscribers (UTF-8).
pub type Frame = Bytes;

/// Frames a guild's watcher keeps for a subscriber that reads slowly; one
/// that falls further behind is told how many it missed.
const FEED_CAPACITY: usize = 1024;

/// How long a new subscriber waits for the watcher to listen. Longer means
/// Redis is not answering: the subscriber gets its feed anyway, and the
/// subscriber connection subscribes when Redis is back.
const LISTEN_TIMEOUT: Duration = Duration::from_secs(2);

/// `analytics:{type}:{guildId}` (SPEC 3).
pub fn analytics_channel(kind: AnalyticsKind, guild: &GuildId) -> String {
    format!("analytics:{}:{}", kind.as_str(), guild.as_str())
}

/// Every analytics channel of a guild. Exact: types contain no `:` and
/// guild ids are digits, so `*` cannot reach into another guild's channel.
fn analytics_channels_of(guild: &GuildId) -> String {
    format!("analytics:*:{}", guild.as_str())
}

/// `notifications:{userId}` (SPEC 3).
pub fn notification_channel(user: &UserId) -> String {
    format!("notifications:{}", user.as_str())
}

/// `presence:{userId}` (SPEC 3).
pub fn presence_channel(user: &UserId) -> String {
    format!("presence:{}", user.as_str())
}

/// The message on `analytics:{type}:{guildId}`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AnalyticsUpdate<T> {
    pub guild_id: GuildId,
    #[serde(rename = "type")]
    pub kind: AnalyticsKind,
    pub data: T,
    pub timestamp: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Notification<'a, T: ?Sized> {
    user_id: &'a UserId,
    notification: &'a T,
    timestamp: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PresenceUpdate<'a, T: ?Sized> {
    user_id: &'a UserId,
    presence: &'a T,
    timestamp: String,
}

/// The message on `cache:invalidated:{guildId}`, published by ingestion.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Invalidated {
    event: EventKind,
    guild_id: GuildId,
    timestamp: String,
}

/// What a subscriber receives unasked.
#[derive(Serialize)]
#[serde(
    tag = "type",
    rename_all = "lowercase",
    rename_all_fields = "camelCase"
)]
enum Push<'a> {
    Invalidated {
        event: EventKind,
        guild_id: &'a GuildId,
        timestamp: &'a str,
    },
    Analytics {
        guild_id: &'a GuildId,
        analytics: AnalyticsKind,
        data: &'a Value,
        timestamp: &'a str,
    },
    Error {
        message: &'a str,
    },
}

fn render(push: &Push<'_>) -> Frame {
    // Plain data with string keys: serializing cannot fail.
    Bytes::from(serde_json::to_vec(push).unwrap_or_default())
}

/// `{"type":"error","message":...}`, the frame of every error.
pub fn error_frame(message: &str) -> Frame {
    render(&Push::Error { message })
}

fn now() -> String {
    Utc::now().to_rfc3339()
}

/// The helpers of SPEC 3. Each returns whether the message left this
/// process (in the embedded mode: was delivered); pub/sub is
/// fire-and-forget.
impl Spywatcher {
    /// `{guildId, type, data, timestamp}` on `analytics:{type}:{guildId}`.
    pub async fn publish_analytics_update<T: Serialize + ?Sized>(
        &self,
        guild: &GuildId,
        kind: AnalyticsKind,
        data: &T,
    ) -> bool {
        let message = AnalyticsUpdate {
            guild_id: guild.clone(),
            kind,
            data,
            timestamp: now(),
        };
        self.cache
            .pubsub()
            .publish(&analytics_channel(kind, guild), &message)
            .await
    }

    /// `{userId, notification, timestamp}` on `notifications:{userId}`.
    pub async fn publish_notification<T: Serialize + ?Sized>(
        &self,
        user: &UserId,
        notification: &T,
    ) -> bool {
        let message = Notification {
            user_id: user,
            notification,
            timestamp: now(),
        };
        self.cache
            .pubsub()
            .publish(&notification_channel(user), &message)
            .await
    }

    /// `{userId, presence, timestamp}` on `presence:{userId}`.
    pub async fn publish_presence_update<T: Serialize + ?Sized>(
        &self,
        user: &UserId,
        presence: &T,
    ) -> bool {
        let message = PresenceUpdate {
            user_id: user,
            presence,
            timestamp: now(),
        };
        self.cache
            .pubsub()
            .publish(&presence_channel(user), &message)
            .await
    }
}

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
    listening: watch::Receiver<bool>,
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
        let (listening_tx, listening) = watch::channel(false);
        let task = tokio::spawn(
            GuildWatch {
                service: self.service.clone(),
                guild: guild.clone(),
                frames: frames.clone(),
                schedule: Schedule::new(self.interval),
                last_sent: HashMap::new(),
                recomputations: self.recomputations.clone(),
            }
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

/// The watcher task of one guild (see the module docs).
struct GuildWatch {
    service: Spywatcher,
    guild: GuildId,
    frames: broadcast::Sender<Frame>,
    schedule: Schedule,
    /// The data of the last analytics forwarded, per type.
    last_sent: HashMap<AnalyticsKind, Value>,
    recomputations: Arc<[AtomicU64; 6]>,
}

/// A finished recomputation: the data, when it could not be published.
type Recomputed = (AnalyticsKind, Option<Value>);

impl GuildWatch {
    async fn run(mut self, listening: watch::Sender<bool>) {
        let pubsub = self.service.cache.pubsub().clone();
        let mut invalidations = pubsub
            .subscribe(&keys::invalidated_channel(&self.guild))
            .await;
        let mut updates = pubsub.psubscribe(&analytics_channels_of(&self.guild)).await;
        // Messages published while the subscriber connection was down are
        // lost: after a reconnect everything may be stale.
        let mut reconnects = pubsub.on_reconnect();
        listening.send_replace(true);

        let mut running: JoinSet<Recomputed> = JoinSet::new();
        let mut running_kinds = HashMap::new();
        loop {
            let due = self.schedule.next_due();
            tokio::select! {
                Some(message) = invalidations.recv() => self.invalidated(&message.payload),
                Some(message) = updates.recv() => self.update(&message.payload),
                Ok(()) = reconnects.changed() => self.schedule.mark_stale(AnalyticsKind::ALL),
                Some(done) = running.join_next_with_id() => {
                    let (id, outcome) = match done {
                        Ok((id, outcome)) => (id, Some(outcome)),
                        Err(e) => (e.id(), None),
                    };
                    if let Some(kind) = running_kinds.remove(&id) {
                        self.schedule.finished(kind);
                    }
                    if let Some((kind, Some(data))) = outcome {
                        self.forward(kind, &data, &now());
                    }
                }
                () = tokio::time::sleep_until(due.unwrap_or_else(Instant::now)), if due.is_some() => {}
                else => return,
            }
            for kind in self.schedule.take_due(Instant::now()) {
                let id = running.spawn(self.recompute(kind)).id();
                running_kinds.insert(id, kind);
            }
        }
    }

    /// Forwards an invalidation, and marks what it changed as stale.
    fn invalidated(&mut self, payload: &[u8]) {
        let message: Invalidated = match serde_json::from_slice(payload) {
            Ok(message) => message,
            Err(e) => {
                warn!(guild = self.guild.as_str(), error = %e, "unreadable invalidation message");
                return;
            }
        };
        let _ = self.frames.send(render(&Push::Invalidated {
            event: message.event,
            guild_id: &message.guild_id,
            timestamp: &message.timestamp,
        }));
        self.schedule.mark_stale(message.event.invalidates());
    }

    /// Forwards an analytics update from the guild's channels.
    fn update(&mut self, payload: &[u8]) {
        match serde_json::from_slice::<AnalyticsUpdate<Value>>(payload) {
            Ok(update) if update.guild_id == self.guild => {
                self.forward(update.kind, &update.data, &update.timestamp)
            }
            Ok(_) => {}
            Err(e) => {
                warn!(guild = self.guild.as_str(), error = %e, "unreadable analytics update")
            }
        }
    }

    /// Sends `data` to the subscribers unless it is what they last got.
    fn forward(&mut self, kind: AnalyticsKind, data: &Value, timestamp: &str) {
        if self.last_sent.get(&kind) == Some(data) {
            debug!(guild = self.guild.as_str(), %kind, "unchanged analytics not pushed again");
            return;
        }
        let _ = self.frames.send(render(&Push::Analytics {
            guild_id: &self.guild,
            analytics: kind,
            data,
            timestamp,
        }));
        self.last_sent.insert(kind, data.clone());
    }

    /// Computes `kind` through the cache and publishes it.
    fn recompute(&self, kind: AnalyticsKind) -> impl Future<Output = Recomputed> + use<> {
        let service = self.service.clone();
        let guild = self.guild.clone();
        self.recomputations[index(kind)].fetch_add(1, Ordering::Relaxed);
        metrics::counter!("spywatcher_ws_recomputations_total", "type" => kind.as_str())
            .increment(1);
        async move {
            let data = match service.analytics(kind, &guild, None).await {
                Ok((json, _)) => serde_json::from_slice::<Value>(&json.bytes),
                Err(e) => {
                    warn!(guild = guild.as_str(), %kind, error = %e, "could not recompute for subscribers");
                    return (kind, None);
                }
            };
            match data {
                Ok(data) if service.publish_analytics_update(&guild, kind, &data).await => {
                    (kind, None)
                }
                Ok(data) => (kind, Some(data)),
                Err(e) => {
                    warn!(guild = guild.as_str(), %kind, error = %e, "cached analytics is not JSON");
                    (kind, None)
                }
            }
        }
    }
}

/// When each analytics of a guild is recomputed: when stale, at most once
/// per interval, never two at once (a slow older computation must not
/// finish after a newer one).
struct Schedule {
    interval: Duration,
    slots: HashMap<AnalyticsKind, Slot>,
}

#[derive(Default)]
struct Slot {
    stale: bool,
    running: bool,
    last_start: Option<Instant>,
}

impl Slot {
    /// When it may start, if it should; `None` inside: at once.
    fn due(&self, interval: Duration) -> Option<Option<Instant>> {
        (self.stale && !self.running).then(|| self.last_start.map(|last| last + interval))
    }
}

impl Schedule {
    fn new(interval: Duration) -> Schedule {
        Schedule {
            interval,
            slots: HashMap::new(),
        }
    }

    /// An invalidation changed `kinds`. One that is running read the data
    /// before this change, so it is recomputed once more after it.
    fn mark_stale(&mut self, kinds: &[AnalyticsKind]) {
        for &kind in kinds {
            self.slots.entry(kind).or_default().stale = true;
        }
    }

    /// The earliest time one waits for.
    fn next_due(&self) -> Option<Instant> {
        self.slots
            .values()
            .filter_map(|slot| slot.due(self.interval))
            .map(|at| at.unwrap_or_else(Instant::now))
            .min()
    }

    /// The analytics to recompute now, marked as running.
    fn take_due(&mut self, now: Instant) -> Vec<AnalyticsKind> {
        let mut due = Vec::new();
        for (&kind, slot) in &mut self.slots {
            if slot
                .due(self.interval)
                .is_some_and(|at| at.is_none_or(|at| at <= now))
            {
                slot.stale = false;
                slot.running = true;
                slot.last_start = Some(now);
                due.push(kind);
            }
        }
        due
    }

    fn finished(&mut self, kind: AnalyticsKind) {
        if let Some(slot) = self.slots.get_mut(&kind) {
            slot.running = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use AnalyticsKind::*;

    #[test]
    fn a_burst_of_changes_is_one_recomputation_now_and_one_per_interval() {
        let interval = Duration::from_millis(200);
        let mut schedule = Schedule::new(interval);
        let start = Instant::now();
        assert!(schedule.take_due(start).is_empty());

        // The first change after a quiet time: at once.
        schedule.mark_stale(EventKind::Presence.invalidates());
        let mut first = schedule.take_due(start);
        first.sort();
        assert_eq!(first, [Lurkers, Clients]);

        // More changes while it runs and within the interval: nothing now...
        schedule.mark_stale(&[Lurkers]);
        schedule.finished(Lurkers);
        schedule.mark_stale(&[Lurkers]);
        assert!(schedule.take_due(start + interval / 2).is_empty());
        assert_eq!(schedule.next_due(), Some(start + interval));
        // ...and one at the end of the interval for all of them.
        assert_eq!(schedule.take_due(start + interval), [Lurkers]);
        assert!(schedule.take_due(start + interval * 3).is_empty());

        // Clients is still running: its new change waits for it to finish.
        schedule.mark_stale(&[Clients]);
        assert!(schedule.take_due(start + interval * 3).is_empty());
        schedule.finished(Clients);
        assert_eq!(schedule.take_due(start + interval * 3), [Clients]);
    }

    #[test]
    fn pushes_render_as_protocol_frames() {
        let guild = GuildId::parse("42").unwrap();
        let frame = render(&Push::Invalidated {
            event: EventKind::RoleChange,
            guild_id: &guild,
            timestamp: "t",
        });
        let frame: Value = serde_json::from_slice(&frame).unwrap();
        assert_eq!(
            frame,
            serde_json::json!({"type": "invalidated", "event": "role-change", "guildId": "42", "timestamp": "t"})
        );
        let data = serde_json::json!([{ "userId": "1" }]);
        let frame = render(&Push::Analytics {
            guild_id: &guild,
            analytics: Ghosts,
            data: &data,
            timestamp: "t",
        });
        let frame: Value = serde_json::from_slice(&frame).unwrap();
        assert_eq!(
            frame,
            serde_json::json!({"type": "analytics", "guildId": "42", "analytics": "ghosts", "data": data, "timestamp": "t"})
        );
        assert_eq!(analytics_channel(Heatmap, &guild), "analytics:heatmap:42");
        assert_eq!(analytics_channels_of(&guild), "analytics:*:42");
    }
}
