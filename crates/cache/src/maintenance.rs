//! The background task of a Redis-backed cache:
//!
//! - verify the server at start, any server a call meets for the first
//!   time (`store/redis/link.rs`), and on a cluster, at every tick, the
//!   masters as they are now (a failover changes them without any call
//!   failing):
//!   if the journal says the retention window was not replayed into it (a
//!   new `run_id`: a restart, possibly from an older snapshot, or a
//!   failover), replay it, and drop the loading leases it holds if the
//!   journal knew another server; apply the pending journal; only then let
//!   reads through;
//! - while the breaker is open, probe Redis after each cool-down; when it
//!   answers, verify it as above, apply the pending journal, and close the
//!   breaker unless an invalidation was journaled meanwhile (then read the
//!   journal again at once: events that keep arriving never postpone
//!   recovery by more than a journal read);
//! - at every `journal_interval`, whatever the breaker: feed L1 the
//!   journal's recent entries (another instance's event reaches this L1
//!   within the interval even while Redis hangs); while closed, apply the
//!   pending journal (other instances may have journaled invalidations this
//!   one never saw fail), retry unsent bus messages, and reclaim the memory
//!   of entries made stale by invalidations, a batch at a time;
//! - now and then, purge journal entries older than the retention window.
//!
//! The task holds only a weak reference: it ends when the last clone of the
//! cache is dropped.

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use tracing::{error, info, warn};

use crate::cache::Inner;
use crate::store::Store;
use crate::store::redis::{RedisStore, verifying};

/// Longest stretch of sweeping at once, so the task never hogs Redis...
const SWEEP_BUDGET: Duration = Duration::from_millis(50);
/// ...and the pause before the next stretch while stale entries remain: a
/// large invalidation is swept at a third of the speed Redis could take, in
/// seconds rather than the one stretch per `journal_interval` of an idle task,
/// while reads of the invalidated keys (a likely burst) get most of Redis.
const SWEEP_PAUSE: Duration = Duration::from_millis(100);
/// How far back each feed of L1 reads the journal, beyond the interval: an
/// entry becomes visible when its transaction commits, which may be a while
/// after the time it carries.
const FEED_MARGIN: Duration = Duration::from_secs(5);
/// How often entries older than the retention window are purged.
const PURGE_EVERY: Duration = Duration::from_secs(60);
/// Journal reads in a row before recovery lets the next tick try again.
const RECOVERY_ATTEMPTS: usize = 8;

pub(crate) fn spawn(inner: &Arc<Inner>) {
    let weak = Arc::downgrade(inner);
    let wake = inner.wake.clone();
    let Store::Redis(store) = &inner.store else {
        return;
    };
    let identity = store.identity().clone();
    let tick = inner
        .config
        .journal_interval
        .min(inner.config.breaker_cooldown)
        .max(Duration::from_millis(5));
    tokio::spawn(verifying(async move {
        let mut next_journal_pass = Instant::now();
        let mut next_purge = Instant::now();
        let mut sweep_pending = false;
        // Verify the server at once: the first calls need not wait for it.
        let mut first = true;
        loop {
            let pause = if sweep_pending {
                SWEEP_PAUSE.min(tick)
            } else {
                tick
            };
            let mut verify = std::mem::take(&mut first);
            if !verify {
                tokio::select! {
                    _ = tokio::time::sleep(pause) => {}
                    _ = wake.notified() => {}
                    _ = identity.wanted.notified() => verify = true,
                }
            }
            let Some(inner) = Weak::upgrade(&weak) else {
                return;
            };
            let Store::Redis(store) = &inner.store else {
                return;
            };
            if !verify && !inner.breaker.is_open() {
                verify = changed(&inner, store).await;
            }
            if inner.breaker.is_open() {
                recover(&inner, store).await;
            } else if verify && !verified(&inner, store).await && inner.breaker.trip() {
                error!(
                    "Redis connection error: no answer, or the server could not be verified; skipping Redis until it answers"
                );
            }
            if Instant::now() >= next_journal_pass {
                next_journal_pass = Instant::now() + inner.config.journal_interval;
                inner
                    .feed_l1(inner.config.journal_interval + FEED_MARGIN)
                    .await;
                if !inner.breaker.is_open() {
                    if !inner.apply_journal().await {
                        inner.breaker.trip();
                        continue;
                    }
                    if let Some(l1) = &inner.l1 {
                        l1.retry_announcements(&inner.pubsub).await;
                    }
                    // Look for invalidated member sets at every journal pass.
                    sweep_pending = true;
                }
            }
            if Instant::now() >= next_purge {
                next_purge = Instant::now() + PURGE_EVERY;
                purge(&inner).await;
            }
            if sweep_pending && !inner.breaker.is_open() {
                sweep_pending = sweep(&inner, store).await;
            }
        }
    }));
}

