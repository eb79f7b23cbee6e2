//! The `dht.sim10k` figures: one run of carrier-dht's benchmark scenario
//! ([`Scenario::standard`]) on a simulated network of 10,000 nodes yields all six; the
//! `dht.sim100k` figures (rounds and traffic) come from one run at 100,000 nodes.
//!
//! The simulation is deterministic (virtual time, seeded randomness), so its figures do not
//! depend on the machine: there is nothing to warm up, and repeating one seed would repeat one
//! number. Each run therefore takes its own seed, and the spread across runs is the spread
//! across networks, not machine noise.

use super::{Joint, Runs, Scale};
use carrier_friend::dht::sim::{run_scenario, Scenario, SimFigures};

/// Runs in the full bench. A 10,000-node scenario takes tens of seconds of wall time on the
/// reference machine; five seeds keep the full bench to a few minutes while still showing
/// whether a figure depends on the network drawn.
const FULL_RUNS: usize = 5;

/// The joint measurement behind every `dht.sim10k` figure.
pub(crate) const SIM: Joint = Joint {
    name: "dht.sim10k",
    runs: Runs::Seeded { full: FULL_RUNS },
    measure,
};

/// Runs at 100,000 nodes: one, in the full bench (the quick bench runs one on a small
/// network). It takes about half an hour and 21 GB (see docs/BENCHMARKS.md).
const BIG_RUNS: usize = 1;

/// The joint measurement behind the `dht.sim100k` figures: how a lookup's rounds and traffic
/// grow from 10,000 to 100,000 nodes.
pub(crate) const SIM_BIG: Joint = Joint {
    name: "dht.sim100k",
    runs: Runs::Expensive { full: BIG_RUNS },
    measure: measure_big,
};

/// Runs the standard scenario on `scale.sim_big_nodes` nodes with its own seed.
fn measure_big(scale: &Scale, _run: usize) -> Result<Vec<(&'static str, f64)>, String> {
    let figures = run_scenario(&Scenario::standard(scale.sim_big_nodes));
    check(&figures)?;
    Ok(vec![
        ("dht.sim100k.rounds_p50", f64::from(figures.rounds_p50)),
        ("dht.sim100k.rounds_p95", f64::from(figures.rounds_p95)),
        (
            "dht.sim100k.datagrams_per_lookup",
            figures.datagrams_per_lookup,
        ),
    ])
}

/// Runs the standard scenario on `scale.sim_nodes` nodes with the `run`-th seed.
fn measure(scale: &Scale, run: usize) -> Result<Vec<(&'static str, f64)>, String> {
    let mut scenario = Scenario::standard(scale.sim_nodes);
    // The first run keeps the scenario's own seed, so it is the network carrier-dht's
    // `sim_10k` test checks; later runs draw other networks.
    scenario.seed = scenario.seed.wrapping_add(run as u64);
    let figures = run_scenario(&scenario);
    check(&figures)?;
    Ok(values(&figures))
}

/// A scenario in which nothing was stored measures nothing after the churn: its
/// `churn30_get_success` of 0 would read as a real (and terrible) figure.
fn check(figures: &SimFigures) -> Result<(), String> {
    if figures.put_success == 0.0 {
        return Err(format!("no value was stored: {figures:?}"));
    }
    Ok(())
}

/// The six figures of one run, by name.
fn values(figures: &SimFigures) -> Vec<(&'static str, f64)> {
    vec![
        ("dht.sim10k.rounds_p50", f64::from(figures.rounds_p50)),
        ("dht.sim10k.rounds_p95", f64::from(figures.rounds_p95)),
        (
            "dht.sim10k.datagrams_per_lookup",
            figures.datagrams_per_lookup,
        ),
        ("dht.sim10k.lookup_ms_p50", figures.lookup_ms_p50),
        ("dht.sim10k.success", figures.success),
        (
            "dht.sim10k.churn30_get_success",
            figures.churn30_get_success,
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::{Measure, FIGURES};

    /// A small network: the scenario runs end to end and every figure it names is registered.
    #[test]
    fn a_small_scenario_yields_every_sim_figure() {
        let scale = Scale {
            sim_nodes: 100,
            ..crate::bench::Mode::Quick.scale()
        };
        let values = measure(&scale, 0).unwrap();
        let registered: Vec<&str> = FIGURES
            .iter()
            .filter(|f| matches!(f.measure, Measure::Joint(j) if j.name == SIM.name))
            .map(|f| f.name)
            .collect();
        let yielded: Vec<&str> = values.iter().map(|(name, _)| *name).collect();
        assert_eq!(yielded, registered);
        for (name, value) in values {
            assert!(value.is_finite() && value >= 0.0, "{name}: {value}");
        }
    }

    /// The large network's figures, on a small one: every figure it names is registered.
    #[test]
    fn the_large_scenario_yields_every_figure_it_registers() {
        let scale = Scale {
            sim_big_nodes: 200,
            ..crate::bench::Mode::Quick.scale()
        };
        let values = measure_big(&scale, 0).unwrap();
        let registered: Vec<&str> = FIGURES
            .iter()
            .filter(|f| matches!(f.measure, Measure::Joint(j) if j.name == SIM_BIG.name))
            .map(|f| f.name)
            .collect();
        let yielded: Vec<&str> = values.iter().map(|(name, _)| *name).collect();
        assert_eq!(yielded, registered);
        for (name, value) in values {
            assert!(value.is_finite() && value > 0.0, "{name}: {value}");
        }
    }
}
