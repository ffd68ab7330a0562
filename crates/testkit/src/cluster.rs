//! A private Redis Cluster for tests: real `redis-server` processes.
//!
//! [`RedisCluster::start`] runs 3 masters and 3 replicas, each a
//! [`RedisServer`] in cluster mode in its own temporary directory on a free
//! loopback port below 55535 (the cluster bus listens on port + 10000), joins
//! them with `redis-cli --cluster create`, and returns once every node reports
//! `cluster_state:ok` with all 16384 slots served and every replica's link to
//! its master is up. A short `--cluster-node-timeout` (1000 ms) makes a killed
//! master's replica take over in about two seconds.
//!
//! Fault helpers: [`kill_master_of`](RedisCluster::kill_master_of) and
//! [`fail_over`](RedisCluster::fail_over) kill a master (SIGKILL) and wait for
//! its replica's promotion; [`manual_failover`](RedisCluster::manual_failover)
//! runs `CLUSTER FAILOVER` on a replica. Individual nodes stay reachable
//! through [`node`](RedisCluster::node) / [`node_mut`](RedisCluster::node_mut)
//! for `cli`, `pause`, `restart` (a restarted node keeps its `nodes.conf` and
//! rejoins, as a replica of whoever took its slots).
//!
//! Topology queries ([`masters`](RedisCluster::masters),
//! [`replicas`](RedisCluster::replicas), [`master_of`](RedisCluster::master_of))
//! are live: they read `CLUSTER NODES` from the first node that answers
//! within a short timeout, so killed and paused nodes are skipped.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::redis::RedisServer;

/// Number of hash slots in a Redis Cluster.
pub const SLOTS: u32 = 16384;

/// How long a node may go unreachable before the cluster marks it failed.
pub const NODE_TIMEOUT_MS: u64 = 1000;

const READY_WITHIN: Duration = Duration::from_secs(30);
const FAILOVER_WITHIN: Duration = Duration::from_secs(20);
const QUERY_TIMEOUT: Duration = Duration::from_millis(1000);

/// A Redis Cluster owned by a test; every node is killed when dropped.
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
}

/// One line of `CLUSTER NODES`, as seen by some node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterNode {
    pub id: String,
    /// `127.0.0.1:PORT` (without the `@bus` part).
    pub addr: String,
    pub flags: Vec<String>,
    /// The master's id for a replica, `None` for a master.
    pub master_id: Option<String>,
    /// `connected` or `disconnected`.
    pub link: String,
    /// Slot ranges served, inclusive (`[(0, 5460)]`); empty for a replica.
    pub slots: Vec<(u32, u32)>,
}

impl ClusterNode {
    pub fn is_master(&self) -> bool {
        self.flags.iter().any(|f| f == "master")
    }

    pub fn is_replica(&self) -> bool {
        self.flags.iter().any(|f| f == "slave")
    }

    /// Marked `fail` or `fail?` (suspected) by the node that was asked.
    pub fn is_failed(&self) -> bool {
        self.flags.iter().any(|f| f == "fail" || f == "fail?")
    }

    pub fn serves(&self, slot: u32) -> bool {
        self.slots.iter().any(|&(a, b)| a <= slot && slot <= b)
    }
}

impl RedisCluster {
    /// Starts 3 masters with one replica each.
    pub fn start() -> Self {
        Self::start_with(3, 1)
    }

