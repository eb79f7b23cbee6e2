//! Key files: a node's [`Keypair`] on disk.
//!
//! # Format (version 1)
//!
//! A key file is exactly 109 bytes:
//!
//! | offset | length | content |
//! |---:|---:|---|
//! | 0 | 12 | magic: `CARRIER-KEY\n` |
//! | 12 | 1 | format version: `1` |
//! | 13 | 32 | Ed25519 seed (the secret key) |
//! | 45 | 32 | the public key, i.e. the [`CarrierId`](crate::CarrierId) |
//! | 77 | 32 | checksum: blake3 `derive_key("carrier-id 2026-11 key file checksum v1", bytes 0..77)` |
//!
//! The public key is stored so that a file whose seed was damaged in a way the checksum
//! misses still cannot load as a different identity.
//!
//! # Safety on disk
//!
//! Files are written atomically: a temporary file in the same directory, written and
//! fsynced, renamed over the target, then the directory fsynced; a crash leaves the old file
//! or the new one, never a mix. On Unix they are created with mode 0600, and [`load`]
//! refuses a file that other users can access, as OpenSSH does.
//!
//! A file that is corrupt, truncated, of an unknown version or not a key file at all is an
//! error ([`KeyFileError`]); [`load_or_create`] never replaces it.
//!
//! ```
//! use carrier_id::key_file;
//!
//! let dir = tempfile::tempdir().unwrap();
//! let path = dir.path().join("identity.key");
//! let created = key_file::load_or_create(&path).unwrap();
//! let loaded = key_file::load_or_create(&path).unwrap();
//! assert_eq!(created.id(), loaded.id());
//! ```

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use rand_core::{OsRng, RngCore};
use zeroize::Zeroizing;

use crate::{Corruption, KeyFileError, Keypair};

/// The first bytes of every key file.
pub const MAGIC: [u8; 12] = *b"CARRIER-KEY\n";
/// The format version this code writes and reads.
pub const VERSION: u8 = 1;
/// Length of a version 1 key file in bytes.
pub const FILE_LEN: usize = MAGIC.len() + 1 + 32 + 32 + 32;

const SEED_AT: usize = MAGIC.len() + 1;
const PUBLIC_AT: usize = SEED_AT + 32;
const CHECKSUM_AT: usize = PUBLIC_AT + 32;

/// blake3 `derive_key` context of the key file checksum. Fixed forever.
const CHECKSUM_DERIVATION: &str = "carrier-id 2026-11 key file checksum v1";

