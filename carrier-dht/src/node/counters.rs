//! Counters of what a node received, dropped and did: the evidence that limits hold.

/// Running totals since the node started. Every dropped packet increments exactly one
/// `dropped_*` field.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Datagrams handed to the node.
    pub received: u64,
    /// Datagrams sent.
    pub sent: u64,
    /// Dropped: larger than the datagram budget.
    pub dropped_oversized: u64,
    /// Dropped: too short, wrong class or flags, or a frame that does not decode.
    pub dropped_malformed: u64,
    /// Dropped: the source IP exceeded its rate.
    pub dropped_rate_limited: u64,
    /// Dropped: a new pair key was needed but the Diffie-Hellman budget was spent.
    pub dropped_dh_budget: u64,
    /// Dropped: an invalid sender ID or a failed authentication tag.
    pub dropped_unauthenticated: u64,
    /// Dropped: a request stamped outside the clock-skew window.
    pub dropped_stale: u64,
    /// Dropped: a repeated (sender, transaction) pair.
    pub dropped_replayed: u64,
    /// Dropped: a response matching no request in flight (late, duplicated or forged).
    pub dropped_unsolicited: u64,
    /// Dropped: a reply would exceed 3x the request to an unproven address.
    pub dropped_amplification: u64,
    /// Dropped: too many requests in flight to send another.
    pub dropped_pending_full: u64,
    /// Diffie-Hellman operations done.
    pub dh_operations: u64,
    /// Requests answered.
    pub requests_answered: u64,
    /// Requests that went unanswered after all attempts.
    pub rpc_timeouts: u64,
    /// Stores and announces refused, by any check.
    pub stores_refused: u64,
}

impl Counters {
    /// All packets dropped, for any reason.
    pub fn dropped(&self) -> u64 {
        self.dropped_oversized
            + self.dropped_malformed
            + self.dropped_rate_limited
            + self.dropped_dh_budget
            + self.dropped_unauthenticated
            + self.dropped_stale
            + self.dropped_replayed
            + self.dropped_unsolicited
            + self.dropped_amplification
    }
}
