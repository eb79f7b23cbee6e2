//! Mailbox commands of a node: deposit a letter, fetch a mailbox, delete a letter, and the
//! storers' hand-on of their mailboxes to the nodes now closest to each key.
//!
//! Each runs as a query: a node lookup of the mailbox key, then requests to every one of the
//! K closest servers that answered (stores and deletes to all of them, so every replica
//! changes; fetches from all of them, page by page, so an item held by any one is found).

use carrier_id::CarrierId;

use crate::mailbox::{
    day_of, mailbox_key, open_letters, seal_letter, DeleteSecret, Letter, MailboxItem, MailboxKind,
    MAILBOX_ITEM_VERSION,
};
use crate::node::error::CommandError;
use crate::node::event::{QueryId, QueryOutcome};
use crate::node::mailbox_query::{MailboxOp, MailboxRun};
use crate::node::query::{Kind, Query};
use crate::node::rpc::Purpose;
use crate::node::Node;
use crate::wire::key::Key;
use crate::wire::message::{Contact, RequestBody, ResponseBody, K};
use crate::wire::path::Subnet;
use crate::wire::time::Now;

/// Items one fetch collects at most: a storer cannot make a fetch run forever.
const MAX_FETCHED_ITEMS: usize = 4_096;
/// Mailboxes handed on per maintenance tick.
const MAX_HANDOFF_PER_TICK: usize = 16;
/// Items per hand-on query, so one large mailbox does not fill the pending-request table.
const MAX_HANDOFF_ITEMS_PER_QUERY: usize = 128;

impl Node {
    /// Seals `bytes` (up to [`crate::mailbox::MAX_LETTER_BYTES`]) to `recipient` and stores
    /// its items in `recipient`'s mailbox of `kind` for today, at the K closest servers.
    /// Returns the query, which finishes with [`QueryOutcome::MailboxStored`], and the
    /// mailbox key.
    pub fn deposit(
        &mut self,
        now: Now,
        recipient: &CarrierId,
        kind: MailboxKind,
        bytes: &[u8],
    ) -> Result<(QueryId, Key), CommandError> {
        let (key, expires) = self.deposit_target(now, recipient, kind);
        let items = seal_letter(
            &self.keypair,
            recipient,
            key,
            bytes,
            expires,
            &mut self.entropy,
        )?;
        let id = self.deposit_items(now, key, items)?;
        Ok((id, key))
    }

    /// Where a letter for `recipient`'s mailbox of `kind` goes now, and until when (Unix
    /// seconds) its items live: what [`seal_letter`] needs to seal it outside the core, as a
    /// driver does so sealing (a Diffie-Hellman and a signature per item) never holds up the
    /// node; then [`Node::deposit_items`] stores them.
    pub fn deposit_target(&self, now: Now, recipient: &CarrierId, kind: MailboxKind) -> (Key, u64) {
        let key = mailbox_key(recipient, kind, day_of(now.unix_secs()));
        let expires = now
            .unix_secs()
            .saturating_add(self.config.mailbox_ttl.as_secs());
        (key, expires)
    }

    /// Stores already sealed `items` in mailbox `key` at its K closest servers; finishes with
    /// [`QueryOutcome::MailboxStored`].
    pub fn deposit_items(
        &mut self,
        now: Now,
        key: Key,
        items: Vec<MailboxItem>,
    ) -> Result<QueryId, CommandError> {
        let op = MailboxOp::Deposit { key, items };
        self.start(now, Kind::Mailbox(op), key, Vec::new(), false)
    }

    /// This node's mailboxes of `kind` for the previous, current and next day (the next one
    /// catches senders whose clocks run ahead, the previous one items left before midnight).
    pub fn own_mailboxes(&self, now: Now, kind: MailboxKind) -> [Key; 3] {
        let id = self.keypair.id();
        let today = day_of(now.unix_secs());
        [today.saturating_sub(1), today, today + 1].map(|day| mailbox_key(&id, kind, day))
    }

    /// Fetches this node's mailboxes of `kind` for the previous, current and next day
    /// ([`Node::own_mailboxes`]), one query each, all at once; each finishes with
    /// [`QueryOutcome::Mailbox`], and [`Node::open_mailbox`] with its key turns the items into
    /// letters.
    pub fn fetch_own_mailboxes(
        &mut self,
        now: Now,
        kind: MailboxKind,
    ) -> Result<Vec<(Key, QueryId)>, CommandError> {
        self.own_mailboxes(now, kind)
            .into_iter()
            .map(|key| Ok((key, self.fetch_mailbox(now, key)?)))
            .collect()
    }

    /// Fetches every item of mailbox `key` from the K closest servers; finishes with
    /// [`QueryOutcome::Mailbox`]. [`Node::open_mailbox`] turns the items into letters.
    pub fn fetch_mailbox(&mut self, now: Now, key: Key) -> Result<QueryId, CommandError> {
        self.start(
            now,
            Kind::Mailbox(MailboxOp::Fetch { key }),
            key,
            Vec::new(),
            false,
        )
    }

