//! The raw-quinn baselines of the message figures: what 1 KiB frames cost on one open quinn
//! stream, with nothing on disk and no protocol of Carrier's on top.
//!
//! - `quinn.frames_per_s`: a burst of `scale.msg_burst` frames of 1 KiB, each its own
//!   `write_all`, over one unidirectional stream; the receiver reads them one `read_exact` of
//!   1 KiB at a time. From the first write to the receiver holding the last frame. The
//!   baseline of `msg.per_s`.
//! - `quinn.rtt_us_p50`, `quinn.rtt_us_p99` (one joint measurement, `quinn.rtt`):
//!   `scale.round_trips` ping-pongs of 1 KiB, one at a time, on one open bidirectional stream:
//!   the client writes a frame, the server reads it whole and writes it back, the client reads
//!   it whole. Each round trip is timed alone. The baselines of `msg.rtt_us_p50` and
//!   `msg.rtt_us_p99`.
//!
//! Both run on [`Pair`]: two endpoints on their own loopback sockets in this process,
//! quinn's default transport settings, the connection set up before the clock starts.

use super::latency::percentile_us;
use super::quic::Pair;
use super::{transfer, Joint, Runs, Scale};
use std::time::{Duration, Instant};

/// The size of each frame: the message size of the message figures.
pub(crate) const FRAME_BYTES: usize = 1024;

/// The joint measurement behind `quinn.rtt_us_p50` and `quinn.rtt_us_p99`.
pub(crate) const RTT: Joint = Joint {
    name: "quinn.rtt",
    runs: Runs::Timed,
    measure: measure_rtt,
};

/// A frame's bytes: not zeros, so nothing on the path can special-case them.
fn frame() -> Vec<u8> {
    (0..FRAME_BYTES).map(|i| (i % 251) as u8).collect()
}

/// `quinn.frames_per_s`: one run; returns frames per second.
pub(crate) fn measure_frames(scale: &Scale) -> Result<f64, String> {
    let count = scale.msg_burst;
    if count == 0 {
        return Err("no frames to send".into());
    }
    transfer::on_runtime(async move {
        let pair = Pair::connect().await?;
        let (sending, receiving) = (pair.client_conn.clone(), pair.server_conn.clone());
        let started = Instant::now();
        let sender = tokio::spawn(async move {
            let mut stream = sending
                .open_uni()
                .await
                .map_err(|e| format!("cannot open a stream: {e}"))?;
            let frame = frame();
            for _ in 0..count {
                stream
                    .write_all(&frame)
                    .await
                    .map_err(|e| format!("write failed: {e}"))?;
            }
            stream
                .finish()
                .map_err(|e| format!("cannot finish the stream: {e}"))?;
            // Kept until the receiver is done, so the stream is not reset under it.
            Ok::<_, String>(stream)
        });
        let receiver = tokio::spawn(async move {
            let mut stream = receiving
                .accept_uni()
                .await
                .map_err(|e| format!("cannot accept the stream: {e}"))?;
            let mut buffer = vec![0u8; FRAME_BYTES];
            for i in 0..count {
                stream
                    .read_exact(&mut buffer)
                    .await
                    .map_err(|e| format!("frame {i} of {count}: {e}"))?;
            }
            Ok::<_, String>(started.elapsed())
        });
        let elapsed = receiver
            .await
            .map_err(|e| format!("the receiving task failed: {e}"))?;
        let stream = sender
            .await
            .map_err(|e| format!("the sending task failed: {e}"))?;
        let outcome = elapsed.and_then(|elapsed| stream.map(|_| per_second(count, elapsed)));
        pair.close().await;
        outcome
    })
}

/// `quinn.rtt`: one run; returns the p50 and p99 of the round trips in µs.
fn measure_rtt(scale: &Scale, _run: usize) -> Result<Vec<(&'static str, f64)>, String> {
    let count = scale.round_trips;
    if count == 0 {
        return Err("no round trips to time".into());
    }
    let samples = transfer::on_runtime(async move {
        let pair = Pair::connect().await?;
        let accepting = pair.server_conn.clone();
        // The server echoes every frame until the client finishes its side.
        let echo = tokio::spawn(async move {
            let (mut send, mut recv) = accepting
                .accept_bi()
                .await
                .map_err(|e| format!("cannot accept the stream: {e}"))?;
            let mut buffer = vec![0u8; FRAME_BYTES];
            loop {
                match recv.read_exact(&mut buffer).await {
                    Ok(()) => send
                        .write_all(&buffer)
                        .await
                        .map_err(|e| format!("the echo's write failed: {e}"))?,
                    Err(quinn::ReadExactError::FinishedEarly(0)) => return Ok(()),
                    Err(e) => return Err(format!("the echo's read failed: {e}")),
                }
            }
        });
        let (mut send, mut recv) = pair
            .client_conn
            .open_bi()
            .await
            .map_err(|e| format!("cannot open a stream: {e}"))?;
        let frame = frame();
        let mut echoed = vec![0u8; FRAME_BYTES];
        // The first round trip also opens the stream at the server: not timed.
        ping(&mut send, &mut recv, &frame, &mut echoed).await?;
        let mut samples = Vec::with_capacity(count);
        for _ in 0..count {
            samples.push(ping(&mut send, &mut recv, &frame, &mut echoed).await?);
        }
        send.finish()
            .map_err(|e| format!("cannot finish the stream: {e}"))?;
        echo.await
            .map_err(|e| format!("the echo task failed: {e}"))??;
        pair.close().await;
        Ok::<_, String>(samples)
    });
    let samples = samples?;
    Ok(vec![
        ("quinn.rtt_us_p50", percentile_us(&samples, 0.50)?),
        ("quinn.rtt_us_p99", percentile_us(&samples, 0.99)?),
    ])
}

/// One timed round trip: `frame` out, the echo read back whole into `echoed`.
async fn ping(
    send: &mut quinn::SendStream,
    recv: &mut quinn::RecvStream,
    frame: &[u8],
    echoed: &mut [u8],
) -> Result<Duration, String> {
    let started = Instant::now();
    send.write_all(frame)
        .await
        .map_err(|e| format!("write failed: {e}"))?;
    recv.read_exact(echoed)
        .await
        .map_err(|e| format!("read failed: {e}"))?;
    Ok(started.elapsed())
}

/// `count` items in `elapsed`, per second.
pub(crate) fn per_second(count: usize, elapsed: Duration) -> f64 {
    count as f64 / elapsed.as_secs_f64().max(f64::MIN_POSITIVE)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both baselines end to end on small sizes: a setup bug fails here, in `cargo test`.
    #[test]
    fn frames_and_round_trips_are_measured() {
        let scale = Scale {
            msg_burst: 2_000,
            round_trips: 50,
            ..crate::bench::Mode::Quick.scale()
        };
        let per_s = measure_frames(&scale).unwrap();
        assert!(per_s > 0.0, "{per_s}");
        let rtt = measure_rtt(&scale, 0).unwrap();
        let names: Vec<_> = rtt.iter().map(|(name, _)| *name).collect();
        assert_eq!(names, ["quinn.rtt_us_p50", "quinn.rtt_us_p99"]);
        assert!(rtt[0].1 > 0.0 && rtt[0].1 <= rtt[1].1, "{rtt:?}");
    }

    #[test]
    fn rates_are_per_second() {
        assert_eq!(per_second(500, Duration::from_millis(250)), 2000.0);
    }
}
