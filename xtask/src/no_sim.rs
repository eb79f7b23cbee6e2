//! The `no-sim` step: the simulator's stand-in key agreement exists only behind carrier-dht's
//! `sim` feature.
//!
//! Inside the workspace, feature unification turns `sim` on for everyone (xtask's benchmarks
//! use the simulator), so the check builds a crate outside the workspace,
//! `xtask/fixtures/no-sim`, which depends on carrier-dht without the feature. Built plainly it
//! must compile (so the fixture and its path to carrier-dht are sound); built with its own
//! `simulated` feature, which names `KeyAgreement::Simulated`, it must fail, and for that
//! reason.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The workspace's root folder.
pub(crate) fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

/// Runs the check.
pub(crate) fn check_no_sim() -> Result<(), String> {
    let root = workspace_root();
    let fixture = root.join("xtask/fixtures/no-sim");
    // The workspace's lock file pins the fixture's dependencies to the versions CI built,
    // so the check needs no registry and builds nothing new but check-mode metadata.
    std::fs::copy(root.join("Cargo.lock"), fixture.join("Cargo.lock"))
        .map_err(|e| format!("cannot copy Cargo.lock into the fixture: {e}"))?;
    let target = root.join("target/fixtures");
    let check = |features: &[&str]| -> Result<(bool, String), String> {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let output = Command::new(cargo)
            .arg("check")
            .arg("--offline")
            .arg("--quiet")
            .arg("--manifest-path")
            .arg(fixture.join("Cargo.toml"))
            .arg("--target-dir")
            .arg(&target)
            .args(features)
            .env("CARGO_TERM_COLOR", "never")
            .output()
            .map_err(|e| format!("cannot run cargo check on the fixture: {e}"))?;
        Ok((
            output.status.success(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        ))
    };
    let (plain_ok, plain_err) = check(&[])?;
    if !plain_ok {
        return Err(format!(
            "the no-sim fixture does not build even without naming the simulator:\n{plain_err}"
        ));
    }
    let (sim_ok, sim_err) = check(&["--features", "simulated"])?;
    judge(sim_ok, &sim_err)
}

/// The verdict on the build that names `KeyAgreement::Simulated`.
fn judge(compiled: bool, stderr: &str) -> Result<(), String> {
    if compiled {
        return Err(
            "KeyAgreement::Simulated compiles without carrier-dht's `sim` feature: a \
                    production Dht could be built with simulated key agreement"
                .into(),
        );
    }
    if stderr.contains("Simulated") && stderr.contains("E0599") {
        println!("no-sim: KeyAgreement::Simulated does not exist without the `sim` feature");
        Ok(())
    } else {
        Err(format!(
            "the no-sim fixture failed, but not because KeyAgreement::Simulated is missing:\n\
             {stderr}"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_simulated_variant_that_compiles_fails_the_step() {
        assert!(judge(true, "").is_err());
    }

    #[test]
    fn only_the_missing_variant_counts_as_the_expected_failure() {
        let missing = "error[E0599]: no variant or associated item named `Simulated` found \
                       for enum `KeyAgreement`";
        assert!(judge(false, missing).is_ok());
        assert!(judge(false, "error: could not find `Cargo.toml`").is_err());
    }
}
