//! The sessions' settings: [`SessionConfig`].

use std::time::Duration;

/// How long an open (a new stream, a session's close) may wait for the link's stream credit
/// and the friend's answer, by default.
pub const DEFAULT_OPEN_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a session request waits for the friend's answer, by default.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a deactivated session waits for its friend's link to return, by default: a
/// friend that restarts or changes network comes back within it.
pub const DEFAULT_GRACE_PERIOD: Duration = Duration::from_secs(60);
/// Datagrams one datagram-mode stream holds unread, by default; beyond it the newest are
/// dropped and counted for that stream alone.
pub const DEFAULT_DATAGRAM_QUEUE: usize = 1024;

/// The settings of [`Sessions`](crate::Sessions). Start from [`Default`] and change what you
/// need with the `with_*` methods.
///
/// ```
/// use std::time::Duration;
/// use carrier_stream::SessionConfig;
///
/// let config = SessionConfig::default().with_grace_period(Duration::from_secs(5));
/// assert_eq!(config.grace_period(), Duration::from_secs(5));
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct SessionConfig {
    open_timeout: Duration,
    request_timeout: Duration,
    grace_period: Duration,
    datagram_queue: usize,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            open_timeout: DEFAULT_OPEN_TIMEOUT,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            grace_period: DEFAULT_GRACE_PERIOD,
            datagram_queue: DEFAULT_DATAGRAM_QUEUE,
        }
    }
}

impl SessionConfig {
    /// How long an open may wait for stream credit and the friend's answer.
    pub fn with_open_timeout(mut self, timeout: Duration) -> Self {
        self.open_timeout = timeout;
        self
    }

    /// How long a session request waits for the friend's answer.
    pub fn with_request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// How long a deactivated session waits for its friend's link before it closes.
    pub fn with_grace_period(mut self, period: Duration) -> Self {
        self.grace_period = period;
        self
    }

    /// Datagrams one datagram-mode stream holds unread (at least 1).
    pub fn with_datagram_queue(mut self, datagrams: usize) -> Self {
        self.datagram_queue = datagrams.max(1);
        self
    }

    /// How long an open may wait.
    pub fn open_timeout(&self) -> Duration {
        self.open_timeout
    }

    /// How long a session request waits.
    pub fn request_timeout(&self) -> Duration {
        self.request_timeout
    }

    /// How long a deactivated session waits for its link.
    pub fn grace_period(&self) -> Duration {
        self.grace_period
    }

    /// Datagrams one stream holds unread.
    pub fn datagram_queue(&self) -> usize {
        self.datagram_queue
    }
}
