//! `cargo xtask bench`: every figure, each beside the baseline it is judged against.
//!
//! A figure is one entry in [`FIGURES`]: a name, a unit, the name of its baseline (if any) and
//! how one run is measured, either alone or as part of a [`Joint`] measurement whose every run
//! yields several figures (one simulation gives all the `dht.sim10k` figures). The runner
//! ([`runs`]) does a warm-up run, then [`Mode::runs`] timed runs, and reports their median as
//! the value with the min and max beside it. Baselines are measured in the same invocation as
//! the figures that cite them, because absolute numbers drift on shared machines while ratios
//! measured minutes apart mostly do not.
//!
//! The full bench only quotes release builds: without `--quick` the task re-runs itself as
//! `cargo run --release` (see [`RELEASE_BUILD_ENV`]). `--quick` runs in whatever build started
//! it (the dev build in `cargo xtask ci`) on tiny sizes, to prove the harness works; its numbers
//! are never quoted, and its JSON goes to a separate file so it never overwrites real results.

mod dht_sim;
mod dht_udp;
mod disk;
mod forward;
mod friend;
mod latency;
mod memory;
mod msg;
mod mux;
mod nodes;
#[cfg(target_os = "linux")]
mod punch_lab;
mod quic;
mod quic_shared;
mod quinn_frames;
mod reach;
mod relay;
#[cfg(target_os = "linux")]
mod relay_lab;
mod report;
mod rpk;
mod runs;
mod scratch;
mod stream;
mod tcp;
mod tls;
mod transfer;

pub(crate) use runs::{Joint, Measure, Runs};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

/// Set (to `1`) by the full bench on the release build it starts, so that build measures
/// instead of starting another.
pub(crate) const RELEASE_BUILD_ENV: &str = "CARRIER_BENCH_RELEASE_BUILD";

const USAGE: &str = "usage: cargo xtask bench [--quick] [--only PREFIX[,PREFIX…]]";

/// One measured quantity.
#[derive(Debug)]
pub(crate) struct Figure {
    /// Dotted name, family first (`tcp.raw_MBps`); `--only` matches its prefix.
    pub(crate) name: &'static str,
    /// Unit of the value, as printed and written to the JSON.
    pub(crate) unit: &'static str,
    /// The figure this one is judged against, measured in the same invocation.
    pub(crate) baseline: Option<&'static str>,
    /// How one run is measured: alone, or as part of a joint measurement.
    pub(crate) measure: Measure,
}

