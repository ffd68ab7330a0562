//! Single flight: concurrent `remember` calls on one missing key in one
//! process run the loader once; the others wait for its value (SPEC 1.2.4).
//!
//! A flight holds the [`Fence`] of its tags, taken when it started. A caller
//! arriving after an invalidation of one of them (this process's own,
//! another instance's message, the journal) does not join the older flight,
//! whose loader may have read data from before the invalidation: it starts a
//! fresh one. Invalidations of other tags do not disturb it, so a busy
//! stream of events elsewhere keeps one loader per key.

use std::collections::HashMap;
use std::sync::Mutex;

use bytes::Bytes;
use tokio::sync::watch;

use crate::fence::Fence;

/// What the waiters of a flight learn: the encoded value, or that the leader
/// gave up (its loader failed or it was cancelled) and they must try again.
type Outcome = Option<Result<Bytes, ()>>;

struct Flight {
    id: u64,
    fence: Fence,
    outcome: watch::Receiver<Outcome>,
}

#[derive(Default)]
pub(crate) struct Flights {
    inner: Mutex<(u64, HashMap<String, Flight>)>,
}

pub(crate) enum Role<'a> {
    Leader(LeaderGuard<'a>),
    Waiter(watch::Receiver<Outcome>),
}

impl Flights {
    /// Joins the flight of `key` if its fence still holds, or starts one
    /// with the fence `fence()` takes.
    pub fn join(&self, key: &str, fence: impl FnOnce() -> Fence) -> Role<'_> {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(flight) = inner.1.get(key)
            && flight.fence.holds()
        {
            return Role::Waiter(flight.outcome.clone());
        }
        inner.0 += 1;
        let id = inner.0;
        let (tx, rx) = watch::channel(None);
        inner.1.insert(
            key.to_string(),
            Flight {
                id,
                fence: fence(),
                outcome: rx,
            },
        );
        Role::Leader(LeaderGuard {
            flights: self,
            key: key.to_string(),
            id,
            tx,
        })
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.inner.lock().unwrap().1.len()
    }
}

/// Held by the caller that runs the loader. Dropping it without
/// [`complete`](Self::complete) (loader error, cancellation) releases the
/// waiters to try again.
pub(crate) struct LeaderGuard<'a> {
    flights: &'a Flights,
    key: String,
    id: u64,
    tx: watch::Sender<Outcome>,
}

impl LeaderGuard<'_> {
    pub fn complete(self, value: Bytes) {
        let _ = self.tx.send(Some(Ok(value)));
    }
}

impl Drop for LeaderGuard<'_> {
    fn drop(&mut self) {
        let mut inner = self.flights.inner.lock().unwrap_or_else(|e| e.into_inner());
        // A newer flight may have replaced ours after an invalidation.
        if inner.1.get(&self.key).is_some_and(|f| f.id == self.id) {
            inner.1.remove(&self.key);
        }
        drop(inner);
        self.tx.send_if_modified(|outcome| {
            if outcome.is_none() {
                *outcome = Some(Err(()));
                true
            } else {
                false
            }
        });
    }
}

/// Waits for a flight's outcome: `Some(value)`, or `None` if the caller should retry.
pub(crate) async fn wait(mut rx: watch::Receiver<Outcome>) -> Option<Bytes> {
    match rx.wait_for(Option::is_some).await {
        Ok(outcome) => outcome.clone().and_then(Result::ok),
        Err(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::embedded::EmbeddedStore;
    use std::sync::Arc;

    fn fence(store: &EmbeddedStore) -> impl FnOnce() -> Fence {
        move || Fence::new(store.snapshot(&["t".to_string()]), &Arc::default())
    }

    #[tokio::test]
    async fn second_caller_waits_for_the_first() {
        let flights = Flights::default();
        let store = EmbeddedStore::new(1 << 20);
        let Role::Leader(leader) = flights.join("k", fence(&store)) else {
            panic!("first caller leads")
        };
        let Role::Waiter(rx) = flights.join("k", fence(&store)) else {
            panic!("second caller waits")
        };
        leader.complete(Bytes::from_static(b"v"));
        assert_eq!(wait(rx).await.as_deref(), Some(&b"v"[..]));
        assert_eq!(flights.len(), 0);
    }

    #[tokio::test]
    async fn a_failed_leader_releases_waiters_to_retry() {
        let flights = Flights::default();
        let store = EmbeddedStore::new(1 << 20);
        let leader = flights.join("k", fence(&store));
        let Role::Waiter(rx) = flights.join("k", fence(&store)) else {
            panic!("second caller waits")
        };
        drop(leader);
        assert_eq!(wait(rx).await, None);
    }

    #[tokio::test]
    async fn callers_after_an_invalidation_start_a_new_flight() {
        let flights = Flights::default();
        let store = EmbeddedStore::new(1 << 20);
        let _old = flights.join("k", fence(&store));
        store.invalidate_tags(&["other".to_string()]);
        assert!(
            matches!(flights.join("k", fence(&store)), Role::Waiter(_)),
            "another tag's invalidation does not disturb the flight"
        );
        store.invalidate_tags(&["t".to_string()]);
        assert!(matches!(flights.join("k", fence(&store)), Role::Leader(_)));
    }
}
