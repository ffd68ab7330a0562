//! The test kit's Redis Cluster against real `redis-server` processes.

use std::time::Instant;

use spywatcher_testkit::cluster::{RedisCluster, SLOTS};

#[test]
fn starts_three_masters_and_three_replicas_covering_every_slot() {
    let started = Instant::now();
    let cluster = RedisCluster::start();
    eprintln!("3+3 cluster ready in {:?}", started.elapsed());

    let nodes = cluster.nodes();
    assert_eq!(nodes.len(), 6);
    assert_eq!(cluster.nodes_env(), nodes.join(","));
    let (masters, replicas) = (cluster.masters(), cluster.replicas());
    assert_eq!(masters.len(), 3, "masters: {masters:?}");
    assert_eq!(replicas.len(), 3, "replicas: {replicas:?}");
    let mut all: Vec<String> = masters.iter().chain(&replicas).cloned().collect();
    all.sort();
    let mut expected = nodes.clone();
    expected.sort();
    assert_eq!(all, expected, "every node is a master or a replica");
    for master in &masters {
        assert_eq!(
            cluster.replicas_of(master).len(),
            1,
            "{master} has one replica"
        );
    }

    // Every node agrees the cluster is ok with every slot assigned and served.
    for (i, node) in nodes.iter().enumerate() {
        let info = cluster.node(i).cli(&["CLUSTER", "INFO"]);
        assert!(info.contains("cluster_state:ok"), "{node}: {info}");
        assert!(
            info.contains(&format!("cluster_slots_assigned:{SLOTS}")),
            "{info}"
        );
        assert!(
            info.contains(&format!("cluster_slots_ok:{SLOTS}")),
            "{info}"
        );
        assert!(info.contains("cluster_known_nodes:6"), "{info}");
    }
    // The masters' slot ranges add up to 16384 slots.
    let served: u32 = cluster
        .topology()
        .iter()
        .filter(|n| n.is_master())
        .flat_map(|n| n.slots.iter().map(|&(a, b)| b - a + 1))
        .sum();
    assert_eq!(served, SLOTS);
}

#[test]
fn a_key_written_through_one_node_is_read_through_another() {
    let cluster = RedisCluster::start();
    // Keys in different slots, so at least some writes are redirected.
    for key in ["alpha", "beta", "gamma", "delta"] {
        let value = format!("value-of-{key}");
        assert_eq!(cluster.node(0).cli(&["-c", "SET", key, &value]), "OK");
        for i in 1..6 {
            assert_eq!(
                cluster.node(i).cli(&["-c", "GET", key]),
                value,
                "GET {key} on node {i}"
            );
        }
    }
    assert_eq!(cluster.slot_of("alpha"), cluster.slot_of("{alpha}.other"));
    let master = cluster.master_of("alpha");
    let i = cluster.index_of(&master);
    assert_eq!(
        cluster.node(i).cli(&["GET", "alpha"]),
        "value-of-alpha",
        "the owner has it without -c"
    );
}

#[test]
fn killing_a_keys_master_promotes_its_replica_and_keeps_the_key() {
    let mut cluster = RedisCluster::start();
    let old_master = cluster.master_of("survivor");
    let replica = cluster.replicas_of(&old_master);
    assert_eq!(replica.len(), 1);
    let owner = cluster.node(cluster.index_of(&old_master));
    // SET and WAIT on one connection (WAIT counts the replicas that have
    // acknowledged this connection's writes), so the replica has the key.
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "printf 'SET survivor still-here\\nWAIT 1 1000\\n' | redis-cli -p {}",
            owner.port()
        ))
        .output()
        .expect("run redis-cli");
    let out = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        ["OK", "1"],
        "SET then WAIT 1 1000"
    );

    let started = Instant::now();
    let new_master = cluster.kill_master_of("survivor");
    let took = started.elapsed();
    eprintln!("failover after SIGKILL took {took:?}");
    assert_eq!(new_master, replica[0], "the replica took over");
    assert!(took.as_secs() < 10, "failover took {took:?}");
    assert!(!cluster.node(cluster.index_of(&old_master)).is_running());

    assert_eq!(cluster.master_of("survivor"), new_master);
    assert_eq!(cluster.masters().len(), 3);
    assert!(!cluster.masters().contains(&old_master));
    assert_eq!(cluster.cli(&["GET", "survivor"]), "still-here");
    let info = cluster.cli(&["CLUSTER", "INFO"]);
    assert!(info.contains("cluster_state:ok"), "{info}");
    // Writes work again on the promoted master.
    assert_eq!(cluster.cli(&["SET", "survivor", "after"]), "OK");
    assert_eq!(cluster.cli(&["GET", "survivor"]), "after");

    // The old master, restarted with its nodes.conf, rejoins as a replica of
    // the node that took its slots.
    let i = cluster.index_of(&old_master);
    cluster.node_mut(i).restart();
    let started = Instant::now();
    cluster.wait_healthy();
    eprintln!("restarted master rejoined in {:?}", started.elapsed());
    assert_eq!(cluster.replicas_of(&new_master), vec![old_master.clone()]);
    assert_eq!(cluster.masters().len(), 3);
    assert_eq!(cluster.replicas().len(), 3);
    assert_eq!(cluster.node(i).cli(&["-c", "GET", "survivor"]), "after");
}

#[test]
fn a_manual_failover_swaps_roles() {
    let cluster = RedisCluster::start();
    let master = cluster.master_of("swapped");
    let replica = cluster.replicas_of(&master).remove(0);
    assert_eq!(cluster.cli(&["SET", "swapped", "1"]), "OK");

    let started = Instant::now();
    let old = cluster.manual_failover(&replica);
    eprintln!("CLUSTER FAILOVER took {:?}", started.elapsed());
    assert_eq!(old, master);
    assert!(cluster.masters().contains(&replica));
    assert!(cluster.replicas().contains(&master));
    assert_eq!(cluster.replicas_of(&replica), vec![master.clone()]);
    assert_eq!(cluster.master_of("swapped"), replica);
    assert_eq!(cluster.cli(&["GET", "swapped"]), "1");
    assert_eq!(cluster.masters().len(), 3);
    assert_eq!(cluster.replicas().len(), 3);
}
