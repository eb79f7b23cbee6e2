//! [`Scheduler`]: which due outbox entries to attempt now, and when to look again.
//!
//! Knows nothing of what the entries carry: the owning layer attempts each entry it is handed
//! and reports the end of the attempt with [`Scheduler::finished`].

use std::collections::HashSet;

use carrier_dht::id::CarrierId;

use super::{OutboxEntry, OutboxId};

/// Attempts in progress at once, by default.
pub const MAX_IN_FLIGHT: usize = 32;

/// Picks the entries to attempt: oldest first, one attempt per peer at a time (so items to a
/// peer arrive in the order they were made), at most `max_in_flight` at once. Items made in
/// the same millisecond go in the order of their kind byte, lowest first.
#[derive(Debug)]
pub struct Scheduler {
    in_flight: HashSet<(CarrierId, OutboxId)>,
    max_in_flight: usize,
}

impl Default for Scheduler {
    fn default() -> Self {
        Self::new(MAX_IN_FLIGHT)
    }
}

impl Scheduler {
    /// A scheduler with nothing in flight, allowing `max_in_flight` attempts at once (at
    /// least one).
    pub fn new(max_in_flight: usize) -> Self {
        Self {
            in_flight: HashSet::new(),
            max_in_flight: max_in_flight.max(1),
        }
    }

    /// Of `entries` (the whole outbox), those to attempt at `now_unix_ms`, each now counted
    /// in flight until [`finished`](Self::finished); and the earliest time (Unix ms, at most
    /// `latest_unix_ms`) an entry not yet due becomes due.
    pub fn pick(
        &mut self,
        mut entries: Vec<OutboxEntry>,
        now_unix_ms: u64,
        latest_unix_ms: u64,
    ) -> (Vec<OutboxEntry>, u64) {
        let mut next = latest_unix_ms;
        let mut picked = Vec::new();
        entries.sort_by_key(|entry| (entry.created_unix_ms, entry.kind));
        for entry in entries {
            if entry.next_attempt_unix_ms > now_unix_ms {
                next = next.min(entry.next_attempt_unix_ms);
                continue;
            }
            if self.in_flight.len() >= self.max_in_flight
                || self.in_flight.iter().any(|(peer, _)| *peer == entry.peer)
                || !self.in_flight.insert((entry.peer, entry.id))
            {
                continue;
            }
            picked.push(entry);
        }
        (picked, next)
    }

    /// The attempt of `id` for `peer` ended (whatever its outcome).
    pub fn finished(&mut self, peer: &CarrierId, id: &OutboxId) {
        self.in_flight.remove(&(*peer, *id));
    }

    /// Attempts in progress now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outbox::Route;
    use carrier_dht::id::Keypair;

    fn entry(peer: CarrierId, created: u64, kind: u8, due: u64) -> OutboxEntry {
        OutboxEntry {
            peer,
            id: OutboxId::random(),
            kind,
            route: Route::Messages,
            payload: Vec::new(),
            created_unix_ms: created,
            attempts: 0,
            next_attempt_unix_ms: due,
            deposited_unix_ms: None,
        }
    }

    #[test]
    fn one_attempt_per_peer_oldest_first_and_the_next_due_time() {
        let (a, b) = (Keypair::generate().id(), Keypair::generate().id());
        let mut scheduler = Scheduler::new(8);
        let entries = vec![
            entry(a, 20, 1, 0),
            entry(a, 10, 2, 0),
            entry(a, 10, 1, 0),
            entry(b, 30, 1, 500),
            entry(b, 40, 1, 0),
        ];
        let (picked, next) = scheduler.pick(entries.clone(), 100, 10_000);
        let got: Vec<(u64, u8)> = picked.iter().map(|e| (e.created_unix_ms, e.kind)).collect();
        assert_eq!(got, [(10, 1), (40, 1)]);
        assert_eq!(next, 500);
        // Nothing more while those are in flight.
        let (again, _) = scheduler.pick(entries, 100, 10_000);
        assert!(again.is_empty());
        assert_eq!(scheduler.in_flight(), 2);
        scheduler.finished(&picked[0].peer, &picked[0].id);
        assert_eq!(scheduler.in_flight(), 1);
    }

    #[test]
    fn at_most_max_in_flight() {
        let mut scheduler = Scheduler::new(2);
        let entries: Vec<OutboxEntry> = (0..5)
            .map(|i| entry(Keypair::generate().id(), i, 1, 0))
            .collect();
        let (picked, next) = scheduler.pick(entries, 100, 7_000);
        assert_eq!(picked.len(), 2);
        assert_eq!(next, 7_000);
    }
}
