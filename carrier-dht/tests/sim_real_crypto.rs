//! The simulator with real key agreement (X25519 pair keys, XChaCha20-Poly1305) through the
//! same core: lookups, every value kind, peer records, loss and republish after churn.

use std::time::Duration;

use carrier_dht::sim::{run_scenario, Scenario, SimConfig, Simulation};
use carrier_dht::{
    KeyAgreement, MutableValue, NodeConfig, PeerRecord, QueryOutcome, Refusal, Value, K,
};

fn outcome(sim: &mut Simulation, node: usize, id: carrier_dht::QueryId) -> QueryOutcome {
    sim.run_until_done(Duration::from_secs(60));
    sim.take_result(node, id).expect("finished").outcome
}

#[test]
fn hundred_nodes_with_real_crypto_find_closest_and_store_every_kind() {
    let mut scenario = Scenario::standard(120);
    scenario.key_agreement = KeyAgreement::Real;
    scenario.lookups = 100;
    scenario.values = 50;
    let figures = run_scenario(&scenario);
    println!("real crypto, 120 nodes: {figures:?}");
    assert_eq!(figures.success, 1.0, "{figures:?}");
    assert_eq!(figures.put_success, 1.0);
    assert!(figures.churn30_get_success >= 0.99);
}

#[test]
fn mutable_values_and_peer_records_over_real_crypto() {
    let mut sim = Simulation::new(SimConfig {
        nodes: 60,
        key_agreement: KeyAgreement::Real,
        ..SimConfig::default()
    });
    sim.join_all();
    let owner = sim.node(3).keypair().clone();

    // Mutable value: version 1, then 2; a get returns the newest; a stale CAS is refused.
    let v1 = MutableValue::sign(&owner, b"profile", 1, b"first").expect("cap");
    let key = v1.key();
    let id = sim
        .start(3, |n, now| n.put(now, Value::Mutable(v1), None).ok())
        .expect("put");
    assert!(matches!(outcome(&mut sim, 3, id), QueryOutcome::Stored { acks, .. } if acks >= K - 1));
    let v2 = MutableValue::sign(&owner, b"profile", 2, b"second").expect("cap");
    let id = sim
        .start(3, |n, now| n.put(now, Value::Mutable(v2), Some(1)).ok())
        .expect("put");
    assert!(matches!(outcome(&mut sim, 3, id), QueryOutcome::Stored { acks, .. } if acks >= K - 1));
    let v3 = MutableValue::sign(&owner, b"profile", 3, b"third").expect("cap");
    let id = sim
        .start(3, |n, now| n.put(now, Value::Mutable(v3), Some(1)).ok())
        .expect("put");
    match outcome(&mut sim, 3, id) {
        QueryOutcome::Stored { acks, refusals } => {
            assert_eq!(acks, 0);
            assert!(refusals.iter().all(|r| *r == Refusal::CasMismatch));
        }
        other => panic!("{other:?}"),
    }
    let id = sim.start(40, |n, now| n.get(now, key).ok()).expect("get");
    match outcome(&mut sim, 40, id) {
        QueryOutcome::Value(Some(Value::Mutable(v))) => {
            assert_eq!((v.seq, &v.data[..]), (2, &b"second"[..]))
        }
        other => panic!("{other:?}"),
    }

    // Peer record: announced by node 5, found by node 50.
    let keypair = sim.node(5).keypair().clone();
    let addr = sim.contact(5).addr;
    let expires = 1_767_225_600 + 3_600;
    let record = PeerRecord::sign(&keypair, 1, expires, vec![addr], vec![]).expect("cap");
    let id = sim
        .start(5, |n, now| n.announce(now, record.clone()).ok())
        .expect("announce");
    assert!(matches!(outcome(&mut sim, 5, id), QueryOutcome::Stored { acks, .. } if acks >= K - 1));
    let target = sim.node(5).key();
    let id = sim
        .start(50, |n, now| n.find_peer(now, target).ok())
        .expect("find");
    assert_eq!(outcome(&mut sim, 50, id), QueryOutcome::Peer(Some(record)));

    // Every response told each node the address it was seen from.
    assert_eq!(sim.node(50).observed_addr(), Some(sim.contact(50).addr));
}

#[test]
fn gets_succeed_under_five_percent_loss() {
    let mut scenario = Scenario::standard(400);
    scenario.loss = 0.05;
    scenario.lookups = 50;
    scenario.values = 100;
    let figures = run_scenario(&scenario);
    println!("400 nodes, 5% loss: {figures:?}");
    assert!(figures.put_success >= 0.99, "{figures:?}");
    assert!(figures.churn30_get_success >= 0.99, "{figures:?}");
}

#[test]
fn storers_republish_so_replicas_recover_after_churn() {
    let node = NodeConfig {
        republish_interval: Duration::from_secs(60),
        ..SimConfig::default().node
    };
    let mut sim = Simulation::new(SimConfig {
        nodes: 300,
        node,
        ..SimConfig::default()
    });
    sim.join_all();
    let mut keys = Vec::new();
    for i in 0..20u32 {
        keys.push(
            sim.put(i as usize, format!("v{i}").as_bytes())
                .expect("stored"),
        );
    }
    let replicas = |sim: &Simulation, key| {
        sim.live_nodes()
            .into_iter()
            .filter(|&i| {
                sim.node(i).storage().get(&key, u64::MAX / 2).is_some()
                    || sim
                        .node(i)
                        .storage()
                        .get(&key, 1_767_225_600_000 + sim.elapsed().as_millis() as u64)
                        .is_some()
            })
            .count()
    };
    for i in (0..300).step_by(3) {
        sim.kill(i);
    }
    let before: usize = keys.iter().map(|k| replicas(&sim, *k)).min().unwrap_or(0);
    sim.run_for(Duration::from_secs(150));
    let after: usize = keys.iter().map(|k| replicas(&sim, *k)).min().unwrap_or(0);
    println!("fewest live replicas after churn: {before}, after republish: {after}");
    assert!(
        after >= K,
        "republish restores K replicas (had {before}, now {after})"
    );
}
