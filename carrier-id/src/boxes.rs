//! Boxes: authenticated encryption to a [`CarrierId`].
//!
//! Three kinds, all XChaCha20-Poly1305:
//!
//! | kind | made by | opened by | layout |
//! |---|---|---|---|
//! | sealed (anonymous sender) | [`seal`] | [`Keypair::open_sealed`] | `ephemeral X25519 public (32) ‖ ciphertext ‖ tag (16)` |
//! | signed then sealed | [`seal_signed`] | [`Keypair::open_signed`] | a sealed box of `sender ID (32) ‖ signature (64) ‖ plaintext` |
//! | authenticated, between two IDs | [`Keypair::seal_to`] | [`Keypair::open_from`] | `nonce (24) ‖ ciphertext ‖ tag (16)` |
//!
//! A sealed box's key is blake3 `derive_key` over its kind, the context, the X25519 output,
//! the ephemeral public key and the recipient's ID. Each box has a fresh ephemeral key, so
//! each has its own key and the nonce is a constant zero.
//!
//! The signature inside a signed box covers the context and the recipient's ID, so the
//! recipient cannot re-seal it to someone else as if the sender had written to them.
//!
//! An authenticated box uses [`Keypair::shared_key`] with a random nonce; its associated
//! data is `sender ID ‖ recipient ID`, so a box cannot be reflected back to its sender.

use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::{Tag, XChaCha20Poly1305, XNonce};
use rand_core::{OsRng, RngCore};
use x25519_dalek::{PublicKey as X25519Public, StaticSecret};
use zeroize::Zeroizing;

use crate::context::SignatureKind;
use crate::{CarrierId, Context, CryptoError, Keypair, Signature};

const TAG_LEN: usize = 16;
const NONCE_LEN: usize = 24;
const EPHEMERAL_LEN: usize = 32;

/// Bytes a sealed box ([`seal`]) adds to its plaintext.
pub const SEALED_OVERHEAD: usize = EPHEMERAL_LEN + TAG_LEN;
/// Bytes a signed sealed box ([`seal_signed`]) adds to its plaintext.
pub const SEALED_SIGNED_OVERHEAD: usize = SEALED_OVERHEAD + CarrierId::LEN + Signature::LEN;
/// Bytes an authenticated box ([`Keypair::seal_to`]) adds to its plaintext.
pub const BOX_OVERHEAD: usize = NONCE_LEN + TAG_LEN;

/// blake3 `derive_key` context for sealed-box keys. Fixed forever.
const SEALED_KEY_DERIVATION: &str = "carrier-id 2026-11 sealed box key v1";

/// Which sealed box a key is for: an anonymous box never opens as a signed one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SealedKind {
    Anonymous = 1,
    Signed = 2,
}

/// Encrypts `plaintext` so that only `recipient` can read it, for the use `context`. The
/// sender is anonymous: an ephemeral key is made for this box alone.
///
/// ```
/// use carrier_id::{seal, Context, Keypair, SEALED_OVERHEAD};
///
/// const NOTE: Context = Context::new("example/note/v1");
/// let bob = Keypair::generate();
/// let sealed = seal(&bob.id(), NOTE, b"hi").unwrap();
/// assert_eq!(sealed.len(), 2 + SEALED_OVERHEAD);
/// assert_eq!(bob.open_sealed(NOTE, &sealed).unwrap(), b"hi");
/// ```
pub fn seal(
    recipient: &CarrierId,
    context: Context,
    plaintext: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    seal_with_ephemeral(recipient, context, plaintext, &random_secret())
}

/// [`seal`] with a given ephemeral X25519 secret instead of a random one, so test vectors
/// can pin its output. Never reuse an ephemeral secret.
#[doc(hidden)]
pub fn seal_with_ephemeral(
    recipient: &CarrierId,
    context: Context,
    plaintext: &[u8],
    ephemeral_secret: &[u8; 32],
) -> Result<Vec<u8>, CryptoError> {
    seal_kind(
        SealedKind::Anonymous,
        recipient,
        context,
        plaintext,
        ephemeral_secret,
    )
}

