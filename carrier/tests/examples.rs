//! The examples (`carrier/examples/`) as their readers run them: two processes of each, on a
//! network of one in-process DHT node, each on loopback addresses of its own (127.86.x.1).
//! `cargo test` builds the examples before the integration tests; `cargo test --test
//! examples` alone does not (`cargo build -p carrier --examples` first).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use carrier::dht::{Dht, DhtConfig};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

/// How long any one step may take before the test fails (a normal run takes a second or
/// two for all of them).
const PATIENCE: Duration = Duration::from_secs(60);

/// Where cargo put the example `name`: `examples/` beside the `carrier` program.
fn example(name: &str) -> PathBuf {
    let program = Path::new(env!("CARGO_BIN_EXE_carrier"));
    let path = program.parent().unwrap().join("examples").join(name);
    assert!(
        path.exists(),
        "the example {name} is not built ({} is missing): run `cargo build -p carrier \
         --examples` (plain `cargo test` builds them)",
        path.display()
    );
    path
}

/// A DHT node in this process on 127.86.`subnet`.1: the network's bootstrap node, and its
/// contact `ID@address`.
async fn bootstrap(subnet: u8) -> (Dht, String) {
    let dht = Dht::bind(DhtConfig::local(SocketAddr::from((
        [127, 86, subnet, 1],
        0,
    ))))
    .await
    .unwrap();
    let contact = format!("{}@{}", dht.id(), dht.local_addr());
    (dht, contact)
}

/// A running example, SIGKILLed when dropped; its stderr goes to a file beside its data.
struct Run {
    name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: Lines<BufReader<ChildStdout>>,
    /// Every line it printed so far.
    printed: Vec<String>,
    log: PathBuf,
}

