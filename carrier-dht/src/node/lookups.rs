//! Queries a node runs for its commands and its own maintenance, as the node drives them:
//! lookups, gets, puts, announces, pings, refreshes and republishes (the query records are in
//! `query.rs`).

use crate::kad::lookup::Lookup;
use crate::kad::storage::Item;
use crate::node::error::CommandError;
use crate::node::event::{Event, QueryFinished, QueryId, QueryOutcome};
use crate::node::query::{Kind, Query, Storing, BOOTSTRAP_ROUNDS};
use crate::node::rpc::Purpose;
use crate::node::Node;
use crate::wire::key::Key;
use crate::wire::message::{Contact, RequestBody, ResponseBody, K};
use crate::wire::record::{ImmutableValue, PeerRecord, Value};
use crate::wire::time::Now;

/// Republishes started per maintenance tick, so a large store does not burst.
const MAX_REPUBLISH_PER_TICK: usize = 64;
/// Bucket refreshes started per maintenance tick.
const MAX_REFRESH_PER_TICK: usize = 2;
/// How long after a bootstrap its settling lookup starts ([`Node::settle`]), on average (it
/// is drawn in `[1/2, 3/2)` of this): long enough for nodes started in the same instant to
/// have joined (a join takes milliseconds to a few hundred), short enough that a young
/// network is one within seconds.
pub(crate) const SETTLE_DELAY: std::time::Duration = std::time::Duration::from_secs(2);

impl Node {
    pub(crate) fn start(
        &mut self,
        now: Now,
        kind: Kind,
        target: Key,
        seeds: Vec<Contact>,
        internal: bool,
    ) -> Result<QueryId, CommandError> {
        let seeds = if seeds.is_empty() {
            self.table.closest(&target, K)
        } else {
            seeds
        };
        if seeds.is_empty() {
            return Err(CommandError::NotBootstrapped);
        }
        let id = self.allocate_query();
        let query = Query {
            kind,
            lookup: Lookup::new(target, self.own, self.config.alpha, &seeds),
            started: now.instant,
            internal,
            storing: None,
            value: None,
            peer: None,
            mailbox: None,
            datagrams: 0,
        };
        self.table.touch(&target, now.instant);
        self.drive(now, id, query);
        Ok(id)
    }

    /// Joins the network through `seeds` (servers whose IDs and addresses are known, e.g.
    /// bootstrap nodes) by looking up our own key. Finishes with [`QueryOutcome::Nodes`].
    pub fn bootstrap(&mut self, now: Now, seeds: &[Contact]) -> Result<QueryId, CommandError> {
        if seeds.is_empty() {
            return Err(CommandError::NotBootstrapped);
        }
        let own = self.own;
        self.rejoin_pending = true;
        self.seeds = seeds
            .iter()
            .copied()
            .take(crate::node::REJOIN_SEEDS)
            .collect();
        let kind = Kind::Bootstrap {
            seeds: seeds.to_vec(),
            rounds_left: BOOTSTRAP_ROUNDS.saturating_sub(1),
        };
        self.start(now, kind, own, seeds.to_vec(), false)
    }

    /// Looks up the K closest servers to `target`.
    pub fn find_node(&mut self, now: Now, target: Key) -> Result<QueryId, CommandError> {
        self.start(now, Kind::FindNode, target, Vec::new(), false)
    }

    /// Gets the value under `key` (the newest version for a mutable value).
    pub fn get(&mut self, now: Now, key: Key) -> Result<QueryId, CommandError> {
        if let Some(Item::Value(value @ Value::Immutable(_))) = self.storage.get(&key, now.unix_ms)
        {
            let id = self.allocate_query();
            self.events.push_back(Event::QueryFinished(QueryFinished {
                id,
                target: key,
                closest: Vec::new(),
                rounds: 0,
                elapsed: std::time::Duration::ZERO,
                outcome: QueryOutcome::Value(Some(value)),
            }));
            return Ok(id);
        }
        self.start(now, Kind::Get, key, Vec::new(), false)
    }

    /// Stores `value` at the K closest servers to its key; with `cas`, only where the stored
    /// sequence number is `cas`.
    pub fn put(
        &mut self,
        now: Now,
        value: Value,
        cas: Option<u64>,
    ) -> Result<QueryId, CommandError> {
        let key = value.key();
        value.verify_for(&key)?;
        self.start(now, Kind::Put { value, cas }, key, Vec::new(), false)
    }

    /// Stores `data` as an immutable value; returns the query and the value's key.
    pub fn put_immutable(&mut self, now: Now, data: &[u8]) -> Result<(QueryId, Key), CommandError> {
        let value = ImmutableValue::new(data)?;
        let key = value.key();
        let id = self.put(now, Value::Immutable(value), None)?;
        Ok((id, key))
    }

