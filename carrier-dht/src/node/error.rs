//! Why a command given to the node could not start.

use crate::mailbox::LetterError;
use crate::wire::bounded::TooLong;
use crate::wire::error::RecordError;
use crate::wire::message::Refusal;

/// Why a command given to a [`crate::Node`] could not start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CommandError {
    /// A payload or list is over its cap.
    #[error(transparent)]
    TooLarge(#[from] TooLong),
    /// The node knows no other node to ask: bootstrap it first.
    #[error("no known nodes: bootstrap first")]
    NotBootstrapped,
    /// The record or value is invalid as given.
    #[error(transparent)]
    Record(#[from] RecordError),
    /// The letter could not be sealed to its recipient.
    #[error(transparent)]
    Letter(#[from] LetterError),
}

/// Why storing a value or record was refused, by a storer or locally.
pub type StoreError = Refusal;