impl Run {
    /// Starts example `example` on data directory `data`, bound to `ip`, joining through
    /// `seed`, with `args` after those.
    fn start(example_name: &str, data: &Path, ip: [u8; 4], seed: &str, args: &[&str]) -> Run {
        let log = data.with_extension("log");
        let listen = SocketAddr::from((ip, 0)).to_string();
        let mut child = Command::new(example(example_name))
            .arg("--data")
            .arg(data)
            .args(["--local", "--listen", &listen, "--bootstrap", seed])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().unwrap()).lines();
        Run {
            name: format!("{example_name} on {}", data.display()),
            child,
            stdin,
            stdout,
            printed: Vec::new(),
            log,
        }
    }

    /// Reads its output until a line contains `text`; that line.
    async fn line_with(&mut self, text: &str) -> String {
        let wait = async {
            loop {
                match self.stdout.next_line().await.unwrap() {
                    Some(line) => {
                        self.printed.push(line.clone());
                        if line.contains(text) {
                            return Some(line);
                        }
                    }
                    None => return None,
                }
            }
        };
        match tokio::time::timeout(PATIENCE, wait).await {
            Ok(Some(line)) => line,
            outcome => panic!(
                "{} {} `{text}`; it printed {:#?}, and logged {}",
                self.name,
                if outcome.is_ok() {
                    "ended without printing"
                } else {
                    "did not print in time"
                },
                self.printed,
                std::fs::read_to_string(&self.log).unwrap_or_default()
            ),
        }
    }

    /// The node's address, from its first lines.
    async fn address(&mut self) -> String {
        let line = self.line_with("my address: ").await;
        line.trim_start_matches("my address: ").to_string()
    }

    /// Types a line on its stdin.
    async fn type_line(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().unwrap();
        stdin
            .write_all(format!("{line}\n").as_bytes())
            .await
            .unwrap();
        stdin.flush().await.unwrap();
    }

    /// Waits for it to exit on its own.
    async fn exit(&mut self) -> ExitStatus {
        let status = tokio::time::timeout(PATIENCE, self.child.wait()).await;
        status
            .unwrap_or_else(|_| panic!("{} did not exit in time: {:#?}", self.name, self.printed))
            .unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_carries_a_line_each_way_with_its_receipt() {
    let (_seed, seed) = bootstrap(1).await;
    let dir = tempfile::tempdir().unwrap();
    let mut alice = Run::start(
        "chat",
        &dir.path().join("alice"),
        [127, 86, 2, 1],
        &seed,
        &[],
    );
    let address = alice.address().await;
    let mut bob = Run::start(
        "chat",
        &dir.path().join("bob"),
        [127, 86, 3, 1],
        &seed,
        &["--friend", &address],
    );
    alice.line_with("accepted the friend request").await;
    bob.line_with("chatting with").await;

    bob.type_line("hello from Bob").await;
    assert_eq!(
        alice.line_with("hello from Bob").await,
        "friend: hello from Bob"
    );
    bob.line_with("(delivered: hello from Bob)").await;
    alice.type_line("hi Bob, Alice here").await;
    assert_eq!(
        bob.line_with("Alice here").await,
        "friend: hi Bob, Alice here"
    );

    // The end of stdin ends the chat, cleanly.
    drop(bob.stdin.take());
    assert!(bob.exit().await.success(), "{:#?}", bob.printed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_arrives_whole_and_both_sides_print_the_throughput() {
    let (_seed, seed) = bootstrap(4).await;
    let dir = tempfile::tempdir().unwrap();
    // 4 MiB that no two offsets of which repeat in a way a bug could hide in.
    let mut data = Vec::with_capacity(4 << 20);
    let mut counter = 0u64;
    while data.len() < 4 << 20 {
        data.extend_from_slice(blake3::hash(&counter.to_le_bytes()).as_bytes());
        counter += 1;
    }
    let (sent, received) = (dir.path().join("sent.bin"), dir.path().join("received.bin"));
    std::fs::write(&sent, &data).unwrap();

    let mut bob = Run::start(
        "file",
        &dir.path().join("bob"),
        [127, 86, 5, 1],
        &seed,
        &["--receive", received.to_str().unwrap()],
    );
    let address = bob.address().await;
    let mut alice = Run::start(
        "file",
        &dir.path().join("alice"),
        [127, 86, 6, 1],
        &seed,
        &["--friend", &address, "--send", sent.to_str().unwrap()],
    );
    let throughput = format!("{} bytes in ", data.len());
    assert!(alice.line_with(&throughput).await.ends_with("MB/s"));
    assert!(bob.line_with(&throughput).await.ends_with("MB/s"));
    assert!(alice.exit().await.success(), "{:#?}", alice.printed);
    assert!(bob.exit().await.success(), "{:#?}", bob.printed);
    let arrived = std::fs::read(&received).unwrap();
    assert_eq!(arrived.len(), data.len());
    assert_eq!(blake3::hash(&arrived), blake3::hash(&data));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forward_reaches_an_echo_service_behind_the_friend() {
    let (_seed, seed) = bootstrap(7).await;
    let dir = tempfile::tempdir().unwrap();
    // The service: echoes every byte back, then ends its side when the client did.
    let service = TcpListener::bind(SocketAddr::from(([127, 86, 8, 1], 0)))
        .await
        .unwrap();
    let target = service.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        while let Ok((mut connection, _)) = service.accept().await {
            tokio::spawn(async move {
                let (mut read, mut write) = connection.split();
                let _ = tokio::io::copy(&mut read, &mut write).await;
                let _ = write.shutdown().await;
            });
        }
    });

    let mut bob = Run::start(
        "forward",
        &dir.path().join("bob"),
        [127, 86, 9, 1],
        &seed,
        &["--serve", "echo", &target],
    );
    let address = bob.address().await;
    let mut alice = Run::start(
        "forward",
        &dir.path().join("alice"),
        [127, 86, 10, 1],
        &seed,
        &[
            "--friend",
            &address,
            "--forward",
            "echo",
            "--at",
            "127.86.11.1:0",
        ],
    );
    let line = alice.line_with("forwarding ").await;
    let local: SocketAddr = line.split(' ').nth(1).unwrap().parse().unwrap();

    let mut client = tokio::time::timeout(PATIENCE, TcpStream::connect(local))
        .await
        .unwrap()
        .unwrap();
    let request: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let (mut read, mut write) = client.split();
    let echoed = async {
        let mut echoed = Vec::new();
        read.read_to_end(&mut echoed).await.unwrap();
        echoed
    };
    let send = async {
        write.write_all(&request).await.unwrap();
        write.shutdown().await.unwrap();
    };
    let (echoed, ()) = tokio::time::timeout(PATIENCE, async { tokio::join!(echoed, send) })
        .await
        .expect("the echo did not come back in time");
    assert_eq!(echoed, request);
    // Both ends reported the connection.
    bob.line_with("echo: a connection closed cleanly").await;
    alice.line_with("echo: a connection closed cleanly").await;
}
