//! The Redis rate limiter (`ENABLE_REDIS_RATE_LIMITING`) on a standalone
//! Redis and on a real 3+3 Redis Cluster: every test runs on both, through
//! the limiter's own API (`api/limits.rs` drives it over HTTP on a
//! standalone Redis). Shared budgets across instances, and the fallback to
//! the in-process limiter within the limiter's timeout when Redis hangs or
//! dies, then back to Redis once a probe hears it.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use spywatcher::auth::Caller;
use spywatcher::config::{CacheBackend, Settings};
use spywatcher::error::ApiError;
use spywatcher::rate_limit::{ClientIp, RateLimiter, RedisLimits};
use spywatcher_testkit::cluster::RedisCluster;
use spywatcher_testkit::redis::RedisServer;

const PREFIX: &str = "spywatcher:";
/// How long a limiter waits for Redis: a request that waited on a hung
/// Redis would take this long.
const TIMEOUT: Duration = Duration::from_millis(300);
const PROBE_INTERVAL: Duration = Duration::from_millis(200);
/// Scheduling slack on a busy two-core machine, on top of `TIMEOUT`.
const SLACK: Duration = Duration::from_millis(300);

#[derive(Debug, Clone, Copy)]
enum Kind {
    Standalone,
    Cluster,
}

const BOTH: [Kind; 2] = [Kind::Standalone, Kind::Cluster];

/// The Redis the limiters of a test share.
enum SharedRedis {
    Standalone(RedisServer),
    Cluster(RedisCluster),
}

impl SharedRedis {
    fn start(kind: Kind) -> SharedRedis {
        match kind {
            Kind::Standalone => SharedRedis::Standalone(RedisServer::start()),
            Kind::Cluster => SharedRedis::Cluster(RedisCluster::start()),
        }
    }

    /// A limiter of `per_minute` requests per client (a miss costs one
    /// unit), reaching Redis as the service would: from its variables.
    async fn limiter(&self, per_minute: u32) -> RateLimiter {
        let limits = RedisLimits {
            timeout: TIMEOUT,
            probe_interval: PROBE_INTERVAL,
        };
        let (variable, value) = match self {
            SharedRedis::Standalone(redis) => ("REDIS_URL", redis.url()),
            SharedRedis::Cluster(cluster) => ("REDIS_CLUSTER_NODES", cluster.nodes_env()),
        };
        let settings =
            Settings::from_lookup(|v| (v == variable).then(|| value.clone())).expect("settings");
        match &settings.cache {
            CacheBackend::Redis { url } => {
                RateLimiter::redis(url, PREFIX, per_minute, 1, limits).expect("limiter")
            }
            CacheBackend::RedisCluster { nodes } => {
                RateLimiter::redis_cluster(nodes, PREFIX, per_minute, 1, limits)
                    .await
                    .expect("limiter")
            }
            CacheBackend::Embedded => unreachable!(),
        }
    }

    /// The count in a client's window, as Redis holds it.
    fn count(&self, key: &str) -> u64 {
        let reply = match self {
            SharedRedis::Standalone(redis) => redis.cli(&["GET", key]),
            SharedRedis::Cluster(cluster) => cluster.cli(&["GET", key]),
        };
        reply.trim().parse().unwrap_or(0)
    }

    /// Where `key` lives: the server, or the key's master.
    fn holder_of(&self, key: &str) -> String {
        match self {
            SharedRedis::Standalone(redis) => format!("127.0.0.1:{}", redis.port()),
            SharedRedis::Cluster(cluster) => cluster.master_of(key),
        }
    }

    /// Every server that holds keys stops answering (SIGSTOP): the
    /// standalone server, or every master of the cluster (which then
    /// cannot fail over: no master is left to vote).
    fn hang(&self) {
        match self {
            SharedRedis::Standalone(redis) => redis.pause(),
            SharedRedis::Cluster(cluster) => {
                for master in cluster.masters() {
                    cluster.node(cluster.index_of(&master)).pause();
                }
            }
        }
    }

    /// Every node stops answering, replicas too: even connection set-up
    /// gets no answer.
    fn hang_every_node(&self) {
        self.each_node(RedisServer::pause);
    }

