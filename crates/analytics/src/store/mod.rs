//! The event store: one type over two databases.
//!
//! `EventStore` holds a pool of either backend. Code that is the same for
//! both (most of it: the SQL is shared) is written once and expanded for each
//! pool type by `with_pool!`; what differs (connection options, migrations,
//! the bulk insert path) lives in `postgres.rs` and `sqlite.rs`.

mod journal;
mod postgres;
mod read_counts;
pub(crate) mod rollups;
pub(crate) mod row;
mod sqlite;

pub use journal::JournalEntry;
pub use read_counts::{READ_COUNT_PERIOD_MS, read_count_hour};

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use sqlx::{PgPool, SqlitePool};

use crate::domain::{Event, GuildId, ValidationError};

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("invalid event: {0}")]
    Invalid(#[from] ValidationError),
    #[error("unsupported database URL {0:?} (expected postgres://..., sqlite:... or a file path)")]
    UnsupportedUrl(String),
    #[error("corrupt data in the database: {0}")]
    Corrupt(String),
    #[error("the write task failed: {0}")]
    Aborted(String),
}

#[derive(Clone, Debug)]
pub(crate) enum Backend {
    Postgres(PgPool),
    Sqlite(SqlitePool),
}

/// Runs `$body` with `$pool` bound to whichever pool the store holds. The
/// body is compiled once per backend, so it must be valid for both.
/// `|pool, Db|` also names the backend's `sqlx::Database` type as `Db`.
macro_rules! with_pool {
    ($store:expr, |$pool:ident| $body:expr) => {
        match &$store.backend {
            $crate::store::Backend::Postgres($pool) => $body,
            $crate::store::Backend::Sqlite($pool) => $body,
        }
    };
    ($store:expr, |$pool:ident, $db:ident| $body:expr) => {
        match &$store.backend {
            $crate::store::Backend::Postgres($pool) => {
                type $db = sqlx::Postgres;
                $body
            }
            $crate::store::Backend::Sqlite($pool) => {
                type $db = sqlx::Sqlite;
                $body
            }
        }
    };
}
pub(crate) use with_pool;

/// Durable storage of events, and the analytics computed over them.
/// Cheap to clone: clones share one connection pool.
#[derive(Clone, Debug)]
pub struct EventStore {
    pub(crate) backend: Backend,
    /// Set during a bulk load into an empty store (shared by clones):
    /// batches skip the rollups' upkeep, and
    /// [`finish_bulk_load`](Self::finish_bulk_load) builds them at once.
    rollups_deferred: Arc<AtomicBool>,
}

impl EventStore {
    /// Opens the database and applies pending migrations.
    ///
    /// `postgres://` or `postgresql://` selects PostgreSQL; `sqlite://path`,
    /// `sqlite::memory:` or a plain file path selects SQLite (the file is
    /// created if missing).
    pub async fn connect(database_url: &str) -> Result<EventStore, StoreError> {
        let backend = if database_url.starts_with("postgres://")
            || database_url.starts_with("postgresql://")
        {
            Backend::Postgres(postgres::connect(database_url).await?)
        } else if database_url.starts_with("sqlite:") || !database_url.contains("://") {
            Backend::Sqlite(sqlite::connect(database_url).await?)
        } else {
            // Not a file path that happens to contain "://": refuse rather
            // than create a SQLite file named after a MySQL URL.
            return Err(StoreError::UnsupportedUrl(database_url.to_owned()));
        };
        let store = EventStore {
            backend,
            rollups_deferred: Arc::new(AtomicBool::new(false)),
        };
        store.migrate().await?;
        Ok(store)
    }

