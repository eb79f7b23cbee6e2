//! What a [`Forwarder`](crate::Forwarder) refuses or fails at: [`ForwardError`], one variant
//! per case.

use std::net::SocketAddr;

use carrier_mux::stream::msg::friend::dht::id::CarrierId;
use carrier_mux::stream::StreamError;
use carrier_mux::MuxError;

/// What serving, withdrawing and forwarding refuse or fail at. Each case is its own variant,
/// so a caller can tell them apart without reading messages.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ForwardError {
    /// The ID names no friend of this node.
    #[error("{0} is not a friend")]
    UnknownFriend(CarrierId),
    /// No service of this name is offered here (to withdraw it).
    #[error("no service named {0:?}")]
    UnknownService(String),
    /// Not a service name (see [`ServiceName`](crate::ServiceName)).
    #[error("invalid service name {0:?}: 1 to 64 ASCII letters, digits, '.', '_' or '-'")]
    InvalidName(String),
    /// Not a `host:port` target.
    #[error("invalid target {0:?}: expected host:port")]
    InvalidTarget(String),
    /// The local address to listen on is taken.
    #[error("the address {0} is in use")]
    AddressInUse(SocketAddr),
    /// The operation does not fit the state: the forwarder's session handler is taken, a
    /// forwarding closed already, the layer below shut down.
    #[error("wrong state: {0}")]
    WrongState(String),
    /// The friend did not answer in time (the session request).
    #[error("timed out: {0}")]
    Timeout(String),
    /// The friend refused (the session, or a connection's channel), with its reason.
    #[error("refused: {0}")]
    Refused(String),
    /// The local socket failed (binding other than [`AddressInUse`](Self::AddressInUse)).
    #[error("local I/O: {0}")]
    Io(String),
    /// The layers below failed otherwise (the link broke under an open).
    #[error("the layers below: {0}")]
    Below(String),
}

impl ForwardError {
    /// The error a session request to `friend` failed with, in this layer's terms.
    pub(crate) fn from_session(friend: &CarrierId, error: StreamError) -> Self {
        match error {
            StreamError::UnknownFriend(_) | StreamError::NotAFriend(_) => {
                ForwardError::UnknownFriend(*friend)
            }
            StreamError::Timeout(why) => ForwardError::Timeout(why),
            StreamError::Refused { status, reason } => {
                ForwardError::Refused(format!("the session (status {status}): {reason}"))
            }
            StreamError::Closed => {
                ForwardError::WrongState("the sessions layer is shut down".into())
            }
            other => ForwardError::Below(other.to_string()),
        }
    }
}

impl From<MuxError> for ForwardError {
    fn from(error: MuxError) -> Self {
        match error {
            MuxError::Refused(reason) => ForwardError::Refused(reason),
            MuxError::Timeout(why) => ForwardError::Timeout(why),
            MuxError::WrongState(why) => ForwardError::WrongState(why),
            other => ForwardError::Below(other.to_string()),
        }
    }
}
