//! One bulk transfer over any byte stream, timed the same way for every transport.
//!
//! The TCP, TLS and QUIC baselines differ only in how they set up the two ends; the timed part
//! is this shared code, so their figures compare the transports and nothing else.

use std::future::Future;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The size of each write and of the receive buffer: large enough that per-call overhead is
/// noise next to the copy, small enough to stay in the L2 cache.
const CHUNK_BYTES: usize = 128 * 1024;

/// The worker threads of each transfer's runtime: one per core of the reference machine, so
/// the sending and receiving tasks (and quinn's endpoint drivers) can run in parallel.
const WORKER_THREADS: usize = 2;

/// Longer than any run can honestly take (1 GiB at under 10 MB/s): past it the run has hung,
/// and the bench reports that instead of waiting forever in CI.
const RUN_TIMEOUT: Duration = Duration::from_secs(120);

/// Runs `transfer` on a fresh multi-threaded tokio runtime and returns what it returns (a
/// figure's value, or the samples it is computed from), or an error after [`RUN_TIMEOUT`].
///
/// A fresh runtime per run keeps runs independent: no task or socket of one run survives into
/// the next. The DHT figures run their loopback networks on it too, for the same reason.
pub(crate) fn on_runtime<F, T>(transfer: F) -> Result<T, String>
where
    F: Future<Output = Result<T, String>>,
{
    on_runtime_within(RUN_TIMEOUT, transfer)
}

/// [`on_runtime`] with its own bound on the run, for runs that may honestly take longer.
pub(crate) fn on_runtime_within<F, T>(limit: Duration, run: F) -> Result<T, String>
where
    F: Future<Output = Result<T, String>>,
{
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(WORKER_THREADS)
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start a tokio runtime: {e}"))?;
    runtime.block_on(async {
        tokio::time::timeout(limit, run)
            .await
            .map_err(|_| format!("the run did not finish within {limit:?}"))?
    })
}

/// [`timed`] over one unidirectional QUIC stream of an established connection, opened inside
/// the timed part: on an established connection that is a local operation, and the receiver
/// learns of the stream from its first data.
pub(crate) async fn timed_quic_stream(
    total_bytes: u64,
    sending: quinn::Connection,
    receiving: quinn::Connection,
) -> Result<f64, String> {
    timed(
        total_bytes,
        async move {
            sending
                .open_uni()
                .await
                .map_err(|e| format!("cannot open a stream: {e}"))
        },
        async move {
            receiving
                .accept_uni()
                .await
                .map_err(|e| format!("cannot accept the stream: {e}"))
        },
    )
    .await
}

/// One timed QUIC transfer as the paired figures see it.
#[derive(Debug)]
pub(crate) struct QuicRun {
    /// The throughput, as [`timed_quic_stream`] gives it.
    pub(crate) mbps: f64,
    /// CPU time the process used during the transfer, all threads: on a loaded machine the
    /// throughput follows the share of the cores the bench gets, the CPU time per byte much
    /// less.
    pub(crate) cpu: Duration,
    /// What quinn's counters saw, for stderr: the sender's lost packets and congestion events
    /// (each one shrinks its window for a while) and the datagrams the receiver took.
    pub(crate) seen: String,
}

/// [`timed_quic_stream`], with the process's CPU time during it and quinn's counters after.
pub(crate) async fn counted_quic_stream(
    total_bytes: u64,
    sending: quinn::Connection,
    receiving: quinn::Connection,
) -> Result<QuicRun, String> {
    let cpu_before = super::friend::process_cpu_time();
    let mbps = timed_quic_stream(total_bytes, sending.clone(), receiving.clone()).await?;
    let cpu = super::friend::process_cpu_time().saturating_sub(cpu_before);
    let (sent, received) = (sending.stats(), receiving.stats());
    let seen = format!(
        "{} lost, {} congestion events, {} datagrams received",
        sent.path.lost_packets, sent.path.congestion_events, received.udp_rx.datagrams
    );
    Ok(QuicRun { mbps, cpu, seen })
}

