//! Where a node stands, decided by the core alone: nodes on a small simulated internet with
//! NAT routers modelled here (a port-restricted cone and a symmetric NAT, each filtering
//! what it did not ask for), in virtual time. A node learns its public address and mapping
//! from what peers report, becomes a server only when a probe from an address it never
//! contacted reaches it, and loses the role when probes stop arriving.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use carrier_dht::id::Keypair;
use carrier_dht::packet::KeyAgreement;
use carrier_dht::{
    Config, Contact, Event, NatMapping, Node, Now, Path, PublicAddr, PublicPort, Reachability,
    Standing,
};

const UNIX_MS: u64 = 1_767_225_600_000;
const STEP: Duration = Duration::from_millis(10);

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Nat {
    /// Endpoint-independent mapping, address-and-port-dependent filtering.
    Cone,
    /// A fresh port per destination, and only that destination may answer.
    Symmetric,
    /// No translation, but nothing unsolicited gets in.
    Firewall,
}

struct Router {
    kind: Nat,
    public_ip: IpAddr,
    /// Mapped public port per destination (one shared entry for a cone).
    ports: HashMap<Option<SocketAddr>, u16>,
    /// Per public port: the remote addresses the inside has sent to.
    allowed: HashMap<u16, HashSet<SocketAddr>>,
    next_port: u16,
}

struct Host {
    node: Node,
    local: SocketAddr,
    router: Option<Router>,
    events: Vec<Standing>,
}

struct Net {
    hosts: Vec<Host>,
    start: Instant,
    elapsed: Duration,
}

fn config(server: bool) -> Config {
    Config {
        server,
        key_agreement: KeyAgreement::Simulated,
        max_per_subnet: None,
        probe_retry: Duration::from_secs(1),
        probe_timeout: Duration::from_secs(3),
        probe_interval: Duration::from_secs(60),
        ..Config::default()
    }
}

impl Net {
    fn new() -> Self {
        Self {
            hosts: Vec::new(),
            start: Instant::now(),
            elapsed: Duration::ZERO,
        }
    }

    fn now(&self) -> Now {
        Now::new(
            self.start + self.elapsed,
            UNIX_MS + self.elapsed.as_millis() as u64,
        )
    }

    /// A host on the internet at 198.18.1.`n`.
    fn public(&mut self, server: bool) -> usize {
        let n = self.hosts.len() as u8 + 1;
        let local = SocketAddr::from(([198, 18, 1, n], 4000));
        self.add(config(server), local, None)
    }

    /// A host behind its own router of kind `nat`, whose public IP is 198.18.0.`n`.
    fn behind(&mut self, nat: Nat) -> usize {
        let n = self.hosts.len() as u8 + 1;
        let local = SocketAddr::from(([10, 0, n, 2], 4000));
        let public_ip = IpAddr::V4(Ipv4Addr::new(198, 18, 0, n));
        let router = Router {
            kind: nat,
            public_ip,
            ports: HashMap::new(),
            allowed: HashMap::new(),
            next_port: 40_000,
        };
        self.add(config(false), local, Some(router))
    }

    fn add(&mut self, config: Config, local: SocketAddr, router: Option<Router>) -> usize {
        let i = self.hosts.len();
        let seed = [i as u8 + 1; 32];
        self.hosts.push(Host {
            node: Node::new(config, Keypair::from_seed(&seed), seed),
            local,
            router,
            events: Vec::new(),
        });
        i
    }

    /// Where host `i` is reached from outside: its own address, unless a router maps it.
    fn contact(&self, i: usize) -> Contact {
        Contact {
            id: self.hosts[i].node.key(),
            addr: self.hosts[i].local,
        }
    }

    fn bootstrap(&mut self, i: usize, seeds: &[usize]) {
        let seeds: Vec<Contact> = seeds.iter().map(|&s| self.contact(s)).collect();
        let now = self.now();
        self.hosts[i].node.bootstrap(now, &seeds).expect("seeds");
    }

