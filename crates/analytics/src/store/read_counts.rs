//! How often each guild's analytics were read, counted per hour: what
//! warming on start ranks guilds by. The counts live in the database (not
//! in the process that counted them) so that a restarted instance knows
//! the reads of the last day; every instance adds its own.
//!
//! The SQL is the same text on both databases, the upsert included.

use super::{EventStore, StoreError, with_pool};
use crate::domain::GuildId;

/// The length of one counting period, in milliseconds.
pub const READ_COUNT_PERIOD_MS: i64 = 3_600_000;

/// Rows per INSERT: three parameters each, under SQLite's bind limit
/// (32,766) and PostgreSQL's (65,535).
const ROWS_PER_STATEMENT: usize = 5_000;

/// The start of the hour that contains `at_ms` (milliseconds since the
/// Unix epoch).
pub fn read_count_hour(at_ms: i64) -> i64 {
    at_ms.div_euclid(READ_COUNT_PERIOD_MS) * READ_COUNT_PERIOD_MS
}

impl EventStore {
    /// Adds `counts` (reads per guild; each guild at most once) to the hour
    /// that contains `at_ms`.
    pub async fn record_guild_reads(
        &self,
        at_ms: i64,
        counts: &[(GuildId, u64)],
    ) -> Result<(), StoreError> {
        let hour = read_count_hour(at_ms);
        for chunk in counts.chunks(ROWS_PER_STATEMENT) {
            with_pool!(self, |pool, Db| {
                let mut qb = sqlx::QueryBuilder::<Db>::new(
                    "INSERT INTO guild_read_counts (guild_id, hour, reads) ",
                );
                qb.push_values(chunk, |mut row, (guild, reads)| {
                    row.push_bind(guild.as_str().to_owned())
                        .push_bind(hour)
                        .push_bind(i64::try_from(*reads).unwrap_or(i64::MAX));
                });
                qb.push(
                    " ON CONFLICT (guild_id, hour) \
                     DO UPDATE SET reads = guild_read_counts.reads + excluded.reads",
                );
                qb.build().execute(pool).await.map(drop)
            })?;
        }
        Ok(())
    }

    /// The `limit` guilds read most from the hour that contains `since_ms`
    /// on, with their reads: most read first, ties by guild id.
    pub async fn busiest_guilds(
        &self,
        since_ms: i64,
        limit: usize,
    ) -> Result<Vec<(GuildId, u64)>, StoreError> {
        const SQL: &str = "SELECT guild_id, CAST(SUM(reads) AS BIGINT) AS total \
             FROM guild_read_counts WHERE hour >= $1 \
             GROUP BY guild_id ORDER BY total DESC, guild_id LIMIT $2";
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows: Vec<(String, i64)> = with_pool!(self, |pool| sqlx::query_as(SQL)
            .bind(read_count_hour(since_ms))
            .bind(limit)
            .fetch_all(pool)
            .await)?;
        rows.into_iter()
            .map(|(guild, reads)| {
                let guild = GuildId::parse(guild.clone())
                    .map_err(|_| StoreError::Corrupt(format!("read counts: guild id {guild:?}")))?;
                Ok((guild, reads.max(0).unsigned_abs()))
            })
            .collect()
    }

    /// Deletes the counts of the hours that ended at or before `before_ms`;
    /// returns how many rows.
    pub async fn purge_guild_reads(&self, before_ms: i64) -> Result<u64, StoreError> {
        const SQL: &str = "DELETE FROM guild_read_counts WHERE hour < $1";
        Ok(with_pool!(self, |pool| sqlx::query(SQL)
            .bind(read_count_hour(before_ms))
            .execute(pool)
            .await
            .map(|r| r.rows_affected()))?)
    }
}
