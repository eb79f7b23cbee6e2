//! The rooms check: no import cycle between a crate's top-level modules.
//!
//! A crate's top-level modules are the `mod NAME;` items of its root file (`lib.rs`,
//! `main.rs`). Module `a` *uses* module `b` when any file of `a` (`a.rs`, or any file under
//! `a/`) names `crate::b` (in a path or a `use crate::{…}` group), or reaches the root with
//! `super::` and names `b` from there. Comments are not code and do not count. Any cycle in
//! that graph fails the check, naming its modules and where each edge comes from, so the
//! folders of a crate stay rooms that depend only on the rooms below them.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// Where one top-level module names another.
#[derive(Clone, Debug)]
struct Use {
    file: PathBuf,
    line: usize,
}

/// The top-level module graph of one crate target.
#[derive(Debug, Default)]
pub(crate) struct ModuleGraph {
    /// Every top-level module, with the modules it uses and where it first does so.
    edges: BTreeMap<String, BTreeMap<String, Use>>,
}

impl ModuleGraph {
    /// Reads the crate whose root file is `root` (`src/lib.rs`, `src/main.rs`, or a
    /// `src/bin/NAME.rs`).
    pub(crate) fn read(root: &Path) -> Result<ModuleGraph, String> {
        let text =
            fs::read_to_string(root).map_err(|e| format!("cannot read {}: {e}", root.display()))?;
        let dir = module_dir(root);
        let modules: BTreeSet<String> = declared_modules(&strip_comments(&text))
            .into_iter()
            .collect();
        let mut graph = ModuleGraph::default();
        for module in &modules {
            let mut uses = BTreeMap::new();
            for (file, depth) in files_of(&dir, module) {
                let code = strip_comments(
                    &fs::read_to_string(&file)
                        .map_err(|e| format!("cannot read {}: {e}", file.display()))?,
                );
                for (line, named) in top_level_names(&code, depth) {
                    if named != *module && modules.contains(&named) {
                        uses.entry(named).or_insert_with(|| Use {
                            file: file.clone(),
                            line,
                        });
                    }
                }
            }
            graph.edges.insert(module.clone(), uses);
        }
        Ok(graph)
    }

    /// Every cycle (a strongly connected set of two or more modules), each written as a path
    /// through its modules with the place each edge comes from.
    pub(crate) fn cycles(&self) -> Vec<String> {
        strongly_connected(&self.edges)
            .into_iter()
            .filter(|component| component.len() > 1)
            .map(|component| self.describe(&component))
            .collect()
    }

    /// One cycle through `component`, written edge by edge.
    fn describe(&self, component: &BTreeSet<String>) -> String {
        // Walk from the first module, always to a module of the component not yet visited
        // where possible, until the walk returns to a visited one.
        let Some(start) = component.iter().next() else {
            return String::new();
        };
        let mut path = vec![start.clone()];
        while let Some(current) = path.last() {
            let next = self.edges[current]
                .keys()
                .filter(|n| component.contains(*n))
                .find(|n| !path.contains(*n))
                .or_else(|| {
                    self.edges[current]
                        .keys()
                        .find(|n| component.contains(*n) && path.contains(*n))
                })
                .cloned();
            let Some(next) = next else { break };
            let closes = path.contains(&next);
            path.push(next);
            if closes {
                break;
            }
        }
        // Keep only the loop itself.
        let Some(last) = path.last().cloned() else {
            return String::new();
        };
        let first = path.iter().position(|m| *m == last).unwrap_or(0);
        let cycle = &path[first..];
        let edges: Vec<String> = cycle
            .windows(2)
            .map(|pair| {
                let used = &self.edges[&pair[0]][&pair[1]];
                format!(
                    "{} -> {} ({}:{})",
                    pair[0],
                    pair[1],
                    used.file.display(),
                    used.line
                )
            })
            .collect();
        format!("{} [{}]", cycle.join(" -> "), edges.join("; "))
    }
}

