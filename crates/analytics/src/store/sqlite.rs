//! SQLite: the embedded default.

use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{QueryBuilder, Sqlite, SqliteConnection, SqlitePool};

use super::StoreError;
use super::row::{COLUMN_COUNT, COLUMNS, EventRow};
use crate::domain::Event;

/// SQLite's default bound-parameter limit (SQLITE_MAX_VARIABLE_NUMBER) is
/// 32,766; stay well under it.
const ROWS_PER_STATEMENT: usize = 20_000 / COLUMN_COUNT;

/// The covering index of migration 0001, built again after a bulk load
/// (`EventStore::finish_bulk_load`); a test checks that the two agree.
pub(crate) const COVERING_INDEX: &str = "CREATE INDEX events_guild_kind_time \
     ON events (guild_id, kind, created_at, user_id, username, channel_id, channel, clients)";

/// `sqlite://path` (`?mode=` as sqlx reads it), `sqlite::memory:`, or a plain file path
/// (created if missing).
pub(crate) async fn connect(url: &str) -> Result<SqlitePool, StoreError> {
    let opts = if url.starts_with("sqlite:") {
        // Like a plain path, `sqlite://file.db` creates the file unless the
        // URL says otherwise (`?mode=ro`, `?mode=rw`).
        SqliteConnectOptions::from_str(url)?.create_if_missing(!url.contains("mode="))
    } else {
        SqliteConnectOptions::new()
            .filename(url)
            .create_if_missing(true)
    };
    let in_memory = opts
        .get_filename()
        .to_string_lossy()
        .starts_with("file:sqlx-in-memory");
    let opts = opts
        // WAL lets readers run while one writer commits.
        .journal_mode(if in_memory {
            SqliteJournalMode::Memory
        } else {
            SqliteJournalMode::Wal
        })
        // With WAL, NORMAL is durable against process crashes and only
        // risks the last commits on power loss: the usual trade-off.
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(Duration::from_secs(5));
    let mut pool = SqlitePoolOptions::new().max_connections(if in_memory { 4 } else { 8 });
    if in_memory {
        // An in-memory database lives as long as one connection to it.
        pool = pool
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None);
    }
    Ok(pool.connect_with(opts).await?)
}

pub(crate) async fn migrate(pool: &SqlitePool) -> Result<(), StoreError> {
    sqlx::migrate!("migrations/sqlite").run(pool).await?;
    Ok(())
}

/// Multi-row INSERTs, chunked under the bind-parameter limit.
pub(crate) async fn insert_events(
    conn: &mut SqliteConnection,
    events: &[Event],
) -> Result<u64, StoreError> {
    let mut stored = 0;
    for chunk in events.chunks(ROWS_PER_STATEMENT) {
        let mut qb = QueryBuilder::<Sqlite>::new(format!("INSERT INTO events ({COLUMNS}) "));
        qb.push_values(chunk.iter().map(EventRow::new), |mut b, r| {
            b.push_bind(r.kind)
                .push_bind(r.guild_id)
                .push_bind(r.user_id)
                .push_bind(r.username)
                .push_bind(r.created_at)
                .push_bind(r.channel_id)
                .push_bind(r.channel)
                .push_bind(r.content)
                .push_bind(r.clients)
                .push_bind(r.added_roles)
                .push_bind(r.account_age_days);
        });
        stored += qb.build().execute(&mut *conn).await?.rows_affected();
    }
    Ok(stored)
}