/// Every figure, in the order they run and print. Baselines come before the figures citing
/// them. A new figure is one entry here plus its `measure` function, and a row in
/// docs/BENCHMARKS.md.
const FIGURES: &[Figure] = &[
    Figure {
        name: "tcp.raw_MBps",
        unit: "MB/s",
        baseline: None,
        measure: Measure::Alone(tcp::measure),
    },
    Figure {
        name: "tls_tcp.raw_MBps",
        unit: "MB/s",
        baseline: None,
        measure: Measure::Alone(tls::measure),
    },
    Figure {
        name: "quinn.raw_MBps",
        unit: "MB/s",
        baseline: None,
        measure: Measure::Alone(quic::measure),
    },
    Figure {
        name: "quic.shared_MBps",
        unit: "MB/s",
        baseline: Some("quinn.raw_MBps"),
        measure: Measure::Alone(quic_shared::measure),
    },
    Figure {
        name: quic_shared::SHARED_RATIO,
        unit: "ratio",
        baseline: None,
        measure: Measure::Joint(&quic_shared::PAIRED),
    },
    Figure {
        name: quic_shared::SHARED_CPU_RATIO,
        unit: "ratio",
        baseline: None,
        measure: Measure::Joint(&quic_shared::PAIRED),
    },
    Figure {
        name: "reach.direct_MBps",
        unit: "MB/s",
        baseline: None,
        measure: Measure::Joint(&reach::TRANSFER),
    },
    Figure {
        name: "reach.relay_MBps",
        unit: "MB/s",
        baseline: Some("reach.direct_MBps"),
        measure: Measure::Joint(&reach::TRANSFER),
    },
    Figure {
        name: "reach.failover_gap_ms",
        unit: "ms",
        baseline: None,
        measure: Measure::Alone(relay::failover_gap),
    },
    Figure {
        name: "reach.relay_connect_ms",
        unit: "ms",
        baseline: None,
        measure: Measure::Alone(relay_connect),
    },
    Figure {
        name: "reach.direct_connect_ms",
        unit: "ms",
        baseline: None,
        measure: Measure::Joint(&DIRECT_CONNECT),
    },
    Figure {
        name: "reach.punch_success",
        unit: "fraction",
        baseline: None,
        measure: Measure::Joint(&PUNCH_SUCCESS),
    },
    Figure {
        name: "reach.switch_gap_ms",
        unit: "ms",
        baseline: None,
        measure: Measure::Joint(&SWITCH_GAP),
    },
    Figure {
        name: "relay.mem_kib_per_registration",
        unit: "KiB",
        baseline: None,
        measure: Measure::Alone(relay::mem_per_registration),
    },
    Figure {
        name: "quinn.frames_per_s",
        unit: "frames/s",
        baseline: None,
        measure: Measure::Alone(quinn_frames::measure_frames),
    },
    Figure {
        name: "quinn.rtt_us_p50",
        unit: "µs",
        baseline: None,
        measure: Measure::Joint(&quinn_frames::RTT),
    },
    Figure {
        name: "quinn.rtt_us_p99",
        unit: "µs",
        baseline: None,
        measure: Measure::Joint(&quinn_frames::RTT),
    },
    Figure {
        name: "disk.commit_us_p50",
        unit: "µs",
        baseline: None,
        measure: Measure::Alone(disk::measure),
    },
    Figure {
        name: "dht.sim10k.rounds_p50",
        unit: "rounds",
        baseline: None,
        measure: Measure::Joint(&dht_sim::SIM),
    },
    Figure {
        name: "dht.sim10k.rounds_p95",
        unit: "rounds",
        baseline: None,
        measure: Measure::Joint(&dht_sim::SIM),
    },
    Figure {
        name: "dht.sim10k.datagrams_per_lookup",
        unit: "datagrams",
        baseline: None,
        measure: Measure::Joint(&dht_sim::SIM),
    },
    Figure {
        name: "dht.sim10k.lookup_ms_p50",
        unit: "ms (simulated)",
        baseline: None,
        measure: Measure::Joint(&dht_sim::SIM),
    },
    Figure {
        name: "dht.sim10k.success",
        unit: "fraction",
        baseline: None,
        measure: Measure::Joint(&dht_sim::SIM),
    },
    Figure {
        name: "dht.sim10k.churn30_get_success",
        unit: "fraction",
        baseline: None,
        measure: Measure::Joint(&dht_sim::SIM),
    },
    Figure {
        name: "dht.sim100k.rounds_p50",
        unit: "rounds",
        baseline: None,
        measure: Measure::Joint(&dht_sim::SIM_BIG),
    },
    Figure {
        name: "dht.sim100k.rounds_p95",
        unit: "rounds",
        baseline: None,
        measure: Measure::Joint(&dht_sim::SIM_BIG),
    },
    Figure {
        name: "dht.sim100k.datagrams_per_lookup",
        unit: "datagrams",
        baseline: None,
        measure: Measure::Joint(&dht_sim::SIM_BIG),
    },
    Figure {
        name: "dht.udp200.lookup_ms_p50",
        unit: "ms",
        baseline: None,
        measure: Measure::Alone(dht_udp::measure),
    },
    Figure {
        name: "mem.node_kib",
        unit: "KiB",
        baseline: None,
        measure: Measure::Alone(memory::measure),
    },
    Figure {
        name: "friend.connect_ms",
        unit: "ms",
        baseline: None,
        measure: Measure::Alone(friend::measure_connect),
    },
    Figure {
        name: "mem.link_kib",
        unit: "KiB",
        baseline: None,
        measure: Measure::Joint(&friend::LINKS),
    },
    Figure {
        name: "idle.packets_per_min_per_link",
        unit: "packets/min",
        baseline: None,
        measure: Measure::Joint(&friend::LINKS),
    },
    Figure {
        name: "msg.per_s",
        unit: "messages/s",
        baseline: Some("quinn.frames_per_s"),
        measure: Measure::Joint(&msg::PER_S),
    },
    Figure {
        name: "msg.rtt_us_p50",
        unit: "µs",
        baseline: Some("quinn.rtt_us_p50"),
        measure: Measure::Joint(&msg::RTT),
    },
    Figure {
        name: "msg.rtt_us_p99",
        unit: "µs",
        baseline: Some("quinn.rtt_us_p99"),
        measure: Measure::Joint(&msg::RTT),
    },
    Figure {
        name: "msg.offline_ms",
        unit: "ms",
        baseline: None,
        measure: Measure::Joint(&msg::OFFLINE),
    },
    Figure {
        name: "mux.channels_open_ms",
        unit: "ms",
        baseline: None,
        measure: Measure::Joint(&mux::CHANNELS_OPEN),
    },
    Figure {
        name: "stream.reliable_MBps",
        unit: "MB/s",
        baseline: Some("quinn.raw_MBps"),
        measure: Measure::Alone(stream::measure_reliable),
    },
    Figure {
        name: "stream.datagram_MBps",
        unit: "MB/s",
        baseline: None,
        measure: Measure::Joint(&stream::DATAGRAMS),
    },
    Figure {
        name: "stream.datagram_loss",
        unit: "fraction",
        baseline: None,
        measure: Measure::Joint(&stream::DATAGRAMS),
    },
    Figure {
        name: "session.open_ms",
        unit: "ms",
        baseline: None,
        measure: Measure::Alone(stream::measure_open),
    },
    Figure {
        name: "forward.tcp_MBps",
        unit: "MB/s",
        baseline: Some("quinn.raw_MBps"),
        measure: Measure::Joint(&forward::FORWARD),
    },
    Figure {
        name: "forward.connect_ms",
        unit: "ms",
        baseline: None,
        measure: Measure::Joint(&forward::FORWARD),
    },
    Figure {
        name: "forward.refused_ms",
        unit: "ms",
        baseline: None,
        measure: Measure::Joint(&forward::FORWARD),
    },
    Figure {
        name: "idle.cpu_pct",
        unit: "% of a core",
        baseline: None,
        measure: Measure::Joint(&friend::IDLE),
    },
];

