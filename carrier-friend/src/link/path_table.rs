//! How QUIC sees paths that change: one stable *mapped* address per peer, and a table from it
//! to the peer's current real [`Path`].
//!
//! quinn never sees a real address. It sees addresses from a reserved IPv6 unique-local range
//! ([`MAPPED_PREFIX`]) that never reaches the wire; the socket under quinn translates them
//! both ways through this table. Re-pointing a peer's mapped address to another path (direct to
//! relayed and back, a new NAT mapping) changes nothing quinn can see: no migration, no path
//! validation, the congestion state carries on, and packets still in flight on the old path are
//! still recognised (old real addresses stay aliases of the mapped one).
//!
//! The table is keyed by [`Path`] itself: a relayed peer is known by its relay *and* its
//! session, so many peers behind one relay are many entries, and a peer moved from a direct
//! path to a relayed one (or from one relay to another) keeps its mapped address.
//!
//! A dial may give a peer several *candidate* paths at once ([`PathTable::mapped_for_candidates`]:
//! a last known address, a record's direct addresses, sessions at its relays): until one of
//! them answers, every datagram quinn sends to the peer goes to each of them, so the dial is
//! one connection however many ways it is tried; the first candidate a datagram comes back
//! from becomes the path, and the others are forgotten (their mappings too, unless they were
//! aliases already).
//!
//! A datagram from a real path never seen before gets a fresh mapped address on first sight
//! (that is how a stranger's first packet reaches quinn). Such entries are not pinned: when the
//! table is full the oldest of them is evicted. Entries of friend links are pinned, counted per
//! holder: [`PathTable::mapped_for`] (a dial) and [`PathTable::pin`] (a friend link accepted)
//! each add a hold, [`PathTable::release`] takes one back (a [`Link`](super::Link) does it when
//! its last handle is dropped, that is when the link is gone). An entry no link holds is
//! evictable again, oldest first, so pins grow with live links, not with every address a
//! friend was ever dialled at. A datagram quinn sends to a mapped address with no entry is
//! dropped, never sent.

use std::collections::{HashMap, VecDeque};
use std::net::{Ipv6Addr, SocketAddr, SocketAddrV6};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use carrier_dht::Path;

use super::error::PathError;

/// The /64 mapped addresses come from: `fd63:6172:7269:6572::/64`, a unique-local (RFC 4193)
/// prefix spelling "carrier". Nothing is ever sent to it; it only names peers to quinn.
pub const MAPPED_PREFIX: [u8; 8] = [0xfd, 0x63, 0x61, 0x72, 0x72, 0x69, 0x65, 0x72];

/// The port every mapped address carries (quinn needs one; the address alone names the peer).
const MAPPED_PORT: u16 = 1;

/// Mapped addresses the table holds at most. First-sight entries beyond it evict the oldest
/// first-sight entry; pinned entries are never evicted.
pub const MAX_MAPPED_ADDRESSES: usize = 16_384;

/// Old real addresses remembered per mapped address, so that packets still in flight on a
/// path the peer was moved off are recognised rather than mapped anew.
pub const MAX_ALIASES_PER_PEER: usize = 4;

/// Candidate paths one dial tries at once, at most: a last known address, a peer record's 8
/// direct addresses and its 3 relays, with room to spare.
pub const MAX_CANDIDATES: usize = 16;

/// The table from stable mapped addresses (what quinn sees) to real paths. Cheap to clone;
/// clones share the table.
///
/// ```
/// use carrier_friend::dht::Path;
/// use carrier_friend::PathTable;
///
/// let table = PathTable::default();
/// let direct = Path::Direct("192.0.2.7:4000".parse().unwrap());
/// let mapped = table.mapped_for(direct).unwrap();
/// assert!(PathTable::is_mapped(mapped));
/// assert_eq!(table.path(mapped), Some(direct));
///
/// // The peer moved: quinn keeps talking to `mapped`, datagrams now go to the new path.
/// let moved = Path::Direct("198.51.100.3:5000".parse().unwrap());
/// table.set_path(mapped, moved).unwrap();
/// assert_eq!(table.path(mapped), Some(moved));
/// ```
#[derive(Clone, Debug, Default)]
pub struct PathTable {
    inner: Arc<RwLock<Table>>,
}

#[derive(Debug, Default)]
struct Table {
    /// Mapped address → its entry.
    entries: HashMap<SocketAddrV6, Entry>,
    /// Real path (current or alias) → mapped address.
    by_real: HashMap<Path, SocketAddrV6>,
    /// Entries that became evictable (first sight, or the last hold released), oldest first;
    /// may name entries since pinned again or removed.
    unpinned: VecDeque<SocketAddrV6>,
    /// The low 64 bits of the last mapped address handed out.
    last: u64,
}

#[derive(Debug)]
struct Entry {
    path: Path,
    /// How many holders (live links, dials in progress) keep the entry from eviction.
    holds: u32,
    /// Dialled by this node or a friend link accepted from it: no stranger, even unheld.
    known: bool,
    /// Real paths that map here: the current one first, then older ones.
    aliases: VecDeque<Path>,
    /// Other paths tried at once until one answers (besides `path`); empty once one did.
    candidates: Vec<Path>,
    /// The dial in progress goes on only on direct paths ([`PathTable::keep_direct`]):
    /// relayed candidates are not added. Cleared when a path answers or a new dial starts.
    direct_only: bool,
    /// Datagrams received from the peer on direct paths (the current one or an alias), not
    /// through a relay: what shows whether a punched path still carries
    /// ([`PathTable::received_direct`]).
    direct_rx: AtomicU64,
}

