//! Runs one Discord shard and stores what it maps, in batches.
//!
//! Two tasks joined by a bounded buffer (a tokio channel):
//! - the reader polls the twilight [`Shard`] (which connects, identifies,
//!   heartbeats, resumes and reconnects), maps each event with the
//!   [`Mapper`], and waits for room in the buffer: a full buffer stops the
//!   reading of the gateway (backpressure), it never drops an event;
//! - the consumer takes what the buffer holds, up to `batch_max` events or
//!   whatever arrives within `batch_wait`, and stores it through the
//!   [`EventSink`], one call per event kind, retrying a failed call with a
//!   growing pause until it succeeds: an event read from the gateway is
//!   stored once, or the process ends with it in memory.
//!
//! The shard's sequence number moves as events are read, so a resume after
//! a reconnect replays only what was not read: events waiting in the buffer
//! are not asked for twice.
//!
//! While the buffer is full the shard is not polled and sends no
//! heartbeats; if that lasts longer than Discord's heartbeat interval
//! (about 41 s) Discord drops the connection and the shard resumes once
//! there is room again, with nothing lost.

use std::future::Future;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use spywatcher_analytics::{Event, EventKind};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{error, info, warn};
use twilight_gateway::error::{ReceiveMessageError, ReceiveMessageErrorType};
use twilight_gateway::queue::{InMemoryQueue, Queue};
use twilight_gateway::{
    CloseFrame, ConfigBuilder, Event as GatewayEvent, EventTypeFlags, Intents, Shard, ShardId,
    ShardState, StreamExt as _,
};
use twilight_model::gateway::CloseCode;
use twilight_model::gateway::event::GatewayEventDeserializer;

use crate::Mapper;

/// The intents spywatcher needs (SPEC 2.5). GUILD_MEMBERS, GUILD_PRESENCES
/// and MESSAGE_CONTENT are privileged: they must be enabled for the bot in
/// the Developer Portal, or Discord closes the connection with 4014.
pub fn intents() -> Intents {
    Intents::GUILDS
        | Intents::GUILD_MEMBERS
        | Intents::GUILD_PRESENCES
        | Intents::GUILD_MESSAGES
        | Intents::GUILD_MESSAGE_TYPING
        | Intents::MESSAGE_CONTENT
}

/// The events the shard parses: those the mapping reads, and those that
/// tell the connection's state. Others are skipped unparsed.
fn wanted_events() -> EventTypeFlags {
    EventTypeFlags::READY
        | EventTypeFlags::RESUMED
        | EventTypeFlags::GATEWAY_HELLO
        | EventTypeFlags::GATEWAY_INVALIDATE_SESSION
        | EventTypeFlags::GATEWAY_RECONNECT
        | EventTypeFlags::GUILD_CREATE
        | EventTypeFlags::GUILD_DELETE
        | EventTypeFlags::CHANNEL_CREATE
        | EventTypeFlags::CHANNEL_UPDATE
        | EventTypeFlags::CHANNEL_DELETE
        | EventTypeFlags::THREAD_CREATE
        | EventTypeFlags::THREAD_UPDATE
        | EventTypeFlags::THREAD_DELETE
        | EventTypeFlags::ROLE_CREATE
        | EventTypeFlags::ROLE_UPDATE
        | EventTypeFlags::ROLE_DELETE
        | EventTypeFlags::MEMBER_ADD
        | EventTypeFlags::MEMBER_UPDATE
        | EventTypeFlags::MEMBER_REMOVE
        | EventTypeFlags::MEMBER_CHUNK
        | EventTypeFlags::MESSAGE_CREATE
        | EventTypeFlags::TYPING_START
        | EventTypeFlags::PRESENCE_UPDATE
}

/// Where the mapped events go: the service's own ingestion path (commit,
/// invalidation, publish). Called with events of one kind.
pub trait EventSink: Send + Sync + 'static {
    fn store(
        &self,
        kind: EventKind,
        events: &[Event],
    ) -> impl Future<Output = Result<(), SinkError>> + Send;
}

