//! The six analytics of SPEC 2.2, computed by the database.
//!
//! Each analytics is data: a row type, a SQL file under `sql/`, and the
//! parameters that SQL takes. One generic runner ([`EventStore::rows`])
//! binds and executes any of them on either database; the SQL text is
//! shared by PostgreSQL and SQLite.
//!
//! # Whole days and edges
//!
//! Grouping a large guild's raw events per user is what an analytics costs
//! (a sort of every event in range). So each query reads the daily rollups
//! (`event_days`, `typing_days`, migration 0004, kept by every ingest in
//! the events' transaction) for the UTC days wholly inside its range, and
//! the events themselves only for the partial days at the range's edges;
//! it groups each part per user, then adds the parts up. [`Bounds`] splits
//! a range into those pieces ([`DayCover`]): `since` to the start of its
//! next day, then whole days with no upper end (the since-only analytics
//! count events after `now` too); for clients and shifts, each window
//! (old [window start, split), new [max(window start, split), now]) on
//! its own, a head and a tail of raw events around its whole days. The
//! result is exactly that of the raw-events definition kept under
//! `sql/reference/` ([`Query::Reference`]), which an oracle test checks
//! on both databases for many `since`/`now`.

mod clients;
mod ghosts;
mod heatmap;
mod lurkers;
mod roles;
mod shifts;

pub use clients::ClientDriftRow;
pub use ghosts::GhostRow;
pub use heatmap::HeatmapRow;
pub use lurkers::LurkerRow;
pub use roles::RoleDriftRow;
pub use shifts::BehaviorShiftRow;

use std::sync::LazyLock;

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sqlx::FromRow;
use sqlx::postgres::PgRow;
use sqlx::sqlite::SqliteRow;

use crate::domain::{AnalyticsKind, GuildId, Since};
use crate::store::{EventStore, StoreError, with_pool};

/// A value an analytics query binds, in the order of its `$N` placeholders.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Param {
    Guild,
    /// `since` in epoch ms, or the smallest i64 without one.
    Since,
    /// The first whole UTC day at or after `since` (the rollups' `day`).
    SinceFirstDay,
    /// The first millisecond of that day: events in [since, this) are
    /// read raw.
    SinceHeadEnd,
    /// Start of the old window: max(since, now − 14 days).
    WindowStart,
    /// End of the old window, start of the new: now − 7 days.
    WindowSplit,
    Now,
    /// The whole days of the old window, [first, end).
    OldFirstDay,
    OldEndDay,
    /// The whole days of the new window, [first, end).
    NewFirstDay,
    NewEndDay,
    /// The old window's raw edges: [WindowStart, OldHeadEnd) and
    /// [OldTailStart, WindowSplit).
    OldHeadEnd,
    OldTailStart,
    /// The new window's raw edges: [NewStart, NewHeadEnd) and
    /// [NewTailStart, End).
    NewStart,
    NewHeadEnd,
    NewTailStart,
    /// now + 1 ms: the new window includes `now`.
    End,
}

/// The reference queries' `$1` guild, `$2` since.
const SINCE_PARAMS: &[Param] = &[Param::Guild, Param::Since];
/// The reference queries' `$1` guild, `$2` old-window start, `$3` split,
/// `$4` now.
const WINDOW_PARAMS: &[Param] = &[
    Param::Guild,
    Param::WindowStart,
    Param::WindowSplit,
    Param::Now,
];
/// The rollup queries over `since`: `$1` guild, `$2` since, `$3` its first
/// whole day, `$4` that day's first millisecond.
const SINCE_DAYS_PARAMS: &[Param] = &[
    Param::Guild,
    Param::Since,
    Param::SinceFirstDay,
    Param::SinceHeadEnd,
];
/// The rollup queries over the two windows: `$1` guild, `$2` old-window
/// start, `$3` split, `$4`..`$7` the whole days of each window, `$8`..`$13`
/// the bounds of their raw edges.
const WINDOW_DAYS_PARAMS: &[Param] = &[
    Param::Guild,
    Param::WindowStart,
    Param::WindowSplit,
    Param::OldFirstDay,
    Param::OldEndDay,
    Param::NewFirstDay,
    Param::NewEndDay,
    Param::OldHeadEnd,
    Param::OldTailStart,
    Param::NewStart,
    Param::NewHeadEnd,
    Param::NewTailStart,
    Param::End,
];

