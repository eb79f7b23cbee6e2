//! Messages between Carrier friends: receipts, invites, offline delivery through DHT mailboxes, a durable outbox.
//!
//! **Status: under construction.** The messages and invites arrive with their issue.
//!
//! See `docs/ARCHITECTURE.md` at the repository root for where this crate sits.

pub use carrier_friend as friend;

pub mod invite;
pub use invite::{
    IncomingInvite, InviteConfig, InviteError, InviteId, InviteInbox, InviteReply, Invites,
};

#[allow(dead_code)] // Used as the messages and invites land.
mod stream_kind;
