//! Ingestion: all-or-nothing batches and the invalidation journal, on both
//! databases.

mod common;

use common::*;
use serde_json::json;
use spywatcher_analytics::{EventKind, StoreError, parse_events_at};

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
    let err = parse_events_at(EventKind::Presence, body, now()).unwrap_err();
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
        let (stored, first) = b
            .store
            .ingest_with_journal(&[typing(GUILD, "1", "ann", "10", days_ago(1))], &tags)
            .await
            .unwrap();
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

        let pending = b.store.pending_invalidations().await.unwrap();
        let ids: Vec<i64> = pending.iter().map(|e| e.id).collect();
        assert_eq!(ids, vec![first, second], "{}", b.name);
        assert_eq!(pending[0].tags, tags);
        assert_eq!(
            b.store.remove_invalidations(&[first, 12345]).await.unwrap(),
            1
        );
        assert_eq!(b.store.pending_invalidations().await.unwrap().len(), 1);
        assert_eq!(b.store.remove_invalidations(&[second]).await.unwrap(), 1);
        assert!(b.store.pending_invalidations().await.unwrap().is_empty());
        // Ids are never reused: a later entry gets a larger id.
        let (_, third) = b
            .store
            .ingest_with_journal(&[role_change(GUILD, "1", "ann", days_ago(1))], &tags)
            .await
            .unwrap();
        assert!(third.unwrap() > second, "{}", b.name);
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
