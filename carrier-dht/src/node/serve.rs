//! How a node answers requests: freshness checks, the answer, the amplification limit, and
//! the ping-back that lets a new server into the routing table.

use crate::guard::replay::Freshness;
use crate::kad::storage::Item;
use crate::node::rpc::Purpose;
use crate::node::{Node, MAX_PING_BYTES};
use crate::wire::message::{
    Contact, Message, Refusal, Request, RequestBody, Response, ResponseBody, K,
};
use crate::wire::packet::Header;
use crate::wire::path::{Path, Subnet};
use crate::wire::time::Now;

/// Ping-backs in flight at most.
const MAX_VERIFYING: usize = 64;

impl Node {
    pub(crate) fn serve(
        &mut self,
        now: Now,
        from: Path,
        header: &Header,
        request: Request,
        request_len: usize,
    ) {
        let skew_ms = self.config.clock_skew.as_millis() as u64;
        if request.unix_ms.abs_diff(now.unix_ms) > skew_ms {
            self.counters.dropped_stale += 1;
            return;
        }
        let oldest_valid = now.unix_ms.saturating_sub(skew_ms);
        if self
            .replay
            .check_and_insert(header.sender, request.txid, request.unix_ms, oldest_valid)
            == Freshness::Replayed
        {
            self.counters.dropped_replayed += 1;
            return;
        }
        let addr = from.socket_addr();
        let proven = request
            .token
            .is_some_and(|t| self.token_issuer.check(&t, &addr, now.unix_secs()));
        let body = match request.body {
            body @ (RequestBody::ProbeMe { .. }
            | RequestBody::ProbeFor { .. }
            | RequestBody::Probe { .. }) => {
                self.answer_probe(now, &from, header.sender, header.is_client(), proven, body)
            }
            body => self.answer(now, &from, proven, body),
        };
        let response = |body| {
            Message::Response(Response {
                txid: request.txid,
                your_addr: addr,
                token: self.token_issuer.issue(&addr, now.unix_secs()),
                body,
            })
        };
        // Until the address echoes our token, we send it at most 3x what it sent.
        let budget = if proven { usize::MAX } else { 3 * request_len };
        // Encoded once: its size decides what may be sent, and it is what is sent.
        let mut encoded = response(body).encode();
        if !proven && sealed_len(&encoded) > budget {
            encoded = response(ResponseBody::Refused(Refusal::TokenRequired)).encode();
            if sealed_len(&encoded) > budget {
                self.counters.dropped_amplification += 1;
                return;
            }
        }
        let Some(sent) = self.send_encoded(now, &header.sender, from, &encoded) else {
            return;
        };
        self.counters.requests_answered += 1;
        if header.is_client() {
            // A client never enters the table, even if it was a server before.
            self.table.remove(&header.sender);
            return;
        }
        let left = budget.saturating_sub(sent);
        if self.server
            && left >= MAX_PING_BYTES
            && !self.table.contains(&header.sender)
            && self.table.has_room_for(&header.sender)
            && self.verifying.len() < MAX_VERIFYING
            && self.verifying.insert(header.sender)
        {
            // It says it is a server; it enters the table only once it answers at this
            // address.
            let contact = Contact {
                id: header.sender,
                addr,
            };
            let attempts = self.config.rpc_attempts;
            if !self.send_request(now, contact, RequestBody::Ping, Purpose::Verify, attempts) {
                self.verifying.remove(&header.sender);
            }
        }
    }

    fn answer(&mut self, now: Now, from: &Path, proven: bool, body: RequestBody) -> ResponseBody {
        let closest = |node: &Node, target| {
            ResponseBody::Nodes(crate::wire::bounded::BoundedVec::truncating(
                node.table.closest(target, K),
            ))
        };
        match body {
            RequestBody::Ping => ResponseBody::Pong,
            RequestBody::FindNode { target } => closest(self, &target),
            RequestBody::FindValue { key } => match self.storage.get(&key, now.unix_ms) {
                Some(Item::Value(value)) => ResponseBody::Value(value),
                _ => closest(self, &key),
            },
            RequestBody::FindPeer { id } => match self.storage.get(&id, now.unix_ms) {
                Some(Item::Peer(record)) => ResponseBody::Peer(record),
                _ => closest(self, &id),
            },
            RequestBody::StoreValue { value, cas } => {
                let outcome = self.check_store(proven).and_then(|()| {
                    let ttl = self.config.value_ttl.as_millis() as u64;
                    self.storage
                        .store_value(value, cas, Subnet::of(from.ip()), now.unix_ms, ttl)
                });
                self.store_answer(outcome)
            }
            RequestBody::AnnouncePeer { record } => {
                let outcome = self.check_store(proven).and_then(|()| {
                    let max_ttl = self.config.max_record_ttl.as_millis() as u64;
                    self.storage
                        .store_peer(record, Subnet::of(from.ip()), now.unix_ms, max_ttl)
                });
                self.store_answer(outcome)
            }
            RequestBody::StoreMailboxItem { key, item } => {
                let outcome = self.check_store(proven).and_then(|()| {
                    self.mailboxes
                        .store(key, item, Subnet::of(from.ip()), now.unix_ms)
                });
                self.store_answer(outcome)
            }
            RequestBody::FetchMailbox { key, after } => {
                let (items, more) = self.mailboxes.page(&key, after, now.unix_ms);
                ResponseBody::MailboxPage {
                    items: crate::wire::bounded::BoundedVec::truncating(items),
                    more,
                }
            }
            RequestBody::DeleteMailboxItem { key, id, secret } => {
                let outcome = self
                    .check_store(proven)
                    .and_then(|()| self.mailboxes.delete(&key, &id, &secret, now.unix_ms));
                match outcome {
                    Ok(()) => ResponseBody::Deleted,
                    Err(refusal) => self.store_answer(Err(refusal)),
                }
            }
            RequestBody::ProbeMe { .. }
            | RequestBody::ProbeFor { .. }
            | RequestBody::Probe { .. } => ResponseBody::Refused(Refusal::NotAccepted),
        }
    }

    fn check_store(&self, proven: bool) -> Result<(), Refusal> {
        if !self.server {
            return Err(Refusal::NotAccepted);
        }
        if !proven {
            return Err(Refusal::TokenRequired);
        }
        Ok(())
    }

    fn store_answer(&mut self, outcome: Result<(), Refusal>) -> ResponseBody {
        match outcome {
            Ok(()) => ResponseBody::Stored,
            Err(refusal) => {
                self.counters.stores_refused += 1;
                ResponseBody::Refused(refusal)
            }
        }
    }
}

/// The sealed size of an encoded message.
fn sealed_len(encoded: &[u8]) -> usize {
    crate::wire::packet::PACKET_OVERHEAD_BYTES + encoded.len()
}
