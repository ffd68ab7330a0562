//! `spywatcher migrate`

use crate::config::Settings;
use crate::startup::{connect_store, redact};

pub async fn run(settings: &Settings) -> anyhow::Result<()> {
    // Connecting applies the migrations.
    let store = connect_store(&settings.database_url).await?;
    println!(
        "Database schema is up to date ({}, {}).",
        store.backend_name(),
        redact(&settings.database_url)
    );
    Ok(())
}
