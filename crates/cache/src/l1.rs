//! The L1 tier (SPEC 1.3): an in-process copy of Redis entries, bounded in
//! bytes, in front of Redis. A hit costs a moka lookup and a few atomic loads:
//! no lock, no round trip.
//!
//! Coherence across instances: every invalidation is applied to this
//! instance's L1, then to Redis, then to L1 again (a read that took its
//! versions between the first step and Redis' may have read the old value
//! and filled L1 with it: the second step drops it), then announced on the
//! `~l1` channel with this instance's id; the others apply it to their own
//! L1 (and ignore their own messages). Announcements that cannot be
//! published are kept (a bounded set, collapsed into "empty your L1" when
//! full) and retried by the maintenance task. When the subscriber had to
//! reconnect, messages may have been lost: L1 is emptied once it is
//! subscribed again, before any message of the new connection is delivered
//! (emptied any earlier, it could be refilled with a value whose
//! invalidation is published in the gap). Messages are applied inline: the
//! subscriber delivers nothing else until one is applied, so a listener of a
//! later message (`cache:invalidated:{guild}`) finds L1 already
//! invalidated. And whatever the bus does, every instance applies the
//! invalidation journal's recent entries to its L1 at the journal interval
//! (see `maintenance.rs`), so a lost message, or an outage, costs at most
//! that interval.
//!
//! Fills cannot resurrect what an invalidation removed: a fill carries a
//! [`Fence`] taken *before* the Redis read (or the loader), and is dropped if
//! it no longer holds, whether by a local invalidation, a message, the
//! journal, or an emptying.
//!
//! With L1 turned off (no bytes), the tag cells are kept all the same: they
//! fence the loads that callers join (`flight.rs`).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use crate::fence::{Fence, KeyInvalidations};
use crate::insights::Insights;
use crate::insights::lives::ReadMark;
use crate::journal::PendingInvalidation;
use crate::pubsub::{InlineEvent, InlineHandler, InlineSubscription, PubSub};
use crate::store::embedded::EmbeddedStore;

const CHANNEL: &str = "~l1";

/// Announcements kept for a retry at most; past it they are replaced by one
/// "empty your L1", which stands for all of them.
const MAX_UNSENT: usize = 1024;

#[derive(Debug, Serialize, Deserialize)]
struct BusMessage {
    sender: u64,
    op: PendingInvalidation,
    /// The journal entry this invalidation was recorded as, if any: a
    /// receiver then skips it when it reads the journal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    journal_id: Option<i64>,
    /// Redis did not take it: it waits in the journal. A receiver stops
    /// reading Redis until the journal has been applied there, as the
    /// sender does: on a cluster, where one master can fail while the
    /// others answer, the receiver may well be reading that shard's
    /// promoted replica, which does not have it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pending: bool,
}

/// Called when another instance announces an invalidation Redis did not take.
pub(crate) type OnPending = Arc<dyn Fn() + Send + Sync>;

pub(crate) struct L1 {
    store: EmbeddedStore,
    /// False when L1 is off: nothing is held, the cells still fence loads.
    holds_entries: bool,
    /// This instance's id on the bus.
    id: u64,
    /// Announcements not yet published (Redis was unreachable).
    unsent: Mutex<Unsent>,
    keys: Arc<KeyInvalidations>,
    /// Told of every invalidation applied here (the lives of entries end).
    insights: Arc<Insights>,
    /// Journal entries already applied here, with when they were recorded.
    journal_applied: Mutex<HashMap<i64, i64>>,
    /// The other instances' invalidations reach L1 as long as it lives.
    listener: OnceLock<InlineSubscription>,
}

#[derive(Default)]
struct Unsent {
    ops: Vec<(PendingInvalidation, Option<i64>)>,
    seen: HashSet<PendingInvalidation>,
}

impl L1 {
    /// `max_bytes` 0: no entries held.
    pub fn new(max_bytes: u64, keys: Arc<KeyInvalidations>, insights: Arc<Insights>) -> Arc<L1> {
        Arc::new(L1 {
            store: EmbeddedStore::new(max_bytes.max(1)),
            holds_entries: max_bytes > 0,
            id: rand::random(),
            unsent: Mutex::new(Unsent::default()),
            keys,
            insights,
            journal_applied: Mutex::new(HashMap::new()),
            listener: OnceLock::new(),
        })
    }

    pub fn holds_entries(&self) -> bool {
        self.holds_entries
    }

