//! Invites, as the original Carrier's friend invites: a request to a friend's named
//! extension that resolves to the friend's reply, or to a timeout.
//!
//! # What is promised
//!
//! - [`Invites::invite`] sends `to` an invite for its `extension` (1 to
//!   [`MAX_EXTENSION_NAME_BYTES`] bytes) with a `bundle` (at most [`MAX_BUNDLE_BYTES`]) and
//!   `data` (1 to [`MAX_INVITE_DATA_BYTES`] bytes), and resolves to the friend's
//!   [`InviteReply`] (`status` 0 confirms with data; any other status refuses with a reason
//!   of at most [`MAX_REASON_BYTES`]), or to [`InviteError::Timeout`] once the
//!   [configured timeout](InviteConfig::with_timeout) (5 minutes by default) passed without
//!   a reply. A friend that is offline is invited once its link is up, within that timeout.
//! - An invite whose extension nobody registered on the friend's node is refused at once
//!   by that node: [`InviteError::UnknownExtension`].
//! - The invitee raises each invite once, in the inbox [`Invites::register_extension`] gave
//!   for its extension, even if the link closed under it and the inviter sent it again on
//!   the next link; [`Invites::pending`] lists those not yet replied to.
//! - [`Invites::reply_invite`] replies once: a second reply is
//!   [`InviteError::AlreadyReplied`], an ID never received (or forgotten once its inviter's
//!   timeout passed) [`InviteError::UnknownInvite`].
//! - Every argument outside its limit is refused before anything is sent, each limit with
//!   its own [`InviteError`] variant.
//!
//! Not promised: invites do not survive a restart of either node (an invite is a live
//! request; an inviter restarted has no caller to give the reply to), and they are not
//! deposited in DHT mailboxes. An invitee holds at most [`MAX_PENDING_INVITES`] unreplied
//! invites ([`MAX_PENDING_PER_FRIEND`] from one friend); more are refused as
//! [`InviteError::Busy`].
//!
//! # On the wire
//!
//! Each invite is one bidirectional stream on the friend's link, on
//! [`Extension::MSG`](carrier_friend::Extension::MSG), whose first byte after the layer
//! header is the `INVITE` stream kind. The inviter writes one frame and finishes its half:
//! a random tag (kept when the invite is sent again on a new link), the time it still waits,
//! the extension, the bundle and the data. The invitee writes one answer and finishes its
//! half: the application's reply, `NoExtension` or `Busy`. Both are postcard, versioned by
//! their enum variant and bounded; a malformed or late frame resets the stream with
//! [`codes::MALFORMED`].
//!
//! # Shape
//!
//! The table of invites in flight is sans-I/O: it takes `now`, decides timeouts, the one
//! raise per tag and the replies remembered, and says when it next needs the time. The
//! driver ([`Invites`]) owns the streams, the extensions' inboxes and one timer task. The
//! messages layer hands it every inbound `INVITE` stream through [`Invites::accept`].
//!
//! # Example
//!
//! ```no_run
//! # async fn example(
//! #     alice: carrier_msg::friend::Friends,
//! #     bob: carrier_msg::friend::Friends,
//! # ) -> Result<(), carrier_msg::invite::InviteError> {
//! use carrier_msg::invite::{InviteConfig, Invites};
//!
//! // Bob takes invites for "chat" (his messages layer hands `accept` his invite streams).
//! let bob_invites = Invites::new(bob.clone(), InviteConfig::default());
//! let mut chat = bob_invites.register_extension("chat")?;
//! let replier = bob_invites.clone();
//! tokio::spawn(async move {
//!     while let Some(invite) = chat.recv().await {
//!         let _ = replier.reply_invite(invite.id, 0, "", b"welcome").await;
//!     }
//! });
//!
//! let alice_invites = Invites::new(alice, InviteConfig::default());
//! let reply = alice_invites.invite(&bob.id(), "chat", b"", b"shall we?").await?;
//! assert!(reply.is_confirmed());
//! assert_eq!(reply.data, b"welcome");
//! # Ok(()) }
//! ```

mod config;
mod driver;
mod error;
mod table;
mod wire;

pub use config::{InviteConfig, DEFAULT_INVITE_TIMEOUT};
pub use driver::{codes, InviteInbox, InviteReply, Invites, HOLD_GRACE, INVITE_FRAME_TIMEOUT};
pub use error::InviteError;
pub use table::{
    IncomingInvite, InviteId, MAX_HELD_INVITE, MAX_PENDING_INVITES, MAX_PENDING_PER_FRIEND,
};
pub use wire::{
    MAX_BUNDLE_BYTES, MAX_EXTENSION_NAME_BYTES, MAX_INVITE_DATA_BYTES, MAX_REASON_BYTES,
};
