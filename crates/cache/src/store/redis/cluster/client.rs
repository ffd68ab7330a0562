//! The redis-rs cluster client as the cache uses it (the store, and the
//! pub/sub publisher): retries bounded by a call's budget, a connection made
//! on first use within a bounded time, and replaced on demand.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::{IntoConnectionInfo, RedisResult};

/// Retries of one call. The defaults (16, at least 1.28 s apart) would have
/// one call outlast a failover many times (`tests/cluster_client.rs`); our
/// own per-call timeout and breaker decide what a slow cluster means.
const RETRIES: u32 = 3;
const MIN_RETRY_WAIT: Duration = Duration::from_millis(10);

/// A cluster client and its one connection (clones share it).
#[derive(Clone)]
pub(crate) struct LazyCluster {
    client: ClusterClient,
    connect_timeout: Duration,
    conn: Arc<RwLock<Option<ClusterConnection>>>,
    connecting: Arc<tokio::sync::Mutex<()>>,
}

impl LazyCluster {
    /// `nodes`: URLs of some of the cluster's nodes. Connects nothing yet: a
    /// cluster that is not reachable must not hold up a start.
    pub fn new(
        nodes: &[String],
        connect_timeout: Duration,
        op_timeout: Duration,
    ) -> RedisResult<LazyCluster> {
        let infos = nodes
            .iter()
            .map(|n| n.as_str().into_connection_info())
            .collect::<RedisResult<Vec<_>>>()?;
        let max_retry_wait = (op_timeout / 2).max(MIN_RETRY_WAIT);
        let client = ClusterClient::builder(infos)
            .retries(RETRIES)
            .min_retry_wait(MIN_RETRY_WAIT.as_millis() as u64)
            .max_retry_wait(max_retry_wait.as_millis() as u64)
            .connection_timeout(connect_timeout)
            .response_timeout(op_timeout.max(connect_timeout))
            .build()?;
        Ok(LazyCluster {
            client,
            connect_timeout,
            conn: Arc::new(RwLock::new(None)),
            connecting: Arc::new(tokio::sync::Mutex::new(())),
        })
    }

    /// The connection, made now if there is none (within a bounded time: its
    /// set-up can hang on an unresponsive node, and every node given may be
    /// tried in turn). A failed set-up is tried again by the next caller.
    pub async fn connection(&self) -> RedisResult<ClusterConnection> {
        if let Some(conn) = self.current() {
            return Ok(conn);
        }
        let _one_at_a_time = self.connecting.lock().await;
        if let Some(conn) = self.current() {
            return Ok(conn);
        }
        let budget = self.connect_timeout * 4;
        let conn = match tokio::time::timeout(budget, self.client.get_async_connection()).await {
            Ok(conn) => conn?,
            Err(_) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "no Redis Cluster connection within the connect timeout",
                )
                .into());
            }
        };
        *self.conn.write().unwrap_or_else(|e| e.into_inner()) = Some(conn.clone());
        Ok(conn)
    }

    /// Drops the connection: the next call makes a new one, with a slot map
    /// read afresh. redis-rs refreshes its map on `MOVED`, but a request to a
    /// master that died only reconnects to that same address, so slots whose
    /// master died before its replica took over can stay unreachable through
    /// the old connection: nothing at that address will answer `MOVED`.
    pub fn reset(&self) {
        *self.conn.write().unwrap_or_else(|e| e.into_inner()) = None;
    }

    fn current(&self) -> Option<ClusterConnection> {
        self.conn.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}