    /// The letters sealed to this node among the items fetched from mailbox `key`.
    pub fn open_mailbox(&self, key: Key, items: &[MailboxItem]) -> Vec<Letter> {
        open_letters(&self.keypair, key, items)
    }

    /// Deletes every item of `letter` (which must be addressed to this node) at the K closest
    /// servers to its mailbox, showing each item's `d`; finishes with
    /// [`QueryOutcome::MailboxStored`].
    pub fn delete_letter(&mut self, now: Now, letter: &Letter) -> Result<QueryId, CommandError> {
        let secrets = DeleteSecret::derive_all(&self.keypair, &letter.sender, &letter.items)
            .map_err(crate::mailbox::LetterError::from)?;
        let receipts = letter.items.iter().copied().zip(secrets).collect();
        let key = letter.mailbox;
        let op = MailboxOp::Delete { key, receipts };
        self.start(now, Kind::Mailbox(op), key, Vec::new(), false)
    }

    /// Stores the items of mailboxes not handed on for a while at the nodes now closest to
    /// their keys: a node that has become one of the K closest receives what it lacks, and
    /// storers that already hold an item just confirm it.
    pub(crate) fn hand_on_mailboxes(&mut self, now: Now) {
        let interval = self.config.mailbox_handoff_interval.as_millis() as u64;
        let due = self
            .mailboxes
            .due_for_handoff(now.unix_ms, interval, MAX_HANDOFF_PER_TICK);
        for (key, items) in due {
            for batch in items.chunks(MAX_HANDOFF_ITEMS_PER_QUERY) {
                let op = MailboxOp::Deposit {
                    key,
                    items: batch.to_vec(),
                };
                let _ = self.start(now, Kind::Mailbox(op), key, Vec::new(), true);
            }
        }
    }

    /// A server has just entered the routing table. The mailboxes this node stores whose K
    /// closest servers, as far as this node knows, now include the newcomer are given to it at
    /// once rather than at the next hand-on, so a node that joins close to a mailbox can serve
    /// it right away. The newcomer has just answered us, so we hold a token for it.
    pub(crate) fn hand_on_to_newcomer(&mut self, now: Now, newcomer: Contact) {
        if !self.server || self.mailboxes.is_empty() {
            return;
        }
        let attempts = self.config.rpc_attempts;
        let mut budget = MAX_HANDOFF_ITEMS_PER_QUERY;
        for key in self.mailboxes.mailbox_keys() {
            let is_storer = self
                .table
                .closest(&key, K)
                .iter()
                .any(|c| c.id == newcomer.id);
            if !is_storer {
                continue;
            }
            for item in self.mailboxes.all(&key, now.unix_ms) {
                if budget == 0 {
                    // The rest waits for the periodic hand-on.
                    return;
                }
                budget -= 1;
                let body = RequestBody::StoreMailboxItem { key, item };
                self.send_request(now, newcomer, body, Purpose::HandOn, attempts);
            }
        }
    }

    /// The lookup is done: send the mailbox requests to every storer that answered it.
    pub(crate) fn start_mailbox_phase(&mut self, now: Now, id: QueryId, mut query: Query) {
        let Kind::Mailbox(op) = &query.kind else {
            return;
        };
        let mut run = MailboxRun::default();
        let bodies: Vec<RequestBody> = match op {
            MailboxOp::Deposit { key, items } => {
                run.acks = items.iter().map(|i| (i.id(), 0)).collect();
                items
                    .iter()
                    .map(|item| RequestBody::StoreMailboxItem {
                        key: *key,
                        item: item.clone(),
                    })
                    .collect()
            }
            MailboxOp::Fetch { key } => vec![RequestBody::FetchMailbox {
                key: *key,
                after: None,
            }],
            MailboxOp::Delete { key, receipts } => {
                run.acks = receipts.iter().map(|(i, _)| (*i, 0)).collect();
                receipts
                    .iter()
                    .map(|(item, secret)| RequestBody::DeleteMailboxItem {
                        key: *key,
                        id: *item,
                        secret: *secret,
                    })
                    .collect()
            }
        };
        // Deposits and fetches go to the K closest. Deletes reach twice as far: after churn, a
        // node that stood in for an absent storer keeps its copy when the storer returns, just
        // past the K closest, and a delete that missed it would leave the items there until
        // they expire.
        let reach = match op {
            MailboxOp::Deposit { .. } | MailboxOp::Fetch { .. } => K,
            MailboxOp::Delete { .. } => 2 * K,
        };
        let mut storers: Vec<Contact> = query
            .lookup
            .answered_up_to(reach)
            .iter()
            .map(|a| a.contact)
            .collect();
        // A server among the K closest to the key is one of its storers itself (a lookup never
        // lists the node that runs it). Without this, items would go to the K closest *other*
        // nodes, and a deleter or fetcher elsewhere, whose K closest differ by one node, would
        // miss a holder.
        let key = op.key();
        let own_distance = self.own.distance(&key);
        let own_is_storer = self.server
            && (storers.len() < K
                || storers
                    .get(K - 1)
                    .is_some_and(|c| own_distance < c.id.distance(&key)));
        // A delete also clears this node's own copy when it holds one without being among the
        // K closest (it stood in for a storer once): the secret is checked all the same.
        let holds_copy =
            matches!(op, MailboxOp::Delete { .. }) && self.mailboxes.items_in(&key) > 0;
        if own_is_storer {
            storers.truncate(reach - 1);
        }
        if own_is_storer || holds_copy {
            self.apply_locally(now, op.clone(), &mut run);
        }
        let attempts = self.config.rpc_attempts;
        for storer in storers {
            for body in &bodies {
                if self.send_request(now, storer, body.clone(), Purpose::Query(id), attempts) {
                    run.awaiting += 1;
                }
            }
        }
        query.mailbox = Some(run);
        self.settle_mailbox(now, id, query);
    }

