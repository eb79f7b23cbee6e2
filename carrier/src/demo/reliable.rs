//! 64 MiB on a reliable stream: Alice sends the pattern behind a progress bar and
//! half-closes; Bob reads to the end and checks every byte.

use std::time::Instant;

use carrier::stream::{Stream, StreamMode};
use indicatif::{ProgressBar, ProgressStyle};

use super::pattern;
use super::session::Pair;
use super::steps::{step, Error};
use super::task::Task;

/// What Alice sends: big enough for a throughput worth reading, small enough for seconds.
const TOTAL: u64 = 64 * 1024 * 1024;

/// What she hands the stream at a time.
const CHUNK: usize = 256 * 1024;

/// Alice adds a reliable stream and sends [`TOTAL`] bytes; Bob checks them as they come.
pub(super) async fn transfer(started: Instant, session: &Pair) -> Result<(), Error> {
    let (mut sending, receiving) = session.stream(StreamMode::Reliable).await?;
    // Bob checks on a task of his own, so the checking runs beside the sending.
    let checking = Task::spawn(read_all(receiving));
    let began = Instant::now();
    let bar = progress_bar()?;
    let sent = send_all(&mut sending, &bar).await;
    bar.finish_and_clear();
    sent?;
    // The half-close: Bob reads the end of the stream; Alice could still read his answer.
    sending.finish()?;
    let arrived = checking.join().await?;
    let seconds = began.elapsed().as_secs_f64();
    step(
        started,
        &format!(
            "Alice adds a reliable stream (QUIC, ordered, encrypted) and sends {} MiB, then \
             half-closes it; Bob reads to the end and checks every byte:",
            TOTAL / (1024 * 1024)
        ),
    );
    println!(
        "             {} MiB arrived intact in {seconds:.2} s ({:.0} MB/s)",
        arrived / (1024 * 1024),
        arrived as f64 / 1e6 / seconds
    );
    Ok(())
}

/// The bar on stderr while Alice sends (hidden when stderr is not a terminal), narrow
/// enough for an 80-column terminal.
fn progress_bar() -> Result<ProgressBar, Error> {
    let style = ProgressStyle::with_template(
        "             {bar:24} {bytes}/{total_bytes} at {bytes_per_sec}",
    )?;
    Ok(ProgressBar::new(TOTAL).with_style(style))
}

/// Sends the pattern's first [`TOTAL`] bytes, a chunk at a time.
async fn send_all(stream: &mut Stream, bar: &ProgressBar) -> Result<(), Error> {
    let mut chunk = vec![0; CHUNK];
    let mut offset = 0;
    while offset < TOTAL {
        let len = CHUNK.min(usize::try_from(TOTAL - offset)?);
        let chunk = &mut chunk[..len];
        pattern::fill(offset, chunk);
        stream.send(chunk).await?;
        offset += len as u64;
        bar.set_position(offset);
    }
    Ok(())
}

/// Reads the stream to its end, checking each byte against the pattern; how many came.
async fn read_all(mut stream: Stream) -> Result<u64, Error> {
    let mut offset = 0;
    while let Some(chunk) = stream.recv().await? {
        if let Some(at) = pattern::first_mismatch(offset, &chunk) {
            return Err(format!("byte {at} is not the one Alice sent").into());
        }
        offset += chunk.len() as u64;
        if offset > TOTAL {
            return Err(format!("Bob got {offset} bytes, more than Alice sent").into());
        }
    }
    if offset != TOTAL {
        return Err(format!("the stream ended after {offset} of {TOTAL} bytes").into());
    }
    Ok(offset)
}