pub type SinkError = Box<dyn std::error::Error + Send + Sync>;

/// How often a shard may identify.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IdentifyLimit {
    /// Discord's: one identify per 5 seconds (twilight's in-memory queue).
    #[default]
    Discord,
    /// No wait: for a test gateway, where 5 s per identify is only slow.
    Unlimited,
}

/// The identify queue an [`IdentifyLimit`] stands for.
#[derive(Debug, Clone)]
enum IdentifyQueue {
    Discord(InMemoryQueue),
    Unlimited,
}

impl Queue for IdentifyQueue {
    fn enqueue(&self, shard: u32) -> oneshot::Receiver<()> {
        match self {
            IdentifyQueue::Discord(queue) => queue.enqueue(shard),
            IdentifyQueue::Unlimited => {
                let (go, wait) = oneshot::channel();
                let _ = go.send(());
                wait
            }
        }
    }
}

/// What the ingester needs to know.
#[derive(Debug, Clone)]
pub struct IngesterConfig {
    /// The bot token (`DISCORD_TOKEN`).
    pub token: String,
    /// This process's shard: id and count (`DISCORD_SHARD`).
    pub shard: (u32, u32),
    /// The gateway to connect to (`DISCORD_GATEWAY_URL`); Discord's when
    /// `None`. Resumes go to the URL READY names.
    pub gateway_url: Option<String>,
    /// Events the buffer holds before reading stops.
    pub buffer_capacity: usize,
    /// Most events per batch.
    pub batch_max: usize,
    /// How long a batch waits for more events once it has one.
    pub batch_wait: Duration,
    /// First pause after a failed store; doubled up to `retry_max`.
    pub retry_min: Duration,
    pub retry_max: Duration,
    pub identify_limit: IdentifyLimit,
    /// Store a batch's kinds at once rather than in turn. For a database
    /// whose commits wait for a disk flush and share it (PostgreSQL: a
    /// commit takes tens of milliseconds on a busy disk, and concurrent
    /// ones are flushed together); not for SQLite, which has one writer:
    /// the others wait in its busy handler, which polls with sleeps, and a
    /// burst is stored several times slower than in turn.
    pub concurrent_kinds: bool,
}

impl IngesterConfig {
    pub fn new(token: impl Into<String>) -> Self {
        IngesterConfig {
            token: token.into(),
            shard: (0, 1),
            gateway_url: None,
            buffer_capacity: 10_000,
            batch_max: 5_000,
            batch_wait: Duration::from_millis(5),
            retry_min: Duration::from_millis(50),
            retry_max: Duration::from_secs(5),
            identify_limit: IdentifyLimit::Discord,
            concurrent_kinds: false,
        }
    }
}

/// Checks a gateway URL the way the shard will use it (it appends the
/// query, and cannot report a bad URL otherwise than by panicking).
pub fn check_gateway_url(url: &str) -> Result<(), String> {
    let (scheme, _) = url
        .split_once("://")
        .ok_or_else(|| format!("{url:?} is not a URL like wss://gateway.discord.gg"))?;
    if !matches!(scheme, "ws" | "wss") {
        return Err(format!("scheme {scheme:?} is not ws:// or wss://"));
    }
    if url.contains(['?', '#']) {
        return Err(format!(
            "{url:?} has a query or fragment; give the base URL"
        ));
    }
    let uri = http::Uri::from_str(&format!("{url}/?v=10&encoding=json"))
        .map_err(|e| format!("{url:?} is not a valid URL: {e}"))?;
    if uri.host().is_none_or(str::is_empty) {
        return Err(format!("{url:?} has no host"));
    }
    Ok(())
}

/// The connection's state, for `/health/ready`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GatewayState {
    /// Connecting or identifying.
    Connecting,
    /// Identified (or resumed): events flow.
    Ready,
    /// Resuming a session on a new connection.
    Resuming,
    /// Not connected: between connections, or for good after a fatal close
    /// (see the last error).
    Disconnected,
}

