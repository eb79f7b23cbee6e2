//! [`Address`]: what a person hands out to receive friend requests, and its [`Nospam`].

use std::fmt;
use std::str::FromStr;

use crc::{Crc, CRC_16_IBM_SDLC};
use rand_core::{OsRng, RngCore};
use serde::{de, Deserialize, Deserializer, Serialize, Serializer};

use crate::encoding::{self, Base58Error};
use crate::{AddressError, CarrierId};

/// The address checksum: CRC-16/IBM-SDLC (also known as CRC-16/X-25), which catches every
/// single-bit error and every burst of up to 16 bits.
const CHECKSUM: Crc<u16> = Crc::<u16>::new(&CRC_16_IBM_SDLC);

/// Where the checksummed payload (ID and nospam) ends.
const PAYLOAD_LEN: usize = CarrierId::LEN + 4;

/// A value mixed into an [`Address`] so that its owner can stop friend requests sent to an
/// old address: a new nospam gives a new address for the same ID.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, serde::Serialize, serde::Deserialize)]
pub struct Nospam(pub u32);

impl Nospam {
    /// A nospam from the operating system's random number generator.
    ///
    /// # Panics
    ///
    /// If the operating system cannot provide random bytes.
    pub fn random() -> Self {
        Self(OsRng.next_u32())
    }

    /// Its 4 bytes as they appear in an address (big-endian).
    pub fn to_bytes(self) -> [u8; 4] {
        self.0.to_be_bytes()
    }

    /// The nospam of 4 address bytes (big-endian).
    pub fn from_bytes(bytes: [u8; 4]) -> Self {
        Self(u32::from_be_bytes(bytes))
    }
}

/// A Carrier address: `id (32 bytes) ‖ nospam (4 bytes, big-endian) ‖ checksum (2 bytes,
/// big-endian)`, 38 bytes shown in base58. The checksum is CRC-16/IBM-SDLC over the first 36
/// bytes, so any single-bit error (a mistyped or damaged address) is caught.
///
/// In human-readable serde formats it is its base58 string; in binary ones its 38 bytes,
/// with no length prefix. Deserializing checks the checksum and the ID.
///
/// ```
/// use carrier_id::{Address, Keypair, Nospam};
///
/// let id = Keypair::from_seed(&[7; 32]).id();
/// let address = Address::new(id, Nospam(42));
/// let parsed: Address = address.to_string().parse().unwrap();
/// assert_eq!(parsed.id(), id);
/// assert_ne!(Address::new(id, Nospam(43)), address);
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Address {
    id: CarrierId,
    nospam: Nospam,
}

impl Address {
    /// Length of an address in bytes.
    pub const LEN: usize = 38;

    /// The address of `id` with `nospam`.
    pub fn new(id: CarrierId, nospam: Nospam) -> Self {
        Self { id, nospam }
    }

    /// The Carrier ID this address belongs to.
    pub fn id(&self) -> CarrierId {
        self.id
    }

    /// The address's nospam.
    pub fn nospam(&self) -> Nospam {
        self.nospam
    }

    /// The 38 bytes of the address, checksum included.
    pub fn to_bytes(&self) -> [u8; 38] {
        let mut bytes = [0u8; Self::LEN];
        bytes[..CarrierId::LEN].copy_from_slice(self.id.as_bytes());
        bytes[CarrierId::LEN..PAYLOAD_LEN].copy_from_slice(&self.nospam.to_bytes());
        let checksum = CHECKSUM.checksum(&bytes[..PAYLOAD_LEN]);
        bytes[PAYLOAD_LEN..].copy_from_slice(&checksum.to_be_bytes());
        bytes
    }

    /// The address these 38 bytes encode. The checksum is checked first (so a damaged
    /// address reports [`AddressError::Checksum`]), then the ID.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, AddressError> {
        let bytes = <&[u8; 38]>::try_from(bytes).map_err(|_| AddressError::WrongLength {
            expected: Self::LEN,
            actual: bytes.len(),
        })?;
        let (payload, checksum) = bytes.split_at(PAYLOAD_LEN);
        let expected = CHECKSUM.checksum(payload);
        let found = u16::from_be_bytes([checksum[0], checksum[1]]);
        if expected != found {
            return Err(AddressError::Checksum { expected, found });
        }
        let id = CarrierId::from_slice(&payload[..CarrierId::LEN]).map_err(AddressError::Id)?;
        let nospam = Nospam::from_bytes([payload[32], payload[33], payload[34], payload[35]]);
        Ok(Self { id, nospam })
    }
}

impl From<Base58Error> for AddressError {
    fn from(error: Base58Error) -> Self {
        match error {
            Base58Error::BadCharacter { character, index } => {
                AddressError::BadCharacter { character, index }
            }
            Base58Error::TooLong {
                max_chars,
                actual_chars,
            } => AddressError::TooLong {
                max_chars,
                actual_chars,
            },
            Base58Error::WrongLength { expected, actual } => {
                AddressError::WrongLength { expected, actual }
            }
        }
    }
}

impl FromStr for Address {
    type Err = AddressError;

    fn from_str(text: &str) -> Result<Self, AddressError> {
        Self::from_bytes(&encoding::decode_base58::<38>(text)?)
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&encoding::encode_base58(&self.to_bytes()))
    }
}

impl fmt::Debug for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Address({self})")
    }
}

impl Serialize for Address {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.collect_str(self)
        } else {
            encoding::serialize_array(&self.to_bytes(), serializer)
        }
    }
}

impl<'de> Deserialize<'de> for Address {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        if deserializer.is_human_readable() {
            deserializer.deserialize_str(AddressTextVisitor)
        } else {
            let bytes = encoding::deserialize_array::<D, 38>(deserializer)?;
            Self::from_bytes(&bytes).map_err(de::Error::custom)
        }
    }
}

struct AddressTextVisitor;

impl de::Visitor<'_> for AddressTextVisitor {
    type Value = Address;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a base58 Carrier address")
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<Address, E> {
        text.parse().map_err(E::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_checksum_is_crc_16_ibm_sdlc() {
        // The catalogue's check value: the CRC of "123456789".
        assert_eq!(CHECKSUM.checksum(b"123456789"), 0x906e);
    }
}