impl PathTable {
    /// Whether `addr` is in the mapped range (quinn's view), as opposed to a real address.
    pub fn is_mapped(addr: SocketAddr) -> bool {
        match addr {
            SocketAddr::V6(v6) => v6.ip().octets()[..8] == MAPPED_PREFIX,
            SocketAddr::V4(_) => false,
        }
    }

    /// The mapped address for `path`, with one more hold on it (give it back with
    /// [`PathTable::release`]): the one it already has (from an earlier dial or from first
    /// sight), or a new one.
    pub fn mapped_for(&self, path: Path) -> Result<SocketAddr, PathError> {
        self.mapped(path, true)
    }

    /// The mapped address for `path` without pinning a new one: for a connection that lives a
    /// moment (a friend request), so that strangers written to do not fill the table.
    pub(crate) fn mapped_for_a_moment(&self, path: Path) -> Result<SocketAddr, PathError> {
        self.mapped(path, false)
    }

    fn mapped(&self, path: Path, pin: bool) -> Result<SocketAddr, PathError> {
        let real = canonical_path(path);
        let mut table = self.write();
        if let Some(mapped) = table.by_real.get(&real).copied() {
            // Reused only if `path` is where that peer is now, not an old alias of it.
            if let Some(entry) = table.entries.get_mut(&mapped) {
                if entry.path == real {
                    if pin {
                        entry.holds = entry.holds.saturating_add(1);
                        entry.known = true;
                        entry.direct_only = false;
                    }
                    return Ok(SocketAddr::V6(mapped));
                }
            }
        }
        table.insert(real, pin).map(SocketAddr::V6)
    }

    /// The mapped address for a peer tried on every one of `paths` at once (the first is
    /// where datagrams go if none ever answers), with one more hold on it like
    /// [`PathTable::mapped_for`]. A path that already maps to a peer gives that peer's
    /// mapped address, and the other paths join it as candidates. Until a datagram comes
    /// back from one of them, [`outbound_all`](Self::outbound_all) gives them all; the first
    /// that answers becomes the path. At most [`MAX_CANDIDATES`] are kept.
    pub fn mapped_for_candidates(&self, paths: &[Path]) -> Result<SocketAddr, PathError> {
        let paths: Vec<Path> = paths.iter().map(|p| canonical_path(*p)).collect();
        let first = *paths.first().ok_or(PathError::NoCandidates)?;
        let mapped = paths
            .iter()
            .find_map(|path| {
                let table = self.read();
                let mapped = table.by_real.get(path).copied()?;
                table
                    .entries
                    .get(&mapped)
                    .is_some_and(|entry| entry.path == *path)
                    .then_some(*path)
            })
            .unwrap_or(first);
        let mapped = self.mapped_for(mapped)?;
        for path in paths {
            self.add_candidate(mapped, path)?;
        }
        Ok(mapped)
    }

    /// Adds `path` to the candidates tried for `mapped` (a relay session that opened after
    /// the dial began, or one a failover opened). Nothing changes for a path that is the
    /// current one or maps to another peer's link. A path that maps to a first-sight entry
    /// no link holds (a late datagram from a candidate an earlier dial gave up, seen as a
    /// stranger's) is taken from it: a relay hands the same session back to the same opener,
    /// so a failover reopening it must be able to use it.
    pub fn add_candidate(&self, mapped: SocketAddr, path: Path) -> Result<(), PathError> {
        let SocketAddr::V6(key) = mapped else {
            return Err(PathError::NotMapped(mapped));
        };
        let real = canonical_path(path);
        let mut table = self.write();
        if !table.take_stray(real, key) && table.by_real.get(&real).is_some_and(|m| *m != key) {
            return Ok(());
        }
        let Some(entry) = table.entries.get_mut(&key) else {
            return Err(PathError::NotMapped(mapped));
        };
        if entry.path == real || entry.candidates.contains(&real) {
            return Ok(());
        }
        if entry.direct_only && real.is_relayed() {
            return Ok(());
        }
        if entry.candidates.len() + 1 >= MAX_CANDIDATES {
            return Ok(());
        }
        entry.candidates.push(real);
        table.by_real.insert(real, key);
        Ok(())
    }

    /// Makes the dial still being tried on `mapped` go on only on its direct paths: its
    /// relayed candidates are forgotten (a late answer from one is a stranger's), and none is
    /// added from now on. Returns whether a direct path is still tried: `false` if the entry
    /// is gone, if every path tried is relayed, or if a relayed path answered already.
    ///
    /// A friend dialling a peer that has just given it a relayed link calls this: a direct
    /// link is still worth having (it beats the relayed one in the tie-break), a second
    /// relayed one would only race the first.
    pub fn keep_direct(&self, mapped: SocketAddr) -> bool {
        let SocketAddr::V6(key) = mapped else {
            return false;
        };
        let mut table = self.write();
        let Some(entry) = table.entries.get_mut(&key) else {
            return false;
        };
        if entry.candidates.is_empty() {
            // One path only, or one that answered already.
            if !entry.path.is_relayed() {
                entry.direct_only = true;
            }
            return !entry.path.is_relayed();
        }
        let tried: Vec<Path> = std::iter::once(entry.path)
            .chain(entry.candidates.iter().copied())
            .collect();
        let (direct, relayed): (Vec<Path>, Vec<Path>) =
            tried.into_iter().partition(|path| !path.is_relayed());
        let Some(first) = direct.first().copied() else {
            return false;
        };
        entry.direct_only = true;
        entry.path = first;
        entry.candidates = direct[1..].to_vec();
        entry
            .aliases
            .retain(|alias| !alias.is_relayed() && *alias != first);
        entry.aliases.push_front(first);
        for path in relayed {
            if table.by_real.get(&path) == Some(&key) {
                table.by_real.remove(&path);
            }
        }
        table.by_real.insert(first, key);
        true
    }