/// `reach.relay_connect_ms` runs in the network lab, which only Linux has.
#[cfg(target_os = "linux")]
use relay_lab::relay_connect;

/// `reach.relay_connect_ms` elsewhere: skipped, with the reason.
#[cfg(not(target_os = "linux"))]
fn relay_connect(_scale: &Scale) -> Result<f64, String> {
    Err(format!("{}the network lab needs Linux", runs::SKIPPED))
}

/// The hole-punching figures (issue 20) run in the network lab too.
#[cfg(target_os = "linux")]
use punch_lab::{direct_connect, punch_success, switch_gap};

/// `reach.direct_connect_ms`: each run builds a lab of its own (seconds), so no warm-up, 5
/// runs in the full bench and one in the quick one.
const DIRECT_CONNECT: Joint = Joint {
    name: "reach.direct_connect_ms",
    runs: Runs::Expensive { full: 5 },
    measure: |scale, _run| Ok(vec![("reach.direct_connect_ms", direct_connect(scale)?)]),
};

/// `reach.switch_gap_ms`: a lab per run too, as `reach.direct_connect_ms`.
const SWITCH_GAP: Joint = Joint {
    name: "reach.switch_gap_ms",
    runs: Runs::Expensive { full: 5 },
    measure: |scale, _run| Ok(vec![("reach.switch_gap_ms", switch_gap(scale)?)]),
};

/// `reach.punch_success`: one run per invocation, of `Scale::punch_tries` tries of each pair
/// (a fraction over all of them; a run is minutes of the lab).
const PUNCH_SUCCESS: Joint = Joint {
    name: "reach.punch_success",
    runs: Runs::Expensive { full: 1 },
    measure: punch_success,
};

/// `reach.direct_connect_ms` elsewhere: skipped, with the reason.
#[cfg(not(target_os = "linux"))]
fn direct_connect(_scale: &Scale) -> Result<f64, String> {
    Err(format!("{}the network lab needs Linux", runs::SKIPPED))
}

/// `reach.punch_success` elsewhere: skipped, with the reason.
#[cfg(not(target_os = "linux"))]
fn punch_success(_scale: &Scale, _run: usize) -> Result<Vec<(&'static str, f64)>, String> {
    Err(format!("{}the network lab needs Linux", runs::SKIPPED))
}

