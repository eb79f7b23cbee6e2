//! The layering check: each `carrier-*` crate's normal dependencies include exactly one
//! `carrier-*` crate, the layer directly below it (dev-dependencies may use any lower layer),
//! and inside every crate of the workspace no import cycle joins its top-level modules (see
//! [`crate::modules`]).

use serde::Deserialize;
use std::process::Command;

/// The layers from the bottom up. `carrier` (the facade) sits on top of `carrier-forward`.
pub(crate) const LAYERS: [&str; 8] = [
    "carrier-id",
    "carrier-dht",
    "carrier-friend",
    "carrier-msg",
    "carrier-stream",
    "carrier-mux",
    "carrier-forward",
    "carrier",
];

/// The part of `cargo metadata --format-version 1 --no-deps` the check reads.
#[derive(Debug, Deserialize)]
pub(crate) struct Metadata {
    packages: Vec<Package>,
}

#[derive(Debug, Deserialize)]
struct Package {
    name: String,
    dependencies: Vec<Dependency>,
    #[serde(default)]
    targets: Vec<Target>,
}

/// A crate target: its kinds (`lib`, `bin`, `test`, …) and its root file.
#[derive(Debug, Deserialize)]
struct Target {
    kind: Vec<String>,
    src_path: std::path::PathBuf,
}

#[derive(Debug, Deserialize)]
struct Dependency {
    name: String,
    /// `None` for normal dependencies, `"dev"` or `"build"` otherwise.
    kind: Option<String>,
}

fn is_layer(name: &str) -> bool {
    name == "carrier" || name.starts_with("carrier-")
}

