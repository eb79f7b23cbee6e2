//! Faults on a device's link: loss and a cut, as nftables rules in the device's namespace.
//!
//! patchbay's link conditions use `tc netem`, which this kernel lacks (they then silently do
//! nothing), so the lab drops packets with nftables instead. Each fault is a table of its own
//! in the device's namespace, hooked on input and output: both directions of the link, and
//! loss and a cut can be set and removed independently. Loopback is never touched.
//!
//! ```no_run
//! # async fn f(device: &tests::lab::Device) -> Result<(), tests::lab::LabError> {
//! use tests::lab::link;
//! link::set_loss(device, 5).await?; // 5% of packets lost each way
//! link::cut(device).await?; // nothing in or out
//! link::heal(device).await?; // the cut is gone, the 5% loss stays
//! link::clear_loss(device).await?;
//! # Ok(())
//! # }
//! ```

use std::io::Write;
use std::process::{Command, Stdio};

use super::{Device, LabError};

/// Where Debian's nftables package (which `.ci/run` installs) puts nft: a PATH without the
/// sbin directories, common for non-login shells, would not find it by name.
const NFT_PATH: &str = "/usr/sbin/nft";

/// The nft binary: at its usual place, else whichever the PATH finds (as patchbay does).
pub(crate) fn nft() -> &'static str {
    if std::path::Path::new(NFT_PATH).exists() {
        NFT_PATH
    } else {
        "nft"
    }
}

/// The table that holds a device's loss rules.
const LOSS_TABLE: &str = "carrier_loss";

/// The table that holds a device's cut.
const CUT_TABLE: &str = "carrier_cut";

/// Loses `percent` % of the packets entering and of those leaving `device` (each one drawn
/// independently), replacing any loss set before. 0 removes the loss.
pub async fn set_loss(device: &Device, percent: u8) -> Result<(), LabError> {
    if percent == 0 {
        return clear_loss(device).await;
    }
    let percent = percent.min(100);
    let rule = format!("numgen random mod 100 < {percent} drop");
    // Deleting and adding in one nft run makes the change atomic: no instant without rules.
    let script = format!(
        "{}{}",
        delete_table_script(LOSS_TABLE),
        both_ways_table(LOSS_TABLE, &rule)
    );
    run_nft(device, script).await
}

/// Removes the loss set by [`set_loss`], if any.
pub async fn clear_loss(device: &Device) -> Result<(), LabError> {
    run_nft(device, delete_table_script(LOSS_TABLE)).await
}

/// Cuts `device` off: every packet in or out of it is dropped until [`heal`].
pub async fn cut(device: &Device) -> Result<(), LabError> {
    let script = format!(
        "{}{}",
        delete_table_script(CUT_TABLE),
        both_ways_table(CUT_TABLE, "drop")
    );
    run_nft(device, script).await
}

/// Undoes [`cut`]: the device's traffic flows again (loss, if set, stays).
pub async fn heal(device: &Device) -> Result<(), LabError> {
    run_nft(device, delete_table_script(CUT_TABLE)).await
}

/// A table with one rule on the input and the output hook of every interface but loopback.
/// Priority -10 runs it before patchbay's own filter chains (priority 0), so a dropped packet
/// is never counted or answered by them.
fn both_ways_table(table: &str, rule: &str) -> String {
    format!(
        "table inet {table} {{
    chain inbound {{
        type filter hook input priority -10; policy accept;
        iifname != \"lo\" {rule}
    }}
    chain outbound {{
        type filter hook output priority -10; policy accept;
        oifname != \"lo\" {rule}
    }}
}}
"
    )
}

/// Deletes a table, if it exists: `add` first makes the `delete` valid either way.
fn delete_table_script(table: &str) -> String {
    format!("add table inet {table}\ndelete table inet {table}\n")
}

/// Runs an nft script in the device's namespace and waits for it.
async fn run_nft(device: &Device, script: String) -> Result<(), LabError> {
    let device = device.clone();
    let host = device.name().to_string();
    let failed = |message: String| LabError::Nft {
        host: host.clone(),
        message,
    };
    // Spawning a process in a namespace and waiting for it blocks: off the async threads.
    let outcome = tokio::task::spawn_blocking(move || -> Result<std::process::Output, String> {
        let mut command = Command::new(nft());
        command
            .args(["-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = device
            .spawn_command_sync(command)
            .map_err(|e| format!("cannot start nft: {e:#}"))?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin
                .write_all(script.as_bytes())
                .map_err(|e| format!("cannot write the rules to nft: {e}"))?;
        }
        child
            .wait_with_output()
            .map_err(|e| format!("nft did not finish: {e}"))
    })
    .await
    .map_err(|e| failed(format!("the nft task failed: {e}")))?
    .map_err(&failed)?;
    if outcome.status.success() {
        Ok(())
    } else {
        Err(failed(format!(
            "{}: {}",
            outcome.status,
            String::from_utf8_lossy(&outcome.stderr).trim()
        )))
    }
}
