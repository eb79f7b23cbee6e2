//! The 10,000-node simulation: exact lookups without loss or churn, gets after 30% churn.

use std::time::Instant;

use carrier_dht::sim::{run_scenario, Scenario};

/// 10,000 unless `CARRIER_SIM_NODES` says otherwise (for quick local runs).
fn nodes() -> usize {
    std::env::var("CARRIER_SIM_NODES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(10_000)
}

#[test]
#[ignore = "run by its own step with its own budget: `cargo xtask ci --only sim`"]
fn ten_thousand_nodes_find_exact_closest_and_survive_thirty_percent_churn() {
    let started = Instant::now();
    let figures = run_scenario(&Scenario::standard(nodes()));
    let wall = started.elapsed();
    println!(
        "dht.sim{}: rounds p50 {} p95 {}, lookup p50 {:.1} ms (simulated), {:.1} datagrams \
         per lookup, exact-K {:.4}, puts {:.4}, gets after 30% churn {:.4}, {} datagrams, \
         {:.0} s virtual, {:.1} s wall\n{}",
        figures.nodes,
        figures.rounds_p50,
        figures.rounds_p95,
        figures.lookup_ms_p50,
        figures.datagrams_per_lookup,
        figures.success,
        figures.put_success,
        figures.churn30_get_success,
        figures.datagrams,
        figures.virtual_secs,
        wall.as_secs_f64(),
        figures.trace,
    );
    assert_eq!(
        figures.success, 1.0,
        "every lookup finds the true K closest"
    );
    assert_eq!(figures.put_success, 1.0, "every store is acknowledged");
    assert!(
        figures.churn30_get_success >= 0.99,
        "gets after churn: {figures:?}"
    );
}