/// `reach.switch_gap_ms` elsewhere: skipped, with the reason.
#[cfg(not(target_os = "linux"))]
fn switch_gap(_scale: &Scale) -> Result<f64, String> {
    Err(format!("{}the network lab needs Linux", runs::SKIPPED))
}

/// `xtask bench-child TASK …`: the fresh processes some figures are measured in.
pub(crate) fn run_child(args: &[String]) -> Result<(), String> {
    match args.first().map(String::as_str) {
        Some(friend::HUB) => friend::hub(&args[1..]),
        Some(friend::SPOKES) => friend::spokes(&args[1..]),
        Some(relay::RELAY_NODE) => relay::relay_node(&args[1..]),
        _ => memory::child(args),
    }
}

/// How hard to measure: the quotable full bench, or the smoke test of the harness.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Release build, full sizes, enough runs for a stable median.
    Full,
    /// Whatever build is running, tiny sizes, few runs: checks the harness, not the code.
    Quick,
}

impl Mode {
    /// Untimed runs before the timed ones: they fault in memory, fill caches and let the
    /// loopback path and allocator reach steady state.
    pub(crate) fn warmups(self) -> usize {
        1
    }

    /// Timed runs per figure (a [`Runs::Seeded`] measurement may take fewer in the full
    /// bench). Odd, so the median is a run that happened.
    pub(crate) fn runs(self) -> usize {
        match self {
            Mode::Full => 5,
            Mode::Quick => 3,
        }
    }

    /// The sizes figures measure at.
    pub(crate) fn scale(self) -> Scale {
        match self {
            Mode::Full => Scale {
                transfer_bytes: 1 << 30,
                relay_transfer_bytes: 256 << 20,
                failover_transfer_bytes: 64 << 20,
                relay_registrations: 1000,
                sim_nodes: 10_000,
                sim_big_nodes: 100_000,
                udp_nodes: 200,
                udp_lookups: 200,
                mem_nodes: 100,
                link_spokes: 1000,
                idle_window: Duration::from_secs(60),
                msg_burst: 200_000,
                round_trips: 5_000,
                commits: 2_000,
                idle_links: 50,
                idle_cpu_window: Duration::from_secs(60),
                offline_nodes: 20,
                mux_channels: 4096,
                forward_bytes: 1 << 30,
                punch_tries: 20,
            },
            Mode::Quick => Scale {
                transfer_bytes: 8 << 20,
                relay_transfer_bytes: 32 << 20,
                failover_transfer_bytes: 16 << 20,
                relay_registrations: 200,
                sim_nodes: 300,
                sim_big_nodes: 600,
                udp_nodes: 30,
                udp_lookups: 30,
                mem_nodes: 20,
                link_spokes: 10,
                idle_window: Duration::from_secs(5),
                msg_burst: 5_000,
                round_trips: 200,
                commits: 100,
                idle_links: 10,
                idle_cpu_window: Duration::from_secs(10),
                offline_nodes: 8,
                mux_channels: 512,
                forward_bytes: 64 << 20,
                punch_tries: 2,
            },
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Mode::Full if cfg!(debug_assertions) => "full sizes, debug build (do not quote)",
            Mode::Full => "full sizes, release build",
            Mode::Quick => "quick smoke test of the harness (never quote these numbers)",
        }
    }
}

