//! The node's side of the reachability check and of the observed address: asking for a probe,
//! serving `ProbeMe`/`ProbeFor`, answering a probe, and reporting the node's standing (the
//! rules themselves are in [`crate::reach`]).

use std::net::{IpAddr, SocketAddr};

use crate::node::event::Event;
use crate::node::rpc::Purpose;
use crate::node::Node;
use crate::reach::{
    Attempt, NatMapping, PublicAddr, Reachability, Standing, MAX_BACKOFF_SHIFT, MAX_CONFIDENCE,
};
use crate::wire::key::Key;
use crate::wire::message::{Contact, ProbeNonce, Refusal, RequestBody, ResponseBody, K};
use crate::wire::path::{canonical_ip, Path};
use crate::wire::time::Now;

impl Node {
    /// Where the node stands: public address, NAT mapping, reachability and role.
    pub fn standing(&self) -> Standing {
        Standing {
            public_addr: self.observations.public(),
            nat: self.observations.nat(),
            reachability: self.prober.state(),
            server: self.server,
        }
    }

    /// The public address peers agree on, with its port or a note that it varies per peer.
    pub fn public_addr(&self) -> Option<PublicAddr> {
        self.observations.public()
    }

    /// The NAT's mapping behaviour, as peers' reports show it.
    pub fn nat_mapping(&self) -> NatMapping {
        self.observations.nat()
    }

    /// Reachability from outside, as probes show it.
    pub fn reachability(&self) -> Reachability {
        self.prober.state()
    }

    /// Reports a change of [`Node::standing`] as an event.
    pub(crate) fn report_standing(&mut self) {
        let standing = self.standing();
        if standing != self.last_standing {
            self.last_standing = standing;
            self.events.push_back(Event::Standing(standing));
        }
    }

    /// A peer answered from `from` and told us it saw us at `seen`.
    pub(crate) fn on_observed(&mut self, now: Now, reporter: Key, from: Path, seen: SocketAddr) {
        if self.observations.record(reporter, from.ip(), seen) {
            self.report_standing();
        }
        let observed = self.observed_addr();
        if observed.is_some() && observed != self.last_observed {
            self.last_observed = observed;
            if let Some(addr) = observed {
                self.events.push_back(Event::ObservedAddr(addr));
            }
        }
        if self.prober.enabled && self.prober.next_at.is_none() {
            // The first peer answered: check reachability now, while we have contacted few.
            self.prober.next_at = Some(now.instant);
        }
    }

    /// Runs the reachability check when due.
    pub(crate) fn probe_tick(&mut self, now: Now) {
        if !self.prober.enabled {
            return;
        }
        let Some(due) = self.prober.next_at else {
            return;
        };
        if due > now.instant {
            return;
        }
        if let Some(attempt) = self.prober.attempt {
            if attempt.forwarded {
                return self.probe_failed(now);
            }
            // The request itself is still being retried; its answer or failure decides.
            self.prober.next_at = Some(now.instant + self.config.probe_timeout);
            return;
        }
        self.start_probe(now);
    }

    fn start_probe(&mut self, now: Now) {
        let entries: Vec<Contact> = self.table.entries().map(|e| e.contact).collect();
        let others: Vec<Contact> = entries
            .iter()
            .copied()
            .filter(|c| Some(c.id) != self.prober.last_via)
            .collect();
        let pool = if others.is_empty() { entries } else { others };
        if pool.is_empty() {
            self.prober.next_at = Some(now.instant + self.config.probe_retry);
            return;
        }
        let via = pool[(self.entropy.next_u64() % pool.len() as u64) as usize];
        let mut nonce = [0u8; 16];
        self.entropy.fill(&mut nonce);
        let nonce = ProbeNonce(nonce);
        let deadline = now.instant + self.config.probe_timeout;
        self.prober.last_via = Some(via.id);
        self.prober.attempt = Some(Attempt {
            nonce,
            via: via.id,
            deadline,
            forwarded: false,
        });
        self.prober.next_at = Some(deadline);
        let attempts = self.config.rpc_attempts;
        if !self.send_request(
            now,
            via,
            RequestBody::ProbeMe { nonce },
            Purpose::ProbeMe,
            attempts,
        ) {
            self.probe_inconclusive(now);
        }
    }

    /// The server asked for a probe answered.
    pub(crate) fn on_probe_me_answer(&mut self, now: Now, peer: Key, body: ResponseBody) {
        let Some(attempt) = self.prober.attempt.as_mut() else {
            return;
        };
        if attempt.via != peer {
            return;
        }
        match body {
            ResponseBody::ProbeSent => {
                attempt.forwarded = true;
                self.prober.next_at = Some(attempt.deadline.max(now.instant));
            }
            // It could not help (no helper, over its budget, not a server): no evidence.
            _ => self.probe_inconclusive(now),
        }
    }

    /// The server asked for a probe did not answer.
    pub(crate) fn on_probe_me_failure(&mut self, now: Now, peer: Key) {
        if self.prober.attempt.is_some_and(|a| a.via == peer) {
            self.probe_inconclusive(now);
        }
    }

