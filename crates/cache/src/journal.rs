//! The pending-invalidation journal (SPEC 1.2.6).
//!
//! An invalidation that could not reach Redis is recorded here instead of
//! being forgotten. Every cache that shares the journal applies what it finds
//! when it reconnects (before serving reads from Redis again) and at a short
//! interval, then removes what it applied. Applying an entry twice is harmless:
//! invalidation is idempotent.
//!
//! [`MemoryJournal`] lives in process memory (library users; several caches in
//! one process can share it). A service that must survive its own exit backs
//! the journal with its database by implementing [`Journal`].

use std::sync::Mutex;

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};

use crate::error::JournalError;

/// An invalidation waiting for Redis.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "camelCase")]
pub enum PendingInvalidation {
    Tags { tags: Vec<String> },
    Keys { keys: Vec<String> },
    Pattern { pattern: String },
    FlushAll,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalEntry {
    pub id: i64,
    pub op: PendingInvalidation,
}

/// Durable storage for pending invalidations, shared by the caches that share a Redis.
pub trait Journal: Send + Sync + 'static {
    fn record(&self, op: PendingInvalidation) -> BoxFuture<'_, Result<(), JournalError>>;
    /// Entries not yet removed, oldest first.
    fn pending(&self) -> BoxFuture<'_, Result<Vec<JournalEntry>, JournalError>>;
    fn remove(&self, ids: Vec<i64>) -> BoxFuture<'_, Result<(), JournalError>>;
}

/// A journal in process memory.
#[derive(Debug, Default)]
pub struct MemoryJournal {
    state: Mutex<(i64, Vec<JournalEntry>)>,
}

impl MemoryJournal {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.lock().1.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (i64, Vec<JournalEntry>)> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Journal for MemoryJournal {
    fn record(&self, op: PendingInvalidation) -> BoxFuture<'_, Result<(), JournalError>> {
        let mut state = self.lock();
        state.0 += 1;
        let id = state.0;
        state.1.push(JournalEntry { id, op });
        Box::pin(async { Ok(()) })
    }

    fn pending(&self) -> BoxFuture<'_, Result<Vec<JournalEntry>, JournalError>> {
        let entries = self.lock().1.clone();
        Box::pin(async move { Ok(entries) })
    }

    fn remove(&self, ids: Vec<i64>) -> BoxFuture<'_, Result<(), JournalError>> {
        self.lock().1.retain(|e| !ids.contains(&e.id));
        Box::pin(async { Ok(()) })
    }
}