    /// Every path a datagram to `mapped` goes to now: the path, then the candidates still
    /// tried (none once one answered).
    pub fn outbound_all(&self, mapped: SocketAddr) -> Vec<Path> {
        let SocketAddr::V6(key) = mapped else {
            return Vec::new();
        };
        self.read()
            .entries
            .get(&key)
            .map(|entry| {
                let mut all = Vec::with_capacity(1 + entry.candidates.len());
                all.push(entry.path);
                all.extend_from_slice(&entry.candidates);
                all
            })
            .unwrap_or_default()
    }

    /// Adds a hold on `mapped`, so that strangers' first-sight entries never evict it while
    /// held; returns whether it exists. The endpoint pins the peers of the friend links it
    /// accepts.
    pub fn pin(&self, mapped: SocketAddr) -> bool {
        let SocketAddr::V6(key) = mapped else {
            return false;
        };
        match self.write().entries.get_mut(&key) {
            Some(entry) => {
                entry.holds = entry.holds.saturating_add(1);
                entry.known = true;
                true
            }
            None => false,
        }
    }

    /// Gives back one hold on `mapped` (from [`PathTable::mapped_for`] or [`PathTable::pin`]);
    /// once none is left the entry is evictable again, oldest first, but still maps both ways
    /// until evicted. Returns whether it was held.
    pub fn release(&self, mapped: SocketAddr) -> bool {
        let SocketAddr::V6(key) = mapped else {
            return false;
        };
        let mut table = self.write();
        let Some(entry) = table.entries.get_mut(&key) else {
            return false;
        };
        if entry.holds == 0 {
            return false;
        }
        entry.holds -= 1;
        if entry.holds == 0 {
            table.evictable(key);
        }
        true
    }

    /// Re-points `mapped` to `path`: datagrams quinn sends to `mapped` go to `path` from now
    /// on, and datagrams arriving from `path` are shown to quinn as from `mapped`. The previous
    /// real address stays an alias, for packets still in flight. Holds are unchanged: the
    /// links holding `mapped` keep it. An entry for `path` that no link or dial holds (the
    /// peer's packets on it came first, or a dial of it was given up) is taken over.
    pub fn set_path(&self, mapped: SocketAddr, path: Path) -> Result<(), PathError> {
        let SocketAddr::V6(key) = mapped else {
            return Err(PathError::NotMapped(mapped));
        };
        let real = canonical_path(path);
        let mut table = self.write();
        table.take_unheld(real, key, true);
        let Some(entry) = table.entries.get_mut(&key) else {
            return Err(PathError::NotMapped(mapped));
        };
        tracing::debug!(%mapped, from = ?entry.path, to = ?real, "path set");
        entry.path = real;
        entry.aliases.retain(|alias| *alias != real);
        entry.aliases.push_front(real);
        let dropped = if entry.aliases.len() > MAX_ALIASES_PER_PEER {
            entry.aliases.pop_back()
        } else {
            None
        };
        if let Some(old) = dropped {
            if table.by_real.get(&old) == Some(&key) {
                table.by_real.remove(&old);
            }
        }
        table.by_real.insert(real, key);
        Ok(())
    }

    /// Makes datagrams from `path` show to quinn as from `mapped`, without changing where
    /// datagrams to `mapped` go: a path the peer was seen on (a valid punch probe came from
    /// it), whose QUIC packets may come before this side moves there. Kept as the oldest
    /// alias (so the current path and the last one stay); an entry for `path` that no link
    /// or dial holds (first sight, or a dial given up) is taken over; a path that maps to
    /// another held peer is left alone.
    pub fn add_alias(&self, mapped: SocketAddr, path: Path) -> Result<(), PathError> {
        let SocketAddr::V6(key) = mapped else {
            return Err(PathError::NotMapped(mapped));
        };
        let real = canonical_path(path);
        let mut table = self.write();
        if table.by_real.get(&real).is_some_and(|m| *m == key) {
            return Ok(());
        }
        if !table.take_unheld(real, key, true) && table.by_real.contains_key(&real) {
            tracing::debug!(%mapped, ?real, "alias declined: the path maps to another peer");
            return Ok(());
        }
        let Some(entry) = table.entries.get_mut(&key) else {
            return Err(PathError::NotMapped(mapped));
        };
        let dropped = if entry.aliases.len() >= MAX_ALIASES_PER_PEER {
            // Keep the current path and the one before it; give up the oldest other.
            entry.aliases.pop_back()
        } else {
            None
        };
        entry.aliases.push_back(real);
        if let Some(old) = dropped {
            if table.by_real.get(&old) == Some(&key) {
                table.by_real.remove(&old);
            }
        }
        table.by_real.insert(real, key);
        Ok(())
    }

    /// Forgets `mapped` and every real address that led to it; returns whether it was there.
    /// Live connections to it can no longer send.
    pub fn remove(&self, mapped: SocketAddr) -> bool {
        let SocketAddr::V6(key) = mapped else {
            return false;
        };
        self.write().remove(&key)
    }

