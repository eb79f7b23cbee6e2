//! Traffic of the layers above on a friend link: every stream and every datagram starts with
//! a one-byte [`Layer`] header, so each upper layer receives only its own traffic.
//!
//! The sending side opens streams and sends datagrams through [`Link::open_bi`],
//! [`Link::open_uni`] and [`Link::send_datagram`], which write the header. The receiving side
//! registers one [`LayerInbox`] per layer with a [`LayerRouter`] and hands each link to
//! [`LayerRouter::serve`], which reads each header and routes the stream or datagram to its
//! layer's inbox. A header that names no known layer is refused, never guessed: the stream is
//! stopped (and, for a bidirectional one, reset) with [`codes::UNKNOWN_LAYER`], and the datagram
//! is dropped and counted ([`RouterStats`]). A known layer that nobody registered is refused
//! the same way with [`codes::NO_RECEIVER`].

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use carrier_dht::id::CarrierId;
use quinn::{RecvStream, SendStream, VarInt};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::link::Link;

/// The upper layer a stream or datagram on a friend link belongs to: the first byte of every
/// stream and every datagram.
///
/// Zero and every value not listed are unknown and refused: a new layer is a new variant, and
/// an old node refuses its traffic instead of handing it to the wrong layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum Layer {
    /// `carrier-msg`: messages between friends.
    Msg = 1,
    /// `carrier-stream`: sessions and their streams.
    Stream = 2,
    /// `carrier-mux`: multiplexed channels.
    Mux = 3,
    /// `carrier-forward`: forwarded TCP ports.
    Forward = 4,
    /// The friend layer's own traffic (presence, user info) on the link.
    Friend = 5,
}

impl Layer {
    /// Every layer, in header order.
    pub const ALL: [Layer; 5] = [
        Layer::Msg,
        Layer::Stream,
        Layer::Mux,
        Layer::Forward,
        Layer::Friend,
    ];

    /// The header byte.
    pub fn byte(self) -> u8 {
        self as u8
    }

    /// The layer a header byte names.
    pub fn from_byte(byte: u8) -> Result<Self, UnknownLayer> {
        Self::ALL
            .into_iter()
            .find(|layer| layer.byte() == byte)
            .ok_or(UnknownLayer(byte))
    }

    /// Splits a received datagram into its layer and payload.
    pub fn split_datagram(datagram: &[u8]) -> Result<(Self, &[u8]), UnknownLayer> {
        match datagram.split_first() {
            Some((&byte, payload)) => Ok((Self::from_byte(byte)?, payload)),
            // An empty datagram names no layer; 0 is never a layer.
            None => Err(UnknownLayer(0)),
        }
    }
}

/// A header byte that names no known [`Layer`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown layer header {0:#04x}")]
pub struct UnknownLayer(pub u8);

/// Application error codes a refused stream is stopped or reset with.
pub mod codes {
    use quinn::VarInt;

    /// The stream's header names no known layer.
    pub const UNKNOWN_LAYER: VarInt = VarInt::from_u32(0x4c01);
    /// The header names a layer that has no receiver on this node.
    pub const NO_RECEIVER: VarInt = VarInt::from_u32(0x4c02);
    /// The layer's inbox stayed full for [`HEADER_TIMEOUT`](super::HEADER_TIMEOUT).
    pub const BUSY: VarInt = VarInt::from_u32(0x4c03);
    /// The header did not arrive within [`HEADER_TIMEOUT`](super::HEADER_TIMEOUT).
    pub const NO_HEADER: VarInt = VarInt::from_u32(0x4c04);
    /// The router's admission refused this peer for this layer (the friend layer admits only
    /// its own traffic from a peer that is not a friend yet).
    pub const NOT_ADMITTED: VarInt = VarInt::from_u32(0x4c05);
}

/// How long a new stream may take to deliver its header byte, and how long it may wait for
/// room in its layer's inbox, before it is refused.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// How many streams and datagrams an inbox holds before the router waits (streams) or drops
/// (datagrams).
pub const INBOX_CAPACITY: usize = 256;

