//! The Redis Cluster side of the store: the operations whose standalone
//! form is one script over keys of many slots, done here as single-slot
//! steps that keep the same key names (SPEC 1.2 holds for each step order
//! chosen below; the reasons are in the scripts and on each method).
//!
//! Commands of one key, and `MGET`/`EXISTS`/`UNLINK` of many, are shared
//! with the standalone store (`connection.rs`): the cluster client routes
//! them by slot, splits multi-key ones per slot, and follows `MOVED`/`ASK`
//! through failovers. Reads take the hinted path (`hints.rs`) with their keys
//! fetched around the cluster client (`read.rs`): one pipeline to each master
//! holding the entry or one of its tags' markers, in parallel.
//!
//! Why not the client-tracked path of a standalone Redis (`tracking.rs`)
//! here: it is exact because the push that announces a marker's change and
//! the reply to a later `GET` of the entry come over *one* connection, in
//! the order the server ran them. On a cluster the entry and its markers
//! live on different masters: the push from the marker's master can still
//! be in flight when the entry's master answers, after the invalidation
//! returned to its caller, and a held marker would let a stale entry
//! through. Closing that gap needs a round trip to the marker's master on
//! every read, which is what the `MGET` does anyway.
//!
//! What must survive a failover goes to the masters on connections of the
//! store's own (`topology.rs`) and counts as done only once a replica has it
//! (`WAIT`): tag invalidations and deletions. A promoted replica therefore
//! holds every invalidation that returned; one that was not acknowledged is a
//! failed call, journaled and applied again before Redis is read (`cache.rs`).

mod client;
mod read;
mod topology;

pub(crate) use self::client::LazyCluster;
pub(crate) use self::read::DirectReader;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use futures::future::{join_all, try_join_all};
use futures::stream::{self, StreamExt, TryStreamExt};
use redis::aio::MultiplexedConnection;
use redis::cluster_async::ClusterConnection;
use redis::{IntoConnectionInfo, Value};
use tracing::debug;

pub(crate) use self::topology::Topology;
use self::topology::{Master, Topologies};
use super::{RedisStore, ServerInfo, evalsha, ttl_ms};
use crate::codec::{self, Envelope, new_version};
use crate::error::{CodecError, ConfigError, StoreError};
use crate::invalidation::REPLAY_CHUNK;
use crate::stats::MasterStats;
use crate::store::{Lookup, Versions};

/// Entries written at once by `set_many`, each a few concurrent steps.
const SET_MANY_CONCURRENCY: usize = 32;

/// One master as `/health/ready` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MasterHealth {
    /// `host:port`.
    pub address: String,
    /// The slots it serves, e.g. `0-5460`.
    pub slots: String,
    /// Its replicas the cluster does not take for failed.
    pub replicas: usize,
    /// It answered a `PING` within the call timeout.
    pub up: bool,
}

pub(crate) struct Cluster {
    client: LazyCluster,
    pub topology: Topologies,
    /// `WAIT`'s timeout: how long a replica has to acknowledge an
    /// invalidation before the call counts as failed.
    ack_timeout: Duration,
}

impl Cluster {
    pub fn new(
        nodes: &[String],
        connect_timeout: Duration,
        op_timeout: Duration,
    ) -> Result<Cluster, ConfigError> {
        let template = nodes
            .first()
            .ok_or(ConfigError::NoClusterNodes)?
            .as_str()
            .into_connection_info()
            .map_err(ConfigError::RedisUrl)?;
        Ok(Cluster {
            client: LazyCluster::new(nodes, connect_timeout, op_timeout)
                .map_err(ConfigError::RedisUrl)?,
            topology: Topologies::new(template, super::link::connection_config(connect_timeout)),
            ack_timeout: (op_timeout / 2).max(Duration::from_millis(10)),
        })
    }

    /// The cluster client's connection, made on first use.
    pub async fn connection(&self) -> Result<ClusterConnection, StoreError> {
        Ok(self.client.connection().await?)
    }

    /// The topology, read now: the cluster's identity as it is. When the
    /// masters changed, the cluster client's connection is replaced (see
    /// [`LazyCluster::reset`]).
    pub async fn refresh(&self) -> Result<Arc<Topology>, StoreError> {
        let before = self.topology.current();
        let mut conn = self.connection().await?;
        let topology = self.topology.refresh(&mut conn).await?;
        if before.is_some_and(|before| before.addresses() != topology.addresses()) {
            self.client.reset();
        }
        Ok(topology)
    }

