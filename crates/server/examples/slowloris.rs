//! Slow and stalled clients against a running server (issue 15):
//! `scripts/bench-slowloris` starts the release server (under `ulimit -n`)
//! and runs this against it.
//!
//! ```text
//! slowloris --port P --token T [--pid PID] [--seconds 30] [--stalled 300]
//! ```
//!
//! Keeps `--stalled` connections open for `--seconds`, a quarter of each
//! kind, each reopened as soon as the server closes it, as a slowloris
//! attacker does:
//! - silent: connects and sends nothing;
//! - half line: `GET /health/li` and nothing more;
//! - dribble: a request line, then a header a byte a second;
//! - short body: a POST announcing `Content-Length: 1000`, sending 5 bytes
//!   (with the token: without one the server answers 401 at once).
//!
//! Meanwhile two clients read `/api/analytics/ghosts` one request after the
//! other: one over a kept-alive connection, one over a new connection per
//! request (it queues for a slot like the attackers). Reported: their
//! latencies (p50, p99, max) and errors; how long the stalled connections
//! lived (connect to the server's close) per kind; the server's CPU over the
//! run (from `/proc/PID/stat`), which shows whether anything spun.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Mutex;

const USAGE: &str = "\
usage: slowloris --port P --token T [--pid PID] [--seconds N] [--stalled N] [--label TEXT]";

#[derive(Clone, Copy, Debug)]
enum Kind {
    Silent,
    HalfLine,
    Dribble,
    ShortBody,
}

impl Kind {
    const ALL: [Kind; 4] = [Kind::Silent, Kind::HalfLine, Kind::Dribble, Kind::ShortBody];

    fn name(self) -> &'static str {
        match self {
            Kind::Silent => "nothing sent",
            Kind::HalfLine => "half a request line",
            Kind::Dribble => "headers, 1 byte/s",
            Kind::ShortBody => "Content-Length 1000, 5 bytes sent",
        }
    }
}

struct Args {
    port: u16,
    token: String,
    pid: Option<u32>,
    seconds: u64,
    stalled: usize,
    label: String,
}

fn args() -> Args {
    let mut args = Args {
        port: 0,
        token: String::new(),
        pid: None,
        seconds: 30,
        stalled: 300,
        label: String::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .unwrap_or_else(|| panic!("{flag} needs a value\n{USAGE}"))
        };
        match flag.as_str() {
            "--port" => args.port = value().parse().expect("--port"),
            "--token" => args.token = value(),
            "--pid" => args.pid = Some(value().parse().expect("--pid")),
            "--seconds" => args.seconds = value().parse().expect("--seconds"),
            "--stalled" => args.stalled = value().parse().expect("--stalled"),
            "--label" => args.label = value(),
            _ => {
                eprintln!("{USAGE}");
                std::process::exit(2);
            }
        }
    }
    assert!(args.port != 0 && !args.token.is_empty(), "{USAGE}");
    args
}

