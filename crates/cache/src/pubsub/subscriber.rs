//! The task that owns the Redis subscriber connection.
//!
//! It alone talks to that connection, so subscriptions, re-subscriptions and
//! deliveries happen in one order:
//!
//! 1. connect to one of its nodes (retrying with a backoff of 20 ms to
//!    500 ms): the one Redis, or a node of a cluster, where a classic
//!    subscription hears what is published on any node. A failed attempt
//!    or a lost connection moves on to the next node of the list, so a
//!    dead or frozen node is left for another;
//! 2. subscribe to every route that has a handler, and wait for the server
//!    to confirm each one;
//! 3. after a gap (a lost connection, a failed attempt, a subscription left
//!    unconfirmed), announce it: from here on nothing is missed any more,
//!    so whoever empties a cache on that signal cannot be refilled with a
//!    value whose invalidation was published in the gap;
//! 4. deliver messages, one at a time (inline handlers awaited), and apply
//!    route changes in the order they come; a PING that is not answered
//!    within the confirmation timeout ends the connection, since a frozen
//!    node (or a cut link) delivers nothing and says nothing, while the
//!    cluster goes on publishing without it.
//!
//! A route change only says "look at this route again": the task compares
//! what the routes want with what the connection has, so an unsubscribe
//! queued behind a new subscriber of the same channel does nothing.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::{FutureExt, StreamExt};
use redis::RedisResult;
use redis::aio::{PubSubSink, PubSubStream};
use tokio::sync::{mpsc, oneshot};
use tracing::{info, warn};

use super::routes::{Kind, Route, Router};
use crate::testing::{Hooks, Step};

const MIN_BACKOFF: Duration = Duration::from_millis(20);
const MAX_BACKOFF: Duration = Duration::from_millis(500);

/// A route whose handlers changed: subscribe or unsubscribe as needed.
pub(super) struct Change {
    pub route: Route,
    /// Told once the route's Redis subscription matches its handlers.
    pub done: Option<oneshot::Sender<()>>,
}

pub(super) struct Subscriber {
    /// One per node to try, in turn: never empty.
    pub nodes: Vec<redis::Client>,
    pub router: Arc<Router>,
    pub hooks: Arc<Hooks>,
    pub connect_timeout: Duration,
    /// How long the server may take to confirm a (un)subscription or answer
    /// a PING before the connection is taken for dead; PINGs go this often.
    pub confirm_timeout: Duration,
}

/// Why a connection's session ended.
enum End {
    /// The pub/sub service is gone.
    Shutdown,
    /// With the subscriber that was waiting for the change being applied then.
    Lost(redis::RedisError, Option<oneshot::Sender<()>>),
}

impl Subscriber {
    pub fn spawn(self) -> mpsc::UnboundedSender<Change> {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(self.run(rx));
        tx
    }

    async fn run(self, mut changes: mpsc::UnboundedReceiver<Change>) {
        let mut backoff = Backoff::default();
        // Only the first connection, made without a failure before it,
        // cannot have missed anything.
        let mut gap = false;
        // Subscribers whose change a lost connection cut: told once the
        // next connection has subscribed to everything.
        let mut waiting: Vec<oneshot::Sender<()>> = Vec::new();
        // The node connected to, or tried next.
        let mut node = 0;
        while !changes.is_closed() {
            let client = &self.nodes[node % self.nodes.len()];
            let address = client.get_connection_info().addr();
            let connected =
                tokio::time::timeout(self.connect_timeout, client.get_async_pubsub()).await;
            let (sink, messages) = match connected {
                Ok(Ok(pubsub)) => pubsub.split(),
                Ok(Err(_)) | Err(_) => {
                    gap = true;
                    node += 1;
                    backoff.wait().await;
                    continue;
                }
            };
            if gap {
                self.hooks.reach(Step::BeforeResubscribe).await;
            }
            let mut session = Session {
                sink,
                messages,
                subscribed: HashSet::new(),
                router: &self.router,
                confirm_timeout: self.confirm_timeout,
            };
            if let Err(e) = session.subscribe_wanted().await {
                warn!(error = %e, %address, "pub/sub: re-subscribing failed; reconnecting");
                gap = true;
                node += 1;
                backoff.wait().await;
                continue;
            }
            backoff = Backoff::default();
            if gap {
                info!(%address, "pub/sub subscribed again; messages may have been missed meanwhile");
                self.router.resubscribed().await;
            }
            for done in waiting.drain(..) {
                let _ = done.send(());
            }
            match session.serve(&mut changes).await {
                End::Shutdown => return,
                End::Lost(e, done) => {
                    info!(error = %e, %address, "pub/sub connection lost: reconnecting and re-subscribing");
                    waiting.retain(|done| !done.is_closed());
                    waiting.extend(done);
                    gap = true;
                    node += 1;
                }
            }
        }
    }
}

