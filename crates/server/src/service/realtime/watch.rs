//! The watcher of an instance: one task, two pattern subscriptions
//! (`cache:invalidated:*` and `analytics:*`) whatever the number of guilds
//! watched. It demultiplexes what arrives by guild (a map lookup; a guild
//! nobody here watches costs that lookup), forwards invalidations, queues
//! the recomputations they call for (`schedule.rs`), runs at most
//! `WS_RECOMPUTE_CONCURRENCY` of them at once, publishes their results,
//! and forwards the analytics updates that arrive.

use std::collections::HashMap;
use std::sync::Arc;

use serde::Deserialize;
use serde_json::Value;
use spywatcher_analytics::{AnalyticsKind, EventKind, GuildId};
use spywatcher_cache::Message;
use tokio::sync::watch;
use tokio::task::{Id, JoinSet};
use tokio::time::Instant;
use tracing::warn;

use super::frames::{Push, render};
use super::hub::{Hub, WatcherHandle};
use super::index;
use super::publish::{
    ALL_ANALYTICS_CHANNELS, ALL_INVALIDATION_CHANNELS, AnalyticsUpdate, guild_of_analytics,
    guild_of_invalidation, now,
};
use super::schedule::{Key, Queue};

/// The message on `cache:invalidated:{guildId}`, published by ingestion.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Invalidated {
    event: EventKind,
    guild_id: GuildId,
    timestamp: String,
}

/// A finished recomputation: its key, and its data when it could not be
/// published (so it is forwarded here only).
type Recomputed = (Key, Option<Value>);

/// Spawns the watcher; the handle says when it listens.
pub(super) fn start(hub: Arc<Hub>) -> WatcherHandle {
    let (listening_tx, listening) = watch::channel(false);
    let queue = Queue::new(hub.settings.push_interval);
    let task = tokio::spawn(
        Watcher {
            hub,
            queue,
            running: JoinSet::new(),
            running_keys: HashMap::new(),
        }
        .run(listening_tx),
    )
    .abort_handle();
    WatcherHandle { task, listening }
}

struct Watcher {
    hub: Arc<Hub>,
    queue: Queue,
    running: JoinSet<Recomputed>,
    /// What each running task computes, should it end without saying.
    running_keys: HashMap<Id, Key>,
}

impl Watcher {
    async fn run(mut self, listening: watch::Sender<bool>) {
        let pubsub = self.hub.service.cache.pubsub().clone();
        let mut invalidations = pubsub.psubscribe(ALL_INVALIDATION_CHANNELS).await;
        let mut updates = pubsub.psubscribe(ALL_ANALYTICS_CHANNELS).await;
        // Messages published while the subscriber connection was down are
        // lost: after a reconnect everything may be stale.
        let mut reconnects = pubsub.on_reconnect();
        listening.send_replace(true);

        // Ends when the table is empty: the last guild left (the hub then
        // aborts this task) or was forgotten here.
        loop {
            if self.start_ready() {
                return;
            }
            let due = self.queue.next_due();
            tokio::select! {
                Some(message) = invalidations.recv() => self.invalidated(&message),
                Some(message) = updates.recv() => self.update(&message),
                Ok(()) = reconnects.changed() => self.all_stale(),
                Some(done) = self.running.join_next_with_id(), if !self.running.is_empty() => {
                    self.hub.stats.ended();
                    let (id, data) = match done {
                        Ok((id, (_, data))) => (id, data),
                        Err(e) => (e.id(), None),
                    };
                    if let Some(key) = self.running_keys.remove(&id)
                        && self.finished(key, data)
                    {
                        return;
                    }
                }
                () = tokio::time::sleep_until(due.unwrap_or_else(Instant::now)), if due.is_some() => {}
                else => return,
            }
        }
    }

