//! `spywatcher bot`: the Discord gateway ingester alone, without the HTTP
//! API, for deployments whose API instances scale separately (only one
//! process per shard may connect).

use anyhow::Context;
use tracing::info;

use crate::commands::serve::shutdown_signal;
use crate::config::{ConfigError, Settings};
use crate::startup::{build_service, start_gateway, stop_gateway};

pub async fn run(settings: &Settings) -> anyhow::Result<()> {
    if settings.discord.is_none() {
        return Err(ConfigError {
            variable: "DISCORD_TOKEN",
            message: "spywatcher bot needs the bot's token (see README.md, Discord gateway)".into(),
        }
        .into());
    }
    let service = build_service(settings).await?;
    let mut gateway = start_gateway(settings, &service).context("DISCORD_TOKEN")?;
    let health = gateway.health();
    tokio::select! {
        _ = shutdown_signal() => {
            stop_gateway(gateway).await;
            info!("spywatcher bot stopped");
            Ok(())
        }
        _ = gateway.closed() => {
            let error = health.status().last_error.unwrap_or_default();
            stop_gateway(gateway).await;
            anyhow::bail!("the Discord gateway closed the connection for good: {error}")
        }
    }
}
