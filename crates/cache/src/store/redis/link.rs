//! The store's connection to Redis, and which server is on the other end
//! (SPEC 1.2.11).
//!
//! A Redis that restarts from an older snapshot, or a replica promoted in
//! its place, may hold entries whose invalidation it never received. Such a
//! server has a new `run_id`. Every connection learns its server's `run_id`
//! when it is opened, and calls go only through a connection to a server
//! this process has *verified*: one into which the invalidation journal's
//! window has been replayed (or was known to be, by the journal). A call
//! that meets an unverified server asks the maintenance task to verify it
//! and waits (within its own call budget). Only the maintenance task itself
//! talks to an unverified server (it replays the window there): reads must
//! not see it before, and a write made before the replay would be undone by
//! it (a needless miss).
//!
//! Connections are opened here rather than by a connection manager so that
//! none can silently reconnect to another server: a connection whose server
//! went away fails, is dropped, and the next call opens (and identifies) a
//! new one.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::{AsyncConnectionConfig, Cmd, RedisFuture, Value};
use tokio::sync::{Notify, watch};

use crate::error::StoreError;

/// The servers this process has verified, shared by every connection of
/// the store (the ordinary one and the tracked reader's).
pub(crate) struct Identity {
    verified: watch::Sender<Option<Arc<str>>>,
    /// Wakes the maintenance task: a connection met an unverified server.
    pub wanted: Notify,
}

impl Identity {
    pub fn new() -> Arc<Identity> {
        Arc::new(Identity {
            verified: watch::channel(None).0,
            wanted: Notify::new(),
        })
    }

    pub fn is_verified(&self, run_id: &str) -> bool {
        self.verified.borrow().as_deref() == Some(run_id)
    }

    /// The server `run_id` is known to hold every invalidation of the journal.
    pub fn set_verified(&self, run_id: &str) {
        self.verified.send_replace(Some(Arc::from(run_id)));
    }

    /// Waits until `run_id` is verified, asking the maintenance task to do it.
    pub async fn wait_verified(&self, run_id: &str) {
        let mut verified = self.verified.subscribe();
        if verified.borrow().as_deref() == Some(run_id) {
            return;
        }
        self.wanted.notify_one();
        let _ = verified.wait_for(|v| v.as_deref() == Some(run_id)).await;
    }
}

pub(crate) fn connection_config(connect_timeout: Duration) -> AsyncConnectionConfig {
    AsyncConnectionConfig::new()
        .set_connection_timeout(Some(connect_timeout))
        // Our own per-call timeout and circuit breaker decide what a slow
        // Redis means.
        .set_response_timeout(None)
}

/// The `run_id` in the reply of `INFO server`.
pub(crate) async fn run_id(conn: &mut impl ConnectionLike) -> Result<String, StoreError> {
    let info: String = redis::cmd("INFO").arg("server").query_async(conn).await?;
    info.lines()
        .find_map(|line| line.strip_prefix("run_id:"))
        .map(|id| id.trim().to_string())
        .ok_or_else(|| {
            StoreError::from(crate::error::CodecError::Corrupt(
                "INFO server has no run_id".into(),
            ))
        })
}

tokio::task_local! {
    /// Set for the maintenance task, which verifies servers.
    static VERIFYING: ();
}

/// Is this the maintenance task, which may talk to unverified servers?
pub(crate) fn is_verifying() -> bool {
    VERIFYING.try_with(|_| ()).is_ok()
}

/// Runs `work` (the maintenance task's) with leave to talk to unverified servers.
pub(crate) async fn verifying<F: std::future::Future>(work: F) -> F::Output {
    VERIFYING.scope((), work).await
}

pub(crate) struct Link {
    client: redis::Client,
    config: AsyncConnectionConfig,
    identity: Arc<Identity>,
    state: Arc<LinkState>,
    /// One connection attempt at a time.
    connecting: tokio::sync::Mutex<()>,
}

struct LinkState {
    current: RwLock<Option<Open>>,
    next_id: AtomicU64,
}

#[derive(Clone)]
struct Open {
    conn: MultiplexedConnection,
    run_id: Arc<str>,
    id: u64,
}

/// A connection handed out by the [`Link`]: it reports a failure that
/// breaks the connection, so that the next call opens a new one.
pub(crate) struct LinkConnection {
    conn: MultiplexedConnection,
    state: Arc<LinkState>,
    id: u64,
}

impl Link {
    pub fn new(client: redis::Client, connect_timeout: Duration, identity: Arc<Identity>) -> Link {
        Link {
            client,
            config: connection_config(connect_timeout),
            identity,
            state: Arc::new(LinkState {
                current: RwLock::new(None),
                next_id: AtomicU64::new(0),
            }),
            connecting: tokio::sync::Mutex::new(()),
        }
    }

    /// A connection to a verified server (see the module docs); within
    /// [`verifying`], to whatever server answers.
    pub async fn conn(&self) -> Result<LinkConnection, StoreError> {
        let open = self.open().await?;
        if !self.identity.is_verified(&open.run_id) && !is_verifying() {
            self.identity.wait_verified(&open.run_id).await;
        }
        Ok(self.handle(open))
    }

    /// The `run_id` of the connection's server, opening a connection if needed.
    pub async fn server(&self) -> Result<String, StoreError> {
        Ok(self.open().await?.run_id.to_string())
    }

    fn handle(&self, open: Open) -> LinkConnection {
        LinkConnection {
            conn: open.conn,
            state: self.state.clone(),
            id: open.id,
        }
    }

    fn current(&self) -> Option<Open> {
        self.state
            .current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    async fn open(&self) -> Result<Open, StoreError> {
        if let Some(open) = self.current() {
            return Ok(open);
        }
        let _one_at_a_time = self.connecting.lock().await;
        if let Some(open) = self.current() {
            return Ok(open);
        }
        let mut conn = self
            .client
            .get_multiplexed_async_connection_with_config(&self.config)
            .await?;
        let run_id: Arc<str> = run_id(&mut conn).await?.into();
        let open = Open {
            conn,
            run_id,
            id: self.state.next_id.fetch_add(1, Ordering::Relaxed) + 1,
        };
        *self
            .state
            .current
            .write()
            .unwrap_or_else(|e| e.into_inner()) = Some(open.clone());
        Ok(open)
    }
}

impl LinkState {
    fn failed(&self, id: u64, error: &redis::RedisError) {
        if !error.is_unrecoverable_error() {
            return;
        }
        let mut current = self.current.write().unwrap_or_else(|e| e.into_inner());
        if current.as_ref().is_some_and(|open| open.id == id) {
            *current = None;
        }
    }
}

impl ConnectionLike for LinkConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            let reply = self.conn.req_packed_command(cmd).await;
            if let Err(e) = &reply {
                self.state.failed(self.id, e);
            }
            reply
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            let reply = self.conn.req_packed_commands(pipeline, offset, count).await;
            if let Err(e) = &reply {
                self.state.failed(self.id, e);
            }
            reply
        })
    }

    fn get_db(&self) -> i64 {
        self.conn.get_db()
    }
}
