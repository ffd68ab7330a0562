//! The PNG charts of the report, drawn with plotters' bitmap backend. Text
//! goes through ab_glyph with a TrueType file read at run time (`--font`),
//! so no system font library is linked.

use std::path::Path;
use std::sync::OnceLock;

use anyhow::{Context, anyhow};
use plotters::prelude::*;
use plotters::style::{FontStyle, register_font};

use crate::report::{RunResults, ScenarioResult, SweepPoint, sweep_points};
use crate::workload::record::SecondFigures;

const SIZE: (u32, u32) = (1200, 900);
const FONT: &str = "sans-serif";
const STRICT: RGBColor = RGBColor(214, 39, 40);
const GRACE: RGBColor = RGBColor(31, 119, 180);
const GRACE_FRESH: RGBColor = RGBColor(44, 160, 44);

/// Registers the font once per process (plotters keeps it for ever, hence
/// the leak of one file's bytes).
fn register(font: &Path) -> anyhow::Result<()> {
    static REGISTERED: OnceLock<Result<(), String>> = OnceLock::new();
    REGISTERED
        .get_or_init(|| {
            let bytes = std::fs::read(font).map_err(|e| {
                format!("--font {}: {e} (install fonts-dejavu-core)", font.display())
            })?;
            let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
            register_font(FONT, FontStyle::Normal, bytes)
                .map_err(|_| format!("--font {}: not a TrueType font", font.display()))
        })
        .clone()
        .map_err(|e| anyhow!(e))
}

/// A line of a chart: its label, colour and points.
struct Line<'a> {
    label: &'a str,
    color: RGBColor,
    points: Vec<(f64, f64)>,
}