    /// The topology as last read (read now if there is none).
    pub async fn topology(&self) -> Result<Arc<Topology>, StoreError> {
        if let Some(topology) = self.topology.current() {
            return Ok(topology);
        }
        self.refresh().await
    }

    /// Each master as last seen, and whether it answers a `PING` on the
    /// store's own connection now.
    pub async fn health(&self) -> Result<Vec<MasterHealth>, StoreError> {
        let topology = self.topology().await?;
        Ok(join_all(topology.masters.iter().map(|master| async move {
            let mut conn = master.conn.clone();
            let ping = redis::cmd("PING");
            let pong =
                tokio::time::timeout(self.ack_timeout * 2, ping.query_async::<String>(&mut conn))
                    .await;
            MasterHealth {
                address: master.addr.clone(),
                slots: master
                    .slots
                    .iter()
                    .map(|&(a, b)| {
                        if a == b {
                            a.to_string()
                        } else {
                            format!("{a}-{b}")
                        }
                    })
                    .collect::<Vec<_>>()
                    .join(","),
                replicas: master.replicas,
                up: matches!(pong, Ok(Ok(_))),
            }
        }))
        .await)
    }

    /// Runs `pipe` on `master`'s own connection, then `WAIT`s for one of its
    /// replicas to hold what it wrote. A reply of `WAIT` below what the
    /// shard can give is a failed call: the caller journals the work. The
    /// replica gets one `ack_timeout` per [`REPLAY_CHUNK`] commands, as the
    /// call gets one op timeout.
    async fn acknowledged(
        &self,
        master: &Master,
        pipe: &mut redis::Pipeline,
        scripts: &[&redis::Script],
    ) -> Result<Vec<Value>, StoreError> {
        let wanted = master.replicas.min(1);
        if wanted > 0 {
            let chunks = u32::try_from(pipe.len().div_ceil(REPLAY_CHUNK).max(1)).unwrap_or(1);
            pipe.cmd("WAIT")
                .arg(wanted)
                .arg(ttl_ms(self.ack_timeout * chunks));
        }
        let mut values = self.on_master(master, pipe, scripts).await?;
        if wanted > 0 {
            let acked: i64 = redis::from_redis_value(values.pop().unwrap_or(Value::Nil))?;
            if acked < wanted as i64 {
                return Err(StoreError::Unacknowledged(master.addr.clone()));
            }
        }
        Ok(values)
    }

    /// Runs `pipe` on `master`'s own connection, `scripts` loaded there
    /// first: every script the store may send a master, whichever the
    /// pipeline uses (one flag says they are loaded).
    async fn on_master(
        &self,
        master: &Master,
        pipe: &redis::Pipeline,
        scripts: &[&redis::Script],
    ) -> Result<Vec<Value>, StoreError> {
        let mut conn: MultiplexedConnection = master.conn.clone();
        if !master.scripts_loaded.load(Ordering::Acquire) {
            // Before the first pipeline on this connection: a NOSCRIPT in it
            // would cost its WAIT too, and a second pipeline's.
            for script in scripts {
                script.prepare_invoke().load_async(&mut conn).await?;
            }
            master.scripts_loaded.store(true, Ordering::Release);
        }
        let mut reply: Result<Vec<Value>, redis::RedisError> = pipe.query_async(&mut conn).await;
        if let Err(e) = &reply
            && e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript)
        {
            for script in scripts {
                script.prepare_invoke().load_async(&mut conn).await?;
            }
            reply = pipe.query_async(&mut conn).await;
        }
        reply.map_err(|e| {
            // MOVED, ASK, a broken connection: the map is out of date.
            self.topology.forget();
            e.into()
        })
    }
}

/// Can `tag`'s marker, member set and handed-over sets share one slot? Not
/// when the tag is empty or begins with `}`: the hash tag would be empty and
/// each key would hash whole. Nothing is stored under such a tag on a
/// cluster (the write is refused), so there is nothing to invalidate.
fn slotted(tag: &str) -> bool {
    !tag.is_empty() && !tag.starts_with('}')
}

