//! `cargo xtask ci`: every check CI runs, in order, each timed.
//!
//! Every step runs even when an earlier one failed, so one run reports everything that is
//! wrong; the task fails if any step failed. Budgets are the share of the 40-minute CI run each
//! step may take on this project's 2-core machine; a step over budget is reported (the budget is
//! a plan, not a test: machines are noisy), and it is then the step to make faster.

use std::process::Command;
use std::time::{Duration, Instant};

/// One step of the CI run.
struct Step {
    name: &'static str,
    what: &'static str,
    budget: Duration,
    action: Action,
}

enum Action {
    /// A cargo command with extra environment variables.
    Cargo(
        &'static [&'static str],
        &'static [(&'static str, &'static str)],
    ),
    /// The in-process layering check.
    Layering,
    /// The bench's smoke test, in process: the dev build CI already has, tiny sizes.
    BenchQuick,
    /// carrier-dht without its `sim` feature must not offer simulated key agreement.
    NoSim,
    /// The network-lab tests (`tests/lab_*.rs` of any package), `#[ignore]`d in the plain
    /// suite so they run once, here.
    Lab,
}

const fn minutes(m: u64) -> Duration {
    Duration::from_secs(m * 60)
}

const STEPS: &[Step] = &[
    Step {
        name: "fmt",
        what: "formatting (cargo fmt --check)",
        budget: minutes(1),
        action: Action::Cargo(&["fmt", "--all", "--", "--check"], &[]),
    },
    Step {
        name: "layering",
        what: "each carrier-* crate depends only on the layer below",
        budget: minutes(1),
        action: Action::Layering,
    },
    Step {
        name: "clippy",
        what: "clippy on all targets, warnings denied",
        // Took 176-194 s in the last runs; its former 8 minutes went to `test`.
        budget: minutes(5),
        action: Action::Cargo(
            &[
                "clippy",
                "--workspace",
                "--all-targets",
                "--locked",
                "--",
                "-D",
                "warnings",
            ],
            &[],
        ),
    },
    Step {
        name: "doc",
        what: "rustdoc, warnings denied",
        budget: minutes(3),
        action: Action::Cargo(
            &["doc", "--workspace", "--no-deps", "--locked"],
            &[("RUSTDOCFLAGS", "-D warnings")],
        ),
    },
    Step {
        name: "no-sim",
        what: "a crate using carrier-dht without `sim` cannot name KeyAgreement::Simulated",
        budget: minutes(3),
        action: Action::NoSim,
    },
    Step {
        name: "test",
        what: "the whole test suite, doc tests included (the network lab runs in `lab`)",
        // Four layers (messages, streams, channels, forwarding) each add a crate of tests
        // that build on real nodes; 625-639 s before channels landed.
        budget: minutes(13),
        action: Action::Cargo(&["test", "--workspace", "--locked"], &[]),
    },
    Step {
        name: "lab",
        what: "the network-lab tests: NATs, loss, cuts in Linux network namespaces",
        budget: minutes(4),
        action: Action::Lab,
    },
    Step {
        name: "sim",
        what: "the 10,000-node DHT simulations: lookups and values, then mailboxes",
        budget: minutes(3),
        action: Action::Cargo(
            &[
                "test",
                "--locked",
                "-p",
                "carrier-dht",
                "--test",
                "sim_10k",
                "--test",
                "sim_mailbox",
                "--",
                "--ignored",
                "--nocapture",
            ],
            &[],
        ),
    },
    Step {
        name: "bench-quick",
        what: "cargo xtask bench --quick",
        budget: minutes(3),
        action: Action::BenchQuick,
    },
];

struct Outcome {
    name: &'static str,
    took: Duration,
    budget: Duration,
    passed: bool,
}

