//! [`LinkMachine`]: one live link per online friend, as a state machine without I/O.
//!
//! It decides everything about the friend layer's links and reads no clock: every input
//! carries `now`, and [`LinkMachine::poll`] says what to do and when to look again, as the
//! DHT's `Node` does. A thin tokio task ([`super::links`]) feeds it what the links did and
//! carries out its [`Action`]s. It holds:
//!
//! - **the tie-break** between two links to one peer ([`super::tiebreak`] has the rule, the same
//!   on both sides);
//! - **liveness**: a held link whose count of received datagrams has not moved for the
//!   silence limit is closed with [`close::SILENT`] (the dialling side's keep-alives and their
//!   acknowledgements cross every link well within it);
//! - **dialling**: friends without a link are dialled, those waiting longest first, at most
//!   `max_concurrent_dials` at once;
//! - **backoff**: a failed attempt doubles the wait before the next, up to a cap
//!   ([`RetryPolicy::backoff`], the outbox's rule); a link that comes up resets it;
//! - **direct tries**: a friend whose held link runs through a relay is dialled again on
//!   direct paths only, on a backoff of its own ([`Settings::direct_retry`]), until a direct
//!   link replaces the relayed one (a direct link beats a relayed one in the tie-break);
//! - **online**: which friends count as connected, reported once per change.
//!
//! The machine is generic over the link handle `L` it hands back in [`Action::Close`], so its
//! tests run with plain numbers instead of QUIC connections.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use carrier_dht::id::CarrierId;
use quinn::VarInt;

use super::tiebreak::{beats, Contender};
use crate::link::close;
use crate::outbox::RetryPolicy;

/// A link's identity: quinn's stable ID of its connection.
pub(super) type LinkKey = usize;

/// How long a friend whose link the peer closed as a duplicate may stay without one before it
/// counts as disconnected: the surviving link is usually a handshake away.
pub(super) const DUPLICATE_GRACE: Duration = Duration::from_secs(2);

/// What the machine needs from the settings.
#[derive(Clone, Copy, Debug)]
pub(super) struct Settings {
    /// A held link that hears nothing this long is closed.
    pub(super) silence_limit: Duration,
    /// The wait after failed attempts to reach a friend: `initial` doubling up to `max`.
    pub(super) backoff: RetryPolicy,
    /// Friends looked up and dialled at once, at most.
    pub(super) max_concurrent_dials: usize,
    /// The wait before each try of a direct link to a friend linked through a relay:
    /// `initial` after the relayed link came up, doubling up to `max` while tries fail.
    /// `None` when hole punching moves relayed links instead (no second connection).
    pub(super) direct_retry: Option<RetryPolicy>,
}

/// Why a held link closed, as far as the machine cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Closed {
    /// The peer closed it as the loser of a race: it keeps another link.
    Duplicate,
    /// The peer does not take us as a friend.
    NotAFriend,
    /// Anything else (silence, a restart, an idle timeout, our own close).
    Other,
}

/// What the driver must do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Action<L> {
    /// Close `link` with `code` ([`close::DUPLICATE`] or [`close::SILENT`]).
    Close {
        /// The link.
        link: L,
        /// The close code.
        code: VarInt,
    },
    /// Look the friend up and dial it; report the end with [`LinkMachine::dial_ended`].
    Dial(CarrierId),
    /// Look the friend, linked through a relay, up and dial only its direct paths; report
    /// the end with [`LinkMachine::direct_dial_ended`].
    DialDirect(CarrierId),
    /// The friend counts as connected now.
    Connected(CarrierId),
    /// The friend counts as disconnected now.
    Disconnected(CarrierId),
}

#[derive(Clone, Debug)]
struct Held<L> {
    link: L,
    key: LinkKey,
    /// Whether this node dialled it.
    dialled: bool,
    since: Instant,
    draw: u64,
    /// Whether it ran through a relay when it came up.
    relayed: bool,
    /// For a relayed link: the next try of a direct one.
    direct: Option<DirectTry>,
    /// Datagrams the link had received at the last sample, and since when that count stands.
    heard: u64,
    heard_since: Instant,
    /// Closed as silent already: waiting for its close to be reported.
    closing: bool,
}

impl<L> Held<L> {
    /// What the tie-break weighs.
    fn contender(&self) -> Contender {
        Contender {
            dialled: self.dialled,
            since: self.since,
            draw: self.draw,
            relayed: self.relayed,
        }
    }
}

