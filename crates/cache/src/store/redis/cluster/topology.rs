//! The cluster as the store sees it: its masters, the slots each serves, the
//! server each one is (`run_id`), and a connection of the store's own to
//! each.
//!
//! Why connections of our own beside the cluster client's: an invalidation
//! counts as done only once a replica of its shard acknowledged it (`WAIT`),
//! and `WAIT` waits for the writes of *its own connection*, blocking that
//! connection meanwhile. So the writes that must be acknowledged (tag
//! invalidations, deletions) go to the master on a connection nothing else
//! queues behind.
//!
//! Why a topology at all: the cluster's identity, for the journal (SPEC
//! 1.2.11), is the set of its masters' `run_id`s. A failover or a master
//! restarted from an older snapshot changes it, and the journal window is
//! replayed before reads go on (`maintenance.rs`). The maintenance task
//! refreshes the map at every tick; a call that meets `MOVED`, `ASK` or a
//! broken connection forgets it, and the next call reads it again.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::{AsyncConnectionConfig, ConnectionAddr, ConnectionInfo};

use crate::error::{CodecError, StoreError};
use crate::store::redis::link::run_id;

/// Number of hash slots in a Redis Cluster.
pub(crate) const SLOTS: usize = 16384;
const UNSERVED: u16 = u16::MAX;

/// A master as last seen.
pub(crate) struct Master {
    /// The cluster's id of the node.
    pub id: String,
    /// `host:port`.
    pub addr: String,
    /// The server now at that address (a restart changes it).
    pub run_id: Arc<str>,
    /// Its replicas that the cluster does not take for failed: an
    /// invalidation waits for one of them (none: nothing to wait for, and
    /// nothing that could be promoted without it).
    pub replicas: usize,
    /// The slot ranges it serves, inclusive.
    pub slots: Vec<(usize, usize)>,
    /// The store's own connection to it for writes that a replica must
    /// acknowledge (see the module docs).
    pub conn: MultiplexedConnection,
    /// And for reads (`read.rs`), which must not queue behind a `WAIT`.
    pub read: MultiplexedConnection,
    /// The invalidation script has been loaded on this server.
    pub scripts_loaded: AtomicBool,
}

pub(crate) struct Topology {
    pub masters: Vec<Arc<Master>>,
    /// Slot → index in `masters`.
    owner: Box<[u16]>,
    /// The masters' `run_id`s, sorted and joined: what the journal records
    /// as the server it replayed its window into.
    pub identity: Arc<str>,
}

impl Topology {
    /// The masters' addresses, sorted.
    pub fn addresses(&self) -> Vec<&str> {
        let mut addresses: Vec<&str> = self.masters.iter().map(|m| m.addr.as_str()).collect();
        addresses.sort_unstable();
        addresses
    }

    /// The master serving `key`'s slot, if any serves it.
    pub fn master_of(&self, key: &[u8]) -> Option<(usize, &Arc<Master>)> {
        let index = self.owner[usize::from(slot(key))];
        (index != UNSERVED).then(|| (usize::from(index), &self.masters[usize::from(index)]))
    }
}

/// The slot of a key (CRC16 of its hash tag, or of the whole key).
pub(crate) fn slot(key: &[u8]) -> u16 {
    crc16::State::<crc16::XMODEM>::calculate(hash_tag(key)) % SLOTS as u16
}

/// The part of a key that chooses its slot: between the first `{` and the
/// next `}` when that is not empty, else the whole key.
fn hash_tag(key: &[u8]) -> &[u8] {
    if let Some(open) = key.iter().position(|&b| b == b'{')
        && let Some(len) = key[open + 1..].iter().position(|&b| b == b'}')
        && len > 0
    {
        return &key[open + 1..open + 1 + len];
    }
    key
}

/// The topology, read again when forgotten.
pub(crate) struct Topologies {
    template: ConnectionInfo,
    config: AsyncConnectionConfig,
    current: RwLock<Option<Arc<Topology>>>,
    /// Bumped by every refresh: a caller that waited for another's refresh
    /// takes its result rather than refreshing again.
    generation: AtomicU64,
    refreshing: tokio::sync::Mutex<()>,
}

impl Topologies {
    /// `template`: how to reach any node (password, TLS); the address is
    /// replaced by each master's.
    pub fn new(template: ConnectionInfo, config: AsyncConnectionConfig) -> Topologies {
        Topologies {
            template,
            config,
            current: RwLock::new(None),
            generation: AtomicU64::new(0),
            refreshing: tokio::sync::Mutex::new(()),
        }
    }

