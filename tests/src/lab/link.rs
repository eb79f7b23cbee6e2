//! Faults on a device's link: loss and a cut, as nftables rules in the device's namespace;
//! and a cut of a router's uplink, in the router's.
//!
//! patchbay's link conditions use `tc netem`, which this kernel lacks (they then silently do
//! nothing), so the lab drops packets with nftables instead. Each fault is a table of its own
//! in the device's namespace, hooked on input and output: both directions of the link, and
//! loss and a cut can be set and removed independently. Loopback is never touched. A router's
//! uplink cut drops what crosses its WAN interface (forwarded, to or from the router itself),
//! so its LAN keeps working.
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

use super::{Device, LabError, Router};

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

/// The table that holds a router's uplink cut.
const UPLINK_CUT_TABLE: &str = "carrier_uplink_cut";

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

/// The table that holds a device's blocks of single peers.
const PEER_BLOCK_TABLE: &str = "carrier_peer_block";

/// Drops every packet between `device` and `peer` (an IPv4 address), both ways, replacing
/// any block set before: a direct path cut while the device's other traffic (its relays,
/// the DHT) flows. [`unblock_peer`] undoes it.
pub async fn block_peer(device: &Device, peer: std::net::Ipv4Addr) -> Result<(), LabError> {
    let table = format!(
        "table inet {PEER_BLOCK_TABLE} {{
    chain inbound {{
        type filter hook input priority -10; policy accept;
        ip saddr {peer} drop
    }}
    chain outbound {{
        type filter hook output priority -10; policy accept;
        ip daddr {peer} drop
    }}
}}
"
    );
    let script = format!("{}{table}", delete_table_script(PEER_BLOCK_TABLE));
    run_nft(device, script).await
}

/// Undoes [`block_peer`].
pub async fn unblock_peer(device: &Device) -> Result<(), LabError> {
    run_nft(device, delete_table_script(PEER_BLOCK_TABLE)).await
}

/// Cuts `router`'s uplink: every packet in or out of its WAN interface (forwarded between
/// the internet and its LAN, or the router's own) is dropped until [`heal_uplink`]. Devices
/// behind it still reach each other and the router on their LAN.
pub async fn cut_uplink(router: &Router) -> Result<(), LabError> {
    // patchbay lists the WAN interface first (`ix` on the internet, `wan` below a router).
    let wan = router
        .interfaces()
        .first()
        .map(|iface| iface.name().to_string())
        .ok_or_else(|| LabError::NoAddress(router.name().to_string()))?;
    let table = format!(
        "table inet {UPLINK_CUT_TABLE} {{
    chain forward {{
        type filter hook forward priority -10; policy accept;
        iifname \"{wan}\" drop
        oifname \"{wan}\" drop
    }}
    chain inbound {{
        type filter hook input priority -10; policy accept;
        iifname \"{wan}\" drop
    }}
    chain outbound {{
        type filter hook output priority -10; policy accept;
        oifname \"{wan}\" drop
    }}
}}
"
    );
    let script = format!("{}{table}", delete_table_script(UPLINK_CUT_TABLE));
    run_nft(Namespace::Router(router.clone()), script).await
}

/// Undoes [`cut_uplink`]: the router's LAN reaches the internet again.
pub async fn heal_uplink(router: &Router) -> Result<(), LabError> {
    run_nft(
        Namespace::Router(router.clone()),
        delete_table_script(UPLINK_CUT_TABLE),
    )
    .await
}

/// The table that holds a router's cut of one peer.
const PEER_CUT_TABLE: &str = "carrier_peer_cut";

