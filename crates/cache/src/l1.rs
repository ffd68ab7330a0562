//! The L1 tier (SPEC 1.3): an in-process copy of Redis entries, bounded in
//! bytes, in front of Redis. A hit costs a moka lookup and a few atomic loads:
//! no lock, no round trip.
//!
//! Coherence across instances: every invalidation is applied to this
//! instance's L1 first, then to Redis, then announced on the `~l1` channel
//! with this instance's id; the others apply it to their own L1 (and ignore
//! their own messages). An announcement that cannot be published is kept and
//! retried by the maintenance task. Messages are applied inline: the
//! subscriber delivers nothing else until one is applied, so a listener of a
//! later message (`cache:invalidated:{guild}`) finds L1 already invalidated.
//! When the subscriber is subscribed again after a gap, messages may have
//! been lost: L1 is emptied then, before any message of the new connection
//! is delivered (emptied any earlier, it could be refilled with a value
//! whose invalidation is published in the gap).
//!
//! Fills cannot resurrect what an invalidation removed: a fill carries the
//! versions of its tags' L1 cells taken *before* the Redis read (or the
//! loader), and is dropped if any changed in between, whether by a local
//! invalidation, a message, or an emptying after a reconnect. Invalidations
//! of single keys (`set` over a key, `delete`) fence fills the same way, with
//! one counter for all keys: any key invalidation drops the fills then in
//! flight (a few extra misses, in exchange for no per-key bookkeeping).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use crate::journal::PendingInvalidation;
use crate::pubsub::{InlineEvent, InlineHandler, InlineSubscription, PubSub};
use crate::store::embedded::{EmbeddedStore, TagVersion};

const CHANNEL: &str = "~l1";

#[derive(Debug, Serialize, Deserialize)]
struct BusMessage {
    sender: u64,
    op: PendingInvalidation,
}

pub(crate) struct L1 {
    store: EmbeddedStore,
    /// This instance's id on the bus.
    id: u64,
    /// Announcements not yet published (Redis was unreachable).
    unsent: Mutex<Vec<PendingInvalidation>>,
    /// Bumped before every key invalidation is applied.
    key_invalidations: AtomicU64,
    /// The other instances' invalidations reach L1 as long as it lives.
    listener: OnceLock<InlineSubscription>,
}

/// What a fill must still find unchanged: taken before the Redis read (or
/// the loader) whose result it stores.
pub(crate) struct Fence {
    tags: Box<[TagVersion]>,
    key_invalidations: u64,
}

impl L1 {
    pub fn new(max_bytes: u64) -> Arc<L1> {
        Arc::new(L1 {
            store: EmbeddedStore::new(max_bytes),
            id: rand::random(),
            unsent: Mutex::new(Vec::new()),
            key_invalidations: AtomicU64::new(0),
            listener: OnceLock::new(),
        })
    }

    pub async fn get(&self, key: &str) -> Option<Bytes> {
        self.store.get(key).await
    }

    /// What a later [`fill`](Self::fill) must still find.
    pub fn snapshot(&self, tags: &[String]) -> Fence {
        Fence {
            key_invalidations: self.key_invalidations.load(Ordering::Acquire),
            tags: self.store.snapshot(tags),
        }
    }

    pub async fn fill(&self, key: &str, value: Bytes, ttl: Duration, tags: &[String], seen: Fence) {
        let keys_unchanged =
            || self.key_invalidations.load(Ordering::Acquire) == seen.key_invalidations;
        if !keys_unchanged() {
            return;
        }
        // Held decompressed: a hit then hands out a slice, with no work.
        let value = crate::codec::plain(value);
        if self.store.set(key, value, ttl, tags, Some(seen.tags)).await && !keys_unchanged() {
            // A key invalidation was applied meanwhile: it is bumped before
            // the keys are deleted, so either its delete came after this set,
            // or the bump is seen here. The entry may be stale: drop it.
            self.store.delete_many(&[key.to_string()]).await;
        }
    }

