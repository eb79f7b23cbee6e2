//! Key files: round trips, damaged and foreign files, permissions, atomic writes.
// Fixture helpers outside `#[test]` functions panic on broken fixtures, as tests do.
#![allow(clippy::unwrap_used)]

use std::fs;
use std::path::{Path, PathBuf};

use carrier_id::key_file::{self, FILE_LEN, MAGIC};
use carrier_id::{Corruption, KeyFileError, Keypair};
use proptest::prelude::*;

fn saved(seed: [u8; 32]) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("identity.key");
    key_file::save(&path, &Keypair::from_seed(&seed)).unwrap();
    (dir, path)
}

/// Writes `bytes` over the key file (keeping it owner-only), loads it with
/// `load_or_create`, and checks the file is left exactly as it was and nothing else was
/// written next to it.
fn load_damaged(path: &Path, bytes: &[u8]) -> KeyFileError {
    fs::write(path, bytes).unwrap();
    let modified = fs::metadata(path).unwrap().modified().unwrap();
    let error = key_file::load_or_create(path).unwrap_err();
    assert_eq!(
        fs::read(path).unwrap(),
        bytes,
        "the file must be left untouched"
    );
    assert_eq!(fs::metadata(path).unwrap().modified().unwrap(), modified);
    assert_eq!(
        fs::read_dir(path.parent().unwrap()).unwrap().count(),
        1,
        "no stray files"
    );
    assert!(matches!(key_file::load(path), Err(ref e) if e.to_string() == error.to_string()));
    error
}

#[test]
fn load_or_create_creates_once_then_loads_the_same_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("identity.key");
    let created = key_file::load_or_create(&path).unwrap();
    let bytes = fs::read(&path).unwrap();
    assert_eq!(bytes.len(), FILE_LEN);
    let loaded = key_file::load_or_create(&path).unwrap();
    assert_eq!(loaded.id(), created.id());
    assert_eq!(loaded.seed(), created.seed());
    assert_eq!(fs::read(&path).unwrap(), bytes);
    assert_eq!(
        fs::read_dir(dir.path()).unwrap().count(),
        1,
        "no temporary file left behind"
    );
}

#[test]
fn load_or_create_needs_the_directory_to_exist() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("missing").join("identity.key");
    assert!(matches!(
        key_file::load_or_create(&path),
        Err(KeyFileError::Io { .. })
    ));
}

#[test]
fn save_replaces_a_key_atomically() {
    let (dir, path) = saved([1; 32]);
    key_file::save(&path, &Keypair::from_seed(&[2; 32])).unwrap();
    assert_eq!(
        key_file::load(&path).unwrap().id(),
        Keypair::from_seed(&[2; 32]).id()
    );
    assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
}

#[test]
fn a_flipped_byte_anywhere_is_a_specific_error_and_the_file_is_left_alone() {
    let (_dir, path) = saved([7; 32]);
    let good = fs::read(&path).unwrap();
    for index in 0..FILE_LEN {
        let mut damaged = good.clone();
        damaged[index] ^= 0x01;
        let error = load_damaged(&path, &damaged);
        match index {
            0..12 => assert!(
                matches!(error, KeyFileError::NotAKeyFile { .. }),
                "{index}: {error}"
            ),
            12 => assert!(
                matches!(error, KeyFileError::UnsupportedVersion { version: 0, .. }),
                "{error}"
            ),
            _ => assert!(
                matches!(
                    error,
                    KeyFileError::Corrupt {
                        corruption: Corruption::Checksum,
                        ..
                    }
                ),
                "{index}: {error}"
            ),
        }
    }
}

#[test]
fn a_truncated_file_is_truncated() {
    let (_dir, path) = saved([7; 32]);
    let good = fs::read(&path).unwrap();
    for len in [0, 5, 12, 13, 44, FILE_LEN - 1] {
        let error = load_damaged(&path, &good[..len]);
        assert!(
            matches!(error, KeyFileError::Truncated { expected: FILE_LEN, actual, .. } if actual == len),
            "{len}: {error}"
        );
    }
}