/// Groups items (an index of the caller's and a key) by the master serving
/// each item's key.
fn by_master<I>(
    topology: &Topology,
    keys: impl Iterator<Item = (I, String)>,
) -> Result<HashMap<usize, Vec<(I, String)>>, StoreError> {
    let mut groups: HashMap<usize, Vec<(I, String)>> = HashMap::new();
    for (i, key) in keys {
        let (master, _) = topology
            .master_of(key.as_bytes())
            .ok_or_else(|| CodecError::Corrupt(format!("no master serves the slot of {key}")))?;
        groups.entry(master).or_default().push((i, key));
    }
    Ok(groups)
}

impl RedisStore {
    /// The scripts sent to a master on its own connection.
    fn master_scripts(&self) -> [&redis::Script; 2] {
        [&self.scripts.tag_invalidate, &self.scripts.tag_set]
    }

    /// `lookup` on a cluster: the entry if current (the hinted read), else
    /// each tag's version, created if missing: one single-slot script per
    /// tag, all at once. Taking the versions before the loader runs is what
    /// refuses its result after an invalidation, as on a standalone Redis.
    pub(super) async fn cluster_lookup(
        &self,
        key: &str,
        tags: &[String],
        ttl: Duration,
    ) -> Result<Lookup, StoreError> {
        if let Some(envelope) = self.read(key).await? {
            return Ok(Lookup::Hit(envelope.into_value()));
        }
        let versions = try_join_all(tags.iter().map(|tag| async move {
            let mut conn = self.conn().await?;
            let version: String = self
                .scripts
                .tag_marker
                .key(self.keys.marker(tag))
                .arg(new_version())
                .arg(ttl_ms(ttl))
                .invoke_async(&mut conn)
                .await?;
            Ok::<_, StoreError>(version)
        }))
        .await?;
        Ok(Lookup::Miss(Versions::Redis(versions)))
    }

    /// `set` on a cluster: each tag's step (`tag_set.lua`), all at once,
    /// then the entry, recording the versions the steps returned. Nothing is
    /// written when a tag's version is not the expected one.
    pub(super) async fn cluster_set(
        &self,
        key: &str,
        value: &Bytes,
        ttl: Duration,
        tags: &[String],
        expected: Option<&[String]>,
    ) -> Result<bool, StoreError> {
        if let Some(tag) = tags.iter().find(|t| !slotted(t)) {
            return Err(StoreError::Unsupported(format!(
                "tag {tag:?} cannot be used on a Redis Cluster: a tag may not be empty or begin with '}}'"
            )));
        }
        let entry_key = self.keys.entry(key);
        let steps = try_join_all(tags.iter().enumerate().map(|(i, tag)| {
            let entry_key = &entry_key;
            async move {
                let expect = expected.and_then(|e| e.get(i)).map_or("", String::as_str);
                let mut conn = self.conn().await?;
                let version: Option<String> = self
                    .scripts
                    .tag_set
                    .key(self.keys.marker(tag))
                    .key(self.keys.members(tag))
                    .arg(entry_key)
                    .arg(new_version())
                    .arg(expect)
                    .arg(ttl_ms(ttl))
                    .invoke_async(&mut conn)
                    .await?;
                Ok::<_, StoreError>(version)
            }
        }))
        .await?;
        let Some(versions) = steps.into_iter().collect::<Option<Vec<String>>>() else {
            return Ok(false);
        };
        let envelope = codec::envelope(tags, &versions, value);
        let _: () = redis::cmd("SET")
            .arg(&entry_key)
            .arg(envelope)
            .arg("PX")
            .arg(ttl_ms(ttl))
            .query_async(&mut self.conn().await?)
            .await?;
        Ok(true)
    }

