//! The node's one UDP socket: datagrams routed by class to the DHT and QUIC sides, GSO/GRO
//! batches split per segment, dual-stack, and the test seam that drops and delays.

// Helpers of these tests unwrap as the tests do: a failure is the test failing.
#![allow(clippy::unwrap_used)]

use carrier_dht::socket::{Class, NodeSocket};
use std::io::IoSliceMut;
use std::time::Duration;

async fn quic_recv(sock: &NodeSocket) -> Vec<Vec<u8>> {
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
            out.push(seg.to_vec());
        }
    }
    out
}

#[tokio::test]
async fn each_class_reaches_its_own_side() {
    let a = NodeSocket::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let b = NodeSocket::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let to = b.local_addr().unwrap();
    a.send(to, &[0x01, 1, 2, 3]).await.unwrap();
    a.send(to, &[0x41, 9, 9]).await.unwrap();
    a.send(to, &[0x3f, 4]).await.unwrap();
    // The DHT side reads everything; the QUIC datagram is handed over.
    let d1 = b.recv_carrier().await.unwrap();
    let d2 = b.recv_carrier().await.unwrap();
    assert_eq!(d1.data, vec![0x01, 1, 2, 3]);
    assert_eq!(d2.data, vec![0x3f, 4]);
    assert_eq!(d1.from, a.local_addr().unwrap());
    let quic = tokio::time::timeout(Duration::from_secs(5), quic_recv(&b))
        .await
        .unwrap();
    assert_eq!(quic, vec![vec![0x41, 9, 9]]);
    assert_eq!(Class::of(&[]), None);
}

#[tokio::test]
async fn quic_side_reading_hands_carrier_datagrams_over() {
    let a = NodeSocket::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let b = NodeSocket::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let to = b.local_addr().unwrap();
    a.send(to, &[0x05, 7]).await.unwrap();
    a.send(to, &[0x04, 6]).await.unwrap();
    a.send(to, &[0x42, 8]).await.unwrap();
    let quic = tokio::time::timeout(Duration::from_secs(5), quic_recv(&b))
        .await
        .unwrap();
    assert_eq!(quic, vec![vec![0x42, 8]]);
    let d = tokio::time::timeout(Duration::from_secs(5), b.recv_carrier())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(d.data, vec![0x05, 7]);
    // A punch frame goes to the puncher's queue, never to the DHT side.
    let punch = tokio::time::timeout(Duration::from_secs(5), b.recv_punch())
        .await
        .unwrap();
    assert_eq!(punch.data, vec![0x04, 6]);
    assert!(b.try_recv_carrier().is_none());
    assert_eq!(b.stats().punch_received, 1);
}

#[tokio::test]
async fn gso_batches_are_split_per_segment_by_class() {
    let a = NodeSocket::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let b = NodeSocket::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    println!(
        "gso {} gro {}",
        a.max_transmit_segments(),
        b.max_receive_segments()
    );
    let mut batch = Vec::new();
    for first in [0x43u8, 0x05, 0x44] {
        let mut seg = vec![first; 100];
        seg[1] = 1;
        batch.extend_from_slice(&seg);
    }
    let segment_size = if a.max_transmit_segments() > 1 {
        Some(100)
    } else {
        None
    };
    if segment_size.is_none() {
        for seg in batch.chunks(100) {
            a.send(b.local_addr().unwrap(), seg).await.unwrap();
        }
    } else {
        a.writable().await.unwrap();
        a.try_send_transmit(&quinn_udp::Transmit {
            destination: b.local_addr().unwrap(),
            ecn: None,
            contents: &batch,
            segment_size,
            src_ip: None,
        })
        .unwrap();
    }
    let d = tokio::time::timeout(Duration::from_secs(5), b.recv_carrier())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(d.data[0], 0x05);
    assert_eq!(d.data.len(), 100);
    let mut quic = Vec::new();
    while quic.len() < 2 {
        quic.extend(
            tokio::time::timeout(Duration::from_secs(5), quic_recv(&b))
                .await
                .unwrap(),
        );
    }
    assert_eq!(
        quic.iter().map(|s| (s[0], s.len())).collect::<Vec<_>>(),
        vec![(0x43, 100), (0x44, 100)]
    );
    let stats = b.stats();
    assert_eq!(stats.carrier_received, 1);
    assert_eq!(stats.quic_received, 2);
}

#[tokio::test]
async fn dual_stack_socket_serves_ipv4_peers() {
    let Ok(b) = NodeSocket::bind("[::]:0".parse().unwrap()) else {
        return;
    };
    let port = b.local_addr().unwrap().port();
    let a = NodeSocket::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    a.send(format!("127.0.0.1:{port}").parse().unwrap(), &[0x01])
        .await
        .unwrap();
    let d = tokio::time::timeout(Duration::from_secs(5), b.recv_carrier())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(d.from, a.local_addr().unwrap());
    b.send(d.from, &[0x05]).await.unwrap();
    let back = tokio::time::timeout(Duration::from_secs(5), a.recv_carrier())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(back.data, vec![0x05]);
}

struct DropEvery2nd(std::sync::atomic::AtomicU64);
impl carrier_dht::socket::Conditioner for DropEvery2nd {
    fn outgoing(&self, _to: std::net::SocketAddr, _d: &[u8]) -> carrier_dht::socket::Fate {
        if self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % 2 == 1 {
            carrier_dht::socket::Fate::Drop
        } else {
            carrier_dht::socket::Fate::Pass
        }
    }
    fn incoming(&self, _f: std::net::SocketAddr, d: &[u8]) -> carrier_dht::socket::Fate {
        if d[0] == 0x09 {
            carrier_dht::socket::Fate::Delay(Duration::from_millis(200))
        } else {
            carrier_dht::socket::Fate::Pass
        }
    }
}

