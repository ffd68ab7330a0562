//! The hub of one instance: which connections subscribed to which guild,
//! what each guild was last sent, the schedule slots of its analytics, and
//! the connection counts the caps are checked against.
//!
//! A watched guild is an entry here: the outboxes of its subscribers, six
//! schedule slots and six hashes, a few hundred bytes. There is one watcher
//! task for the instance (`watch.rs`), started with the first watched
//! guild and stopped when none is left.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::Value;
use spywatcher_analytics::{AnalyticsKind, GuildId};
use tokio::sync::watch as watch_channel;
use tokio::task::AbortHandle;
use tracing::debug;

use super::frames::{Frame, Push, render};
use super::outbox::Outbox;
use super::schedule::Slot;
use super::{RealtimeSettings, Refused, index};
use crate::service::Spywatcher;

pub(super) struct Hub {
    pub(super) service: Spywatcher,
    pub(super) settings: RealtimeSettings,
    table: Mutex<Table>,
    connections: Mutex<Connections>,
    next_connection: AtomicU64,
    pub(super) stats: Stats,
}

/// Guarded by one lock, never held across an await.
pub(super) struct Table {
    pub(super) guilds: HashMap<GuildId, Guild>,
    /// The instance's watcher, while a guild is in the table.
    watcher: Option<WatcherHandle>,
    /// Guilds with a subscriber (the table also keeps, until its
    /// recomputation ends, a guild whose last subscriber left meanwhile).
    watched: usize,
    subscriptions: usize,
}

pub(super) struct WatcherHandle {
    pub(super) task: AbortHandle,
    /// True once the watcher listens.
    pub(super) listening: watch_channel::Receiver<bool>,
}

/// One watched guild.
#[derive(Default)]
pub(super) struct Guild {
    subscribers: Vec<Arc<Outbox>>,
    /// Per analytics, in the order of [`AnalyticsKind::ALL`].
    pub(super) slots: [Slot; 6],
    /// A hash of the data last sent, per analytics: unchanged data is not
    /// sent again (each update arrives once per watching instance).
    last_sent: [Option<u64>; 6],
}

#[derive(Default)]
struct Connections {
    total: usize,
    per_token: HashMap<&'static str, usize>,
}

/// Counters for introspection and `/metrics`.
pub(super) struct Stats {
    /// Per analytics, in the order of [`AnalyticsKind::ALL`].
    pub(super) recomputations: [AtomicU64; 6],
    recomputation_counters: Vec<metrics::Counter>,
    pub(super) running: AtomicUsize,
    pub(super) most_running: AtomicUsize,
    running_gauge: metrics::Gauge,
    pub(super) queue_gauge: metrics::Gauge,
}

impl Stats {
    fn new() -> Stats {
        Stats {
            recomputations: Default::default(),
            // Registered once: a labelled `counter!` hashes its labels on
            // every call.
            recomputation_counters: AnalyticsKind::ALL
                .iter()
                .map(|kind| {
                    metrics::counter!("spywatcher_ws_recomputations_total", "type" => kind.as_str())
                })
                .collect(),
            running: AtomicUsize::new(0),
            most_running: AtomicUsize::new(0),
            running_gauge: metrics::gauge!("spywatcher_ws_recomputations_running"),
            queue_gauge: metrics::gauge!("spywatcher_ws_recompute_queue"),
        }
    }

    pub(super) fn started(&self, kind: AnalyticsKind) {
        self.recomputations[index(kind)].fetch_add(1, Ordering::Relaxed);
        self.recomputation_counters[index(kind)].increment(1);
        let running = self.running.fetch_add(1, Ordering::Relaxed) + 1;
        self.most_running.fetch_max(running, Ordering::Relaxed);
        self.running_gauge.increment(1.0);
    }

    pub(super) fn ended(&self) {
        self.running.fetch_sub(1, Ordering::Relaxed);
        self.running_gauge.decrement(1.0);
    }
}

impl Hub {
    pub(super) fn new(service: Spywatcher, settings: RealtimeSettings) -> Hub {
        Hub {
            service,
            settings,
            table: Mutex::new(Table {
                guilds: HashMap::new(),
                watcher: None,
                watched: 0,
                subscriptions: 0,
            }),
            connections: Mutex::default(),
            next_connection: AtomicU64::new(0),
            stats: Stats::new(),
        }
    }

