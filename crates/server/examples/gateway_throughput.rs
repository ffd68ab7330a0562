//! Gateway ingestion throughput (issue 12): events per second from a
//! (fake) Discord gateway to committed rows, on SQLite and PostgreSQL.
//! `scripts/bench-gateway` builds it in release mode and runs it.
//!
//! ```text
//! cargo run --release -p spywatcher --example gateway_throughput -- [--events N] [--guilds N] [--db sqlite|postgres|both]
//! ```
//!
//! Each run builds the whole service in this process (as `spywatcher
//! serve` does, embedded cache) on a fresh database, with the gateway
//! ingester connected to the test kit's fake gateway on loopback (no TLS,
//! no compression: what is measured is the service, not the network).
//! Once READY and the guilds' GUILD_CREATE are in, the fake gateway sends
//! `--events` dispatches as fast as it can (40 % MESSAGE_CREATE, 40 %
//! TYPING_START, 20 % PRESENCE_UPDATE, over `--guilds` guilds); the clock
//! runs from the first dispatch until the ingester reports every event
//! stored (committed, invalidated, published), and the row count is then
//! checked against the database. It prints a markdown table.

use std::time::{Duration, Instant};

use serde_json::Value;
use spywatcher::config::{DiscordSettings, Settings};
use spywatcher::startup::Application;
use spywatcher_gateway::ingester::{GatewayHealth, GatewayState, IdentifyLimit};
use spywatcher_testkit::gateway::{FakeGateway, payload};
use spywatcher_testkit::postgres::TestDatabase;

const USAGE: &str = "\
Gateway ingestion throughput: fake gateway to committed rows.

usage: gateway_throughput [--events N] [--guilds N] [--db sqlite|postgres|both]

  --events N   dispatches per run (default 100000)
  --guilds N   guilds they are spread over (default 100)
  --db WHICH   sqlite, postgres or both (default both); PostgreSQL from
               SPYWATCHER_TEST_PG_URL (default postgres://postgres@127.0.0.1:5432/postgres)
";

const CHANNEL: u64 = 810_000_000_000_000_000;
const FIRST_GUILD: u64 = 800_000_000_000_000_000;
const FIRST_USER: u64 = 830_000_000_000_000_000;

struct Args {
    events: u64,
    guilds: u64,
    databases: Vec<&'static str>,
}

fn args() -> Result<Args, String> {
    let mut args = Args {
        events: 100_000,
        guilds: 100,
        databases: vec!["sqlite", "postgres"],
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag}: a value is missing"));
        match flag.as_str() {
            "--events" => {
                args.events = value()?
                    .parse()
                    .map_err(|_| "--events: expected a number".to_string())?
            }
            "--guilds" => {
                args.guilds = value()?
                    .parse()
                    .ok()
                    .filter(|&n| n > 0)
                    .ok_or("--guilds: expected a number of at least 1")?
            }
            "--db" => {
                args.databases = match value()?.as_str() {
                    "sqlite" => vec!["sqlite"],
                    "postgres" => vec!["postgres"],
                    "both" => vec!["sqlite", "postgres"],
                    other => {
                        return Err(format!(
                            "--db: expected sqlite, postgres or both, got {other:?}"
                        ));
                    }
                }
            }
            "--help" | "-h" => {
                print!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?}\n\n{USAGE}")),
        }
    }
    Ok(args)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = args().map_err(anyhow::Error::msg)?;
    let mut rows = Vec::new();
    for db in &args.databases {
        let row = match *db {
            "sqlite" => {
                let dir = tempfile::tempdir()?;
                let url = format!("sqlite://{}", dir.path().join("bench.db").display());
                run("SQLite", &url, &args).await?
            }
            _ => {
                let database = TestDatabase::create().await?;
                run("PostgreSQL", database.url(), &args).await?
            }
        };
        eprintln!("{row}");
        rows.push(row);
    }
    println!("| database | events | guilds | seconds | events/s | deepest buffer seen |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: |");
    for row in rows {
        println!("{row}");
    }
    Ok(())
}

async fn run(name: &str, database_url: &str, args: &Args) -> anyhow::Result<String> {
    let gateway = FakeGateway::start().await;
    let mut settings = Settings::from_lookup(|_| None)?;
    settings.host = [127, 0, 0, 1].into();
    settings.port = 0;
    settings.database_url = database_url.to_string();
    settings.admin_token = Some("bench-admin-token-0000000001".into());
    settings.discord = Some(DiscordSettings {
        identify_limit: IdentifyLimit::Unlimited,
        gateway_url: Some(gateway.url()),
        ..Settings::from_lookup(|var| (var == "DISCORD_TOKEN").then(|| "bench-token".into()))?
            .discord
            .expect("a token")
    });
    let app = Application::build(&settings).await?;
    let health = app.state().gateway.clone().expect("the ingester runs");
    let store = app.state().service.store.clone();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until_stopped(async {
        let _ = stopped.await;
    }));
    wait(&health, "READY", |h| {
        h.status().state == GatewayState::Ready
    })
    .await?;

    let guilds: Vec<u64> = (1..=args.guilds).map(|g| FIRST_GUILD + g).collect();
    for &guild in &guilds {
        let channel = payload::channel(guild, CHANNEL + guild % 1000, "general");
        gateway.dispatch(
            "GUILD_CREATE",
            payload::guild_create(guild, "bench", vec![channel], vec![], vec![]),
        );
    }
    let dispatches: Vec<(&'static str, Value)> =
        (0..args.events).map(|n| dispatch(n, &guilds)).collect();

    let started = Instant::now();
    gateway.dispatch_all(dispatches);
    let mut deepest = 0;
    while health.status().stored < args.events {
        deepest = deepest.max(health.status().buffered);
        if started.elapsed() > Duration::from_secs(600) {
            anyhow::bail!("{name}: {:?} after 10 minutes", health.status());
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let rows = store.event_count().await?;
    anyhow::ensure!(
        rows == args.events,
        "{name}: {rows} rows for {} events",
        args.events
    );
    let _ = stop.send(());
    let _ = server.await;
    Ok(format!(
        "| {name} | {} | {} | {elapsed:.2} | {:.0} | {deepest} |",
        args.events,
        args.guilds,
        args.events as f64 / elapsed
    ))
}

/// The n-th dispatch of the burst.
fn dispatch(n: u64, guilds: &[u64]) -> (&'static str, Value) {
    let guild = guilds[(n % guilds.len() as u64) as usize];
    let user = FIRST_USER + n % 5_000;
    let channel = CHANNEL + guild % 1000;
    match n % 5 {
        0 | 1 => (
            "MESSAGE_CREATE",
            payload::message_create(
                1_000_000 + n,
                guild,
                channel,
                payload::user(user, "member"),
                "a message of realistic length, a sentence or two of chat",
                "2026-11-29T10:00:00.000000+00:00",
            ),
        ),
        2 | 3 => (
            "TYPING_START",
            payload::typing_start(
                guild,
                channel,
                user,
                Some(payload::member(
                    payload::user(user, "member"),
                    &[],
                    "2026-01-01T00:00:00.000000+00:00",
                )),
                1_790_000_000 + n,
            ),
        ),
        _ => (
            "PRESENCE_UPDATE",
            payload::presence_update(
                guild,
                payload::user_id_only(user),
                "online",
                &["desktop", "mobile"],
            ),
        ),
    }
}

async fn wait(
    health: &GatewayHealth,
    what: &str,
    condition: impl Fn(&GatewayHealth) -> bool,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !condition(health) {
        anyhow::ensure!(
            Instant::now() < deadline,
            "no {what}: {:?}",
            health.status()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}
