//! The data directories of the bench's nodes and stores.
//!
//! They live under `target/bench/scratch/`, on the disk the build uses, not in the system's
//! temporary directory, which may be a RAM disk: the figures that commit to disk
//! (`disk.commit_us_p50`, the message figures) must fsync on a real one, and all the bench's
//! data directories are on the same disk, so `disk.commit_us_p50` is the floor of the others.

use std::path::Path;

/// A fresh directory under `target/bench/scratch/`, removed on drop.
pub(crate) struct Scratch(tempfile::TempDir);

impl Scratch {
    /// A new empty directory, its name starting with `carrier-bench-{what}-`.
    pub(crate) fn new(what: &str) -> Result<Self, String> {
        let root = super::bench_dir()?.join("scratch");
        std::fs::create_dir_all(&root)
            .map_err(|e| format!("cannot create {}: {e}", root.display()))?;
        tempfile::Builder::new()
            .prefix(&format!("carrier-bench-{what}-"))
            .tempdir_in(&root)
            .map(Self)
            .map_err(|e| format!("cannot make a scratch directory in {}: {e}", root.display()))
    }

    /// The directory.
    pub(crate) fn path(&self) -> &Path {
        self.0.path()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scratch_directories_are_under_target_and_removed_on_drop() {
        let scratch = Scratch::new("test").unwrap();
        let path = scratch.path().to_path_buf();
        assert!(path.is_dir());
        assert!(path.starts_with(crate::bench::bench_dir().unwrap().join("scratch")));
        drop(scratch);
        assert!(!path.exists());
    }
}
