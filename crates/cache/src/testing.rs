//! Pause points for tests: a test arms a [`Step`],
//! the next task of this cache to reach it stops there until the test
//! releases it. Races are tested by forcing their interleaving, not by
//! hammering and hoping.
//!
//! ```ignore
//! let paused = cache.hooks().arm(Step::ReadAfterSnapshot);
//! let read = tokio::spawn(async move { reader.get::<u64>("k").await });
//! paused.reached().await;        // the read took its snapshot, has not read Redis
//! writer.invalidate_by_tag("t").await;
//! paused.release();
//! ```
//!
//! Unarmed, a pause point costs one relaxed atomic load; none is on the L1
//! hit path.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

/// Where a task can be paused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Step {
    /// A read that fills L1 (`remember`'s Redis read): after the versions
    /// are taken, before Redis is read.
    ReadAfterSnapshot,
    /// A read that fills L1: after Redis answered, before L1 is filled.
    ReadBeforeFill,
    /// An invalidation: after L1 has been told, before Redis is.
    InvalidateBeforeStore,
    /// An invalidation: after Redis took it, before L1 is told again.
    InvalidateAfterStore,
    /// `remember`'s leader: after the loader returned, before the value is stored.
    LoaderDone,
    /// The pub/sub subscriber: connected again after a gap (a lost
    /// connection, a failed attempt), before it re-subscribes.
    BeforeResubscribe,
    /// Maintenance: a journal pass has read the journal, before it applies it.
    JournalRead,
}

#[derive(Default)]
struct Gate {
    reached: Notify,
    released: Notify,
}

/// The armed pause points of one cache.
#[derive(Default)]
pub struct Hooks {
    /// Whether any step is armed: the only cost of a pause point in production.
    any: AtomicBool,
    armed: Mutex<HashMap<Step, Arc<Gate>>>,
}

/// An armed pause point: the first task to reach it waits for [`release`](Self::release).
pub struct Armed {
    gate: Arc<Gate>,
}

impl Hooks {
    /// The next task to reach `step` (only one) stops there.
    pub fn arm(&self, step: Step) -> Armed {
        let gate = Arc::new(Gate::default());
        self.lock().insert(step, gate.clone());
        self.any.store(true, Ordering::Release);
        Armed { gate }
    }

    pub(crate) async fn reach(&self, step: Step) {
        if !self.any.load(Ordering::Relaxed) {
            return;
        }
        let gate = {
            let mut armed = self.lock();
            let gate = armed.remove(&step);
            self.any.store(!armed.is_empty(), Ordering::Release);
            gate
        };
        let Some(gate) = gate else {
            return;
        };
        let released = gate.released.notified();
        gate.reached.notify_one();
        released.await;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Step, Arc<Gate>>> {
        self.armed.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Armed {
    /// Waits until a task has reached the step (and is paused there).
    pub async fn reached(&self) {
        self.gate.reached.notified().await;
    }

    /// Lets the paused task go on.
    pub fn release(self) {
        self.gate.released.notify_one();
    }
}