/// The folder a root file's `mod` items live in.
fn module_dir(root: &Path) -> PathBuf {
    let parent = root.parent().unwrap_or(Path::new("."));
    match root.file_name().and_then(|n| n.to_str()) {
        Some("lib.rs" | "main.rs" | "mod.rs") => parent.to_path_buf(),
        _ => root.with_extension(""),
    }
}

/// The names of the `mod NAME;` items of a root file, one a line as rustfmt writes them
/// (attributes such as `#[cfg(…)]` may stand before them on the line; inline `mod NAME { … }`
/// blocks are not separate files and are skipped).
fn declared_modules(code: &str) -> Vec<String> {
    let mut names = Vec::new();
    for line in code.lines() {
        let mut rest = line.trim();
        while let Some(attr) = rest.strip_prefix("#[") {
            let Some(close) = attr.find(']') else { break };
            rest = attr[close + 1..].trim_start();
        }
        if let Some(after) = rest.strip_prefix("pub") {
            rest = match after.trim_start().strip_prefix('(') {
                Some(scope) => scope.find(')').map_or("", |c| &scope[c + 1..]),
                None => after,
            };
            rest = rest.trim_start();
        }
        let Some(item) = rest.strip_prefix("mod ") else {
            continue;
        };
        let Some(name) = item.trim().strip_suffix(';') else {
            continue;
        };
        let name = name.trim();
        if is_identifier(name) {
            names.push(name.to_string());
        }
    }
    names
}

fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Every file of top-level module `module` in `dir`, with its depth below the crate root
/// (`module.rs` and `module/mod.rs` are 1, `module/x.rs` 2, …).
fn files_of(dir: &Path, module: &str) -> Vec<(PathBuf, usize)> {
    let mut files = Vec::new();
    let single = dir.join(format!("{module}.rs"));
    if single.is_file() {
        files.push((single, 1));
    }
    collect(&dir.join(module), 1, &mut files);
    files
}

fn collect(dir: &Path, depth: usize, files: &mut Vec<(PathBuf, usize)>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            collect(&path, depth + 1, files);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let own = if path.file_name().is_some_and(|n| n == "mod.rs") {
                depth
            } else {
                depth + 1
            };
            files.push((path, own));
        }
    }
}

/// The code with its comments (line, block and doc comments) blanked out, line breaks kept,
/// and string and character literals emptied, so neither can name a module.
fn strip_comments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    let mut block_depth = 0usize;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if block_depth > 0 {
            if c == '*' && next == Some('/') {
                block_depth -= 1;
                i += 2;
            } else if c == '/' && next == Some('*') {
                block_depth += 1;
                i += 2;
            } else {
                if c == '\n' {
                    out.push('\n');
                }
                i += 1;
            }
            continue;
        }
        match (c, next) {
            ('/', Some('/')) => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
            }
            ('/', Some('*')) => {
                block_depth = 1;
                i += 2;
            }
            ('"', _) => {
                out.push('"');
                i += 1;
                while i < chars.len() && chars[i] != '"' {
                    if chars[i] == '\\' {
                        i += 1;
                    } else if chars[i] == '\n' {
                        out.push('\n');
                    }
                    i += 1;
                }
                out.push('"');
                i += 1;
            }
            _ => {
                out.push(c);
                i += 1;
            }
        }
    }
    out
}

/// The top-level modules a file at `depth` names, with the line of each: `crate::name`,
/// `crate::{name, other::…}`, and `super::…` chains that climb to the root.
fn top_level_names(code: &str, depth: usize) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    let bytes = code.as_bytes();
    let line_of = |at: usize| code[..at].matches('\n').count() + 1;
    let mut at = 0;
    while at < bytes.len() {
        let rest = &code[at..];
        let boundary = at == 0 || !is_ident_byte(bytes[at - 1]);
        if boundary && rest.starts_with("crate::") {
            let after = at + "crate::".len();
            names_after(code, after, &mut |pos, name| {
                found.push((line_of(pos), name))
            });
            at = after;
            continue;
        }
        if boundary && rest.starts_with("super::") {
            let mut climbs = 0;
            let mut pos = at;
            while code[pos..].starts_with("super::") {
                climbs += 1;
                pos += "super::".len();
                pos += code[pos..].len() - code[pos..].trim_start().len();
            }
            if climbs >= depth {
                names_after(code, pos, &mut |p, name| found.push((line_of(p), name)));
            }
            at = pos;
            continue;
        }
        at += rest.chars().next().map_or(1, char::len_utf8);
    }
    found
}