/// Signs `plaintext` as `sender`, then seals it to `recipient`: only `recipient` can read
/// it, and [`Keypair::open_signed`] tells them who wrote it. The signature covers
/// `recipient`'s ID, so they cannot pass it on to a third party as if written to them.
///
/// ```
/// use carrier_id::{seal_signed, Context, Keypair};
///
/// const NOTE: Context = Context::new("example/note/v1");
/// let (alice, bob) = (Keypair::generate(), Keypair::generate());
/// let sealed = seal_signed(&alice, &bob.id(), NOTE, b"hi").unwrap();
/// assert_eq!(bob.open_signed(NOTE, &sealed).unwrap(), (alice.id(), b"hi".to_vec()));
/// ```
pub fn seal_signed(
    sender: &Keypair,
    recipient: &CarrierId,
    context: Context,
    plaintext: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    seal_signed_with_ephemeral(sender, recipient, context, plaintext, &random_secret())
}

/// [`seal_signed`] with a given ephemeral X25519 secret, for test vectors.
#[doc(hidden)]
pub fn seal_signed_with_ephemeral(
    sender: &Keypair,
    recipient: &CarrierId,
    context: Context,
    plaintext: &[u8],
    ephemeral_secret: &[u8; 32],
) -> Result<Vec<u8>, CryptoError> {
    let signature = sender.sign_kind(
        SignatureKind::SealedToRecipient,
        context,
        &[recipient.as_bytes(), plaintext],
    );
    let mut inner = Zeroizing::new(Vec::with_capacity(
        CarrierId::LEN + Signature::LEN + plaintext.len(),
    ));
    inner.extend_from_slice(sender.id().as_bytes());
    inner.extend_from_slice(signature.as_bytes());
    inner.extend_from_slice(plaintext);
    seal_kind(
        SealedKind::Signed,
        recipient,
        context,
        &inner,
        ephemeral_secret,
    )
}

impl Keypair {
    /// Encrypts `plaintext` for `peer` with the pairwise key of the two IDs
    /// ([`Keypair::shared_key`]) and a random nonce. `peer` opens it with
    /// [`Keypair::open_from`] and knows it came from `self`.
    ///
    /// ```
    /// use carrier_id::{Context, Keypair, BOX_OVERHEAD};
    ///
    /// const CHAT: Context = Context::new("example/chat/v1");
    /// let (alice, bob) = (Keypair::generate(), Keypair::generate());
    /// let boxed = alice.seal_to(&bob.id(), CHAT, b"hi").unwrap();
    /// assert_eq!(boxed.len(), 2 + BOX_OVERHEAD);
    /// assert_eq!(bob.open_from(&alice.id(), CHAT, &boxed).unwrap(), b"hi");
    /// ```
    pub fn seal_to(
        &self,
        peer: &CarrierId,
        context: Context,
        plaintext: &[u8],
    ) -> Result<Vec<u8>, CryptoError> {
        let mut nonce = [0u8; NONCE_LEN];
        OsRng.fill_bytes(&mut nonce);
        self.seal_to_with_nonce(peer, context, plaintext, &nonce)
    }

    /// [`Keypair::seal_to`] with a given nonce instead of a random one, for test vectors.
    /// Never reuse a nonce with the same peer and context.
    #[doc(hidden)]
    pub fn seal_to_with_nonce(
        &self,
        peer: &CarrierId,
        context: Context,
        plaintext: &[u8],
        nonce: &[u8; 24],
    ) -> Result<Vec<u8>, CryptoError> {
        let key = self.shared_key(context, peer)?;
        let aad = direction(&self.id(), peer);
        let mut out = Vec::with_capacity(BOX_OVERHEAD + plaintext.len());
        out.extend_from_slice(nonce);
        encrypt_onto(&mut out, key.as_bytes(), nonce, &aad, plaintext)?;
        Ok(out)
    }

    /// Opens a box that `peer` made for `self` with [`Keypair::seal_to`] under `context`.
    /// Fails with [`CryptoError::Decrypt`] if anyone else made it, for anyone else, under
    /// another context, or if it was changed.
    pub fn open_from(
        &self,
        peer: &CarrierId,
        context: Context,
        boxed: &[u8],
    ) -> Result<Vec<u8>, CryptoError> {
        check_len(boxed, BOX_OVERHEAD)?;
        let key = self.shared_key(context, peer)?;
        let (nonce, ciphertext) = boxed.split_at(NONCE_LEN);
        let aad = direction(peer, &self.id());
        decrypt(key.as_bytes(), nonce, &aad, ciphertext)
    }

