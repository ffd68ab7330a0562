//! The background task of a Redis-backed cache:
//!
//! - while the breaker is open, probe Redis after each cool-down; when it
//!   answers, apply the pending-invalidation journal *first*, and only then
//!   close the breaker and let reads through;
//! - while it is closed, apply the journal at every `journal_interval` (other
//!   instances may have journaled invalidations this one never saw fail), and
//!   reclaim the memory of entries made stale by invalidations, a batch at a
//!   time.
//!
//! The task holds only a weak reference: it ends when the last clone of the
//! cache is dropped.

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use tracing::{info, warn};

use crate::cache::Inner;
use crate::store::Store;

/// Longest stretch of sweeping at once, so the task never hogs Redis...
const SWEEP_BUDGET: Duration = Duration::from_millis(50);
/// ...and the pause before the next stretch while stale entries remain: a
/// large invalidation is swept at a third of the speed Redis could take, in
/// seconds rather than the one stretch per `journal_interval` of an idle task,
/// while reads of the invalidated keys (a likely burst) get most of Redis.
const SWEEP_PAUSE: Duration = Duration::from_millis(100);

pub(crate) fn spawn(inner: &Arc<Inner>) {
    let weak = Arc::downgrade(inner);
    let wake = inner.wake.clone();
    let tick = inner
        .config
        .journal_interval
        .min(inner.config.breaker_cooldown)
        .max(Duration::from_millis(5));
    tokio::spawn(async move {
        let mut last_journal_check = Instant::now();
        let mut sweep_pending = false;
        loop {
            let pause = if sweep_pending {
                SWEEP_PAUSE.min(tick)
            } else {
                tick
            };
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = wake.notified() => {}
            }
            let Some(inner) = Weak::upgrade(&weak) else {
                return;
            };
            let Store::Redis(store) = &inner.store else {
                return;
            };
            if inner.breaker.is_open() {
                recover(&inner).await;
                sweep_pending = false;
                continue;
            }
            if last_journal_check.elapsed() >= inner.config.journal_interval {
                last_journal_check = Instant::now();
                if !inner.apply_journal().await {
                    inner.breaker.trip();
                    continue;
                }
                if let Some(l1) = &inner.l1 {
                    l1.retry_announcements(&inner.pubsub).await;
                }
                // Look for invalidated member sets at every journal check.
                sweep_pending = true;
            }
            if sweep_pending {
                sweep_pending = false;
                let started = Instant::now();
                while started.elapsed() < SWEEP_BUDGET {
                    let batch = store.sweep(inner.config.sweep_batch);
                    match tokio::time::timeout(inner.config.op_timeout, batch).await {
                        // More may remain: carry on, after a pause if out of budget.
                        Ok(Ok(true)) => sweep_pending = true,
                        _ => {
                            sweep_pending = false;
                            break;
                        }
                    }
                }
            }
        }
    });
}

async fn recover(inner: &Inner) {
    let (opened, generation) = inner.breaker.last_trip();
    if opened.is_some_and(|at| at.elapsed() < inner.config.breaker_cooldown) {
        return;
    }
    let Store::Redis(store) = &inner.store else {
        return;
    };
    let answered = tokio::time::timeout(inner.config.op_timeout, store.ping())
        .await
        .is_ok_and(|r| r.is_ok());
    if !answered {
        // Start another cool-down.
        inner.breaker.trip();
        return;
    }
    if !inner.apply_journal().await {
        warn!("Redis answers again but the journal could not be applied yet: still skipping Redis");
        inner.breaker.trip();
        return;
    }
    if inner.breaker.close_if_unchanged(generation) {
        info!("Redis connected successfully");
    }
}
