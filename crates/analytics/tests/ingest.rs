//! Ingestion: all-or-nothing batches and the invalidation journal, on both
//! databases.

mod common;

use common::*;
use serde_json::json;
use spywatcher_analytics::{
    DEFAULT_MAX_FUTURE_SKEW, EventKind, JournalEntry, StoreError, parse_events_at,
};

#[tokio::test]
async fn a_batch_with_one_invalid_event_stores_nothing() {
    for b in [sqlite().await, postgres().await] {
        let mut batch: Vec<_> = (0..3)
            .map(|i| message(GUILD, &i.to_string(), "ann", "10", days_ago(1)))
            .collect();
        batch[1].username = "   ".to_owned();
        let err = b
            .store
            .ingest_with_journal(&batch, &["guild:100".to_owned()])
            .await
            .unwrap_err();
        let StoreError::Invalid(e) = err else {
            panic!("{}: expected a validation error, got {err}", b.name)
        };
        assert_eq!((e.index, e.field.as_str()), (1, "username"), "{}", b.name);
        assert_eq!(
            e.to_string(),
            "event 1: field \"username\": must not be empty"
        );
        assert_eq!(b.store.event_count().await.unwrap(), 0, "{}", b.name);
        assert!(
            b.store.pending_invalidations().await.unwrap().is_empty(),
            "{}",
            b.name
        );

        // The same batch, fixed, is stored whole.
        batch[1].username = "ben".to_owned();
        assert_eq!(b.store.ingest(&batch).await.unwrap(), 3, "{}", b.name);
        assert_eq!(b.store.event_count().await.unwrap(), 3, "{}", b.name);
    }
}

#[tokio::test]
async fn a_rejected_request_body_names_the_event_and_field() {
    let body = json!([
        {"guildId": GUILD, "userId": "1", "username": "ann", "clients": ["web"]},
        {"guildId": GUILD, "userId": "1", "username": "ann", "clients": ["web"]},
        {"guildId": GUILD, "userId": 7, "username": "ann", "clients": ["web"]},
    ]);
    let err =
        parse_events_at(EventKind::Presence, body, now(), DEFAULT_MAX_FUTURE_SKEW).unwrap_err();
    assert_eq!(
        err.to_string(),
        "event 2: field \"userId\": must be a string of 1-20 decimal digits"
    );
}

#[tokio::test]
async fn large_batches_are_chunked_in_one_transaction() {
    // Larger than one SQLite statement (bind limit) and one UNNEST chunk.
    let batch: Vec<_> = (0..12_345)
        .map(|i| typing(GUILD, &(i % 97).to_string(), "u", "10", days_ago(1)))
        .collect();
    for b in [sqlite().await, postgres().await] {
        assert_eq!(b.store.ingest(&batch).await.unwrap(), 12_345, "{}", b.name);
        assert_eq!(b.store.event_count().await.unwrap(), 12_345, "{}", b.name);
        assert_eq!(
            b.store.guild_ids().await.unwrap(),
            vec![guild(GUILD)],
            "{}",
            b.name
        );
    }
}

