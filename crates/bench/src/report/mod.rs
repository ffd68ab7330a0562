//! The results of a run and what they mean.
//!
//! * `results.rs`: one scenario's figures ([`ScenarioResult`]) and the run's
//!   ([`RunResults`], written raw as `results.json`).
//! * `floors.rs`: the cache against `off` at the base rate, each figure
//!   with its floor (issue 11) and the reference design's promise.
//! * `markdown.rs`: `report.md`.

mod floors;
mod markdown;
mod results;

pub use floors::{FLOORS, Floor, FloorCheck, FloorRow, floor_rows};
pub use markdown::{SweepPoint, render, sweep_points};
pub use results::{RunResults, ScenarioResult, ratio_or_none};
