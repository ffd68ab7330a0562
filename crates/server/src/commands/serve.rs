//! `spywatcher serve [--demo]`

use spywatcher_analytics::{GeneratorConfig, generated_guild_ids};
use tracing::info;

use crate::commands::seed;
use crate::config::Settings;
use crate::startup::Application;

pub async fn run(settings: &Settings, demo: bool) -> anyhow::Result<()> {
    let app = Application::build(settings).await?;
    if demo {
        let store = &app.state().service.store;
        let config = GeneratorConfig::default();
        if store.event_count().await? == 0 {
            println!("Empty database: generating demo data...");
            seed::print_summary(&seed::generate(store, &config).await?);
        } else {
            println!("The database already holds events: demo data not generated.");
        }
        let guilds = generated_guild_ids(&config);
        if let Some(guild) = guilds.first() {
            println!(
                "Demo guilds: {}. Try:\n  curl -H \"Authorization: Bearer $ADMIN_TOKEN\" \
                 'http://127.0.0.1:{}/api/analytics/ghosts?guildId={}'",
                guilds
                    .iter()
                    .map(|g| g.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                app.port(),
                guild.as_str()
            );
        }
    }
    if let Some(token) = &app.generated_admin_token {
        println!(
            "No ADMIN_TOKEN configured. This run's admin token (shown once):\n  {token}\n\
             Set ADMIN_TOKEN to choose your own."
        );
    }
    info!(
        port = app.port(),
        "spywatcher listening on http://{}:{}",
        settings.host,
        app.port()
    );
    app.run_until_stopped(shutdown_signal()).await?;
    info!("spywatcher stopped");
    Ok(())
}

/// Ctrl-C or SIGTERM: stop accepting, let requests in flight finish.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = terminate => {}
    }
    info!("shutting down: finishing requests in flight");
}
