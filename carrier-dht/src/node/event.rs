//! What a node reports to its driver: finished queries and datagrams to send.

use std::time::Duration;

use crate::kad::storage::ItemWrite;
use crate::mailbox::storer::MailboxWrite;
use crate::mailbox::{ItemId, MailboxItem};
use crate::wire::key::Key;
use crate::wire::message::{Contact, Refusal};
use crate::wire::path::Path;
use crate::wire::record::{PeerRecord, Value};

/// Names a query started by a command, so its result can be matched.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct QueryId(pub u64);

/// A datagram the driver must send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    /// Where to.
    pub path: Path,
    /// The sealed packet.
    pub contents: Vec<u8>,
}

/// Something the node tells its driver.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
// Events are few and moved once from the core to its driver: boxing the large variant would
// cost an allocation per query for nothing.
#[allow(clippy::large_enum_variant)]
pub enum Event {
    /// A query started by a command has finished.
    QueryFinished(QueryFinished),
    /// Where the node stands changed: its public address, NAT mapping, reachability or
    /// role. Carries all of it as it is now.
    Standing(crate::reach::Standing),
    /// The address several peers agree they see this node at changed (reported once per
    /// change; the same address as [`crate::Node::observed_addr`]).
    ObservedAddr(std::net::SocketAddr),
}

/// The result of a query.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueryFinished {
    /// The query.
    pub id: QueryId,
    /// The key it looked up.
    pub target: Key,
    /// The K closest servers that answered, closest first.
    pub closest: Vec<Contact>,
    /// Hop depth: the greatest depth among `closest` (a seed has depth 1).
    pub rounds: u32,
    /// Time from the command to the result.
    pub elapsed: Duration,
    /// What the query found or did.
    pub outcome: QueryOutcome,
}

/// What a query found or did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum QueryOutcome {
    /// A node lookup (or bootstrap): the answer is `closest`.
    Nodes,
    /// A get: the value found (the highest sequence number for mutable values), if any.
    Value(Option<Value>),
    /// A find_peer: the newest valid record found, if any.
    Peer(Option<PeerRecord>),
    /// A put or announce: how many of the closest servers stored it, and why others refused.
    Stored {
        /// Servers that confirmed the store.
        acks: usize,
        /// Refusals received.
        refusals: Vec<Refusal>,
    },
    /// A ping: whether the node answered.
    Pong(bool),
    /// A mailbox fetch: every item any storer returned, verified against its ID, by ID.
    Mailbox(Vec<MailboxItem>),
    /// A mailbox deposit or delete: per item, how many storers confirmed it, and why others
    /// refused.
    MailboxStored {
        /// Confirmations per item, in the order the items were given.
        acks: Vec<(ItemId, usize)>,
        /// Refusals received.
        refusals: Vec<Refusal>,
    },
}

/// A change to what the node stores for others, which a driver that keeps it on disk commits
/// ([`crate::Node::take_writes`]): the core never calls into a database.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StorageWrite {
    /// A value or peer record.
    Item(ItemWrite),
    /// A mailbox item or tombstone.
    Mailbox(MailboxWrite),
}

/// Why a mailbox deposit or delete did not reach every item's storers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unstored {
    /// Items no storer confirmed.
    pub missing: usize,
    /// Items of the letter (zero when the query reported no items at all).
    pub items: usize,
    /// The refusals received.
    pub refusals: Vec<Refusal>,
}

impl QueryOutcome {
    /// The success rule of a mailbox deposit or delete, the one the driver and the simulator
    /// both apply: every item confirmed by at least one storer, and then the fewest
    /// confirmations of any item. It fails closed: an outcome without any confirmation list
    /// (no items, or not a mailbox store at all) is a failure, not a success with zero
    /// confirmations.
    pub fn every_item_stored(&self) -> Result<usize, Unstored> {
        let (acks, refusals) = match self {
            QueryOutcome::MailboxStored { acks, refusals } => (acks.as_slice(), refusals),
            _ => (&[][..], &Vec::new()),
        };
        let missing = acks.iter().filter(|(_, n)| *n == 0).count();
        match acks.iter().map(|(_, n)| *n).min() {
            Some(fewest) if missing == 0 => Ok(fewest),
            _ => Err(Unstored {
                missing: missing.max(usize::from(acks.is_empty())),
                items: acks.len(),
                refusals: refusals.clone(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mailbox_store_without_acknowledgements_fails_closed() {
        let empty = QueryOutcome::MailboxStored {
            acks: Vec::new(),
            refusals: Vec::new(),
        };
        assert_eq!(
            empty.every_item_stored(),
            Err(Unstored {
                missing: 1,
                items: 0,
                refusals: Vec::new()
            })
        );
        assert!(QueryOutcome::Pong(true).every_item_stored().is_err());
        let id = ItemId([1; 32]);
        let half = QueryOutcome::MailboxStored {
            acks: vec![(id, 2), (ItemId([2; 32]), 0)],
            refusals: vec![Refusal::Quota],
        };
        assert_eq!(half.every_item_stored().map_err(|u| u.missing), Err(1));
        let all = QueryOutcome::MailboxStored {
            acks: vec![(id, 3), (ItemId([2; 32]), 2)],
            refusals: Vec::new(),
        };
        assert_eq!(all.every_item_stored(), Ok(2));
    }
}
