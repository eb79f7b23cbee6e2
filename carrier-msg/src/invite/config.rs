//! The invites' settings: [`InviteConfig`].

use std::time::Duration;

/// How long an invite waits for its reply by default: 5 minutes.
pub const DEFAULT_INVITE_TIMEOUT: Duration = Duration::from_secs(5 * 60);

/// The settings of [`Invites`](super::Invites). Start from [`Default`] and change what you
/// need with the `with_*` methods.
///
/// ```
/// use std::time::Duration;
/// use carrier_msg::invite::InviteConfig;
///
/// let config = InviteConfig::default().with_timeout(Duration::from_secs(30));
/// assert_eq!(config.timeout(), Duration::from_secs(30));
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct InviteConfig {
    timeout: Duration,
}

impl Default for InviteConfig {
    fn default() -> Self {
        Self {
            timeout: DEFAULT_INVITE_TIMEOUT,
        }
    }
}

impl InviteConfig {
    /// How long an invite waits for its reply, its friend's link included, before it resolves
    /// as [`InviteError::Timeout`](super::InviteError::Timeout). The invitee holds it at most
    /// as long, and never over [`MAX_HELD_INVITE`](super::MAX_HELD_INVITE).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// How long an invite waits for its reply.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }
}
