//! Relays: a publicly reachable node forwards datagrams between a NATed node registered with
//! it and the peers that open a session to that node through it. Sans-I/O, like the core: the
//! [`RelayTable`](crate::relay::table::RelayTable) takes datagrams with an explicit [`crate::Now`] and says what to send
//! where; the socket (in `io/`) drives it. Uses `wire` and `guard`.
//!
//! - [`frame`](crate::relay::frame): the relay's wire formats (control frames, and data frames with a 9-byte
//!   session header), strictly decoded and bounded;
//! - [`limits`](crate::relay::limits): the relay's limits, each configurable;
//! - [`client`](crate::relay::client): the NATed side: choosing relays, registering, keep-alives;
//! - [`table`](crate::relay::table): the relay side: registrations, sessions, per-source limits, the shared
//!   bandwidth budget and the counters.
//!
//! What makes a relay safe to run (docs/ARCHITECTURE.md, "Relays", has the full list): it
//! forwards only between the two addresses of a session, one of which proved it receives at
//! its address (an address token) and the other proved its Carrier ID (a signature bound to
//! a token); a forwarded frame leaves exactly as it came in, so the relay never sends more
//! bytes than it received; every reply to a control frame is no longer than the frame.

pub mod client;
pub mod frame;
pub mod limits;
pub mod table;

/// The fair split of the bandwidth budget among sessions.
mod fair;
