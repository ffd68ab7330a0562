//! The load driver: closed-loop readers and an open-loop event stream,
//! over one HTTP client with keep-alive, against one or more instances.
//!
//! The load runs from [`Load::start`] to [`Load::stop`]; only reads that
//! complete between [`Load::open_window`] and [`Load::close_window`] are
//! recorded, so the warm-up before the window, and the scraping of the
//! servers' counters at its edges, run under the same load.

mod events;
mod pick;
pub mod record;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use rand::SeedableRng;
use rand::rngs::StdRng;
use spywatcher_analytics::{AnalyticsKind, GuildId};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

pub use pick::{EVENT_WEIGHTS, GuildPicker};
use record::{Counts, ReaderRecord, SecondFigures, Served};

use crate::server::TOKEN;

/// What to drive.
#[derive(Debug, Clone)]
pub struct Workload {
    /// Base URLs of the instances (`http://127.0.0.1:PORT`).
    pub instances: Vec<String>,
    /// The guilds, largest first: a Zipf rank is an index here.
    pub guilds: Vec<GuildId>,
    /// The `since` values reads choose from (`None`: all history), fixed
    /// at the start of the run so that keys repeat.
    pub since: Vec<Option<i64>>,
    pub concurrency: u32,
    pub read_skew: f64,
    /// Zipf exponent of the guilds events go to.
    pub event_skew: f64,
    /// Events per second in total; 0 posts none.
    pub rate: f64,
    pub seed: u64,
}

/// Events posted at once at most: an open-loop stream does not wait for
/// the previous post, but a server that stops answering must not make the
/// driver pile up requests without bound.
const MAX_EVENTS_IN_FLIGHT: usize = 256;
/// Longest a request may take before it counts as failed.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

/// The window's edges, in µs since the load started.
struct Window {
    origin: Instant,
    start_us: AtomicU64,
    end_us: AtomicU64,
    stop: AtomicBool,
}

impl Window {
    /// The whole second of the window `at` falls in, if it does.
    fn second_of(&self, at: Instant) -> Option<usize> {
        let t = at.duration_since(self.origin).as_micros() as u64;
        let (start, end) = (
            self.start_us.load(Ordering::Acquire),
            self.end_us.load(Ordering::Acquire),
        );
        (t >= start && t < end).then(|| ((t - start) / 1_000_000) as usize)
    }

    fn now_us(&self) -> u64 {
        self.origin.elapsed().as_micros() as u64
    }
}

/// The event stream's tally over the window.
#[derive(Debug, Default, Clone)]
struct EventTally {
    posted: u64,
    failed: BTreeMap<u16, u64>,
}

/// A running load.
pub struct Load {
    window: Arc<Window>,
    readers: Vec<JoinHandle<ReaderRecord>>,
    stream: Option<JoinHandle<()>>,
    events: Arc<std::sync::Mutex<EventTally>>,
}

/// What the window saw.
pub struct Measurement {
    pub window_seconds: f64,
    pub counts: Counts,
    pub latency: Histogram<u64>,
    pub seconds: Vec<SecondFigures>,
    /// Events whose post completed in the window with 201.
    pub events_posted: u64,
    /// Event posts that failed in the window, by status (`0`: no answer).
    pub event_failures: BTreeMap<u16, u64>,
}

impl Load {
    pub fn start(http: &reqwest::Client, workload: &Workload) -> anyhow::Result<Load> {
        anyhow::ensure!(!workload.instances.is_empty(), "no instance to load");
        anyhow::ensure!(!workload.since.is_empty(), "no since value to read");
        let window = Arc::new(Window {
            origin: Instant::now(),
            start_us: AtomicU64::new(u64::MAX),
            end_us: AtomicU64::new(u64::MAX),
            stop: AtomicBool::new(false),
        });
        let read_picker = GuildPicker::new(workload.guilds.len(), workload.read_skew)?;
        let urls = Arc::new(ReadUrls::new(workload));
        let readers = (0..workload.concurrency)
            .map(|i| {
                let rng = StdRng::seed_from_u64(workload.seed ^ (0x7265_6164 + u64::from(i)));
                tokio::spawn(read_loop(
                    http.clone(),
                    Arc::clone(&urls),
                    read_picker.clone(),
                    Arc::clone(&window),
                    rng,
                    i as usize,
                ))
            })
            .collect();
        let events = Arc::new(std::sync::Mutex::new(EventTally::default()));
        let stream = if workload.rate > 0.0 {
            let picker = GuildPicker::new(workload.guilds.len(), workload.event_skew)?;
            Some(tokio::spawn(event_stream(
                http.clone(),
                workload.clone(),
                picker,
                Arc::clone(&window),
                Arc::clone(&events),
            )))
        } else {
            None
        };
        Ok(Load {
            window,
            readers,
            stream,
            events,
        })
    }

    /// Reads completing from now on are recorded.
    pub fn open_window(&self) {
        self.window
            .start_us
            .store(self.window.now_us(), Ordering::Release);
    }

    /// Reads completing from now on are not.
    pub fn close_window(&self) {
        self.window
            .end_us
            .store(self.window.now_us(), Ordering::Release);
    }

