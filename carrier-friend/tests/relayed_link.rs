//! A friend link through a relay on 127.0.0.1 (issue 19, stage 4): three real nodes, the
//! third relaying (every `Dht` does by default); the NATed one registers with it, the other
//! opens a session, both use the relayed path, and a QUIC link over it carries data
//! byte-identical. Nothing in the link knows the path is relayed.
#![allow(clippy::unwrap_used)] // Helpers outside #[test] functions unwrap too.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use carrier_friend::dht::id::Keypair;
use carrier_friend::dht::relay::frame::Control;
use carrier_friend::dht::socket::{Conditioner, Fate, NodeSocket};
use carrier_friend::dht::{Dht, Key, Path, Token};
use carrier_friend::transport::MAX_MTU_BYTES;
use carrier_friend::{Accepted, Link, LinkConfig, PathError, StrangerLimit};
use common::{dht_node, nobody, node, node_with, take_everything, Node};

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

/// Registers `node` with `relay`.
async fn register(node: &Node, relay: &Dht) {
    let relay_addr = relay.local_addr();
    let t = token(&node.socket, relay_addr).await;
    let frame = Control::register(&node.dht.keypair(), &Key::of_node(&relay.id()), t);
    node.socket.send(relay_addr, &frame.encode()).await.unwrap();
    assert!(matches!(
        control(&node.socket).await,
        Control::Registered { .. }
    ));
}

/// Opens a session from `opener` to `target` (registered) through `relay`; both ends use it.
async fn open_session(opener: &Node, target: &Node, relay: &Dht) -> Path {
    let relay_addr = relay.local_addr();
    let t = token(&opener.socket, relay_addr).await;
    let open = Control::Open {
        target: Key::of_node(&target.id()),
        token: t,
    };
    opener
        .socket
        .send(relay_addr, &open.encode())
        .await
        .unwrap();
    let Control::Opened { session, .. } = control(&opener.socket).await else {
        panic!("no session");
    };
    assert!(matches!(
        control(&target.socket).await,
        Control::Incoming { session: s, .. } if s == session
    ));
    opener.socket.add_relayed_path(relay_addr, session).unwrap();
    target.socket.add_relayed_path(relay_addr, session).unwrap();
    Path::Relayed {
        relay: relay_addr,
        session,
    }
}

/// Passes everything, noting the largest datagram sent.
#[derive(Default)]
struct LargestSent(AtomicUsize);

impl Conditioner for LargestSent {
    fn outgoing(&self, _to: SocketAddr, data: &[u8]) -> Fate {
        self.0.fetch_max(data.len(), Ordering::Relaxed);
        Fate::Pass
    }

