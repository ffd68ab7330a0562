//! Stampede protection across processes (SPEC 1.2.4): one loader per expiry
//! among all the instances that share Redis.
//!
//! The first instance to miss takes a lease (`SET ~lock:<key> NX PX`), loads,
//! stores, gives the lease back, and announces on the `~filled` channel that
//! the value landed. The others wait for that announcement (not polling the
//! lock round trip after round trip), then read the value; after a bounded
//! wait (the lease) they load themselves.
//!
//! The lease is given back *before* the announcement: a caller that
//! registers its interest after the announcement went by then finds the lock
//! free, takes it, and finds the value (rather than waiting out the lease
//! for an announcement that has passed). A leader that is cancelled (its
//! HTTP client went away) gives the lease back and announces from its
//! [`Lease`]'s drop, so that nobody waits out the lease for it either.
//!
//! A lease is taken for one generation of the entry's tags' versions: a
//! load that began before an invalidation does not hold up the loads that
//! begin after it. The lease is an efficiency tool, never a correctness
//! mutex: a lost or expired lease costs a duplicate load, never a wrong
//! value, since every store still goes through the version check of
//! `set.lua`.
//!
//! Redis faults (issue 9): a lease that cannot be given back (the breaker
//! is open, or Redis hangs and the call times out; the `SET NX` of a call
//! that timed out may also land when Redis wakes up) would stay in Redis for
//! its whole term, and every caller on every instance that misses the key
//! would wait it out, long after Redis answers again. Such a lease is given
//! back, and announced, as soon as the breaker is closed again (within its
//! term). And a caller waiting for another instance's announcement stops
//! waiting when the breaker opens: the announcement could not reach it, and
//! it would load itself anyway (`remember.rs`); or when the subscriber is
//! subscribed again after a gap, in which the announcement may have gone
//! by. A Redis server that is not the one the journal last knew (a restart,
//! maybe from a snapshot taken while a load held its lease, a failover)
//! may hold leases that nobody will give back: they are dropped when it is
//! verified (`maintenance.rs`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::sync::oneshot;

use crate::cache::Inner;
use crate::pubsub::PubSub;
use crate::store::Store;

const CHANNEL: &str = "~filled";

/// Callers waiting for another instance's value, by key.
#[derive(Default)]
pub(crate) struct FillWaiters {
    waiting: Mutex<HashMap<String, Vec<oneshot::Sender<()>>>>,
}

impl FillWaiters {
    pub fn new(pubsub: &PubSub) -> Arc<Self> {
        let waiters = Arc::new(FillWaiters::default());
        let weak = Arc::downgrade(&waiters);
        let pubsub = pubsub.clone();
        tokio::spawn(async move { listen(weak, pubsub).await });
        waiters
    }

    /// Registers interest in `key` *before* the lock is tried, so that a
    /// value landing in between is not missed.
    pub fn wait(&self, key: &str) -> oneshot::Receiver<()> {
        let (tx, rx) = oneshot::channel();
        self.lock().entry(key.to_string()).or_default().push(tx);
        rx
    }

    /// Forgets waiters whose callers gave up.
    pub fn forget(&self, key: &str) {
        let mut waiting = self.lock();
        if let Some(list) = waiting.get_mut(key) {
            list.retain(|tx| !tx.is_closed());
            if list.is_empty() {
                waiting.remove(key);
            }
        }
    }

    fn wake(&self, key: &str) {
        if let Some(list) = self.lock().remove(key) {
            for tx in list {
                let _ = tx.send(());
            }
        }
    }

    fn wake_all(&self) {
        let waiting = std::mem::take(&mut *self.lock());
        for tx in waiting.into_values().flatten() {
            let _ = tx.send(());
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Vec<oneshot::Sender<()>>>> {
        self.waiting.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Tells every instance that `key` has a value now.
async fn announce_filled(pubsub: &PubSub, key: &str) {
    pubsub.publish(CHANNEL, key).await;
}

/// A loading lease held by this process: given back, and the value
/// announced, by [`release`](Self::release) or, if the holder is dropped
/// first (cancelled), in the background.
pub(crate) struct Lease {
    inner: Arc<Inner>,
    key: String,
    generation: u64,
    token: u64,
    released: bool,
}

impl Lease {
    pub fn new(inner: &Arc<Inner>, key: &str, generation: u64, token: u64) -> Lease {
        Lease {
            inner: inner.clone(),
            key: key.to_string(),
            generation,
            token,
            released: false,
        }
    }

    pub async fn release(mut self) {
        self.released = true;
        give_back(&self.inner, &self.key, self.generation, self.token).await;
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if self.released {
            return;
        }
        let (inner, key) = (self.inner.clone(), std::mem::take(&mut self.key));
        let (generation, token) = (self.generation, self.token);
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move { give_back(&inner, &key, generation, token).await });
        }
    }
}

async fn give_back(inner: &Arc<Inner>, key: &str, generation: u64, token: u64) {
    if !unlocked(inner, key, generation, token).await {
        give_back_later(inner, key.to_string(), generation, token);
        return;
    }
    announce_filled(&inner.pubsub, key).await;
}

/// Gives the lease back by its token (never another holder's); false if
/// Redis did not take it.
async fn unlocked(inner: &Inner, key: &str, generation: u64, token: u64) -> bool {
    match &inner.store {
        Store::Redis(store) => {
            let unlock = store.unlock(key, generation, token);
            inner
                .redis_call(inner.config.op_timeout, unlock)
                .await
                .is_ok()
        }
        Store::Embedded(_) => true,
    }
}

/// Gives a lease back once the breaker is closed again, then announces it;
/// within the lease's term, past which Redis has let it go by itself.
fn give_back_later(inner: &Arc<Inner>, key: String, generation: u64, token: u64) {
    let weak = Arc::downgrade(inner);
    let breaker = inner.breaker.clone();
    let term_ends = tokio::time::Instant::now() + inner.config.lock_lease;
    tokio::spawn(async move {
        loop {
            let closed = tokio::time::timeout_at(term_ends, breaker.closed()).await;
            let Some(inner) = weak.upgrade() else {
                return;
            };
            if closed.is_ok() && !unlocked(&inner, &key, generation, token).await {
                // Still failing (the breaker may not have opened again yet).
                drop(inner);
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
            // Given back, or run out: whoever waits may look again.
            announce_filled(&inner.pubsub, &key).await;
            return;
        }
    });
}

async fn listen(waiters: Weak<FillWaiters>, pubsub: PubSub) {
    let mut resubscribed = pubsub.on_reconnect();
    let mut filled = pubsub.subscribe(CHANNEL).await;
    loop {
        tokio::select! {
            message = filled.recv() => {
                let (Some(message), Some(waiters)) = (message, waiters.upgrade()) else {
                    return;
                };
                if let Ok(key) = message.json::<String>() {
                    waiters.wake(&key);
                }
            }
            changed = resubscribed.changed() => {
                let (Ok(()), Some(waiters)) = (changed, waiters.upgrade()) else {
                    return;
                };
                // Announcements may have been missed in the gap: every
                // waiter looks again (and loads itself if nothing landed).
                waiters.wake_all();
            }
        }
    }
}
