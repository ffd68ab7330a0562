//! In-process `get` hit against a bare `moka::future::Cache` get of the same
//! value (figure 2 of BENCHMARKS.md "Cache layer", single task): what the
//! embedded store adds on top of moka per read.
//!
//! `cargo bench -p spywatcher-cache --bench embedded_get`
//!
//! - `get_json`: `Cache::get_json` (bytes) vs moka `get` of `Bytes`;
//! - `get_typed`: `Cache::get::<Vec<Row>>` vs moka `get` + the same
//!   `serde_json::from_slice::<Vec<Row>>`;
//! - `moka_like_ours`: a moka cache built like the embedded store's (byte
//!   weigher, per-entry expiry, `Arc` values), to tell moka's own cost of
//!   those features from ours.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use spywatcher_cache::{Cache, CacheConfig, SetOptions};

const KEYS: usize = 1_000;

#[path = "support/value.rs"]
mod value;

use value::{Row, value_1k as rows};

struct PerEntryTtl;

impl moka::Expiry<String, Arc<(Bytes, Duration)>> for PerEntryTtl {
    fn expire_after_create(
        &self,
        _key: &String,
        value: &Arc<(Bytes, Duration)>,
        _now: Instant,
    ) -> Option<Duration> {
        Some(value.1)
    }
}

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let value = rows();
    let json = Bytes::from(serde_json::to_vec(&value).expect("json"));
    let keys: Vec<String> = (0..KEYS)
        .map(|i| format!("analytics:ghosts:1:{i}"))
        .collect();
    let (cache, moka, moka_like) = runtime.block_on(async {
        let cache = Cache::new(CacheConfig::embedded()).expect("embedded cache");
        let moka: moka::future::Cache<String, Bytes> = moka::future::Cache::new(100_000);
        let moka_like: moka::future::Cache<String, Arc<(Bytes, Duration)>> =
            moka::future::Cache::builder()
                .max_capacity(64 * 1024 * 1024)
                .weigher(|k: &String, v: &Arc<(Bytes, Duration)>| (k.len() + v.0.len()) as u32)
                .expire_after(PerEntryTtl)
                .build();
        for key in &keys {
            let options =
                SetOptions::ttl(Duration::from_secs(3600)).tags(["guild:1", "analytics:ghosts"]);
            assert!(cache.set(key, &value, options).await);
            moka.insert(key.clone(), json.clone()).await;
            moka_like
                .insert(
                    key.clone(),
                    Arc::new((json.clone(), Duration::from_secs(3600))),
                )
                .await;
        }
        (cache, moka, moka_like)
    });

    let mut group = c.benchmark_group("get_json");
    let mut i = 0;
    group.bench_function("cache_get_json", |b| {
        b.to_async(&runtime).iter(|| {
            i = (i + 1) % KEYS;
            let (cache, key) = (&cache, &keys[i]);
            async move { black_box(cache.get_json(key).await.expect("hit")) }
        })
    });
    group.bench_function("moka_get_bytes", |b| {
        b.to_async(&runtime).iter(|| {
            i = (i + 1) % KEYS;
            let (moka, key) = (&moka, &keys[i]);
            async move { black_box(moka.get(key).await.expect("hit")) }
        })
    });
    group.bench_function("moka_like_ours_get", |b| {
        b.to_async(&runtime).iter(|| {
            i = (i + 1) % KEYS;
            let (moka, key) = (&moka_like, &keys[i]);
            async move { black_box(moka.get(key).await.expect("hit").0.clone()) }
        })
    });
    group.finish();

    let mut group = c.benchmark_group("get_typed");
    group.bench_function("cache_get_rows", |b| {
        b.to_async(&runtime).iter(|| {
            i = (i + 1) % KEYS;
            let (cache, key) = (&cache, &keys[i]);
            async move { black_box(cache.get::<Vec<Row>>(key).await.expect("hit")) }
        })
    });
    group.bench_function("moka_get_then_serde", |b| {
        b.to_async(&runtime).iter(|| {
            i = (i + 1) % KEYS;
            let (moka, key) = (&moka, &keys[i]);
            async move {
                let bytes = moka.get(key).await.expect("hit");
                black_box(serde_json::from_slice::<Vec<Row>>(&bytes).expect("rows"))
            }
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = bench
}
criterion_main!(benches);
