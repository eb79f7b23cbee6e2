//! [`FriendsConfig`]: the friend layer's settings.

use std::time::Duration;

use carrier_dht::punch::PunchTimings;

use crate::link::{Liveness, StrangerLimit, MAX_PENDING_HANDSHAKES};
use crate::outbox::RetryPolicy;

/// Settings of [`Friends`](super::Friends).
///
/// Built from [`FriendsConfig::default`] (for real networks) or [`FriendsConfig::for_tests`]
/// (short intervals on one machine), then changed field by field or with the `with_*`
/// methods; new settings can be added without breaking anyone.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct FriendsConfig {
    /// How undelivered items are retried, and how often they are deposited again.
    pub retry: RetryPolicy,
    /// How often the node's request and message mailboxes are checked.
    pub poll_interval: Duration,
    /// How often the node announces its peer record.
    pub announce_interval: Duration,
    /// How long an announced peer record is valid (at most the DHT's `max_record_ttl`).
    pub record_ttl: Duration,
    /// How long finding a peer and dialling it may take before the mailbox is used.
    pub dial_timeout: Duration,
    /// How long taken item IDs are kept (against a duplicate arriving late).
    pub seen_retention: Duration,
    /// Handshakes a stranger's source may start (friend requests).
    pub stranger_limit: StrangerLimit,
    /// Handshakes in progress at once.
    pub max_pending_handshakes: usize,
    /// The first wait before looking a friend without a link up again; it doubles at each
    /// failed attempt, up to `link_retry_max`. A link that closes starts it over.
    pub link_retry_initial: Duration,
    /// The longest wait between two attempts to reach a friend without a link.
    pub link_retry_max: Duration,
    /// How often the node compares its addresses and relays with those it announced, and
    /// announces again when they changed.
    pub address_check_interval: Duration,
    /// Requests waiting for an answer at most. Beyond it a new requester's request is not
    /// taken (its sender tries again later; a letter stays in the mailbox), so strangers who
    /// know the address cannot fill the disk; rotating the nospam stops them for good.
    pub max_incoming_requests: u64,
    /// Friends looked up and dialled at once, at most. A node with many friends starting up
    /// dials them a batch at a time, longest-waiting first, instead of starting a lookup for
    /// every friend in the same instant.
    pub max_concurrent_dials: usize,
    /// The keep-alive interval of the links this node dials and the silence limit after which
    /// a held link counts as gone (defaults 15 s and 20 s; QUIC's idle timeout follows).
    pub liveness: Liveness,
    /// Hole punching of links that come up through a relay: their timings, or `None` to
    /// leave relayed links relayed (then a friend linked through a relay is dialled again on
    /// its direct paths from time to time instead, as a second connection).
    pub punch: Option<PunchTimings>,
    /// LAN discovery (`friends/lan.rs`): the node advertises a rotating token on its LAN
    /// with mDNS and finds friends there without the DHT. With this on, friends exchange
    /// their LAN keys over their links; the mDNS service runs only where the node's socket
    /// is not bound to a loopback address, so loopback tests and the demo send nothing to
    /// the host's network whatever it says. On by default, off in
    /// [`FriendsConfig::for_tests`].
    pub lan: bool,
}

/// Requests waiting for an answer at most, by default ([`FriendsConfig::max_incoming_requests`]):
/// about 0.5 MiB of user info and hellos at the largest.
pub const MAX_INCOMING_REQUESTS: u64 = 256;

impl Default for FriendsConfig {
    fn default() -> Self {
        Self {
            retry: RetryPolicy::default(),
            poll_interval: Duration::from_secs(60),
            announce_interval: Duration::from_secs(10 * 60),
            record_ttl: Duration::from_secs(60 * 60),
            dial_timeout: Duration::from_secs(10),
            seen_retention: Duration::from_secs(30 * 24 * 60 * 60),
            stranger_limit: StrangerLimit::default(),
            max_pending_handshakes: MAX_PENDING_HANDSHAKES,
            link_retry_initial: Duration::from_secs(1),
            link_retry_max: Duration::from_secs(60),
            address_check_interval: Duration::from_secs(5),
            max_incoming_requests: MAX_INCOMING_REQUESTS,
            max_concurrent_dials: 16,
            liveness: Liveness::default(),
            punch: Some(PunchTimings::default()),
            lan: true,
        }
    }
}

impl FriendsConfig {
    /// Intervals of fractions of a second, so offline delivery, reconnects and address changes
    /// show within seconds: for tests and experiments on one machine. On a real network they
    /// cost traffic and lookups for nothing; use [`FriendsConfig::default`] there.
    pub fn for_tests() -> Self {
        Self {
            retry: RetryPolicy {
                initial: Duration::from_millis(200),
                max: Duration::from_secs(1),
                republish: Duration::from_secs(60),
            },
            poll_interval: Duration::from_millis(500),
            announce_interval: Duration::from_secs(5),
            dial_timeout: Duration::from_secs(2),
            link_retry_initial: Duration::from_millis(200),
            link_retry_max: Duration::from_secs(1),
            address_check_interval: Duration::from_millis(500),
            lan: false,
            ..Self::default()
        }
    }

    /// These settings with links kept alive every `keep_alive_interval` and closed after
    /// `silence_limit` of silence (which must exceed the interval): tests that wait out a
    /// vanished friend use 1 s and 2-3 s.
    pub fn with_liveness(mut self, keep_alive_interval: Duration, silence_limit: Duration) -> Self {
        self.liveness = Liveness {
            keep_alive_interval,
            silence_limit,
        };
        self
    }

    /// These settings with the node's peer record announced every `interval`.
    pub fn with_announce_interval(mut self, interval: Duration) -> Self {
        self.announce_interval = interval;
        self
    }

    /// These settings with mailboxes checked every `interval`.
    pub fn with_poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }

    /// These settings with at most `max` friends looked up and dialled at once.
    pub fn with_max_concurrent_dials(mut self, max: usize) -> Self {
        self.max_concurrent_dials = max;
        self
    }

    /// These settings with friends without a link looked up again after `initial`, doubling
    /// up to `max`.
    pub fn with_link_retry(mut self, initial: Duration, max: Duration) -> Self {
        self.link_retry_initial = initial;
        self.link_retry_max = max;
        self
    }

    /// These settings with LAN discovery on or off.
    pub fn with_lan(mut self, on: bool) -> Self {
        self.lan = on;
        self
    }

    /// These settings with outbox items retried by `retry`.
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }
}
