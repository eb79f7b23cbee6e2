//! Driving the real `carrier` program: bootstrap nodes, daemons (killed on drop, also when a
//! test fails), the client commands, and raw control-socket connections.
#![allow(dead_code)] // Each test file uses part of it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::UnixStream;
use tokio::process::{Child, ChildStdout, Command};

/// The program under test.
pub(crate) const PROGRAM: &str = env!("CARGO_BIN_EXE_carrier");

/// How long anything may take before the test fails.
pub(crate) const PATIENCE: Duration = Duration::from_secs(30);

/// A child process, SIGKILLed when dropped.
pub(crate) struct Process {
    pub(crate) child: Child,
    pub(crate) stdout: Lines<BufReader<ChildStdout>>,
}

impl Process {
    /// The next line on its stdout.
    pub(crate) async fn line(&mut self) -> String {
        tokio::time::timeout(PATIENCE, self.stdout.next_line())
            .await
            .expect("the program printed nothing in time")
            .unwrap()
            .expect("the program's output ended")
    }

    /// SIGKILL, no goodbye.
    pub(crate) async fn kill(mut self) {
        self.child.kill().await.unwrap();
    }
}

fn spawn(args: &[&str], data: &Path, log: Option<PathBuf>) -> Process {
    let stderr = match log {
        Some(log) => Stdio::from(std::fs::File::create(log).unwrap()),
        None => Stdio::null(),
    };
    let mut child = Command::new(PROGRAM)
        .args(args)
        .arg("--data")
        .arg(data)
        .env("RUST_LOG", "debug")
        .env_remove("CARRIER_DATA")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    Process { child, stdout }
}

/// A bootstrap node (`carrier node`) on `ip`; it and its contact `ID@address`.
pub(crate) async fn bootstrap_node(data: &Path, ip: [u8; 4]) -> (Process, String) {
    let listen = SocketAddr::from((ip, 0)).to_string();
    let mut node = spawn(&["node", "--listen", &listen], data, None);
    let contact = node.line().await;
    (node, contact)
}

/// A running `carrier daemon`.
pub(crate) struct Daemon {
    pub(crate) process: Process,
    pub(crate) data: PathBuf,
    /// Its DHT contact, `ID@address`.
    pub(crate) contact: String,
    pub(crate) id: String,
    pub(crate) address: String,
}

impl Daemon {
    /// Starts a daemon on `data`, bound to `ip`, joining through `seed`, with the short test
    /// intervals; returns once it serves. Its log goes to `data` + `.log`.
    pub(crate) async fn start(data: &Path, ip: [u8; 4], seed: &str) -> Daemon {
        let listen = SocketAddr::from((ip, 0)).to_string();
        let log = data.with_extension("log");
        let mut process = spawn(
            &[
                "daemon",
                "--listen",
                &listen,
                "--bootstrap",
                seed,
                "--test-timers",
            ],
            data,
            Some(log),
        );
        let contact = process.line().await;
        let id = contact.split('@').next().unwrap().to_string();
        let mut daemon = Daemon {
            process,
            data: data.to_path_buf(),
            contact,
            id,
            address: String::new(),
        };
        let address = daemon.cli_json(&["address"]).await;
        daemon.address = address["address"].as_str().unwrap().to_string();
        daemon
    }

    /// Runs `carrier ARGS --data DIR`: exit code, stdout, stderr.
    pub(crate) async fn cli(&self, args: &[&str]) -> (i32, String, String) {
        cli(&self.data, args).await
    }

    /// Runs `carrier ARGS --json --data DIR`, which must succeed: the result.
    pub(crate) async fn cli_json(&self, args: &[&str]) -> Value {
        let mut with_json = args.to_vec();
        with_json.push("--json");
        let (code, stdout, stderr) = cli(&self.data, &with_json).await;
        assert_eq!(code, 0, "carrier {args:?}: {stderr}{stdout}");
        serde_json::from_str(stdout.trim()).unwrap()
    }

