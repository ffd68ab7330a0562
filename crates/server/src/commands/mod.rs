//! One module per command of the CLI.

pub mod bot;
pub mod cache;
pub mod migrate;
pub mod seed;
pub mod serve;