    /// Applies pending migrations (idempotent; `connect` already does it),
    /// and builds the covering index and the daily rollups again if a bulk
    /// load was cut short before [`finish_bulk_load`](Self::finish_bulk_load)
    /// (the index is missing only then).
    pub async fn migrate(&self) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Postgres(pool) => postgres::migrate(pool).await?,
            Backend::Sqlite(pool) => sqlite::migrate(pool).await?,
        }
        if self.ensure_covering_index().await? {
            self.rebuild_rollups().await?;
        }
        Ok(())
    }

    /// Builds the daily rollups (`event_days`, `typing_days`) from the
    /// events, replacing their rows, in one transaction. On PostgreSQL the
    /// tables are locked first, so that a batch ingested meanwhile either
    /// committed before (its events are counted here) or upserts after
    /// (onto the rebuilt rows).
    pub async fn rebuild_rollups(&self) -> Result<(), StoreError> {
        with_pool!(self, |pool| {
            let mut tx = pool.begin().await?;
            if matches!(self.backend, Backend::Postgres(_)) {
                sqlx::query("LOCK TABLE event_days, typing_days IN EXCLUSIVE MODE")
                    .execute(&mut *tx)
                    .await?;
            }
            for sql in rollups::CLEAR.iter().chain(&rollups::REBUILD) {
                sqlx::query(*sql).execute(&mut *tx).await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }

    /// Prepares an empty store for a bulk load (the generator's millions of
    /// events): drops the covering index the analytics read, so that rows
    /// go in without its upkeep, and has this store (and its clones) skip
    /// the daily rollups' upkeep. Maintaining the index row by row costs a
    /// random index write per event, several times the insert itself;
    /// building it once at the end is a sort, and so is grouping the
    /// rollups. Returns whether it did (false, and
    /// nothing changed, when the store already holds events: readers may
    /// be using it). Follow with [`finish_bulk_load`](Self::finish_bulk_load);
    /// a load cut short is healed by the next [`migrate`](Self::migrate)
    /// (every `connect`).
    pub async fn begin_bulk_load(&self) -> Result<bool, StoreError> {
        let empty: bool = with_pool!(self, |pool| sqlx::query_scalar(
            "SELECT NOT EXISTS (SELECT 1 FROM events)"
        )
        .fetch_one(pool)
        .await)?;
        if empty {
            with_pool!(self, |pool| sqlx::query(
                "DROP INDEX IF EXISTS events_guild_kind_time"
            )
            .execute(pool)
            .await
            .map(drop))?;
            self.rollups_deferred.store(true, Ordering::Release);
        }
        Ok(empty)
    }

    /// Ends a bulk load, once every write of it has returned: builds the
    /// covering index if it is missing and the daily rollups if the load
    /// skipped them (or the index was missing: another process's
    /// `migrate` may have healed the index mid-load, not the rows loaded
    /// since), then refreshes the planner's statistics
    /// ([`analyze`](Self::analyze)).
    pub async fn finish_bulk_load(&self) -> Result<(), StoreError> {
        let deferred = self.rollups_deferred.swap(false, Ordering::AcqRel);
        let index_was_missing = self.ensure_covering_index().await?;
        if deferred || index_was_missing {
            self.rebuild_rollups().await?;
        }
        self.analyze().await
    }

    /// Builds the covering index if it is missing; returns whether it did
    /// (then the rollups may be missing rows too). The check and the
    /// build run on one connection: a SQLite connection's schema is only as
    /// recent as its last statement, and `CREATE INDEX` prepared on an idle
    /// connection that has not seen the bulk load's `DROP INDEX` fails with
    /// "index ... already exists" (the check, on another connection, having
    /// rightly found none). The check refreshes the schema of the
    /// connection it runs on.
    async fn ensure_covering_index(&self) -> Result<bool, StoreError> {
        let built = match &self.backend {
            Backend::Postgres(pool) => {
                let mut conn = pool.acquire().await?;
                let exists: bool = sqlx::query_scalar(
                    "SELECT EXISTS (SELECT 1 FROM pg_indexes WHERE schemaname = current_schema() \
                 AND indexname = 'events_guild_kind_time')",
                )
                .fetch_one(&mut *conn)
                .await?;
                if !exists {
                    sqlx::query(postgres::COVERING_INDEX)
                        .execute(&mut *conn)
                        .await?;
                }
                !exists
            }
            Backend::Sqlite(pool) => {
                let mut conn = pool.acquire().await?;
                let exists: bool = sqlx::query_scalar(
                    "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'index' \
                 AND name = 'events_guild_kind_time')",
                )
                .fetch_one(&mut *conn)
                .await?;
                if !exists {
                    sqlx::query(sqlite::COVERING_INDEX)
                        .execute(&mut *conn)
                        .await?;
                }
                !exists
            }
        };
        Ok(built)
    }

    /// The covering index's definition as the database holds it, if any
    /// (for checking that a rebuilt index is the migration's).
    pub async fn covering_index_definition(&self) -> Result<Option<String>, StoreError> {
        Ok(match &self.backend {
            Backend::Postgres(pool) => {
                sqlx::query_scalar(
                    "SELECT indexdef FROM pg_indexes WHERE schemaname = current_schema() \
                 AND indexname = 'events_guild_kind_time'",
                )
                .fetch_optional(pool)
                .await?
            }
            Backend::Sqlite(pool) => {
                sqlx::query_scalar(
                    "SELECT sql FROM sqlite_master WHERE type = 'index' \
                 AND name = 'events_guild_kind_time'",
                )
                .fetch_optional(pool)
                .await?
            }
        })
    }

    /// `"postgres"` or `"sqlite"`.
    pub fn backend_name(&self) -> &'static str {
        match self.backend {
            Backend::Postgres(_) => "postgres",
            Backend::Sqlite(_) => "sqlite",
        }
    }

    /// One round trip, for readiness checks.
    pub async fn ping(&self) -> Result<(), StoreError> {
        with_pool!(self, |pool| sqlx::query("SELECT 1")
            .execute(pool)
            .await
            .map(drop))?;
        Ok(())
    }

    /// Stores a batch of events in one transaction: all or nothing. Returns
    /// the number stored once the transaction has committed.
    pub async fn ingest(&self, events: &[Event]) -> Result<u64, StoreError> {
        self.ingest_with_journal(events, &[]).await.map(|(n, _)| n)
    }

    /// Like [`ingest`](Self::ingest), and in the same transaction records
    /// `tags` as one pending cache invalidation (SPEC 1.2.6). No journal row
    /// is written when `tags` is empty (member joins invalidate nothing).
    /// Returns the number of events stored and the journal entry's id. The
    /// entry is pending until marked applied
    /// ([`mark_invalidations_applied`](Self::mark_invalidations_applied)),
    /// then kept until purged by age
    /// ([`purge_invalidations`](Self::purge_invalidations), SPEC 1.2.11).
    pub async fn ingest_with_journal(
        &self,
        events: &[Event],
        tags: &[String],
    ) -> Result<(u64, Option<i64>), StoreError> {
        // Events built in code meet the same rules as parsed ones.
        for (index, e) in events.iter().enumerate() {
            e.validate()
                .map_err(|v| ValidationError::from_violation(index, v))?;
        }
        let tags_json = (!tags.is_empty()).then(|| journal::encode_tags(tags));
        // The transaction runs in a task of its own, so that a caller that
        // gives up (a request timeout, a client that hangs up) cannot drop
        // it half-way: sqlx 0.9 can then hand back a PostgreSQL connection
        // with a transaction still open (sqlx issue 4385). Once started, a
        // batch commits or rolls back whole, whoever is still waiting.
        let store = self.clone();
        let events = events.to_vec();
        tokio::spawn(async move { store.write_batch(&events, tags_json.as_deref()).await })
            .await
            .map_err(|e| StoreError::Aborted(e.to_string()))?
    }

    /// One transaction: the events, their daily rollups (unless a bulk
    /// load defers them), then the journal entry if any.
    async fn write_batch(
        &self,
        events: &[Event],
        tags_json: Option<&str>,
    ) -> Result<(u64, Option<i64>), StoreError> {
        // Aggregated before the transaction opens: it holds SQLite's write
        // lock, so the less it does the better.
        let batch_rollups = (!self.rollups_deferred.load(Ordering::Acquire))
            .then(|| rollups::BatchRollups::new(events));
        with_pool!(self, |pool, Db| {
            let mut tx = pool.begin().await?;
            let stored = InsertEvents::insert_events(&mut *tx, events).await?;
            if let Some(batch_rollups) = &batch_rollups {
                rollups::upsert_rollups!(tx, Db, batch_rollups);
            }
            let id = match tags_json {
                Some(tags) => Some(
                    sqlx::query_scalar::<_, i64>(journal::INSERT)
                        .bind(tags)
                        // Taken after the events are written, as close to
                        // the commit as can be: readers of the recent
                        // window (`invalidations_since`) see the row with
                        // a timestamp only the commit's duration old.
                        .bind(chrono::Utc::now().timestamp_millis())
                        .fetch_one(&mut *tx)
                        .await?,
                ),
                None => None,
            };
            tx.commit().await?;
            Ok((stored, id))
        })
    }

    /// Distinct guilds that have at least one event, in id order.
    pub async fn guild_ids(&self) -> Result<Vec<GuildId>, StoreError> {
        let ids: Vec<String> = with_pool!(self, |pool| {
            sqlx::query_scalar("SELECT DISTINCT guild_id FROM events ORDER BY guild_id")
                .fetch_all(pool)
                .await
        })?;
        ids.into_iter()
            .map(|s| {
                GuildId::parse(s.clone())
                    .map_err(|_| StoreError::Corrupt(format!("guild id {s:?}")))
            })
            .collect()
    }

    /// Number of stored events (all guilds).
    pub async fn event_count(&self) -> Result<u64, StoreError> {
        let n: i64 = with_pool!(self, |pool| sqlx::query_scalar(
            "SELECT count(*) FROM events"
        )
        .fetch_one(pool)
        .await)?;
        Ok(n.max(0).unsigned_abs())
    }

    /// Refreshes planner statistics (and, on PostgreSQL, the visibility map
    /// that index-only scans need). Worth calling after a bulk load.
    pub async fn analyze(&self) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Postgres(pool) => {
                sqlx::query("VACUUM ANALYZE events, event_days, typing_days")
                    .execute(pool)
                    .await
                    .map(drop)?
            }
            Backend::Sqlite(pool) => sqlx::query("ANALYZE").execute(pool).await.map(drop)?,
        };
        Ok(())
    }
}

/// The insert path of the transaction's backend.
trait InsertEvents {
    async fn insert_events(&mut self, events: &[Event]) -> Result<u64, StoreError>;
}

impl InsertEvents for sqlx::PgConnection {
    async fn insert_events(&mut self, events: &[Event]) -> Result<u64, StoreError> {
        postgres::insert_events(self, events).await
    }
}

impl InsertEvents for sqlx::SqliteConnection {
    async fn insert_events(&mut self, events: &[Event]) -> Result<u64, StoreError> {
        sqlite::insert_events(self, events).await
    }
}
