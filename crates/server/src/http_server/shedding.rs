//! Shedding at the connection cap: when every slot is taken, the connection
//! that has waited longest for a request head is closed to make room for
//! the next one.
//!
//! Such a connection holds no request: a client that sends nothing or its
//! head a byte at a time, or a kept-alive one between requests. Closing it
//! loses nothing (an HTTP client retries an idle connection the server
//! closed), and a new client is served at once instead of waiting in the
//! listen backlog for a header timeout to free a slot: a few hundred
//! stalled connections no longer delay everyone else by
//! `HTTP_HEADER_TIMEOUT_MS`. A connection with a request in flight (a body
//! being received: bounded by the body timeout) or upgraded to a WebSocket
//! is never shed. The oldest waiter goes first, so a new connection, which
//! sends its request at once, is the last candidate.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::StatusCode;
use tokio::sync::Notify;
use tokio::time::Instant;

/// The open connections, as far as shedding is concerned.
pub(super) struct Connections {
    open: Mutex<HashMap<u64, Arc<Activity>>>,
    next_id: AtomicU64,
    epoch: Instant,
}

/// What one connection is doing: `waiting` holds [`BUSY`], [`PINNED`],
/// [`SHED`], or the time (ms since the registry's epoch, plus one) since
/// which it has waited for a request head, plus [`KEPT_ALIVE`] once it has
/// served a request. Touched with two atomic stores per request; the
/// registry's lock is taken only to open, close and shed.
pub(super) struct Activity {
    waiting: AtomicU64,
    shed: Notify,
    epoch: Instant,
}

const BUSY: u64 = 0;
const PINNED: u64 = u64::MAX;
const SHED: u64 = u64::MAX - 1;
/// Added to a kept-alive connection's waiting time, so that connections
/// that never sent a whole request (the stalled ones) go first: closing an
/// idle kept-alive connection races with its client's next request, which
/// that client may then see fail. (2^40 ms: 34 years of uptime.)
const KEPT_ALIVE: u64 = 1 << 40;

impl Connections {
    pub(super) fn new() -> Arc<Connections> {
        Arc::new(Connections {
            open: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
            epoch: Instant::now(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<Activity>>> {
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A new connection, waiting for its first request head; forgotten when
    /// the returned guard is dropped.
    pub(super) fn open(self: &Arc<Self>) -> Registered {
        let activity = Arc::new(Activity {
            waiting: AtomicU64::new(0),
            shed: Notify::new(),
            epoch: self.epoch,
        });
        activity.wait(0);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.lock().insert(id, activity.clone());
        Registered {
            connections: self.clone(),
            id,
            activity,
        }
    }

    /// Closes the connection that has waited longest for a request head, if
    /// it has waited at least `grace`; returns whether one was told to close.
    /// The grace spares a new client the moment between its connect and
    /// its request head (else a stream of new stalled connections would
    /// shed each other, and new clients with them, as fast as they come),
    /// and bounds the rate of sheds.
    pub(super) fn shed_longest_waiting(&self, grace: Duration) -> bool {
        let waited_since_at_most =
            (self.epoch.elapsed().as_millis() as u64 + 1).saturating_sub(grace.as_millis() as u64);
        let open = self.lock();
        let oldest = open
            .values()
            .filter_map(|activity| {
                let since = activity.waiting.load(Ordering::Acquire);
                let eligible =
                    since != BUSY && since < SHED && since % KEPT_ALIVE <= waited_since_at_most;
                eligible.then_some((since, activity))
            })
            .min_by_key(|(since, _)| *since);
        let Some((since, activity)) = oldest else {
            return false;
        };
        // Only if it is still waiting: a request that began meanwhile wins.
        if activity
            .waiting
            .compare_exchange(since, SHED, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return false;
        }
        activity.shed.notify_one();
        metrics::counter!("spywatcher_http_connections_shed_total").increment(1);
        true
    }
}

impl Activity {
    /// A request head arrived.
    pub(super) fn busy(&self) {
        let _ = self
            .waiting
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |now| {
                (now != SHED && now != PINNED).then_some(BUSY)
            });
    }

    /// The answer to a request is ready: the connection waits for the next
    /// head, or, upgraded (101), belongs to its WebSocket for good.
    pub(super) fn answered(&self, status: StatusCode) {
        if status == StatusCode::SWITCHING_PROTOCOLS {
            self.waiting.store(PINNED, Ordering::Release);
        } else {
            self.wait(KEPT_ALIVE);
        }
    }

    fn wait(&self, rank: u64) {
        let since = self.epoch.elapsed().as_millis() as u64 + 1 + rank;
        let _ = self
            .waiting
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |now| {
                (now != SHED && now != PINNED).then_some(since)
            });
    }

    /// Resolves when the connection is to close.
    pub(super) async fn shed(&self) {
        self.shed.notified().await
    }
}

/// A connection in the registry, until dropped.
pub(super) struct Registered {
    connections: Arc<Connections>,
    id: u64,
    pub(super) activity: Arc<Activity>,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.connections.lock().remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_longest_waiting_idle_connection_is_shed_never_a_busy_or_upgraded_one() {
        let connections = Connections::new();
        let shed = || connections.shed_longest_waiting(Duration::from_millis(5));
        let kept_alive = connections.open();
        kept_alive.activity.busy();
        kept_alive.activity.answered(StatusCode::OK);
        tokio::time::sleep(Duration::from_millis(5)).await;
        let oldest = connections.open();
        tokio::time::sleep(Duration::from_millis(5)).await;
        let busy = connections.open();
        let upgraded = connections.open();
        tokio::time::sleep(Duration::from_millis(5)).await;
        let newest = connections.open();
        assert!(
            !connections.shed_longest_waiting(Duration::from_secs(60)),
            "none has waited a minute"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
        busy.activity.busy();
        upgraded.activity.busy();
        upgraded.activity.answered(StatusCode::SWITCHING_PROTOCOLS);

        assert!(shed());
        assert_eq!(oldest.activity.waiting.load(Ordering::Acquire), SHED);
        assert!(shed());
        assert_eq!(newest.activity.waiting.load(Ordering::Acquire), SHED);
        // Then the kept-alive ones, however long the others waited.
        assert!(shed());
        assert_eq!(kept_alive.activity.waiting.load(Ordering::Acquire), SHED);
        assert!(!shed(), "busy and upgraded stay");

        // Answered, the busy one waits for its next head: it may go now.
        busy.activity.answered(StatusCode::OK);
        assert!(!shed(), "not before its grace");
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert!(shed());
        drop((kept_alive, oldest, busy, newest));
        assert_eq!(connections.lock().len(), 1);
    }
}
