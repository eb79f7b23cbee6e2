//! The channels' settings: [`MuxConfig`].

use std::time::Duration;

use carrier_stream::CHANNEL_WINDOW_BYTES;
use tokio::sync::mpsc;

use crate::report::ChannelReport;

/// How long a channel open may wait for the friend's answer (its node's and its
/// application's), by default.
pub const DEFAULT_OPEN_TIMEOUT: Duration = Duration::from_secs(10);

/// The smallest credit a channel may have.
pub const MIN_CREDIT_BYTES: u32 = 16 * 1024;

/// The settings of a [`Mux`](crate::Mux). Start from [`Default`] and change what you need.
///
/// ```
/// use std::time::Duration;
/// use carrier_mux::MuxConfig;
///
/// let config = MuxConfig::default().with_open_timeout(Duration::from_secs(5));
/// assert_eq!(config.open_timeout(), Duration::from_secs(5));
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct MuxConfig {
    open_timeout: Duration,
    credit: u32,
    reports: Option<mpsc::UnboundedSender<ChannelReport>>,
}

impl Default for MuxConfig {
    fn default() -> Self {
        MuxConfig {
            open_timeout: DEFAULT_OPEN_TIMEOUT,
            credit: CHANNEL_WINDOW_BYTES,
            reports: None,
        }
    }
}

impl MuxConfig {
    /// How long a channel open may wait for the friend's answer.
    pub fn with_open_timeout(mut self, timeout: Duration) -> Self {
        self.open_timeout = timeout;
        self
    }

    /// How many bytes the friend may send on one channel beyond what this side's application
    /// read: between [`MIN_CREDIT_BYTES`] and carrier-stream's
    /// [`CHANNEL_WINDOW_BYTES`] (each channel's share of the link's receive window, and the
    /// default).
    pub fn with_credit(mut self, bytes: u32) -> Self {
        self.credit = bytes.clamp(MIN_CREDIT_BYTES, CHANNEL_WINDOW_BYTES);
        self
    }

    /// Where every mux started with this config reports its channels' changes
    /// ([`ChannelReport`]): for one event stream of a node, a log. Default: nowhere.
    pub fn with_reports(mut self, to: mpsc::UnboundedSender<ChannelReport>) -> Self {
        self.reports = Some(to);
        self
    }

    /// Where channel reports go, if anywhere.
    pub(crate) fn reports(&self) -> Option<&mpsc::UnboundedSender<ChannelReport>> {
        self.reports.as_ref()
    }

    /// How long a channel open may wait.
    pub fn open_timeout(&self) -> Duration {
        self.open_timeout
    }

    /// Each channel's credit in bytes.
    pub fn credit(&self) -> u32 {
        self.credit
    }
}
