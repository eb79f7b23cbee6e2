//! [`Signature`]: an Ed25519 signature over a context and a message.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::encoding;
use crate::CryptoError;

/// An Ed25519 signature made by [`Keypair::sign`](crate::Keypair::sign) and checked by
/// [`CarrierId::verify`](crate::CarrierId::verify).
///
/// Any 64 bytes are a `Signature`; whether they are a valid one is only known when verified.
/// Serialized as 64 raw bytes (a fixed-size tuple: no length prefix in postcard).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Signature([u8; 64]);

impl Signature {
    /// Length of a signature in bytes.
    pub const LEN: usize = 64;

    /// A signature from its 64 bytes.
    pub fn from_bytes(bytes: &[u8; 64]) -> Self {
        Self(*bytes)
    }

    /// A signature from a slice that must be 64 bytes long.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, CryptoError> {
        <[u8; 64]>::try_from(bytes)
            .map(Self)
            .map_err(|_| CryptoError::SignatureLength {
                actual: bytes.len(),
            })
    }

    /// The 64 bytes of the signature.
    pub fn to_bytes(&self) -> [u8; 64] {
        self.0
    }

    /// The 64 bytes of the signature, borrowed.
    pub fn as_bytes(&self) -> &[u8; 64] {
        &self.0
    }
}

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Signature(")?;
        encoding::write_hex(f, &self.0)?;
        f.write_str(")")
    }
}

impl TryFrom<&[u8]> for Signature {
    type Error = CryptoError;

    fn try_from(bytes: &[u8]) -> Result<Self, CryptoError> {
        Self::from_slice(bytes)
    }
}

impl Serialize for Signature {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        encoding::serialize_array(&self.0, serializer)
    }
}

impl<'de> Deserialize<'de> for Signature {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        encoding::deserialize_array::<D, 64>(deserializer).map(Self)
    }
}
