//! Carrier DHT nodes in the lab: settings that suit it, a node started inside a host's
//! namespace, its bootstrap contact, and a bounded wait for a condition.
//!
//! ```no_run
//! # async fn f(lab: &tests::lab::NetworkLab) -> Result<(), tests::lab::LabError> {
//! use tests::lab::nodes::{lab_config, node_in, public_node, seed, ANY};
//! let net = lab.nat_topology(2).await?;
//! let server = public_node(&net.public[0], true, Vec::new()).await?;
//! let client = node_in(&net.cone_devices[0], lab_config(ANY, false, vec![seed(&server)])).await?;
//! # Ok(())
//! # }
//! ```

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use carrier::dht::{BootstrapNode, Dht, DhtConfig};
use carrier::friend::{FriendEvents, Friends, FriendsConfig};

use super::{ipv4, Device, LabError};

/// Queries of lab nodes fail well before a test would hang.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(10);

/// Any IPv4 address, any port: how nodes behind a NAT bind.
pub const ANY: SocketAddr = SocketAddr::new(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), 0);

/// Settings of a lab node: bound to `bind`, a server from the start if `server` (otherwise it
/// checks its reachability, as by default), joining through `bootstrap`. Every public host
/// of the lab is in 198.18.1.0/24, so the per-/24 limits are lifted (which also makes
/// observed addresses count one vote per reporting IP). Reachability checks are quick, as a
/// test's lifetime is short: a retry after 200 ms, a probe awaited 2 s, a re-check a minute
/// after a settled answer.
pub fn lab_config(bind: SocketAddr, server: bool, bootstrap: Vec<BootstrapNode>) -> DhtConfig {
    let mut config = DhtConfig::new(bind);
    config.bootstrap = bootstrap;
    config.query_timeout = QUERY_TIMEOUT;
    config.node.server = server;
    config.node.max_per_subnet = None;
    config.node.probe_retry = Duration::from_millis(200);
    config.node.probe_timeout = Duration::from_secs(2);
    config.node.probe_interval = Duration::from_secs(60);
    config
}

/// Starts a DHT node in `device`'s namespace: its socket and its task live there, and the
/// handle works from anywhere.
pub async fn node_in(device: &Device, config: DhtConfig) -> Result<Dht, LabError> {
    let name = device.name().to_string();
    let failed =
        |e: &dyn std::fmt::Display| LabError::patchbay(format!("starting a DHT node in {name}"), e);
    device
        .spawn(async move |_| Dht::bind(config).await)
        .map_err(|e| failed(&e))?
        .await
        .map_err(|e| failed(&e))?
        .map_err(|e| failed(&e))
}

/// Starts the friend layer of `dht` (a node started with a data directory) in `device`'s
/// namespace, where its tasks then run.
pub async fn friends_in(
    device: &Device,
    dht: Dht,
    config: FriendsConfig,
) -> Result<(Friends, FriendEvents), LabError> {
    let name = device.name().to_string();
    let failed = |e: &dyn std::fmt::Display| {
        LabError::patchbay(format!("starting the friend layer in {name}"), e)
    };
    device
        .spawn(async move |_| Friends::start(dht, config).await)
        .map_err(|e| failed(&e))?
        .await
        .map_err(|e| failed(&e))?
        .map_err(|e| failed(&e))
}

/// A node on a public host, bound to the host's address (so the contact it hands out is the
/// real one): a server from the start if `server`, else one that checks its reachability.
pub async fn public_node(
    device: &Device,
    server: bool,
    bootstrap: Vec<BootstrapNode>,
) -> Result<Dht, LabError> {
    let bind = SocketAddr::new(IpAddr::V4(ipv4(device)?), 0);
    node_in(device, lab_config(bind, server, bootstrap)).await
}

/// The node's bootstrap contact, `ID@address`.
pub fn seed(node: &Dht) -> BootstrapNode {
    BootstrapNode::new(node.id(), node.local_addr())
}

/// Polls `condition` every 100 ms until it holds or `within` has passed; returns whether it
/// held. A test asserts the outcome, so a wait never passes silently.
pub async fn wait_until(within: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if condition() {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
