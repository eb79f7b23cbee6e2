//! Friend links (`carrier/1`) between real nodes on 127.0.0.1, on the sockets their DHT uses.
#![allow(clippy::unwrap_used)] // Helpers outside #[test] functions unwrap too.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use carrier_friend::dht::socket::{Conditioner, Fate, QUIC_CLASS_BIT};
use carrier_friend::dht::Path;
use carrier_friend::quinn::ConnectionError;
use carrier_friend::{close, Accepted, DialError, Link, LinkEndpoint, PathTable};
use common::{dht_client, dht_ping, node, Node};
use tokio::task::JoinHandle;

/// Bounds every wait, so a broken link fails the test instead of hanging it.
const PATIENCE: Duration = Duration::from_secs(20);

async fn accept_link(node: &LinkEndpoint) -> Link {
    match tokio::time::timeout(PATIENCE, node.accept()).await {
        Ok(Some(Accepted::Link(link))) => link,
        other => panic!("no link: {other:?}"),
    }
}

/// Alice dials Bob (who admits her); both ends of the link.
async fn linked() -> (Node, Node, Link, Link) {
    let alice = node(&[]).await;
    let bob = node(&[alice.id()]).await;
    let at_alice = alice.links.dial(bob.id(), bob.path()).await.unwrap();
    let at_bob = accept_link(&bob.links).await;
    (alice, bob, at_alice, at_bob)
}

/// Sends up to `bytes` from `from` to `to` on one stream, stopping early once `stop` is set;
/// the receiver checks every byte. The sender gives how many bytes it sent, the receiver how
/// many it got.
fn transfer_until(
    from: &Link,
    to: &Link,
    bytes: usize,
    stop: Arc<AtomicBool>,
) -> (JoinHandle<usize>, JoinHandle<usize>) {
    let sender = from.connection().clone();
    let receiver = to.connection().clone();
    let send = tokio::spawn(async move {
        let mut stream = sender.open_uni().await.unwrap();
        let chunk: Vec<u8> = (0..CHUNK).map(|i| (i % 251) as u8).collect();
        let mut sent = 0;
        while sent < bytes && !stop.load(Ordering::Relaxed) {
            let n = (bytes - sent).min(CHUNK);
            stream.write_all(&chunk[..n]).await.unwrap();
            sent += n;
        }
        stream.finish().unwrap();
        // Keep the connection until the receiver is done with it.
        let _ = stream.stopped().await;
        sent
    });
    let receive = tokio::spawn(async move {
        let mut stream = receiver.accept_uni().await.unwrap();
        let mut got = 0usize;
        let mut buf = vec![0u8; CHUNK];
        while let Some(n) = stream.read(&mut buf).await.unwrap() {
            for (i, b) in buf[..n].iter().enumerate() {
                assert_eq!(*b, ((got + i) % CHUNK % 251) as u8, "byte {}", got + i);
            }
            got += n;
        }
        got
    });
    (send, receive)
}

/// The size of each write, and the period of the test pattern.
const CHUNK: usize = 64 * 1024;

