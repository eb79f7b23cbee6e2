//! The error types of this crate, one enum per kind of operation.

use std::io;
use std::path::PathBuf;

/// Why bytes or text are not a valid [`CarrierId`](crate::CarrierId).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IdError {
    /// The text holds a character outside the base58 (Bitcoin) alphabet.
    #[error("invalid base58 character {character:?} at character {index}")]
    BadCharacter {
        /// The offending character.
        character: char,
        /// Its position, counted in characters from 0.
        index: usize,
    },
    /// The text is longer than any base58 encoding of 32 bytes; it is rejected before
    /// decoding, so long input costs no quadratic work.
    #[error("{actual_chars} characters is longer than any Carrier ID ({max_chars} at most)")]
    TooLong {
        /// The longest base58 text a Carrier ID can have.
        max_chars: usize,
        /// The length of the text given, in characters.
        actual_chars: usize,
    },
    /// The bytes (raw, or decoded from base58) are not 32 long.
    #[error("a Carrier ID is {expected} bytes, got {actual}")]
    WrongLength {
        /// Always [`CarrierId::LEN`](crate::CarrierId::LEN).
        expected: usize,
        /// The number of bytes given.
        actual: usize,
    },
    /// The encoding is not the canonical one of its point: the y coordinate is not reduced
    /// (y ≥ 2^255 − 19), or the sign bit is set on a point whose x is zero.
    #[error("non-canonical point encoding")]
    NonCanonical,
    /// The bytes are not the encoding of any point on the Ed25519 curve.
    #[error("not a point on the Ed25519 curve")]
    NotOnCurve,
    /// The point is one of the 8 points of small order, which no secret key produces and
    /// which would make signatures and key agreement meaningless.
    #[error("small-order point")]
    SmallOrder,
}

/// Why bytes or text are not a valid [`Address`](crate::Address).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AddressError {
    /// The checksum matched, but the first 32 bytes are not a valid Carrier ID.
    #[error("the address holds an invalid Carrier ID: {0}")]
    Id(#[source] IdError),
    /// The text holds a character outside the base58 (Bitcoin) alphabet.
    #[error("invalid base58 character {character:?} at character {index}")]
    BadCharacter {
        /// The offending character.
        character: char,
        /// Its position, counted in characters from 0.
        index: usize,
    },
    /// The text is longer than any base58 encoding of an address.
    #[error("{actual_chars} characters is longer than any address ({max_chars} at most)")]
    TooLong {
        /// The longest base58 text an address can have.
        max_chars: usize,
        /// The length of the text given, in characters.
        actual_chars: usize,
    },
    /// The bytes (raw, or decoded from base58) are not 38 long.
    #[error("an address is {expected} bytes, got {actual}")]
    WrongLength {
        /// Always [`Address::LEN`](crate::Address::LEN).
        expected: usize,
        /// The number of bytes given.
        actual: usize,
    },
    /// The checksum does not match: the address was mistyped or damaged.
    #[error("address checksum mismatch (expected {expected:04x}, found {found:04x})")]
    Checksum {
        /// The checksum computed over the first 36 bytes.
        expected: u16,
        /// The checksum the address carries.
        found: u16,
    },
}

/// Why a signature, a key agreement or a box failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CryptoError {
    /// The signature is not valid for this key, context and message (strict verification).
    #[error("invalid signature")]
    BadSignature,
    /// Bytes given as a signature are not 64 long.
    #[error("a signature is 64 bytes, got {actual}")]
    SignatureLength {
        /// The number of bytes given.
        actual: usize,
    },
    /// The Diffie-Hellman output is all zeros (a small-order public key was involved).
    #[error("weak key: the Diffie-Hellman output is all zeros")]
    WeakKey,
    /// Authenticated decryption failed: wrong key, wrong context, or tampered data.
    #[error("decryption failed")]
    Decrypt,
    /// The plaintext is too long for the cipher to encrypt.
    #[error("plaintext too long to encrypt")]
    Encrypt,
    /// The box is shorter than its fixed overhead.
    #[error("box too short: {actual} bytes, at least {min} needed")]
    TooShort {
        /// The box format's fixed overhead.
        min: usize,
        /// The length of the bytes given.
        actual: usize,
    },
    /// A signed box names a sender that is not a valid Carrier ID.
    #[error("invalid sender ID: {0}")]
    Id(#[source] IdError),
}

/// What is wrong inside a key file whose header is fine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Corruption {
    /// The checksum over the file's contents does not match.
    Checksum,
    /// The checksum matches but the stored public key is not the one the seed gives.
    KeyMismatch,
    /// The file is longer than the format allows.
    TrailingBytes,
}

impl std::fmt::Display for Corruption {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Checksum => "checksum mismatch",
            Self::KeyMismatch => "stored public key does not match the secret key",
            Self::TrailingBytes => "unexpected bytes after the end of the key",
        })
    }
}

/// Why a key file could not be loaded or saved. A file that fails to load is never
/// replaced or modified.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyFileError {
    /// Reading, writing or syncing the file (or its directory) failed.
    #[error("key file {}: {source}", path.display())]
    Io {
        /// The file (or directory) concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The file starts like a key file but ends early.
    #[error("key file {} is truncated: {actual} bytes, {expected} expected", path.display())]
    Truncated {
        /// The key file.
        path: PathBuf,
        /// The length the format requires.
        expected: usize,
        /// The length found.
        actual: usize,
    },
    /// The file does not start with the key file magic: it is something else.
    #[error("{} is not a Carrier key file", path.display())]
    NotAKeyFile {
        /// The file.
        path: PathBuf,
    },
    /// The file is a Carrier key file of a version this code does not read.
    #[error("key file {} has unsupported version {version}", path.display())]
    UnsupportedVersion {
        /// The key file.
        path: PathBuf,
        /// The version byte found.
        version: u8,
    },
    /// The file is damaged.
    #[error("key file {} is corrupt: {corruption}", path.display())]
    Corrupt {
        /// The key file.
        path: PathBuf,
        /// What is wrong.
        corruption: Corruption,
    },
    /// (Unix) The file can be read or written by users other than its owner.
    #[error(
        "key file {} has mode {mode:o}; it must be accessible by its owner only (0600)",
        path.display()
    )]
    Permissions {
        /// The key file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
}
