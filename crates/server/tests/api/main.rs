//! API tests: the real application over real HTTP, on SQLite and PostgreSQL,
//! with a private redis-server.

mod helpers;

mod admin;
mod analytics;
mod auth;
mod cache_bound;
mod events;
mod faults;
mod health;
mod input;
mod invalidation;
mod multi_instance;
mod outage;
mod ws;
