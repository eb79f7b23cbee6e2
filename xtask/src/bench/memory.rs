//! `mem.node_kib`: resident memory per idle DHT node, measured in a fresh process.
//!
//! The bench starts itself again (`xtask bench-child mem-node N`), and that child reads its
//! resident set (`VmRSS` in `/proc/self/status`) before and after starting N nodes, joining
//! them and letting them idle; the growth divided by N is the figure. A fresh process, because
//! the bench's own process has already run other figures: memory their allocations left in the
//! allocator's free lists would be reused by the nodes and hide their cost.

use super::{nodes, transfer, Scale};
use std::process::Command;
use std::time::Duration;

/// The hidden subcommand the bench starts itself with; see [`child`].
pub(crate) const CHILD_TASK: &str = "bench-child";
const MEM_NODE: &str = "mem-node";

/// What the child prints before the figure's value on its result line.
const RESULT_PREFIX: &str = "mem.node_kib ";

/// How long the nodes idle after their tables settle before the second reading, so memory
/// the first moments of idling take (timers, buffers sized on first use) is counted.
const IDLE: Duration = Duration::from_secs(1);

/// Starts a fresh copy of this program to measure `scale.mem_nodes` nodes; returns KiB per
/// node.
pub(crate) fn measure(scale: &Scale) -> Result<f64, String> {
    let program =
        std::env::current_exe().map_err(|e| format!("cannot find the running program: {e}"))?;
    let output = Command::new(&program)
        .args([CHILD_TASK, MEM_NODE, &scale.mem_nodes.to_string()])
        .stderr(std::process::Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot start {}: {e}", program.display()))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        return Err(format!("the child failed ({}): {stdout}", output.status));
    }
    parse_result(&stdout)
}

/// The value on the child's result line.
fn parse_result(stdout: &str) -> Result<f64, String> {
    stdout
        .lines()
        .rev()
        .find_map(|line| line.strip_prefix(RESULT_PREFIX))
        .and_then(|value| value.trim().parse().ok())
        .ok_or_else(|| format!("no `{RESULT_PREFIX}` line from the child: {stdout:?}"))
}

/// `xtask bench-child mem-node N`: the fresh process's side. Prints `mem.node_kib VALUE`.
pub(crate) fn child(args: &[String]) -> Result<(), String> {
    let count = match args {
        [task, count] if task == MEM_NODE => count
            .parse::<usize>()
            .map_err(|e| format!("bad node count `{count}`: {e}"))?,
        _ => return Err(format!("usage: xtask {CHILD_TASK} {MEM_NODE} NODES")),
    };
    if count == 0 {
        return Err("no nodes to measure".into());
    }
    // The runtime (its worker threads and their stacks) exists before the first reading, so
    // only the nodes are counted: an application embedding many nodes has one runtime.
    let per_node = transfer::on_runtime(async move {
        let before = resident_kib()?;
        let network = nodes::start(count).await?;
        tokio::time::sleep(IDLE).await;
        let after = resident_kib()?;
        eprintln!(
            "bench: mem.node_kib child: {count} nodes, VmRSS {before} KiB before, {after} KiB \
             after"
        );
        // Keep the nodes alive until after the reading.
        drop(network);
        Ok(after.saturating_sub(before) as f64 / count as f64)
    })?;
    println!("{RESULT_PREFIX}{per_node}");
    Ok(())
}

/// This process's resident set in KiB, from `/proc/self/status` (Linux).
pub(crate) fn resident_kib() -> Result<u64, String> {
    let status = std::fs::read_to_string("/proc/self/status")
        .map_err(|e| format!("cannot read /proc/self/status: {e}"))?;
    parse_vm_rss(&status)
}

/// The `VmRSS:` line of a `/proc/<pid>/status`, in KiB (the kernel's "kB" are KiB).
pub(crate) fn parse_vm_rss(status: &str) -> Result<u64, String> {
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().strip_suffix("kB"))
        .and_then(|kib| kib.trim().parse().ok())
        .ok_or_else(|| "no VmRSS line in the process status".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vm_rss_is_read_in_kib() {
        let status = "Name:\txtask\nVmPeak:\t  99999 kB\nVmRSS:\t   12345 kB\nRssAnon:\t 1 kB\n";
        assert_eq!(parse_vm_rss(status).unwrap(), 12345);
        assert!(parse_vm_rss("Name:\txtask\n").is_err());
        assert!(resident_kib().unwrap() > 0);
    }

    #[test]
    fn the_childs_result_line_is_found() {
        assert_eq!(parse_result("noise\nmem.node_kib 212.5\n").unwrap(), 212.5);
        assert!(parse_result("mem.node_kib lots\n").is_err());
        assert!(parse_result("").is_err());
    }

    #[test]
    fn the_child_measures_a_few_nodes() {
        // The test binary is not xtask, so the child's side runs here in process.
        child(&[MEM_NODE.to_string(), "4".to_string()]).unwrap();
        assert!(child(&[MEM_NODE.to_string(), "none".to_string()]).is_err());
        assert!(child(&["other".to_string(), "4".to_string()]).is_err());
    }
}
