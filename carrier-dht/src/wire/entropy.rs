//! The core's source of randomness: a deterministic generator seeded by the driver.
//!
//! The core reads no clock and no OS state, so it cannot call the OS for randomness either: the
//! driver hands it a 32-byte seed from the OS (a simulation hands it a fixed one, which makes
//! runs reproducible). Output is blake3 in keyed mode over a counter, a PRF, so nonces and
//! transaction IDs are unpredictable to anyone without the seed.

/// A seeded cryptographic random generator (blake3 keyed over a counter).
#[derive(Clone)]
pub struct Entropy {
    key: [u8; 32],
    counter: u64,
}

impl Entropy {
    /// A generator seeded with `seed` (from the OS in production).
    pub fn from_seed(seed: [u8; 32]) -> Self {
        Self {
            key: seed,
            counter: 0,
        }
    }

    /// Fills `out` with fresh random bytes.
    pub fn fill(&mut self, out: &mut [u8]) {
        let mut hasher = blake3::Hasher::new_keyed(&self.key);
        hasher.update(&self.counter.to_le_bytes());
        self.counter = self.counter.wrapping_add(1);
        hasher.finalize_xof().fill(out);
    }

    /// 32 fresh random bytes.
    pub fn bytes32(&mut self) -> [u8; 32] {
        let mut out = [0u8; 32];
        self.fill(&mut out);
        out
    }

    /// A fresh random `u64`.
    pub fn next_u64(&mut self) -> u64 {
        let mut out = [0u8; 8];
        self.fill(&mut out);
        u64::from_le_bytes(out)
    }
}

impl std::fmt::Debug for Entropy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Entropy(..)")
    }
}
