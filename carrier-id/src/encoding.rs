//! Text and serde encodings shared by the fixed-size types: base58 (Bitcoin alphabet) and
//! fixed-length byte arrays.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, SeqAccess, Visitor};
use serde::ser::SerializeTuple;
use serde::{Deserializer, Serializer};

/// Why text is not the base58 encoding of exactly `N` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Base58Error {
    BadCharacter {
        character: char,
        index: usize,
    },
    TooLong {
        max_chars: usize,
        actual_chars: usize,
    },
    WrongLength {
        expected: usize,
        actual: usize,
    },
}

/// The longest base58 text that `n` bytes can encode to: ⌈n · log(256) / log(58)⌉.
/// Leading zero bytes each become one `1`, which never exceeds this bound.
pub(crate) const fn max_base58_chars(n: usize) -> usize {
    // log(256)/log(58) = 1.36565823..., rounded up so the bound is never too small.
    (n * 1_365_659).div_ceil(1_000_000)
}

fn is_base58_char(c: char) -> bool {
    matches!(c, '1'..='9' | 'A'..='H' | 'J'..='N' | 'P'..='Z' | 'a'..='k' | 'm'..='z')
}

/// Encodes bytes as base58 (Bitcoin alphabet).
pub(crate) fn encode_base58(bytes: &[u8]) -> String {
    bs58::encode(bytes).into_string()
}

/// Decodes base58 text that must hold exactly `N` bytes. Checks every character first,
/// then the length, so the error names the first problem a person would fix.
pub(crate) fn decode_base58<const N: usize>(text: &str) -> Result<[u8; N], Base58Error> {
    if let Some((index, character)) = text.chars().enumerate().find(|(_, c)| !is_base58_char(*c)) {
        return Err(Base58Error::BadCharacter { character, index });
    }
    // Every character is ASCII now, so bytes and characters count the same.
    let max_chars = max_base58_chars(N);
    if text.len() > max_chars {
        return Err(Base58Error::TooLong {
            max_chars,
            actual_chars: text.len(),
        });
    }
    // At most `max_chars` characters decode to fewer than `N + 8` bytes.
    let mut buffer = [0u8; 64];
    let decoded = bs58::decode(text)
        .onto(&mut buffer[..])
        // Unreachable: the alphabet was checked and `buffer` holds any text of
        // `max_chars` characters for the sizes used in this crate (N <= 38).
        .map_err(|_| Base58Error::TooLong {
            max_chars,
            actual_chars: text.len(),
        })?;
    if decoded != N {
        return Err(Base58Error::WrongLength {
            expected: N,
            actual: decoded,
        });
    }
    let mut out = [0u8; N];
    out.copy_from_slice(&buffer[..N]);
    Ok(out)
}

/// Serializes a byte array as a fixed-size tuple: exactly `N` bytes in postcard, with no
/// length prefix.
pub(crate) fn serialize_array<S: Serializer, const N: usize>(
    bytes: &[u8; N],
    serializer: S,
) -> Result<S::Ok, S::Error> {
    let mut tuple = serializer.serialize_tuple(N)?;
    for byte in bytes {
        tuple.serialize_element(byte)?;
    }
    tuple.end()
}

/// Deserializes what [`serialize_array`] wrote (or a byte string of exactly `N` bytes, for
/// formats that offer one).
pub(crate) fn deserialize_array<'de, D: Deserializer<'de>, const N: usize>(
    deserializer: D,
) -> Result<[u8; N], D::Error> {
    deserializer.deserialize_tuple(N, ArrayVisitor::<N>(PhantomData))
}

struct ArrayVisitor<const N: usize>(PhantomData<[u8; N]>);

impl<'de, const N: usize> Visitor<'de> for ArrayVisitor<N> {
    type Value = [u8; N];

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{N} bytes")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut out = [0u8; N];
        for (index, slot) in out.iter_mut().enumerate() {
            *slot = seq
                .next_element()?
                .ok_or_else(|| de::Error::invalid_length(index, &self))?;
        }
        Ok(out)
    }

    fn visit_bytes<E: de::Error>(self, bytes: &[u8]) -> Result<Self::Value, E> {
        <[u8; N]>::try_from(bytes).map_err(|_| E::invalid_length(bytes.len(), &self))
    }
}

/// Writes bytes as lowercase hex (for `Debug` output without a dependency).
pub(crate) fn write_hex(f: &mut fmt::Formatter<'_>, bytes: &[u8]) -> fmt::Result {
    bytes.iter().try_for_each(|byte| write!(f, "{byte:02x}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_chars_bound_is_tight_for_the_sizes_used() {
        assert_eq!(max_base58_chars(32), encode_base58(&[0xff; 32]).len());
        assert_eq!(max_base58_chars(38), encode_base58(&[0xff; 38]).len());
        assert_eq!(max_base58_chars(64), encode_base58(&[0xff; 64]).len());
        assert!(encode_base58(&[0; 32]).len() <= max_base58_chars(32));
    }

    #[test]
    fn the_character_check_is_the_bitcoin_alphabet() {
        let alphabet = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";
        for c in (0u32..0x300).filter_map(char::from_u32) {
            assert_eq!(is_base58_char(c), alphabet.contains(c), "{c:?}");
        }
    }

    #[test]
    fn the_longest_text_fits_the_decode_buffer() {
        let longest = "z".repeat(max_base58_chars(38));
        assert!(matches!(
            decode_base58::<38>(&longest),
            Err(Base58Error::WrongLength { .. })
        ));
    }
}