/// Loads the keypair stored at `path`, or, if there is no file there, creates a new one and
/// stores it. The parent directory must exist.
///
/// An existing file that does not load is an error and is left as it is. If another process
/// creates the file at the same moment, its keypair is the one loaded, never overwritten.
pub fn load_or_create(path: &Path) -> Result<Keypair, KeyFileError> {
    match load(path) {
        Err(KeyFileError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {}
        loaded => return loaded,
    }
    let keypair = Keypair::generate();
    let temp = write_temp(path, &keypair)?;
    match persist_new(&temp, path) {
        Ok(true) => {
            sync_parent(path)?;
            Ok(keypair)
        }
        Ok(false) => load(path),
        Err(source) => {
            let _ = fs::remove_file(&temp);
            Err(KeyFileError::Io {
                path: path.to_owned(),
                source,
            })
        }
    }
}

/// Loads the keypair stored at `path`.
pub fn load(path: &Path) -> Result<Keypair, KeyFileError> {
    let io_error = |source| KeyFileError::Io {
        path: path.to_owned(),
        source,
    };
    let file = File::open(path).map_err(io_error)?;
    let metadata = file.metadata().map_err(io_error)?;
    // Read one byte more than a key file holds: enough to tell it is too long, never more.
    let mut bytes = Zeroizing::new(Vec::with_capacity(FILE_LEN + 1));
    file.take(FILE_LEN as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(io_error)?;
    let keypair = decode(&bytes).map_err(|problem| problem.at(path))?;
    check_owner_only(path, &metadata)?;
    Ok(keypair)
}

/// Stores `keypair` at `path` atomically (replacing any file there) with owner-only
/// permissions.
pub fn save(path: &Path, keypair: &Keypair) -> Result<(), KeyFileError> {
    let temp = write_temp(path, keypair)?;
    if let Err(source) = fs::rename(&temp, path) {
        let _ = fs::remove_file(&temp);
        return Err(KeyFileError::Io {
            path: path.to_owned(),
            source,
        });
    }
    sync_parent(path)
}

/// The bytes of `keypair`'s key file.
fn encode(keypair: &Keypair) -> Zeroizing<[u8; FILE_LEN]> {
    let mut bytes = Zeroizing::new([0u8; FILE_LEN]);
    bytes[..MAGIC.len()].copy_from_slice(&MAGIC);
    bytes[MAGIC.len()] = VERSION;
    bytes[SEED_AT..PUBLIC_AT].copy_from_slice(keypair.seed());
    bytes[PUBLIC_AT..CHECKSUM_AT].copy_from_slice(keypair.id().as_bytes());
    let checksum = blake3::derive_key(CHECKSUM_DERIVATION, &bytes[..CHECKSUM_AT]);
    bytes[CHECKSUM_AT..].copy_from_slice(&checksum);
    bytes
}

/// What is wrong with a key file's bytes, before the path is known.
enum Problem {
    Truncated(usize),
    NotAKeyFile,
    UnsupportedVersion(u8),
    Corrupt(Corruption),
}

impl Problem {
    fn at(self, path: &Path) -> KeyFileError {
        let path = path.to_owned();
        match self {
            Self::Truncated(actual) => KeyFileError::Truncated {
                path,
                expected: FILE_LEN,
                actual,
            },
            Self::NotAKeyFile => KeyFileError::NotAKeyFile { path },
            Self::UnsupportedVersion(version) => KeyFileError::UnsupportedVersion { path, version },
            Self::Corrupt(corruption) => KeyFileError::Corrupt { path, corruption },
        }
    }
}

/// Parses a key file, checking in the order a reader would want to hear about problems:
/// what the file is, which version, whether it is whole, whether it is intact.
fn decode(bytes: &[u8]) -> Result<Keypair, Problem> {
    if bytes.len() < MAGIC.len() {
        // A prefix of the magic is a key file cut short; anything else is something else.
        return Err(if MAGIC.starts_with(bytes) {
            Problem::Truncated(bytes.len())
        } else {
            Problem::NotAKeyFile
        });
    }
    if bytes[..MAGIC.len()] != MAGIC {
        return Err(Problem::NotAKeyFile);
    }
    match bytes.get(MAGIC.len()) {
        None => return Err(Problem::Truncated(bytes.len())),
        Some(&VERSION) => {}
        Some(&version) => return Err(Problem::UnsupportedVersion(version)),
    }
    if bytes.len() < FILE_LEN {
        return Err(Problem::Truncated(bytes.len()));
    }
    if bytes.len() > FILE_LEN {
        return Err(Problem::Corrupt(Corruption::TrailingBytes));
    }
    let checksum = blake3::derive_key(CHECKSUM_DERIVATION, &bytes[..CHECKSUM_AT]);
    if checksum[..] != bytes[CHECKSUM_AT..] {
        return Err(Problem::Corrupt(Corruption::Checksum));
    }
    let mut seed = Zeroizing::new([0u8; 32]);
    seed.copy_from_slice(&bytes[SEED_AT..PUBLIC_AT]);
    let keypair = Keypair::from_seed(&seed);
    if keypair.id().as_bytes()[..] != bytes[PUBLIC_AT..CHECKSUM_AT] {
        return Err(Problem::Corrupt(Corruption::KeyMismatch));
    }
    Ok(keypair)
}

/// Writes `keypair`'s file to a new temporary file next to `path` and fsyncs it.
fn write_temp(path: &Path, keypair: &Keypair) -> Result<PathBuf, KeyFileError> {
    let temp = temp_path(path);
    let io_error = |source| KeyFileError::Io {
        path: temp.clone(),
        source,
    };
    let mut file = create_owner_only(&temp).map_err(io_error)?;
    let written = file
        .write_all(&*encode(keypair))
        .and_then(|()| file.sync_all());
    if let Err(source) = written {
        drop(file);
        let _ = fs::remove_file(&temp);
        return Err(io_error(source));
    }
    Ok(temp)
}

/// `.<name>.tmp-<pid>-<random>` in the same directory, so the rename stays on one
/// filesystem and is atomic.
fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map_or_else(|| "key".into(), |name| name.to_string_lossy());
    let unique = format!(
        ".{name}.tmp-{}-{:016x}",
        std::process::id(),
        OsRng.next_u64()
    );
    path.with_file_name(unique)
}

/// Moves `temp` to `path` unless `path` exists: `Ok(false)` (and `temp` removed) if it
/// does. A hard link refuses to replace an existing file, which a rename would not; on
/// filesystems without hard links this falls back to a rename after checking `path` is free.
fn persist_new(temp: &Path, path: &Path) -> io::Result<bool> {
    match fs::hard_link(temp, path) {
        Ok(()) => {
            fs::remove_file(temp)?;
            Ok(true)
        }
        Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {
            fs::remove_file(temp)?;
            Ok(false)
        }
        Err(_) if !path.exists() => fs::rename(temp, path).map(|()| true),
        Err(_) => {
            fs::remove_file(temp)?;
            Ok(false)
        }
    }
}

#[cfg(unix)]
fn create_owner_only(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    // The umask can only remove bits; set the mode exactly in case it removed the owner's.
    file.set_permissions(fs::Permissions::from_mode(0o600))?;
    Ok(file)
}

#[cfg(not(unix))]
fn create_owner_only(path: &Path) -> io::Result<File> {
    OpenOptions::new().write(true).create_new(true).open(path)
}

#[cfg(unix)]
fn check_owner_only(path: &Path, metadata: &fs::Metadata) -> Result<(), KeyFileError> {
    use std::os::unix::fs::PermissionsExt;
    let mode = metadata.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(KeyFileError::Permissions {
            path: path.to_owned(),
            mode,
        });
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_owner_only(_path: &Path, _metadata: &fs::Metadata) -> Result<(), KeyFileError> {
    Ok(())
}

/// Fsyncs the directory holding `path`, so the rename itself survives a crash.
#[cfg(unix)]
fn sync_parent(path: &Path) -> Result<(), KeyFileError> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    File::open(dir)
        .and_then(|dir| dir.sync_all())
        .map_err(|source| KeyFileError::Io {
            path: dir.to_owned(),
            source,
        })
}

/// Directories cannot be fsynced portably outside Unix; the rename is still atomic.
#[cfg(not(unix))]
fn sync_parent(_path: &Path) -> Result<(), KeyFileError> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_layout_adds_up() {
        assert_eq!(FILE_LEN, 109);
        assert_eq!(CHECKSUM_AT + 32, FILE_LEN);
    }

    #[test]
    fn persisting_never_replaces_an_existing_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        fs::write(&path, b"first").unwrap();
        let temp = dir.path().join("temp");
        fs::write(&temp, b"second").unwrap();
        assert!(!persist_new(&temp, &path).unwrap());
        assert_eq!(fs::read(&path).unwrap(), b"first");
        assert!(!temp.exists());
    }

    #[test]
    fn persisting_to_a_free_path_moves_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        let temp = dir.path().join("temp");
        fs::write(&temp, b"new").unwrap();
        assert!(persist_new(&temp, &path).unwrap());
        assert_eq!(fs::read(&path).unwrap(), b"new");
        assert!(!temp.exists());
    }

    #[test]
    fn a_prefix_of_the_magic_is_truncated_and_anything_else_is_foreign() {
        assert!(matches!(decode(b""), Err(Problem::Truncated(0))));
        assert!(matches!(decode(b"CARRIER"), Err(Problem::Truncated(7))));
        assert!(matches!(
            decode(b"CARRIER-KEY\n"),
            Err(Problem::Truncated(12))
        ));
        assert!(matches!(decode(b"CARRIEX"), Err(Problem::NotAKeyFile)));
    }
}