    /// Starts `masters` masters (at least 3, as `redis-cli --cluster create`
    /// requires) with `replicas_per_master` replicas each.
    pub fn start_with(masters: usize, replicas_per_master: usize) -> Self {
        assert!(masters >= 3, "a Redis Cluster needs at least 3 masters");
        let count = masters * (1 + replicas_per_master);
        let timeout = NODE_TIMEOUT_MS.to_string();
        let args = [
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            "nodes.conf",
            "--cluster-node-timeout",
            &timeout,
            "--repl-diskless-sync",
            "yes",
            "--repl-diskless-sync-delay",
            "0",
        ];
        let nodes: Vec<RedisServer> = (0..count).map(|_| RedisServer::start_with(&args)).collect();
        let cluster = RedisCluster { nodes };

        let mut create = Command::new("redis-cli");
        create.arg("--cluster").arg("create");
        create.args(cluster.nodes());
        create
            .arg("--cluster-replicas")
            .arg(replicas_per_master.to_string())
            .arg("--cluster-yes");
        // Its output goes to a file (no pipe to fill) and its run is bounded:
        // redis-cli waits for the join forever if the nodes cannot meet.
        let log_path = cluster.nodes[0].dir().join("cluster-create.log");
        let log = std::fs::File::create(&log_path).expect("create cluster-create.log");
        let mut child = create
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log file"))
            .stderr(log)
            .spawn()
            .expect("run redis-cli --cluster create");
        let deadline = Instant::now() + READY_WITHIN;
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait for redis-cli") {
                break Some(status);
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let output = std::fs::read_to_string(&log_path).unwrap_or_default();
        match status {
            Some(status) if status.success() && output.contains("All 16384 slots covered") => {}
            Some(status) => panic!("redis-cli --cluster create failed ({status}):\n{output}"),
            None => panic!(
                "redis-cli --cluster create did not finish within {READY_WITHIN:?}:\n{output}"
            ),
        }
        cluster.wait_ready(masters, count - masters);
        cluster
    }

    /// Every node's address, `127.0.0.1:PORT`, in start order (killed nodes too).
    pub fn nodes(&self) -> Vec<String> {
        self.nodes.iter().map(|n| addr(n.port())).collect()
    }

    /// The `REDIS_CLUSTER_NODES` form: `127.0.0.1:P1,127.0.0.1:P2,...`.
    pub fn nodes_env(&self) -> String {
        self.nodes().join(",")
    }

    /// The node at `i` (start order), for `cli`, `pause`, `resume` and so on.
    pub fn node(&self, i: usize) -> &RedisServer {
        &self.nodes[i]
    }

    /// The node at `i`, for `kill` and `restart`.
    pub fn node_mut(&mut self, i: usize) -> &mut RedisServer {
        &mut self.nodes[i]
    }

    /// The index of the node listening on `addr` (`127.0.0.1:PORT`).
    pub fn index_of(&self, addr: &str) -> usize {
        self.nodes
            .iter()
            .position(|n| self::addr(n.port()) == addr)
            .unwrap_or_else(|| panic!("{addr} is not a node of this cluster"))
    }

    /// The live topology: `CLUSTER NODES` as seen by the first node that
    /// answers.
    pub fn topology(&self) -> Vec<ClusterNode> {
        let mut errors = Vec::new();
        for node in self.nodes.iter().filter(|n| n.is_running()) {
            match query(node.port(), &["CLUSTER", "NODES"]) {
                Ok(text) => return parse_nodes(&text),
                Err(e) => errors.push(format!("{}: {e}", addr(node.port()))),
            }
        }
        panic!("no cluster node answered CLUSTER NODES: {errors:?}")
    }

    /// Addresses of the masters that are not marked failed, sorted.
    pub fn masters(&self) -> Vec<String> {
        let mut masters: Vec<String> = self
            .topology()
            .into_iter()
            .filter(|n| n.is_master() && !n.is_failed())
            .map(|n| n.addr)
            .collect();
        masters.sort();
        masters
    }

    /// Addresses of the replicas that are not marked failed, sorted.
    pub fn replicas(&self) -> Vec<String> {
        let mut replicas: Vec<String> = self
            .topology()
            .into_iter()
            .filter(|n| n.is_replica() && !n.is_failed())
            .map(|n| n.addr)
            .collect();
        replicas.sort();
        replicas
    }

    /// Addresses of the (non-failed) replicas of the master at `master`.
    pub fn replicas_of(&self, master: &str) -> Vec<String> {
        let topology = self.topology();
        let id = &topology
            .iter()
            .find(|n| n.addr == master)
            .unwrap_or_else(|| panic!("{master} is not in CLUSTER NODES"))
            .id;
        let mut replicas: Vec<String> = topology
            .iter()
            .filter(|n| n.master_id.as_ref() == Some(id) && !n.is_failed())
            .map(|n| n.addr.clone())
            .collect();
        replicas.sort();
        replicas
    }

