//! [`Keypair`]: a node's secret Ed25519 key, and the X25519 key derived from it.

use std::fmt;

use ed25519_dalek::{Signer, SigningKey};
use rand_core::{OsRng, RngCore};
use x25519_dalek::{PublicKey as X25519Public, StaticSecret};
use zeroize::Zeroizing;

use crate::context::{signed_bytes, SignatureKind};
use crate::shared_key::derive_pair_key;
use crate::{CarrierId, Context, CryptoError, SharedKey, Signature};

/// A node's secret key: an Ed25519 signing key, and the X25519 key derived from it for
/// Diffie-Hellman, so one [`CarrierId`] serves signing, key agreement and TLS.
///
/// The secret is zeroized on drop; `Debug` shows only the ID.
///
/// ```
/// use carrier_id::{Context, Keypair};
///
/// const GREETING: Context = Context::new("example/greeting/v1");
///
/// let keypair = Keypair::generate();
/// let signature = keypair.sign(GREETING, b"hello");
/// assert!(keypair.id().verify(GREETING, b"hello", &signature).is_ok());
/// ```
#[derive(Clone)]
pub struct Keypair {
    signing: SigningKey,
    /// Clamped first half of SHA-512(seed), as libsodium's
    /// `crypto_sign_ed25519_sk_to_curve25519`.
    x25519: StaticSecret,
    id: CarrierId,
}

impl Keypair {
    /// A new keypair from the operating system's random number generator.
    ///
    /// # Panics
    ///
    /// If the operating system cannot provide random bytes (as `ed25519-dalek`'s own
    /// generator does): there is no safe way to make a key without them.
    pub fn generate() -> Self {
        let mut seed = Zeroizing::new([0u8; 32]);
        OsRng.fill_bytes(&mut *seed);
        Self::from_seed(&seed)
    }

    /// The keypair of a 32-byte Ed25519 seed (the RFC 8032 secret key).
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        let signing = SigningKey::from_bytes(seed);
        let mut scalar = Zeroizing::new(signing.to_scalar_bytes());
        clamp(&mut scalar);
        let x25519 = StaticSecret::from(*scalar);
        let id = CarrierId::from_verifying_key(&signing.verifying_key());
        Self {
            signing,
            x25519,
            id,
        }
    }

    /// The 32-byte seed this keypair was made from. Keep it secret.
    pub fn seed(&self) -> &[u8; 32] {
        self.signing.as_bytes()
    }

    /// This keypair's public identity.
    pub fn id(&self) -> CarrierId {
        self.id
    }

    /// Signs `message` for the use `context`: the signature covers the context, so it
    /// verifies (with [`CarrierId::verify`]) under that context only.
    pub fn sign(&self, context: Context, message: &[u8]) -> Signature {
        self.sign_kind(SignatureKind::Plain, context, &[message])
    }

    /// A pairwise symmetric key shared with `peer` for the use `context`: `peer` derives the
    /// same key with `self`'s ID.
    ///
    /// It is blake3 `derive_key` over the context, the X25519 output and *both* Ed25519 IDs
    /// in ascending order. Binding both IDs matters: two Ed25519 keys (a point and its
    /// negative) map to each X25519 key, so the X25519 output alone would let a third party
    /// relabel a message's sender.
    ///
    /// Returns [`CryptoError::WeakKey`] if the Diffie-Hellman output is all zeros (which
    /// validated IDs never give).
    pub fn shared_key(&self, context: Context, peer: &CarrierId) -> Result<SharedKey, CryptoError> {
        let dh = self.diffie_hellman(&peer.x25519_public())?;
        Ok(derive_pair_key(context, &dh, &self.id, peer))
    }

    /// The X25519 secret key: the clamped first half of SHA-512(seed), as libsodium's
    /// `crypto_sign_ed25519_sk_to_curve25519` computes it. Its public key is
    /// [`CarrierId::x25519_public`]. The caller should zeroize the copy when done with it.
    pub fn x25519_secret(&self) -> [u8; 32] {
        self.x25519.to_bytes()
    }

    pub(crate) fn sign_kind(
        &self,
        kind: SignatureKind,
        context: Context,
        parts: &[&[u8]],
    ) -> Signature {
        let signature = self.signing.sign(&signed_bytes(kind, context, parts));
        Signature::from_bytes(&signature.to_bytes())
    }

    /// X25519 with a peer's Montgomery u coordinate; refuses an all-zero output.
    pub(crate) fn diffie_hellman(
        &self,
        peer_x25519: &[u8; 32],
    ) -> Result<Zeroizing<[u8; 32]>, CryptoError> {
        let shared = self
            .x25519
            .diffie_hellman(&X25519Public::from(*peer_x25519));
        if !shared.was_contributory() {
            return Err(CryptoError::WeakKey);
        }
        Ok(Zeroizing::new(shared.to_bytes()))
    }
}

/// X25519 clamping (RFC 7748): a multiple of the cofactor 8, with bit 254 set.
fn clamp(scalar: &mut [u8; 32]) {
    scalar[0] &= 248;
    scalar[31] &= 127;
    scalar[31] |= 64;
}

impl fmt::Debug for Keypair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keypair")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEST: Context = Context::new("carrier-id/test/v1");

    #[test]
    fn an_all_zero_diffie_hellman_output_is_a_weak_key() {
        let keypair = Keypair::from_seed(&[1; 32]);
        // The identity point (0, 1): its Montgomery u is 0, so X25519 with it gives zeros.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        let low_order = CarrierId::from_bytes_unchecked(identity);
        assert_eq!(low_order.x25519_public(), [0; 32]);
        assert_eq!(
            keypair.shared_key(TEST, &low_order).err(),
            Some(CryptoError::WeakKey)
        );
    }

    #[test]
    fn an_id_that_does_not_decompress_fails_closed() {
        let not_a_point = (2u8..)
            .map(|y| {
                let mut bytes = [0u8; 32];
                bytes[0] = y;
                bytes
            })
            .find(|bytes| CarrierId::from_bytes(bytes) == Err(crate::IdError::NotOnCurve))
            .map(CarrierId::from_bytes_unchecked)
            .expect("about half of all y are not on the curve");
        assert_eq!(not_a_point.x25519_public(), [0; 32]);
        let keypair = Keypair::from_seed(&[1; 32]);
        assert_eq!(
            keypair.shared_key(TEST, &not_a_point).err(),
            Some(CryptoError::WeakKey)
        );
    }

    #[test]
    fn debug_shows_the_id_and_not_the_seed() {
        let keypair = Keypair::from_seed(&[0xab; 32]);
        let debug = format!("{keypair:?}");
        assert!(debug.contains(&keypair.id().to_string()), "{debug}");
        assert!(!debug.contains("abab"), "{debug}");
        assert!(!debug.contains("171, 171"), "{debug}");
    }

    #[test]
    fn clamping_sets_and_clears_the_rfc_7748_bits() {
        let mut scalar = [0xff; 32];
        clamp(&mut scalar);
        assert_eq!(scalar[0], 0xf8);
        assert_eq!(scalar[31], 0x7f);
        let mut scalar = [0; 32];
        clamp(&mut scalar);
        assert_eq!(scalar[31], 0x40);
    }
}
