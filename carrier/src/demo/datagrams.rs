//! A datagram stream in the same session: unordered and lossy, each datagram whole or not at
//! all. Bob counts what arrives; only none at all is a failure.

use std::time::{Duration, Instant};

use carrier::stream::{Stream, StreamMode, MAX_DATAGRAM_BYTES};

use super::pattern;
use super::session::Pair;
use super::steps::{ms, step, Error};
use super::task::Task;

/// How many datagrams Alice sends, and how big each is.
const COUNT: u32 = 200;
const SIZE: usize = 1000;
const _: () = assert!(
    SIZE <= MAX_DATAGRAM_BYTES,
    "a datagram the stream would refuse"
);

/// How long Bob waits for another datagram before he counts.
const QUIET: Duration = Duration::from_millis(500);

/// Alice adds a datagram stream and sends [`COUNT`] datagrams; Bob counts those that arrive.
pub(super) async fn burst(started: Instant, session: &Pair) -> Result<(), Error> {
    let (mut sending, receiving) = session.stream(StreamMode::Datagram).await?;
    let counting = Task::spawn(count(receiving));
    let began = Instant::now();
    let mut datagram = vec![0; SIZE];
    for index in 0..COUNT {
        fill(index, &mut datagram);
        sending.send(&datagram).await?;
    }
    let sent = ms(began);
    let arrived = counting.join().await?;
    sending.close();
    step(
        started,
        &format!(
            "Alice adds a datagram stream to the session (unordered, lossy, at most \
             {MAX_DATAGRAM_BYTES} bytes each) and sends {COUNT} datagrams of {SIZE} bytes in \
             {sent:.1} ms:"
        ),
    );
    println!("             {arrived} of {COUNT} datagrams arrived, each one whole");
    if arrived == 0 {
        return Err(format!("none of the {COUNT} datagrams arrived").into());
    }
    Ok(())
}

/// Datagram `index`: its number, then the pattern at its place.
fn fill(index: u32, datagram: &mut [u8]) {
    let (number, rest) = datagram.split_at_mut(4);
    number.copy_from_slice(&index.to_be_bytes());
    pattern::fill(u64::from(index) * SIZE as u64, rest);
}

/// Counts the distinct, intact datagrams that arrive until all did or none came for
/// [`QUIET`]; a damaged one is an error (datagrams are lost, never corrupted).
async fn count(mut stream: Stream) -> Result<u32, Error> {
    let mut seen = vec![false; COUNT as usize];
    let mut arrived = 0;
    while arrived < COUNT {
        let datagram = match tokio::time::timeout(QUIET, stream.recv()).await {
            Ok(received) => match received? {
                Some(datagram) => datagram,
                None => break,
            },
            Err(_) => break,
        };
        let (number, rest) = datagram
            .split_first_chunk::<4>()
            .ok_or("a datagram too short for its number")?;
        let index = u32::from_be_bytes(*number);
        let fresh = seen
            .get_mut(index as usize)
            .ok_or_else(|| format!("a datagram numbered {index}"))?;
        if datagram.len() != SIZE
            || pattern::first_mismatch(u64::from(index) * SIZE as u64, rest).is_some()
        {
            return Err(format!("datagram {index} arrived damaged").into());
        }
        if !std::mem::replace(fresh, true) {
            arrived += 1;
        }
    }
    Ok(arrived)
}