    /// The source address a datagram from host `i` to `to` leaves the router with.
    fn translate(&mut self, i: usize, to: SocketAddr) -> SocketAddr {
        let local = self.hosts[i].local;
        let Some(router) = self.hosts[i].router.as_mut() else {
            return local;
        };
        if router.kind == Nat::Firewall {
            router.allowed.entry(local.port()).or_default().insert(to);
            return local;
        }
        let key = (router.kind == Nat::Symmetric).then_some(to);
        let next = &mut router.next_port;
        let port = *router.ports.entry(key).or_insert_with(|| {
            *next += 7;
            *next
        });
        router.allowed.entry(port).or_default().insert(to);
        SocketAddr::new(router.public_ip, port)
    }

    /// The host a datagram from `from` to `to` reaches, if any router lets it in.
    fn receiver(&self, from: SocketAddr, to: SocketAddr) -> Option<usize> {
        self.hosts.iter().position(|h| match &h.router {
            None => h.local == to,
            Some(r) if r.kind == Nat::Firewall => {
                h.local == to && r.allowed.get(&to.port()).is_some_and(|a| a.contains(&from))
            }
            Some(r) => {
                r.public_ip == to.ip()
                    && r.allowed.get(&to.port()).is_some_and(|a| a.contains(&from))
            }
        })
    }

    /// Carries every datagram in flight (no latency) until none is left.
    fn deliver(&mut self) {
        loop {
            let mut quiet = true;
            for i in 0..self.hosts.len() {
                while let Some(t) = self.hosts[i].node.poll_transmit() {
                    quiet = false;
                    let to = t.path.socket_addr();
                    let from = self.translate(i, to);
                    if let Some(r) = self.receiver(from, to) {
                        let now = self.now();
                        self.hosts[r]
                            .node
                            .handle_datagram(now, Path::Direct(from), &t.contents);
                    }
                }
                while let Some(event) = self.hosts[i].node.poll_event() {
                    if let Event::Standing(standing) = event {
                        self.hosts[i].events.push(standing);
                    }
                }
            }
            if quiet {
                break;
            }
        }
    }

    fn run(&mut self, duration: Duration) {
        let end = self.elapsed + duration;
        while self.elapsed < end {
            self.deliver();
            self.elapsed += STEP;
            let now = self.now();
            for host in &mut self.hosts {
                if host.node.poll_timeout().is_some_and(|t| t <= now.instant) {
                    host.node.handle_timeout(now);
                }
            }
        }
        self.deliver();
    }

    fn node(&self, i: usize) -> &Node {
        &self.hosts[i].node
    }

    /// Whether any host's routing table lists host `i`.
    fn listed_anywhere(&self, i: usize) -> bool {
        let key = self.node(i).key();
        self.hosts
            .iter()
            .any(|h| h.node.routing_table().contains(&key))
    }
}

/// `servers` public servers by configuration that know each other.
fn network_of_servers(servers: usize) -> Net {
    let mut net = Net::new();
    for _ in 0..servers {
        net.public(true);
    }
    for i in 1..servers {
        net.bootstrap(i, &[0]);
        net.run(Duration::from_millis(200));
    }
    net.run(Duration::from_secs(2));
    net
}

#[test]
fn a_public_node_becomes_a_server_once_a_stranger_probes_it() {
    let mut net = network_of_servers(16);
    let a = net.public(false);
    assert!(!net.node(a).is_server(), "not a server until probed");
    net.bootstrap(a, &[0]);
    net.run(Duration::from_secs(30));

    let node = net.node(a);
    assert_eq!(node.reachability(), Reachability::Reachable);
    assert!(node.is_server());
    let own = net.hosts[a].local;
    assert_eq!(
        node.public_addr(),
        Some(PublicAddr {
            ip: own.ip(),
            port: PublicPort::Same(own.port())
        })
    );
    assert_eq!(node.observed_addr(), Some(own));
    assert_eq!(node.nat_mapping(), NatMapping::EndpointIndependent);
    let last = net.hosts[a].events.last().copied().expect("events");
    assert_eq!(last, node.standing());
    assert!(last.server);
    // As a server it is let into the others' tables once it talks to them.
    net.run(Duration::from_secs(90));
    assert!(net.listed_anywhere(a), "the new server is in some table");
}