fn is_ident_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b':'
}

/// Calls `found` for the first path segment at `at`, or for the first segment of each
/// member of a `{…}` group there (nested groups belong to their own first segment).
fn names_after(code: &str, at: usize, found: &mut impl FnMut(usize, String)) {
    let rest = &code[at..];
    let trimmed = rest.trim_start();
    let start = at + rest.len() - trimmed.len();
    if let Some(group) = trimmed.strip_prefix('{') {
        let mut depth = 0usize;
        let mut expect_name = true;
        let base = start + 1;
        let mut i = 0;
        let g = group.as_bytes();
        while i < g.len() {
            let b = g[i];
            match b {
                b'{' => depth += 1,
                b'}' if depth == 0 => break,
                b'}' => depth -= 1,
                b',' if depth == 0 => expect_name = true,
                _ if expect_name && depth == 0 && (b.is_ascii_alphabetic() || b == b'_') => {
                    let len = g[i..]
                        .iter()
                        .take_while(|c| c.is_ascii_alphanumeric() || **c == b'_')
                        .count();
                    found(base + i, group[i..i + len].to_string());
                    expect_name = false;
                    i += len;
                    continue;
                }
                _ => {}
            }
            i += 1;
        }
    } else {
        let len = trimmed
            .bytes()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == b'_')
            .count();
        if len > 0 {
            found(start, trimmed[..len].to_string());
        }
    }
}

