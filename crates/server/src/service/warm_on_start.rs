//! `CACHE_WARM_ON_START=N`: once the instance serves, a background task
//! warms the six analytics of the N guilds read most over the last day
//! (the recorded read counts, [`super::read_counts`]), one guild at a time,
//! so that their first reads after a restart are hits. Requests are served
//! meanwhile; a guild that fails to warm is logged and skipped.
//!
//! Its progress is kept in [`WarmProgress`], which `/health/ready` reports
//! (`warmOnStart`), and counted in
//! `spywatcher_cache_warmed_on_start_total{result="warmed"|"failed"}` (guilds).

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use chrono::Utc;
use tokio::task::JoinHandle;
use tracing::{error, info, warn};

use super::Spywatcher;

/// How far back the read counts are ranked.
pub const WINDOW: Duration = Duration::from_secs(24 * 3600);

/// Where warming on start stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WarmStatus {
    /// Not started yet, or reading the busiest guilds.
    Ranking,
    /// Warming guilds.
    Running,
    /// Finished (also when there was nothing to do, or the ranking failed).
    Done,
}

impl WarmStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            WarmStatus::Ranking => "ranking",
            WarmStatus::Running => "running",
            WarmStatus::Done => "done",
        }
    }
}

/// The progress of warming on start, shared with the health route.
#[derive(Debug)]
pub struct WarmProgress {
    /// `CACHE_WARM_ON_START`.
    pub wanted: usize,
    status: AtomicU8,
    guilds: AtomicUsize,
    warmed: AtomicUsize,
    failed: AtomicUsize,
}

/// What [`WarmProgress`] says at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WarmSnapshot {
    pub status: WarmStatus,
    /// Guilds to warm: at most `wanted`, fewer when fewer were read.
    pub guilds: usize,
    pub warmed: usize,
    pub failed: usize,
}

impl WarmProgress {
    pub fn new(wanted: usize) -> Self {
        WarmProgress {
            wanted,
            status: AtomicU8::new(WarmStatus::Ranking as u8),
            guilds: AtomicUsize::new(0),
            warmed: AtomicUsize::new(0),
            failed: AtomicUsize::new(0),
        }
    }

    pub fn snapshot(&self) -> WarmSnapshot {
        let status = match self.status.load(Ordering::Acquire) {
            s if s == WarmStatus::Running as u8 => WarmStatus::Running,
            s if s == WarmStatus::Done as u8 => WarmStatus::Done,
            _ => WarmStatus::Ranking,
        };
        WarmSnapshot {
            status,
            guilds: self.guilds.load(Ordering::Relaxed),
            warmed: self.warmed.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
        }
    }

    fn set(&self, status: WarmStatus) {
        self.status.store(status as u8, Ordering::Release);
    }
}

/// Starts warming in the background; the handle lets a shutdown cut it short.
pub fn start(service: Spywatcher, progress: Arc<WarmProgress>) -> JoinHandle<()> {
    tokio::spawn(async move { warm_busiest(&service, &progress).await })
}

/// Warms the busiest guilds, one at a time (the database's connections stay
/// free for the requests served meanwhile), logging each.
pub async fn warm_busiest(service: &Spywatcher, progress: &WarmProgress) {
    let started = Instant::now();
    if !service.policy.caching {
        info!("warming on start: caching is off (CACHE_ENABLED=false), nothing to do");
        progress.set(WarmStatus::Done);
        return;
    }
    let since = Utc::now().timestamp_millis() - WINDOW.as_millis() as i64;
    let guilds = match service.store.busiest_guilds(since, progress.wanted).await {
        Ok(guilds) => guilds,
        Err(e) => {
            error!("warming on start: cannot read the busiest guilds, nothing warmed: {e}");
            progress.set(WarmStatus::Done);
            return;
        }
    };
    let total = guilds.len();
    if total == 0 {
        info!("warming on start: no reads recorded over the last day, nothing to warm");
        progress.set(WarmStatus::Done);
        return;
    }
    info!(
        "warming on start: the {total} guilds read most over the last day (of {} asked for)",
        progress.wanted
    );
    progress.guilds.store(total, Ordering::Relaxed);
    progress.set(WarmStatus::Running);
    let counter = |result: &'static str| metrics::counter!("spywatcher_cache_warmed_on_start_total", "result" => result);
    for (index, (guild, reads)) in guilds.iter().enumerate() {
        let position = index + 1;
        let began = Instant::now();
        match service.warm(guild).await {
            Ok(analytics) => {
                progress.warmed.fetch_add(1, Ordering::Relaxed);
                counter("warmed").increment(1);
                info!(
                    "warming on start: {position}/{total} guild {guild}: {analytics} analytics in {} ms ({reads} reads over the last day)",
                    began.elapsed().as_millis()
                );
            }
            Err(e) => {
                progress.failed.fetch_add(1, Ordering::Relaxed);
                counter("failed").increment(1);
                warn!(
                    "warming on start: {position}/{total} guild {guild}: failed after {} ms, going on: {e}",
                    began.elapsed().as_millis()
                );
            }
        }
    }
    let done = progress.snapshot();
    info!(
        "warming on start: done, {} of {total} guilds warmed ({} failed) in {:.1} s",
        done.warmed,
        done.failed,
        started.elapsed().as_secs_f64()
    );
    progress.set(WarmStatus::Done);
}