    /// Stops the readers and the stream, waits for what is in flight, and
    /// merges the records.
    pub async fn stop(self) -> anyhow::Result<Measurement> {
        self.window.stop.store(true, Ordering::Release);
        let start = self.window.start_us.load(Ordering::Acquire);
        let end = self.window.end_us.load(Ordering::Acquire);
        anyhow::ensure!(
            start != u64::MAX && end != u64::MAX && end > start,
            "the load was stopped without a measured window"
        );
        let window_seconds = (end - start) as f64 / 1e6;
        let mut records = Vec::with_capacity(self.readers.len());
        for reader in self.readers {
            records.push(reader.await?);
        }
        if let Some(stream) = self.stream {
            stream.await?;
        }
        let merged = record::merge(records, window_seconds.ceil() as usize);
        let tally = self
            .events
            .lock()
            .map_err(|_| anyhow::anyhow!("the event tally's lock was poisoned"))?
            .clone();
        Ok(Measurement {
            window_seconds,
            counts: merged.counts,
            latency: merged.latency,
            seconds: merged
                .seconds
                .into_iter()
                .take(window_seconds.ceil() as usize)
                .collect(),
            events_posted: tally.posted,
            event_failures: tally.failed,
        })
    }
}

/// Every read URL, built once: `[instance][guild][analytics][since]`.
struct ReadUrls {
    urls: Vec<Vec<Vec<Vec<String>>>>,
}

impl ReadUrls {
    fn new(w: &Workload) -> Self {
        let urls = w
            .instances
            .iter()
            .map(|base| {
                w.guilds
                    .iter()
                    .map(|guild| {
                        AnalyticsKind::ALL
                            .iter()
                            .map(|kind| {
                                w.since
                                    .iter()
                                    .map(|since| {
                                        let mut url = format!(
                                            "{base}/api/analytics/{kind}?guildId={}",
                                            guild.as_str()
                                        );
                                        if let Some(ms) = since {
                                            url.push_str(&format!("&since={ms}"));
                                        }
                                        url
                                    })
                                    .collect()
                            })
                            .collect()
                    })
                    .collect()
            })
            .collect();
        ReadUrls { urls }
    }
}

async fn read_loop(
    http: reqwest::Client,
    urls: Arc<ReadUrls>,
    picker: GuildPicker,
    window: Arc<Window>,
    mut rng: StdRng,
    reader: usize,
) -> ReaderRecord {
    use rand::Rng;
    let mut record = ReaderRecord::default();
    let instances = urls.urls.len();
    let mut turn = reader;
    while !window.stop.load(Ordering::Acquire) {
        turn = turn.wrapping_add(1);
        let guilds = &urls.urls[turn % instances];
        let kinds = &guilds[picker.pick(&mut rng)];
        let sinces = &kinds[rng.random_range(0..kinds.len())];
        let url = &sinces[rng.random_range(0..sinces.len())];
        let started = Instant::now();
        let served = read_once(&http, url).await;
        let done = Instant::now();
        if let Some(second) = window.second_of(done) {
            let latency = done.duration_since(started).as_micros() as u64;
            record.record(second, latency, served);
        }
        if matches!(served, Served::Error) {
            // A server that refuses connections would otherwise spin this
            // loop; the failure is recorded all the same.
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    record
}

async fn read_once(http: &reqwest::Client, url: &str) -> Served {
    let response = match http
        .get(url)
        .bearer_auth(TOKEN)
        .timeout(REQUEST_TIMEOUT)
        .send()
        .await
    {
        Ok(r) => r,
        Err(_) => return Served::Error,
    };
    let status = response.status().as_u16();
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let (x_cache, age) = (header("x-cache"), header("age"));
    // The body is part of the answer's latency.
    if response.bytes().await.is_err() {
        return Served::Error;
    }
    Served::from_response(status, x_cache.as_deref(), age.as_deref())
}

async fn event_stream(
    http: reqwest::Client,
    workload: Workload,
    picker: GuildPicker,
    window: Arc<Window>,
    tally: Arc<std::sync::Mutex<EventTally>>,
) {
    let mut rng = StdRng::seed_from_u64(workload.seed ^ 0x6576_656e_7473);
    let in_flight = Arc::new(Semaphore::new(MAX_EVENTS_IN_FLIGHT));
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / workload.rate));
    // Open loop: a late tick is made up at once, so the rate holds.
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut posts = tokio::task::JoinSet::new();
    let mut turn = 0usize;
    while !window.stop.load(Ordering::Acquire) {
        // A slow rate must not hold up the stop by a whole period.
        tokio::select! {
            _ = ticker.tick() => {}
            _ = tokio::time::sleep(Duration::from_millis(100)) => continue,
        }
        let Ok(permit) = Arc::clone(&in_flight).acquire_owned().await else {
            break;
        };
        let rank = picker.pick(&mut rng);
        let kind = pick::event_kind(&mut rng);
        let event = events::event(&mut rng, kind, &workload.guilds[rank], rank);
        turn = turn.wrapping_add(1);
        let url = format!(
            "{}/api/events/{}",
            workload.instances[turn % workload.instances.len()],
            kind.as_str()
        );
        let (http, window, tally) = (http.clone(), Arc::clone(&window), Arc::clone(&tally));
        posts.spawn(async move {
            let status = match http
                .post(&url)
                .bearer_auth(TOKEN)
                .timeout(REQUEST_TIMEOUT)
                .json(&event)
                .send()
                .await
            {
                Ok(r) => r.status().as_u16(),
                Err(_) => 0,
            };
            drop(permit);
            if window.second_of(Instant::now()).is_some()
                && let Ok(mut t) = tally.lock()
            {
                if status == 201 {
                    t.posted += 1;
                } else {
                    *t.failed.entry(status).or_default() += 1;
                }
            }
        });
        // Reap finished posts as we go, so the set stays small.
        while posts.try_join_next().is_some() {}
    }
    while posts.join_next().await.is_some() {}
}