    /// Starts what is due, up to the concurrency limit; the rest waits.
    /// True when the table is empty (this task stops).
    fn start_ready(&mut self) -> bool {
        let now = Instant::now();
        while self.running.len() < self.hub.settings.recompute_concurrency {
            let Some((guild, kind)) = self.queue.next_ready(now) else {
                break;
            };
            let mut table = self.hub.table();
            let Some(entry) = table.guilds.get_mut(&guild) else {
                continue;
            };
            let watched = entry.has_subscribers();
            let slot = &mut entry.slots[index(kind)];
            if !Queue::is_queued(slot) {
                continue; // out of date: the key was queued again since
            }
            if !watched {
                Queue::drop_key(slot);
                if table.forget_if_idle(&guild).is_some() {
                    return true;
                }
                continue;
            }
            Queue::start(slot, now);
            drop(table);
            self.hub.stats.started(kind);
            let key = (guild.clone(), kind);
            let id = self
                .running
                .spawn(recompute(self.hub.clone(), guild, kind))
                .id();
            self.running_keys.insert(id, key);
        }
        self.hub.stats.queue_gauge.set(self.queue.len() as f64);
        false
    }

    /// Forwards an invalidation, and queues what it changed.
    fn invalidated(&mut self, message: &Message) {
        let Some(guild) = guild_of_invalidation(&message.channel) else {
            return;
        };
        let mut table = self.hub.table();
        let Some(entry) = table.guilds.get_mut(&guild) else {
            return;
        };
        if !entry.has_subscribers() {
            return;
        }
        let invalidated: Invalidated = match message.json() {
            Ok(invalidated) => invalidated,
            Err(e) => {
                warn!(guild = guild.as_str(), error = %e, "unreadable invalidation message");
                return;
            }
        };
        entry.send(
            &guild,
            &render(&Push::Invalidated {
                event: invalidated.event,
                guild_id: &invalidated.guild_id,
                timestamp: &invalidated.timestamp,
            }),
        );
        let now = Instant::now();
        for &kind in invalidated.event.invalidates() {
            let slot = &mut entry.slots[index(kind)];
            self.queue.mark_stale(&guild, kind, slot, now);
        }
    }

    /// Forwards an analytics update of a watched guild.
    fn update(&mut self, message: &Message) {
        let Some(guild) = guild_of_analytics(&message.channel) else {
            return;
        };
        let mut table = self.hub.table();
        let Some(entry) = table.guilds.get_mut(&guild) else {
            return;
        };
        match message.json::<AnalyticsUpdate<Value>>() {
            Ok(update) if update.guild_id == guild => {
                entry.forward(&guild, update.kind, &update.data, &update.timestamp)
            }
            Ok(_) => {}
            Err(e) => {
                warn!(guild = guild.as_str(), error = %e, "unreadable analytics update")
            }
        }
    }

    /// After a pub/sub reconnection: every analytics of every watched guild.
    fn all_stale(&mut self) {
        let now = Instant::now();
        let mut table = self.hub.table();
        for (guild, entry) in table.guilds.iter_mut() {
            if !entry.has_subscribers() {
                continue;
            }
            for &kind in AnalyticsKind::ALL {
                self.queue
                    .mark_stale(guild, kind, &mut entry.slots[index(kind)], now);
            }
        }
    }

    /// Ends a recomputation; true when the table is empty (this task stops).
    fn finished(&mut self, (guild, kind): Key, data: Option<Value>) -> bool {
        let mut table = self.hub.table();
        let Some(entry) = table.guilds.get_mut(&guild) else {
            return false;
        };
        self.queue
            .finished(&guild, kind, &mut entry.slots[index(kind)], Instant::now());
        if let Some(data) = data {
            entry.forward(&guild, kind, &data, &now());
        }
        table.forget_if_idle(&guild).is_some()
    }
}

/// Computes `kind` of `guild` through the cache (so the result is cached,
/// and instances recomputing it at once share one computation) and
/// publishes it.
async fn recompute(hub: Arc<Hub>, guild: GuildId, kind: AnalyticsKind) -> Recomputed {
    let service = &hub.service;
    let data = match service.fresh_analytics(kind, &guild, None).await {
        Ok((json, _)) => serde_json::from_slice::<Value>(&json.bytes),
        Err(e) => {
            warn!(guild = guild.as_str(), %kind, error = %e, "could not recompute for subscribers");
            return ((guild, kind), None);
        }
    };
    match data {
        Ok(data) if service.publish_analytics_update(&guild, kind, &data).await => {
            ((guild, kind), None)
        }
        Ok(data) => ((guild, kind), Some(data)),
        Err(e) => {
            warn!(guild = guild.as_str(), %kind, error = %e, "cached analytics is not JSON");
            ((guild, kind), None)
        }
    }
}
