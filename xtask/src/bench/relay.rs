//! The relay figures measured on loopback (issue 19):
//!
//! - `reach.failover_gap_ms`: a transfer runs over a friend link through relay A to a node
//!   that takes QUIC only from its relays (as a NAT would); A's node shuts down a quarter of
//!   the way; the link's failover moves the same connection to relay B. The figure is the
//!   longest wait between two reads at the receiving end: the time the transfer stood still
//!   while its relay died and the link moved.
//! - `relay.mem_kib_per_registration`: a relay in a process of its own (`xtask bench-child
//!   relay-node`) is read (`VmRSS` in `/proc/<pid>/status`) before and after N idle nodes
//!   register with it; the growth divided by N. Only the relay's memory is counted: the
//!   registering sockets live in the bench's own process. The relay's per-source limits are
//!   lifted (every registration comes from 127.0.0.1): the figure is what a registration
//!   costs, not how fast one source may make them.

use super::{memory, transfer, Scale};
use carrier_friend::dht::id::CarrierId;
use carrier_friend::dht::relay::frame::Control;
use carrier_friend::dht::socket::{Conditioner, Fate};
use carrier_friend::dht::{BootstrapNode, Dht, DhtConfig, Key, PeerRecord, RelayLimits};
use carrier_friend::{keep_relayed_link, Accepted, AllowList, Link, LinkConfig, LinkEndpoint};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The hidden subcommand and task of the relay's own process.
pub(crate) const RELAY_NODE: &str = "relay-node";

/// How long any step may take before the run is a failure.
const PATIENCE: Duration = Duration::from_secs(20);

/// How long the relay idles before each reading, so memory that settling takes is counted
/// before and what registrations take after.
const SETTLE: Duration = Duration::from_secs(1);

/// Drops QUIC datagrams from anywhere but the relays, as a NAT would drop unsolicited ones.
struct NatInFront {
    relays: Vec<SocketAddr>,
}

impl Conditioner for NatInFront {
    fn outgoing(&self, _to: SocketAddr, _data: &[u8]) -> Fate {
        Fate::Pass
    }

    fn incoming(&self, from: SocketAddr, data: &[u8]) -> Fate {
        let quic = data.first().is_some_and(|b| b & 0x40 != 0);
        if quic && !self.relays.contains(&from) {
            Fate::Drop
        } else {
            Fate::Pass
        }
    }
}

fn failed(what: &str) -> impl Fn(&dyn std::fmt::Display) -> String + '_ {
    move |e| format!("{what}: {e}")
}

fn seed(node: &Dht) -> BootstrapNode {
    BootstrapNode::new(node.id(), node.local_addr())
}

