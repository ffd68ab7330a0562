//! `spywatcher bot`: the Discord gateway ingester without the HTTP API, for
//! deployments whose API instances scale separately (only one process per
//! shard may connect). `PORT` serves the probes only: `/health/live`,
//! `/health/ready` (with the gateway's state) and `/metrics`.

use anyhow::Context;
use tracing::info;

use crate::commands::serve::shutdown_signal;
use crate::config::Settings;
use crate::startup::Application;

pub async fn run(settings: &Settings) -> anyhow::Result<()> {
    let app = Application::build_bot(settings).await?;
    let health = app.state().gateway.clone().context("DISCORD_TOKEN")?;
    info!(
        port = app.port(),
        "spywatcher bot: ingesting from the Discord gateway; /health/ready and /metrics on http://{}:{}",
        settings.host,
        app.port()
    );
    let fatal = health.clone();
    app.run_until_stopped(async move {
        tokio::select! {
            _ = shutdown_signal() => {}
            _ = fatal.closed_for_good() => {}
        }
    })
    .await?;
    if health.is_closed_for_good() {
        anyhow::bail!(
            "the Discord gateway closed the connection for good: {}",
            health.status().last_error.unwrap_or_default()
        );
    }
    info!("spywatcher bot stopped");
    Ok(())
}
