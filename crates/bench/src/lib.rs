//! The workload benchmark of spywatcher (issue 11): the same mixed workload
//! against the service with its cache off and on, on SQLite and
//! PostgreSQL, with the embedded cache and Redis, strict invalidation and
//! grace mode; one report with the floors the cache must clear.
//!
//! # Layout
//!
//! * [`cli`]: every knob (`spywatcher-bench --help`), parsed and checked.
//! * [`plan`]: the scenario matrix the knobs make, and its time estimate.
//! * [`seed`]: one database per backend (a SQLite file in a temporary
//!   directory, a fresh PostgreSQL database), filled once through the
//!   analytics crate's generator behind a progress bar.
//! * [`server`]: `spywatcher serve` child processes on free ports with a
//!   scenario's environment, and the private `redis-server` they share.
//! * [`workload`]: the load driver. Closed-loop readers (Zipf over guilds,
//!   uniform over the six analytics and three `since` values) and an
//!   open-loop stream of events, one HTTP client with keep-alive; per-read
//!   latency in an HDR histogram and per-second series.
//! * [`scrape`]: what the servers say about themselves: `/metrics`
//!   (Prometheus text), the cache stats route, Redis `INFO`.
//! * [`report`]: the results of a run (`results.json`), the ratios and
//!   floors, `report.md`.
//! * [`charts`]: the PNG charts (plotters, bitmap backend, text through
//!   ab_glyph with a font file read at run time).
//! * [`run`]: the whole benchmark, from the knobs to the files.

pub mod charts;
pub mod cli;
pub mod plan;
pub mod report;
pub mod run;
pub mod scrape;
pub mod seed;
pub mod server;
pub mod workload;

pub use cli::Args;
pub use run::run;