    /// Stores a signed peer record at the K closest servers to its node's key.
    pub fn announce(&mut self, now: Now, record: PeerRecord) -> Result<QueryId, CommandError> {
        record.verify()?;
        let key = record.key();
        self.start(now, Kind::Announce(record), key, Vec::new(), false)
    }

    /// Finds the newest peer record of the node `id`.
    pub fn find_peer(&mut self, now: Now, id: Key) -> Result<QueryId, CommandError> {
        self.start(now, Kind::FindPeer, id, Vec::new(), false)
    }

    /// Pings `contact`; finishes with [`QueryOutcome::Pong`].
    pub fn ping(&mut self, now: Now, contact: Contact) -> QueryId {
        let id = self.allocate_query();
        let mut query = Query {
            kind: Kind::Ping,
            lookup: Lookup::new(contact.id, self.own, 1, &[]),
            started: now.instant,
            internal: false,
            storing: None,
            value: None,
            peer: None,
            mailbox: None,
            datagrams: 0,
        };
        let attempts = self.config.rpc_attempts;
        if self.send_request(
            now,
            contact,
            RequestBody::Ping,
            Purpose::Query(id),
            attempts,
        ) {
            query.datagrams += 1;
            self.queries.insert(id, query);
        } else {
            self.finish(now, id, query, QueryOutcome::Pong(false));
        }
        id
    }

    fn lookup_body(kind: &Kind, target: Key) -> RequestBody {
        match kind {
            Kind::Get => RequestBody::FindValue { key: target },
            Kind::FindPeer => RequestBody::FindPeer { id: target },
            _ => RequestBody::FindNode { target },
        }
    }

    /// Sends what the query needs next, or finishes it.
    fn drive(&mut self, now: Now, id: QueryId, mut query: Query) {
        if query.storing.is_none() {
            loop {
                let next = query.lookup.next_requests();
                if next.is_empty() {
                    break;
                }
                let body = Self::lookup_body(&query.kind, query.lookup.target());
                let attempts = self.config.lookup_attempts;
                for contact in next {
                    if self.send_request(now, contact, body.clone(), Purpose::Query(id), attempts) {
                        query.datagrams += 1;
                    } else {
                        query.lookup.on_failure(&contact.id);
                    }
                }
            }
            if !query.lookup.is_done() {
                self.queries.insert(id, query);
                return;
            }
            let store_body = match &query.kind {
                Kind::Put { value, cas } => RequestBody::StoreValue {
                    value: value.clone(),
                    cas: *cas,
                },
                Kind::Announce(record) => RequestBody::AnnouncePeer {
                    record: record.clone(),
                },
                Kind::Get => {
                    let value = query.value.clone();
                    return self.finish(now, id, query, QueryOutcome::Value(value));
                }
                Kind::FindPeer => {
                    let peer = query.peer.clone();
                    return self.finish(now, id, query, QueryOutcome::Peer(peer));
                }
                Kind::Bootstrap { seeds, rounds_left }
                    if *rounds_left > 0 && query.lookup.answered().is_empty() =>
                {
                    // Lookup requests are sent once (lookups route around silent nodes);
                    // with few seeds one lost datagram would fail the join, so it starts over.
                    let seeds = seeds.clone();
                    query.kind = Kind::Bootstrap {
                        seeds: seeds.clone(),
                        rounds_left: rounds_left - 1,
                    };
                    let target = query.lookup.target();
                    query.lookup = Lookup::new(target, self.own, self.config.alpha, &seeds);
                    return self.drive(now, id, query);
                }
                Kind::Bootstrap { .. } => {
                    // The seeds knew fewer than K servers: they are as new as we are.
                    self.young = query.lookup.answered().len() < K;
                    if !query.lookup.answered().is_empty() {
                        // Spread over [SETTLE_DELAY / 2, 3 × SETTLE_DELAY / 2): nodes that joined
                        // in the same instant settle one after another, not again all at once.
                        let spread = SETTLE_DELAY.as_millis() as u64;
                        let jitter = self.entropy.next_u64() % spread;
                        self.settle_at = Some(
                            now.instant
                                + SETTLE_DELAY / 2
                                + std::time::Duration::from_millis(jitter),
                        );
                    }
                    return self.finish(now, id, query, QueryOutcome::Nodes);
                }
                Kind::Settle => {
                    if self.young {
                        self.fill_empty_buckets(now);
                    }
                    return self.finish(now, id, query, QueryOutcome::Nodes);
                }
                Kind::FindNode | Kind::Ping => {
                    return self.finish(now, id, query, QueryOutcome::Nodes);
                }
                Kind::Mailbox(_) => return self.start_mailbox_phase(now, id, query),
            };
            let mut storing = Storing::default();
            let attempts = self.config.rpc_attempts;
            for answered in query.lookup.answered() {
                if self.send_request(
                    now,
                    answered.contact,
                    store_body.clone(),
                    Purpose::Query(id),
                    attempts,
                ) {
                    storing.awaiting += 1;
                    query.datagrams += 1;
                }
            }
            query.storing = Some(storing);
        }
        if query.storing.as_ref().is_some_and(|s| s.awaiting == 0) {
            let storing = query.storing.take().unwrap_or_default();
            let outcome = QueryOutcome::Stored {
                acks: storing.acks,
                refusals: storing.refusals,
            };
            return self.finish(now, id, query, outcome);
        }
        self.queries.insert(id, query);
    }

