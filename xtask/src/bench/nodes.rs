//! Real DHT nodes on loopback for the `dht.udp200` and `mem` figures: each on its own
//! 127.x.y.1 address, joined one after another through the first.

use carrier_friend::dht::{BootstrapNode, Dht, DhtConfig};
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

/// Addresses per second octet: node `i` binds 127.(1 + i / 250).(i % 250).1.
const PER_OCTET: usize = 250;

/// The most nodes [`address`] can place (second octets 1 to 254).
pub(crate) const MAX_NODES: usize = 254 * PER_OCTET;

/// How often, and at most how many times, [`settle`] looks at the routing tables.
const SETTLE_POLL: Duration = Duration::from_millis(50);
const SETTLE_POLLS: usize = 200;

/// Node `i`'s address: 127.(1 + i / 250).(i % 250).1, any port. No two nodes share a /24, so
/// the routing table's per-subnet limit stays on, as between real hosts.
fn address(i: usize) -> Result<SocketAddr, String> {
    if i >= MAX_NODES {
        return Err(format!("node {i}: at most {MAX_NODES} loopback nodes"));
    }
    // Both fit a byte: i / 250 < 254 and i % 250 < 250.
    let (high, low) = ((1 + i / PER_OCTET) as u8, (i % PER_OCTET) as u8);
    Ok(SocketAddr::from((Ipv4Addr::new(127, high, low, 1), 0)))
}

/// Node `i`'s settings: a reachable server (loopback needs no NAT traversal), no data
/// directory, a fresh identity.
fn config(i: usize, bootstrap: Option<&BootstrapNode>) -> Result<DhtConfig, String> {
    let mut config = DhtConfig::new(address(i)?);
    config.bootstrap = bootstrap.cloned().into_iter().collect();
    config.node.server = true;
    Ok(config)
}

/// Starts `count` nodes and joins them into one network; must run inside a tokio runtime.
///
/// Nodes join one after another through node 0, as a network grows: each join takes a few
/// milliseconds here. Joining all at the same instant leaves early nodes unknown to later
/// neighbours until their second self-lookup a minute later, and the network in clusters.
pub(crate) async fn start(count: usize) -> Result<Vec<Dht>, String> {
    if count < 2 {
        return Err(format!("a network needs at least 2 nodes, not {count}"));
    }
    let first = Dht::bind(config(0, None)?)
        .await
        .map_err(|e| format!("node 0 cannot start: {e}"))?;
    let seed = BootstrapNode::new(first.id(), first.local_addr());
    let mut nodes = Vec::with_capacity(count);
    nodes.push(first);
    for i in 1..count {
        let node = Dht::bind(config(i, Some(&seed))?)
            .await
            .map_err(|e| format!("node {i} cannot start: {e}"))?;
        node.bootstrap()
            .await
            .map_err(|e| format!("node {i} cannot join: {e}"))?;
        nodes.push(node);
    }
    settle(&nodes).await;
    Ok(nodes)
}

/// Waits until the routing tables stop changing. A server enters a table only once it has
/// answered a check at its address, so tables keep filling for a moment after the last join;
/// lookups measured before that would be measured on a network still forming.
async fn settle(nodes: &[Dht]) {
    let mut last = 0;
    for _ in 0..SETTLE_POLLS {
        tokio::time::sleep(SETTLE_POLL).await;
        let entries: usize = nodes.iter().map(Dht::routing_entries).sum();
        let checking: usize = nodes
            .iter()
            .map(|n| n.with_node(|core| core.pending_requests()))
            .sum();
        if entries == last && checking == 0 {
            return;
        }
        last = entries;
    }
}

/// Stops every node and waits until their tasks have stopped, so no socket or task of one run
/// survives into the next.
pub(crate) async fn stop(nodes: Vec<Dht>) {
    for node in nodes {
        // Nothing is saved (no data directory), so shutting down cannot fail in a way that
        // matters to the figure.
        let _ = node.shutdown().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_two_nodes_share_a_slash_24() {
        let mut subnets: Vec<[u8; 3]> = (0..MAX_NODES)
            .map(|i| match address(i).unwrap().ip() {
                std::net::IpAddr::V4(ip) => {
                    let [a, b, c, d] = ip.octets();
                    assert_eq!((a, d), (127, 1));
                    [a, b, c]
                }
                other => panic!("{other}"),
            })
            .collect();
        subnets.sort_unstable();
        subnets.dedup();
        assert_eq!(subnets.len(), MAX_NODES);
        assert!(address(MAX_NODES).is_err());
        assert_eq!(address(251).unwrap().to_string(), "127.2.1.1:0");
    }
}
