//! Test helpers for spywatcher: real servers, private to each test.
//!
//! Module map:
//! - [`redis`]: [`RedisServer`](redis::RedisServer), a standalone
//!   `redis-server` in a temporary directory on a free loopback port; kill,
//!   pause, resume and restart it to test outages. [`free_port`](redis::free_port)
//!   picks ports below 55535 whose cluster bus port (+10000) is free too.
//! - [`cluster`]: [`RedisCluster`](cluster::RedisCluster), a real Redis Cluster
//!   (3 masters + 3 replicas by default) of such servers, ready when every node
//!   reports `cluster_state:ok`; live topology (`masters`, `replicas`,
//!   `master_of`, `slot_of`), the `REDIS_CLUSTER_NODES` string, and failovers
//!   (`kill_master_of`, `fail_over`, `manual_failover`).
//! - [`postgres`]: fresh PostgreSQL databases for the database tests.
//! - [`browser`]: a headless Chromium over WebDriver (Debian's chromium and
//!   chromium-driver), with its console.
//! - [`gateway`]: [`FakeGateway`](gateway::FakeGateway), a Discord gateway
//!   on loopback (HELLO, IDENTIFY/READY, dispatches with sequence numbers,
//!   heartbeats, RECONNECT, RESUME with replay, INVALID SESSION, close
//!   codes) recording what the client sent, and
//!   [`payload`](gateway::payload) builders for realistic dispatches.

// The GUILD_CREATE builder is one large `json!`.
#![recursion_limit = "256"]

pub mod browser;
pub mod cluster;
pub mod gateway;
pub mod postgres;
pub mod redis;