    /// The real path `mapped` points to now.
    pub fn path(&self, mapped: SocketAddr) -> Option<Path> {
        let SocketAddr::V6(key) = mapped else {
            return None;
        };
        self.read().entries.get(&key).map(|entry| entry.path)
    }

    /// Whether `mapped` was dialled by this node or had a friend link accepted from it (held
    /// now or not): a peer the endpoint does not treat as a stranger, as long as the entry is
    /// not evicted.
    pub fn is_known(&self, mapped: SocketAddr) -> bool {
        let SocketAddr::V6(key) = mapped else {
            return false;
        };
        self.read()
            .entries
            .get(&key)
            .is_some_and(|entry| entry.known || entry.holds > 0)
    }

    /// Whether `mapped` is pinned: held by a link (or a dial in progress), so never evicted.
    pub fn is_pinned(&self, mapped: SocketAddr) -> bool {
        let SocketAddr::V6(key) = mapped else {
            return false;
        };
        self.read()
            .entries
            .get(&key)
            .is_some_and(|entry| entry.holds > 0)
    }

    /// How many mapped addresses the table holds.
    pub fn len(&self) -> usize {
        self.read().entries.len()
    }

    /// Whether the table holds no mapped address.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The mapped address a datagram from `real` is shown to quinn from, made on first sight.
    /// `None` only when the table is full of pinned entries.
    /// A datagram from one of the candidates of a peer still being tried makes it the path.
    pub(crate) fn inbound(&self, real: Path) -> Option<SocketAddr> {
        let real = canonical_path(real);
        let trying = {
            let table = self.read();
            match table.by_real.get(&real) {
                Some(mapped) => {
                    let entry = table.entries.get(mapped);
                    if entry.is_none_or(|entry| entry.candidates.is_empty()) {
                        if let Some(entry) = entry {
                            entry.received(real);
                        }
                        return Some(SocketAddr::V6(*mapped));
                    }
                    Some(*mapped)
                }
                None => None,
            }
        };
        let mut table = self.write();
        let mapped = match trying {
            Some(mapped) => {
                table.answered(mapped, real);
                mapped
            }
            // Another thread may have mapped it between the two locks.
            None => match table.by_real.get(&real) {
                Some(mapped) => *mapped,
                None => table.insert(real, false).ok()?,
            },
        };
        if let Some(entry) = table.entries.get(&mapped) {
            entry.received(real);
        }
        Some(SocketAddr::V6(mapped))
    }

    /// How many datagrams `mapped`'s peer sent this node on direct paths (its current path
    /// or an older one), as opposed to through a relay; `None` if `mapped` has no entry.
    ///
    /// A link's own receive count cannot tell whether a punched path still carries: once the
    /// peer has fallen back to the relay, its datagrams keep arriving, through the relay,
    /// while everything this side sends on the direct path is lost (decision 127).
    pub(crate) fn received_direct(&self, mapped: SocketAddr) -> Option<u64> {
        let SocketAddr::V6(key) = mapped else {
            return None;
        };
        self.read()
            .entries
            .get(&key)
            .map(|entry| entry.direct_rx.load(Ordering::Relaxed))
    }

    /// The path to send a datagram quinn addressed to `mapped` on, if it has one.
    #[cfg(test)]
    pub(crate) fn outbound(&self, mapped: SocketAddr) -> Option<Path> {
        self.path(mapped)
    }