    /// A probe arrived from `from`: decides the attempt it answers, if any.
    fn on_probe(&mut self, now: Now, from: &Path, nonce: ProbeNonce) {
        if !self
            .prober
            .attempt
            .is_some_and(|attempt| attempt.nonce == nonce)
        {
            return;
        }
        if self.prober.contacted.contains(&canonical_ip(from.ip())) {
            // We sent to that IP before: our NAT would let it in whether or not it lets
            // strangers in.
            return self.probe_inconclusive(now);
        }
        self.prober.attempt = None;
        self.prober.failures = 0;
        self.prober.inconclusive = 0;
        self.prober.confidence = MAX_CONFIDENCE;
        self.prober.state = Reachability::Reachable;
        self.server = true;
        self.prober.next_at = Some(now.instant + self.config.probe_interval);
        self.report_standing();
    }

    fn probe_inconclusive(&mut self, now: Now) {
        self.prober.attempt = None;
        let shift = self.prober.inconclusive.min(MAX_BACKOFF_SHIFT);
        self.prober.inconclusive = self.prober.inconclusive.saturating_add(1);
        let delay = (self.config.probe_retry * (1u32 << shift)).min(self.config.probe_interval);
        self.prober.next_at = Some(now.instant + delay);
    }

    fn probe_failed(&mut self, now: Now) {
        self.prober.attempt = None;
        self.prober.inconclusive = 0;
        let settled = match self.prober.state {
            Reachability::Reachable => {
                self.prober.confidence = self.prober.confidence.saturating_sub(1);
                if self.prober.confidence == 0 {
                    self.prober.state = Reachability::Unreachable;
                    self.server = false;
                }
                false
            }
            Reachability::Unknown | Reachability::Unreachable => {
                self.prober.failures = self.prober.failures.saturating_add(1);
                if self.prober.failures >= MAX_CONFIDENCE {
                    self.prober.state = Reachability::Unreachable;
                    self.server = false;
                    true
                } else {
                    false
                }
            }
        };
        let delay = if settled {
            self.config.probe_interval
        } else {
            self.config.probe_retry
        };
        self.prober.next_at = Some(now.instant + delay);
        self.report_standing();
    }

    /// Serves the probe requests: `ProbeMe` (pass it on to a helper), `ProbeFor` (send the
    /// probe) and `Probe` (ours, maybe).
    pub(crate) fn answer_probe(
        &mut self,
        now: Now,
        from: &Path,
        sender: Key,
        sender_is_client: bool,
        proven: bool,
        body: RequestBody,
    ) -> ResponseBody {
        match body {
            RequestBody::ProbeMe { nonce } => {
                if let Err(refusal) = self.check_helping(now, proven, false) {
                    return ResponseBody::Refused(refusal);
                }
                let Some(helper) = self.pick_helper(sender, from.ip()) else {
                    return ResponseBody::Refused(Refusal::NotAccepted);
                };
                let body = RequestBody::ProbeFor {
                    id: sender,
                    addr: from.socket_addr(),
                    nonce,
                };
                let attempts = self.config.rpc_attempts;
                if self.send_request(now, helper, body, Purpose::Probe, attempts) {
                    ResponseBody::ProbeSent
                } else {
                    ResponseBody::Refused(Refusal::NotAccepted)
                }
            }
            RequestBody::ProbeFor { id, addr, nonce } => {
                if id == self.own || id == sender {
                    return ResponseBody::Refused(Refusal::NotAccepted);
                }
                if let Err(refusal) = self.check_helping(now, proven, sender_is_client) {
                    return ResponseBody::Refused(refusal);
                }
                let target = Contact { id, addr };
                let attempts = self.config.rpc_attempts;
                let body = RequestBody::Probe { nonce };
                if self.send_request(now, target, body, Purpose::Probe, attempts) {
                    ResponseBody::ProbeSent
                } else {
                    ResponseBody::Refused(Refusal::NotAccepted)
                }
            }
            RequestBody::Probe { nonce } => {
                self.on_probe(now, from, nonce);
                ResponseBody::Pong
            }
            _ => ResponseBody::Refused(Refusal::NotAccepted),
        }
    }

    /// Only servers help, only peers whose address is proven ask (so a probe never goes to
    /// an address the asker does not receive at), `ProbeFor` only from servers, within the
    /// per-second budget.
    fn check_helping(&mut self, now: Now, proven: bool, client_asks: bool) -> Result<(), Refusal> {
        if !self.server || client_asks {
            return Err(Refusal::NotAccepted);
        }
        if !proven {
            return Err(Refusal::TokenRequired);
        }
        if !self.prober.helping.take(now.instant) {
            return Err(Refusal::Quota);
        }
        Ok(())
    }

    /// A helper for `asker` (at `asker_ip`): a server in our table, not the asker and not at
    /// its IP, drawn from those its own lookups visit least.
    fn pick_helper(&mut self, asker: Key, asker_ip: IpAddr) -> Option<Contact> {
        let asker_ip = canonical_ip(asker_ip);
        let mut candidates: Vec<Contact> = self
            .table
            .entries()
            .map(|e| e.contact)
            .filter(|c| c.id != asker && canonical_ip(c.addr.ip()) != asker_ip)
            .collect();
        if candidates.is_empty() {
            return None;
        }
        // Farthest first. The asker's own lookups visit the K closest to its key (and its
        // joining lookup little else), so helpers come from beyond them where there are any,
        // else from the farther half.
        candidates.sort_unstable_by_key(|c| std::cmp::Reverse(c.id.distance(&asker)));
        let pool = if candidates.len() > K {
            candidates.len() - K
        } else {
            candidates.len().div_ceil(2)
        };
        let pick = (self.entropy.next_u64() % pool as u64) as usize;
        candidates.get(pick).copied()
    }
}
