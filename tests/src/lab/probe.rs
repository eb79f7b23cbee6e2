//! Plain UDP probes for lab tests: what address a reflector sees, and what arrives.
//!
//! These run inside a host's namespace (on its runtime, through `Device::spawn`), on a
//! socket bound there. Reflectors are patchbay's: started with `Device::spawn_reflector`,
//! they answer each datagram with `OBSERVED ip:port`, the address it came from.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::UdpSocket;

/// The port lab tests run reflectors on (STUN's).
pub const REFLECTOR_PORT: u16 = 3478;

/// How long one probe waits for the reflector's answer.
const PROBE_TIMEOUT: Duration = Duration::from_millis(500);

/// Probes sent before giving up: the lab loses nothing unless a test says so, but a link
/// that has just come up may drop the first datagrams, and a reflector task may not be
/// scheduled yet when the first probe lands.
const PROBE_ATTEMPTS: usize = 3;

/// The address `reflector` sees `socket`'s datagrams come from: behind a NAT, the public
/// mapping the NAT made for this socket towards this reflector.
pub async fn observed_addr(socket: &UdpSocket, reflector: SocketAddr) -> io::Result<SocketAddr> {
    let mut buf = [0u8; 256];
    for _ in 0..PROBE_ATTEMPTS {
        socket.send_to(b"probe", reflector).await?;
        let deadline = tokio::time::Instant::now() + PROBE_TIMEOUT;
        // Late answers to an earlier probe (another reflector's, after a retry) may still
        // arrive: they are skipped, not taken for this reflector's answer.
        while let Ok(received) = tokio::time::timeout_at(deadline, socket.recv_from(&mut buf)).await
        {
            let (len, from) = received?;
            if from != reflector {
                continue;
            }
            let text = String::from_utf8_lossy(&buf[..len]);
            return text
                .strip_prefix("OBSERVED ")
                .and_then(|addr| addr.trim().parse().ok())
                .ok_or_else(|| io::Error::other(format!("unexpected reflector answer {text:?}")));
        }
    }
    Err(io::Error::new(
        io::ErrorKind::TimedOut,
        format!("{reflector} did not answer {PROBE_ATTEMPTS} probes"),
    ))
}

/// The next datagram `socket` receives within `within`, with its sender; `None` if none.
pub async fn next_datagram(
    socket: &UdpSocket,
    within: Duration,
) -> io::Result<Option<(Vec<u8>, SocketAddr)>> {
    let mut buf = vec![0u8; 2048];
    match tokio::time::timeout(within, socket.recv_from(&mut buf)).await {
        Ok(received) => {
            let (len, from) = received?;
            buf.truncate(len);
            Ok(Some((buf, from)))
        }
        Err(_) => Ok(None),
    }
}

/// Sends `payload` to `target` three times, 100 ms apart, from a fresh socket:
/// links that have just come up may drop a first datagram.
pub async fn send_a_few(target: SocketAddr, payload: &[u8]) -> io::Result<()> {
    let socket = UdpSocket::bind("0.0.0.0:0").await?;
    for _ in 0..PROBE_ATTEMPTS {
        socket.send_to(payload, target).await?;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}
