//! Field types with a length cap that their decoder enforces before it allocates.
//!
//! serde's own `Vec` visitor preallocates from the length prefix (up to a limit), and a
//! postcard length prefix is attacker-controlled; these types read the prefix, refuse anything
//! over their cap, and only then allocate, so no decoder allocates more than its frame's cap.

use std::fmt;
use std::marker::PhantomData;
use std::ops::Deref;

use serde::de::{self, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A value longer than its field's cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{len} items exceed the cap of {cap}")]
pub struct TooLong {
    /// The length that was offered.
    pub len: usize,
    /// The field's cap.
    pub cap: usize,
}

/// A byte string of at most `N` bytes.
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub struct BoundedBytes<const N: usize>(Vec<u8>);

impl<const N: usize> BoundedBytes<N> {
    /// The cap in bytes.
    pub const CAP: usize = N;

    /// Wraps `bytes`, or says how far over the cap they are.
    pub fn new(bytes: Vec<u8>) -> Result<Self, TooLong> {
        if bytes.len() > N {
            return Err(TooLong {
                len: bytes.len(),
                cap: N,
            });
        }
        Ok(Self(bytes))
    }

    /// Copies `bytes`, or says how far over the cap they are.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, TooLong> {
        Self::new(bytes.to_vec())
    }

    /// The bytes.
    pub fn as_slice(&self) -> &[u8] {
        &self.0
    }

    /// Unwraps the bytes.
    pub fn into_vec(self) -> Vec<u8> {
        self.0
    }
}

impl<const N: usize> Deref for BoundedBytes<N> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0
    }
}

impl<const N: usize> fmt::Debug for BoundedBytes<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BoundedBytes<{N}>({} bytes)", self.0.len())
    }
}

impl<const N: usize> Serialize for BoundedBytes<N> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(&self.0)
    }
}

impl<'de, const N: usize> Deserialize<'de> for BoundedBytes<N> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct BytesVisitor<const N: usize>;
        impl<const N: usize> BytesVisitor<N> {
            fn checked<E: de::Error>(bytes: &[u8]) -> Result<BoundedBytes<N>, E> {
                if bytes.len() > N {
                    return Err(E::invalid_length(
                        bytes.len(),
                        &"a byte string within its cap",
                    ));
                }
                Ok(BoundedBytes(bytes.to_vec()))
            }
        }
        impl<'de, const N: usize> Visitor<'de> for BytesVisitor<N> {
            type Value = BoundedBytes<N>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "at most {N} bytes")
            }
            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Self::Value, E> {
                Self::checked(v)
            }
            fn visit_borrowed_bytes<E: de::Error>(self, v: &'de [u8]) -> Result<Self::Value, E> {
                Self::checked(v)
            }
        }
        deserializer.deserialize_bytes(BytesVisitor::<N>)
    }
}

/// A list of at most `N` items.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct BoundedVec<T, const N: usize>(Vec<T>);

impl<T, const N: usize> BoundedVec<T, N> {
    /// The cap in items.
    pub const CAP: usize = N;

    /// Wraps `items`, or says how far over the cap they are.
    pub fn new(items: Vec<T>) -> Result<Self, TooLong> {
        if items.len() > N {
            return Err(TooLong {
                len: items.len(),
                cap: N,
            });
        }
        Ok(Self(items))
    }

    /// Takes the first `N` items and drops the rest.
    pub fn truncating(mut items: Vec<T>) -> Self {
        items.truncate(N);
        Self(items)
    }

    /// An empty list.
    pub fn empty() -> Self {
        Self(Vec::new())
    }

    /// Unwraps the items.
    pub fn into_vec(self) -> Vec<T> {
        self.0
    }
}

impl<T, const N: usize> Default for BoundedVec<T, N> {
    fn default() -> Self {
        Self::empty()
    }
}

impl<T, const N: usize> Deref for BoundedVec<T, N> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        &self.0
    }
}

impl<T: fmt::Debug, const N: usize> fmt::Debug for BoundedVec<T, N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.0.iter()).finish()
    }
}

impl<T: Serialize, const N: usize> Serialize for BoundedVec<T, N> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.0.iter())
    }
}

impl<'de, T: Deserialize<'de>, const N: usize> Deserialize<'de> for BoundedVec<T, N> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SeqVisitor<T, const N: usize>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>, const N: usize> Visitor<'de> for SeqVisitor<T, N> {
            type Value = BoundedVec<T, N>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "at most {N} items")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                // postcard hands over the decoded length prefix as the size hint: refuse it
                // before allocating anything.
                let hint = seq.size_hint().unwrap_or(0);
                if hint > N {
                    return Err(de::Error::invalid_length(hint, &self));
                }
                let mut items = Vec::with_capacity(hint);
                while let Some(item) = seq.next_element()? {
                    if items.len() == N {
                        return Err(de::Error::invalid_length(N + 1, &self));
                    }
                    items.push(item);
                }
                Ok(BoundedVec(items))
            }
        }
        deserializer.deserialize_seq(SeqVisitor::<T, N>(PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn over_cap_length_prefix_is_refused() {
        let long = postcard::to_allocvec(&vec![7u8; 10]).expect("encode");
        assert!(postcard::from_bytes::<BoundedBytes<9>>(&long).is_err());
        assert!(postcard::from_bytes::<BoundedBytes<10>>(&long).is_ok());
        let list = postcard::to_allocvec(&vec![1u16; 5]).expect("encode");
        assert!(postcard::from_bytes::<BoundedVec<u16, 4>>(&list).is_err());
        assert_eq!(
            postcard::from_bytes::<BoundedVec<u16, 5>>(&list)
                .expect("decode")
                .len(),
            5
        );
    }

    #[test]
    fn huge_length_prefix_does_not_allocate() {
        // A varint claiming u32::MAX items followed by nothing.
        let bytes = [0xff, 0xff, 0xff, 0xff, 0x0f];
        assert!(postcard::from_bytes::<BoundedVec<u64, 8>>(&bytes).is_err());
        assert!(postcard::from_bytes::<BoundedBytes<8>>(&bytes).is_err());
    }
}
