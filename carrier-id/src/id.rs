//! [`CarrierId`]: a node's identity, its Ed25519 public key.

use std::fmt;
use std::str::FromStr;

use curve25519_dalek::edwards::CompressedEdwardsY;
use ed25519_dalek::VerifyingKey;
use serde::{de, Deserialize, Deserializer, Serialize, Serializer};

use crate::context::{signed_bytes, SignatureKind};
use crate::encoding::{self, Base58Error};
use crate::{Context, CryptoError, IdError, Signature};

/// A Carrier ID: the 32-byte Ed25519 public key of a node, shown in base58.
///
/// Every `CarrierId` holds a canonical encoding of a curve point that is not of small order:
/// [`from_bytes`](CarrierId::from_bytes), [`FromStr`] and deserialization all check it, so
/// code holding a `CarrierId` never needs to.
///
/// In human-readable serde formats (JSON) it is its base58 string; in binary ones (postcard)
/// its 32 raw bytes, with no length prefix.
///
/// ```
/// use carrier_id::{CarrierId, Keypair};
///
/// let id = Keypair::from_seed(&[7; 32]).id();
/// let text = id.to_string();
/// assert_eq!(text.parse::<CarrierId>().unwrap(), id);
/// ```
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CarrierId([u8; 32]);

/// 2^255 − 19, little-endian: y coordinates at or above it are not reduced.
const FIELD_PRIME: [u8; 32] = {
    let mut p = [0xff; 32];
    p[0] = 0xed;
    p[31] = 0x7f;
    p
};

impl CarrierId {
    /// Length of an ID in bytes.
    pub const LEN: usize = 32;

    /// The ID these bytes encode.
    ///
    /// Rejects encodings that are not canonical ([`IdError::NonCanonical`]), that are not a
    /// curve point ([`IdError::NotOnCurve`]) or that are a point of small order
    /// ([`IdError::SmallOrder`]).
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<Self, IdError> {
        if !y_is_reduced(bytes) {
            return Err(IdError::NonCanonical);
        }
        let point = CompressedEdwardsY(*bytes)
            .decompress()
            .ok_or(IdError::NotOnCurve)?;
        // With y reduced, re-encoding differs only when the sign bit is set on x = 0.
        if point.compress().0 != *bytes {
            return Err(IdError::NonCanonical);
        }
        if point.is_small_order() {
            return Err(IdError::SmallOrder);
        }
        Ok(Self(*bytes))
    }

    /// Like [`from_bytes`](CarrierId::from_bytes), for a slice that must be 32 bytes long.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, IdError> {
        let array = <&[u8; 32]>::try_from(bytes).map_err(|_| IdError::WrongLength {
            expected: Self::LEN,
            actual: bytes.len(),
        })?;
        Self::from_bytes(array)
    }

    /// The 32 bytes of the public key.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The 32 bytes of the public key, copied.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.0
    }

    /// Checks that `signature` was made by this ID's key over `message` under `context`
    /// (see [`Keypair::sign`](crate::Keypair::sign)). Verification is strict: it rejects
    /// non-canonical and small-order signature components, so signatures are not malleable.
    pub fn verify(
        &self,
        context: Context,
        message: &[u8],
        signature: &Signature,
    ) -> Result<(), CryptoError> {
        self.verify_kind(SignatureKind::Plain, context, &[message], signature)
    }

    /// The X25519 (Montgomery u) public key this ID maps to; two IDs, negatives of each
    /// other, share each X25519 key.
    pub fn x25519_public(&self) -> [u8; 32] {
        // Decompression cannot fail for a validated ID. Were it to, an all-zero u makes every
        // Diffie-Hellman with it fail as `WeakKey`: the failure is closed.
        CompressedEdwardsY(self.0)
            .decompress()
            .map_or([0; 32], |point| point.to_montgomery().to_bytes())
    }

    pub(crate) fn verify_kind(
        &self,
        kind: SignatureKind,
        context: Context,
        parts: &[&[u8]],
        signature: &Signature,
    ) -> Result<(), CryptoError> {
        let key = VerifyingKey::from_bytes(&self.0).map_err(|_| CryptoError::BadSignature)?;
        let signature = ed25519_dalek::Signature::from_bytes(&signature.to_bytes());
        key.verify_strict(&signed_bytes(kind, context, parts), &signature)
            .map_err(|_| CryptoError::BadSignature)
    }

    /// The ID of a key made from a secret scalar: always canonical and of large order.
    pub(crate) fn from_verifying_key(key: &VerifyingKey) -> Self {
        Self(key.to_bytes())
    }

    /// Skips validation, so tests can reach the checks behind it with invalid points.
    #[cfg(test)]
    pub(crate) fn from_bytes_unchecked(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }
}

