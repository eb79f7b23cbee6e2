//! `tls_tcp.raw_MBps`: the TCP transfer through TLS 1.3 (rustls with ring, tokio-rustls),
//! both sides authenticated by raw Ed25519 public keys.
//!
//! Next to `tcp.raw_MBps` it prices the record layer (encryption and framing in user space);
//! next to `quinn.raw_MBps` it separates the cost of TLS from the cost of QUIC's own machinery.

use super::{rpk, tcp, transfer, Scale};
use carrier_friend::dht::id::CarrierId;
use carrier_friend::tls::TlsIdentity;
use rustls::pki_types::ServerName;
use std::sync::Arc;
use tokio::net::TcpStream;
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// The client end of a TLS connection.
type ClientTls = tokio_rustls::client::TlsStream<TcpStream>;

/// The server end of a TLS connection.
type ServerTls = tokio_rustls::server::TlsStream<TcpStream>;

/// The ALPN both ends agree on. Nothing checks it; it keeps the handshake like a real one.
const ALPN: &[u8] = b"carrier-bench/1";

/// Sends `scale.transfer_bytes` over a fresh TLS connection on 127.0.0.1; returns MB/s.
pub(crate) fn measure(scale: &Scale) -> Result<f64, String> {
    let total_bytes = scale.transfer_bytes;
    transfer::on_runtime(async move {
        let server_id = rpk::generate()?;
        let client_id = rpk::generate()?;
        let (client, server) =
            connect((&client_id, server_id.id()), (&server_id, client_id.id())).await?;
        transfer::timed(total_bytes, async { Ok(client) }, async { Ok(server) }).await
    })
}

/// One end's identity and the key it pins for the other end.
type Side<'a> = (&'a TlsIdentity, CarrierId);

/// A TLS connection over fresh loopback TCP, both handshakes done: (client end, server end).
async fn connect(client: Side<'_>, server: Side<'_>) -> Result<(ClientTls, ServerTls), String> {
    let acceptor = TlsAcceptor::from(Arc::new(rpk::server_config(server.0, server.1, ALPN)?));
    let connector = TlsConnector::from(Arc::new(rpk::client_config(client.0, client.1, ALPN)?));
    // Raw public keys carry no name; the pinned key is the identity, this is only a label.
    let server_name = ServerName::try_from("bench.carrier.invalid")
        .map_err(|e| format!("bad server name: {e}"))?;

    let (client_tcp, server_tcp) = tcp::connect().await?;
    // The two handshakes wait on each other, so the server's runs as its own task.
    let server = tokio::spawn(acceptor.accept(server_tcp));
    let client = connector
        .connect(server_name, client_tcp)
        .await
        .map_err(|e| format!("TLS client handshake failed: {e}"));
    let server = server
        .await
        .map_err(|e| format!("the TLS server task failed: {e}"))?
        .map_err(|e| format!("TLS server handshake failed: {e}"));
    Ok((client?, server?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use carrier_friend::tls::spki_of;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn on_runtime<F: std::future::Future<Output = ()>>(test: F) {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(test);
    }

    #[test]
    fn each_side_sees_the_other_s_pinned_raw_key() {
        on_runtime(async {
            let server_id = rpk::generate().unwrap();
            let client_id = rpk::generate().unwrap();
            let (mut client, mut server) =
                connect((&client_id, server_id.id()), (&server_id, client_id.id()))
                    .await
                    .unwrap();
            let (_, client_conn) = client.get_ref();
            let (_, server_conn) = server.get_ref();
            let presented = |certs: Option<&[rustls::pki_types::CertificateDer<'_>]>| {
                certs.unwrap()[0].as_ref().to_vec()
            };
            assert_eq!(
                presented(client_conn.peer_certificates()),
                spki_of(&server_id.id()).as_ref()
            );
            assert_eq!(
                presented(server_conn.peer_certificates()),
                spki_of(&client_id.id()).as_ref()
            );
            assert_eq!(client_conn.alpn_protocol(), Some(ALPN));
            assert_eq!(
                client_conn.negotiated_cipher_suite().map(|s| s.suite()),
                Some(rustls::CipherSuite::TLS13_AES_256_GCM_SHA384),
                "docs/BENCHMARKS.md names the suite the baselines use"
            );
            client.write_all(b"hello").await.unwrap();
            client.shutdown().await.unwrap();
            let mut got = Vec::new();
            server.read_to_end(&mut got).await.unwrap();
            assert_eq!(got, b"hello");
        });
    }

    #[test]
    fn a_server_with_another_key_is_refused() {
        on_runtime(async {
            let server_id = rpk::generate().unwrap();
            let client_id = rpk::generate().unwrap();
            let stranger = rpk::generate().unwrap();
            let error = connect((&client_id, stranger.id()), (&server_id, client_id.id()))
                .await
                .unwrap_err();
            assert!(error.contains("client handshake failed"), "{error}");
        });
    }

    #[test]
    fn a_client_with_another_key_is_refused() {
        on_runtime(async {
            let server_id = rpk::generate().unwrap();
            let client_id = rpk::generate().unwrap();
            let stranger = rpk::generate().unwrap();
            let error = connect((&client_id, server_id.id()), (&server_id, stranger.id()))
                .await
                .unwrap_err();
            assert!(error.contains("server handshake failed"), "{error}");
        });
    }
}
