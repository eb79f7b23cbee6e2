//! What the messenger reports: [`MessageId`], [`Message`], [`MessageEvent`] and the reasons
//! a message waits or fails.

use carrier_friend::dht::id::CarrierId;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

/// A message's ID: 16 random bytes the sender draws, the same on both sides.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct MessageId(pub [u8; 16]);

impl MessageId {
    /// A fresh random ID.
    pub fn random() -> Self {
        let mut bytes = [0u8; 16];
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut bytes);
        Self(bytes)
    }

    /// The ID as 32 lowercase hex digits.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Parses 32 hex digits.
    pub fn from_hex(hex: &str) -> Option<Self> {
        if hex.len() != 32 || !hex.is_ascii() {
            return None;
        }
        let mut bytes = [0u8; 16];
        for (i, byte) in bytes.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
        }
        Some(Self(bytes))
    }
}

impl std::fmt::Debug for MessageId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MessageId({})", self.to_hex())
    }
}

impl std::fmt::Display for MessageId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// A message a friend sent, committed to this node's inbox.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// Who sent it.
    pub from: CarrierId,
    /// Its ID; [`Messenger::ack`](crate::Messenger::ack) takes it.
    pub id: MessageId,
    /// The bytes.
    pub bytes: Vec<u8>,
    /// When the sender's application sent it (Unix ms, the sender's clock).
    pub sent_at: u64,
    /// It waited for this node: it was sent while the sender held no link to this node, or
    /// it came through the mailbox.
    pub offline: bool,
}

/// Why a message waits in the outbox.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum WaitReason {
    /// The friend is offline; the message goes when its link is up.
    Offline,
    /// The friend's mailbox refused the letter (its daily quota is spent); the deposit is
    /// tried again later, and the message still goes when the friend comes online.
    MailboxFull,
    /// The message is too large for a mailbox letter; it waits for the friend's link.
    TooLargeForMailbox,
}

/// Why a message will never be delivered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum FailReason {
    /// The friend was removed (by either side) before the message was delivered.
    Removed,
    /// The message was not delivered within its time to live
    /// ([`MessengerConfig::with_message_ttl`](crate::MessengerConfig::with_message_ttl)); the
    /// friend moves past it. The sender gives up: a copy deposited in the friend's mailbox
    /// before may still arrive.
    Expired,
}

/// What the messenger reports, each after the change it reports is committed.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum MessageEvent {
    /// A friend's message, committed to the inbox. Raised again after a restart until it is
    /// acked.
    Message(Message),
    /// The friend's node committed the message: the end of its journey.
    Delivered {
        /// The friend.
        to: CarrierId,
        /// The message.
        id: MessageId,
    },
    /// The message waits in the friend's DHT mailbox: progress, not the end.
    Stored {
        /// The friend.
        to: CarrierId,
        /// The message.
        id: MessageId,
    },
    /// The message waits in the outbox.
    Waiting {
        /// The friend.
        to: CarrierId,
        /// The message.
        id: MessageId,
        /// Why.
        reason: WaitReason,
    },
    /// The message will never be delivered; it left the outbox.
    Failed {
        /// The friend.
        to: CarrierId,
        /// The message.
        id: MessageId,
        /// Why.
        reason: FailReason,
    },
}

/// The receiving end of the messenger's events. Unbounded, so none is lost while the
/// application is busy.
pub type MessageEvents = mpsc::UnboundedReceiver<MessageEvent>;
