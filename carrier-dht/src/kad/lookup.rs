//! One iterative Kademlia lookup: which nodes to ask next, when it is done, and its result.
//!
//! α requests are kept in flight, always to the closest candidates not yet asked. Once a reply
//! brings nothing closer than the closest node already known, the lookup asks every candidate
//! not yet asked among the K closest at once, and keeps doing so for new ones that enter the K
//! closest, until all K closest live candidates have answered. The result is those K servers.

use crate::wire::key::{Distance, Key};
use crate::wire::message::{Contact, K};

/// Candidates not yet asked that are kept beyond the K closest (nodes beyond them matter only
/// if many closer ones fail).
const SPARE_CANDIDATES: usize = 3 * K;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Fresh,
    InFlight,
    Answered,
    Failed,
}

#[derive(Clone, Debug)]
struct Candidate {
    contact: Contact,
    distance: Distance,
    /// Hop depth: 1 for a seed, one more than the reply that introduced it.
    depth: u32,
    /// Round trips on the chain of answers that led to asking it: 1 for the first requests,
    /// one more than the answer (or timeout) whose handling sent it; 0 while not asked.
    wave: u32,
    state: State,
}

/// A server that answered a lookup.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Answered {
    pub(crate) contact: Contact,
    pub(crate) depth: u32,
}

/// The state of one lookup.
#[derive(Clone, Debug)]
pub(crate) struct Lookup {
    target: Key,
    own: Key,
    alpha: usize,
    /// Sorted by distance to the target.
    candidates: Vec<Candidate>,
    in_flight: usize,
    final_phase: bool,
    /// The wave of the answer or failure being handled: requests sent next are one deeper.
    wave: u32,
}

/// Where one candidate of a finished lookup came from: for the simulator's trace.
#[cfg(feature = "sim")]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct CandidateTrace {
    pub(crate) id: Key,
    /// Hop depth at which a reply first named it (1: a seed).
    pub(crate) learned: u32,
    /// Wave of the request it answered, if it answered.
    pub(crate) answered: Option<u32>,
}

impl Lookup {
    pub(crate) fn new(target: Key, own: Key, alpha: usize, seeds: &[Contact]) -> Self {
        let mut lookup = Self {
            target,
            own,
            alpha: alpha.max(1),
            candidates: Vec::new(),
            in_flight: 0,
            final_phase: false,
            wave: 0,
        };
        for seed in seeds {
            lookup.add(*seed, 1);
        }
        lookup
    }

    pub(crate) fn target(&self) -> Key {
        self.target
    }

    fn add(&mut self, contact: Contact, depth: u32) -> bool {
        if contact.id == self.own || self.candidates.iter().any(|c| c.contact.id == contact.id) {
            return false;
        }
        let distance = contact.id.distance(&self.target);
        let pos = self.candidates.partition_point(|c| c.distance < distance);
        self.candidates.insert(
            pos,
            Candidate {
                contact,
                distance,
                depth,
                wave: 0,
                state: State::Fresh,
            },
        );
        self.prune();
        true
    }

    /// Drops the farthest never-asked candidates beyond the spare allowance.
    fn prune(&mut self) {
        let mut live = 0;
        let mut keep = Vec::with_capacity(self.candidates.len());
        for candidate in self.candidates.drain(..) {
            let counts = candidate.state != State::Failed;
            if candidate.state == State::Fresh && live >= K + SPARE_CANDIDATES {
                continue;
            }
            if counts {
                live += 1;
            }
            keep.push(candidate);
        }
        self.candidates = keep;
    }

