//! quinn's view of the node's shared UDP socket: an [`AsyncUdpSocket`] over the QUIC class of
//! [`NodeSocket`], translating real paths to mapped addresses through the [`PathTable`]. The
//! socket shows a relayed path as a stand-in address ([`NodeSocket::path_of`] and
//! [`NodeSocket::addr_of`] translate), which never reaches the table: it is keyed by [`Path`]s.
//!
//! [`Path`]: carrier_dht::Path
//!
//! Batching is kept: a GSO transmit from quinn goes to the socket as one GSO send, and a GRO
//! batch read by quinn stays one batch; the path table is consulted once per transmit and once
//! per received batch, not per segment.

use std::fmt;
use std::future::Future;
use std::io::{self, IoSliceMut};
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use carrier_dht::socket::{NodeSocket, QUIC_CLASS_BIT};
use quinn::udp::{RecvMeta, Transmit};
use quinn::{AsyncUdpSocket, UdpPoller};

use super::path_table::PathTable;

/// Counters of what the QUIC side of the socket dropped, and why.
#[derive(Debug, Default)]
pub(crate) struct QuicSocketCounters {
    /// Datagrams quinn addressed to a mapped address with no path.
    pub(crate) unmapped_dropped: AtomicU64,
    /// Transmits holding a packet without bit 0x40 (only a peer that asked quinn to grease
    /// the QUIC bit, which no Carrier node does, makes quinn send one).
    pub(crate) unmarked_dropped: AtomicU64,
    /// Received batches from a real address the full path table could not map.
    pub(crate) unmappable_dropped: AtomicU64,
}

/// The QUIC side of a node's socket, as quinn uses it.
pub(crate) struct QuicSocket {
    socket: NodeSocket,
    paths: PathTable,
    /// The real socket is IPv6 (dual-stack): IPv4 peers are sent to at their IPv4-mapped
    /// address, as quinn itself would.
    real_is_v6: bool,
    /// The address quinn is told: the real port on an IPv6 address, because every address
    /// quinn sees (mapped ones) is IPv6 and quinn refuses to dial IPv6 from an IPv4 endpoint.
    shown_addr: SocketAddr,
    counters: Arc<QuicSocketCounters>,
}

impl fmt::Debug for QuicSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QuicSocket")
            .field("socket", &self.socket)
            .finish_non_exhaustive()
    }
}

impl QuicSocket {
    pub(crate) fn new(
        socket: NodeSocket,
        paths: PathTable,
        counters: Arc<QuicSocketCounters>,
    ) -> io::Result<Self> {
        let real = socket.local_addr()?;
        let shown_ip = match real.ip() {
            IpAddr::V4(v4) => v4.to_ipv6_mapped(),
            IpAddr::V6(v6) => v6,
        };
        Ok(Self {
            socket,
            paths,
            real_is_v6: real.is_ipv6(),
            shown_addr: SocketAddr::new(IpAddr::V6(shown_ip), real.port()),
            counters,
        })
    }

    fn wire_address(&self, real: SocketAddr) -> SocketAddr {
        match real {
            SocketAddr::V4(v4) if self.real_is_v6 => {
                SocketAddr::new(IpAddr::V6(v4.ip().to_ipv6_mapped()), v4.port())
            }
            other => other,
        }
    }
}

/// Whether every packet of a (possibly GSO) transmit has the QUIC bit set.
fn every_segment_marked(transmit: &Transmit<'_>) -> bool {
    let size = transmit
        .segment_size
        .unwrap_or(transmit.contents.len())
        .max(1);
    // An empty transmit carries no packet, so nothing that could be marked.
    !transmit.contents.is_empty()
        && transmit
            .contents
            .chunks(size)
            .all(|segment| segment.first().is_some_and(|b| b & QUIC_CLASS_BIT != 0))
}

impl AsyncUdpSocket for QuicSocket {
    fn create_io_poller(self: Arc<Self>) -> Pin<Box<dyn UdpPoller>> {
        Box::pin(WritablePoller {
            socket: self.socket.clone(),
            waiting: None,
        })
    }

