//! Sends a file to a friend over a reliable stream, with a progress bar; both sides print
//! the bytes and the throughput.
//!
//! ```text
//! cargo run --release --example file -- --data /tmp/bob --local \
//!     --bootstrap ID@127.0.0.1:33445 --receive /tmp/received
//! cargo run --release --example file -- --data /tmp/alice --local \
//!     --bootstrap ID@127.0.0.1:33445 --friend BOBS_ADDRESS --send ./big.iso
//! ```
//!
//! The two befriend as in the chat example (or find each other as friends of an earlier
//! run). The sender opens a session and one reliable stream, sends the file's size then its
//! bytes, and half-closes; the receiver writes them, then half-closes in turn to say all
//! arrived.

mod common;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use carrier::id::CarrierId;
use carrier::stream::{SessionRequests, StreamKind, StreamMode};
use carrier::Carrier;
use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The sessions this example opens and takes.
const BUNDLE: &str = "examples/file";

/// Sends a file to a friend, or receives one.
#[derive(Parser)]
struct Args {
    #[command(flatten)]
    node: common::NodeArgs,
    /// The file to send.
    #[arg(long, value_name = "FILE", required_unless_present = "receive")]
    send: Option<PathBuf>,
    /// Where to write the file received.
    #[arg(long, value_name = "OUT", conflicts_with = "send")]
    receive: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> Result<(), common::Error> {
    let args = Args::parse();
    let (node, mut events) = common::start(&args.node).await?;
    // Taken before befriending, so the friend's session cannot come before the handler.
    let mut requests = node.sessions().handle(BUNDLE)?;
    let friend = common::befriend(&node, &mut events, args.node.friend.as_ref()).await?;
    common::linked(&node, &mut events, friend).await?;

    let (bytes, took) = match (&args.send, &args.receive) {
        (Some(file), _) => send(&node, friend, file).await?,
        (None, Some(out)) => receive(&mut requests, friend, out).await?,
        (None, None) => return Err("give --send FILE or --receive OUT".into()),
    };
    let secs = took.as_secs_f64();
    println!(
        "{bytes} bytes in {secs:.2} s: {:.1} MB/s",
        bytes as f64 / secs / 1e6
    );
    node.shutdown().await;
    Ok(())
}

async fn send(
    node: &Carrier,
    friend: CarrierId,
    path: &Path,
) -> Result<(u64, Duration), common::Error> {
    let mut file = std::fs::File::open(path)?;
    let size = file.metadata()?.len();
    let session = node.sessions().request(&friend, BUNDLE).await?;
    let mut stream = session
        .add_stream(StreamKind::Application, StreamMode::Reliable)
        .await?;
    let started = Instant::now();
    let bar = progress(size)?;
    stream.write_all(&size.to_be_bytes()).await?;
    let mut buffer = vec![0; 256 * 1024];
    loop {
        // A local file's read is quick: no need for a blocking task in an example.
        let n = file.read(&mut buffer)?;
        if n == 0 {
            break;
        }
        stream.write_all(&buffer[..n]).await?;
        bar.inc(n as u64);
    }
    stream.shutdown().await?;
    // The receiver half-closes once it wrote every byte.
    stream.read_to_end(&mut Vec::new()).await?;
    let took = started.elapsed();
    bar.finish();
    session.close("sent").await?;
    Ok((size, took))
}

async fn receive(
    requests: &mut SessionRequests,
    friend: CarrierId,
    out: &Path,
) -> Result<(u64, Duration), common::Error> {
    let session = loop {
        let request = requests.recv().await.ok_or("the node stopped")?;
        if request.peer() == friend {
            break request.accept().await?;
        }
        request.refuse(1, "not expecting a file from you").await?;
    };
    let mut stream = session.accept_stream().await.ok_or("the session closed")?;
    let started = Instant::now();
    let mut size = [0; 8];
    stream.read_exact(&mut size).await?;
    let size = u64::from_be_bytes(size);
    let bar = progress(size)?;
    let mut file = std::io::BufWriter::new(std::fs::File::create(out)?);
    let mut buffer = vec![0; 256 * 1024];
    let mut received = 0;
    loop {
        let n = stream.read(&mut buffer).await?;
        if n == 0 {
            break;
        }
        file.write_all(&buffer[..n])?;
        received += n as u64;
        bar.inc(n as u64);
    }
    file.flush()?;
    if received != size {
        return Err(format!("got {received} bytes of {size}").into());
    }
    let took = started.elapsed();
    bar.finish();
    stream.shutdown().await?;
    // The sender closes the session once it read that all arrived.
    while session.next_event().await.is_some() {}
    Ok((received, took))
}

/// A progress bar of `size` bytes, with the throughput; drawn only on a terminal.
fn progress(size: u64) -> Result<ProgressBar, common::Error> {
    let style = ProgressStyle::with_template(
        "{bar:40} {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}",
    )?;
    Ok(ProgressBar::new(size).with_style(style))
}
