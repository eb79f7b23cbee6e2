//! Which link survives when two friends dialled each other at once (the rule
//! [`LinkMachine`](super::machine::LinkMachine) applies).
//!
//! The rule is the same on both sides, and decided only by facts both sides share, so both keep
//! the same link:
//!
//! - Two links that came up within [`RACE_WINDOW`] of each other raced: a direct one beats a
//!   relayed one (a link runs through a relay at both ends or at neither, so both sides see
//!   the same kinds; decision 107), and between two of one kind the one dialled by the
//!   lower Carrier ID (in byte order) stays; between two dialled the same way (one node dialled
//!   twice at once: its connect loop and an outbox delivery), the one with the lower *draw*:
//!   eight bytes both ends derive from the link's TLS secrets ([`draw`]). Not the older: the
//!   dialler sees its handshakes complete in one order and the peer may see them in the other,
//!   and then each side would keep the link the other closes.
//! - A link that comes up more than [`RACE_WINDOW`] after the one already held replaces it: a
//!   node dials a friend only when it holds no link to it, so the peer lost the old one (it
//!   restarted, or found the link silent first) and the old one is dead or dying.
//!
//! The loser is closed with [`close::DUPLICATE`](crate::link::close::DUPLICATE) by whichever side
//! sees both first. Arrival times are each side's own, so two links arriving almost exactly
//! [`RACE_WINDOW`] apart may be judged differently by the two sides; then both links close and
//! the friends dial again.

use std::time::{Duration, Instant};

use crate::link::Link;

/// How far apart two links' arrivals may be and still count as one race.
pub(super) const RACE_WINDOW: Duration = Duration::from_secs(5);

/// The label of the TLS exporter behind [`draw`].
const DRAW_LABEL: &[u8] = b"carrier/1 link tie-break";

/// A link's draw: eight bytes of its TLS exporter (RFC 5705), the same at both ends of the
/// link and unpredictable before its handshake. `u64::MAX` if the exporter fails (it does not
/// once the handshake is done).
pub(super) fn draw(link: &Link) -> u64 {
    let mut bytes = [0u8; 8];
    match link
        .connection()
        .export_keying_material(&mut bytes, DRAW_LABEL, b"")
    {
        Ok(()) => u64::from_be_bytes(bytes),
        Err(_) => u64::MAX,
    }
}

/// What the tie-break knows of a link.
#[derive(Clone, Copy, Debug)]
pub(super) struct Contender {
    /// Dialled by this node (or accepted).
    pub(super) dialled: bool,
    /// When it came up here.
    pub(super) since: Instant,
    /// Its [`draw`].
    pub(super) draw: u64,
    /// Whether it ran through a relay when it came up.
    pub(super) relayed: bool,
}

