//! Inline handlers (crate-internal, so tested here): ordering against the
//! other subscribers, and the re-subscription event; on a standalone Redis
//! and on a 3+3 cluster, where the subscriber is on another master than the
//! one every PUBLISH goes to.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};

use spywatcher_testkit::cluster::RedisCluster;
use spywatcher_testkit::redis::RedisServer;

use super::*;

const WITHIN: Duration = Duration::from_secs(3);
const PREFIX: &str = "test:";

enum Redis {
    Standalone(RedisServer),
    Cluster(RedisCluster),
}

impl Redis {
    fn both() -> [Redis; 2] {
        [
            Redis::Standalone(RedisServer::start()),
            Redis::Cluster(RedisCluster::start()),
        ]
    }

    fn publisher(&self) -> PubSub {
        match self {
            Redis::Standalone(server) => on_redis(server),
            Redis::Cluster(cluster) => on_cluster(cluster.nodes()),
        }
    }

    fn subscriber(&self) -> PubSub {
        let Redis::Cluster(cluster) = self else {
            return self.publisher();
        };
        let publishing = cluster.master_of(&format!("{PREFIX}pubsub:"));
        let first = cluster.masters().into_iter().find(|m| *m != publishing);
        let mut nodes = cluster.nodes();
        let at = nodes.iter().position(|n| Some(n) == first.as_ref());
        nodes.rotate_left(at.expect("another master"));
        on_cluster(nodes)
    }

    /// Closes the subscriber connection, on whichever node it is.
    fn kill_subscriber_connection(&self) {
        let kill = ["CLIENT", "KILL", "TYPE", "pubsub"];
        match self {
            Redis::Standalone(server) => {
                server.cli(&kill);
            }
            Redis::Cluster(cluster) => {
                let list = ["CLIENT", "LIST", "TYPE", "pubsub"];
                let nodes = 0..cluster.nodes().len();
                let mut on = nodes.filter(|&i| !cluster.node(i).cli(&list).is_empty());
                cluster.node(on.next().expect("a subscriber")).cli(&kill);
            }
        }
    }
}

fn on_redis(server: &RedisServer) -> PubSub {
    PubSub::redis(
        &server.url(),
        PREFIX,
        Duration::from_millis(100),
        Duration::from_millis(500),
        Arc::new(Breaker::new(3)),
        Arc::new(Hooks::default()),
    )
    .expect("pub/sub on private redis")
}

fn on_cluster(nodes: Vec<String>) -> PubSub {
    let urls: Vec<String> = nodes.iter().map(|n| format!("redis://{n}")).collect();
    PubSub::redis_cluster(
        &urls,
        PREFIX,
        Duration::from_millis(100),
        Duration::from_millis(500),
        Arc::new(Breaker::new(3)),
        Arc::new(Hooks::default()),
    )
    .expect("pub/sub on private cluster")
}

/// Sleeps 50 ms on each message, then counts it.
fn slow_counter(count: Arc<AtomicU32>) -> InlineHandler {
    Arc::new(move |event| {
        let count = count.clone();
        Box::pin(async move {
            if let InlineEvent::Message(_) = event {
                tokio::time::sleep(Duration::from_millis(50)).await;
                count.fetch_add(1, Ordering::SeqCst);
            }
        })
    })
}

async fn next(sub: &mut Subscription) -> Message {
    tokio::time::timeout(WITHIN, sub.recv())
        .await
        .expect("a message in time")
        .expect("subscription open")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_later_message_is_delivered_only_once_the_inline_handler_is_done() {
    for redis in Redis::both() {
        let (publisher, subscriber) = (redis.publisher(), redis.subscriber());
        let applied = Arc::new(AtomicU32::new(0));
        let _inline = subscriber
            .subscribe_inline("x", slow_counter(applied.clone()))
            .await;
        let mut later = subscriber.subscribe("y").await;
        for round in 1..=5 {
            assert!(publisher.publish("x", &round).await);
            assert!(publisher.publish("x", &round).await);
            assert!(publisher.publish("y", &round).await);
            next(&mut later).await;
            assert_eq!(
                applied.load(Ordering::SeqCst),
                2 * round,
                "y was delivered before the inline handler had applied both x"
            );
        }
    }
}

#[tokio::test]
async fn in_process_publish_returns_once_inline_handlers_are_done() {
    let pubsub = PubSub::local("test:");
    let applied = Arc::new(AtomicU32::new(0));
    let _inline = pubsub
        .subscribe_inline("x", slow_counter(applied.clone()))
        .await;
    assert!(pubsub.publish("x", &1).await);
    assert_eq!(applied.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inline_handlers_hear_of_a_resubscription_before_the_new_connections_messages() {
    for redis in Redis::both() {
        let (publisher, subscriber) = (redis.publisher(), redis.subscriber());
        let events = Arc::new(Mutex::new(Vec::new()));
        let record: InlineHandler = {
            let events = events.clone();
            Arc::new(move |event| {
                let seen = match event {
                    InlineEvent::Message(m) => m.json::<String>().unwrap(),
                    InlineEvent::Resubscribed => "resubscribed".to_string(),
                };
                events.lock().unwrap().push(seen);
                Box::pin(async {})
            })
        };
        let _inline = subscriber.subscribe_inline("x", record).await;
        let mut resubscribed = subscriber.on_reconnect();
        let seen = |n: usize| {
            let events = events.clone();
            async move {
                let deadline = tokio::time::Instant::now() + WITHIN;
                while events.lock().unwrap().len() < n && tokio::time::Instant::now() < deadline {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        };
        assert!(publisher.publish("x", "before").await);
        seen(1).await;

        redis.kill_subscriber_connection();
        tokio::time::timeout(WITHIN, resubscribed.changed())
            .await
            .expect("subscribed again")
            .unwrap();
        assert_eq!(
            *events.lock().unwrap(),
            ["before", "resubscribed"],
            "inline handlers are told before on_reconnect's watchers"
        );
        assert!(publisher.publish("x", "after").await);
        seen(3).await;
        assert_eq!(*events.lock().unwrap(), ["before", "resubscribed", "after"]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_all_delivers_every_message_in_order() {
    let [standalone, cluster] = Redis::both();
    // In process, publisher and subscriber are one service.
    let local = PubSub::local(PREFIX);
    for (publisher, subscriber) in [
        (standalone.publisher(), standalone.subscriber()),
        (cluster.publisher(), cluster.subscriber()),
        (local.clone(), local),
    ] {
        let mut all = subscriber.psubscribe("n:*").await;
        let messages: Vec<(String, u32)> =
            (0..2_500).map(|i| (format!("n:{}", i % 7), i)).collect();
        assert!(publisher.publish_all(&messages).await);
        for i in 0..2_500u32 {
            let message = next(&mut all).await;
            assert_eq!(message.channel, format!("n:{}", i % 7));
            assert_eq!(message.json::<u32>().unwrap(), i);
        }
    }
}
