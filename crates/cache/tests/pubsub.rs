//! SPEC 3: publish, subscribe (several handlers), patterns, unsubscribe, and
//! re-subscription after the subscriber connection comes back.

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