    fn incoming(&self, _from: SocketAddr, _data: &[u8]) -> Fate {
        Fate::Pass
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strangers_behind_one_relay_are_limited_per_session_not_as_one_source() {
    let relay = dht_node().await;
    // One handshake per stranger, then (practically) none.
    let mut config = LinkConfig::new(nobody());
    config.stranger_limit = StrangerLimit {
        burst: 1,
        per_second: 0.001,
    };
    let bob = node_with(config).await;
    take_everything(&bob);
    register(&bob, &relay).await;
    let carol = node(&[]).await;
    let dave = node(&[]).await;
    let via_carol = open_session(&carol, &bob, &relay).await;
    let via_dave = open_session(&dave, &bob, &relay).await;

    // Two strangers through one relay: each its own source, neither throttled by the other.
    for (from, path) in [(&carol, via_carol), (&dave, via_dave)] {
        tokio::time::timeout(PATIENCE, from.links.send_request(bob.id(), path, b"hello"))
            .await
            .unwrap()
            .unwrap();
    }
    assert_eq!(bob.links.stats().strangers_refused, 0);
    assert_eq!(bob.links.stats().requests_received, 2);
    // A second handshake from Carol's session is over her source's budget.
    let again = tokio::time::timeout(
        PATIENCE,
        carol.links.send_request(bob.id(), via_carol, b"x"),
    )
    .await
    .unwrap();
    assert!(again.is_err());
    assert_eq!(bob.links.stats().strangers_refused, 1);
    assert_ne!(via_carol, via_dave, "two sessions");
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
    let largest = [
        Arc::new(LargestSent::default()),
        Arc::new(LargestSent::default()),
    ];
    alice.socket.set_conditioner(Some(largest[0].clone()));
    bob.socket.set_conditioner(Some(largest[1].clone()));

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

    // No QUIC packet outgrew a relay data frame: path MTU discovery grew past QUIC's 1200
    // bytes and stopped at the cap, and no packet was dropped for being too large to wrap.
    for (side, link, socket, largest) in [
        ("alice", &at_alice, &alice.socket, &largest[0]),
        ("bob", &at_bob, &bob.socket, &largest[1]),
    ] {
        let mtu = link.connection().stats().path.current_mtu;
        assert!(mtu > 1200 && mtu <= MAX_MTU_BYTES, "{side}: MTU {mtu}");
        let sent = largest.0.load(Ordering::Relaxed);
        assert!(
            sent > 1200 + 9 && sent <= 1452,
            "{side}: largest frame {sent}"
        );
        assert_eq!(socket.stats().relay_dropped, 0, "{side}");
    }
}

/// Drops QUIC datagrams from anywhere but the relay, as a NAT in front of the node would
/// drop unsolicited ones.
struct NatInFront {
    relay: SocketAddr,
}

impl Conditioner for NatInFront {
    fn outgoing(&self, _to: SocketAddr, _data: &[u8]) -> Fate {
        Fate::Pass
    }

    fn incoming(&self, from: SocketAddr, data: &[u8]) -> Fate {
        let quic = data.first().is_some_and(|b| b & 0x40 != 0);
        if quic && from != self.relay {
            Fate::Drop
        } else {
            Fate::Pass
        }
    }
}

/// A node that is not a server, joined through `relay` (and so registered with it).
async fn nated_node(relay: &Dht, friends: &[carrier_friend::dht::id::CarrierId]) -> Node {
    use carrier_friend::dht::{BootstrapNode, DhtConfig};
    let seed: BootstrapNode = format!("{}@{}", relay.id(), relay.local_addr())
        .parse()
        .unwrap();
    let mut config = DhtConfig::new("127.0.0.1:0".parse().unwrap()).with_bootstrap([seed]);
    config.node.detect_reachability = false;
    config.node.max_per_subnet = None;
    let dht = Dht::bind(config).await.unwrap();
    dht.bootstrap().await.unwrap();
    let allow = carrier_friend::AllowList::default();
    for id in friends {
        allow.insert(*id);
    }
    let socket = dht.socket().clone();
    let links =
        carrier_friend::LinkEndpoint::new(socket.clone(), &dht.keypair(), LinkConfig::new(allow))
            .unwrap();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while dht.relay_hints().is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "never registered");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Node { dht, socket, links }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dial_tries_every_candidate_at_once_as_one_connection_and_keeps_the_path_that_answered() {
    let relay = dht_node().await;
    let alice = node(&[]).await;
    let bob = nated_node(&relay, &[alice.id()]).await;
    bob.socket.set_conditioner(Some(Arc::new(NatInFront {
        relay: relay.local_addr(),
    })));
    // Alice opens a session to Bob through his relay; Bob's node takes it up by itself.
    let relayed = tokio::time::timeout(
        PATIENCE,
        alice.dht.open_relay_session(relay.local_addr(), &bob.id()),
    )
    .await
    .unwrap()
    .unwrap();
    assert!(relayed.is_relayed());
    // A stale address nobody answers at, Bob's own address (behind his "NAT"), the relay.
    let stale = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let candidates = [
        Path::Direct(stale.local_addr().unwrap()),
        bob.path(),
        relayed,
    ];
    let link = tokio::time::timeout(PATIENCE, alice.links.dial_any(bob.id(), &candidates))
        .await
        .unwrap()
        .unwrap();
    let at_bob: Link = match tokio::time::timeout(PATIENCE, bob.links.accept()).await {
        Ok(Some(Accepted::Link(link))) => link,
        other => panic!("no link: {other:?}"),
    };
    assert_eq!(at_bob.peer(), alice.id());
    // One connection, on the path that answered.
    let mapped = link.connection().remote_address();
    assert_eq!(alice.links.paths().path(mapped), Some(relayed));
    assert_eq!(alice.links.paths().outbound_all(mapped), vec![relayed]);
    assert_eq!(bob.links.stats().friends_accepted, 1);
    // The first packets went to every candidate: the stale address got them too.
    let mut buf = [0u8; 2048];
    let (len, _) = tokio::time::timeout(PATIENCE, stale.recv_from(&mut buf))
        .await
        .expect("the stale candidate got nothing")
        .unwrap();
    assert!(len >= 1200 && buf[0] & 0x40 != 0, "a QUIC Initial");
    // And the link works through the relay.
    let mut send = link.connection().open_uni().await.unwrap();
    send.write_all(b"through whichever path answered")
        .await
        .unwrap();
    send.finish().unwrap();
    let mut recv = tokio::time::timeout(PATIENCE, at_bob.connection().accept_uni())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        recv.read_to_end(1024).await.unwrap(),
        b"through whichever path answered"
    );
}
