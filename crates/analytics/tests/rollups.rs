//! The daily rollups (migration 0004): every analytics read through them
//! must equal its raw-events reference query (`sql/reference/`), on SQLite
//! and PostgreSQL, for any `since` and `now`; and the rollups kept batch by
//! batch must equal the ones a bulk load builds at once.

mod common;

use chrono::{DateTime, Duration, TimeZone, Utc};
use common::*;
use spywatcher_analytics::{
    AnalyticsKind, Event, EventStore, GeneratorConfig, GuildId, Query, Since, generate_into,
    generated_guild_ids,
};
use spywatcher_testkit::postgres::TestDatabase;

const DAY_MS: i64 = 86_400_000;

fn at(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms)
        .single()
        .expect("valid instant")
}

/// 2026-11-20T00:00:00Z: a UTC day boundary, where the generated history
/// ends.
fn midnight() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 20, 0, 0, 0)
        .single()
        .expect("valid date")
}

fn generator_config() -> GeneratorConfig {
    GeneratorConfig {
        seed: 7,
        guilds: 2,
        users: 60,
        days: 21,
        events: 12_000,
        end: midnight(),
        guild_skew: 0.0,
    }
}

/// The `now` values checked: mid-day, on a day boundary and a millisecond
/// either side of one, and an instant of no particular shape.
fn nows() -> Vec<DateTime<Utc>> {
    let d = midnight();
    vec![
        now(),
        d,
        d - Duration::milliseconds(1),
        d + Duration::milliseconds(1),
        d + Duration::milliseconds(3 * 3_600_000 + 17 * 60_000 + 123),
    ]
}

/// The `since` values checked for one `now`: none, on and around the
/// window edges (now − 14d, now − 7d) and day boundaries, recent, equal to
/// `now`, and after it.
fn sinces(now: DateTime<Utc>) -> Vec<Option<Since>> {
    let now_ms = now.timestamp_millis();
    let day_start = now_ms.div_euclid(DAY_MS) * DAY_MS;
    let mut ms = vec![0, 1];
    for base in [
        now_ms - 14 * DAY_MS,
        now_ms - 7 * DAY_MS,
        now_ms - DAY_MS,
        now_ms,
        day_start - 7 * DAY_MS,
        day_start - 10 * DAY_MS,
        day_start - 20 * DAY_MS,
        day_start,
    ] {
        ms.extend([base - 1, base, base + 1]);
    }
    ms.extend([now_ms - 8 * DAY_MS + 5_000, now_ms + 3_600_000]);
    let mut since: Vec<Option<Since>> = vec![None];
    since.extend(ms.into_iter().map(Since::from_epoch_millis));
    since
}

/// The instants the edge-case events sit on: every `since`, window start,
/// split and `now` checked, with the day boundaries around them, each a
/// millisecond either side too.
fn edge_instants() -> Vec<i64> {
    let mut points = Vec::new();
    for now in nows() {
        let now_ms = now.timestamp_millis();
        for since in sinces(now).into_iter().flatten() {
            points.push(since.as_epoch_millis());
        }
        points.extend([now_ms - 14 * DAY_MS, now_ms - 7 * DAY_MS, now_ms]);
    }
    let days: Vec<i64> = points
        .iter()
        .map(|p| p.div_euclid(DAY_MS) * DAY_MS)
        .collect();
    points.extend(days.iter().copied());
    points.extend(days.iter().map(|d| d + DAY_MS));
    let mut instants: Vec<i64> = points
        .into_iter()
        .flat_map(|p| [p - 1, p, p + 1])
        .filter(|p| *p >= 0)
        .collect();
    instants.sort_unstable();
    instants.dedup();
    instants
}

