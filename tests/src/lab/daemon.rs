//! `carrier daemon` processes in lab hosts, driven through their control sockets
//! (docs/CONTROL.md): the friend tests' nodes.
//!
//! ```no_run
//! # async fn f(device: &tests::lab::Device, seed: carrier::dht::BootstrapNode) {
//! use tests::lab::daemon::{DaemonOptions, LabDaemon};
//! let dir = std::path::Path::new("/tmp/lab");
//! let mut alice = LabDaemon::start(device, dir, &[seed], &DaemonOptions::default()).await;
//! let links = alice.ok("links", serde_json::json!({})).await;
//! # }
//! ```
//!
//! Every daemon is SIGKILLed when its [`LabDaemon`] is dropped, so a failing test leaves no
//! process behind. Helpers panic with what went wrong: they are for tests.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use carrier::dht::id::CarrierId;
use carrier::dht::BootstrapNode;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::UnixStream;
use tokio::process::Child;

use super::Device;
use crate::program::carrier_program;

/// How long a daemon may take to serve, a request to be answered, or an awaited event to
/// come: a bound, not a figure.
pub const PATIENCE: Duration = Duration::from_secs(90);

/// How a [`LabDaemon`] runs, beyond what every lab daemon has: `--listen 0.0.0.0:0
/// --test-timers --test-client` (short test intervals; a DHT client that never checks its
/// reachability), its bootstrap nodes, its data directory in the test's directory.
#[derive(Clone, Debug)]
pub struct DaemonOptions {
    /// `--test-announce-secs`: seconds between announcements of the peer record.
    pub announce_secs: Option<u64>,
    /// `--test-silence-secs`: a link closes after this much silence (keep-alives every
    /// second), in place of `--test-timers`' 3 s.
    pub silence_secs: Option<u64>,
    /// `RUST_LOG` of the daemon, whose log goes to its data directory's name with `.log`.
    pub log: String,
    /// `--test-join-attempts`: first joins tried before it serves anyway (0: it serves at
    /// once; a daemon started with its uplink cut otherwise waits out ten lookups).
    pub join_attempts: Option<u32>,
    /// `--no-lan`: no LAN discovery (lab daemons run it otherwise: they are not on loopback).
    pub no_lan: bool,
}

impl Default for DaemonOptions {
    fn default() -> DaemonOptions {
        DaemonOptions {
            announce_secs: None,
            silence_secs: None,
            log: "info".to_string(),
            join_attempts: None,
            no_lan: false,
        }
    }
}

/// A `carrier daemon` in a lab host (SIGKILLed when dropped), and a control connection that
/// watches its events from its start.
pub struct LabDaemon {
    child: Child,
    data: PathBuf,
    reader: Lines<BufReader<OwnedReadHalf>>,
    writer: OwnedWriteHalf,
    next_id: u64,
    events: Vec<Value>,
    id: CarrierId,
}

impl LabDaemon {
    /// Starts a daemon in `device` on the data directory `dir/<device's name>` (its log
    /// beside it, `.log`), joining through `seeds`, once it serves; its control connection
    /// watches events with `replay`.
    pub async fn start(
        device: &Device,
        dir: &Path,
        seeds: &[BootstrapNode],
        options: &DaemonOptions,
    ) -> LabDaemon {
        let data = dir.join(device.name());
        let mut command = tokio::process::Command::new(carrier_program());
        command.args([
            "daemon",
            "--listen",
            "0.0.0.0:0",
            "--test-timers",
            "--test-client",
        ]);
        if let Some(secs) = options.announce_secs {
            command.args(["--test-announce-secs", &secs.to_string()]);
        }
        if let Some(secs) = options.silence_secs {
            command.args(["--test-silence-secs", &secs.to_string()]);
        }
        if let Some(attempts) = options.join_attempts {
            command.args(["--test-join-attempts", &attempts.to_string()]);
        }
        if options.no_lan {
            command.arg("--no-lan");
        }
        for seed in seeds {
            command.args(["--bootstrap", &seed.to_string()]);
        }
        // Appended to: a daemon restarted on the same directory keeps its earlier log.
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(data.with_extension("log"))
            .expect("a daemon's log file");
        command
            .arg("--data")
            .arg(&data)
            .env("RUST_LOG", &options.log)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .kill_on_drop(true);
        let mut child = device
            .spawn_command(command)
            .expect("the daemon started in its host");
        let stdout = child.stdout.take().expect("the daemon's stdout is piped");
        let contact = tokio::time::timeout(PATIENCE, BufReader::new(stdout).lines().next_line())
            .await
            .expect("the daemon served in time")
            .expect("the daemon's stdout is readable")
            .expect("the daemon printed its contact");
        let id = contact
            .split('@')
            .next()
            .and_then(|id| id.parse().ok())
            .expect("the contact starts with the daemon's ID");
        // A Unix socket is a file: reachable from outside the host's network namespace.
        let (read, writer) = UnixStream::connect(data.join("control.sock"))
            .await
            .expect("the daemon's control socket")
            .into_split();
        let mut daemon = LabDaemon {
            child,
            data,
            reader: BufReader::new(read).lines(),
            writer,
            next_id: 1,
            events: Vec::new(),
            id,
        };
        daemon.ok("watch", json!({ "replay": true })).await;
        daemon
    }

