//! Upkeep of the daily rollups (migration 0004), which the analytics read
//! for whole UTC days instead of grouping every raw event
//! (`analytics/mod.rs`, "Whole days and edges").
//!
//! Every batch of events updates them in its own transaction: the batch is
//! first aggregated here, one row per distinct key, then upserted with
//! multi-row `INSERT ... ON CONFLICT DO UPDATE` that adds the counts. A
//! bulk load skips that and builds them once at the end
//! ([`REBUILD`], the same statements as the migration's).

use std::collections::BTreeMap;

use super::row::EventRow;
use crate::analytics::DAY_MS;
use crate::domain::Event;

/// The statements that build the rollups from the events, after a bulk
/// load or to heal one cut short; migration 0004 fills them with the same
/// text (a unit test checks).
pub(crate) const REBUILD: [&str; 2] = [
    "INSERT INTO event_days (guild_id, kind, day, user_id, n, last_at, clients) \
     SELECT guild_id, kind, created_at / 86400000, user_id, count(*), max(created_at), \
     coalesce(max(clients & 1), 0) | coalesce(max(clients & 2), 0) | coalesce(max(clients & 4), 0) \
     FROM events \
     WHERE kind IN (1, 2, 3, 4) \
     GROUP BY guild_id, kind, created_at / 86400000, user_id",
    "INSERT INTO typing_days (guild_id, user_id, username, channel_id, channel, day, n) \
     SELECT guild_id, user_id, username, channel_id, channel, created_at / 86400000, count(*) \
     FROM events \
     WHERE kind = 2 \
     GROUP BY guild_id, user_id, username, channel_id, channel, created_at / 86400000",
];

/// Empties the rollups before [`REBUILD`].
pub(crate) const CLEAR: [&str; 2] = ["DELETE FROM event_days", "DELETE FROM typing_days"];

/// Bound values per upserted row (both tables have seven columns).
const COLUMNS_PER_ROW: usize = 7;

/// Rows per upsert statement: under SQLite's 32,766 bound parameters.
pub(crate) const ROWS_PER_STATEMENT: usize = 14_000 / COLUMNS_PER_ROW;

/// The one place the upsert SQL differs between the databases: the larger
/// of two values is `GREATEST` on PostgreSQL and the two-argument `max` on
/// SQLite (which has no `GREATEST`).
pub(crate) trait Dialect {
    const GREATEST: &'static str;
}

impl Dialect for sqlx::Postgres {
    const GREATEST: &'static str = "GREATEST";
}

impl Dialect for sqlx::Sqlite {
    const GREATEST: &'static str = "max";
}

/// `event_days`' upsert: the head before `VALUES`, and the conflict clause
/// after them (see [`event_days_conflict`]).
pub(crate) const EVENT_DAYS_INSERT_HEAD: &str =
    "INSERT INTO event_days (guild_id, kind, day, user_id, n, last_at, clients) ";
const EVENT_DAYS_CONFLICT: &str = " ON CONFLICT (guild_id, kind, day, user_id) DO UPDATE SET \
     n = event_days.n + excluded.n, \
     last_at = {greatest}(event_days.last_at, excluded.last_at), \
     clients = event_days.clients | excluded.clients";

/// `event_days`' conflict clause with the database's `greatest` function
/// ([`Dialect::GREATEST`]).
pub(crate) fn event_days_conflict(greatest: &str) -> String {
    EVENT_DAYS_CONFLICT.replace("{greatest}", greatest)
}

/// `typing_days`' upsert: the head before `VALUES`, the conflict clause
/// after them.
pub(crate) const TYPING_DAYS_INSERT_HEAD: &str =
    "INSERT INTO typing_days (guild_id, user_id, username, channel_id, channel, day, n) ";
pub(crate) const TYPING_DAYS_CONFLICT: &str = " ON CONFLICT (guild_id, user_id, username, channel_id, channel, day) DO UPDATE SET \
     n = typing_days.n + excluded.n";

/// A row of `event_days`: its key...
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct EventDayKey<'a> {
    pub guild_id: &'a str,
    pub kind: i16,
    pub day: i64,
    pub user_id: &'a str,
}

/// ...and its values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct EventDay {
    pub n: i64,
    pub last_at: i64,
    pub clients: i16,
}

/// The key of a row of `typing_days` (its value is the count).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct TypingDayKey<'a> {
    pub guild_id: &'a str,
    pub user_id: &'a str,
    pub username: &'a str,
    pub channel_id: &'a str,
    pub channel: &'a str,
    pub day: i64,
}

