//! `spywatcher seed`, and the demo data of `serve --demo`.

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use spywatcher_analytics::{EventStore, GeneratorConfig, Summary, generate_into};

use crate::cli::SeedArgs;
use crate::config::Settings;
use crate::startup::connect_store;

pub async fn run(settings: &Settings, args: &SeedArgs) -> anyhow::Result<()> {
    let store = connect_store(&settings.database_url).await?;
    let config = GeneratorConfig {
        seed: args.seed,
        guilds: args.guilds,
        users: args.users,
        days: args.days,
        events: args.events,
        guild_skew: args.guild_skew,
        ..GeneratorConfig::default()
    };
    let summary = generate(&store, &config).await?;
    print_summary(&summary);
    Ok(())
}

/// Generates behind a progress bar on stderr.
pub async fn generate(store: &EventStore, config: &GeneratorConfig) -> anyhow::Result<Summary> {
    let bar = ProgressBar::new(config.events);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} events ({per_sec}, eta {eta})",
        )
        .context("progress bar template")?,
    );
    let summary = generate_into(store, config, |done, _| bar.set_position(done))
        .await
        .context("generating events")?;
    bar.finish_and_clear();
    Ok(summary)
}

pub fn print_summary(summary: &Summary) {
    println!(
        "Stored {} events in {:.1} s ({:.0} events/s). Guilds:",
        summary.events,
        summary.elapsed.as_secs_f64(),
        summary.events_per_second()
    );
    for guild in &summary.guilds {
        println!("  {}", guild.as_str());
    }
}