    pub(crate) fn finish(&mut self, now: Now, id: QueryId, query: Query, outcome: QueryOutcome) {
        if query.internal {
            return;
        }
        #[cfg(feature = "sim")]
        if let Some(traces) = self.traces.as_mut() {
            traces.insert(
                id,
                crate::node::query::QueryTrace {
                    candidates: query.lookup.trace(),
                    datagrams: query.datagrams,
                },
            );
        }
        let answered = query.lookup.answered();
        self.events.push_back(Event::QueryFinished(QueryFinished {
            id,
            target: query.lookup.target(),
            closest: answered.iter().map(|a| a.contact).collect(),
            rounds: query.lookup.rounds(),
            elapsed: now.instant.saturating_duration_since(query.started),
            outcome,
        }));
    }

    pub(crate) fn on_query_answer(
        &mut self,
        now: Now,
        id: QueryId,
        peer: Contact,
        is_server: bool,
        request: &RequestBody,
        body: ResponseBody,
    ) {
        let Some(mut query) = self.queries.remove(&id) else {
            self.count_late_datagram(id);
            return;
        };
        query.datagrams += 1;
        if let Kind::Ping = query.kind {
            return self.finish(now, id, query, QueryOutcome::Pong(true));
        }
        if query.mailbox.is_some() {
            return self.on_mailbox_answer(now, id, query, peer, request, body);
        }
        if let Some(storing) = query.storing.as_mut() {
            storing.awaiting = storing.awaiting.saturating_sub(1);
            match body {
                ResponseBody::Stored => storing.acks += 1,
                ResponseBody::Refused(refusal) => storing.refusals.push(refusal),
                _ => {}
            }
            return self.drive(now, id, query);
        }
        if !is_server {
            // Clients never count among the closest servers.
            query.lookup.on_failure(&peer.id);
            return self.drive(now, id, query);
        }
        let target = query.lookup.target();
        match body {
            ResponseBody::Nodes(nodes) => query.lookup.on_answer(&peer.id, &nodes),
            ResponseBody::Value(value) => {
                query.lookup.on_answer(&peer.id, &[]);
                if matches!(query.kind, Kind::Get) && value.verify_for(&target).is_ok() {
                    let immutable = matches!(value, Value::Immutable(_));
                    if query.value.as_ref().is_none_or(|v| value.seq() > v.seq()) {
                        query.value = Some(value.clone());
                    }
                    if immutable {
                        return self.finish(now, id, query, QueryOutcome::Value(Some(value)));
                    }
                }
            }
            ResponseBody::Peer(record) => {
                query.lookup.on_answer(&peer.id, &[]);
                let valid = record.key() == target
                    && record.verify().is_ok()
                    && record.expires_unix_ms() > now.unix_ms;
                if matches!(query.kind, Kind::FindPeer)
                    && valid
                    && query.peer.as_ref().is_none_or(|p| record.seq > p.seq)
                {
                    query.peer = Some(record);
                }
            }
            _ => query.lookup.on_answer(&peer.id, &[]),
        }
        self.drive(now, id, query);
    }

    pub(crate) fn on_query_failure(&mut self, now: Now, id: QueryId, peer: Contact) {
        let Some(mut query) = self.queries.remove(&id) else {
            return;
        };
        if let Kind::Ping = query.kind {
            return self.finish(now, id, query, QueryOutcome::Pong(false));
        }
        if query.mailbox.is_some() {
            return self.on_mailbox_failure(now, id, query);
        }
        match query.storing.as_mut() {
            Some(storing) => storing.awaiting = storing.awaiting.saturating_sub(1),
            None => query.lookup.on_failure(&peer.id),
        }
        self.drive(now, id, query);
    }

    /// Counts a datagram of query `id`: in the query while it runs; in its trace (when the
    /// simulator traces) once it has finished.
    pub(crate) fn count_query_datagram(&mut self, id: QueryId) {
        match self.queries.get_mut(&id) {
            Some(query) => query.datagrams += 1,
            None => self.count_late_datagram(id),
        }
    }

