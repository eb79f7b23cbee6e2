//! A young network: 50 real nodes on loopback UDP (127.50.x.1) all bootstrap through one node
//! in the same instant, and within seconds they are one network: every node's lookups return
//! the true K closest. The join's cost, in datagrams, is printed and bounded. When all 49 joins
//! end before the bootstrap node has met anyone (within about 20 ms), each node meets only its
//! neighbours as it settles; the lookups that fill its empty far buckets through the bootstrap
//! node join the subtrees (`sim_mass_join.rs` is the deterministic twin).

// Helpers of these tests unwrap as the tests do: a failure is the test failing.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use carrier_dht::id::Keypair;
use carrier_dht::{BootstrapNode, Dht, DhtConfig, Key, K};

const NODES: usize = 50;
/// When the network must be one, from the joins: well before the first maintenance tick
/// (60 s), when the second self-lookup used to be the first chance to meet later neighbours.
const WITHIN: Duration = Duration::from_secs(5);
/// Datagrams a node may send while it joins (its own lookups and the checks of those that
/// query it), at most: the bound the join's cost is held to.
const MAX_JOIN_DATAGRAMS_PER_NODE: u64 = 300;

fn addr(i: usize) -> SocketAddr {
    SocketAddr::from(([127, 50, (i + 1) as u8, 1], 0))
}

fn config(i: usize) -> DhtConfig {
    let mut config = DhtConfig::new(addr(i));
    config.keypair = Some(Keypair::from_seed(&[i as u8 + 101; 32]));
    config.query_timeout = Duration::from_secs(20);
    config.node.server = true;
    // No node dies here: a reply that a loaded machine delays past the usual 200 ms floor
    // must not count as a silent node and leave a lookup short of the true K closest.
    config.node.min_rto = Duration::from_secs(2);
    config
}

/// The true K closest to `target` among `keys`, leaving out `asker`.
fn truth(keys: &[Key], asker: usize, target: &Key) -> Vec<Key> {
    let mut others: Vec<Key> = keys
        .iter()
        .enumerate()
        .filter(|&(i, _)| i != asker)
        .map(|(_, k)| *k)
        .collect();
    others.sort_by_key(|k| k.distance(target));
    others.truncate(K);
    others
}

/// Lookups from every node, of every node's key and of a few random keys: how many returned
/// the true K closest, out of how many.
async fn exact_lookups(nodes: &[Dht], keys: &[Key], round: u64) -> (usize, usize) {
    let mut targets: Vec<Key> = keys.to_vec();
    targets.extend(
        (0..10u64).map(|n| Key(*blake3::hash(&(round * 100 + n).to_le_bytes()).as_bytes())),
    );
    let mut exact = 0;
    let mut total = 0;
    for (asker, node) in nodes.iter().enumerate() {
        for target in &targets {
            let found: Vec<Key> = node
                .find_node(*target)
                .await
                .unwrap()
                .iter()
                .map(|c| c.id)
                .collect();
            total += 1;
            if found == truth(keys, asker, target) {
                exact += 1;
            }
        }
    }
    (exact, total)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_nodes_joining_at_once_are_one_network_within_seconds() {
    let first = Dht::bind(config(0)).await.unwrap();
    let seed = BootstrapNode::new(first.id(), first.local_addr());
    let mut nodes = vec![first];
    for i in 1..NODES {
        let mut config = config(i);
        config.bootstrap = vec![seed.clone()];
        nodes.push(Dht::bind(config).await.unwrap());
    }
    let keys: Vec<Key> = nodes.iter().map(|n| Key::of_node(&n.id())).collect();

    // Every node but the seed bootstraps in the same instant.
    let started = Instant::now();
    let joins: Vec<_> = nodes[1..]
        .iter()
        .map(|node| {
            let node = node.clone();
            tokio::spawn(async move { node.bootstrap().await })
        })
        .collect();
    for join in joins {
        join.await.unwrap().unwrap();
    }
    let joined = started.elapsed();

    // The network's own work after the joins (each node's follow-up lookups, the checks of
    // those that queried it) ends within seconds; then what the joins cost is read, and every
    // node's lookups are checked once.
    tokio::time::sleep(WITHIN.saturating_sub(started.elapsed())).await;
    let sent: Vec<u64> = nodes.iter().map(|n| n.counters().sent).collect();
    let total_sent: u64 = sent.iter().sum();
    let most = sent.iter().copied().max().unwrap_or(0);
    let entries: Vec<usize> = nodes.iter().map(Dht::routing_entries).collect();
    let known_by: Vec<usize> = keys
        .iter()
        .map(|k| {
            nodes
                .iter()
                .filter(|n| n.with_node(|c| c.routing_table().contains(k)))
                .count()
        })
        .collect();
    let (exact, total) = exact_lookups(&nodes, &keys, 1).await;
    println!(
        "{NODES} nodes joined at once in {:.0} ms; datagrams sent in the first {WITHIN:?}: \
         {total_sent} ({:.0} per node, most {most}); then {exact}/{total} lookups exact",
        joined.as_secs_f64() * 1e3,
        total_sent as f64 / NODES as f64,
    );
    assert_eq!(
        exact, total,
        "one network {WITHIN:?} after joining at once; routing entries {entries:?}, \
         tables holding each node {known_by:?}"
    );
    assert!(
        most <= MAX_JOIN_DATAGRAMS_PER_NODE,
        "a join costs at most {MAX_JOIN_DATAGRAMS_PER_NODE} datagrams per node: {sent:?}"
    );
}
