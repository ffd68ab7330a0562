//! What counting a read per guild (for `CACHE_WARM_ON_START`) adds to the
//! cached hit path: `ReadCounts::count` alone, beside the whole service
//! hit (`Spywatcher::analytics` served from the embedded cache, which
//! counts), measured in one run.
//!
//! `cargo bench -p spywatcher --bench read_counts -- --noplot` (criterion's
//! plots need fonts this machine lacks).
//!
//! - `count_known_guild`: a guild already in the map (every read but the
//!   first of a flush interval), 1,000 guilds in turn;
//! - `count_known_guild_two_threads`: the same while another thread counts
//!   other guilds as fast as it can (lock contention on a shard);
//! - `service_hit`: `Spywatcher::analytics` hit, counting included.

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use criterion::{Criterion, criterion_group, criterion_main};
use spywatcher::service::read_counts::ReadCounts;
use spywatcher::service::{CachePolicy, Spywatcher};
use spywatcher_analytics::{AnalyticsKind, EventStore, GuildId};
use spywatcher_cache::{Cache, CacheConfig};

const GUILDS: usize = 1_000;

fn bench(c: &mut Criterion) {
    let guilds: Vec<GuildId> = (0..GUILDS)
        .map(|i| GuildId::parse((100_000_000_000_000_000u64 + i as u64).to_string()).unwrap())
        .collect();
    let counts = Arc::new(ReadCounts::new());
    for guild in &guilds {
        counts.count(guild);
    }
    let mut group = c.benchmark_group("read_counts");
    let mut i = 0;
    group.bench_function("count_known_guild", |b| {
        b.iter(|| {
            i = (i + 1) % GUILDS;
            counts.count(black_box(&guilds[i]));
        })
    });
    let stop = Arc::new(AtomicBool::new(false));
    let other = {
        let (counts, guilds, stop) = (counts.clone(), guilds.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut j = GUILDS / 2;
            while !stop.load(Ordering::Relaxed) {
                j = (j + 1) % GUILDS;
                counts.count(&guilds[j]);
            }
        })
    };
    group.bench_function("count_known_guild_two_threads", |b| {
        b.iter(|| {
            i = (i + 1) % GUILDS;
            counts.count(black_box(&guilds[i]));
        })
    });
    stop.store(true, Ordering::Relaxed);
    other.join().unwrap();

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let service = runtime.block_on(async {
        let store = EventStore::connect("sqlite::memory:").await.expect("store");
        let cache = Cache::new(CacheConfig::embedded()).expect("cache");
        let policy = CachePolicy {
            caching: true,
            ..CachePolicy::default()
        };
        let service = Spywatcher::new(store, cache, policy);
        for guild in &guilds {
            service
                .analytics(AnalyticsKind::Roles, guild, None)
                .await
                .expect("loaded");
        }
        service
    });
    group.bench_function("service_hit", |b| {
        b.to_async(&runtime).iter(|| {
            i = (i + 1) % GUILDS;
            let (service, guild) = (&service, &guilds[i]);
            async move {
                black_box(
                    service
                        .analytics(AnalyticsKind::Roles, guild, None)
                        .await
                        .expect("hit"),
                )
            }
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
