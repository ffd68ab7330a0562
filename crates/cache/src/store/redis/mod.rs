//! The standalone Redis store: every operation is one round trip (a script or
//! a pipeline), whatever the number of entries under a tag. Reads use no
//! script: one `GET` of the entry, whose recorded tag versions are checked
//! against markers held in process and kept exact by Redis' client tracking
//! (`tracking.rs`); without a tracked connection, one `MGET` of the entry and
//! its tags' markers, checked here (`hints.rs`). Reads are served only by a
//! server this process has verified (`link.rs`).
//!
//! On a Redis Cluster (`cluster/`) the same store runs the operations whose
//! standalone form is one script over many slots as single-slot steps, and
//! its identity is that of the cluster's masters; everything else (reads,
//! leases, TTLs) is the code below, on the cluster client's connection
//! (`connection.rs`).

mod cluster;
mod connection;
mod hints;
mod keys;
mod link;
mod scripts;
mod tracking;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use redis::aio::ConnectionLike;
use redis::{AsyncCommands, Script, Value};

use self::cluster::Cluster;
use self::cluster::DirectReader;
pub(crate) use self::cluster::LazyCluster;
pub use self::cluster::MasterHealth;
use self::connection::Conn;
use self::hints::{Hint, Hints, TagEpochs};
use self::keys::KeyLayout;
use self::link::Link;
pub(crate) use self::link::{Identity, verifying};
use self::scripts::Scripts;
use self::tracking::{Check, TrackedReader};
use super::{Lookup, Versions};
use crate::codec::{self, Envelope, new_version};
use crate::error::{ConfigError, StoreError};
use crate::stats::MasterStats;

/// Figures read from Redis itself for [`CacheStats`](crate::CacheStats).
#[derive(Debug, Default, Clone)]
pub(crate) struct ServerInfo {
    pub used_memory_human: String,
    pub evicted_keys: u64,
    pub key_count: u64,
    /// On a cluster, each master's own figures (the above are their sums).
    pub masters: Vec<MasterStats>,
}

/// A value read for L1, and whether the entry was written under exactly
/// the tags the reader expected (L1 holds an entry only under its own tags).
pub(crate) struct Read {
    pub value: Bytes,
    pub same_tags: bool,
}

/// What the store talks to (both boxed: the store stays small).
enum Servers {
    Standalone(Box<Link>),
    Cluster(Box<Cluster>),
}

pub(crate) struct RedisStore {
    servers: Servers,
    identity: Arc<Identity>,
    keys: KeyLayout,
    scripts: Scripts,
    // Boxed: they are touched once per read, and keep the store small.
    hints: Box<Hints>,
    epochs: Box<TagEpochs>,
    tracked: Option<TrackedReader>,
}

impl RedisStore {
    /// Builds the store without waiting for Redis: a cache must start (and
    /// serve from its loaders) while Redis is down.
    pub fn new(
        url: &str,
        prefix: &str,
        connect_timeout: Duration,
        read_hints: usize,
        tracked_markers: usize,
    ) -> Result<Self, ConfigError> {
        let client = redis::Client::open(url).map_err(ConfigError::RedisUrl)?;
        let keys = KeyLayout::new(prefix);
        let identity = Identity::new();
        let tracked = TrackedReader::new(
            url,
            &keys.marker_prefix,
            connect_timeout,
            tracked_markers,
            identity.clone(),
        )
        .map_err(ConfigError::RedisUrl)?;
        Ok(RedisStore {
            servers: Servers::Standalone(Box::new(Link::new(
                client,
                connect_timeout,
                identity.clone(),
            ))),
            identity,
            keys,
            scripts: Scripts::new(),
            hints: Box::new(Hints::new(read_hints)),
            epochs: Box::new(TagEpochs::new()),
            tracked,
        })
    }

    /// The store on a Redis Cluster reached through `nodes` (URLs). Nothing
    /// is connected yet, as for [`new`](Self::new).
    pub fn cluster(
        nodes: &[String],
        prefix: &str,
        connect_timeout: Duration,
        op_timeout: Duration,
        read_hints: usize,
    ) -> Result<Self, ConfigError> {
        Ok(RedisStore {
            servers: Servers::Cluster(Box::new(Cluster::new(nodes, connect_timeout, op_timeout)?)),
            identity: Identity::new(),
            keys: KeyLayout::new(prefix),
            scripts: Scripts::new(),
            hints: Box::new(Hints::new(read_hints)),
            epochs: Box::new(TagEpochs::new()),
            tracked: None,
        })
    }