    fn try_send(&self, transmit: &Transmit<'_>) -> io::Result<()> {
        if !every_segment_marked(transmit) {
            // Sent as it is, it would reach the peer's DHT side; a lost packet is what QUIC
            // copes with anyway.
            self.counters
                .unmarked_dropped
                .fetch_add(1, Ordering::Relaxed);
            return Ok(());
        }
        // A relayed path goes out through the socket's stand-in address for it; one the socket
        // no longer uses has nowhere to go. A peer still tried on several candidate paths
        // gets the transmit on each; the first path's result is quinn's.
        let mut sent = None;
        for path in self.paths.outbound_all(transmit.destination) {
            let Some(real) = self.socket.addr_of(path) else {
                continue;
            };
            let destination = self.wire_address(real);
            // quinn picks the source address from where the peer's packets arrived; it only
            // applies while the path's address family is the one they arrived on.
            let src_ip = transmit
                .src_ip
                .filter(|ip| ip.is_ipv6() == destination.is_ipv6());
            let result = self.socket.try_send_transmit(&Transmit {
                destination,
                ecn: transmit.ecn,
                contents: transmit.contents,
                segment_size: transmit.segment_size,
                src_ip,
            });
            if sent.is_none() {
                sent = Some(result);
            }
        }
        match sent {
            Some(result) => result,
            None => {
                self.counters
                    .unmapped_dropped
                    .fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
        }
    }

    fn poll_recv(
        &self,
        cx: &mut Context<'_>,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        let count = match self.socket.poll_recv_quic(cx, bufs, meta) {
            Poll::Ready(Ok(count)) => count,
            other => return other,
        };
        for meta in meta.iter_mut().take(count) {
            if meta.len == 0 {
                continue;
            }
            match self.paths.inbound(self.socket.path_of(meta.addr)) {
                Some(mapped) => meta.addr = mapped,
                None => {
                    self.counters
                        .unmappable_dropped
                        .fetch_add(1, Ordering::Relaxed);
                    // quinn skips empty buffers.
                    meta.len = 0;
                }
            }
        }
        Poll::Ready(Ok(count))
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.shown_addr)
    }

    fn max_transmit_segments(&self) -> usize {
        self.socket.max_transmit_segments()
    }

    fn max_receive_segments(&self) -> usize {
        self.socket.max_receive_segments()
    }

    fn may_fragment(&self) -> bool {
        self.socket.may_fragment()
    }
}

/// The future a [`WritablePoller`] keeps between polls.
type Writable = Pin<Box<dyn Future<Output = io::Result<()>> + Send + Sync>>;

/// Wakes one quinn task when the node socket may accept a send again.
struct WritablePoller {
    socket: NodeSocket,
    waiting: Option<Writable>,
}

impl fmt::Debug for WritablePoller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WritablePoller").finish_non_exhaustive()
    }
}

impl UdpPoller for WritablePoller {
    fn poll_writable(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let waiting = this.waiting.get_or_insert_with(|| {
            let socket = this.socket.clone();
            Box::pin(async move { socket.writable().await })
        });
        let result = waiting.as_mut().poll(cx);
        if result.is_ready() {
            // A finished future is not polled again: the next call makes a fresh one.
            this.waiting = None;
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn transmit(contents: &[u8], segment_size: Option<usize>) -> Transmit<'_> {
        Transmit {
            destination: "127.0.0.1:1".parse().unwrap(),
            ecn: None,
            contents,
            segment_size,
            src_ip: None,
        }
    }

    #[test]
    fn a_batch_is_marked_only_if_every_segment_is() {
        assert!(every_segment_marked(&transmit(
            &[0x40, 1, 0xc0, 2],
            Some(2)
        )));
        assert!(!every_segment_marked(&transmit(
            &[0x40, 1, 0x00, 2],
            Some(2)
        )));
        assert!(!every_segment_marked(&transmit(&[0x3f], None)));
        assert!(!every_segment_marked(&transmit(&[], None)));
    }
}
