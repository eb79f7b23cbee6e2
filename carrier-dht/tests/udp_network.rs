//! Real nodes on real UDP sockets over 127.x.y.1: bootstrap, every kind of value put on one
//! node and got from others, announce and find_peer, and a node restarted on its data
//! directory that rejoins without bootstrap nodes and still serves what it stored.

// Helpers of these tests unwrap as the tests do: a failure is the test failing.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use carrier_dht::id::Keypair;
use carrier_dht::{BootstrapNode, Dht, DhtConfig, Key, PeerRecord, Value};

const NODES: usize = 50;

/// Node `i` listens on 127.0.(i+1).1, so no two nodes share a /24 and the per-subnet bucket
/// limit stays on, as in production.
fn addr(i: usize) -> SocketAddr {
    SocketAddr::from(([127, 0, (i + 1) as u8, 1], 0))
}

fn config(i: usize, data_dir: Option<std::path::PathBuf>) -> DhtConfig {
    let mut config = DhtConfig::new(addr(i));
    config.data_dir = data_dir.clone();
    // With a data directory the key comes from (and is created in) its key file.
    config.keypair = data_dir
        .is_none()
        .then(|| Keypair::from_seed(&[i as u8 + 1; 32]));
    config.query_timeout = Duration::from_secs(20);
    config.node.server = true;
    config
}