/// The sizes a figure's `measure` works at; figures read the fields that concern them.
#[derive(Clone, Debug)]
pub(crate) struct Scale {
    /// Bytes each bulk-transfer figure moves per run (1 GiB in the full bench).
    pub(crate) transfer_bytes: u64,
    /// Bytes each of the `reach` transfers moves per run, direct and relayed (256 MiB in the
    /// full bench, 32 MiB in the quick one).
    pub(crate) relay_transfer_bytes: u64,
    /// Bytes the transfer of `reach.failover_gap_ms` moves while its relay dies a quarter of
    /// the way (64 MiB in the full bench).
    pub(crate) failover_transfer_bytes: u64,
    /// Idle registrations the relay of `relay.mem_kib_per_registration` takes (1000 in the
    /// full bench, 200 in the quick one).
    pub(crate) relay_registrations: usize,
    /// Nodes in the simulated network of the `dht.sim10k` figures (10,000 in the full bench).
    pub(crate) sim_nodes: usize,
    /// Nodes in the simulated network of the `dht.sim100k` figures (100,000 in the full
    /// bench).
    pub(crate) sim_big_nodes: usize,
    /// Real DHT nodes on loopback for `dht.udp200.lookup_ms_p50` (200 in the full bench).
    pub(crate) udp_nodes: usize,
    /// Lookups timed per run of `dht.udp200.lookup_ms_p50`.
    pub(crate) udp_lookups: usize,
    /// DHT nodes the fresh process of `mem.node_kib` starts (100 in the full bench).
    pub(crate) mem_nodes: usize,
    /// Friends' nodes linked to the hub of `mem.link_kib` (1000 in the full bench).
    pub(crate) link_spokes: usize,
    /// How long the hub's idle links are watched for `idle.packets_per_min_per_link`.
    pub(crate) idle_window: Duration,
    /// 1 KiB frames (`quinn.frames_per_s`) or messages (`msg.per_s`) sent in one burst per run
    /// (200,000 in the full bench).
    pub(crate) msg_burst: usize,
    /// Round trips timed one at a time per run of the `quinn.rtt` and `msg.rtt` figures.
    pub(crate) round_trips: usize,
    /// Commits timed one at a time per run of `disk.commit_us_p50`.
    pub(crate) commits: usize,
    /// Friends' nodes linked to the hub of `idle.cpu_pct` (50 in the full bench).
    pub(crate) idle_links: usize,
    /// How long the hub's CPU time is watched for `idle.cpu_pct` (60 s in the full bench).
    pub(crate) idle_cpu_window: Duration,
    /// Nodes in the DHT of `msg.offline_ms`, the two friends included (20 in the full bench).
    pub(crate) offline_nodes: usize,
    /// Channels opened at once per run of `mux.channels_open_ms` (4,096 in the full bench).
    pub(crate) mux_channels: usize,
    /// Bytes through a forwarding per run of `forward.tcp_MBps` (1 GiB in the full bench,
    /// 64 MiB in the quick one).
    pub(crate) forward_bytes: u64,
    /// Tries of each pair of NAT kinds in `reach.punch_success` (20 in the full bench, 2 in
    /// the quick one).
    pub(crate) punch_tries: usize,
}

/// What the command line asked for.
#[derive(Debug, PartialEq, Eq)]
struct Options {
    mode: Mode,
    only: Option<String>,
}

fn parse(args: &[String]) -> Result<Options, String> {
    let mut options = Options {
        mode: Mode::Full,
        only: None,
    };
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--quick" => options.mode = Mode::Quick,
            "--only" => match args.next() {
                Some(prefix) => options.only = Some(prefix.clone()),
                None => return Err(format!("--only needs a prefix\n{USAGE}")),
            },
            other => return Err(format!("unknown argument `{other}`\n{USAGE}")),
        }
    }
    Ok(options)
}

/// Runs `cargo xtask bench` with the arguments after `bench`.
pub(crate) fn run(args: &[String]) -> Result<(), String> {
    let options = parse(args)?;
    if options.mode == Mode::Full && std::env::var_os(RELEASE_BUILD_ENV).is_none() {
        return rerun_in_release(args);
    }
    let selected = select(FIGURES, options.only.as_deref())?;
    let mode = options.mode;
    println!("cargo xtask bench: {}", mode.describe());

    let (summaries, failed) = runs::measure_all(&selected, mode);
    let results = report::resolve(&summaries);
    println!("\n{}", report::markdown_table(&results));
    let path = results_path(mode)?;
    report::write_json(&path, &results)?;
    println!("wrote {}", path.display());
    if failed.is_empty() {
        Ok(())
    } else {
        Err(format!("figures failed: {}", failed.join(", ")))
    }
}

/// Starts the release build of this task with the same arguments and waits for it.
fn rerun_in_release(args: &[String]) -> Result<(), String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    println!("cargo xtask bench: building and running the release build");
    let status = Command::new(cargo)
        .args([
            "run",
            "--release",
            "--quiet",
            "--package",
            "xtask",
            "--",
            "bench",
        ])
        .args(args)
        .env(RELEASE_BUILD_ENV, "1")
        .status()
        .map_err(|e| format!("cannot run the release build: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("the release bench failed ({status})"))
    }
}

