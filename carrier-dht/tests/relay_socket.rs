//! Relaying on real sockets (loopback): a relay's socket forwards for a registered node and a
//! peer that opened a session, outside any DHT lock; each end's socket unwraps the frames and
//! hands the QUIC payload up from the session's stand-in address, with its `Path`.

// Helpers of these tests unwrap as the tests do: a failure is the test failing.
#![allow(clippy::unwrap_used)]

use std::io::IoSliceMut;
use std::net::SocketAddr;
use std::time::Duration;

use carrier_dht::id::Keypair;
use carrier_dht::relay::frame::{Control, MAX_RELAYED_PAYLOAD_BYTES};
use carrier_dht::socket::NodeSocket;
use carrier_dht::{Key, Path, RelayLimits, RelayTable, SessionId, Token};

const WAIT: Duration = Duration::from_secs(10);

/// Keeps a socket read, as a `Dht` does: relay frames are handled by whoever reads.
fn keep_reading(socket: &NodeSocket) {
    let socket = socket.clone();
    tokio::spawn(async move { while socket.recv_carrier().await.is_ok() {} });
}

async fn quic_recv(sock: &NodeSocket) -> Vec<(SocketAddr, Vec<u8>)> {
    let mut storage = vec![vec![0u8; 65536]; 4];
    let mut meta = [quinn_udp::RecvMeta::default(); 4];
    let n = {
        let mut bufs: Vec<IoSliceMut<'_>> =
            storage.iter_mut().map(|b| IoSliceMut::new(b)).collect();
        std::future::poll_fn(|cx| sock.poll_recv_quic(cx, &mut bufs, &mut meta))
            .await
            .unwrap()
    };
    let mut out = Vec::new();
    for i in 0..n {
        let data = &storage[i][..meta[i].len];
        for seg in data.chunks(meta[i].stride.max(1)) {
            out.push((meta[i].addr, seg.to_vec()));
        }
    }
    out
}

async fn quic_recv_n(sock: &NodeSocket, n: usize) -> Vec<(SocketAddr, Vec<u8>)> {
    let mut out = Vec::new();
    while out.len() < n {
        out.extend(tokio::time::timeout(WAIT, quic_recv(sock)).await.unwrap());
    }
    out
}

