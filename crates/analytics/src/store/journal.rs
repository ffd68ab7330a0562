//! The pending cache-invalidation journal (SPEC 1.2.6), kept in the same
//! database as the events so that an event and the invalidation it causes
//! commit together. The cache layer drains it: read pending entries, apply
//! them to Redis, then remove them by id.

use super::{EventStore, StoreError, with_pool};

pub(super) const INSERT: &str =
    "INSERT INTO cache_invalidation_journal (tags, created_at) VALUES ($1, $2) RETURNING id";

/// One pending invalidation: the tags to invalidate.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct JournalEntry {
    pub id: i64,
    pub tags: Vec<String>,
}

pub(super) fn encode_tags(tags: &[String]) -> String {
    // Serializing strings cannot fail.
    serde_json::to_string(tags).unwrap_or_default()
}

/// Ids per DELETE statement: under both databases' bind limits.
const IDS_PER_STATEMENT: usize = 1_000;

impl EventStore {
    /// Every pending invalidation, oldest first.
    pub async fn pending_invalidations(&self) -> Result<Vec<JournalEntry>, StoreError> {
        const SQL: &str = "SELECT id, tags FROM cache_invalidation_journal ORDER BY id";
        let rows: Vec<(i64, String)> =
            with_pool!(self, |pool| sqlx::query_as(SQL).fetch_all(pool).await)?;
        rows.into_iter()
            .map(|(id, tags)| {
                let tags = serde_json::from_str(&tags)
                    .map_err(|e| StoreError::Corrupt(format!("journal entry {id}: {e}")))?;
                Ok(JournalEntry { id, tags })
            })
            .collect()
    }

    /// Removes applied entries; returns how many were removed. Ids already
    /// removed (by another instance) are ignored.
    pub async fn remove_invalidations(&self, ids: &[i64]) -> Result<u64, StoreError> {
        let mut removed = 0;
        for chunk in ids.chunks(IDS_PER_STATEMENT) {
            removed += with_pool!(self, |pool| {
                let mut qb =
                    sqlx::QueryBuilder::new("DELETE FROM cache_invalidation_journal WHERE id IN (");
                let mut list = qb.separated(", ");
                for id in chunk {
                    list.push_bind(*id);
                }
                qb.push(")");
                qb.build().execute(pool).await.map(|r| r.rows_affected())
            })?;
        }
        Ok(removed)
    }
}
