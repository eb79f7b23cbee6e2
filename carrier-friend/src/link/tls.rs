//! TLS 1.3 with raw public keys (RFC 7250): each side proves the Ed25519 key behind its
//! Carrier ID, and nothing else. No X.509, no certificate authority, no name to check.
//!
//! A [`TlsIdentity`] is made from a node's [`Keypair`]: rustls loads the key as PKCS#8 and
//! presents its SubjectPublicKeyInfo as the "certificate". Both encodings are a fixed prefix
//! followed by the raw bytes, so no ASN.1 library is needed. Only the ring provider and TLS 1.3
//! are offered.
//!
//! - A client (the side that dials) pins the one [`CarrierId`] it expects: a server presenting
//!   any other key fails the handshake.
//! - A server accepts [`Clients::Any`] valid Carrier ID (who may do what is decided after the
//!   handshake, per ALPN) or [`Clients::Only`] one. Either way the presented key must be a
//!   valid `CarrierId` ([`CarrierId::from_bytes`] refuses small-order and non-canonical keys).

use std::sync::Arc;

use carrier_dht::id::{CarrierId, Keypair};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::AlwaysResolvesClientRawPublicKeys;
use rustls::crypto::{verify_tls13_signature_with_raw_key, CryptoProvider};
use rustls::pki_types::{
    CertificateDer, PrivatePkcs8KeyDer, ServerName, SubjectPublicKeyInfoDer, UnixTime,
};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::AlwaysResolvesServerRawPublicKeys;
use rustls::sign::CertifiedKey;
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, DistinguishedName, Error, ServerConfig,
    SignatureScheme,
};
use zeroize::Zeroizing;

use super::error::TlsError;

/// The DER of an Ed25519 private key in PKCS#8 v1 (RFC 8410) up to its 32-byte seed:
/// `SEQUENCE { INTEGER 0, SEQUENCE { OID 1.3.101.112 }, OCTET STRING { OCTET STRING (32) } }`.
const ED25519_PKCS8_V1_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

/// The DER of an Ed25519 SubjectPublicKeyInfo (RFC 8410) up to its 32-byte key:
/// `SEQUENCE { SEQUENCE { OID 1.3.101.112 }, BIT STRING (0 unused bits, 32 bytes) }`.
pub const ED25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// The server name a client sends. Raw public keys carry no name, and the name travels in
/// clear, so it is the same fixed label for every dial: the pinned ID is the identity, and
/// an observer does not learn which ID was dialled.
pub const SERVER_NAME: &str = "carrier.invalid";

/// The SubjectPublicKeyInfo of a Carrier ID: what its owner presents and its peers pin.
pub fn spki_of(id: &CarrierId) -> SubjectPublicKeyInfoDer<'static> {
    let mut der = Vec::with_capacity(ED25519_SPKI_PREFIX.len() + CarrierId::LEN);
    der.extend_from_slice(&ED25519_SPKI_PREFIX);
    der.extend_from_slice(id.as_bytes());
    SubjectPublicKeyInfoDer::from(der)
}

/// The Carrier ID a presented SubjectPublicKeyInfo encodes: an Ed25519 key that is a valid
/// `CarrierId` (canonical, not of small order), or an error.
pub fn id_of_spki(der: &[u8]) -> Result<CarrierId, TlsError> {
    let key = der
        .strip_prefix(&ED25519_SPKI_PREFIX[..])
        .ok_or(TlsError::NotEd25519)?;
    CarrierId::from_slice(key).map_err(TlsError::BadKey)
}

/// The Carrier ID the peer of an established QUIC connection proved, if it presented one
/// (every connection made with this crate's configurations did).
pub fn peer_id(connection: &quinn::Connection) -> Option<CarrierId> {
    let identity = connection.peer_identity()?;
    let certificates = identity.downcast::<Vec<CertificateDer<'static>>>().ok()?;
    match certificates.as_slice() {
        [only] => id_of_spki(only.as_ref()).ok(),
        _ => None,
    }
}

/// Which clients a server configuration lets finish the handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Clients {
    /// Any client proving a valid Carrier ID (the layer above decides what it may do).
    Any,
    /// Only the client proving this Carrier ID.
    Only(CarrierId),
}

