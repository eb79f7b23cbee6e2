//! The node's one UDP socket, shared by the DHT and QUIC.
//!
//! The first byte of a datagram tells its class: QUIC packets always have bit `0x40` set
//! (endpoints are built with `grease_quic_bit(false)`), Carrier's own classes (DHT RPC, relay
//! frames, punch probes) use first bytes below `0x40`.
//!
//! Either side may read the socket. Whoever reads a batch keeps its own class and hands the
//! other class to the other side's queue, then wakes it. The QUIC side reads straight into
//! quinn's buffers, so bulk traffic is never copied when quinn is the reader; a QUIC datagram
//! that the DHT side happens to read is copied once into the QUIC queue. The DHT side waits with
//! `readable()`, which wakes every waiter, so quinn's single-waker `poll_recv_ready` never
//! starves it.
//!
//! Batching is quinn-udp's: GSO on send and GRO on receive; GRO batches are split into their
//! segments before they are classified.

use std::collections::VecDeque;
use std::future::Future;
use std::io::{self, IoSliceMut};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use quinn_udp::{RecvMeta, Transmit, UdpSocketState};
use tokio::io::Interest;

use crate::wire::path::canonical_addr;

/// Bit 0x40 of the first byte marks a QUIC packet; Carrier's own classes stay below it.
pub const QUIC_CLASS_BIT: u8 = 0x40;

/// Datagrams waiting for each side, at most; beyond this the newest are dropped and counted.
pub const QUEUE_CAPACITY: usize = 1024;

/// Datagrams read by the DHT side in one system call, at most.
const DHT_BATCH: usize = 4;

/// The largest UDP payload.
const MAX_UDP_PAYLOAD: usize = 65_527;

/// The kernel receive buffer asked for: room for a burst (a flood of QUIC handshakes, a bulk
/// transfer outrunning its reader for a moment) to wait instead of being dropped, DHT requests
/// included. Linux's default (about 208 KiB) holds only about 90 full-size datagrams. The
/// kernel caps it at `net.core.rmem_max`, and memory is used only while datagrams wait.
const RECEIVE_BUFFER_BYTES: usize = 4 << 20;

/// What a [`Conditioner`] decides for one datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// Deliver it now.
    Pass,
    /// Lose it.
    Drop,
    /// Deliver it after this long.
    Delay(std::time::Duration),
}

/// The test seam: decides the fate of every datagram the socket sends or receives, so tests
/// and the network lab can add loss and delay (the lab's kernel has no `netem`).
///
/// Production nodes have none; each datagram then costs one branch.
pub trait Conditioner: Send + Sync + 'static {
    /// The fate of a datagram about to be sent to `to`.
    fn outgoing(&self, to: SocketAddr, data: &[u8]) -> Fate;
    /// The fate of a datagram received from `from`.
    fn incoming(&self, from: SocketAddr, data: &[u8]) -> Fate;
}

/// Which side a datagram belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// A QUIC packet (bit 0x40 set).
    Quic,
    /// One of Carrier's own packets (DHT RPC, relay frame, punch probe).
    Carrier,
}

impl Class {
    /// The class of a datagram from its first byte; an empty datagram has none.
    pub fn of(datagram: &[u8]) -> Option<Class> {
        let first = *datagram.first()?;
        Some(if first & QUIC_CLASS_BIT != 0 {
            Class::Quic
        } else {
            Class::Carrier
        })
    }
}

/// A datagram received for one side.
#[derive(Debug, Clone)]
pub struct Datagram {
    /// Where it came from (IPv4-mapped IPv6 addresses are shown as IPv4).
    pub from: SocketAddr,
    /// The local address it was sent to, where the OS says.
    pub to_ip: Option<IpAddr>,
    /// Its bytes.
    pub data: Vec<u8>,
}

