//! The forwarder's settings: [`ForwardConfig`].

use std::time::Duration;

use carrier_mux::MuxConfig;

/// The bundle of the sessions forwardings run in (one session per friend and direction).
pub const FORWARD_BUNDLE: &str = "forward";

/// How long the serving side waits for a service's TCP connect, by default: shorter than a
/// channel's open timeout, so the friend hears the refusal rather than a timeout.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The settings of a [`Forwarder`](crate::Forwarder). Start from [`Default`].
///
/// ```
/// use std::time::Duration;
/// use carrier_forward::ForwardConfig;
///
/// let config = ForwardConfig::default().with_connect_timeout(Duration::from_secs(2));
/// assert_eq!(config.connect_timeout(), Duration::from_secs(2));
/// ```
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct ForwardConfig {
    connect_timeout: Option<Duration>,
    mux: MuxConfig,
}

impl ForwardConfig {
    /// How long the serving side waits for a service's TCP connect.
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = Some(timeout);
        self
    }

    /// The channels' settings (open timeout, credit), on both sides.
    pub fn with_mux(mut self, mux: MuxConfig) -> Self {
        self.mux = mux;
        self
    }

    /// How long the serving side waits for a service's TCP connect.
    pub fn connect_timeout(&self) -> Duration {
        self.connect_timeout.unwrap_or(DEFAULT_CONNECT_TIMEOUT)
    }

    /// The channels' settings.
    pub fn mux(&self) -> &MuxConfig {
        &self.mux
    }
}