impl GatewayState {
    pub const fn as_str(self) -> &'static str {
        match self {
            GatewayState::Connecting => "connecting",
            GatewayState::Ready => "ready",
            GatewayState::Resuming => "resuming",
            GatewayState::Disconnected => "disconnected",
        }
    }
}

/// The ingester's state, shared with whoever reports health.
#[derive(Debug, Clone)]
pub struct GatewayHealth(Arc<HealthInner>);

#[derive(Debug)]
struct HealthInner {
    shard: (u32, u32),
    capacity: usize,
    status: Mutex<(GatewayState, Option<String>)>,
    buffered: AtomicUsize,
    read: AtomicU64,
    stored: AtomicU64,
    reconnects: AtomicU64,
    /// True once the gateway has closed the connection for good.
    closed_for_good: watch::Sender<bool>,
}

/// A copy of [`GatewayHealth`] at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayStatus {
    pub state: GatewayState,
    pub last_error: Option<String>,
    /// `(id, count)`.
    pub shard: (u32, u32),
    /// Events waiting in the buffer, and its capacity.
    pub buffered: usize,
    pub capacity: usize,
    /// Events mapped from the gateway, and events stored.
    pub read: u64,
    pub stored: u64,
    pub reconnects: u64,
}

impl GatewayHealth {
    fn new(shard: (u32, u32), capacity: usize) -> Self {
        GatewayHealth(Arc::new(HealthInner {
            shard,
            capacity,
            status: Mutex::new((GatewayState::Connecting, None)),
            buffered: AtomicUsize::new(0),
            read: AtomicU64::new(0),
            stored: AtomicU64::new(0),
            reconnects: AtomicU64::new(0),
            closed_for_good: watch::Sender::new(false),
        }))
    }

    /// Whether the gateway has closed the connection for good (a fatal
    /// close code: a bad token, disallowed intents, a bad shard).
    pub fn is_closed_for_good(&self) -> bool {
        *self.0.closed_for_good.borrow()
    }

    /// Resolves once the gateway has closed the connection for good.
    pub async fn closed_for_good(&self) {
        let mut closed = self.0.closed_for_good.subscribe();
        // Err: the sender lives as long as `self`; never happens.
        let _ = closed.wait_for(|closed| *closed).await;
    }

