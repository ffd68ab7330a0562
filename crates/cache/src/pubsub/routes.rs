//! Who listens to what: the handlers of every channel and pattern.
//!
//! Shared by the subscribe side (handlers come and go), the publish side in
//! process, and the Redis subscriber task, which reads here what it has to
//! be subscribed to and whom a message goes to.

use std::collections::HashMap;
use std::sync::Mutex;

use bytes::Bytes;
use tokio::sync::{mpsc, watch};

use super::{InlineEvent, InlineHandler, Message};

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub(super) enum Kind {
    Channel,
    Pattern,
}

/// A channel or a pattern, by its full name on the wire.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub(super) struct Route {
    pub kind: Kind,
    pub wire: String,
}

/// The channels and patterns this process is subscribed to (or, while
/// Redis is away, wants to be): each counted once, whatever its handlers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RouteCounts {
    pub channels: usize,
    pub patterns: usize,
}

pub(super) enum Handler {
    /// An ordinary [`Subscription`](super::Subscription): read at its owner's pace.
    Queue(mpsc::UnboundedSender<Message>),
    /// Awaited before the next message is delivered to anyone.
    Inline(InlineHandler),
}

#[derive(Default)]
struct Table {
    next_id: u64,
    handlers: HashMap<Route, Vec<(u64, Handler)>>,
    /// Compiled patterns, for the in-process mode.
    matchers: HashMap<String, globset::GlobMatcher>,
}

pub(super) struct Router {
    prefix: String,
    table: Mutex<Table>,
    resubscriptions: watch::Sender<u64>,
}

impl Router {
    pub fn new(prefix: String) -> Router {
        Router {
            prefix,
            table: Mutex::default(),
            resubscriptions: watch::channel(0).0,
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Adds a handler to `route`; returns its id.
    pub fn add(&self, route: &Route, handler: Handler) -> u64 {
        let mut table = self.lock();
        table.next_id += 1;
        let id = table.next_id;
        if route.kind == Kind::Pattern
            && !table.matchers.contains_key(&route.wire)
            && let Some(matcher) = crate::glob::redis_glob(&route.wire)
        {
            table.matchers.insert(route.wire.clone(), matcher);
        }
        table
            .handlers
            .entry(route.clone())
            .or_default()
            .push((id, handler));
        id
    }

    /// Removes a handler; true if it was the route's last.
    pub fn remove(&self, route: &Route, id: u64) -> bool {
        let mut table = self.lock();
        let Some(handlers) = table.handlers.get_mut(route) else {
            return false;
        };
        handlers.retain(|(handler, _)| *handler != id);
        if !handlers.is_empty() {
            return false;
        }
        table.handlers.remove(route);
        table.matchers.remove(&route.wire);
        true
    }

    /// Whether `route` has a handler, and so must be subscribed to.
    pub fn is_wanted(&self, route: &Route) -> bool {
        self.lock().handlers.contains_key(route)
    }

    /// How many channels and patterns have a handler.
    pub fn counts(&self) -> RouteCounts {
        let table = self.lock();
        let patterns = table.handlers.keys().filter(|r| r.kind == Kind::Pattern);
        let patterns = patterns.count();
        RouteCounts {
            channels: table.handlers.len() - patterns,
            patterns,
        }
    }

    /// Every route with a handler.
    pub fn wanted(&self) -> Vec<Route> {
        self.lock().handlers.keys().cloned().collect()
    }

    /// The handlers of a message that Redis sent for `route`.
    pub fn recipients(&self, route: &Route) -> Recipients {
        let table = self.lock();
        let mut recipients = Recipients::default();
        if let Some(handlers) = table.handlers.get(route) {
            recipients.add(handlers);
        }
        recipients
    }

    /// In process, where nobody matches patterns for us: the handlers of
    /// the channel and of every pattern that matches it.
    pub fn local_recipients(&self, wire_channel: &str) -> Recipients {
        let table = self.lock();
        let mut recipients = Recipients::default();
        let channel = Route {
            kind: Kind::Channel,
            wire: wire_channel.to_string(),
        };
        if let Some(handlers) = table.handlers.get(&channel) {
            recipients.add(handlers);
        }
        for (pattern, matcher) in &table.matchers {
            let route = Route {
                kind: Kind::Pattern,
                wire: pattern.clone(),
            };
            if matcher.is_match(wire_channel)
                && let Some(handlers) = table.handlers.get(&route)
            {
                recipients.add(handlers);
            }
        }
        recipients
    }

    /// A message as handlers see it: named without the prefix.
    pub fn message(&self, wire_channel: &str, payload: Bytes) -> Message {
        Message {
            channel: wire_channel
                .strip_prefix(&self.prefix)
                .unwrap_or(wire_channel)
                .to_string(),
            payload,
        }
    }

    /// Tells every listener that messages may have been lost before now:
    /// inline handlers first (awaited), then [`on_reconnect`](Self::on_reconnect) watchers.
    pub async fn resubscribed(&self) {
        let inline: Vec<InlineHandler> = {
            let table = self.lock();
            let handlers = table.handlers.values().flatten();
            handlers
                .filter_map(|(_, handler)| match handler {
                    Handler::Inline(inline) => Some(inline.clone()),
                    Handler::Queue(_) => None,
                })
                .collect()
        };
        for handler in inline {
            handler(InlineEvent::Resubscribed).await;
        }
        self.resubscriptions.send_modify(|n| *n += 1);
    }

    pub fn on_reconnect(&self) -> watch::Receiver<u64> {
        self.resubscriptions.subscribe()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The handlers of one message, taken out of the lock so that handlers may
/// be awaited.
#[derive(Default)]
pub(super) struct Recipients {
    inline: Vec<InlineHandler>,
    queues: Vec<mpsc::UnboundedSender<Message>>,
}

impl Recipients {
    fn add(&mut self, handlers: &[(u64, Handler)]) {
        for (_, handler) in handlers {
            match handler {
                Handler::Inline(inline) => self.inline.push(inline.clone()),
                Handler::Queue(queue) => self.queues.push(queue.clone()),
            }
        }
    }

    /// Inline handlers first, so that what they apply (an L1 invalidation)
    /// is in place before any other listener can see the message.
    pub async fn deliver(self, message: Message) {
        for handler in &self.inline {
            handler(InlineEvent::Message(message.clone())).await;
        }
        for queue in &self.queues {
            let _ = queue.send(message.clone());
        }
    }
}