    pub async fn get(&self, key: &str) -> Option<Bytes> {
        if !self.holds_entries {
            return None;
        }
        self.store.get(key).await
    }

    /// What a later [`fill`](Self::fill), or a caller joining a load, must
    /// still find.
    pub fn fence(&self, tags: &[String]) -> Fence {
        Fence::new(self.store.snapshot(tags), &self.keys)
    }

    pub async fn fill(
        &self,
        key: &str,
        value: Bytes,
        ttl: Duration,
        tags: &[String],
        seen: Fence,
        read: Option<ReadMark>,
    ) {
        if !self.holds_entries || !seen.keys_unchanged() {
            return;
        }
        let Fence {
            tags: tags_seen,
            keys,
            keys_seen,
        } = seen;
        // Held decompressed: a hit then hands out a slice, with no work.
        let value = crate::codec::plain(value);
        if self
            .store
            .set_marked(key, value, ttl, tags, Some(tags_seen), read)
            .await
            && keys.now() != keys_seen
        {
            // A key invalidation was applied meanwhile: it is bumped before
            // the keys are deleted, so either its delete came after this set,
            // or the bump is seen here. The entry may be stale: drop it.
            self.store.delete_many(&[key.to_string()]).await;
        }
    }

    /// Applies an invalidation to this instance's L1 (and its fences).
    pub async fn apply(&self, op: &PendingInvalidation) {
        self.insights.invalidated(op);
        match op {
            PendingInvalidation::Tags { tags } => {
                self.store.invalidate_tags(tags);
            }
            PendingInvalidation::Keys { keys } => {
                // Before the delete: see `fill`.
                self.keys.bump();
                self.store.delete_many(keys).await;
            }
            // Patterns are rare operator actions: emptying L1 is exact enough.
            PendingInvalidation::Pattern { .. } | PendingInvalidation::FlushAll => {
                self.keys.bump();
                self.store.flush_all().await;
            }
        }
    }

    /// Empties L1 (messages may have been missed).
    pub async fn flush(&self) {
        self.keys.bump();
        self.store.flush_all().await;
    }

    /// Applies a journal entry unless this instance already did (from the
    /// journal, or from the message that carried its id).
    pub async fn apply_journaled(&self, id: i64, recorded_at_ms: i64, op: &PendingInvalidation) {
        if self.note_journal_id(id, recorded_at_ms) {
            self.apply(op).await;
        }
    }

    /// Records that journal entry `id` has been applied here; false if it already was.
    pub fn note_journal_id(&self, id: i64, recorded_at_ms: i64) -> bool {
        self.lock_journal_applied()
            .insert(id, recorded_at_ms)
            .is_none()
    }

    /// Forgets the ids of entries recorded before `before_ms`: the journal
    /// is not read that far back any more.
    pub fn forget_journal_ids(&self, before_ms: i64) {
        self.lock_journal_applied()
            .retain(|_, recorded_at| *recorded_at >= before_ms);
    }

    fn lock_journal_applied(&self) -> std::sync::MutexGuard<'_, HashMap<i64, i64>> {
        self.journal_applied
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Tells the other instances, or keeps the message for a retry; false
    /// in that case.
    pub async fn announce(
        &self,
        pubsub: &PubSub,
        op: PendingInvalidation,
        journal_id: Option<i64>,
        pending: bool,
    ) -> bool {
        let message = BusMessage {
            sender: self.id,
            op,
            journal_id,
            pending,
        };
        let sent = pubsub.publish(CHANNEL, &message).await;
        if !sent {
            self.keep_unsent(message.op, journal_id);
        }
        sent
    }

    fn keep_unsent(&self, op: PendingInvalidation, journal_id: Option<i64>) {
        let mut unsent = self.lock_unsent();
        if unsent.seen.contains(&PendingInvalidation::FlushAll) || unsent.seen.contains(&op) {
            return;
        }
        if unsent.ops.len() >= MAX_UNSENT {
            // One message that empties every L1 stands for all of them.
            *unsent = Unsent::default();
            unsent.seen.insert(PendingInvalidation::FlushAll);
            unsent.ops.push((PendingInvalidation::FlushAll, None));
            return;
        }
        unsent.seen.insert(op.clone());
        unsent.ops.push((op, journal_id));
    }

