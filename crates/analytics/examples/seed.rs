//! Fills a database with synthetic events behind a progress bar.
//!
//! ```text
//! cargo run --release -p spywatcher-analytics --example seed -- [DATABASE_URL] [EVENTS] [GUILDS] [SEED]
//! ```
//!
//! DATABASE_URL defaults to `spywatcher.db` (SQLite). The real CLI
//! (`spywatcher seed`) calls the same library function.

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use spywatcher_analytics::{EventStore, GeneratorConfig, generate_into};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| args.get(i).map(String::as_str);
    let url = arg(0).unwrap_or("spywatcher.db");
    let mut config = GeneratorConfig::default();
    if let Some(n) = arg(1) {
        config.events = n.parse().context("EVENTS must be a number")?;
    }
    if let Some(n) = arg(2) {
        config.guilds = n.parse().context("GUILDS must be a number")?;
    }
    if let Some(n) = arg(3) {
        config.seed = n.parse().context("SEED must be a number")?;
    }

    let store = EventStore::connect(url)
        .await
        .with_context(|| format!("opening {url}"))?;
    let bar = ProgressBar::new(config.events);
    bar.set_style(ProgressStyle::with_template(
        "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} events ({per_sec}, eta {eta})",
    )?);
    let summary = generate_into(&store, &config, |done, _| bar.set_position(done)).await?;
    bar.finish();
    println!(
        "{} events into {} ({}) at {:.0} events/s; guilds:",
        summary.events,
        url,
        store.backend_name(),
        summary.events_per_second()
    );
    for g in &summary.guilds {
        println!("  {g}");
    }
    Ok(())
}
