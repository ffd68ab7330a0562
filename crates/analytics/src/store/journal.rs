//! The cache-invalidation journal (SPEC 1.2.6 and 1.2.11), kept in the same
//! database as the events so that an event and the invalidation it causes
//! commit together.
//!
//! An entry is **pending** until some cache has applied it to Redis and
//! marked it applied; it is then **kept** for the retention window (the
//! longest cache TTL), so that a Redis that lost or rolled back state can be
//! replayed the whole window, and purged by age after that. The identity of
//! the Redis server into which the window was last replayed is kept here too
//! (`cache_server_identity`), so that one instance's replay serves all.
//!
//! The SQL is the same text on both databases: `applied` is a BOOLEAN on
//! PostgreSQL and a 0/1 INTEGER on SQLite, and `NOT applied`, `TRUE` and
//! the upsert read the same on both.

use super::{EventStore, StoreError, with_pool};

pub(super) const INSERT: &str =
    "INSERT INTO cache_invalidation_journal (tags, created_at) VALUES ($1, $2) RETURNING id";

const INSERT_WITH_STATE: &str = "INSERT INTO cache_invalidation_journal (tags, created_at, applied) \
     VALUES ($1, $2, $3) RETURNING id";

/// The one row of `cache_server_identity`.
const IDENTITY_NAME: &str = "redis";

/// One journaled invalidation: the tags to invalidate.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct JournalEntry {
    /// Unique and never reused (also after a purge).
    pub id: i64,
    pub tags: Vec<String>,
    /// When it was recorded, in milliseconds since the Unix epoch.
    pub recorded_at_ms: i64,
    /// Whether some cache has applied it to Redis.
    pub applied: bool,
}

pub(super) fn encode_tags(tags: &[String]) -> String {
    // Serializing strings cannot fail.
    serde_json::to_string(tags).unwrap_or_default()
}

/// Ids per UPDATE statement: under both databases' bind limits.
const IDS_PER_STATEMENT: usize = 1_000;

type Row = (i64, String, i64, bool);

fn decode(rows: Vec<Row>) -> Result<Vec<JournalEntry>, StoreError> {
    rows.into_iter()
        .map(|(id, tags, recorded_at_ms, applied)| {
            let tags = serde_json::from_str(&tags)
                .map_err(|e| StoreError::Corrupt(format!("journal entry {id}: {e}")))?;
            Ok(JournalEntry {
                id,
                tags,
                recorded_at_ms,
                applied,
            })
        })
        .collect()
}

impl EventStore {
    /// Records one cache invalidation on its own (no events): pending, or
    /// already applied (kept for the retention window). Returns its id.
    pub async fn record_invalidation(
        &self,
        tags: &[String],
        applied: bool,
    ) -> Result<i64, StoreError> {
        let tags = encode_tags(tags);
        let now = chrono::Utc::now().timestamp_millis();
        with_pool!(self, |pool| {
            sqlx::query_scalar::<_, i64>(INSERT_WITH_STATE)
                .bind(&tags)
                .bind(now)
                .bind(applied)
                .fetch_one(pool)
                .await
        })
        .map_err(StoreError::from)
    }

    /// The invalidations not yet applied to Redis, oldest (smallest id)
    /// first.
    pub async fn pending_invalidations(&self) -> Result<Vec<JournalEntry>, StoreError> {
        // `NOT applied` as in the partial index's WHERE, so that it is used.
        const SQL: &str = "SELECT id, tags, created_at, applied FROM cache_invalidation_journal \
             WHERE NOT applied ORDER BY id";
        let rows: Vec<Row> = with_pool!(self, |pool| sqlx::query_as(SQL).fetch_all(pool).await)?;
        decode(rows)
    }

    /// Marks entries as applied to Redis; they stay for the retention
    /// window. Returns how many were newly marked: ids already applied (by
    /// another instance) or no longer there (purged) are ignored.
    pub async fn mark_invalidations_applied(&self, ids: &[i64]) -> Result<u64, StoreError> {
        let mut marked = 0;
        for chunk in ids.chunks(IDS_PER_STATEMENT) {
            marked += with_pool!(self, |pool| {
                let mut qb = sqlx::QueryBuilder::new(
                    "UPDATE cache_invalidation_journal SET applied = TRUE WHERE NOT applied AND id IN (",
                );
                let mut list = qb.separated(", ");
                for id in chunk {
                    list.push_bind(*id);
                }
                qb.push(")");
                qb.build().execute(pool).await.map(|r| r.rows_affected())
            })?;
        }
        Ok(marked)
    }

    /// Every invalidation recorded at or after `since_ms` (milliseconds
    /// since the Unix epoch), applied or not, oldest first (by recording
    /// time, then id).
    pub async fn invalidations_since(
        &self,
        since_ms: i64,
    ) -> Result<Vec<JournalEntry>, StoreError> {
        // Ordered as the (created_at, id) index is, so that a short recent
        // window reads a short index range and sorts nothing; `ORDER BY id`
        // would have SQLite scan the whole table in rowid order instead.
        const SQL: &str = "SELECT id, tags, created_at, applied FROM cache_invalidation_journal \
             WHERE created_at >= $1 ORDER BY created_at, id";
        let rows: Vec<Row> = with_pool!(self, |pool| sqlx::query_as(SQL)
            .bind(since_ms)
            .fetch_all(pool)
            .await)?;
        decode(rows)
    }

    /// Deletes the invalidations recorded before `before_ms` (milliseconds
    /// since the Unix epoch), applied or not; returns how many.
    pub async fn purge_invalidations(&self, before_ms: i64) -> Result<u64, StoreError> {
        const SQL: &str = "DELETE FROM cache_invalidation_journal WHERE created_at < $1";
        Ok(with_pool!(self, |pool| sqlx::query(SQL)
            .bind(before_ms)
            .execute(pool)
            .await
            .map(|r| r.rows_affected()))?)
    }

    /// The identity (`run_id`) of the Redis server into which the journal's
    /// window was last replayed, by any instance; `None` if never recorded.
    pub async fn cache_server_identity(&self) -> Result<Option<String>, StoreError> {
        const SQL: &str = "SELECT run_id FROM cache_server_identity WHERE name = $1";
        Ok(with_pool!(self, |pool| sqlx::query_scalar(SQL)
            .bind(IDENTITY_NAME)
            .fetch_optional(pool)
            .await)?)
    }

    /// Records that the journal's window has been replayed into the Redis
    /// server `run_id` (replacing the previous identity).
    pub async fn set_cache_server_identity(&self, run_id: &str) -> Result<(), StoreError> {
        const SQL: &str = "INSERT INTO cache_server_identity (name, run_id, updated_at) \
             VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO UPDATE SET run_id = excluded.run_id, updated_at = excluded.updated_at";
        let now = chrono::Utc::now().timestamp_millis();
        with_pool!(self, |pool| sqlx::query(SQL)
            .bind(IDENTITY_NAME)
            .bind(run_id)
            .bind(now)
            .execute(pool)
            .await
            .map(drop))?;
        Ok(())
    }
}