#[test]
fn a_foreign_file_is_not_a_key_file() {
    let (_dir, path) = saved([7; 32]);
    for foreign in [
        &b"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI"[..],
        b"{}",
        &[0u8; FILE_LEN],
    ] {
        let error = load_damaged(&path, foreign);
        assert!(matches!(error, KeyFileError::NotAKeyFile { .. }), "{error}");
    }
}

#[test]
fn a_future_version_is_unsupported() {
    let (_dir, path) = saved([7; 32]);
    let mut bytes = fs::read(&path).unwrap();
    bytes[MAGIC.len()] = 2;
    let error = load_damaged(&path, &bytes);
    assert!(
        matches!(error, KeyFileError::UnsupportedVersion { version: 2, .. }),
        "{error}"
    );
}

#[test]
fn trailing_bytes_are_corruption() {
    let (_dir, path) = saved([7; 32]);
    let mut bytes = fs::read(&path).unwrap();
    bytes.push(0);
    let error = load_damaged(&path, &bytes);
    assert!(
        matches!(
            error,
            KeyFileError::Corrupt {
                corruption: Corruption::TrailingBytes,
                ..
            }
        ),
        "{error}"
    );
}

#[test]
fn a_public_key_that_does_not_match_the_seed_is_a_key_mismatch() {
    // A file whose checksum is right but whose public key belongs to another seed.
    let (_dir, path) = saved([7; 32]);
    let mut bytes = fs::read(&path).unwrap();
    bytes[45..77].copy_from_slice(Keypair::from_seed(&[8; 32]).id().as_bytes());
    let checksum = blake3::derive_key("carrier-id 2026-11 key file checksum v1", &bytes[..77]);
    bytes[77..].copy_from_slice(&checksum);
    let error = load_damaged(&path, &bytes);
    assert!(
        matches!(
            error,
            KeyFileError::Corrupt {
                corruption: Corruption::KeyMismatch,
                ..
            }
        ),
        "{error}"
    );
}

#[test]
fn a_missing_file_is_an_io_error_for_load() {
    let dir = tempfile::tempdir().unwrap();
    let error = key_file::load(&dir.path().join("absent")).unwrap_err();
    assert!(
        matches!(&error, KeyFileError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound)
    );
}

#[cfg(unix)]
mod unix {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn created_and_saved_files_are_owner_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("identity.key");
        key_file::load_or_create(&path).unwrap();
        assert_eq!(mode(&path), 0o600);
        let saved_path = dir.path().join("saved.key");
        key_file::save(&saved_path, &Keypair::from_seed(&[1; 32])).unwrap();
        assert_eq!(mode(&saved_path), 0o600);
    }

    #[test]
    fn a_key_file_others_can_read_is_refused_and_left_alone() {
        let (_dir, path) = saved([7; 32]);
        let bytes = fs::read(&path).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let error = key_file::load_or_create(&path).unwrap_err();
        assert!(
            matches!(error, KeyFileError::Permissions { mode: 0o644, .. }),
            "{error}"
        );
        assert_eq!(fs::read(&path).unwrap(), bytes);
        assert_eq!(mode(&path), 0o644);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]

    #[test]
    fn every_keypair_round_trips_through_a_key_file(seed in any::<[u8; 32]>()) {
        let (_dir, path) = saved(seed);
        let loaded = key_file::load(&path).unwrap();
        prop_assert_eq!(loaded.seed(), &seed);
        prop_assert_eq!(loaded.id(), Keypair::from_seed(&seed).id());
    }

    #[test]
    fn arbitrary_bytes_as_a_key_file_give_an_error_and_stay_untouched(
        bytes in proptest::collection::vec(any::<u8>(), 0..200),
    ) {
        let (_dir, path) = saved([7; 32]);
        load_damaged(&path, &bytes);
    }

    #[test]
    fn any_changed_byte_in_a_key_file_gives_an_error_and_stays_untouched(
        index in 0..FILE_LEN,
        change in 1..=255u8,
    ) {
        let (_dir, path) = saved([7; 32]);
        let mut bytes = fs::read(&path).unwrap();
        bytes[index] ^= change;
        load_damaged(&path, &bytes);
    }
}
