//! WebSocket fan-out under a burst (issue 15): many connections watching
//! many guilds, then one large ingest batch over those guilds. Does the
//! server keep answering, and what does a watched guild cost?
//! `scripts/bench-fanout` builds the server and this example in release
//! mode and runs it.
//!
//! ```text
//! cargo run --release -p spywatcher --example fanout -- [--redis] [--connections N] ...
//! ```
//!
//! Each run starts the release binary (`spywatcher serve`) afresh, on a new
//! SQLite file, with the embedded cache (or a private redis-server with
//! `--redis`), and:
//!
//! 1. opens `--connections` WebSocket connections (read token), each
//!    subscribing to `--guilds` guilds of its own (all distinct), and
//!    reads whatever they are sent from then on;
//! 2. measures the server's RSS before and after subscribing;
//! 3. polls `GET /health/live` every 10 ms (in a thread of its own, so the
//!    clients' work does not delay it), and POSTs one batch of `--events`
//!    typing events, one per guild, spread over the watched guilds;
//! 4. waits until the recomputations for subscribers are done (the
//!    recomputation count stable for 2 s), at most `--settle` seconds.
//!
//! The same runs with no subscriber, for comparison; both are reported
//! side by side as a markdown table. The guilds have no other data: this
//! measures the fan-out, not the analytics queries.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use spywatcher_testkit::redis::{RedisServer, free_port};
use tokio::process::{Child, Command};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const USAGE: &str = "\
WebSocket fan-out under a burst: /health/live latency, batch acknowledgement,
RSS per watched guild, recomputations per second; with and without subscribers.

usage: fanout [--server PATH] [--redis] [--connections N] [--guilds N]
              [--events N] [--settle SECONDS] [--only with|without]
              [--logs DIR] [--help]

  --server PATH      the spywatcher binary (default: target/release/spywatcher,
                     beside this example)
  --redis            a private redis-server (default: the embedded cache)
  --connections N    WebSocket connections (default 200)
  --guilds N         distinct guilds each connection subscribes to (default 100)
  --events N         typing events in the one batch, one per guild (default 10000)
  --settle SECONDS   longest wait for the recomputations to end (default 120)
  --only with|without   one of the two runs
  --logs DIR         keep each server's log there (default: dropped)

Environment variables given to the server (WS_*, RUST_LOG...) pass through.
Needs redis-server on PATH with --redis.";

const ADMIN: &str = "bench-admin-token-0123456789";
const INGEST: &str = "bench-ingest-token-0123456789";
const API: &str = "bench-api-token-0123456789";
const PROBE_EVERY: Duration = Duration::from_millis(10);
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
const FIRST_GUILD: u64 = 100_000_000;

struct Opts {
    server: PathBuf,
    redis: bool,
    connections: usize,
    guilds: usize,
    events: usize,
    settle: Duration,
    runs: Vec<bool>,
    logs: Option<PathBuf>,
}

impl Opts {
    fn parse() -> Result<Opts, String> {
        let beside = std::env::current_exe()
            .ok()
            .and_then(|exe| Some(exe.parent()?.parent()?.join("spywatcher")))
            .unwrap_or_else(|| PathBuf::from("target/release/spywatcher"));
        let mut opts = Opts {
            server: beside,
            redis: false,
            connections: 200,
            guilds: 100,
            events: 10_000,
            settle: Duration::from_secs(120),
            runs: vec![true, false],
            logs: None,
        };
        let mut args = std::env::args().skip(1);
        let number = |value: Option<String>, name: &str| -> Result<usize, String> {
            value
                .and_then(|n| n.parse().ok())
                .ok_or(format!("{name} takes a number"))
        };
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--help" | "-h" => return Err(String::new()),
                "--server" => opts.server = args.next().ok_or("--server takes a path")?.into(),
                "--redis" => opts.redis = true,
                "--logs" => opts.logs = Some(args.next().ok_or("--logs takes a directory")?.into()),
                "--connections" => opts.connections = number(args.next(), "--connections")?,
                "--guilds" => opts.guilds = number(args.next(), "--guilds")?,
                "--events" => opts.events = number(args.next(), "--events")?,
                "--settle" => {
                    opts.settle = Duration::from_secs(number(args.next(), "--settle")? as u64)
                }
                "--only" => {
                    opts.runs = match args.next().as_deref() {
                        Some("with") => vec![true],
                        Some("without") => vec![false],
                        _ => return Err("--only takes with or without".into()),
                    }
                }
                other => return Err(format!("unknown argument {other:?}")),
            }
        }
        let watched = opts.connections * opts.guilds;
        if opts.events > watched.max(1) && opts.runs.contains(&true) {
            return Err(format!(
                "--events {} exceeds the {watched} watched guilds",
                opts.events
            ));
        }
        Ok(opts)
    }
}