    pub fn status(&self) -> GatewayStatus {
        let (state, last_error) = self.lock().clone();
        GatewayStatus {
            state,
            last_error,
            shard: self.0.shard,
            buffered: self.0.buffered.load(Ordering::Relaxed),
            capacity: self.0.capacity,
            read: self.0.read.load(Ordering::Relaxed),
            stored: self.0.stored.load(Ordering::Relaxed),
            reconnects: self.0.reconnects.load(Ordering::Relaxed),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (GatewayState, Option<String>)> {
        self.0.status.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn set_state(&self, state: GatewayState) {
        self.lock().0 = state;
    }

    fn set_error(&self, error: String) {
        self.lock().1 = Some(error);
    }

    fn set_buffered(&self, depth: usize) {
        self.0.buffered.store(depth, Ordering::Relaxed);
        metrics::gauge!("spywatcher_gateway_buffer_depth").set(depth as f64);
    }
}

/// A running ingester: a reader and a consumer task.
pub struct Ingester {
    health: GatewayHealth,
    stop: watch::Sender<bool>,
    /// `None` once awaited.
    reader: Option<JoinHandle<()>>,
    consumer: JoinHandle<()>,
}

impl Ingester {
    /// Connects the shard (in the background) and starts storing what it
    /// reads through `sink`. Must be called within a tokio runtime.
    pub fn start<S: EventSink>(config: IngesterConfig, sink: S) -> Ingester {
        let (id, count) = config.shard;
        let shard_id = ShardId::new_checked(id, count).unwrap_or(ShardId::ONE);
        let queue = match config.identify_limit {
            IdentifyLimit::Discord => IdentifyQueue::Discord(InMemoryQueue::default()),
            IdentifyLimit::Unlimited => IdentifyQueue::Unlimited,
        };
        // 250, Discord's most: a GUILD_CREATE then lists the members of
        // guilds up to that size, offline ones included, for the caches.
        let mut builder = ConfigBuilder::new(config.token.clone(), intents())
            .large_threshold(250)
            .queue(queue);
        if let Some(url) = &config.gateway_url {
            builder = builder.proxy_url(url.trim_end_matches('/').to_string());
        }
        let shard = Shard::with_config(shard_id, builder.build());
        // tokio's channel panics above its semaphore's bound; the server's
        // settings allow far less.
        let capacity = config.buffer_capacity.clamp(1, MAX_BUFFER_CAPACITY);
        let health = GatewayHealth::new((shard_id.number(), shard_id.total()), capacity);
        let (buffer, drain) = mpsc::channel(capacity);
        let (stop, stopped) = watch::channel(false);
        let reader = tokio::spawn(read(shard, buffer, health.clone(), stopped));
        let consumer = tokio::spawn(consume(drain, sink, config, health.clone()));
        Ingester {
            health,
            stop,
            reader: Some(reader),
            consumer,
        }
    }

    pub fn health(&self) -> GatewayHealth {
        self.health.clone()
    }

    /// Resolves when the reader has ended by itself: the gateway closed the
    /// connection for good (a bad token, disallowed intents).
    pub async fn closed(&mut self) {
        if let Some(reader) = &mut self.reader {
            let _ = reader.await;
            self.reader = None;
        }
    }

    /// Stops reading (closing the connection), then waits until every
    /// event read has been stored.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        if let Some(reader) = self.reader {
            let _ = reader.await;
        }
        let _ = self.consumer.await;
    }
}

/// The largest buffer the ingester makes, whatever it is asked for.
pub const MAX_BUFFER_CAPACITY: usize = 1 << 24;

/// How long a shutdown waits for the gateway to answer its close frame.
const CLOSE_BUDGET: Duration = Duration::from_secs(2);

async fn read<Q: Queue + Unpin>(
    mut shard: Shard<Q>,
    buffer: mpsc::Sender<Event>,
    health: GatewayHealth,
    mut stop: watch::Receiver<bool>,
) {
    let mut mapper = Mapper::new();
    let mut connections = 0u64;
    let mut closing: Option<Instant> = None;
    loop {
        let next = shard.next_event(wanted_events());
        let item = match closing {
            Some(deadline) => match tokio::time::timeout_at(deadline, next).await {
                Ok(item) => item,
                Err(_) => break,
            },
            None => tokio::select! {
                item = next => item,
                _ = stop.wait_for(|stop| *stop) => {
                    // A normal close ends the session: the next process
                    // identifies anew.
                    shard.close(CloseFrame::NORMAL);
                    closing = Some(Instant::now() + CLOSE_BUDGET);
                    continue;
                }
            },
        };
        let Some(item) = item else {
            // The shard closed for good (a fatal close code, logged when
            // its close frame came).
            health.set_state(GatewayState::Disconnected);
            if closing.is_none() {
                health.0.closed_for_good.send_replace(true);
            }
            break;
        };
        let event = match item {
            Ok(event) => event,
            Err(e) => {
                // A payload twilight cannot parse (skipped), or a failed
                // connection attempt (retried by the shard with a backoff).
                let error = describe(&e);
                warn!("Discord gateway: {error}");
                health.set_error(error);
                health.set_state(state_of(shard.state()));
                continue;
            }
        };
        match &event {
            GatewayEvent::GatewayHello(_) => {
                connections += 1;
                if connections > 1 {
                    metrics::counter!("spywatcher_gateway_reconnects_total").increment(1);
                    health.0.reconnects.fetch_add(1, Ordering::Relaxed);
                }
                health.set_state(state_of(shard.state()));
            }
            GatewayEvent::Ready(ready) => {
                info!(
                    shard = %shard.id(),
                    guilds = ready.guilds.len(),
                    "Discord gateway ready as {} (session {})",
                    ready.user.name,
                    ready.session_id
                );
                health.set_state(GatewayState::Ready);
            }
            GatewayEvent::Resumed => {
                info!(shard = %shard.id(), "Discord gateway session resumed");
                health.set_state(GatewayState::Ready);
            }
            GatewayEvent::GatewayReconnect => {
                info!(shard = %shard.id(), "Discord gateway asked for a reconnect; resuming");
                health.set_state(GatewayState::Resuming);
            }
            GatewayEvent::GatewayInvalidateSession(resumable) => {
                warn!(shard = %shard.id(), resumable, "Discord gateway invalidated the session");
                health.set_state(GatewayState::Disconnected);
            }
            GatewayEvent::GatewayClose(frame) => {
                let code = frame.as_ref().map(|f| f.code);
                let reason = frame
                    .as_ref()
                    .map(|f| f.reason.to_string())
                    .unwrap_or_default();
                let fatal = shard.state() == ShardState::FatallyClosed;
                let message = close_message(code, &reason);
                if fatal {
                    error!(shard = %shard.id(), code, "Discord gateway closed for good: {message}");
                } else if closing.is_none() {
                    info!(shard = %shard.id(), code, "Discord gateway connection closed: {message}; reconnecting");
                }
                if code.is_some_and(|c| !matches!(c, 1000 | 1001 | 4000)) {
                    health.set_error(message);
                }
                health.set_state(GatewayState::Disconnected);
            }
            _ => {}
        }
        if let Some(mapped) = mapper.map(&event, Utc::now()) {
            health.0.read.fetch_add(1, Ordering::Relaxed);
            // Backpressure: until there is room the gateway is not read.
            if buffer.send(mapped).await.is_err() {
                break;
            }
            health.set_buffered(buffer.max_capacity() - buffer.capacity());
        }
        // Our close answered: the shard would reconnect if polled again.
        if closing.is_some() && matches!(event, GatewayEvent::GatewayClose(_)) {
            break;
        }
    }
}

/// A receive error without the payload twilight's own message carries (a
/// GUILD_CREATE can weigh megabytes, and a message's content is not for
/// the logs): the event type and what was wrong with it.
fn describe(error: &ReceiveMessageError) -> String {
    let cause = std::error::Error::source(error)
        .map(|source| format!(": {source}"))
        .unwrap_or_default();
    match error.kind() {
        ReceiveMessageErrorType::Deserializing { event } => {
            let parsed = GatewayEventDeserializer::from_json(event);
            let op = parsed.as_ref().map(|p| p.op());
            let t = parsed.as_ref().and_then(|p| p.event_type()).unwrap_or("?");
            format!(
                "an event could not be parsed and is skipped (op {}, t {t}){cause}",
                op.map_or("?".to_string(), |op| op.to_string())
            )
        }
        ReceiveMessageErrorType::Reconnect => {
            format!("could not connect to the gateway (retrying){cause}")
        }
        _ => format!("{error}"),
    }
}

fn state_of(state: ShardState) -> GatewayState {
    match state {
        ShardState::Active => GatewayState::Ready,
        ShardState::Resuming => GatewayState::Resuming,
        ShardState::Identifying => GatewayState::Connecting,
        ShardState::Disconnected { .. } | ShardState::FatallyClosed => GatewayState::Disconnected,
    }
}

/// What an operator should read for a close code.
fn close_message(code: Option<u16>, reason: &str) -> String {
    let said = if reason.is_empty() {
        String::new()
    } else {
        format!(" ({reason})")
    };
    let Some(code) = code else {
        return "closed without a code".into();
    };
    let advice = match CloseCode::try_from(code) {
        Ok(CloseCode::DisallowedIntents) => {
            "disallowed intents: enable GUILD_PRESENCES, GUILD_MEMBERS and MESSAGE_CONTENT in the Developer Portal (your application, Bot, Privileged Gateway Intents)"
        }
        Ok(CloseCode::AuthenticationFailed) => "authentication failed: check DISCORD_TOKEN",
        Ok(CloseCode::InvalidShard) => "invalid shard: check DISCORD_SHARD",
        Ok(CloseCode::ShardingRequired) => {
            "sharding required: the bot is in too many guilds for one shard; set DISCORD_SHARD=ID/COUNT on each process"
        }
        Ok(CloseCode::InvalidIntents) => "invalid intents",
        Ok(CloseCode::InvalidApiVersion) => "invalid API version",
        Ok(_) => "",
        Err(_) => "",
    };
    if advice.is_empty() {
        format!("close code {code}{said}")
    } else {
        format!("close code {code}: {advice}{said}")
    }
}

async fn consume<S: EventSink>(
    mut drain: mpsc::Receiver<Event>,
    sink: S,
    config: IngesterConfig,
    health: GatewayHealth,
) {
    let batch_max = config.batch_max.max(1);
    let mut batch = Vec::new();
    loop {
        // Zero: the reader has ended and the buffer is empty.
        if drain.recv_many(&mut batch, batch_max).await == 0 {
            break;
        }
        if batch.len() < batch_max && !config.batch_wait.is_zero() {
            let deadline = Instant::now() + config.batch_wait;
            while batch.len() < batch_max {
                let room = batch_max - batch.len();
                match tokio::time::timeout_at(deadline, drain.recv_many(&mut batch, room)).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
            }
        }
        health.set_buffered(drain.len());
        store(&sink, std::mem::take(&mut batch), &config, &health).await;
    }
}

/// Stores a batch, one call per kind, each retried until it succeeds; the
/// kinds at once when `concurrent_kinds` is set.
async fn store<S: EventSink>(
    sink: &S,
    batch: Vec<Event>,
    config: &IngesterConfig,
    health: &GatewayHealth,
) {
    let mut by_kind: Vec<(EventKind, Vec<Event>)> =
        EventKind::ALL.iter().map(|&k| (k, Vec::new())).collect();
    for event in batch {
        let kind = event.kind();
        if let Some((_, events)) = by_kind.iter_mut().find(|(k, _)| *k == kind) {
            events.push(event);
        }
    }
    let stores = by_kind
        .iter()
        .filter(|(_, events)| !events.is_empty())
        .map(|(kind, events)| store_kind(sink, *kind, events, config, health));
    if config.concurrent_kinds {
        futures::future::join_all(stores).await;
    } else {
        for store in stores {
            store.await;
        }
    }
}

async fn store_kind<S: EventSink>(
    sink: &S,
    kind: EventKind,
    events: &[Event],
    config: &IngesterConfig,
    health: &GatewayHealth,
) {
    let mut pause = config.retry_min;
    loop {
        match sink.store(kind, events).await {
            Ok(()) => break,
            Err(e) => {
                warn!(
                    error = %e,
                    kind = kind.as_str(),
                    events = events.len(),
                    retry_in_ms = pause.as_millis() as u64,
                    "Discord gateway: could not store {} {kind} events; retrying (none is dropped): {e}",
                    events.len()
                );
                health.set_error(format!("storing events: {e}"));
                metrics::counter!("spywatcher_gateway_store_retries_total").increment(1);
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(config.retry_max.max(config.retry_min));
            }
        }
    }
    let stored = events.len() as u64;
    health.0.stored.fetch_add(stored, Ordering::Relaxed);
    metrics::counter!("spywatcher_gateway_events_total", "kind" => kind.as_str()).increment(stored);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gateway_urls_are_checked_before_the_shard_sees_them() {
        assert!(check_gateway_url("wss://gateway.discord.gg").is_ok());
        assert!(check_gateway_url("ws://127.0.0.1:9000").is_ok());
        assert!(check_gateway_url("ws://[::1]:9000/").is_ok());
        for bad in [
            "gateway.discord.gg",
            "http://127.0.0.1:9000",
            "ws://",
            "ws://host with space",
            "ws://host/?v=9",
        ] {
            assert!(check_gateway_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn close_4014_says_which_intents_to_enable() {
        let message = close_message(Some(4014), "Disallowed intent(s).");
        assert!(
            message.contains("GUILD_PRESENCES, GUILD_MEMBERS and MESSAGE_CONTENT"),
            "{message}"
        );
        assert!(message.contains("Developer Portal"), "{message}");
        assert!(close_message(Some(4004), "").contains("DISCORD_TOKEN"));
    }
}
