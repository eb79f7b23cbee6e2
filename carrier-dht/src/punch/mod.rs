//! Hole punching: two friends linked through a relay find a direct path and move their link
//! to it. Sans-I/O, like the core: a [`Puncher`](crate::punch::Puncher) per link takes what happened with an explicit
//! `now` and says what to send and where the link should run; carrier-friend drives it.
//!
//! - [`frame`](crate::punch::frame): the probe and its answer, class byte `0x04`, strictly decoded and bounded;
//! - [`key`](crate::punch::key): the link's punch key (from its TLS exporter), the tag that names the link in a
//!   probe and the MAC that proves a probe came from the other end;
//! - [`machine`](crate::punch::machine): the rules of one link: rounds timed by the relayed round trip, probing,
//!   going direct on the first answer, falling back to the relay when the direct path goes
//!   silent, retrying with backoff.
//!
//! A stranger cannot steer a link: a probe or an answer counts only with a MAC under a key
//! both ends derive from their TLS session, bound to the link's tag, the sender's role, a
//! nonce the prober chose and (in an answer) the address the probe was seen from. What one
//! sends is never more than what it received, plus the 1 to 19 bytes of that address.

pub mod frame;
pub mod key;
pub mod machine;

pub use frame::{PunchFrame, MAX_PUNCH_FRAME_BYTES, PUNCH_CLASS};
pub use key::{PunchKey, Role};
pub use machine::{PunchOutput, PunchTimings, Puncher, MAX_CANDIDATES};
