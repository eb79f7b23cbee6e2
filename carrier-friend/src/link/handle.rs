//! What the endpoint hands the layer above: authenticated links and received requests.

use std::net::SocketAddr;
use std::sync::Arc;

use carrier_dht::id::CarrierId;
use quinn::VarInt;

use super::PathTable;
use tokio::sync::oneshot;

/// A QUIC connection on `carrier/1` with a peer that proved `peer()`: the friend link the
/// layers above open streams and send datagrams on. Cheap to clone.
///
/// A link holds its peer's mapped address in the [`PathTable`]; the hold is given back when
/// the last handle of the link is dropped.
#[derive(Clone, Debug)]
pub struct Link {
    connection: quinn::Connection,
    peer: CarrierId,
    /// Kept for its `Drop`: the last handle gives the hold back.
    _hold: Option<Arc<Hold>>,
}

/// One hold on a mapped address of the [`PathTable`], given back when dropped.
#[derive(Debug)]
pub(crate) struct Hold {
    paths: PathTable,
    mapped: SocketAddr,
}

impl Hold {
    /// Takes over a hold already added on `mapped` (by `mapped_for` or `pin`).
    pub(crate) fn taken(paths: &PathTable, mapped: SocketAddr) -> Self {
        Self {
            paths: paths.clone(),
            mapped,
        }
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        self.paths.release(self.mapped);
    }
}

impl Link {
    pub(crate) fn new(connection: quinn::Connection, peer: CarrierId, hold: Option<Hold>) -> Self {
        Self {
            connection,
            peer,
            _hold: hold.map(Arc::new),
        }
    }

    /// The Carrier ID the peer proved in the handshake.
    pub fn peer(&self) -> CarrierId {
        self.peer
    }

    /// The QUIC connection: streams, datagrams, statistics. Its remote address is the peer's
    /// stable mapped address (see [`PathTable`](super::PathTable)), not a real one.
    pub fn connection(&self) -> &quinn::Connection {
        &self.connection
    }

    /// Closes the link with `code` (see [`close`](super::close)) and a short reason.
    pub fn close(&self, code: quinn::VarInt, reason: &[u8]) {
        self.connection.close(code, reason);
    }
}

/// A friend request received on `carrier-request/1`: one frame from a peer that proved
/// `from`.
///
/// The connection that carried it stays open until the taker answers
/// ([`IncomingRequest::answer`]) or drops the request, for at most
/// [`REQUEST_TIMEOUT`](super::REQUEST_TIMEOUT): the sender learns that the request was
/// *taken* (stored by the friend layer), not merely read. Dropping the request closes the
/// connection with [`close::REQUEST_RECEIVED`](super::close::REQUEST_RECEIVED); no answer in time closes it with
/// [`close::REQUEST_NOT_TAKEN`](super::close::REQUEST_NOT_TAKEN).
#[derive(Debug)]
pub struct IncomingRequest {
    /// The Carrier ID the sender proved.
    pub from: CarrierId,
    /// The frame, at most [`MAX_REQUEST_FRAME_BYTES`](super::MAX_REQUEST_FRAME_BYTES).
    pub frame: Vec<u8>,
    answer: Option<oneshot::Sender<VarInt>>,
}

impl IncomingRequest {
    pub(crate) fn new(from: CarrierId, frame: Vec<u8>) -> (Self, oneshot::Receiver<VarInt>) {
        let (answer, answered) = oneshot::channel();
        let request = Self {
            from,
            frame,
            answer: Some(answer),
        };
        (request, answered)
    }

    /// Closes the request's connection with `code` (one of the [`close`](super::close) codes): tells the
    /// sender whether the request was taken.
    pub fn answer(mut self, code: VarInt) {
        if let Some(answer) = self.answer.take() {
            // The connection may be gone already (the sender gave up); nothing to tell then.
            let _ = answer.send(code);
        }
    }
}

/// What [`LinkEndpoint::accept`](super::LinkEndpoint::accept) yields.
#[derive(Debug)]
pub enum Accepted {
    /// A friend's link, admitted by the [`FriendGate`](super::FriendGate).
    Link(Link),
    /// A stranger's (or anyone's) friend request.
    Request(IncomingRequest),
}