    /// Every node answers again. (All of them: a hung master may no longer
    /// be listed as one.)
    fn unhang(&self) {
        self.each_node(RedisServer::resume);
    }

    fn each_node(&self, signal: fn(&RedisServer)) {
        match self {
            SharedRedis::Standalone(redis) => signal(redis),
            SharedRedis::Cluster(cluster) => {
                for i in 0..cluster.nodes().len() {
                    signal(cluster.node(i));
                }
            }
        }
    }

    /// The server holding `key` dies (SIGKILL): the standalone server, or
    /// the key's master (its replica takes over after the node timeout).
    /// Returns at once, before any failover.
    fn kill_holder_of(&mut self, key: &str) {
        match self {
            SharedRedis::Standalone(redis) => redis.kill(),
            SharedRedis::Cluster(cluster) => {
                let master = cluster.master_of(key);
                let index = cluster.index_of(&master);
                cluster.node_mut(index).kill();
            }
        }
    }

    /// After [`kill_holder_of`](Self::kill_holder_of): the standalone server
    /// restarted, or the cluster healthy again with the replica promoted.
    fn recover_from_kill(&mut self) {
        match self {
            SharedRedis::Standalone(redis) => redis.restart(),
            SharedRedis::Cluster(cluster) => {
                tokio::task::block_in_place(|| cluster.wait_healthy());
            }
        }
    }
}

fn key_of(ip: IpAddr) -> String {
    format!("{PREFIX}ratelimit:api:{ip}")
}

/// `Ok(())` when admitted, `Err(Retry-After seconds)` when limited.
async fn admit(limiter: &RateLimiter, ip: IpAddr) -> Result<(), u64> {
    match limiter.admit(Caller::Api, ClientIp(Some(ip))).await {
        Ok(()) => Ok(()),
        Err(ApiError::RateLimited(secs)) => Err(secs),
        Err(other) => panic!("not a rate-limit refusal: {other:?}"),
    }
}

