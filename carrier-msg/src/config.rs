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
    /// Whether messages for an offline friend are deposited in its DHT mailbox.
    pub mailbox: bool,
    /// How often the node's own mailbox is checked (also at start and when a friend
    /// connects).
    pub mailbox_poll: Duration,
    /// A deposit older than this is made again (also whenever the day changes), so the
    /// letter stays where the friend looks.
    pub republish: Duration,
    /// The wait after a refused deposit; it doubles with each further one, up to
    /// `deposit_retry_max`.
    pub deposit_retry: Duration,
    /// The longest wait between refused deposits.
    pub deposit_retry_max: Duration,
}

impl Default for MessengerConfig {
    fn default() -> Self {
        Self {
            message_ttl: Duration::from_secs(30 * 24 * 60 * 60),
            resend_after: Duration::from_secs(10),
            tick: Duration::from_secs(5),
            mailbox: true,
            mailbox_poll: Duration::from_secs(60),
            republish: Duration::from_secs(12 * 60 * 60),
            deposit_retry: Duration::from_secs(30),
            deposit_retry_max: Duration::from_secs(10 * 60),
        }
    }
}

impl MessengerConfig {
    /// Short intervals for tests.
    pub fn for_tests() -> Self {
        Self {
            resend_after: Duration::from_secs(1),
            tick: Duration::from_millis(200),
            mailbox_poll: Duration::from_millis(500),
            republish: Duration::from_secs(60),
            deposit_retry: Duration::from_millis(500),
            deposit_retry_max: Duration::from_secs(2),
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

    /// These settings with offline delivery through the DHT mailbox on or off.
    pub fn with_mailbox(mut self, on: bool) -> Self {
        self.mailbox = on;
        self
    }

    /// These settings with the own mailbox checked every `interval`.
    pub fn with_mailbox_poll(mut self, interval: Duration) -> Self {
        self.mailbox_poll = interval;
        self
    }

    /// These settings with deposits made again after `interval`.
    pub fn with_republish(mut self, interval: Duration) -> Self {
        self.republish = interval;
        self
    }

    /// These settings with a refused deposit retried after `initial`, doubling up to `max`.
    pub fn with_deposit_retry(mut self, initial: Duration, max: Duration) -> Self {
        self.deposit_retry = initial;
        self.deposit_retry_max = max;
        self
    }
}