/// What the generic runner needs to know about one analytics.
pub trait Analytics:
    Serialize
    + DeserializeOwned
    + Send
    + Unpin
    + for<'r> FromRow<'r, PgRow>
    + for<'r> FromRow<'r, SqliteRow>
{
    const KIND: AnalyticsKind;
    /// The query, over the daily rollups and the raw events at the edges;
    /// `{latest_username}` stands for `LATEST_USERNAME`.
    const TEMPLATE: &'static str;
    /// The same analytics over the raw events only: the definition the
    /// rollup query must match (the oracle test compares the two).
    const REFERENCE: &'static str;
    /// The `kind` codes of the events the analytics counts, as SQL list
    /// items (`"1, 2"`): where the username comes from.
    const COUNTED_KINDS: &'static str;
    const PARAMS: &'static [Param];
    const REFERENCE_PARAMS: &'static [Param];
}

/// "The user's most recent username among the events counted": each query
/// aggregates into a row `r` carrying `user_id` and `last_at` (the time of
/// the user's last counted event), and this lookup takes the username of
/// that event, the last inserted one when several share the millisecond.
/// `created_at = r.last_at` is one index seek on `(guild_id, kind,
/// created_at)`, and it runs only for the rows a query returns; folding the
/// username into the aggregate instead cost a third of the query time.
/// `{kinds}` is the kinds the analytics counts.
const LATEST_USERNAME: &str = "(SELECT e.username FROM events e \
     WHERE e.guild_id = $1 AND e.kind IN ({kinds}) AND e.user_id = r.user_id AND e.created_at = r.last_at \
     ORDER BY e.id DESC LIMIT 1)";

/// Which of an analytics' two queries to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Query {
    /// The one served: whole days from the rollups, edges from the events.
    Rollups,
    /// The raw-events definition ([`Analytics::REFERENCE`]).
    Reference,
}

/// Each analytics' SQL with the placeholders filled in, indexed like
/// `AnalyticsKind::ALL`: (rollups, reference).
static SQL: LazyLock<Vec<(String, String)>> = LazyLock::new(|| {
    AnalyticsKind::ALL
        .iter()
        .map(|k| {
            let spec = spec(*k);
            let fill = |template: &str| {
                template.replace(
                    "{latest_username}",
                    &LATEST_USERNAME.replace("{kinds}", spec.kinds),
                )
            };
            (fill(spec.template), fill(spec.reference))
        })
        .collect()
});

/// The static description of one analytics, whichever it is.
struct Spec {
    template: &'static str,
    reference: &'static str,
    kinds: &'static str,
    params: &'static [Param],
    reference_params: &'static [Param],
}

impl Spec {
    fn params(&self, query: Query) -> &'static [Param] {
        match query {
            Query::Rollups => self.params,
            Query::Reference => self.reference_params,
        }
    }
}

fn spec(kind: AnalyticsKind) -> Spec {
    fn of<A: Analytics>() -> Spec {
        Spec {
            template: A::TEMPLATE,
            reference: A::REFERENCE,
            kinds: A::COUNTED_KINDS,
            params: A::PARAMS,
            reference_params: A::REFERENCE_PARAMS,
        }
    }
    match kind {
        AnalyticsKind::Ghosts => of::<GhostRow>(),
        AnalyticsKind::Lurkers => of::<LurkerRow>(),
        AnalyticsKind::Heatmap => of::<HeatmapRow>(),
        AnalyticsKind::Roles => of::<RoleDriftRow>(),
        AnalyticsKind::Clients => of::<ClientDriftRow>(),
        AnalyticsKind::Shifts => of::<BehaviorShiftRow>(),
    }
}

/// The SQL text run for `kind`.
pub fn sql(kind: AnalyticsKind) -> &'static str {
    query_sql(kind, Query::Rollups)
}

/// The SQL text of one of `kind`'s two queries.
pub fn query_sql(kind: AnalyticsKind, query: Query) -> &'static str {
    let i = AnalyticsKind::ALL
        .iter()
        .position(|k| *k == kind)
        .unwrap_or_default();
    match query {
        Query::Rollups => &SQL[i].0,
        Query::Reference => &SQL[i].1,
    }
}

/// Milliseconds in a UTC day: the rollups' `day` is `created_at / DAY_MS`.
pub(crate) const DAY_MS: i64 = 86_400_000;

/// How a range of time [lo, hi) splits into whole UTC days, read from the
/// rollups, and the partial days at its two edges, read from the events:
/// days [first_day, end_day), events [lo, head_end) and [tail_start, hi).
/// A range without a whole day is all edge: no days, events [lo, hi).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct DayCover {
    first_day: i64,
    end_day: i64,
    head_end: i64,
    tail_start: i64,
}

impl DayCover {
    fn new(lo: i64, hi: i64) -> Self {
        let first_day = first_day_at_or_after(lo);
        let end_day = hi.div_euclid(DAY_MS);
        if first_day < end_day {
            Self {
                first_day,
                end_day,
                head_end: first_day * DAY_MS,
                tail_start: end_day * DAY_MS,
            }
        } else {
            Self {
                first_day,
                end_day: first_day,
                head_end: hi,
                tail_start: hi,
            }
        }
    }
}