    /// The daemon's Carrier ID.
    pub fn id(&self) -> CarrierId {
        self.id
    }

    /// Its data directory, where its control socket is.
    pub fn data(&self) -> &Path {
        &self.data
    }

    /// The events seen so far on its control connection.
    pub fn events(&self) -> &[Value] {
        &self.events
    }

    /// Sends a request that must succeed; its result. Events before the reply are kept.
    pub async fn ok(&mut self, request: &str, mut line: Value) -> Value {
        line["id"] = json!(self.next_id);
        line["request"] = json!(request);
        self.next_id += 1;
        self.writer
            .write_all(format!("{line}\n").as_bytes())
            .await
            .expect("the control connection takes a request");
        loop {
            let reply = self.next(Instant::now() + PATIENCE).await;
            if reply.get("event").is_some() {
                self.events.push(reply);
            } else {
                assert_eq!(reply["ok"], true, "{request}: {reply}");
                return reply["result"].clone();
            }
        }
    }

    /// The next line from the control connection, before `deadline`.
    async fn next(&mut self, deadline: Instant) -> Value {
        let line = tokio::time::timeout_at(deadline.into(), self.reader.next_line())
            .await
            .expect("the awaited event did not come in time")
            .expect("the control connection is readable")
            .expect("the daemon closed its control connection");
        serde_json::from_str(&line).expect("the daemon answers JSON lines")
    }

    /// How many events `event` about `about` (as `friend` or `from`) came so far.
    pub fn count(&self, event: &str, about: &CarrierId) -> usize {
        let about = about.to_string();
        self.events
            .iter()
            .filter(|e| e["event"] == event && (e["friend"] == about || e["from"] == about))
            .count()
    }

    /// Waits until `n` events `event` about `about` came, within [`PATIENCE`].
    pub async fn events_at_least(&mut self, event: &str, about: &CarrierId, n: usize) {
        let deadline = Instant::now() + PATIENCE;
        while self.count(event, about) < n {
            let event = self.next(deadline).await;
            self.events.push(event);
        }
    }

    /// The links it holds and the real address the link to `peer` runs to (a relay's for a
    /// relayed path), once it holds one. A friend counts as online for a short grace while
    /// a duplicate link is being replaced (both sides dialled at once), so `online` may name
    /// `peer` a moment before a link to it is held again.
    pub async fn link_to(&mut self, peer: &CarrierId) -> (u64, SocketAddr) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let links = self.ok("links", json!({})).await;
            if let Some(remote) = links["remote"][peer.to_string()].as_str() {
                let count = links["count"].as_u64().expect("links has a count");
                let remote = remote.parse().expect("a link's remote is IP:port");
                return (count, remote);
            }
            assert!(Instant::now() < deadline, "no link to {peer}: {links}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The real IP address the link to `peer` runs to, once a link is held.
    pub async fn link_ip(&mut self, peer: &CarrierId) -> IpAddr {
        self.link_to(peer).await.1.ip()
    }

    /// Whether `links` counts `peer` online.
    pub async fn is_online(&mut self, peer: &CarrierId) -> bool {
        let links = self.ok("links", json!({})).await;
        links["online"]
            .as_array()
            .is_some_and(|online| online.contains(&json!(peer.to_string())))
    }

    /// Stops it with a `stop` request and waits for a clean exit.
    pub async fn stop(mut self) {
        self.ok("stop", json!({})).await;
        let status = tokio::time::timeout(PATIENCE, self.child.wait())
            .await
            .expect("the daemon stopped in time")
            .expect("the daemon's exit status");
        assert!(status.success(), "{status:?}");
    }
}
