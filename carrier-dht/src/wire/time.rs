//! The two clocks the core is handed: monotonic time for timers, Unix time for timestamps.

use std::time::Instant;

/// The time at which an input happens, passed in by the driver (the core never reads a clock).
///
/// `instant` drives timers and RTT estimates; `unix_ms` (milliseconds since the Unix epoch)
/// goes into request timestamps and expiry times, which other nodes compare with their own
/// clocks within [`crate::NodeConfig::clock_skew`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Now {
    /// Monotonic time.
    pub instant: Instant,
    /// Wall-clock time in milliseconds since the Unix epoch.
    pub unix_ms: u64,
}

impl Now {
    /// Both clocks, explicitly.
    pub fn new(instant: Instant, unix_ms: u64) -> Self {
        Self { instant, unix_ms }
    }

    /// Wall-clock seconds since the Unix epoch.
    pub fn unix_secs(&self) -> u64 {
        self.unix_ms / 1000
    }
}