/// The server under test, a child process.
struct Server {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
    _redis: Option<RedisServer>,
}

impl Server {
    async fn start(opts: &Opts, name: &str) -> Server {
        let dir = tempfile::tempdir().expect("temp dir");
        let redis = opts.redis.then(RedisServer::start);
        let port = free_port();
        let log = match &opts.logs {
            Some(logs) => logs.join(format!("{name}.log")),
            None => dir.path().join("server.log"),
        };
        let log = std::fs::File::create(&log).expect("log file");
        let mut command = Command::new(&opts.server);
        command
            .arg("serve")
            .current_dir(dir.path())
            .env("HOST", "127.0.0.1")
            .env("PORT", port.to_string())
            .env(
                "DATABASE_URL",
                format!("sqlite://{}", dir.path().join("bench.db").display()),
            )
            .env("ADMIN_TOKEN", ADMIN)
            .env("INGEST_TOKEN", INGEST)
            .env("API_TOKEN", API)
            .env("RATE_LIMIT_PER_MINUTE", "0")
            .env("BODY_LIMIT_BYTES", (64 * 1024 * 1024).to_string())
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or("warn".into()),
            )
            .env_remove("REDIS_URL")
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true);
        if let Some(redis) = &redis {
            command.env("REDIS_URL", redis.url());
        }
        let child = command.spawn().unwrap_or_else(|e| {
            panic!(
                "cannot start {} ({e}); build it with cargo build --release",
                opts.server.display()
            )
        });
        let server = Server {
            child,
            port,
            _dir: dir,
            _redis: redis,
        };
        let client = reqwest::Client::new();
        for _ in 0..240 {
            if let Ok(r) = client.get(server.url("/health/ready")).send().await
                && r.status().is_success()
            {
                return server;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        panic!("the server did not become ready in 60 s");
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// A field of /proc/PID/status, in kB.
    fn status_kb(&self, field: &str) -> u64 {
        let pid = self.child.id().unwrap_or_default();
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .unwrap_or_default()
            .lines()
            .find_map(|line| {
                let rest = line.strip_prefix(field)?.strip_prefix(':')?;
                rest.split_whitespace().next()?.parse().ok()
            })
            .unwrap_or_default()
    }

    /// User and system CPU time of the server so far.
    fn cpu(&self) -> Duration {
        let pid = self.child.id().unwrap_or_default();
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // Fields after the command name, which is in parentheses.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.split_whitespace().collect())
            .unwrap_or_default();
        let ticks: u64 = [11, 12]
            .iter()
            .filter_map(|&i| fields.get(i)?.parse::<u64>().ok())
            .sum();
        Duration::from_millis(ticks * 10) // USER_HZ is 100 on Linux
    }

    /// Sum of the samples of a metric (over its labels); `None` if absent.
    async fn metric(&self, client: &reqwest::Client, name: &str) -> Option<f64> {
        let text = client
            .get(self.url("/metrics"))
            .bearer_auth(ADMIN)
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        let values: Vec<f64> = text
            .lines()
            .filter(|line| {
                line.strip_prefix(name)
                    .is_some_and(|rest| rest.starts_with([' ', '{']))
            })
            .filter_map(|line| line.rsplit(' ').next()?.parse().ok())
            .collect();
        (!values.is_empty()).then(|| values.iter().sum())
    }
}

/// What the clients were sent.
#[derive(Default)]
struct Received {
    invalidated: AtomicU64,
    analytics: AtomicU64,
    errors: AtomicU64,
}

fn guild(connection: usize, i: usize, per_connection: usize) -> String {
    (FIRST_GUILD + (connection * per_connection + i) as u64).to_string()
}

/// Opens a connection, subscribes to its guilds (pipelined), then counts
/// what it is sent until the end of the run.
async fn connection(
    server_port: u16,
    index: usize,
    guilds: usize,
    received: Arc<Received>,
) -> tokio::task::JoinHandle<()> {
    let mut request = format!("ws://127.0.0.1:{server_port}/ws")
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("authorization", format!("Bearer {API}").parse().unwrap());
    let (mut socket, _) = tokio_tungstenite::connect_async(request)
        .await
        .expect("WebSocket handshake");
    for i in 0..guilds {
        let subscribe = json!({ "type": "subscribe", "guildId": guild(index, i, guilds) });
        socket
            .feed(Message::text(subscribe.to_string()))
            .await
            .expect("send");
    }
    socket.flush().await.expect("send");
    let mut confirmed = 0;
    while confirmed < guilds {
        match socket.next().await {
            Some(Ok(Message::Text(text))) => {
                let frame: Value = serde_json::from_str(&text).unwrap_or_default();
                assert_eq!(frame["type"], "subscribed", "{frame}");
                confirmed += 1;
            }
            Some(Ok(_)) => {}
            other => panic!("connection {index} ended while subscribing: {other:?}"),
        }
    }
    tokio::spawn(async move {
        while let Some(Ok(message)) = socket.next().await {
            if let Message::Text(text) = message {
                let counter = if text.starts_with(r#"{"type":"invalidated""#) {
                    &received.invalidated
                } else if text.starts_with(r#"{"type":"analytics""#) {
                    &received.analytics
                } else {
                    &received.errors
                };
                counter.fetch_add(1, Ordering::Relaxed);
            }
        }
    })
}

/// `/health/live` every 10 ms in a thread of its own; latencies (a timeout
/// counts as [`PROBE_TIMEOUT`]) with their start.
fn probe(url: String, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<Vec<(Instant, Duration)>> {
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let client = reqwest::Client::new();
            let mut samples = Vec::new();
            let mut tick = tokio::time::interval(PROBE_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            while !stop.load(Ordering::Relaxed) {
                tick.tick().await;
                let started = Instant::now();
                let answered = client.get(&url).timeout(PROBE_TIMEOUT).send().await;
                let latency = match answered {
                    Ok(r) if r.status().is_success() => started.elapsed(),
                    _ => PROBE_TIMEOUT,
                };
                samples.push((started, latency));
            }
            samples
        })
    })
}

