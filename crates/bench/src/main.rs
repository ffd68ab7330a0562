//! `spywatcher-bench`: see `--help`, and the crate's `lib.rs` for the map.

use std::process::ExitCode;

use clap::Parser;
use spywatcher_bench::run::Outcome;

fn main() -> ExitCode {
    let args = spywatcher_bench::Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(spywatcher_bench::run(args)) {
        Ok(Outcome::Passed) => ExitCode::SUCCESS,
        Ok(Outcome::Failed) => ExitCode::from(1),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