/// Whether link `a` beats link `b`, for a node whose ID is the lower of the pair if
/// `lower_dials`. Equal draws (only if both exporters failed) keep `b`, the link already
/// held.
pub(super) fn beats(lower_dials: bool, a: Contender, b: Contender) -> bool {
    if a.since.saturating_duration_since(b.since) > RACE_WINDOW {
        return true;
    }
    if b.since.saturating_duration_since(a.since) > RACE_WINDOW {
        return false;
    }
    if a.relayed != b.relayed {
        return !a.relayed;
    }
    let ((a_dialled, a_draw), (b_dialled, b_draw)) = ((a.dialled, a.draw), (b.dialled, b.draw));
    // The link dialled by the lower ID: ours if we are lower, the accepted one if not.
    if a_dialled != b_dialled {
        return a_dialled == lower_dials;
    }
    // Two dialled the same way within the window: the lower draw, which both sides see alike
    // whatever order the two handshakes completed in at each.
    a_draw < b_draw
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A direct link `(dialled, since, draw)`.
    fn direct((dialled, since, draw): (bool, Instant, u64)) -> Contender {
        Contender {
            dialled,
            since,
            draw,
            relayed: false,
        }
    }

    /// [`beats`] between two direct links.
    fn wins(lower_dials: bool, a: (bool, Instant, u64), b: (bool, Instant, u64)) -> bool {
        beats(lower_dials, direct(a), direct(b))
    }

    /// What the machine keeps when `second` arrives while `first` is held: its draw.
    fn kept(lower_dials: bool, first: (bool, Instant, u64), second: (bool, Instant, u64)) -> u64 {
        if wins(lower_dials, second, first) {
            second.2
        } else {
            first.2
        }
    }

    #[test]
    fn a_direct_link_beats_a_relayed_one_on_both_sides_whoever_dialled() {
        let now = Instant::now();
        let soon = now + Duration::from_millis(30);
        let relayed = |link| Contender {
            relayed: true,
            ..direct(link)
        };
        for lower_dials in [true, false] {
            for (first_dialled, first_at) in [(true, now), (false, soon)] {
                // This side dialled one (or accepted it), the peer the other; the relayed
                // one came first here or second.
                let (a, b) = ((first_dialled, first_at, 1), (!first_dialled, now, 2));
                assert!(beats(lower_dials, direct(a), relayed(b)));
                assert!(!beats(lower_dials, relayed(b), direct(a)));
                // The peer sees the same two links the other way round: the same verdict.
                let (a_there, b_there) = ((!a.0, a.1, a.2), (!b.0, b.1, b.2));
                assert!(beats(!lower_dials, direct(a_there), relayed(b_there)));
            }
            // Long after, any new link replaces the held one, relayed or not.
            let later = now + RACE_WINDOW + Duration::from_millis(1);
            assert!(beats(
                lower_dials,
                relayed((true, later, 1)),
                direct((true, now, 2))
            ));
        }
    }

    #[test]
    fn both_sides_keep_the_link_the_lower_id_dialled() {
        let now = Instant::now();
        let soon = now + Duration::from_millis(30);
        // The lower node holds its own dial and gets the other's: its own stays.
        assert!(wins(true, (true, now, 1), (false, soon, 2)));
        assert!(!wins(true, (false, soon, 2), (true, now, 1)));
        // The higher node holds its own dial and gets the lower's: the lower's wins, whatever
        // came first.
        assert!(wins(false, (false, soon, 2), (true, now, 1)));
        assert!(wins(false, (false, now, 1), (true, soon, 2)));
    }

    #[test]
    fn a_link_long_after_the_held_one_replaces_it() {
        let now = Instant::now();
        let later = now + RACE_WINDOW + Duration::from_millis(1);
        for lower_dials in [true, false] {
            for (new, old) in [(true, true), (true, false), (false, true), (false, false)] {
                for (new_draw, old_draw) in [(1, 2), (2, 1)] {
                    assert!(wins(
                        lower_dials,
                        (new, later, new_draw),
                        (old, now, old_draw)
                    ));
                    assert!(!wins(
                        lower_dials,
                        (old, now, old_draw),
                        (new, later, new_draw)
                    ));
                }
            }
        }
    }

    #[test]
    fn two_links_dialled_the_same_way_leave_the_lower_draw_on_both_sides_in_any_order() {
        // One node dialled twice at once: link 7 completed first at the dialler, link 3 first
        // at the peer (a client's and a server's handshakes need not complete in one order).
        let now = Instant::now();
        let soon = now + Duration::from_millis(1);
        for lower_dials in [true, false] {
            let at_dialler = kept(lower_dials, (true, now, 7), (true, soon, 3));
            let at_peer = kept(!lower_dials, (false, now, 3), (false, soon, 7));
            assert_eq!((at_dialler, at_peer), (3, 3));
            // And the other way round.
            let at_dialler = kept(lower_dials, (true, now, 3), (true, soon, 7));
            let at_peer = kept(!lower_dials, (false, now, 7), (false, soon, 3));
            assert_eq!((at_dialler, at_peer), (3, 3));
        }
        // Equal draws keep the link held.
        assert_eq!(kept(true, (true, now, 5), (true, soon, 5)), 5);
        assert!(!wins(true, (true, soon, 5), (true, now, 5)));
    }

    #[tokio::test]
    async fn both_ends_of_a_link_draw_the_same_value() {
        use crate::link::{Accepted, AllowList, LinkConfig, LinkEndpoint};
        use carrier_dht::id::Keypair;
        use carrier_dht::socket::NodeSocket;
        use carrier_dht::Path;

        let (alice, bob) = (Keypair::generate(), Keypair::generate());
        let friends = AllowList::default();
        friends.insert(alice.id());
        let bind = || NodeSocket::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let bob_node = LinkEndpoint::new(bind(), &bob, LinkConfig::new(friends)).unwrap();
        let alice_node = LinkEndpoint::new(bind(), &alice, LinkConfig::new(|_: &_| false)).unwrap();
        let to_bob = Path::Direct(bob_node.local_addr().unwrap());
        let mut draws = Vec::new();
        for _ in 0..2 {
            let at_alice = alice_node.dial(bob.id(), to_bob).await.unwrap();
            let Some(Accepted::Link(at_bob)) = bob_node.accept().await else {
                panic!("no link")
            };
            assert_eq!(draw(&at_alice), draw(&at_bob));
            assert_ne!(draw(&at_alice), u64::MAX);
            draws.push(draw(&at_alice));
        }
        assert_ne!(draws[0], draws[1], "each link draws its own");
    }
}