/// Why a stream or datagram could not be sent with a header.
#[derive(Debug, thiserror::Error)]
pub enum LayerSendError {
    /// Opening the stream failed: the link is closed.
    #[error("open a stream: {0}")]
    Connection(#[from] quinn::ConnectionError),
    /// Writing the header failed.
    #[error("write the layer header: {0}")]
    Write(#[from] quinn::WriteError),
    /// Sending the datagram failed (too large, unsupported by the peer, or the link closed).
    #[error("send a datagram: {0}")]
    Datagram(#[from] quinn::SendDatagramError),
}

impl Link {
    /// Opens a bidirectional stream for `layer`; its header is already written.
    pub async fn open_bi(&self, layer: Layer) -> Result<(SendStream, RecvStream), LayerSendError> {
        let (mut send, recv) = self.connection().open_bi().await?;
        send.write_all(&[layer.byte()]).await?;
        Ok((send, recv))
    }

    /// Opens a unidirectional stream for `layer`; its header is already written.
    pub async fn open_uni(&self, layer: Layer) -> Result<SendStream, LayerSendError> {
        let mut send = self.connection().open_uni().await?;
        send.write_all(&[layer.byte()]).await?;
        Ok(send)
    }

    /// Sends `payload` as one unreliable datagram for `layer`, behind its header byte. At most
    /// [`max_datagram_payload`](Self::max_datagram_payload) bytes.
    pub fn send_datagram(&self, layer: Layer, payload: &[u8]) -> Result<(), LayerSendError> {
        let mut datagram = BytesMut::with_capacity(1 + payload.len());
        datagram.put_u8(layer.byte());
        datagram.put_slice(payload);
        self.connection().send_datagram(datagram.freeze())?;
        Ok(())
    }

    /// The largest datagram payload the link takes now (the path's datagram size less the
    /// header byte), or `None` if the peer accepts no datagrams.
    pub fn max_datagram_payload(&self) -> Option<usize> {
        self.connection()
            .max_datagram_size()
            .map(|size| size.saturating_sub(1))
    }
}

/// What a [`LayerInbox`] yields: one stream or datagram a friend sent to this layer, header
/// removed.
#[derive(Debug)]
pub enum Inbound {
    /// A bidirectional stream.
    Bi {
        /// The friend who opened it.
        peer: CarrierId,
        /// Our sending half.
        send: SendStream,
        /// Their sending half, after the header.
        recv: RecvStream,
    },
    /// A unidirectional stream.
    Uni {
        /// The friend who opened it.
        peer: CarrierId,
        /// Their sending half, after the header.
        recv: RecvStream,
    },
    /// A datagram.
    Datagram {
        /// The friend who sent it.
        peer: CarrierId,
        /// The payload, after the header.
        payload: Bytes,
    },
}

impl Inbound {
    /// The friend the stream or datagram came from.
    pub fn peer(&self) -> CarrierId {
        match self {
            Inbound::Bi { peer, .. }
            | Inbound::Uni { peer, .. }
            | Inbound::Datagram { peer, .. } => *peer,
        }
    }
}

/// One layer's receiving end: every stream and datagram any served link carried for it.
#[derive(Debug)]
pub struct LayerInbox {
    layer: Layer,
    receiver: mpsc::Receiver<Inbound>,
}

impl LayerInbox {
    /// The layer this inbox receives for.
    pub fn layer(&self) -> Layer {
        self.layer
    }

    /// The next stream or datagram, or `None` once the router is dropped along with every
    /// link it serves.
    pub async fn recv(&mut self) -> Option<Inbound> {
        self.receiver.recv().await
    }
}

/// A layer registered twice with one [`LayerRouter`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("layer {0:?} already has an inbox")]
pub struct AlreadyRegistered(pub Layer);

/// What a router refused or dropped, for diagnostics and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RouterStats {
    /// Streams refused for an unknown header.
    pub unknown_streams: u64,
    /// Datagrams dropped for an unknown header (or none).
    pub unknown_datagrams: u64,
    /// Streams and datagrams for a layer without an inbox.
    pub no_receiver: u64,
    /// Datagrams dropped because their layer's inbox was full.
    pub full_datagrams: u64,
    /// Streams refused because their header was late or their inbox stayed full.
    pub late_streams: u64,
    /// Streams and datagrams the router's admission refused.
    pub not_admitted: u64,
}

#[derive(Default)]
struct Counters {
    unknown_streams: AtomicU64,
    unknown_datagrams: AtomicU64,
    no_receiver: AtomicU64,
    full_datagrams: AtomicU64,
    late_streams: AtomicU64,
    not_admitted: AtomicU64,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// Whether a peer's stream or datagram for a layer may reach the layer's inbox.
type Admission = Arc<dyn Fn(&CarrierId, Layer) -> bool + Send + Sync>;

#[derive(Default)]
struct Shared {
    inboxes: Mutex<HashMap<Layer, mpsc::Sender<Inbound>>>,
    counters: Counters,
    admission: Option<Admission>,
}

/// Routes the streams and datagrams of friend links to the inbox of the layer each header
/// names. Cheap to clone; every clone shares the inboxes.
#[derive(Clone, Default)]
pub struct LayerRouter {
    shared: Arc<Shared>,
}

impl fmt::Debug for LayerRouter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LayerRouter")
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl LayerRouter {
    /// A router with no inboxes yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// A router with no inboxes yet that routes a stream or datagram only if `admits(peer,
    /// layer)`; anything else is refused with [`codes::NOT_ADMITTED`] (a datagram dropped and
    /// counted as `not_admitted`).
    pub fn with_admission(
        admits: impl Fn(&CarrierId, Layer) -> bool + Send + Sync + 'static,
    ) -> Self {
        Self {
            shared: Arc::new(Shared {
                admission: Some(Arc::new(admits)),
                ..Shared::default()
            }),
        }
    }

    fn admits(&self, peer: &CarrierId, layer: Layer) -> bool {
        self.shared
            .admission
            .as_ref()
            .is_none_or(|admits| admits(peer, layer))
    }

    /// The inbox of `layer`. Each layer has at most one; registering it again is an error
    /// unless the earlier inbox was dropped.
    pub fn register(&self, layer: Layer) -> Result<LayerInbox, AlreadyRegistered> {
        let mut inboxes = self
            .shared
            .inboxes
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if inboxes.get(&layer).is_some_and(|s| !s.is_closed()) {
            return Err(AlreadyRegistered(layer));
        }
        let (sender, receiver) = mpsc::channel(INBOX_CAPACITY);
        inboxes.insert(layer, sender);
        Ok(LayerInbox { layer, receiver })
    }

    /// What the router refused or dropped so far.
    pub fn stats(&self) -> RouterStats {
        let c = &self.shared.counters;
        RouterStats {
            unknown_streams: c.unknown_streams.load(Ordering::Relaxed),
            unknown_datagrams: c.unknown_datagrams.load(Ordering::Relaxed),
            no_receiver: c.no_receiver.load(Ordering::Relaxed),
            full_datagrams: c.full_datagrams.load(Ordering::Relaxed),
            late_streams: c.late_streams.load(Ordering::Relaxed),
            not_admitted: c.not_admitted.load(Ordering::Relaxed),
        }
    }

    fn inbox(&self, layer: Layer) -> Option<mpsc::Sender<Inbound>> {
        let inboxes = self
            .shared
            .inboxes
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        inboxes.get(&layer).filter(|s| !s.is_closed()).cloned()
    }

    /// Serves `link` until it closes: reads the header of every stream and datagram the
    /// friend sends and routes each to its layer's inbox. Each new stream's header is read in
    /// its own task, so a slow stream never holds up the others.
    pub fn serve(&self, link: Link) -> JoinHandle<()> {
        let router = self.clone();
        tokio::spawn(async move { router.route(link).await })
    }

    /// What [`serve`](Self::serve) runs, in the caller's task: returns when `link` closes.
    pub async fn route(self, link: Link) {
        let connection = link.connection().clone();
        let peer = link.peer();
        loop {
            tokio::select! {
                bi = connection.accept_bi() => match bi {
                    Ok((send, recv)) => {
                        tokio::spawn(self.clone().route_stream(peer, Some(send), recv));
                    }
                    Err(_) => return,
                },
                uni = connection.accept_uni() => match uni {
                    Ok(recv) => {
                        tokio::spawn(self.clone().route_stream(peer, None, recv));
                    }
                    Err(_) => return,
                },
                datagram = connection.read_datagram() => match datagram {
                    Ok(datagram) => self.route_datagram(peer, datagram),
                    Err(_) => return,
                },
            }
        }
    }

    fn route_datagram(&self, peer: CarrierId, mut datagram: Bytes) {
        let counters = &self.shared.counters;
        let layer = match Layer::split_datagram(&datagram) {
            Ok((layer, _)) => layer,
            Err(_) => return bump(&counters.unknown_datagrams),
        };
        if !self.admits(&peer, layer) {
            return bump(&counters.not_admitted);
        }
        let Some(inbox) = self.inbox(layer) else {
            return bump(&counters.no_receiver);
        };
        let payload = datagram.split_off(1);
        if inbox.try_send(Inbound::Datagram { peer, payload }).is_err() {
            bump(&counters.full_datagrams);
        }
    }

    async fn route_stream(self, peer: CarrierId, send: Option<SendStream>, mut recv: RecvStream) {
        let counters = &self.shared.counters;
        let mut header = [0u8; 1];
        let read = tokio::time::timeout(HEADER_TIMEOUT, recv.read_exact(&mut header)).await;
        let refuse = |code: VarInt, mut send: Option<SendStream>, mut recv: RecvStream| {
            // The stream may be gone already; a refusal has nobody to tell then.
            let _ = recv.stop(code);
            if let Some(send) = send.as_mut() {
                let _ = send.reset(code);
            }
        };
        match read {
            Ok(Ok(())) => {}
            // The peer finished or reset the stream before its header: nothing to route.
            Ok(Err(_)) => return,
            Err(_) => {
                bump(&counters.late_streams);
                return refuse(codes::NO_HEADER, send, recv);
            }
        }
        let layer = match Layer::from_byte(header[0]) {
            Ok(layer) => layer,
            Err(_) => {
                bump(&counters.unknown_streams);
                return refuse(codes::UNKNOWN_LAYER, send, recv);
            }
        };
        if !self.admits(&peer, layer) {
            bump(&counters.not_admitted);
            return refuse(codes::NOT_ADMITTED, send, recv);
        }
        let Some(inbox) = self.inbox(layer) else {
            bump(&counters.no_receiver);
            return refuse(codes::NO_RECEIVER, send, recv);
        };
        let permit = match tokio::time::timeout(HEADER_TIMEOUT, inbox.reserve()).await {
            Ok(Ok(permit)) => permit,
            Ok(Err(_)) => {
                bump(&counters.no_receiver);
                return refuse(codes::NO_RECEIVER, send, recv);
            }
            Err(_) => {
                bump(&counters.late_streams);
                return refuse(codes::BUSY, send, recv);
            }
        };
        permit.send(match send {
            Some(send) => Inbound::Bi { peer, send, recv },
            None => Inbound::Uni { peer, recv },
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_layer_round_trips_and_nothing_else_is_a_layer() {
        for layer in Layer::ALL {
            assert_eq!(Layer::from_byte(layer.byte()), Ok(layer));
        }
        let known: Vec<u8> = Layer::ALL.iter().map(|l| l.byte()).collect();
        for byte in 0..=u8::MAX {
            if !known.contains(&byte) {
                assert_eq!(Layer::from_byte(byte), Err(UnknownLayer(byte)));
            }
        }
        assert_eq!(Layer::split_datagram(&[]), Err(UnknownLayer(0)));
        assert_eq!(
            Layer::split_datagram(&[1, 7, 8]),
            Ok((Layer::Msg, &[7u8, 8][..]))
        );
    }
}
