//! Nodes dying and joining while the network runs: lookups still find the true K closest
//! live servers, and values stored before stay reachable.

use std::time::Duration;

use carrier_dht::sim::{SimConfig, Simulation};
use carrier_dht::{Key, QueryOutcome, K};

#[test]
fn lookups_stay_exact_and_values_reachable_as_nodes_die_and_join() {
    let mut sim = Simulation::new(SimConfig {
        nodes: 600,
        seed: 11,
        ..SimConfig::default()
    });
    sim.join_first(450);
    let keys: Vec<(Key, Vec<u8>)> = (0..40u32)
        .map(|i| {
            let data = format!("churn value {i}").into_bytes();
            let key = sim.put((i as usize * 11) % 450, &data).expect("stored");
            (key, data)
        })
        .collect();
    // A third of the joined nodes die; 150 newcomers join.
    for i in (0..450).step_by(3) {
        sim.kill(i);
    }
    let newcomers: Vec<usize> = (450..600).collect();
    sim.join_later(&newcomers);
    // Let every node run maintenance (newcomers' second self-lookup, republish not yet due).
    sim.run_for(Duration::from_secs(70));

    let live = sim.live_nodes();
    let mut exact = 0;
    let lookups = 60;
    for n in 0..lookups {
        let asker = live[(n * 37) % live.len()];
        let target = Key(*blake3::hash(&(n as u64).to_le_bytes()).as_bytes());
        let id = sim
            .start(asker, |node, now| node.find_node(now, target).ok())
            .expect("start");
        sim.run_until_done(Duration::from_secs(60));
        let done = sim.take_result(asker, id).expect("finished");
        let found: Vec<Key> = done.closest.iter().map(|c| c.id).collect();
        if found == sim.true_closest(&target, asker, K) {
            exact += 1;
        }
    }
    let mut got = 0;
    for (n, (key, data)) in keys.iter().enumerate() {
        let asker = live[(n * 53 + 1) % live.len()];
        let key = *key;
        let id = sim
            .start(asker, |node, now| node.get(now, key).ok())
            .expect("start");
        sim.run_until_done(Duration::from_secs(60));
        if let Some(done) = sim.take_result(asker, id) {
            if matches!(&done.outcome, QueryOutcome::Value(Some(v)) if v.data() == data.as_slice())
            {
                got += 1;
            }
        }
    }
    println!(
        "after churn and joins: {exact}/{lookups} lookups exact, {got}/{} gets",
        keys.len()
    );
    assert_eq!(
        exact, lookups,
        "lookups find the true K closest live servers"
    );
    assert_eq!(got, keys.len(), "values stored before the churn are found");
}

#[test]
fn same_seed_gives_the_same_run() {
    let run = || {
        let mut scenario = carrier_dht::sim::Scenario::standard(300);
        scenario.lookups = 40;
        scenario.values = 40;
        scenario.loss = 0.02;
        carrier_dht::sim::run_scenario(&scenario)
    };
    assert_eq!(run(), run());
}
