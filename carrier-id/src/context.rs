//! Contexts: the names that domain-separate signatures and derived keys, and the
//! unambiguous encoding of what is actually signed.

use std::fmt;

/// Names the use of a signature or derived key (`"carrier/peer-record/v1"`, …).
///
/// Every signature and every derived key in Carrier covers its context, so a signature made
/// for one purpose never verifies for another, and keys derived for different purposes are
/// independent. Define each context once, as a constant, next to the format it protects:
///
/// ```
/// use carrier_id::Context;
///
/// const PEER_RECORD: Context = Context::new("carrier/peer-record/v1");
/// assert_eq!(PEER_RECORD.name(), "carrier/peer-record/v1");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Context(&'static str);

impl Context {
    /// The longest context name, in bytes: the name is length-prefixed with one byte.
    pub const MAX_LEN: usize = 255;

    /// A context with this name.
    ///
    /// # Panics
    ///
    /// If `name` is empty or longer than [`Context::MAX_LEN`] bytes. Contexts are constants,
    /// so in a `const` item this is a compile-time error, never a runtime one.
    pub const fn new(name: &'static str) -> Self {
        assert!(
            !name.is_empty() && name.len() <= Self::MAX_LEN,
            "a context name is 1 to 255 bytes long"
        );
        Self(name)
    }

    /// The context's name.
    pub fn name(&self) -> &'static str {
        self.0
    }

    /// The name preceded by its length: an unambiguous prefix for anything that follows.
    /// (The length fits a byte: [`Context::new`] checks it.)
    pub(crate) fn length_prefixed(&self) -> impl Iterator<Item = u8> + '_ {
        std::iter::once(self.0.len() as u8).chain(self.0.bytes())
    }

    /// Feeds the length-prefixed name into a blake3 hasher.
    pub(crate) fn hash_into(&self, hasher: &mut blake3::Hasher) {
        hasher.update(&[self.0.len() as u8]);
        hasher.update(self.0.as_bytes());
    }
}

impl fmt::Display for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

/// What a signature is for, beyond its context. Signatures made by
/// [`Keypair::sign`](crate::Keypair::sign) and those made inside
/// [`seal_signed`](crate::seal_signed) are of different kinds, so neither can stand in for
/// the other even under the same context.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SignatureKind {
    /// `Keypair::sign`: the message as given.
    Plain = 1,
    /// `seal_signed`: the recipient's ID, then the plaintext.
    SealedToRecipient = 2,
}

/// Prefix of every message Carrier signs. It keeps Carrier signatures apart from anything
/// else the same Ed25519 key signs (TLS 1.3 `CertificateVerify` starts with 64 spaces).
const SIGNATURE_DOMAIN: &[u8] = b"carrier-id/signature/v1\0";

/// The bytes actually signed: `SIGNATURE_DOMAIN ‖ kind ‖ len(context) ‖ context ‖ parts…`.
///
/// The domain and kind are fixed-length and the context is length-prefixed, so two
/// different (kind, context, message) triples never give the same bytes. The parts are
/// concatenated: each kind fixes the length of all but its last part.
pub(crate) fn signed_bytes(kind: SignatureKind, context: Context, parts: &[&[u8]]) -> Vec<u8> {
    let total = SIGNATURE_DOMAIN.len() + 2 + context.0.len();
    let total = total + parts.iter().map(|part| part.len()).sum::<usize>();
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(SIGNATURE_DOMAIN);
    out.push(kind as u8);
    out.extend(context.length_prefixed());
    for part in parts {
        out.extend_from_slice(part);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_bytes_layout_is_domain_kind_length_context_message() {
        let bytes = signed_bytes(SignatureKind::Plain, Context::new("ab"), &[b"xy", b"z"]);
        let mut expected = b"carrier-id/signature/v1\0".to_vec();
        expected.extend_from_slice(&[1, 2, b'a', b'b', b'x', b'y', b'z']);
        assert_eq!(bytes, expected);
    }

    #[test]
    fn shifting_bytes_between_context_and_message_changes_what_is_signed() {
        let a = signed_bytes(SignatureKind::Plain, Context::new("ab"), &[b"c"]);
        let b = signed_bytes(SignatureKind::Plain, Context::new("a"), &[b"bc"]);
        assert_ne!(a, b);
    }

    #[test]
    fn the_kinds_sign_different_bytes() {
        let context = Context::new("c");
        assert_ne!(
            signed_bytes(SignatureKind::Plain, context, &[b"m"]),
            signed_bytes(SignatureKind::SealedToRecipient, context, &[b"m"])
        );
    }

    #[test]
    #[should_panic(expected = "1 to 255 bytes")]
    fn an_empty_context_is_refused() {
        let _ = Context::new("");
    }

    #[test]
    #[should_panic(expected = "1 to 255 bytes")]
    fn an_overlong_context_is_refused() {
        let name: &'static str = Box::leak("x".repeat(256).into_boxed_str());
        let _ = Context::new(name);
    }

    #[test]
    fn the_longest_context_is_accepted() {
        let name: &'static str = Box::leak("x".repeat(255).into_boxed_str());
        assert_eq!(Context::new(name).length_prefixed().next(), Some(255));
    }
}