    /// The hash slot of `key` (`CLUSTER KEYSLOT` on a live node).
    pub fn slot_of(&self, key: &str) -> u32 {
        let reply = self.query_any(&["CLUSTER", "KEYSLOT", key]);
        reply
            .parse()
            .unwrap_or_else(|_| panic!("CLUSTER KEYSLOT {key}: unexpected reply {reply:?}"))
    }

    /// The address of the master serving `key`'s slot.
    pub fn master_of(&self, key: &str) -> String {
        let slot = self.slot_of(key);
        self.topology()
            .into_iter()
            .find(|n| n.is_master() && !n.is_failed() && n.serves(slot))
            .unwrap_or_else(|| panic!("no live master serves slot {slot} (key {key:?})"))
            .addr
    }

    /// Runs a command through `redis-cli -c` (follows redirections) on the
    /// first running node, and returns its trimmed output.
    pub fn cli(&self, args: &[&str]) -> String {
        let node = self
            .nodes
            .iter()
            .find(|n| n.is_running())
            .expect("a running node");
        let mut all = vec!["-c"];
        all.extend_from_slice(args);
        node.cli(&all)
    }

    /// Kills (SIGKILL) the master serving `key`'s slot and waits until its
    /// replica is promoted and the cluster is `ok` again. Returns the new
    /// master's address.
    pub fn kill_master_of(&mut self, key: &str) -> String {
        let master = self.master_of(key);
        self.fail_over(&master)
    }

    /// Kills (SIGKILL) the master at `master` and waits until one of its
    /// replicas serves its slots and every live node reports `cluster_state:ok`.
    /// Returns the new master's address.
    pub fn fail_over(&mut self, master: &str) -> String {
        let topology = self.topology();
        let old = topology
            .iter()
            .find(|n| n.addr == master && n.is_master())
            .unwrap_or_else(|| panic!("{master} is not a master"))
            .clone();
        let slot = old
            .slots
            .first()
            .map(|&(a, _)| a)
            .unwrap_or_else(|| panic!("master {master} serves no slot"));
        let replicas: Vec<String> = topology
            .iter()
            .filter(|n| n.master_id.as_ref() == Some(&old.id) && !n.is_failed())
            .map(|n| n.addr.clone())
            .collect();
        assert!(
            !replicas.is_empty(),
            "master {master} has no replica to promote"
        );

        let index = self.index_of(master);
        self.nodes[index].kill();
        let live: Vec<u16> = self.live_ports();
        wait_until(
            FAILOVER_WITHIN,
            &format!("a replica of {master} promoted"),
            || {
                let mut promoted = None;
                for &port in &live {
                    let info = query(port, &["CLUSTER", "INFO"])?;
                    let state = info_field(&info, "cluster_state");
                    if state != Some("ok") {
                        return Err(format!("{}: cluster_state:{state:?}", addr(port)));
                    }
                    let owner = parse_nodes(&query(port, &["CLUSTER", "NODES"])?)
                        .into_iter()
                        .find(|n| n.is_master() && !n.is_failed() && n.serves(slot))
                        .map(|n| n.addr);
                    match owner {
                        Some(owner) if replicas.contains(&owner) => {
                            if promoted.get_or_insert(owner.clone()) != &owner {
                                return Err(format!("nodes disagree on slot {slot}'s master"));
                            }
                        }
                        other => {
                            return Err(format!("{}: slot {slot} served by {other:?}", addr(port)));
                        }
                    }
                }
                Ok(promoted.expect("at least one live node"))
            },
        )
    }