    /// Publishes what could not be published before; keeps what still fails.
    pub async fn retry_announcements(&self, pubsub: &PubSub) {
        let unsent = std::mem::take(&mut *self.lock_unsent());
        // Retried while Redis is in use again: the journal has been applied.
        let mut ops = unsent.ops.into_iter();
        for (op, journal_id) in ops.by_ref() {
            if !self.announce(pubsub, op, journal_id, false).await {
                // The bus is still down: the rest wait for the next pass
                // rather than each waiting out its publish timeout here, on
                // the maintenance task, which also feeds L1 from the journal
                // at its interval (the bound on staleness without the bus).
                break;
            }
        }
        for (op, journal_id) in ops {
            self.keep_unsent(op, journal_id);
        }
    }

    fn lock_unsent(&self) -> std::sync::MutexGuard<'_, Unsent> {
        self.unsent.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// What the bus brings: another instance's invalidation, or news that
    /// the subscriber is subscribed again after a gap.
    async fn on_bus_event(&self, event: InlineEvent, on_pending: &OnPending) {
        match event {
            InlineEvent::Message(message) => match message.json::<BusMessage>() {
                Ok(m) if m.sender == self.id => {}
                Ok(m) => {
                    if m.pending {
                        // Before L1 drops the entries: a read that misses
                        // L1 from then on must not find them in Redis either.
                        on_pending();
                    }
                    match m.journal_id {
                        Some(id) => {
                            self.apply_journaled(id, crate::journal::now_ms(), &m.op)
                                .await
                        }
                        None => self.apply(&m.op).await,
                    }
                }
                Err(e) => warn!(error = %e, "unreadable L1 invalidation message"),
            },
            InlineEvent::Resubscribed => {
                info!("pub/sub reconnected: emptying L1, messages may have been missed");
                self.flush().await;
            }
        }
    }

    /// Listens to the other instances' invalidations and to re-subscriptions.
    pub fn spawn_listener(self: &Arc<Self>, pubsub: PubSub, on_pending: OnPending) {
        let l1 = Arc::downgrade(self);
        let handler: InlineHandler = Arc::new(move |event| {
            let l1 = l1.clone();
            let on_pending = on_pending.clone();
            Box::pin(async move {
                if let Some(l1) = l1.upgrade() {
                    l1.on_bus_event(event, &on_pending).await;
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsent_announcements_are_deduplicated_and_bounded() {
        let l1 = L1::new(1 << 20, Arc::default(), Arc::new(Insights::new(&[], 16)));
        let op = |i: usize| PendingInvalidation::Tags {
            tags: vec![format!("guild:{i}")],
        };
        l1.keep_unsent(op(1), Some(7));
        l1.keep_unsent(op(1), Some(8));
        assert_eq!(l1.lock_unsent().ops, vec![(op(1), Some(7))], "kept once");
        for i in 0..MAX_UNSENT * 2 {
            l1.keep_unsent(op(i), None);
        }
        // Past the bound, one "empty your L1" stands for all of them.
        assert_eq!(
            l1.lock_unsent().ops,
            vec![(PendingInvalidation::FlushAll, None)]
        );
        assert_eq!(l1.lock_unsent().seen.len(), 1);
    }

    fn value() -> Bytes {
        crate::codec::encode_json(b"[1]", usize::MAX).bytes
    }

    #[tokio::test]
    async fn a_fill_that_a_key_invalidation_overtook_is_dropped() {
        let l1 = L1::new(1 << 20, Arc::default(), Arc::new(Insights::new(&[], 16)));
        let tags = ["t".to_string()];
        let ttl = Duration::from_secs(60);

        let seen = l1.fence(&tags);
        l1.fill("k", value(), ttl, &tags, seen, None).await;
        assert!(l1.get("k").await.is_some(), "an undisturbed fill is held");

        // Read from Redis before another instance replaced or deleted the
        // key; its message is applied before the fill lands.
        let seen = l1.fence(&tags);
        l1.apply(&PendingInvalidation::Keys {
            keys: vec!["k".to_string()],
        })
        .await;
        l1.fill("k", value(), ttl, &tags, seen, None).await;
        assert!(
            l1.get("k").await.is_none(),
            "the fill is older than the delete"
        );

        // The same for a tag invalidation (the per-tag fence).
        let seen = l1.fence(&tags);
        l1.apply(&PendingInvalidation::Tags {
            tags: tags.to_vec(),
        })
        .await;
        l1.fill("k", value(), ttl, &tags, seen, None).await;
        assert!(l1.get("k").await.is_none());
    }
}
