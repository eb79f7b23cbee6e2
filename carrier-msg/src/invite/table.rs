//! The invites in flight, without I/O: every decision that depends on time takes `now`, so
//! tests run it in virtual time.
//!
//! - Outgoing: each invite this node sent has a deadline; [`InviteTable::handle_timeout`]
//!   reports those past it, and the driver resolves them as timed out.
//! - Incoming: each invite a friend sent is raised once, by its ([`CarrierId`], tag) pair,
//!   however many links it arrives on; it is pending until replied to or until its inviter's
//!   timeout passes. A reply is remembered until that timeout too, so an invite sent again on
//!   a new link gets the same reply, and replying twice is told apart from an unknown ID.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::time::{Duration, Instant};

use carrier_friend::dht::id::CarrierId;

/// The most invites pending here (received, not yet replied to) from all friends together;
/// more are answered as busy.
pub const MAX_PENDING_INVITES: usize = 1024;
/// The most invites pending here from one friend; more are answered as busy.
pub const MAX_PENDING_PER_FRIEND: usize = 128;
/// How many replies are remembered (for an invite sent again on a new link, and to tell a
/// second reply from an unknown invite); the oldest are forgotten first.
pub(crate) const MAX_REMEMBERED_REPLIES: usize = 256;
/// The longest an invitee holds an invite, whatever timeout its inviter asked for.
pub const MAX_HELD_INVITE: Duration = Duration::from_secs(24 * 60 * 60);

/// The ID of an invite this node received, unique on this node until it restarts: what
/// [`Invites::reply_invite`](super::Invites::reply_invite) takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InviteId(u64);

impl InviteId {
    /// The ID numbered `n` (as [`as_u64`](Self::as_u64) gave it, for a command line).
    pub const fn from_u64(n: u64) -> Self {
        Self(n)
    }

    /// The ID's number.
    pub const fn as_u64(self) -> u64 {
        self.0
    }
}

impl fmt::Display for InviteId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// An invite a friend sent to an extension registered here, waiting for its reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IncomingInvite {
    /// What [`Invites::reply_invite`](super::Invites::reply_invite) takes.
    pub id: InviteId,
    /// The friend who sent it.
    pub from: CarrierId,
    /// The extension it is addressed to.
    pub extension: String,
    /// The bundle (0 to [`MAX_BUNDLE_BYTES`](super::MAX_BUNDLE_BYTES) bytes).
    pub bundle: Vec<u8>,
    /// The data (1 to [`MAX_INVITE_DATA_BYTES`](super::MAX_INVITE_DATA_BYTES) bytes).
    pub data: Vec<u8>,
}

/// An invite as it arrived.
#[derive(Debug)]
pub(crate) struct Arrival {
    /// The friend who sent it.
    pub(crate) from: CarrierId,
    /// The inviter's tag for it.
    pub(crate) tag: u64,
    /// How long to hold it (capped at [`MAX_HELD_INVITE`]).
    pub(crate) timeout: Duration,
    pub(crate) extension: String,
    pub(crate) bundle: Vec<u8>,
    pub(crate) data: Vec<u8>,
}

/// What a received invite is to this node.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Admission {
    /// New: raise it.
    New(IncomingInvite),
    /// Already pending (sent again on a new link): not raised again; its reply goes on the
    /// newest stream.
    Again(InviteId),
    /// Already replied to: the reply, encoded, to write again.
    Replay(Vec<u8>),
    /// Too many pending: refuse.
    Busy,
}

/// Why a reply was refused.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ReplyRefusal {
    Unknown,
    AlreadyReplied,
}

/// What passed its time.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Expired {
    /// An outgoing invite's deadline: it timed out.
    Outgoing(u64),
    /// An incoming invite its inviter has given up on: forgotten unreplied.
    Incoming(InviteId),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Deadline {
    Outgoing(u64),
    Incoming(InviteId),
    Replied(InviteId),
}

#[derive(Debug)]
struct Pending {
    tag: u64,
    expires: Instant,
    invite: IncomingInvite,
}

#[derive(Debug)]
struct Replied {
    from: CarrierId,
    tag: u64,
    expires: Instant,
    answer: Vec<u8>,
}

/// The invites in flight; see the [module](self).
#[derive(Debug, Default)]
pub(crate) struct InviteTable {
    next_outgoing: u64,
    next_id: u64,
    outgoing: HashMap<u64, Instant>,
    deadlines: BTreeSet<(Instant, Deadline)>,
    pending: BTreeMap<InviteId, Pending>,
    replied: BTreeMap<InviteId, Replied>,
    by_tag: HashMap<(CarrierId, u64), InviteId>,
    per_friend: HashMap<CarrierId, usize>,
}