/// Hand-made events in `guild` on every edge instant: each user's kind
/// and name rotate so that renames, ties and flags land on the edges.
fn edge_events(guild: &str) -> Vec<Event> {
    const MASKS: [&[&str]; 7] = [
        &["desktop"],
        &["mobile"],
        &["desktop", "mobile"],
        &["web"],
        &["desktop", "web"],
        &["mobile", "web"],
        &["desktop", "mobile", "web"],
    ];
    let mut events = Vec::new();
    for (i, ms) in edge_instants().into_iter().enumerate() {
        let t = at(ms);
        // A typist renamed every third event, who also writes now and then.
        let typist = ["tess", "tessa", "t3ss"][i % 3];
        events.push(typing(guild, "901", typist, ["31", "32"][i % 2], t));
        if i % 4 == 0 {
            events.push(message(guild, "901", typist, "31", t));
        }
        // Two events of one user in one millisecond under two names: the
        // later inserted name is the latest.
        events.push(typing(guild, "902", "tie_a", "31", t));
        events.push(typing(guild, "902", "tie_b", "32", t));
        // A writer whose messages stop at some edge, and a lurker.
        if i % 2 == 0 {
            events.push(message(guild, "903", "wren", "31", t));
        }
        events.push(presence(guild, "904", "lou", MASKS[i % 7], t));
        // A presence-only user whose clients grow over time, and one of
        // them also typing once in a while (no lurker then).
        events.push(presence(guild, "905", "cid", MASKS[(i / 5).min(6)], t));
        if i % 9 == 0 {
            events.push(typing(guild, "906", "pat", "33", t));
        }
        events.push(presence(guild, "906", "pat", MASKS[(i * 3) % 7], t));
        events.push(role_change(guild, "907", ["rho", "rhoda"][i % 2], t));
        events.push(member_join(guild, "908", "jo", t));
    }
    events
}

/// A store, its database URL, and what keeps the database alive.
struct Db {
    name: &'static str,
    store: EventStore,
    url: String,
    _guard: Box<dyn std::any::Any>,
}

async fn open(backend: &'static str) -> Db {
    if backend == "postgres" {
        let db = TestDatabase::create()
            .await
            .expect("PostgreSQL test database (is SPYWATCHER_TEST_PG_URL set?)");
        let url = db.url().to_owned();
        let store = EventStore::connect(&url).await.expect("postgres store");
        Db {
            name: backend,
            store,
            url,
            _guard: Box::new(db),
        }
    } else {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = dir.path().join("rollups.db").display().to_string();
        let store = EventStore::connect(&url).await.expect("sqlite store");
        Db {
            name: backend,
            store,
            url,
            _guard: Box::new(dir),
        }
    }
}

const BACKENDS: [&str; 2] = ["sqlite", "postgres"];

/// Ingests `events` in `batches` transactions.
async fn ingest_in_batches(store: &EventStore, events: &[Event], batches: usize) {
    let size = events.len().div_ceil(batches).max(1);
    for chunk in events.chunks(size) {
        store.ingest(chunk).await.expect("ingest");
    }
}

/// Every row of both rollup tables, as text, in key order.
async fn rollup_rows(db: &Db) -> Vec<String> {
    const EVENT_DAYS: &str = "SELECT guild_id, CAST(kind AS BIGINT), CAST(day AS BIGINT), user_id, \
         CAST(n AS BIGINT), CAST(last_at AS BIGINT), CAST(clients AS BIGINT) FROM event_days \
         ORDER BY guild_id, kind, day, user_id";
    const TYPING_DAYS: &str = "SELECT guild_id, user_id, username, channel_id, channel, \
         CAST(day AS BIGINT), CAST(n AS BIGINT) FROM typing_days \
         ORDER BY guild_id, user_id, username, channel_id, channel, day";
    type EventDay = (String, i64, i64, String, i64, i64, i64);
    type TypingDay = (String, String, String, String, String, i64, i64);
    let (event_days, typing_days): (Vec<EventDay>, Vec<TypingDay>) = if db.name == "postgres" {
        let pool = sqlx::PgPool::connect(&db.url).await.expect("connect");
        (
            sqlx::query_as(EVENT_DAYS).fetch_all(&pool).await.unwrap(),
            sqlx::query_as(TYPING_DAYS).fetch_all(&pool).await.unwrap(),
        )
    } else {
        let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.url))
            .await
            .expect("connect");
        (
            sqlx::query_as(EVENT_DAYS).fetch_all(&pool).await.unwrap(),
            sqlx::query_as(TYPING_DAYS).fetch_all(&pool).await.unwrap(),
        )
    };
    event_days
        .iter()
        .map(|r| format!("event_days {r:?}"))
        .chain(typing_days.iter().map(|r| format!("typing_days {r:?}")))
        .collect()
}

/// The generated history (a bulk load into an empty store), then the edge
/// events in `GUILD` and in the first generated guild, in a few batches.
async fn loaded(backend: &'static str) -> Db {
    let db = open(backend).await;
    let config = generator_config();
    generate_into(&db.store, &config, |_, _| {})
        .await
        .expect("generate");
    let mut events = edge_events(GUILD);
    events.extend(edge_events(generated_guild_ids(&config)[0].as_str()));
    ingest_in_batches(&db.store, &events, 5).await;
    db
}

