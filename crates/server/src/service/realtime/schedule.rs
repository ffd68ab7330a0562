//! When a guild's watcher recomputes an analytics: when stale, at most
//! once per interval, never two at once.

use std::collections::HashMap;
use std::time::Duration;

use spywatcher_analytics::AnalyticsKind;
use tokio::time::Instant;

/// When each analytics of a guild is recomputed: when stale, at most once
/// per interval, never two at once (a slow older computation must not
/// finish after a newer one).
pub(super) struct Schedule {
    interval: Duration,
    slots: HashMap<AnalyticsKind, Slot>,
}

#[derive(Default)]
struct Slot {
    stale: bool,
    running: bool,
    last_start: Option<Instant>,
}

impl Slot {
    /// When it may start, if it should; `None` inside: at once.
    fn due(&self, interval: Duration) -> Option<Option<Instant>> {
        (self.stale && !self.running).then(|| self.last_start.map(|last| last + interval))
    }
}

impl Schedule {
    pub(super) fn new(interval: Duration) -> Schedule {
        Schedule {
            interval,
            slots: HashMap::new(),
        }
    }

    /// An invalidation changed `kinds`. One that is running read the data
    /// before this change, so it is recomputed once more after it.
    pub(super) fn mark_stale(&mut self, kinds: &[AnalyticsKind]) {
        for &kind in kinds {
            self.slots.entry(kind).or_default().stale = true;
        }
    }

    /// The earliest time one waits for.
    pub(super) fn next_due(&self) -> Option<Instant> {
        self.slots
            .values()
            .filter_map(|slot| slot.due(self.interval))
            .map(|at| at.unwrap_or_else(Instant::now))
            .min()
    }

    /// The analytics to recompute now, marked as running.
    pub(super) fn take_due(&mut self, now: Instant) -> Vec<AnalyticsKind> {
        let mut due = Vec::new();
        for (&kind, slot) in &mut self.slots {
            if slot
                .due(self.interval)
                .is_some_and(|at| at.is_none_or(|at| at <= now))
            {
                slot.stale = false;
                slot.running = true;
                slot.last_start = Some(now);
                due.push(kind);
            }
        }
        due
    }

    pub(super) fn finished(&mut self, kind: AnalyticsKind) {
        if let Some(slot) = self.slots.get_mut(&kind) {
            slot.running = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use AnalyticsKind::*;
    use spywatcher_analytics::EventKind;

    #[test]
    fn a_burst_of_changes_is_one_recomputation_now_and_one_per_interval() {
        let interval = Duration::from_millis(200);
        let mut schedule = Schedule::new(interval);
        let start = Instant::now();
        assert!(schedule.take_due(start).is_empty());

        // The first change after a quiet time: at once.
        schedule.mark_stale(EventKind::Presence.invalidates());
        let mut first = schedule.take_due(start);
        first.sort();
        assert_eq!(first, [Lurkers, Clients]);

        // More changes while it runs and within the interval: nothing now...
        schedule.mark_stale(&[Lurkers]);
        schedule.finished(Lurkers);
        schedule.mark_stale(&[Lurkers]);
        assert!(schedule.take_due(start + interval / 2).is_empty());
        assert_eq!(schedule.next_due(), Some(start + interval));
        // ...and one at the end of the interval for all of them.
        assert_eq!(schedule.take_due(start + interval), [Lurkers]);
        assert!(schedule.take_due(start + interval * 3).is_empty());

        // Clients is still running: its new change waits for it to finish.
        schedule.mark_stale(&[Clients]);
        assert!(schedule.take_due(start + interval * 3).is_empty());
        schedule.finished(Clients);
        assert_eq!(schedule.take_due(start + interval * 3), [Clients]);
    }
}