/// The figures whose names start with `only` (all when `None`; several prefixes separated by
/// commas, `forward.,tcp.`), or whose joint measurement's name does (`friend.links` selects
/// both figures of that measurement), plus the baselines they cite, in registry order: a ratio
/// needs its baseline measured in the same invocation.
fn select<'a>(registry: &'a [Figure], only: Option<&str>) -> Result<Vec<&'a Figure>, String> {
    let wanted = |f: &Figure| {
        only.is_none_or(|list| {
            list.split(',').filter(|p| !p.is_empty()).any(|prefix| {
                f.name.starts_with(prefix)
                    || matches!(f.measure, Measure::Joint(joint) if joint.name.starts_with(prefix))
            })
        })
    };
    let cited: Vec<&str> = registry
        .iter()
        .filter(|f| wanted(f))
        .filter_map(|f| f.baseline)
        .collect();
    for name in &cited {
        if !registry.iter().any(|f| f.name == *name) {
            return Err(format!("a figure cites the unknown baseline `{name}`"));
        }
    }
    let selected: Vec<&Figure> = registry
        .iter()
        .filter(|f| wanted(f) || cited.contains(&f.name))
        .collect();
    if selected.is_empty() {
        let names: Vec<_> = registry.iter().map(|f| f.name).collect();
        return Err(format!(
            "no figure (or joint measurement) starts with `{}`; figures: {}",
            only.unwrap_or_default(),
            names.join(", ")
        ));
    }
    Ok(selected)
}

/// `target/bench/results.json` for the full bench; the quick smoke test writes
/// `target/bench/quick/results.json`, so its numbers never pass for real ones.
fn results_path(mode: Mode) -> Result<PathBuf, String> {
    let bench = bench_dir()?;
    Ok(match mode {
        Mode::Full => bench.join("results.json"),
        Mode::Quick => bench.join("quick").join("results.json"),
    })
}

/// `target/bench` (under `CARGO_TARGET_DIR` if that is set): the bench's results and the data
/// directories of its nodes.
pub(crate) fn bench_dir() -> Result<PathBuf, String> {
    let target = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => workspace_root()?.join("target"),
    };
    Ok(target.join("bench"))
}

