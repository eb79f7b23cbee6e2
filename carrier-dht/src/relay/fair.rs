//! The relay's bandwidth budget, shared fairly: in each one-second window a session may
//! forward at most the budget divided by the number of sessions active (the larger of this
//! window's count so far and the last window's), and all sessions together at most the budget.
//! One session alone may use all of it; a flooding session cannot take more than its share
//! from the others.

use std::time::Instant;

use crate::guard::rate_limit::PerSecondBudget;

/// A session's use of the current window.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Share {
    window: u64,
    used: u32,
}

/// The shared budget.
#[derive(Debug)]
pub(crate) struct FairBudget {
    budget: PerSecondBudget,
    window: u64,
    active: u32,
    active_before: u32,
}

impl FairBudget {
    pub(crate) fn new(bytes_per_sec: u32) -> Self {
        Self {
            budget: PerSecondBudget::new(bytes_per_sec),
            window: 0,
            active: 0,
            active_before: 0,
        }
    }

    /// Whether `bytes` more may be forwarded for the session whose window use is `share`;
    /// if so they are taken from both.
    pub(crate) fn admit(&mut self, now: Instant, share: &mut Share, bytes: u32) -> bool {
        let window = self.budget.window(now);
        if window != self.window {
            self.active_before = if window == self.window + 1 {
                self.active
            } else {
                0
            };
            self.active = 0;
            self.window = window;
        }
        if share.window != window {
            *share = Share { window, used: 0 };
            self.active += 1;
        }
        let sessions = self.active.max(self.active_before).max(1);
        let fair = self.budget.per_sec() / sessions;
        if share.used.saturating_add(bytes) > fair || !self.budget.take_many(now, bytes) {
            return false;
        }
        share.used += bytes;
        true
    }

    /// Bytes forwarded since the relay started.
    pub(crate) fn total(&self) -> u64 {
        self.budget.total()
    }
}