    /// `warm` on a cluster: the steps of `set` for every entry, a pipeline
    /// per master for each phase (all the tags' steps, then all the entries),
    /// instead of a few round trips per entry. If the map is out of date
    /// (`MOVED`), entry by entry through the cluster client instead.
    pub(super) async fn cluster_set_many(
        &self,
        cluster: &Cluster,
        entries: &[(String, Bytes, Duration, Vec<String>)],
    ) -> Result<u64, StoreError> {
        let entries: Vec<_> = entries
            .iter()
            .filter(|(key, _, _, tags)| {
                let unsupported = tags.iter().find(|t| !slotted(t));
                if let Some(tag) = unsupported {
                    debug!(
                        key,
                        tag, "not warmed: the tag has no slot of its own on a cluster"
                    );
                }
                unsupported.is_none()
            })
            .collect();
        match self.set_many_by_master(cluster, &entries).await {
            Err(StoreError::Redis(e)) if e.kind() != redis::ErrorKind::Io => {
                debug!(error = %e, "warming entry by entry: the cluster's map moved");
                stream::iter(entries)
                    .map(|(key, value, ttl, tags)| self.cluster_set(key, value, *ttl, tags, None))
                    .buffer_unordered(SET_MANY_CONCURRENCY)
                    .try_fold(
                        0,
                        |stored, done| async move { Ok(stored + u64::from(done)) },
                    )
                    .await
            }
            other => other,
        }
    }

    async fn set_many_by_master(
        &self,
        cluster: &Cluster,
        entries: &[&(String, Bytes, Duration, Vec<String>)],
    ) -> Result<u64, StoreError> {
        let topology = cluster.topology().await?;
        let entry_keys: Vec<String> = entries.iter().map(|(k, ..)| self.keys.entry(k)).collect();
        // Phase 1: every tag's step, each on its marker's master.
        let steps = entries.iter().enumerate().flat_map(|(e, (_, _, _, tags))| {
            (0..tags.len()).map(move |t| ((e, t), self.keys.marker(&tags[t])))
        });
        let mut versions: Vec<Vec<String>> = entries
            .iter()
            .map(|(_, _, _, tags)| vec![String::new(); tags.len()])
            .collect();
        let replies = try_join_all(by_master(&topology, steps)?.into_iter().map(
            |(master, steps)| {
                let master = topology.masters[master].clone();
                let entry_keys = &entry_keys;
                async move {
                    let mut pipe = redis::pipe();
                    for ((e, t), marker) in &steps {
                        let (_, _, ttl, tags) = entries[*e];
                        pipe.add_command(evalsha(&self.scripts.tag_set, 2))
                            .arg(marker)
                            .arg(self.keys.members(&tags[*t]))
                            .arg(&entry_keys[*e])
                            .arg(new_version())
                            .arg("")
                            .arg(ttl_ms(*ttl));
                    }
                    let values = cluster
                        .on_master(&master, &pipe, &self.master_scripts())
                        .await?;
                    Ok::<_, StoreError>((steps, values))
                }
            },
        ))
        .await?;
        for (steps, values) in replies {
            for (((e, t), _), value) in steps.into_iter().zip(values) {
                versions[e][t] = redis::from_redis_value(value)?;
            }
        }
        // Phase 2: every entry, on its own master, recording those versions.
        let writes = entry_keys.iter().cloned().enumerate();
        let stored = try_join_all(by_master(&topology, writes)?.into_iter().map(
            |(master, writes)| {
                let master = topology.masters[master].clone();
                let versions = &versions;
                async move {
                    let mut pipe = redis::pipe();
                    for (e, entry_key) in &writes {
                        let (_, value, ttl, tags) = entries[*e];
                        pipe.cmd("SET")
                            .arg(entry_key)
                            .arg(codec::envelope(tags, &versions[*e], value))
                            .arg("PX")
                            .arg(ttl_ms(*ttl))
                            .ignore();
                    }
                    cluster.on_master(&master, &pipe, &[]).await?;
                    Ok::<_, StoreError>(writes.len() as u64)
                }
            },
        ))
        .await?;
        Ok(stored.into_iter().sum())
    }

