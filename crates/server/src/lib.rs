//! spywatcher: the service that joins the event store and analytics
//! (`spywatcher-analytics`) with the cache layer (`spywatcher-cache`) behind
//! an HTTP API.
//!
//! # Layout
//! - [`config`]: settings from the environment (SPEC 6), parsed once.
//! - [`startup`]: [`startup::Application::build`] makes the whole service
//!   from settings; `main` and the API tests start it the same way.
//! - [`http_server`]: the accept loop: HTTP/1.1 connections with header,
//!   body and request timeouts, under a cap on open connections.
//! - [`service`]: analytics through the cache (keys, TTLs, tags of SPEC
//!   2.3), ingestion with precise invalidation (SPEC 2.4), and the database
//!   journal of invalidations (pending ones, and applied ones kept for the
//!   retention window) with the shared Redis identity; the pub/sub helpers
//!   of SPEC 3 and the hub that pushes a guild's invalidations and fresh
//!   analytics to its WebSocket subscribers (`service/realtime/`); reads
//!   counted per guild and flushed to the database (`service/read_counts.rs`),
//!   from which `CACHE_WARM_ON_START` warms the busiest guilds in the
//!   background at start (`service/warm_on_start.rs`). No HTTP in it.
//! - [`routes`]: thin HTTP handlers, one module per URL subtree
//!   (`routes/admin/monitoring/cache.rs` serves `/api/admin/monitoring/cache/*`,
//!   `routes/ws.rs` the WebSocket `/ws`).
//! - [`auth`], [`rate_limit`], [`error`]: bearer tokens and roles (failed
//!   ones counted and blocked per address, `auth/failures.rs`), 429s (a
//!   cache miss weighing more than a hit; Redis behind a breaker), and
//!   every error as `{"error", "message"}`. `routes/framing.rs` reads a
//!   request body only when it is JSON, uncompressed and within the limit.
//! - [`cli`] and [`commands`]: `serve [--demo]`, `bot`, `seed`, `migrate`,
//!   `cache {stats,clear,invalidate}`. With `DISCORD_TOKEN`, `serve` also
//!   runs the Discord gateway ingester (`spywatcher-gateway`) on the
//!   service's own ingestion path (`service/gateway.rs`); `bot` runs it
//!   alone.

pub mod auth;
pub mod cli;
pub mod commands;
pub mod config;
pub mod error;
pub mod http_server;
pub mod rate_limit;
pub mod routes;
pub mod service;
pub mod startup;
pub mod state;
pub mod telemetry;
