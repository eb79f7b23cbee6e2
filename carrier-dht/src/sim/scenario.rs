//! The benchmark scenario: join N nodes, check lookups against the truth, store values, kill
//! a share of the nodes at once, and get the values back.

use std::time::Duration;

use crate::node::event::QueryOutcome;
use crate::sim::network::{SimConfig, Simulation};
use crate::sim::trace::LookupSummary;
use crate::wire::key::Key;
use crate::wire::message::K;
use crate::wire::packet::KeyAgreement;
use crate::wire::record::Value;

/// Above this many nodes, the simulated nodes' caches shrink (see [`run_scenario`]).
const LARGE_NETWORK: usize = 20_000;

/// Nodes whose routing tables the trace compares with an ideal table.
const TABLES_SAMPLED: usize = 200;

/// What [`run_scenario`] does.
#[derive(Clone, Debug)]
pub struct Scenario {
    /// Nodes in the network.
    pub nodes: usize,
    /// Lookups of random keys from random nodes, checked against the true K closest.
    pub lookups: usize,
    /// Values stored before the churn, then fetched after it.
    pub values: usize,
    /// Share of nodes killed at once after the values are stored.
    pub churn: f64,
    /// Probability that a datagram is lost.
    pub loss: f64,
    /// Seed of the run.
    pub seed: u64,
    /// Real key agreement or the simulation's stand-in.
    pub key_agreement: KeyAgreement,
}

impl Scenario {
    /// The scenario of the `dht.sim10k` figures, with `nodes` nodes.
    pub fn standard(nodes: usize) -> Self {
        Self {
            nodes,
            lookups: 500,
            values: 500,
            churn: 0.3,
            loss: 0.0,
            seed: 7,
            key_agreement: KeyAgreement::Simulated,
        }
    }
}

/// The figures a scenario run produces.
#[derive(Clone, Debug, PartialEq)]
pub struct SimFigures {
    /// Nodes in the network.
    pub nodes: usize,
    /// Median lookup rounds (hop depth).
    pub rounds_p50: u32,
    /// 95th-percentile lookup rounds.
    pub rounds_p95: u32,
    /// Median simulated lookup time, in milliseconds.
    pub lookup_ms_p50: f64,
    /// Share of lookups that returned exactly the true K closest live servers.
    pub success: f64,
    /// Share of stores that at least one server acknowledged.
    pub put_success: f64,
    /// Share of gets, after the churn (30% of nodes in the standard scenario), that returned
    /// the value stored before it: the `churn30_get_success` figure.
    pub churn30_get_success: f64,
    /// Datagrams of a lookup (requests sent, each attempt, and answers received), mean over
    /// the checked lookups: the `datagrams_per_lookup` figure.
    pub datagrams_per_lookup: f64,
    /// Where the checked lookups' rounds went, and how full tables were before them.
    pub trace: LookupSummary,
    /// Datagrams delivered during the run.
    pub datagrams: u64,
    /// Virtual time the run covered, in seconds.
    pub virtual_secs: f64,
}

fn percentile<T: Copy + Ord>(sorted: &[T], p: f64) -> Option<T> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    Some(sorted[rank - 1])
}

