//! Where a node stands on the network: its public address as peers report it, its NAT's
//! mapping behaviour, and whether it is reachable from outside, which only an unsolicited
//! probe confirms.
//!
//! - **Public address.** Every response tells the requester the address it was seen from.
//!   The node keeps the latest report of each of its last 32 reporters and takes as its
//!   public IP the one that reporters in at least `observed_quorum` distinct subnets (distinct
//!   IPs when the per-subnet limit is lifted, as in labs) agree on, and more than any other IP.
//!   Among the reports of that IP, one port held by a quorum and by two thirds of them is the
//!   public port and the mapping is endpoint-independent; when no port has a quorum the port
//!   varies per peer and the mapping is endpoint-dependent (symmetric).
//! - **Reachability.** A node that is not a server by configuration asks a server it knows
//!   (`ProbeMe`) to have another node probe it. That server picks a helper from its table
//!   (not the asker, not at the asker's IP, and not among the K closest to the asker's key,
//!   which the asker's own lookups visit; the farther half when it knows no more than K) and sends it `ProbeFor` with the address it
//!   saw the asker at: never an address the asker names, so nobody can aim probes at a third
//!   party. The helper sends the asker a `Probe` with the asker's nonce. A probe that arrives
//!   from an IP the asker never sent anything to has passed any NAT or firewall filter in
//!   front of it unsolicited: the node is reachable, and becomes a server. One from an IP it
//!   did contact proves nothing (inconclusive); no probe within `probe_timeout` counts
//!   against. Three failures in a row make an undecided node unreachable; a reachable node
//!   loses a point of confidence per failure and the server role when it has none left (it
//!   had three), while one success restores it. Checks repeat every `probe_interval` once
//!   settled, sooner while undecided, backing off while they stay inconclusive.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use crate::guard::lru::BoundedLru;
use crate::guard::rate_limit::PerSecondBudget;
use crate::wire::key::Key;
use crate::wire::message::ProbeNonce;
use crate::wire::path::{canonical_ip, Subnet};

/// Reporters whose latest observation is kept.
const OBSERVED_REPORTERS: usize = 32;
/// IPs remembered as contacted: an IP forgotten here was last sent to before the 4,096 most
/// recent others, long enough ago for any NAT's filter entry for it to have expired.
const CONTACTED_IPS: usize = 4_096;
/// Failures in a row that make an undecided node unreachable, and the confidence a reachable
/// node has after a success.
pub(crate) const MAX_CONFIDENCE: u8 = 3;
/// Doublings of the retry delay while checks stay inconclusive.
pub(crate) const MAX_BACKOFF_SHIFT: u32 = 6;

/// The node's public port, as peers report it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PublicPort {
    /// Every peer sees the same port.
    Same(u16),
    /// Each peer sees another port (a symmetric NAT maps each destination anew).
    VariesPerPeer,
}

/// The node's public address: the IP peers agree on, and its port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PublicAddr {
    /// The IP peers in several subnets agree they see us at.
    pub ip: IpAddr,
    /// The port they see, or that it varies per peer.
    pub port: PublicPort,
}

impl PublicAddr {
    /// The socket address, when every peer sees the same port.
    pub fn socket_addr(&self) -> Option<SocketAddr> {
        match self.port {
            PublicPort::Same(port) => Some(SocketAddr::new(self.ip, port)),
            PublicPort::VariesPerPeer => None,
        }
    }
}

/// How the NAT in front of the node maps its socket (RFC 4787), as far as peers' reports
/// tell. A node with no NAT at all looks endpoint-independent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum NatMapping {
    /// Too few reports yet, or reports that disagree (a mapping that changed).
    #[default]
    Unknown,
    /// One public port whoever the peer: a cone NAT, or no NAT.
    EndpointIndependent,
    /// A public port per peer: a symmetric NAT.
    EndpointDependent,
}

