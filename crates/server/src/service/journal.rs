//! The pending-invalidation journal of the cache, kept in the database
//! (SPEC 1.2.6), so that an invalidation outlives the process that could not
//! deliver it. Ingestion writes its entry in the same transaction as the
//! events; every instance's cache applies what it finds.
//!
//! The database journal holds tag invalidations. The rarer operator actions
//! (deleting keys, clearing a pattern, flushing) that fail during an outage
//! are kept in this process's memory.

use std::sync::Arc;

use futures::future::BoxFuture;
use spywatcher_analytics::EventStore;
use spywatcher_cache::{Journal, JournalEntry, JournalError, MemoryJournal, PendingInvalidation};

pub struct DatabaseJournal {
    store: EventStore,
    memory: MemoryJournal,
}

impl DatabaseJournal {
    pub fn new(store: EventStore) -> Arc<Self> {
        Arc::new(DatabaseJournal {
            store,
            memory: MemoryJournal::new(),
        })
    }
}

/// Ids of the in-memory part are negative, so they never collide with the
/// database's.
impl Journal for DatabaseJournal {
    fn record(&self, op: PendingInvalidation) -> BoxFuture<'_, Result<(), JournalError>> {
        Box::pin(async move {
            match op {
                PendingInvalidation::Tags { tags } => {
                    self.store.ingest_with_journal(&[], &tags).await?;
                    Ok(())
                }
                other => self.memory.record(other).await,
            }
        })
    }

    fn pending(&self) -> BoxFuture<'_, Result<Vec<JournalEntry>, JournalError>> {
        Box::pin(async move {
            let mut entries: Vec<JournalEntry> = self
                .store
                .pending_invalidations()
                .await?
                .into_iter()
                .map(|e| JournalEntry {
                    id: e.id,
                    op: PendingInvalidation::Tags { tags: e.tags },
                })
                .collect();
            entries.extend(
                self.memory
                    .pending()
                    .await?
                    .into_iter()
                    .map(|e| JournalEntry {
                        id: -e.id,
                        op: e.op,
                    }),
            );
            Ok(entries)
        })
    }

    fn remove(&self, ids: Vec<i64>) -> BoxFuture<'_, Result<(), JournalError>> {
        Box::pin(async move {
            let (database, memory): (Vec<i64>, Vec<i64>) = ids.into_iter().partition(|&id| id > 0);
            if !database.is_empty() {
                self.store.remove_invalidations(&database).await?;
            }
            if !memory.is_empty() {
                self.memory
                    .remove(memory.into_iter().map(|id| -id).collect())
                    .await?;
            }
            Ok(())
        })
    }
}