/// Runs `scenario` and returns its figures.
pub fn run_scenario(scenario: &Scenario) -> SimFigures {
    let mut config = SimConfig {
        nodes: scenario.nodes,
        seed: scenario.seed,
        loss: scenario.loss,
        key_agreement: scenario.key_agreement,
        ..SimConfig::default()
    };
    if scenario.nodes > LARGE_NETWORK {
        // Per-node caches are most of a simulated node's memory (about 150 KiB at 10,000
        // nodes); a quarter of them keeps 100,000 nodes within a few GiB. An evicted pair key
        // is derived again, an evicted RTT falls back to the all-peers estimate, an evicted
        // token costs a store one `TokenRequired` round trip: lookups are not changed.
        config.node.pair_key_cache_entries /= 4;
        config.node.rtt_entries /= 4;
        config.node.replay_cache_entries /= 4;
        config.node.rate_limit_entries /= 4;
    }
    let mut sim = Simulation::new(config);
    sim.join_all();
    // Long enough for every node's first maintenance tick (its second self-lookup).
    sim.run_for(Duration::from_secs(65));

    let mut trace = LookupSummary::default();
    let live = sim.live_nodes();
    for &i in live
        .iter()
        .step_by(live.len().div_ceil(TABLES_SAMPLED).max(1))
    {
        trace.add_table(&sim.bucket_fill(i));
    }

    // Lookups, started 2 ms apart so many run at once.
    sim.set_tracing(true);
    let mut started = Vec::new();
    for _ in 0..scenario.lookups {
        let live = sim.live_nodes();
        let asker = live[sim.rng.below(live.len())];
        let mut target = [0u8; 32];
        for chunk in target.chunks_mut(8) {
            chunk.copy_from_slice(&sim.rng.next_u64().to_le_bytes());
        }
        let target = Key(target);
        if let Some(id) = sim.start(asker, |node, now| node.find_node(now, target).ok()) {
            started.push((asker, id, target));
        }
        sim.run_for(Duration::from_millis(2));
    }
    sim.run_until_done(Duration::from_secs(120));
    // Answers to requests still in flight when a lookup finished arrive in its trace.
    sim.run_for(Duration::from_secs(5));
    let mut rounds = Vec::new();
    let mut millis = Vec::new();
    let mut exact = 0usize;
    for (asker, id, target) in &started {
        let Some(done) = sim.take_result(*asker, *id) else {
            continue;
        };
        rounds.push(done.rounds);
        millis.push(done.elapsed.as_micros() as u64);
        let found: Vec<Key> = done.closest.iter().map(|c| c.id).collect();
        let truth = sim.true_closest(target, *asker, K);
        if found == truth {
            exact += 1;
        }
        if let Some(t) = sim.take_trace(*asker, *id) {
            trace.add_lookup(&t, &truth);
        }
    }
    sim.set_tracing(false);
    rounds.sort_unstable();
    millis.sort_unstable();

    // Values, stored from random nodes.
    let mut stores = Vec::new();
    for i in 0..scenario.values {
        let live = sim.live_nodes();
        let from = live[sim.rng.below(live.len())];
        let data = format!("value {i} of seed {}", scenario.seed).into_bytes();
        let mut key = Key([0; 32]);
        if let Some(id) = sim.start(from, |node, now| {
            let (id, k) = node.put_immutable(now, &data).ok()?;
            key = k;
            Some(id)
        }) {
            stores.push((from, id, key, data));
        }
        sim.run_for(Duration::from_millis(2));
    }
    sim.run_until_done(Duration::from_secs(120));
    let mut stored = Vec::new();
    for (from, id, key, data) in stores {
        if let Some(done) = sim.take_result(from, id) {
            if matches!(done.outcome, QueryOutcome::Stored { acks, .. } if acks > 0) {
                stored.push((key, data));
            }
        }
    }

    // Churn: a share of the nodes dies at once, then every value is fetched.
    let live = sim.live_nodes();
    let kill = (live.len() as f64 * scenario.churn) as usize;
    let mut order = live.clone();
    for i in (1..order.len()).rev() {
        let j = sim.rng.below(i + 1);
        order.swap(i, j);
    }
    for &victim in order.iter().take(kill) {
        sim.kill(victim);
    }
    let mut gets = Vec::new();
    for (key, data) in &stored {
        let live = sim.live_nodes();
        let asker = live[sim.rng.below(live.len())];
        let key = *key;
        if let Some(id) = sim.start(asker, |node, now| node.get(now, key).ok()) {
            gets.push((asker, id, data.clone()));
        }
        sim.run_for(Duration::from_millis(2));
    }
    sim.run_until_done(Duration::from_secs(300));
    let mut got = 0usize;
    for (asker, id, data) in &gets {
        if let Some(done) = sim.take_result(*asker, *id) {
            if let QueryOutcome::Value(Some(value)) = done.outcome {
                if Value::data(&value) == data.as_slice() {
                    got += 1;
                }
            }
        }
    }

    let ratio = |a: usize, b: usize| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    SimFigures {
        nodes: scenario.nodes,
        rounds_p50: percentile(&rounds, 0.5).unwrap_or(0),
        rounds_p95: percentile(&rounds, 0.95).unwrap_or(0),
        lookup_ms_p50: percentile(&millis, 0.5).unwrap_or(0) as f64 / 1000.0,
        success: ratio(exact, started.len()),
        put_success: ratio(stored.len(), scenario.values),
        churn30_get_success: ratio(got, stored.len()),
        datagrams_per_lookup: trace.datagrams as f64 / trace.lookups.max(1) as f64,
        trace,
        datagrams: sim.delivered(),
        virtual_secs: sim.elapsed().as_secs_f64(),
    }
}