#[tokio::main]
async fn main() {
    let args = args();
    // Our side holds the stalled connections too.
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let address = format!("127.0.0.1:{}", args.port);
    let running = Arc::new(AtomicBool::new(true));
    let lifetimes: Arc<Mutex<Vec<(usize, Duration)>>> = Arc::default();
    let cpu_before = args.pid.and_then(cpu_ticks);
    let start = Instant::now();

    let mut attackers = Vec::new();
    for i in 0..args.stalled {
        let kind = Kind::ALL[i % 4];
        let (address, running, lifetimes) = (address.clone(), running.clone(), lifetimes.clone());
        let token = args.token.clone();
        attackers.push(tokio::spawn(async move {
            while running.load(Ordering::Relaxed) {
                if let Some(lived) = stall(&address, &token, kind, &running).await {
                    lifetimes.lock().await.push((i % 4, lived));
                } else {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }));
    }
    // Let the attack fill the server before the clients start.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let url = format!("http://{address}/api/analytics/ghosts?guildId=1");
    let kept_alive = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let fresh = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let until = start + Duration::from_secs(args.seconds);
    let (kept_alive, fresh) = tokio::join!(
        client(kept_alive, &url, &args.token, until),
        client(fresh, &url, &args.token, until),
    );
    running.store(false, Ordering::Relaxed);
    let elapsed = start.elapsed();
    let cpu = match (cpu_before, args.pid.and_then(cpu_ticks)) {
        (Some(before), Some(after)) => {
            let ticks = 100.0; // USER_HZ on Linux
            format!(
                "{:.1} %",
                (after - before) as f64 / ticks / elapsed.as_secs_f64() * 100.0
            )
        }
        _ => "n/a".into(),
    };
    for attacker in attackers {
        attacker.abort();
    }

    println!(
        "\n### {} ({} stalled connections, {} s)\n",
        args.label,
        args.stalled,
        elapsed.as_secs()
    );
    println!("| client | requests | errors | p50 | p99 | max |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: |");
    for (name, result) in [
        ("kept-alive connection", kept_alive),
        ("new connection per request", fresh),
    ] {
        let (mut latencies, errors) = result;
        latencies.sort();
        println!(
            "| {name} | {} | {errors} | {} | {} | {} |",
            latencies.len() + errors,
            ms(percentile(&latencies, 0.50)),
            ms(percentile(&latencies, 0.99)),
            ms(latencies.last().copied()),
        );
    }
    println!("\n| stalled connection | closed by the server | lived p50 | lived max |");
    println!("| --- | ---: | ---: | ---: |");
    let lifetimes = lifetimes.lock().await;
    for (k, kind) in Kind::ALL.iter().enumerate() {
        let mut lived: Vec<Duration> = lifetimes
            .iter()
            .filter(|(i, _)| *i == k)
            .map(|(_, d)| *d)
            .collect();
        lived.sort();
        println!(
            "| {} | {} | {} | {} |",
            kind.name(),
            lived.len(),
            ms(percentile(&lived, 0.5)),
            ms(lived.last().copied())
        );
    }
    println!("\nServer CPU over the run: {cpu}");
}

/// One stalled connection: how long it lived until the server closed it
/// (`None` if it could not connect, or the run ended first).
async fn stall(address: &str, token: &str, kind: Kind, running: &AtomicBool) -> Option<Duration> {
    let mut stream = TcpStream::connect(address).await.ok()?;
    let opened = Instant::now();
    let head = match kind {
        Kind::Silent => String::new(),
        Kind::HalfLine => "GET /health/li".into(),
        Kind::Dribble => "GET /health/live HTTP/1.1\r\nHost: x\r\nX-Slow: ".into(),
        Kind::ShortBody => format!(
            "POST /api/events/messages HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\
             Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n[{{\"a\""
        ),
    };
    stream.write_all(head.as_bytes()).await.ok()?;
    let (mut read, mut write) = stream.into_split();
    let dribble = async {
        if let Kind::Dribble = kind {
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                if write.write_all(b"a").await.is_err() {
                    break;
                }
            }
        }
        std::future::pending::<()>().await
    };
    let closed = async {
        let mut buf = [0u8; 1024];
        loop {
            match read.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    let give_up = async {
        while running.load(Ordering::Relaxed) {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    tokio::select! {
        () = closed => Some(opened.elapsed()),
        () = dribble => None,
        () = give_up => None,
    }
}

/// Requests one after the other until `until`: latencies and errors.
async fn client(
    client: reqwest::Client,
    url: &str,
    token: &str,
    until: Instant,
) -> (Vec<Duration>, usize) {
    let mut latencies = Vec::new();
    let mut errors = 0;
    while Instant::now() < until {
        let start = Instant::now();
        let failure = match client.get(url).bearer_auth(token).send().await {
            Ok(r) if r.status().is_success() => r.bytes().await.err().map(|e| e.to_string()),
            Ok(r) => Some(format!("status {}", r.status())),
            Err(e) => Some(e.to_string()),
        };
        match failure {
            None => latencies.push(start.elapsed()),
            Some(failure) => {
                errors += 1;
                eprintln!("[slowloris] client error: {failure}");
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    (latencies, errors)
}

/// utime + stime of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces), from field 3.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

fn percentile(sorted: &[Duration], q: f64) -> Option<Duration> {
    if sorted.is_empty() {
        return None;
    }
    let index = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
    Some(sorted[index])
}

fn ms(d: Option<Duration>) -> String {
    match d {
        Some(d) if d < Duration::from_millis(10) => format!("{:.2} ms", d.as_secs_f64() * 1000.0),
        Some(d) => format!("{} ms", d.as_millis()),
        None => "n/a".into(),
    }
}