/// Sends `total_bytes` from the writer `open_writer` yields to the reader `open_reader` yields,
/// and returns the throughput in MB/s (10^6 bytes per second).
///
/// The clock starts before either future is polled and stops when the reader has seen the end
/// of the stream after exactly `total_bytes`. Connection setup belongs outside: the futures
/// only open a stream on an established connection (QUIC) or hand over a ready one (TCP, TLS).
/// Each end runs as its own task, so the two ends can use both cores.
pub(crate) async fn timed<W, R, OW, OR>(
    total_bytes: u64,
    open_writer: OW,
    open_reader: OR,
) -> Result<f64, String>
where
    W: AsyncWrite + Unpin + Send + 'static,
    R: AsyncRead + Unpin + Send + 'static,
    OW: Future<Output = Result<W, String>> + Send + 'static,
    OR: Future<Output = Result<R, String>> + Send + 'static,
{
    let started = Instant::now();
    let sender = tokio::spawn(async move { send(open_writer.await?, total_bytes).await });
    let receiver = tokio::spawn(async move {
        let received = receive(open_reader.await?).await?;
        Ok::<_, String>((received, started.elapsed()))
    });
    let (received, elapsed) = receiver
        .await
        .map_err(|e| format!("the receiving task failed: {e}"))??;
    // The writer is dropped only now: closing a socket with unread bytes in it (a TLS 1.3
    // session ticket the sender never read) resets the connection and could cut the transfer.
    let writer = sender
        .await
        .map_err(|e| format!("the sending task failed: {e}"))??;
    drop(writer);
    if received != total_bytes {
        return Err(format!("received {received} bytes, sent {total_bytes}"));
    }
    Ok(megabytes_per_second(total_bytes, elapsed))
}

/// Writes `total_bytes` in chunks, then shuts the writer down (TCP FIN, TLS close_notify, QUIC
/// FIN), which is how the receiver learns the transfer is complete. Returns the writer, for the
/// caller to drop once the receiver is done.
async fn send<W: AsyncWrite + Unpin>(mut writer: W, total_bytes: u64) -> Result<W, String> {
    // Not zeros: a transport that compresses or special-cases zero pages would look faster.
    let chunk: Vec<u8> = (0..CHUNK_BYTES).map(|i| (i % 251) as u8).collect();
    let mut left = total_bytes;
    while left > 0 {
        let n = usize::try_from(left).map_or(CHUNK_BYTES, |l| l.min(CHUNK_BYTES));
        writer
            .write_all(&chunk[..n])
            .await
            .map_err(|e| format!("write failed: {e}"))?;
        left -= n as u64;
    }
    writer
        .shutdown()
        .await
        .map_err(|e| format!("shutdown failed: {e}"))?;
    Ok(writer)
}

/// Reads until the end of the stream and returns how many bytes arrived. Each byte is copied
/// into a user buffer once, as an application reading the stream would.
async fn receive<R: AsyncRead + Unpin>(mut reader: R) -> Result<u64, String> {
    let mut buffer = vec![0u8; CHUNK_BYTES];
    let mut received = 0u64;
    loop {
        match reader.read(&mut buffer).await {
            Ok(0) => return Ok(received),
            Ok(n) => received += n as u64,
            Err(e) => return Err(format!("read failed after {received} bytes: {e}")),
        }
    }
}

/// Throughput in MB/s, with MB = 10^6 bytes as in network figures (1 GiB is 1073.7 MB).
fn megabytes_per_second(bytes: u64, elapsed: Duration) -> f64 {
    bytes as f64 / elapsed.as_secs_f64().max(f64::MIN_POSITIVE) / 1e6
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn megabytes_are_decimal() {
        assert_eq!(
            megabytes_per_second(2_000_000, Duration::from_millis(500)),
            4.0
        );
    }

    #[test]
    fn in_memory_transfer_counts_every_byte() {
        // An odd size, so the last chunk is partial.
        let total = 3 * CHUNK_BYTES as u64 + 17;
        let mbps = on_runtime(async move {
            let (writer, reader) = tokio::io::duplex(64 * 1024);
            timed(total, async { Ok(writer) }, async { Ok(reader) }).await
        })
        .unwrap();
        assert!(mbps > 0.0);
    }
}