    /// A control-socket connection that watches events, those since the start first.
    pub(crate) async fn control(&self) -> Control {
        let mut control = Control::connect(&self.data).await;
        control.ok("watch", json!({ "replay": true })).await;
        control
    }

    /// Stops it through the control socket and waits for a clean exit.
    pub(crate) async fn stop(mut self) {
        let mut control = Control::connect(&self.data).await;
        control.ok("stop", json!({})).await;
        let status = tokio::time::timeout(PATIENCE, self.process.child.wait())
            .await
            .expect("the daemon stopped in time")
            .unwrap();
        assert!(status.success(), "{status:?}");
    }

    /// SIGKILL, no goodbye.
    pub(crate) async fn kill(self) {
        self.process.kill().await;
    }
}

/// Runs `carrier ARGS --data DIR` to its end: exit code, stdout, stderr.
pub(crate) async fn cli(data: &Path, args: &[&str]) -> (i32, String, String) {
    let run = Command::new(PROGRAM)
        .args(args)
        .arg("--data")
        .arg(data)
        .env_remove("CARRIER_DATA")
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(PATIENCE, run)
        .await
        .expect("the command finished in time")
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// One raw connection to a daemon's control socket.
pub(crate) struct Control {
    pub(crate) reader: Lines<BufReader<OwnedReadHalf>>,
    pub(crate) writer: OwnedWriteHalf,
    next_id: u64,
    /// Every event seen so far on this connection.
    pub(crate) events: Vec<Value>,
}

impl Control {
    pub(crate) async fn connect(data: &Path) -> Control {
        let stream = UnixStream::connect(data.join("control.sock"))
            .await
            .unwrap();
        let (read, writer) = stream.into_split();
        Control {
            reader: BufReader::new(read).lines(),
            writer,
            next_id: 1,
            events: Vec::new(),
        }
    }

    /// The next line the daemon sends; `None` when it closed the connection.
    pub(crate) async fn next(&mut self) -> Option<Value> {
        let line = tokio::time::timeout(PATIENCE, self.reader.next_line())
            .await
            .expect("the daemon said nothing in time")
            .ok()
            .flatten()?;
        Some(serde_json::from_str(&line).unwrap())
    }

    /// Sends a request (`args` an object of its arguments); its whole reply. Events that come
    /// before it are kept.
    pub(crate) async fn send(&mut self, request: &str, args: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let mut line = args;
        line["id"] = json!(id);
        line["request"] = json!(request);
        self.writer
            .write_all(format!("{line}\n").as_bytes())
            .await
            .unwrap();
        loop {
            let reply = self.next().await.expect("the daemon closed the connection");
            if reply.get("event").is_some() {
                self.events.push(reply);
            } else {
                assert_eq!(reply["id"], json!(id), "{reply}");
                return reply;
            }
        }
    }

    /// Sends a request; its whole reply, or `None` when the daemon went away first (a test
    /// that kills daemons). Events that come before it are kept.
    pub(crate) async fn try_send(&mut self, request: &str, args: Value) -> Option<Value> {
        let id = self.next_id;
        self.next_id += 1;
        let mut line = args;
        line["id"] = json!(id);
        line["request"] = json!(request);
        self.writer
            .write_all(format!("{line}\n").as_bytes())
            .await
            .ok()?;
        loop {
            let reply = self.next().await?;
            if reply.get("event").is_some() {
                self.events.push(reply);
            } else {
                assert_eq!(reply["id"], json!(id), "{reply}");
                return Some(reply);
            }
        }
    }

    /// The next event, if one comes within `wait` (kept in `events` too); `None` also when
    /// the daemon went away.
    pub(crate) async fn next_event(&mut self, wait: Duration) -> Option<Value> {
        let line = tokio::time::timeout(wait, self.reader.next_line())
            .await
            .ok()?
            .ok()
            .flatten()?;
        let value: Value = serde_json::from_str(&line).unwrap();
        assert!(value.get("event").is_some(), "{value}");
        self.events.push(value.clone());
        Some(value)
    }

    /// Sends a request that must succeed; its result.
    pub(crate) async fn ok(&mut self, request: &str, args: Value) -> Value {
        let reply = self.send(request, args).await;
        assert_eq!(reply["ok"], json!(true), "{request}: {reply}");
        reply["result"].clone()
    }

    /// Sends a request that must be refused; the error's kind.
    pub(crate) async fn refused(&mut self, request: &str, args: Value) -> String {
        let reply = self.send(request, args).await;
        assert_eq!(reply["ok"], json!(false), "{request}: {reply}");
        reply["error"]["kind"].as_str().unwrap().to_string()
    }

    /// Events so far named `event` about `friend` (`from` for requests).
    pub(crate) fn count(&self, event: &str, friend: &str) -> usize {
        self.events
            .iter()
            .filter(|e| e["event"] == event && (e["friend"] == friend || e["from"] == friend))
            .count()
    }

    /// Waits, reading events as they come, until `n` events named `event` about `friend`
    /// arrived on this connection.
    pub(crate) async fn events_at_least(&mut self, event: &str, friend: &str, n: usize) {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        while self.count(event, friend) < n {
            let line = tokio::time::timeout_at(deadline, self.reader.next_line())
                .await
                .unwrap_or_else(|_| panic!("no `{event}` about {friend}: {:?}", self.events))
                .unwrap()
                .expect("the daemon closed the connection");
            let value: Value = serde_json::from_str(&line).unwrap();
            assert!(value.get("event").is_some(), "{value}");
            self.events.push(value);
        }
    }

    /// Waits, reading events as they come, until one seen on this connection satisfies
    /// `want`.
    pub(crate) async fn until_event(&mut self, want: impl Fn(&Value) -> bool) {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        while !self.events.iter().any(&want) {
            let line = tokio::time::timeout_at(deadline, self.reader.next_line())
                .await
                .unwrap_or_else(|_| panic!("no such event: {:?}", self.events))
                .unwrap()
                .expect("the daemon closed the connection");
            let value: Value = serde_json::from_str(&line).unwrap();
            assert!(value.get("event").is_some(), "{value}");
            self.events.push(value);
        }
    }

    /// Waits for one `event` about `friend`.
    pub(crate) async fn event(&mut self, event: &str, friend: &str) {
        self.events_at_least(event, friend, 1).await;
    }

    /// Sends `request` every 100 ms until its result satisfies `done`; the result.
    pub(crate) async fn until(
        &mut self,
        request: &str,
        args: Value,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let result = self.ok(request, args.clone()).await;
            if done(&result) {
                return result;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "`{request}` still answers {result}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// A small DHT in the test process on 127.`subnet`.i.1, each node its own /24: the network
/// the daemons join.
pub(crate) async fn seeds(subnet: u8) -> Vec<carrier::dht::Dht> {
    use carrier::dht::{BootstrapNode, Dht, DhtConfig};
    let mut seeds: Vec<Dht> = Vec::new();
    for i in 0..5u8 {
        let mut config = DhtConfig::new(SocketAddr::from(([127, subnet, i + 1, 1], 0)));
        config.node.server = true;
        if let Some(first) = seeds.first() {
            config = config.with_bootstrap([BootstrapNode::new(first.id(), first.local_addr())]);
        }
        let dht = Dht::bind(config).await.unwrap();
        if !seeds.is_empty() {
            dht.bootstrap().await.unwrap();
        }
        seeds.push(dht);
    }
    seeds
}

/// A DHT node's contact, `ID@address`, as `--bootstrap` takes it.
pub(crate) fn contact(dht: &carrier::dht::Dht) -> String {
    format!("{}@{}", dht.id(), dht.local_addr())
}

/// The IDs in a list of friend entries (`friend_list`'s `friends`) or of strings.
pub(crate) fn ids(list: &Value) -> std::collections::BTreeSet<String> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|entry| match entry {
            Value::String(id) => id.clone(),
            entry => entry["id"]
                .as_str()
                .or(entry["from"].as_str())
                .or(entry["to"].as_str())
                .unwrap()
                .to_string(),
        })
        .collect()
}
