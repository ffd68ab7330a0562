//! Large values (a busy guild's heatmap): the value is most of an entry's cost.

mod memory;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_entries_keep_resident_memory_within_the_bound() {
    let saturated = memory::saturate(4_000, |i| {
        let guild = 100_000_000_000_000_000u64.wrapping_add(i as u64);
        // About 30 KB of JSON, different for every entry.
        let rows: Vec<String> = (0..1_000).map(|r| format!("{guild}-{r:09}")).collect();
        (
            format!("analytics:heatmap:{guild}:all"),
            serde_json::json!(rows),
            vec![
                format!("guild:{guild}"),
                "analytics:heatmap".to_string(),
                format!("analytics:heatmap:{guild}"),
            ],
        )
    })
    .await;
    memory::assert_within_bound(&saturated);
}