    /// A connection for the store's commands, to verified servers only (see
    /// `link.rs`); on a cluster, while the cluster's masters are the ones
    /// last verified.
    async fn conn(&self) -> Result<Conn, StoreError> {
        match &self.servers {
            Servers::Standalone(link) => Ok(Conn::Standalone(link.conn().await?)),
            Servers::Cluster(cluster) => {
                let conn = cluster.connection().await?;
                self.verified_topology(cluster).await?;
                Ok(Conn::Cluster(conn))
            }
        }
    }

    /// The servers this process has verified.
    pub fn identity(&self) -> &Arc<Identity> {
        &self.identity
    }

    /// Where a read's keys are fetched: the store's connection, or on a
    /// cluster each key's master directly (`cluster/read.rs`), under the
    /// same rule as [`conn`](Self::conn): verified servers only.
    async fn reader(&self) -> Result<Reader<'_>, StoreError> {
        match &self.servers {
            Servers::Standalone(_) => Ok(Reader::Conn(self.conn().await?)),
            Servers::Cluster(cluster) => {
                let topology = self.verified_topology(cluster).await?;
                Ok(Reader::Cluster(DirectReader::new(cluster, topology)))
            }
        }
    }

    /// The cluster's map once its masters are verified (waiting for the
    /// maintenance task to verify them if need be, as `link.rs` does for a
    /// standalone server).
    async fn verified_topology(
        &self,
        cluster: &Cluster,
    ) -> Result<Arc<cluster::Topology>, StoreError> {
        let topology = cluster.topology().await?;
        if self.identity.is_verified(&topology.identity) || link::is_verifying() {
            return Ok(topology);
        }
        self.identity.wait_verified(&topology.identity).await;
        cluster.topology().await
    }

    /// The identity of the server the store talks to now: its `run_id`, or
    /// on a cluster its masters' (read again now).
    pub async fn server(&self) -> Result<String, StoreError> {
        match &self.servers {
            Servers::Standalone(link) => link.server().await,
            Servers::Cluster(cluster) => Ok(cluster.refresh().await?.identity.to_string()),
        }
    }

    /// Whether the servers changed since they were last verified, looking
    /// now: on a cluster, a failover or a master restarted in place, which
    /// nothing else would notice (the cluster client follows them silently).
    /// A standalone connection notices by itself (`link.rs`).
    pub async fn changed(&self) -> Result<bool, StoreError> {
        match &self.servers {
            Servers::Standalone(_) => Ok(false),
            Servers::Cluster(cluster) => {
                let topology = cluster.refresh().await?;
                Ok(!self.identity.is_verified(&topology.identity))
            }
        }
    }

    /// On a cluster, each master and whether it answers; empty otherwise.
    pub async fn masters(&self) -> Result<Vec<MasterHealth>, StoreError> {
        match &self.servers {
            Servers::Standalone(_) => Ok(Vec::new()),
            Servers::Cluster(cluster) => cluster.health().await,
        }
    }

    /// `redis` or `redis-cluster`.
    pub fn kind(&self) -> &'static str {
        match &self.servers {
            Servers::Standalone(_) => "redis",
            Servers::Cluster(_) => "redis-cluster",
        }
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        let _: String = redis::cmd("PING")
            .query_async(&mut self.conn().await?)
            .await?;
        Ok(())
    }

    /// The entry's value if none of its tags was invalidated since it was
    /// written. A stale entry is left for the sweeper (or its TTL) to
    /// delete: reads stay read-only.
    pub async fn get(&self, key: &str) -> Result<Option<Bytes>, StoreError> {
        Ok(self.read(key).await?.map(Envelope::into_value))
    }

    /// [`get`](Self::get), for a reader that fills L1 with the value if
    /// it was written under `tags`.
    pub async fn get_for_fill(
        &self,
        key: &str,
        tags: &[String],
    ) -> Result<Option<Read>, StoreError> {
        Ok(self.read(key).await?.map(|envelope| Read {
            same_tags: envelope.tags_are(tags),
            value: envelope.into_value(),
        }))
    }

    /// The entry's envelope, if it is current.
    async fn read(&self, key: &str) -> Result<Option<Envelope>, StoreError> {
        let entry_key = self.keys.entry(key);
        if let Some(reader) = &self.tracked
            && let Some(mut conn) = reader.connection().await
        {
            // Right after this process invalidated one of the entry's tags (as
            // last seen): if that tag's marker is known to be gone, the entry
            // is stale, and the read costs no round trip at all. (Should the
            // entry have been written since under other tags, this is one
            // false miss: the hint is dropped.)
            if reader.holds_gone_markers()
                && let Some(hint) = self.hints.get(&entry_key)
                && hint.is_suspect(&self.epochs)
                && reader.any_gone(hint.tags())
            {
                self.hints.remove(&entry_key);
                return Ok(None);
            }
            return self.tracked_get(reader, &mut conn, &entry_key).await;
        }
        self.hinted_get(entry_key).await
    }

    /// One `GET` when the markers of the entry's tags are held here, then a
    /// `MGET` of those markers when they are not.
    async fn tracked_get(
        &self,
        reader: &TrackedReader,
        conn: &mut redis::aio::MultiplexedConnection,
        entry_key: &str,
    ) -> Result<Option<Envelope>, StoreError> {
        let envelope: Option<Vec<u8>> = conn.get(entry_key).await?;
        let Some(envelope) = envelope else {
            return Ok(None);
        };
        let envelope = codec::Envelope::parse(Bytes::from(envelope))?;
        let current = match reader.check(&envelope) {
            Check::Known(current) => current,
            Check::Unknown => {
                let marker_keys: Vec<String> = (0..envelope.tag_count())
                    .map(|i| self.keys.marker(&String::from_utf8_lossy(envelope.tag(i))))
                    .collect();
                let markers = reader.read_markers(conn, &envelope, &marker_keys).await?;
                envelope.is_current(&markers)
            }
        };
        Ok(current.then_some(envelope))
    }

    /// Without a tracked connection: one round trip when the entry's tags
    /// are known here (see `hints.rs`), two otherwise.
    async fn hinted_get(&self, entry_key: String) -> Result<Option<Envelope>, StoreError> {
        type Markers = Vec<Option<Vec<u8>>>;
        let hint = self.hints.get(&entry_key).filter(|h| !h.markers.is_empty());
        let mut reader = self.reader().await?;
        let suspect = hint.as_ref().is_some_and(|h| h.is_suspect(&self.epochs));
        if let (Some(hint), true) = (&hint, suspect) {
            // This process invalidated one of the tags since: if a marker is
            // gone, the entry (if still there) is stale; skip fetching it.
            if reader.count_existing(&hint.markers).await? < hint.markers.len() {
                self.hints.remove(&entry_key);
                return Ok(None);
            }
        }
        let (envelope, markers): (Option<Vec<u8>>, Option<Markers>) = match &hint {
            Some(hint) => {
                // One command for the entry and its markers: cheaper for
                // Redis and for the client than a pipeline of GET and MGET.
                let mut keys = Vec::with_capacity(1 + hint.markers.len());
                keys.push(entry_key.as_str());
                keys.extend(hint.markers.iter().map(String::as_str));
                let mut values = reader.values(&keys).await?;
                if values.is_empty() {
                    return Err(StoreError::from(crate::error::CodecError::Corrupt(
                        "empty MGET reply".into(),
                    )));
                }
                let envelope = values.remove(0);
                (envelope, Some(values))
            }
            None => (reader.value(&entry_key).await?, None),
        };
        let Some(envelope) = envelope else {
            return Ok(None);
        };
        let envelope = codec::Envelope::parse(Bytes::from(envelope))?;
        let markers = match markers {
            Some(markers) if hint.as_ref().is_some_and(|h| h.matches(&envelope)) => {
                if suspect {
                    let fresh = Hint::from_envelope(
                        &entry_key,
                        &envelope,
                        &self.keys.marker_prefix,
                        &self.epochs,
                    );
                    self.hints.put(fresh);
                }
                markers
            }
            _ if envelope.tag_count() == 0 => Vec::new(),
            _ => {
                // First read of this entry here, or its tags changed: read the
                // markers of the tags its envelope names.
                let hint = Hint::from_envelope(
                    &entry_key,
                    &envelope,
                    &self.keys.marker_prefix,
                    &self.epochs,
                );
                let keys: Vec<&str> = hint.markers.iter().map(String::as_str).collect();
                let markers = reader.values(&keys).await?;
                self.hints.put(hint);
                markers
            }
        };
        Ok(envelope.is_current(&markers).then_some(envelope))
    }

    pub async fn lookup(
        &self,
        key: &str,
        tags: &[String],
        ttl: Duration,
    ) -> Result<Lookup, StoreError> {
        if let Servers::Cluster(_) = &self.servers {
            return self.cluster_lookup(key, tags, ttl).await;
        }
        let mut invocation = self.scripts.lookup.key(self.keys.entry(key));
        invocation.arg(&self.keys.marker_prefix).arg(ttl_ms(ttl));
        for tag in tags {
            invocation.arg(tag).arg(new_version());
        }
        let reply: Vec<Value> = invocation.invoke_async(&mut self.conn().await?).await?;
        let mut reply = reply.into_iter();
        let hit: i64 = redis::from_redis_value(reply.next().unwrap_or(Value::Nil))?;
        if hit == 1 {
            let envelope: Vec<u8> = redis::from_redis_value(reply.next().unwrap_or(Value::Nil))?;
            return Ok(Lookup::Hit(codec::envelope_value(Bytes::from(envelope))?));
        }
        let versions = reply
            .map(redis::from_redis_value::<String>)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Lookup::Miss(Versions::Redis(versions)))
    }

    pub async fn set(
        &self,
        key: &str,
        value: &Bytes,
        ttl: Duration,
        tags: &[String],
        expected: Option<&[String]>,
    ) -> Result<bool, StoreError> {
        self.hint(key, tags);
        if let Servers::Cluster(_) = &self.servers {
            return self.cluster_set(key, value, ttl, tags, expected).await;
        }
        let cmd = self.set_command(key, value, ttl, tags, expected);
        let stored: i64 = self.eval(&self.scripts.set, &cmd).await?;
        Ok(stored == 1)
    }

    /// Remembers the tags an entry is being written under, for its reads.
    fn hint(&self, key: &str, tags: &[String]) {
        let entry_key = self.keys.entry(key);
        if self
            .hints
            .get(&entry_key)
            .is_some_and(|h| h.tags_are(tags) && !h.is_suspect(&self.epochs))
        {
            return;
        }
        let hint = Hint::new(&entry_key, tags, &self.keys.marker_prefix, &self.epochs);
        self.hints.put(hint);
    }

    fn set_command(
        &self,
        key: &str,
        value: &Bytes,
        ttl: Duration,
        tags: &[String],
        expected: Option<&[String]>,
    ) -> redis::Cmd {
        let mut cmd = evalsha(&self.scripts.set, 1);
        cmd.arg(self.keys.entry(key))
            .arg(&self.keys.marker_prefix)
            .arg(&self.keys.members_prefix)
            .arg(ttl_ms(ttl))
            .arg(value.as_ref());
        for (i, tag) in tags.iter().enumerate() {
            let expect = expected.and_then(|e| e.get(i)).map_or("", String::as_str);
            cmd.arg(tag).arg(new_version()).arg(expect);
        }
        cmd
    }

    /// Runs a script command, loading the script once if Redis lost it (a
    /// restart empties the script cache).
    async fn eval<T: redis::FromRedisValue>(
        &self,
        script: &Script,
        cmd: &redis::Cmd,
    ) -> Result<T, StoreError> {
        let mut conn = self.conn().await?;
        match cmd.query_async(&mut conn).await {
            Err(e) if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) => {
                script.prepare_invoke().load_async(&mut conn).await?;
                Ok(cmd.query_async(&mut conn).await?)
            }
            other => Ok(other?),
        }
    }

    /// Runs a pipeline of script commands, loading the scripts first if Redis
    /// lost them: EVALSHA inside a pipeline cannot fall back by itself.
    async fn eval_pipeline<T: redis::FromRedisValue>(
        &self,
        script: &Script,
        pipe: &redis::Pipeline,
    ) -> Result<T, StoreError> {
        let mut conn = self.conn().await?;
        match pipe.query_async(&mut conn).await {
            Err(e) if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) => {
                script.prepare_invoke().load_async(&mut conn).await?;
                Ok(pipe.query_async(&mut conn).await?)
            }
            other => Ok(other?),
        }
    }

    /// Stores many entries in one pipeline.
    pub async fn set_many(
        &self,
        entries: &[(String, Bytes, Duration, Vec<String>)],
    ) -> Result<u64, StoreError> {
        if entries.is_empty() {
            return Ok(0);
        }
        for (key, _, _, tags) in entries {
            self.hint(key, tags);
        }
        if let Servers::Cluster(cluster) = &self.servers {
            return self.cluster_set_many(cluster, entries).await;
        }
        let mut pipe = redis::pipe();
        for (key, value, ttl, tags) in entries {
            pipe.add_command(self.set_command(key, value, *ttl, tags, None));
        }
        let replies: Vec<i64> = self.eval_pipeline(&self.scripts.set, &pipe).await?;
        Ok(replies.into_iter().filter(|&r| r == 1).count() as u64)
    }

    pub async fn delete_many(&self, keys: &[String]) -> Result<u64, StoreError> {
        if keys.is_empty() {
            return Ok(0);
        }
        if let Servers::Cluster(cluster) = &self.servers {
            return self.cluster_delete_many(cluster, keys).await;
        }
        let redis_keys: Vec<String> = keys.iter().map(|k| self.keys.entry(k)).collect();
        let n: u64 = self.conn().await?.unlink(redis_keys).await?;
        Ok(n)
    }

    /// Invalidates every tag in one pipeline; each tag costs O(1). Returns
    /// the count of entries recorded under each tag, in order.
    pub async fn invalidate_tags(&self, tags: &[String]) -> Result<Vec<u64>, StoreError> {
        if tags.is_empty() {
            return Ok(Vec::new());
        }
        for tag in tags {
            self.epochs.bump(tag.as_bytes());
        }
        if let Servers::Cluster(cluster) = &self.servers {
            return self.cluster_invalidate_tags(cluster, tags).await;
        }
        let mut pipe = redis::pipe();
        for tag in tags {
            pipe.add_command(evalsha(&self.scripts.invalidate, 3))
                .arg(self.keys.marker(tag))
                .arg(self.keys.members(tag))
                .arg(&self.keys.sweep_list)
                .arg(self.keys.grave(tag));
        }
        self.eval_pipeline(&self.scripts.invalidate, &pipe).await
    }

    /// Deletes the keys under the prefix matching `glob` (SCAN, then UNLINK in batches).
    pub async fn clear_pattern(&self, glob: &str) -> Result<u64, StoreError> {
        if let Servers::Cluster(cluster) = &self.servers {
            return self.cluster_clear_pattern(cluster, glob).await;
        }
        let mut conn = self.conn().await?;
        let pattern = format!("{}{glob}", self.keys.prefix);
        let mut cursor: u64 = 0;
        let mut deleted = 0;
        loop {
            let (next, batch): (u64, Vec<Vec<u8>>) = scan(&mut conn, cursor, &pattern).await?;
            if !batch.is_empty() {
                let n: u64 = conn.unlink(batch).await?;
                deleted += n;
            }
            if next == 0 {
                return Ok(deleted);
            }
            cursor = next;
        }
    }

    /// Sweeps one batch of stale entries; `false` when there was nothing to sweep.
    pub async fn sweep(&self, batch: usize) -> Result<bool, StoreError> {
        if let Servers::Cluster(_) = &self.servers {
            return self.cluster_sweep(batch).await;
        }
        let examined: i64 = self
            .scripts
            .sweep
            .key(&self.keys.sweep_list)
            .arg(&self.keys.marker_prefix)
            .arg(batch)
            .arg(&self.keys.members_prefix)
            .invoke_async(&mut self.conn().await?)
            .await?;
        Ok(examined >= 0)
    }

    /// Takes the loading lease of `key` (for one `generation` of its tags'
    /// versions) for `lease` if nobody holds it.
    pub async fn try_lock(
        &self,
        key: &str,
        generation: u64,
        token: u64,
        lease: Duration,
    ) -> Result<bool, StoreError> {
        let taken: Option<String> = redis::cmd("SET")
            .arg(self.keys.lock(key, generation))
            .arg(token)
            .arg("NX")
            .arg("PX")
            .arg(ttl_ms(lease))
            .query_async(&mut self.conn().await?)
            .await?;
        Ok(taken.is_some())
    }

    /// Gives the lease back, only if it is still ours (it may have expired
    /// and gone to another loader).
    pub async fn unlock(&self, key: &str, generation: u64, token: u64) -> Result<(), StoreError> {
        let _: i64 = self
            .scripts
            .unlock
            .key(self.keys.lock(key, generation))
            .arg(token)
            .invoke_async(&mut self.conn().await?)
            .await?;
        Ok(())
    }

    /// The entry's remaining TTL (`None` if it is gone or has none).
    pub async fn pttl(&self, key: &str) -> Result<Option<Duration>, StoreError> {
        let ms: i64 = redis::cmd("PTTL")
            .arg(self.keys.entry(key))
            .query_async(&mut self.conn().await?)
            .await?;
        Ok((ms > 0).then(|| Duration::from_millis(ms as u64)))
    }

    pub async fn info(&self) -> Result<ServerInfo, StoreError> {
        if let Servers::Cluster(cluster) = &self.servers {
            return self.cluster_info(cluster).await;
        }
        let mut conn = self.conn().await?;
        let memory = memory_figures(&mut conn).await?;
        Ok(ServerInfo {
            used_memory_human: memory.used_human,
            evicted_keys: memory.evicted_keys,
            key_count: count_entries(&mut conn, &self.keys).await?,
            masters: Vec::new(),
        })
    }
}