#[tokio::test]
async fn the_conditioner_drops_and_delays() {
    let a = NodeSocket::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let b = NodeSocket::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    a.set_conditioner(Some(std::sync::Arc::new(DropEvery2nd(Default::default()))));
    b.set_conditioner(Some(std::sync::Arc::new(DropEvery2nd(Default::default()))));
    let to = b.local_addr().unwrap();
    for i in 0..4u8 {
        a.send(to, &[0x01, i]).await.unwrap();
    }
    let x = b.recv_carrier().await.unwrap();
    let y = b.recv_carrier().await.unwrap();
    assert_eq!((x.data[1], y.data[1]), (0, 2));
    a.set_conditioner(None);
    let t0 = tokio::time::Instant::now();
    a.send(to, &[0x09]).await.unwrap();
    a.send(to, &[0x08]).await.unwrap();
    assert_eq!(b.recv_carrier().await.unwrap().data, vec![0x08]);
    assert_eq!(b.recv_carrier().await.unwrap().data, vec![0x09]);
    assert!(t0.elapsed() >= Duration::from_millis(200));
}

/// Lets everything pass, so the QUIC side routes what it reads through the queues.
struct PassAll;
impl carrier_dht::socket::Conditioner for PassAll {
    fn outgoing(&self, _to: std::net::SocketAddr, _d: &[u8]) -> carrier_dht::socket::Fate {
        carrier_dht::socket::Fate::Pass
    }
    fn incoming(&self, _f: std::net::SocketAddr, _d: &[u8]) -> carrier_dht::socket::Fate {
        carrier_dht::socket::Fate::Pass
    }
}

#[tokio::test]
async fn handed_over_counts_only_what_the_dht_side_queued_for_quic() {
    use carrier_dht::socket::QUEUE_CAPACITY;
    let a = NodeSocket::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let b = NodeSocket::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let to = b.local_addr().unwrap();
    // Only the DHT side reads: the QUIC queue fills, and what does not fit is dropped, not
    // handed over.
    // The reader runs beside the sender, so the OS buffer never overflows.
    let reader = tokio::spawn({
        let b = b.clone();
        async move { b.recv_carrier().await.unwrap() }
    });
    let extra = 6;
    for i in 0..QUEUE_CAPACITY + extra {
        a.send(to, &[0x41, (i % 251) as u8]).await.unwrap();
        if i % 32 == 0 {
            tokio::task::yield_now().await;
        }
    }
    a.send(to, &[0x01, 0xff]).await.unwrap();
    let last = tokio::time::timeout(Duration::from_secs(5), reader)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(last.data, vec![0x01, 0xff]);
    let stats = b.stats();
    assert_eq!(stats.quic_handed_over, QUEUE_CAPACITY as u64);
    assert_eq!(stats.quic_received, QUEUE_CAPACITY as u64);
    assert_eq!(stats.dropped, extra as u64);

    // The QUIC side reads a datagram itself (through the queue, as with a conditioner): that
    // is not a hand-over.
    let c = NodeSocket::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    c.set_conditioner(Some(std::sync::Arc::new(PassAll)));
    a.send(c.local_addr().unwrap(), &[0x42, 8]).await.unwrap();
    let quic = tokio::time::timeout(Duration::from_secs(5), quic_recv(&c))
        .await
        .unwrap();
    assert_eq!(quic, vec![vec![0x42, 8]]);
    let stats = c.stats();
    assert_eq!((stats.quic_received, stats.quic_handed_over), (1, 0));
}

/// Both sides read the socket at once (the DHT side wakes on every readiness), and QUIC
/// datagrams the DHT side reads reach quinn through a queue; still, quinn gets them in the
/// order they arrived. Out of order, QUIC takes a gap of three packets for loss and slows
/// down: a relayed transfer, whose frames every reader hands through the queue, lost most
/// of its rate to that.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quic_datagrams_keep_their_order_when_both_sides_read() {
    const COUNT: u32 = 20_000;
    let receiver = NodeSocket::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let to = receiver.local_addr().unwrap();
    let dht_side = receiver.clone();
    let reading = tokio::spawn(async move { while dht_side.recv_carrier().await.is_ok() {} });
    let sender = NodeSocket::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let sending = tokio::spawn(async move {
        for n in 0..COUNT {
            let mut datagram = vec![0x40u8; 1200];
            datagram[1..5].copy_from_slice(&n.to_be_bytes());
            sender.send(to, &datagram).await.unwrap();
            if n % 32 == 31 {
                // Paced so that the receiver's buffer does not overflow (a loss is no
                // disorder, but the test wants most of them).
                tokio::time::sleep(Duration::from_micros(200)).await;
            }
        }
    });
    let mut seen: Vec<u32> = Vec::new();
    loop {
        match tokio::time::timeout(Duration::from_secs(2), quic_recv(&receiver)).await {
            Ok(datagrams) => seen.extend(
                datagrams
                    .iter()
                    .map(|d| u32::from_be_bytes(d[1..5].try_into().unwrap())),
            ),
            Err(_) => break,
        }
        if seen.last() == Some(&(COUNT - 1)) && sending.is_finished() {
            break;
        }
    }
    sending.await.unwrap();
    reading.abort();
    assert!(
        seen.len() > COUNT as usize / 2,
        "most arrive: {}",
        seen.len()
    );
    let disorder = seen.windows(2).filter(|w| w[1] <= w[0]).count();
    assert_eq!(
        disorder,
        0,
        "{disorder} of {} out of order; the DHT side handed over {}",
        seen.len(),
        receiver.stats().quic_handed_over
    );
}
