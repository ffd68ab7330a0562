//! The ingester against the fake gateway, with a sink in memory: what it
//! sends Discord, what it stores, and what it does when the connection or
//! the sink fails.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use spywatcher_analytics::{Event, EventKind, Payload};
use spywatcher_gateway::ingester::{
    EventSink, GatewayState, IdentifyLimit, Ingester, IngesterConfig, SinkError, intents,
};
use spywatcher_testkit::gateway::{FakeGateway, payload};

const GUILD: u64 = 800_000_000_000_000_001;
const CHANNEL: u64 = 810_000_000_000_000_001;
const TOKEN: &str = "test-bot-token";
/// Generous: only a broken ingester waits this long.
const PATIENCE: Duration = Duration::from_secs(20);

/// Stores in memory; fails while `failures` is above zero.
#[derive(Clone, Default)]
struct MemorySink {
    stored: Arc<Mutex<Vec<Event>>>,
    calls: Arc<Mutex<Vec<(EventKind, usize)>>>,
    failures: Arc<AtomicUsize>,
}

impl EventSink for MemorySink {
    async fn store(&self, kind: EventKind, events: &[Event]) -> Result<(), SinkError> {
        assert!(events.iter().all(|e| e.kind() == kind), "one kind per call");
        if self
            .failures
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return Err("database is locked".into());
        }
        self.calls.lock().unwrap().push((kind, events.len()));
        self.stored.lock().unwrap().extend_from_slice(events);
        Ok(())
    }
}

impl MemorySink {
    fn contents(&self) -> Vec<String> {
        self.stored
            .lock()
            .unwrap()
            .iter()
            .map(|e| match &e.payload {
                Payload::Message { content, .. } => content.clone(),
                other => format!("{other:?}"),
            })
            .collect()
    }