    /// Tag invalidation on a cluster: per master, one pipeline of the tags'
    /// single-slot scripts and a `WAIT` (see the module docs); then the
    /// handed-over member sets are listed for the sweeper.
    pub(super) async fn cluster_invalidate_tags(
        &self,
        cluster: &Cluster,
        tags: &[String],
    ) -> Result<Vec<u64>, StoreError> {
        let topology = cluster.topology().await?;
        let markers = tags
            .iter()
            .enumerate()
            .filter(|(_, tag)| slotted(tag))
            .map(|(i, tag)| (i, self.keys.marker(tag)));
        let groups = by_master(&topology, markers)?;
        let mut counts = vec![0u64; tags.len()];
        let mut graves = Vec::new();
        let replies = try_join_all(groups.into_iter().map(|(master, items)| {
            let master = topology.masters[master].clone();
            async move {
                let mut pipe = redis::pipe();
                let mut handed = Vec::with_capacity(items.len());
                for (i, marker) in &items {
                    let tag = &tags[*i];
                    let grave = self.keys.grave(tag);
                    pipe.add_command(evalsha(&self.scripts.tag_invalidate, 3))
                        .arg(marker)
                        .arg(self.keys.members(tag))
                        .arg(&grave);
                    handed.push((*i, grave));
                }
                let values = cluster
                    .acknowledged(&master, &mut pipe, &self.master_scripts())
                    .await?;
                Ok::<_, StoreError>((handed, values))
            }
        }))
        .await?;
        for (handed, values) in replies {
            for ((i, grave), value) in handed.into_iter().zip(values) {
                let n: u64 = redis::from_redis_value(value)?;
                counts[i] = n;
                if n > 0 {
                    graves.push(grave);
                }
            }
        }
        if !graves.is_empty() {
            // Memory only: a set not listed expires with its TTL.
            let listed: Result<i64, _> = redis::cmd("RPUSH")
                .arg(&self.keys.sweep_list)
                .arg(&graves)
                .query_async(&mut self.conn().await?)
                .await;
            if let Err(e) = listed {
                debug!(error = %e, "invalidated member sets not listed for the sweeper");
            }
        }
        Ok(counts)
    }

    /// Deletes entries on their masters, acknowledged by a replica.
    pub(super) async fn cluster_delete_many(
        &self,
        cluster: &Cluster,
        keys: &[String],
    ) -> Result<u64, StoreError> {
        let topology = cluster.topology().await?;
        let groups = by_master(
            &topology,
            keys.iter().map(|k| self.keys.entry(k)).enumerate(),
        )?;
        self.unlink_acknowledged(cluster, &topology, groups).await
    }

    async fn unlink_acknowledged(
        &self,
        cluster: &Cluster,
        topology: &Topology,
        groups: HashMap<usize, Vec<(usize, String)>>,
    ) -> Result<u64, StoreError> {
        let deleted = try_join_all(groups.into_iter().map(|(master, keys)| {
            let master = topology.masters[master].clone();
            async move {
                // One key a command: keys of one master may be in many slots.
                let mut pipe = redis::pipe();
                for (_, key) in &keys {
                    pipe.cmd("UNLINK").arg(key);
                }
                let values = cluster
                    .acknowledged(&master, &mut pipe, &self.master_scripts())
                    .await?;
                values
                    .into_iter()
                    .map(|v| Ok(redis::from_redis_value::<u64>(v)?))
                    .sum::<Result<u64, StoreError>>()
            }
        }))
        .await?;
        Ok(deleted.into_iter().sum())
    }

    /// `clear_pattern` on a cluster: SCAN every master, delete what it holds.
    pub(super) async fn cluster_clear_pattern(
        &self,
        cluster: &Cluster,
        glob: &str,
    ) -> Result<u64, StoreError> {
        let topology = cluster.topology().await?;
        let pattern = format!("{}{glob}", self.keys.prefix);
        let deleted = try_join_all(topology.masters.iter().map(|master| {
            let pattern = &pattern;
            let topology = &topology;
            async move {
                let mut deleted = 0;
                let mut conn = master.conn.clone();
                let mut cursor: u64 = 0;
                loop {
                    let (next, batch): (u64, Vec<String>) =
                        super::scan(&mut conn, cursor, pattern).await?;
                    if !batch.is_empty() {
                        let groups = by_master(topology, batch.into_iter().enumerate())?;
                        deleted += self.unlink_acknowledged(cluster, topology, groups).await?;
                    }
                    if next == 0 {
                        return Ok::<_, StoreError>(deleted);
                    }
                    cursor = next;
                }
            }
        }))
        .await?;
        Ok(deleted.into_iter().sum())
    }

