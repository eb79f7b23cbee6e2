//! A friend link through a relay on 127.0.0.1 (issue 19, stage 4): three real nodes, the
//! third relaying (every `Dht` does by default); the NATed one registers with it, the other
//! opens a session, both use the relayed path, and a QUIC link over it carries data
//! byte-identical. Nothing in the link knows the path is relayed.
#![allow(clippy::unwrap_used)] // Helpers outside #[test] functions unwrap too.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use carrier_friend::dht::id::Keypair;
use carrier_friend::dht::relay::frame::Control;
use carrier_friend::dht::socket::NodeSocket;
use carrier_friend::dht::{Key, Path, Token};
use carrier_friend::{Accepted, Link, PathError};
use common::{dht_node, node};

const PATIENCE: Duration = Duration::from_secs(20);

async fn control(socket: &NodeSocket) -> Control {
    let datagram = tokio::time::timeout(PATIENCE, socket.recv_relay_control())
        .await
        .unwrap();
    Control::decode(&datagram.data).unwrap()
}

async fn token(socket: &NodeSocket, relay: SocketAddr) -> Token {
    socket
        .send(relay, &Control::hello().encode())
        .await
        .unwrap();
    match control(socket).await {
        Control::Challenge { token } => token,
        other => panic!("expected a challenge, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quic_link_through_a_relay_carries_data_byte_identical() {
    let relay = dht_node().await;
    let relay_addr = relay.local_addr();
    let relay_key = Key::of_node(&relay.id());
    let alice = node(&[]).await;
    let bob = node(&[alice.id()]).await;

    // Bob (the NATed one) registers; Alice opens a session to him.
    let bob_keys: Keypair = bob.dht.keypair();
    let t = token(&bob.socket, relay_addr).await;
    bob.socket
        .send(
            relay_addr,
            &Control::register(&bob_keys, &relay_key, t).encode(),
        )
        .await
        .unwrap();
    assert!(matches!(
        control(&bob.socket).await,
        Control::Registered { .. }
    ));
    let t = token(&alice.socket, relay_addr).await;
    let target = Key::of_node(&bob.id());
    alice
        .socket
        .send(relay_addr, &Control::Open { target, token: t }.encode())
        .await
        .unwrap();
    let Control::Opened { session, .. } = control(&alice.socket).await else {
        panic!("no session");
    };
    assert!(matches!(
        control(&bob.socket).await,
        Control::Incoming { session: s, .. } if s == session
    ));
    let path = Path::Relayed {
        relay: relay_addr,
        session,
    };
    // A relayed path the socket does not use yet cannot be dialled.
    assert!(matches!(
        alice.links.dial(bob.id(), path).await,
        Err(carrier_friend::DialError::Path(PathError::NotInUse(_)))
    ));
    alice.socket.add_relayed_path(relay_addr, session).unwrap();
    bob.socket.add_relayed_path(relay_addr, session).unwrap();

    let at_alice = tokio::time::timeout(PATIENCE, alice.links.dial(bob.id(), path))
        .await
        .unwrap()
        .unwrap();
    let at_bob: Link = match tokio::time::timeout(PATIENCE, bob.links.accept()).await {
        Ok(Some(Accepted::Link(link))) => link,
        other => panic!("no link: {other:?}"),
    };
    assert_eq!(at_bob.peer(), alice.id());

    // 4 MiB one way, the echo of a message the other, every byte checked.
    let data: Vec<u8> = (0..4 << 20)
        .map(|i: u32| (i % 251) as u8 ^ (i >> 12) as u8)
        .collect();
    let expected = data.clone();
    let sender = at_alice.connection().clone();
    let send = tokio::spawn(async move {
        let mut stream = sender.open_uni().await.unwrap();
        stream.write_all(&data).await.unwrap();
        stream.finish().unwrap();
        let _ = stream.stopped().await;
    });
    let mut incoming = tokio::time::timeout(PATIENCE, at_bob.connection().accept_uni())
        .await
        .unwrap()
        .unwrap();
    let received = tokio::time::timeout(PATIENCE * 3, incoming.read_to_end(8 << 20))
        .await
        .unwrap()
        .unwrap();
    assert!(received == expected, "relayed bytes differ");
    send.await.unwrap();

    let (mut to_alice, mut from_alice) = tokio::time::timeout(PATIENCE, async {
        let opened = at_bob.connection().open_bi();
        opened.await
    })
    .await
    .unwrap()
    .unwrap();
    to_alice.write_all(b"back through the relay").await.unwrap();
    to_alice.finish().unwrap();
    let (mut send_back, mut recv) =
        tokio::time::timeout(PATIENCE, at_alice.connection().accept_bi())
            .await
            .unwrap()
            .unwrap();
    let got = recv.read_to_end(1024).await.unwrap();
    assert_eq!(got, b"back through the relay");
    send_back.finish().unwrap();
    let _ = from_alice.read_to_end(1024).await;

    // It all went through the relay, within its counters.
    let (counters, registrations, sessions) = relay.relay_status().unwrap();
    assert_eq!((registrations, sessions), (1, 1));
    assert!(counters.forwarded_bytes > 4 << 20, "{counters:?}");
    assert!(counters.bytes_out <= counters.bytes_in);
    assert!(alice.socket.stats().relayed_sent > 2800);
    assert!(bob.socket.stats().relayed_received > 2800);
}
