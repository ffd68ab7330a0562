//! What redis-rs's cluster client does on a real 3+3 Redis Cluster (the
//! test kit's), pinned before the cluster store (issue 10) relies on it:
//! each test states one behaviour the store's design depends on, so an
//! upgrade that changes it fails here first, not as a wrong value later.

use std::time::Duration;

use redis::AsyncCommands;
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use spywatcher_testkit::cluster::RedisCluster;

/// Retries tuned to the cache's op timeout: the defaults (16 retries, at
/// least 1.28 s apart) would make one call outlast a failover many times.
async fn connect(cluster: &RedisCluster) -> ClusterConnection {
    ClusterClient::builder(cluster.nodes().iter().map(|n| format!("redis://{n}")))
        .retries(6)
        .min_retry_wait(50)
        .max_retry_wait(500)
        .connection_timeout(Duration::from_millis(500))
        .response_timeout(Duration::from_millis(500))
        .build()
        .expect("cluster client")
        .get_async_connection()
        .await
        .expect("cluster connection")
}

/// Two keys that live on different masters.
fn keys_on_two_masters(cluster: &RedisCluster) -> (String, String) {
    let first = "entry:1".to_string();
    let other = (0..1000)
        .map(|i| format!("tag:{i}"))
        .find(|key| cluster.master_of(key) != cluster.master_of(&first))
        .expect("a key on another master");
    (first, other)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_script_runs_on_the_master_of_its_first_key_and_refuses_keys_of_other_slots() {
    let cluster = RedisCluster::start();
    let mut conn = connect(&cluster).await;
    let (entry, tag) = keys_on_two_masters(&cluster);
    let script = redis::Script::new("redis.call('SET', KEYS[1], ARGV[1]) return 1");

    // One key: routed to its slot's master, whichever node we reached.
    let done: i64 = script
        .key(&entry)
        .arg("v")
        .invoke_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(done, 1);
    assert_eq!(conn.get::<_, String>(&entry).await.unwrap(), "v");

    // Declared keys in two slots: CROSSSLOT, nothing written. This is why
    // every multi-key script of the standalone store must become
    // single-slot steps on a cluster.
    let two = redis::Script::new(
        "redis.call('SET', KEYS[1], ARGV[1]) redis.call('SET', KEYS[2], ARGV[1]) return 1",
    );
    let refused = two
        .key(&tag)
        .key(&entry)
        .arg("w")
        .invoke_async::<i64>(&mut conn)
        .await
        .expect_err("keys of two slots in one script");
    assert!(
        refused
            .to_string()
            .to_ascii_uppercase()
            .contains("CROSSSLOT"),
        "refused with: {refused}"
    );
    assert_eq!(conn.get::<_, Option<String>>(&tag).await.unwrap(), None);
    assert_eq!(conn.get::<_, String>(&entry).await.unwrap(), "v");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mget_over_many_slots_is_split_per_slot_and_answered_in_order() {
    let cluster = RedisCluster::start();
    let mut conn = connect(&cluster).await;
    let keys: Vec<String> = (0..50).map(|i| format!("analytics:ghosts:{i}")).collect();
    for (i, key) in keys.iter().enumerate().step_by(2) {
        let _: () = conn.set(key, i).await.unwrap();
    }
    let masters: std::collections::HashSet<String> =
        keys.iter().map(|k| cluster.master_of(k)).collect();
    assert_eq!(masters.len(), 3, "the keys span every master");

    let values: Vec<Option<usize>> = conn.mget(&keys).await.unwrap();
    let expected: Vec<Option<usize>> = (0..50).map(|i| (i % 2 == 0).then_some(i)).collect();
    assert_eq!(values, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipeline_stays_within_one_slot() {
    let cluster = RedisCluster::start();
    let mut conn = connect(&cluster).await;
    let (entry, tag) = keys_on_two_masters(&cluster);

    // Same slot (a hash tag): one pipeline.
    let mut same = redis::pipe();
    same.set("{guild:1}:a", 1).set("{guild:1}:b", 2);
    let () = same.query_async(&mut conn).await.unwrap();
    let both: Vec<i64> = conn.mget(&["{guild:1}:a", "{guild:1}:b"]).await.unwrap();
    assert_eq!(both, [1, 2]);

    // Two slots on two masters: not sent as one pipeline.
    let mut across = redis::pipe();
    across.set(&entry, 1).set(&tag, 2);
    let outcome = across.query_async::<()>(&mut conn).await;
    assert!(
        outcome.is_err(),
        "a pipeline across masters was accepted: the store may no longer need to split its pipelines per slot"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_follow_a_failover_once_the_replica_is_promoted() {
    let mut cluster = RedisCluster::start();
    let mut conn = connect(&cluster).await;
    let key = "entry:failover";
    let _: () = conn.set(key, "before").await.unwrap();

    let old_master = cluster.master_of(key);
    let promoted = cluster.kill_master_of(key);
    assert_ne!(promoted, old_master);

    // The client learns the new slot map (MOVED, or a refresh after the
    // dead node's errors) and the write lands on the promoted replica.
    let mut written = false;
    for _ in 0..40 {
        if conn.set::<_, _, ()>(key, "after").await.is_ok() {
            written = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(
        written,
        "no write through the cluster client after the failover"
    );
    assert_eq!(conn.get::<_, String>(key).await.unwrap(), "after");
    assert_eq!(cluster.master_of(key), promoted);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_classic_publish_on_one_master_reaches_a_subscriber_on_another() {
    let cluster = RedisCluster::start();
    let masters = cluster.masters();
    let client = redis::Client::open(format!("redis://{}", masters[0])).unwrap();
    let mut subscriber = client.get_async_pubsub().await.unwrap();
    subscriber.psubscribe("spywatcher:pubsub:*").await.unwrap();
    let publisher = redis::Client::open(format!("redis://{}", masters[2])).unwrap();
    let mut publisher = publisher.get_multiplexed_async_connection().await.unwrap();
    let receivers: i64 = publisher
        .publish("spywatcher:pubsub:cache:invalidated:1", "hello")
        .await
        .unwrap();
    // PUBLISH counts the receivers of its own node only.
    assert_eq!(receivers, 0);

    use futures::StreamExt;
    let message = tokio::time::timeout(Duration::from_secs(5), subscriber.on_message().next())
        .await
        .expect("the message crossed the cluster bus")
        .expect("a message");
    assert_eq!(
        message.get_channel_name(),
        "spywatcher:pubsub:cache:invalidated:1"
    );
    assert_eq!(message.get_payload::<String>().unwrap(), "hello");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_tells_whether_the_replica_has_a_write_before_it_counts_as_done() {
    // A master killed after an invalidation its replica had not received
    // yet: the promoted replica serves what was invalidated. `WAIT 1` on
    // the master (on a connection of its own: WAIT blocks it) is how the
    // cluster store will know an invalidation survives a failover.
    let cluster = RedisCluster::start();
    let key = "marker:guild:1";
    let master = cluster.master_of(key);
    let replica = cluster.replicas_of(&master).pop().expect("a replica");
    let on_master = redis::Client::open(format!("redis://{master}")).unwrap();
    let mut on_master = on_master.get_multiplexed_async_connection().await.unwrap();
    let wait = |timeout_ms: u64| redis::cmd("WAIT").arg(1).arg(timeout_ms).clone();

    let _: () = on_master.set(key, "v1").await.unwrap();
    let acked: i64 = wait(2000).query_async(&mut on_master).await.unwrap();
    assert_eq!(acked, 1, "a healthy replica acknowledges");

    // The replica's link cut (its process stopped): the write is the
    // master's alone, and WAIT says so when its timeout ends.
    let replica_node = cluster.node(cluster.index_of(&replica));
    replica_node.pause();
    let _: () = on_master.del(key).await.unwrap();
    let acked: i64 = wait(300).query_async(&mut on_master).await.unwrap();
    replica_node.resume();
    assert_eq!(acked, 0, "not acknowledged while the replica is away");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipeline_of_publishes_is_refused_across_slots_but_one_node_takes_every_channel() {
    use futures::StreamExt;
    use redis::cluster_routing::{Route, SingleNodeRoutingInfo, SlotAddr};

    let cluster = RedisCluster::start();
    let mut conn = connect(&cluster).await;
    // The subscriber on another master than the one the pipeline goes to.
    let publishing_master = cluster.master_of("ps:");
    let elsewhere = cluster
        .masters()
        .into_iter()
        .find(|m| *m != publishing_master);
    let client = redis::Client::open(format!("redis://{}", elsewhere.unwrap())).unwrap();
    let mut subscriber = client.get_async_pubsub().await.unwrap();
    subscriber.psubscribe("ps:*").await.unwrap();
    let mut messages = subscriber.on_message();
    let mut received = async || {
        let mut got = Vec::new();
        let quiet = Duration::from_millis(300);
        while let Ok(Some(m)) = tokio::time::timeout(quiet, messages.next()).await {
            got.push(format!(
                "{}={}",
                m.get_channel_name(),
                m.get_payload::<String>().unwrap()
            ));
        }
        got
    };
    let pipeline = |channels: &[String], payload: &str| {
        let mut pipe = redis::pipe();
        for channel in channels {
            pipe.publish(channel, payload).ignore();
        }
        pipe
    };

    // redis-rs routes a PUBLISH by its channel, as if it were a key: channels
    // of several slots make the pipeline CROSSSLOT, refused before anything
    // is sent.
    let channels: Vec<String> = (0..30).map(|i| format!("ps:{i}")).collect();
    let owners: std::collections::HashSet<String> =
        channels.iter().map(|c| cluster.master_of(c)).collect();
    assert_eq!(owners.len(), 3, "the channels' slots span every master");
    let refused = pipeline(&channels, "across")
        .query_async::<()>(&mut conn)
        .await
        .expect_err("a pipeline of PUBLISH across slots");
    assert_eq!(
        refused.kind(),
        redis::ErrorKind::Server(redis::ServerErrorKind::CrossSlot)
    );
    assert_eq!(
        received().await,
        Vec::<String>::new(),
        "nothing was published"
    );

    // Channels of one slot (a hash tag) go as one pipeline.
    let tagged: Vec<String> = (0..3).map(|i| format!("ps:{{t}}:{i}")).collect();
    let () = pipeline(&tagged, "tagged")
        .query_async(&mut conn)
        .await
        .unwrap();
    let expected: Vec<String> = tagged.iter().map(|c| format!("{c}=tagged")).collect();
    assert_eq!(received().await, expected);

    // Routed to one node, the server takes PUBLISH of any channel, and every
    // subscriber of the cluster gets them in order: one round trip for a
    // whole batch.
    let route = SingleNodeRoutingInfo::SpecificNode(Route::with_key("ps:", SlotAddr::Master));
    let count = channels.len();
    let replies = conn
        .route_pipeline(pipeline(&channels, "routed"), 0, count, route)
        .await
        .unwrap();
    assert_eq!(replies.len(), count);
    let expected: Vec<String> = channels.iter().map(|c| format!("{c}=routed")).collect();
    assert_eq!(received().await, expected);
}