    /// Applies an invalidation to this instance's L1.
    pub async fn apply(&self, op: &PendingInvalidation) {
        match op {
            PendingInvalidation::Tags { tags } => {
                self.store.invalidate_tags(tags);
            }
            PendingInvalidation::Keys { keys } => {
                // Before the delete: see `fill`.
                self.key_invalidations.fetch_add(1, Ordering::AcqRel);
                self.store.delete_many(keys).await;
            }
            // Patterns are rare operator actions: emptying L1 is exact enough.
            PendingInvalidation::Pattern { .. } | PendingInvalidation::FlushAll => {
                self.store.flush_all().await;
            }
        }
    }

    /// Tells the other instances, or keeps the message for a retry.
    pub async fn announce(&self, pubsub: &PubSub, op: PendingInvalidation) {
        let message = BusMessage {
            sender: self.id,
            op,
        };
        if !pubsub.publish(CHANNEL, &message).await {
            let mut unsent = self.lock_unsent();
            if !unsent.contains(&message.op) {
                unsent.push(message.op);
            }
        }
    }

    /// Publishes what could not be published before; keeps what still fails.
    pub async fn retry_announcements(&self, pubsub: &PubSub) {
        let unsent = std::mem::take(&mut *self.lock_unsent());
        for op in unsent {
            self.announce(pubsub, op).await;
        }
    }

    fn lock_unsent(&self) -> std::sync::MutexGuard<'_, Vec<PendingInvalidation>> {
        self.unsent.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Listens to the other instances' invalidations and to re-subscriptions.
    pub fn spawn_listener(self: &Arc<Self>, pubsub: PubSub) {
        let l1 = Arc::downgrade(self);
        let handler: InlineHandler = Arc::new(move |event| {
            let l1 = l1.clone();
            Box::pin(async move {
                if let Some(l1) = l1.upgrade() {
                    l1.on_bus_event(event).await;
                }
            })
        });
        let l1 = Arc::downgrade(self);
        tokio::spawn(async move {
            let subscription = pubsub.subscribe_inline(CHANNEL, handler).await;
            if let Some(l1) = l1.upgrade() {
                let _ = l1.listener.set(subscription);
            }
        });
    }

    async fn on_bus_event(&self, event: InlineEvent) {
        match event {
            InlineEvent::Message(message) => match message.json::<BusMessage>() {
                Ok(m) if m.sender != self.id => self.apply(&m.op).await,
                Ok(_) => {}
                Err(e) => warn!(error = %e, "unreadable L1 invalidation message"),
            },
            InlineEvent::Resubscribed => {
                info!("pub/sub reconnected: emptying L1, messages may have been missed");
                self.store.flush_all().await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value() -> Bytes {
        crate::codec::encode_json(b"[1]", usize::MAX).bytes
    }

    #[tokio::test]
    async fn a_fill_that_a_key_invalidation_overtook_is_dropped() {
        let l1 = L1::new(1 << 20);
        let tags = ["t".to_string()];
        let ttl = Duration::from_secs(60);

        let seen = l1.snapshot(&tags);
        l1.fill("k", value(), ttl, &tags, seen).await;
        assert!(l1.get("k").await.is_some(), "an undisturbed fill is held");

        // Read from Redis before another instance replaced or deleted the
        // key; its message is applied before the fill lands.
        let seen = l1.snapshot(&tags);
        l1.apply(&PendingInvalidation::Keys {
            keys: vec!["k".to_string()],
        })
        .await;
        l1.fill("k", value(), ttl, &tags, seen).await;
        assert!(
            l1.get("k").await.is_none(),
            "the fill is older than the delete"
        );

        // The same for a tag invalidation (the per-tag fence).
        let seen = l1.snapshot(&tags);
        l1.apply(&PendingInvalidation::Tags {
            tags: tags.to_vec(),
        })
        .await;
        l1.fill("k", value(), ttl, &tags, seen).await;
        assert!(l1.get("k").await.is_none());
    }
}
