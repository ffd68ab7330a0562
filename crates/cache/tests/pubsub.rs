//! SPEC 3: publish, subscribe (several handlers), patterns, unsubscribe,
//! batches, and re-subscription after the subscriber loses its Redis,
//! including of a subscription the server never confirmed.
//!
//! Each test runs on a standalone Redis and on a real 3+3 Redis Cluster
//! (and in process where that means something). On the cluster the
//! subscriber is on another master than the one every PUBLISH goes to, so
//! each message crosses the cluster bus; and losing the subscriber's node
//! (killed, or frozen) moves the subscriber to another node.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::*;
use serde_json::json;
use spywatcher_cache::{CacheConfig, PubSub, Subscription};
use spywatcher_testkit::cluster::RedisCluster;

/// Where a test's publisher and subscriber meet.
enum Bus {
    Standalone(RedisServer),
    Cluster(RedisCluster),
    /// One service, publishing to itself.
    InProcess(PubSub),
}

impl Bus {
    fn on_redis() -> Vec<Bus> {
        vec![
            Bus::Standalone(RedisServer::start()),
            Bus::Cluster(RedisCluster::start()),
        ]
    }

    fn all() -> Vec<Bus> {
        let mut all = Bus::on_redis();
        all.push(Bus::InProcess(pubsub(CacheConfig::embedded())));
        all
    }

    fn name(&self) -> &'static str {
        match self {
            Bus::Standalone(_) => "standalone",
            Bus::Cluster(_) => "cluster",
            Bus::InProcess(_) => "in process",
        }
    }

    /// On the cluster: every node, in start order.
    fn publisher_config(&self) -> CacheConfig {
        match self {
            Bus::Standalone(server) => fast_config(server),
            Bus::Cluster(cluster) => cluster_config(cluster.nodes()),
            Bus::InProcess(_) => CacheConfig::embedded(),
        }
    }

    /// On the cluster: every node, from a master that PUBLISH does not go
    /// to (the master of the slot of the channel prefix).
    fn subscriber_config(&self) -> CacheConfig {
        let Bus::Cluster(cluster) = self else {
            return self.publisher_config();
        };
        let publishing = cluster.master_of(&format!("{}pubsub:", self.publisher_config().prefix));
        let first = cluster.masters().into_iter().find(|m| *m != publishing);
        let mut nodes = cluster.nodes();
        let at = nodes
            .iter()
            .position(|n| Some(n) == first.as_ref())
            .unwrap();
        nodes.rotate_left(at);
        cluster_config(nodes)
    }

    fn publisher(&self) -> PubSub {
        match self {
            Bus::InProcess(both) => both.clone(),
            _ => pubsub(self.publisher_config()),
        }
    }

    fn subscriber(&self) -> PubSub {
        match self {
            Bus::InProcess(both) => both.clone(),
            _ => pubsub(self.subscriber_config()),
        }
    }

    /// The cluster node a subscriber is connected to (the one node with a
    /// pub/sub client). Asks every running node: none may be frozen.
    fn subscribers_node(cluster: &RedisCluster) -> usize {
        let with_subscriber: Vec<usize> = (0..cluster.nodes().len())
            .filter(|&i| cluster.node(i).is_running())
            .filter(|&i| !pubsub_clients(cluster, i).is_empty())
            .collect();
        assert_eq!(with_subscriber.len(), 1, "one subscriber connection");
        with_subscriber[0]
    }

    /// On the cluster: the subscriber is on a node that no PUBLISH went to,
    /// and every PUBLISH went to one node (which keeps their order).
    fn assert_publishes_crossed_the_bus(&self) {
        let Bus::Cluster(cluster) = self else { return };
        let subscribers = Bus::subscribers_node(cluster);
        let publishing: Vec<usize> = (0..cluster.nodes().len())
            .filter(|&i| cluster.node(i).is_running() && publish_calls(cluster, i) > 0)
            .collect();
        assert_eq!(publishing.len(), 1, "PUBLISH went to one node only");
        assert_ne!(publishing[0], subscribers, "publisher and subscriber apart");
    }
}

/// The cluster's pub/sub with the short timeouts of `fast_config`.
fn cluster_config(nodes: Vec<String>) -> CacheConfig {
    let urls = nodes.iter().map(|node| format!("redis://{node}"));
    CacheConfig {
        op_timeout: Duration::from_millis(100),
        connect_timeout: Duration::from_millis(100),
        ..CacheConfig::redis_cluster(urls)
    }
}

fn pubsub(config: CacheConfig) -> PubSub {
    PubSub::from_config(&config).expect("pub/sub")
}

