//! What a cache test runs on: a private standalone `redis-server`, or a real
//! 3+3 Redis Cluster. A test about the cache's behaviour (not about one
//! server's faults) runs on each in turn: `for backing in Backing::each()`.
//!
//! The cluster is shared by the tests of one test binary, each under a
//! prefix of its own: a cluster takes 2–3 s to start, and the cache never
//! touches a key outside its prefix (its pub/sub channels included), so
//! tests stay independent. Tests that kill, pause or restart nodes must not
//! use it: they would take the others down with them.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, Once};
use std::time::Duration;

use spywatcher_cache::{Cache, CacheConfig};
use spywatcher_testkit::cluster::RedisCluster;
use spywatcher_testkit::redis::RedisServer;

use super::{cluster_config, fast_config};

/// The prefix of a cache on a standalone server (the default).
const STANDALONE_PREFIX: &str = "spywatcher:";

pub enum Backing {
    Standalone(RedisServer),
    Cluster(SharedCluster),
}

impl Backing {
    pub fn standalone() -> Backing {
        Backing::Standalone(RedisServer::start())
    }

    /// The shared cluster, under a prefix no other test uses.
    pub fn cluster() -> Backing {
        Backing::Cluster(SharedCluster::join())
    }

    /// A standalone server, then the cluster. The cluster is joined first,
    /// so that its start (CPU-heavy for a few seconds) is over before any
    /// timing is measured; the server is started when its turn comes and
    /// stopped when it ends. Which one a test is on is printed, so that a
    /// failure names it.
    pub fn each() -> impl Iterator<Item = Backing> {
        let mut cluster = Some(Backing::cluster());
        let mut standalone = Some(Backing::standalone as fn() -> Backing);
        std::iter::from_fn(move || {
            let backing = match standalone.take() {
                Some(start) => start(),
                None => cluster.take()?,
            };
            eprintln!("--- on {}", backing.name());
            Some(backing)
        })
    }