    /// Indices of the K closest candidates that have not failed.
    fn top(&self) -> impl Iterator<Item = usize> + '_ {
        self.candidates
            .iter()
            .enumerate()
            .filter(|(_, c)| c.state != State::Failed)
            .take(K)
            .map(|(i, _)| i)
    }

    /// Whether every one of the K closest live candidates has answered (or none is left).
    pub(crate) fn is_done(&self) -> bool {
        self.top()
            .all(|i| self.candidates[i].state == State::Answered)
    }

    /// The nodes to ask now; each is marked in flight.
    pub(crate) fn next_requests(&mut self) -> Vec<Contact> {
        let fresh: Vec<usize> = self
            .top()
            .filter(|&i| self.candidates[i].state == State::Fresh)
            .collect();
        let budget = if self.final_phase {
            fresh.len()
        } else {
            self.alpha.saturating_sub(self.in_flight)
        };
        let mut out = Vec::new();
        for i in fresh.into_iter().take(budget) {
            self.candidates[i].state = State::InFlight;
            self.candidates[i].wave = self.wave + 1;
            self.in_flight += 1;
            out.push(self.candidates[i].contact);
        }
        out
    }

    fn position(&self, id: &Key) -> Option<usize> {
        self.candidates.iter().position(|c| c.contact.id == *id)
    }

    fn closest_known(&self) -> Option<Distance> {
        self.candidates
            .iter()
            .find(|c| c.state != State::Failed)
            .map(|c| c.distance)
    }

    /// `id` answered, listing `nodes` (empty when it answered with a value instead).
    pub(crate) fn on_answer(&mut self, id: &Key, nodes: &[Contact]) {
        let Some(pos) = self.position(id) else {
            return;
        };
        if self.candidates[pos].state == State::InFlight {
            self.in_flight -= 1;
        }
        self.candidates[pos].state = State::Answered;
        self.wave = self.candidates[pos].wave;
        let depth = self.candidates[pos].depth + 1;
        let before = self.closest_known();
        for node in nodes {
            self.add(*node, depth);
        }
        if self.closest_known() == before {
            // No progress: time to ask all of the K closest at once.
            self.final_phase = true;
        }
    }

    /// `id` did not answer.
    pub(crate) fn on_failure(&mut self, id: &Key) {
        if let Some(pos) = self.position(id) {
            if self.candidates[pos].state == State::InFlight {
                self.in_flight -= 1;
            }
            self.candidates[pos].state = State::Failed;
            self.wave = self.candidates[pos].wave;
        }
    }

    /// The K closest servers that answered, closest first.
    pub(crate) fn answered(&self) -> Vec<Answered> {
        self.answered_up_to(K)
    }

    /// The closest `n` candidates that answered, closest first: [`answered`](Self::answered)
    /// reaching past the K closest.
    pub(crate) fn answered_up_to(&self, n: usize) -> Vec<Answered> {
        self.candidates
            .iter()
            .filter(|c| c.state == State::Answered)
            .take(n)
            .map(|c| Answered {
                contact: c.contact,
                depth: c.depth,
            })
            .collect()
    }

    /// Rounds as DESIGN.md defines them: the greatest hop depth among the K closest that
    /// answered.
    pub(crate) fn rounds(&self) -> u32 {
        self.answered().iter().map(|a| a.depth).max().unwrap_or(0)
    }

    /// Every candidate still held, closest first: where each was learned and when it answered.
    #[cfg(feature = "sim")]
    pub(crate) fn trace(&self) -> Vec<CandidateTrace> {
        self.candidates
            .iter()
            .map(|c| CandidateTrace {
                id: c.contact.id,
                learned: c.depth,
                answered: (c.state == State::Answered).then_some(c.wave),
            })
            .collect()
    }

    /// Requests of this lookup still awaiting answers.
    #[cfg(test)]
    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;

    fn contact(byte: u8) -> Contact {
        let mut id = [0u8; 32];
        id[0] = byte;
        Contact {
            id: Key(id),
            addr: SocketAddr::from(([10, 0, byte, 1], 4000)),
        }
    }

    #[test]
    fn lookup_converges_on_the_closest_and_counts_depth() {
        let target = Key([0; 32]);
        let own = Key([0xff; 32]);
        let mut lookup = Lookup::new(target, own, 3, &[contact(200), contact(201)]);
        let first = lookup.next_requests();
        assert_eq!(first.len(), 2);
        lookup.on_answer(&contact(200).id, &[contact(10), contact(11)]);
        lookup.on_answer(&contact(201).id, &[contact(10)]);
        let mut guard = 0;
        while !lookup.is_done() && guard < 100 {
            for c in lookup.next_requests() {
                lookup.on_answer(&c.id, &[]);
            }
            guard += 1;
        }
        assert!(lookup.is_done());
        let answered = lookup.answered();
        assert_eq!(answered[0].contact, contact(10));
        assert_eq!(lookup.rounds(), 2);
        assert_eq!(lookup.in_flight(), 0);
    }
}
