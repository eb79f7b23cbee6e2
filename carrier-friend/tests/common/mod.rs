//! What the integration tests share: nodes on 127.0.0.1, and the DHT side of each node.
//!
//! **The DHT stand-in.** [`serve_dht`] plays the DHT on a node's socket until the real `Dht`
//! driver exists: it answers every Carrier-class datagram with a Carrier-class reply. It is the
//! one place to swap for the real driver (`serve_dht` starts it; [`dht_ping`] becomes a real
//! DHT ping), and the tests keep their meaning: QUIC and the DHT share the socket and neither
//! starves the other.
#![allow(dead_code, clippy::unwrap_used)]

use std::net::SocketAddr;
use std::time::Duration;

use carrier_friend::dht::id::{CarrierId, Keypair};
use carrier_friend::dht::socket::NodeSocket;
use carrier_friend::dht::Path;
use carrier_friend::{AllowList, FriendGate, LinkConfig, LinkEndpoint};
use tokio::net::UdpSocket;
use tokio::task::JoinHandle;

/// The first byte of the stand-in's ping; below 0x40, so Carrier-class.
pub(crate) const PING: u8 = 0x01;
/// The first byte of the stand-in's answer.
pub(crate) const PONG: u8 = 0x02;

/// A node: its socket, its QUIC endpoint, the DHT serving on the same socket.
pub(crate) struct Node {
    pub(crate) keypair: Keypair,
    pub(crate) socket: NodeSocket,
    pub(crate) links: LinkEndpoint,
    pub(crate) dht: JoinHandle<()>,
}

impl Node {
    pub(crate) fn id(&self) -> CarrierId {
        self.keypair.id()
    }

    pub(crate) fn path(&self) -> Path {
        Path::Direct(self.socket.local_addr().unwrap())
    }

    pub(crate) fn addr(&self) -> SocketAddr {
        self.socket.local_addr().unwrap()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.dht.abort();
    }
}

/// A node on 127.0.0.1 whose friends are `friends`.
pub(crate) fn node(friends: &[CarrierId]) -> Node {
    let allow = AllowList::default();
    for id in friends {
        allow.insert(*id);
    }
    node_with(LinkConfig::new(allow))
}

/// A node on 127.0.0.1 with `config`.
pub(crate) fn node_with(config: LinkConfig) -> Node {
    let keypair = Keypair::generate();
    let socket = NodeSocket::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let links = LinkEndpoint::new(socket.clone(), &keypair, config).unwrap();
    let dht = serve_dht(socket.clone());
    Node {
        keypair,
        socket,
        links,
        dht,
    }
}

/// A gate admitting nobody.
pub(crate) fn nobody() -> impl FriendGate {
    |_: &CarrierId| false
}

/// The DHT side of a node (stand-in; swap for the real `Dht` driver): answers every
/// Carrier-class datagram `[PING, rest..]` with `[PONG, rest..]`.
pub(crate) fn serve_dht(socket: NodeSocket) -> JoinHandle<()> {
    tokio::spawn(async move {
        while let Ok(datagram) = socket.recv_carrier().await {
            if datagram.data.first() == Some(&PING) {
                let mut reply = datagram.data;
                reply[0] = PONG;
                let _ = socket.send(datagram.from, &reply).await;
            }
        }
    })
}

/// Sends a DHT ping numbered `n` from `client` to `to` and waits up to `within` for its answer.
pub(crate) async fn dht_ping(client: &UdpSocket, to: SocketAddr, n: u32, within: Duration) -> bool {
    let mut ping = vec![PING];
    ping.extend_from_slice(&n.to_be_bytes());
    if client.send_to(&ping, to).await.is_err() {
        return false;
    }
    let answer = async {
        let mut buf = [0u8; 64];
        loop {
            let Ok((len, from)) = client.recv_from(&mut buf).await else {
                return false;
            };
            if from == to && len == 5 && buf[0] == PONG && buf[1..5] == n.to_be_bytes() {
                return true;
            }
        }
    };
    tokio::time::timeout(within, answer).await.unwrap_or(false)
}

/// A plain UDP socket on 127.0.0.1 playing a DHT peer.
pub(crate) async fn dht_client() -> UdpSocket {
    UdpSocket::bind("127.0.0.1:0").await.unwrap()
}
