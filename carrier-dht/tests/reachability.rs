//! Where a node stands, decided by the core alone: nodes on a small simulated internet with
//! NAT routers modelled here (a port-restricted cone and a symmetric NAT, each filtering
//! what it did not ask for), in virtual time. A node learns its public address and mapping
//! from what peers report, becomes a server only when a probe from an address it never
//! contacted reaches it, and loses the role when probes stop arriving. Probe requests are
//! refused unless proven, from a server, within budget. And a node whose contacts all went
//! silent rejoins through its bootstrap contacts.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use carrier_dht::id::Keypair;
use carrier_dht::message::{Message, ProbeNonce, Request, RequestBody, Response, ResponseBody};
use carrier_dht::packet::{open, seal, Header, KeyAgreement, NONCE_BYTES};
use carrier_dht::{
    Contact, Event, NatMapping, Node, NodeConfig, Now, Path, PublicAddr, PublicPort, Reachability,
    Refusal, Standing, Token,
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
    /// Observed addresses as the core reported them.
    observed: Vec<SocketAddr>,
}

struct Net {
    hosts: Vec<Host>,
    start: Instant,
    elapsed: Duration,
    /// Hosts whose datagrams, in and out, are all lost.
    silent: Vec<usize>,
    txid: u64,
}

fn config(server: bool) -> NodeConfig {
    NodeConfig {
        server,
        key_agreement: KeyAgreement::Simulated,
        max_per_subnet: None,
        probe_retry: Duration::from_secs(1),
        probe_timeout: Duration::from_secs(3),
        probe_interval: Duration::from_secs(60),
        ..NodeConfig::default()
    }
}

impl Net {
    fn new() -> Self {
        Self {
            hosts: Vec::new(),
            start: Instant::now(),
            elapsed: Duration::ZERO,
            silent: Vec::new(),
            txid: 0,
        }
    }

