//! The circuit breaker in front of Redis (SPEC 1.2.5).
//!
//! Closed, every call goes to Redis with a timeout. After `threshold`
//! consecutive failures (or one failed invalidation, which must not be
//! followed by reads that could be stale) it opens: calls skip Redis at the
//! cost of an atomic load. Only the maintenance task closes it again, after a
//! probe succeeds *and* the pending-invalidation journal has been applied, so
//! no read reaches a Redis that may still hold invalidated entries.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Instant;

pub(crate) struct Breaker {
    open: AtomicBool,
    consecutive_failures: AtomicU32,
    threshold: u32,
    trips: Mutex<Trips>,
}

#[derive(Default, Clone, Copy)]
struct Trips {
    last: Option<Instant>,
    /// Counts trips, so that a recovery that began before a later trip does
    /// not close the breaker over an invalidation it has not applied.
    generation: u64,
}

impl Breaker {
    pub fn new(threshold: u32) -> Self {
        Breaker {
            open: AtomicBool::new(false),
            consecutive_failures: AtomicU32::new(0),
            threshold: threshold.max(1),
            trips: Mutex::new(Trips::default()),
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

    /// Opens the breaker now (or restarts its cool-down); returns true if it was closed.
    pub fn trip(&self) -> bool {
        let mut trips = self.trips();
        trips.last = Some(Instant::now());
        trips.generation += 1;
        !self.open.swap(true, Ordering::AcqRel)
    }

    /// When the breaker last opened, and its trip count then.
    pub fn last_trip(&self) -> (Option<Instant>, u64) {
        let trips = self.trips();
        (trips.last, trips.generation)
    }

    /// Closes the breaker unless it tripped again since `generation`.
    pub fn close_if_unchanged(&self, generation: u64) -> bool {
        let trips = self.trips();
        if trips.generation != generation {
            return false;
        }
        self.consecutive_failures.store(0, Ordering::Relaxed);
        self.open.store(false, Ordering::Release);
        true
    }

    fn trips(&self) -> std::sync::MutexGuard<'_, Trips> {
        self.trips.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_threshold_and_closes_only_if_not_tripped_since() {
        let breaker = Breaker::new(3);
        assert!(!breaker.record_failure());
        breaker.record_success();
        assert!(!breaker.record_failure());
        assert!(!breaker.record_failure());
        assert!(!breaker.is_open());
        assert!(breaker.record_failure());
        assert!(breaker.is_open());
        let (_, generation) = breaker.last_trip();
        assert!(!breaker.trip(), "already open");
        assert!(
            !breaker.close_if_unchanged(generation),
            "tripped again since"
        );
        let (_, generation) = breaker.last_trip();
        assert!(breaker.close_if_unchanged(generation));
        assert!(!breaker.is_open());
    }
}