impl InviteTable {
    /// Starts an outgoing invite that times out at `now + timeout`; its key.
    pub(crate) fn start_outgoing(&mut self, now: Instant, timeout: Duration) -> u64 {
        let key = self.next_outgoing;
        self.next_outgoing += 1;
        let deadline = now + timeout;
        self.outgoing.insert(key, deadline);
        self.deadlines.insert((deadline, Deadline::Outgoing(key)));
        key
    }

    /// The outgoing invite `key` is answered (or given up): no timeout for it any more.
    pub(crate) fn finish_outgoing(&mut self, key: u64) {
        if let Some(deadline) = self.outgoing.remove(&key) {
            self.deadlines.remove(&(deadline, Deadline::Outgoing(key)));
        }
    }

    /// An invite arrived: raise it, or not, or answer it at once.
    pub(crate) fn admit(&mut self, now: Instant, arrival: Arrival) -> Admission {
        let Arrival {
            from,
            tag,
            timeout,
            extension,
            bundle,
            data,
        } = arrival;
        if let Some(&id) = self.by_tag.get(&(from, tag)) {
            if self.pending.contains_key(&id) {
                return Admission::Again(id);
            }
            if let Some(replied) = self.replied.get(&id) {
                return Admission::Replay(replied.answer.clone());
            }
        }
        let from_friend = self.per_friend.get(&from).copied().unwrap_or(0);
        if self.pending.len() >= MAX_PENDING_INVITES || from_friend >= MAX_PENDING_PER_FRIEND {
            return Admission::Busy;
        }
        let id = InviteId(self.next_id);
        self.next_id += 1;
        let expires = now + timeout.min(MAX_HELD_INVITE);
        let invite = IncomingInvite {
            id,
            from,
            extension,
            bundle,
            data,
        };
        self.pending.insert(
            id,
            Pending {
                tag,
                expires,
                invite: invite.clone(),
            },
        );
        self.by_tag.insert((from, tag), id);
        *self.per_friend.entry(from).or_insert(0) += 1;
        self.deadlines.insert((expires, Deadline::Incoming(id)));
        Admission::New(invite)
    }

    /// The pending invite `id`, for a reply; `None` if it is not pending (or its time is up).
    pub(crate) fn pending_one(&self, now: Instant, id: InviteId) -> Option<&IncomingInvite> {
        self.pending
            .get(&id)
            .filter(|p| p.expires > now)
            .map(|p| &p.invite)
    }

    /// The invites pending now, oldest first.
    pub(crate) fn pending(&self, now: Instant) -> Vec<IncomingInvite> {
        self.pending
            .values()
            .filter(|p| p.expires > now)
            .map(|p| p.invite.clone())
            .collect()
    }

    /// Replies to the pending invite `id` with `answer` (encoded): it is pending no more, and
    /// the answer is remembered until the inviter's timeout passes.
    pub(crate) fn reply(
        &mut self,
        now: Instant,
        id: InviteId,
        answer: Vec<u8>,
    ) -> Result<(), ReplyRefusal> {
        if self.replied.contains_key(&id) {
            return Err(ReplyRefusal::AlreadyReplied);
        }
        if self.pending_one(now, id).is_none() {
            return Err(ReplyRefusal::Unknown);
        }
        let Some(pending) = self.remove_pending(id) else {
            return Err(ReplyRefusal::Unknown);
        };
        if self.replied.len() >= MAX_REMEMBERED_REPLIES {
            if let Some((old, forgotten)) = self.replied.pop_first() {
                self.deadlines
                    .remove(&(forgotten.expires, Deadline::Replied(old)));
                self.by_tag.remove(&(forgotten.from, forgotten.tag));
            }
        }
        let from = pending.invite.from;
        self.by_tag.insert((from, pending.tag), id);
        self.deadlines
            .insert((pending.expires, Deadline::Replied(id)));
        self.replied.insert(
            id,
            Replied {
                from,
                tag: pending.tag,
                expires: pending.expires,
                answer,
            },
        );
        Ok(())
    }

    fn remove_pending(&mut self, id: InviteId) -> Option<Pending> {
        let pending = self.pending.remove(&id)?;
        let from = pending.invite.from;
        self.deadlines
            .remove(&(pending.expires, Deadline::Incoming(id)));
        self.by_tag.remove(&(from, pending.tag));
        if let Some(count) = self.per_friend.get_mut(&from) {
            *count -= 1;
            if *count == 0 {
                self.per_friend.remove(&from);
            }
        }
        Some(pending)
    }

