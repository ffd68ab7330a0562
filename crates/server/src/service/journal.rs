//! The invalidation journal of the cache, kept in the database (SPEC 1.2.6
//! and 1.2.11), so that an invalidation outlives the process that could not
//! deliver it, and stays for the retention window after it has been applied
//! so that a Redis that lost or rolled back state can be replayed it.
//! Ingestion writes its entry in the same transaction as the events; every
//! instance's cache applies what is pending, replays the window when Redis'
//! identity changes, and reads the recent entries into its L1 while Redis is
//! skipped.
//!
//! The database journal holds tag invalidations, and the identity of the
//! Redis server the window was last replayed into (shared by every
//! instance). The rarer operator actions (deleting keys, clearing a pattern,
//! flushing) that fail during an outage are kept in this process's memory.

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

fn from_database(entry: spywatcher_analytics::JournalEntry) -> JournalEntry {
    JournalEntry {
        id: entry.id,
        op: PendingInvalidation::Tags { tags: entry.tags },
        recorded_at_ms: entry.recorded_at_ms,
        applied: entry.applied,
    }
}

/// The in-memory part's ids are negated, so they never collide with the
/// database's (which are positive).
fn from_memory(entry: JournalEntry) -> JournalEntry {
    JournalEntry {
        id: -entry.id,
        ..entry
    }
}

/// Merges the two parts, each already in order, oldest first; within a part
/// its own order is kept.
fn merge(database: Vec<JournalEntry>, memory: Vec<JournalEntry>) -> Vec<JournalEntry> {
    let mut merged = Vec::with_capacity(database.len() + memory.len());
    let mut database = database.into_iter().peekable();
    let mut memory = memory.into_iter().peekable();
    loop {
        let next = match (database.peek(), memory.peek()) {
            (Some(d), Some(m)) if m.recorded_at_ms < d.recorded_at_ms => memory.next(),
            (Some(_), _) => database.next(),
            (None, _) => memory.next(),
        };
        match next {
            Some(entry) => merged.push(entry),
            None => return merged,
        }
    }
}

