//! The event store and the six behaviour analytics of spywatcher, on SQLite
//! (embedded default) or PostgreSQL. Knows nothing of HTTP or caching.
//!
//! # Layout
//!
//! * [`domain`]: types parsed at the edge. [`Snowflake`] and its typed
//!   wrappers [`GuildId`], [`UserId`], [`ChannelId`]; [`Since`] (RFC 3339 or
//!   epoch ms); [`EventKind`] (URL segments `messages`, `typing`, `presence`,
//!   `role-changes`, `member-joins`) with [`EventKind::invalidates`] (SPEC
//!   2.4); [`AnalyticsKind`]; [`Event`] and its [`Payload`]; and
//!   [`parse_events`], which turns a request body (one object or an array)
//!   into events or a [`ValidationError`] naming the event index and field.
//!   Unknown fields are rejected; `createdAt` and `since` share one set of
//!   forms and one range (`domain/timestamp.rs`), and `createdAt` may lie
//!   at most a given skew in the future.
//! * [`store`]: [`EventStore`], one type over both databases.
//!   `connect(url)` (runs migrations from `migrations/{postgres,sqlite}`),
//!   `ingest` (one transaction, all or nothing, run in its own task so a
//!   caller that gives up cannot cut it), `ingest_with_journal` (events plus
//!   a pending cache invalidation in the same transaction; no journal row
//!   for empty tags), `guild_ids`, `ping`, `analyze`. The schema is one
//!   `events` table with a `kind` column and one covering index on (guild,
//!   kind, time).
//!
//!   The cache-invalidation journal (`cache_invalidation_journal`, SPEC
//!   1.2.6 and 1.2.11) keeps every entry for a retention window after it
//!   is applied: `pending_invalidations` (not yet applied),
//!   `mark_invalidations_applied`, `invalidations_since` (applied or not,
//!   for replaying the window and for in-process tiers),
//!   `purge_invalidations` (by age), and `cache_server_identity` /
//!   `set_cache_server_identity` (the `run_id` of the Redis server the
//!   window was last replayed into, table `cache_server_identity`).
//!
//!   Reads per guild and hour (`guild_read_counts`, `store/read_counts.rs`),
//!   which the service records and warms the busiest guilds from at start:
//!   `record_guild_reads` (an upsert that adds), `busiest_guilds` (since a
//!   time), `purge_guild_reads` (by age).
//!   `store/postgres.rs` and `store/sqlite.rs` hold what differs between the
//!   databases: connection options and the bulk insert path (UNNEST arrays
//!   on PostgreSQL, multi-row VALUES on SQLite).
//! * [`analytics`]: the six analytics as SQL files shared by both databases
//!   (`src/analytics/sql/*.sql`), one row type per analytics, and one
//!   generic runner: `store.analytics(kind, &guild, since, now)` returns
//!   [`AnalyticsRows`] (serializes to the JSON array of rows);
//!   `store.rows::<GhostRow>(&guild, since, now)` is the typed form.
//! * [`generator`]: deterministic synthetic data ([`GeneratorConfig`],
//!   [`generate_into`], [`generated_guild_ids`], [`guild_quotas`]: even or
//!   Zipf-skewed guild sizes) for demos, tests and the
//!   benchmark (`benches/scaling.rs`); `examples/seed.rs` shows it behind a
//!   progress bar.
//!
//! Timestamps are stored as epoch milliseconds in both databases, so that
//! comparisons and orderings (and thus results) are identical on both.
//!
//! # Example
//!
//! ```
//! use spywatcher_analytics::{AnalyticsKind, EventKind, EventStore, GuildId, parse_events};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let store = EventStore::connect("sqlite::memory:").await?;
//! let body = serde_json::json!([
//!     {"guildId": "1", "userId": "7", "username": "ann", "channelId": "3", "channel": "general"},
//!     {"guildId": "1", "userId": "7", "username": "ann", "channelId": "3", "channel": "general"},
//! ]);
//! let events = parse_events(EventKind::Typing, body, spywatcher_analytics::DEFAULT_MAX_FUTURE_SKEW)?;
//! let tags: Vec<String> = EventKind::Typing.invalidates().iter().map(|k| format!("analytics:{k}")).collect();
//! let (stored, _journal_id) = store.ingest_with_journal(&events, &tags).await?;
//! assert_eq!(stored, 2);
//!
//! let guild: GuildId = "1".parse()?;
//! let ghosts = store.analytics_now(AnalyticsKind::Ghosts, &guild, None).await?;
//! assert_eq!(
//!     ghosts.to_json(),
//!     serde_json::json!([{"userId": "7", "username": "ann", "typingCount": 2, "messageCount": 0, "ghostScore": 2.0}])
//! );
//! # Ok(())
//! # }
//! ```

pub mod analytics;
pub mod domain;
pub mod generator;
pub mod store;

pub use analytics::{
    Analytics, AnalyticsRows, BehaviorShiftRow, ClientDriftRow, GhostRow, HeatmapRow, LurkerRow,
    Query, RoleDriftRow,
};
pub use domain::{
    AnalyticsKind, ChannelId, ClientSet, DEFAULT_MAX_FUTURE_SKEW, Event, EventKind, GuildId,
    Payload, Since, Snowflake, UserId, ValidationError, parse_events, parse_events_at,
};
pub use generator::{GeneratorConfig, Summary, generate_into, generated_guild_ids, guild_quotas};
pub use store::{EventStore, JournalEntry, StoreError};