    /// A datagram of a query that has finished: a late answer or a retransmission.
    #[cfg_attr(not(feature = "sim"), allow(unused_variables, clippy::unused_self))]
    fn count_late_datagram(&mut self, id: QueryId) {
        #[cfg(feature = "sim")]
        if let Some(trace) = self.traces.as_mut().and_then(|t| t.get_mut(&id)) {
            trace.datagrams += 1;
        }
    }

    /// Settles a join, [`SETTLE_DELAY`] after it: looks our own key up again. Nodes that
    /// joined in the same moment were not in tables yet during the bootstrap lookup; now they
    /// learn of us and we of them, so a young network is one within seconds instead of after
    /// the first maintenance tick.
    pub(crate) fn settle(&mut self, now: Now) {
        if self.table.is_empty() {
            return;
        }
        // Through the bootstrap contacts again, not our own closest: in a young network the
        // nodes around us know as little as we do, while a bootstrap node has by now heard
        // from everyone who joined through it.
        let (own, seeds) = (self.own, self.seeds.clone());
        let _ = self.start(now, Kind::Settle, own, seeds, true);
    }

    /// Once the settling lookup of a join into a young network is done: looks up a random key
    /// in each empty bucket shallower than the K-th closest entry's, through the bootstrap
    /// contacts. Nodes whose bootstrap found the seeds knowing almost nobody (they all joined
    /// in the same moment) meet only their neighbours as they settle (the settling lookup goes
    /// straight to them), so a whole subtree could know nobody of its sibling subtree and no
    /// lookup from one reached the other; the bootstrap contacts have heard from both by now.
    /// A node that joins an established network (its bootstrap found K servers) leaves such
    /// buckets to the refresh of untouched buckets at its first maintenance tick, as before:
    /// others know those subtrees, so its lookups reach them meanwhile.
    fn fill_empty_buckets(&mut self, now: Now) {
        let seeds = self.seeds.clone();
        for index in self.table.empty_far_buckets() {
            let target = self.own.with_common_prefix(index, self.entropy.bytes32());
            let _ = self.start(now, Kind::FindNode, target, seeds.clone(), true);
        }
    }

    /// Looks up a random key in each near bucket that is not full and that a self-lookup
    /// does not reach (at most `log2(2 × near entries / K)` lookups, 3 by default): where a
    /// joining node's tables are completed, so the lookups of others that pass through it
    /// learn the true K closest from it.
    fn refresh_near_buckets(&mut self, now: Now) {
        for index in self.table.sparse_near_buckets() {
            let target = self.own.with_common_prefix(index, self.entropy.bytes32());
            let _ = self.start(now, Kind::FindNode, target, Vec::new(), true);
        }
    }

    /// Expiry, republish and bucket refresh.
    pub(crate) fn maintain(&mut self, now: Now) {
        self.maintenance_at = Some(now.instant + self.maintenance_interval());
        self.storage.expire(now.unix_ms);
        self.mailboxes.expire(now.unix_ms);
        if self.server && !self.table.is_empty() {
            self.hand_on_mailboxes(now);
            let interval = self.config.republish_interval.as_millis() as u64;
            let due = self
                .storage
                .due_for_republish(now.unix_ms, interval, MAX_REPUBLISH_PER_TICK);
            for item in due {
                let (kind, key) = match item {
                    Item::Value(value) => {
                        let key = value.key();
                        (Kind::Put { value, cas: None }, key)
                    }
                    Item::Peer(record) => {
                        let key = record.key();
                        (Kind::Announce(record), key)
                    }
                };
                let _ = self.start(now, kind, key, Vec::new(), true);
            }
        }
        if self.table.is_empty() && !self.seeds.is_empty() {
            // Every contact stopped answering (a cut link, a long sleep): join again through
            // the bootstrap contacts, as often as maintenance runs, until one answers.
            let (own, seeds) = (self.own, self.seeds.clone());
            self.rejoin_pending = true;
            let _ = self.start(now, Kind::FindNode, own, seeds, true);
        }
        if self.rejoin_pending && !self.table.is_empty() {
            // The network seen at bootstrap may have been tiny (an early node) or seen through
            // stale seeds: look ourselves up once more, so our neighbours learn of us and we
            // of them; and fill the near buckets now that the network around us has grown
            // into them.
            self.rejoin_pending = false;
            let own = self.own;
            let _ = self.start(now, Kind::FindNode, own, Vec::new(), true);
            self.refresh_near_buckets(now);
        }
        if !self.table.is_empty() {
            let stale = self
                .table
                .stale_buckets(now.instant, self.config.refresh_interval);
            for index in stale.into_iter().take(MAX_REFRESH_PER_TICK) {
                let target = self.own.with_common_prefix(index, self.entropy.bytes32());
                let _ = self.start(now, Kind::FindNode, target, Vec::new(), true);
            }
        }
    }
}