/// A relaying server on its own loopback address, joined through `through`.
async fn server(ip: [u8; 4], through: Option<&Dht>) -> Result<Dht, String> {
    let mut config = DhtConfig::local(SocketAddr::from((ip, 0)));
    if let Some(first) = through {
        config = config.with_bootstrap([seed(first)]);
    }
    let dht = Dht::bind(config)
        .await
        .map_err(|e| failed("cannot start a relay")(&e))?;
    if through.is_some() {
        dht.bootstrap()
            .await
            .map_err(|e| failed("a relay cannot join")(&e))?;
    }
    Ok(dht)
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// One run of `reach.failover_gap_ms`, in milliseconds.
pub(crate) fn failover_gap(scale: &Scale) -> Result<f64, String> {
    let size = scale.failover_transfer_bytes;
    transfer::on_runtime(async move {
        // Two relays in two /24s, and Alice, a server, who joins through them.
        let relay_a = server([127, 0, 11, 1], None).await?;
        let relay_b = server([127, 0, 12, 1], Some(&relay_a)).await?;
        let alice_dht = server([127, 0, 10, 1], Some(&relay_a)).await?;
        let alice = LinkEndpoint::new(
            alice_dht.socket().clone(),
            &alice_dht.keypair(),
            LinkConfig::new(AllowList::default()),
        )
        .map_err(|e| failed("Alice's endpoint")(&e))?;

        // Bob is not a server: he registers with both relays, announces them, and takes
        // QUIC only from them.
        let mut config = DhtConfig::new(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
            .with_bootstrap([seed(&relay_a)]);
        config.node.detect_reachability = false;
        config.node.max_per_subnet = None;
        let bob_dht = Dht::bind(config)
            .await
            .map_err(|e| failed("cannot start Bob")(&e))?;
        bob_dht
            .bootstrap()
            .await
            .map_err(|e| failed("Bob cannot join")(&e))?;
        let allow = AllowList::default();
        allow.insert(alice_dht.id());
        let bob = LinkEndpoint::new(
            bob_dht.socket().clone(),
            &bob_dht.keypair(),
            LinkConfig::new(allow),
        )
        .map_err(|e| failed("Bob's endpoint")(&e))?;
        let deadline = Instant::now() + PATIENCE;
        while bob_dht.relay_hints().len() < 2 {
            if Instant::now() > deadline {
                return Err("Bob did not register with both relays".into());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        bob_dht.socket().set_conditioner(Some(Arc::new(NatInFront {
            relays: vec![relay_a.local_addr(), relay_b.local_addr()],
        })));
        let record = PeerRecord::sign(
            &bob_dht.keypair(),
            unix_ms(),
            unix_ms() / 1000 + 3600,
            Vec::new(),
            bob_dht.relay_hints(),
        )
        .map_err(|e| failed("Bob's record")(&e))?;
        bob_dht
            .announce(record)
            .await
            .map_err(|e| failed("Bob's announce")(&e))?;

        // Alice links to Bob through relay A, and keeps the link alive through relays.
        let bob_id: CarrierId = bob_dht.id();
        let via_a = alice_dht
            .open_relay_session(relay_a.local_addr(), &bob_id)
            .await
            .map_err(|e| failed("no session at relay A")(&e))?;
        let link = tokio::time::timeout(PATIENCE, alice.dial(bob_id, via_a))
            .await
            .map_err(|_| "the dial timed out".to_string())?
            .map_err(|e| failed("the dial failed")(&e))?;
        let at_bob: Link = match tokio::time::timeout(PATIENCE, bob.accept()).await {
            Ok(Some(Accepted::Link(link))) => link,
            _ => return Err("Bob accepted no link".into()),
        };
        tokio::spawn(keep_relayed_link(
            alice_dht.clone(),
            alice.clone(),
            link.clone(),
        ));

        // The transfer; relay A dies once a quarter has arrived.
        let sender = link.connection().clone();
        let send = tokio::spawn(async move {
            let mut stream = sender.open_uni().await.map_err(|e| e.to_string())?;
            let chunk = vec![0x5au8; 64 << 10];
            let mut sent = 0;
            while sent < size {
                stream.write_all(&chunk).await.map_err(|e| e.to_string())?;
                sent += chunk.len() as u64;
            }
            stream.finish().map_err(|e| e.to_string())?;
            let _ = stream.stopped().await;
            Ok::<(), String>(())
        });
        let mut incoming = tokio::time::timeout(PATIENCE, at_bob.connection().accept_uni())
            .await
            .map_err(|_| "no stream came".to_string())?
            .map_err(|e| failed("no stream")(&e))?;
        let mut buf = vec![0u8; 64 << 10];
        let mut received = 0u64;
        let mut relay_a = Some(relay_a);
        let mut last = Instant::now();
        let mut longest = Duration::ZERO;
        let mut gap_after_kill = false;
        loop {
            let read = tokio::time::timeout(PATIENCE, incoming.read(&mut buf))
                .await
                .map_err(|_| "the transfer stalled".to_string())?
                .map_err(|e| failed("the stream failed")(&e))?;
            let Some(n) = read else { break };
            let gap = last.elapsed();
            last = Instant::now();
            // Only gaps after the relay died count: the figure is the failover's.
            if gap_after_kill {
                longest = longest.max(gap);
            }
            received += n as u64;
            if received >= size / 4 {
                if let Some(dead) = relay_a.take() {
                    dead.shutdown()
                        .await
                        .map_err(|e| failed("relay A did not stop")(&e))?;
                    gap_after_kill = true;
                    last = Instant::now();
                }
            }
        }
        send.await
            .map_err(|e| failed("the sender panicked")(&e))??;
        if received != size {
            return Err(format!("{received} bytes arrived of {size}"));
        }
        let moved = matches!(
            alice.paths().path(link.connection().remote_address()),
            Some(carrier_friend::dht::Path::Relayed { relay, .. }) if relay == relay_b.local_addr()
        );
        if !moved || link.connection().close_reason().is_some() {
            return Err("the link did not continue through relay B".into());
        }
        alice.shutdown().await;
        bob.shutdown().await;
        Ok(longest.as_secs_f64() * 1000.0)
    })
}

/// One run of `relay.mem_kib_per_registration`, in KiB.
pub(crate) fn mem_per_registration(scale: &Scale) -> Result<f64, String> {
    let count = scale.relay_registrations;
    let program =
        std::env::current_exe().map_err(|e| failed("cannot find the running program")(&e))?;
    let mut child = Command::new(&program)
        .args([memory::CHILD_TASK, RELAY_NODE, &count.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| failed("cannot start the relay's process")(&e))?;
    let outcome = measure_relay(&mut child, count);
    // Closing its stdin stops the relay; kill it anyway if the run failed half-way.
    drop(child.stdin.take());
    if outcome.is_err() {
        let _ = child.kill();
    }
    let status = child.wait();
    let value = outcome?;
    match status {
        Ok(status) if status.success() => Ok(value),
        Ok(status) => Err(format!("the relay's process failed ({status})")),
        Err(e) => Err(failed("the relay's process")(&e)),
    }
}

fn measure_relay(child: &mut std::process::Child, count: usize) -> Result<f64, String> {
    let stdout = child.stdout.take().ok_or("no stdout from the relay")?;
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .map_err(|e| failed("reading the relay's contact")(&e))?;
    let (id, addr) = line
        .trim()
        .split_once('@')
        .ok_or_else(|| format!("not a contact: {line:?}"))?;
    let id: CarrierId = id.parse().map_err(|e| failed("the relay's ID")(&e))?;
    let addr: SocketAddr = addr
        .parse()
        .map_err(|e| failed("the relay's address")(&e))?;
    let relay_key = Key::of_node(&id);
    let status = format!("/proc/{}/status", child.id());
    let resident = || -> Result<u64, String> {
        let text = std::fs::read_to_string(&status).map_err(|e| failed(&status)(&e))?;
        memory::parse_vm_rss(&text)
    };
    std::thread::sleep(SETTLE);
    let before = resident()?;
    transfer::on_runtime(register_many(addr, relay_key, count))?;
    std::thread::sleep(SETTLE);
    let after = resident()?;
    eprintln!(
        "bench: relay.mem_kib_per_registration: {count} registrations, relay VmRSS {before} KiB \
         before, {after} KiB after"
    );
    Ok(after.saturating_sub(before) as f64 / count as f64)
}

/// Registers `count` fresh IDs with the relay at `addr`, each from a loopback address of its
/// own (127.1.x.y: one registration per address, and a closed socket's port, reused, would
/// move a registration instead of adding one), then closes the sockets: the registrations
/// stay until their timeout (45 s), idle.
async fn register_many(addr: SocketAddr, relay_key: Key, count: usize) -> Result<(), String> {
    for i in 0..count {
        let ip = Ipv4Addr::new(127, 1, (i / 250) as u8, (i % 250) as u8 + 1);
        let socket = tokio::net::UdpSocket::bind((ip, 0))
            .await
            .map_err(|e| failed("cannot bind")(&e))?;
        let mut seed = [0u8; 32];
        seed[..8].copy_from_slice(&(i as u64).to_le_bytes());
        seed[8] = 0xa5;
        let keys = carrier_friend::dht::id::Keypair::from_seed(&seed);
        let token = match ask(&socket, addr, &Control::hello()).await? {
            Control::Challenge { token } => token,
            other => return Err(format!("expected a challenge, got {other:?}")),
        };
        match ask(&socket, addr, &Control::register(&keys, &relay_key, token)).await? {
            Control::Registered { .. } => {}
            other => return Err(format!("registration {i} refused: {other:?}")),
        }
    }
    Ok(())
}

/// Sends `frame` to the relay and returns its answer (sent again after 500 ms of silence).
async fn ask(
    socket: &tokio::net::UdpSocket,
    relay: SocketAddr,
    frame: &Control,
) -> Result<Control, String> {
    let bytes = frame.encode();
    let mut buf = vec![0u8; 2048];
    for _ in 0..5 {
        socket
            .send_to(&bytes, relay)
            .await
            .map_err(|e| failed("cannot send to the relay")(&e))?;
        if let Ok(got) =
            tokio::time::timeout(Duration::from_millis(500), socket.recv(&mut buf)).await
        {
            let n = got.map_err(|e| failed("cannot receive")(&e))?;
            return Control::decode(&buf[..n]).map_err(|e| failed("a bad answer")(&e));
        }
    }
    Err("the relay did not answer".into())
}

/// `xtask bench-child relay-node N`: a relay that takes N registrations from one source,
/// prints its contact and runs until its stdin closes; it fails if it then holds other than
/// N registrations.
pub(crate) fn relay_node(args: &[String]) -> Result<(), String> {
    let count: usize = match args {
        [count] => count
            .parse()
            .map_err(|e| format!("bad registration count `{count}`: {e}"))?,
        _ => return Err(format!("usage: xtask bench-child {RELAY_NODE} N")),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| failed("cannot start a runtime")(&e))?;
    let dht = runtime.block_on(async {
        let mut config = DhtConfig::local(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)));
        config.relay = Some(RelayLimits {
            max_registrations: count.max(1024),
            registrations_per_source: (u32::MAX, u32::MAX),
            control_per_source: (u32::MAX, u32::MAX),
            verifications_per_sec: u32::MAX,
            ..RelayLimits::default()
        });
        Dht::bind(config)
            .await
            .map_err(|e| failed("cannot start the relay")(&e))
    })?;
    {
        let mut out = std::io::stdout();
        writeln!(out, "{}@{}", dht.id(), dht.local_addr())
            .and_then(|()| out.flush())
            .map_err(|e| failed("cannot print the contact")(&e))?;
    }
    // Until the bench closes our stdin.
    let mut rest = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut rest);
    let registered = dht
        .relay_status()
        .map_or(0, |(_, registrations, _)| registrations);
    runtime.block_on(async { dht.shutdown().await.ok() });
    if registered == count {
        Ok(())
    } else {
        Err(format!(
            "the relay held {registered} registrations, not {count}"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The failover runs end to end at a small size: a setup bug fails here, in `cargo
    /// test`, before anyone runs the bench.
    #[test]
    fn a_failover_gap_is_measured() {
        let scale = Scale {
            failover_transfer_bytes: 4 << 20,
            ..crate::bench::Mode::Quick.scale()
        };
        let gap = failover_gap(&scale).unwrap();
        assert!(gap > 0.0 && gap < 20_000.0, "{gap} ms");
    }
}