struct Report {
    watched: usize,
    subscribe_time: Duration,
    rss_before_kb: u64,
    rss_subscribed_kb: u64,
    rss_peak_kb: u64,
    ack: Result<Duration, String>,
    live: Vec<Duration>,
    live_failed: usize,
    recomputations: f64,
    drained: Duration,
    settled: bool,
    cpu: Duration,
    received: Arc<Received>,
}

async fn run(opts: &Opts, with_subscribers: bool) -> Report {
    let name = if with_subscribers { "with" } else { "without" };
    let server = Server::start(opts, name).await;
    let client = reqwest::Client::new();
    // Settle the allocator and the first requests' buffers.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_before_kb = server.status_kb("VmRSS");

    let received = Arc::new(Received::default());
    let (connections, guilds) = if with_subscribers {
        (opts.connections, opts.guilds)
    } else {
        (0, 0)
    };
    let started = Instant::now();
    let readers: Vec<tokio::task::JoinHandle<()>> = futures::stream::iter(0..connections)
        .map(|i| connection(server.port, i, guilds, received.clone()))
        .buffer_unordered(8)
        .collect()
        .await;
    let subscribe_time = started.elapsed();
    eprintln!(
        "[fanout] {} connections × {guilds} guilds subscribed in {subscribe_time:.1?}",
        readers.len()
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_subscribed_kb = server.status_kb("VmRSS");

    // The batch: one event per guild, spread over every connection's guilds.
    let watched = connections * guilds;
    let batch: Vec<Value> = (0..opts.events)
        .map(|k| {
            let guild = match watched {
                0 => (FIRST_GUILD + k as u64).to_string(),
                _ => {
                    let n = k * watched / opts.events;
                    guild(n / guilds, n % guilds, guilds)
                }
            };
            json!({ "guildId": guild, "userId": "5000", "username": "bench",
                    "channelId": "77", "channel": "general" })
        })
        .collect();
    let body = serde_json::to_vec(&batch).unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let prober = probe(server.url("/health/live"), stop.clone());
    tokio::time::sleep(Duration::from_millis(200)).await;
    let cpu_before = server.cpu();
    let burst = Instant::now();
    let posted = client
        .post(server.url("/api/events/typing"))
        .bearer_auth(INGEST)
        .header("content-type", "application/json")
        .body(body)
        .timeout(opts.settle)
        .send()
        .await;
    let ack = match posted {
        Ok(r) if r.status().as_u16() == 201 => Ok(burst.elapsed()),
        Ok(r) => Err(format!("status {}", r.status())),
        Err(e) => Err(format!("no answer ({e})")),
    };
    eprintln!("[fanout] batch: {ack:?}");

    // Until the recomputations are done: their count stable for 2 s.
    let count = "spywatcher_ws_recomputations_total";
    let (mut last, mut stable_since) = (-1.0, Instant::now());
    let mut settled = false;
    while burst.elapsed() < opts.settle {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let now = server.metric(&client, count).await.unwrap_or(0.0);
        if now != last {
            (last, stable_since) = (now, Instant::now());
        } else if stable_since.elapsed() >= Duration::from_secs(2) {
            settled = true;
            break;
        }
    }
    let drained = stable_since.saturating_duration_since(burst);
    let cpu = server.cpu().saturating_sub(cpu_before);
    stop.store(true, Ordering::Relaxed);
    let samples = prober.join().expect("prober");
    let end = burst + drained.max(Duration::from_secs(1));
    let mut live: Vec<Duration> = samples
        .iter()
        .filter(|(at, _)| *at >= burst && *at <= end)
        .map(|(_, latency)| *latency)
        .collect();
    live.sort();
    let live_failed = live.iter().filter(|&&l| l >= PROBE_TIMEOUT).count();
    let report = Report {
        watched,
        subscribe_time,
        rss_before_kb,
        rss_subscribed_kb,
        rss_peak_kb: server.status_kb("VmHWM"),
        ack,
        live,
        live_failed,
        recomputations: last.max(0.0),
        drained,
        settled,
        cpu,
        received,
    };
    for reader in readers {
        reader.abort();
    }
    report
}

fn quantile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

fn mb(kb: u64) -> String {
    format!("{:.1} MB", kb as f64 / 1024.0)
}

fn print(opts: &Opts, reports: &[(bool, Report)]) {
    let cache = if opts.redis {
        "Redis"
    } else {
        "embedded cache"
    };
    println!(
        "\nWebSocket fan-out: {} connections × {} guilds, one batch of {} typing events; SQLite, {cache}\n",
        opts.connections, opts.guilds, opts.events
    );
    let header: Vec<String> = reports
        .iter()
        .map(|(with, r)| {
            if *with {
                format!("{} watched guilds", r.watched)
            } else {
                "no subscriber".to_string()
            }
        })
        .collect();
    println!("| | {} |", header.join(" | "));
    println!("| --- |{}", " --- |".repeat(reports.len()));
    let row = |name: &str, cell: &dyn Fn(&Report) -> String| {
        let cells: Vec<String> = reports.iter().map(|(_, r)| cell(r)).collect();
        println!("| {name} | {} |", cells.join(" | "));
    };
    row("batch acknowledged in (target < 2 s)", &|r| match &r.ack {
        Ok(d) => ms(*d),
        Err(e) => e.clone(),
    });
    row(
        "`/health/live` p99 during the burst (target < 50 ms)",
        &|r| ms(quantile(&r.live, 0.99)),
    );
    row("`/health/live` p50 / max (samples, failed)", &|r| {
        format!(
            "{} / {} ({}, {})",
            ms(quantile(&r.live, 0.5)),
            ms(r.live.last().copied().unwrap_or_default()),
            r.live.len(),
            r.live_failed
        )
    });
    row("recomputations, per second", &|r| {
        let secs = r.drained.as_secs_f64();
        let rate = if secs > 0.0 {
            r.recomputations / secs
        } else {
            0.0
        };
        format!("{:.0}, {rate:.0}/s", r.recomputations)
    });
    row("recomputations done after", &|r| {
        let mark = if r.settled { "" } else { " (not settled)" };
        format!("{:.1} s{mark}", r.drained.as_secs_f64())
    });
    row("server CPU during the burst", &|r| {
        format!("{:.1} s", r.cpu.as_secs_f64())
    });
    row("subscribing took", &|r| {
        format!("{:.1} s", r.subscribe_time.as_secs_f64())
    });
    row("RSS before → with subscriptions → peak", &|r| {
        format!(
            "{} → {} → {}",
            mb(r.rss_before_kb),
            mb(r.rss_subscribed_kb),
            mb(r.rss_peak_kb)
        )
    });
    row("RSS per idle watched guild", &|r| {
        if r.watched == 0 {
            "-".into()
        } else {
            let grown = r.rss_subscribed_kb.saturating_sub(r.rss_before_kb) as f64;
            format!("{:.2} KB", grown / r.watched as f64)
        }
    });
    row("frames received: invalidated / analytics / errors", &|r| {
        format!(
            "{} / {} / {}",
            r.received.invalidated.load(Ordering::Relaxed),
            r.received.analytics.load(Ordering::Relaxed),
            r.received.errors.load(Ordering::Relaxed)
        )
    });
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let opts = match Opts::parse() {
        Ok(opts) => opts,
        Err(message) => {
            if !message.is_empty() {
                eprintln!("fanout: {message}\n");
            }
            eprintln!("{USAGE}");
            std::process::exit(if message.is_empty() { 0 } else { 2 });
        }
    };
    let mut reports = Vec::new();
    for &with_subscribers in &opts.runs {
        let label = if with_subscribers {
            "with subscribers"
        } else {
            "no subscriber"
        };
        eprintln!("[fanout] run: {label}");
        let report = run(&opts, with_subscribers).await;
        reports.push((with_subscribers, report));
    }
    print(&opts, &reports);
}
