//! The 256-bit key space shared by node IDs and value keys, and its XOR metric.

use std::fmt;

use carrier_id::CarrierId;
use serde::{Deserialize, Serialize};

/// Domain separation for keys of mutable values (owner ID and salt).
const MUTABLE_KEY_CONTEXT: &str = "carrier/dht/mutable-key/v1";

/// A point of the DHT's 256-bit key space: a node's ID or the key of a stored value.
///
/// Node keys are the raw bytes of the node's [`CarrierId`]. They are kept unvalidated here on
/// purpose: a reply lists up to `K` contacts, and checking each one as a curve point would cost
/// more than the rest of the packet; an ID is validated only when a node first derives a pair
/// key with it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Key(pub [u8; 32]);

impl Key {
    /// The key of a node.
    pub fn of_node(id: &CarrierId) -> Self {
        Key(id.to_bytes())
    }

    /// The key of an immutable value: blake3 of its bytes.
    pub fn of_immutable(data: &[u8]) -> Self {
        Key(*blake3::hash(data).as_bytes())
    }

    /// The key of a mutable value: derived from its owner's ID and a salt, so one owner can
    /// keep many values and nobody else can write any of them.
    pub fn of_mutable(owner: &CarrierId, salt: &[u8]) -> Self {
        let mut hasher = blake3::Hasher::new_derive_key(MUTABLE_KEY_CONTEXT);
        hasher.update(owner.as_bytes());
        hasher.update(&(salt.len() as u64).to_le_bytes());
        hasher.update(salt);
        Key(*hasher.finalize().as_bytes())
    }

    /// XOR distance to `other`.
    pub fn distance(&self, other: &Key) -> Distance {
        let mut out = [0u8; 32];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = self.0[i] ^ other.0[i];
        }
        Distance(out)
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// A key sharing exactly `prefix_len` leading bits with `self` (the next bit differs), the
    /// remaining bits taken from `random`. Used to refresh the bucket of that prefix length.
    pub fn with_common_prefix(&self, prefix_len: usize, random: [u8; 32]) -> Key {
        let prefix_len = prefix_len.min(255);
        let mut out = random;
        for bit in 0..=prefix_len {
            let byte = bit / 8;
            let mask = 0x80u8 >> (bit % 8);
            let own = self.0[byte] & mask;
            let value = if bit == prefix_len { own ^ mask } else { own };
            out[byte] = (out[byte] & !mask) | value;
        }
        Key(out)
    }
}

impl From<CarrierId> for Key {
    fn from(id: CarrierId) -> Self {
        Key::of_node(&id)
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Eight hex digits tell keys apart in logs and tests without flooding them.
        write!(f, "Key(")?;
        for byte in &self.0[..4] {
            write!(f, "{byte:02x}")?;
        }
        write!(f, "…)")
    }
}

/// The XOR distance between two keys; ordered as a 256-bit big-endian number.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct Distance(pub [u8; 32]);

impl Distance {
    /// Number of leading zero bits: the length of the prefix the two keys share (256 when
    /// they are equal).
    pub fn leading_zeros(&self) -> usize {
        let mut zeros = 0;
        for byte in &self.0 {
            if *byte == 0 {
                zeros += 8;
            } else {
                zeros += byte.leading_zeros() as usize;
                break;
            }
        }
        zeros
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distance_is_symmetric_and_zero_to_itself() {
        let a = Key([1; 32]);
        let b = Key([0x81; 32]);
        assert_eq!(a.distance(&b), b.distance(&a));
        assert_eq!(a.distance(&a).leading_zeros(), 256);
        assert_eq!(a.distance(&b).leading_zeros(), 0);
    }

    #[test]
    fn common_prefix_key_has_exactly_that_prefix() {
        let own = Key([0b1010_1010; 32]);
        for prefix in [0usize, 1, 7, 8, 13, 100, 255] {
            let key = own.with_common_prefix(prefix, [0x5a; 32]);
            assert_eq!(
                own.distance(&key).leading_zeros(),
                prefix,
                "prefix {prefix}"
            );
        }
    }
}