/// Between failed attempts: 20 ms, doubling up to 500 ms.
struct Backoff(Duration);

impl Default for Backoff {
    fn default() -> Self {
        Backoff(MIN_BACKOFF)
    }
}

impl Backoff {
    async fn wait(&mut self) {
        tokio::time::sleep(self.0).await;
        self.0 = (self.0 * 2).min(MAX_BACKOFF);
    }
}

/// One connection, from its subscriptions to its loss.
struct Session<'a> {
    sink: PubSubSink,
    messages: PubSubStream,
    /// What this connection is confirmed to be subscribed to.
    subscribed: HashSet<Route>,
    router: &'a Router,
    confirm_timeout: Duration,
}

impl Session<'_> {
    async fn subscribe_wanted(&mut self) -> RedisResult<()> {
        let wanted = self.router.wanted();
        let names = |kind| -> Vec<&str> {
            let routes = wanted.iter().filter(|route| route.kind == kind);
            routes.map(|route| route.wire.as_str()).collect()
        };
        let (channels, patterns) = (names(Kind::Channel), names(Kind::Pattern));
        if !channels.is_empty() {
            let subscribe = self.sink.subscribe(&channels);
            confirmed(self.confirm_timeout, subscribe).await?;
        }
        if !patterns.is_empty() {
            let psubscribe = self.sink.psubscribe(&patterns);
            confirmed(self.confirm_timeout, psubscribe).await?;
        }
        self.subscribed.extend(wanted);
        Ok(())
    }

    async fn serve(&mut self, changes: &mut mpsc::UnboundedReceiver<Change>) -> End {
        let period = self.confirm_timeout;
        let mut heartbeat = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                change = changes.recv() => {
                    let Some(Change { route, done }) = change else { return End::Shutdown };
                    if let Err(e) = self.apply(route).await {
                        return End::Lost(e, done);
                    }
                    if let Some(done) = done {
                        let _ = done.send(());
                    }
                }
                message = self.messages.next() => {
                    let Some(message) = message else {
                        let closed = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
                        return End::Lost(closed.into(), None);
                    };
                    self.deliver(message).await;
                }
                _ = heartbeat.tick() => {
                    let ping = self.sink.ping::<redis::Value>().map(|answer| answer.map(drop));
                    if let Err(e) = confirmed(self.confirm_timeout, ping).await {
                        return End::Lost(e, None);
                    }
                }
            }
        }
    }

    /// Brings the route's subscription in line with its handlers as they are
    /// now, not as they were when the change was sent.
    async fn apply(&mut self, route: Route) -> RedisResult<()> {
        let wanted = self.router.is_wanted(&route);
        if wanted != self.subscribed.contains(&route) {
            let wire = route.wire.as_str();
            let command = match (route.kind, wanted) {
                (Kind::Channel, true) => self.sink.subscribe(wire).boxed(),
                (Kind::Channel, false) => self.sink.unsubscribe(wire).boxed(),
                (Kind::Pattern, true) => self.sink.psubscribe(wire).boxed(),
                (Kind::Pattern, false) => self.sink.punsubscribe(wire).boxed(),
            };
            confirmed(self.confirm_timeout, command).await?;
            if wanted {
                self.subscribed.insert(route);
            } else {
                self.subscribed.remove(&route);
            }
        }
        Ok(())
    }

    async fn deliver(&self, message: redis::Msg) {
        let channel = message.get_channel_name();
        let route = match message.get_pattern::<Option<String>>() {
            Ok(Some(pattern)) => Route {
                kind: Kind::Pattern,
                wire: pattern,
            },
            _ => Route {
                kind: Kind::Channel,
                wire: channel.to_string(),
            },
        };
        let payload = Bytes::copy_from_slice(message.get_payload_bytes());
        let message = self.router.message(channel, payload);
        self.router.recipients(&route).deliver(message).await;
    }
}

/// A (un)subscription, confirmed by the server in time. Past the timeout the
/// connection is in doubt, and so dropped: the next one subscribes anew.
async fn confirmed(
    timeout: Duration,
    command: impl Future<Output = RedisResult<()>>,
) -> RedisResult<()> {
    match tokio::time::timeout(timeout, command).await {
        Ok(result) => result,
        Err(_) => Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "no confirmation (of a subscription or a PING) from Redis",
        )
        .into()),
    }
}