/// Compares the rollup query with the reference for every guild, `now`,
/// `since` and analytics; returns, per analytics, how many comparisons had
/// rows (so that a vacuous pass shows).
async fn compare_all(db: &Db) -> Vec<(AnalyticsKind, usize)> {
    let mut guilds: Vec<GuildId> = generated_guild_ids(&generator_config());
    guilds.push(guild(GUILD));
    let mut non_empty = Vec::new();
    for kind in AnalyticsKind::ALL.iter().copied() {
        let mut with_rows = 0;
        for g in &guilds {
            for now in nows() {
                for since in sinces(now) {
                    let got = db
                        .store
                        .analytics_by(Query::Rollups, kind, g, since, now)
                        .await
                        .expect("rollup query");
                    let want = db
                        .store
                        .analytics_by(Query::Reference, kind, g, since, now)
                        .await
                        .expect("reference query");
                    assert_eq!(
                        got.to_json(),
                        want.to_json(),
                        "{kind} on {}: guild {g}, now {now:?}, since {since:?}",
                        db.name
                    );
                    with_rows += usize::from(!want.is_empty());
                }
            }
        }
        non_empty.push((kind, with_rows));
    }
    non_empty
}

#[tokio::test]
async fn rollup_queries_equal_the_raw_events_reference_for_any_since_and_now() {
    for backend in BACKENDS {
        let db = loaded(backend).await;
        let non_empty = compare_all(&db).await;
        for (kind, with_rows) in non_empty {
            assert!(
                with_rows > 20,
                "{kind} on {backend}: only {with_rows} comparisons had rows"
            );
        }
    }
}

/// The same events, one store loaded in bulk (rollups built at the end),
/// the other batch by batch (rollups kept by every ingest): the same
/// rollups, which a rebuild from the events leaves unchanged.
#[tokio::test]
async fn rollups_kept_batch_by_batch_equal_a_bulk_build() {
    let config = generator_config();
    let first_guild = generated_guild_ids(&config)[0].clone();
    for backend in BACKENDS {
        let bulk = loaded(backend).await;

        // Not empty when the generator starts: it ingests as any client.
        let incremental = open(backend).await;
        let mut events = edge_events(GUILD);
        events.extend(edge_events(first_guild.as_str()));
        ingest_in_batches(&incremental.store, &events, 7).await;
        generate_into(&incremental.store, &config, |_, _| {})
            .await
            .expect("generate");

        let kept = rollup_rows(&incremental).await;
        assert!(kept.len() > 1_000, "{backend}: {} rows", kept.len());
        assert_eq!(kept, rollup_rows(&bulk).await, "{backend}");
        incremental.store.rebuild_rollups().await.expect("rebuild");
        assert_eq!(kept, rollup_rows(&incremental).await, "{backend}");
    }
}

/// A bulk load cut short (no `finish_bulk_load`) leaves events without
/// rollups; the next `migrate` (every `connect`) builds them.
#[tokio::test]
async fn migrate_heals_the_rollups_of_a_bulk_load_cut_short() {
    for backend in BACKENDS {
        let db = open(backend).await;
        assert!(db.store.begin_bulk_load().await.expect("begin"));
        db.store.ingest(&edge_events(GUILD)).await.expect("ingest");
        assert_eq!(rollup_rows(&db).await, Vec::<String>::new(), "{backend}");

        db.store.migrate().await.expect("migrate");
        let healed = rollup_rows(&db).await;
        assert!(!healed.is_empty(), "{backend}");
        db.store.rebuild_rollups().await.expect("rebuild");
        assert_eq!(healed, rollup_rows(&db).await, "{backend}");
    }
}

/// A database from before migration 0004 (its events, no rollups) is
/// upgraded: the migration fills the rollups from the events.
#[tokio::test]
async fn migration_0004_fills_the_rollups_of_an_existing_database() {
    const DOWNGRADE: [&str; 3] = [
        "DROP TABLE event_days",
        "DROP TABLE typing_days",
        "DELETE FROM _sqlx_migrations WHERE version = 4",
    ];
    for backend in BACKENDS {
        let db = open(backend).await;
        ingest_in_batches(&db.store, &edge_events(GUILD), 3).await;
        let kept = rollup_rows(&db).await;
        for sql in DOWNGRADE {
            if backend == "postgres" {
                let pool = sqlx::PgPool::connect(&db.url).await.expect("connect");
                sqlx::query(sql).execute(&pool).await.expect(sql);
            } else {
                let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.url))
                    .await
                    .expect("connect");
                sqlx::query(sql).execute(&pool).await.expect(sql);
            }
        }
        let upgraded = EventStore::connect(&db.url).await.expect("upgrade");
        drop(upgraded);
        assert_eq!(kept, rollup_rows(&db).await, "{backend}");
    }
}
