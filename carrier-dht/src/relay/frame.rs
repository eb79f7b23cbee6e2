//! The relay's frames. Two classes, told apart by the first byte like every Carrier datagram
//! on the shared socket (below `0x40`, which marks QUIC):
//!
//! ```text
//! control: | 0x02 | postcard(Control) (at most MAX_CONTROL_BYTES in all) |
//! data:    | 0x03 | session ID (8, big-endian) | payload (opaque: a QUIC packet) |
//! ```
//!
//! A relay forwards a data frame byte for byte, header included, so what leaves it is what
//! came in; the receiving end strips the 9-byte header and hands the payload up.

use std::net::SocketAddr;

use carrier_id::{CarrierId, Context, Keypair, Signature};
use serde::{Deserialize, Serialize};

use crate::wire::bounded::BoundedBytes;
use crate::wire::error::WireError;
use crate::wire::key::Key;
use crate::wire::message::{decode_exact, encode};
pub use crate::wire::path::SessionId;
use crate::wire::token::Token;

/// First byte of a relay control frame.
pub const RELAY_CONTROL_CLASS: u8 = 0x02;
/// First byte of a relay data frame.
pub const RELAY_DATA_CLASS: u8 = 0x03;
/// Bytes of a data frame's header: the class byte and the session ID.
pub const DATA_HEADER_BYTES: usize = 1 + 8;
/// Largest data frame: the largest UDP payload on a 1500-byte IPv6 path (1500 - 40 - 8).
pub const MAX_DATA_FRAME_BYTES: usize = 1452;
/// Largest payload a data frame carries: what a QUIC packet on a relayed path may be.
pub const MAX_RELAYED_PAYLOAD_BYTES: usize = MAX_DATA_FRAME_BYTES - DATA_HEADER_BYTES;
/// Largest control frame, class byte included. The largest (a registration) is about 120.
pub const MAX_CONTROL_BYTES: usize = 256;
/// Most padding a [`Control::Hello`] carries.
pub const MAX_HELLO_PADDING: usize = 64;
/// Signature context of a registration.
pub const REGISTER_CONTEXT: Context = Context::new("carrier/relay/register/v1");

/// Why a relay refused a control frame.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize, thiserror::Error)]
pub enum RelayRefusal {
    /// The token does not prove the sender's address (or has expired): ask again with
    /// [`Control::Hello`].
    #[error("bad or expired address token")]
    BadToken,
    /// The registration's signature is not the claimed ID's over this relay and token.
    #[error("bad signature")]
    BadSignature,
    /// The sender (for a keep-alive) or the target (for a session) is not registered here.
    #[error("not registered")]
    NotRegistered,
    /// The relay holds as many registrations or sessions as it may.
    #[error("relay full")]
    Full,
    /// The sender's source sent too many registrations or new sessions lately.
    #[error("rate limited")]
    RateLimited,
    /// No such session, or the sender is not one of its two ends.
    #[error("no such session")]
    NoSession,
}

/// A relay control frame.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub enum Control {
    /// Client to relay: asks for an address token. Padded so the [`Control::Challenge`] in
    /// reply is no longer than the request (the relay answers nothing shorter).
    Hello {
        /// Zero bytes, only there to make the frame long enough.
        padding: BoundedBytes<MAX_HELLO_PADDING>,
    },
    /// Relay to client: a token for the address the [`Control::Hello`] came from.
    Challenge {
        /// The address token.
        token: Token,
    },
    /// A NATed node registers with the relay under its Carrier ID, from the address the
    /// token proves.
    Register {
        /// The node's Carrier ID.
        id: CarrierId,
        /// A token for the sender's address, from this relay.
        token: Token,
        /// The ID's signature over the relay's key and the token ([`register_signed_bytes`]),
        /// in [`REGISTER_CONTEXT`]: valid at this relay, from this address, for this epoch.
        signature: Signature,
    },
    /// Relay to a registered node: it is registered; keep-alives are due every
    /// `keepalive_secs`.
    Registered {
        /// A fresh token for the node's address, for its keep-alives.
        token: Token,
        /// How often the relay expects a keep-alive.
        keepalive_secs: u16,
    },
    /// A registered node keeps its registration (and its NAT mapping) alive.
    KeepAlive {
        /// A token for the sender's address, from this relay.
        token: Token,
    },
    /// Relay to a registered node: the keep-alive was taken.
    KeepAliveAck {
        /// A fresh token for the next keep-alive.
        token: Token,
    },
    /// A peer asks for a session to a registered node.
    Open {
        /// The registered node's key.
        target: Key,
        /// A token for the sender's address, from this relay (the DHT's or the relay's own).
        token: Token,
    },
    /// Relay to the opener: the session is open; send data frames with this ID.
    Opened {
        /// The new session.
        session: SessionId,
        /// The node it reaches.
        target: Key,
    },
    /// Relay to the registered node: a peer opened a session to it.
    Incoming {
        /// The new session.
        session: SessionId,
        /// The peer's address as the relay sees it (for hole punching later; never a place
        /// the relay sends to on anyone's word).
        peer: SocketAddr,
    },
    /// Either end closes a session.
    Close {
        /// The session.
        session: SessionId,
    },
    /// Relay to an end: the session is gone (closed by the other end, idle, or its
    /// registration expired).
    Closed {
        /// The session.
        session: SessionId,
    },
    /// Relay to sender: the frame was refused.
    Refused {
        /// Why.
        reason: RelayRefusal,
    },
}