    /// This node's own part of a mailbox operation, as one of the storers.
    fn apply_locally(&mut self, now: Now, op: MailboxOp, run: &mut MailboxRun) {
        // Counted against no remote prefix: this node's own requests.
        let own = Subnet::of(std::net::IpAddr::from([0u8; 4]));
        match op {
            MailboxOp::Deposit { key, items } => {
                for item in items {
                    let id = item.id();
                    match self.mailboxes.store(key, item, own, now.unix_ms) {
                        Ok(()) => run.ack(&id),
                        Err(refusal) => run.refusals.push(refusal),
                    }
                }
            }
            MailboxOp::Fetch { key } => {
                for item in self.mailboxes.all(&key, now.unix_ms) {
                    run.found.entry(item.id()).or_insert(item);
                }
            }
            MailboxOp::Delete { key, receipts } => {
                for (id, secret) in receipts {
                    match self.mailboxes.delete(&key, &id, &secret, now.unix_ms) {
                        Ok(()) => run.ack(&id),
                        Err(refusal) => run.refusals.push(refusal),
                    }
                }
            }
        }
    }

    pub(crate) fn on_mailbox_answer(
        &mut self,
        now: Now,
        id: QueryId,
        mut query: Query,
        peer: Contact,
        request: &RequestBody,
        body: ResponseBody,
    ) {
        let Some(run) = query.mailbox.as_mut() else {
            return;
        };
        run.awaiting = run.awaiting.saturating_sub(1);
        match (request, body) {
            (RequestBody::StoreMailboxItem { item, .. }, ResponseBody::Stored) => {
                run.ack(&item.id());
            }
            (RequestBody::DeleteMailboxItem { id: item, .. }, ResponseBody::Deleted) => {
                run.ack(item);
            }
            (
                RequestBody::FetchMailbox { key, after },
                ResponseBody::MailboxPage { items, more },
            ) => {
                let mut last = None;
                for item in items.into_vec() {
                    let item_id = item.id();
                    // Pages come in ID order; anything else is a confused or lying storer.
                    if after.is_some_and(|a| item_id <= a) || item.version != MAILBOX_ITEM_VERSION {
                        continue;
                    }
                    last = last.max(Some(item_id));
                    if run.found.len() < MAX_FETCHED_ITEMS {
                        run.found.entry(item_id).or_insert(item);
                    }
                }
                if let Some(last) = last.filter(|_| more && run.found.len() < MAX_FETCHED_ITEMS) {
                    let next = RequestBody::FetchMailbox {
                        key: *key,
                        after: Some(last),
                    };
                    let attempts = self.config.rpc_attempts;
                    if self.send_request(now, peer, next, Purpose::Query(id), attempts) {
                        run.awaiting += 1;
                    }
                }
            }
            (_, ResponseBody::Refused(refusal)) => run.refusals.push(refusal),
            _ => {}
        }
        self.settle_mailbox(now, id, query);
    }

    pub(crate) fn on_mailbox_failure(&mut self, now: Now, id: QueryId, mut query: Query) {
        if let Some(run) = query.mailbox.as_mut() {
            run.awaiting = run.awaiting.saturating_sub(1);
        }
        self.settle_mailbox(now, id, query);
    }

    /// Finishes the query once no request is awaited, or keeps it.
    fn settle_mailbox(&mut self, now: Now, id: QueryId, mut query: Query) {
        if query.mailbox.as_ref().is_some_and(|r| r.awaiting > 0) {
            self.queries.insert(id, query);
            return;
        }
        let run = query.mailbox.take().unwrap_or_default();
        let outcome = match query.kind {
            Kind::Mailbox(MailboxOp::Fetch { .. }) => {
                QueryOutcome::Mailbox(run.found.into_values().collect())
            }
            _ => QueryOutcome::MailboxStored {
                acks: run.acks,
                refusals: run.refusals,
            },
        };
        self.finish(now, id, query, outcome);
    }
}