/// Whether the node can be reached from outside, as probes tell.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Reachability {
    /// Not decided yet, or not checked (a node that is a server by configuration).
    #[default]
    Unknown,
    /// An unsolicited probe arrived from an address the node never contacted.
    Reachable,
    /// Probes asked for did not arrive.
    Unreachable,
}

/// Everything the node knows of where it stands, reported with `Event::Standing` whenever
/// any part of it changes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Standing {
    /// The public address, once peers agree on its IP.
    pub public_addr: Option<PublicAddr>,
    /// The NAT's mapping behaviour.
    pub nat: NatMapping,
    /// Reachability from outside.
    pub reachability: Reachability,
    /// Whether the node acts as a server (enters routing tables, stores for others).
    pub server: bool,
}

/// Whom a report's vote counts for: a subnet, or one IP when subnets are not told apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Voter {
    Subnet(Subnet),
    Ip(IpAddr),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Report {
    voter: Voter,
    seen: SocketAddr,
}

/// The addresses peers report, and what they add up to.
#[derive(Debug)]
pub(crate) struct Observations {
    reports: BoundedLru<Key, Report>,
    quorum: usize,
    by_subnet: bool,
    public: Option<PublicAddr>,
    nat: NatMapping,
}

impl Observations {
    pub(crate) fn new(quorum: usize, by_subnet: bool) -> Self {
        Self {
            reports: BoundedLru::new(OBSERVED_REPORTERS),
            quorum: quorum.max(2),
            by_subnet,
            public: None,
            nat: NatMapping::Unknown,
        }
    }

    pub(crate) fn public(&self) -> Option<PublicAddr> {
        self.public
    }

    pub(crate) fn nat(&self) -> NatMapping {
        self.nat
    }

    /// Records that `reporter`, answering from `reporter_ip`, saw us at `seen`. Returns
    /// whether the public address or mapping changed.
    pub(crate) fn record(&mut self, reporter: Key, reporter_ip: IpAddr, seen: SocketAddr) -> bool {
        let reporter_ip = canonical_ip(reporter_ip);
        let report = Report {
            voter: if self.by_subnet {
                Voter::Subnet(Subnet::of(reporter_ip))
            } else {
                Voter::Ip(reporter_ip)
            },
            seen: crate::wire::path::canonical_addr(seen),
        };
        if let Some(old) = self.reports.get_mut(&reporter) {
            if *old == report {
                return false;
            }
        }
        let replaced = self.reports.peek(&reporter).copied();
        let evicted = self.reports.insert(reporter, report).map(|(_, r)| r);
        // Most reports agree with what the node already concluded: a vote added to the
        // winner, and none taken from anyone else, cannot change the outcome.
        let agrees = |r: &Report| {
            self.public
                .is_some_and(|p| p.ip == r.seen.ip() && p.port == PublicPort::Same(r.seen.port()))
                && self.nat == NatMapping::EndpointIndependent
        };
        if agrees(&report)
            && replaced.is_none_or(|r| agrees(&r))
            && evicted.is_none_or(|r| agrees(&r))
        {
            return false;
        }
        let (public, nat) = self.aggregate();
        let changed = public != self.public || nat != self.nat;
        self.public = public;
        self.nat = nat;
        changed
    }