#[tokio::test]
async fn the_invalidation_journal_commits_with_the_events() {
    for b in [sqlite().await, postgres().await] {
        let tags = vec!["guild:100".to_owned(), "analytics:ghosts".to_owned()];
        let before = chrono::Utc::now().timestamp_millis();
        let (stored, first) = b
            .store
            .ingest_with_journal(&[typing(GUILD, "1", "ann", "10", days_ago(1))], &tags)
            .await
            .unwrap();
        let after = chrono::Utc::now().timestamp_millis();
        assert_eq!(stored, 1);
        let first = first.expect("a journal entry");
        // A member join invalidates nothing: no entry.
        let (_, none) = b
            .store
            .ingest_with_journal(&[member_join(GUILD, "2", "ben", days_ago(1))], &[])
            .await
            .unwrap();
        assert_eq!(none, None);
        let (_, second) = b
            .store
            .ingest_with_journal(&[role_change(GUILD, "1", "ann", days_ago(1))], &tags[..1])
            .await
            .unwrap();
        let second = second.expect("a journal entry");
        assert!(second > first);

        // Written with the events, an entry is pending, stamped with the
        // time it was written.
        let pending = b.store.pending_invalidations().await.unwrap();
        let ids: Vec<i64> = pending.iter().map(|e| e.id).collect();
        assert_eq!(ids, vec![first, second], "{}", b.name);
        assert_eq!(pending[0].tags, tags);
        assert_eq!(pending[1].tags, &tags[..1]);
        assert!(pending.iter().all(|e| !e.applied), "{}", b.name);
        assert!(
            (before..=after).contains(&pending[0].recorded_at_ms),
            "{}: {before} <= {} <= {after}",
            b.name,
            pending[0].recorded_at_ms
        );

        // Ids are never reused, also after a purge: a later entry gets a
        // larger id.
        assert_eq!(b.store.purge_invalidations(i64::MAX).await.unwrap(), 2);
        let (_, third) = b
            .store
            .ingest_with_journal(&[role_change(GUILD, "1", "ann", days_ago(1))], &tags)
            .await
            .unwrap();
        assert!(third.unwrap() > second, "{}", b.name);
    }
}

/// Records one journal entry (no events) and returns it as stored.
async fn journal_entry(b: &Backend, tag: &str) -> JournalEntry {
    let (_, id) = b
        .store
        .ingest_with_journal(&[], &[tag.to_owned()])
        .await
        .unwrap();
    let id = id.expect("a journal entry");
    let entries = b.store.invalidations_since(i64::MIN).await.unwrap();
    entries
        .into_iter()
        .find(|e| e.id == id)
        .expect("the entry just written")
}

/// Lets the millisecond clock move on, so that entries written before and
/// after differ in `recorded_at_ms`.
async fn next_millisecond() {
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
}

#[tokio::test]
async fn applied_entries_leave_pending_and_stay_in_the_journal() {
    for b in [sqlite().await, postgres().await] {
        let a = journal_entry(&b, "a").await;
        let c = journal_entry(&b, "c").await;
        assert_eq!(
            b.store.pending_invalidations().await.unwrap(),
            vec![a.clone(), c.clone()],
            "{}",
            b.name
        );

        // Unknown ids are ignored; the count is of entries newly marked.
        assert_eq!(
            b.store
                .mark_invalidations_applied(&[a.id, 12345])
                .await
                .unwrap(),
            1,
            "{}",
            b.name
        );
        assert_eq!(
            b.store.pending_invalidations().await.unwrap(),
            vec![c.clone()],
            "{}",
            b.name
        );
        // Marking again (another instance applied it too) changes nothing.
        assert_eq!(
            b.store.mark_invalidations_applied(&[a.id]).await.unwrap(),
            0,
            "{}",
            b.name
        );

        // Applied or not, both are still there, flagged accordingly.
        let kept = b.store.invalidations_since(i64::MIN).await.unwrap();
        assert_eq!(
            kept,
            vec![
                JournalEntry {
                    applied: true,
                    ..a.clone()
                },
                c.clone()
            ],
            "{}",
            b.name
        );

        // More ids than one statement takes.
        let mut ids: Vec<i64> = (1_000_000..1_002_500).collect();
        ids.push(c.id);
        assert_eq!(
            b.store.mark_invalidations_applied(&ids).await.unwrap(),
            1,
            "{}",
            b.name
        );
        assert!(
            b.store.pending_invalidations().await.unwrap().is_empty(),
            "{}",
            b.name
        );
        assert_eq!(
            b.store.invalidations_since(i64::MIN).await.unwrap().len(),
            2,
            "{}",
            b.name
        );
        assert_eq!(b.store.mark_invalidations_applied(&[]).await.unwrap(), 0);
    }
}

