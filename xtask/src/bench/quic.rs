//! `quinn.raw_MBps`: one QUIC stream (quinn 0.11, default transport settings), each endpoint
//! on its own UDP socket on 127.0.0.1 (with the node socket's 4 MiB receive buffer), TLS with
//! raw Ed25519 public keys.
//!
//! The figure Carrier's streams are held to: they run quinn over the node's shared socket and
//! must keep at least 95% of this (docs/BENCHMARKS.md, shared TARGETS).

use super::{rpk, transfer, Scale};
use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use quinn::{ClientConfig, Endpoint, EndpointConfig, ServerConfig};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

/// The ALPN both ends agree on: QUIC requires one.
const ALPN: &[u8] = b"carrier-bench/1";

/// The server name the client sends; the pinned key is the identity, this is only a label.
const SERVER_NAME: &str = "bench.carrier.invalid";

/// The receive buffer of each baseline socket: the node socket's (4 MiB), so that the ratio
/// of `quic.shared_MBps` to this compares quinn with quinn. With the kernel's default
/// (208 KiB) the baseline lost datagrams in the kernel under bursts, and its congestion
/// control backed off by an amount that depended on scheduling: the spread of the ratio
/// (0.80-1.27) came mostly from there.
const RECEIVE_BUFFER_BYTES: usize = 4 << 20;

/// A UDP socket on 127.0.0.1 with the node socket's receive buffer.
fn loopback_socket() -> Result<std::net::UdpSocket, String> {
    let socket = socket2::Socket::new(
        socket2::Domain::IPV4,
        socket2::Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )
    .map_err(|e| format!("cannot open a UDP socket: {e}"))?;
    // Best effort, as the node socket does it.
    let _ = socket.set_recv_buffer_size(RECEIVE_BUFFER_BYTES);
    socket
        .bind(&SocketAddr::from((Ipv4Addr::LOCALHOST, 0)).into())
        .map_err(|e| format!("cannot bind a UDP socket: {e}"))?;
    Ok(socket.into())
}

/// Sends `scale.transfer_bytes` over one unidirectional stream of a fresh QUIC connection;
/// returns MB/s.
pub(crate) fn measure(scale: &Scale) -> Result<f64, String> {
    measure_counted(scale).map(|run| run.mbps)
}

/// [`measure`], with the CPU time and quinn's counters ([`transfer::counted_quic_stream`]).
pub(crate) fn measure_counted(scale: &Scale) -> Result<transfer::QuicRun, String> {
    let total_bytes = scale.transfer_bytes;
    transfer::on_runtime(async move {
        let pair = Pair::connect().await?;
        let run = transfer::counted_quic_stream(
            total_bytes,
            pair.client_conn.clone(),
            pair.server_conn.clone(),
        )
        .await;
        pair.close().await;
        run
    })
}

/// Two quinn endpoints on 127.0.0.1, each on its own UDP socket, and the connection between
/// them, handshake done: the raw-quinn baselines' setup, outside every clock.
pub(crate) struct Pair {
    client: Endpoint,
    server: Endpoint,
    /// The dialling end of the connection.
    pub(crate) client_conn: quinn::Connection,
    /// The accepting end.
    pub(crate) server_conn: quinn::Connection,
}

impl Pair {
    /// Two fresh identities, two endpoints, one connection (quinn's default transport
    /// settings, TLS with raw Ed25519 public keys).
    pub(crate) async fn connect() -> Result<Self, String> {
        let server_id = rpk::generate()?;
        let client_id = rpk::generate()?;
        let server_tls = rpk::server_config(&server_id, client_id.id(), ALPN)?;
        let client_tls = rpk::client_config(&client_id, server_id.id(), ALPN)?;
        let server_crypto = QuicServerConfig::try_from(Arc::new(server_tls))
            .map_err(|e| format!("TLS configuration unfit for QUIC: {e}"))?;
        let client_crypto = QuicClientConfig::try_from(Arc::new(client_tls))
            .map_err(|e| format!("TLS configuration unfit for QUIC: {e}"))?;

        let runtime = Arc::new(quinn::TokioRuntime);
        let server = Endpoint::new(
            EndpointConfig::default(),
            Some(ServerConfig::with_crypto(Arc::new(server_crypto))),
            loopback_socket()?,
            runtime.clone(),
        )
        .map_err(|e| format!("cannot open the server endpoint: {e}"))?;
        let client = Endpoint::new(EndpointConfig::default(), None, loopback_socket()?, runtime)
            .map_err(|e| format!("cannot open the client endpoint: {e}"))?;
        let server_address = server
            .local_addr()
            .map_err(|e| format!("cannot read the server's address: {e}"))?;

        let connecting = client
            .connect_with(
                ClientConfig::new(Arc::new(client_crypto)),
                server_address,
                SERVER_NAME,
            )
            .map_err(|e| format!("cannot connect: {e}"))?;
        // The two handshakes wait on each other, so the server's runs as its own task.
        let accepting = server.clone();
        let server_conn = tokio::spawn(async move {
            match accepting.accept().await {
                Some(incoming) => incoming.await.map_err(|e| e.to_string()),
                None => Err("the server endpoint closed".to_string()),
            }
        });
        let client_conn = connecting
            .await
            .map_err(|e| format!("QUIC client handshake failed: {e}"))?;
        let server_conn = server_conn
            .await
            .map_err(|e| format!("the QUIC server task failed: {e}"))?
            .map_err(|e| format!("QUIC server handshake failed: {e}"))?;
        Ok(Self {
            client,
            server,
            client_conn,
            server_conn,
        })
    }

    /// Closes the connection and both endpoints, waiting until the client's is idle.
    pub(crate) async fn close(self) {
        self.client_conn.close(0u32.into(), b"done");
        self.client.wait_idle().await;
        self.server.close(0u32.into(), b"done");
    }
}