/// Tries of a direct link to a friend linked through a relay.
#[derive(Clone, Copy, Debug)]
struct DirectTry {
    /// Tries that failed so far.
    failed: u32,
    /// When the next may start.
    at: Instant,
    /// One is in progress.
    trying: bool,
}

/// Failed attempts to reach a friend, and when the next may start.
#[derive(Clone, Copy, Debug)]
struct Backoff {
    attempts: u32,
    until: Instant,
}

/// The friend layer's links, as a state machine: see the module's documentation.
#[derive(Debug)]
pub(super) struct LinkMachine<L> {
    me: CarrierId,
    settings: Settings,
    friends: HashSet<CarrierId>,
    held: HashMap<CarrierId, Held<L>>,
    /// Peers whose held link they closed as a duplicate, until when they still count as
    /// linked: the link they keep is usually a handshake away.
    awaited: HashMap<CarrierId, Instant>,
    dialling: HashSet<CarrierId>,
    backoff: HashMap<CarrierId, Backoff>,
    online: HashSet<CarrierId>,
    actions: VecDeque<Action<L>>,
}

impl<L: Clone> LinkMachine<L> {
    /// A machine for node `me` with no friends and no links.
    pub(super) fn new(me: CarrierId, settings: Settings) -> Self {
        Self {
            me,
            settings,
            friends: HashSet::new(),
            held: HashMap::new(),
            awaited: HashMap::new(),
            dialling: HashSet::new(),
            backoff: HashMap::new(),
            online: HashSet::new(),
            actions: VecDeque::new(),
        }
    }

    /// The next thing to do, if any.
    pub(super) fn pop_action(&mut self) -> Option<Action<L>> {
        self.actions.pop_front()
    }

    /// The friend list is now `friends`. Who counts as online changes only at
    /// [`refresh`](Self::refresh) of that friend (or an input about its links), so the layer
    /// reports `Removed` before `Disconnected`.
    pub(super) fn set_friends(&mut self, friends: impl IntoIterator<Item = CarrierId>) {
        self.friends = friends.into_iter().collect();
        self.backoff.retain(|peer, _| self.friends.contains(peer));
    }