/// `over-time.png`: hit rate and p99 per second of the window, strict
/// against grace (Redis, the sweep's database, the busy rate). Returns
/// false when those runs are not in the results.
pub fn over_time(
    results: &RunResults,
    busy_rate: f64,
    font: &Path,
    path: &Path,
) -> anyhow::Result<bool> {
    let Some((database, points)) = sweep_points(results) else {
        return Ok(false);
    };
    let Some((_, strict, grace)) = points.into_iter().find(|(rate, _, _)| *rate == busy_rate)
    else {
        return Ok(false);
    };
    if strict.is_none() && grace.is_none() {
        return Ok(false);
    }
    register(font)?;
    let series = |s: Option<&ScenarioResult>, f: fn(&SecondFigures) -> f64| {
        s.map(|s| {
            s.seconds
                .iter()
                .filter(|x| x.reads > 0)
                .map(|x| (x.second as f64, f(x)))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default()
    };
    let hit_lines = [
        Line {
            label: "strict: hit",
            color: STRICT,
            points: series(strict, |x| x.hit_rate),
        },
        Line {
            label: "grace: hit + stale",
            color: GRACE,
            points: series(grace, |x| x.served_from_cache),
        },
        Line {
            label: "grace: fresh hit",
            color: GRACE_FRESH,
            points: series(grace, |x| x.hit_rate),
        },
    ];
    let p99_lines = [
        Line {
            label: "strict",
            color: STRICT,
            points: series(strict, |x| x.p99_ms),
        },
        Line {
            label: "grace",
            color: GRACE,
            points: series(grace, |x| x.p99_ms),
        },
    ];
    let title = format!(
        "{} + Redis, {busy_rate} events/s: per second of the measured window",
        database.as_str()
    );
    draw_pair(
        path,
        &title,
        "second of the window",
        &hit_lines,
        &p99_lines,
        |x| {
            if x.fract() == 0.0 {
                format!("{x:.0}")
            } else {
                format!("{x:.1}")
            }
        },
    )?;
    Ok(true)
}

/// `event-rate.png`: hit rate and p99 against the event rate (log scale),
/// strict against grace. Returns false with fewer than two rates.
pub fn event_rate(results: &RunResults, font: &Path, path: &Path) -> anyhow::Result<bool> {
    let Some((database, points)) = sweep_points(results) else {
        return Ok(false);
    };
    let points: Vec<_> = points
        .into_iter()
        .filter(|(rate, _, _)| *rate > 0.0)
        .collect();
    if points.len() < 2 {
        return Ok(false);
    }
    register(font)?;
    let series = |pick: fn(&SweepPoint<'_>) -> Option<f64>| {
        points
            .iter()
            .filter_map(|p| pick(p).map(|y| (p.0.log10(), y)))
            .collect::<Vec<_>>()
    };
    let hit_lines = [
        Line {
            label: "strict: hit",
            color: STRICT,
            points: series(|p| p.1.map(|s| s.hit_rate)),
        },
        Line {
            label: "grace: hit + stale",
            color: GRACE,
            points: series(|p| p.2.map(|s| s.served_from_cache)),
        },
        Line {
            label: "grace: fresh hit",
            color: GRACE_FRESH,
            points: series(|p| p.2.map(|s| s.hit_rate)),
        },
    ];
    let p99_lines = [
        Line {
            label: "strict",
            color: STRICT,
            points: series(|p| p.1.map(|s| s.p99_ms)),
        },
        Line {
            label: "grace",
            color: GRACE,
            points: series(|p| p.2.map(|s| s.p99_ms)),
        },
    ];
    let title = format!("{} + Redis: against the event rate", database.as_str());
    draw_pair(
        path,
        &title,
        "events/s (log scale)",
        &hit_lines,
        &p99_lines,
        |x| {
            let rate = 10f64.powf(*x);
            if rate >= 10.0 {
                format!("{rate:.0}")
            } else {
                format!("{rate:.1}")
            }
        },
    )?;
    Ok(true)
}

/// Two charts one above the other: hit rate (%) and p99 (ms) over the same x.
fn draw_pair(
    path: &Path,
    title: &str,
    x_desc: &str,
    hit_lines: &[Line<'_>],
    p99_lines: &[Line<'_>],
    x_label: impl Fn(&f64) -> String,
) -> anyhow::Result<()> {
    let all_x = hit_lines
        .iter()
        .chain(p99_lines)
        .flat_map(|l| l.points.iter().map(|p| p.0));
    let (x_min, x_max) = all_x.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), x| {
        (lo.min(x), hi.max(x))
    });
    anyhow::ensure!(
        x_min.is_finite() && x_max.is_finite(),
        "nothing to draw in {title}"
    );
    let pad = ((x_max - x_min) * 0.05).max(0.1);
    let x_range = (x_min - pad)..(x_max + pad);
    let hit_min = hit_lines
        .iter()
        .flat_map(|l| l.points.iter().map(|p| p.1))
        .fold(100.0f64, f64::min);
    // Zoom in on the top when every point is high, so 95 and 99 % differ.
    let hit_floor = if hit_min >= 80.0 { 80.0 } else { 0.0 };
    let p99_max = p99_lines
        .iter()
        .flat_map(|l| l.points.iter().map(|p| p.1))
        .fold(1.0f64, f64::max);

    let root = BitMapBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow!("{e}"))?;
    let root = root.titled(title, (FONT, 26)).map_err(|e| anyhow!("{e}"))?;
    let (top, bottom) = root.split_vertically(SIZE.1 / 2 - 20);
    let panels = [
        (&top, "hit rate (%)", hit_floor..100.5, hit_lines),
        (&bottom, "p99 latency (ms)", 0.0..p99_max * 1.1, p99_lines),
    ];
    for (area, y_desc, y_range, lines) in panels {
        let mut chart = ChartBuilder::on(area)
            .margin(16)
            .x_label_area_size(44)
            .y_label_area_size(70)
            .build_cartesian_2d(x_range.clone(), y_range)
            .map_err(|e| anyhow!("{e}"))?;
        chart
            .configure_mesh()
            .x_desc(x_desc)
            .y_desc(y_desc)
            .x_label_formatter(&x_label)
            .label_style((FONT, 16))
            .axis_desc_style((FONT, 18))
            .draw()
            .map_err(|e| anyhow!("{e}"))?;
        for line in lines.iter().filter(|l| !l.points.is_empty()) {
            let color = line.color;
            chart
                .draw_series(LineSeries::new(line.points.clone(), color.stroke_width(2)))
                .map_err(|e| anyhow!("{e}"))?
                .label(line.label)
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 24, y)], color.stroke_width(3))
                });
            chart
                .draw_series(
                    line.points
                        .iter()
                        .map(|p| Circle::new(*p, 3, color.filled())),
                )
                .map_err(|e| anyhow!("{e}"))?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::MiddleRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .label_font((FONT, 16))
            .draw()
            .map_err(|e| anyhow!("{e}"))?;
    }
    root.present()
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::{event_rate, over_time};
    use crate::cli::{Cache, Database};
    use crate::plan::{Mode, Scenario};
    use crate::report::{RunResults, ScenarioResult};
    use crate::workload::record::SecondFigures;

    const FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";

    fn run() -> RunResults {
        let mut scenarios = Vec::new();
        for rate in [1.0, 5.0, 20.0, 100.0] {
            for (mode, hit) in [(Mode::Strict, 99.0 - rate / 2.0), (Mode::Grace, 99.5)] {
                let mut r = ScenarioResult::sample(Scenario {
                    database: Database::Sqlite,
                    cache: Cache::Redis,
                    mode,
                    rate,
                });
                r.hit_rate = hit;
                r.served_from_cache = hit;
                r.p99_ms = rate;
                r.seconds = (0..10)
                    .map(|second| SecondFigures {
                        second,
                        reads: 100,
                        hit_rate: hit,
                        served_from_cache: hit,
                        p50_ms: 1.0,
                        p99_ms: rate + second as f64,
                    })
                    .collect();
                scenarios.push(r);
            }
        }
        RunResults {
            started_at: String::new(),
            elapsed_seconds: 0.0,
            cores: 2,
            knobs: serde_json::Value::Null,
            guild_sizes: Vec::new(),
            seeding: Vec::new(),
            grace_reported: true,
            scenarios,
        }
    }

    #[test]
    fn both_charts_are_drawn_as_png() {
        let dir = tempfile::tempdir().unwrap();
        let run = run();
        let font = Path::new(FONT);
        let over = dir.path().join("over-time.png");
        let rate = dir.path().join("event-rate.png");
        assert!(over_time(&run, 100.0, font, &over).unwrap());
        assert!(event_rate(&run, font, &rate).unwrap());
        for png in [over, rate] {
            let bytes = std::fs::read(&png).unwrap();
            assert!(bytes.starts_with(b"\x89PNG"), "{}", png.display());
        }
        // No run at that rate: nothing drawn, no error.
        assert!(!over_time(&run, 7.0, font, &dir.path().join("none.png")).unwrap());
    }
}
