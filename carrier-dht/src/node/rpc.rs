//! Requests in flight: why each was sent and what is kept of it until it is answered or
//! times out. The node sends, retries and matches them in `requests.rs`.

use std::time::{Duration, Instant};

use crate::node::event::QueryId;
use crate::wire::message::{Contact, RequestBody};

/// Why a request was sent, so its answer goes to the right place.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Purpose {
    /// Part of a query.
    Query(QueryId),
    /// A ping-back to a new requester, to admit it to the table once it answers.
    Verify,
    /// A mailbox item handed to a server that has just become one of its storers; nobody
    /// waits for the answer.
    HandOn,
    /// Our request for a reachability probe.
    ProbeMe,
    /// A probe passed on or sent for another node; nobody waits for the answer.
    Probe,
}

#[derive(Clone, Debug)]
pub(crate) struct Pending {
    pub(crate) peer: Contact,
    pub(crate) body: RequestBody,
    pub(crate) sent: Instant,
    pub(crate) deadline: Instant,
    pub(crate) attempts_left: u8,
    pub(crate) rto: Duration,
    pub(crate) purpose: Purpose,
    pub(crate) token_retried: bool,
}
