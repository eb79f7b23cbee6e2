//! TLS 1.3 configurations that authenticate both sides by raw Ed25519 public keys (RFC 7250).
//!
//! This is how Carrier's QUIC links will authenticate (each side proves the key behind its
//! Carrier ID, no certificate authority), so the TLS and QUIC baselines pay the same handshake
//! and record costs as the layers measured against them later. Each side pins the one key it
//! expects: there is no chain to build and no name to check.

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::AlwaysResolvesClientRawPublicKeys;
use rustls::crypto::{verify_tls13_signature_with_raw_key, CryptoProvider};
use rustls::pki_types::{
    CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, SubjectPublicKeyInfoDer,
    UnixTime,
};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::AlwaysResolvesServerRawPublicKeys;
use rustls::sign::CertifiedKey;
use rustls::{
    ClientConfig, DigitallySignedStruct, DistinguishedName, Error, ServerConfig, SignatureScheme,
};
use std::sync::Arc;

/// The DER of an Ed25519 private key in PKCS#8 v1 (RFC 8410) up to its 32-byte seed:
/// `SEQUENCE { INTEGER 0, SEQUENCE { OID 1.3.101.112 }, OCTET STRING { OCTET STRING (32) } }`.
/// Every such key is this prefix followed by the seed, so no ASN.1 library is needed.
const ED25519_PKCS8_V1_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

/// The length of an Ed25519 seed (the secret key).
const ED25519_SEED_BYTES: usize = 32;

/// The crypto provider every configuration here uses: ring, named explicitly rather than taken
/// from a process-wide default, so another crate enabling a second provider cannot change it.
pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A freshly generated Ed25519 identity: the signing key rustls presents, and its public key
/// as the SubjectPublicKeyInfo the peer pins.
#[derive(Debug)]
pub(crate) struct Identity {
    certified: Arc<CertifiedKey>,
    spki: SubjectPublicKeyInfoDer<'static>,
}

impl Identity {
    /// Generates a key from the provider's secure random source.
    pub(crate) fn generate(provider: &CryptoProvider) -> Result<Self, String> {
        let mut seed = [0u8; ED25519_SEED_BYTES];
        provider
            .secure_random
            .fill(&mut seed)
            .map_err(|e| format!("cannot draw an Ed25519 seed: {e:?}"))?;
        let mut pkcs8 = Vec::with_capacity(ED25519_PKCS8_V1_PREFIX.len() + seed.len());
        pkcs8.extend_from_slice(&ED25519_PKCS8_V1_PREFIX);
        pkcs8.extend_from_slice(&seed);
        let key = provider
            .key_provider
            .load_private_key(PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(pkcs8)))
            .map_err(|e| format!("cannot load the Ed25519 key: {e}"))?;
        let spki = key
            .public_key()
            .ok_or("the Ed25519 signing key does not expose its public key")?
            .into_owned();
        // With raw public keys the "certificate" sent is the SubjectPublicKeyInfo itself.
        let raw_key = CertificateDer::from(spki.as_ref().to_vec());
        Ok(Self {
            certified: Arc::new(CertifiedKey::new(vec![raw_key], key)),
            spki,
        })
    }

    /// The public key as a DER SubjectPublicKeyInfo, what the peer pins.
    pub(crate) fn spki(&self) -> SubjectPublicKeyInfoDer<'static> {
        self.spki.clone()
    }
}

/// A TLS 1.3 server that presents `own` and requires the client to present `peer`.
pub(crate) fn server_config(
    provider: Arc<CryptoProvider>,
    own: &Identity,
    peer: SubjectPublicKeyInfoDer<'static>,
    alpn: &[u8],
) -> Result<ServerConfig, String> {
    let verifier = PinnedKey::new(&provider, peer);
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| format!("cannot build the TLS server configuration: {e}"))?
        .with_client_cert_verifier(Arc::new(verifier))
        .with_cert_resolver(Arc::new(AlwaysResolvesServerRawPublicKeys::new(
            own.certified.clone(),
        )));
    config.alpn_protocols = vec![alpn.to_vec()];
    Ok(config)
}

