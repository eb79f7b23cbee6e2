//! `quic.shared_MBps`: the `quinn.raw_MBps` transfer, but each end is a Carrier node: quinn on
//! the node's shared [`NodeSocket`] (the DHT's socket) through carrier-friend's
//! [`LinkEndpoint`], with Carrier's transport settings, path table and Carrier-ID TLS.
//!
//! The ratio to `quinn.raw_MBps` is the price of sharing the socket; the target is at least
//! 0.95 (shared TARGETS).

use super::{transfer, Scale};
use carrier_friend::dht::id::Keypair;
use carrier_friend::dht::socket::NodeSocket;
use carrier_friend::dht::Path;
use carrier_friend::{Accepted, AllowList, LinkConfig, LinkEndpoint};
use std::net::{Ipv4Addr, SocketAddr};

/// Sends `scale.transfer_bytes` over one unidirectional stream of a fresh friend link between
/// two nodes; returns MB/s.
pub(crate) fn measure(scale: &Scale) -> Result<f64, String> {
    let total_bytes = scale.transfer_bytes;
    transfer::on_runtime(async move {
        let (alice, bob) = (Keypair::generate(), Keypair::generate());
        let bob_friends = AllowList::default();
        bob_friends.insert(alice.id());
        let loopback = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
        let node = |keypair: &Keypair, friends: AllowList| {
            let socket = NodeSocket::bind(loopback)
                .map_err(|e| format!("cannot bind a node socket: {e}"))?;
            LinkEndpoint::new(socket, keypair, LinkConfig::new(friends))
                .map_err(|e| format!("cannot open a link endpoint: {e}"))
        };
        let bob_node = node(&bob, bob_friends)?;
        let alice_node = node(&alice, AllowList::default())?;
        let bob_address = bob_node
            .local_addr()
            .map_err(|e| format!("cannot read Bob's address: {e}"))?;

        let at_alice = alice_node
            .dial(bob.id(), Path::Direct(bob_address))
            .await
            .map_err(|e| format!("the dial failed: {e}"))?;
        let at_bob = match bob_node.accept().await {
            Some(Accepted::Link(link)) => link,
            Some(Accepted::Request(_)) => return Err("a request instead of a link".into()),
            None => return Err("Bob's endpoint closed".into()),
        };

        let mbps = transfer::timed_quic_stream(
            total_bytes,
            at_alice.connection().clone(),
            at_bob.connection().clone(),
        )
        .await;
        at_alice.close(carrier_friend::close::DONE, b"done");
        alice_node.shutdown().await;
        bob_node.shutdown().await;
        mbps
    })
}