async fn network(dirs: &tempfile::TempDir) -> Vec<Dht> {
    let first = Dht::bind(config(0, Some(dirs.path().join("node-0"))))
        .await
        .unwrap();
    let seed = BootstrapNode::new(first.id(), first.local_addr());
    let mut nodes = vec![first];
    for i in 1..NODES {
        let mut config = config(i, Some(dirs.path().join(format!("node-{i}"))));
        config.bootstrap = vec![seed.clone()];
        nodes.push(Dht::bind(config).await.unwrap());
    }
    // Nodes join one after another, as a network grows (a join takes a few milliseconds
    // here). Joining all in the same instant is `udp_mass_join.rs`'s case: the network is one
    // only once the joins have settled, 1 to 3 s later.
    for node in &nodes[1..] {
        node.bootstrap().await.unwrap();
    }
    common::settle(&nodes).await;
    nodes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_nodes_store_find_and_survive_a_restart() {
    let dirs = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let nodes = network(&dirs).await;
    let bootstrapped = started.elapsed();
    for node in &nodes {
        assert!(node.routing_entries() >= 8, "{node:?} knows too few nodes");
    }

    // Lookups from every node find the same closest servers.
    let target = Key::of_node(&nodes[17].id());
    let t0 = Instant::now();
    let mut lookups = Vec::new();
    for node in &nodes {
        let found = node.find_node(target).await.unwrap();
        if node.id() != nodes[17].id() {
            // A node never lists itself, so node 17's own lookup starts with its neighbour.
            if found.first().map(|c| c.id) != Some(target) {
                let knowers: Vec<usize> = (0..NODES)
                    .filter(|&i| nodes[i].with_node(|c| c.routing_table().contains(&target)))
                    .collect();
                let pos = |k: Key| nodes.iter().position(|n| Key::of_node(&n.id()) == k);
                let found: Vec<_> = found.iter().map(|c| pos(c.id)).collect();
                let own = nodes.iter().position(|n| n.id() == node.id());
                let mut truth: Vec<usize> = (0..NODES).collect();
                truth.sort_by_key(|&i| Key::of_node(&nodes[i].id()).distance(&target));
                panic!(
                    "node {own:?} found {found:?}; true order {:?}; tables holding 17: {knowers:?}",
                    &truth[..9]
                );
            }
        }
        lookups.push(t0.elapsed());
    }
    let lookup_ms: Vec<f64> = lookups
        .windows(2)
        .map(|w| (w[1] - w[0]).as_secs_f64() * 1e3)
        .collect();
    let mut sorted = lookup_ms.clone();
    sorted.sort_by(f64::total_cmp);
    println!(
        "{NODES} nodes bootstrapped in {:.0} ms; lookup p50 {:.2} ms, max {:.2} ms",
        bootstrapped.as_secs_f64() * 1e3,
        sorted[sorted.len() / 2],
        sorted[sorted.len() - 1]
    );

    // An immutable value put on one node is got from others.
    let (immutable_key, acks) = nodes[3].put_immutable(b"immutable hello").await.unwrap();
    assert!(acks >= 1);
    // A mutable value: a higher sequence replaces a lower one.
    let (mutable_key, _) = nodes[5].put_mutable(b"salt", 1, b"first").await.unwrap();
    nodes[5].put_mutable(b"salt", 2, b"second").await.unwrap();
    for reader in [10, 20, 30, 40, 49] {
        match nodes[reader].get(immutable_key).await.unwrap() {
            Some(v @ Value::Immutable(_)) => assert_eq!(v.data(), b"immutable hello"),
            other => panic!("node {reader} got {other:?}"),
        }
        match nodes[reader].get(mutable_key).await.unwrap() {
            Some(v @ Value::Mutable(_)) => {
                assert_eq!((v.seq(), v.data()), (2, &b"second"[..]));
            }
            other => {
                let storers: Vec<usize> = (0..NODES)
                    .filter(|&i| {
                        nodes[i].with_node(|c| {
                            c.storage().get(&mutable_key, unix_secs() * 1000).is_some()
                        })
                    })
                    .collect();
                let closest: Vec<usize> = nodes[reader]
                    .find_node(mutable_key)
                    .await
                    .unwrap()
                    .iter()
                    .filter_map(|c| nodes.iter().position(|n| Key::of_node(&n.id()) == c.id))
                    .collect();
                panic!("node {reader} got {other:?}; storers {storers:?}; closest {closest:?}; reader counters {:?}", nodes[reader].counters())
            }
        }
    }

    // Node 7 announces its peer record; others find it.
    let announcer = nodes[7].with_node(|core| core.keypair().clone());
    let record = PeerRecord::sign(
        &announcer,
        1,
        unix_secs() + 600,
        vec![nodes[7].local_addr()],
        vec![],
    )
    .unwrap();
    assert!(nodes[7].announce(record.clone()).await.unwrap() >= 1);
    let found = nodes[33].find_peer(&announcer.id()).await.unwrap();
    assert_eq!(found, Some(record));

    // A storer of the immutable value restarts on its data directory with no bootstrap
    // nodes: it rejoins through its saved contacts and still serves the value.
    let storer = nodes
        .iter()
        .position(|n| {
            n.with_node(|core| {
                core.storage()
                    .get(&immutable_key, unix_secs() * 1000)
                    .is_some()
            })
        })
        .expect("some node stores the value");
    let restarted_id = nodes[storer].id();
    let mut nodes = nodes;
    let old = nodes.remove(storer);
    let old_addr = old.local_addr();
    old.shutdown().await.unwrap();
    // Same data directory and port, no bootstrap nodes (the key comes from the key file).
    let mut restarted_config = config(storer, Some(dirs.path().join(format!("node-{storer}"))));
    restarted_config.bind = old_addr;
    let restarted = Dht::bind(restarted_config).await.unwrap();
    assert_eq!(restarted.id(), restarted_id);
    assert!(restarted.with_node(|core| core
        .storage()
        .get(&immutable_key, unix_secs() * 1000)
        .is_some()));
    let entries = restarted.bootstrap().await.unwrap();
    assert!(entries >= 8, "rejoined with only {entries} entries");
    match restarted.get(immutable_key).await.unwrap() {
        Some(v @ Value::Immutable(_)) => assert_eq!(v.data(), b"immutable hello"),
        other => panic!("restarted node got {other:?}"),
    }
    // Others reach it again at its address.
    let found = nodes[0]
        .find_node(Key::of_node(&restarted_id))
        .await
        .unwrap();
    assert_eq!(
        found.first().map(|c| (c.id, c.addr)),
        Some((Key::of_node(&restarted_id), old_addr))
    );
}

#[tokio::test]
async fn a_lone_node_says_it_is_not_bootstrapped() {
    let node = Dht::bind(config(60, None)).await.unwrap();
    assert!(matches!(
        node.get(Key([1; 32])).await,
        Err(carrier_dht::DhtError::NotBootstrapped)
    ));
    assert!(matches!(
        node.bootstrap().await,
        Err(carrier_dht::DhtError::NotBootstrapped)
    ));
    let too_big = vec![0u8; carrier_dht::MAX_VALUE_BYTES + 1];
    assert!(matches!(
        node.put_immutable(&too_big).await,
        Err(carrier_dht::DhtError::TooLarge { .. })
    ));
}

#[tokio::test]
async fn a_silent_bootstrap_node_fails_the_bootstrap() {
    let silent = std::net::UdpSocket::bind("127.0.61.1:0").unwrap();
    let mut config = config(62, None);
    config.bootstrap = vec![BootstrapNode::new(
        Keypair::from_seed(&[99; 32]).id(),
        silent.local_addr().unwrap(),
    )];
    config.node.initial_rto = Duration::from_millis(100);
    config.node.max_rto = Duration::from_millis(200);
    let node = Dht::bind(config).await.unwrap();
    assert!(matches!(
        node.bootstrap().await,
        Err(carrier_dht::DhtError::BootstrapFailed { tried: 1 })
    ));
}

#[tokio::test]
async fn shutdown_releases_the_database_for_an_immediate_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("node");
    let node = Dht::bind(config(63, Some(data.clone()))).await.unwrap();
    let id = node.id();
    // A clone still alive elsewhere (as the layers above keep one) must not keep the
    // database open once shutdown returns.
    let other = node.clone();
    node.shutdown().await.unwrap();
    assert!(other.store().is_none());
    let again = Dht::bind(config(63, Some(data.clone()))).await.unwrap();
    assert_eq!(again.id(), id, "the same key file");
    again.shutdown().await.unwrap();
    drop(other);
}

fn unix_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}