#[tokio::test]
async fn invalidations_since_returns_the_window_applied_or_not() {
    for b in [sqlite().await, postgres().await] {
        assert!(
            b.store.invalidations_since(0).await.unwrap().is_empty(),
            "{}",
            b.name
        );
        let a = journal_entry(&b, "a").await;
        next_millisecond().await;
        let c = journal_entry(&b, "c").await;
        assert!(a.recorded_at_ms < c.recorded_at_ms, "{}", b.name);
        b.store.mark_invalidations_applied(&[c.id]).await.unwrap();
        let c = JournalEntry { applied: true, ..c };

        // `since` is inclusive.
        assert_eq!(
            b.store.invalidations_since(a.recorded_at_ms).await.unwrap(),
            vec![a.clone(), c.clone()],
            "{}",
            b.name
        );
        assert_eq!(
            b.store
                .invalidations_since(a.recorded_at_ms + 1)
                .await
                .unwrap(),
            vec![c.clone()],
            "{}",
            b.name
        );
        assert_eq!(
            b.store.invalidations_since(c.recorded_at_ms).await.unwrap(),
            vec![c.clone()],
            "{}",
            b.name
        );
        assert!(
            b.store
                .invalidations_since(c.recorded_at_ms + 1)
                .await
                .unwrap()
                .is_empty(),
            "{}",
            b.name
        );
    }
}

#[tokio::test]
async fn purge_drops_only_entries_older_than_the_cutoff() {
    for b in [sqlite().await, postgres().await] {
        let old = journal_entry(&b, "old").await;
        let old_applied = journal_entry(&b, "old-applied").await;
        b.store
            .mark_invalidations_applied(&[old_applied.id])
            .await
            .unwrap();
        next_millisecond().await;
        let young = journal_entry(&b, "young").await;
        let young_applied = journal_entry(&b, "young-applied").await;
        b.store
            .mark_invalidations_applied(&[young_applied.id])
            .await
            .unwrap();
        assert!(
            old_applied.recorded_at_ms < young.recorded_at_ms,
            "{}",
            b.name
        );

        // Nothing is older than the oldest entry.
        assert_eq!(
            b.store
                .purge_invalidations(old.recorded_at_ms)
                .await
                .unwrap(),
            0,
            "{}",
            b.name
        );
        // A cutoff between the two pairs drops the older pair, pending or
        // applied alike, and keeps the younger one (the cutoff itself is
        // kept: `before` is exclusive).
        assert_eq!(
            b.store
                .purge_invalidations(young.recorded_at_ms)
                .await
                .unwrap(),
            2,
            "{}",
            b.name
        );
        let kept: Vec<String> = b
            .store
            .invalidations_since(i64::MIN)
            .await
            .unwrap()
            .into_iter()
            .flat_map(|e| e.tags)
            .collect();
        assert_eq!(kept, ["young", "young-applied"], "{}", b.name);
        let pending: Vec<i64> = b
            .store
            .pending_invalidations()
            .await
            .unwrap()
            .iter()
            .map(|e| e.id)
            .collect();
        assert_eq!(pending, vec![young.id], "{}", b.name);
        // Purged ids are ignored by a late mark.
        assert_eq!(
            b.store.mark_invalidations_applied(&[old.id]).await.unwrap(),
            0,
            "{}",
            b.name
        );
        assert_eq!(
            b.store
                .purge_invalidations(young_applied.recorded_at_ms + 1)
                .await
                .unwrap(),
            2,
            "{}",
            b.name
        );
        assert!(
            b.store
                .invalidations_since(i64::MIN)
                .await
                .unwrap()
                .is_empty(),
            "{}",
            b.name
        );
    }
}

#[tokio::test]
async fn the_cache_server_identity_round_trips_and_is_replaced() {
    for b in [sqlite().await, postgres().await] {
        assert_eq!(
            b.store.cache_server_identity().await.unwrap(),
            None,
            "{}",
            b.name
        );
        // The second identity replaces the first (an upsert: one row);
        // setting the same one again is fine too.
        for run_id in ["run-1", "run-2", "run-2"] {
            b.store.set_cache_server_identity(run_id).await.unwrap();
            assert_eq!(
                b.store.cache_server_identity().await.unwrap().as_deref(),
                Some(run_id),
                "{}",
                b.name
            );
        }
    }
}

