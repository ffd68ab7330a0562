//! The embedded cache's byte bound, seen from the admin statistics: a
//! client asking for many distinct `since` values fills it, entries are
//! evicted and counted, and `memoryUsed` stays within the bound.

use reqwest::Method;

use crate::helpers::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn distinct_since_values_saturate_the_embedded_store_within_its_bound() {
    const BOUND: u64 = 256 * 1024;
    let env = TestEnv::new(Db::Sqlite, false).await;
    let mut settings = env.settings();
    settings.cache_memory_bytes = BOUND;
    let app = env.spawn_with(settings).await;
    // Tiny values (`[]`) under distinct keys: the entries whose bookkeeping
    // outweighs their content. Counted by key and value alone, 256 KiB
    // would hold them all.
    let writes = 800;
    for i in 0..writes {
        let since = (1_700_000_000_000_i64 + i).to_string();
        let response = app
            .request(Method::GET, "/api/analytics/ghosts", Some(API))
            .query(&[("guildId", "1"), ("since", since.as_str())])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 200);
    }
    let stats = &cache_stats(&app).await["stats"];
    let evicted = stats["evictedKeys"].as_u64().unwrap();
    let held = stats["keyCount"].as_u64().unwrap();
    assert!(evicted > 0, "{stats}");
    assert_eq!(
        evicted + held,
        writes as u64,
        "every entry is held or counted: {stats}"
    );
    let used = stats["memoryUsed"].as_str().unwrap();
    let kib: f64 = used.strip_suffix('K').expect("in KiB").parse().unwrap();
    assert!(kib <= 256.0, "memoryUsed {used} over the bound");
}
