//! The DHT nodes the friends join through: a Kademlia network on loopback.

use std::net::SocketAddr;
use std::time::Duration;

use carrier::dht::{BootstrapNode, Dht, DhtConfig};

use super::steps::Error;

/// Where every node binds: loopback, a port of its own. Nothing the demo sends leaves the
/// machine.
pub(super) const LOOPBACK: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 0);

/// The DHT nodes besides the friends'.
pub(super) struct Network {
    /// The node everybody joins through.
    first: Dht,
    others: Vec<Dht>,
}

impl Network {
    /// Starts `servers` DHT nodes (at least one), each joining through the first; those
    /// started before a failure are shut down.
    pub(super) async fn start(servers: u8) -> Result<Network, Error> {
        let first = Dht::bind(config(None)).await?;
        let mut network = Network {
            first,
            others: Vec::new(),
        };
        for _ in 1..servers {
            if let Err(error) = network.add().await {
                network.shutdown().await;
                return Err(error);
            }
        }
        Ok(network)
    }

    async fn add(&mut self) -> Result<(), Error> {
        let dht = Dht::bind(config(Some(&self.first))).await?;
        self.others.push(dht.clone());
        dht.bootstrap().await?;
        Ok(())
    }

    /// How many DHT nodes run.
    pub(super) fn len(&self) -> usize {
        1 + self.others.len()
    }

    /// The node the friends join through, `ID@address` as a user would write it.
    pub(super) fn seed(&self) -> BootstrapNode {
        BootstrapNode::new(self.first.id(), self.first.local_addr())
    }

    /// Stops every node (they keep nothing on disk).
    pub(super) async fn shutdown(self) {
        for dht in std::iter::once(self.first).chain(self.others) {
            // Without a data directory there is nothing to save on the way out.
            let _ = dht.shutdown().await;
        }
    }
}

/// A DHT node's settings for the demo: a network on one machine (every node a server from
/// the start, no per-subnet limit, since all share 127.0.0.1), joining through `seed`, with
/// nothing on disk.
fn config(seed: Option<&Dht>) -> DhtConfig {
    let mut config = DhtConfig::local(LOOPBACK)
        .with_bootstrap(seed.map(|s| BootstrapNode::new(s.id(), s.local_addr())));
    config.query_timeout = Duration::from_secs(10);
    config
}
