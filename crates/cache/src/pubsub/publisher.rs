//! Where PUBLISH goes: one standalone Redis, or one master of a Redis
//! Cluster.
//!
//! A classic PUBLISH on any cluster node crosses the cluster bus to the
//! subscribers of every node (pinned in `tests/cluster_client.rs`). The
//! bus keeps the order of what one node sends, not across nodes, so every
//! PUBLISH of a service goes to one node: the master of the slot of its
//! channel prefix. Routed by their channels, as redis-rs does by default,
//! an L1 invalidation and the `cache:invalidated:{guild}` message published
//! after it could reach a subscriber the other way round, from two
//! masters. It also lets a batch go as one pipeline: redis-rs routes a
//! pipeline of PUBLISH by its channels as if they were keys and refuses
//! channels of several slots (CROSSSLOT, before anything is sent), while
//! the node itself takes PUBLISH of any channel.
//!
//! When that master fails (killed, failing over), a PUBLISH goes to any
//! other master instead: the messages that matter most then are the news
//! of invalidations the failing shard could not take, which other
//! instances must hear at once (`l1.rs`, `pending`). Only what is published
//! across the switch may be reordered, and only against what went to the
//! failing master just before.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redis::aio::ConnectionManager;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
use redis::{Pipeline, RedisResult};

use crate::store::redis::LazyCluster;

pub(super) enum Publisher {
    Standalone(ConnectionManager),
    /// Boxed: a cluster client is large, and one per service.
    Cluster(Box<ClusterPublisher>),
}

impl Publisher {
    /// On one Redis, through a connection that reconnects in the background.
    pub fn standalone(client: redis::Client, connect_timeout: Duration) -> RedisResult<Publisher> {
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(connect_timeout))
            .set_response_timeout(None)
            .set_number_of_retries(usize::MAX)
            .set_min_delay(Duration::from_millis(20))
            .set_max_delay(Duration::from_millis(500));
        let connection = ConnectionManager::new_lazy_with_config(client, config)?;
        Ok(Publisher::Standalone(connection))
    }

    /// On a Redis Cluster reached through `nodes`: every PUBLISH goes to
    /// the master of the slot of `wire_prefix`. Connects in the background.
    pub fn cluster(
        nodes: &[String],
        wire_prefix: &str,
        connect_timeout: Duration,
        op_timeout: Duration,
    ) -> RedisResult<Publisher> {
        let cluster = ClusterPublisher {
            client: LazyCluster::new(nodes, connect_timeout, op_timeout)?,
            route: Route::with_key(wire_prefix, SlotAddr::Master),
            first_try: op_timeout / 2,
            quiet_until: Arc::new(Mutex::new(None)),
            quiet_for: (op_timeout * 4).max(Duration::from_millis(200)),
        };
        // Early, so that the first publish finds the connection made rather
        // than spending its budget on the set-up.
        let early = cluster.clone();
        tokio::spawn(async move { early.connection().await });
        Ok(Publisher::Cluster(Box::new(cluster)))
    }

    /// One PUBLISH. The caller bounds it in time.
    pub async fn publish(&self, wire_channel: &str, payload: &[u8]) -> RedisResult<()> {
        let mut command = redis::cmd("PUBLISH");
        command.arg(wire_channel).arg(payload);
        match self {
            Publisher::Standalone(connection) => {
                let mut connection = connection.clone();
                command.query_async::<u64>(&mut connection).await?;
            }
            Publisher::Cluster(cluster) => {
                cluster.open()?;
                let mut connection = cluster.connection().await?;
                let route = RoutingInfo::SingleNode(cluster.single_node());
                let first = connection.route_command(command.clone(), route);
                if let Ok(Ok(_)) = tokio::time::timeout(cluster.first_try, first).await {
                    return Ok(());
                }
                cluster.failing();
                let other = RoutingInfo::SingleNode(SingleNodeRoutingInfo::RandomPrimary);
                connection.route_command(command, other).await?;
                cluster.answered();
            }
        }
        Ok(())
    }

    /// The commands of `pipeline` in one round trip. The caller bounds it
    /// in time.
    pub async fn send(&self, pipeline: Pipeline) -> RedisResult<()> {
        match self {
            Publisher::Standalone(connection) => {
                let mut connection = connection.clone();
                pipeline.query_async::<()>(&mut connection).await
            }
            Publisher::Cluster(cluster) => {
                cluster.open()?;
                let mut connection = cluster.connection().await?;
                let (route, count) = (cluster.single_node(), pipeline.len());
                // Elsewhere only if refused: a batch that is merely slow may
                // still be delivered, and sent twice it would be out of order.
                let first = connection.route_pipeline(pipeline.clone(), 0, count, route);
                if first.await.is_ok() {
                    return Ok(());
                }
                cluster.failing();
                let other = SingleNodeRoutingInfo::RandomPrimary;
                connection.route_pipeline(pipeline, 0, count, other).await?;
                cluster.answered();
                Ok(())
            }
        }
    }
}

#[derive(Clone)]
pub(super) struct ClusterPublisher {
    /// Connected on the first publish (or early, in the background), not
    /// at start: a cluster that is not reachable yet must not hold up the
    /// service's start.
    client: LazyCluster,
    /// Where every PUBLISH of this service goes...
    route: Route,
    /// Publishes are skipped until then: the cluster answered neither on
    /// the publishing master nor elsewhere (the caller's timeout cut the
    /// second try). Without it, every publish during a whole-cluster outage
    /// would wait out its timeout; the cache's breaker is no guide here (it
    /// opens when one shard fails, while the bus still works).
    quiet_until: Arc<Mutex<Option<Instant>>>,
    quiet_for: Duration,
    /// ...if it answers one PUBLISH within this; else any other master
    /// (module docs; the message may then arrive twice, which every
    /// receiver tolerates: an invalidation applied twice is one).
    first_try: Duration,
}

impl ClusterPublisher {
    async fn connection(&self) -> RedisResult<ClusterConnection> {
        self.client.connection().await
    }

    /// Refuses at once while publishes are skipped (see `quiet_until`).
    fn open(&self) -> RedisResult<()> {
        let quiet = self.quiet_until.lock().unwrap_or_else(|e| e.into_inner());
        match *quiet {
            Some(until) if Instant::now() < until => Err(std::io::Error::new(
                std::io::ErrorKind::NotConnected,
                "publishes skipped: the Redis Cluster did not answer the last one",
            )
            .into()),
            _ => Ok(()),
        }
    }

    /// The publishing master did not answer: its map may point at a master
    /// that died, so it is read afresh for the next publish; and publishes
    /// are skipped for a while, unless [`answered`](Self::answered) (the
    /// second try, elsewhere, got through).
    fn failing(&self) {
        self.client.reset();
        *self.quiet_until.lock().unwrap_or_else(|e| e.into_inner()) =
            Some(Instant::now() + self.quiet_for);
    }

    fn answered(&self) {
        *self.quiet_until.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    fn single_node(&self) -> SingleNodeRoutingInfo {
        SingleNodeRoutingInfo::SpecificNode(self.route)
    }
}