/// Counters of what the socket did, for tests and monitoring.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SocketStats {
    /// Datagrams read for the DHT side.
    pub carrier_received: u64,
    /// Datagrams read for the QUIC side.
    pub quic_received: u64,
    /// QUIC datagrams read by the DHT side and queued for the QUIC side (not those the QUIC
    /// side read itself, nor those dropped because its queue was full).
    pub quic_handed_over: u64,
    /// Datagrams dropped: empty, or their queue was full.
    pub dropped: u64,
}

/// Which side read a datagram from the OS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Reader {
    /// The DHT side ([`NodeSocket::recv_carrier`]).
    Carrier,
    /// The QUIC side ([`NodeSocket::poll_recv_quic`]).
    Quic,
}

#[derive(Default)]
struct Counters {
    carrier_received: AtomicU64,
    quic_received: AtomicU64,
    quic_handed_over: AtomicU64,
    dropped: AtomicU64,
}

#[derive(Default)]
struct Queue {
    datagrams: VecDeque<Datagram>,
    waker: Option<Waker>,
}

struct Inner {
    conditioner: std::sync::RwLock<Option<Arc<dyn Conditioner>>>,
    io: tokio::net::UdpSocket,
    state: UdpSocketState,
    carrier: Mutex<Queue>,
    /// Wakes the DHT side when the QUIC side (or a delayed datagram) fills its queue.
    carrier_filled: tokio::sync::Notify,
    quic: Mutex<Queue>,
    counters: Counters,
}

/// The node's UDP socket: cheap to clone, shared by the DHT and QUIC.
#[derive(Clone)]
pub struct NodeSocket {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for NodeSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeSocket")
            .field("local_addr", &self.inner.io.local_addr().ok())
            .finish()
    }
}