    /// One batch of the sweeper on a cluster, from the client: the entries
    /// of a handed-over set that are stale are deleted (each only if it
    /// still holds what was found stale), and dropped from their other tags'
    /// member sets. `false` when there was nothing to sweep.
    pub(super) async fn cluster_sweep(&self, batch: usize) -> Result<bool, StoreError> {
        let mut conn = self.conn().await?;
        let set: Option<String> = redis::cmd("LINDEX")
            .arg(&self.keys.sweep_list)
            .arg(0)
            .query_async(&mut conn)
            .await?;
        let Some(set) = set else {
            return Ok(false);
        };
        let members: Vec<String> = redis::cmd("SPOP")
            .arg(&set)
            .arg(batch)
            .query_async(&mut conn)
            .await?;
        if members.is_empty() {
            let _: i64 = redis::cmd("LREM")
                .arg(&self.keys.sweep_list)
                .arg(1)
                .arg(&set)
                .query_async(&mut conn)
                .await?;
            return Ok(true);
        }
        let values: Vec<Option<Vec<u8>>> = redis::cmd("MGET")
            .arg(&members)
            .query_async(&mut conn)
            .await?;
        let found: Vec<(String, Envelope)> = members
            .into_iter()
            .zip(values)
            .filter_map(|(key, value)| Some((key, Envelope::parse(Bytes::from(value?)).ok()?)))
            .collect();
        let mut marker_keys: Vec<String> = found
            .iter()
            .flat_map(|(_, e)| (0..e.tag_count()).map(|i| self.keys.marker(&lossy(e.tag(i)))))
            .collect();
        marker_keys.sort_unstable();
        marker_keys.dedup();
        let markers: HashMap<String, Option<Vec<u8>>> = if marker_keys.is_empty() {
            HashMap::new()
        } else {
            let values: Vec<Option<Vec<u8>>> = redis::cmd("MGET")
                .arg(&marker_keys)
                .query_async(&mut conn)
                .await?;
            marker_keys.into_iter().zip(values).collect()
        };
        let stale = found.into_iter().filter(|(_, envelope)| {
            let current: Vec<Option<&Vec<u8>>> = (0..envelope.tag_count())
                .map(|i| {
                    markers
                        .get(&self.keys.marker(&lossy(envelope.tag(i))))
                        .and_then(Option::as_ref)
                })
                .collect();
            !envelope.is_current(&current)
        });
        join_all(stale.map(|(key, envelope)| async move {
            let mut conn = self.conn().await?;
            let deleted: i64 = self
                .scripts
                .unlink_stale
                .key(&key)
                .arg(envelope.header())
                .invoke_async(&mut conn)
                .await?;
            if deleted == 1 {
                for i in 0..envelope.tag_count() {
                    let _: i64 = redis::cmd("SREM")
                        .arg(self.keys.members(&lossy(envelope.tag(i))))
                        .arg(&key)
                        .query_async(&mut conn)
                        .await?;
                }
            }
            Ok::<_, StoreError>(())
        }))
        .await
        .into_iter()
        .collect::<Result<(), _>>()?;
        Ok(true)
    }

    /// Figures of every master, summed, and each master's own.
    pub(super) async fn cluster_info(&self, cluster: &Cluster) -> Result<ServerInfo, StoreError> {
        let topology = cluster.topology().await?;
        let keys = &self.keys;
        let masters = try_join_all(topology.masters.iter().map(|master| async move {
            let mut conn = master.conn.clone();
            let memory = super::memory_figures(&mut conn).await?;
            let key_count = super::count_entries(&mut conn, keys).await?;
            Ok::<_, StoreError>((master.addr.clone(), memory, key_count))
        }))
        .await?;
        let used: u64 = masters.iter().map(|(_, m, _)| m.used_bytes).sum();
        Ok(ServerInfo {
            used_memory_human: crate::stats::human_bytes(used),
            evicted_keys: masters.iter().map(|(_, m, _)| m.evicted_keys).sum(),
            key_count: masters.iter().map(|(.., keys)| keys).sum(),
            masters: masters
                .into_iter()
                .map(|(address, memory, key_count)| MasterStats {
                    address,
                    memory_used: crate::stats::human_bytes(memory.used_bytes),
                    evicted_keys: memory.evicted_keys,
                    key_count,
                })
                .collect(),
        })
    }
}

fn lossy(tag: &[u8]) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(tag)
}