/// One batch's contribution to the rollups. Keys are sorted (`BTreeMap`):
/// concurrent batches on PostgreSQL then lock the rows they share in the
/// same order and cannot deadlock, and each key is upserted once per
/// statement, which `ON CONFLICT DO UPDATE` requires.
#[derive(Debug, Default)]
pub(crate) struct BatchRollups<'a> {
    pub event_days: BTreeMap<EventDayKey<'a>, EventDay>,
    pub typing_days: BTreeMap<TypingDayKey<'a>, i64>,
}

impl<'a> BatchRollups<'a> {
    pub fn new(events: &'a [Event]) -> Self {
        let mut rollups = Self::default();
        for e in events {
            let row = EventRow::new(e);
            // Member joins (5) are counted by no analytics.
            if !(1..=4).contains(&row.kind) {
                continue;
            }
            // Validated events are from 1970 on: the day is never negative,
            // and the division agrees with SQL's.
            let day = row.created_at.div_euclid(DAY_MS);
            let key = EventDayKey {
                guild_id: row.guild_id,
                kind: row.kind,
                day,
                user_id: row.user_id,
            };
            let clients = row.clients.unwrap_or(0);
            rollups
                .event_days
                .entry(key)
                .and_modify(|d| {
                    d.n += 1;
                    d.last_at = d.last_at.max(row.created_at);
                    d.clients |= clients;
                })
                .or_insert(EventDay {
                    n: 1,
                    last_at: row.created_at,
                    clients,
                });
            if let (2, Some(channel_id), Some(channel)) = (row.kind, row.channel_id, row.channel) {
                let key = TypingDayKey {
                    guild_id: row.guild_id,
                    user_id: row.user_id,
                    username: row.username,
                    channel_id,
                    channel,
                    day,
                };
                *rollups.typing_days.entry(key).or_insert(0) += 1;
            }
        }
        rollups
    }
}

/// Upserts a [`BatchRollups`] on the connection `$conn` of the database
/// `$db` (a `sqlx::Database` implementing [`Dialect`]), in chunks under the
/// bind limit. Written once, expanded for each backend, like `with_pool!`.
macro_rules! upsert_rollups {
    ($conn:expr, $db:ty, $rollups:expr) => {{
        use $crate::store::rollups as r;
        let rollups: &r::BatchRollups<'_> = $rollups;
        let conflict = r::event_days_conflict(<$db as r::Dialect>::GREATEST);
        let rows: Vec<_> = rollups.event_days.iter().collect();
        for chunk in rows.chunks(r::ROWS_PER_STATEMENT) {
            let mut qb = sqlx::QueryBuilder::<$db>::new(r::EVENT_DAYS_INSERT_HEAD);
            qb.push_values(chunk, |mut b, (k, v)| {
                b.push_bind(k.guild_id)
                    .push_bind(k.kind)
                    .push_bind(k.day)
                    .push_bind(k.user_id)
                    .push_bind(v.n)
                    .push_bind(v.last_at)
                    .push_bind(v.clients);
            });
            qb.push(&conflict);
            qb.build().execute(&mut *$conn).await?;
        }
        let rows: Vec<_> = rollups.typing_days.iter().collect();
        for chunk in rows.chunks(r::ROWS_PER_STATEMENT) {
            let mut qb = sqlx::QueryBuilder::<$db>::new(r::TYPING_DAYS_INSERT_HEAD);
            qb.push_values(chunk, |mut b, (k, n)| {
                b.push_bind(k.guild_id)
                    .push_bind(k.user_id)
                    .push_bind(k.username)
                    .push_bind(k.channel_id)
                    .push_bind(k.channel)
                    .push_bind(k.day)
                    .push_bind(**n);
            });
            qb.push(r::TYPING_DAYS_CONFLICT);
            qb.build().execute(&mut *$conn).await?;
        }
    }};
}
pub(crate) use upsert_rollups;

#[cfg(test)]
mod tests {
    fn normalized(sql: &str) -> String {
        sql.split_whitespace().collect::<Vec<_>>().join(" ")
    }

    /// The migration fills the rollups of an existing database with the
    /// statements a bulk load and the healing `migrate` use.
    #[test]
    fn the_migration_fills_the_rollups_as_a_rebuild_does() {
        for migration in [
            include_str!("../../migrations/sqlite/0004_daily_rollups.sql"),
            include_str!("../../migrations/postgres/0004_daily_rollups.sql"),
        ] {
            let migration = normalized(migration);
            for statement in super::REBUILD {
                assert!(
                    migration.contains(&format!("{};", normalized(statement))),
                    "{statement}"
                );
            }
        }
    }
}