    fn aggregate(&self) -> (Option<PublicAddr>, NatMapping) {
        let mut ips: HashMap<IpAddr, HashSet<Voter>> = HashMap::new();
        for (_, report) in self.reports.iter() {
            ips.entry(report.seen.ip())
                .or_default()
                .insert(report.voter);
        }
        let mut ranked: Vec<(usize, IpAddr)> = ips.iter().map(|(ip, v)| (v.len(), *ip)).collect();
        ranked.sort_unstable_by(|a, b| b.cmp(a));
        let Some(&(votes, ip)) = ranked.first() else {
            return (None, NatMapping::Unknown);
        };
        let runner_up = ranked.get(1).map_or(0, |r| r.0);
        if votes < self.quorum || votes == runner_up {
            return (None, NatMapping::Unknown);
        }
        let mut ports: HashMap<u16, HashSet<Voter>> = HashMap::new();
        for (_, report) in self.reports.iter() {
            if report.seen.ip() == ip {
                ports
                    .entry(report.seen.port())
                    .or_default()
                    .insert(report.voter);
            }
        }
        let Some((top_port, top_votes)) = ports
            .iter()
            .map(|(port, v)| (*port, v.len()))
            .max_by_key(|(port, n)| (*n, std::cmp::Reverse(*port)))
        else {
            return (None, NatMapping::Unknown);
        };
        if top_votes < self.quorum {
            let port = PublicPort::VariesPerPeer;
            return (Some(PublicAddr { ip, port }), NatMapping::EndpointDependent);
        }
        let public = Some(PublicAddr {
            ip,
            port: PublicPort::Same(top_port),
        });
        if top_votes * 3 >= votes * 2 {
            (public, NatMapping::EndpointIndependent)
        } else {
            (public, NatMapping::Unknown)
        }
    }
}

/// A probe asked for and not yet settled.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Attempt {
    pub(crate) nonce: ProbeNonce,
    pub(crate) via: Key,
    pub(crate) deadline: Instant,
    /// The server asked confirmed it passed the request on.
    pub(crate) forwarded: bool,
}

/// The reachability check's state.
#[derive(Debug)]
pub(crate) struct Prober {
    /// Whether the node checks its reachability and sets its role from it.
    pub(crate) enabled: bool,
    pub(crate) state: Reachability,
    pub(crate) confidence: u8,
    pub(crate) failures: u8,
    pub(crate) inconclusive: u32,
    pub(crate) attempt: Option<Attempt>,
    pub(crate) last_via: Option<Key>,
    pub(crate) next_at: Option<Instant>,
    /// IPs the node has sent to (tracked only when checking).
    pub(crate) contacted: BoundedLru<IpAddr, ()>,
    /// Probe requests this node passes on or sends for others.
    pub(crate) helping: PerSecondBudget,
}

impl Prober {
    pub(crate) fn new(enabled: bool, helps_per_sec: u32) -> Self {
        Self {
            enabled,
            state: Reachability::Unknown,
            confidence: 0,
            failures: 0,
            inconclusive: 0,
            attempt: None,
            last_via: None,
            next_at: None,
            contacted: BoundedLru::new(if enabled { CONTACTED_IPS } else { 1 }),
            helping: PerSecondBudget::new(helps_per_sec),
        }
    }

    /// Notes that the node sends to `ip`.
    pub(crate) fn note_sent(&mut self, ip: IpAddr) {
        if self.enabled {
            self.contacted.insert(canonical_ip(ip), ());
        }
    }

    pub(crate) fn state(&self) -> Reachability {
        self.state
    }