/// What a registration signs: the relay's key and the token (which binds the registering
/// node's address and the epoch), so a registration cannot be replayed from another address,
/// at another relay or after the token expires.
pub fn register_signed_bytes(relay: &Key, token: &Token) -> Vec<u8> {
    let mut out = Vec::with_capacity(32 + 16);
    out.extend_from_slice(&relay.0);
    out.extend_from_slice(&token.0);
    out
}

impl Control {
    /// A registration of `keypair`'s ID at `relay`, with the token it gave the sender.
    pub fn register(keypair: &Keypair, relay: &Key, token: Token) -> Self {
        let signature = keypair.sign(REGISTER_CONTEXT, &register_signed_bytes(relay, &token));
        Control::Register {
            id: keypair.id(),
            token,
            signature,
        }
    }

    /// A hello padded to `MAX_HELLO_PADDING` bytes, long enough for any challenge.
    pub fn hello() -> Self {
        Control::Hello {
            padding: BoundedBytes::new(vec![0; MAX_HELLO_PADDING]).unwrap_or_default(),
        }
    }

    /// The frame: the class byte, then the postcard encoding.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        out.push(RELAY_CONTROL_CLASS);
        out.extend_from_slice(&encode(self));
        out
    }

    /// Decodes a control frame strictly: the class byte, the size cap, no trailing bytes.
    pub fn decode(frame: &[u8]) -> Result<Self, WireError> {
        if frame.len() > MAX_CONTROL_BYTES {
            return Err(WireError::Oversized(frame.len()));
        }
        match frame.split_first() {
            None => Err(WireError::TooShort(0)),
            Some((&RELAY_CONTROL_CLASS, body)) => decode_exact(body),
            Some((&class, _)) => Err(WireError::Class(class)),
        }
    }
}

/// A data frame for `session` carrying `payload`, or `None` if the payload is longer than
/// [`MAX_RELAYED_PAYLOAD_BYTES`].
pub fn encode_data(session: SessionId, payload: &[u8]) -> Option<Vec<u8>> {
    if payload.len() > MAX_RELAYED_PAYLOAD_BYTES {
        return None;
    }
    let mut out = Vec::with_capacity(DATA_HEADER_BYTES + payload.len());
    out.push(RELAY_DATA_CLASS);
    out.extend_from_slice(&session.0.to_be_bytes());
    out.extend_from_slice(payload);
    Some(out)
}

/// Splits a data frame into its session and payload, checking class and size. An empty
/// payload is refused: there is nothing to forward.
pub fn decode_data(frame: &[u8]) -> Result<(SessionId, &[u8]), WireError> {
    if frame.len() > MAX_DATA_FRAME_BYTES {
        return Err(WireError::Oversized(frame.len()));
    }
    if frame.len() <= DATA_HEADER_BYTES {
        return Err(WireError::TooShort(frame.len()));
    }
    if frame[0] != RELAY_DATA_CLASS {
        return Err(WireError::Class(frame[0]));
    }
    let mut id = [0u8; 8];
    id.copy_from_slice(&frame[1..DATA_HEADER_BYTES]);
    Ok((
        SessionId(u64::from_be_bytes(id)),
        &frame[DATA_HEADER_BYTES..],
    ))
}

impl Control {
    /// Whether the frame goes from a node to a relay (hello, register, keep-alive, open,
    /// close), as opposed to from a relay to a node.
    pub fn to_relay(&self) -> bool {
        matches!(
            self,
            Control::Hello { .. }
                | Control::Register { .. }
                | Control::KeepAlive { .. }
                | Control::Open { .. }
                | Control::Close { .. }
        )
    }
}

/// Whether a datagram's first byte marks it as a relay frame (control or data).
pub fn is_relay_frame(datagram: &[u8]) -> bool {
    matches!(
        datagram.first(),
        Some(&RELAY_CONTROL_CLASS) | Some(&RELAY_DATA_CLASS)
    )
}