    /// Runs `CLUSTER FAILOVER` on the replica at `replica` and waits until it
    /// is a master, its old master a replica, and every live node agrees and
    /// reports `cluster_state:ok`. Returns the old master's address.
    pub fn manual_failover(&self, replica: &str) -> String {
        let topology = self.topology();
        let me = topology
            .iter()
            .find(|n| n.addr == replica && n.is_replica())
            .unwrap_or_else(|| panic!("{replica} is not a replica"));
        let old_master = topology
            .iter()
            .find(|n| Some(&n.id) == me.master_id.as_ref())
            .unwrap_or_else(|| panic!("the master of {replica} is not in CLUSTER NODES"))
            .addr
            .clone();
        let port = self.nodes[self.index_of(replica)].port();
        let reply = query(port, &["CLUSTER", "FAILOVER"])
            .unwrap_or_else(|e| panic!("CLUSTER FAILOVER on {replica}: {e}"));
        assert_eq!(reply, "OK", "CLUSTER FAILOVER on {replica}");

        let live = self.live_ports();
        wait_until(
            FAILOVER_WITHIN,
            &format!("{replica} promoted by CLUSTER FAILOVER"),
            || {
                for &port in &live {
                    let info = query(port, &["CLUSTER", "INFO"])?;
                    let state = info_field(&info, "cluster_state");
                    if state != Some("ok") {
                        return Err(format!("{}: cluster_state:{state:?}", addr(port)));
                    }
                    let nodes = parse_nodes(&query(port, &["CLUSTER", "NODES"])?);
                    let role = |a: &str| nodes.iter().find(|n| n.addr == a).cloned();
                    match (role(replica), role(&old_master)) {
                        (Some(new), Some(old)) if new.is_master() && old.is_replica() => {}
                        (new, old) => {
                            return Err(format!(
                                "{} sees {replica} as {:?} and {old_master} as {:?}",
                                addr(port),
                                new.map(|n| n.flags),
                                old.map(|n| n.flags)
                            ));
                        }
                    }
                }
                Ok(())
            },
        );
        old_master
    }

    /// The replica-lag case, forced: `master`'s replica is paused and the
    /// master closes its replication link, so that nothing the master
    /// applies from now on reaches it (a paused replica whose link stayed
    /// open would still find in its socket what was sent meanwhile).
    /// Returns the replica's address; see
    /// [`kill_master_of_cut_replica`](Self::kill_master_of_cut_replica).
    pub fn cut_replica_link(&self, master: &str) -> String {
        let replica = self
            .replicas_of(master)
            .into_iter()
            .next()
            .unwrap_or_else(|| panic!("master {master} has no replica"));
        self.nodes[self.index_of(&replica)].pause();
        let closed = self.nodes[self.index_of(master)].cli(&["CLIENT", "KILL", "TYPE", "replica"]);
        assert_eq!(closed, "1", "{master} closed its replica's link");
        replica
    }

    /// Kills `master` and resumes its cut-off `replica`, which will take
    /// over (after the node timeout) with what it held when cut off: until
    /// then it is a replica, so nothing can have written to it, and
    /// [`get_on`](Self::get_on) shows what it will serve. Then
    /// [`wait_healthy`](Self::wait_healthy).
    pub fn kill_master_of_cut_replica(&mut self, master: &str, replica: &str) {
        let index = self.index_of(master);
        self.nodes[index].kill();
        self.nodes[self.index_of(replica)].resume();
    }

    /// `GET` on a node as a read-only client (`READONLY`, so that a replica
    /// answers for its master's slots instead of redirecting); an empty
    /// string for a missing key.
    pub fn get_on(&self, node: &str, key: &str) -> String {
        let port = self.nodes[self.index_of(node)].port();
        let replies = query_in_turn(port, &[&["READONLY"], &["GET", key]])
            .unwrap_or_else(|e| panic!("GET {key} on {node}: {e}"));
        replies.into_iter().nth(1).unwrap_or_default()
    }

    /// Waits until the cluster is `ok` on every live node with every slot
    /// served by a live master, and every live replica's link is up: after
    /// restarting a node, say.
    pub fn wait_healthy(&self) {
        let live = self.live_ports();
        wait_until(READY_WITHIN, "the cluster healthy", || {
            self.check_nodes(&live, None, None)
        });
    }

    fn wait_ready(&self, masters: usize, replicas: usize) {
        let ports = self.live_ports();
        wait_until(READY_WITHIN, "the new cluster ready", || {
            self.check_nodes(&ports, Some(masters), Some(replicas))
        });
    }

