//! Traffic of the layers above on a friend link: every stream and every datagram starts with
//! a one-byte [`Extension`] header, so each upper layer receives only its own traffic.
//!
//! The sending side opens streams and sends datagrams through [`Link::open_bi`],
//! [`Link::open_uni`] and [`Link::send_datagram`], which write the header. The receiving side
//! registers one [`ExtensionInbox`] per layer with a [`ExtensionRouter`] and hands each link to
//! [`ExtensionRouter::serve`], which reads each header and routes the stream or datagram to its
//! layer's inbox. A header that names no known layer is refused, never guessed: the stream is
//! stopped (and, for a bidirectional one, reset) with [`codes::UNKNOWN_EXTENSION`], and the datagram
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

use super::handle::Link;

/// The extension a stream or datagram on a friend link belongs to: the first byte of every
/// stream and every datagram, a number from 1 to 255.
///
/// The layers above register on the link by number: the well-known ones are the constants
/// below; a research fork picks a free number (from [`Extension::FIRST_FREE`] up) and
/// registers it with [`ExtensionRouter::register`], without any change here. Zero is never an
/// extension, and a number the router neither knows nor has an inbox for is refused, never
/// guessed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Extension(u8);

impl Extension {
    /// `carrier-msg`: messages between friends.
    pub const MSG: Extension = Extension(1);
    /// `carrier-stream`: sessions and their streams.
    pub const STREAM: Extension = Extension(2);
    /// `carrier-mux`: multiplexed channels.
    pub const MUX: Extension = Extension(3);
    /// `carrier-forward`: forwarded TCP ports.
    pub const FORWARD: Extension = Extension(4);
    /// The friend layer's own traffic (control items, presence, user info) on the link.
    pub const FRIEND: Extension = Extension(5);
    /// The well-known extensions, in header order.
    pub const WELL_KNOWN: [Extension; 5] = [
        Extension::MSG,
        Extension::STREAM,
        Extension::MUX,
        Extension::FORWARD,
        Extension::FRIEND,
    ];
    /// The lowest number no well-known extension uses: where new ones start.
    pub const FIRST_FREE: u8 = 6;

    /// The extension numbered `byte`; zero is none.
    pub const fn new(byte: u8) -> Result<Self, UnknownExtension> {
        if byte == 0 {
            Err(UnknownExtension(0))
        } else {
            Ok(Extension(byte))
        }
    }

    /// The header byte.
    pub fn byte(self) -> u8 {
        self.0
    }

    /// Whether this is one of the [well-known](Self::WELL_KNOWN) extensions.
    pub fn is_well_known(self) -> bool {
        Self::WELL_KNOWN.contains(&self)
    }

    /// Splits a received datagram into its extension and payload.
    pub fn split_datagram(datagram: &[u8]) -> Result<(Self, &[u8]), UnknownExtension> {
        match datagram.split_first() {
            Some((&byte, payload)) => Ok((Self::new(byte)?, payload)),
            // An empty datagram names no extension; 0 is never one.
            None => Err(UnknownExtension(0)),
        }
    }
}

/// A header byte that names no extension (zero, or a number this node does not know).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown extension header {0:#04x}")]
pub struct UnknownExtension(pub u8);

/// Application error codes a refused stream is stopped or reset with.
pub mod codes {
    use quinn::VarInt;

    /// The stream's header names no known layer.
    pub const UNKNOWN_EXTENSION: VarInt = VarInt::from_u32(0x4c01);
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
pub enum ExtensionSendError {
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
    pub async fn open_bi(
        &self,
        layer: Extension,
    ) -> Result<(SendStream, RecvStream), ExtensionSendError> {
        let (mut send, recv) = self.connection().open_bi().await?;
        send.write_all(&[layer.byte()]).await?;
        Ok((send, recv))
    }

    /// Opens a unidirectional stream for `layer`; its header is already written.
    pub async fn open_uni(&self, layer: Extension) -> Result<SendStream, ExtensionSendError> {
        let mut send = self.connection().open_uni().await?;
        send.write_all(&[layer.byte()]).await?;
        Ok(send)
    }

