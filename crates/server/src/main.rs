use clap::Parser;
use spywatcher::cli::{Cli, Command};
use spywatcher::config::Settings;
use spywatcher::{commands, telemetry};

// glibc's allocator spent about a tenth of the server's time on the hot
// routes (arena locks between worker threads, consolidation); mimalloc's
// thread-local free lists do not.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    // A missing .env is fine; a broken one is reported by what it breaks.
    let _ = dotenvy::dotenv();
    let cli = Cli::parse();
    telemetry::init();
    match run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let settings = Settings::from_env()?;
    match &cli.command {
        Command::Serve { demo } => commands::serve::run(&settings, *demo).await,
        Command::Bot => commands::bot::run(&settings).await,
        Command::Seed(args) => commands::seed::run(&settings, args).await,
        Command::Migrate => commands::migrate::run(&settings).await,
        Command::Cache {
            action,
            server,
            token,
        } => commands::cache::run(&settings, action, server.as_deref(), token.as_deref()).await,
    }
}