/// A node's TLS identity: its Carrier ID's key as rustls presents it, and the configurations
/// built on it. Cheap to clone.
///
/// ```
/// use carrier_friend::dht::id::Keypair;
/// use carrier_friend::tls::{Clients, TlsIdentity};
///
/// let server = TlsIdentity::new(&Keypair::generate())?;
/// let client = TlsIdentity::new(&Keypair::generate())?;
/// let _server_config = server.server_config(Clients::Any, &[b"carrier/1"])?;
/// // A dial names the ID it expects; no other key will do.
/// let _client_config = client.client_config(server.id(), b"carrier/1")?;
/// # Ok::<(), carrier_friend::TlsError>(())
/// ```
#[derive(Clone, Debug)]
pub struct TlsIdentity {
    id: CarrierId,
    certified: Arc<CertifiedKey>,
    provider: Arc<CryptoProvider>,
}

impl TlsIdentity {
    /// The identity of `keypair`, with rustls's ring provider.
    pub fn new(keypair: &Keypair) -> Result<Self, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut pkcs8 = Zeroizing::new(Vec::with_capacity(ED25519_PKCS8_V1_PREFIX.len() + 32));
        pkcs8.extend_from_slice(&ED25519_PKCS8_V1_PREFIX);
        pkcs8.extend_from_slice(keypair.seed());
        // Loaded by reference, so the one copy of the secret in DER form is ours to wipe.
        let key = rustls::crypto::ring::sign::any_eddsa_type(&PrivatePkcs8KeyDer::from(&pkcs8[..]))
            .map_err(TlsError::Rustls)?;
        let id = keypair.id();
        // With raw public keys the "certificate" sent is the SubjectPublicKeyInfo itself.
        let presented = CertificateDer::from(spki_of(&id).as_ref().to_vec());
        Ok(Self {
            id,
            certified: Arc::new(CertifiedKey::new(vec![presented], key)),
            provider,
        })
    }

    /// The Carrier ID this identity proves.
    pub fn id(&self) -> CarrierId {
        self.id
    }

    /// The crypto provider every configuration here uses (ring), named explicitly rather than
    /// taken from a process-wide default that another crate could change.
    pub fn provider(&self) -> Arc<CryptoProvider> {
        self.provider.clone()
    }

    /// A TLS 1.3 server configuration that presents this identity, requires the client to
    /// prove a Carrier ID admitted by `clients`, and offers the ALPNs `alpns`.
    pub fn server_config(
        &self,
        clients: Clients,
        alpns: &[&[u8]],
    ) -> Result<ServerConfig, TlsError> {
        let verifier = CarrierIdVerifier::new(&self.provider, clients_pin(clients));
        let mut config = ServerConfig::builder_with_provider(self.provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(TlsError::Rustls)?
            .with_client_cert_verifier(Arc::new(verifier))
            .with_cert_resolver(Arc::new(AlwaysResolvesServerRawPublicKeys::new(
                self.certified.clone(),
            )));
        config.alpn_protocols = alpns.iter().map(|alpn| alpn.to_vec()).collect();
        Ok(config)
    }

    /// A TLS 1.3 client configuration that presents this identity, accepts only a server
    /// proving `expected`, and asks for the ALPN `alpn`.
    pub fn client_config(
        &self,
        expected: CarrierId,
        alpn: &[u8],
    ) -> Result<ClientConfig, TlsError> {
        let verifier = CarrierIdVerifier::new(&self.provider, Some(expected));
        let mut config = ClientConfig::builder_with_provider(self.provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(TlsError::Rustls)?
            // "dangerous" only because the verifier is ours rather than WebPKI's.
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_client_cert_resolver(Arc::new(AlwaysResolvesClientRawPublicKeys::new(
                self.certified.clone(),
            )));
        config.alpn_protocols = vec![alpn.to_vec()];
        Ok(config)
    }
}

fn clients_pin(clients: Clients) -> Option<CarrierId> {
    match clients {
        Clients::Any => None,
        Clients::Only(id) => Some(id),
    }
}

/// Accepts a raw Ed25519 public key that is a valid Carrier ID, and when pinned only that one.
#[derive(Debug)]
struct CarrierIdVerifier {
    pinned: Option<CarrierId>,
    algorithms: rustls::crypto::WebPkiSupportedAlgorithms,
}

impl CarrierIdVerifier {
    fn new(provider: &CryptoProvider, pinned: Option<CarrierId>) -> Self {
        Self {
            pinned,
            algorithms: provider.signature_verification_algorithms,
        }
    }

    /// The presented "certificate" is the peer's SubjectPublicKeyInfo, alone. It must decode to
    /// a valid Carrier ID, equal to the pinned one if any; the handshake signature, checked
    /// next by rustls through [`Self::verify_signature`], proves the peer holds its secret key.
    fn check(
        &self,
        presented: &CertificateDer<'_>,
        rest: &[CertificateDer<'_>],
    ) -> Result<(), Error> {
        let refused =
            || Error::InvalidCertificate(CertificateError::ApplicationVerificationFailure);
        if !rest.is_empty() {
            return Err(refused());
        }
        let id = id_of_spki(presented.as_ref())
            .map_err(|_| Error::InvalidCertificate(CertificateError::BadEncoding))?;
        match self.pinned {
            Some(pinned) if pinned != id => Err(refused()),
            _ => Ok(()),
        }
    }

    fn verify_signature(
        &self,
        message: &[u8],
        presented: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        if dss.scheme != SignatureScheme::ED25519 {
            return Err(Error::PeerMisbehaved(
                rustls::PeerMisbehaved::SignedHandshakeWithUnadvertisedSigScheme,
            ));
        }
        let spki = SubjectPublicKeyInfoDer::from(presented.as_ref());
        verify_tls13_signature_with_raw_key(message, &spki, dss, &self.algorithms)
    }
}

/// Only TLS 1.3 is offered, so a TLS 1.2 signature never reaches a verifier.
fn tls12_refused() -> Error {
    Error::General("TLS 1.2 is not offered".into())
}

impl ServerCertVerifier for CarrierIdVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        self.check(end_entity, intermediates)?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        Err(tls12_refused())
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.verify_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }

    fn requires_raw_public_keys(&self) -> bool {
        true
    }
}