/// Whether the servers changed since verified (a cluster's masters; see
/// `RedisStore::changed`). A cluster that cannot be looked at now is left to
/// the calls, which trip the breaker if it does not answer them either.
async fn changed(inner: &Inner, store: &RedisStore) -> bool {
    match tokio::time::timeout(inner.config.op_timeout, store.changed()).await {
        Ok(Ok(changed)) => changed,
        _ => false,
    }
}

/// Sweeps stale entries for at most [`SWEEP_BUDGET`]; true if more remain.
async fn sweep(inner: &Inner, store: &RedisStore) -> bool {
    let started = Instant::now();
    while started.elapsed() < SWEEP_BUDGET {
        let batch = store.sweep(inner.config.sweep_batch);
        match tokio::time::timeout(inner.config.op_timeout, batch).await {
            Ok(Ok(true)) => {}
            _ => return false,
        }
    }
    true
}

async fn purge(inner: &Inner) {
    let before = crate::journal::now_ms() - inner.config.journal_retention.as_millis() as i64;
    match inner.journal.purge(before).await {
        Ok(0) => {}
        Ok(n) => info!("Purged {n} invalidation journal entries older than the retention window"),
        Err(e) => warn!(error = %e, "could not purge the invalidation journal"),
    }
}

/// Makes sure the server the store talks to now holds every journaled
/// invalidation, then lets reads through to it. False if it could not.
async fn verified(inner: &Inner, store: &RedisStore) -> bool {
    // Identifying the server may mean connecting first (on a cluster, to
    // every master, then asking each): a connection's set-up and two calls.
    let budget = inner.config.connect_timeout + inner.config.op_timeout * 2;
    let run_id = match tokio::time::timeout(budget, store.server()).await {
        Ok(Ok(run_id)) => run_id,
        _ => return false,
    };
    if store.identity().is_verified(&run_id) {
        return true;
    }
    let recorded = match inner.journal.server_identity().await {
        Ok(recorded) => recorded,
        Err(e) => {
            warn!(error = %e, "could not read the journal's Redis identity: replaying the window");
            None
        }
    };
    if recorded.as_deref() != Some(run_id.as_str()) {
        info!(
            run_id,
            previous = recorded.as_deref().unwrap_or("none"),
            "Redis server changed (restart, restore or failover): replaying the journal window before reads"
        );
        if !inner.replay_window().await {
            return false;
        }
        if recorded.is_some() {
            drop_leases(inner, store).await;
        }
        if let Err(e) = inner.journal.set_server_identity(run_id.clone()).await {
            warn!(error = %e, "could not record the Redis identity in the journal");
        }
    }
    if !inner.apply_journal().await {
        return false;
    }
    store.identity().set_verified(&run_id);
    true
}

/// Drops the loading leases of a server that took the place of the one the
/// journal knew: they came back with an older snapshot, or belong to loads
/// on a server that is gone, so nobody will give them back or announce their
/// values, and every miss on their keys would wait them out (`lock.rs`). A
/// lease is only an efficiency tool: dropping one that is in use costs a
/// duplicate load, never a wrong value. (Not on a first contact, when the
/// journal knew no server: then the leases are those of running instances.)
async fn drop_leases(inner: &Inner, store: &RedisStore) {
    let budget = inner.config.op_timeout * 8;
    match tokio::time::timeout(budget, store.clear_pattern("~lock:*")).await {
        Ok(Ok(0)) => {}
        Ok(Ok(n)) => info!("Dropped {n} loading leases the Redis server came back with"),
        _ => warn!("could not drop the loading leases of the Redis server"),
    }
}

async fn recover(inner: &Inner, store: &RedisStore) {
    let cooling = inner
        .breaker
        .cooldown_from()
        .is_some_and(|at| at.elapsed() < inner.config.breaker_cooldown);
    if cooling {
        return;
    }
    let answered = tokio::time::timeout(inner.config.op_timeout, store.ping())
        .await
        .is_ok_and(|r| r.is_ok());
    if !answered || !verified(inner, store).await {
        inner.breaker.restart_cooldown();
        return;
    }
    for _ in 0..RECOVERY_ATTEMPTS {
        let seen = inner.breaker.journaled_count();
        if !inner.apply_journal().await {
            warn!(
                "Redis answers again but the journal could not be applied yet: still skipping Redis"
            );
            inner.breaker.restart_cooldown();
            return;
        }
        if inner.breaker.close_if_none_journaled_since(seen) {
            info!("Redis connected successfully");
            return;
        }
    }
}
