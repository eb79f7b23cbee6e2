//! The friend dials still in their handshake, by peer: what lets a node that has just been
//! given a relayed link by a peer make its own dial of that peer go on only where it can
//! still do better, on a direct path ([`LinkEndpoint::keep_dials_direct`](super::LinkEndpoint::keep_dials_direct)).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use carrier_dht::id::CarrierId;

use super::path_table::PathTable;

/// What the dials of one peer still in their handshake can come to, once made to go on only
/// on direct paths.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DialsInProgress {
    /// No dial of the peer is in its handshake (none started, or all ended).
    None,
    /// Every one can only complete on a relayed path (one answered through a relay
    /// already, or all it tries are relayed).
    OnlyRelayed,
    /// One at least still tries a direct path (its relayed paths are dropped).
    Direct,
}

/// The dials in their handshake: each peer with the mapped address its dial uses. Cheap to
/// clone; clones share the list.
#[derive(Clone, Debug, Default)]
pub(crate) struct Dials {
    inner: Arc<Mutex<Vec<(CarrierId, SocketAddr)>>>,
}

impl Dials {
    /// Notes a dial of `peer` on `mapped` until the returned guard is dropped.
    pub(crate) fn start(&self, peer: CarrierId, mapped: SocketAddr) -> DialGuard {
        self.lock().push((peer, mapped));
        DialGuard {
            dials: self.clone(),
            entry: (peer, mapped),
        }
    }

    /// Makes every dial of `peer` in its handshake go on only on direct paths
    /// ([`PathTable::keep_direct`]), and says what they can still come to.
    pub(crate) fn keep_direct(&self, peer: CarrierId, paths: &PathTable) -> DialsInProgress {
        let mapped: Vec<SocketAddr> = self
            .lock()
            .iter()
            .filter(|(p, _)| *p == peer)
            .map(|(_, mapped)| *mapped)
            .collect();
        if mapped.is_empty() {
            return DialsInProgress::None;
        }
        // Every dial is told, not only the first that can go direct.
        let told: Vec<bool> = mapped
            .into_iter()
            .map(|mapped| paths.keep_direct(mapped))
            .collect();
        let direct = told.contains(&true);
        if direct {
            DialsInProgress::Direct
        } else {
            DialsInProgress::OnlyRelayed
        }
    }

    fn lock(&self) -> MutexGuard<'_, Vec<(CarrierId, SocketAddr)>> {
        // A plain list changed in one step: a poisoned one is still consistent.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A dial noted in [`Dials`], forgotten when dropped (the handshake ended or was dropped).
#[derive(Debug)]
pub(crate) struct DialGuard {
    dials: Dials,
    entry: (CarrierId, SocketAddr),
}

impl Drop for DialGuard {
    fn drop(&mut self) {
        let mut list = self.dials.lock();
        if let Some(at) = list.iter().position(|entry| *entry == self.entry) {
            list.swap_remove(at);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use carrier_dht::id::Keypair;
    use carrier_dht::Path;

    #[test]
    fn dials_are_told_while_in_their_handshake_and_forgotten_after() {
        let (paths, dials) = (PathTable::default(), Dials::default());
        let peer = Keypair::generate().id();
        assert_eq!(dials.keep_direct(peer, &paths), DialsInProgress::None);
        let relayed = |session| Path::Relayed {
            relay: "192.0.2.1:4000".parse().unwrap(),
            session: carrier_dht::SessionId(session),
        };
        let direct = Path::Direct("10.0.0.1:1".parse().unwrap());
        let only_relayed = paths.mapped_for(relayed(1)).unwrap();
        let first = dials.start(peer, only_relayed);
        assert_eq!(
            dials.keep_direct(peer, &paths),
            DialsInProgress::OnlyRelayed
        );
        let both = paths.mapped_for_candidates(&[relayed(2), direct]).unwrap();
        let second = dials.start(peer, both);
        assert_eq!(dials.keep_direct(peer, &paths), DialsInProgress::Direct);
        assert_eq!(paths.outbound_all(both), vec![direct]);
        let other = Keypair::generate().id();
        assert_eq!(dials.keep_direct(other, &paths), DialsInProgress::None);
        drop(second);
        assert_eq!(
            dials.keep_direct(peer, &paths),
            DialsInProgress::OnlyRelayed
        );
        drop(first);
        assert_eq!(dials.keep_direct(peer, &paths), DialsInProgress::None);
    }
}
