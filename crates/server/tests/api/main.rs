//! API tests: the real application over real HTTP, on SQLite and PostgreSQL,
//! with a private redis-server or a private Redis Cluster.

mod helpers;

mod admin;
mod analytics;
mod auth;
mod cache_bound;
mod dashboard;
mod edges;
mod events;
mod failover;
mod faults;
mod gateway;
mod grace;
mod health;
mod input;
mod insights;
mod invalidation;
mod limits;
mod multi_instance;
mod outage;
mod warm_on_start;
mod ws;
