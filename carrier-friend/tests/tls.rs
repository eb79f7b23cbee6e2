//! The TLS identity on its own: raw Ed25519 public keys pinned to Carrier IDs, both ways, with
//! handshakes run in memory through rustls.
#![allow(clippy::unwrap_used)] // Helpers outside #[test] functions unwrap too.

use std::sync::Arc;

use carrier_friend::dht::id::{CarrierId, Keypair};
use carrier_friend::tls::{id_of_spki, Clients, TlsIdentity, SERVER_NAME};
use rustls::pki_types::ServerName;
use rustls::{ClientConnection, ServerConnection};

const ALPN: &[u8] = b"carrier/1";

/// Runs a handshake between `client` (expecting `expected`) and `server` (admitting
/// `clients`); returns the ID each side saw, or the first error.
fn handshake(
    client: &TlsIdentity,
    expected: CarrierId,
    server: &TlsIdentity,
    clients: Clients,
) -> Result<(CarrierId, CarrierId), rustls::Error> {
    let client_config = Arc::new(client.client_config(expected, ALPN).unwrap());
    let server_config = Arc::new(server.server_config(clients, &[ALPN]).unwrap());
    let name = ServerName::try_from(SERVER_NAME).unwrap();
    let mut c = ClientConnection::new(client_config, name)?;
    let mut s = ServerConnection::new(server_config)?;
    for _ in 0..10 {
        let mut wire = Vec::new();
        while c.wants_write() {
            c.write_tls(&mut wire).unwrap();
        }
        let mut read = &wire[..];
        while !read.is_empty() {
            s.read_tls(&mut read).unwrap();
        }
        s.process_new_packets()?;
        let mut wire = Vec::new();
        while s.wants_write() {
            s.write_tls(&mut wire).unwrap();
        }
        let mut read = &wire[..];
        while !read.is_empty() {
            c.read_tls(&mut read).unwrap();
        }
        c.process_new_packets()?;
        if !c.is_handshaking() && !s.is_handshaking() {
            break;
        }
    }
    assert!(
        !c.is_handshaking() && !s.is_handshaking(),
        "handshake stalled"
    );
    assert_eq!(c.protocol_version(), Some(rustls::ProtocolVersion::TLSv1_3));
    assert_eq!(c.alpn_protocol(), Some(ALPN));
    let seen = |certs: Option<&[rustls::pki_types::CertificateDer<'_>]>| {
        let certs = certs.unwrap();
        assert_eq!(certs.len(), 1, "a raw public key, no chain");
        id_of_spki(certs[0].as_ref()).unwrap()
    };
    Ok((seen(c.peer_certificates()), seen(s.peer_certificates())))
}

fn identity() -> (Keypair, TlsIdentity) {
    let keypair = Keypair::generate();
    let identity = TlsIdentity::new(&keypair).unwrap();
    (keypair, identity)
}

#[test]
fn each_side_proves_its_carrier_id() {
    let (client_key, client) = identity();
    let (server_key, server) = identity();
    let (server_seen, client_seen) =
        handshake(&client, server_key.id(), &server, Clients::Any).unwrap();
    assert_eq!(server_seen, server_key.id());
    assert_eq!(client_seen, client_key.id());
    handshake(&client, server.id(), &server, Clients::Only(client.id())).unwrap();
}

#[test]
fn a_server_presenting_another_key_is_refused() {
    let (_, client) = identity();
    let (_, server) = identity();
    let (_, expected) = identity();
    let error = handshake(&client, expected.id(), &server, Clients::Any).unwrap_err();
    assert!(
        matches!(error, rustls::Error::InvalidCertificate(_)),
        "{error:?}"
    );
}

#[test]
fn a_client_presenting_another_key_is_refused() {
    let (_, client) = identity();
    let (_, server) = identity();
    let (_, expected_client) = identity();
    let error = handshake(
        &client,
        server.id(),
        &server,
        Clients::Only(expected_client.id()),
    )
    .unwrap_err();
    assert!(
        matches!(error, rustls::Error::InvalidCertificate(_)),
        "{error:?}"
    );
}