/// Reads the workspace's metadata and checks it.
pub(crate) fn check_workspace() -> Result<(), String> {
    let output = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .output()
        .map_err(|e| format!("cannot run cargo metadata: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    let metadata: Metadata = serde_json::from_slice(&output.stdout)
        .map_err(|e| format!("cannot read cargo metadata: {e}"))?;
    let layers = check(&metadata);
    let rooms = check_rooms(&metadata);
    match (layers, rooms) {
        (Ok(()), Ok(())) => Ok(()),
        (Err(a), Err(b)) => Err(format!("{a}\n{b}")),
        (Err(e), Ok(())) | (Ok(()), Err(e)) => Err(e),
    }
}

/// Checks that no library or program of the workspace has an import cycle between its
/// top-level modules.
pub(crate) fn check_rooms(metadata: &Metadata) -> Result<(), String> {
    let mut problems = Vec::new();
    for package in &metadata.packages {
        for target in &package.targets {
            if !target.kind.iter().any(|k| k == "lib" || k == "bin") {
                continue;
            }
            match crate::modules::ModuleGraph::read(&target.src_path) {
                Ok(graph) => problems.extend(graph.cycles().into_iter().map(|cycle| {
                    let root = format!("{}/", crate::no_sim::workspace_root().display());
                    format!(
                        "{}: import cycle {}",
                        package.name,
                        cycle.replace(&root, "")
                    )
                })),
                Err(e) => problems.push(format!("{}: {e}", package.name)),
            }
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "rooms check failed (a crate's top-level modules must not use each other in a \
             cycle):\n  {}",
            problems.join("\n  ")
        ))
    }
}

/// Checks parsed metadata: returns every wrong or missing edge, one a line.
pub(crate) fn check(metadata: &Metadata) -> Result<(), String> {
    let mut problems = Vec::new();
    for layer in LAYERS {
        if !metadata.packages.iter().any(|p| p.name == layer) {
            problems.push(format!("layer `{layer}` is not a workspace member"));
        }
    }
    for package in &metadata.packages {
        let Some(position) = LAYERS.iter().position(|l| *l == package.name) else {
            if is_layer(&package.name) {
                problems.push(format!(
                    "`{}` is a carrier-* crate that is not in the list of layers",
                    package.name
                ));
            }
            continue;
        };
        let below = position.checked_sub(1).map(|i| LAYERS[i]);
        let mut has_below = false;
        for dep in &package.dependencies {
            if dep.kind.as_deref() == Some("dev") || !is_layer(&dep.name) {
                continue;
            }
            if Some(dep.name.as_str()) == below {
                has_below |= dep.kind.is_none();
                continue;
            }
            let kind = dep.kind.as_deref().unwrap_or("normal");
            problems.push(match below {
                Some(below) => format!(
                    "wrong edge {} -> {} ({kind} dependency): `{}` may depend only on `{below}`",
                    package.name, dep.name, package.name
                ),
                None => format!(
                    "wrong edge {} -> {} ({kind} dependency): `{}` is the bottom layer",
                    package.name, dep.name, package.name
                ),
            });
        }
        if let (Some(below), false) = (below, has_below) {
            problems.push(format!(
                "missing edge {} -> {below}: each layer builds on the one directly below it",
                package.name
            ));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "layering check failed:\n  {}",
            problems.join("\n  ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Metadata in which every layer depends on the one below, plus `extra` edges.
    fn chain_with(extra: &[(&str, &str, Option<&str>)]) -> Metadata {
        let packages = LAYERS
            .iter()
            .enumerate()
            .map(|(i, name)| {
                let mut deps = Vec::new();
                if i > 0 {
                    deps.push(serde_json::json!({"name": LAYERS[i - 1], "kind": null}));
                }
                deps.push(serde_json::json!({"name": "serde", "kind": null}));
                for (from, to, kind) in extra {
                    if from == name {
                        deps.push(serde_json::json!({"name": to, "kind": kind}));
                    }
                }
                serde_json::json!({"name": name, "dependencies": deps})
            })
            .collect::<Vec<_>>();
        serde_json::from_value(serde_json::json!({ "packages": packages })).unwrap()
    }

    #[test]
    fn the_plain_chain_passes() {
        check(&chain_with(&[])).unwrap();
    }

    #[test]
    fn a_layer_skipping_the_one_below_fails_naming_the_edge() {
        let err = check(&chain_with(&[("carrier-msg", "carrier-dht", None)])).unwrap_err();
        assert!(
            err.contains("wrong edge carrier-msg -> carrier-dht"),
            "{err}"
        );
    }

    #[test]
    fn an_upward_edge_fails_naming_the_edge() {
        let err = check(&chain_with(&[("carrier-id", "carrier-dht", None)])).unwrap_err();
        assert!(
            err.contains("wrong edge carrier-id -> carrier-dht"),
            "{err}"
        );
    }

    #[test]
    fn a_build_dependency_on_another_layer_fails() {
        let err = check(&chain_with(&[("carrier-mux", "carrier-id", Some("build"))])).unwrap_err();
        assert!(
            err.contains("wrong edge carrier-mux -> carrier-id"),
            "{err}"
        );
    }

    #[test]
    fn dev_dependencies_may_use_any_lower_layer() {
        check(&chain_with(&[(
            "carrier-forward",
            "carrier-id",
            Some("dev"),
        )]))
        .unwrap();
    }

    #[test]
    fn a_missing_edge_to_the_layer_below_fails() {
        let mut metadata = chain_with(&[]);
        let stream = metadata
            .packages
            .iter_mut()
            .find(|p| p.name == "carrier-stream")
            .unwrap();
        stream.dependencies.retain(|d| d.name != "carrier-msg");
        let err = check(&metadata).unwrap_err();
        assert!(
            err.contains("missing edge carrier-stream -> carrier-msg"),
            "{err}"
        );
    }

    #[test]
    fn an_unlisted_carrier_crate_fails() {
        let mut metadata = chain_with(&[]);
        metadata.packages.push(Package {
            name: "carrier-extra".into(),
            dependencies: vec![],
            targets: vec![],
        });
        let err = check(&metadata).unwrap_err();
        assert!(err.contains("carrier-extra"), "{err}");
    }

    #[test]
    fn this_workspace_passes() {
        check_workspace().unwrap();
    }
}
