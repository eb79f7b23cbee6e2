//! QUIC links authenticated by Carrier IDs, on the DHT's own UDP socket. Knows nothing of
//! friends: who may hold a link is a [`FriendGate`] the layer above supplies.
//!
//! - [`endpoint`](LinkEndpoint): dials ([`LinkEndpoint::dial`]), sends friend requests
//!   ([`LinkEndpoint::send_request`]), accepts both ([`LinkEndpoint::accept`]).
//! - `accept`: the accept loop, handshakes in progress, the gate applied.
//! - [`gate`](FriendGate): who may hold a `carrier/1` link ([`AllowList`]).
//! - [`alpn`]: `carrier/1` and `carrier-request/1`.
//! - [`close`]: why a connection was closed (codes on the wire, never renumbered).
//! - [`tls`]: TLS 1.3 with raw public keys, ring only.
//! - [`transport`]: the QUIC settings and why.
//! - `request`: the one bounded frame of `carrier-request/1`.
//! - [`StrangerLimit`]: handshakes a stranger's source may start.
//! - `quic_socket`: quinn's view of the shared [`NodeSocket`](carrier_dht::socket::NodeSocket).
//! - [`PathTable`]: one stable mapped address per peer, pointed at its current real path.
//! - [`extension`]: the one-byte extension header of every stream and datagram, and the
//!   router that hands each to the inbox of its extension.
//! - `handle`: [`Link`], [`Accepted`], [`IncomingRequest`].
//! - `dials`: the friend dials in their handshake, by peer ([`DialsInProgress`]).
//! - `topology`: where a link's traffic goes ([`Topology`], [`LinkPath`]).

mod accept;
pub mod alpn;
pub mod close;
mod dialling;
mod dials;
mod endpoint;
mod error;
pub mod extension;
mod gate;
mod handle;
mod path_table;
mod quic_socket;
mod request;
mod stranger_limit;
pub mod tls;
mod topology;
pub mod transport;

pub use accept::HANDSHAKE_TIMEOUT;
pub use alpn::{Alpn, ALPN_FRIEND, ALPN_REQUEST};
pub use dials::DialsInProgress;
pub use endpoint::{LinkConfig, LinkEndpoint, LinkStats, MAX_PENDING_HANDSHAKES};
pub use error::{DialError, EndpointError, PathError, RequestError, TlsError};
pub use gate::{AllowList, FriendGate};
pub use handle::{Accepted, IncomingRequest, Link};
pub use path_table::{
    PathTable, MAPPED_PREFIX, MAX_ALIASES_PER_PEER, MAX_CANDIDATES, MAX_MAPPED_ADDRESSES,
};
pub(crate) use request::{encode as encode_request, send as send_request_frame};
pub use request::{MAX_REQUEST_FRAME_BYTES, REQUEST_TIMEOUT};
pub use stranger_limit::{StrangerLimit, MAX_TRACKED_SOURCES};
pub use topology::{is_local, LinkPath, Topology};
pub use transport::Liveness;
