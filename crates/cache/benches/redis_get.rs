//! `get` hit through Redis against a raw `GET` on the same kind of connection
//! (figure 1 of BENCHMARKS.md "Cache layer", one caller: latency). The
//! 50-caller throughput comparison is in `examples/load.rs`.
//!
//! `cargo bench -p spywatcher-cache --bench redis_get` (starts its own
//! private redis-server).

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use redis::AsyncCommands;

use spywatcher_cache::{Cache, CacheConfig, SetOptions};
use spywatcher_testkit::redis::RedisServer;

const KEYS: usize = 1_000;

fn bench(c: &mut Criterion) {
    let server = RedisServer::start();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let value = "x".repeat(1_022); // 1,024 bytes of JSON with its quotes
    let keys: Vec<String> = (0..KEYS)
        .map(|i| format!("analytics:ghosts:1:{i}"))
        .collect();
    let raw_keys: Vec<String> = (0..KEYS).map(|i| format!("raw:{i}")).collect();
    let (cache, raw) = runtime.block_on(async {
        // No L1 tier: every read goes to Redis.
        let config = CacheConfig {
            l1_max_bytes: 0,
            ..CacheConfig::redis(server.url())
        };
        let cache = Cache::new(config).expect("cache");
        let client = redis::Client::open(server.url()).expect("url");
        let config = spywatcher_cache::redis_connection_config(Duration::from_millis(500));
        let mut raw = client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .expect("raw connection");
        for (key, raw_key) in keys.iter().zip(&raw_keys) {
            let options =
                SetOptions::ttl(Duration::from_secs(3600)).tags(["guild:1", "analytics:ghosts"]);
            assert!(cache.set(key, &value, options).await);
            let json = serde_json::to_vec(&value).expect("json");
            let _: () = raw.set(raw_key, json).await.expect("SET");
        }
        (cache, raw)
    });

    let mut group = c.benchmark_group("redis_get_1k");
    let mut i = 0;
    group.bench_function("cache_get_json", |b| {
        b.to_async(&runtime).iter(|| {
            i = (i + 1) % KEYS;
            let (cache, key) = (&cache, &keys[i]);
            async move { black_box(cache.get_json(key).await.expect("hit")) }
        })
    });
    group.bench_function("raw_get", |b| {
        b.to_async(&runtime).iter(|| {
            i = (i + 1) % KEYS;
            let (mut raw, key) = (raw.clone(), &raw_keys[i]);
            async move {
                let v: Option<Vec<u8>> = raw.get(key).await.expect("GET");
                black_box(v.expect("hit"))
            }
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    targets = bench
}
criterion_main!(benches);