    fn read(&self) -> RwLockReadGuard<'_, Table> {
        // Every change below keeps the two maps consistent before it can panic (allocation
        // aside), so a poisoned table is still a usable one.
        self.inner
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Table> {
        self.inner
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Entry {
    /// Counts a datagram that arrived from `real`, a path of this entry.
    fn received(&self, real: Path) {
        if !real.is_relayed() {
            self.direct_rx.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl Table {
    /// `real` answered for `mapped`: if it is one of the candidates still tried (or the
    /// path), it becomes the path and the other candidates are forgotten.
    fn answered(&mut self, mapped: SocketAddrV6, real: Path) {
        let Some(entry) = self.entries.get_mut(&mapped) else {
            return;
        };
        entry.direct_only = false;
        if entry.candidates.is_empty() {
            return;
        }
        let others: Vec<Path> = std::mem::take(&mut entry.candidates)
            .into_iter()
            .chain(std::iter::once(entry.path))
            .filter(|path| *path != real)
            .collect();
        if entry.path != real {
            tracing::debug!(%mapped, from = ?entry.path, to = ?real, "candidate answered");
            entry.path = real;
            entry.aliases.retain(|alias| *alias != real);
            entry.aliases.push_front(real);
        }
        let aliases = entry.aliases.clone();
        for other in others {
            if !aliases.contains(&other) && self.by_real.get(&other) == Some(&mapped) {
                self.by_real.remove(&other);
            }
        }
        // The aliases are bounded as in `set_path`.
        if let Some(entry) = self.entries.get_mut(&mapped) {
            while entry.aliases.len() > MAX_ALIASES_PER_PEER {
                if let Some(old) = entry.aliases.pop_back() {
                    if self.by_real.get(&old) == Some(&mapped) {
                        self.by_real.remove(&old);
                    }
                }
            }
        }
    }

    /// If `real` maps to a first-sight entry other than `key` that no link holds, removes
    /// that entry; returns whether it did.
    fn take_stray(&mut self, real: Path, key: SocketAddrV6) -> bool {
        self.take_unheld(real, key, false)
    }

    /// If `real` maps to an entry other than `key` that no link or dial holds, removes that
    /// entry; returns whether it did. With `known_too`, also an entry this node dialled or
    /// accepted a friend link from: a dial given up, a link gone. For a path the peer of
    /// `key` was just proven to be on (a punch probe made with its link's key), such an
    /// entry is a dead one's, and left in place it would show the peer's packets to quinn
    /// as from another address (decision 128).
    fn take_unheld(&mut self, real: Path, key: SocketAddrV6, known_too: bool) -> bool {
        let Some(other) = self.by_real.get(&real).copied().filter(|m| *m != key) else {
            return false;
        };
        let stray = self
            .entries
            .get(&other)
            .is_some_and(|entry| entry.holds == 0 && (known_too || !entry.known));
        if stray {
            self.remove(&other);
        }
        stray
    }

    fn insert(&mut self, real: Path, pinned: bool) -> Result<SocketAddrV6, PathError> {
        if self.entries.len() >= MAX_MAPPED_ADDRESSES {
            self.evict_one()?;
        }
        self.last = self.last.wrapping_add(1);
        let mut octets = [0u8; 16];
        octets[..8].copy_from_slice(&MAPPED_PREFIX);
        octets[8..].copy_from_slice(&self.last.to_be_bytes());
        let mapped = SocketAddrV6::new(Ipv6Addr::from(octets), MAPPED_PORT, 0, 0);
        self.entries.insert(
            mapped,
            Entry {
                path: real,
                holds: u32::from(pinned),
                known: pinned,
                aliases: VecDeque::from([real]),
                candidates: Vec::new(),
                direct_only: false,
                direct_rx: AtomicU64::new(0),
            },
        );
        self.by_real.insert(real, mapped);
        if !pinned {
            self.evictable(mapped);
        }
        tracing::trace!(?real, %mapped, pinned, "path mapped");
        Ok(mapped)
    }

    /// Queues `mapped` for eviction once the table is full. Stale queue items (entries held
    /// again or gone) are skipped at eviction and dropped here when they pile up.
    fn evictable(&mut self, mapped: SocketAddrV6) {
        self.unpinned.push_back(mapped);
        if self.unpinned.len() > 2 * MAX_MAPPED_ADDRESSES {
            let entries = &self.entries;
            let mut queued = std::collections::HashSet::new();
            self.unpinned
                .retain(|m| entries.get(m).is_some_and(|e| e.holds == 0) && queued.insert(*m));
        }
    }

    fn evict_one(&mut self) -> Result<(), PathError> {
        while let Some(oldest) = self.unpinned.pop_front() {
            if self
                .entries
                .get(&oldest)
                .is_some_and(|entry| entry.holds == 0)
            {
                self.remove(&oldest);
                return Ok(());
            }
        }
        Err(PathError::Full)
    }

    fn remove(&mut self, mapped: &SocketAddrV6) -> bool {
        let Some(entry) = self.entries.remove(mapped) else {
            return false;
        };
        tracing::trace!(%mapped, path = ?entry.path, "mapping removed");
        for alias in entry.aliases.into_iter().chain(entry.candidates) {
            if self.by_real.get(&alias) == Some(mapped) {
                self.by_real.remove(&alias);
            }
        }
        true
    }
}

/// `path` with its addresses as [`carrier_dht::canonical_addr`] writes them, so a peer has one
/// key whichever way a socket reported its address.
fn canonical_path(path: Path) -> Path {
    match path {
        Path::Direct(addr) => Path::Direct(carrier_dht::canonical_addr(addr)),
        Path::Relayed { relay, session } => Path::Relayed {
            relay: carrier_dht::canonical_addr(relay),
            session,
        },
        // `Path` is non-exhaustive: a kind of path to come is kept as it is.
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::IpAddr;

    fn direct(s: &str) -> Path {
        Path::Direct(s.parse().unwrap())
    }

    #[test]
    fn first_sight_maps_once_and_both_ways() {
        let table = PathTable::default();
        let real: SocketAddr = "127.0.0.1:4000".parse().unwrap();
        let mapped = table.inbound(Path::Direct(real)).unwrap();
        assert!(PathTable::is_mapped(mapped));
        assert!(!PathTable::is_mapped(real));
        assert_eq!(table.inbound(Path::Direct(real)), Some(mapped));
        assert_eq!(table.outbound(mapped), Some(Path::Direct(real)));
        assert!(!table.is_pinned(mapped));
        // Dialing the same address reuses the mapping and pins it.
        assert_eq!(table.mapped_for(Path::Direct(real)).unwrap(), mapped);
        assert!(table.is_pinned(mapped));
        let v4_mapped: SocketAddr = "[::ffff:127.0.0.1]:4000".parse().unwrap();
        assert_eq!(
            table.inbound(Path::Direct(v4_mapped)),
            Some(mapped),
            "one peer, one mapping"
        );
    }

    #[test]
    fn an_alias_maps_inbound_only_takes_a_stray_and_then_becomes_the_path() {
        let table = PathTable::default();
        let relayed = Path::Relayed {
            relay: "198.18.1.9:7".parse().unwrap(),
            session: carrier_dht::SessionId(3),
        };
        let mapped = table.mapped_for(relayed).unwrap();
        // The peer's QUIC packets came from its direct path before it was aliased: a stray.
        let stray = table.inbound(direct("203.0.113.5:4000")).unwrap();
        assert_ne!(stray, mapped);
        table.add_alias(mapped, direct("203.0.113.5:4000")).unwrap();
        assert_eq!(table.inbound(direct("203.0.113.5:4000")), Some(mapped));
        assert_eq!(table.path(mapped), Some(relayed), "sending is unchanged");
        assert_eq!(table.path(stray), None, "the stray entry is gone");
        // Another peer's held entry is left alone.
        let other = table.mapped_for(direct("192.0.2.1:1")).unwrap();
        table.add_alias(mapped, direct("192.0.2.1:1")).unwrap();
        assert_eq!(table.inbound(direct("192.0.2.1:1")), Some(other));
        // Going direct, then back: both paths keep mapping here.
        table.set_path(mapped, direct("203.0.113.5:4000")).unwrap();
        assert_eq!(table.path(mapped), Some(direct("203.0.113.5:4000")));
        assert_eq!(table.inbound(relayed), Some(mapped));
        table.set_path(mapped, relayed).unwrap();
        assert_eq!(table.inbound(direct("203.0.113.5:4000")), Some(mapped));
        assert_eq!(table.path(mapped), Some(relayed));
    }

    #[test]
    fn repointing_keeps_the_old_address_as_an_alias() {
        let table = PathTable::default();
        let mapped = table.mapped_for(direct("10.0.0.1:1")).unwrap();
        table.set_path(mapped, direct("10.0.0.2:2")).unwrap();
        assert_eq!(table.outbound(mapped), Some(direct("10.0.0.2:2")));
        assert_eq!(table.inbound(direct("10.0.0.1:1")), Some(mapped));
        assert_eq!(table.inbound(direct("10.0.0.2:2")), Some(mapped));
        for port in 3..10 {
            table
                .set_path(mapped, direct(&format!("10.0.0.9:{port}")))
                .unwrap();
        }
        assert_ne!(
            table.inbound(direct("10.0.0.1:1")),
            Some(mapped),
            "aliases are bounded"
        );
        assert!(table
            .set_path("10.0.0.1:1".parse().unwrap(), direct("10.0.0.3:3"))
            .is_err());
    }

    #[test]
    fn only_friends_are_pinned() {
        let table = PathTable::default();
        let moment = table.mapped_for_a_moment(direct("10.0.0.1:1")).unwrap();
        assert!(!table.is_pinned(moment), "a request's peer is not pinned");
        assert_eq!(table.mapped_for(direct("10.0.0.1:1")).unwrap(), moment);
        assert!(table.is_pinned(moment), "a dial pins");
        assert_eq!(
            table.mapped_for_a_moment(direct("10.0.0.1:1")).unwrap(),
            moment
        );
        assert!(
            table.is_pinned(moment),
            "and a later request does not unpin"
        );
        let seen = table.inbound(direct("10.0.0.2:2")).unwrap();
        assert!(!table.is_pinned(seen));
        assert!(table.pin(seen));
        assert!(table.is_pinned(seen));
        assert!(!table.pin("[fd63:6172:7269:6572::ffff]:1".parse().unwrap()));
    }

    #[test]
    fn holds_are_counted_and_a_released_entry_is_evicted_first() {
        let table = PathTable::default();
        let friend = table.mapped_for(direct("10.9.9.9:9")).unwrap();
        assert_eq!(table.mapped_for(direct("10.9.9.9:9")).unwrap(), friend);
        assert!(table.pin(friend));
        // Three holds: two dials and an accepted link.
        assert!(table.release(friend) && table.release(friend));
        assert!(table.is_pinned(friend), "one hold is left");
        assert!(table.release(friend));
        assert!(!table.is_pinned(friend));
        assert!(!table.release(friend), "nothing left to release");
        assert_eq!(
            table.path(friend),
            Some(direct("10.9.9.9:9")),
            "still mapped"
        );
        assert!(table.is_known(friend), "and no stranger");
        let stranger = table.inbound(direct("10.6.6.6:6")).unwrap();
        assert!(!table.is_known(stranger));

        // Released, it is the oldest evictable entry: the first stranger past the cap evicts
        // it, and another friend, still held, stays.
        let held = table.mapped_for(direct("10.8.8.8:8")).unwrap();
        for i in 0..MAX_MAPPED_ADDRESSES - 3 {
            let real = SocketAddr::new(IpAddr::V4((i as u32 + 1).into()), 7);
            assert!(table.inbound(Path::Direct(real)).is_some());
        }
        assert_eq!(table.len(), MAX_MAPPED_ADDRESSES);
        assert_eq!(table.path(friend), Some(direct("10.9.9.9:9")));
        assert!(table.inbound(direct("10.7.7.7:7")).is_some());
        assert_eq!(table.path(friend), None, "the released entry went first");
        assert_eq!(table.path(held), Some(direct("10.8.8.8:8")));
    }

    #[test]
    fn the_eviction_queue_stays_bounded_however_often_holds_come_and_go() {
        let table = PathTable::default();
        let friend = table.mapped_for(direct("10.9.9.9:9")).unwrap();
        for _ in 0..3 * MAX_MAPPED_ADDRESSES {
            assert!(table.release(friend));
            assert!(table.pin(friend));
        }
        assert!(table.read().unpinned.len() <= 2 * MAX_MAPPED_ADDRESSES);
        assert!(table.is_pinned(friend));
    }

    #[test]
    fn relayed_peers_behind_one_relay_are_told_apart_by_their_session() {
        let table = PathTable::default();
        let relay: SocketAddr = "192.0.2.1:4000".parse().unwrap();
        let through = |session| Path::Relayed {
            relay,
            session: carrier_dht::SessionId(session),
        };
        let one = table.inbound(through(1)).unwrap();
        let two = table.inbound(through(2)).unwrap();
        assert_ne!(one, two, "two sessions, two peers");
        assert_ne!(table.inbound(direct("192.0.2.1:4000")), Some(one));
        assert_eq!(table.outbound(two), Some(through(2)));
        let v4_mapped = Path::Relayed {
            relay: "[::ffff:192.0.2.1]:4000".parse().unwrap(),
            session: carrier_dht::SessionId(1),
        };
        assert_eq!(table.inbound(v4_mapped), Some(one), "one relay, one key");

        // A friend moved from a direct path to a relayed one keeps its mapped address, and
        // packets from either path reach quinn as from it.
        let friend = table.mapped_for(direct("198.51.100.7:9")).unwrap();
        table.set_path(friend, through(3)).unwrap();
        assert_eq!(table.outbound(friend), Some(through(3)));
        assert_eq!(table.inbound(through(3)), Some(friend));
        assert_eq!(table.inbound(direct("198.51.100.7:9")), Some(friend));
        assert_eq!(table.mapped_for(through(3)).unwrap(), friend);
    }

    #[test]
    fn a_failover_takes_back_a_candidate_an_earlier_dial_gave_up_and_a_late_datagram_mapped() {
        let table = PathTable::default();
        let at = |relay: &str, session: u64| Path::Relayed {
            relay: relay.parse().unwrap(),
            session: carrier_dht::SessionId(session),
        };
        let (first, second) = (at("192.0.2.1:4000", 1), at("192.0.2.2:4000", 2));
        let mapped = table.mapped_for_candidates(&[first, second]).unwrap();
        assert_eq!(table.inbound(first), Some(mapped));
        // A datagram still on its way through the second relay arrives after the first
        // answered: a stranger's first sight.
        let stray = table.inbound(second).unwrap();
        assert_ne!(stray, mapped);
        // The first relay dies; the failover reopens a session at the second, which hands
        // back the same session: it is tried again, for this link.
        table.add_candidate(mapped, second).unwrap();
        assert_eq!(table.outbound_all(mapped), vec![first, second]);
        assert_eq!(table.inbound(second), Some(mapped));
        assert_eq!(table.path(mapped), Some(second));
        assert_eq!(table.path(stray), None);
        // A path another link holds is never taken.
        let held = table.mapped_for(at("192.0.2.3:4000", 3)).unwrap();
        table
            .add_candidate(mapped, at("192.0.2.3:4000", 3))
            .unwrap();
        assert_eq!(table.outbound_all(mapped), vec![second]);
        assert_eq!(table.path(held), Some(at("192.0.2.3:4000", 3)));
    }

    #[test]
    fn a_peer_tried_on_several_paths_keeps_the_one_that_answered() {
        let table = PathTable::default();
        let relayed = Path::Relayed {
            relay: "192.0.2.1:4000".parse().unwrap(),
            session: carrier_dht::SessionId(9),
        };
        let tried = [direct("10.0.0.1:1"), direct("10.0.0.2:2"), relayed];
        let mapped = table.mapped_for_candidates(&tried).unwrap();
        assert!(table.is_pinned(mapped));
        assert_eq!(table.outbound_all(mapped), tried.to_vec(), "all at once");
        // A late relay session joins the dial; a path another peer holds does not.
        let other = table.mapped_for(direct("10.9.9.9:9")).unwrap();
        table.add_candidate(mapped, direct("10.9.9.9:9")).unwrap();
        table.add_candidate(mapped, direct("10.0.0.3:3")).unwrap();
        assert_eq!(table.outbound_all(mapped).len(), 4);
        assert_eq!(table.outbound_all(other), vec![direct("10.9.9.9:9")]);

        // The relayed one answers first: it is the path, and the others are forgotten.
        assert_eq!(table.inbound(relayed), Some(mapped));
        assert_eq!(table.outbound_all(mapped), vec![relayed]);
        assert_eq!(table.path(mapped), Some(relayed));
        assert_ne!(table.inbound(direct("10.0.0.2:2")), Some(mapped));
        assert_ne!(table.inbound(direct("10.0.0.3:3")), Some(mapped));
        // The first path was where datagrams went before: it stays an alias.
        assert_eq!(table.inbound(direct("10.0.0.1:1")), Some(mapped));

        // A dial that names a path already in use reuses that peer's mapped address.
        let again = table
            .mapped_for_candidates(&[direct("10.5.5.5:5"), relayed])
            .unwrap();
        assert_eq!(again, mapped);
        assert!(matches!(
            table.mapped_for_candidates(&[]),
            Err(PathError::NoCandidates)
        ));
    }

    #[test]
    fn a_dial_kept_direct_forgets_its_relays_and_takes_no_more() {
        let table = PathTable::default();
        let relayed = |session| Path::Relayed {
            relay: "192.0.2.1:4000".parse().unwrap(),
            session: carrier_dht::SessionId(session),
        };
        // The relayed path first: where datagrams went if nothing answered.
        let tried = [relayed(1), direct("10.0.0.1:1"), direct("10.0.0.2:2")];
        let mapped = table.mapped_for_candidates(&tried).unwrap();
        assert!(table.keep_direct(mapped));
        assert_eq!(
            table.outbound_all(mapped),
            vec![direct("10.0.0.1:1"), direct("10.0.0.2:2")]
        );
        // A late answer through the relay is a stranger's, and no relay joins the dial.
        assert_ne!(table.inbound(relayed(1)), Some(mapped));
        table.add_candidate(mapped, relayed(2)).unwrap();
        table.add_candidate(mapped, direct("10.0.0.3:3")).unwrap();
        assert_eq!(table.outbound_all(mapped).len(), 3);
        // A direct path answers: the link's path, and a later dial may try relays again.
        assert_eq!(table.inbound(direct("10.0.0.2:2")), Some(mapped));
        assert_eq!(table.path(mapped), Some(direct("10.0.0.2:2")));
        let again = table
            .mapped_for_candidates(&[direct("10.0.0.2:2"), relayed(3)])
            .unwrap();
        assert_eq!(again, mapped);
        assert_eq!(table.outbound_all(mapped).len(), 2, "relays tried again");

        // Only relays tried, or a relay that answered: nothing direct is left to try.
        let only = table
            .mapped_for_candidates(&[relayed(4), relayed(5)])
            .unwrap();
        assert!(!table.keep_direct(only));
        let answered = table
            .mapped_for_candidates(&[relayed(6), direct("10.0.0.6:6")])
            .unwrap();
        assert_eq!(table.inbound(relayed(6)), Some(answered));
        assert!(!table.keep_direct(answered));
        // One direct path, no candidates: still tried, and relays found later stay out.
        let single = table.mapped_for(direct("10.0.0.7:7")).unwrap();
        assert!(table.keep_direct(single));
        table.add_candidate(single, relayed(7)).unwrap();
        assert_eq!(table.outbound_all(single), vec![direct("10.0.0.7:7")]);
        assert!(!table.keep_direct("[fd63:6172:7269:6572::ffff]:1".parse().unwrap()));
    }

    #[test]
    fn unmapped_and_removed_addresses_have_no_path() {
        let table = PathTable::default();
        let mapped = table.mapped_for(direct("10.0.0.1:1")).unwrap();
        assert!(table.remove(mapped));
        assert_eq!(table.outbound(mapped), None);
        assert!(table.is_empty());
        let never: SocketAddr = "[fd63:6172:7269:6572::ffff]:1".parse().unwrap();
        assert_eq!(table.outbound(never), None);
    }

    #[test]
    fn strangers_evict_strangers_never_pinned_peers() {
        let table = PathTable::default();
        let friend = table.mapped_for(direct("10.9.9.9:9")).unwrap();
        for i in 0..MAX_MAPPED_ADDRESSES + 10 {
            let real = SocketAddr::new(IpAddr::V4((i as u32 + 1).into()), 7);
            assert!(table.inbound(Path::Direct(real)).is_some());
        }
        assert_eq!(table.len(), MAX_MAPPED_ADDRESSES);
        assert_eq!(table.path(friend), Some(direct("10.9.9.9:9")));
    }

    #[test]
    fn only_datagrams_on_direct_paths_count_as_received_directly() {
        let table = PathTable::default();
        let relayed = Path::Relayed {
            relay: "192.0.2.1:7000".parse().unwrap(),
            session: carrier_dht::SessionId(7),
        };
        let mapped = table.mapped_for(relayed).unwrap();
        assert_eq!(table.received_direct(mapped), Some(0));
        table.inbound(relayed);
        assert_eq!(table.received_direct(mapped), Some(0), "through the relay");

        // Punched: the peer's direct address, first as an alias, then as the path.
        table
            .add_alias(mapped, direct("198.51.100.3:5000"))
            .unwrap();
        table.inbound(direct("198.51.100.3:5000"));
        table.set_path(mapped, direct("198.51.100.3:5000")).unwrap();
        table.inbound(direct("198.51.100.3:5000"));
        assert_eq!(table.received_direct(mapped), Some(2));
        // The peer fell back to the relay: its datagrams still reach the link, not directly.
        table.inbound(relayed);
        table.inbound(relayed);
        assert_eq!(table.received_direct(mapped), Some(2));

        // Another peer's datagrams count for that peer only; no entry, no count.
        let other = table.inbound(direct("203.0.113.9:9")).unwrap();
        assert_eq!(table.received_direct(other), Some(1));
        assert_eq!(table.received_direct(mapped), Some(2));
        table.remove(other);
        assert_eq!(table.received_direct(other), None);
    }

    #[test]
    fn a_punched_alias_takes_the_path_from_a_dial_given_up_not_from_a_live_link() {
        let table = PathTable::default();
        let peer_direct = direct("198.51.100.3:5000");
        // A dial of the peer's direct address, given up (its hold released): known, unheld.
        let given_up = table.mapped_for(peer_direct).unwrap();
        assert!(table.release(given_up));
        // The link that came up through a relay meanwhile.
        let relayed = Path::Relayed {
            relay: "192.0.2.1:7000".parse().unwrap(),
            session: carrier_dht::SessionId(9),
        };
        let link = table.mapped_for(relayed).unwrap();

        // A punch probe proves the peer is at its direct address: the given-up dial's entry
        // no longer shows the peer's packets to quinn as from another address.
        table.add_alias(link, peer_direct).unwrap();
        assert_eq!(table.inbound(peer_direct), Some(link));
        assert_eq!(table.path(given_up), None, "the dead entry is gone");

        // An entry a live link holds is never taken.
        let other_direct = direct("203.0.113.8:6000");
        let other = table.mapped_for(other_direct).unwrap();
        table.add_alias(link, other_direct).unwrap();
        assert_eq!(table.inbound(other_direct), Some(other));
        table.set_path(link, peer_direct).unwrap();
        assert_eq!(table.inbound(peer_direct), Some(link));
        assert_eq!(table.path(other), Some(other_direct));
    }
}
