//! [`SharedKey`]: a pairwise symmetric key, and how it is derived.

use std::fmt;

use zeroize::Zeroize;

use crate::{CarrierId, Context};

/// blake3 `derive_key` context for pairwise keys. Fixed forever: changing it changes every
/// pairwise key (the committed test vectors catch that).
const PAIR_KEY_DERIVATION: &str = "carrier-id 2026-11 pairwise key v1";

/// A 32-byte symmetric key shared by two identities (see
/// [`Keypair::shared_key`](crate::Keypair::shared_key)). Zeroized on drop; `Debug` does not
/// show it.
#[derive(Clone)]
pub struct SharedKey([u8; 32]);

impl SharedKey {
    /// The key's bytes, for a cipher.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl Drop for SharedKey {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl fmt::Debug for SharedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SharedKey(<redacted>)")
    }
}

/// `blake3::derive_key(PAIR_KEY_DERIVATION, len(context) ‖ context ‖ dh ‖ low_id ‖ high_id)`,
/// the IDs in ascending byte order so both sides hash the same bytes.
pub(crate) fn derive_pair_key(
    context: Context,
    dh: &[u8; 32],
    a: &CarrierId,
    b: &CarrierId,
) -> SharedKey {
    let (low, high) = if a <= b { (a, b) } else { (b, a) };
    let mut hasher = blake3::Hasher::new_derive_key(PAIR_KEY_DERIVATION);
    context.hash_into(&mut hasher);
    hasher.update(dh);
    hasher.update(low.as_bytes());
    hasher.update(high.as_bytes());
    SharedKey(*hasher.finalize().as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Keypair;

    const TEST: Context = Context::new("carrier-id/test/v1");

    #[test]
    fn the_derivation_does_not_depend_on_who_is_first() {
        let a = Keypair::from_seed(&[1; 32]).id();
        let b = Keypair::from_seed(&[2; 32]).id();
        let dh = [9; 32];
        assert_eq!(
            derive_pair_key(TEST, &dh, &a, &b).as_bytes(),
            derive_pair_key(TEST, &dh, &b, &a).as_bytes()
        );
    }

    #[test]
    fn the_derivation_binds_each_input() {
        let a = Keypair::from_seed(&[1; 32]).id();
        let b = Keypair::from_seed(&[2; 32]).id();
        let c = Keypair::from_seed(&[3; 32]).id();
        let base = *derive_pair_key(TEST, &[9; 32], &a, &b).as_bytes();
        let other_context = Context::new("carrier-id/test/v2");
        assert_ne!(
            base,
            *derive_pair_key(other_context, &[9; 32], &a, &b).as_bytes()
        );
        assert_ne!(base, *derive_pair_key(TEST, &[8; 32], &a, &b).as_bytes());
        assert_ne!(base, *derive_pair_key(TEST, &[9; 32], &a, &c).as_bytes());
        assert_ne!(base, *derive_pair_key(TEST, &[9; 32], &c, &b).as_bytes());
    }

    #[test]
    fn debug_redacts_the_key() {
        let key = SharedKey([0x5a; 32]);
        assert_eq!(format!("{key:?}"), "SharedKey(<redacted>)");
    }
}
