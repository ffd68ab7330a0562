//! The embedded store's byte bound against the process's resident memory:
//! fill a store far past its bound, then compare how much the resident set
//! grew with the bound. Each case has a test binary of its own (the
//! resident set is the whole process's: a second case running in the same
//! process would reuse the first one's freed pages, or add to them), built
//! with mimalloc, the server's allocator.
#![allow(dead_code)]

use std::time::Duration;

use spywatcher_cache::{Cache, CacheConfig, SetOptions};

/// The bound the cases configure: large enough that the runtime's own
/// allocations are noise beside it.
pub const BOUND: u64 = 32 * 1024 * 1024;

/// The resident set of this process, from `/proc/self/status`.
pub fn resident_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/self/status");
    kib * 1024
}

/// `memoryUsed` ("31.99M") back in bytes.
pub fn parse_human_bytes(text: &str) -> f64 {
    let (number, unit) = text.split_at(text.len() - 1);
    let scale = match unit {
        "B" => return text.trim_end_matches('B').parse().expect("bytes"),
        "K" => 1024.0,
        "M" => 1024.0 * 1024.0,
        "G" => 1024.0 * 1024.0 * 1024.0,
        _ => panic!("unknown unit in {text:?}"),
    };
    number.parse::<f64>().expect("a number") * scale
}

/// What a saturated store showed.
pub struct Saturated {
    /// Resident set growth over the bound.
    pub ratio: f64,
    pub memory_used: f64,
    pub evicted: u64,
    pub entries: u64,
}

/// Writes `writes` entries (key, value, tags from `entry`) into an embedded
/// store bounded at [`BOUND`], and measures.
pub async fn saturate(
    writes: usize,
    entry: impl Fn(usize) -> (String, serde_json::Value, Vec<String>),
) -> Saturated {
    let cache = Cache::new(CacheConfig {
        embedded_max_bytes: BOUND,
        // Compression would shrink the large values to nothing: store them as given.
        compression_threshold: usize::MAX,
        ..CacheConfig::embedded()
    })
    .expect("embedded cache");
    let ttl = Some(Duration::from_secs(3600));
    // Everything but the entries allocated before the baseline.
    let (key, value, tags) = entry(usize::MAX);
    cache.set(&key, &value, SetOptions { ttl, tags }).await;
    cache.stats().await;
    let before = resident_bytes();
    for i in 0..writes {
        let (key, value, tags) = entry(i);
        cache.set(&key, &value, SetOptions { ttl, tags }).await;
        if i % 7 == 0 {
            // Read some back, as clients do (a hit clones the value).
            cache.get_json(&key).await;
        }
    }
    let stats = cache.stats().await;
    let after = resident_bytes();
    let saturated = Saturated {
        ratio: after.saturating_sub(before) as f64 / BOUND as f64,
        memory_used: parse_human_bytes(&stats.memory_used),
        evicted: stats.evicted_keys,
        entries: stats.key_count,
    };
    println!(
        "bound {} MiB: {} writes, {} entries held, {} evicted, memoryUsed {}, resident growth {:.1} MiB = {:.2} x the bound",
        BOUND >> 20,
        writes,
        saturated.entries,
        saturated.evicted,
        stats.memory_used,
        after.saturating_sub(before) as f64 / 1048576.0,
        saturated.ratio
    );
    saturated
}

/// The checks every case makes.
pub fn assert_within_bound(s: &Saturated) {
    assert!(
        s.evicted > 0,
        "the store was saturated: entries were evicted"
    );
    // `memoryUsed` has two decimals: allow its rounding.
    assert!(
        s.memory_used <= BOUND as f64 * 1.001,
        "memoryUsed {} over the bound {BOUND}",
        s.memory_used
    );
    // Measured 0.9-1.2 (see the case); 1.5 is the promise. The resident
    // set only grows by what the store holds (the cases allocate nothing
    // else that lives), and pages freed by evictions are reused by the next
    // writes, so the figure does not drift from run to run.
    assert!(
        s.ratio <= 1.5,
        "resident memory grew {:.2} x the bound",
        s.ratio
    );
}
