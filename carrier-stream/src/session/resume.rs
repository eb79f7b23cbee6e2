//! Resuming a session across its friend's restart, without I/O.
//!
//! A QUIC stream cannot outlive its link, and a node holds its sessions in memory only, so a
//! friend that restarted has forgotten every session. When a deactivated session finds its
//! friend's link again, its side asks the friend to confirm it: a session request by invite
//! with the same session ID and bundle, marked as a resume ([`Resume`](crate::wire::Resume):
//! the original roles and where the friend's stream numbers go on). A friend that still holds
//! the session (the link only broke) confirms at once; one that restarted hands the request
//! to the bundle's handler as a [`SessionRequest`](crate::SessionRequest) whose
//! [`is_resume`](crate::SessionRequest::is_resume) is true, and accepting it re-creates the
//! session with its ID and roles, so stream IDs keep their parity. Only a confirmed session
//! is active again ([`SessionEvent::Reactivated`](crate::SessionEvent::Reactivated)); a
//! refusal closes it with the friend's reason; anything else (no answer, the link gone
//! again, the friend's sessions layer not started yet) is tried again on the next live link
//! until the grace period ends.
//!
//! Here: what a resume request gets ([`on_resume_offer`]), what a resume's answer does
//! ([`outcome`]), and the sessions a node closed lately ([`Closed`]), so a friend that was
//! away when one closed is refused rather than handed to an application that ended it.

use std::collections::{HashSet, VecDeque};
use std::hash::Hash;

use super::status;

/// How many closed sessions a node remembers, to refuse their resumes.
pub(crate) const REMEMBERED_CLOSED_SESSIONS: usize = 1024;

/// What a node does with a friend's request to resume a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OfferAnswer {
    /// It holds the session (only the link broke): confirmed without asking anyone.
    Confirm,
    /// It closed the session lately: refused with [`status::SESSION_CLOSED`].
    RefuseClosed,
    /// It knows nothing of it (it restarted): the bundle's handler decides.
    AskHandler,
}

/// What a node does with a resume request for a session it `holds` or `closed` lately.
pub(crate) fn on_resume_offer(holds: bool, closed: bool) -> OfferAnswer {
    match (holds, closed) {
        (true, _) => OfferAnswer::Confirm,
        (false, true) => OfferAnswer::RefuseClosed,
        (false, false) => OfferAnswer::AskHandler,
    }
}

/// How a resume request ended, as the driver saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Answer {
    /// The friend confirmed the session (its accept named it).
    Confirmed,
    /// The friend's reply confirmed another session: a broken friend.
    ConfirmedOther,
    /// The friend refused, with its status and reason.
    Refused { status: i32, reason: String },
    /// The friend is not a friend any more.
    NotAFriend,
    /// The friend's node has no sessions layer (yet: it may be starting).
    NoSessions,
    /// No answer: the request timed out, or the link went under it.
    Silent,
    /// This node's sessions layer is shutting down.
    ShutDown,
}

/// What a resume's answer does to the session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Active again: it raises `Reactivated`.
    Reactivate,
    /// Closed, with this reason.
    Close(String),
    /// Still deactivated: asked again on the next live link, within the grace period.
    Retry,
    /// Nothing: the layer is going.
    Nothing,
}

/// What `answer` does to the session.
pub(crate) fn outcome(answer: Answer) -> Outcome {
    match answer {
        Answer::Confirmed => Outcome::Reactivate,
        Answer::ConfirmedOther => {
            Outcome::Close("the friend's resume confirmed another session".into())
        }
        Answer::Refused { status, reason } => Outcome::Close(format!(
            "the friend refused to resume the session (status {status}): {reason}"
        )),
        Answer::NotAFriend => Outcome::Close("no longer a friend".into()),
        // A node restarting registers its sessions layer a moment after its link is up.
        Answer::NoSessions | Answer::Silent => Outcome::Retry,
        Answer::ShutDown => Outcome::Nothing,
    }
}

/// The status a refused resume of a session closed here carries.
pub(crate) const CLOSED_STATUS: i32 = status::SESSION_CLOSED;

/// The latest [`REMEMBERED_CLOSED_SESSIONS`] sessions closed here, oldest forgotten first.
#[derive(Debug)]
pub(crate) struct Closed<K> {
    order: VecDeque<K>,
    set: HashSet<K>,
    capacity: usize,
}

impl<K: Copy + Eq + Hash> Closed<K> {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            order: VecDeque::new(),
            set: HashSet::new(),
            capacity: capacity.max(1),
        }
    }

    /// Session `key` closed here.
    pub(crate) fn insert(&mut self, key: K) {
        if !self.set.insert(key) {
            return;
        }
        self.order.push_back(key);
        while self.order.len() > self.capacity {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
    }

    /// Whether session `key` closed here lately.
    pub(crate) fn contains(&self, key: &K) -> bool {
        self.set.contains(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_resume_is_confirmed_by_a_holder_refused_if_closed_else_asked_of_the_handler() {
        assert_eq!(on_resume_offer(true, false), OfferAnswer::Confirm);
        // Held beats closed: an ID closed and then resumed by a handler is held again.
        assert_eq!(on_resume_offer(true, true), OfferAnswer::Confirm);
        assert_eq!(on_resume_offer(false, true), OfferAnswer::RefuseClosed);
        assert_eq!(on_resume_offer(false, false), OfferAnswer::AskHandler);
    }

    #[test]
    fn only_a_confirmation_reactivates_and_only_silence_is_tried_again() {
        assert_eq!(outcome(Answer::Confirmed), Outcome::Reactivate);
        let refused = outcome(Answer::Refused {
            status: 9,
            reason: "not now".into(),
        });
        assert!(
            matches!(&refused, Outcome::Close(r) if r.contains("not now") && r.contains('9')),
            "{refused:?}"
        );
        assert!(matches!(outcome(Answer::ConfirmedOther), Outcome::Close(_)));
        assert!(matches!(outcome(Answer::NotAFriend), Outcome::Close(_)));
        assert_eq!(outcome(Answer::NoSessions), Outcome::Retry);
        assert_eq!(outcome(Answer::Silent), Outcome::Retry);
        assert_eq!(outcome(Answer::ShutDown), Outcome::Nothing);
    }

    #[test]
    fn closed_sessions_are_remembered_up_to_the_capacity_oldest_forgotten_first() {
        let mut closed = Closed::new(3);
        for key in [1, 2, 3, 2] {
            closed.insert(key);
        }
        assert!(closed.contains(&1) && closed.contains(&2) && closed.contains(&3));
        closed.insert(4);
        assert!(!closed.contains(&1), "the oldest went");
        assert!(closed.contains(&2) && closed.contains(&4));
    }
}
