//! Carrier identities and the cryptography built on them. No network code.
//!
//! | item | what it is |
//! |---|---|
//! | [`Keypair`] | a node's secret Ed25519 key (from OS randomness or a seed), with the X25519 key derived from it |
//! | [`CarrierId`] | a node's identity: its 32-byte Ed25519 public key, base58; parsing rejects non-canonical and small-order points |
//! | [`Address`], [`Nospam`] | what a person hands out for friend requests: `id ‖ nospam ‖ CRC-16 checksum`, base58 |
//! | [`Context`], [`Signature`] | signatures always cover a context naming their use, so one made for one purpose never verifies for another |
//! | [`SharedKey`] | pairwise key from X25519 and both Ed25519 IDs ([`Keypair::shared_key`]) |
//! | [`seal`], [`seal_signed`], [`Keypair::seal_to`] | boxes: anonymous sealed, signed then sealed, authenticated between two IDs ([`boxes`](crate#boxes)) |
//! | [`key_file`] | a keypair on disk: versioned, checksummed, written atomically, owner-only |
//! | [`IdError`], [`AddressError`], [`CryptoError`], [`KeyFileError`] | what can go wrong, one enum per kind of operation |
//!
//! # Example
//!
//! ```
//! use carrier_id::{seal_signed, Address, CarrierId, Context, Keypair, Nospam};
//!
//! const INTRO: Context = Context::new("example/intro/v1");
//!
//! let alice = Keypair::generate();
//! let bob = Keypair::from_seed(&[42; 32]);
//!
//! // Bob hands out his address; Alice parses it and finds his ID.
//! let address: Address = Address::new(bob.id(), Nospam::random()).to_string().parse()?;
//! let bob_id: CarrierId = address.id();
//!
//! // Signatures are bound to their context.
//! let signature = alice.sign(INTRO, b"hello");
//! alice.id().verify(INTRO, b"hello", &signature)?;
//!
//! // Only Bob can open this, and he learns it is from Alice.
//! let sealed = seal_signed(&alice, &bob_id, INTRO, b"hello, Bob")?;
//! let (sender, plaintext) = bob.open_signed(INTRO, &sealed)?;
//! assert_eq!((sender, plaintext.as_slice()), (alice.id(), &b"hello, Bob"[..]));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Boxes
//!
//! All boxes are XChaCha20-Poly1305 with keys derived by blake3. See [`seal`] (anonymous
//! sender, to a [`CarrierId`]), [`seal_signed`] (signed, naming the recipient inside the
//! signature, then sealed) and [`Keypair::seal_to`] (between two identities with their
//! [`SharedKey`]). The layouts are fixed, with overheads [`SEALED_OVERHEAD`],
//! [`SEALED_SIGNED_OVERHEAD`] and [`BOX_OVERHEAD`].
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod address;
mod boxes;
mod context;
mod encoding;
mod error;
mod id;
pub mod key_file;
mod keypair;
mod shared_key;
mod signature;

pub use address::{Address, Nospam};
pub use boxes::{seal, seal_signed, BOX_OVERHEAD, SEALED_OVERHEAD, SEALED_SIGNED_OVERHEAD};
#[doc(hidden)]
pub use boxes::{seal_signed_with_ephemeral, seal_with_ephemeral};
pub use context::Context;
pub use error::{AddressError, Corruption, CryptoError, IdError, KeyFileError};
pub use id::CarrierId;
pub use keypair::Keypair;
pub use shared_key::SharedKey;
pub use signature::Signature;