#[tokio::test]
async fn the_identity_is_shared_by_stores_on_one_database() {
    let dir = tempfile::tempdir().unwrap();
    let url = dir.path().join("shared.db");
    let url = url.to_str().unwrap();
    let one = spywatcher_analytics::EventStore::connect(url)
        .await
        .unwrap();
    let two = spywatcher_analytics::EventStore::connect(url)
        .await
        .unwrap();
    one.set_cache_server_identity("run-1").await.unwrap();
    assert_eq!(
        two.cache_server_identity().await.unwrap().as_deref(),
        Some("run-1")
    );
}

/// Applies the migrations up to `version` only.
async fn migrate_to<'c, A>(dir: &str, version: i64, conn: A)
where
    A: sqlx::Acquire<'c>,
    <A::Connection as std::ops::Deref>::Target: sqlx::migrate::Migrate,
{
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("migrations")
        .join(dir);
    let mut migrator = sqlx::migrate::Migrator::new(path).await.unwrap();
    migrator.migrations = migrator
        .migrations
        .iter()
        .filter(|m| m.version <= version)
        .cloned()
        .collect();
    migrator.run(conn).await.unwrap();
}

#[tokio::test]
async fn journal_rows_from_before_the_retention_migration_are_pending() {
    const ROW: &str = "INSERT INTO cache_invalidation_journal (tags, created_at) \
                       VALUES ('[\"guild:100\"]', 1234)";
    // SQLite.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.db");
    {
        let opts = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true);
        let pool = sqlx::SqlitePool::connect_with(opts).await.unwrap();
        migrate_to("sqlite", 2, &pool).await;
        sqlx::query(ROW).execute(&pool).await.unwrap();
        pool.close().await;
    }
    let sqlite = spywatcher_analytics::EventStore::connect(path.to_str().unwrap())
        .await
        .unwrap();
    // PostgreSQL.
    let db = spywatcher_testkit::postgres::TestDatabase::create()
        .await
        .unwrap();
    {
        let pool = sqlx::PgPool::connect(db.url()).await.unwrap();
        migrate_to("postgres", 2, &pool).await;
        sqlx::query(ROW).execute(&pool).await.unwrap();
        pool.close().await;
    }
    let postgres = spywatcher_analytics::EventStore::connect(db.url())
        .await
        .unwrap();

    for (name, store) in [("sqlite", sqlite), ("postgres", postgres)] {
        let pending = store.pending_invalidations().await.unwrap();
        assert_eq!(
            pending,
            vec![JournalEntry {
                id: 1,
                tags: vec!["guild:100".to_owned()],
                recorded_at_ms: 1234,
                applied: false,
            }],
            "{name}"
        );
        assert_eq!(store.cache_server_identity().await.unwrap(), None, "{name}");
    }
}

#[tokio::test]
async fn a_store_reopens_a_sqlite_file_and_answers_ping() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.db");
    let url = path.to_str().unwrap();
    {
        let store = spywatcher_analytics::EventStore::connect(url)
            .await
            .unwrap();
        assert_eq!(store.backend_name(), "sqlite");
        store
            .ingest(&[typing(GUILD, "1", "ann", "10", days_ago(1))])
            .await
            .unwrap();
    }
    let store = spywatcher_analytics::EventStore::connect(&format!("sqlite://{url}?mode=rwc"))
        .await
        .unwrap();
    store.ping().await.unwrap();
    store.migrate().await.unwrap();
    assert_eq!(store.event_count().await.unwrap(), 1);
    assert_eq!(postgres().await.store.backend_name(), "postgres");
    // A sqlite:// URL creates its file too; an explicit read-only mode does not.
    let fresh = dir.path().join("fresh.db");
    spywatcher_analytics::EventStore::connect(&format!("sqlite://{}", fresh.display()))
        .await
        .unwrap();
    assert!(fresh.exists());
    let missing = dir.path().join("missing.db");
    let read_only = format!("sqlite://{}?mode=ro", missing.display());
    assert!(
        spywatcher_analytics::EventStore::connect(&read_only)
            .await
            .is_err()
    );
}

