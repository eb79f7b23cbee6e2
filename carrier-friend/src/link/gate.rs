//! Who may hold a `carrier/1` link: the acceptance hook, and the allow-list that fills it until
//! the friend layer does.
//!
//! rustls's client check runs before ALPN is known to the application, so it admits any valid
//! Carrier ID; the hook runs right after the handshake, and a peer it refuses is closed with
//! [`close::NOT_A_FRIEND`](super::close::NOT_A_FRIEND) before any of its streams is accepted.

use std::collections::HashSet;
use std::sync::{Arc, RwLock};

use carrier_dht::id::CarrierId;

/// Decides whether a peer that proved `peer` may hold a `carrier/1` link with this node.
///
/// Any `Fn(&CarrierId) -> bool + Send + Sync` is one. It runs on the accept path of every
/// friend link, so it must answer quickly and never block.
pub trait FriendGate: Send + Sync + 'static {
    /// Whether `peer` may hold a friend link.
    fn admits(&self, peer: &CarrierId) -> bool;
}

impl<F> FriendGate for F
where
    F: Fn(&CarrierId) -> bool + Send + Sync + 'static,
{
    fn admits(&self, peer: &CarrierId) -> bool {
        self(peer)
    }
}

/// A set of IDs allowed to link: the gate until the friend layer owns the friend list. Cheap
/// to clone; clones share the set.
///
/// ```
/// use carrier_friend::dht::id::Keypair;
/// use carrier_friend::{AllowList, FriendGate};
///
/// let friend = Keypair::generate().id();
/// let allow = AllowList::default();
/// assert!(!allow.admits(&friend));
/// allow.insert(friend);
/// assert!(allow.admits(&friend));
/// ```
#[derive(Clone, Debug, Default)]
pub struct AllowList {
    ids: Arc<RwLock<HashSet<CarrierId>>>,
}

impl AllowList {
    /// Allows `id`; returns whether it was new.
    pub fn insert(&self, id: CarrierId) -> bool {
        self.write().insert(id)
    }

    /// Stops allowing `id` (its live links stay up; the caller closes them); returns whether
    /// it was allowed.
    pub fn remove(&self, id: &CarrierId) -> bool {
        self.write().remove(id)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashSet<CarrierId>> {
        // A set has no half-done state to fear after a panic elsewhere.
        self.ids
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl FriendGate for AllowList {
    fn admits(&self, peer: &CarrierId) -> bool {
        self.ids
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .contains(peer)
    }
}
