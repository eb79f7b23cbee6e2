//! On the network: the shared UDP socket, the node's database and the DHT's tables in it,
//! bootstrap nodes, and the [`crate::Dht`] driver with its mailbox API and errors. Uses every
//! folder but `sim`.

pub(crate) mod bootstrap;
pub(crate) mod dht;
pub(crate) mod error;
pub(crate) mod mailbox;
pub mod persist;
pub(crate) mod relay_session;
pub(crate) mod relayed;
pub(crate) mod relaying;
pub mod socket;
pub mod store;

use std::sync::{Mutex, MutexGuard};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crate::wire::time::Now;

/// Takes a lock of the driver.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing panics while these locks are held except on a bug already reported; the state
    // stays usable, so a poisoned lock is taken as it is.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The time of `instant`, in both clocks, from the pair taken once at start.
pub(crate) fn now_from(epoch: (Instant, SystemTime), instant: Instant) -> Now {
    let unix = epoch.1 + instant.saturating_duration_since(epoch.0);
    let unix_ms = unix
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    Now::new(instant, unix_ms)
}