/// Tarjan's strongly connected components of the module graph.
fn strongly_connected(edges: &BTreeMap<String, BTreeMap<String, Use>>) -> Vec<BTreeSet<String>> {
    struct Walk<'a> {
        edges: &'a BTreeMap<String, BTreeMap<String, Use>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        components: Vec<BTreeSet<String>>,
    }
    impl<'a> Walk<'a> {
        fn visit(&mut self, v: &'a str) {
            let i = self.index.len();
            self.index.insert(v, i);
            self.low.insert(v, i);
            self.stack.push(v);
            self.on_stack.insert(v);
            let edges = self.edges;
            for w in edges.get(v).into_iter().flat_map(|e| e.keys()) {
                let w = w.as_str();
                if !self.index.contains_key(w) {
                    self.visit(w);
                    let lw = self.low[w];
                    let lv = self.low[v];
                    self.low.insert(v, lv.min(lw));
                } else if self.on_stack.contains(w) {
                    let iw = self.index[w];
                    let lv = self.low[v];
                    self.low.insert(v, lv.min(iw));
                }
            }
            if self.low[v] == self.index[v] {
                let mut component = BTreeSet::new();
                while let Some(w) = self.stack.pop() {
                    self.on_stack.remove(w);
                    component.insert(w.to_string());
                    if w == v {
                        break;
                    }
                }
                self.components.push(component);
            }
        }
    }
    let mut walk = Walk {
        edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        components: Vec::new(),
    };
    for v in edges.keys() {
        if !walk.index.contains_key(v.as_str()) {
            walk.visit(v);
        }
    }
    walk.components
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A crate in a scratch folder from (path, contents) pairs under `src/`.
    fn crate_of(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (path, text) in files {
            let path = dir.path().join("src").join(path);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, text).unwrap();
        }
        dir
    }

    fn cycles_of(files: &[(&str, &str)]) -> Vec<String> {
        let dir = crate_of(files);
        ModuleGraph::read(&dir.path().join("src/lib.rs"))
            .unwrap()
            .cycles()
    }

    #[test]
    fn modules_used_downward_only_pass() {
        let cycles = cycles_of(&[
            (
                "lib.rs",
                "mod wire;\npub mod node;\n#[cfg(feature = \"sim\")]\npub mod sim;\n",
            ),
            ("wire.rs", "pub struct Frame;\n"),
            ("node/mod.rs", "mod state;\nuse crate::wire::Frame;\n"),
            ("node/state.rs", "use super::super::wire::Frame;\n"),
            ("sim.rs", "use crate::{node, wire::Frame};\n"),
        ]);
        assert!(cycles.is_empty(), "{cycles:?}");
    }

    #[test]
    fn a_deliberate_cycle_fails_naming_both_edges() {
        let cycles = cycles_of(&[
            ("lib.rs", "mod a;\nmod b;\nmod c;\n"),
            ("a.rs", "use crate::b::B;\npub struct A;\n"),
            ("b/mod.rs", "mod inner;\npub struct B;\n"),
            ("b/inner.rs", "fn f() -> crate::a::A { todo!() }\n"),
            ("c.rs", "use crate::a::A;\n"),
        ]);
        assert_eq!(cycles.len(), 1, "{cycles:?}");
        let cycle = &cycles[0];
        assert!(cycle.starts_with("a -> b -> a"), "{cycle}");
        assert!(cycle.contains("a.rs:1"), "{cycle}");
        assert!(cycle.contains("inner.rs:1"), "{cycle}");
        assert!(!cycle.contains("c ->"), "c is outside the cycle: {cycle}");
    }

    #[test]
    fn a_cycle_through_a_use_group_or_super_is_found() {
        let through_group = cycles_of(&[
            ("lib.rs", "mod a;\nmod b;\n"),
            ("a.rs", "use crate::{\n    x::Y,\n    b::{B, C},\n};\n"),
            ("b.rs", "pub struct B;\nuse super::a;\n"),
        ]);
        assert_eq!(through_group.len(), 1, "{through_group:?}");
        assert!(through_group[0].contains("a.rs:3"), "{through_group:?}");
        assert!(through_group[0].contains("b.rs:2"), "{through_group:?}");
    }

    #[test]
    fn three_modules_in_a_ring_are_one_cycle() {
        let cycles = cycles_of(&[
            ("lib.rs", "mod a;\nmod b;\nmod c;\n"),
            ("a.rs", "use crate::b::B;\n"),
            ("b.rs", "use crate::c::C;\n"),
            ("c.rs", "use crate::a::A;\n"),
        ]);
        assert_eq!(cycles.len(), 1, "{cycles:?}");
        assert!(cycles[0].starts_with("a -> b -> c -> a"), "{cycles:?}");
    }

    #[test]
    fn comments_strings_and_inner_paths_are_not_uses() {
        let cycles = cycles_of(&[
            (
                "lib.rs",
                "mod a;\nmod b;\n#[cfg(test)]\nmod tests {\n    use crate::a;\n}\n",
            ),
            (
                "a.rs",
                "//! See [`crate::b::B`].\n/* crate::b */\nconst S: &str = \"crate::b\";\n\
                 use crate::b::B;\n",
            ),
            (
                "b.rs",
                "/// Made by [`crate::a`].\npub struct B;\nfn f() { x::crate_b(); }\n",
            ),
        ]);
        assert!(cycles.is_empty(), "{cycles:?}");
    }

    #[test]
    fn super_inside_a_folder_stays_inside_it() {
        // `super::` from node/state.rs reaches node, not the root: no edge to `sim`.
        let cycles = cycles_of(&[
            ("lib.rs", "mod node;\nmod sim;\n"),
            ("node/mod.rs", "mod state;\nmod sim;\n"),
            ("node/sim.rs", ""),
            ("node/state.rs", "use super::sim;\n"),
            ("sim.rs", "use crate::node;\n"),
        ]);
        assert!(cycles.is_empty(), "{cycles:?}");
    }
}
