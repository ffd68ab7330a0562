//! The knobs. Each has a default that fits the whole matrix, seeding of
//! both databases included, in under 10 minutes on a 2-core machine.

use std::path::PathBuf;

use clap::{Parser, ValueEnum};
use serde::{Deserialize, Serialize};

/// A database the service runs on.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, ValueEnum, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Database {
    Sqlite,
    Postgres,
}

impl Database {
    pub fn as_str(self) -> &'static str {
        match self {
            Database::Sqlite => "sqlite",
            Database::Postgres => "postgres",
        }
    }
}

/// Where the service caches: nowhere (`CACHE_ENABLED=false`), in process,
/// or in a Redis of the benchmark's own.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, ValueEnum, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Cache {
    Off,
    Embedded,
    Redis,
}

impl Cache {
    pub fn as_str(self) -> &'static str {
        match self {
            Cache::Off => "off",
            Cache::Embedded => "embedded",
            Cache::Redis => "redis",
        }
    }
}

#[derive(Debug, Clone, Parser)]
#[command(
    name = "spywatcher-bench",
    version,
    about = "Workload benchmark of spywatcher: reads by a Zipf law and a stream of events, cache off and on",
    long_about = "Workload benchmark of spywatcher (issue 11).\n\n\
        Seeds each database once through the generator, then for every scenario starts fresh \
        `spywatcher serve` processes with the scenario's environment, warms up, measures, and \
        stops them. Writes report.md, results.json and PNG charts to --out. Exits non-zero if a \
        floor fails (at --base-rate: p50 >= 95 % lower than uncached, database queries per read \
        >= 95 % fewer, throughput >= 10x, hit rate >= 95 %) or any request failed."
)]
pub struct Args {
    /// Databases to run on, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "sqlite,postgres")]
    pub databases: Vec<Database>,
    /// Caches to compare, comma-separated (off is the baseline of the floors).
    #[arg(long, value_delimiter = ',', default_value = "off,embedded,redis")]
    pub caches: Vec<Cache>,
    /// Event rates (events/s, in total) of the sweep: Redis strict and grace
    /// on the first database (SQLite by default).
    #[arg(long, value_delimiter = ',', default_value = "1,5,20,100", value_parser = rate)]
    pub rates: Vec<f64>,
    /// Event rate of the floors scenarios (every database x cache).
    #[arg(long, default_value_t = 5.0, value_parser = rate)]
    pub base_rate: f64,
    /// Event rate of the strict-versus-grace scenarios (every database x cache).
    #[arg(long, default_value_t = 100.0, value_parser = rate)]
    pub busy_rate: f64,
    /// Grace of the grace scenarios, seconds (CACHE_GRACE_* of all six analytics).
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub grace: u64,
    /// Warm-up of each scenario, seconds (load runs, nothing is recorded).
    #[arg(long, default_value_t = 5.0, value_parser = seconds)]
    pub warmup: f64,
    /// Measured window of each scenario, seconds.
    #[arg(long, default_value_t = 15.0, value_parser = positive_seconds)]
    pub duration: f64,
    /// Readers, each a closed loop of one request at a time.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub concurrency: u32,
    /// Server processes per scenario, sharing the database (and Redis);
    /// requests are spread over them.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=16))]
    pub instances: u32,
    /// Guilds in the data set.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub guilds: u32,
    /// Members per guild.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub users: u32,
    /// Events in the data set, over all guilds.
    #[arg(long, default_value_t = 2_000_000, value_parser = clap::value_parser!(u64).range(1..=1_000_000_000))]
    pub events: u64,
    /// Days of history in the data set.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..=3650))]
    pub days: u32,
    /// Zipf exponent of guild sizes in the data set, and of the guilds the
    /// event stream posts to (0 = even).
    #[arg(long, default_value_t = 1.0, value_parser = exponent)]
    pub skew: f64,
    /// Zipf exponent of the guilds read (rank = guild size rank; 0 = uniform).
    #[arg(long, default_value_t = 1.0, value_parser = exponent)]
    pub read_skew: f64,
    /// Seed of the data set and of the workload's choices.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Where report.md, results.json and the charts go.
    #[arg(long, default_value = "docs/bench/workload")]
    pub out: PathBuf,
    /// The spywatcher binary [default: `spywatcher` next to this program].
    #[arg(long)]
    pub server: Option<PathBuf>,
    /// A PostgreSQL URL whose user may create databases; the benchmark
    /// creates `spywatcher_bench_<pid>` on that server and drops it at the end.
    #[arg(
        long,
        env = "SPYWATCHER_BENCH_PG_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres"
    )]
    pub postgres_url: String,
    /// Seed the databases, report the seeding rate, and stop.
    #[arg(long)]
    pub seed_only: bool,
    /// The font of the charts' text (a TrueType file; Debian's fonts-dejavu-core).
    #[arg(
        long,
        default_value = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"
    )]
    pub font: PathBuf,
}

fn rate(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && (0.0..=100_000.0).contains(&v) => Ok(v),
        _ => Err(format!("{s:?} is not a rate from 0 to 100000 events/s")),
    }
}

fn seconds(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && (0.0..=3600.0).contains(&v) => Ok(v),
        _ => Err(format!("{s:?} is not a number of seconds from 0 to 3600")),
    }
}

fn positive_seconds(s: &str) -> Result<f64, String> {
    match seconds(s)? {
        v if v >= 0.5 => Ok(v),
        _ => Err(format!("{s:?}: the measured window needs at least 0.5 s")),
    }
}

fn exponent(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && (0.0..=10.0).contains(&v) => Ok(v),
        _ => Err(format!("{s:?} is not a Zipf exponent from 0 to 10")),
    }
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::{Args, Cache, Database};

    #[test]
    fn the_command_line_is_well_formed() {
        Args::command().debug_assert();
    }

    #[test]
    fn defaults_are_the_issue_matrix() {
        let args = Args::try_parse_from(["spywatcher-bench"]).unwrap();
        assert_eq!(args.databases, [Database::Sqlite, Database::Postgres]);
        assert_eq!(args.caches, [Cache::Off, Cache::Embedded, Cache::Redis]);
        assert_eq!(args.rates, [1.0, 5.0, 20.0, 100.0]);
        assert_eq!((args.guilds, args.events, args.days), (50, 2_000_000, 30));
    }

    #[test]
    fn bad_values_name_their_flag() {
        for (flag, value) in [
            ("--rates", "1,x"),
            ("--skew", "-1"),
            ("--duration", "0"),
            ("--databases", "mysql"),
        ] {
            let err =
                Args::try_parse_from(["spywatcher-bench".to_owned(), format!("{flag}={value}")])
                    .unwrap_err()
                    .to_string();
            assert!(err.contains(flag), "{flag}: {err}");
        }
    }
}