/// Runs the steps (all, or the one named by `--only`).
pub(crate) fn run(args: &[String]) -> Result<(), String> {
    let only = match args {
        [] => None,
        [flag, step] if flag == "--only" => Some(step.as_str()),
        _ => return Err("usage: cargo xtask ci [--only STEP]".into()),
    };
    if let Some(only) = only {
        if !STEPS.iter().any(|s| s.name == only) {
            let names: Vec<_> = STEPS.iter().map(|s| s.name).collect();
            return Err(format!("no step `{only}`; steps: {}", names.join(", ")));
        }
    }
    let started = Instant::now();
    let mut outcomes = Vec::new();
    for step in STEPS.iter().filter(|s| only.is_none_or(|o| o == s.name)) {
        println!("\n==> ci step `{}`: {}", step.name, step.what);
        let t0 = Instant::now();
        let passed = match run_step(step) {
            Ok(()) => true,
            Err(message) => {
                eprintln!("{message}");
                false
            }
        };
        let took = t0.elapsed();
        println!(
            "==> ci step `{}` {} in {:.1} s",
            step.name,
            if passed { "passed" } else { "FAILED" },
            took.as_secs_f64()
        );
        outcomes.push(Outcome {
            name: step.name,
            took,
            budget: step.budget,
            passed,
        });
    }
    print_summary(&outcomes, started.elapsed());
    let failed: Vec<_> = outcomes
        .iter()
        .filter(|o| !o.passed)
        .map(|o| o.name)
        .collect();
    if failed.is_empty() {
        Ok(())
    } else {
        Err(format!("ci failed in: {}", failed.join(", ")))
    }
}

fn run_step(step: &Step) -> Result<(), String> {
    match step.action {
        Action::Layering => super::layering::check_workspace(),
        Action::BenchQuick => super::bench::run(&["--quick".to_string()]),
        Action::NoSim => super::no_sim::check_no_sim(),
        Action::Lab => {
            let tests = lab_tests()?;
            if tests.is_empty() {
                return Err("no network-lab tests found (tests/lab_*.rs)".into());
            }
            // `--workspace`, as the test step: the same packages selected give the same
            // features, so the lab reuses that build instead of building dependencies anew.
            let mut args = vec!["test", "--workspace", "--locked"];
            for test in &tests {
                args.extend(["--test", test.as_str()]);
            }
            args.extend(["--", "--ignored"]);
            cargo(&args, &[])
        }
        Action::Cargo(args, envs) => cargo(args, envs),
    }
}

/// Runs cargo with `args`, failing with the command line when it fails.
fn cargo(args: &[&str], envs: &[(&str, &str)]) -> Result<(), String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args(args)
        .envs(envs.iter().copied())
        .status()
        .map_err(|e| format!("cannot run cargo {}: {e}", args.join(" ")))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("cargo {} failed ({status})", args.join(" ")))
    }
}

/// The network-lab test targets: every `tests/lab_*.rs` of every workspace package.
fn lab_tests() -> Result<Vec<String>, String> {
    let root = super::no_sim::workspace_root();
    let members = std::fs::read_dir(&root).map_err(|e| format!("cannot list {root:?}: {e}"))?;
    let mut tests = Vec::new();
    for member in members.flatten().map(|e| e.path()) {
        let Ok(files) = std::fs::read_dir(member.join("tests")) else {
            continue;
        };
        if !member.join("Cargo.toml").is_file() {
            continue;
        }
        tests.extend(
            files
                .flatten()
                .filter_map(|f| f.file_name().to_str().map(str::to_string))
                .filter_map(|f| f.strip_suffix(".rs").map(str::to_string))
                .filter(|f| f.starts_with("lab_")),
        );
    }
    tests.sort();
    tests.dedup();
    Ok(tests)
}

fn print_summary(outcomes: &[Outcome], total: Duration) {
    println!("\nci summary");
    println!("| step | result | time (s) | budget (s) |");
    println!("|---|---|---:|---:|");
    for o in outcomes {
        let result = match (o.passed, o.took > o.budget) {
            (false, _) => "FAILED",
            (true, true) => "passed, over budget",
            (true, false) => "passed",
        };
        println!(
            "| {} | {result} | {:.1} | {} |",
            o.name,
            o.took.as_secs_f64(),
            o.budget.as_secs()
        );
    }
    println!("| total | | {:.1} | 2400 |", total.as_secs_f64());
}