/// A TLS 1.3 client that presents `own` and requires the server to present `peer`.
pub(crate) fn client_config(
    provider: Arc<CryptoProvider>,
    own: &Identity,
    peer: SubjectPublicKeyInfoDer<'static>,
    alpn: &[u8],
) -> Result<ClientConfig, String> {
    let verifier = PinnedKey::new(&provider, peer);
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| format!("cannot build the TLS client configuration: {e}"))?
        // "dangerous" only because the verifier is ours rather than WebPKI's.
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_client_cert_resolver(Arc::new(AlwaysResolvesClientRawPublicKeys::new(
            own.certified.clone(),
        )));
    config.alpn_protocols = vec![alpn.to_vec()];
    Ok(config)
}

/// Accepts exactly one raw public key, on either side of the handshake.
#[derive(Debug)]
struct PinnedKey {
    expected: SubjectPublicKeyInfoDer<'static>,
    algorithms: rustls::crypto::WebPkiSupportedAlgorithms,
}

impl PinnedKey {
    fn new(provider: &CryptoProvider, expected: SubjectPublicKeyInfoDer<'static>) -> Self {
        Self {
            expected,
            algorithms: provider.signature_verification_algorithms,
        }
    }

    /// The presented "certificate" is the peer's SubjectPublicKeyInfo; byte equality with the
    /// pinned one is the whole check (DER is canonical, and the handshake signature then proves
    /// the peer holds the matching private key).
    fn check(&self, presented: &CertificateDer<'_>, rest: &[CertificateDer<'_>]) -> bool {
        rest.is_empty() && presented.as_ref() == self.expected.as_ref()
    }

    fn verify_signature(
        &self,
        message: &[u8],
        presented: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        let spki = SubjectPublicKeyInfoDer::from(presented.as_ref());
        verify_tls13_signature_with_raw_key(message, &spki, dss, &self.algorithms)
    }

    fn schemes() -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }
}

/// Only TLS 1.3 is offered, so a TLS 1.2 signature never reaches the verifier.
fn tls12_refused() -> Error {
    Error::General("TLS 1.2 is not offered".into())
}

impl ServerCertVerifier for PinnedKey {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        if self.check(end_entity, intermediates) {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(Error::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure,
            ))
        }
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
        Self::schemes()
    }

    fn requires_raw_public_keys(&self) -> bool {
        true
    }
}

impl ClientCertVerifier for PinnedKey {
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
        if self.check(end_entity, intermediates) {
            Ok(ClientCertVerified::assertion())
        } else {
            Err(Error::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure,
            ))
        }
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
        Self::schemes()
    }

    fn requires_raw_public_keys(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The DER of an Ed25519 SubjectPublicKeyInfo before its 32-byte key (RFC 8410).
    const ED25519_SPKI_PREFIX: [u8; 12] = [
        0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
    ];

    #[test]
    fn generated_identity_is_an_ed25519_spki() {
        let provider = provider();
        let id = Identity::generate(&provider).unwrap();
        let spki = id.spki();
        assert_eq!(spki.as_ref().len(), ED25519_SPKI_PREFIX.len() + 32);
        assert_eq!(&spki.as_ref()[..12], &ED25519_SPKI_PREFIX);
        let other = Identity::generate(&provider).unwrap();
        assert_ne!(spki.as_ref(), other.spki().as_ref(), "keys are fresh");
    }

    #[test]
    fn pinned_key_accepts_only_the_pinned_spki_alone() {
        let provider = provider();
        let expected = Identity::generate(&provider).unwrap();
        let stranger = Identity::generate(&provider).unwrap();
        let pin = PinnedKey::new(&provider, expected.spki());
        let cert = |id: &Identity| CertificateDer::from(id.spki().as_ref().to_vec());
        assert!(pin.check(&cert(&expected), &[]));
        assert!(!pin.check(&cert(&stranger), &[]));
        assert!(!pin.check(&cert(&expected), &[cert(&stranger)]));
    }
}
