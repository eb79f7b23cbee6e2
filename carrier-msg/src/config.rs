//! [`MessengerConfig`]: the messenger's settings, with working defaults.

use std::time::Duration;

/// The messenger's settings. Build from [`MessengerConfig::default`] (or
/// [`MessengerConfig::for_tests`]) with the `with_*` setters.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct MessengerConfig {
    /// How long a message may wait for its receipt before it fails as expired.
    pub message_ttl: Duration,
    /// How long a message sent on a link waits for its receipt before it is sent again.
    pub resend_after: Duration,
    /// How often the messenger checks for messages to send again while nothing happens.
    pub tick: Duration,
}

impl Default for MessengerConfig {
    fn default() -> Self {
        Self {
            message_ttl: Duration::from_secs(30 * 24 * 60 * 60),
            resend_after: Duration::from_secs(10),
            tick: Duration::from_secs(5),
        }
    }
}

impl MessengerConfig {
    /// Short intervals for tests.
    pub fn for_tests() -> Self {
        Self {
            resend_after: Duration::from_secs(1),
            tick: Duration::from_millis(200),
            ..Self::default()
        }
    }

    /// These settings with messages expiring after `ttl` without a receipt.
    pub fn with_message_ttl(mut self, ttl: Duration) -> Self {
        self.message_ttl = ttl;
        self
    }

    /// These settings with a message sent again after `wait` without its receipt.
    pub fn with_resend_after(mut self, wait: Duration) -> Self {
        self.resend_after = wait;
        self
    }

    /// These settings with the messenger looking for work every `tick` while idle.
    pub fn with_tick(mut self, tick: Duration) -> Self {
        self.tick = tick;
        self
    }
}