    /// Opens a sealed box made for `self` with [`seal`] under `context`.
    pub fn open_sealed(&self, context: Context, sealed: &[u8]) -> Result<Vec<u8>, CryptoError> {
        self.open_sealed_kind(SealedKind::Anonymous, context, sealed)
    }

    /// Opens a box made for `self` with [`seal_signed`] under `context`, and checks its
    /// signature: returns the sender's ID and the plaintext.
    pub fn open_signed(
        &self,
        context: Context,
        sealed: &[u8],
    ) -> Result<(CarrierId, Vec<u8>), CryptoError> {
        check_len(sealed, SEALED_SIGNED_OVERHEAD)?;
        let inner = Zeroizing::new(self.open_sealed_kind(SealedKind::Signed, context, sealed)?);
        let (sender, rest) = inner.split_at(CarrierId::LEN);
        let (signature, plaintext) = rest.split_at(Signature::LEN);
        let sender = CarrierId::from_slice(sender).map_err(CryptoError::Id)?;
        let signature = Signature::from_slice(signature)?;
        sender.verify_kind(
            SignatureKind::SealedToRecipient,
            context,
            &[self.id().as_bytes(), plaintext],
            &signature,
        )?;
        Ok((sender, plaintext.to_vec()))
    }

    fn open_sealed_kind(
        &self,
        kind: SealedKind,
        context: Context,
        sealed: &[u8],
    ) -> Result<Vec<u8>, CryptoError> {
        check_len(sealed, SEALED_OVERHEAD)?;
        let (ephemeral, ciphertext) = sealed.split_at(EPHEMERAL_LEN);
        let mut ephemeral_public = [0u8; 32];
        ephemeral_public.copy_from_slice(ephemeral);
        let dh = self.diffie_hellman(&ephemeral_public)?;
        let key = sealed_key(kind, context, &dh, &ephemeral_public, &self.id());
        decrypt(&key, &[0; NONCE_LEN], &[], ciphertext)
    }
}

fn seal_kind(
    kind: SealedKind,
    recipient: &CarrierId,
    context: Context,
    plaintext: &[u8],
    ephemeral_secret: &[u8; 32],
) -> Result<Vec<u8>, CryptoError> {
    let secret = StaticSecret::from(*ephemeral_secret);
    let ephemeral_public = X25519Public::from(&secret);
    let shared = secret.diffie_hellman(&X25519Public::from(recipient.x25519_public()));
    if !shared.was_contributory() {
        return Err(CryptoError::WeakKey);
    }
    let dh = Zeroizing::new(shared.to_bytes());
    let key = sealed_key(kind, context, &dh, ephemeral_public.as_bytes(), recipient);
    let mut out = Vec::with_capacity(SEALED_OVERHEAD + plaintext.len());
    out.extend_from_slice(ephemeral_public.as_bytes());
    encrypt_onto(&mut out, &key, &[0; NONCE_LEN], &[], plaintext)?;
    Ok(out)
}

/// `blake3::derive_key(SEALED_KEY_DERIVATION,
/// kind ‖ len(context) ‖ context ‖ dh ‖ ephemeral public ‖ recipient ID)`.
fn sealed_key(
    kind: SealedKind,
    context: Context,
    dh: &[u8; 32],
    ephemeral_public: &[u8; 32],
    recipient: &CarrierId,
) -> Zeroizing<[u8; 32]> {
    let mut hasher = blake3::Hasher::new_derive_key(SEALED_KEY_DERIVATION);
    hasher.update(&[kind as u8]);
    context.hash_into(&mut hasher);
    hasher.update(dh);
    hasher.update(ephemeral_public);
    hasher.update(recipient.as_bytes());
    Zeroizing::new(*hasher.finalize().as_bytes())
}

/// Associated data of an authenticated box: who sent it to whom.
fn direction(sender: &CarrierId, recipient: &CarrierId) -> [u8; 64] {
    let mut aad = [0u8; 64];
    aad[..32].copy_from_slice(sender.as_bytes());
    aad[32..].copy_from_slice(recipient.as_bytes());
    aad
}

fn random_secret() -> Zeroizing<[u8; 32]> {
    let mut secret = Zeroizing::new([0u8; 32]);
    OsRng.fill_bytes(&mut *secret);
    secret
}

