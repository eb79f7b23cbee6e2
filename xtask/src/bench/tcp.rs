//! `tcp.raw_MBps`: one loopback TCP connection, both ends in this process.
//!
//! The floor under every other transfer figure: what the kernel's loopback path moves with no
//! encryption and no user-space transport.

use super::transfer;
use super::Scale;
use std::net::Ipv4Addr;
use tokio::net::{TcpListener, TcpStream};

/// Sends `scale.transfer_bytes` over a fresh TCP connection on 127.0.0.1; returns MB/s.
pub(crate) fn measure(scale: &Scale) -> Result<f64, String> {
    let total_bytes = scale.transfer_bytes;
    transfer::on_runtime(async move {
        let (client, server) = connect().await?;
        transfer::timed(total_bytes, async { Ok(client) }, async { Ok(server) }).await
    })
}

/// Both ends of a fresh loopback TCP connection: (the connecting end, the accepted end).
pub(crate) async fn connect() -> Result<(TcpStream, TcpStream), String> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .map_err(|e| format!("cannot listen on 127.0.0.1: {e}"))?;
    let address = listener
        .local_addr()
        .map_err(|e| format!("cannot read the listener's address: {e}"))?;
    // Connecting completes once the kernel has queued the connection, so accept after it.
    let client = TcpStream::connect(address)
        .await
        .map_err(|e| format!("cannot connect to {address}: {e}"))?;
    let (server, _) = listener
        .accept()
        .await
        .map_err(|e| format!("cannot accept on {address}: {e}"))?;
    Ok((client, server))
}
