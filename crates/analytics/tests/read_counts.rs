//! Reads per guild and hour, on both databases: recorded counts add up,
//! the busiest guilds are ranked over a window, old hours are purged.

mod common;

use common::{guild, postgres, sqlite};
use spywatcher_analytics::GuildId;
use spywatcher_analytics::store::{READ_COUNT_PERIOD_MS, read_count_hour};

const HOUR: i64 = READ_COUNT_PERIOD_MS;

/// A fixed instant in the middle of an hour (497,222 hours after the epoch).
const NOW: i64 = 1_789_999_200_000 + HOUR / 2;

fn counts(pairs: &[(&str, u64)]) -> Vec<(GuildId, u64)> {
    pairs.iter().map(|&(g, n)| (guild(g), n)).collect()
}

#[tokio::test]
async fn recorded_reads_add_up_per_guild_and_rank_the_busiest() {
    for b in [sqlite().await, postgres().await] {
        let store = &b.store;
        // Two flushes in one hour add up; an earlier hour counts too.
        store
            .record_guild_reads(NOW, &counts(&[("1", 5), ("2", 3), ("3", 1)]))
            .await
            .unwrap();
        store
            .record_guild_reads(NOW + 1_000, &counts(&[("2", 4), ("3", 1)]))
            .await
            .unwrap();
        store
            .record_guild_reads(NOW - 2 * HOUR, &counts(&[("3", 10)]))
            .await
            .unwrap();
        assert_eq!(
            store.busiest_guilds(NOW - 24 * HOUR, 10).await.unwrap(),
            counts(&[("3", 12), ("2", 7), ("1", 5)]),
            "{}",
            b.name
        );
        // Only the hours from the one containing `since` on.
        assert_eq!(
            store.busiest_guilds(NOW - HOUR / 4, 10).await.unwrap(),
            counts(&[("2", 7), ("1", 5), ("3", 2)]),
            "{}",
            b.name
        );
        // The limit keeps the busiest; ties break by guild id.
        store
            .record_guild_reads(NOW, &counts(&[("1", 2)]))
            .await
            .unwrap();
        assert_eq!(
            store.busiest_guilds(NOW - HOUR / 4, 2).await.unwrap(),
            counts(&[("1", 7), ("2", 7)]),
            "{}",
            b.name
        );
        assert!(
            store
                .busiest_guilds(NOW + HOUR, 10)
                .await
                .unwrap()
                .is_empty(),
            "{}",
            b.name
        );
    }
}

#[tokio::test]
async fn a_large_flush_is_recorded_whole() {
    for b in [sqlite().await, postgres().await] {
        // More guilds than one statement takes.
        let many: Vec<(GuildId, u64)> = (1..=12_000u64)
            .map(|i| (guild(&i.to_string()), i))
            .collect();
        b.store.record_guild_reads(NOW, &many).await.unwrap();
        let top = b.store.busiest_guilds(NOW, 3).await.unwrap();
        assert_eq!(
            top,
            counts(&[("12000", 12_000), ("11999", 11_999), ("11998", 11_998)]),
            "{}",
            b.name
        );
        // A count beyond the column's range is kept at its largest value.
        b.store
            .record_guild_reads(NOW + HOUR, &counts(&[("7", u64::MAX)]))
            .await
            .unwrap();
        assert_eq!(
            b.store.busiest_guilds(NOW + HOUR, 1).await.unwrap(),
            counts(&[("7", i64::MAX as u64)]),
            "{}",
            b.name
        );
    }
}

#[tokio::test]
async fn purge_drops_only_hours_that_ended_before_the_cutoff() {
    for b in [sqlite().await, postgres().await] {
        let store = &b.store;
        for hours_ago in [0, 1, 47, 48, 49] {
            store
                .record_guild_reads(
                    NOW - hours_ago * HOUR,
                    &counts(&[(&hours_ago.to_string(), 1)]),
                )
                .await
                .unwrap();
        }
        // Two days before now lies inside the hour 48 hours ago, which has
        // not ended by then: only the hour 49 hours ago goes.
        assert_eq!(
            store.purge_guild_reads(NOW - 48 * HOUR).await.unwrap(),
            1,
            "{}",
            b.name
        );
        let left: Vec<String> = store
            .busiest_guilds(i64::MIN / 2, 10)
            .await
            .unwrap()
            .into_iter()
            .map(|(g, _)| g.as_str().to_owned())
            .collect();
        assert_eq!(left, ["0", "1", "47", "48"], "{}", b.name);
        assert_eq!(
            store.purge_guild_reads(NOW - 48 * HOUR).await.unwrap(),
            0,
            "{}",
            b.name
        );
        assert_eq!(read_count_hour(NOW) + HOUR / 2, NOW);
    }
}
