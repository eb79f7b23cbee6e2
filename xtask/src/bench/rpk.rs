//! The bench's TLS identities: carrier-friend's raw-public-key configurations (RFC 7250), so
//! the TLS and QUIC baselines pay exactly the handshake and record costs of Carrier's links.
//!
//! Each end gets a fresh Ed25519 Carrier ID per run and pins the other's: the server admits only
//! the client it expects ([`Clients::Only`]), the client only the server it dials.

use carrier_friend::dht::id::{CarrierId, Keypair};
use carrier_friend::tls::{Clients, TlsIdentity};
use rustls::{ClientConfig, ServerConfig};

/// A fresh identity: a new Carrier ID and its TLS key.
pub(crate) fn generate() -> Result<TlsIdentity, String> {
    TlsIdentity::new(&Keypair::generate()).map_err(|e| format!("cannot load the Ed25519 key: {e}"))
}

/// A TLS 1.3 server that presents `own` and requires the client to prove `peer`.
pub(crate) fn server_config(
    own: &TlsIdentity,
    peer: CarrierId,
    alpn: &[u8],
) -> Result<ServerConfig, String> {
    own.server_config(Clients::Only(peer), &[alpn])
        .map_err(|e| format!("cannot build the TLS server configuration: {e}"))
}

/// A TLS 1.3 client that presents `own` and requires the server to prove `peer`.
pub(crate) fn client_config(
    own: &TlsIdentity,
    peer: CarrierId,
    alpn: &[u8],
) -> Result<ClientConfig, String> {
    own.client_config(peer, alpn)
        .map_err(|e| format!("cannot build the TLS client configuration: {e}"))
}
