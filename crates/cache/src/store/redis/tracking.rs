//! Tag markers held in process and kept exact by Redis itself
//! (server-assisted client-side caching, `CLIENT TRACKING ON OPTIN`), so that
//! a cached read is a single `GET` of the entry: the versions its envelope
//! records are checked against markers already here.
//!
//! Reads go through one dedicated RESP3 connection with tracking on. Markers
//! are read on it with `CLIENT CACHING YES` just before their `MGET`, so Redis
//! remembers that this connection holds them, and when one changes (an
//! invalidation deletes it, it expires, it is evicted, `FLUSHALL`) Redis
//! pushes an `invalidate` message on the same connection. Entries are read
//! without that prefix: Redis tracks only markers, a few per tag.
//!
//! Why a marker held here is never older than what a read needs: Redis writes
//! the invalidation message into this connection's output the moment the
//! marker changes, so it reaches us *before* the reply to any command Redis
//! ran after the change. The connection's driver hands a push to
//! [`Shared::on_push`] synchronously and in order, before it completes the
//! replies that follow it. So when the reply to a `GET` of an entry arrives,
//! every marker change Redis made before that `GET` has already been applied
//! here, and the versions checked are at least as new as the entry read.
//!
//! The one race is a marker read that an invalidation overtakes: the reply
//! with the old version and the push for the change arrive in that order, and
//! the push may be applied before the reader stores what it read. Every push
//! bumps an epoch; a marker read is stored only if the epoch did not move
//! while it was in flight, under the same lock the push takes.
//!
//! Losing the connection loses Redis' memory of what we hold: the driver then
//! pushes a disconnection, which empties the table, and the next read opens a
//! new connection with an empty table. While no tracked connection is
//! available (connecting, Redis down, a server without RESP3), reads take the
//! path of `hints.rs` on the store's ordinary connection.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, PushInfo, PushKind, Value};
use tracing::debug;

use super::link::Identity;
use crate::codec::Envelope;
use crate::error::StoreError;

/// After a failed attempt to open the tracked connection, reads use the
/// ordinary path for this long before the next attempt.
const RETRY_AFTER: Duration = Duration::from_secs(1);

pub(crate) struct TrackedReader {
    client: redis::Client,
    connect_timeout: Duration,
    shared: Arc<Shared>,
    /// The open connection, if any, with the generation it belongs to and
    /// its server's `run_id`.
    conn: RwLock<Option<(u64, MultiplexedConnection, Arc<str>)>>,
    /// Reads use the connection only while its server is verified (`link.rs`).
    identity: Arc<Identity>,
    /// One connection attempt at a time; when the last one failed.
    connecting: tokio::sync::Mutex<Option<Instant>>,
}

/// What a read learned from the markers held here.
pub(crate) enum Check {
    /// Every marker the entry names is held: the entry is current or not.
    Known(bool),
    /// Some are not held: read them (see [`TrackedReader::read_markers`]).
    Unknown,
}

struct Shared {
    /// The tag part of marker keys: `<prefix>~t:{` ... `}`.
    marker_prefix: Vec<u8>,
    capacity: usize,
    table: Mutex<Table>,
    /// How many markers are held as gone: read without the lock, so that
    /// reads skip looking for them when there are none (the usual case).
    gone: AtomicUsize,
}

struct Table {
    /// Bumped by every invalidation message and every lost connection.
    epoch: u64,
    /// Bumped by every lost connection: a connection of an older generation
    /// is not used again.
    generation: u64,
    /// Tag -> its marker's version (16 hex digits), or `None`: no marker.
    versions: HashMap<Box<[u8]>, Option<[u8; 16]>>,
    /// Entries of `versions` that are `None`.
    gone: usize,
}

impl Table {
    fn insert(&mut self, tag: &[u8], version: Option<[u8; 16]>) {
        if let Some(None) = self.versions.insert(tag.into(), version) {
            self.gone -= 1;
        }
        if version.is_none() {
            self.gone += 1;
        }
    }

    fn remove(&mut self, tag: &[u8]) {
        if let Some(None) = self.versions.remove(tag) {
            self.gone -= 1;
        }
    }

    fn clear(&mut self) {
        self.versions.clear();
        self.gone = 0;
    }
}

impl TrackedReader {
    /// `capacity`: at most this many markers held (0: no tracked reads).
    pub fn new(
        url: &str,
        marker_prefix: &str,
        connect_timeout: Duration,
        capacity: usize,
        identity: Arc<Identity>,
    ) -> Result<Option<TrackedReader>, redis::RedisError> {
        if capacity == 0 {
            return Ok(None);
        }
        let separator = if url.contains('?') { '&' } else { '?' };
        let client = redis::Client::open(format!("{url}{separator}protocol=resp3"))?;
        Ok(Some(TrackedReader {
            client,
            connect_timeout,
            shared: Arc::new(Shared {
                marker_prefix: marker_prefix.as_bytes().to_vec(),
                capacity,
                table: Mutex::new(Table {
                    epoch: 0,
                    generation: 0,
                    versions: HashMap::new(),
                    gone: 0,
                }),
                gone: AtomicUsize::new(0),
            }),
            conn: RwLock::new(None),
            identity,
            connecting: tokio::sync::Mutex::new(None),
        }))
    }

