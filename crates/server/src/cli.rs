//! The command line (SPEC 5). Every command reads the configuration of
//! SPEC 6 from the environment (and `.env`).

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "spywatcher",
    version,
    about = "Discord server behaviour analytics, served through a Redis-backed cache",
    long_about = "Discord server behaviour analytics, served through a Redis-backed cache.\n\n\
        Configuration comes from environment variables (and a .env file): PORT, DATABASE_URL, \
        REDIS_URL, ADMIN_TOKEN, DISCORD_TOKEN, ... See README.md for the full list."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the HTTP API (default port 3001, `PORT`); with DISCORD_TOKEN
    /// set, also ingest events from the Discord gateway.
    Serve {
        /// Fill an empty database with generated demo data first.
        #[arg(long)]
        demo: bool,
    },
    /// Ingest events from the Discord gateway only, without the HTTP API
    /// (needs DISCORD_TOKEN; DISCORD_SHARD=ID/COUNT, DISCORD_GATEWAY_URL).
    Bot,
    /// Fill the database with deterministic synthetic events.
    Seed(SeedArgs),
    /// Create or update the database schema, then exit.
    Migrate,
    /// Inspect or clear the cache of a running server (through its admin API).
    Cache {
        #[command(subcommand)]
        action: CacheAction,
        /// The server's base URL [default: http://127.0.0.1:$PORT]
        #[arg(long, env = "SPYWATCHER_URL", global = true)]
        server: Option<String>,
        /// The admin token.
        #[arg(long, env = "ADMIN_TOKEN", hide_env_values = true, global = true)]
        token: Option<String>,
    },
}

#[derive(Debug, Clone, Subcommand)]
pub enum CacheAction {
    /// Print the cache statistics.
    Stats,
    /// Print what the cache learned of its workload (per analytics type:
    /// reads, hit rate, entry lifetimes, entries expired unread, miss cost,
    /// bytes per entry, stale serves; the busiest guilds) and the settings
    /// it suggests, with their reasons, as tables.
    Insights,
    /// Delete every entry under the cache prefix.
    Clear,
    /// Invalidate every entry stored under TAG (e.g. guild:123456789).
    Invalidate {
        /// The tag: 1-200 characters of A-Z a-z 0-9 : _ . -
        tag: String,
    },
}

#[derive(Debug, Clone, Args)]
pub struct SeedArgs {
    /// Number of guilds.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub guilds: u32,
    /// Members per guild.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..=10_000_000))]
    pub users: u32,
    /// Days of history, ending today.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..=3650))]
    pub days: u32,
    /// Total events over all guilds.
    #[arg(long, default_value_t = 60_000, value_parser = clap::value_parser!(u64).range(1..=1_000_000_000))]
    pub events: u64,
    /// RNG seed: the same seed makes the same data.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Zipf exponent of guild sizes (the first guild largest); 0 splits
    /// the events evenly.
    #[arg(long, default_value_t = 0.0, value_parser = guild_skew)]
    pub guild_skew: f64,
}

/// A finite, non-negative exponent (a negative one would make the last
/// guild the largest, which `--guild-skew` does not promise).
fn guild_skew(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && (0.0..=10.0).contains(&v) => Ok(v),
        _ => Err(format!("{s:?} is not a number from 0 to 10")),
    }
}
