//! The circuit breaker in front of Redis (SPEC 1.2.5 and 1.2.10).
//!
//! Closed, every call goes to Redis with a timeout. After `threshold`
//! consecutive failures (or one failed invalidation, which must not be
//! followed by reads that could be stale) it opens: calls skip Redis at the
//! cost of an atomic load. Only the maintenance task closes it again, after a
//! probe succeeds *and* the journal has been applied, so no read reaches a
//! Redis that may still hold invalidated entries.
//!
//! Invalidations keep arriving while it is open (a busy server sends events
//! every second). They are journaled and counted here, but they neither
//! restart the cool-down nor stop a recovery for good: recovery closes the
//! breaker only if no invalidation was journaled since it read the journal,
//! and otherwise reads it again at once. The count and the close share one
//! lock, so an invalidation is either counted before the close (and recovery
//! applies it) or finds the breaker closed (and applies it itself before its
//! caller hears back): none is acknowledged and then left behind.
//!
//! Callers that wait on something only Redis can bring (another instance's
//! announcement that a value landed, `lock.rs`) wait for the breaker too:
//! [`opened`](Breaker::opened) and [`closed`](Breaker::closed) resolve when
//! it changes.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Instant;

use tokio::sync::Notify;

pub(crate) struct Breaker {
    open: AtomicBool,
    consecutive_failures: AtomicU32,
    threshold: u32,
    state: Mutex<State>,
    /// Woken when the breaker opens or closes.
    changed: Notify,
}

#[derive(Default)]
struct State {
    /// When the current cool-down began.
    cooldown_from: Option<Instant>,
    /// Invalidations journaled while open.
    journaled: u64,
}

impl Breaker {
    pub fn new(threshold: u32) -> Self {
        Breaker {
            open: AtomicBool::new(false),
            consecutive_failures: AtomicU32::new(0),
            threshold: threshold.max(1),
            state: Mutex::new(State::default()),
            changed: Notify::new(),
        }
    }

    pub fn is_open(&self) -> bool {
        self.open.load(Ordering::Acquire)
    }

    pub fn record_success(&self) {
        // Read first: the common case writes nothing, so concurrent callers
        // do not bounce the cache line.
        if self.consecutive_failures.load(Ordering::Relaxed) != 0 {
            self.consecutive_failures.store(0, Ordering::Relaxed);
        }
    }

    /// Counts a failure; returns true if this one opened the breaker.
    pub fn record_failure(&self) -> bool {
        let failures = self.consecutive_failures.fetch_add(1, Ordering::Relaxed) + 1;
        failures >= self.threshold && self.trip()
    }

    /// Opens the breaker; returns true if it was closed. An open breaker's
    /// cool-down goes on: tripping it again does not restart it.
    pub fn trip(&self) -> bool {
        let mut state = self.state();
        if self.open.swap(true, Ordering::AcqRel) {
            return false;
        }
        state.cooldown_from = Some(Instant::now());
        self.changed.notify_waiters();
        true
    }

    /// Resolves once the breaker is open (at once if it is).
    pub async fn opened(&self) {
        self.until(true).await
    }

    /// Resolves once the breaker is closed (at once if it is).
    pub async fn closed(&self) {
        self.until(false).await
    }

    async fn until(&self, open: bool) {
        loop {
            // Registered before the check: a change in between wakes it.
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if self.is_open() == open {
                return;
            }
            changed.await;
        }
    }

    /// A probe failed: skip Redis for another cool-down.
    pub fn restart_cooldown(&self) {
        self.state().cooldown_from = Some(Instant::now());
    }

    /// When the current cool-down began (`None` if it never opened).
    pub fn cooldown_from(&self) -> Option<Instant> {
        self.state().cooldown_from
    }

    /// An invalidation that Redis did not take has been journaled. Returns
    /// true if the breaker is open, so recovery will apply it before reads
    /// resume; false if it is closed, so the caller must apply it itself.
    pub fn journaled(&self) -> bool {
        let mut state = self.state();
        if self.open.load(Ordering::Acquire) {
            state.journaled += 1;
            true
        } else {
            false
        }
    }

    /// Taken by recovery before it reads the journal.
    pub fn journaled_count(&self) -> u64 {
        self.state().journaled
    }

    /// Closes the breaker unless an invalidation was journaled since
    /// `journaled_count` returned `seen`.
    pub fn close_if_none_journaled_since(&self, seen: u64) -> bool {
        let state = self.state();
        if state.journaled != seen {
            return false;
        }
        self.consecutive_failures.store(0, Ordering::Relaxed);
        self.open.store(false, Ordering::Release);
        self.changed.notify_waiters();
        true
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_threshold_and_a_trip_while_open_keeps_the_cooldown() {
        let breaker = Breaker::new(3);
        assert!(!breaker.record_failure());
        breaker.record_success();
        assert!(!breaker.record_failure());
        assert!(!breaker.record_failure());
        assert!(!breaker.is_open());
        assert!(breaker.record_failure());
        assert!(breaker.is_open());
        let opened = breaker.cooldown_from();
        std::thread::sleep(std::time::Duration::from_millis(2));
        assert!(!breaker.trip(), "already open");
        assert!(!breaker.record_failure());
        assert_eq!(breaker.cooldown_from(), opened, "the cool-down goes on");
    }

    #[tokio::test]
    async fn waiters_hear_the_breaker_open_and_close() {
        let breaker = std::sync::Arc::new(Breaker::new(1));
        breaker.closed().await;
        let opened = tokio::spawn({
            let breaker = breaker.clone();
            async move { breaker.opened().await }
        });
        tokio::task::yield_now().await;
        assert!(breaker.trip());
        tokio::time::timeout(std::time::Duration::from_secs(1), opened)
            .await
            .expect("woken when it opened")
            .unwrap();
        breaker.opened().await;
        let closed = tokio::spawn({
            let breaker = breaker.clone();
            async move { breaker.closed().await }
        });
        tokio::task::yield_now().await;
        assert!(breaker.close_if_none_journaled_since(breaker.journaled_count()));
        tokio::time::timeout(std::time::Duration::from_secs(1), closed)
            .await
            .expect("woken when it closed")
            .unwrap();
    }

    #[test]
    fn recovery_closes_only_if_nothing_was_journaled_since_it_read_the_journal() {
        let breaker = Breaker::new(1);
        assert!(breaker.trip());
        let seen = breaker.journaled_count();
        assert!(breaker.journaled(), "open: recovery will apply it");
        assert!(!breaker.close_if_none_journaled_since(seen));
        assert!(breaker.is_open());
        let seen = breaker.journaled_count();
        assert!(breaker.close_if_none_journaled_since(seen));
        assert!(!breaker.is_open());
        assert!(!breaker.journaled(), "closed: the caller applies it");
    }
}
