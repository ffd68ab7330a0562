//! How the Redis rate limiter reaches Redis: a standalone server through a
//! `ConnectionManager`, or a Redis Cluster through redis-rs's cluster
//! client. The limiter has one code path over both: it runs one script
//! that touches one key (so on a cluster `EVALSHA` is routed to the master
//! of that key) and, while its breaker is open, asks whether Redis answers.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::{ErrorKind, RedisError, RedisResult, ScriptInvocation, Value};

pub(super) enum Link {
    Standalone(ConnectionManager),
    Cluster(Box<ClusterLink>),
}

impl Link {
    /// A standalone Redis; connects on first use, reconnects by itself.
    pub(super) fn standalone(url: &str, timeout: Duration) -> RedisResult<Link> {
        let client = redis::Client::open(url)?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(1);
        Ok(Link::Standalone(ConnectionManager::new_lazy_with_config(
            client, config,
        )?))
    }

    /// A Redis Cluster reached through `nodes` (URLs). Not connected yet:
    /// see [`Link::connect`].
    pub(super) fn cluster(nodes: &[String], timeout: Duration) -> RedisResult<Link> {
        // redis-rs's defaults (16 retries at least 1.28 s apart) would
        // keep one call going for minutes through a failover; the limiter
        // gives Redis `timeout` and then limits in process, so retries
        // must fit well inside it.
        let millis = timeout.as_millis().min(u128::from(u32::MAX)) as u64;
        let client = ClusterClient::builder(nodes.iter().map(String::as_str))
            .connection_timeout(timeout)
            .response_timeout(timeout)
            .retries(3)
            .min_retry_wait((millis / 10).max(1))
            .max_retry_wait((millis / 2).max(2))
            .build()?;
        Ok(Link::Cluster(Box::new(ClusterLink {
            client,
            setup_timeout: timeout.max(CLUSTER_SETUP_FLOOR),
            conn: Mutex::new(None),
        })))
    }

    /// Makes the connection when it has to be made before use (a
    /// cluster's). Bounded in time: redis-rs's cluster set-up can hang.
    pub(super) async fn connect(&self) -> RedisResult<()> {
        match self {
            Link::Standalone(_) => Ok(()),
            Link::Cluster(cluster) => cluster.connect().await.map(drop),
        }
    }

    /// Runs a script invocation; on a cluster it goes to the master of the
    /// script's (single) key.
    pub(super) async fn invoke<T: redis::FromRedisValue>(
        &self,
        invocation: &ScriptInvocation<'_>,
    ) -> RedisResult<T> {
        match self {
            Link::Standalone(conn) => invocation.invoke_async(&mut conn.clone()).await,
            Link::Cluster(cluster) => invocation.invoke_async(&mut cluster.current()?).await,
        }
    }

    /// Whether Redis answers within `timeout`: the standalone server, or
    /// every master of the cluster (see [`every_master_answers`]), since
    /// the limiter's keys are spread over all of them. A cluster connection
    /// that fails it is dropped, and the next ping sets up a fresh one: its
    /// view of the slots may be what is wrong.
    pub(super) async fn ping(&self, timeout: Duration) -> RedisResult<()> {
        match self {
            Link::Standalone(conn) => {
                let ping = redis::cmd("PING");
                within(timeout, ping.query_async::<String>(&mut conn.clone()))
                    .await
                    .map(drop)
            }
            Link::Cluster(cluster) => {
                let mut conn = match cluster.current() {
                    Ok(conn) => conn,
                    Err(_) => cluster.connect().await?,
                };
                let answer = within(timeout, every_master_answers(&mut conn)).await;
                if answer.is_err() {
                    cluster.forget();
                }
                answer
            }
        }
    }
}

/// Whether the cluster is `ok` and every master serving slots answers on
/// this connection. Not a `PING`: redis-rs sends a command for all masters
/// only to those it holds a connection to, so a master that died (and
/// whose replica is not promoted yet) would be skipped, not reported.
/// `INFO` answers per master, so the answers can be counted against
/// `cluster_size` (masters serving slots, as the cluster sees it).
async fn every_master_answers(conn: &mut ClusterConnection) -> RedisResult<()> {
    let info: String = redis::cmd("CLUSTER").arg("INFO").query_async(conn).await?;
    let field = |name: &str| {
        info.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
            .map(str::trim)
    };
    let not_ready = |detail: String| {
        Err(RedisError::from((
            ErrorKind::Io,
            "cluster not fully available",
            detail,
        )))
    };
    if field("cluster_state") != Some("ok") {
        return not_ready(format!(
            "cluster_state:{}",
            field("cluster_state").unwrap_or("?")
        ));
    }
    let size: usize = field("cluster_size")
        .and_then(|size| size.parse().ok())
        .unwrap_or(usize::MAX);
    let answers: HashMap<String, Value> =
        redis::cmd("INFO").arg("server").query_async(conn).await?;
    let answering = answers
        .values()
        .filter(|answer| !matches!(answer, Value::ServerError(_)))
        .count();
    if answering < size {
        return not_ready(format!("{answering} of {size} masters answer"));
    }
    Ok(())
}

/// `call`, or an error once `timeout` has passed.
async fn within<T>(
    timeout: Duration,
    call: impl Future<Output = RedisResult<T>>,
) -> RedisResult<T> {
    tokio::time::timeout(timeout, call)
        .await
        .unwrap_or_else(|_| {
            Err(RedisError::from((
                ErrorKind::Io,
                "no answer in time",
                format!("{timeout:?}"),
            )))
        })
}

/// The least time given to setting up a cluster connection (reaching a
/// node, reading the slot map, connecting to every master). It runs at
/// start and in probes, never while a request waits, so it may take longer
/// than one call.
const CLUSTER_SETUP_FLOOR: Duration = Duration::from_secs(1);

pub(super) struct ClusterLink {
    client: ClusterClient,
    setup_timeout: Duration,
    /// Set once a set-up succeeded; emptied when a probe finds it broken.
    conn: Mutex<Option<ClusterConnection>>,
}

impl ClusterLink {
    fn current(&self) -> RedisResult<ClusterConnection> {
        self.conn
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .ok_or_else(|| RedisError::from((ErrorKind::Io, "no cluster connection yet")))
    }

    async fn connect(&self) -> RedisResult<ClusterConnection> {
        let conn = within(self.setup_timeout, self.client.get_async_connection()).await?;
        *self.conn.lock().unwrap_or_else(|e| e.into_inner()) = Some(conn.clone());
        Ok(conn)
    }

    fn forget(&self) {
        *self.conn.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}
