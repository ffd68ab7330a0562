//! PostgreSQL, selected by a `postgres://` URL.

use std::time::Duration;

use sqlx::postgres::PgPoolOptions;
use sqlx::{PgConnection, PgPool};

use super::StoreError;
use super::row::EventRow;
use crate::domain::Event;

/// Rows per UNNEST statement. Each column travels as one array parameter,
/// so the bind limit (65,535) does not apply; this bounds message size.
const ROWS_PER_STATEMENT: usize = 10_000;

/// The covering index of migration 0001, built again after a bulk load
/// (`EventStore::finish_bulk_load`); a test checks that the two agree.
pub(crate) const COVERING_INDEX: &str = "CREATE INDEX events_guild_kind_time \
     ON events (guild_id, kind, created_at) INCLUDE (user_id, id, username, channel_id, channel, clients)";

pub(crate) async fn connect(url: &str) -> Result<PgPool, StoreError> {
    Ok(PgPoolOptions::new()
        .max_connections(16)
        .acquire_timeout(Duration::from_secs(10))
        .connect(url)
        .await?)
}

pub(crate) async fn migrate(pool: &PgPool) -> Result<(), StoreError> {
    sqlx::migrate!("migrations/postgres").run(pool).await?;
    Ok(())
}

/// One `INSERT ... SELECT FROM UNNEST(arrays)` per chunk: one round trip and
/// one statement plan for thousands of rows. `ORDER BY ord` keeps ids in
/// batch order, as on SQLite, so "latest event" tie-breaks agree.
pub(crate) async fn insert_events(
    conn: &mut PgConnection,
    events: &[Event],
) -> Result<u64, StoreError> {
    const SQL: &str = const_format_insert();
    let mut stored = 0;
    for chunk in events.chunks(ROWS_PER_STATEMENT) {
        let rows: Vec<EventRow<'_>> = chunk.iter().map(EventRow::new).collect();
        let col = |f: for<'r> fn(&'r EventRow<'r>) -> Option<&'r str>| {
            rows.iter().map(f).collect::<Vec<_>>()
        };
        stored += sqlx::query(SQL)
            .bind(rows.iter().map(|r| r.kind).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.guild_id).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.user_id).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.username).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.created_at).collect::<Vec<_>>())
            .bind(col(|r| r.channel_id))
            .bind(col(|r| r.channel))
            .bind(col(|r| r.content))
            .bind(rows.iter().map(|r| r.clients).collect::<Vec<_>>())
            .bind(
                rows.iter()
                    .map(|r| r.added_roles.as_deref())
                    .collect::<Vec<_>>(),
            )
            .bind(rows.iter().map(|r| r.account_age_days).collect::<Vec<_>>())
            .execute(&mut *conn)
            .await?
            .rows_affected();
    }
    Ok(stored)
}

const fn const_format_insert() -> &'static str {
    // Kept in step with `row::COLUMNS` (checked by a unit test below).
    "INSERT INTO events (kind, guild_id, user_id, username, created_at, channel_id, channel, content, clients, added_roles, account_age_days) \
     SELECT kind, guild_id, user_id, username, created_at, channel_id, channel, content, clients, added_roles, account_age_days \
     FROM UNNEST($1::int2[], $2::text[], $3::text[], $4::text[], $5::int8[], $6::text[], $7::text[], $8::text[], $9::int2[], $10::text[], $11::int4[]) \
     WITH ORDINALITY AS u(kind, guild_id, user_id, username, created_at, channel_id, channel, content, clients, added_roles, account_age_days, ord) \
     ORDER BY ord"
}

#[cfg(test)]
mod tests {
    #[test]
    fn insert_names_the_shared_columns() {
        let columns = super::super::row::COLUMNS;
        assert!(super::const_format_insert().contains(&format!("INSERT INTO events ({columns})")));
    }
}
