//! A young network in the simulator: 50 nodes bootstrap through one node in the same virtual
//! instant over 1 ms links (loopback-like: every join ends before the bootstrap node knows
//! anyone), and 5 s later every lookup returns the true K closest. The deterministic twin of
//! `udp_mass_join.rs`: without the filling of empty far buckets at settle, whole subtrees
//! knew nobody of their sibling subtree and 10-20% of lookups missed, every seed.

use std::time::Duration;

use carrier_dht::sim::{SimConfig, Simulation};
use carrier_dht::{Key, K};

const NODES: usize = 50;
/// Datagrams a node may send while it joins, at most (as in `udp_mass_join.rs`).
const MAX_JOIN_DATAGRAMS_PER_NODE: u64 = 300;

/// Joins every node at once through node 0, waits 5 s, and returns (exact lookups, lookups,
/// datagrams sent per node in those 5 s).
fn mass_join(seed: u64) -> (usize, usize, Vec<u64>) {
    let mut sim = Simulation::new(SimConfig {
        nodes: NODES,
        seed,
        latency_ms: 1,
        latency_spread_ms: 0,
        ..SimConfig::default()
    });
    sim.join_first(1);
    for i in 1..NODES {
        sim.join(i, 0);
    }
    sim.run_for(Duration::from_secs(5));
    let sent: Vec<u64> = (0..NODES).map(|i| sim.node(i).counters().sent).collect();

    let mut targets: Vec<Key> = (0..NODES).map(|i| sim.node(i).key()).collect();
    targets
        .extend((0..10u64).map(|n| Key(*blake3::hash(&(seed * 100 + n).to_le_bytes()).as_bytes())));
    let (mut exact, mut total) = (0, 0);
    for asker in 0..NODES {
        for target in &targets {
            let Some(id) = sim.start(asker, |node, now| node.find_node(now, *target).ok()) else {
                total += 1;
                continue;
            };
            sim.run_until_done(Duration::from_secs(60));
            let found: Option<Vec<Key>> = sim
                .take_result(asker, id)
                .map(|done| done.closest.iter().map(|c| c.id).collect());
            total += 1;
            if found == Some(sim.true_closest(target, asker, K)) {
                exact += 1;
            }
        }
    }
    (exact, total, sent)
}

#[test]
fn fifty_nodes_joining_in_the_same_instant_are_one_network_within_seconds() {
    for seed in 1..=5 {
        let (exact, total, sent) = mass_join(seed);
        let most = sent.iter().copied().max().unwrap_or(0);
        println!(
            "seed {seed}: {exact}/{total} lookups exact; datagrams sent in the first 5 s: {:.0} \
             per node, most {most}",
            sent.iter().sum::<u64>() as f64 / NODES as f64
        );
        assert_eq!(
            exact, total,
            "seed {seed}: one network 5 s after joining at once"
        );
        assert!(
            most <= MAX_JOIN_DATAGRAMS_PER_NODE,
            "seed {seed}: a join costs at most {MAX_JOIN_DATAGRAMS_PER_NODE} datagrams per \
             node: {sent:?}"
        );
    }
}