    pub fn current(&self) -> Option<Arc<Topology>> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The map is out of date (a `MOVED`, a broken connection): the next
    /// call reads it again.
    pub fn forget(&self) {
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// Reads the map again through `asker` (the cluster client, which asks
    /// some node), keeping the connections of masters that still answer.
    pub async fn refresh(
        &self,
        asker: &mut impl ConnectionLike,
    ) -> Result<Arc<Topology>, StoreError> {
        let seen = self.generation.load(Ordering::Acquire);
        let _one_at_a_time = self.refreshing.lock().await;
        if self.generation.load(Ordering::Acquire) != seen
            && let Some(topology) = self.current()
        {
            return Ok(topology);
        }
        let nodes: String = redis::cmd("CLUSTER")
            .arg("NODES")
            .query_async(asker)
            .await?;
        let listed = parse_nodes(&nodes);
        let previous = self.current();
        let mut serving: Vec<&Node> = listed
            .iter()
            .filter(|n| n.is_master && !n.failed && !n.slots.is_empty())
            .collect();
        // In slot order: reports list the masters as the slots run.
        serving.sort_by_key(|n| n.slots.first().map(|&(first, _)| first));
        // Every master at once: a refresh costs one round trip, not one per master.
        let connections = futures::future::join_all(serving.iter().map(|node| async {
            let known = previous.as_ref().and_then(|p| {
                p.masters
                    .iter()
                    .find(|m| m.id == node.id && m.addr == node.addr)
            });
            if let Some(kept) = match known {
                Some(known) => still_there(known).await,
                None => None,
            } {
                return Ok(kept);
            }
            self.open(&node.addr).await
        }))
        .await;
        let mut masters = Vec::new();
        let mut owner = vec![UNSERVED; SLOTS].into_boxed_slice();
        for (node, connection) in serving.into_iter().zip(connections) {
            let Opened {
                run_id,
                conn,
                read,
                scripts_loaded,
            } = connection?;
            let replicas = listed
                .iter()
                .filter(|r| r.master_id.as_deref() == Some(node.id.as_str()) && !r.failed)
                .count();
            let index = u16::try_from(masters.len()).unwrap_or(UNSERVED);
            for &(first, last) in &node.slots {
                for slot in first..=last.min(SLOTS - 1) {
                    owner[slot] = index;
                }
            }
            masters.push(Arc::new(Master {
                id: node.id.clone(),
                addr: node.addr.clone(),
                run_id,
                replicas,
                slots: node.slots.clone(),
                conn,
                read,
                scripts_loaded: AtomicBool::new(scripts_loaded),
            }));
        }
        // A map with slots no live master serves is a cluster between two
        // states (a master failed, its replica not promoted yet): not one to
        // verify and let reads through to. Calls keep the last whole map;
        // those that reach the lost shard fail, and the breaker decides.
        let unserved = owner.iter().filter(|&&o| o == UNSERVED).count();
        if unserved > 0 {
            return Err(CodecError::Corrupt(format!(
                "{unserved} slots have no live master (a failover under way?)"
            ))
            .into());
        }
        let mut run_ids: Vec<&str> = masters.iter().map(|m| &*m.run_id).collect();
        run_ids.sort_unstable();
        let topology = Arc::new(Topology {
            identity: Arc::from(run_ids.join(",")),
            masters,
            owner,
        });
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Some(topology.clone());
        self.generation.fetch_add(1, Ordering::AcqRel);
        Ok(topology)
    }

    /// New connections to `addr`, and the `run_id` of the server there.
    async fn open(&self, addr: &str) -> Result<Opened, StoreError> {
        let (host, port) = addr
            .rsplit_once(':')
            .and_then(|(host, port)| Some((host.to_string(), port.parse::<u16>().ok()?)))
            .ok_or_else(|| CodecError::Corrupt(format!("CLUSTER NODES address {addr:?}")))?;
        let target = match self.template.addr() {
            ConnectionAddr::TcpTls {
                insecure,
                tls_params,
                ..
            } => ConnectionAddr::TcpTls {
                host,
                port,
                insecure: *insecure,
                tls_params: tls_params.clone(),
            },
            _ => ConnectionAddr::Tcp(host, port),
        };
        let info = self.template.clone().set_addr(target);
        let client = redis::Client::open(info)?;
        let (conn, read) = futures::future::try_join(
            client.get_multiplexed_async_connection_with_config(&self.config),
            client.get_multiplexed_async_connection_with_config(&self.config),
        )
        .await?;
        let mut identify = conn.clone();
        Ok(Opened {
            run_id: run_id(&mut identify).await?.into(),
            conn,
            read,
            scripts_loaded: false,
        })
    }
}

/// A master's connections, and the server they reach.
struct Opened {
    run_id: Arc<str>,
    conn: MultiplexedConnection,
    read: MultiplexedConnection,
    scripts_loaded: bool,
}

/// A known master's connections and `run_id`, if both connections still
/// answer; `None` if one broke (the server may have restarted: it is opened,
/// and identified, again).
async fn still_there(master: &Master) -> Option<Opened> {
    let (mut conn, mut read) = (master.conn.clone(), master.read.clone());
    let (ping, ping_read) = (redis::cmd("PING"), redis::cmd("PING"));
    let (pong, pong_read) = futures::future::join(
        ping.query_async::<String>(&mut conn),
        ping_read.query_async::<String>(&mut read),
    )
    .await;
    (pong.is_ok() && pong_read.is_ok()).then(|| Opened {
        run_id: master.run_id.clone(),
        conn,
        read,
        scripts_loaded: master.scripts_loaded.load(Ordering::Acquire),
    })
}

/// One line of `CLUSTER NODES`.
#[derive(Debug, PartialEq, Eq)]
struct Node {
    id: String,
    addr: String,
    is_master: bool,
    failed: bool,
    master_id: Option<String>,
    slots: Vec<(usize, usize)>,
}

/// `<id> <ip:port@bus[,hostname]> <flags> <master> <ping> <pong> <epoch>
/// <link> <slot>...`; slots being imported or migrated (`[...]`) are
/// skipped: they still belong to the node listed first.
fn parse_nodes(text: &str) -> Vec<Node> {
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() < 8 {
                return None;
            }
            let addr = fields[1].split(['@', ',']).next()?.to_string();
            let flags: Vec<&str> = fields[2].split(',').collect();
            let failed = flags
                .iter()
                .any(|f| matches!(*f, "fail" | "fail?" | "noaddr" | "handshake"));
            let slots = fields[8..]
                .iter()
                .filter(|s| !s.starts_with('['))
                .filter_map(|s| match s.split_once('-') {
                    Some((a, b)) => Some((a.parse().ok()?, b.parse().ok()?)),
                    None => s.parse().ok().map(|a| (a, a)),
                })
                .collect();
            Some(Node {
                id: fields[0].to_string(),
                addr,
                is_master: flags.contains(&"master"),
                failed,
                master_id: (fields[3] != "-").then(|| fields[3].to_string()),
                slots,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_follow_the_hash_tag() {
        // Values from the Redis Cluster specification's examples.
        assert_eq!(slot(b"foo"), 12182);
        assert_eq!(slot(b"{user1000}.following"), slot(b"user1000"));
        assert_eq!(slot(b"p~t:{guild:1}"), slot(b"p~m:{guild:1}"));
        assert_eq!(slot(b"p~t:{guild:1}"), slot(b"p~g:{guild:1}:00ff"));
        // An empty hash tag does not count: the whole key is hashed.
        assert_eq!(slot(b"foo{}{bar}"), slot(b"foo{}{bar}"));
        assert_ne!(slot(b"p~t:{}"), slot(b"p~m:{}"));
    }

    #[test]
    fn cluster_nodes_lines_are_read() {
        let text = "\
07c3 127.0.0.1:30004@40004 slave e7d1 0 1 1 connected
67ed 127.0.0.1:30002@40002,host master - 0 1 2 connected 5461-10922
e7d1 127.0.0.1:30001@40001 myself,master - 0 0 1 connected 0-5460 [5461->-67ed]
6ec2 127.0.0.1:30003@40003 master,fail - 0 1 3 connected 10923-16383
";
        let nodes = parse_nodes(text);
        assert_eq!(nodes.len(), 4);
        assert_eq!(nodes[0].master_id.as_deref(), Some("e7d1"));
        assert!(!nodes[0].is_master);
        assert_eq!(nodes[1].addr, "127.0.0.1:30002");
        assert_eq!(nodes[1].slots, vec![(5461, 10922)]);
        assert_eq!(nodes[2].slots, vec![(0, 5460)]);
        assert!(nodes[2].is_master && !nodes[2].failed);
        assert!(nodes[3].failed);
    }
}