    pub(super) fn table(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn connections(&self) -> MutexGuard<'_, Connections> {
        self.connections.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes a connection slot for `token`, within both caps.
    pub(super) fn admit(&self, token: &'static str) -> Result<u64, Refused> {
        let mut connections = self.connections();
        let settings = &self.settings;
        if connections.total >= settings.max_connections {
            return Err(Refused::Connections(settings.max_connections));
        }
        let of_token = connections.per_token.entry(token).or_default();
        if *of_token >= settings.max_connections_per_token {
            return Err(Refused::TokenConnections(
                settings.max_connections_per_token,
            ));
        }
        *of_token += 1;
        connections.total += 1;
        metrics::gauge!("spywatcher_ws_connections").increment(1.0);
        Ok(self.next_connection.fetch_add(1, Ordering::Relaxed))
    }

    pub(super) fn leave(&self, token: &'static str) {
        let mut connections = self.connections();
        connections.total -= 1;
        if let Some(n) = connections.per_token.get_mut(token) {
            *n -= 1;
        }
        metrics::gauge!("spywatcher_ws_connections").decrement(1.0);
    }

    pub(super) fn connection_count(&self) -> usize {
        self.connections().total
    }

    /// Adds `outbox` to the guild's subscribers; returns what says when the
    /// watcher listens.
    pub(super) fn subscribe(
        self: &Arc<Self>,
        guild: &GuildId,
        outbox: &Arc<Outbox>,
    ) -> watch_channel::Receiver<bool> {
        let mut table = self.table();
        let table = &mut *table;
        let entry = table.guilds.entry(guild.clone()).or_default();
        if entry.subscribers.is_empty() {
            table.watched += 1;
            metrics::gauge!("spywatcher_ws_watched_guilds").increment(1.0);
        }
        if !entry.subscribers.iter().any(|o| o.id() == outbox.id()) {
            entry.subscribers.push(outbox.clone());
            table.subscriptions += 1;
        }
        let watcher = table
            .watcher
            .get_or_insert_with(|| super::watch::start(self.clone()));
        watcher.listening.clone()
    }

    /// Takes the connection's outbox off the guild's subscribers.
    pub(super) fn unsubscribe(&self, guild: &GuildId, outbox: u64) {
        let mut table = self.table();
        let Some(entry) = table.guilds.get_mut(guild) else {
            return;
        };
        let before = entry.subscribers.len();
        entry.subscribers.retain(|o| o.id() != outbox);
        let (removed, now_empty) = (
            before - entry.subscribers.len(),
            entry.subscribers.is_empty(),
        );
        table.subscriptions -= removed;
        if removed > 0 && now_empty {
            table.watched -= 1;
            metrics::gauge!("spywatcher_ws_watched_guilds").decrement(1.0);
            if let Some(watcher) = table.forget_if_idle(guild) {
                watcher.task.abort();
            }
        }
    }
}

impl Table {
    pub(super) fn watched(&self) -> usize {
        self.watched
    }

    pub(super) fn subscriptions(&self) -> usize {
        self.subscriptions
    }

    /// Removes the guild once it has no subscriber and nothing running; when
    /// it was the last, the watcher's handle is taken out (to stop it).
    pub(super) fn forget_if_idle(&mut self, guild: &GuildId) -> Option<WatcherHandle> {
        let idle = self
            .guilds
            .get(guild)
            .is_some_and(|g| g.subscribers.is_empty() && !g.slots.iter().any(Slot::is_running));
        if idle {
            self.guilds.remove(guild);
        }
        if self.guilds.is_empty() {
            self.watcher.take()
        } else {
            None
        }
    }
}

impl Guild {
    pub(super) fn has_subscribers(&self) -> bool {
        !self.subscribers.is_empty()
    }

    /// One frame to every subscriber, rendered once.
    pub(super) fn send(&self, guild: &GuildId, frame: &Frame) {
        for outbox in &self.subscribers {
            outbox.push(guild, frame.clone());
        }
    }

    /// Sends `data` unless it is what the subscribers last got.
    pub(super) fn forward(
        &mut self,
        guild: &GuildId,
        kind: AnalyticsKind,
        data: &Value,
        timestamp: &str,
    ) {
        let hash = xxhash_rust::xxh3::xxh3_64(&serde_json::to_vec(data).unwrap_or_default());
        if self.last_sent[index(kind)] == Some(hash) {
            debug!(guild = guild.as_str(), %kind, "unchanged analytics not pushed again");
            return;
        }
        self.last_sent[index(kind)] = Some(hash);
        let frame = render(&Push::Analytics {
            guild_id: guild,
            analytics: kind,
            data,
            timestamp,
        });
        self.send(guild, &frame);
    }
}