#[tokio::test]
async fn an_unknown_url_scheme_is_refused() {
    let err = spywatcher_analytics::EventStore::connect("mysql://localhost/db")
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::UnsupportedUrl(_)), "{err}");
}

#[tokio::test]
async fn concurrent_batches_on_a_sqlite_file_all_commit() {
    // Writers queue on SQLite's single write lock (busy timeout) instead of
    // failing with "database is locked".
    let dir = tempfile::tempdir().unwrap();
    let store =
        spywatcher_analytics::EventStore::connect(dir.path().join("c.db").to_str().unwrap())
            .await
            .unwrap();
    let tasks: Vec<_> = (0..8)
        .map(|w| {
            let store = store.clone();
            tokio::spawn(async move {
                let batch: Vec<_> = (0..500)
                    .map(|i| typing(GUILD, &(w * 1000 + i).to_string(), "u", "10", days_ago(1)))
                    .collect();
                for _ in 0..3 {
                    store.ingest(&batch).await.unwrap();
                    store
                        .analytics(
                            spywatcher_analytics::AnalyticsKind::Ghosts,
                            &guild(GUILD),
                            None,
                            now(),
                        )
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(store.event_count().await.unwrap(), 8 * 500 * 3);
}

#[tokio::test]
async fn a_caller_that_gives_up_does_not_cut_a_batch_in_half() {
    for b in [sqlite().await, postgres().await] {
        let batch: Vec<_> = (0..20_000)
            .map(|i| typing(GUILD, &(i % 50).to_string(), "u", "10", days_ago(1)))
            .collect();
        let gave_up =
            tokio::time::timeout(std::time::Duration::from_millis(1), b.store.ingest(&batch)).await;
        assert!(
            gave_up.is_err(),
            "{}: the batch should outlast 1 ms",
            b.name
        );
        // The batch commits whole in the background; the pool stays usable.
        let mut count = 0;
        for _ in 0..200 {
            count = b.store.event_count().await.unwrap();
            if count == 20_000 {
                break;
            }
            assert_eq!(count, 0, "{}: a partial batch is visible", b.name);
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        assert_eq!(count, 20_000, "{}", b.name);
        assert_eq!(
            b.store.ingest(&batch[..10]).await.unwrap(),
            10,
            "{}",
            b.name
        );
    }
}

/// A bulk load (the generator into an empty store) drops the covering
/// index and builds it again: the rebuilt index must be the migration's,
/// and a store that already holds events keeps its index throughout.
#[tokio::test]
async fn a_bulk_load_rebuilds_the_migrations_covering_index() {
    let normalized = |sql: Option<String>| {
        sql.expect("the covering index exists")
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };
    let config = spywatcher_analytics::GeneratorConfig {
        guilds: 2,
        users: 30,
        events: 3_000,
        ..Default::default()
    };
    for b in [sqlite().await, postgres().await] {
        let migrated = normalized(b.store.covering_index_definition().await.unwrap());
        spywatcher_analytics::generate_into(&b.store, &config, |_, _| {})
            .await
            .unwrap();
        let rebuilt = normalized(b.store.covering_index_definition().await.unwrap());
        assert_eq!(rebuilt, migrated, "{}", b.name);

        assert!(
            !b.store.begin_bulk_load().await.unwrap(),
            "{}: not empty",
            b.name
        );
        assert!(
            b.store.covering_index_definition().await.unwrap().is_some(),
            "{}: a store with events keeps its index",
            b.name
        );

        // A load cut short (index dropped, never finished) is healed by
        // the next migrate, which every connect runs.
        let empty = if b.name == "sqlite" {
            sqlite().await
        } else {
            postgres().await
        };
        assert!(empty.store.begin_bulk_load().await.unwrap());
        assert!(
            empty
                .store
                .covering_index_definition()
                .await
                .unwrap()
                .is_none()
        );
        empty.store.migrate().await.unwrap();
        assert_eq!(
            normalized(empty.store.covering_index_definition().await.unwrap()),
            migrated,
            "{}",
            b.name
        );
    }
}
