//! Reads per guild: every analytics read counts one for its guild, in
//! memory, and a background task adds the counts to the database
//! (`guild_read_counts`, per hour) at an interval and once more at a
//! graceful shutdown. Warming on start ([`super::warm_on_start`]) ranks
//! guilds by them, so a restarted instance knows which guilds are busy.
//!
//! Memory is fixed: at most [`CAPACITY`] guilds are counted between two
//! flushes. A guild first read once the map is full is not counted until
//! the next flush (`spywatcher_read_counts_dropped_total` says how many
//! reads that lost): the busy guilds are the ones already in the map, read
//! again and again, so what is lost is the tail a ranking of the busiest
//! does not need.
//!
//! A read takes one short lock on one of [`SHARDS`] maps chosen by the
//! guild, so readers of different guilds rarely meet; it allocates only
//! the first time a guild is read in a flush interval.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use chrono::Utc;
use spywatcher_analytics::{EventStore, GuildId};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tracing::{debug, warn};

/// Guilds counted between two flushes, at most.
pub const CAPACITY: usize = 16_384;

/// Separate maps, so that concurrent reads of different guilds take
/// different locks.
const SHARDS: usize = 16;

/// How long counts are kept in the database: warming ranks the last day,
/// one more day is slack for an instance whose clock runs behind.
pub const RETENTION: Duration = Duration::from_secs(2 * 24 * 3600);

/// How often the database is purged of counts older than [`RETENTION`].
const PURGE_EVERY: Duration = Duration::from_secs(3600);

/// Reads per guild since the last flush.
pub struct ReadCounts {
    shards: [Mutex<HashMap<GuildId, u64>>; SHARDS],
    dropped: metrics::Counter,
}

impl Default for ReadCounts {
    fn default() -> Self {
        Self::new()
    }
}

impl ReadCounts {
    pub fn new() -> Self {
        ReadCounts {
            shards: std::array::from_fn(|_| Mutex::new(HashMap::new())),
            dropped: metrics::counter!("spywatcher_read_counts_dropped_total"),
        }
    }

    /// Counts one read of `guild`.
    pub fn count(&self, guild: &GuildId) {
        let mut shard = self.shard(guild);
        if let Some(reads) = shard.get_mut(guild) {
            *reads += 1;
        } else if shard.len() < CAPACITY / SHARDS {
            shard.insert(guild.clone(), 1);
        } else {
            drop(shard);
            self.dropped.increment(1);
        }
    }

    /// The counts so far, each guild once; the map starts again empty.
    pub fn take(&self) -> Vec<(GuildId, u64)> {
        self.shards
            .iter()
            .flat_map(|shard| std::mem::take(&mut *shard.lock().unwrap_or_else(|e| e.into_inner())))
            .collect()
    }

    fn shard(&self, guild: &GuildId) -> std::sync::MutexGuard<'_, HashMap<GuildId, u64>> {
        let index = xxhash_rust::xxh3::xxh3_64(guild.as_str().as_bytes()) as usize % SHARDS;
        self.shards[index].lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Adds the counts so far to the database. On a database error they are
/// lost (and logged): counts rank guilds for warming, a few seconds of
/// them missing only blurs the ranking.
pub async fn flush(counts: &ReadCounts, store: &EventStore) {
    let taken = counts.take();
    if taken.is_empty() {
        return;
    }
    let reads: u64 = taken.iter().map(|(_, n)| n).sum();
    match store
        .record_guild_reads(Utc::now().timestamp_millis(), &taken)
        .await
    {
        Ok(()) => debug!(
            guilds = taken.len(),
            reads, "read counts added to the database"
        ),
        Err(e) => warn!(
            error = %e,
            guilds = taken.len(),
            reads,
            "read counts could not be added to the database; they are lost"
        ),
    }
}

async fn purge(store: &EventStore) {
    let before = Utc::now().timestamp_millis() - RETENTION.as_millis() as i64;
    match store.purge_guild_reads(before).await {
        Ok(0) => {}
        Ok(rows) => debug!(rows, "old read counts purged"),
        Err(e) => warn!(error = %e, "old read counts could not be purged"),
    }
}

/// The background task that flushes the counts.
pub struct Flusher {
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl Flusher {
    /// Flushes `counts` into `store` every `interval`, and purges old
    /// counts now and then.
    pub fn start(
        counts: std::sync::Arc<ReadCounts>,
        store: EventStore,
        interval: Duration,
    ) -> Self {
        let (stop, mut stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let mut next_purge = tokio::time::Instant::now();
            loop {
                if tokio::time::Instant::now() >= next_purge {
                    next_purge += PURGE_EVERY;
                    purge(&store).await;
                }
                tokio::select! {
                    _ = tokio::time::sleep(interval) => flush(&counts, &store).await,
                    _ = &mut stopped => {
                        flush(&counts, &store).await;
                        return;
                    }
                }
            }
        });
        Flusher {
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Flushes once more and ends the task: at a graceful shutdown, after
    /// the last request, so that a restart knows the last seconds' reads.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Flusher {
    /// A flusher dropped without [`stop`](Flusher::stop) (an instance that
    /// is killed rather than shut down) ends with no last flush.
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guild(id: u64) -> GuildId {
        GuildId::parse(id.to_string()).unwrap()
    }

    #[test]
    fn reads_are_counted_per_guild_and_taken_once() {
        let counts = ReadCounts::new();
        for _ in 0..3 {
            counts.count(&guild(1));
        }
        counts.count(&guild(2));
        let mut taken = counts.take();
        taken.sort();
        assert_eq!(taken, [(guild(1), 3), (guild(2), 1)]);
        assert!(counts.take().is_empty(), "taken counts start again at zero");
    }

    #[test]
    fn a_full_map_keeps_counting_the_guilds_it_holds_and_drops_new_ones() {
        let counts = ReadCounts::new();
        let guilds = (1..=CAPACITY as u64 * 2).map(guild);
        for g in guilds.clone() {
            counts.count(&g);
        }
        // Guilds in the map are still counted once it is full.
        let held: Vec<GuildId> = counts.take().into_iter().map(|(g, _)| g).collect();
        assert!(held.len() <= CAPACITY, "{} guilds held", held.len());
        assert!(held.len() > CAPACITY / 2, "{} guilds held", held.len());
        for g in guilds {
            counts.count(&g);
        }
        for g in &held {
            counts.count(g);
        }
        // The same guilds fill the map again (the order is the same), and
        // only they are counted a second time.
        let taken = counts.take();
        assert_eq!(taken.len(), held.len());
        assert!(taken.iter().all(|(_, n)| *n == 2), "{taken:?}");
    }
}