impl Journal for DatabaseJournal {
    fn record(
        &self,
        op: PendingInvalidation,
        applied: bool,
    ) -> BoxFuture<'_, Result<i64, JournalError>> {
        Box::pin(async move {
            match op {
                PendingInvalidation::Tags { tags } => {
                    Ok(self.store.record_invalidation(&tags, applied).await?)
                }
                other => Ok(-self.memory.record(other, applied).await?),
            }
        })
    }

    fn pending(&self) -> BoxFuture<'_, Result<Vec<JournalEntry>, JournalError>> {
        Box::pin(async move {
            let database = self.store.pending_invalidations().await?;
            let memory = self.memory.pending().await?;
            Ok(merge(
                database.into_iter().map(from_database).collect(),
                memory.into_iter().map(from_memory).collect(),
            ))
        })
    }

    fn mark_applied(&self, ids: Vec<i64>) -> BoxFuture<'_, Result<(), JournalError>> {
        Box::pin(async move {
            let (database, memory): (Vec<i64>, Vec<i64>) = ids.into_iter().partition(|&id| id > 0);
            if !database.is_empty() {
                self.store.mark_invalidations_applied(&database).await?;
            }
            if !memory.is_empty() {
                self.memory
                    .mark_applied(memory.into_iter().map(|id| -id).collect())
                    .await?;
            }
            Ok(())
        })
    }

    fn recorded_since(
        &self,
        since_ms: i64,
    ) -> BoxFuture<'_, Result<Vec<JournalEntry>, JournalError>> {
        Box::pin(async move {
            let database = self.store.invalidations_since(since_ms).await?;
            let memory = self.memory.recorded_since(since_ms).await?;
            Ok(merge(
                database.into_iter().map(from_database).collect(),
                memory.into_iter().map(from_memory).collect(),
            ))
        })
    }

    fn purge(&self, before_ms: i64) -> BoxFuture<'_, Result<u64, JournalError>> {
        Box::pin(async move {
            let database = self.store.purge_invalidations(before_ms).await?;
            let memory = self.memory.purge(before_ms).await?;
            Ok(database + memory)
        })
    }

    fn server_identity(&self) -> BoxFuture<'_, Result<Option<String>, JournalError>> {
        Box::pin(async move { Ok(self.store.cache_server_identity().await?) })
    }

    fn set_server_identity(&self, run_id: String) -> BoxFuture<'_, Result<(), JournalError>> {
        Box::pin(async move {
            self.store.set_cache_server_identity(&run_id).await?;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn op(entry: &JournalEntry) -> &PendingInvalidation {
        &entry.op
    }

    /// Lets the millisecond clock move on between records.
    async fn next_millisecond() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    #[tokio::test]
    async fn the_memory_and_database_parts_merge() {
        let dir = tempfile::tempdir().unwrap();
        let store = EventStore::connect(dir.path().join("journal.db").to_str().unwrap())
            .await
            .unwrap();
        let journal = DatabaseJournal::new(store.clone());
        let keys = PendingInvalidation::Keys {
            keys: vec!["k".to_owned()],
        };
        let tags = PendingInvalidation::Tags {
            tags: vec!["t".to_owned()],
        };
        journal.record(keys.clone(), false).await.unwrap();
        next_millisecond().await;
        journal.record(tags.clone(), false).await.unwrap();
        next_millisecond().await;
        journal
            .record(PendingInvalidation::FlushAll, false)
            .await
            .unwrap();

        // Oldest first across both parts; memory ids are negative, the
        // database's positive; only the tags went to the database.
        let pending = journal.pending().await.unwrap();
        assert_eq!(
            pending.iter().map(op).collect::<Vec<_>>(),
            [&keys, &tags, &PendingInvalidation::FlushAll]
        );
        assert!(pending[0].id < 0 && pending[1].id > 0 && pending[2].id < 0);
        assert_ne!(pending[0].id, pending[2].id);
        assert!(pending.iter().all(|e| !e.applied));
        assert!(
            pending
                .windows(2)
                .all(|w| w[0].recorded_at_ms < w[1].recorded_at_ms)
        );
        let rows = store.pending_invalidations().await.unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(
            (rows[0].id, rows[0].tags.as_slice()),
            (pending[1].id, &["t".to_owned()][..])
        );

        // Another instance on the same database sees the database part only.
        let other = DatabaseJournal::new(store.clone());
        let seen = other.pending().await.unwrap();
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0], pending[1]);

        // Marking applied goes to the right part by sign; entries stay.
        let ids: Vec<i64> = pending.iter().map(|e| e.id).collect();
        journal.mark_applied(ids[..2].to_vec()).await.unwrap();
        let still: Vec<i64> = journal
            .pending()
            .await
            .unwrap()
            .iter()
            .map(|e| e.id)
            .collect();
        assert_eq!(still, [ids[2]]);
        assert!(store.pending_invalidations().await.unwrap().is_empty());
        journal.mark_applied(vec![ids[2]]).await.unwrap();
        assert!(journal.pending().await.unwrap().is_empty());

        let kept = journal.recorded_since(i64::MIN).await.unwrap();
        assert_eq!(kept.iter().map(|e| e.id).collect::<Vec<_>>(), ids);
        assert!(kept.iter().all(|e| e.applied));
        let window = journal
            .recorded_since(pending[1].recorded_at_ms)
            .await
            .unwrap();
        assert_eq!(window.iter().map(|e| e.id).collect::<Vec<_>>(), ids[1..]);

        // Purge by age, in both parts.
        assert_eq!(journal.purge(pending[2].recorded_at_ms).await.unwrap(), 2);
        let left = journal.recorded_since(i64::MIN).await.unwrap();
        assert_eq!(left.iter().map(|e| e.id).collect::<Vec<_>>(), [ids[2]]);
        assert!(
            store
                .invalidations_since(i64::MIN)
                .await
                .unwrap()
                .is_empty()
        );

        // The server identity lives in the database: shared by instances.
        assert_eq!(journal.server_identity().await.unwrap(), None);
        journal
            .set_server_identity("run-1".to_owned())
            .await
            .unwrap();
        assert_eq!(
            other.server_identity().await.unwrap().as_deref(),
            Some("run-1")
        );
        assert_eq!(
            store.cache_server_identity().await.unwrap().as_deref(),
            Some("run-1")
        );
    }
}