/// One `SCAN` step over the keys matching `pattern`.
async fn scan<K: redis::FromRedisValue>(
    conn: &mut impl ConnectionLike,
    cursor: u64,
    pattern: &str,
) -> Result<(u64, Vec<K>), StoreError> {
    Ok(redis::cmd("SCAN")
        .arg(cursor)
        .arg("MATCH")
        .arg(pattern)
        .arg("COUNT")
        .arg(1000)
        .query_async(conn)
        .await?)
}

/// What one server's `INFO` says of its memory.
struct MemoryFigures {
    used_bytes: u64,
    used_human: String,
    evicted_keys: u64,
}

async fn memory_figures(conn: &mut impl ConnectionLike) -> Result<MemoryFigures, StoreError> {
    let memory: String = redis::cmd("INFO").arg("memory").query_async(conn).await?;
    let stats: String = redis::cmd("INFO").arg("stats").query_async(conn).await?;
    let number = |info: &str, name| info_field(info, name).and_then(|v| v.parse().ok());
    Ok(MemoryFigures {
        used_bytes: number(&memory, "used_memory").unwrap_or(0),
        used_human: info_field(&memory, "used_memory_human").unwrap_or_default(),
        evicted_keys: number(&stats, "evicted_keys").unwrap_or(0),
    })
}