    fn next_txid(&mut self) -> u64 {
        self.txid += 1;
        self.txid
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

    fn add(&mut self, config: NodeConfig, local: SocketAddr, router: Option<Router>) -> usize {
        let i = self.hosts.len();
        let seed = [i as u8 + 1; 32];
        self.hosts.push(Host {
            node: Node::new(config, Keypair::from_seed(&seed), seed),
            local,
            router,
            events: Vec::new(),
            observed: Vec::new(),
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
                    if self.silent.contains(&i) {
                        continue;
                    }
                    if let Some(r) = self.receiver(from, to).filter(|r| !self.silent.contains(r)) {
                        let now = self.now();
                        self.hosts[r]
                            .node
                            .handle_datagram(now, Path::Direct(from), &t.contents);
                    }
                }
                while let Some(event) = self.hosts[i].node.poll_event() {
                    match event {
                        Event::Standing(standing) => self.hosts[i].events.push(standing),
                        Event::ObservedAddr(addr) => self.hosts[i].observed.push(addr),
                        _ => {}
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
    // The core reports the observed address once per change.
    let observed = &net.hosts[a].observed;
    assert_eq!(observed.last().copied(), public.socket_addr());
    assert!(observed.windows(2).all(|w| w[0] != w[1]));
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
        NodeConfig {
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

/// Sends `body` to host `to` as the node `from` at `from_addr`, and returns the answer.
fn ask(
    net: &mut Net,
    to: usize,
    (from, from_addr): (&Keypair, SocketAddr),
    client: bool,
    token: Option<Token>,
    body: RequestBody,
) -> Response {
    let key = KeyAgreement::Simulated
        .pair_key(from, &net.node(to).key())
        .expect("key");
    let txid = net.next_txid();
    let request = Message::Request(Request {
        txid,
        unix_ms: net.now().unix_ms,
        token,
        body,
        padding: Default::default(),
    });
    let sender = carrier_dht::Key::of_node(&from.id());
    let packet = seal(
        &key,
        sender,
        client,
        [txid as u8; NONCE_BYTES],
        &request.encode(),
    );
    let now = net.now();
    let host = &mut net.hosts[to];
    host.node
        .handle_datagram(now, Path::Direct(from_addr), &packet);
    let mut answer = None;
    let mut others = Vec::new();
    while let Some(t) = host.node.poll_transmit() {
        if t.path.socket_addr() == from_addr {
            let (header, _) = Header::parse(&t.contents).expect("header");
            let plain = open(&key, &t.contents, &header).expect("ours");
            if let Ok(Message::Response(response)) = Message::decode(&plain) {
                answer = Some(response);
            }
        } else {
            others.push(t);
        }
    }
    // What the node sent elsewhere (a ProbeFor to a helper) is not delivered: the test
    // looks at the answers only.
    answer.expect("an answer")
}

#[test]
fn probe_requests_need_a_proven_address_a_server_and_room_in_the_budget() {
    let mut net = network_of_servers(3);
    let asker = Keypair::from_seed(&[77; 32]);
    let at: SocketAddr = "198.18.9.9:5000".parse().expect("addr");
    let nonce = ProbeNonce([5; 16]);
    let me = (&asker, at);

    // Without a token: refused, with a token to come back with.
    let first = ask(&mut net, 0, me, true, None, RequestBody::ProbeMe { nonce });
    assert_eq!(first.body, ResponseBody::Refused(Refusal::TokenRequired));
    let token = Some(first.token);
    let answer = ask(&mut net, 0, me, true, token, RequestBody::ProbeMe { nonce });
    assert_eq!(answer.body, ResponseBody::ProbeSent);

    // Only servers ask for a probe to be sent, and never to the helper itself.
    let probe_for = |id| RequestBody::ProbeFor {
        id,
        addr: "198.18.7.7:1".parse().expect("addr"),
        nonce,
    };
    let other = carrier_dht::Key([9; 32]);
    let answer = ask(&mut net, 0, me, true, token, probe_for(other));
    assert_eq!(answer.body, ResponseBody::Refused(Refusal::NotAccepted));
    let own = net.node(0).key();
    let answer = ask(&mut net, 0, me, false, token, probe_for(own));
    assert_eq!(answer.body, ResponseBody::Refused(Refusal::NotAccepted));
    let answer = ask(&mut net, 0, me, false, token, probe_for(other));
    assert_eq!(answer.body, ResponseBody::ProbeSent);

    // At most `probes_per_sec` a second (20 by default; 2 used above).
    let mut sent = 0;
    let mut quota = 0;
    for _ in 0..25 {
        match ask(&mut net, 0, me, true, token, RequestBody::ProbeMe { nonce }).body {
            ResponseBody::ProbeSent => sent += 1,
            ResponseBody::Refused(Refusal::Quota) => quota += 1,
            other => panic!("{other:?}"),
        }
    }
    assert_eq!((sent, quota), (18, 7));

    // A client by configuration helps nobody.
    let mut net = network_of_servers(2);
    let c = net.public(false);
    net.bootstrap(c, &[0, 1]);
    net.run(Duration::from_secs(1));
    let first = ask(&mut net, c, me, false, None, RequestBody::ProbeMe { nonce });
    let answer = ask(
        &mut net,
        c,
        me,
        false,
        Some(first.token),
        RequestBody::ProbeMe { nonce },
    );
    assert_eq!(answer.body, ResponseBody::Refused(Refusal::NotAccepted));
}

#[test]
fn a_node_whose_contacts_all_went_silent_rejoins_through_its_bootstrap_contacts() {
    let mut net = network_of_servers(4);
    let a = 3;
    assert!(!net.node(a).routing_table().is_empty());
    // Everyone else goes silent long enough for every entry to fail (each refresh or rejoin
    // lookup fails them), then comes back.
    net.silent = vec![0, 1, 2];
    let own = net.node(a).key();
    for _ in 0..6 {
        // Lookups of a random key keep contacting every entry.
        let now = net.now();
        let _ = net.hosts[a]
            .node
            .find_node(now, carrier_dht::Key([0x5a; 32]));
        net.run(Duration::from_secs(5));
    }
    assert!(net.node(a).routing_table().is_empty(), "every entry failed");
    net.silent.clear();
    // Its maintenance (every minute by default) looks itself up through its seed again.
    net.run(Duration::from_secs(90));
    assert!(!net.node(a).routing_table().is_empty(), "rejoined");
    assert!(net.node(0).routing_table().contains(&own));
}
