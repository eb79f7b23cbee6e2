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
//! starves it; but while quinn is reading, the DHT side leaves the socket to it for a moment
//! and takes what quinn hands over. A reader holds a lock from its system call until what it
//! read is routed, so QUIC datagrams reach quinn in the order they arrived.
//!
//! Batching is quinn-udp's: GSO on send and GRO on receive; GRO batches are split into their
//! segments before they are classified.
//!
//! Relay frames (first byte `0x02` control, `0x03` data) never reach the DHT side's queue.
//! Whoever reads one handles it on the spot, under the relay's own lock (never the DHT
//! core's): a data frame of a session this node uses is stripped of its header and handed to
//! the QUIC side from the session's stand-in address ([`NodeSocket::add_relayed_path`]); any
//! other data frame, and a control frame meant for a relay, goes to the relay table if one is
//! attached ([`NodeSocket::set_relay`]), which forwards within its own limits and budget;
//! control frames from a relay wait in their own bounded queue
//! ([`NodeSocket::recv_relay_control`]), and a `Closed` one also ends the socket's use of
//! that session's path. quinn sends to a stand-in address: each segment goes to the relay
//! in a data frame, a GSO batch as one GSO batch of frames; and the frames a relay forwards
//! from one GRO batch leave as GSO batches, one per destination.

use std::collections::VecDeque;
use std::future::Future;
use std::io::{self, IoSliceMut};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use quinn_udp::{RecvMeta, Transmit, UdpSocketState};
use tokio::io::Interest;

use crate::io::relayed::RelayedPaths;
pub use crate::io::relayed::{RelayTraffic, MAX_RELAYED_PATHS, RELAYED_PREFIX};
use crate::punch::frame::PUNCH_CLASS;
use crate::relay::frame::{
    decode_data, encode_data, Control, DATA_HEADER_BYTES, MAX_RELAYED_PAYLOAD_BYTES,
    RELAY_CONTROL_CLASS, RELAY_DATA_CLASS,
};
use crate::relay::table::{RelayCounters, RelayTable};
use crate::wire::path::{canonical_addr, Path, SessionId};

/// Bit 0x40 of the first byte marks a QUIC packet; Carrier's own classes stay below it.
pub const QUIC_CLASS_BIT: u8 = 0x40;

/// Datagrams waiting for each side, at most; beyond this the newest are dropped and counted.
pub const QUEUE_CAPACITY: usize = 1024;

/// Punch frames waiting for the puncher, at most; beyond this the newest are dropped and
/// counted (a round sends about ten a second per candidate).
pub const PUNCH_QUEUE_CAPACITY: usize = 256;

/// The payload of a relay data frame that only keeps its session open.
pub const RELAY_KEEPALIVE: u8 = 0x00;

/// Control frames from relays a listener of [`NodeSocket::relay_answers`] may fall behind by
/// before it misses some.
const RELAY_ANSWERS: usize = 64;

/// The QUIC side counts as reading the socket if it asked for datagrams this recently.
const QUIC_SIDE_ACTIVE: std::time::Duration = std::time::Duration::from_millis(10);

/// How long the DHT side, finding the socket readable while the QUIC side reads it, waits
/// for the QUIC side to hand its datagrams over before it reads a batch itself.
const QUIC_SIDE_GRACE: std::time::Duration = std::time::Duration::from_millis(2);

/// Datagrams read by the DHT side in one system call, at most.
const DHT_BATCH: usize = 4;