    pub(crate) fn next_wakeup(&self) -> Option<Instant> {
        if self.enabled {
            self.next_at
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().expect("valid in test")
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("valid in test")
    }

    #[test]
    fn one_reporter_is_not_enough_and_two_in_distinct_subnets_are() {
        let mut seen = Observations::new(2, true);
        assert!(!seen.record(Key([1; 32]), ip("10.0.1.1"), addr("198.51.100.7:4000")));
        assert_eq!(seen.public(), None);
        // A second reporter in the same /24 is the same voter.
        assert!(!seen.record(Key([2; 32]), ip("10.0.1.2"), addr("198.51.100.7:4000")));
        assert_eq!(seen.public(), None);
        assert!(seen.record(Key([3; 32]), ip("10.0.2.1"), addr("198.51.100.7:4000")));
        let public = seen.public().expect("agreed");
        assert_eq!(public.socket_addr(), Some(addr("198.51.100.7:4000")));
        assert_eq!(seen.nat(), NatMapping::EndpointIndependent);
    }

    #[test]
    fn without_subnets_distinct_ips_vote() {
        let mut seen = Observations::new(2, false);
        seen.record(Key([1; 32]), ip("198.18.1.1"), addr("198.18.0.5:4000"));
        seen.record(Key([2; 32]), ip("198.18.1.2"), addr("198.18.0.5:4000"));
        assert_eq!(
            seen.public().and_then(|p| p.socket_addr()),
            Some(addr("198.18.0.5:4000"))
        );
    }

    #[test]
    fn a_port_per_peer_is_a_symmetric_mapping() {
        let mut seen = Observations::new(2, true);
        seen.record(Key([1; 32]), ip("10.0.1.1"), addr("198.51.100.7:4001"));
        seen.record(Key([2; 32]), ip("10.0.2.1"), addr("198.51.100.7:4002"));
        seen.record(Key([3; 32]), ip("10.0.3.1"), addr("198.51.100.7:4003"));
        assert_eq!(
            seen.public(),
            Some(PublicAddr {
                ip: ip("198.51.100.7"),
                port: PublicPort::VariesPerPeer
            })
        );
        assert_eq!(seen.nat(), NatMapping::EndpointDependent);
    }

    #[test]
    fn a_tie_between_ips_decides_nothing_and_a_majority_does() {
        let mut seen = Observations::new(2, true);
        for (n, at) in [(1, "198.51.100.7:1"), (2, "198.51.100.7:1")] {
            seen.record(Key([n; 32]), ip(&format!("10.0.{n}.1")), addr(at));
        }
        for (n, at) in [(3, "203.0.113.9:1"), (4, "203.0.113.9:1")] {
            seen.record(Key([n; 32]), ip(&format!("10.0.{n}.1")), addr(at));
        }
        assert_eq!(seen.public(), None);
        seen.record(Key([5; 32]), ip("10.0.5.1"), addr("203.0.113.9:1"));
        assert_eq!(seen.public().map(|p| p.ip), Some(ip("203.0.113.9")));
    }

    #[test]
    fn ports_split_between_two_quorums_leave_the_mapping_unknown() {
        // A mapping that changed: old reports at one port, new ones at another.
        let mut seen = Observations::new(2, true);
        for n in 1..=3u8 {
            seen.record(
                Key([n; 32]),
                ip(&format!("10.0.{n}.1")),
                addr("198.51.100.7:1"),
            );
        }
        for n in 4..=5u8 {
            seen.record(
                Key([n; 32]),
                ip(&format!("10.0.{n}.1")),
                addr("198.51.100.7:2"),
            );
        }
        assert_eq!(seen.nat(), NatMapping::Unknown);
        assert_eq!(
            seen.public().and_then(|p| p.socket_addr()),
            Some(addr("198.51.100.7:1"))
        );
    }

    #[test]
    fn a_reporter_counts_once_with_its_latest_report() {
        let mut seen = Observations::new(2, true);
        seen.record(Key([1; 32]), ip("10.0.1.1"), addr("198.51.100.7:1"));
        seen.record(Key([2; 32]), ip("10.0.2.1"), addr("198.51.100.7:1"));
        assert!(seen.public().is_some());
        // The second reporter now sees us elsewhere: no quorum for anything.
        assert!(seen.record(Key([2; 32]), ip("10.0.2.1"), addr("203.0.113.9:1")));
        assert_eq!(seen.public(), None);
    }

    #[test]
    fn mapped_ipv4_addresses_count_as_ipv4() {
        let mut seen = Observations::new(2, true);
        seen.record(
            Key([1; 32]),
            ip("::ffff:10.0.1.1"),
            addr("[::ffff:198.51.100.7]:1"),
        );
        seen.record(Key([2; 32]), ip("10.0.2.1"), addr("198.51.100.7:1"));
        assert_eq!(
            seen.public().and_then(|p| p.socket_addr()),
            Some(addr("198.51.100.7:1"))
        );
    }
}