#[test]
fn a_node_behind_a_cone_nat_sees_one_public_port_and_stays_a_client() {
    let mut net = network_of_servers(16);
    let a = net.behind(Nat::Cone);
    net.bootstrap(a, &[0, 1]);
    net.run(Duration::from_secs(30));

    let node = net.node(a);
    let router = net.hosts[a].router.as_ref().expect("router");
    let public = node.public_addr().expect("peers agree on an address");
    assert_eq!(public.ip, router.public_ip);
    assert!(matches!(public.port, PublicPort::Same(_)));
    assert_eq!(node.nat_mapping(), NatMapping::EndpointIndependent);
    assert_eq!(node.reachability(), Reachability::Unreachable);
    assert!(!node.is_server());
    assert!(!net.listed_anywhere(a), "a client is in no table");
    assert!(net.hosts[a]
        .events
        .iter()
        .any(|s| s.reachability == Reachability::Unreachable));
}

#[test]
fn a_node_behind_a_symmetric_nat_sees_its_port_vary_per_peer_and_stays_a_client() {
    let mut net = network_of_servers(16);
    let a = net.behind(Nat::Symmetric);
    net.bootstrap(a, &[0, 1]);
    net.run(Duration::from_secs(30));

    let node = net.node(a);
    let router = net.hosts[a].router.as_ref().expect("router");
    assert_eq!(
        node.public_addr(),
        Some(PublicAddr {
            ip: router.public_ip,
            port: PublicPort::VariesPerPeer
        })
    );
    assert_eq!(node.observed_addr(), None, "no one port to give");
    assert_eq!(node.nat_mapping(), NatMapping::EndpointDependent);
    assert_eq!(node.reachability(), Reachability::Unreachable);
    assert!(!node.is_server());
    assert!(!net.listed_anywhere(a));
}

#[test]
fn a_probe_from_an_address_already_contacted_proves_nothing() {
    // Two servers only: the newcomer contacts both while joining, so every probe comes from
    // an IP it has sent to. It is in fact reachable, but nothing has shown it.
    let mut net = network_of_servers(2);
    let a = net.public(false);
    net.bootstrap(a, &[0, 1]);
    net.run(Duration::from_secs(30));
    let node = net.node(a);
    assert_eq!(node.reachability(), Reachability::Unknown);
    assert!(!node.is_server());
    assert!(
        node.public_addr().is_some(),
        "its address is known all the same"
    );
}

#[test]
fn a_server_whose_probes_stop_arriving_becomes_a_client_again() {
    let mut net = network_of_servers(16);
    let a = net.public(false);
    net.bootstrap(a, &[0]);
    net.run(Duration::from_secs(30));
    assert!(net.node(a).is_server(), "probed and promoted");

    // A firewall appears in front of it: nothing unsolicited gets in any more.
    net.hosts[a].router = Some(Router {
        kind: Nat::Firewall,
        public_ip: net.hosts[a].local.ip(),
        ports: HashMap::new(),
        allowed: HashMap::new(),
        next_port: 0,
    });
    // Three failed re-checks (one per 60 s interval, then 1 s retries) take it down.
    net.run(Duration::from_secs(120));
    let node = net.node(a);
    assert_eq!(node.reachability(), Reachability::Unreachable);
    assert!(!node.is_server());
    let events = &net.hosts[a].events;
    let demoted = events
        .iter()
        .rposition(|s| !s.server)
        .expect("demotion event");
    let promoted = events
        .iter()
        .position(|s| s.server)
        .expect("promotion event");
    assert!(promoted < demoted);
}

#[test]
fn servers_by_configuration_never_probe() {
    let mut net = network_of_servers(4);
    net.run(Duration::from_secs(30));
    for host in &net.hosts {
        assert!(host.node.is_server());
        assert_eq!(host.node.reachability(), Reachability::Unknown);
    }
}

#[test]
fn a_client_by_configuration_never_probes() {
    let mut net = network_of_servers(16);
    let a = net.public(false);
    net.hosts[a].node = Node::new(
        Config {
            detect_reachability: false,
            ..config(false)
        },
        Keypair::from_seed(&[99; 32]),
        [99; 32],
    );
    net.bootstrap(a, &[0]);
    net.run(Duration::from_secs(30));
    assert_eq!(net.node(a).reachability(), Reachability::Unknown);
    assert!(!net.node(a).is_server());
}
