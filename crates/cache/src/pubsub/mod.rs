//! Publish/subscribe (SPEC 3): on Redis (standalone or a cluster) through
//! one dedicated subscriber connection, or in process for the embedded mode.
//!
//! Channels are named without the prefix (`cache:invalidated:123`); on the
//! wire they live under `<prefix>pubsub:`. Every [`Subscription`] is a
//! handler of its own: several per channel or pattern are fine, and the
//! Redis subscription is made by the first and dropped with the last.
//!
//! On Redis, one task owns the subscriber connection (`subscriber.rs`): it
//! subscribes to whatever has a handler, again on every new connection, and
//! delivers messages one at a time. On a cluster that connection goes to one
//! node, and to another when that node is lost: classic pub/sub crosses the
//! cluster bus, so one node hears every channel (sharded pub/sub has no
//! patterns). Where PUBLISH goes is `publisher.rs`.
//!
//! Messages published while the subscriber was not subscribed are lost
//! (Redis pub/sub is fire-and-forget), so once it is subscribed again after
//! such a gap, and before it delivers anything from the new connection, it
//! says so to [`PubSub::on_reconnect`] listeners (and inline handlers): the
//! L1 tier empties itself then, when no later message can be missed any
//! more.
//!
//! Inside the crate, an inline handler (`subscribe_inline`) is awaited on
//! each of its messages before the next message goes to anyone: the L1
//! invalidation bus is applied before a later message (say
//! `cache:invalidated:{guild}`, published after it) reaches its listeners.

mod publisher;
mod routes;
mod subscriber;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use serde::Serialize;
use tokio::sync::{mpsc, oneshot, watch};
use tracing::warn;

use crate::breaker::Breaker;
use crate::config::{Backend, CacheConfig};
use crate::error::ConfigError;
use crate::testing::Hooks;
use publisher::Publisher;
pub use routes::RouteCounts;
use routes::{Handler, Kind, Route, Router};
use subscriber::{Change, Subscriber};

#[cfg(test)]
mod tests;

/// The least time the server has to confirm a (un)subscription before the
/// subscriber connection is taken for dead.
const MIN_CONFIRM_TIMEOUT: Duration = Duration::from_secs(1);

/// Messages per Redis pipeline in [`PubSub::publish_all`]: a round trip
/// each, well within a call's timeout.
pub const PUBLISH_PIPELINE: usize = 1000;

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

/// What an inline handler is called with.
pub(crate) enum InlineEvent {
    Message(Message),
    /// Subscribed again after a gap: messages may have been lost.
    Resubscribed,
}

/// Awaited by the subscriber before it delivers anything else, so it must
/// not wait on this pub/sub service itself.
pub(crate) type InlineHandler = Arc<dyn Fn(InlineEvent) -> BoxFuture<'static, ()> + Send + Sync>;

/// An inline handler's registration, until dropped.
pub(crate) struct InlineSubscription {
    _route: RouteGuard,
}

struct RedisSide {
    publisher: Publisher,
    /// To the subscriber task; it stops when this is dropped.
    changes: mpsc::UnboundedSender<Change>,
}

