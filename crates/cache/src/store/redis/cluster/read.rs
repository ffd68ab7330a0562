//! Reads on a cluster, around the cluster client: each key's value fetched
//! from its master on the store's own read connection to it, one pipeline
//! of `GET`s per master, all masters at once.
//!
//! Why not through the cluster client: a read is the entry and its tags'
//! markers, three keys in three slots for an analytics entry, and redis-rs
//! sends a multi-key command as one request per *slot*, each through its
//! routing task with its own timer: the cache ran at 0.29× a raw cluster
//! `GET` that way (BENCHMARKS.md "Redis Cluster"). A pipeline per master on
//! a plain connection costs what a raw read does.
//!
//! Only masters of a verified map are read (the store's identity is the
//! masters' `run_id`s, `link.rs`): a master restarted from an older snapshot
//! breaks these connections, and is read again only once identified anew
//! and the journal window replayed into it. A `MOVED`, `ASK` or a broken
//! connection forgets the map, and the read is done again through the
//! cluster client, which follows redirections.

use std::sync::Arc;

use futures::future::try_join_all;
use redis::aio::MultiplexedConnection;

use super::Cluster;
use super::topology::Topology;
use crate::error::{CodecError, StoreError};

pub(crate) type Values = Vec<Option<Vec<u8>>>;

/// A read's view of the cluster: the map it was verified with.
pub(crate) struct DirectReader<'a> {
    cluster: &'a Cluster,
    topology: Arc<Topology>,
}

impl<'a> DirectReader<'a> {
    pub fn new(cluster: &'a Cluster, topology: Arc<Topology>) -> Self {
        DirectReader { cluster, topology }
    }

    /// The values of `keys`, in order (`None` for a missing key).
    pub async fn values(&self, keys: &[&str]) -> Result<Values, StoreError> {
        match self.direct(keys).await {
            Ok(values) => Ok(values),
            Err(_) => {
                self.cluster.topology.forget();
                let mut conn = self.cluster.connection().await?;
                let values: Values = redis::cmd("MGET").arg(keys).query_async(&mut conn).await?;
                Ok(values)
            }
        }
    }

    async fn direct(&self, keys: &[&str]) -> Result<Values, StoreError> {
        // Master index, its read connection, the keys' positions: at most
        // a few masters per read, so a list beats a map.
        let mut groups: Vec<(usize, MultiplexedConnection, Vec<usize>)> = Vec::with_capacity(3);
        for (i, key) in keys.iter().enumerate() {
            let (master, found) = self
                .topology
                .master_of(key.as_bytes())
                .ok_or_else(|| CodecError::Corrupt(format!("no master serves {key}")))?;
            match groups.iter_mut().find(|(m, ..)| *m == master) {
                Some((.., group)) => group.push(i),
                None => groups.push((master, found.read.clone(), vec![i])),
            }
        }
        let replies = try_join_all(groups.into_iter().map(|(_, mut conn, indices)| async move {
            let values: Values = if let [only] = indices[..] {
                vec![
                    redis::cmd("GET")
                        .arg(keys[only])
                        .query_async(&mut conn)
                        .await?,
                ]
            } else {
                let mut pipe = redis::pipe();
                for &i in &indices {
                    pipe.cmd("GET").arg(keys[i]);
                }
                pipe.query_async(&mut conn).await?
            };
            Ok::<_, StoreError>((indices, values))
        }))
        .await?;
        let mut values: Values = vec![None; keys.len()];
        for (indices, found) in replies {
            if found.len() != indices.len() {
                return Err(CodecError::Corrupt("short pipeline reply".into()).into());
            }
            for (i, value) in indices.into_iter().zip(found) {
                values[i] = value;
            }
        }
        Ok(values)
    }
}