    /// `Ok` when every one of `ports` reports `cluster_state:ok`, all slots ok,
    /// and (as a replica) `master_link_status:up`; all of them see the same
    /// topology (the same masters serving the same slots, the same replicas),
    /// in which every one of `ports` is present and not failed; with the
    /// expected counts of masters and replicas when given.
    fn check_nodes(
        &self,
        ports: &[u16],
        masters: Option<usize>,
        replicas: Option<usize>,
    ) -> Result<(), String> {
        // The first node's address and its view, to compare the others with.
        let mut first_view: Option<(String, Vec<ViewEntry>)> = None;
        for &port in ports {
            let at = addr(port);
            let info = query(port, &["CLUSTER", "INFO"])?;
            let state = info_field(&info, "cluster_state").unwrap_or("?");
            let slots_ok = info_field(&info, "cluster_slots_ok").unwrap_or("?");
            if state != "ok" || slots_ok != SLOTS.to_string() {
                return Err(format!(
                    "{at}: cluster_state:{state} cluster_slots_ok:{slots_ok}"
                ));
            }
            let nodes = parse_nodes(&query(port, &["CLUSTER", "NODES"])?);
            for other in ports.iter().map(|&p| addr(p)) {
                if !nodes.iter().any(|n| n.addr == other && !n.is_failed()) {
                    return Err(format!("{at} does not see {other} as a live node"));
                }
            }
            // Who serves what and who replicates whom, by address.
            let id_addr = |id: &String| {
                nodes
                    .iter()
                    .find(|n| &n.id == id)
                    .map_or_else(|| id.clone(), |n| n.addr.clone())
            };
            let mut view: Vec<_> = nodes
                .iter()
                .filter(|n| !n.is_failed())
                .map(|n| {
                    (
                        n.addr.clone(),
                        n.master_id.as_ref().map(id_addr),
                        n.slots.clone(),
                    )
                })
                .collect();
            view.sort();
            match &first_view {
                None => first_view = Some((at.clone(), view)),
                Some((first, seen)) if *seen != view => {
                    return Err(format!("{at} and {first} disagree: {view:?} vs {seen:?}"));
                }
                Some(_) => {}
            }
            let live_masters = nodes.iter().filter(|n| n.is_master() && !n.is_failed());
            let live_replicas = nodes.iter().filter(|n| n.is_replica() && !n.is_failed());
            let (m, r) = (live_masters.count(), live_replicas.count());
            if masters.is_some_and(|want| want != m) || replicas.is_some_and(|want| want != r) {
                return Err(format!("{at} sees {m} masters and {r} replicas"));
            }
            let replication = query(port, &["INFO", "replication"])?;
            if info_field(&replication, "role") == Some("slave") {
                let link = info_field(&replication, "master_link_status").unwrap_or("?");
                if link != "up" {
                    return Err(format!("{at}: replica with master_link_status:{link}"));
                }
            }
        }
        Ok(())
    }

    fn live_ports(&self) -> Vec<u16> {
        self.nodes
            .iter()
            .filter(|n| n.is_running())
            .map(|n| n.port())
            .collect()
    }

    fn query_any(&self, args: &[&str]) -> String {
        let mut errors = Vec::new();
        for port in self.live_ports() {
            match query(port, args) {
                Ok(reply) => return reply,
                Err(e) => errors.push(format!("{}: {e}", addr(port))),
            }
        }
        panic!("no cluster node answered {args:?}: {errors:?}")
    }
}

/// One node as another sees it: address, its master's address (replicas),
/// the slot ranges it serves.
type ViewEntry = (String, Option<String>, Vec<(u32, u32)>);

fn addr(port: u16) -> String {
    format!("127.0.0.1:{port}")
}

/// Retries `check` every 50 ms until it succeeds or `within` has passed, then
/// panics naming what was awaited and the last failure.
fn wait_until<T>(within: Duration, what: &str, mut check: impl FnMut() -> Result<T, String>) -> T {
    let started = Instant::now();
    loop {
        match check() {
            Ok(value) => return value,
            Err(last) if started.elapsed() >= within => {
                panic!("timed out after {within:?} waiting for {what}; last state: {last}")
            }
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// The value of `field` in an `INFO`-style `field:value` reply.
fn info_field<'a>(info: &'a str, field: &str) -> Option<&'a str> {
    info.lines().find_map(|line| {
        let (k, v) = line.split_once(':')?;
        (k == field).then(|| v.trim())
    })
}

/// Parses `CLUSTER NODES` output.
fn parse_nodes(text: &str) -> Vec<ClusterNode> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .filter_map(|line| {
            let parts: Vec<&str> = line.split_whitespace().collect();
            if parts.len() < 8 {
                return None;
            }
            let addr = parts[1].split('@').next().unwrap_or(parts[1]).to_string();
            let slots = parts[8..]
                .iter()
                .filter(|s| !s.starts_with('[')) // slots being migrated
                .filter_map(|s| match s.split_once('-') {
                    Some((a, b)) => Some((a.parse().ok()?, b.parse().ok()?)),
                    None => s.parse().ok().map(|n| (n, n)),
                })
                .collect();
            Some(ClusterNode {
                id: parts[0].to_string(),
                addr,
                flags: parts[2].split(',').map(str::to_string).collect(),
                master_id: (parts[3] != "-").then(|| parts[3].to_string()),
                link: parts[7].to_string(),
                slots,
            })
        })
        .collect()
}