/// The first UTC day that starts at or after `ms` (ceiling division; the
/// product with `DAY_MS` stays in range for every i64).
fn first_day_at_or_after(ms: i64) -> i64 {
    ms.div_euclid(DAY_MS) + i64::from(ms.rem_euclid(DAY_MS) != 0)
}

/// The numeric parameters of one query.
#[derive(Debug, Clone, Copy)]
struct Bounds {
    since: i64,
    /// The days from since's first whole day on; unbounded above (the
    /// since-only analytics count events after `now` too).
    since_first_day: i64,
    window_start: i64,
    split: i64,
    now: i64,
    old: DayCover,
    /// The new window starts at max(window start, split): with `since`
    /// after the split, events before `since` do not count.
    new_start: i64,
    new: DayCover,
    end: i64,
}

impl Bounds {
    fn new(since: Option<Since>, now: DateTime<Utc>) -> Self {
        let since = since.map_or(i64::MIN, |s| s.as_epoch_millis());
        let now_ms = now.timestamp_millis();
        let days = |d: i64| Duration::days(d).num_milliseconds();
        let window_start = since.max(now_ms - days(14));
        let split = now_ms - days(7);
        let new_start = window_start.max(split);
        let end = now_ms.saturating_add(1);
        Self {
            since,
            since_first_day: first_day_at_or_after(since),
            window_start,
            split,
            now: now_ms,
            old: DayCover::new(window_start, split),
            new_start,
            new: DayCover::new(new_start, end),
            end,
        }
    }

    fn value(&self, p: Param) -> i64 {
        match p {
            Param::Since => self.since,
            Param::SinceFirstDay => self.since_first_day,
            Param::SinceHeadEnd => self.since_first_day * DAY_MS,
            Param::WindowStart => self.window_start,
            Param::WindowSplit => self.split,
            Param::Now => self.now,
            Param::OldFirstDay => self.old.first_day,
            Param::OldEndDay => self.old.end_day,
            Param::NewFirstDay => self.new.first_day,
            Param::NewEndDay => self.new.end_day,
            Param::OldHeadEnd => self.old.head_end,
            Param::OldTailStart => self.old.tail_start,
            Param::NewStart => self.new_start,
            Param::NewHeadEnd => self.new.head_end,
            Param::NewTailStart => self.new.tail_start,
            Param::End => self.end,
            // Bound as text by the caller.
            Param::Guild => 0,
        }
    }
}

/// Binds `params` in order onto a query of either database.
macro_rules! bind_params {
    ($query:expr, $params:expr, $guild:expr, $bounds:expr) => {{
        let mut q = $query;
        for p in $params {
            q = match p {
                Param::Guild => q.bind($guild.as_str().to_owned()),
                p => q.bind($bounds.value(*p)),
            };
        }
        q
    }};
}

/// The rows of any analytics; serializes to the bare JSON array of rows
/// that the HTTP API returns.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum AnalyticsRows {
    Ghosts(Vec<GhostRow>),
    Lurkers(Vec<LurkerRow>),
    Heatmap(Vec<HeatmapRow>),
    Roles(Vec<RoleDriftRow>),
    Clients(Vec<ClientDriftRow>),
    Shifts(Vec<BehaviorShiftRow>),
}

impl AnalyticsRows {
    pub fn kind(&self) -> AnalyticsKind {
        match self {
            AnalyticsRows::Ghosts(_) => AnalyticsKind::Ghosts,
            AnalyticsRows::Lurkers(_) => AnalyticsKind::Lurkers,
            AnalyticsRows::Heatmap(_) => AnalyticsKind::Heatmap,
            AnalyticsRows::Roles(_) => AnalyticsKind::Roles,
            AnalyticsRows::Clients(_) => AnalyticsKind::Clients,
            AnalyticsRows::Shifts(_) => AnalyticsKind::Shifts,
        }
    }

