//! The worst case for a byte bound: many distinct keys with tiny values,
//! each under tags of its own (an attacker asking for distinct guilds, or
//! distinct `since` values), where bookkeeping is most of an entry's cost.

mod memory;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tiny_entries_keep_resident_memory_within_the_bound() {
    let saturated = memory::saturate(150_000, |i| {
        let guild = 100_000_000_000_000_000u64.wrapping_add(i as u64);
        (
            format!("analytics:ghosts:{guild}:1700000000000"),
            serde_json::json!([]),
            vec![
                format!("guild:{guild}"),
                "analytics:ghosts".to_string(),
                format!("analytics:ghosts:{guild}"),
            ],
        )
    })
    .await;
    memory::assert_within_bound(&saturated);
}
