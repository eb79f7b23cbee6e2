//! Messages between Carrier friends: a durable outbox, receipts, offline delivery through
//! DHT mailboxes (invites come next).
//!
//! A [`Messenger`] runs on the friend layer ([`Friends`](carrier_friend::Friends)) of a node
//! with a data directory; its tables live in the node's database and its traffic on the
//! friend links' [`Extension::MSG`](carrier_friend::Extension::MSG).
//!
//! # What it promises
//!
//! - [`Messenger::send`] takes 1 byte to [`MAX_MESSAGE_BYTES`] for a friend and returns the
//!   message's [`MessageId`] once the outbox has committed it. The outbox keeps it until the
//!   friend's node has committed it ([`MessageEvent::Delivered`]), across reconnects and
//!   restarts of either side; a message to an offline friend is reported
//!   [`Waiting`](MessageEvent::Waiting) and goes when the friend's link is up. A message not
//!   delivered within its time to live fails as [`FailReason::Expired`]; every message to a
//!   removed friend fails as [`FailReason::Removed`].
//! - Messages of up to [`MAX_SMALL_MESSAGE_BYTES`] (64 KiB) carry a gap-free sequence per
//!   friend within the friendship's epoch (a random number drawn for each friendship, so a
//!   friend removed and added again starts afresh) and are raised to the friend in send
//!   order. A larger message travels on a stream of its own with its own ID and the sequence
//!   it follows: small messages sent after it may overtake it, but it is never raised before
//!   the small ones sent before it. An expired message is skipped explicitly, so no gap ever
//!   blocks the ones after it.
//! - The receiver commits each message to its inbox together with its sequence window
//!   before acknowledging it, then raises [`MessageEvent::Message`]. A message is raised once
//!   per start until the application [`ack`](Messenger::ack)s it: again after a restart if it
//!   was not acked, never after its ack is committed. Duplicates (a resend after a lost
//!   receipt, a restarted sender) are acknowledged again and never raised twice.
//! - Small messages are batched: many per link write and per database commit.
//! - For an offline friend, queued small messages are packed into one letter per deposit in
//!   its DHT mailbox ([`MessageEvent::Stored`]: progress, not the end); a refused deposit is
//!   retried later (for a full mailbox, [`WaitReason::MailboxFull`]); a message too large
//!   for a letter waits for the link ([`WaitReason::TooLargeForMailbox`]). The node reads
//!   its own mailbox at start, periodically, when a friend connects and on
//!   [`Messenger::check_mailbox`], commits like a link's batch, acknowledges (by link or by
//!   letter) and deletes what it took. A message that arrives both ways is raised once.
//!
//! # Modules
//!
//! - `wire`: the frames (batches, large messages, receipts as ranges, skips), bounded and
//!   strictly decoded.
//! - `outbox`: the sender's rules without I/O (what to send on a link, resends, expiry).
//! - `window`: the receiver's rule without I/O (which sequences are new).
//! - `store`: the tables in the node's database.
//! - `messenger`: the tokio driver ([`Messenger`]).
//!
//! # Example
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use carrier_msg::friend::dht::{Dht, DhtConfig};
//! use carrier_msg::friend::{Friends, FriendsConfig};
//! use carrier_msg::{Messenger, MessengerConfig, MsgError};
//!
//! let dir = tempfile::tempdir()?;
//! let dht = Dht::bind(DhtConfig::new("127.0.0.1:0".parse()?).with_data_dir(dir.path())).await?;
//! let (friends, _events) = Friends::start(dht, FriendsConfig::default()).await?;
//! let (messenger, _messages) = Messenger::start(friends.clone(), MessengerConfig::default()).await?;
//! assert!(matches!(messenger.send(&friends.id(), b"hi").await, Err(MsgError::Yourself)));
//! assert!(messenger.inbox()?.is_empty());
//! # Ok(()) }
//! ```

pub use carrier_friend as friend;

mod config;
mod error;
mod message;
mod messenger;
mod outbox;
mod store;
mod stream_kind;
mod window;
mod wire;

pub use config::MessengerConfig;
pub use error::MsgError;
pub use message::{FailReason, Message, MessageEvent, MessageEvents, MessageId, WaitReason};
pub use messenger::Messenger;

/// The largest message: 5 MiB.
pub const MAX_MESSAGE_BYTES: usize = wire::MAX_MESSAGE_BYTES;
/// The largest message that keeps the gap-free sequence and goes in a batch: 64 KiB.
pub const MAX_SMALL_MESSAGE_BYTES: usize = wire::MAX_SMALL_BYTES;
