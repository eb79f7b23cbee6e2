//! The bytes the demo sends: a deterministic pattern in which every byte depends on its
//! offset, so the receiver checks each one without a copy of what was sent, and a lost,
//! repeated or reordered piece shows as a mismatch.

/// The byte at `offset`: the offset's 8-byte word, mixed (SplitMix64's finalizer), then its
/// byte within the word.
fn byte_at(offset: u64) -> u8 {
    let mut word = (offset >> 3).wrapping_add(0x9E37_79B9_7F4A_7C15);
    word = (word ^ (word >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    word = (word ^ (word >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    word ^= word >> 31;
    word.to_le_bytes()[(offset & 7) as usize]
}

/// Fills `buf` with the pattern from `offset` on.
pub(super) fn fill(offset: u64, buf: &mut [u8]) {
    for (at, byte) in (offset..).zip(buf.iter_mut()) {
        *byte = byte_at(at);
    }
}

/// The offset of the first byte of `bytes` (which start at `offset`) that is not the
/// pattern's, if any.
pub(super) fn first_mismatch(offset: u64, bytes: &[u8]) -> Option<u64> {
    (offset..)
        .zip(bytes)
        .find(|(at, byte)| byte_at(*at) != **byte)
        .map(|(at, _)| at)
}
