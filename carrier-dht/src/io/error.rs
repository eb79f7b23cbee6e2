//! The errors of the [`crate::Dht`] driver and of its mailbox API.

use std::time::Duration;

use carrier_id::KeyFileError;

use crate::io::store::DatabaseError;
use crate::node::error::CommandError;
use crate::wire::message::Refusal;

/// What can go wrong for a [`crate::Dht`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DhtError {
    /// The node knows no other node yet: bootstrap first.
    #[error("not bootstrapped: the node knows no other node")]
    NotBootstrapped,
    /// No bootstrap contact answered.
    #[error("bootstrap failed: none of {tried} contacts answered")]
    BootstrapFailed {
        /// How many contacts were tried.
        tried: usize,
    },
    /// The query did not finish in time.
    #[error("query timed out after {0:?}")]
    Timeout(Duration),
    /// The value is larger than a DHT value may be.
    #[error("value too large: {len} bytes, at most {max}")]
    TooLarge {
        /// Its size.
        len: usize,
        /// The cap.
        max: usize,
    },
    /// No storer accepted the value; here is why they refused.
    #[error("no storer accepted: {refusals:?}")]
    Rejected {
        /// Each refusal received.
        refusals: Vec<Refusal>,
    },
    /// A mailbox deposit or delete failed.
    #[error(transparent)]
    Mailbox(#[from] MailboxError),
    /// The core refused the command.
    #[error(transparent)]
    Command(#[from] CommandError),
    /// The socket failed.
    #[error("socket: {0}")]
    Io(#[from] std::io::Error),
    /// The key file could not be loaded or created.
    #[error(transparent)]
    KeyFile(#[from] KeyFileError),
    /// The database failed.
    #[error(transparent)]
    Database(#[from] DatabaseError),
    /// The node has shut down.
    #[error("the node has shut down")]
    Closed,
    /// A relay refused to open a session (or this node's socket holds too many relayed
    /// paths: `Full`).
    #[error("the relay refused: {0}")]
    Relay(crate::relay::frame::RelayRefusal),
}

/// Why a mailbox deposit or delete failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MailboxError {
    /// The letter is over [`crate::MAX_LETTER_BYTES`].
    #[error("letter too large: {len} bytes, at most {max}")]
    TooLarge {
        /// Its size.
        len: usize,
        /// The cap.
        max: usize,
    },
    /// Storers refused items because a quota (per mailbox, per address prefix, or in total)
    /// is used up.
    #[error("over quota: {missing} of {items} items stored nowhere")]
    Quota {
        /// Items no storer took.
        missing: usize,
        /// Items of the letter.
        items: usize,
    },
    /// Some items were taken by no storer, for other reasons.
    #[error("no storer accepted {missing} of {items} items: {refusals:?}")]
    NoStorerAccepted {
        /// Items no storer took.
        missing: usize,
        /// Items of the letter.
        items: usize,
        /// The refusals received.
        refusals: Vec<Refusal>,
    },
    /// The recipient's ID cannot be sealed to.
    #[error("cannot seal to the recipient: {0}")]
    Recipient(carrier_id::CryptoError),
}