/// Cuts the direct path between `router`'s network and `peer` (a public address): every
/// packet the router would forward to or from `peer` is dropped until [`heal_peer`], while
/// everything else (relays, the DHT) still passes. The drop comes before the packet's flow
/// is confirmed, so a packet dropped here leaves no conntrack entry that would open a
/// filtering NAT later. One peer per router at a time: a second cut replaces the first.
pub async fn cut_peer(router: &Router, peer: std::net::IpAddr) -> Result<(), LabError> {
    let family = if peer.is_ipv4() { "ip" } else { "ip6" };
    let table = format!(
        "table inet {PEER_CUT_TABLE} {{
    chain forward {{
        type filter hook forward priority -10; policy accept;
        {family} saddr {peer} drop
        {family} daddr {peer} drop
    }}
}}
"
    );
    let script = format!("{}{table}", delete_table_script(PEER_CUT_TABLE));
    run_nft(Namespace::Router(router.clone()), script).await
}

/// Undoes [`cut_peer`]: the router forwards to and from that peer again.
pub async fn heal_peer(router: &Router) -> Result<(), LabError> {
    run_nft(
        Namespace::Router(router.clone()),
        delete_table_script(PEER_CUT_TABLE),
    )
    .await
}

/// Forgets every flow `router` tracks to or from `peer` (its conntrack entries): a NAT with
/// address-and-port-dependent filtering then drops what `peer` sends until a device behind
/// it sends to `peer` again, as if they had never been in touch. Mappings stay (an
/// endpoint-independent NAT keeps its public port per socket). Other flows are untouched.
pub async fn forget_flows(router: &Router, peer: std::net::IpAddr) -> Result<(), LabError> {
    let namespace = Namespace::Router(router.clone());
    let host = namespace.name();
    let peer = peer.to_string();
    let outcome = tokio::task::spawn_blocking(move || -> Result<Vec<String>, String> {
        let mut refusals = Vec::new();
        for side in ["--orig-src", "--orig-dst"] {
            let mut command = Command::new(conntrack());
            command
                .args(["-D", side, &peer])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            let output = namespace
                .spawn(command)?
                .wait_with_output()
                .map_err(|e| format!("conntrack did not finish: {e}"))?;
            let said = String::from_utf8_lossy(&output.stderr);
            // conntrack fails when nothing matched: that is forgetting nothing, not an error.
            if !output.status.success() && !said.contains("0 flow entries") {
                refusals.push(format!("{}: {}", output.status, said.trim()));
            }
        }
        Ok(refusals)
    })
    .await
    .map_err(|e| e.to_string())
    .and_then(|outcome| outcome)
    .map_err(|message| LabError::Nft {
        host: host.clone(),
        message,
    })?;
    match outcome.first() {
        None => Ok(()),
        Some(refusal) => Err(LabError::Nft {
            host,
            message: format!("conntrack -D: {refusal}"),
        }),
    }
}

/// The conntrack binary (Debian's `conntrack` package, which `.ci/run` installs).
fn conntrack() -> &'static str {
    if std::path::Path::new("/usr/sbin/conntrack").exists() {
        "/usr/sbin/conntrack"
    } else {
        "conntrack"
    }
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

/// A namespace nft runs in: a device's or a router's.
enum Namespace {
    Device(Device),
    Router(Router),
}

impl Namespace {
    fn name(&self) -> String {
        match self {
            Namespace::Device(device) => device.name().to_string(),
            Namespace::Router(router) => router.name().to_string(),
        }
    }

    fn spawn(&self, command: Command) -> Result<std::process::Child, String> {
        let command_name = command.get_program().to_string_lossy().into_owned();
        match self {
            Namespace::Device(device) => device.spawn_command_sync(command),
            Namespace::Router(router) => router.spawn_command_sync(command),
        }
        .map_err(|e| format!("cannot start {:?} there: {e:#}", command_name))
    }
}

impl From<&Device> for Namespace {
    fn from(device: &Device) -> Namespace {
        Namespace::Device(device.clone())
    }
}

/// Runs an nft script in a namespace and waits for it.
async fn run_nft(namespace: impl Into<Namespace>, script: String) -> Result<(), LabError> {
    let namespace = namespace.into();
    let host = namespace.name();
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
        let mut child = namespace.spawn(command)?;
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