/// Sends one command over a fresh connection with a short timeout (so a
/// paused node is an error, not a hang) and returns a simple, integer or bulk
/// string reply. An error reply is returned as `Err`.
fn query(port: u16, args: &[&str]) -> Result<String, String> {
    let mut replies = query_in_turn(port, &[args])?;
    Ok(replies.pop().unwrap_or_default())
}

/// Several commands on one connection, in turn: each reply as a string
/// (an empty one for a nil); the first error reply is the error.
fn query_in_turn(port: u16, commands: &[&[&str]]) -> Result<Vec<String>, String> {
    let e = |e: std::io::Error| format!("{}: {e}", addr(port));
    let sock = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream = TcpStream::connect_timeout(&sock, QUERY_TIMEOUT).map_err(e)?;
    stream.set_read_timeout(Some(QUERY_TIMEOUT)).map_err(e)?;
    stream.set_write_timeout(Some(QUERY_TIMEOUT)).map_err(e)?;
    let mut request = String::new();
    for args in commands {
        request.push_str(&format!("*{}\r\n", args.len()));
        for arg in *args {
            request.push_str(&format!("${}\r\n{arg}\r\n", arg.len()));
        }
    }
    stream.write_all(request.as_bytes()).map_err(e)?;
    let mut reader = BufReader::new(stream);
    let mut replies = Vec::with_capacity(commands.len());
    for _ in commands {
        let mut line = String::new();
        reader.read_line(&mut line).map_err(e)?;
        let line = line.trim_end();
        replies.push(match line.as_bytes().first() {
            Some(b'+') | Some(b':') => line[1..].to_string(),
            Some(b'-') => return Err(format!("{}: {}", addr(port), &line[1..])),
            Some(b'$') => {
                let len: i64 = line[1..]
                    .parse()
                    .map_err(|_| format!("bad reply {line:?}"))?;
                if len < 0 {
                    String::new()
                } else {
                    let mut buf = vec![0u8; len as usize + 2];
                    reader.read_exact(&mut buf).map_err(e)?;
                    buf.truncate(len as usize);
                    String::from_utf8_lossy(&buf).into_owned()
                }
            }
            _ => return Err(format!("{}: unexpected reply {line:?}", addr(port))),
        });
    }
    Ok(replies)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cluster_nodes() {
        let text = "\
07c3 127.0.0.1:30004@40004 slave e7d1 0 1426238317239 4 connected
67ed 127.0.0.1:30002@40002 master,fail - 1426238316232 1426238314000 2 disconnected
e7d1 127.0.0.1:30001@40001 myself,master - 0 0 1 connected 0-5460 7000 [5461->-abc]
";
        let nodes = parse_nodes(text);
        assert_eq!(nodes.len(), 3);
        assert!(nodes[0].is_replica() && nodes[0].master_id.as_deref() == Some("e7d1"));
        assert!(nodes[1].is_master() && nodes[1].is_failed() && nodes[1].slots.is_empty());
        assert_eq!(nodes[2].addr, "127.0.0.1:30001");
        assert_eq!(nodes[2].slots, vec![(0, 5460), (7000, 7000)]);
        assert!(nodes[2].serves(7000) && !nodes[2].serves(7001));
    }

    #[test]
    fn reads_info_fields() {
        let info = "# Cluster\r\ncluster_state:ok\r\ncluster_slots_ok:16384\r\n";
        assert_eq!(info_field(info, "cluster_state"), Some("ok"));
        assert_eq!(info_field(info, "cluster_slots_ok"), Some("16384"));
        assert_eq!(info_field(info, "cluster_size"), None);
    }
}