    pub fn name(&self) -> &'static str {
        match self {
            Backing::Standalone(_) => "a standalone redis-server",
            Backing::Cluster(_) => "a 3+3 Redis Cluster",
        }
    }

    pub fn is_cluster(&self) -> bool {
        matches!(self, Backing::Cluster(_))
    }

    /// Short timeouts, as [`fast_config`]. On the cluster, this test's
    /// prefix and the default op timeout (250 ms, half of it for a
    /// replica's `WAIT`): no test on it is about an outage, and at 100 ms a
    /// busy two-core machine fails cluster calls of several round trips (a
    /// `WAIT`, a SCAN of every master, a `warm` entry by entry).
    pub fn config(&self) -> CacheConfig {
        match self {
            Backing::Standalone(server) => fast_config(server),
            Backing::Cluster(shared) => CacheConfig {
                prefix: shared.prefix.clone(),
                op_timeout: Duration::from_millis(250),
                connect_timeout: Duration::from_millis(250),
                ..cluster_config(&shared.cluster())
            },
        }
    }

    /// A cache with [`config`](Self::config), once it uses Redis.
    pub async fn cache(&self) -> Cache {
        self.cache_with(self.config()).await
    }

    /// A cache, once it uses Redis. A new cache first verifies the servers
    /// (on a cluster: every master, on connections of its own); on a busy
    /// machine that can take longer than the op timeout, and its breaker
    /// then stays open for a cool-down. The tests here are about what
    /// follows, so they start after it.
    pub async fn cache_with(&self, config: CacheConfig) -> Cache {
        let cache = Cache::new(config).expect("a cache on the test's Redis");
        super::wait_until(
            "the new cache uses Redis",
            Duration::from_secs(5),
            async || cache.ping().await && !cache.is_degraded(),
        )
        .await;
        cache
    }

    pub fn prefix(&self) -> &str {
        match self {
            Backing::Standalone(_) => STANDALONE_PREFIX,
            Backing::Cluster(shared) => &shared.prefix,
        }
    }

    /// The Redis key of the cache entry `key`.
    pub fn entry_key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix())
    }

    /// The Redis key of `tag`'s marker (`keys.rs`): its slot is that of the
    /// tag itself, the key's hash tag.
    pub fn marker_key(&self, tag: &str) -> String {
        format!("{}~t:{{{tag}}}", self.prefix())
    }

    /// A command of one key (or none) through `redis-cli`, redirected to
    /// the key's master on the cluster.
    pub fn cli(&self, args: &[&str]) -> String {
        match self {
            Backing::Standalone(server) => server.cli(args),
            Backing::Cluster(shared) => shared.cluster().cli(args),
        }
    }

    /// Every key under this backing's prefix, from every master.
    pub fn keys(&self) -> Vec<String> {
        let pattern = format!("{}*", self.prefix());
        match self {
            Backing::Standalone(server) => lines(&server.cli(&["KEYS", &pattern])),
            Backing::Cluster(shared) => {
                let cluster = shared.cluster();
                cluster
                    .masters()
                    .iter()
                    .flat_map(|master| lines(&on(&cluster, master, &["KEYS", &pattern])))
                    .collect()
            }
        }
    }

    /// Redis loses everything the cache wrote, as a `FLUSHALL` does. On the
    /// shared cluster, only this test's keys: one `DEL` each, on its master.
    pub fn lose_everything(&self) {
        match self {
            Backing::Standalone(server) => assert_eq!(server.cli(&["FLUSHALL"]), "OK"),
            Backing::Cluster(shared) => {
                let pattern = format!("{}*", shared.prefix);
                for master in self.masters() {
                    // A client, not redis-cli: a test may do this often.
                    let mut conn = redis::Client::open(format!("redis://{master}/"))
                        .and_then(|client| client.get_connection())
                        .unwrap_or_else(|e| panic!("connect to {master}: {e}"));
                    let keys: Vec<String> = redis::cmd("KEYS")
                        .arg(&pattern)
                        .query(&mut conn)
                        .expect("KEYS");
                    if keys.is_empty() {
                        continue;
                    }
                    let mut deletes = redis::pipe();
                    for key in &keys {
                        deletes.cmd("DEL").arg(key).ignore();
                    }
                    let () = deletes.query(&mut conn).expect("DEL");
                }
            }
        }
    }

    /// Connections subscribed to `channel` (a Redis channel name, prefix
    /// included). Classic pub/sub counts per node: on the cluster, summed
    /// over every node, wherever a subscriber chose to connect.
    pub fn subscribers(&self, channel: &str) -> usize {
        let count = |reply: String| -> usize {
            reply
                .lines()
                .nth(1)
                .map_or(0, |n| n.parse().expect("a NUMSUB count"))
        };
        match self {
            Backing::Standalone(server) => count(server.cli(&["PUBSUB", "NUMSUB", channel])),
            Backing::Cluster(shared) => {
                let cluster = shared.cluster();
                (0..cluster.nodes().len())
                    .map(|i| count(cluster.node(i).cli(&["PUBSUB", "NUMSUB", channel])))
                    .sum()
            }
        }
    }

    /// The cluster's masters, sorted (none on a standalone server).
    pub fn masters(&self) -> Vec<String> {
        match self {
            Backing::Standalone(_) => Vec::new(),
            Backing::Cluster(shared) => shared.cluster().masters(),
        }
    }

    /// The master serving `redis_key`'s slot, by the cluster's slot map.
    pub fn master_of(&self, redis_key: &str) -> String {
        match self {
            Backing::Standalone(server) => format!("127.0.0.1:{}", server.port()),
            Backing::Cluster(shared) => shared.cluster().master_of(redis_key),
        }
    }

    /// The master that holds `redis_key` now, asked of each master directly
    /// (no redirection: a master that does not serve the key's slot answers
    /// `MOVED`, not `1`).
    pub fn holder(&self, redis_key: &str) -> Option<String> {
        match self {
            Backing::Standalone(server) => (server.cli(&["EXISTS", redis_key]) == "1")
                .then(|| format!("127.0.0.1:{}", server.port())),
            Backing::Cluster(shared) => {
                let cluster = shared.cluster();
                cluster
                    .masters()
                    .into_iter()
                    .find(|master| on(&cluster, master, &["EXISTS", redis_key]) == "1")
            }
        }
    }

    /// `n` tags named `<base>:1`, `<base>:2`, ... On the cluster, chosen so
    /// that each tag's marker is on another master than the entry `key`,
    /// spread over the other masters: every tag step of an operation then
    /// crosses to another master than its entry's step.
    pub fn tags_apart(&self, key: &str, base: &str, n: usize) -> Vec<String> {
        let candidates = (1..).map(|i| format!("{base}:{i}"));
        if !self.is_cluster() {
            return candidates.take(n).collect();
        }
        let entry_master = self.master_of(&self.entry_key(key));
        let others: Vec<String> = self
            .masters()
            .into_iter()
            .filter(|m| *m != entry_master)
            .collect();
        assert!(!others.is_empty(), "a cluster of one master");
        let mut tags = Vec::with_capacity(n);
        for tag in candidates.take(1000) {
            if tags.len() == n {
                break;
            }
            if self.master_of(&self.marker_key(&tag)) == others[tags.len() % others.len()] {
                tags.push(tag);
            }
        }
        assert_eq!(tags.len(), n, "tags on other masters than {key:?}'s");
        tags
    }

    /// On the cluster, asserts that `key`'s entry and the markers of `tags`
    /// are stored, the entry on one master and every marker on another:
    /// what [`tags_apart`](Self::tags_apart) chose really is cross-master.
    pub fn assert_apart(&self, key: &str, tags: &[impl AsRef<str>]) {
        if !self.is_cluster() {
            return;
        }
        let entry_master = self
            .holder(&self.entry_key(key))
            .unwrap_or_else(|| panic!("entry {key:?} is not stored on any master"));
        for tag in tags.iter().map(AsRef::as_ref) {
            let marker_master = self
                .holder(&self.marker_key(tag))
                .unwrap_or_else(|| panic!("tag {tag:?}'s marker is not stored on any master"));
            assert_ne!(
                marker_master, entry_master,
                "tag {tag:?} is on the same master as entry {key:?}"
            );
        }
    }
}

