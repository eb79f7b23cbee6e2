//! Where the `carrier` program is, for tests outside its package (cargo gives
//! `CARGO_BIN_EXE_carrier` only to the `carrier` package's own tests).

use std::path::PathBuf;

/// The `carrier` program: `CARRIER_PROGRAM` if set, else `carrier` in the target directory
/// this test runs from (`target/debug/deps/…` → `target/debug/carrier`). `cargo test
/// --workspace` builds it; a test run of this package alone does not: build it first with
/// `cargo build -p carrier`, or it is missing (a panic says so) or older than the code.
pub fn carrier_program() -> PathBuf {
    if let Some(path) = std::env::var_os("CARRIER_PROGRAM") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().unwrap_or_default();
    let program = exe
        .parent()
        .and_then(|deps| deps.parent())
        .map(|dir| dir.join("carrier"))
        .unwrap_or_default();
    assert!(
        program.is_file(),
        "no carrier program at {}: build it with `cargo build -p carrier` (or name it with \
         CARRIER_PROGRAM)",
        program.display()
    );
    program
}
