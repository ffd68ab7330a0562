//! When an analytics of a watched guild is recomputed: when stale, at most
//! once per push interval, never two at once for one guild and analytics,
//! and, over every guild of the instance, no more at once than the
//! concurrency limit (the watcher takes from [`Queue::next_ready`] only
//! while it runs fewer).
//!
//! The state of one guild's analytics is a [`Slot`] kept with the guild
//! (`hub.rs`); the queue holds what waits: keys whose time has come, in
//! the order they became due, and keys that wait for the end of their
//! interval, earliest first. A key is in the queue at most once (its
//! slot says `queued`), so a burst of events over a guild stays one entry.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::time::Duration;

use spywatcher_analytics::{AnalyticsKind, GuildId};
use tokio::time::Instant;

/// One analytics of one guild.
pub(super) type Key = (GuildId, AnalyticsKind);

/// The schedule of one analytics of one guild.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Slot {
    /// Changed since its last recomputation started.
    stale: bool,
    /// In the queue (ready, or waiting for its interval to end).
    queued: bool,
    running: bool,
    last_start: Option<Instant>,
}

impl Slot {
    pub(super) fn is_running(&self) -> bool {
        self.running
    }
}

/// What waits to be recomputed, over every guild of the instance.
pub(super) struct Queue {
    interval: Duration,
    ready: VecDeque<Key>,
    later: BinaryHeap<Reverse<(Instant, Key)>>,
}

impl Queue {
    /// `interval`: least time between two starts for one key.
    pub(super) fn new(interval: Duration) -> Queue {
        Queue {
            interval,
            ready: VecDeque::new(),
            later: BinaryHeap::new(),
        }
    }

    /// An invalidation changed `kind` of `guild`. One that is running read
    /// the data before this change, so it is queued again once it is done.
    pub(super) fn mark_stale(
        &mut self,
        guild: &GuildId,
        kind: AnalyticsKind,
        slot: &mut Slot,
        now: Instant,
    ) {
        slot.stale = true;
        if !slot.running && !slot.queued {
            self.enqueue(guild, kind, slot, now);
        }
    }

    /// A recomputation of the key ended (however it ended).
    pub(super) fn finished(
        &mut self,
        guild: &GuildId,
        kind: AnalyticsKind,
        slot: &mut Slot,
        now: Instant,
    ) {
        slot.running = false;
        if slot.stale && !slot.queued {
            self.enqueue(guild, kind, slot, now);
        }
    }

    /// Marks the slot as running: its key was taken from
    /// [`next_ready`](Self::next_ready) and is computed now.
    pub(super) fn start(slot: &mut Slot, now: Instant) {
        slot.stale = false;
        slot.queued = false;
        slot.running = true;
        slot.last_start = Some(now);
    }

    /// The slot's key was taken from the queue but will not run (its guild
    /// has no subscriber left).
    pub(super) fn drop_key(slot: &mut Slot) {
        slot.stale = false;
        slot.queued = false;
    }

    /// The next key whose time has come, if any. It may be out of date
    /// (its guild gone, or gone and watched again): the caller checks that
    /// its slot is still `queued` before it starts it.
    pub(super) fn next_ready(&mut self, now: Instant) -> Option<Key> {
        while let Some(Reverse((due, _))) = self.later.peek() {
            if *due > now {
                break;
            }
            if let Some(Reverse((_, key))) = self.later.pop() {
                self.ready.push_back(key);
            }
        }
        self.ready.pop_front()
    }

    /// When the earliest waiting key becomes ready.
    pub(super) fn next_due(&self) -> Option<Instant> {
        self.later.peek().map(|Reverse((due, _))| *due)
    }

    /// Keys queued, ready or waiting.
    pub(super) fn len(&self) -> usize {
        self.ready.len() + self.later.len()
    }

    pub(super) fn is_queued(slot: &Slot) -> bool {
        slot.queued
    }

