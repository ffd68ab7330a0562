//! One database per backend, seeded once through the generator and shared
//! by every scenario on it (each scenario's events add to it: a few
//! thousand beside millions).

use std::time::Duration;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};
use spywatcher_analytics::{EventStore, GeneratorConfig, GuildId, generate_into, guild_quotas};
use spywatcher_testkit::postgres::TestDatabase;
use tempfile::TempDir;

use crate::cli::{Args, Database};

/// A seeded database; dropped (file or PostgreSQL database) with the value.
pub struct SeededDatabase {
    pub database: Database,
    /// The `DATABASE_URL` the servers get.
    pub url: String,
    pub seeding: Seeding,
    _storage: Storage,
}

/// Held only to be dropped with the database: the directory (and file)
/// is removed, the PostgreSQL database dropped.
#[expect(dead_code, reason = "held for its Drop")]
enum Storage {
    SqliteDir(TempDir),
    Postgres(TestDatabase),
}

/// How the seeding went.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Seeding {
    pub events: u64,
    pub seconds: f64,
    pub events_per_second: f64,
}

/// The generator's configuration for the knobs: the history ends at the
/// start of the current UTC day, as the demo's does.
pub fn generator_config(args: &Args) -> GeneratorConfig {
    GeneratorConfig {
        seed: args.seed,
        guilds: args.guilds,
        users: args.users,
        days: args.days,
        events: args.events,
        guild_skew: args.skew,
        ..GeneratorConfig::default()
    }
}

/// The guilds of the data set, largest first, with their sizes.
pub fn guilds_by_size(config: &GeneratorConfig) -> Vec<(GuildId, u64)> {
    // Generation order is size order: the generator's Zipf law is over the
    // guild's index.
    spywatcher_analytics::generated_guild_ids(config)
        .into_iter()
        .zip(guild_quotas(config))
        .collect()
}

/// Creates the database and fills it behind a progress bar.
pub async fn seed(
    database: Database,
    args: &Args,
    config: &GeneratorConfig,
) -> anyhow::Result<SeededDatabase> {
    let (url, storage) = match database {
        Database::Sqlite => {
            let dir = tempfile::Builder::new()
                .prefix("spywatcher-bench-")
                .tempdir()
                .context("creating a temporary directory for the SQLite database")?;
            let url = format!("sqlite://{}", dir.path().join("bench.db").display());
            (url, Storage::SqliteDir(dir))
        }
        Database::Postgres => {
            let created = tokio::time::timeout(
                Duration::from_secs(15),
                TestDatabase::create_for_process(&args.postgres_url, "spywatcher_bench_"),
            )
            .await
            .map_err(|_| anyhow::anyhow!("no answer within 15 s"))
            .and_then(|r| r)
            .with_context(|| {
                format!(
                    "--postgres-url {}: PostgreSQL does not answer or refuses to create a database \
                     (set --postgres-url or SPYWATCHER_BENCH_PG_URL, or run with --databases sqlite)",
                    redact(&args.postgres_url)
                )
            })?;
            (created.url().to_owned(), Storage::Postgres(created))
        }
    };
    let store = EventStore::connect(&url)
        .await
        .with_context(|| format!("opening the {} database", database.as_str()))?;
    let bar = ProgressBar::new(config.events);
    bar.set_style(
        ProgressStyle::with_template(&format!(
            "seeding {:<8} [{{elapsed_precise}}] {{wide_bar}} {{pos}}/{{len}} events ({{per_sec}}, eta {{eta}})",
            database.as_str()
        ))
        .context("progress bar template")?,
    );
    let summary = generate_into(&store, config, |done, _| bar.set_position(done))
        .await
        .with_context(|| format!("seeding the {} database", database.as_str()))?;
    bar.finish_and_clear();
    let seeding = Seeding {
        events: summary.events,
        seconds: summary.elapsed.as_secs_f64(),
        events_per_second: summary.events_per_second(),
    };
    eprintln!(
        "seeded {}: {} events in {:.1} s ({:.0} events/s)",
        database.as_str(),
        seeding.events,
        seeding.seconds,
        seeding.events_per_second
    );
    Ok(SeededDatabase {
        database,
        url,
        seeding,
        _storage: storage,
    })
}

/// The URL without its password, for messages.
pub fn redact(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return url.to_owned();
    };
    let rest = &url[scheme_end..];
    match (rest.find('@'), rest.find(':')) {
        (Some(at), Some(colon)) if colon < at => {
            format!(
                "{}{}:***{}",
                &url[..scheme_end],
                &rest[..colon],
                &rest[at..]
            )
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn passwords_stay_out_of_messages() {
        assert_eq!(
            redact("postgres://u:secret@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(
            redact("postgres://postgres@127.0.0.1:5432/postgres"),
            "postgres://postgres@127.0.0.1:5432/postgres"
        );
    }
}
