//! A relay's limits. Each is configurable; the defaults are documented in
//! docs/ARCHITECTURE.md ("Relays"). None caps the bytes or the duration of a session by
//! default: a session lives as long as its two ends use it and its target stays registered.

use std::time::Duration;

/// The limits of one relay.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RelayLimits {
    /// Most registrations held at once (default 1024). A registration beyond it is refused
    /// with [`crate::relay::frame::RelayRefusal::Full`]; nothing already registered is evicted.
    pub max_registrations: usize,
    /// Most sessions held at once (default 4096).
    pub max_sessions: usize,
    /// Most sessions to one registered node at once (default 64).
    pub max_sessions_per_target: usize,
    /// Registrations (attempts) per second from one source (an IPv4 address or IPv6 /64),
    /// and the burst saved up (defaults 2 and 16).
    pub registrations_per_source: (u32, u32),
    /// New sessions (attempts) per second from one source, and the burst (defaults 4 and 32).
    pub sessions_per_source: (u32, u32),
    /// Hellos and keep-alives per second from one source, and the burst (defaults 20 and 60).
    pub control_per_source: (u32, u32),
    /// Sources the per-source limits remember (least recently seen forgotten first; default
    /// 4096).
    pub sources_tracked: usize,
    /// Signature checks per second, whatever their source (default 500): a flood of
    /// registrations cannot make the relay spend more CPU than this.
    pub verifications_per_sec: u32,
    /// Bytes per second the relay forwards in all, shared fairly among the sessions that
    /// forward in a second: each gets at most the budget divided by their number (default
    /// 16 MiB/s).
    pub bandwidth_bytes_per_sec: u32,
    /// A registration without a keep-alive for this long is dropped, and its sessions with it
    /// (default 45 s: three missed keep-alives).
    pub registration_timeout: Duration,
    /// How often a registered node should send a keep-alive (default 15 s, as the links do).
    pub keepalive_interval: Duration,
    /// A session that forwarded nothing for this long is dropped (default 60 s; the links
    /// above keep themselves alive every 15 s).
    pub session_idle_timeout: Duration,
    /// Most bytes a session forwards before it is closed; `None` (the default) for no cap.
    pub max_session_bytes: Option<u64>,
    /// Longest a session lives; `None` (the default) for no cap.
    pub max_session_duration: Option<Duration>,
    /// Address tokens change every epoch and are valid for one to two (default 5 minutes, as
    /// the DHT's).
    pub token_epoch: Duration,
}

impl Default for RelayLimits {
    fn default() -> Self {
        Self {
            max_registrations: 1024,
            max_sessions: 4096,
            max_sessions_per_target: 64,
            registrations_per_source: (2, 16),
            sessions_per_source: (4, 32),
            control_per_source: (20, 60),
            sources_tracked: 4096,
            verifications_per_sec: 500,
            bandwidth_bytes_per_sec: 16 * 1024 * 1024,
            registration_timeout: Duration::from_secs(45),
            keepalive_interval: Duration::from_secs(15),
            session_idle_timeout: Duration::from_secs(60),
            max_session_bytes: None,
            max_session_duration: None,
            token_epoch: Duration::from_secs(5 * 60),
        }
    }
}