    fn enqueue(&mut self, guild: &GuildId, kind: AnalyticsKind, slot: &mut Slot, now: Instant) {
        slot.queued = true;
        let key = (guild.clone(), kind);
        match slot.last_start.map(|last| last + self.interval) {
            Some(due) if due > now => self.later.push(Reverse((due, key))),
            _ => self.ready.push_back(key),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use AnalyticsKind::*;

    fn take_all(queue: &mut Queue, now: Instant) -> Vec<Key> {
        std::iter::from_fn(|| queue.next_ready(now)).collect()
    }

    #[test]
    fn a_burst_of_changes_is_one_recomputation_now_and_one_per_interval() {
        let interval = Duration::from_millis(200);
        let mut queue = Queue::new(interval);
        let guild = GuildId::parse("1").unwrap();
        let (mut lurkers, mut clients) = (Slot::default(), Slot::default());
        let start = Instant::now();
        assert!(queue.next_ready(start).is_none());

        // The first change after a quiet time: at once, queued once.
        queue.mark_stale(&guild, Lurkers, &mut lurkers, start);
        queue.mark_stale(&guild, Clients, &mut clients, start);
        queue.mark_stale(&guild, Lurkers, &mut lurkers, start);
        assert_eq!(
            take_all(&mut queue, start),
            [(guild.clone(), Lurkers), (guild.clone(), Clients)]
        );
        Queue::start(&mut lurkers, start);
        Queue::start(&mut clients, start);

        // More changes while it runs and within the interval: nothing now...
        queue.mark_stale(&guild, Lurkers, &mut lurkers, start);
        assert_eq!(queue.len(), 0, "a running key waits for its end");
        queue.finished(&guild, Lurkers, &mut lurkers, start + interval / 4);
        queue.mark_stale(&guild, Lurkers, &mut lurkers, start + interval / 2);
        assert!(queue.next_ready(start + interval / 2).is_none());
        assert_eq!(queue.next_due(), Some(start + interval));
        // ...and one at the end of the interval for all of them.
        assert_eq!(
            take_all(&mut queue, start + interval),
            [(guild.clone(), Lurkers)]
        );
        Queue::start(&mut lurkers, start + interval);
        queue.finished(&guild, Lurkers, &mut lurkers, start + interval);
        assert!(queue.next_ready(start + interval * 3).is_none());

        // Clients is still running: its new change waits for it to finish.
        queue.mark_stale(&guild, Clients, &mut clients, start + interval * 3);
        assert!(queue.next_ready(start + interval * 3).is_none());
        queue.finished(&guild, Clients, &mut clients, start + interval * 3);
        assert_eq!(
            take_all(&mut queue, start + interval * 3),
            [(guild.clone(), Clients)]
        );
    }

    #[test]
    fn guilds_wait_their_turn_in_the_order_they_became_due() {
        let interval = Duration::from_millis(100);
        let mut queue = Queue::new(interval);
        let start = Instant::now();
        let guilds: Vec<GuildId> = (1..=3)
            .map(|g| GuildId::parse(g.to_string()).unwrap())
            .collect();
        let mut slots = [Slot::default(); 3];
        for (guild, slot) in guilds.iter().zip(&mut slots) {
            queue.mark_stale(guild, Ghosts, slot, start);
        }
        // Guild 1 ran recently: its next change waits for its interval.
        let first = queue.next_ready(start).unwrap();
        Queue::start(&mut slots[0], start);
        queue.finished(&first.0, Ghosts, &mut slots[0], start);
        queue.mark_stale(&guilds[0], Ghosts, &mut slots[0], start);
        let rest: Vec<GuildId> = take_all(&mut queue, start)
            .into_iter()
            .map(|(g, _)| g)
            .collect();
        assert_eq!(rest, guilds[1..]);
        assert_eq!(queue.len(), 1);
        assert_eq!(
            take_all(&mut queue, start + interval),
            [(guilds[0].clone(), Ghosts)]
        );
    }
}