    /// The tracked connection, opening it if needed; `None` while there is
    /// none to be had, or its server is not verified yet (the caller then
    /// reads the ordinary way, which waits for the verification).
    pub async fn connection(&self) -> Option<MultiplexedConnection> {
        if let Some(conn) = self.current() {
            return Some(conn);
        }
        if self.opened() {
            return None;
        }
        // Another read may be connecting: wait for it rather than open a
        // second connection.
        let mut last_failure = self.connecting.lock().await;
        if let Some(conn) = self.current() {
            return Some(conn);
        }
        let generation = self.shared.table().generation;
        if last_failure.is_some_and(|at| at.elapsed() < RETRY_AFTER) {
            return None;
        }
        match self.connect(generation).await {
            Ok((conn, run_id)) => {
                *last_failure = None;
                *self.conn.write().expect("not poisoned") =
                    Some((generation, conn.clone(), run_id.clone()));
                self.identity.is_verified(&run_id).then_some(conn)
            }
            Err(e) => {
                debug!(error = %e, "no tracked connection: reads check markers in Redis");
                *last_failure = Some(Instant::now());
                None
            }
        }
    }

    /// The open connection, unless it was lost (its generation is over) or
    /// its server is not verified.
    fn current(&self) -> Option<MultiplexedConnection> {
        let generation = self.shared.table().generation;
        match &*self.conn.read().expect("not poisoned") {
            Some((g, conn, run_id)) if *g == generation && self.identity.is_verified(run_id) => {
                Some(conn.clone())
            }
            _ => None,
        }
    }

    /// Is a connection of the current generation open (verified or not)?
    fn opened(&self) -> bool {
        let generation = self.shared.table().generation;
        matches!(&*self.conn.read().expect("not poisoned"), Some((g, ..)) if *g == generation)
    }

    async fn connect(
        &self,
        generation: u64,
    ) -> Result<(MultiplexedConnection, Arc<str>), StoreError> {
        let shared = Arc::downgrade(&self.shared);
        let on_push = move |push: PushInfo| -> Result<(), std::convert::Infallible> {
            if let Some(shared) = shared.upgrade() {
                shared.on_push(generation, push);
            }
            Ok(())
        };
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.connect_timeout))
            .set_response_timeout(None)
            .set_push_sender(on_push);
        let mut conn = self
            .client
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        let _: () = redis::cmd("CLIENT")
            .arg("TRACKING")
            .arg("ON")
            .arg("OPTIN")
            .query_async(&mut conn)
            .await?;
        let run_id = super::link::run_id(&mut conn).await?;
        Ok((conn, run_id.into()))
    }

    /// Checks an entry's recorded tag versions against the markers held.
    pub fn check(&self, envelope: &Envelope) -> Check {
        let table = self.shared.table();
        let mut current = true;
        for i in 0..envelope.tag_count() {
            match table.versions.get(envelope.tag(i)) {
                None => return Check::Unknown,
                Some(version) => {
                    current &= version.as_ref().map(|v| &v[..]) == Some(envelope.version(i));
                }
            }
        }
        Check::Known(current)
    }

    /// Are any markers held as gone? (Without the lock: a hint, which
    /// [`any_gone`](Self::any_gone) makes exact.)
    pub fn holds_gone_markers(&self) -> bool {
        self.shared.gone.load(Ordering::Relaxed) > 0
    }

    /// Is one of these tags' markers held as gone? Then every entry that
    /// recorded a version of that tag is stale.
    pub fn any_gone<'t>(&self, mut tags: impl Iterator<Item = &'t [u8]>) -> bool {
        let table = self.shared.table();
        tags.any(|tag| table.versions.get(tag) == Some(&None))
    }

    /// Reads the markers of an entry's tags on the tracked connection and
    /// holds them (unless an invalidation arrived meanwhile, or the table is
    /// full). Returns them in the order of the envelope's tags.
    pub async fn read_markers(
        &self,
        conn: &mut MultiplexedConnection,
        envelope: &Envelope,
        marker_keys: &[String],
    ) -> Result<Vec<Option<Vec<u8>>>, redis::RedisError> {
        let (epoch, room) = {
            let table = self.shared.table();
            (
                table.epoch,
                table.versions.len() + marker_keys.len() <= self.shared.capacity,
            )
        };
        let mut pipe = redis::pipe();
        if room {
            // Makes Redis track the markers the next command reads.
            pipe.cmd("CLIENT").arg("CACHING").arg("YES").ignore();
        }
        pipe.cmd("MGET").arg(marker_keys);
        let (markers,): (Vec<Option<Vec<u8>>>,) = pipe.query_async(conn).await?;
        if room {
            let tags = (0..envelope.tag_count()).map(|i| envelope.tag(i));
            self.shared.hold(epoch, tags.zip(&markers));
        }
        Ok(markers)
    }
}

impl Shared {
    fn table(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table
            .lock()
            .expect("no panics while holding the marker table")
    }

