//! Developer tasks for the Carrier workspace.
//!
//! * `cargo xtask ci`: everything CI checks, each step timed (formatting, the layering check,
//!   clippy with warnings denied, rustdoc with warnings denied, the whole test suite, the
//!   bench smoke test).
//! * `cargo xtask layering`: only the layering check.
//! * `cargo xtask bench`: every benchmark figure beside its baseline, on the release build.
//!
//! Later issues add `lab` and `demo` here.

mod bench;
mod ci;
mod layering;
mod modules;
mod no_sim;

use std::process::ExitCode;

const USAGE: &str = "\
usage: cargo xtask <task>

tasks:
  ci         run everything CI checks, timing each step
             (--only STEP runs one step: fmt, layering, clippy, doc, no-sim, test, lab, sim,
             bench-quick)
  layering   check that each carrier-* crate depends only on the layer directly below it,
             and that no crate's top-level modules use each other in a cycle
  bench      measure every figure on the release build: table + target/bench/results.json
             (--quick: tiny sizes on the current build, a smoke test; --only PREFIX)
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("ci") => ci::run(&args[1..]),
        Some("bench") => bench::run(&args[1..]),
        // Hidden: the fresh process some figures are measured in (`mem.node_kib`).
        Some("bench-child") => bench::run_child(&args[1..]),
        Some("layering") => layering::check_workspace().map(|()| {
            println!(
                "layering: every carrier-* crate depends only on the layer below it, and no \
                 crate's top-level modules use each other in a cycle"
            );
        }),
        Some("-h" | "--help" | "help") => {
            print!("{USAGE}");
            Ok(())
        }
        Some(other) => Err(format!("unknown task `{other}`\n\n{USAGE}")),
        None => Err(USAGE.to_string()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("xtask: {message}");
            ExitCode::FAILURE
        }
    }
}