/// The most bytes one GSO batch carries: one UDP datagram's limit (65,535 less the IPv4 and
/// UDP headers).
const MAX_GSO_BYTES: usize = 65_507;

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
    /// Relay data frames of this node's own sessions, handed to the QUIC side unwrapped.
    pub relayed_received: u64,
    /// QUIC packets sent wrapped in relay data frames.
    pub relayed_sent: u64,
    /// Relay frames dropped: no session here and no relay table, refused by the relay
    /// table, malformed, or too large to wrap.
    pub relay_dropped: u64,
    /// Frames the relay table forwarded or sent (data and control).
    pub relay_sent: u64,
    /// Control frames from relays queued for this node.
    pub relay_control_received: u64,
    /// Punch frames queued for the node's puncher ([`NodeSocket::recv_punch`]).
    pub punch_received: u64,
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
    relayed_received: AtomicU64,
    relayed_sent: AtomicU64,
    relay_dropped: AtomicU64,
    relay_sent: AtomicU64,
    relay_control_received: AtomicU64,
    punch_received: AtomicU64,
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
    /// Held by a reader from its system call until every datagram it read is routed, so the
    /// two sides' batches are routed (and queued) in the order they were read: datagrams the
    /// QUIC side gets from the queue keep their order, which QUIC's loss detection takes
    /// for loss when it breaks.
    reading: Mutex<()>,
    /// When the QUIC side last asked for datagrams, in nanoseconds since `born`.
    quic_polled: AtomicU64,
    born: std::time::Instant,
    counters: Counters,
    /// The relay side, if this node relays: its own lock, never the DHT core's.
    relay: Mutex<Option<RelayTable>>,
    /// The relayed paths this node uses, and their stand-in addresses.
    relayed: std::sync::RwLock<RelayedPaths>,
    /// Control frames from relays, for the node's relay client.
    relay_control: Mutex<Queue>,
    relay_control_filled: tokio::sync::Notify,
    /// Every control frame from a relay, also for whoever listens (opening sessions).
    relay_answers: tokio::sync::broadcast::Sender<Datagram>,
    /// Punch frames (probes and answers), for the node's puncher.
    punch: Mutex<Queue>,
    punch_filled: tokio::sync::Notify,
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
                reading: Mutex::new(()),
                quic_polled: AtomicU64::new(u64::MAX),
                born: std::time::Instant::now(),
                counters: Counters::default(),
                relay: Mutex::new(None),
                relayed: std::sync::RwLock::new(RelayedPaths::default()),
                relay_control: Mutex::new(Queue::default()),
                relay_control_filled: tokio::sync::Notify::new(),
                relay_answers: tokio::sync::broadcast::channel(RELAY_ANSWERS).0,
                punch: Mutex::new(Queue::default()),
                punch_filled: tokio::sync::Notify::new(),
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
            relayed_received: c.relayed_received.load(Ordering::Relaxed),
            relayed_sent: c.relayed_sent.load(Ordering::Relaxed),
            relay_dropped: c.relay_dropped.load(Ordering::Relaxed),
            relay_sent: c.relay_sent.load(Ordering::Relaxed),
            relay_control_received: c.relay_control_received.load(Ordering::Relaxed),
            punch_received: c.punch_received.load(Ordering::Relaxed),
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
            if self.quic_side_reading() {
                // quinn reads the socket now, in larger batches and straight into its own
                // buffers, and hands what is for this side over: wait for that, and read a
                // batch here only if it does not come soon.
                let filled = self.inner.carrier_filled.notified();
                let mut filled = std::pin::pin!(filled);
                filled.as_mut().enable();
                if let Some(datagram) = lock(&self.inner.carrier).datagrams.pop_front() {
                    return Ok(datagram);
                }
                if tokio::time::timeout(QUIC_SIDE_GRACE, filled).await.is_ok() {
                    continue;
                }
            }
            let read = self.inner.io.try_io(Interest::READABLE, || {
                let _reading = read_lock(&self.inner.reading);
                self.read_for_carrier_side()
            });
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
                self.route_buffer(meta, received, Reader::Carrier);
            }
            Ok(())
        })
    }

    /// Routes each segment of one received buffer (a GRO batch, or one datagram). The relay
    /// data frames of a batch that this node forwards go out again as GSO batches, one per
    /// run of frames to one destination: what came in with one system call leaves with one.
    fn route_buffer(&self, meta: &RecvMeta, received: &[u8], reader: Reader) {
        let stride = meta.stride.max(1);
        let batched = received.len() > stride
            && received.first() == Some(&RELAY_DATA_CLASS)
            && self.conditioner().is_none();
        if !batched {
            for segment in received.chunks(stride) {
                self.route(meta, segment, reader);
            }
            return;
        }
        let mut out = Forwarded::default();
        for segment in received.chunks(stride) {
            if segment.first() == Some(&RELAY_DATA_CLASS) {
                let datagram = Datagram {
                    from: canonical_addr(meta.addr),
                    to_ip: meta.dst_ip,
                    data: segment.to_vec(),
                };
                self.relay_frame(datagram, Some(&mut out));
            } else {
                self.route(meta, segment, reader);
            }
        }
        out.flush(self);
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
        if matches!(
            datagram.data.first(),
            Some(&RELAY_CONTROL_CLASS) | Some(&RELAY_DATA_CLASS)
        ) {
            self.relay_frame(datagram, None);
            return;
        }
        let counters = &self.inner.counters;
        if datagram.data.first() == Some(&PUNCH_CLASS) {
            let mut queue = lock(&self.inner.punch);
            if queue.datagrams.len() >= PUNCH_QUEUE_CAPACITY {
                counters.dropped.fetch_add(1, Ordering::Relaxed);
                return;
            }
            counters.punch_received.fetch_add(1, Ordering::Relaxed);
            queue.datagrams.push_back(datagram);
            drop(queue);
            self.inner.punch_filled.notify_one();
            return;
        }
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

    /// Sends one datagram, waiting while the socket's buffer is full. To a relayed path's
    /// stand-in address, it goes to the relay in a data frame.
    pub async fn send(&self, to: SocketAddr, data: &[u8]) -> io::Result<()> {
        let wrapped;
        let (to, data) = match self.relayed_path(to) {
            Some((relay, session)) => {
                wrapped = encode_data(session, data).ok_or_else(too_large)?;
                self.inner
                    .counters
                    .relayed_sent
                    .fetch_add(1, Ordering::Relaxed);
                (relay, &wrapped[..])
            }
            None => (to, data),
        };
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
    /// To a relayed path's stand-in address, each segment goes to the relay in a data frame.
    pub fn try_send_transmit(&self, transmit: &Transmit<'_>) -> io::Result<()> {
        if let Some((relay, session)) = self.relayed_path(transmit.destination) {
            return self.send_relayed(relay, session, transmit);
        }
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
        let now = u64::try_from(self.inner.born.elapsed().as_nanos()).unwrap_or(u64::MAX - 1);
        self.inner.quic_polled.store(now, Ordering::Relaxed);
        if let Some(n) = self.drain_quic_queue(cx, bufs, meta) {
            return Poll::Ready(Ok(n));
        }
        loop {
            match self.inner.io.poll_recv_ready(cx) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
            let reading = read_lock(&self.inner.reading);
            // What the other side read before this lock was taken is queued by now, and
            // comes first.
            if let Some(n) = self.drain_quic_queue(cx, bufs, meta) {
                return Poll::Ready(Ok(n));
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
            drop(reading);
            if kept > 0 {
                return Poll::Ready(Ok(count));
            }
            // Everything read was Carrier-class: read again (or register for readiness).
            if let Some(n) = self.drain_quic_queue(cx, bufs, meta) {
                return Poll::Ready(Ok(n));
            }
        }
    }

    /// Whether the QUIC side asked for datagrams within [`QUIC_SIDE_ACTIVE`]: it is reading
    /// the socket, busily (a transfer) or at least often.
    fn quic_side_reading(&self) -> bool {
        let polled = self.inner.quic_polled.load(Ordering::Relaxed);
        if polled == u64::MAX {
            return false;
        }
        let now = u64::try_from(self.inner.born.elapsed().as_nanos()).unwrap_or(u64::MAX - 1);
        now.saturating_sub(polled) <= QUIC_SIDE_ACTIVE.as_nanos() as u64
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
            self.route_buffer(meta, received, Reader::Quic);
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

impl NodeSocket {
    /// Attaches (or, with `None`, detaches) the relay side: from then on this socket forwards
    /// for the nodes registered with it, within the table's limits.
    pub fn set_relay(&self, table: Option<RelayTable>) {
        *lock_relay(&self.inner.relay) = table;
    }

    /// Runs `f` on the relay table, if one is attached (its counts, its expiry).
    pub fn with_relay<R>(&self, f: impl FnOnce(&mut RelayTable) -> R) -> Option<R> {
        lock_relay(&self.inner.relay).as_mut().map(f)
    }

    /// What the attached relay did so far.
    pub fn relay_counters(&self) -> Option<RelayCounters> {
        self.with_relay(|table| table.counters())
    }

    /// Starts using the session `session` at `relay`: returns the stand-in address quinn
    /// sends to and receives from for it (the same one if already in use), or `None` when the
    /// socket holds [`MAX_RELAYED_PATHS`] already.
    pub fn add_relayed_path(&self, relay: SocketAddr, session: SessionId) -> Option<SocketAddr> {
        self.relayed_write().add(canonical_addr(relay), session)
    }

    /// Stops using a relayed path: its frames are no longer taken as this node's.
    pub fn remove_relayed_path(&self, relay: SocketAddr, session: SessionId) {
        self.relayed_write().remove(canonical_addr(relay), session);
    }

    /// The path an address stands for: a relayed path for a stand-in address in use, else
    /// the direct path to the address.
    pub fn path_of(&self, addr: SocketAddr) -> Path {
        match self.relayed_path(addr) {
            Some((relay, session)) => Path::Relayed { relay, session },
            None => Path::Direct(addr),
        }
    }

    /// The address to hand quinn for `path`: the address itself for a direct path, the
    /// stand-in for a relayed path in use (`None` if it is not).
    pub fn addr_of(&self, path: Path) -> Option<SocketAddr> {
        match path {
            Path::Direct(addr) => Some(addr),
            Path::Relayed { relay, session } => {
                self.relayed_read().stand_in(canonical_addr(relay), session)
            }
        }
    }

    /// When data frames last went to each relay in use and last came from it: a relay that
    /// stays silent while traffic goes to it may be dead (the relay client then asks it).
    pub fn relay_traffic(&self) -> Vec<RelayTraffic> {
        self.relayed_read().traffic()
    }

    /// Drops the attached relay's silent registrations and idle sessions now, and tells the
    /// ends that remain (the relay task calls it once a second); returns how many notices
    /// went out.
    pub fn expire_relay(&self) -> usize {
        let now = clock_now();
        let out = lock_relay(&self.inner.relay)
            .as_mut()
            .map(|relay| relay.poll_expired(now))
            .unwrap_or_default();
        for transmit in &out {
            self.relay_send(transmit.dest, &transmit.frame);
        }
        out.len()
    }

    /// Every control frame from a relay from now on, beside the queue
    /// ([`recv_relay_control`](Self::recv_relay_control)) that the relay client reads: what
    /// a node opening a session listens to. A listener more than 64 frames behind misses
    /// some.
    pub fn relay_answers(&self) -> tokio::sync::broadcast::Receiver<Datagram> {
        self.inner.relay_answers.subscribe()
    }

    /// The next control frame from a relay already queued, without waiting.
    pub fn try_recv_relay_control(&self) -> Option<Datagram> {
        lock(&self.inner.relay_control).datagrams.pop_front()
    }

    /// The next punch frame already queued, without waiting.
    pub fn try_recv_punch(&self) -> Option<Datagram> {
        lock(&self.inner.punch).datagrams.pop_front()
    }

    /// Waits for the next punch frame (first byte [`PUNCH_CLASS`]): probes and answers for
    /// the node's links, taken off the socket by whichever side reads it, never handed to
    /// the DHT core. At most [`PUNCH_QUEUE_CAPACITY`] wait; more are dropped and counted.
    pub async fn recv_punch(&self) -> Datagram {
        loop {
            let filled = self.inner.punch_filled.notified();
            let mut filled = std::pin::pin!(filled);
            filled.as_mut().enable();
            if let Some(datagram) = self.try_recv_punch() {
                return datagram;
            }
            filled.await;
        }
    }

    /// Sends a keep-alive through the relay session of `path` (a one-byte payload the far
    /// end's socket drops), so that the relay does not close the session for idleness while
    /// the link runs elsewhere. Nothing for a direct path or a session not in use.
    pub fn keep_relayed_path(&self, path: Path) -> io::Result<()> {
        let Path::Relayed { relay, session } = path else {
            return Ok(());
        };
        if self.relayed_read().stand_in(relay, session).is_none() {
            return Ok(());
        }
        let frame = encode_data(session, &[RELAY_KEEPALIVE]).ok_or_else(too_large)?;
        self.try_send(relay, &frame)
    }

    /// Waits for the next control frame from a relay. Frames are taken off the socket by
    /// whichever side reads it (a [`crate::Dht`] always does), so this only waits.
    pub async fn recv_relay_control(&self) -> Datagram {
        loop {
            let filled = self.inner.relay_control_filled.notified();
            let mut filled = std::pin::pin!(filled);
            filled.as_mut().enable();
            if let Some(datagram) = self.try_recv_relay_control() {
                return datagram;
            }
            filled.await;
        }
    }

    fn relayed_read(&self) -> std::sync::RwLockReadGuard<'_, RelayedPaths> {
        self.inner
            .relayed
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn relayed_write(&self) -> std::sync::RwLockWriteGuard<'_, RelayedPaths> {
        self.inner
            .relayed
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The relayed path behind a stand-in address (one branch for any other address).
    fn relayed_path(&self, addr: SocketAddr) -> Option<(SocketAddr, SessionId)> {
        if !RelayedPaths::is_stand_in(addr) {
            return None;
        }
        self.relayed_read().path(addr)
    }

    /// Sends `transmit` (one datagram or a GSO batch of equal segments) to `relay` in data
    /// frames of `session`. The frames are equal too (the header has one size), so a batch
    /// goes out as one GSO batch of frames, whole or not at all: one system call instead of
    /// one per segment, and never a batch cut short by a full buffer half-way.
    fn send_relayed(
        &self,
        relay: SocketAddr,
        session: SessionId,
        transmit: &Transmit<'_>,
    ) -> io::Result<()> {
        let counters = &self.inner.counters;
        self.relayed_read().note_sent(relay);
        let size = transmit
            .segment_size
            .unwrap_or(transmit.contents.len())
            .max(1);
        if transmit
            .contents
            .chunks(size)
            .any(|s| s.len() > MAX_RELAYED_PAYLOAD_BYTES)
        {
            counters.relay_dropped.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        }
        let stride = DATA_HEADER_BYTES + size;
        // A UDP datagram (and so a GSO batch) carries at most 65,507 bytes.
        let per_batch = (MAX_GSO_BYTES / stride).max(1);
        let segments: Vec<&[u8]> = transmit.contents.chunks(size).collect();
        for (i, batch) in segments.chunks(per_batch).enumerate() {
            let mut frames = Vec::with_capacity(batch.len() * stride);
            for segment in batch {
                frames.push(RELAY_DATA_CLASS);
                frames.extend_from_slice(&session.0.to_be_bytes());
                frames.extend_from_slice(segment);
            }
            let sent = if batch.len() == 1 {
                self.try_send(relay, &frames)
            } else {
                self.try_send_batch(relay, &frames, stride)
            };
            match sent {
                Ok(()) => {
                    counters
                        .relayed_sent
                        .fetch_add(batch.len() as u64, Ordering::Relaxed);
                }
                // Nothing sent yet: quinn waits and tries again.
                Err(e) if i == 0 => return Err(e),
                // Part of a transmit went out: the rest is lost, as on a congested link.
                Err(_) => {
                    counters
                        .relay_dropped
                        .fetch_add(batch.len() as u64, Ordering::Relaxed);
                }
            }
        }
        Ok(())
    }

    /// Sends `datagrams`, segments of `stride` bytes (the last may be shorter), to `to` in
    /// one GSO batch now, or fails with `WouldBlock`. Where the OS takes no GSO batch of that
    /// many, they go one by one (the first failure ends it).
    fn try_send_batch(&self, to: SocketAddr, datagrams: &[u8], stride: usize) -> io::Result<()> {
        let count = datagrams.len().div_ceil(stride.max(1));
        if count <= 1 {
            return self.try_send(to, datagrams);
        }
        if self.conditioner().is_some() || count > self.inner.state.max_gso_segments() {
            for datagram in datagrams.chunks(stride.max(1)) {
                self.try_send(to, datagram)?;
            }
            return Ok(());
        }
        let transmit = Transmit {
            destination: self.outgoing(to),
            ecn: None,
            contents: datagrams,
            segment_size: Some(stride),
            src_ip: None,
        };
        self.inner.io.try_io(Interest::WRITABLE, || {
            self.inner.state.send((&self.inner.io).into(), &transmit)
        })
    }

    /// Handles a relay frame where it was read.
    /// A data frame this node forwards joins `batch` if there is one, and goes out at once
    /// if not.
    fn relay_frame(&self, datagram: Datagram, batch: Option<&mut Forwarded>) {
        let counters = &self.inner.counters;
        let data_frame = datagram.data.first() == Some(&RELAY_DATA_CLASS);
        if data_frame {
            // A session this node uses: the payload goes up to quinn from its stand-in.
            if let Ok((session, payload)) = decode_data(&datagram.data) {
                let stand_in = {
                    let relayed = self.relayed_read();
                    let stand_in = relayed.stand_in(datagram.from, session);
                    if stand_in.is_some() {
                        relayed.note_heard(datagram.from);
                    }
                    stand_in
                };
                if let Some(from) = stand_in {
                    if payload == [RELAY_KEEPALIVE] {
                        // Kept the session open; nothing to hand over.
                        return;
                    }
                    if Class::of(payload) == Some(Class::Quic) {
                        counters.relayed_received.fetch_add(1, Ordering::Relaxed);
                        let unwrapped = Datagram {
                            from,
                            to_ip: datagram.to_ip,
                            data: payload.to_vec(),
                        };
                        self.enqueue(unwrapped, Reader::Quic);
                    } else {
                        counters.relay_dropped.fetch_add(1, Ordering::Relaxed);
                    }
                    return;
                }
            }
            let now = clock_now();
            let dest = lock_relay(&self.inner.relay)
                .as_mut()
                .map(|relay| relay.forward(now, datagram.from, &datagram.data));
            match dest {
                Some(Ok(dest)) => match batch {
                    Some(batch) => batch.push(self, dest, &datagram.data),
                    None => self.relay_send(dest, &datagram.data),
                },
                _ => {
                    counters.relay_dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
            return;
        }
        let Ok(control) = Control::decode(&datagram.data) else {
            counters.relay_dropped.fetch_add(1, Ordering::Relaxed);
            return;
        };
        if control.to_relay() {
            let now = clock_now();
            let out = lock_relay(&self.inner.relay)
                .as_mut()
                .map(|relay| relay.handle_control(now, datagram.from, &datagram.data));
            match out {
                Some(out) => {
                    for transmit in out {
                        self.relay_send(transmit.dest, &transmit.frame);
                    }
                }
                None => {
                    counters.relay_dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
            return;
        }
        if let Control::Closed { session } = control {
            // Whichever end this node is, a closed session carries nothing any more; every
            // node drops its path here, registered with relays or not.
            self.relayed_write().remove(datagram.from, session);
        }
        if self.inner.relay_answers.receiver_count() > 0 {
            // Nobody listening is the usual case: then nothing is copied.
            let _ = self.inner.relay_answers.send(datagram.clone());
        }
        let mut queue = lock(&self.inner.relay_control);
        if queue.datagrams.len() >= QUEUE_CAPACITY {
            counters.relay_dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        counters
            .relay_control_received
            .fetch_add(1, Ordering::Relaxed);
        queue.datagrams.push_back(datagram);
        drop(queue);
        self.inner.relay_control_filled.notify_one();
    }

    /// Sends a frame for the relay side now; a full socket buffer loses it (the relay never
    /// waits, so relaying never holds up the reader).
    fn relay_send(&self, to: SocketAddr, frame: &[u8]) {
        let counter = match self.try_send(to, frame) {
            Ok(()) => &self.inner.counters.relay_sent,
            Err(_) => &self.inner.counters.relay_dropped,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Relay data frames read in one batch and forwarded, gathered into GSO batches: a run of
/// frames to one destination, each as long as the first but the last, which may be shorter
/// (what GSO sends).
#[derive(Default)]
struct Forwarded {
    to: Option<SocketAddr>,
    stride: usize,
    frames: Vec<u8>,
    count: usize,
    /// A shorter frame ended the run: the next starts another.
    ended: bool,
}

impl Forwarded {
    fn push(&mut self, socket: &NodeSocket, to: SocketAddr, frame: &[u8]) {
        let joins = self.to == Some(to)
            && !self.ended
            && frame.len() <= self.stride
            && self.frames.len() + frame.len() <= MAX_GSO_BYTES
            && self.count < socket.inner.state.max_gso_segments();
        if !joins {
            self.flush(socket);
            self.to = Some(to);
            self.stride = frame.len();
        }
        self.frames.extend_from_slice(frame);
        self.count += 1;
        self.ended = frame.len() < self.stride;
    }

    /// Sends what was gathered: a full socket buffer loses it (the relay never waits).
    fn flush(&mut self, socket: &NodeSocket) {
        let Some(to) = self.to.take() else {
            return;
        };
        let counters = &socket.inner.counters;
        let sent = socket.try_send_batch(to, &self.frames, self.stride);
        let counter = match sent {
            Ok(()) => &counters.relay_sent,
            Err(_) => &counters.relay_dropped,
        };
        counter.fetch_add(self.count as u64, Ordering::Relaxed);
        self.frames.clear();
        self.count = 0;
        self.ended = false;
    }
}

fn read_lock(reading: &Mutex<()>) -> MutexGuard<'_, ()> {
    // It guards no data.
    reading
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn lock_relay(relay: &Mutex<Option<RelayTable>>) -> MutexGuard<'_, Option<RelayTable>> {
    // The table's methods leave it consistent at every return; a poisoned lock is usable.
    relay
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The time now in both clocks, for the relay table.
fn clock_now() -> crate::wire::time::Now {
    crate::io::now_from(
        (std::time::Instant::now(), std::time::SystemTime::now()),
        std::time::Instant::now(),
    )
}

fn too_large() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        "datagram too large for a relay data frame",
    )
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
