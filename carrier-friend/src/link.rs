//! What the endpoint hands the layer above: authenticated links and received requests.

use carrier_dht::id::CarrierId;

/// A QUIC connection on `carrier/1` with a peer that proved `peer()`: the friend link the
/// layers above open streams and send datagrams on. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Link {
    connection: quinn::Connection,
    peer: CarrierId,
}

impl Link {
    pub(crate) fn new(connection: quinn::Connection, peer: CarrierId) -> Self {
        Self { connection, peer }
    }

    /// The Carrier ID the peer proved in the handshake.
    pub fn peer(&self) -> CarrierId {
        self.peer
    }

    /// The QUIC connection: streams, datagrams, statistics. Its remote address is the peer's
    /// stable mapped address (see [`PathTable`](crate::PathTable)), not a real one.
    pub fn connection(&self) -> &quinn::Connection {
        &self.connection
    }

    /// Closes the link with `code` (see [`close`](crate::close)) and a short reason.
    pub fn close(&self, code: quinn::VarInt, reason: &[u8]) {
        self.connection.close(code, reason);
    }
}

/// A friend request received on `carrier-request/1`: one frame from a peer that proved
/// `from`. The connection that carried it is already closed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IncomingRequest {
    /// The Carrier ID the sender proved.
    pub from: CarrierId,
    /// The frame, at most [`MAX_REQUEST_FRAME_BYTES`](crate::MAX_REQUEST_FRAME_BYTES).
    pub frame: Vec<u8>,
}

/// What [`LinkEndpoint::accept`](crate::LinkEndpoint::accept) yields.
#[derive(Debug)]
pub enum Accepted {
    /// A friend's link, admitted by the [`FriendGate`](crate::FriendGate).
    Link(Link),
    /// A stranger's (or anyone's) friend request.
    Request(IncomingRequest),
}
