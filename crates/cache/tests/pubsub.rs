//! SPEC 3: publish, subscribe (several handlers), patterns, unsubscribe, and
//! re-subscription after the subscriber connection comes back, including
//! of a subscription the server never confirmed.

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;
use spywatcher_cache::Subscription;

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channels_patterns_and_several_handlers() {
    for setup in Setup::all() {
        let pubsub = setup.cache().pubsub();
        let mut first = pubsub.subscribe("cache:invalidated:1").await;
        let mut second = pubsub.subscribe("cache:invalidated:1").await;
        let mut pattern = pubsub.psubscribe("cache:invalidated:*").await;
        let mut other = pubsub.subscribe("cache:invalidated:2").await;
        assert!(
            pubsub
                .publish("cache:invalidated:1", &json!({ "n": 1 }))
                .await
        );
        let expected = json!({ "channel": "cache:invalidated:1", "payload": { "n": 1 } });
        assert_eq!(next(&mut first).await, expected, "{}", setup.name());
        assert_eq!(next(&mut second).await, expected);
        assert_eq!(next(&mut pattern).await, expected);
        nothing(&mut other).await;

        // Dropping one handler leaves the others subscribed.
        drop(first);
        pubsub
            .publish("cache:invalidated:1", &json!({ "n": 2 }))
            .await;
        assert_eq!(next(&mut second).await["payload"]["n"], 2);
        assert_eq!(next(&mut pattern).await["payload"]["n"], 2);
        drop(second);
        pubsub
            .publish("cache:invalidated:2", &json!({ "n": 3 }))
            .await;
        assert_eq!(next(&mut other).await["payload"]["n"], 3);
        assert_eq!(next(&mut pattern).await["channel"], "cache:invalidated:2");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_go_between_caches_on_one_redis_under_the_prefix() {
    let server = RedisServer::start();
    let a = redis_cache(&server);
    let b = redis_cache(&server);
    let mut sub = b.pubsub().subscribe("notifications:7").await;
    assert!(a.pubsub().publish("notifications:7", &json!("hi")).await);
    assert_eq!(next(&mut sub).await["payload"], "hi");
    assert_eq!(a.pubsub().wire_name("x"), "spywatcher:pubsub:x");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_come_back_after_redis_restarts() {
    let mut server = RedisServer::start();
    let cache = redis_cache(&server);
    let publisher = redis_cache(&server);
    let mut sub = cache.pubsub().subscribe("presence:1").await;
    let mut pattern = cache.pubsub().psubscribe("presence:*").await;
    let mut reconnects = cache.pubsub().on_reconnect();
    publisher.pubsub().publish("presence:1", &1).await;
    next(&mut sub).await;
    next(&mut pattern).await;

    server.restart();
    tokio::time::timeout(Duration::from_secs(5), reconnects.changed())
        .await
        .expect("the reconnect is announced")
        .unwrap();
    wait_until("messages flow again", Duration::from_secs(5), async || {
        publisher.pubsub().publish("presence:1", &2).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        sub.try_recv().is_some()
    })
    .await;
    assert!(pattern.try_recv().is_some() || next(&mut pattern).await["payload"] == 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_redis_never_confirmed_is_made_when_it_answers_again() {
    let server = RedisServer::start();
    let publisher = redis_cache(&server);
    let cache = redis_cache(&server);
    let mut reconnects = cache.pubsub().on_reconnect();

    // The SUBSCRIBE goes out to a server that does not answer: the call
    // returns after its timeout; the subscriber gives the connection up
    // once the confirmation is overdue (1 s), its SUBSCRIBE unconfirmed.
    server.pause();
    let asked = std::time::Instant::now();
    let mut sub = cache.pubsub().subscribe("presence:9").await;
    assert!(
        asked.elapsed() < Duration::from_millis(500),
        "subscribe waits for Redis no longer than the call timeout"
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    server.resume();

    tokio::time::timeout(Duration::from_secs(5), reconnects.changed())
        .await
        .expect("subscribed again once Redis answers")
        .unwrap();
    wait_until("the message arrives", Duration::from_secs(5), async || {
        publisher.pubsub().publish("presence:9", &1).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        sub.try_recv().is_some()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channel_dropped_and_subscribed_again_at_once_stays_subscribed() {
    let server = RedisServer::start();
    // Long call timeouts: a subscription must be ready because it was
    // confirmed, not because a timeout happened to be long enough.
    let config = || spywatcher_cache::CacheConfig {
        op_timeout: Duration::from_secs(2),
        ..fast_config(&server)
    };
    let publisher = spywatcher_cache::Cache::new(config()).unwrap();
    let cache = spywatcher_cache::Cache::new(config()).unwrap();
    for round in 0..50 {
        let first = cache.pubsub().subscribe("analytics:x:1").await;
        drop(first);
        let mut again = cache.pubsub().subscribe("analytics:x:1").await;
        assert!(publisher.pubsub().publish("analytics:x:1", &round).await);
        assert_eq!(
            next(&mut again).await["payload"],
            round,
            "round {round}: the UNSUBSCRIBE of the dropped subscription won"
        );
    }
}