    /// Sends `payload` as one unreliable datagram for `layer`, behind its header byte. At most
    /// [`max_datagram_payload`](Self::max_datagram_payload) bytes.
    pub fn send_datagram(
        &self,
        layer: Extension,
        payload: &[u8],
    ) -> Result<(), ExtensionSendError> {
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

/// What a [`ExtensionInbox`] yields: one stream or datagram a friend sent to this layer, header
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
pub struct ExtensionInbox {
    layer: Extension,
    receiver: mpsc::Receiver<Inbound>,
}

impl ExtensionInbox {
    /// The layer this inbox receives for.
    pub fn layer(&self) -> Extension {
        self.layer
    }

    /// The next stream or datagram, or `None` once the router is dropped along with every
    /// link it serves.
    pub async fn recv(&mut self) -> Option<Inbound> {
        self.receiver.recv().await
    }
}

/// A layer registered twice with one [`ExtensionRouter`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("layer {0:?} already has an inbox")]
pub struct AlreadyRegistered(pub Extension);

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
type Admission = Arc<dyn Fn(&CarrierId, Extension) -> bool + Send + Sync>;

#[derive(Default)]
struct Shared {
    inboxes: Mutex<HashMap<Extension, mpsc::Sender<Inbound>>>,
    counters: Counters,
    admission: Option<Admission>,
}

/// Routes the streams and datagrams of friend links to the inbox of the layer each header
/// names. Cheap to clone; every clone shares the inboxes.
#[derive(Clone, Default)]
pub struct ExtensionRouter {
    shared: Arc<Shared>,
}

impl fmt::Debug for ExtensionRouter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExtensionRouter")
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl ExtensionRouter {
    /// A router with no inboxes yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// A router with no inboxes yet that routes a stream or datagram only if `admits(peer,
    /// layer)`; anything else is refused with [`codes::NOT_ADMITTED`] (a datagram dropped and
    /// counted as `not_admitted`).
    pub fn with_admission(
        admits: impl Fn(&CarrierId, Extension) -> bool + Send + Sync + 'static,
    ) -> Self {
        Self {
            shared: Arc::new(Shared {
                admission: Some(Arc::new(admits)),
                ..Shared::default()
            }),
        }
    }

    fn admits(&self, peer: &CarrierId, layer: Extension) -> bool {
        self.shared
            .admission
            .as_ref()
            .is_none_or(|admits| admits(peer, layer))
    }

    /// The inbox of `layer`. Each layer has at most one; registering it again is an error
    /// unless the earlier inbox was dropped.
    pub fn register(&self, layer: Extension) -> Result<ExtensionInbox, AlreadyRegistered> {
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
        Ok(ExtensionInbox { layer, receiver })
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

    /// The extension `byte` names, if this router knows it: a well-known one, or one that was
    /// ever registered here.
    fn known(&self, byte: u8) -> Option<Extension> {
        let extension = Extension::new(byte).ok()?;
        if extension.is_well_known() {
            return Some(extension);
        }
        let inboxes = self
            .shared
            .inboxes
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        inboxes.contains_key(&extension).then_some(extension)
    }

    fn inbox(&self, layer: Extension) -> Option<mpsc::Sender<Inbound>> {
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
        let Some(layer) = datagram.first().and_then(|byte| self.known(*byte)) else {
            return bump(&counters.unknown_datagrams);
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
        let layer = match self.known(header[0]) {
            Some(layer) => layer,
            None => {
                bump(&counters.unknown_streams);
                return refuse(codes::UNKNOWN_EXTENSION, send, recv);
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
    fn every_number_but_zero_is_an_extension_and_the_well_known_keep_their_bytes() {
        let bytes: Vec<u8> = Extension::WELL_KNOWN.iter().map(|e| e.byte()).collect();
        assert_eq!(bytes, [1, 2, 3, 4, 5], "on the wire: never renumbered");
        assert_eq!(Extension::new(0), Err(UnknownExtension(0)));
        for byte in 1..=u8::MAX {
            let extension = Extension::new(byte).unwrap();
            assert_eq!(extension.byte(), byte);
            assert_eq!(extension.is_well_known(), byte < Extension::FIRST_FREE);
        }
        assert_eq!(Extension::split_datagram(&[]), Err(UnknownExtension(0)));
        assert_eq!(
            Extension::split_datagram(&[1, 7, 8]),
            Ok((Extension::MSG, &[7u8, 8][..]))
        );
    }

    #[test]
    fn a_router_knows_the_well_known_and_what_was_registered() {
        let router = ExtensionRouter::new();
        assert_eq!(router.known(0), None);
        assert_eq!(router.known(3), Some(Extension::MUX));
        assert_eq!(router.known(42), None);
        let research = Extension::new(42).unwrap();
        let inbox = router.register(research).unwrap();
        assert_eq!(router.known(42), Some(research));
        drop(inbox);
        // Known still: its traffic is refused as having no receiver, not as unknown.
        assert_eq!(router.known(42), Some(research));
    }
}
