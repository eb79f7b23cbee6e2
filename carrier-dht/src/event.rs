//! What a node reports to its driver: finished queries and datagrams to send.

use std::time::Duration;

use crate::key::Key;
use crate::mailbox::{ItemId, MailboxItem};
use crate::message::{Contact, Refusal};
use crate::path::Path;
use crate::record::{PeerRecord, Value};

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
    Standing(crate::reachability::Standing),
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