fn check_len(input: &[u8], min: usize) -> Result<(), CryptoError> {
    if input.len() < min {
        return Err(CryptoError::TooShort {
            min,
            actual: input.len(),
        });
    }
    Ok(())
}

/// Appends `ciphertext ‖ tag` to `out`.
fn encrypt_onto(
    out: &mut Vec<u8>,
    key: &[u8; 32],
    nonce: &[u8; NONCE_LEN],
    aad: &[u8],
    plaintext: &[u8],
) -> Result<(), CryptoError> {
    let cipher = XChaCha20Poly1305::new(key.into());
    let start = out.len();
    out.extend_from_slice(plaintext);
    let tag = cipher
        .encrypt_in_place_detached(XNonce::from_slice(nonce), aad, &mut out[start..])
        .map_err(|_| CryptoError::Encrypt)?;
    out.extend_from_slice(&tag);
    Ok(())
}

/// Decrypts `ciphertext ‖ tag` (at least [`TAG_LEN`] bytes: the callers checked).
fn decrypt(
    key: &[u8; 32],
    nonce: &[u8],
    aad: &[u8],
    ciphertext_and_tag: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    let split = ciphertext_and_tag
        .len()
        .checked_sub(TAG_LEN)
        .ok_or(CryptoError::Decrypt)?;
    let (ciphertext, tag) = ciphertext_and_tag.split_at(split);
    let cipher = XChaCha20Poly1305::new(key.into());
    let mut plaintext = ciphertext.to_vec();
    cipher
        .decrypt_in_place_detached(
            XNonce::from_slice(nonce),
            aad,
            &mut plaintext,
            Tag::from_slice(tag),
        )
        .map_err(|_| CryptoError::Decrypt)?;
    Ok(plaintext)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOTE: Context = Context::new("carrier-id/test/note/v1");

    #[test]
    fn a_signed_box_re_sealed_to_someone_else_does_not_verify() {
        let alice = Keypair::from_seed(&[1; 32]);
        let bob = Keypair::from_seed(&[2; 32]);
        let carol = Keypair::from_seed(&[3; 32]);
        let to_bob = seal_signed(&alice, &bob.id(), NOTE, b"meet me at noon").unwrap();
        // Bob opens the box and seals exactly what Alice signed to Carol.
        let inner = bob
            .open_sealed_kind(SealedKind::Signed, NOTE, &to_bob)
            .unwrap();
        let to_carol = seal_kind(SealedKind::Signed, &carol.id(), NOTE, &inner, &[9; 32]).unwrap();
        assert_eq!(
            carol.open_signed(NOTE, &to_carol),
            Err(CryptoError::BadSignature)
        );
        // The same bytes re-sealed to Bob himself still verify: the signature is what binds.
        let again = seal_kind(SealedKind::Signed, &bob.id(), NOTE, &inner, &[9; 32]).unwrap();
        assert_eq!(bob.open_signed(NOTE, &again).unwrap().1, b"meet me at noon");
    }

    #[test]
    fn a_plain_signature_cannot_be_passed_off_as_a_signed_box() {
        let alice = Keypair::from_seed(&[1; 32]);
        let bob = Keypair::from_seed(&[2; 32]);
        let mut message = bob.id().to_bytes().to_vec();
        message.extend_from_slice(b"hello");
        // A plain signature over `recipient ‖ plaintext`, the bytes a signed box covers.
        let signature = alice.sign(NOTE, &message);
        let mut inner = alice.id().to_bytes().to_vec();
        inner.extend_from_slice(signature.as_bytes());
        inner.extend_from_slice(b"hello");
        let sealed = seal_kind(SealedKind::Signed, &bob.id(), NOTE, &inner, &[9; 32]).unwrap();
        assert_eq!(
            bob.open_signed(NOTE, &sealed),
            Err(CryptoError::BadSignature)
        );
    }

    #[test]
    fn a_signed_box_naming_an_invalid_sender_is_refused() {
        let bob = Keypair::from_seed(&[2; 32]);
        let mut inner = vec![0u8; CarrierId::LEN + Signature::LEN];
        inner[0] = 1; // the identity point
        let sealed = seal_kind(SealedKind::Signed, &bob.id(), NOTE, &inner, &[9; 32]).unwrap();
        assert_eq!(
            bob.open_signed(NOTE, &sealed),
            Err(CryptoError::Id(crate::IdError::SmallOrder))
        );
    }
}
