//! What the integration tests share: nodes on 127.0.0.1, each a real DHT node (`Dht`) whose
//! socket its QUIC endpoint shares, and real DHT pings to check the DHT side keeps answering.
#![allow(dead_code, clippy::unwrap_used)]

use std::net::SocketAddr;
use std::time::Duration;

use carrier_friend::dht::id::CarrierId;
use carrier_friend::dht::socket::NodeSocket;
use carrier_friend::dht::{Dht, DhtConfig, Path};
use carrier_friend::{AllowList, FriendGate, LinkConfig, LinkEndpoint};

/// A node: its DHT (which owns the socket) and its QUIC endpoint on the same socket.
pub(crate) struct Node {
    pub(crate) dht: Dht,
    pub(crate) socket: NodeSocket,
    pub(crate) links: LinkEndpoint,
}

impl Node {
    pub(crate) fn id(&self) -> CarrierId {
        self.dht.id()
    }

    pub(crate) fn path(&self) -> Path {
        Path::Direct(self.addr())
    }

    pub(crate) fn addr(&self) -> SocketAddr {
        self.dht.local_addr()
    }
}

/// A node on 127.0.0.1 whose friends are `friends`.
pub(crate) async fn node(friends: &[CarrierId]) -> Node {
    let allow = AllowList::default();
    for id in friends {
        allow.insert(*id);
    }
    node_with(LinkConfig::new(allow)).await
}

/// A DHT node on 127.0.0.1, a server (reachable on loopback).
pub(crate) async fn dht_node() -> Dht {
    let mut config = DhtConfig::new("127.0.0.1:0".parse().unwrap());
    config.node.server = true;
    Dht::bind(config).await.unwrap()
}

/// A node on 127.0.0.1 with `config`.
pub(crate) async fn node_with(config: LinkConfig) -> Node {
    let dht = dht_node().await;
    let keypair = dht.with_node(|core| core.keypair().clone());
    let socket = dht.socket().clone();
    let links = LinkEndpoint::new(socket.clone(), &keypair, config).unwrap();
    Node { dht, socket, links }
}

/// Takes every link and request `node` accepts from now on, and drops it (a dropped request
/// is taken as it is: its sender hears `REQUEST_RECEIVED`).
pub(crate) fn take_everything(node: &Node) {
    let links = node.links.clone();
    tokio::spawn(async move { while links.accept().await.is_some() {} });
}

/// A gate admitting nobody.
pub(crate) fn nobody() -> impl FriendGate {
    |_: &CarrierId| false
}

/// A DHT node that pings the others.
pub(crate) async fn dht_client() -> Dht {
    dht_node().await
}

/// A real DHT ping from `pinger` to `to`: whether it is answered within `within`.
pub(crate) async fn dht_ping(pinger: &Dht, to: &Node, within: Duration) -> bool {
    let id = to.id();
    let ping = pinger.ping(&id, to.addr());
    matches!(tokio::time::timeout(within, ping).await, Ok(Ok(true)))
}
pub(crate) mod net;