    /// A link `link` (with key `key`) to `peer` is up at `now`: `dialled` by this node or
    /// accepted, with its `draw`, `relayed` or direct, having received `heard` datagrams. If a link to `peer` is
    /// held already, the tie-break keeps one and the other is closed with
    /// [`close::DUPLICATE`]. A link up resets the peer's backoff.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn link_up(
        &mut self,
        peer: CarrierId,
        link: L,
        key: LinkKey,
        dialled: bool,
        draw: u64,
        relayed: bool,
        heard: u64,
        now: Instant,
    ) {
        self.awaited.remove(&peer);
        self.backoff.remove(&peer);
        let new = Held {
            link,
            key,
            dialled,
            since: now,
            draw,
            relayed,
            direct: self
                .settings
                .direct_retry
                .filter(|_| relayed)
                .map(|policy| DirectTry {
                    failed: 0,
                    at: now + policy.backoff(1),
                    trying: false,
                }),
            heard,
            heard_since: now,
            closing: false,
        };
        let loser = match self.held.remove(&peer) {
            None => {
                self.held.insert(peer, new);
                None
            }
            Some(old) if old.key == key => {
                self.held.insert(peer, old);
                None
            }
            Some(old) => {
                let lower_dials = self.me.to_bytes() < peer.to_bytes();
                let (winner, loser) = if beats(lower_dials, new.contender(), old.contender()) {
                    (new, old)
                } else {
                    (old, new)
                };
                self.held.insert(peer, winner);
                Some(loser.link)
            }
        };
        if let Some(link) = loser {
            self.actions.push_back(Action::Close {
                link,
                code: close::DUPLICATE,
            });
        }
        self.refresh(peer, now);
    }

    /// Link `key` to `peer` closed at `now`, for `why`. If it was the one held: a duplicate
    /// leaves the peer counted as linked for [`DUPLICATE_GRACE`] (and undialled, or it would
    /// start one more race); a refusal backs off; anything else lets the friend be dialled
    /// again at once.
    pub(super) fn link_closed(&mut self, peer: CarrierId, key: LinkKey, why: Closed, now: Instant) {
        if self.held.get(&peer).is_none_or(|held| held.key != key) {
            return;
        }
        self.held.remove(&peer);
        match why {
            Closed::Duplicate => {
                let until = now + DUPLICATE_GRACE;
                let awaited = self.awaited.entry(peer).or_insert(until);
                *awaited = (*awaited).max(until);
                self.backoff.insert(peer, Backoff { attempts: 0, until });
            }
            Closed::NotAFriend => self.failed(peer, now),
            Closed::Other => {
                self.backoff.remove(&peer);
            }
        }
        self.refresh(peer, now);
    }

    /// Friend `peer` was found somewhere new (on the LAN): without a link, it is dialled at
    /// the next poll, whatever its backoff.
    pub(super) fn found(&mut self, peer: CarrierId) {
        if self.friends.contains(&peer) && !self.held.contains_key(&peer) {
            self.backoff.remove(&peer);
        }
    }

    /// A dial of `peer` ended at `now`: `up` if it gave a link (already reported with
    /// [`link_up`](Self::link_up)). A failure backs off; either way a dial slot is free.
    pub(super) fn dial_ended(&mut self, peer: CarrierId, up: bool, now: Instant) {
        self.dialling.remove(&peer);
        if up {
            // No dial again before the first backoff, even if the link dies at once.
            self.backoff.insert(
                peer,
                Backoff {
                    attempts: 0,
                    until: now + self.settings.backoff.backoff(1),
                },
            );
        } else {
            self.failed(peer, now);
        }
    }

    /// A direct dial of `peer` ([`Action::DialDirect`]) ended at `now`: `up` if it gave a
    /// link (already reported with [`link_up`](Self::link_up)). While the link held is still
    /// relayed, the next try waits longer.
    pub(super) fn direct_dial_ended(&mut self, peer: CarrierId, up: bool, now: Instant) {
        let Some(policy) = self.settings.direct_retry else {
            return;
        };
        let Some(held) = self.held.get_mut(&peer) else {
            return;
        };
        if let Some(direct) = held.direct.as_mut() {
            direct.trying = false;
            if !up {
                direct.failed = direct.failed.saturating_add(1);
            }
            direct.at = now + policy.backoff(direct.failed.saturating_add(1));
        }
    }

    /// Link `key` to `peer` moved on the same connection (hole punching): to a direct path,
    /// or back to a relay (`relayed`). A held link that runs direct needs no direct tries.
    /// The tie-break still weighs it as it came up: each side moves on its own answer, so
    /// for a while one end runs direct and the other relayed, and only the kind at arrival
    /// is the same at both ends (a second link racing it must lose or win at both).
    pub(super) fn path_moved(&mut self, peer: CarrierId, key: LinkKey, relayed: bool) {
        if let Some(held) = self.held.get_mut(&peer).filter(|held| held.key == key) {
            if !relayed {
                held.direct = None;
            }
        }
    }

    fn failed(&mut self, peer: CarrierId, now: Instant) {
        let attempts = self
            .backoff
            .get(&peer)
            .map_or(0, |b| b.attempts)
            .saturating_add(1);
        let until = now + self.settings.backoff.backoff(attempts);
        self.backoff.insert(peer, Backoff { attempts, until });
    }

    /// Reports `peer` connected or disconnected if that changed at `now`: connected means a
    /// friend with a link, or one whose duplicate link closed within [`DUPLICATE_GRACE`].
    pub(super) fn refresh(&mut self, peer: CarrierId, now: Instant) {
        let now_online = self.friends.contains(&peer) && self.linked(&peer, now);
        if now_online && self.online.insert(peer) {
            self.actions.push_back(Action::Connected(peer));
        } else if !now_online && self.online.remove(&peer) {
            self.actions.push_back(Action::Disconnected(peer));
        }
    }

    fn linked(&mut self, peer: &CarrierId, now: Instant) -> bool {
        if self.held.contains_key(peer) {
            return true;
        }
        match self.awaited.get(peer) {
            Some(until) if now < *until => true,
            Some(_) => {
                self.awaited.remove(peer);
                false
            }
            None => false,
        }
    }

    /// Everything due at `now`: links silent for the limit closed, grace periods ended,
    /// friends without a link dialled. `heard(link)` is the count of datagrams `link` has
    /// received so far; a change of it counts as heard at `now`. Returns when to poll again
    /// at the latest (sooner if an input arrives, and often enough to sample `heard`).
    pub(super) fn poll(&mut self, now: Instant, heard: impl Fn(&L) -> u64) -> Instant {
        let limit = self.settings.silence_limit;
        let mut next = now + limit;
        let mut direct_dials = Vec::new();
        for (peer, held) in self.held.iter_mut() {
            let count = heard(&held.link);
            if count != held.heard {
                held.heard = count;
                held.heard_since = now;
            }
            let silent_at = held.heard_since + limit;
            if held.closing {
                continue;
            }
            if silent_at <= now {
                held.closing = true;
                self.actions.push_back(Action::Close {
                    link: held.link.clone(),
                    code: close::SILENT,
                });
                continue;
            }
            next = next.min(silent_at);
            if let Some(direct) = held.direct.as_mut().filter(|d| !d.trying) {
                if direct.at <= now {
                    direct.trying = true;
                    direct_dials.push(*peer);
                } else {
                    next = next.min(direct.at);
                }
            }
        }
        direct_dials.sort_unstable_by_key(CarrierId::to_bytes);
        self.actions
            .extend(direct_dials.into_iter().map(Action::DialDirect));
        let awaited: Vec<(CarrierId, Instant)> =
            self.awaited.iter().map(|(p, u)| (*p, *u)).collect();
        for (peer, until) in awaited {
            if until <= now {
                self.refresh(peer, now);
            } else {
                next = next.min(until);
            }
        }
        self.dial_due(now, &mut next);
        next
    }

    /// Starts dials of the friends without a link whose backoff is over: never tried first,
    /// then by the end of their backoff; at most `max_concurrent_dials` at once.
    fn dial_due(&mut self, now: Instant, next: &mut Instant) {
        let mut due: Vec<(Option<Instant>, CarrierId)> = Vec::new();
        for peer in &self.friends {
            if self.held.contains_key(peer) || self.dialling.contains(peer) {
                continue;
            }
            match self.backoff.get(peer) {
                Some(b) if b.until > now => *next = (*next).min(b.until),
                other => due.push((other.map(|b| b.until), *peer)),
            }
        }
        due.sort_unstable_by_key(|(until, peer)| (*until, peer.to_bytes()));
        for (_, peer) in due {
            if self.dialling.len() >= self.settings.max_concurrent_dials.max(1) {
                break;
            }
            self.dialling.insert(peer);
            self.actions.push_back(Action::Dial(peer));
        }
    }

    /// The link held for `peer`.
    pub(super) fn link(&self, peer: &CarrierId) -> Option<L> {
        self.held.get(peer).map(|held| held.link.clone())
    }

    /// Whether `peer` counts as connected.
    pub(super) fn is_online(&self, peer: &CarrierId) -> bool {
        self.online.contains(peer)
    }

    /// The friends that count as connected, in ID order.
    pub(super) fn online(&self) -> Vec<CarrierId> {
        let mut online: Vec<CarrierId> = self.online.iter().copied().collect();
        online.sort_by_key(CarrierId::to_bytes);
        online
    }

    /// Dials in progress.
    pub(super) fn dials_in_flight(&self) -> usize {
        self.dialling.len()
    }

    /// Links held.
    pub(super) fn link_count(&self) -> usize {
        self.held.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use carrier_dht::id::Keypair;

    const SECOND: Duration = Duration::from_secs(1);

    fn settings() -> Settings {
        Settings {
            silence_limit: 3 * SECOND,
            backoff: RetryPolicy {
                initial: SECOND,
                max: 8 * SECOND,
                republish: SECOND,
            },
            max_concurrent_dials: 2,
            direct_retry: Some(RetryPolicy {
                initial: SECOND,
                max: 4 * SECOND,
                republish: SECOND,
            }),
        }
    }

    /// Two node IDs, the lower first.
    fn pair() -> (CarrierId, CarrierId) {
        let (a, b) = (Keypair::generate().id(), Keypair::generate().id());
        if a.to_bytes() < b.to_bytes() {
            (a, b)
        } else {
            (b, a)
        }
    }

    fn machine(me: CarrierId, friends: &[CarrierId]) -> LinkMachine<u32> {
        let mut m = LinkMachine::new(me, settings());
        m.set_friends(friends.iter().copied());
        m
    }

    fn actions(m: &mut LinkMachine<u32>) -> Vec<Action<u32>> {
        std::iter::from_fn(|| m.pop_action()).collect()
    }

    fn dials(actions: &[Action<u32>]) -> Vec<CarrierId> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Dial(peer) => Some(*peer),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_friend_found_on_the_lan_is_dialled_at_once_whatever_its_backoff() {
        let (me, friend) = pair();
        let mut m = machine(me, &[friend]);
        let now = Instant::now();
        m.poll(now, |_| 0);
        assert_eq!(dials(&actions(&mut m)), vec![friend]);
        // A failed dial: the next attempt waits a second.
        m.dial_ended(friend, false, now);
        let at = now + Duration::from_millis(10);
        let next = m.poll(at, |_| 0);
        assert!(next >= now + SECOND / 2, "{:?}", next - at);
        assert!(dials(&actions(&mut m)).is_empty());
        // Found on the LAN: dialled at the next poll.
        m.found(friend);
        m.poll(at, |_| 0);
        assert_eq!(dials(&actions(&mut m)), vec![friend]);
        // A friend with a link held is not dialled again when found.
        m.link_up(friend, 1, 1, true, 7, false, 0, at);
        actions(&mut m);
        m.dial_ended(friend, true, at);
        m.found(friend);
        m.poll(at, |_| 0);
        assert!(dials(&actions(&mut m)).is_empty());
    }

    #[test]
    fn both_dial_at_once_and_both_sides_keep_the_same_one_link() {
        let (low, high) = pair();
        let now = Instant::now();
        let soon = now + Duration::from_millis(20);
        // Link 1 was dialled by the lower node, link 2 by the higher; draws differ per link.
        for (first_at_low, first_at_high) in [(1, 2), (2, 1), (1, 1), (2, 2)] {
            let mut at_low = machine(low, &[high]);
            let mut at_high = machine(high, &[low]);
            let side = |m: &mut LinkMachine<u32>, first: u32, me_low: bool| {
                let second = 3 - first;
                let dialled_by_me = |link: u32| (link == 1) == me_low;
                m.link_up(
                    if me_low { high } else { low },
                    first,
                    first as usize,
                    dialled_by_me(first),
                    u64::from(first) * 7,
                    false,
                    0,
                    now,
                );
                m.link_up(
                    if me_low { high } else { low },
                    second,
                    second as usize,
                    dialled_by_me(second),
                    u64::from(second) * 7,
                    false,
                    0,
                    soon,
                );
                let closed: Vec<u32> = actions(m)
                    .into_iter()
                    .filter_map(|a| match a {
                        Action::Close { link, code } if code == close::DUPLICATE => Some(link),
                        _ => None,
                    })
                    .collect();
                (m.link(&if me_low { high } else { low }), closed)
            };
            let (kept_low, closed_low) = side(&mut at_low, first_at_low, true);
            let (kept_high, closed_high) = side(&mut at_high, first_at_high, false);
            assert_eq!(kept_low, Some(1), "the lower ID's dial stays");
            assert_eq!(kept_high, Some(1));
            assert_eq!(closed_low, [2]);
            assert_eq!(closed_high, [2]);
            assert_eq!((at_low.link_count(), at_high.link_count()), (1, 1));
        }
    }

    #[test]
    fn a_link_that_hears_nothing_for_the_limit_is_closed_one_that_hears_is_not() {
        let (me, quiet) = pair();
        let chatty = Keypair::generate().id();
        let start = Instant::now();
        let mut m = machine(me, &[quiet, chatty]);
        m.link_up(quiet, 1, 1, true, 0, false, 5, start);
        m.link_up(chatty, 2, 2, true, 0, false, 5, start);
        assert_eq!(
            actions(&mut m)
                .iter()
                .filter(|a| matches!(a, Action::Connected(_)))
                .count(),
            2
        );
        let mut counts: HashMap<u32, u64> = HashMap::from([(1, 5), (2, 5)]);
        let mut closed = Vec::new();
        for tenth in 1..=40u32 {
            let now = start + SECOND * tenth / 10;
            *counts.entry(2).or_default() += 1; // the chatty link hears something each time
            let next = m.poll(now, |link| counts[link]);
            assert!(next > now);
            for action in actions(&mut m) {
                if let Action::Close { link, code } = action {
                    assert_eq!(code, close::SILENT);
                    closed.push((link, now.duration_since(start)));
                }
            }
        }
        assert_eq!(
            closed,
            [(1, 3 * SECOND)],
            "closed exactly at the limit, once"
        );
        // Its close reported, the friend is disconnected and dialled again at once.
        m.link_closed(quiet, 1, Closed::Other, start + 4 * SECOND);
        let after = actions(&mut m);
        assert_eq!(after, [Action::Disconnected(quiet)]);
        m.poll(start + 4 * SECOND, |link| counts[link]);
        assert_eq!(dials(&actions(&mut m)), [quiet]);
    }

    #[test]
    fn a_punched_link_is_weighed_as_it_came_up_so_both_ends_judge_a_racing_link_alike() {
        let (low, high) = pair();
        let start = Instant::now();
        let later = start + Duration::from_millis(50);
        // Both ends hold link 1, which came up relayed; one end's punch moved it already.
        let mut moved = machine(low, &[high]);
        let mut not_yet = machine(high, &[low]);
        moved.link_up(high, 1, 1, true, 7, true, 0, start);
        not_yet.link_up(low, 1, 1, false, 7, true, 0, start);
        moved.path_moved(high, 1, false);
        actions(&mut moved);
        actions(&mut not_yet);
        // A direct link 2, dialled by the higher ID, comes up at both: both keep the same one.
        moved.link_up(high, 2, 2, false, 3, false, 0, later);
        not_yet.link_up(low, 2, 2, true, 3, false, 0, later);
        assert_eq!(moved.link(&high), not_yet.link(&low));
        assert_eq!(
            moved.link(&high),
            Some(2),
            "a direct link beats one that came up relayed"
        );
    }

    #[test]
    fn a_relayed_link_is_followed_by_direct_tries_that_back_off_until_a_direct_one_replaces_it() {
        let (low, high) = pair();
        let mut m = machine(low, &[high]);
        let start = Instant::now();
        let at = |secs: f64| start + Duration::from_secs_f64(secs);
        // Each poll hears something new, so no link falls silent here.
        let heard = std::cell::Cell::new(0u64);
        let poll = |m: &mut LinkMachine<u32>, secs: f64| {
            heard.set(heard.get() + 1);
            let count = heard.get();
            m.poll(at(secs), |_| count);
            actions(m)
        };
        let direct_dials = |actions: &[Action<u32>]| {
            actions
                .iter()
                .filter(|a| matches!(a, Action::DialDirect(_)))
                .count()
        };
        m.link_up(high, 1, 1, true, 0, true, 0, start);
        assert_eq!(
            direct_dials(&poll(&mut m, 0.5)),
            0,
            "not before the first wait"
        );
        assert_eq!(
            poll(&mut m, 1.0),
            vec![Action::DialDirect(high)],
            "a direct try after it"
        );
        assert_eq!(direct_dials(&poll(&mut m, 1.5)), 0, "one at a time");
        // Failed tries wait 2, 4, then 4 s (the cap).
        let mut now = 1.0;
        for wait in [2.0, 4.0, 4.0] {
            m.direct_dial_ended(high, false, at(now));
            assert_eq!(direct_dials(&poll(&mut m, now + wait - 0.1)), 0);
            assert_eq!(direct_dials(&poll(&mut m, now + wait)), 1);
            now += wait;
        }
        // The try gives a direct link: it replaces the relayed one, and tries stop.
        m.link_up(high, 2, 2, true, 9, false, 0, at(now));
        m.direct_dial_ended(high, true, at(now));
        let closed = actions(&mut m);
        assert!(closed.contains(&Action::Close {
            link: 1,
            code: close::DUPLICATE
        }));
        assert_eq!(m.link(&high), Some(2));
        for later in 1..20 {
            assert_eq!(direct_dials(&poll(&mut m, now + f64::from(later))), 0);
        }
        // A direct link never starts tries.
        let mut direct = machine(low, &[high]);
        direct.link_up(high, 3, 3, true, 0, false, 0, start);
        for secs in 1..20 {
            assert_eq!(direct_dials(&poll(&mut direct, f64::from(secs))), 0);
        }
    }

    #[test]
    fn attempts_space_out_and_cap_and_a_success_resets() {
        let (me, friend) = pair();
        let start = Instant::now();
        let mut m = machine(me, &[friend]);
        let mut now = start;
        let mut gaps = Vec::new();
        let mut last_dial = None;
        // Fail every dial, polling every 100 ms for 60 s.
        while now < start + 60 * SECOND {
            m.poll(now, |_| 0);
            for peer in dials(&actions(&mut m)) {
                if let Some(last) = last_dial {
                    gaps.push(now.duration_since(last));
                }
                last_dial = Some(now);
                m.dial_ended(peer, false, now);
            }
            now += Duration::from_millis(100);
        }
        let secs: Vec<u64> = gaps.iter().map(|gap| gap.as_secs()).collect();
        assert_eq!(&secs[..5], [1, 2, 4, 8, 8], "doubling, capped at 8 s");
        // A success resets: the next failure waits the initial backoff again.
        m.poll(now, |_| 0);
        now += 9 * SECOND;
        m.poll(now, |_| 0);
        let dialled = dials(&actions(&mut m));
        assert_eq!(dialled, [friend]);
        m.link_up(friend, 1, 1, true, 0, false, 0, now);
        m.dial_ended(friend, true, now);
        m.link_closed(friend, 1, Closed::Other, now + SECOND);
        now += SECOND;
        m.poll(now, |_| 0);
        let redial = dials(&actions(&mut m));
        assert_eq!(
            redial,
            [friend],
            "a link that closes is dialled again at once"
        );
        m.dial_ended(friend, false, now);
        m.poll(now + Duration::from_millis(900), |_| 0);
        assert!(dials(&actions(&mut m)).is_empty());
        m.poll(now + SECOND, |_| 0);
        assert_eq!(
            dials(&actions(&mut m)),
            [friend],
            "one initial wait after the reset"
        );
    }

    #[test]
    fn at_most_max_concurrent_dials_longest_waiting_first() {
        let me = Keypair::generate().id();
        let friends: Vec<CarrierId> = (0..5).map(|_| Keypair::generate().id()).collect();
        let mut m = machine(me, &friends);
        let now = Instant::now();
        m.poll(now, |_| 0);
        let first = dials(&actions(&mut m));
        assert_eq!(first.len(), 2);
        assert_eq!(m.dials_in_flight(), 2);
        // Nothing more while both are in flight.
        m.poll(now, |_| 0);
        assert!(dials(&actions(&mut m)).is_empty());
        // One fails: a slot frees, and a friend never tried goes before the one that failed.
        m.dial_ended(first[0], false, now);
        m.poll(now + 5 * SECOND, |_| 0);
        let second = dials(&actions(&mut m));
        assert_eq!(second.len(), 1);
        assert!(!first.contains(&second[0]));
    }

    #[test]
    fn a_duplicate_close_keeps_the_friend_online_for_the_grace_only() {
        let (me, friend) = pair();
        let now = Instant::now();
        let mut m = machine(me, &[friend]);
        m.link_up(friend, 1, 1, false, 0, false, 0, now);
        assert_eq!(actions(&mut m), [Action::Connected(friend)]);
        m.link_closed(friend, 1, Closed::Duplicate, now);
        assert!(actions(&mut m).is_empty() && m.is_online(&friend));
        // No dial of ours during the grace.
        m.poll(now + SECOND, |_| 0);
        assert!(actions(&mut m).is_empty());
        m.poll(now + DUPLICATE_GRACE, |_| 0);
        assert_eq!(
            actions(&mut m),
            [Action::Disconnected(friend), Action::Dial(friend)]
        );
    }

    #[test]
    fn a_removed_friend_is_disconnected_at_its_refresh_not_before() {
        let (me, friend) = pair();
        let now = Instant::now();
        let mut m = machine(me, &[friend]);
        m.link_up(friend, 1, 1, true, 0, false, 0, now);
        assert_eq!(actions(&mut m), [Action::Connected(friend)]);
        m.set_friends([]);
        m.poll(now, |_| 1);
        assert!(
            actions(&mut m).is_empty(),
            "nothing before the layer says Removed"
        );
        m.refresh(friend, now);
        assert_eq!(actions(&mut m), [Action::Disconnected(friend)]);
        // The link stays until it closes (it may be carrying the remove), and is not dialled.
        assert_eq!(m.link_count(), 1);
        m.link_closed(friend, 1, Closed::Other, now);
        m.poll(now, |_| 1);
        assert!(actions(&mut m).is_empty());
    }
}
