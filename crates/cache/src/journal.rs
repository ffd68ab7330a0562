//! The invalidation journal (SPEC 1.2.6 and 1.2.11).
//!
//! Every invalidation is recorded here: one that could not reach Redis
//! instead of being forgotten, one that did for the window below, and a
//! service records its own in the same transaction as the event that caused
//! it. An entry has two lives:
//!
//! - **pending** until some cache has applied it to Redis: every cache that
//!   shares the journal applies pending entries when it reconnects (before
//!   serving reads from Redis again) and at a short interval, then marks
//!   them applied;
//! - **kept** for the retention window (the longest TTL an entry may have)
//!   after that, applied or not: a Redis that restarts from an older
//!   snapshot, a failover to a replica that missed writes, or a restore can
//!   undo invalidations that had succeeded, and a cache that sees Redis'
//!   identity change replays the whole window before reads resume. Entries
//!   older than the window concern only entries that have expired anyway,
//!   and are purged.
//!
//! The recent entries also feed each instance's in-process tier (L1) while
//! Redis is skipped, so an event ingested on another instance is not served
//! stale from L1 for longer than the journal interval.
//!
//! Applying an entry twice is harmless: invalidation is idempotent.
//!
//! [`MemoryJournal`] lives in process memory (library users; several caches in
//! one process can share it). A service that must survive its own exit backs
//! the journal with its database by implementing [`Journal`].

use std::collections::{HashSet, VecDeque};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};

use crate::error::JournalError;

/// An invalidation, as journaled.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "camelCase")]
pub enum PendingInvalidation {
    Tags { tags: Vec<String> },
    Keys { keys: Vec<String> },
    Pattern { pattern: String },
    FlushAll,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalEntry {
    /// Unique, and increasing in the order of recording within one process
    /// (across processes, ids need not follow commit order).
    pub id: i64,
    pub op: PendingInvalidation,
    /// When it was recorded, in milliseconds since the Unix epoch.
    pub recorded_at_ms: i64,
    /// Whether some cache has applied it to Redis.
    pub applied: bool,
}

/// Durable storage for invalidations, shared by the caches that share a Redis.
pub trait Journal: Send + Sync + 'static {
    /// Records an invalidation: one Redis could not take (`applied` false:
    /// pending), or one it took (`applied` true: kept for the window).
    /// Returns its id.
    fn record(
        &self,
        op: PendingInvalidation,
        applied: bool,
    ) -> BoxFuture<'_, Result<i64, JournalError>>;
    /// Entries not yet applied to Redis, oldest first.
    fn pending(&self) -> BoxFuture<'_, Result<Vec<JournalEntry>, JournalError>>;
    /// Marks entries as applied to Redis. They stay for the retention
    /// window. Ids no longer there (purged) are ignored.
    fn mark_applied(&self, ids: Vec<i64>) -> BoxFuture<'_, Result<(), JournalError>>;
    /// Every entry recorded at or after `since_ms` (ms since the Unix
    /// epoch), applied or not, oldest first.
    fn recorded_since(
        &self,
        since_ms: i64,
    ) -> BoxFuture<'_, Result<Vec<JournalEntry>, JournalError>>;
    /// Drops the entries recorded before `before_ms`; returns how many.
    fn purge(&self, before_ms: i64) -> BoxFuture<'_, Result<u64, JournalError>>;
    /// The identity (`run_id`) of the Redis server into which the retention
    /// window was last replayed, as recorded by any cache sharing the
    /// journal; `None` if none was ever recorded.
    fn server_identity(&self) -> BoxFuture<'_, Result<Option<String>, JournalError>>;
    /// Records that the window has been replayed into the server `run_id`.
    fn set_server_identity(&self, run_id: String) -> BoxFuture<'_, Result<(), JournalError>>;
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// A journal in process memory.
#[derive(Debug, Default)]
pub struct MemoryJournal {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    last_id: i64,
    /// In the order recorded: by id, and by time.
    entries: VecDeque<JournalEntry>,
    server_identity: Option<String>,
}

impl MemoryJournal {
    pub fn new() -> Self {
        Self::default()
    }

    /// Entries not yet applied to Redis.
    pub fn pending_len(&self) -> usize {
        self.lock().entries.iter().filter(|e| !e.applied).count()
    }

    /// Entries kept, applied or not.
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Journal for MemoryJournal {
    fn record(
        &self,
        op: PendingInvalidation,
        applied: bool,
    ) -> BoxFuture<'_, Result<i64, JournalError>> {
        let mut state = self.lock();
        state.last_id += 1;
        let id = state.last_id;
        state.entries.push_back(JournalEntry {
            id,
            op,
            recorded_at_ms: now_ms(),
            applied,
        });
        Box::pin(async move { Ok(id) })
    }

    fn pending(&self) -> BoxFuture<'_, Result<Vec<JournalEntry>, JournalError>> {
        let entries = self
            .lock()
            .entries
            .iter()
            .filter(|e| !e.applied)
            .cloned()
            .collect();
        Box::pin(async move { Ok(entries) })
    }

    fn mark_applied(&self, ids: Vec<i64>) -> BoxFuture<'_, Result<(), JournalError>> {
        let ids: HashSet<i64> = ids.into_iter().collect();
        for entry in &mut self.lock().entries {
            if ids.contains(&entry.id) {
                entry.applied = true;
            }
        }
        Box::pin(async { Ok(()) })
    }

    fn recorded_since(
        &self,
        since_ms: i64,
    ) -> BoxFuture<'_, Result<Vec<JournalEntry>, JournalError>> {
        let entries = self
            .lock()
            .entries
            .iter()
            .filter(|e| e.recorded_at_ms >= since_ms)
            .cloned()
            .collect();
        Box::pin(async move { Ok(entries) })
    }

    fn purge(&self, before_ms: i64) -> BoxFuture<'_, Result<u64, JournalError>> {
        let mut state = self.lock();
        let before = state.entries.len();
        state.entries.retain(|e| e.recorded_at_ms >= before_ms);
        let purged = (before - state.entries.len()) as u64;
        Box::pin(async move { Ok(purged) })
    }

    fn server_identity(&self) -> BoxFuture<'_, Result<Option<String>, JournalError>> {
        let identity = self.lock().server_identity.clone();
        Box::pin(async move { Ok(identity) })
    }

    fn set_server_identity(&self, run_id: String) -> BoxFuture<'_, Result<(), JournalError>> {
        self.lock().server_identity = Some(run_id);
        Box::pin(async { Ok(()) })
    }
}