/// The workspace root: the parent of this crate's manifest directory.
fn workspace_root() -> Result<PathBuf, String> {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(PathBuf::from)
        .ok_or_else(|| "xtask's manifest directory has no parent".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn figure(name: &'static str, baseline: Option<&'static str>) -> Figure {
        Figure {
            name,
            unit: "MB/s",
            baseline,
            measure: Measure::Alone(|_| Ok(1.0)),
        }
    }

    fn names(selected: &[&Figure]) -> Vec<&'static str> {
        selected.iter().map(|f| f.name).collect()
    }

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn only_selects_by_name_prefix_in_registry_order() {
        let registry = [
            figure("tcp.raw_MBps", None),
            figure("tls_tcp.raw_MBps", None),
            figure("quinn.raw_MBps", None),
        ];
        assert_eq!(names(&select(&registry, None).unwrap()).len(), 3);
        assert_eq!(
            names(&select(&registry, Some("t")).unwrap()),
            ["tcp.raw_MBps", "tls_tcp.raw_MBps"]
        );
        assert_eq!(
            names(&select(&registry, Some("zzz,quinn.")).unwrap()),
            ["quinn.raw_MBps"]
        );
        // Several prefixes: the union, still in registry order.
        assert_eq!(
            names(&select(&registry, Some("quinn.,tcp.")).unwrap()),
            ["tcp.raw_MBps", "quinn.raw_MBps"]
        );
    }

    #[test]
    fn only_brings_in_the_baselines_of_what_it_selects() {
        let registry = [
            figure("quinn.raw_MBps", None),
            figure("stream.reliable_MBps", Some("quinn.raw_MBps")),
            figure("tcp.raw_MBps", None),
        ];
        assert_eq!(
            names(&select(&registry, Some("stream.")).unwrap()),
            ["quinn.raw_MBps", "stream.reliable_MBps"]
        );
    }

    #[test]
    fn only_selects_every_figure_of_a_joint_measurement_by_its_name() {
        const JOINT: Joint = Joint {
            name: "friend.links",
            runs: Runs::Expensive { full: 1 },
            measure: |_, _| Ok(Vec::new()),
        };
        let joint = |name| Figure {
            name,
            unit: "KiB",
            baseline: None,
            measure: Measure::Joint(&JOINT),
        };
        let registry = [
            figure("friend.connect_ms", None),
            joint("mem.link_kib"),
            joint("idle.packets_per_min_per_link"),
        ];
        assert_eq!(
            names(&select(&registry, Some("friend.links")).unwrap()),
            ["mem.link_kib", "idle.packets_per_min_per_link"]
        );
        assert_eq!(
            names(&select(&registry, Some("friend.")).unwrap()),
            [
                "friend.connect_ms",
                "mem.link_kib",
                "idle.packets_per_min_per_link"
            ]
        );
    }

    #[test]
    fn only_matching_nothing_is_an_error_naming_the_figures() {
        let registry = [figure("tcp.raw_MBps", None)];
        let error = select(&registry, Some("dht.")).unwrap_err();
        assert!(error.contains("tcp.raw_MBps"), "{error}");
    }

    #[test]
    fn citing_an_unknown_baseline_is_an_error() {
        let registry = [figure("stream.reliable_MBps", Some("nope"))];
        assert!(select(&registry, None).is_err());
    }

    #[test]
    fn registry_baselines_exist_and_come_first() {
        for (i, f) in FIGURES.iter().enumerate() {
            if let Some(baseline) = f.baseline {
                let at = FIGURES.iter().position(|b| b.name == baseline);
                assert!(at.is_some_and(|at| at < i), "{} cites {baseline}", f.name);
            }
        }
        let mut names: Vec<_> = FIGURES.iter().map(|f| f.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), FIGURES.len(), "figure names are unique");
    }

    #[test]
    fn command_line_is_parsed() {
        assert_eq!(
            parse(&args(&[])).unwrap(),
            Options {
                mode: Mode::Full,
                only: None
            }
        );
        assert_eq!(
            parse(&args(&["--only", "tcp", "--quick"])).unwrap(),
            Options {
                mode: Mode::Quick,
                only: Some("tcp".into())
            }
        );
        assert!(parse(&args(&["--only"])).is_err());
        assert!(parse(&args(&["--fast"])).is_err());
    }

    #[test]
    fn quick_mode_still_repeats_and_stays_small() {
        assert!(Mode::Quick.runs() >= 2);
        assert!(Mode::Full.runs() >= 5);
        assert!(Mode::Full.warmups() >= 1 && Mode::Quick.warmups() >= 1);
        assert_eq!(Mode::Full.scale().transfer_bytes, 1 << 30);
        assert!(Mode::Quick.scale().transfer_bytes <= 16 << 20);
        // The sizes the figures' names promise, and small ones for the smoke test.
        let (full, quick) = (Mode::Full.scale(), Mode::Quick.scale());
        assert_eq!(
            (full.sim_nodes, full.udp_nodes, full.mem_nodes),
            (10_000, 200, 100)
        );
        assert!(quick.sim_nodes <= 500 && quick.udp_nodes <= 50 && quick.mem_nodes <= 50);
        assert_eq!(full.sim_big_nodes, 100_000);
        assert!(quick.sim_big_nodes <= 1_000);
    }

    #[test]
    fn quick_results_never_overwrite_full_ones() {
        assert_ne!(
            results_path(Mode::Quick).unwrap(),
            results_path(Mode::Full).unwrap()
        );
        assert!(results_path(Mode::Full)
            .unwrap()
            .ends_with("bench/results.json"));
    }

    /// The transports themselves, end to end on a small transfer: a setup bug fails here, in
    /// `cargo test`, before anyone runs the bench.
    #[test]
    fn every_transport_moves_its_bytes() {
        let scale = Scale {
            transfer_bytes: 1 << 20,
            ..Mode::Quick.scale()
        };
        let transports: [(&str, runs::MeasureOne); 4] = [
            ("tcp", tcp::measure),
            ("tls", tls::measure),
            ("quic", quic::measure),
            ("quic_shared", quic_shared::measure),
        ];
        for (name, measure) in transports {
            let value = measure(&scale).unwrap_or_else(|e| panic!("{name} failed: {e}"));
            assert!(value > 0.0, "{name}: {value}");
        }
    }
}
