//! Queries in progress: what each is for (its `Kind`) and what it has gathered so far. The
//! node starts and drives them in `lookups.rs` (mailbox queries in `mailbox_commands.rs`).

use std::time::Instant;

use crate::kad::lookup::Lookup;
use crate::node::mailbox_query::{MailboxOp, MailboxRun};
use crate::wire::message::{Contact, Refusal};
use crate::wire::record::{PeerRecord, Value};

/// How many times a bootstrap lookup runs, at most, before it fails: its requests are sent
/// once, so with one seed a single lost datagram would otherwise fail it.
pub const BOOTSTRAP_ROUNDS: usize = 3;

#[derive(Clone, Debug)]
pub(crate) enum Kind {
    FindNode,
    /// A lookup of our own key through `seeds`, started again from them (up to
    /// `rounds_left` more times) when nobody answered.
    Bootstrap {
        seeds: Vec<Contact>,
        rounds_left: usize,
    },
    /// The lookup of our own key that settles a join (`Node::settle`); once it is done,
    /// the empty far buckets are filled.
    Settle,
    Get,
    FindPeer,
    Put {
        value: Value,
        cas: Option<u64>,
    },
    Announce(PeerRecord),
    Ping,
    Mailbox(MailboxOp),
}

#[derive(Clone, Debug, Default)]
pub(super) struct Storing {
    pub(super) awaiting: usize,
    pub(super) acks: usize,
    pub(super) refusals: Vec<Refusal>,
}

/// A query in progress.
#[derive(Clone, Debug)]
pub(crate) struct Query {
    pub(crate) kind: Kind,
    pub(crate) lookup: Lookup,
    pub(super) started: Instant,
    /// Maintenance queries report no event.
    pub(super) internal: bool,
    pub(super) storing: Option<Storing>,
    pub(super) value: Option<Value>,
    pub(super) peer: Option<PeerRecord>,
    /// Once the lookup is done, the mailbox requests to its storers.
    pub(crate) mailbox: Option<MailboxRun>,
    /// Datagrams of this query so far: requests sent (each attempt) and answers received.
    pub(crate) datagrams: u32,
}

/// What the simulator learns of a finished query when tracing is on.
#[cfg(feature = "sim")]
#[derive(Clone, Debug, Default)]
pub(crate) struct QueryTrace {
    /// Every candidate the lookup still held, closest first.
    pub(crate) candidates: Vec<crate::kad::lookup::CandidateTrace>,
    /// Requests sent (each attempt) and answers received, including those after it finished.
    pub(crate) datagrams: u32,
}