    pub fn len(&self) -> usize {
        match self {
            AnalyticsRows::Ghosts(r) => r.len(),
            AnalyticsRows::Lurkers(r) => r.len(),
            AnalyticsRows::Heatmap(r) => r.len(),
            AnalyticsRows::Roles(r) => r.len(),
            AnalyticsRows::Clients(r) => r.len(),
            AnalyticsRows::Shifts(r) => r.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The JSON array of rows.
    pub fn to_json(&self) -> serde_json::Value {
        // Rows are plain data: serializing them cannot fail.
        serde_json::to_value(self).unwrap_or_default()
    }
}

impl EventStore {
    /// One analytics for one guild. `now` fixes the windows of clients and
    /// shifts (inject it in tests; see [`analytics_now`](Self::analytics_now)).
    pub async fn analytics(
        &self,
        kind: AnalyticsKind,
        guild: &GuildId,
        since: Option<Since>,
        now: DateTime<Utc>,
    ) -> Result<AnalyticsRows, StoreError> {
        self.analytics_by(Query::Rollups, kind, guild, since, now)
            .await
    }

    /// [`analytics`](Self::analytics) as of the current time.
    pub async fn analytics_now(
        &self,
        kind: AnalyticsKind,
        guild: &GuildId,
        since: Option<Since>,
    ) -> Result<AnalyticsRows, StoreError> {
        self.analytics(kind, guild, since, Utc::now()).await
    }

    /// One analytics, typed: `store.rows::<GhostRow>(&guild, None, now)`.
    pub async fn rows<A: Analytics>(
        &self,
        guild: &GuildId,
        since: Option<Since>,
        now: DateTime<Utc>,
    ) -> Result<Vec<A>, StoreError> {
        self.query_rows(Query::Rollups, guild, since, now).await
    }

    /// One analytics computed by its reference query, over the raw events
    /// only: what [`rows`](Self::rows) must return (for the oracle test
    /// and the before/after benchmark).
    pub async fn reference_rows<A: Analytics>(
        &self,
        guild: &GuildId,
        since: Option<Since>,
        now: DateTime<Utc>,
    ) -> Result<Vec<A>, StoreError> {
        self.query_rows(Query::Reference, guild, since, now).await
    }

    /// [`analytics`](Self::analytics) by the chosen query.
    pub async fn analytics_by(
        &self,
        query: Query,
        kind: AnalyticsKind,
        guild: &GuildId,
        since: Option<Since>,
        now: DateTime<Utc>,
    ) -> Result<AnalyticsRows, StoreError> {
        Ok(match kind {
            AnalyticsKind::Ghosts => {
                AnalyticsRows::Ghosts(self.query_rows(query, guild, since, now).await?)
            }
            AnalyticsKind::Lurkers => {
                AnalyticsRows::Lurkers(self.query_rows(query, guild, since, now).await?)
            }
            AnalyticsKind::Heatmap => {
                AnalyticsRows::Heatmap(self.query_rows(query, guild, since, now).await?)
            }
            AnalyticsKind::Roles => {
                AnalyticsRows::Roles(self.query_rows(query, guild, since, now).await?)
            }
            AnalyticsKind::Clients => {
                AnalyticsRows::Clients(self.query_rows(query, guild, since, now).await?)
            }
            AnalyticsKind::Shifts => {
                AnalyticsRows::Shifts(self.query_rows(query, guild, since, now).await?)
            }
        })
    }

    async fn query_rows<A: Analytics>(
        &self,
        query: Query,
        guild: &GuildId,
        since: Option<Since>,
        now: DateTime<Utc>,
    ) -> Result<Vec<A>, StoreError> {
        let bounds = Bounds::new(since, now);
        let sql = query_sql(A::KIND, query);
        let params = spec(A::KIND).params(query);
        let rows = with_pool!(self, |pool, Db| {
            bind_params!(sqlx::query_as::<Db, A>(sql), params, guild, bounds)
                .fetch_all(pool)
                .await
        })?;
        Ok(rows)
    }

    /// The database's plan for one analytics query (`EXPLAIN` on
    /// PostgreSQL, `EXPLAIN QUERY PLAN` on SQLite), one line per entry.
    pub async fn explain(
        &self,
        kind: AnalyticsKind,
        guild: &GuildId,
        since: Option<Since>,
        now: DateTime<Utc>,
    ) -> Result<Vec<String>, StoreError> {
        self.explain_query(Query::Rollups, kind, guild, since, now)
            .await
    }

    /// [`explain`](Self::explain) for the chosen query.
    pub async fn explain_query(
        &self,
        query: Query,
        kind: AnalyticsKind,
        guild: &GuildId,
        since: Option<Since>,
        now: DateTime<Utc>,
    ) -> Result<Vec<String>, StoreError> {
        let bounds = Bounds::new(since, now);
        let sql = query_sql(kind, query);
        let params = spec(kind).params(query);
        let lines = match &self.backend {
            crate::store::Backend::Postgres(pool) => {
                let q = sqlx::query_scalar::<sqlx::Postgres, String>(sqlx::AssertSqlSafe(format!(
                    "EXPLAIN {sql}"
                )));
                bind_params!(q, params, guild, bounds)
                    .fetch_all(pool)
                    .await?
            }
            crate::store::Backend::Sqlite(pool) => {
                let q = sqlx::query_as::<sqlx::Sqlite, (i64, i64, i64, String)>(
                    sqlx::AssertSqlSafe(format!("EXPLAIN QUERY PLAN {sql}")),
                );
                let rows = bind_params!(q, params, guild, bounds)
                    .fetch_all(pool)
                    .await?;
                rows.into_iter().map(|(_, _, _, detail)| detail).collect()
            }
        };
        Ok(lines)
    }
}
