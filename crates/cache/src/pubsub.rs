//! Publish/subscribe (SPEC 3): on Redis through one dedicated subscriber
//! connection, or in process for the embedded mode.
//!
//! Channels are named without the prefix (`cache:invalidated:123`); on the
//! wire they live under `<prefix>pubsub:`. Every [`Subscription`] is a
//! handler of its own: several per channel or pattern are fine, and the
//! Redis subscription is made by the first and dropped with the last.
//!
//! The Redis side uses a RESP3 connection whose client re-subscribes by
//! itself after a reconnect. Messages published while it was disconnected
//! are lost (Redis pub/sub is fire-and-forget), so every reconnect is also
//! announced to [`PubSub::on_reconnect`] listeners: the L1 tier empties
//! itself then.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use bytes::Bytes;
use redis::aio::ConnectionManager;
use redis::{PushInfo, PushKind, Value};
use serde::Serialize;
use tokio::sync::{mpsc, watch};
use tracing::{info, warn};

use crate::breaker::Breaker;

/// One message: its channel (without the prefix) and JSON payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub channel: String,
    pub payload: Bytes,
}

impl Message {
    /// The payload, deserialized.
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_slice(&self.payload)
    }
}

/// Messages of one channel or pattern, until dropped.
pub struct Subscription {
    rx: mpsc::UnboundedReceiver<Message>,
    _route: RouteGuard,
}

impl Subscription {
    /// The next message; `None` once the pub/sub service is gone.
    pub async fn recv(&mut self) -> Option<Message> {
        self.rx.recv().await
    }

