//! The live `carrier/1` links of a node, by peer, and which one survives when two friends
//! dialled each other at once.
//!
//! The rule is the same on both sides, so both keep the same link:
//!
//! - Two links that came up within [`RACE_WINDOW`] of each other raced: the one dialled by the
//!   lower Carrier ID (in byte order) stays; between two dialled the same way, the older.
//! - A link that comes up more than [`RACE_WINDOW`] after the one already held replaces it: a
//!   node dials a friend only when it holds no link to it, so the peer lost the old one (it
//!   restarted, or its idle timeout fired first) and the old one is dead or dying.
//!
//! The loser is closed with [`close::DUPLICATE`](crate::close::DUPLICATE) by whichever side
//! sees both first.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use carrier_dht::id::CarrierId;

use crate::link::Link;

/// How far apart two links' arrivals may be and still count as one race.
pub(crate) const RACE_WINDOW: Duration = Duration::from_secs(5);

#[derive(Clone, Debug)]
struct Held {
    link: Link,
    /// Whether this node dialled it.
    dialled: bool,
    since: Instant,
    serial: u64,
}

/// Whether link `a` beats link `b`, each `(dialled by this node, since, serial)`, for a node
/// whose ID is the lower of the pair if `lower_dials`.
fn beats(lower_dials: bool, a: (bool, Instant, u64), b: (bool, Instant, u64)) -> bool {
    let ((a_dialled, a_since, a_serial), (b_dialled, b_since, b_serial)) = (a, b);
    if a_since.saturating_duration_since(b_since) > RACE_WINDOW {
        return true;
    }
    if b_since.saturating_duration_since(a_since) > RACE_WINDOW {
        return false;
    }
    // The link dialled by the lower ID: ours if we are lower, the accepted one if not.
    if a_dialled != b_dialled {
        return a_dialled == lower_dials;
    }
    // Two dialled the same way within the window: the older, which the other side has most
    // likely seen first too.
    a_serial < b_serial
}

/// The links held, by peer: after every [`add`](LiveLinks::add), at most one per peer.
#[derive(Debug)]
pub(crate) struct LiveLinks {
    me: CarrierId,
    by_peer: HashMap<CarrierId, Held>,
    serial: u64,
}

impl LiveLinks {
    pub(crate) fn new(me: CarrierId) -> Self {
        Self {
            me,
            by_peer: HashMap::new(),
            serial: 0,
        }
    }

    /// Whether `a` beats `b` (both links to `peer`).
    fn beats(&self, peer: &CarrierId, a: &Held, b: &Held) -> bool {
        let lower_dials = self.me.to_bytes() < peer.to_bytes();
        beats(
            lower_dials,
            (a.dialled, a.since, a.serial),
            (b.dialled, b.since, b.serial),
        )
    }

    /// Holds `link` (`dialled` by this node, or accepted) as of `now`; returns the link that
    /// lost the tie-break, if any, for the caller to close with
    /// [`close::DUPLICATE`](crate::close::DUPLICATE). The loser may be `link` itself.
    pub(crate) fn add(&mut self, link: Link, dialled: bool, now: Instant) -> Option<Link> {
        self.serial = self.serial.wrapping_add(1);
        let peer = link.peer();
        let new = Held {
            link,
            dialled,
            since: now,
            serial: self.serial,
        };
        let Some(old) = self.by_peer.remove(&peer) else {
            self.by_peer.insert(peer, new);
            return None;
        };
        if old.link.connection().stable_id() == new.link.connection().stable_id() {
            self.by_peer.insert(peer, old);
            return None;
        }
        let (winner, loser) = if self.beats(&peer, &new, &old) {
            (new, old)
        } else {
            (old, new)
        };
        self.by_peer.insert(peer, winner);
        Some(loser.link)
    }

    /// Forgets `link` (it closed); returns whether it was the one held for its peer.
    pub(crate) fn remove(&mut self, link: &Link) -> bool {
        let peer = link.peer();
        let held = self
            .by_peer
            .get(&peer)
            .is_some_and(|h| h.link.connection().stable_id() == link.connection().stable_id());
        if held {
            self.by_peer.remove(&peer);
        }
        held
    }

    /// The link held for `peer`.
    pub(crate) fn get(&self, peer: &CarrierId) -> Option<Link> {
        self.by_peer.get(peer).map(|h| h.link.clone())
    }

    /// Every peer a link is held for.
    pub(crate) fn peers(&self) -> Vec<CarrierId> {
        self.by_peer.keys().copied().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_sides_keep_the_link_the_lower_id_dialled() {
        let now = Instant::now();
        let soon = now + Duration::from_millis(30);
        // The lower node holds its own dial and gets the other's: its own stays.
        assert!(beats(true, (true, now, 1), (false, soon, 2)));
        assert!(!beats(true, (false, soon, 2), (true, now, 1)));
        // The higher node holds its own dial and gets the lower's: the lower's wins, whatever
        // came first.
        assert!(beats(false, (false, soon, 2), (true, now, 1)));
        assert!(beats(false, (false, now, 1), (true, soon, 2)));
    }

    #[test]
    fn a_link_long_after_the_held_one_replaces_it_and_same_way_dials_keep_the_older() {
        let now = Instant::now();
        let later = now + RACE_WINDOW + Duration::from_millis(1);
        for lower_dials in [true, false] {
            for (new, old) in [(true, true), (true, false), (false, true), (false, false)] {
                assert!(beats(lower_dials, (new, later, 2), (old, now, 1)));
                assert!(!beats(lower_dials, (old, now, 1), (new, later, 2)));
            }
            assert!(beats(lower_dials, (true, now, 1), (true, now, 2)));
            assert!(!beats(lower_dials, (false, now, 2), (false, now, 1)));
        }
    }
}