/// Whether the low 255 bits, read little-endian, are below 2^255 − 19.
fn y_is_reduced(bytes: &[u8; 32]) -> bool {
    let mut y = *bytes;
    y[31] &= 0x7f;
    // Compare from the most significant byte down.
    for (a, p) in y.iter().rev().zip(FIELD_PRIME.iter().rev()) {
        if a != p {
            return a < p;
        }
    }
    false
}

impl From<Base58Error> for IdError {
    fn from(error: Base58Error) -> Self {
        match error {
            Base58Error::BadCharacter { character, index } => {
                IdError::BadCharacter { character, index }
            }
            Base58Error::TooLong {
                max_chars,
                actual_chars,
            } => IdError::TooLong {
                max_chars,
                actual_chars,
            },
            Base58Error::WrongLength { expected, actual } => {
                IdError::WrongLength { expected, actual }
            }
        }
    }
}

impl FromStr for CarrierId {
    type Err = IdError;

    fn from_str(text: &str) -> Result<Self, IdError> {
        Self::from_bytes(&encoding::decode_base58::<32>(text)?)
    }
}

impl fmt::Display for CarrierId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&encoding::encode_base58(&self.0))
    }
}

impl fmt::Debug for CarrierId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CarrierId({self})")
    }
}

impl AsRef<[u8]> for CarrierId {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl TryFrom<&[u8]> for CarrierId {
    type Error = IdError;

    fn try_from(bytes: &[u8]) -> Result<Self, IdError> {
        Self::from_slice(bytes)
    }
}

impl Serialize for CarrierId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.collect_str(self)
        } else {
            encoding::serialize_array(&self.0, serializer)
        }
    }
}

impl<'de> Deserialize<'de> for CarrierId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        if deserializer.is_human_readable() {
            deserializer.deserialize_str(IdTextVisitor)
        } else {
            let bytes = encoding::deserialize_array::<D, 32>(deserializer)?;
            Self::from_bytes(&bytes).map_err(de::Error::custom)
        }
    }
}

struct IdTextVisitor;

impl de::Visitor<'_> for IdTextVisitor {
    type Value = CarrierId;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a base58 Carrier ID")
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<CarrierId, E> {
        text.parse().map_err(E::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verification_is_strict_even_for_a_key_that_skipped_validation() {
        // With the identity as public key, R = identity and s = 0 satisfy the lax equation
        // [s]B = R + [k]A for every message; strict verification refuses small-order keys.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        let key = CarrierId::from_bytes_unchecked(identity);
        let mut forged = [0u8; 64];
        forged[0] = 1;
        let forged = Signature::from_bytes(&forged);
        let context = Context::new("carrier-id/test/v1");
        let lax_accepts = ed25519_dalek::Verifier::verify(
            &VerifyingKey::from_bytes(&identity).unwrap(),
            &signed_bytes(SignatureKind::Plain, context, &[b"anything"]),
            &ed25519_dalek::Signature::from_bytes(&forged.to_bytes()),
        );
        assert!(
            lax_accepts.is_ok(),
            "the forgery works against lax verification"
        );
        assert_eq!(
            key.verify(context, b"anything", &forged),
            Err(CryptoError::BadSignature)
        );
    }

    #[test]
    fn y_reduction_boundary() {
        let mut below = FIELD_PRIME;
        below[0] -= 1;
        assert!(y_is_reduced(&below));
        assert!(!y_is_reduced(&FIELD_PRIME));
        // The sign bit is not part of y.
        let mut signed = below;
        signed[31] |= 0x80;
        assert!(y_is_reduced(&signed));
        assert!(!y_is_reduced(&[0xff; 32]));
        assert!(y_is_reduced(&[0; 32]));
    }
}
