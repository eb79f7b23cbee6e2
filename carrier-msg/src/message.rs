//! What the messenger reports: [`MessageId`], [`Message`], [`MessageEvent`] and the reasons
//! a message waits or fails.

use carrier_friend::dht::id::CarrierId;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

/// A message's ID: 16 bytes the sender draws, the same on both sides.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct MessageId(pub [u8; 16]);

/// The last time-ordered prefix this process gave out ([`MessageId::next`]).
static LAST_PREFIX: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

impl MessageId {
    /// A fresh random ID.
    pub fn random() -> Self {
        let mut bytes = [0u8; 16];
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut bytes);
        Self(bytes)
    }

    /// A fresh ID that sorts after every ID this process made before: 8 bytes (big-endian)
    /// of the Unix time in milliseconds shifted left by 16 bits plus a counter (so 65,536
    /// IDs a millisecond before it runs ahead of the clock), then 8 random bytes. Unique
    /// as a random ID is, and it tells nothing a message does not carry anyway (its send
    /// time). The messenger's tables are keyed by message ID: growing IDs append to their
    /// B-trees instead of rewriting pages all over them.
    pub fn next() -> Self {
        use std::sync::atomic::Ordering;
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| {
                u64::try_from(d.as_millis()).unwrap_or(u64::MAX >> 16)
            });
        let floor = now_ms.min(u64::MAX >> 16) << 16;
        let mut last = LAST_PREFIX.load(Ordering::Relaxed);
        let prefix = loop {
            let prefix = floor.max(last.saturating_add(1));
            match LAST_PREFIX.compare_exchange_weak(
                last,
                prefix,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => break prefix,
                Err(seen) => last = seen,
            }
        };
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&prefix.to_be_bytes());
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut bytes[8..]);
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
    /// The friend's node committed the message: the end of its journey. Reported when the
    /// receipt arrives; after a crash right then it may be reported again (never early).
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

#[cfg(test)]
mod tests {
    use super::MessageId;

    #[test]
    fn ids_from_next_grow_on_every_thread_and_never_repeat() {
        let threads: Vec<_> = (0..4)
            .map(|_| {
                std::thread::spawn(|| {
                    let ids: Vec<MessageId> = (0..50_000).map(|_| MessageId::next()).collect();
                    assert!(
                        ids.windows(2).all(|w| w[0] < w[1]),
                        "an ID sorted before the one made earlier"
                    );
                    ids
                })
            })
            .collect();
        let mut all: Vec<MessageId> = threads
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect();
        let count = all.len();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), count, "an ID was given twice");
        // The prefix is the time: a later ID is not older than the clock when it was made.
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        let first = u64::from_be_bytes(MessageId::next().0[..8].try_into().unwrap()) >> 16;
        assert!(first >= now_ms);
    }
}
