//! The workload benchmark (crates/bench) end to end at tiny settings,
//! against this crate's real `spywatcher` binary: it seeds, starts
//! servers, drives reads and events, and writes a report whose figures
//! make sense. Here rather than in crates/bench because only this crate's
//! tests know where cargo put the server binary.

use clap::Parser;
use serde_json::Value;
use spywatcher_bench::Args;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_benchmark_runs_end_to_end_and_reports_sane_figures() {
    let out = tempfile::tempdir().unwrap();
    let args = Args::try_parse_from([
        "spywatcher-bench",
        "--server",
        env!("CARGO_BIN_EXE_spywatcher"),
        "--databases",
        "sqlite",
        "--caches",
        "off,embedded",
        "--guilds",
        "2",
        "--users",
        "50",
        "--events",
        "2000",
        "--warmup",
        "1",
        "--duration",
        "2",
        "--concurrency",
        "4",
        "--base-rate",
        "1",
        "--busy-rate",
        "2",
        "--out",
        out.path().to_str().unwrap(),
    ])
    .unwrap();
    // Pass or fail on the floors (a tiny data set does not make the cache
    // ten times faster), the run itself must complete.
    spywatcher_bench::run(args).await.unwrap();

    let report = std::fs::read_to_string(out.path().join("report.md")).unwrap();
    assert!(report.contains("## Floors at 1 events/s"), "{report}");
    assert!(report.contains("| sqlite | embedded |"), "{report}");
    assert!(
        report.contains("## Strict and grace at 2 events/s"),
        "{report}"
    );

    let results: Value =
        serde_json::from_str(&std::fs::read_to_string(out.path().join("results.json")).unwrap())
            .unwrap();
    let scenarios = results["scenarios"].as_array().unwrap();
    // off and embedded at 1/s; off, embedded strict and grace at 2/s.
    assert_eq!(scenarios.len(), 5, "{results:#}");
    let events: u64 = scenarios
        .iter()
        .map(|s| s["events_posted"].as_u64().unwrap())
        .sum();
    assert!(events > 0, "the event stream posted nothing");
    for s in scenarios {
        let name = &s["scenario"];
        let reads = s["reads"].as_u64().unwrap();
        assert!(reads > 0, "{name}: no reads");
        assert_eq!(s["failures"], 0, "{name}: failed requests");
        assert!(s["p50_ms"].as_f64().unwrap() > 0.0, "{name}");
        assert!(s["p50_ms"].as_f64() <= s["p99_ms"].as_f64(), "{name}");
        let per_read = s["db_analytics_queries"].as_f64().unwrap() / reads as f64;
        match name["cache"].as_str().unwrap() {
            "off" => {
                assert_eq!(s["hit_rate"], 0.0, "{name}");
                // One analytics query per read, give or take the reads in
                // flight at the window's edges.
                assert!((0.5..1.5).contains(&per_read), "{name}: {per_read}");
            }
            _ => {
                // How many hits depends on how fast the machine reads
                // between invalidations; that there are hits, and fewer
                // queries than reads, does not.
                assert!(s["hit_rate"].as_f64().unwrap() > 0.0, "{name}");
                assert!(s["stats_hit_rate"].as_f64().unwrap() > 0.0, "{name}");
                assert!(per_read < 0.9, "{name}: {per_read}");
            }
        }
    }
}