impl ClientCertVerifier for CarrierIdVerifier {
    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        self.check(end_entity, intermediates)?;
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        Err(tls12_refused())
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.verify_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }

    fn requires_raw_public_keys(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(der: &[u8]) -> CertificateDer<'static> {
        CertificateDer::from(der.to_vec())
    }

    #[test]
    fn spki_round_trips_through_a_carrier_id() {
        let id = Keypair::from_seed(&[3; 32]).id();
        let spki = spki_of(&id);
        assert_eq!(spki.as_ref().len(), 44);
        assert_eq!(id_of_spki(spki.as_ref()).unwrap(), id);
    }

    #[test]
    fn the_key_rustls_loads_is_the_carrier_id() {
        let keypair = Keypair::from_seed(&[9; 32]);
        let identity = TlsIdentity::new(&keypair).unwrap();
        let public = identity.certified.key.public_key().unwrap();
        assert_eq!(public.as_ref(), spki_of(&keypair.id()).as_ref());
    }

    #[test]
    fn small_order_and_foreign_keys_are_refused() {
        let provider = rustls::crypto::ring::default_provider();
        let any = CarrierIdVerifier::new(&provider, None);
        // The identity point (y = 1) has small order; y = p is not canonical.
        let mut small_order = ED25519_SPKI_PREFIX.to_vec();
        small_order.extend_from_slice(&{
            let mut y = [0u8; 32];
            y[0] = 1;
            y
        });
        assert!(any.check(&cert(&small_order), &[]).is_err());
        let mut non_canonical = ED25519_SPKI_PREFIX.to_vec();
        non_canonical.extend_from_slice(&{
            let mut y = [0xff; 32];
            y[0] = 0xed;
            y[31] = 0x7f;
            y
        });
        assert!(any.check(&cert(&non_canonical), &[]).is_err());
        assert!(any.check(&cert(&[0x30, 0x00]), &[]).is_err(), "not Ed25519");
        let valid = spki_of(&Keypair::from_seed(&[1; 32]).id());
        assert!(any.check(&cert(valid.as_ref()), &[]).is_ok());
        assert!(
            any.check(&cert(valid.as_ref()), &[cert(valid.as_ref())])
                .is_err(),
            "a raw key comes alone"
        );
    }

    #[test]
    fn a_pinned_verifier_accepts_only_its_id() {
        let provider = rustls::crypto::ring::default_provider();
        let expected = Keypair::from_seed(&[1; 32]).id();
        let other = Keypair::from_seed(&[2; 32]).id();
        let pinned = CarrierIdVerifier::new(&provider, Some(expected));
        assert!(pinned
            .check(&cert(spki_of(&expected).as_ref()), &[])
            .is_ok());
        assert!(pinned.check(&cert(spki_of(&other).as_ref()), &[]).is_err());
    }
}
