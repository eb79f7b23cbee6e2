//! What a stream holds of the layer around it without naming it: its session (as a
//! [`StreamHost`]) and, for a stream this node accepted, its place in its link's count.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// What a stream needs of its session. The session module implements it, so `stream` never
/// names `session` (the crate's modules use each other in one direction only).
pub(crate) trait StreamHost: Send + Sync + std::fmt::Debug {
    /// The session's ID.
    fn session_id(&self) -> u64;
    /// The friend the session is with.
    fn peer(&self) -> carrier_msg::friend::dht::id::CarrierId;
    /// The stream `id` is over: the session no longer routes to it.
    fn forget_stream(&self, id: u32);
}

/// A link's count of streams this node accepted, for raising the link's limit.
#[derive(Debug)]
pub(crate) struct LinkCount {
    pub(crate) open: AtomicUsize,
    pub(crate) limit: Mutex<u64>,
    /// Channels open on the link (both ways), each with its share of the receive window.
    pub(crate) channels: Mutex<usize>,
}

/// One accepted stream's place in its link's count, given back when dropped.
#[derive(Debug)]
pub(crate) struct LinkSlot(pub(crate) Arc<LinkCount>);

impl Drop for LinkSlot {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}
