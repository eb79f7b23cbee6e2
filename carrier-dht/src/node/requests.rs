//! Requests in flight, as the node runs them: sending with padding and retries, matching
//! responses, timeouts (the records of requests in flight are in `rpc.rs`).

use std::cmp::Reverse;
use std::time::Duration;

use crate::kad::routing::InsertOutcome;
use crate::node::rpc::{Pending, Purpose};
use crate::node::rtt::RttEstimator;
use crate::node::{Node, MIN_UNPROVEN_REQUEST_BYTES};
use crate::wire::message::{Contact, Message, Request, RequestBody, Response, ResponseBody};
use crate::wire::packet::{Header, PACKET_OVERHEAD_BYTES};
use crate::wire::path::Path;
use crate::wire::time::Now;

impl Node {
    /// Sends a request, to be retried up to `attempts` times. Returns false when it could not
    /// be sent (too many in flight, or no pair key), in which case nothing is pending.
    pub(crate) fn send_request(
        &mut self,
        now: Now,
        peer: Contact,
        body: RequestBody,
        purpose: Purpose,
        attempts: u8,
    ) -> bool {
        self.send_attempt(now, peer, body, purpose, attempts.max(1), None, false)
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn send_attempt(
        &mut self,
        now: Now,
        peer: Contact,
        body: RequestBody,
        purpose: Purpose,
        attempts_left: u8,
        rto: Option<Duration>,
        token_retried: bool,
    ) -> bool {
        // A first attempt is counted by whoever holds the query; a resend here.
        let resend = rto.is_some() || token_retried;
        if self.pending.len() >= self.config.max_pending_rpcs {
            self.counters.dropped_pending_full += 1;
            if rto.is_some() || token_retried {
                // A retransmission that cannot go out is a failure the caller must hear of.
                self.on_rpc_failure(now, purpose, peer);
            }
            return false;
        }
        let mut txid = self.entropy.next_u64();
        while self.pending.contains_key(&txid) {
            txid = self.entropy.next_u64();
        }
        let token = self.peer_tokens.peek(&peer.id).copied();
        let request = Request {
            txid,
            unix_ms: now.unix_ms,
            token,
            body: body.clone(),
            padding: Default::default(),
        };
        let needs_padding = token.is_none()
            && matches!(
                body,
                RequestBody::FindNode { .. }
                    | RequestBody::FindValue { .. }
                    | RequestBody::FindPeer { .. }
                    | RequestBody::FetchMailbox { .. }
            );
        let mut message = Message::Request(request);
        let mut encoded = message.encode();
        if needs_padding {
            let unpadded = PACKET_OVERHEAD_BYTES + encoded.len();
            let need = MIN_UNPROVEN_REQUEST_BYTES.saturating_sub(unpadded);
            // A padding of 128 bytes or more takes a second byte of length prefix.
            let pad = if need > 128 { need - 1 } else { need };
            if let Message::Request(request) = &mut message {
                request.padding =
                    crate::wire::bounded::BoundedBytes::new(vec![0; pad]).unwrap_or_default();
            }
            encoded = message.encode();
        }
        let sent = self.send_encoded(now, &peer.id, Path::Direct(peer.addr), &encoded);
        if sent.is_none() {
            if rto.is_some() || token_retried {
                self.on_rpc_failure(now, purpose, peer);
            }
            return false;
        }
        let (min, max) = (self.config.min_rto, self.config.max_rto);
        let rto = rto.unwrap_or_else(|| match self.rtt.peek(&peer.id) {
            Some(rtt) => rtt.rto(min, max),
            None => self
                .rtt_all
                .map_or(self.config.initial_rto, |all| all.rto(min, max)),
        });
        let deadline = now.instant + rto;
        self.pending.insert(
            txid,
            Pending {
                peer,
                body,
                sent: now.instant,
                deadline,
                attempts_left,
                rto,
                purpose,
                token_retried,
            },
        );
        self.timers.push(Reverse((deadline, txid)));
        if let (Purpose::Query(id), true) = (purpose, resend) {
            self.count_query_datagram(id);
        }
        true
    }

    pub(crate) fn handle_response(
        &mut self,
        now: Now,
        from: Path,
        header: &Header,
        response: Response,
    ) {
        let matches = self
            .pending
            .get(&response.txid)
            .is_some_and(|p| p.peer.id == header.sender && Path::Direct(p.peer.addr) == from);
        if !matches {
            self.counters.dropped_unsolicited += 1;
            return;
        }
        let Some(pending) = self.pending.remove(&response.txid) else {
            return;
        };
        let sample = now.instant.saturating_duration_since(pending.sent);
        match self.rtt.get_mut(&header.sender) {
            Some(rtt) => rtt.update(sample),
            None => {
                self.rtt.insert(header.sender, RttEstimator::new(sample));
            }
        }
        match self.rtt_all.as_mut() {
            Some(all) => all.update(sample),
            None => self.rtt_all = Some(RttEstimator::new(sample)),
        }
        self.peer_tokens.insert(header.sender, response.token);
        self.on_observed(now, header.sender, from, response.your_addr);
        if header.is_client() {
            self.table.remove(&header.sender);
        } else {
            // It answered at the address we reached it on: it may enter the table.
            if self.table.insert(pending.peer, now.instant) == InsertOutcome::Added {
                self.hand_on_to_newcomer(now, pending.peer);
            }
        }
        if response.body == ResponseBody::Refused(crate::wire::message::Refusal::TokenRequired)
            && !pending.token_retried
        {
            if let Purpose::Query(id) = pending.purpose {
                self.count_query_datagram(id);
            }
            self.send_attempt(
                now,
                pending.peer,
                pending.body,
                pending.purpose,
                pending.attempts_left,
                None,
                true,
            );
            return;
        }
        match pending.purpose {
            Purpose::Verify => {
                self.verifying.remove(&pending.peer.id);
            }
            Purpose::HandOn | Purpose::Probe => {}
            Purpose::ProbeMe => self.on_probe_me_answer(now, pending.peer.id, response.body),
            Purpose::Query(id) => self.on_query_answer(
                now,
                id,
                pending.peer,
                !header.is_client(),
                &pending.body,
                response.body,
            ),
        }
    }

    pub(crate) fn on_rpc_failure(&mut self, now: Now, purpose: Purpose, peer: Contact) {
        match purpose {
            Purpose::Verify => {
                self.verifying.remove(&peer.id);
            }
            Purpose::HandOn | Purpose::Probe => {}
            Purpose::ProbeMe => self.on_probe_me_failure(now, peer.id),
            Purpose::Query(id) => self.on_query_failure(now, id, peer),
        }
    }
}