    /// A message if one is waiting, without waiting.
    pub fn try_recv(&mut self) -> Option<Message> {
        self.rx.try_recv().ok()
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum Kind {
    Channel,
    Pattern,
}

type Sender = mpsc::UnboundedSender<Message>;

#[derive(Default)]
struct Routes {
    next_id: u64,
    /// (kind, full name on the wire) -> handlers
    handlers: HashMap<(Kind, String), Vec<(u64, Sender)>>,
    /// Compiled patterns, for the in-process mode.
    matchers: HashMap<String, globset::GlobMatcher>,
}

pub(crate) struct Inner {
    prefix: String,
    routes: Mutex<Routes>,
    redis: Option<ConnectionManager>,
    reconnects: watch::Sender<u64>,
    op_timeout: Duration,
    published: AtomicU64,
    /// The cache's breaker: while Redis is skipped, so are publishes.
    breaker: Option<Arc<Breaker>>,
}

/// The pub/sub service of a [`Cache`](crate::Cache).
#[derive(Clone)]
pub struct PubSub {
    inner: Arc<Inner>,
}

impl PubSub {
    /// In process only (embedded mode).
    pub(crate) fn local(prefix: &str) -> PubSub {
        PubSub {
            inner: Arc::new(Inner {
                prefix: format!("{prefix}pubsub:"),
                routes: Mutex::new(Routes::default()),
                redis: None,
                reconnects: watch::channel(0).0,
                op_timeout: Duration::from_millis(250),
                published: AtomicU64::new(0),
                breaker: None,
            }),
        }
    }

    /// On Redis: a dedicated RESP3 connection for subscriptions, which
    /// re-subscribes by itself after a reconnect.
    pub(crate) fn redis(
        url: &str,
        prefix: &str,
        connect_timeout: Duration,
        op_timeout: Duration,
        breaker: Arc<Breaker>,
    ) -> Result<PubSub, redis::RedisError> {
        let separator = if url.contains('?') { '&' } else { '?' };
        let client = redis::Client::open(format!("{url}{separator}protocol=resp3"))?;
        let (tx, rx) = mpsc::unbounded_channel::<PushInfo>();
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(connect_timeout))
            .set_response_timeout(None)
            .set_number_of_retries(usize::MAX)
            .set_min_delay(Duration::from_millis(20))
            .set_max_delay(Duration::from_millis(500))
            .set_push_sender(tx)
            .set_automatic_resubscription();
        let conn = ConnectionManager::new_lazy_with_config(client, config)?;
        let inner = Arc::new(Inner {
            prefix: format!("{prefix}pubsub:"),
            routes: Mutex::new(Routes::default()),
            redis: Some(conn),
            reconnects: watch::channel(0).0,
            op_timeout,
            published: AtomicU64::new(0),
            breaker: Some(breaker),
        });
        tokio::spawn(dispatch(Arc::downgrade(&inner), rx));
        Ok(PubSub { inner })
    }

    /// The full channel name on the wire.
    pub fn wire_name(&self, channel: &str) -> String {
        format!("{}{channel}", self.inner.prefix)
    }

    /// Publishes `message` as JSON. Fire-and-forget, as Redis pub/sub is:
    /// returns whether it left this process (in process: was delivered).
    pub async fn publish<T: Serialize + ?Sized>(&self, channel: &str, message: &T) -> bool {
        match serde_json::to_vec(message) {
            Ok(payload) => self.publish_bytes(channel, Bytes::from(payload)).await,
            Err(e) => {
                warn!(channel, error = %e, "message not published: not serializable");
                false
            }
        }
    }

    pub async fn publish_bytes(&self, channel: &str, payload: Bytes) -> bool {
        let wire = self.wire_name(channel);
        self.inner.published.fetch_add(1, Ordering::Relaxed);
        match &self.inner.redis {
            None => {
                self.inner.deliver_local(&wire, &payload);
                true
            }
            Some(_) if self.inner.breaker.as_ref().is_some_and(|b| b.is_open()) => false,
            Some(conn) => {
                let mut conn = conn.clone();
                let mut command = redis::cmd("PUBLISH");
                command.arg(&wire).arg(payload.as_ref());
                let publish = command.query_async::<u64>(&mut conn);
                matches!(
                    tokio::time::timeout(self.inner.op_timeout, publish).await,
                    Ok(Ok(_))
                )
            }
        }
    }

    /// Messages published on `channel` from now on.
    pub async fn subscribe(&self, channel: &str) -> Subscription {
        self.add_route(Kind::Channel, self.wire_name(channel)).await
    }

    /// Messages of every channel matching the Redis-style glob `pattern`.
    pub async fn psubscribe(&self, pattern: &str) -> Subscription {
        self.add_route(Kind::Pattern, self.wire_name(pattern)).await
    }

    /// Changes each time the subscriber connection had to reconnect (and so
    /// may have missed messages).
    pub fn on_reconnect(&self) -> watch::Receiver<u64> {
        self.inner.reconnects.subscribe()
    }

    async fn add_route(&self, kind: Kind, wire: String) -> Subscription {
        let (tx, rx) = mpsc::unbounded_channel();
        let (id, first) = {
            let mut routes = self.inner.lock();
            routes.next_id += 1;
            let id = routes.next_id;
            if kind == Kind::Pattern
                && !routes.matchers.contains_key(&wire)
                && let Some(matcher) = crate::glob::redis_glob(&wire)
            {
                routes.matchers.insert(wire.clone(), matcher);
            }
            let handlers = routes.handlers.entry((kind, wire.clone())).or_default();
            handlers.push((id, tx));
            (id, handlers.len() == 1)
        };
        if first && let Some(conn) = &self.inner.redis {
            let mut conn = conn.clone();
            let subscribed = match kind {
                Kind::Channel => conn.subscribe(&wire).await,
                Kind::Pattern => conn.psubscribe(&wire).await,
            };
            if let Err(e) = subscribed {
                // The connection re-subscribes what it tracks when it comes back.
                warn!(channel = wire, error = %e, "subscribe failed; retried on reconnect");
            }
        }
        Subscription {
            rx,
            _route: RouteGuard {
                inner: Arc::downgrade(&self.inner),
                kind,
                wire,
                id,
            },
        }
    }
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, Routes> {
        self.routes.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// In-process delivery: to the channel's handlers and matching patterns'.
    fn deliver_local(&self, wire: &str, payload: &Bytes) {
        let routes = self.lock();
        let channel = wire.strip_prefix(&self.prefix).unwrap_or(wire).to_string();
        let message = Message {
            channel,
            payload: payload.clone(),
        };
        if let Some(handlers) = routes.handlers.get(&(Kind::Channel, wire.to_string())) {
            for (_, tx) in handlers {
                let _ = tx.send(message.clone());
            }
        }
        for (pattern, matcher) in &routes.matchers {
            if matcher.is_match(wire)
                && let Some(handlers) = routes.handlers.get(&(Kind::Pattern, pattern.clone()))
            {
                for (_, tx) in handlers {
                    let _ = tx.send(message.clone());
                }
            }
        }
    }

    /// Delivery of a message that arrived from Redis.
    fn deliver(&self, kind: Kind, route: &str, wire_channel: &str, payload: Bytes) {
        let routes = self.lock();
        let Some(handlers) = routes.handlers.get(&(kind, route.to_string())) else {
            return;
        };
        let message = Message {
            channel: wire_channel
                .strip_prefix(&self.prefix)
                .unwrap_or(wire_channel)
                .to_string(),
            payload,
        };
        for (_, tx) in handlers {
            let _ = tx.send(message.clone());
        }
    }
}

/// Removes its handler when the subscription is dropped, and the Redis
/// subscription with the last handler.
struct RouteGuard {
    inner: Weak<Inner>,
    kind: Kind,
    wire: String,
    id: u64,
}

impl Drop for RouteGuard {
    fn drop(&mut self) {
        let Some(inner) = self.inner.upgrade() else {
            return;
        };
        let last = {
            let mut routes = inner.lock();
            let key = (self.kind, self.wire.clone());
            let Some(handlers) = routes.handlers.get_mut(&key) else {
                return;
            };
            handlers.retain(|(id, _)| *id != self.id);
            let last = handlers.is_empty();
            if last {
                routes.handlers.remove(&key);
                routes.matchers.remove(&self.wire);
            }
            last
        };
        if last
            && let Some(conn) = inner.redis.clone()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            let (kind, wire) = (self.kind, self.wire.clone());
            runtime.spawn(async move {
                let mut conn = conn;
                let _ = match kind {
                    Kind::Channel => conn.unsubscribe(&wire).await,
                    Kind::Pattern => conn.punsubscribe(&wire).await,
                };
            });
        }
    }
}

/// Routes pushes from the subscriber connection to the handlers.
async fn dispatch(inner: Weak<Inner>, mut pushes: mpsc::UnboundedReceiver<PushInfo>) {
    while let Some(push) = pushes.recv().await {
        let Some(inner) = inner.upgrade() else {
            return;
        };
        let text = |v: &Value| -> Option<String> {
            match v {
                Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
                Value::SimpleString(s) => Some(s.clone()),
                _ => None,
            }
        };
        let bytes = |v: &Value| -> Bytes {
            match v {
                Value::BulkString(b) => Bytes::from(b.clone()),
                Value::SimpleString(s) => Bytes::from(s.clone().into_bytes()),
                _ => Bytes::new(),
            }
        };
        match (push.kind, push.data.as_slice()) {
            (PushKind::Message, [channel, payload]) => {
                if let Some(channel) = text(channel) {
                    inner.deliver(Kind::Channel, &channel, &channel, bytes(payload));
                }
            }
            (PushKind::PMessage, [pattern, channel, payload]) => {
                if let (Some(pattern), Some(channel)) = (text(pattern), text(channel)) {
                    inner.deliver(Kind::Pattern, &pattern, &channel, bytes(payload));
                }
            }
            (PushKind::Disconnection, _) => {
                info!("pub/sub connection lost: reconnecting and re-subscribing");
                inner.reconnects.send_modify(|n| *n += 1);
            }
            _ => {}
        }
    }
}