/// Client addresses whose windows live on different masters of a cluster
/// (one address on a standalone Redis).
fn clients(redis: &SharedRedis) -> Vec<IpAddr> {
    let mut picked: Vec<(IpAddr, String)> = Vec::new();
    for last in 1..=250u8 {
        let ip = IpAddr::from([10, 0, 0, last]);
        let holder = redis.holder_of(&key_of(ip));
        if !picked.iter().any(|(_, h)| *h == holder) {
            picked.push((ip, holder));
        }
        if picked.len() == 3 {
            break;
        }
    }
    if let SharedRedis::Cluster(_) = redis {
        assert_eq!(picked.len(), 3, "clients on every master");
    }
    picked.into_iter().map(|(ip, _)| ip).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_limiters_sharing_redis_enforce_one_budget() {
    for kind in BOTH {
        let redis = SharedRedis::start(kind);
        let a = redis.limiter(4).await;
        let b = redis.limiter(4).await;
        for ip in clients(&redis) {
            let mut outcomes = Vec::new();
            for limiter in [&a, &b, &a, &b, &a, &b] {
                outcomes.push(admit(limiter, ip).await);
            }
            let admitted: Vec<bool> = outcomes.iter().map(Result::is_ok).collect();
            assert_eq!(
                admitted,
                [true, true, true, true, false, false],
                "{kind:?}, client {ip}: {outcomes:?}"
            );
            for outcome in &outcomes {
                if let Err(retry_after) = outcome {
                    assert!((1..=60).contains(retry_after), "{kind:?}: {outcomes:?}");
                }
            }
            // Every request was counted in Redis, refused ones included.
            assert_eq!(redis.count(&key_of(ip)), 6, "{kind:?}, client {ip}");
        }
        assert!(!a.redis_away() && !b.redis_away(), "{kind:?}");
    }
}

/// A fault, then: the first request waits at most the limiter's timeout;
/// the next ones are limited in process without waiting on Redis; once
/// Redis is back, a probe closes the breaker and counts go to Redis again.
async fn falls_back_and_comes_back(
    kind: Kind,
    fault: fn(&mut SharedRedis, &str),
    recover: fn(&mut SharedRedis),
) {
    let mut redis = SharedRedis::start(kind);
    let limiter = redis.limiter(20).await;
    let ip = IpAddr::from([127, 0, 0, 1]);
    let key = key_of(ip);
    assert_eq!(admit(&limiter, ip).await, Ok(()));
    assert_eq!(redis.count(&key), 1, "{kind:?}");

    fault(&mut redis, &key);
    let start = Instant::now();
    assert_eq!(admit(&limiter, ip).await, Ok(()), "{kind:?}");
    let first = start.elapsed();
    assert!(
        first < TIMEOUT + SLACK,
        "{kind:?}: the first request after the fault waited {first:?} (timeout {TIMEOUT:?})"
    );
    assert!(limiter.redis_away(), "{kind:?}: the breaker opened");
    let start = Instant::now();
    let mut admitted = 0;
    let mut outcomes = Vec::new();
    for _ in 0..50 {
        let outcome = admit(&limiter, ip).await;
        admitted += usize::from(outcome.is_ok());
        outcomes.push(outcome);
    }
    let took = start.elapsed();
    eprintln!("{kind:?}: first request after the fault {first:?}, 50 more {took:?}");
    assert!(
        took < Duration::from_millis(500),
        "{kind:?}: 50 requests with Redis away took {took:?}"
    );
    // In process: 20 a minute, the first request after the fault included.
    assert_eq!(admitted, 19, "{kind:?}: {outcomes:?}");
    assert!(outcomes[19..].iter().all(Result::is_err), "{kind:?}");

    // While the fault lasts, probes do not close the breaker. (On a
    // cluster, a master killed moments ago is not replaced yet: the node
    // timeout is 1 s. A probe that asked only the masters it still reaches
    // would say all is well.)
    tokio::time::sleep(PROBE_INTERVAL * 3).await;
    assert!(
        limiter.redis_away(),
        "{kind:?}: the breaker closed during the fault"
    );

    recover(&mut redis);
    let deadline = Instant::now() + Duration::from_secs(15);
    while limiter.redis_away() {
        assert!(
            Instant::now() < deadline,
            "{kind:?}: the Redis limiter did not come back"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let before = redis.count(&key);
    let _ = admit(&limiter, ip).await;
    assert_eq!(
        redis.count(&key),
        before + 1,
        "{kind:?}: counted in Redis again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_limiter_falls_back_within_its_timeout_when_redis_hangs() {
    for kind in BOTH {
        falls_back_and_comes_back(kind, |redis, _| redis.hang(), |redis| redis.unhang()).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_limiter_falls_back_within_its_timeout_when_the_keys_server_dies() {
    for kind in BOTH {
        falls_back_and_comes_back(
            kind,
            |redis, key| redis.kill_holder_of(key),
            SharedRedis::recover_from_kill,
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_limiter_built_while_redis_hangs_starts_at_once_and_shares_limits_once_it_answers() {
    for kind in BOTH {
        let redis = SharedRedis::start(kind);
        redis.hang_every_node();
        let start = Instant::now();
        let limiter = redis.limiter(20).await;
        let built = start.elapsed();
        let ip = IpAddr::from([127, 0, 0, 1]);
        let start = Instant::now();
        assert_eq!(admit(&limiter, ip).await, Ok(()), "{kind:?}");
        let first = start.elapsed();
        eprintln!("{kind:?}: built in {built:?} with Redis hung; first request {first:?}");
        // A cluster's set-up is given a second at most; a standalone
        // connection is made on first use.
        assert!(
            built < Duration::from_millis(1500),
            "{kind:?}: built in {built:?}"
        );
        assert!(first < TIMEOUT + SLACK, "{kind:?}: {first:?}");
        assert!(limiter.redis_away(), "{kind:?}");

        redis.unhang();
        let deadline = Instant::now() + Duration::from_secs(15);
        while limiter.redis_away() {
            assert!(Instant::now() < deadline, "{kind:?}: never shared");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let key = key_of(ip);
        let before = redis.count(&key);
        assert_eq!(admit(&limiter, ip).await, Ok(()));
        assert_eq!(redis.count(&key), before + 1, "{kind:?}");
    }
}