/// A command on the node at `addr` itself (no redirection).
fn on(cluster: &RedisCluster, addr: &str, args: &[&str]) -> String {
    cluster.node(cluster.index_of(addr)).cli(args)
}

fn lines(reply: &str) -> Vec<String> {
    reply
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

/// This test binary's Redis Cluster, under a prefix of this test's own.
pub struct SharedCluster {
    prefix: String,
}

/// The cluster itself, started by the first test that asks for it. It is
/// stopped when the test binary exits (statics are never dropped: without
/// that, its six redis-servers would outlive the run).
static CLUSTER: Mutex<Option<RedisCluster>> = Mutex::new(None);
static STOP_AT_EXIT: Once = Once::new();
static PREFIXES: AtomicUsize = AtomicUsize::new(0);

unsafe extern "C" {
    safe fn atexit(callback: extern "C" fn()) -> std::ffi::c_int;
}

extern "C" fn stop_cluster() {
    let cluster = CLUSTER.lock().unwrap_or_else(|e| e.into_inner()).take();
    drop(cluster);
}

impl SharedCluster {
    pub fn join() -> SharedCluster {
        drop(Self::started());
        // The test's name (libtest names its thread after it), so that a key
        // left on the cluster says whose it is.
        let test = std::thread::current()
            .name()
            .unwrap_or("test")
            .replace("::", ".");
        let n = PREFIXES.fetch_add(1, Ordering::Relaxed);
        SharedCluster {
            prefix: format!("{test}#{n}:"),
        }
    }

    /// The cluster, locked for as long as the guard lives: take it for one
    /// query, never across an `.await`.
    pub fn cluster(&self) -> ClusterGuard {
        Self::started()
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    fn started() -> ClusterGuard {
        let mut cluster = CLUSTER.lock().unwrap_or_else(|e| e.into_inner());
        if cluster.is_none() {
            STOP_AT_EXIT.call_once(|| {
                assert_eq!(atexit(stop_cluster), 0, "atexit");
            });
            *cluster = Some(RedisCluster::start());
        }
        ClusterGuard(cluster)
    }
}

pub struct ClusterGuard(MutexGuard<'static, Option<RedisCluster>>);

impl std::ops::Deref for ClusterGuard {
    type Target = RedisCluster;

    fn deref(&self) -> &RedisCluster {
        self.0.as_ref().expect("the shared cluster is running")
    }
}
