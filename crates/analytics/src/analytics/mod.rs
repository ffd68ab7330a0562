//! The six analytics of SPEC 2.2, computed by the database.
//!
//! Each analytics is data: a row type, a SQL file under `sql/`, and the
//! parameters that SQL takes. One generic runner ([`EventStore::rows`])
//! binds and executes any of them on either database; the SQL text is
//! shared by PostgreSQL and SQLite.

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
    /// Start of the old window: max(since, now − 14 days).
    WindowStart,
    /// End of the old window, start of the new: now − 7 days.
    WindowSplit,
    Now,
}

/// `$1` guild, `$2` since.
const SINCE_PARAMS: &[Param] = &[Param::Guild, Param::Since];
/// `$1` guild, `$2` old-window start, `$3` split, `$4` now.
const WINDOW_PARAMS: &[Param] = &[
    Param::Guild,
    Param::WindowStart,
    Param::WindowSplit,
    Param::Now,
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
    /// The query; `{latest_username}` stands for `LATEST_USERNAME`.
    const TEMPLATE: &'static str;
    /// The `kind` codes of the events the analytics counts, as SQL list
    /// items (`"1, 2"`): where the username comes from.
    const COUNTED_KINDS: &'static str;
    const PARAMS: &'static [Param];
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

/// Each analytics' SQL with the placeholders filled in, indexed like
/// `AnalyticsKind::ALL`.
static SQL: LazyLock<Vec<String>> = LazyLock::new(|| {
    AnalyticsKind::ALL
        .iter()
        .map(|k| {
            let spec = spec(*k);
            spec.template.replace(
                "{latest_username}",
                &LATEST_USERNAME.replace("{kinds}", spec.kinds),
            )
        })
        .collect()
});

/// The static description of one analytics, whichever it is.
struct Spec {
    template: &'static str,
    kinds: &'static str,
    params: &'static [Param],
}

fn spec(kind: AnalyticsKind) -> Spec {
    fn of<A: Analytics>() -> Spec {
        Spec {
            template: A::TEMPLATE,
            kinds: A::COUNTED_KINDS,
            params: A::PARAMS,
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
    let i = AnalyticsKind::ALL
        .iter()
        .position(|k| *k == kind)
        .unwrap_or_default();
    &SQL[i]
}

/// The numeric parameters of one query.
#[derive(Debug, Clone, Copy)]
struct Bounds {
    since: i64,
    window_start: i64,
    split: i64,
    now: i64,
}

impl Bounds {
    fn new(since: Option<Since>, now: DateTime<Utc>) -> Self {
        let since = since.map_or(i64::MIN, |s| s.as_epoch_millis());
        let now_ms = now.timestamp_millis();
        let days = |d: i64| Duration::days(d).num_milliseconds();
        Self {
            since,
            window_start: since.max(now_ms - days(14)),
            split: now_ms - days(7),
            now: now_ms,
        }
    }

    fn value(&self, p: Param) -> i64 {
        match p {
            Param::Since => self.since,
            Param::WindowStart => self.window_start,
            Param::WindowSplit => self.split,
            Param::Now => self.now,
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
        Ok(match kind {
            AnalyticsKind::Ghosts => AnalyticsRows::Ghosts(self.rows(guild, since, now).await?),
            AnalyticsKind::Lurkers => AnalyticsRows::Lurkers(self.rows(guild, since, now).await?),
            AnalyticsKind::Heatmap => AnalyticsRows::Heatmap(self.rows(guild, since, now).await?),
            AnalyticsKind::Roles => AnalyticsRows::Roles(self.rows(guild, since, now).await?),
            AnalyticsKind::Clients => AnalyticsRows::Clients(self.rows(guild, since, now).await?),
            AnalyticsKind::Shifts => AnalyticsRows::Shifts(self.rows(guild, since, now).await?),
        })
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
        let bounds = Bounds::new(since, now);
        let sql = sql(A::KIND);
        let rows = with_pool!(self, |pool, Db| {
            bind_params!(sqlx::query_as::<Db, A>(sql), A::PARAMS, guild, bounds)
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
        let bounds = Bounds::new(since, now);
        let lines = match &self.backend {
            crate::store::Backend::Postgres(pool) => {
                let q = sqlx::query_scalar::<sqlx::Postgres, String>(sqlx::AssertSqlSafe(format!(
                    "EXPLAIN {}",
                    sql(kind)
                )));
                bind_params!(q, spec(kind).params, guild, bounds)
                    .fetch_all(pool)
                    .await?
            }
            crate::store::Backend::Sqlite(pool) => {
                let q = sqlx::query_as::<sqlx::Sqlite, (i64, i64, i64, String)>(
                    sqlx::AssertSqlSafe(format!("EXPLAIN QUERY PLAN {}", sql(kind))),
                );
                let rows = bind_params!(q, spec(kind).params, guild, bounds)
                    .fetch_all(pool)
                    .await?;
                rows.into_iter().map(|(_, _, _, detail)| detail).collect()
            }
        };
        Ok(lines)
    }
}