    async fn wait_for_count(&self, n: usize) {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        while self.stored.lock().unwrap().len() < n {
            assert!(
                tokio::time::Instant::now() < deadline,
                "stored {} of {n}",
                self.stored.lock().unwrap().len()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

fn config(gateway: &FakeGateway) -> IngesterConfig {
    IngesterConfig {
        gateway_url: Some(gateway.url()),
        identify_limit: IdentifyLimit::Unlimited,
        retry_min: Duration::from_millis(5),
        retry_max: Duration::from_millis(50),
        ..IngesterConfig::new(TOKEN)
    }
}

fn message(n: usize) -> Value {
    payload::message_create(
        900 + n as u64,
        GUILD,
        CHANNEL,
        payload::user(830_000_000_000_000_001, "ann"),
        &format!("m{n}"),
        "2026-11-29T10:00:00.000000+00:00",
    )
}

fn contents(range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|n| format!("m{n}")).collect()
}

async fn ready(gateway: &FakeGateway, identifies: usize) {
    assert!(
        gateway
            .wait_for(PATIENCE, |s| s.identifies >= identifies)
            .await,
        "no IDENTIFY"
    );
}

#[tokio::test]
async fn identifies_with_the_token_intents_and_shard_then_stores_dispatches() {
    let gateway = FakeGateway::start().await;
    let sink = MemorySink::default();
    let ingester = Ingester::start(
        IngesterConfig {
            shard: (1, 2),
            ..config(&gateway)
        },
        sink.clone(),
    );
    ready(&gateway, 1).await;
    let identify = &gateway.identifies()[0];
    assert_eq!(identify["token"], format!("Bot {TOKEN}"));
    assert_eq!(identify["intents"], intents().bits());
    assert_eq!(identify["shard"], serde_json::json!([1, 2]));
    assert_eq!(identify["compress"], false);

    for n in 0..3 {
        gateway.dispatch("MESSAGE_CREATE", message(n));
    }
    sink.wait_for_count(3).await;
    assert_eq!(sink.contents(), contents(0..3));
    let status = ingester.health().status();
    assert_eq!(status.state, GatewayState::Ready);
    assert_eq!((status.read, status.stored, status.shard), (3, 3, (1, 2)));
    ingester.shutdown().await;
}

#[tokio::test]
async fn a_reconnect_resumes_and_loses_or_repeats_nothing() {
    let gateway = FakeGateway::start().await;
    let sink = MemorySink::default();
    let ingester = Ingester::start(config(&gateway), sink.clone());
    ready(&gateway, 1).await;
    for n in 0..50 {
        gateway.dispatch("MESSAGE_CREATE", message(n));
    }
    gateway.reconnect();
    // Sent while the client is between connections: replayed on resume.
    for n in 50..100 {
        gateway.dispatch("MESSAGE_CREATE", message(n));
    }
    assert!(
        gateway.wait_for(PATIENCE, |s| s.resumes >= 1).await,
        "no RESUME"
    );
    for n in 100..150 {
        gateway.dispatch("MESSAGE_CREATE", message(n));
    }
    sink.wait_for_count(150).await;
    let status = ingester.health().status();
    assert_eq!(status.reconnects, 1);
    assert_eq!(status.state, GatewayState::Ready);
    // Everything read is stored once the shutdown returns: a duplicate
    // would be here too.
    ingester.shutdown().await;
    assert_eq!(sink.contents(), contents(0..150));
    assert_eq!(
        gateway.identifies().len(),
        1,
        "a resume, not a new IDENTIFY"
    );
    let resume = &gateway.resumes()[0];
    assert_eq!(resume["session_id"], "fake-session-1");
    assert_eq!(resume["token"], format!("Bot {TOKEN}"));
}

#[tokio::test]
async fn an_invalid_session_makes_it_identify_again() {
    let gateway = FakeGateway::start().await;
    let sink = MemorySink::default();
    let ingester = Ingester::start(config(&gateway), sink.clone());
    ready(&gateway, 1).await;
    gateway.dispatch("MESSAGE_CREATE", message(0));
    sink.wait_for_count(1).await;
    gateway.invalidate_session(false);
    ready(&gateway, 2).await;
    gateway.dispatch("MESSAGE_CREATE", message(1));
    sink.wait_for_count(2).await;
    assert_eq!(sink.contents(), contents(0..2));
    assert!(gateway.resumes().is_empty());
    ingester.shutdown().await;
}

#[tokio::test]
async fn a_failing_sink_fills_the_buffer_stops_reading_then_drains_everything() {
    let gateway = FakeGateway::start().await;
    let sink = MemorySink::default();
    sink.failures.store(usize::MAX, Ordering::SeqCst);
    let capacity = 8;
    let ingester = Ingester::start(
        IngesterConfig {
            buffer_capacity: capacity,
            batch_max: 4,
            ..config(&gateway)
        },
        sink.clone(),
    );
    ready(&gateway, 1).await;
    for n in 0..100 {
        gateway.dispatch("MESSAGE_CREATE", message(n));
    }
    let health = ingester.health();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while health.status().buffered < capacity {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{:?}",
            health.status()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Full: the reader waits for room. It has read one batch (held by the
    // consumer), the buffer, and the event it is waiting to buffer.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let status = health.status();
    assert!(status.read <= (4 + capacity + 1) as u64, "{status:?}");
    assert_eq!(status.stored, 0);
    assert!(
        status
            .last_error
            .as_deref()
            .unwrap_or_default()
            .contains("database is locked")
    );

    sink.failures.store(0, Ordering::SeqCst);
    sink.wait_for_count(100).await;
    assert_eq!(sink.contents(), contents(0..100));
    assert_eq!(health.status().buffered, 0);
    ingester.shutdown().await;
}

#[tokio::test]
async fn batches_hold_one_kind_each() {
    let gateway = FakeGateway::start().await;
    let sink = MemorySink::default();
    let ingester = Ingester::start(
        IngesterConfig {
            batch_wait: Duration::from_millis(200),
            ..config(&gateway)
        },
        sink.clone(),
    );
    ready(&gateway, 1).await;
    let ann = 830_000_000_000_000_001;
    for n in 0..10 {
        gateway.dispatch("MESSAGE_CREATE", message(n));
        let typing = payload::typing_start(GUILD, CHANNEL, ann, None, 1_790_000_000 + n as u64);
        gateway.dispatch("TYPING_START", typing);
    }
    sink.wait_for_count(20).await;
    let calls = sink.calls.lock().unwrap().clone();
    let per_kind = |kind| {
        calls
            .iter()
            .filter(|(k, _)| *k == kind)
            .map(|(_, n)| n)
            .sum::<usize>()
    };
    assert_eq!(per_kind(EventKind::Message), 10);
    assert_eq!(per_kind(EventKind::Typing), 10);
    assert!(calls.len() < 20, "batched: {calls:?}");
    ingester.shutdown().await;
}

#[tokio::test]
async fn close_4014_is_fatal_and_names_the_intents_to_enable() {
    let gateway = FakeGateway::start().await;
    let mut ingester = Ingester::start(config(&gateway), MemorySink::default());
    ready(&gateway, 1).await;
    gateway.close(4014, "Disallowed intent(s).");
    tokio::time::timeout(PATIENCE, ingester.closed())
        .await
        .expect("the reader ends on a fatal close");
    let status = ingester.health().status();
    assert_eq!(status.state, GatewayState::Disconnected);
    let error = status.last_error.unwrap_or_default();
    assert!(
        error.contains("4014")
            && error.contains("GUILD_PRESENCES, GUILD_MEMBERS and MESSAGE_CONTENT"),
        "{error}"
    );
    assert_eq!(
        gateway.identifies().len(),
        1,
        "no reconnect after a fatal close"
    );
    ingester.shutdown().await;
}

#[tokio::test]
async fn an_event_twilight_cannot_parse_is_skipped_and_reported_without_its_payload() {
    let gateway = FakeGateway::start().await;
    let sink = MemorySink::default();
    let ingester = Ingester::start(config(&gateway), sink.clone());
    ready(&gateway, 1).await;
    let mut broken = message(0);
    broken["content"] = Value::from("a secret the logs must not hold");
    broken.as_object_mut().unwrap().remove("author");
    gateway.dispatch("MESSAGE_CREATE", broken);
    gateway.dispatch("MESSAGE_CREATE", message(1));
    sink.wait_for_count(1).await;
    assert_eq!(sink.contents(), contents(1..2));
    let error = ingester.health().status().last_error.unwrap_or_default();
    assert!(
        error.contains("MESSAGE_CREATE") && error.contains("author"),
        "{error}"
    );
    assert!(!error.contains("secret"), "{error}");
    ingester.shutdown().await;
}

#[tokio::test]
async fn kinds_stored_at_once_lose_nothing_when_one_fails() {
    let gateway = FakeGateway::start().await;
    let sink = MemorySink::default();
    sink.failures.store(3, Ordering::SeqCst);
    let ingester = Ingester::start(
        IngesterConfig {
            concurrent_kinds: true,
            ..config(&gateway)
        },
        sink.clone(),
    );
    ready(&gateway, 1).await;
    let ann = 830_000_000_000_000_001;
    for n in 0..30 {
        gateway.dispatch("MESSAGE_CREATE", message(n));
        let typing = payload::typing_start(GUILD, CHANNEL, ann, None, 1_790_000_000 + n as u64);
        gateway.dispatch("TYPING_START", typing);
    }
    sink.wait_for_count(60).await;
    ingester.shutdown().await;
    let stored = sink.stored.lock().unwrap().clone();
    assert_eq!(stored.len(), 60, "none twice");
    let messages: Vec<String> = sink
        .contents()
        .into_iter()
        .filter(|c| c.starts_with('m'))
        .collect();
    assert_eq!(messages, contents(0..30), "in order within a kind");
}