async fn control(socket: &NodeSocket) -> Control {
    let datagram = tokio::time::timeout(WAIT, socket.recv_relay_control())
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

fn bind() -> NodeSocket {
    let socket = NodeSocket::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    keep_reading(&socket);
    socket
}

#[tokio::test]
async fn two_nodes_exchange_quic_packets_byte_identical_through_a_relay_socket() {
    let relay_keys = Keypair::from_seed(&[1; 32]);
    let relay_key = Key::of_node(&relay_keys.id());
    let relay = bind();
    relay.set_relay(Some(RelayTable::new(
        relay_key,
        [5; 32],
        RelayLimits::default(),
    )));
    let relay_addr = relay.local_addr().unwrap();
    let nated = bind();
    let peer = bind();
    let nated_keys = Keypair::from_seed(&[2; 32]);

    // The NATed node registers.
    let t = token(&nated, relay_addr).await;
    nated
        .send(
            relay_addr,
            &Control::register(&nated_keys, &relay_key, t).encode(),
        )
        .await
        .unwrap();
    assert!(matches!(control(&nated).await, Control::Registered { .. }));
    assert_eq!(relay.with_relay(|r| r.registrations()), Some(1));

    // The peer opens a session; the NATed node hears of it.
    let t = token(&peer, relay_addr).await;
    let target = Key::of_node(&nated_keys.id());
    peer.send(relay_addr, &Control::Open { target, token: t }.encode())
        .await
        .unwrap();
    let Control::Opened { session, .. } = control(&peer).await else {
        panic!("no session");
    };
    let Control::Incoming {
        session: incoming,
        peer: seen,
    } = control(&nated).await
    else {
        panic!("no notice");
    };
    assert_eq!(incoming, session);
    assert_eq!(seen, peer.local_addr().unwrap());

    // Both use the relayed path; quinn would see only the stand-ins.
    let at_peer = peer.add_relayed_path(relay_addr, session).unwrap();
    let at_nated = nated.add_relayed_path(relay_addr, session).unwrap();
    let path = Path::Relayed {
        relay: relay_addr,
        session,
    };
    assert_eq!(peer.path_of(at_peer), path);
    assert_eq!(nated.addr_of(path), Some(at_nated));
    assert!(path.is_relayed());

    // QUIC-class packets both ways, the largest that fits included, arrive byte-identical.
    let small: Vec<u8> = (0..200u8).map(|i| 0x40 | (i & 0x3f)).collect();
    let mut large = vec![0x45u8; MAX_RELAYED_PAYLOAD_BYTES];
    large[1..]
        .iter_mut()
        .enumerate()
        .for_each(|(i, b)| *b = i as u8);
    peer.send(at_peer, &small).await.unwrap();
    let got = quic_recv_n(&nated, 1).await;
    assert_eq!(got, vec![(at_nated, small.clone())]);
    nated.try_send(at_nated, &large).unwrap();
    let got = quic_recv_n(&peer, 1).await;
    assert_eq!(got, vec![(at_peer, large.clone())]);

    // A GSO batch to a relayed path is split per segment, each in its own frame.
    let batch: Vec<u8> = (0..3 * 1000).map(|i| 0x40 | (i % 50) as u8).collect();
    peer.try_send_transmit(&quinn_udp::Transmit {
        destination: at_peer,
        ecn: None,
        contents: &batch,
        segment_size: Some(1000),
        src_ip: None,
    })
    .unwrap();
    let got = quic_recv_n(&nated, 3).await;
    let segments: Vec<Vec<u8>> = batch.chunks(1000).map(<[u8]>::to_vec).collect();
    assert_eq!(
        got,
        segments
            .into_iter()
            .map(|s| (at_nated, s))
            .collect::<Vec<_>>()
    );

    // A batch whose last segment is shorter (as quinn's often are) goes out as one batch of
    // frames, which the relay forwards as a batch: every segment arrives whole and in order.
    let mut batch: Vec<u8> = (0..9 * 1000).map(|i| 0x40 | (i / 1000) as u8).collect();
    batch.extend(std::iter::repeat_n(0x7f, 300));
    nated
        .try_send_transmit(&quinn_udp::Transmit {
            destination: at_nated,
            ecn: None,
            contents: &batch,
            segment_size: Some(1000),
            src_ip: None,
        })
        .unwrap();
    let got = quic_recv_n(&peer, 10).await;
    let segments: Vec<(SocketAddr, Vec<u8>)> =
        batch.chunks(1000).map(|s| (at_peer, s.to_vec())).collect();
    assert_eq!(got, segments);

    let counters = relay.relay_counters().unwrap();
    assert_eq!(counters.forwarded_frames, 15);
    assert!(counters.bytes_out <= counters.bytes_in);
    // Fifteen data frames, and five control replies: two challenges, registered, opened,
    // incoming.
    assert_eq!(relay.stats().relay_sent, 15 + 5);
    assert_eq!(peer.stats().relayed_sent, 4);
    assert_eq!(nated.stats().relayed_sent, 1 + 10);
    assert_eq!(nated.stats().relayed_received, 4);
    assert_eq!(peer.stats().relayed_received, 1 + 10);
    // Nothing of it reached the DHT side's queue.
    assert_eq!(relay.stats().carrier_received, 0);
}

#[tokio::test]
async fn a_socket_without_a_relay_table_forwards_nothing_and_strangers_frames_are_dropped() {
    let not_a_relay = bind();
    let to = not_a_relay.local_addr().unwrap();
    let stranger = bind();
    stranger.send(to, &Control::hello().encode()).await.unwrap();
    let frame = carrier_dht::relay::frame::encode_data(SessionId(7), &[0x41, 1]).unwrap();
    stranger.send(to, &frame).await.unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    while not_a_relay.stats().relay_dropped < 2 {
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(stranger.try_recv_relay_control().is_none());
    assert_eq!(not_a_relay.stats().quic_received, 0);
    // A relayed path's frame from another address than its relay is not taken either.
    let relay_addr: SocketAddr = "127.0.0.1:9".parse().unwrap();
    not_a_relay
        .add_relayed_path(relay_addr, SessionId(7))
        .unwrap();
    stranger.send(to, &frame).await.unwrap();
    while not_a_relay.stats().relay_dropped < 3 {
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(not_a_relay.stats().relayed_received, 0);
}

#[tokio::test]
async fn a_dht_relays_by_default_and_reports_it() {
    use carrier_dht::{Dht, DhtConfig};
    let dht = Dht::bind(DhtConfig::local("127.0.0.1:0".parse().unwrap()))
        .await
        .unwrap();
    let relay_addr = dht.local_addr();
    let nated = bind();
    let keys = Keypair::from_seed(&[2; 32]);
    let t = token(&nated, relay_addr).await;
    let register = Control::register(&keys, &Key::of_node(&dht.id()), t);
    nated.send(relay_addr, &register.encode()).await.unwrap();
    assert!(matches!(control(&nated).await, Control::Registered { .. }));
    let (counters, registrations, sessions) = dht.relay_status().unwrap();
    assert_eq!((registrations, sessions), (1, 0));
    assert_eq!(counters.registered, 1);
    // The DHT core never saw the relay frames.
    assert_eq!(dht.counters().dropped(), 0);

    let mut config = DhtConfig::local("127.0.0.1:0".parse().unwrap());
    config.relay = None;
    let quiet = Dht::bind(config).await.unwrap();
    assert!(quiet.relay_status().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_is_not_a_server_registers_with_relays_in_distinct_subnets() {
    use carrier_dht::{BootstrapNode, Dht, DhtConfig};
    // Three servers in three /24s of the loopback network, each relaying.
    let mut servers = Vec::new();
    for net in 1..=3u8 {
        let mut config = DhtConfig::local(SocketAddr::from(([127, 0, net, 1], 0)));
        if let Some(first) = servers.first() {
            let first: &Dht = first;
            let seed: BootstrapNode = format!("{}@{}", first.id(), first.local_addr())
                .parse()
                .unwrap();
            config = config.with_bootstrap([seed]);
        }
        let server = Dht::bind(config).await.unwrap();
        if !servers.is_empty() {
            server.bootstrap().await.unwrap();
        }
        servers.push(server);
    }
    // A node that is not a server (and never becomes one here).
    let seed: BootstrapNode = format!("{}@{}", servers[0].id(), servers[0].local_addr())
        .parse()
        .unwrap();
    let mut config = DhtConfig::new("127.0.0.1:0".parse().unwrap()).with_bootstrap([seed]);
    config.node.detect_reachability = false;
    config.node.max_per_subnet = None;
    let nated = Dht::bind(config).await.unwrap();
    nated.bootstrap().await.unwrap();
    assert!(!nated.is_server());

    // It registers with all three: one per /24.
    let deadline = tokio::time::Instant::now() + WAIT;
    while nated.relay_hints().len() < 3 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "registered with {:?}",
            nated.relay_hints()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let hints = nated.relay_hints();
    for server in &servers {
        assert!(hints.iter().any(|h| h.addr == server.local_addr()));
        let (_, registrations, _) = server.relay_status().unwrap();
        assert_eq!(registrations, 1);
    }
    // The hints go into its signed peer record.
    let record =
        carrier_dht::PeerRecord::sign(&nated.keypair(), 1, u64::MAX, Vec::new(), hints).unwrap();
    record.verify().unwrap();
    // Servers register with nobody.
    assert!(servers.iter().all(|s| s.relay_hints().is_empty()));
}

#[tokio::test]
async fn a_relay_nobody_writes_to_still_expires_a_silent_registration_and_its_sessions() {
    use carrier_dht::{Dht, DhtConfig};
    let mut config = DhtConfig::local("127.0.0.1:0".parse().unwrap());
    let limits = RelayLimits {
        registration_timeout: Duration::from_millis(500),
        ..RelayLimits::default()
    };
    config.relay = Some(limits);
    let dht = Dht::bind(config).await.unwrap();
    let relay_addr = dht.local_addr();
    let nated = bind();
    let opener = bind();
    let keys = Keypair::from_seed(&[2; 32]);
    let t = token(&nated, relay_addr).await;
    let register = Control::register(&keys, &Key::of_node(&dht.id()), t);
    nated.send(relay_addr, &register.encode()).await.unwrap();
    assert!(matches!(control(&nated).await, Control::Registered { .. }));
    let t = token(&opener, relay_addr).await;
    let open = Control::Open {
        target: Key::of_node(&keys.id()),
        token: t,
    };
    opener.send(relay_addr, &open.encode()).await.unwrap();
    let Control::Opened { session, .. } = control(&opener).await else {
        panic!("no session");
    };
    assert_eq!(dht.relay_status().unwrap().1, 1);
    opener.add_relayed_path(relay_addr, session).unwrap();
    let path = Path::Relayed {
        relay: relay_addr,
        session,
    };
    assert!(opener.addr_of(path).is_some());

    // The node goes silent and nothing else reaches the relay: its timer lets go of the
    // registration and the session, and tells the opener.
    assert!(matches!(
        control(&opener).await,
        Control::Closed { session: s } if s == session
    ));
    let (counters, registrations, sessions) = dht.relay_status().unwrap();
    assert_eq!((registrations, sessions), (0, 0));
    assert_eq!(counters.registrations_expired, 1);
    // The opener's socket no longer takes frames of the closed session as its own.
    assert!(opener.addr_of(path).is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_relay_is_replaced_by_another_within_seconds() {
    use carrier_dht::{BootstrapNode, Dht, DhtConfig};
    // Four relaying servers in four /24s, asking for keep-alives every second (so that a
    // relay carrying no traffic is found dead in seconds here too).
    let mut servers: Vec<Dht> = Vec::new();
    for net in 1..=4u8 {
        let mut config = DhtConfig::local(SocketAddr::from(([127, 0, net, 1], 0)));
        config.relay = Some(RelayLimits {
            keepalive_interval: Duration::from_secs(1),
            ..RelayLimits::default()
        });
        if let Some(first) = servers.first() {
            let seed: BootstrapNode = format!("{}@{}", first.id(), first.local_addr())
                .parse()
                .unwrap();
            config = config.with_bootstrap([seed]);
        }
        let server = Dht::bind(config).await.unwrap();
        if !servers.is_empty() {
            server.bootstrap().await.unwrap();
        }
        servers.push(server);
    }
    let seed: BootstrapNode = format!("{}@{}", servers[0].id(), servers[0].local_addr())
        .parse()
        .unwrap();
    let mut config = DhtConfig::new("127.0.0.1:0".parse().unwrap()).with_bootstrap([seed]);
    config.node.detect_reachability = false;
    config.node.max_per_subnet = None;
    let nated = Dht::bind(config).await.unwrap();
    nated.bootstrap().await.unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    while nated.relay_hints().len() < 3 {
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let before = nated.relay_hints();

    // One of its relays dies (one that is not the bootstrap node, so the node keeps a way
    // into the DHT).
    let victim = servers
        .iter()
        .skip(1)
        .position(|s| before.iter().any(|h| h.addr == s.local_addr()))
        .unwrap()
        + 1;
    let dead = servers.remove(victim);
    let dead_addr = dead.local_addr();
    dead.shutdown().await.unwrap();
    let died = tokio::time::Instant::now();
    // Found dead (keep-alive interval 1 s, silence 5 s) and replaced by the spare server.
    let deadline = died + WAIT;
    loop {
        let hints = nated.relay_hints();
        if hints.len() == 3 && hints.iter().all(|h| h.addr != dead_addr) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "still {hints:?} after the relay at {dead_addr} died"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let after = nated.relay_hints();
    for server in &servers {
        assert!(after.iter().any(|h| h.addr == server.local_addr()));
    }
}