/// Sends `bytes` from `from` to `to` on one stream.
fn transfer(from: &Link, to: &Link, bytes: usize) -> (JoinHandle<usize>, JoinHandle<usize>) {
    transfer_until(from, to, bytes, Arc::new(AtomicBool::new(false)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_carries_a_stream_while_both_nodes_keep_serving_dht() {
    let (alice, bob, at_alice, at_bob) = linked().await;
    assert_eq!(at_alice.peer(), bob.id());
    assert_eq!(at_bob.peer(), alice.id());
    // Each side's view of the other is a pinned mapped address, never a real one.
    for (node, link) in [(&alice, &at_alice), (&bob, &at_bob)] {
        let mapped = link.connection().remote_address();
        assert!(PathTable::is_mapped(mapped));
        assert!(node.links.paths().is_pinned(mapped));
    }

    let bytes = 16 << 20;
    let (send, receive) = transfer(&at_alice, &at_bob, bytes);
    let pinger = dht_client().await;
    let mut pings = 0;
    while !receive.is_finished() {
        for to in [&alice, &bob] {
            assert!(
                dht_ping(&pinger, to, Duration::from_secs(2)).await,
                "DHT ping {pings} to {} unanswered during the transfer",
                to.addr()
            );
            pings += 1;
        }
    }
    assert_eq!(receive.await.unwrap(), bytes);
    assert_eq!(send.await.unwrap(), bytes);
    assert!(
        pings >= 2,
        "the transfer was too quick to overlap DHT traffic"
    );
    assert!(dht_ping(&pinger, &bob, PATIENCE).await);
}

/// Records the first byte of every datagram a socket sends, by destination.
#[derive(Default)]
struct FirstBytes(Mutex<Vec<(SocketAddr, u8)>>);

impl Conditioner for FirstBytes {
    fn outgoing(&self, to: SocketAddr, data: &[u8]) -> Fate {
        self.0.lock().unwrap().push((to, data[0]));
        Fate::Pass
    }
    fn incoming(&self, _from: SocketAddr, _data: &[u8]) -> Fate {
        Fate::Pass
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_quic_packet_has_the_quic_bit_and_dht_datagrams_never_reach_quinn() {
    let alice = node(&[]).await;
    let bob = node(&[alice.id()]).await;
    let sent_by_alice = Arc::new(FirstBytes::default());
    let sent_by_bob = Arc::new(FirstBytes::default());
    alice.socket.set_conditioner(Some(sent_by_alice.clone()));
    bob.socket.set_conditioner(Some(sent_by_bob.clone()));

    let at_alice = alice.links.dial(bob.id(), bob.path()).await.unwrap();
    let at_bob = accept_link(&bob.links).await;
    let (send, receive) = transfer(&at_alice, &at_bob, 2 << 20);
    // Carrier-class garbage (which the DHT drops) and real DHT pings, to both nodes, during
    // the transfer.
    let pinger = dht_client().await;
    for _ in 0..50u32 {
        for to in [&alice, &bob] {
            pinger
                .socket()
                .send(to.addr(), &[0x3f, 1, 2, 3])
                .await
                .unwrap();
            assert!(dht_ping(&pinger, to, PATIENCE).await);
        }
    }
    assert_eq!(receive.await.unwrap(), 2 << 20);
    send.await.unwrap();

    for (sender, receiver, log) in [(&alice, &bob, &sent_by_alice), (&bob, &alice, &sent_by_bob)] {
        let log = log.0.lock().unwrap().clone();
        let quic: Vec<u8> = log
            .iter()
            .filter(|(to, _)| *to == receiver.addr())
            .map(|(_, first)| *first)
            .collect();
        assert!(quic.len() > 100, "{} QUIC packets", quic.len());
        assert!(
            quic.iter().all(|first| first & QUIC_CLASS_BIT != 0),
            "a QUIC packet without bit 0x40"
        );
        let dht_replies = log.iter().filter(|(to, _)| *to == pinger.local_addr());
        assert!(dht_replies.clone().count() >= 50);
        assert!(dht_replies
            .into_iter()
            .all(|(_, first)| first & QUIC_CLASS_BIT == 0));
        assert_eq!(sender.links.stats().unmarked_dropped, 0);
        // Each datagram goes to exactly one side: every Carrier-class datagram the socket took
        // in went to the DHT core (which counts each, garbage included), none to quinn.
        let mut settled = false;
        for _ in 0..100 {
            if sender.socket.stats().carrier_received == sender.dht.counters().received {
                settled = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(
            settled,
            "{:?} vs {:?}",
            sender.socket.stats(),
            sender.dht.counters()
        );
        // 50 garbage datagrams and at least 50 pings reached each node's DHT.
        assert!(sender.dht.counters().dropped_malformed >= 50);
        assert!(sender.dht.counters().requests_answered >= 50);
    }
}

#[tokio::test]
async fn a_dial_expecting_another_id_is_refused() {
    let bob = node(&[]).await;
    let carol = node(&[]).await;
    let alice = node(&[]).await;
    // Bob answers at his address, but Alice expects Carol there.
    let error = alice.links.dial(carol.id(), bob.path()).await.unwrap_err();
    assert!(matches!(error, DialError::Handshake(_)), "{error:?}");
    assert_eq!(bob.links.stats().friends_accepted, 0);
    // And with the right ID, from the same endpoint, the dial works.
    let friendly_bob = node(&[alice.id()]).await;
    alice
        .links
        .dial(friendly_bob.id(), friendly_bob.path())
        .await
        .unwrap();
}

#[tokio::test]
async fn a_peer_the_gate_refuses_is_closed_with_not_a_friend_and_no_stream() {
    let bob = node(&[]).await;
    let stranger = node(&[]).await;
    // The client's handshake completes before the server's gate runs.
    let link = stranger.links.dial(bob.id(), bob.path()).await.unwrap();
    let connection = link.connection().clone();
    let opened = tokio::spawn(async move {
        let (mut send, _recv) = connection.open_bi().await?;
        send.write_all(b"let me in").await?;
        Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
    });
    match tokio::time::timeout(PATIENCE, link.connection().closed()).await {
        Ok(ConnectionError::ApplicationClosed(closed)) => {
            assert_eq!(closed.error_code, close::NOT_A_FRIEND)
        }
        other => panic!("expected NOT_A_FRIEND, got {other:?}"),
    }
    let _ = opened.await;
    assert!(
        tokio::time::timeout(Duration::from_millis(300), bob.links.accept())
            .await
            .is_err(),
        "the refused peer's link or stream reached the layer above"
    );
    let stats = bob.links.stats();
    assert_eq!((stats.friends_refused, stats.friends_accepted), (1, 0));
}

/// A stand-in relay on 127.0.0.1: what `a` sends to `towards_b` reaches `b` from `towards_a`,
/// and what `b` sends to `towards_a` reaches `a` from `towards_b`.
struct Relay {
    towards_b: SocketAddr,
    towards_a: SocketAddr,
    forwarded: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn relay(a: SocketAddr, b: SocketAddr) -> Relay {
    let side_a = Arc::new(tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap());
    let side_b = Arc::new(tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap());
    let forwarded = Arc::new(AtomicU64::new(0));
    let (towards_b, towards_a) = (side_a.local_addr().unwrap(), side_b.local_addr().unwrap());
    let count = forwarded.clone();
    let task = tokio::spawn(async move {
        let (mut from_a, mut from_b) = (vec![0u8; 65536], vec![0u8; 65536]);
        loop {
            tokio::select! {
                Ok((n, from)) = side_a.recv_from(&mut from_a) => if from == a {
                    let _ = side_b.send_to(&from_a[..n], b).await;
                    count.fetch_add(1, Ordering::Relaxed);
                },
                Ok((n, from)) = side_b.recv_from(&mut from_b) => if from == b {
                    let _ = side_a.send_to(&from_b[..n], a).await;
                    count.fetch_add(1, Ordering::Relaxed);
                },
            }
        }
    });
    Relay {
        towards_b,
        towards_a,
        forwarded,
        task,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_survives_its_peer_moving_relay_direct_relay() {
    let (alice, bob, at_alice, at_bob) = linked().await;
    let bob_seen_by_alice = at_alice.connection().remote_address();
    let alice_seen_by_bob = at_bob.connection().remote_address();
    let relay = relay(alice.addr(), bob.addr()).await;
    let via_relay = || {
        alice
            .links
            .paths()
            .set_path(bob_seen_by_alice, Path::Direct(relay.towards_b))
            .unwrap();
        bob.links
            .paths()
            .set_path(alice_seen_by_bob, Path::Direct(relay.towards_a))
            .unwrap();
    };
    let direct = || {
        alice
            .links
            .paths()
            .set_path(bob_seen_by_alice, bob.path())
            .unwrap();
        bob.links
            .paths()
            .set_path(alice_seen_by_bob, alice.path())
            .unwrap();
    };

    via_relay();
    let stop = Arc::new(AtomicBool::new(false));
    let (send, receive) = transfer_until(&at_alice, &at_bob, usize::MAX, stop.clone());
    let forwarded = |at_least: u64| {
        let relay = &relay;
        async move {
            tokio::time::timeout(PATIENCE, async {
                while relay.forwarded.load(Ordering::Relaxed) < at_least {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            })
            .await
            .expect("the relay carried the link");
            relay.forwarded.load(Ordering::Relaxed)
        }
    };
    let before = forwarded(200).await;
    direct();
    // Long enough for whatever the relay had queued to drain.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let during_direct = relay.forwarded.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(100)).await;
    // Only packets already in flight may still cross the relay once both sides went direct.
    assert!(
        relay.forwarded.load(Ordering::Relaxed) - during_direct < 5,
        "traffic kept using the relay"
    );
    via_relay();
    forwarded(during_direct.max(before) + 200).await;
    stop.store(true, Ordering::Relaxed);

    let got = tokio::time::timeout(PATIENCE, receive)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        got,
        send.await.unwrap(),
        "every byte sent arrived, in order"
    );
    // quinn never saw the move: same addresses, no migration.
    assert_eq!(at_alice.connection().remote_address(), bob_seen_by_alice);
    assert_eq!(at_bob.connection().remote_address(), alice_seen_by_bob);
    assert_eq!(alice.links.stats().unmapped_dropped, 0);
}

#[tokio::test]
async fn datagrams_to_a_peer_with_no_path_are_dropped_never_sent() {
    let (alice, _bob, at_alice, _at_bob) = linked().await;
    let mapped = at_alice.connection().remote_address();
    assert!(alice.links.paths().remove(mapped));
    // Something for quinn to send.
    at_alice
        .connection()
        .send_datagram(vec![0u8; 10].into())
        .unwrap();
    tokio::time::timeout(PATIENCE, async {
        while alice.links.stats().unmapped_dropped == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_holds_thousands_of_concurrent_streams_once_the_receiver_raises_its_limit() {
    const STREAMS: usize = 3000;
    let (_alice, _bob, at_alice, at_bob) = linked().await;
    // A link starts with a small limit (idle links stay cheap); a layer that needs thousands
    // at once raises it on its link.
    assert!(STREAMS > carrier_friend::transport::MAX_CONCURRENT_BIDI_STREAMS as usize);
    at_bob
        .connection()
        .set_max_concurrent_bi_streams(carrier_friend::quinn::VarInt::from_u32(4096));
    let opener = at_alice.connection().clone();
    // Every stream stays open (not finished) until all of them have been accepted.
    let open = tokio::spawn(async move {
        let mut streams = Vec::with_capacity(STREAMS);
        for _ in 0..STREAMS {
            let (mut send, _recv) = opener.open_bi().await.unwrap();
            send.write_all(b"x").await.unwrap();
            streams.push(send);
        }
        streams
    });
    let mut accepted = Vec::with_capacity(STREAMS);
    for _ in 0..STREAMS {
        let (_send, recv) = tokio::time::timeout(PATIENCE, at_bob.connection().accept_bi())
            .await
            .unwrap()
            .unwrap();
        accepted.push(recv);
    }
    let open = open.await.unwrap();
    assert_eq!((open.len(), accepted.len()), (STREAMS, STREAMS));
}

#[tokio::test]
async fn a_dual_stack_node_links_with_an_ipv4_node() {
    let Ok(socket) = carrier_friend::dht::socket::NodeSocket::bind("[::]:0".parse().unwrap())
    else {
        eprintln!("skipped: this host cannot bind an IPv6 socket");
        return;
    };
    let alice = node(&[]).await;
    let bob_key = carrier_friend::dht::id::Keypair::generate();
    let friends = carrier_friend::AllowList::default();
    friends.insert(alice.id());
    let bob =
        LinkEndpoint::new(socket, &bob_key, carrier_friend::LinkConfig::new(friends)).unwrap();
    let port = bob.local_addr().unwrap().port();
    let to_bob = Path::Direct(SocketAddr::from(([127, 0, 0, 1], port)));
    let at_alice = alice.links.dial(bob_key.id(), to_bob).await.unwrap();
    let at_bob = accept_link(&bob).await;
    let (send, receive) = transfer(&at_alice, &at_bob, 1 << 20);
    assert_eq!(receive.await.unwrap(), 1 << 20);
    send.await.unwrap();
    // Bob's socket reports Alice at an IPv4-mapped address; his table shows her as IPv4.
    let alice_at_bob = bob.paths().path(at_bob.connection().remote_address());
    assert_eq!(alice_at_bob, Some(alice.path()));
}
