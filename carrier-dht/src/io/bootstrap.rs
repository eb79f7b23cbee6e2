//! Bootstrap contacts as operators write them: `ID@host:port`.

use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::str::FromStr;

use carrier_id::{CarrierId, IdError};

use crate::wire::key::Key;
use crate::wire::message::Contact;

/// A node to join the network through: its Carrier ID and where it listens.
///
/// ```
/// use carrier_dht::BootstrapNode;
///
/// let id = carrier_dht::id::Keypair::from_seed(&[1; 32]).id();
/// let node: BootstrapNode = format!("{id}@127.0.0.1:33445").parse()?;
/// assert_eq!(node.id, id);
/// assert_eq!(node.to_string(), format!("{id}@127.0.0.1:33445"));
/// # Ok::<(), carrier_dht::BootstrapParseError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BootstrapNode {
    /// The node's identity; packets from anyone else at that address are not trusted as it.
    pub id: CarrierId,
    /// `host:port`; a host name is resolved when the node bootstraps.
    pub host: String,
}

/// Why an `ID@host:port` string is not a bootstrap node.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum BootstrapParseError {
    /// There is no `@` between the ID and the address.
    #[error("expected ID@host:port, found no '@'")]
    MissingAt,
    /// The part before `@` is not a Carrier ID.
    #[error("bad Carrier ID: {0}")]
    Id(#[from] IdError),
    /// The part after `@` is not `host:port`.
    #[error("bad address {0:?}: expected host:port")]
    Address(String),
}

impl BootstrapNode {
    /// A bootstrap node at a known socket address.
    pub fn new(id: CarrierId, addr: SocketAddr) -> Self {
        BootstrapNode {
            id,
            host: addr.to_string(),
        }
    }

    /// Resolves the host to the contacts to try (every address it resolves to), without
    /// blocking the runtime: a DNS name is looked up on tokio's blocking pool.
    pub async fn lookup(&self) -> std::io::Result<Vec<Contact>> {
        let id = Key::of_node(&self.id);
        Ok(tokio::net::lookup_host(self.host.as_str())
            .await?
            .map(|addr| Contact { id, addr })
            .collect())
    }

    /// As [`BootstrapNode::lookup`], blocking the calling thread while a DNS name resolves:
    /// for code outside an async runtime.
    pub fn resolve(&self) -> std::io::Result<Vec<Contact>> {
        let id = Key::of_node(&self.id);
        Ok(self
            .host
            .to_socket_addrs()?
            .map(|addr| Contact { id, addr })
            .collect())
    }
}

impl FromStr for BootstrapNode {
    type Err = BootstrapParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (id, host) = s.split_once('@').ok_or(BootstrapParseError::MissingAt)?;
        let id: CarrierId = id.trim().parse()?;
        let host = host.trim();
        let port_ok = host
            .rsplit_once(':')
            .is_some_and(|(name, port)| !name.is_empty() && port.parse::<u16>().is_ok());
        if !port_ok {
            return Err(BootstrapParseError::Address(host.to_string()));
        }
        Ok(BootstrapNode {
            id,
            host: host.to_string(),
        })
    }
}

impl fmt::Display for BootstrapNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.id, self.host)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_ipv4_ipv6_and_names() {
        let id = carrier_id::Keypair::from_seed(&[3; 32]).id();
        for host in ["127.0.0.1:1", "[::1]:33445", "bootstrap.example:33445"] {
            let node: BootstrapNode = format!("{id}@{host}").parse().unwrap();
            assert_eq!(node.host, host);
        }
    }

    #[test]
    fn each_mistake_has_its_error() {
        let id = carrier_id::Keypair::from_seed(&[3; 32]).id();
        assert_eq!(
            "nothing".parse::<BootstrapNode>(),
            Err(BootstrapParseError::MissingAt)
        );
        assert!(matches!(
            "abc@127.0.0.1:1".parse::<BootstrapNode>(),
            Err(BootstrapParseError::Id(_))
        ));
        for host in ["127.0.0.1", ":80", "127.0.0.1:port", "127.0.0.1:70000"] {
            assert!(matches!(
                format!("{id}@{host}").parse::<BootstrapNode>(),
                Err(BootstrapParseError::Address(_))
            ));
        }
    }

    proptest! {
        #[test]
        fn arbitrary_text_never_panics(s in ".{0,200}") {
            let _ = s.parse::<BootstrapNode>();
        }
    }
}