pub(crate) struct Inner {
    router: Arc<Router>,
    redis: Option<RedisSide>,
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
                router: Arc::new(Router::new(format!("{prefix}pubsub:"))),
                redis: None,
                op_timeout: Duration::from_millis(250),
                published: AtomicU64::new(0),
                breaker: None,
            }),
        }
    }

    /// On a standalone Redis.
    pub(crate) fn redis(
        url: &str,
        prefix: &str,
        connect_timeout: Duration,
        op_timeout: Duration,
        breaker: Arc<Breaker>,
        hooks: Arc<Hooks>,
    ) -> Result<PubSub, redis::RedisError> {
        let client = redis::Client::open(url)?;
        let publisher = Publisher::standalone(client.clone(), connect_timeout)?;
        let nodes = vec![client];
        Ok(Self::on_redis(
            prefix,
            publisher,
            nodes,
            connect_timeout,
            op_timeout,
            breaker,
            hooks,
        ))
    }

    /// On a Redis Cluster reached through `nodes` (URLs, some of which may
    /// be down): the subscriber starts on the first and moves along the list
    /// whenever it loses its node.
    pub(crate) fn redis_cluster(
        nodes: &[String],
        prefix: &str,
        connect_timeout: Duration,
        op_timeout: Duration,
        breaker: Arc<Breaker>,
        hooks: Arc<Hooks>,
    ) -> Result<PubSub, redis::RedisError> {
        if nodes.is_empty() {
            return Err(redis::RedisError::from((
                redis::ErrorKind::InvalidClientConfig,
                "Redis Cluster pub/sub needs at least one node",
            )));
        }
        let clients = nodes.iter().map(|node| redis::Client::open(node.as_str()));
        let clients = clients.collect::<Result<Vec<_>, _>>()?;
        let wire_prefix = format!("{prefix}pubsub:");
        let publisher = Publisher::cluster(nodes, &wire_prefix, connect_timeout, op_timeout)?;
        Ok(Self::on_redis(
            prefix,
            publisher,
            clients,
            connect_timeout,
            op_timeout,
            breaker,
            hooks,
        ))
    }

    /// On `config`'s backend, with `config`'s prefix and timeouts.
    pub(crate) fn on_backend(
        config: &CacheConfig,
        breaker: Arc<Breaker>,
        hooks: Arc<Hooks>,
    ) -> Result<PubSub, ConfigError> {
        let (prefix, connect, op) = (&config.prefix, config.connect_timeout, config.op_timeout);
        match &config.backend {
            Backend::Embedded => Ok(Self::local(prefix)),
            Backend::Redis { url } => {
                Self::redis(url, prefix, connect, op, breaker, hooks).map_err(ConfigError::RedisUrl)
            }
            Backend::RedisCluster { nodes } if nodes.is_empty() => Err(ConfigError::NoClusterNodes),
            Backend::RedisCluster { nodes } => {
                Self::redis_cluster(nodes, prefix, connect, op, breaker, hooks)
                    .map_err(ConfigError::RedisUrl)
            }
        }
    }

    /// A pub/sub service on `config`'s backend outside any cache: its own
    /// connections, and no breaker to skip Redis. For tests of pub/sub
    /// alone, and tools that only publish or listen.
    #[doc(hidden)]
    pub fn from_config(config: &CacheConfig) -> Result<PubSub, ConfigError> {
        let never_opens = Arc::new(Breaker::new(u32::MAX));
        Self::on_backend(config, never_opens, Arc::new(Hooks::default()))
    }

    /// A task of its own owns the subscriber connection, to one of `nodes`
    /// at a time.
    fn on_redis(
        prefix: &str,
        publisher: Publisher,
        nodes: Vec<redis::Client>,
        connect_timeout: Duration,
        op_timeout: Duration,
        breaker: Arc<Breaker>,
        hooks: Arc<Hooks>,
    ) -> PubSub {
        let router = Arc::new(Router::new(format!("{prefix}pubsub:")));
        let changes = Subscriber {
            nodes,
            router: router.clone(),
            hooks,
            connect_timeout,
            // A slow answer is not a dead connection, and reconnecting
            // costs the L1 tier its content: be patient.
            confirm_timeout: connect_timeout.max(op_timeout).max(MIN_CONFIRM_TIMEOUT),
        }
        .spawn();
        PubSub {
            inner: Arc::new(Inner {
                router,
                redis: Some(RedisSide { publisher, changes }),
                op_timeout,
                published: AtomicU64::new(0),
                breaker: Some(breaker),
            }),
        }
    }

    /// The full channel name on the wire.
    pub fn wire_name(&self, channel: &str) -> String {
        format!("{}{channel}", self.inner.router.prefix())
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
                let router = &self.inner.router;
                let message = router.message(&wire, payload);
                router.local_recipients(&wire).deliver(message).await;
                true
            }
            Some(_) if self.inner.breaker.as_ref().is_some_and(|b| b.is_open()) => false,
            Some(redis) => {
                let publish = redis.publisher.publish(&wire, &payload);
                matches!(
                    tokio::time::timeout(self.inner.op_timeout, publish).await,
                    Ok(Ok(_))
                )
            }
        }
    }

    /// Publishes each `(channel, message)` as JSON, in order: on Redis in
    /// pipelines of [`PUBLISH_PIPELINE`] (one round trip each, instead of
    /// one per message; on a cluster, to the one node every PUBLISH of
    /// this service goes to), in process one after the other. Returns
    /// whether every message left this process.
    pub async fn publish_all<T: Serialize>(&self, messages: &[(String, T)]) -> bool {
        let Some(redis) = &self.inner.redis else {
            let mut all = true;
            for (channel, message) in messages {
                all &= self.publish(channel, message).await;
            }
            return all;
        };
        self.inner
            .published
            .fetch_add(messages.len() as u64, Ordering::Relaxed);
        let mut all = true;
        for chunk in messages.chunks(PUBLISH_PIPELINE) {
            if self.inner.breaker.as_ref().is_some_and(|b| b.is_open()) {
                return false;
            }
            let mut pipe = redis::pipe();
            for (channel, message) in chunk {
                match serde_json::to_vec(message) {
                    Ok(payload) => {
                        pipe.cmd("PUBLISH")
                            .arg(self.wire_name(channel))
                            .arg(payload)
                            .ignore();
                    }
                    Err(e) => {
                        warn!(channel, error = %e, "message not published: not serializable");
                        all = false;
                    }
                }
            }
            if pipe.is_empty() {
                continue;
            }
            let sent = redis.publisher.send(pipe);
            all &= matches!(
                tokio::time::timeout(self.inner.op_timeout, sent).await,
                Ok(Ok(()))
            );
        }
        all
    }

    /// Messages published on `channel` from now on. On Redis, returns once
    /// the server confirmed the subscription, or after the call timeout if
    /// it is unreachable (the subscription is made when it is back).
    pub async fn subscribe(&self, channel: &str) -> Subscription {
        self.subscribe_queue(Kind::Channel, channel).await
    }

    /// Messages of every channel matching the Redis-style glob `pattern`.
    pub async fn psubscribe(&self, pattern: &str) -> Subscription {
        self.subscribe_queue(Kind::Pattern, pattern).await
    }

    /// `handler` gets the messages of `channel`, and is awaited on each
    /// before the subscriber delivers the next message of any channel; it
    /// also gets [`InlineEvent::Resubscribed`] before any message that
    /// follows a gap. In process, `publish` awaits it.
    pub(crate) async fn subscribe_inline(
        &self,
        channel: &str,
        handler: InlineHandler,
    ) -> InlineSubscription {
        let route = self.route(Kind::Channel, channel);
        InlineSubscription {
            _route: self.add_route(route, Handler::Inline(handler)).await,
        }
    }

    /// The channels and patterns subscribed to: what every publish on
    /// Redis is matched against, for this process.
    pub fn subscriptions(&self) -> RouteCounts {
        self.inner.router.counts()
    }

    /// Changes each time the subscriber is subscribed again after a gap (a
    /// lost connection, a subscription the server did not confirm) in which
    /// messages may have been lost. It changes once every route is
    /// confirmed again, before any message of the new connection is
    /// delivered: what is emptied then cannot miss a later message.
    pub fn on_reconnect(&self) -> watch::Receiver<u64> {
        self.inner.router.on_reconnect()
    }

    fn route(&self, kind: Kind, name: &str) -> Route {
        Route {
            kind,
            wire: self.wire_name(name),
        }
    }

    async fn subscribe_queue(&self, kind: Kind, name: &str) -> Subscription {
        let (tx, rx) = mpsc::unbounded_channel();
        let route = self.route(kind, name);
        Subscription {
            rx,
            _route: self.add_route(route, Handler::Queue(tx)).await,
        }
    }

    async fn add_route(&self, route: Route, handler: Handler) -> RouteGuard {
        let id = self.inner.router.add(&route, handler);
        if let Some(redis) = &self.inner.redis {
            // Sent by every subscriber, not only the route's first: the
            // first one's SUBSCRIBE may still be waiting for its confirmation.
            let (done, confirmed) = oneshot::channel();
            let change = Change {
                route: route.clone(),
                done: Some(done),
            };
            if redis.changes.send(change).is_ok()
                && tokio::time::timeout(self.inner.op_timeout, confirmed)
                    .await
                    .is_err()
            {
                warn!(
                    channel = route.wire,
                    "not subscribed yet: Redis does not answer"
                );
            }
        }
        RouteGuard {
            inner: Arc::downgrade(&self.inner),
            route,
            id,
        }
    }
}

/// Removes its handler when dropped, and has the subscriber task look at
/// the route again when it was the last one.
struct RouteGuard {
    inner: Weak<Inner>,
    route: Route,
    id: u64,
}

impl Drop for RouteGuard {
    fn drop(&mut self) {
        let Some(inner) = self.inner.upgrade() else {
            return;
        };
        if inner.router.remove(&self.route, self.id)
            && let Some(redis) = &inner.redis
        {
            let _ = redis.changes.send(Change {
                route: self.route.clone(),
                done: None,
            });
        }
    }
}