fn lock(queue: &Mutex<Queue>) -> MutexGuard<'_, Queue> {
    // A panic while holding the lock cannot leave a queue half-changed (push/pop only), so a
    // poisoned lock is still usable.
    queue
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl NodeSocket {
    /// Binds the socket. An unspecified IPv6 address (`[::]:port`) binds dual-stack where the OS
    /// allows, so one socket serves IPv4 and IPv6. Must be called inside a tokio runtime.
    pub fn bind(addr: SocketAddr) -> io::Result<NodeSocket> {
        let domain = socket2::Domain::for_address(addr);
        let socket =
            socket2::Socket::new(domain, socket2::Type::DGRAM, Some(socket2::Protocol::UDP))?;
        if addr.is_ipv6() && addr.ip().is_unspecified() {
            // Best effort: some systems allow only IPv6 here.
            let _ = socket.set_only_v6(false);
        }
        socket.bind(&addr.into())?;
        // Best effort: a smaller buffer only means more loss under bursts.
        let _ = socket.set_recv_buffer_size(RECEIVE_BUFFER_BYTES);
        socket.set_nonblocking(true)?;
        let std_socket: std::net::UdpSocket = socket.into();
        let state = UdpSocketState::new((&std_socket).into())?;
        let io = tokio::net::UdpSocket::from_std(std_socket)?;
        Ok(NodeSocket {
            inner: Arc::new(Inner {
                conditioner: std::sync::RwLock::new(None),
                io,
                state,
                carrier: Mutex::new(Queue::default()),
                carrier_filled: tokio::sync::Notify::new(),
                quic: Mutex::new(Queue::default()),
                counters: Counters::default(),
            }),
        })
    }

    /// Installs (or, with `None`, removes) the test seam that drops and delays datagrams.
    pub fn set_conditioner(&self, conditioner: Option<Arc<dyn Conditioner>>) {
        let mut slot = self
            .inner
            .conditioner
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *slot = conditioner;
    }

    fn conditioner(&self) -> Option<Arc<dyn Conditioner>> {
        self.inner
            .conditioner
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// The address the socket is bound to.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.io.local_addr()
    }

    /// Counters of what the socket did.
    pub fn stats(&self) -> SocketStats {
        let c = &self.inner.counters;
        SocketStats {
            carrier_received: c.carrier_received.load(Ordering::Relaxed),
            quic_received: c.quic_received.load(Ordering::Relaxed),
            quic_handed_over: c.quic_handed_over.load(Ordering::Relaxed),
            dropped: c.dropped.load(Ordering::Relaxed),
        }
    }

    /// The next Carrier-class datagram already queued, without waiting or reading the socket.
    pub fn try_recv_carrier(&self) -> Option<Datagram> {
        lock(&self.inner.carrier).datagrams.pop_front()
    }

    /// Receives the next Carrier-class datagram (DHT RPC, relay frame, punch probe).
    pub async fn recv_carrier(&self) -> io::Result<Datagram> {
        loop {
            let filled = self.inner.carrier_filled.notified();
            let mut filled = std::pin::pin!(filled);
            filled.as_mut().enable();
            if let Some(datagram) = lock(&self.inner.carrier).datagrams.pop_front() {
                return Ok(datagram);
            }
            let mut readable = std::pin::pin!(self.inner.io.readable());
            let socket_ready = std::future::poll_fn(|cx| {
                if let Poll::Ready(result) = readable.as_mut().poll(cx) {
                    return Poll::Ready(Some(result));
                }
                if filled.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(None);
                }
                Poll::Pending
            })
            .await;
            match socket_ready {
                None => continue,
                Some(Err(e)) => return Err(e),
                Some(Ok(())) => {}
            }
            let read = self
                .inner
                .io
                .try_io(Interest::READABLE, || self.read_for_carrier_side());
            match read {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if is_transient(&e) => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Reads one batch into a per-thread buffer and routes every datagram to its queue.
    fn read_for_carrier_side(&self) -> io::Result<()> {
        thread_local! {
            // Shared by every node on the thread: the read and the routing happen without an
            // await in between, so one buffer per thread is enough, and idle nodes hold none.
            static BUFFER: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        let segment_room = self.inner.state.gro_segments().max(1) * 1500;
        let slot = segment_room.clamp(1500, MAX_UDP_PAYLOAD);
        BUFFER.with(|buffer| {
            let mut buffer = buffer.borrow_mut();
            if buffer.len() < slot * DHT_BATCH {
                buffer.resize(slot * DHT_BATCH, 0);
            }
            let mut meta = [RecvMeta::default(); DHT_BATCH];
            let count = {
                let mut slices: Vec<IoSliceMut<'_>> = buffer
                    .chunks_mut(slot)
                    .take(DHT_BATCH)
                    .map(IoSliceMut::new)
                    .collect();
                self.inner
                    .state
                    .recv((&self.inner.io).into(), &mut slices, &mut meta)?
            };
            for (i, meta) in meta.iter().take(count).enumerate() {
                let received = &buffer[i * slot..i * slot + meta.len];
                for segment in received.chunks(meta.stride.max(1)) {
                    self.route(meta, segment, Reader::Carrier);
                }
            }
            Ok(())
        })
    }

    fn route(&self, meta: &RecvMeta, segment: &[u8], reader: Reader) {
        let datagram = Datagram {
            from: canonical_addr(meta.addr),
            to_ip: meta.dst_ip,
            data: segment.to_vec(),
        };
        match self
            .conditioner()
            .map(|c| c.incoming(datagram.from, &datagram.data))
        {
            None | Some(Fate::Pass) => self.enqueue(datagram, reader),
            Some(Fate::Drop) => {}
            Some(Fate::Delay(delay)) => {
                let socket = self.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    socket.enqueue(datagram, reader);
                });
            }
        }
    }

    fn enqueue(&self, datagram: Datagram, reader: Reader) {
        let counters = &self.inner.counters;
        let class = Class::of(&datagram.data);
        let (queue, counter) = match class {
            None => {
                counters.dropped.fetch_add(1, Ordering::Relaxed);
                return;
            }
            Some(Class::Carrier) => (&self.inner.carrier, &counters.carrier_received),
            Some(Class::Quic) => (&self.inner.quic, &counters.quic_received),
        };
        let mut queue = lock(queue);
        if queue.datagrams.len() >= QUEUE_CAPACITY {
            counters.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        counter.fetch_add(1, Ordering::Relaxed);
        if class == Some(Class::Quic) && reader == Reader::Carrier {
            // Only what the DHT side read and really queued for QUIC was handed over.
            counters.quic_handed_over.fetch_add(1, Ordering::Relaxed);
        }
        queue.datagrams.push_back(datagram);
        let waker = queue.waker.take();
        drop(queue);
        if class == Some(Class::Carrier) {
            self.inner.carrier_filled.notify_one();
        }
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// Sends one datagram, waiting while the socket's buffer is full.
    pub async fn send(&self, to: SocketAddr, data: &[u8]) -> io::Result<()> {
        if self.conditioned_send(to, data) {
            return Ok(());
        }
        let destination = self.outgoing(to);
        let transmit = Transmit {
            destination,
            ecn: None,
            contents: data,
            segment_size: None,
            src_ip: None,
        };
        self.inner
            .io
            .async_io(Interest::WRITABLE, || {
                self.inner.state.send((&self.inner.io).into(), &transmit)
            })
            .await
    }

    /// Sends one datagram now, or fails with `WouldBlock` when the socket's buffer is full.
    pub fn try_send(&self, to: SocketAddr, data: &[u8]) -> io::Result<()> {
        self.try_send_transmit(&Transmit {
            destination: self.outgoing(to),
            ecn: None,
            contents: data,
            segment_size: None,
            src_ip: None,
        })
    }

    /// Sends a prepared transmit (possibly a GSO batch) now, or fails with `WouldBlock`.
    pub fn try_send_transmit(&self, transmit: &Transmit<'_>) -> io::Result<()> {
        if self.conditioner().is_some() {
            let to = canonical_addr(transmit.destination);
            let size = transmit
                .segment_size
                .unwrap_or(transmit.contents.len())
                .max(1);
            for segment in transmit.contents.chunks(size) {
                if !self.conditioned_send(to, segment) {
                    self.spawn_send(to, segment.to_vec());
                }
            }
            return Ok(());
        }
        self.inner.io.try_io(Interest::WRITABLE, || {
            self.inner.state.send((&self.inner.io).into(), transmit)
        })
    }

    /// Applies the conditioner to an outgoing datagram: `true` when it took care of it (dropped,
    /// or scheduled for later), `false` when it should go out now.
    fn conditioned_send(&self, to: SocketAddr, data: &[u8]) -> bool {
        match self.conditioner().map(|c| c.outgoing(to, data)) {
            None | Some(Fate::Pass) => false,
            Some(Fate::Drop) => true,
            Some(Fate::Delay(delay)) => {
                let socket = self.clone();
                let data = data.to_vec();
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    socket.send_now(to, data).await;
                });
                true
            }
        }
    }

    fn spawn_send(&self, to: SocketAddr, data: Vec<u8>) {
        let socket = self.clone();
        tokio::spawn(async move { socket.send_now(to, data).await });
    }

    async fn send_now(&self, to: SocketAddr, data: Vec<u8>) {
        let transmit = Transmit {
            destination: self.outgoing(to),
            ecn: None,
            contents: &data,
            segment_size: None,
            src_ip: None,
        };
        // A conditioned datagram that cannot be sent is lost, as on a real link.
        let _ = self
            .inner
            .io
            .async_io(Interest::WRITABLE, || {
                self.inner.state.send((&self.inner.io).into(), &transmit)
            })
            .await;
    }

    /// Waits until the socket may accept a send.
    pub async fn writable(&self) -> io::Result<()> {
        self.inner.io.writable().await
    }

    /// A dual-stack socket reaches IPv4 peers at their IPv4-mapped IPv6 address.
    fn outgoing(&self, to: SocketAddr) -> SocketAddr {
        match (to, self.inner.io.local_addr()) {
            (SocketAddr::V4(v4), Ok(SocketAddr::V6(_))) => {
                SocketAddr::new(IpAddr::V6(v4.ip().to_ipv6_mapped()), v4.port())
            }
            _ => to,
        }
    }

    /// The QUIC side: what an `AsyncUdpSocket` for quinn is built on.
    ///
    /// `poll_recv` fills quinn's buffers: first from datagrams the DHT side handed over, then
    /// straight from the socket, handing Carrier-class datagrams found there to the DHT side.
    pub fn poll_recv_quic(
        &self,
        cx: &mut Context<'_>,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        if let Some(n) = self.drain_quic_queue(cx, bufs, meta) {
            return Poll::Ready(Ok(n));
        }
        loop {
            match self.inner.io.poll_recv_ready(cx) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
            let read = self.inner.io.try_io(Interest::READABLE, || {
                self.inner.state.recv((&self.inner.io).into(), bufs, meta)
            });
            let count = match read {
                Ok(count) => count,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock || is_transient(&e) => continue,
                Err(e) => return Poll::Ready(Err(e)),
            };
            let kept = self.keep_quic(bufs, meta, count);
            if kept > 0 {
                return Poll::Ready(Ok(count));
            }
            // Everything read was Carrier-class: read again (or register for readiness).
            if let Some(n) = self.drain_quic_queue(cx, bufs, meta) {
                return Poll::Ready(Ok(n));
            }
        }
    }

    /// Hands Carrier-class segments in quinn's buffers to the DHT side; a buffer that held any
    /// is handed over whole (QUIC segments to the QUIC queue) and emptied (`len = 0`), which
    /// quinn skips. Returns how many buffers still hold QUIC data.
    fn keep_quic(&self, bufs: &[IoSliceMut<'_>], meta: &mut [RecvMeta], count: usize) -> usize {
        let mut kept = 0;
        let conditioned = self.conditioner().is_some();
        for (buf, meta) in bufs.iter().zip(meta.iter_mut()).take(count) {
            let received = &buf[..meta.len];
            let stride = meta.stride.max(1);
            if !conditioned
                && received
                    .chunks(stride)
                    .all(|s| Class::of(s) == Some(Class::Quic))
            {
                self.inner
                    .counters
                    .quic_received
                    .fetch_add(received.chunks(stride).count() as u64, Ordering::Relaxed);
                kept += 1;
                continue;
            }
            for segment in received.chunks(stride) {
                self.route(meta, segment, Reader::Quic);
            }
            meta.len = 0;
        }
        kept
    }

    fn drain_quic_queue(
        &self,
        cx: &mut Context<'_>,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Option<usize> {
        let mut queue = lock(&self.inner.quic);
        let mut filled = 0;
        while filled < bufs.len().min(meta.len()) {
            let Some(datagram) = queue.datagrams.pop_front() else {
                break;
            };
            let buf = &mut bufs[filled];
            if datagram.data.len() > buf.len() {
                self.inner.counters.dropped.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            buf[..datagram.data.len()].copy_from_slice(&datagram.data);
            meta[filled] = RecvMeta {
                addr: datagram.from,
                len: datagram.data.len(),
                stride: datagram.data.len(),
                ecn: None,
                dst_ip: datagram.to_ip,
            };
            filled += 1;
        }
        if filled == 0 {
            queue.waker = Some(cx.waker().clone());
            None
        } else {
            Some(filled)
        }
    }

    /// GSO segments the OS accepts in one send.
    pub fn max_transmit_segments(&self) -> usize {
        self.inner.state.max_gso_segments()
    }

    /// GRO segments the OS may deliver in one receive.
    pub fn max_receive_segments(&self) -> usize {
        self.inner.state.gro_segments()
    }

    /// Whether datagrams sent may be fragmented.
    pub fn may_fragment(&self) -> bool {
        self.inner.state.may_fragment()
    }
}

/// Errors a UDP socket reports for an earlier datagram (ICMP unreachable and the like): they
/// say nothing about the socket itself.
fn is_transient(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
    )
}