    /// Holds markers read while the epoch was `epoch`, unless a push arrived
    /// since (it may concern them). Returns whether they were held.
    fn hold<'a>(
        &self,
        epoch: u64,
        markers: impl Iterator<Item = (&'a [u8], &'a Option<Vec<u8>>)>,
    ) -> bool {
        let mut table = self.table();
        if table.epoch != epoch {
            return false;
        }
        for (tag, marker) in markers {
            let version = marker.as_deref().and_then(|m| <[u8; 16]>::try_from(m).ok());
            table.insert(tag, version);
        }
        self.gone.store(table.gone, Ordering::Relaxed);
        true
    }

    /// Called by the connection's driver, in order with the replies.
    fn on_push(&self, generation: u64, push: PushInfo) {
        let mut table = self.table();
        match push.kind {
            PushKind::Invalidate => {
                table.epoch += 1;
                match push.data.first() {
                    Some(Value::Array(keys)) => {
                        for key in keys {
                            if let Value::BulkString(key) = key
                                && let Some(tag) = self.tag_of(key)
                            {
                                table.remove(tag);
                            }
                        }
                    }
                    // `FLUSHALL`, `FLUSHDB`, or a form we do not know: forget all.
                    _ => table.clear(),
                }
            }
            PushKind::Disconnection if table.generation == generation => {
                table.epoch += 1;
                table.generation += 1;
                table.clear();
            }
            _ => {}
        }
        self.gone.store(table.gone, Ordering::Relaxed);
    }

    /// `<prefix>~t:{<tag>}` -> `<tag>`.
    fn tag_of<'k>(&self, marker_key: &'k [u8]) -> Option<&'k [u8]> {
        marker_key
            .strip_prefix(&self.marker_prefix[..])?
            .strip_suffix(b"}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shared() -> Shared {
        Shared {
            marker_prefix: b"p:~t:{".to_vec(),
            capacity: 100,
            table: Mutex::new(Table {
                epoch: 0,
                generation: 0,
                versions: HashMap::new(),
                gone: 0,
            }),
            gone: AtomicUsize::new(0),
        }
    }

    fn invalidate(keys: &[&str]) -> PushInfo {
        PushInfo {
            kind: PushKind::Invalidate,
            data: vec![Value::Array(
                keys.iter()
                    .map(|k| Value::BulkString(k.as_bytes().to_vec()))
                    .collect(),
            )],
        }
    }

    fn version(shared: &Shared, tag: &str) -> Option<Option<[u8; 16]>> {
        shared.table().versions.get(tag.as_bytes()).copied()
    }

    const V1: &[u8; 16] = b"0123456789abcdef";

    fn disconnection() -> PushInfo {
        PushInfo {
            kind: PushKind::Disconnection,
            data: vec![],
        }
    }

    #[test]
    fn a_marker_read_overtaken_by_an_invalidation_is_not_held() {
        let shared = shared();
        let read = Some(V1.to_vec());
        // The read was sent at epoch 0; the push for the change it raced
        // with was applied before the reader got to hold what it read.
        shared.on_push(0, invalidate(&["p:~t:{a}"]));
        assert!(!shared.hold(0, [(&b"a"[..], &read)].into_iter()));
        assert_eq!(version(&shared, "a"), None);
        // A read sent after the push is held.
        let epoch = shared.table().epoch;
        assert!(shared.hold(epoch, [(&b"a"[..], &read)].into_iter()));
        assert_eq!(version(&shared, "a"), Some(Some(*V1)));
    }

    #[test]
    fn pushes_forget_exactly_the_named_markers_and_absence_is_held_too() {
        let shared = shared();
        let (present, absent) = (Some(V1.to_vec()), None);
        let markers = [
            (&b"a"[..], &present),
            (&b"b"[..], &absent),
            (&b"c"[..], &present),
        ];
        assert!(shared.hold(0, markers.into_iter()));
        assert_eq!(
            version(&shared, "b"),
            Some(None),
            "a missing marker is held as missing"
        );
        // Keys outside the marker layout are ignored.
        shared.on_push(0, invalidate(&["p:~t:{a}", "p:entry", "other:~t:{c}"]));
        assert_eq!(version(&shared, "a"), None);
        assert_eq!(version(&shared, "c"), Some(Some(*V1)));
        // FLUSHALL / FLUSHDB: a null instead of keys.
        shared.on_push(
            0,
            PushInfo {
                kind: PushKind::Invalidate,
                data: vec![Value::Nil],
            },
        );
        assert_eq!(shared.table().versions.len(), 0);
        assert_eq!(shared.gone.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn losing_the_connection_forgets_everything_and_retires_it() {
        let shared = shared();
        let present = Some(V1.to_vec());
        assert!(shared.hold(0, [(&b"a"[..], &present)].into_iter()));
        // A disconnection of an already retired connection changes nothing.
        shared.on_push(7, disconnection());
        assert_eq!(version(&shared, "a"), Some(Some(*V1)));
        shared.on_push(0, disconnection());
        assert_eq!(version(&shared, "a"), None);
        assert_eq!(shared.table().generation, 1);
        assert!(!shared.hold(0, [(&b"a"[..], &present)].into_iter()));
    }
}