/// The cache's entries (not its bookkeeping) on one server.
async fn count_entries(
    conn: &mut impl ConnectionLike,
    keys: &KeyLayout,
) -> Result<u64, StoreError> {
    let pattern = format!("{}*", keys.prefix);
    let mut cursor = 0;
    let mut count = 0;
    loop {
        let (next, batch): (u64, Vec<Vec<u8>>) = scan(conn, cursor, &pattern).await?;
        count += batch.iter().filter(|k| !keys.is_bookkeeping(k)).count() as u64;
        if next == 0 {
            return Ok(count);
        }
        cursor = next;
    }
}

/// How the store's connections are set up. Public (hidden) so that the
/// benchmarks compare against raw commands on an identical connection.
pub fn connection_config(connect_timeout: Duration) -> redis::AsyncConnectionConfig {
    link::connection_config(connect_timeout)
}

fn evalsha(script: &Script, key_count: usize) -> redis::Cmd {
    let mut cmd = redis::cmd("EVALSHA");
    cmd.arg(script.get_hash()).arg(key_count);
    cmd
}

fn ttl_ms(ttl: Duration) -> u64 {
    (ttl.as_millis() as u64).max(1)
}

fn info_field(info: &str, name: &str) -> Option<String> {
    info.lines().find_map(|line| {
        let (k, v) = line.split_once(':')?;
        (k == name).then(|| v.trim().to_string())
    })
}

/// See [`RedisStore::reader`].
enum Reader<'a> {
    Conn(Conn),
    Cluster(DirectReader<'a>),
}

impl Reader<'_> {
    /// The values of `keys`, in order: one `MGET` on a connection.
    async fn values(&mut self, keys: &[&str]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        match self {
            Reader::Conn(conn) => Ok(redis::cmd("MGET").arg(keys).query_async(conn).await?),
            Reader::Cluster(reader) => reader.values(keys).await,
        }
    }

    async fn value(&mut self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        match self {
            Reader::Conn(conn) => Ok(conn.get(key).await?),
            Reader::Cluster(reader) => Ok(reader.values(&[key]).await?.pop().flatten()),
        }
    }

    /// How many of `keys` exist: `EXISTS` on a connection, one integer, the
    /// cheapest reply there is.
    async fn count_existing(&mut self, keys: &[String]) -> Result<usize, StoreError> {
        match self {
            Reader::Conn(conn) => Ok(redis::cmd("EXISTS").arg(keys).query_async(conn).await?),
            Reader::Cluster(reader) => {
                let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
                let values = reader.values(&keys).await?;
                Ok(values.iter().filter(|v| v.is_some()).count())
            }
        }
    }
}
