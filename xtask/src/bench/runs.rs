//! How figures are measured run by run: warm-ups, then timed runs, summarised; and joint
//! measurements, whose every run yields several figures, taken once for all of them.
//!
//! A joint measurement exists because some figures are facets of one expensive experiment:
//! one 10,000-node simulation gives the lookup rounds, the simulated lookup time and both
//! success rates. Running it once per figure would multiply the bench's time by five and
//! report facets of different runs side by side; here all five come from the same runs.

use super::report::{self, Summary};
use super::{Figure, Mode, Scale};

/// How a measurement's error starts when the figure cannot be measured here at all (the
/// network lab without root): the figure is reported as skipped, with the reason, and is
/// neither given a value nor counted as a failure.
pub(crate) const SKIPPED: &str = "skipped: ";

/// Measures one run of a figure on its own at the given sizes and returns its value.
pub(crate) type MeasureOne = fn(&Scale) -> Result<f64, String>;

/// Measures one run of a joint measurement and returns the value of every figure it yields,
/// by figure name. `run` numbers the runs from 0 (warm-ups included), so a deterministic
/// measurement can give each run its own seed.
pub(crate) type MeasureJoint = fn(&Scale, usize) -> Result<Vec<(&'static str, f64)>, String>;

/// How a figure's runs are measured.
#[derive(Debug)]
pub(crate) enum Measure {
    /// Each run measures this figure alone: [`Runs::Timed`].
    Alone(MeasureOne),
    /// Each run of the joint measurement yields this figure among others; the measurement
    /// runs once per bench invocation, however many of its figures are selected.
    Joint(&'static Joint),
}

/// A measurement whose every run yields several figures.
#[derive(Debug)]
pub(crate) struct Joint {
    /// Names it in progress messages and tells joint measurements apart (`dht.sim10k`).
    pub(crate) name: &'static str,
    /// How many runs it takes.
    pub(crate) runs: Runs,
    /// Measures one run.
    pub(crate) measure: MeasureJoint,
}

/// How many runs a measurement takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Runs {
    /// Wall-clock figures: [`Mode::warmups`] untimed runs, then [`Mode::runs`] timed ones.
    Timed,
    /// Deterministic figures (a simulation's outcomes and virtual time): the machine's state
    /// cannot change them, so there is no warm-up, and each run has its own seed, or all runs
    /// would be one. `full` runs in the full bench, where each run is expensive; the quick
    /// bench takes [`Mode::runs`].
    Seeded {
        /// Runs in the full bench.
        full: usize,
    },
    /// Wall-clock figures whose every run is expensive (a thousand nodes): no warm-up, `full`
    /// runs in the full bench and one in the quick bench.
    Expensive {
        /// Runs in the full bench.
        full: usize,
    },
    /// Wall-clock figures that need more runs than [`Mode::runs`] for a stable median (a ratio
    /// measured within each run, where one noisy transfer moves a run a lot): the warm-ups of
    /// [`Runs::Timed`], then `full` runs in the full bench and [`Mode::runs`] in the quick one.
    Many {
        /// Runs in the full bench.
        full: usize,
    },
}

impl Runs {
    /// (untimed warm-up runs, reported runs) in `mode`.
    pub(crate) fn count(self, mode: Mode) -> (usize, usize) {
        match (self, mode) {
            (Runs::Timed, _) => (mode.warmups(), mode.runs()),
            (Runs::Seeded { full }, Mode::Full) => (0, full),
            (Runs::Seeded { .. }, Mode::Quick) => (0, mode.runs()),
            (Runs::Expensive { full }, Mode::Full) => (0, full),
            (Runs::Expensive { .. }, Mode::Quick) => (0, 1),
            (Runs::Many { full }, Mode::Full) => (mode.warmups(), full),
            (Runs::Many { .. }, Mode::Quick) => (mode.warmups(), mode.runs()),
        }
    }
}

/// The values of every figure one run yielded.
type RunValues = Vec<(&'static str, f64)>;

/// Measures every selected figure, in order. Returns the summaries of those that measured and
/// the names of those that failed: a failure is reported on stderr and the others still run,
/// because one broken figure should not hide all the others.
pub(crate) fn measure_all<'a>(
    selected: &[&'a Figure],
    mode: Mode,
) -> (Vec<(&'a Figure, Summary)>, Vec<&'static str>) {
    // Each joint measurement's runs (or why they failed), taken when its first figure comes up.
    let mut joints: Vec<(&'static str, Result<Vec<RunValues>, String>)> = Vec::new();
    let mut summaries = Vec::new();
    let mut failed = Vec::new();
    for &figure in selected {
        let samples = match figure.measure {
            Measure::Alone(measure) => {
                let one = |scale: &Scale, _run: usize| Ok(vec![(figure.name, measure(scale)?)]);
                take_runs(figure.name, Runs::Timed, mode, one)
                    .and_then(|runs| values_of(figure.name, &runs))
            }
            Measure::Joint(joint) => {
                let at = match joints.iter().position(|(name, _)| *name == joint.name) {
                    Some(at) => at,
                    None => {
                        let runs = take_runs(joint.name, joint.runs, mode, joint.measure);
                        joints.push((joint.name, runs));
                        joints.len() - 1
                    }
                };
                match &joints[at].1 {
                    Ok(runs) => values_of(figure.name, runs),
                    Err(message) => Err(format!("{}: {message}", joint.name)),
                }
            }
        };
        match samples.and_then(|samples| Summary::of(&samples)) {
            Ok(summary) => summaries.push((figure, summary)),
            Err(message) if message.contains(SKIPPED) => {
                let why = message.split_once(SKIPPED).map_or("", |(_, why)| why);
                println!("bench: {} SKIPPED: {why}", figure.name);
            }
            Err(message) => {
                eprintln!("bench: {} FAILED: {message}", figure.name);
                failed.push(figure.name);
            }
        }
    }
    (summaries, failed)
}

/// Warm-up runs, then the reported runs, each printed to stderr as it comes so a noisy run is
/// visible. Returns the reported runs' values.
fn take_runs(
    name: &str,
    plan: Runs,
    mode: Mode,
    measure: impl Fn(&Scale, usize) -> Result<RunValues, String>,
) -> Result<Vec<RunValues>, String> {
    let scale = mode.scale();
    let (warmups, runs) = plan.count(mode);
    for run in 0..warmups {
        let values = measure(&scale, run)?;
        eprintln!("bench: {name} warm-up: {}", describe(name, &values));
    }
    let mut taken = Vec::with_capacity(runs);
    for i in 1..=runs {
        let values = measure(&scale, warmups + i - 1)?;
        eprintln!("bench: {name} run {i}/{runs}: {}", describe(name, &values));
        taken.push(values);
    }
    Ok(taken)
}

/// One run's values for stderr: `4980 MB/s` for a figure measured alone, `rounds_p50 2
/// rounds, …` for a joint measurement (names shortened by the measurement's prefix).
fn describe(name: &str, values: &[(&'static str, f64)]) -> String {
    let unit = |figure: &str| {
        super::FIGURES
            .iter()
            .find(|f| f.name == figure)
            .map_or("", |f| f.unit)
    };
    let parts: Vec<String> = values
        .iter()
        .map(|(figure, value)| {
            let value = format!("{} {}", report::number(*value), unit(figure));
            match figure.strip_prefix(name) {
                Some("") => value,
                Some(rest) => format!("{} {value}", rest.trim_start_matches(['.', '_'])),
                None => format!("{figure} {value}"),
            }
        })
        .collect();
    parts.join(", ").trim_end().to_string()
}

/// `figure`'s value in each run; an error if a run did not yield it.
fn values_of(figure: &str, runs: &[RunValues]) -> Result<Vec<f64>, String> {
    runs.iter()
        .map(|values| {
            values
                .iter()
                .find(|(name, _)| *name == figure)
                .map(|(_, value)| *value)
                .ok_or_else(|| format!("the measurement yielded no value for {figure}"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn figure(name: &'static str, measure: Measure) -> Figure {
        Figure {
            name,
            unit: "x",
            baseline: None,
            measure,
        }
    }

    fn names<'a>(summaries: &[(&'a Figure, Summary)]) -> Vec<&'a str> {
        summaries.iter().map(|(f, _)| f.name).collect()
    }

    #[test]
    fn a_joint_measurement_runs_once_for_all_its_figures_with_a_seed_per_run() {
        static CALLS: AtomicUsize = AtomicUsize::new(0);
        const JOINT: Joint = Joint {
            name: "sim",
            runs: Runs::Seeded { full: 2 },
            measure: |_, run| {
                CALLS.fetch_add(1, Ordering::SeqCst);
                Ok(vec![("sim.a", run as f64), ("sim.b", 10.0 * run as f64)])
            },
        };
        let (a, b) = (
            figure("sim.a", Measure::Joint(&JOINT)),
            figure("sim.b", Measure::Joint(&JOINT)),
        );
        let (summaries, failed) = measure_all(&[&a, &b], Mode::Quick);
        assert!(failed.is_empty());
        assert_eq!(names(&summaries), ["sim.a", "sim.b"]);
        // No warm-up, three quick runs with seeds 0, 1, 2, shared by both figures.
        assert_eq!(CALLS.load(Ordering::SeqCst), Mode::Quick.runs());
        assert_eq!((summaries[0].1.min, summaries[0].1.max), (0.0, 2.0));
        assert_eq!(summaries[1].1.median, 10.0);
        assert_eq!(summaries[1].1.runs, 3);
    }

    #[test]
    fn a_figure_alone_gets_its_warm_ups_and_timed_runs() {
        static CALLS: AtomicUsize = AtomicUsize::new(0);
        let alone = figure(
            "alone",
            Measure::Alone(|_| Ok(CALLS.fetch_add(1, Ordering::SeqCst) as f64)),
        );
        let (summaries, failed) = measure_all(&[&alone], Mode::Quick);
        assert!(failed.is_empty());
        let (warmups, runs) = Runs::Timed.count(Mode::Quick);
        assert_eq!(CALLS.load(Ordering::SeqCst), warmups + runs);
        // The warm-up's value (0) is not reported.
        assert_eq!(summaries[0].1.min, warmups as f64);
    }

    #[test]
    fn a_figure_that_cannot_be_measured_here_is_skipped_neither_valued_nor_failed() {
        let skipped = figure(
            "lab",
            Measure::Alone(|_| Err(format!("{SKIPPED}no network lab here"))),
        );
        let broken = figure("broken", Measure::Alone(|_| Err("it broke".into())));
        let (summaries, failed) = measure_all(&[&skipped, &broken], Mode::Quick);
        assert!(summaries.is_empty());
        assert_eq!(failed, ["broken"]);
    }

    #[test]
    fn a_failed_joint_measurement_fails_each_of_its_figures_but_runs_once() {
        static CALLS: AtomicUsize = AtomicUsize::new(0);
        const BROKEN: Joint = Joint {
            name: "broken",
            runs: Runs::Timed,
            measure: |_, _| {
                CALLS.fetch_add(1, Ordering::SeqCst);
                Err("no network".into())
            },
        };
        let (a, b) = (
            figure("broken.a", Measure::Joint(&BROKEN)),
            figure("broken.b", Measure::Joint(&BROKEN)),
        );
        let fine = figure("fine", Measure::Alone(|_| Ok(1.0)));
        let (summaries, failed) = measure_all(&[&a, &fine, &b], Mode::Quick);
        assert_eq!(names(&summaries), ["fine"]);
        assert_eq!(failed, ["broken.a", "broken.b"]);
        assert_eq!(CALLS.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_figure_its_measurement_does_not_yield_fails() {
        const PARTIAL: Joint = Joint {
            name: "partial",
            runs: Runs::Seeded { full: 1 },
            measure: |_, _| Ok(vec![("partial.a", 1.0)]),
        };
        let missing = figure("partial.b", Measure::Joint(&PARTIAL));
        let (summaries, failed) = measure_all(&[&missing], Mode::Quick);
        assert!(summaries.is_empty());
        assert_eq!(failed, ["partial.b"]);
    }

    #[test]
    fn seeded_runs_skip_the_warm_up() {
        assert_eq!(Runs::Seeded { full: 3 }.count(Mode::Full), (0, 3));
        assert_eq!(
            Runs::Seeded { full: 3 }.count(Mode::Quick),
            (0, Mode::Quick.runs())
        );
        assert_eq!(
            Runs::Timed.count(Mode::Full),
            (Mode::Full.warmups(), Mode::Full.runs())
        );
    }

    #[test]
    fn many_runs_keep_the_warm_up_and_only_the_full_bench_takes_more() {
        assert_eq!(
            Runs::Many { full: 11 }.count(Mode::Full),
            (Mode::Full.warmups(), 11)
        );
        assert_eq!(
            Runs::Many { full: 11 }.count(Mode::Quick),
            Runs::Timed.count(Mode::Quick)
        );
    }

    #[test]
    fn run_values_are_described_briefly() {
        assert_eq!(
            describe("tcp.raw_MBps", &[("tcp.raw_MBps", 4980.3)]),
            "4980 MB/s"
        );
        assert_eq!(
            describe(
                "dht.sim10k",
                &[("dht.sim10k.rounds_p50", 2.0), ("dht.sim10k.success", 1.0)]
            ),
            "rounds_p50 2.00 rounds, success 1.00 fraction"
        );
    }
}
