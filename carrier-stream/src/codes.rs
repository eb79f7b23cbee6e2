//! Application error codes a session's QUIC stream is stopped or reset with. Never
//! renumbered.
use carrier_msg::friend::quinn::VarInt;

/// The stream was closed by its owner.
pub const CLOSED: VarInt = VarInt::from_u32(0x5300);
/// The open frame was malformed or late.
pub const MALFORMED: VarInt = VarInt::from_u32(0x5301);