fn pubsub_clients(cluster: &RedisCluster, node: usize) -> String {
    cluster
        .node(node)
        .cli(&["CLIENT", "LIST", "TYPE", "pubsub"])
}

fn publish_calls(cluster: &RedisCluster, node: usize) -> u64 {
    let stats = cluster.node(node).cli(&["INFO", "commandstats"]);
    let line = stats.lines().find(|l| l.starts_with("cmdstat_publish:"));
    let calls = line.and_then(|l| l.split("calls=").nth(1)?.split(',').next()?.parse().ok());
    calls.unwrap_or(0)
}

async fn next(sub: &mut Subscription) -> serde_json::Value {
    let message = tokio::time::timeout(Duration::from_secs(3), sub.recv())
        .await
        .expect("a message within 3 s")
        .expect("subscription open");
    json!({ "channel": message.channel, "payload": message.json::<serde_json::Value>().unwrap() })
}

async fn nothing(sub: &mut Subscription) {
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert!(sub.try_recv().is_none());
}

/// Publishes `n` on `channel` every 20 ms, counting up, until dropped.
struct Publishing {
    stop: Arc<AtomicBool>,
}

impl Publishing {
    fn start(publisher: PubSub, channel: &'static str) -> Publishing {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        tokio::spawn(async move {
            let mut n = 0u64;
            while !stopped.load(Ordering::Relaxed) {
                publisher.publish(channel, &n).await;
                n += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
        Publishing { stop }
    }
}

impl Drop for Publishing {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Waits for the reconnect signal, then for a message published after it.
async fn resubscribed_and_delivering(
    reconnects: &mut tokio::sync::watch::Receiver<u64>,
    sub: &mut Subscription,
    within: Duration,
) -> Duration {
    let lost = Instant::now();
    tokio::time::timeout(within, reconnects.changed())
        .await
        .expect("the re-subscription is announced")
        .unwrap();
    let announced = lost.elapsed();
    // What was queued before the signal came from the old connection, or
    // the new one before its announcement: skip it.
    while sub.try_recv().is_some() {}
    let after = next(sub).await;
    assert!(after["payload"].is_u64(), "{after}");
    announced
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channels_patterns_and_several_handlers() {
    for bus in Bus::all() {
        let (publisher, subscriber) = (bus.publisher(), bus.subscriber());
        let mut first = subscriber.subscribe("cache:invalidated:1").await;
        let mut second = subscriber.subscribe("cache:invalidated:1").await;
        let mut pattern = subscriber.psubscribe("cache:invalidated:*").await;
        let mut other = subscriber.subscribe("cache:invalidated:2").await;
        assert!(
            publisher
                .publish("cache:invalidated:1", &json!({ "n": 1 }))
                .await,
            "{}",
            bus.name()
        );
        let expected = json!({ "channel": "cache:invalidated:1", "payload": { "n": 1 } });
        assert_eq!(next(&mut first).await, expected, "{}", bus.name());
        assert_eq!(next(&mut second).await, expected);
        assert_eq!(next(&mut pattern).await, expected);
        nothing(&mut other).await;

        // Dropping one handler leaves the others subscribed.
        drop(first);
        publisher
            .publish("cache:invalidated:1", &json!({ "n": 2 }))
            .await;
        assert_eq!(next(&mut second).await["payload"]["n"], 2);
        assert_eq!(next(&mut pattern).await["payload"]["n"], 2);
        drop(second);
        publisher
            .publish("cache:invalidated:2", &json!({ "n": 3 }))
            .await;
        assert_eq!(next(&mut other).await["payload"]["n"], 3);
        assert_eq!(next(&mut pattern).await["channel"], "cache:invalidated:2");
        bus.assert_publishes_crossed_the_bus();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_go_between_services_under_the_prefix() {
    for bus in Bus::on_redis() {
        let (a, b) = (bus.publisher(), bus.subscriber());
        let mut sub = b.subscribe("notifications:7").await;
        assert!(a.publish("notifications:7", &json!("hi")).await);
        assert_eq!(next(&mut sub).await["payload"], "hi", "{}", bus.name());
        assert_eq!(a.wire_name("x"), "spywatcher:pubsub:x");
    }
}

/// Standalone: Redis restarts. Cluster: the subscriber's node is killed
/// (a master, whose replica takes over), and the subscriber moves on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_come_back_after_the_subscribers_redis_is_lost() {
    for mut bus in Bus::on_redis() {
        let (publisher, subscriber) = (bus.publisher(), bus.subscriber());
        let mut sub = subscriber.subscribe("presence:1").await;
        let mut pattern = subscriber.psubscribe("presence:*").await;
        let mut reconnects = subscriber.on_reconnect();
        publisher.publish("presence:1", &0).await;
        next(&mut sub).await;
        next(&mut pattern).await;

        let _publishing = Publishing::start(publisher.clone(), "presence:1");
        match &mut bus {
            Bus::Standalone(server) => server.restart(),
            Bus::Cluster(cluster) => {
                let node = Bus::subscribers_node(cluster);
                cluster.node_mut(node).kill();
            }
            Bus::InProcess(_) => unreachable!(),
        }
        let announced =
            resubscribed_and_delivering(&mut reconnects, &mut sub, Duration::from_secs(5)).await;
        println!(
            "{}: subscribed again {announced:?} after the loss",
            bus.name()
        );
        while pattern.try_recv().is_some() {}
        assert!(next(&mut pattern).await["payload"].is_u64());
        if let Bus::Cluster(cluster) = &bus {
            // Elsewhere now: the killed node is not asked.
            Bus::subscribers_node(cluster);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_cluster_a_subscriber_leaves_a_frozen_node_for_another() {
    let bus = Bus::Cluster(RedisCluster::start());
    let Bus::Cluster(cluster) = &bus else {
        unreachable!()
    };
    let (publisher, subscriber) = (bus.publisher(), bus.subscriber());
    let mut sub = subscriber.subscribe("presence:1").await;
    let mut reconnects = subscriber.on_reconnect();
    assert!(publisher.publish("presence:1", &0).await);
    next(&mut sub).await;
    // A node that answers its PINGs is kept, however quiet.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        *reconnects.borrow_and_update(),
        0,
        "no reconnect while healthy"
    );

    let _publishing = Publishing::start(publisher.clone(), "presence:1");
    let frozen = Bus::subscribers_node(cluster);
    cluster.node(frozen).pause();
    // Found out by an unanswered PING: 1 s apart, 1 s to answer.
    let announced =
        resubscribed_and_delivering(&mut reconnects, &mut sub, Duration::from_secs(6)).await;
    println!("subscribed on another node {announced:?} after its node froze");
    let elsewhere = (0..cluster.nodes().len())
        .filter(|&i| i != frozen && !pubsub_clients(cluster, i).is_empty())
        .count();
    assert_eq!(elsewhere, 1, "subscribed on another node");
    cluster.node(frozen).resume();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_cluster_a_subscriber_skips_dead_nodes_of_its_list() {
    let bus = Bus::Cluster(RedisCluster::start());
    let Bus::Cluster(cluster) = &bus else {
        unreachable!()
    };
    // Nothing listens on the first node given.
    let dead = format!("127.0.0.1:{}", spywatcher_testkit::redis::free_port());
    let mut nodes = cluster.nodes();
    nodes.insert(0, dead);
    let subscriber = pubsub(cluster_config(nodes));
    let mut sub = subscriber.subscribe("presence:1").await;
    let publisher = bus.publisher();
    wait_until("the message arrives", Duration::from_secs(5), async || {
        publisher.publish("presence:1", &1).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        sub.try_recv().is_some()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_redis_never_confirmed_is_made_when_it_answers_again() {
    for bus in Bus::on_redis() {
        let (publisher, subscriber) = (bus.publisher(), bus.subscriber());
        let mut reconnects = subscriber.on_reconnect();
        // The subscriber's node: standalone, the one Redis; on the cluster,
        // the first of its list (it has no subscription yet to find it by).
        let node = match &bus {
            Bus::Standalone(server) => server,
            Bus::Cluster(cluster) => {
                let CacheConfig { backend, .. } = bus.subscriber_config();
                let spywatcher_cache::Backend::RedisCluster { nodes } = backend else {
                    unreachable!()
                };
                let first = nodes[0].trim_start_matches("redis://");
                cluster.node(cluster.index_of(first))
            }
            Bus::InProcess(_) => unreachable!(),
        };

        // The SUBSCRIBE goes out to a server that does not answer: the call
        // returns after its timeout; the subscriber gives the connection up
        // once the confirmation is overdue (1 s), its SUBSCRIBE unconfirmed.
        // Standalone, it is made once Redis answers; on a cluster, on the
        // next node.
        node.pause();
        let asked = Instant::now();
        let mut sub = subscriber.subscribe("presence:9").await;
        assert!(
            asked.elapsed() < Duration::from_millis(500),
            "subscribe waits for Redis no longer than the call timeout"
        );
        tokio::time::sleep(Duration::from_millis(1500)).await;
        node.resume();

        tokio::time::timeout(Duration::from_secs(5), reconnects.changed())
            .await
            .expect("subscribed again once Redis answers")
            .unwrap();
        wait_until("the message arrives", Duration::from_secs(5), async || {
            publisher.publish("presence:9", &1).await;
            tokio::time::sleep(Duration::from_millis(50)).await;
            sub.try_recv().is_some()
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channel_dropped_and_subscribed_again_at_once_stays_subscribed() {
    for bus in Bus::on_redis() {
        // Long call timeouts: a subscription must be ready because it was
        // confirmed, not because a timeout happened to be long enough.
        let patient = |config| CacheConfig {
            op_timeout: Duration::from_secs(2),
            ..config
        };
        let publisher = pubsub(patient(bus.publisher_config()));
        let subscriber = pubsub(patient(bus.subscriber_config()));
        for round in 0..50 {
            let first = subscriber.subscribe("analytics:x:1").await;
            drop(first);
            let mut again = subscriber.subscribe("analytics:x:1").await;
            assert!(publisher.publish("analytics:x:1", &round).await);
            assert_eq!(
                next(&mut again).await["payload"],
                round,
                "{}, round {round}: the UNSUBSCRIBE of the dropped subscription won",
                bus.name()
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_all_delivers_every_message_in_order() {
    for bus in Bus::all() {
        let (publisher, subscriber) = (bus.publisher(), bus.subscriber());
        let mut all = subscriber.psubscribe("n:*").await;
        // 50 channels: on the cluster their names hash to every master.
        let messages: Vec<(String, u32)> =
            (0..2_500).map(|i| (format!("n:{}", i % 50), i)).collect();
        let started = Instant::now();
        assert!(publisher.publish_all(&messages).await, "{}", bus.name());
        let published = started.elapsed();
        for i in 0..2_500u32 {
            let message = next(&mut all).await;
            assert_eq!(
                message["channel"],
                format!("n:{}", i % 50),
                "{}",
                bus.name()
            );
            assert_eq!(message["payload"], i);
        }
        println!(
            "{}: publish_all of 2,500 messages took {published:?}, all delivered in {:?}",
            bus.name(),
            started.elapsed()
        );
        if let Bus::Cluster(cluster) = &bus {
            let slots =
                |c: &(String, u32)| cluster.master_of(&format!("spywatcher:pubsub:{}", c.0));
            let masters: std::collections::HashSet<String> =
                messages.iter().take(50).map(slots).collect();
            assert_eq!(masters.len(), 3, "the channels' slots span every master");
        }
        bus.assert_publishes_crossed_the_bus();
    }
}

/// The master every PUBLISH goes to dies: publishes go to another master at
/// once (the news of invalidations its shard could not take must still
/// reach the other instances), and arrive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishes_go_through_another_master_while_theirs_is_down() {
    let mut cluster = RedisCluster::start();
    let publisher = pubsub(cluster_config(cluster.nodes()));
    let publishing = cluster.master_of("spywatcher:pubsub:");
    let mut nodes = cluster.nodes();
    nodes.retain(|n| *n != publishing);
    let subscriber = pubsub(cluster_config(nodes));
    let mut sub = subscriber.subscribe("cache:invalidated:1").await;
    assert!(publisher.publish("cache:invalidated:1", &0).await);
    assert_eq!(next(&mut sub).await["payload"], 0);

    let index = cluster.index_of(&publishing);
    cluster.node_mut(index).kill();
    for i in 1..=5 {
        let started = Instant::now();
        assert!(
            publisher.publish("cache:invalidated:1", &i).await,
            "publish {i} with its master dead"
        );
        assert_eq!(next(&mut sub).await["payload"], i);
        assert!(
            started.elapsed() < Duration::from_millis(100),
            "within the op timeout"
        );
    }
}

/// Every node frozen: the first publish waits out its timeout, the next
/// ones are refused at once for a while instead of each waiting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishes_are_skipped_at_once_while_the_whole_cluster_hangs() {
    let cluster = RedisCluster::start();
    let publisher = pubsub(cluster_config(cluster.nodes()));
    assert!(publisher.publish("analytics:x:1", &0).await);
    for i in 0..cluster.nodes().len() {
        cluster.node(i).pause();
    }
    let started = Instant::now();
    assert!(!publisher.publish("analytics:x:1", &1).await);
    let first = started.elapsed();
    let started = Instant::now();
    for i in 0..20 {
        assert!(!publisher.publish("analytics:x:1", &i).await);
    }
    let next_twenty = started.elapsed();
    for i in 0..cluster.nodes().len() {
        cluster.node(i).resume();
    }
    println!("first publish refused after {first:?}; the next 20 in {next_twenty:?}");
    assert!(
        next_twenty < first,
        "20 publishes in {next_twenty:?}, one took {first:?}: they were not skipped"
    );
    wait_until(
        "publishes go through again",
        Duration::from_secs(5),
        async || publisher.publish("analytics:x:1", &2).await,
    )
    .await;
}
