//! Settings of a node, with production defaults.

use std::time::Duration;

use crate::kad::storage::StorageLimits;
use crate::mailbox::storer::MailboxLimits;
use crate::wire::packet::KeyAgreement;

/// Settings of a [`crate::Node`]. `NodeConfig::default()` is for production; simulations and tests
/// change what they need.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// Act as a server from the start and for good (bootstrap nodes, simulations, loopback
    /// tests): such a node never checks its reachability. Otherwise the node starts as a
    /// client, which never enters others' routing tables or storer sets, and becomes a server
    /// once a probe confirms it is reachable ([`NodeConfig::detect_reachability`]) or
    /// [`crate::Node::set_server`] says so.
    pub server: bool,
    /// Whether a node that is not a server from the start checks its reachability with
    /// probes and takes the server role while it is reachable (the default). Off, it stays a
    /// client unless [`crate::Node::set_server`] says otherwise.
    pub detect_reachability: bool,
    /// Distinct reporters (in distinct subnets, or distinct IPs when `max_per_subnet` is
    /// `None`) that must agree on an IP, or on a port, before it is taken as the public one.
    /// At least 2.
    pub observed_quorum: usize,
    /// Time between reachability checks once the answer is settled.
    pub probe_interval: Duration,
    /// Wait before another check after an undecided one; doubles while checks stay
    /// inconclusive, up to `probe_interval`.
    pub probe_retry: Duration,
    /// How long a node waits for the probe it asked for before the check counts as failed.
    pub probe_timeout: Duration,
    /// Probe requests a server passes on or sends for others per second; beyond it, they are
    /// refused (`Quota`).
    pub probes_per_sec: u32,
    /// Lookup requests in flight at once (α).
    pub alpha: usize,
    /// Most entries of one IPv4 /24 or IPv6 /64 in a bucket; `None` lifts the limit (labs).
    pub max_per_subnet: Option<usize>,
    /// Servers a near bucket may hold (K = 8 turns near buckets off): near the node's own
    /// key, where a bucket's subtree holds about this many servers or fewer, the table keeps
    /// them all, so a lookup learns the true K closest one hop sooner
    /// ([`crate::RoutingTable::with_near_capacity`]).
    pub near_bucket_entries: usize,
    /// Candidates kept per bucket to replace entries that stop answering.
    pub replacement_cache: usize,
    /// Consecutive unanswered requests after which an entry leaves the routing table.
    pub max_failures: u8,
    /// A bucket untouched this long is refreshed by a lookup of a random key in it.
    pub refresh_interval: Duration,
    /// How often a storer re-stores each value at the nodes now closest to its key.
    pub republish_interval: Duration,
    /// How long a stored value lives after its last store.
    pub value_ttl: Duration,
    /// Furthest in the future a peer record may expire.
    pub max_record_ttl: Duration,
    /// Requests stamped further than this from our Unix time are refused.
    pub clock_skew: Duration,
    /// Entries of the (sender, transaction) replay cache.
    pub replay_cache_entries: usize,
    /// Entries of the pair-key cache.
    pub pair_key_cache_entries: usize,
    /// Source IPs tracked by the per-IP rate limit.
    pub rate_limit_entries: usize,
    /// Packets per second accepted from one IP.
    pub ip_packets_per_sec: u32,
    /// Packets one IP may send in a burst.
    pub ip_burst: u32,
    /// Diffie-Hellman operations per second, all peers together.
    pub dh_per_sec: u32,
    /// Timeout of a request to a peer with no RTT sample yet.
    pub initial_rto: Duration,
    /// Shortest timeout however fast a peer has been.
    pub min_rto: Duration,
    /// Longest timeout.
    pub max_rto: Duration,
    /// Times a request is sent before the peer counts as not answering.
    pub rpc_attempts: u8,
    /// Requests of a lookup are sent this many times (a lookup also routes around silent
    /// nodes, so fewer than other requests).
    pub lookup_attempts: u8,
    /// Requests awaiting answers, at most.
    pub max_pending_rpcs: usize,
    /// How long an address token stays valid (it is valid for one to two epochs).
    pub token_epoch: Duration,
    /// Peer RTT estimates kept.
    pub rtt_entries: usize,
    /// Storage caps and quotas.
    pub storage: StorageLimits,
    /// Mailbox caps, quotas and the longest item TTL.
    pub mailbox: MailboxLimits,
    /// TTL of the items this node deposits (within storers' [`MailboxLimits::max_ttl`]).
    pub mailbox_ttl: Duration,
    /// How often a storer hands each mailbox on to the nodes now closest to its key.
    pub mailbox_handoff_interval: Duration,
    /// Real key agreement, or the simulation's stand-in. See [`KeyAgreement`].
    pub key_agreement: KeyAgreement,
}

impl Default for NodeConfig {
    fn default() -> Self {
        Self {
            server: false,
            detect_reachability: true,
            observed_quorum: 2,
            probe_interval: Duration::from_secs(10 * 60),
            probe_retry: Duration::from_secs(30),
            probe_timeout: Duration::from_secs(10),
            probes_per_sec: 20,
            alpha: 3,
            max_per_subnet: Some(2),
            near_bucket_entries: 32,
            replacement_cache: 8,
            max_failures: 2,
            refresh_interval: Duration::from_secs(15 * 60),
            republish_interval: Duration::from_secs(60 * 60),
            value_ttl: Duration::from_secs(24 * 60 * 60),
            max_record_ttl: Duration::from_secs(24 * 60 * 60),
            clock_skew: Duration::from_secs(60),
            replay_cache_entries: 65_536,
            pair_key_cache_entries: 4_096,
            rate_limit_entries: 16_384,
            ip_packets_per_sec: 200,
            ip_burst: 400,
            dh_per_sec: 2_000,
            initial_rto: Duration::from_secs(1),
            min_rto: Duration::from_millis(200),
            max_rto: Duration::from_secs(8),
            rpc_attempts: 2,
            lookup_attempts: 2,
            max_pending_rpcs: 4_096,
            token_epoch: Duration::from_secs(5 * 60),
            rtt_entries: 1_024,
            storage: StorageLimits::default(),
            mailbox: MailboxLimits::default(),
            mailbox_ttl: Duration::from_secs(7 * 24 * 60 * 60),
            mailbox_handoff_interval: Duration::from_secs(60 * 60),
            key_agreement: KeyAgreement::Real,
        }
    }
}
