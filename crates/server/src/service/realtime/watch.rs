//! The watcher of one guild: forwards its invalidations to the local
//! subscribers, recomputes what they changed (through the cache, at most
//! once per push interval: `schedule.rs`), publishes the result, and
//! forwards the analytics updates published on the guild's channels.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;
use spywatcher_analytics::{AnalyticsKind, EventKind, GuildId};
use tokio::sync::{broadcast, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::{debug, warn};

use super::frames::{Frame, Push, render};
use super::index;
use super::publish::{AnalyticsUpdate, analytics_channels_of, now};
use super::schedule::Schedule;
use crate::service::{Spywatcher, keys};

/// The message on `cache:invalidated:{guildId}`, published by ingestion.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Invalidated {
    event: EventKind,
    guild_id: GuildId,
    timestamp: String,
}

/// The watcher task of one guild (see the module docs).
pub(super) struct GuildWatch {
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
    /// `interval`: least time between two recomputations of one analytics.
    pub(super) fn new(
        service: Spywatcher,
        guild: GuildId,
        frames: broadcast::Sender<Frame>,
        interval: Duration,
        recomputations: Arc<[AtomicU64; 6]>,
    ) -> GuildWatch {
        GuildWatch {
            service,
            guild,
            frames,
            schedule: Schedule::new(interval),
            last_sent: HashMap::new(),
            recomputations,
        }
    }

    pub(super) async fn run(mut self, listening: watch::Sender<bool>) {
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
