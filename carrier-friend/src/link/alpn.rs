//! The two application protocols a node speaks over QUIC, told apart by ALPN.

/// Links between friends: streams and datagrams of every layer above.
pub const ALPN_FRIEND: &[u8] = b"carrier/1";

/// One friend request from anyone: a single size-bounded frame, then the connection closes.
pub const ALPN_REQUEST: &[u8] = b"carrier-request/1";

/// Which of the two protocols a connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Alpn {
    /// `carrier/1`: a link between friends.
    Friend,
    /// `carrier-request/1`: one friend request.
    Request,
}

impl Alpn {
    /// The protocol's ALPN bytes.
    pub fn as_bytes(self) -> &'static [u8] {
        match self {
            Alpn::Friend => ALPN_FRIEND,
            Alpn::Request => ALPN_REQUEST,
        }
    }

    /// The protocol these ALPN bytes name, if one of ours.
    pub fn from_bytes(bytes: &[u8]) -> Option<Alpn> {
        match bytes {
            ALPN_FRIEND => Some(Alpn::Friend),
            ALPN_REQUEST => Some(Alpn::Request),
            _ => None,
        }
    }
}