    /// When [`handle_timeout`](Self::handle_timeout) has something to do next.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        self.deadlines.first().map(|(at, _)| *at)
    }

    /// Everything whose time is up at `now`: outgoing invites time out, pending incoming ones
    /// and remembered replies are forgotten. Returns the timed-out and forgotten invites.
    pub(crate) fn handle_timeout(&mut self, now: Instant) -> Vec<Expired> {
        let mut expired = Vec::new();
        while let Some(&(at, deadline)) = self.deadlines.first() {
            if at > now {
                break;
            }
            self.deadlines.pop_first();
            match deadline {
                Deadline::Outgoing(key) => {
                    self.outgoing.remove(&key);
                    expired.push(Expired::Outgoing(key));
                }
                Deadline::Incoming(id) => {
                    if self.remove_pending(id).is_some() {
                        expired.push(Expired::Incoming(id));
                    }
                }
                Deadline::Replied(id) => {
                    if let Some(replied) = self.replied.remove(&id) {
                        self.by_tag.remove(&(replied.from, replied.tag));
                    }
                }
            }
        }
        expired
    }

    /// Forgets everything, as at shutdown: the outgoing keys and the pending invites.
    pub(crate) fn clear(&mut self) -> (Vec<u64>, Vec<InviteId>) {
        let outgoing = self.outgoing.drain().map(|(key, _)| key).collect();
        let pending = self.pending.keys().copied().collect();
        *self = Self {
            next_outgoing: self.next_outgoing,
            next_id: self.next_id,
            ..Self::default()
        };
        (outgoing, pending)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use carrier_friend::dht::id::Keypair;

    const MINUTE: Duration = Duration::from_secs(60);

    fn arrival(from: CarrierId, tag: u64, timeout: Duration) -> Arrival {
        Arrival {
            from,
            tag,
            timeout,
            extension: "chat".into(),
            bundle: vec![1],
            data: vec![2],
        }
    }

    fn admit(table: &mut InviteTable, now: Instant, from: CarrierId, tag: u64) -> Admission {
        table.admit(now, arrival(from, tag, MINUTE))
    }

    fn new_id(admission: Admission) -> InviteId {
        match admission {
            Admission::New(invite) => invite.id,
            other => panic!("not new: {other:?}"),
        }
    }

    #[test]
    fn an_outgoing_invite_times_out_at_its_deadline_and_not_once_finished() {
        let mut table = InviteTable::default();
        let t0 = Instant::now();
        let a = table.start_outgoing(t0, MINUTE);
        let b = table.start_outgoing(t0, 2 * MINUTE);
        let c = table.start_outgoing(t0, 3 * MINUTE);
        assert_eq!(table.poll_timeout(), Some(t0 + MINUTE));
        assert!(table
            .handle_timeout(t0 + MINUTE - Duration::from_millis(1))
            .is_empty());
        assert_eq!(table.handle_timeout(t0 + MINUTE), [Expired::Outgoing(a)]);
        table.finish_outgoing(b);
        assert_eq!(table.poll_timeout(), Some(t0 + 3 * MINUTE));
        assert_eq!(
            table.handle_timeout(t0 + 10 * MINUTE),
            [Expired::Outgoing(c)]
        );
        assert_eq!(table.poll_timeout(), None);
    }

    #[test]
    fn an_invite_sent_again_is_raised_once_and_its_reply_replayed() {
        let mut table = InviteTable::default();
        let t0 = Instant::now();
        let alice = Keypair::generate().id();
        let bob = Keypair::generate().id();
        let id = new_id(admit(&mut table, t0, alice, 7));
        assert_eq!(admit(&mut table, t0, alice, 7), Admission::Again(id));
        // The same tag from someone else is another invite.
        let other = new_id(admit(&mut table, t0, bob, 7));
        assert_ne!(other, id);
        assert_eq!(table.pending(t0).len(), 2);

        assert_eq!(table.reply(t0, id, b"yes".to_vec()), Ok(()));
        assert_eq!(
            table.reply(t0, id, b"again".to_vec()),
            Err(ReplyRefusal::AlreadyReplied)
        );
        assert_eq!(
            admit(&mut table, t0, alice, 7),
            Admission::Replay(b"yes".to_vec())
        );
        assert_eq!(table.pending(t0).len(), 1);
        assert_eq!(
            table.reply(t0, InviteId(99), vec![]),
            Err(ReplyRefusal::Unknown)
        );
    }

    #[test]
    fn an_unreplied_invite_is_forgotten_when_its_inviter_gives_up_and_a_reply_after_it() {
        let mut table = InviteTable::default();
        let t0 = Instant::now();
        let alice = Keypair::generate().id();
        let early = new_id(table.admit(t0, arrival(alice, 1, Duration::from_secs(10))));
        let late = new_id(admit(&mut table, t0, alice, 2));
        assert_eq!(table.poll_timeout(), Some(t0 + Duration::from_secs(10)));
        // Past its time, it is neither listed nor replied to, even before the timer ran.
        let t1 = t0 + Duration::from_secs(10);
        assert_eq!(table.pending(t1).len(), 1);
        assert_eq!(table.reply(t1, early, vec![1]), Err(ReplyRefusal::Unknown));
        assert_eq!(table.handle_timeout(t1), [Expired::Incoming(early)]);

        table.reply(t1, late, b"ok".to_vec()).unwrap();
        // The reply is remembered until the inviter's timeout, then forgotten.
        assert_eq!(table.poll_timeout(), Some(t0 + MINUTE));
        assert!(table.handle_timeout(t0 + MINUTE).is_empty());
        assert_eq!(table.reply(t1, late, vec![1]), Err(ReplyRefusal::Unknown));
        assert!(matches!(
            admit(&mut table, t0 + MINUTE, alice, 2),
            Admission::New(_)
        ));
    }

    #[test]
    fn an_inviter_cannot_ask_to_be_held_longer_than_a_day() {
        let mut table = InviteTable::default();
        let t0 = Instant::now();
        let alice = Keypair::generate().id();
        let forever = Duration::from_secs(u32::MAX.into());
        let id = new_id(table.admit(t0, arrival(alice, 1, forever)));
        assert_eq!(table.poll_timeout(), Some(t0 + MAX_HELD_INVITE));
        assert_eq!(
            table.handle_timeout(t0 + MAX_HELD_INVITE),
            [Expired::Incoming(id)]
        );
    }

    #[test]
    fn pending_invites_are_capped_per_friend_and_in_all() {
        let mut table = InviteTable::default();
        let t0 = Instant::now();
        let alice = Keypair::generate().id();
        let first = new_id(admit(&mut table, t0, alice, 0));
        for tag in 1..MAX_PENDING_PER_FRIEND as u64 {
            new_id(admit(&mut table, t0, alice, tag));
        }
        assert_eq!(admit(&mut table, t0, alice, 10_000), Admission::Busy);
        // A reply makes room.
        table.reply(t0, first, b"ok".to_vec()).unwrap();
        new_id(admit(&mut table, t0, alice, 10_000));

        let mut tag = 20_000;
        while table.pending(t0).len() < MAX_PENDING_INVITES {
            let friend = Keypair::generate().id();
            for _ in 0..MAX_PENDING_PER_FRIEND {
                if table.pending(t0).len() == MAX_PENDING_INVITES {
                    break;
                }
                new_id(admit(&mut table, t0, friend, tag));
                tag += 1;
            }
        }
        let stranger = Keypair::generate().id();
        assert_eq!(admit(&mut table, t0, stranger, 1), Admission::Busy);
    }

    #[test]
    fn replies_are_remembered_up_to_a_cap_oldest_forgotten_first() {
        let mut table = InviteTable::default();
        let t0 = Instant::now();
        let alice = Keypair::generate().id();
        let mut ids = Vec::new();
        for tag in 0..=MAX_REMEMBERED_REPLIES as u64 {
            let id = new_id(admit(&mut table, t0, alice, tag));
            table.reply(t0, id, vec![tag as u8]).unwrap();
            ids.push(id);
        }
        assert_eq!(table.reply(t0, ids[0], vec![]), Err(ReplyRefusal::Unknown));
        assert_eq!(
            table.reply(t0, ids[1], vec![]),
            Err(ReplyRefusal::AlreadyReplied)
        );
        assert!(matches!(admit(&mut table, t0, alice, 0), Admission::New(_)));
        assert_eq!(admit(&mut table, t0, alice, 1), Admission::Replay(vec![1]));
    }

    #[test]
    fn clear_forgets_everything_but_never_reuses_an_id() {
        let mut table = InviteTable::default();
        let t0 = Instant::now();
        let alice = Keypair::generate().id();
        let key = table.start_outgoing(t0, MINUTE);
        let id = new_id(admit(&mut table, t0, alice, 1));
        assert_eq!(table.clear(), (vec![key], vec![id]));
        assert_eq!(table.poll_timeout(), None);
        assert!(new_id(admit(&mut table, t0, alice, 1)) > id);
        assert!(table.start_outgoing(t0, MINUTE) > key);
    }
}
