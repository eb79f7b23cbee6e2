//! Failover on loopback (issue 19): a transfer runs through relay A to a node behind a
//! "NAT" (it takes QUIC only from its relays); A's node is shut down mid-transfer; the same
//! QUIC connection continues through relay B, found in the peer's record, and the transfer
//! completes byte-identical. No second link, no reset.
#![allow(clippy::unwrap_used)] // Helpers outside #[test] functions unwrap too.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use carrier_friend::dht::id::CarrierId;
use carrier_friend::dht::socket::{Conditioner, Fate};
use carrier_friend::dht::{BootstrapNode, Dht, DhtConfig, Path, PeerRecord};
use carrier_friend::{keep_relayed_link, Accepted, AllowList, Link, LinkConfig, LinkEndpoint};

const PATIENCE: Duration = Duration::from_secs(20);

/// Drops QUIC datagrams from anywhere but the relays, as a NAT would drop unsolicited ones.
struct NatInFront {
    relays: Vec<SocketAddr>,
}

impl Conditioner for NatInFront {
    fn outgoing(&self, _to: SocketAddr, _data: &[u8]) -> Fate {
        Fate::Pass
    }

    fn incoming(&self, from: SocketAddr, data: &[u8]) -> Fate {
        let quic = data.first().is_some_and(|b| b & 0x40 != 0);
        if quic && !self.relays.contains(&from) {
            Fate::Drop
        } else {
            Fate::Pass
        }
    }
}

fn seed(node: &Dht) -> BootstrapNode {
    format!("{}@{}", node.id(), node.local_addr())
        .parse()
        .unwrap()
}

/// A relaying server at `ip`, joined through `through`.
async fn server(ip: [u8; 4], through: Option<&Dht>) -> Dht {
    let mut config = DhtConfig::local(SocketAddr::from((ip, 0)));
    if let Some(first) = through {
        config = config.with_bootstrap([seed(first)]);
    }
    let dht = Dht::bind(config).await.unwrap();
    if through.is_some() {
        dht.bootstrap().await.unwrap();
    }
    dht
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transfer_survives_its_relays_death_on_the_same_connection() {
    // Two relays in two /24s, and Alice (a server) who joins through them.
    let relay_a = server([127, 0, 1, 1], None).await;
    let relay_b = server([127, 0, 2, 1], Some(&relay_a)).await;
    let alice_dht = server([127, 0, 0, 1], Some(&relay_a)).await;
    let alice = LinkEndpoint::new(
        alice_dht.socket().clone(),
        &alice_dht.keypair(),
        LinkConfig::new(AllowList::default()),
    )
    .unwrap();

    // Bob is not a server: he registers with both relays and announces them.
    let mut config =
        DhtConfig::new("127.0.0.1:0".parse().unwrap()).with_bootstrap([seed(&relay_a)]);
    config.node.detect_reachability = false;
    config.node.max_per_subnet = None;
    let bob_dht = Dht::bind(config).await.unwrap();
    bob_dht.bootstrap().await.unwrap();
    let allow = AllowList::default();
    allow.insert(alice_dht.id());
    let bob = LinkEndpoint::new(
        bob_dht.socket().clone(),
        &bob_dht.keypair(),
        LinkConfig::new(allow),
    )
    .unwrap();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while bob_dht.relay_hints().len() < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not registered with both"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    bob_dht.socket().set_conditioner(Some(Arc::new(NatInFront {
        relays: vec![relay_a.local_addr(), relay_b.local_addr()],
    })));
    let record = PeerRecord::sign(
        &bob_dht.keypair(),
        unix_ms(),
        unix_ms() / 1000 + 3600,
        Vec::new(),
        bob_dht.relay_hints(),
    )
    .unwrap();
    assert!(bob_dht.announce(record).await.unwrap() > 0);

    // Alice links to Bob through relay A.
    let bob_id: CarrierId = bob_dht.id();
    let via_a = alice_dht
        .open_relay_session(relay_a.local_addr(), &bob_id)
        .await
        .unwrap();
    let link = tokio::time::timeout(PATIENCE, alice.dial(bob_id, via_a))
        .await
        .unwrap()
        .unwrap();
    let at_bob: Link = match tokio::time::timeout(PATIENCE, bob.accept()).await {
        Ok(Some(Accepted::Link(link))) => link,
        other => panic!("no link: {other:?}"),
    };
    tokio::spawn(keep_relayed_link(
        alice_dht.clone(),
        alice.clone(),
        link.clone(),
    ));

    // 24 MiB, every byte checked; relay A dies once a quarter has arrived.
    const SIZE: usize = 24 << 20;
    let data: Vec<u8> = (0..SIZE as u32)
        .map(|i| (i % 251) as u8 ^ (i >> 12) as u8)
        .collect();
    let expected = data.clone();
    let sender = link.connection().clone();
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
    let mut received = Vec::with_capacity(SIZE);
    let mut buf = vec![0u8; 64 * 1024];
    let mut relay_a = Some(relay_a);
    loop {
        let read = tokio::time::timeout(PATIENCE, incoming.read(&mut buf))
            .await
            .expect("the transfer stalled")
            .unwrap();
        let Some(n) = read else { break };
        received.extend_from_slice(&buf[..n]);
        if received.len() >= SIZE / 4 {
            if let Some(dead) = relay_a.take() {
                dead.shutdown().await.unwrap();
            }
        }
    }
    assert!(relay_a.is_none(), "relay A never died");
    assert!(received == expected, "bytes differ");
    send.await.unwrap();

    // The same connection, now on relay B; one link at Bob.
    let mapped = link.connection().remote_address();
    assert!(matches!(
        alice.paths().path(mapped),
        Some(Path::Relayed { relay, .. }) if relay == relay_b.local_addr()
    ));
    assert!(link.connection().close_reason().is_none());
    assert!(at_bob.connection().close_reason().is_none());
    assert_eq!(bob.stats().friends_accepted, 1);
}
