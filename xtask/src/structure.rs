//! `cargo xtask check-structure`: two checks of the house that the compiler does not make.
//!
//! - **Unused dependencies** (what cargo-machete checks, without installing it): every dependency a
//!   manifest lists is named somewhere in that package's Rust code (`name::`, `use name`, `name!`,
//!   `extern crate name`). A dependency only a feature or a build needs can be listed in the
//!   manifest's `[package.metadata.cargo-machete] ignored`, as for cargo-machete itself.
//! - **No file-level import cycles**: within each crate, the modules (one per file) that a module names
//!   through `crate::` paths — an item the crate root re-exports counts as its own module's — form no
//!   cycle. Test files (`tests.rs`, `*_tests.rs`, `src/tests/`) and `src/bin/` are left out.
//!
//! Both read the code as text, as the tools they stand in for do.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::util::{bail, repo_root, Context, Result};

/// Every package of the project: the workspace's members, the guest programs and the fuzz targets.
fn packages() -> Result<Vec<PathBuf>> {
    let root = repo_root();
    let manifest: toml::Table = read_toml(&root.join("Cargo.toml"))?;
    let mut dirs: Vec<PathBuf> = manifest
        .get("workspace")
        .and_then(|w| w.get("members"))
        .and_then(|m| m.as_array())
        .map(|m| m.iter().filter_map(|v| v.as_str()).map(|d| root.join(d)).collect())
        .unwrap_or_default();
    let guests = std::fs::read_dir(root.join("guests")).ctx(|| "reading guests/".to_string())?;
    let mut guest_dirs: Vec<PathBuf> =
        guests.filter_map(|e| e.ok()).map(|e| e.path()).filter(|p| p.join("Cargo.toml").is_file()).collect();
    guest_dirs.sort();
    dirs.extend(guest_dirs);
    dirs.push(root.join("fuzz"));
    Ok(dirs)
}

fn read_toml(path: &Path) -> Result<toml::Table> {
    let text = std::fs::read_to_string(path).ctx(|| format!("reading {}", path.display()))?;
    text.parse().ctx(|| format!("parsing {}", path.display()))
}

/// The `.rs` files under `dir` (not under `target/`).
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for e in entries.filter_map(|e| e.ok()) {
            let p = e.path();
            if p.is_dir() {
                if p.file_name().is_some_and(|n| n != "target" && n != "corpus" && n != "artifacts") {
                    stack.push(p);
                }
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// `text` without `//` comments (doc comments included) and without its inline test module (a
/// trailing `#[cfg(test)] mod tests { .. }`). Strings are left: a `//` in one cuts a line short, which
/// only ever hides a name.
fn code_of(text: &str) -> String {
    let text = text.split("#[cfg(test)]\nmod tests {").next().unwrap_or(text);
    text.lines().map(|l| l.split("//").next().unwrap_or("")).collect::<Vec<_>>().join("\n")
}

/// Names the crate root defines itself (functions, types, constants, statics, traits, macros).
fn root_items(root: &str) -> BTreeSet<String> {
    let mut items = BTreeSet::new();
    for line in root.lines() {
        let mut words = line.split_whitespace().skip_while(|w| w.starts_with("pub") || *w == "unsafe" || *w == "extern" || w.starts_with('"'));
        if let (Some(kind), Some(name)) = (words.next(), words.next()) {
            if matches!(kind, "fn" | "struct" | "enum" | "const" | "static" | "type" | "trait" | "macro_rules!") {
                let name: String = name.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
                items.insert(name);
            }
        }
    }
    items
}

/// Whether `code` names the crate `ident` (a Rust identifier) as a path root, a macro or an import.
fn names_crate(code: &str, ident: &str) -> bool {
    let bytes = code.as_bytes();
    code.match_indices(ident).any(|(at, _)| {
        let before_ok = at == 0 || !(bytes[at - 1].is_ascii_alphanumeric() || bytes[at - 1] == b'_' || bytes[at - 1] == b':');
        let rest = &code[at + ident.len()..];
        let after_ok = rest.starts_with("::") || rest.starts_with('!') || rest.starts_with(';') || rest.starts_with(" as ");
        let prefix = &code[..at];
        let imported = prefix.ends_with("use ") || prefix.ends_with("extern crate ");
        before_ok && (after_ok || imported)
    })
}

/// Dependencies of the package in `dir` that its code never names, as `section: name`.
fn unused_dependencies(dir: &Path) -> Result<Vec<String>> {
    let manifest = read_toml(&dir.join("Cargo.toml"))?;
    let ignored: BTreeSet<String> = manifest
        .get("package")
        .and_then(|p| p.get("metadata"))
        .and_then(|m| m.get("cargo-machete"))
        .and_then(|m| m.get("ignored"))
        .and_then(|i| i.as_array())
        .map(|a| a.iter().filter_map(|v| v.as_str()).map(str::to_string).collect())
        .unwrap_or_default();
    let all_code: String = rust_files(dir).iter().filter_map(|f| std::fs::read_to_string(f).ok()).map(|t| code_of(&t)).collect();
    let build_code = std::fs::read_to_string(dir.join("build.rs")).map(|t| code_of(&t)).unwrap_or_default();
    let mut unused = Vec::new();
    for (section, code) in [("dependencies", &all_code), ("dev-dependencies", &all_code), ("build-dependencies", &build_code)] {
        let Some(deps) = manifest.get(section).and_then(|d| d.as_table()) else { continue };
        for name in deps.keys() {
            if ignored.contains(name) {
                continue;
            }
            if !names_crate(code, &name.replace('-', "_")) {
                unused.push(format!("[{section}] {name}"));
            }
        }
    }
    Ok(unused)
}

/// One crate's modules: module path (`a::b`; "" for the root) → its file's code.
fn modules(src: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for file in rust_files(src) {
        let Ok(rel) = file.strip_prefix(src) else { continue };
        let parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().into_owned()).collect();
        let stem = rel.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        let test_file = stem == "tests" || stem.ends_with("_tests") || parts.first().is_some_and(|p| p == "tests" || p == "bin");
        if test_file {
            continue;
        }
        // a.rs and a/mod.rs are `a`; a/b.rs is `a::b`; lib.rs or main.rs is the root.
        let mut path: Vec<String> = parts[..parts.len() - 1].to_vec();
        let root = parts.len() == 1 && matches!(stem.as_str(), "lib" | "main");
        if stem != "mod" && !root {
            path.push(stem);
        }
        if let Ok(text) = std::fs::read_to_string(&file) {
            out.insert(path.join("::"), code_of(&text));
        }
    }
    out
}

/// The paths a `use`/path text names after `crate::` (or a root's `module::`): `a::b::C` and the
/// leaves of brace groups `a::{b::C, d}`, each as its segments.
fn expand(rest: &str) -> Vec<Vec<String>> {
    fn group(s: &mut std::iter::Peekable<std::str::Chars<'_>>, prefix: Vec<String>, out: &mut Vec<Vec<String>>) {
        let mut path = prefix.clone();
        let mut ident = String::new();
        while let Some(&c) = s.peek() {
            if c.is_alphanumeric() || c == '_' {
                ident.push(c);
                s.next();
            } else if c == ':' {
                s.next();
                if !ident.is_empty() {
                    path.push(std::mem::take(&mut ident));
                }
            } else if c == '{' {
                s.next();
                if !ident.is_empty() {
                    path.push(std::mem::take(&mut ident));
                }
                group(s, std::mem::replace(&mut path, prefix.clone()), out);
            } else if c == ',' {
                s.next();
                if !ident.is_empty() {
                    path.push(std::mem::take(&mut ident));
                }
                let done = std::mem::replace(&mut path, prefix.clone());
                if done.len() > prefix.len() {
                    out.push(done);
                }
            } else if c == '}' {
                s.next();
                break;
            } else if c.is_whitespace() {
                s.next();
                if !ident.is_empty() {
                    // `X as Y`: skip the alias.
                    path.push(std::mem::take(&mut ident));
                    if s.clone().collect::<String>().trim_start().starts_with("as ") {
                        while s.peek().is_some_and(|c| *c != ',' && *c != '}' && *c != ';') {
                            s.next();
                        }
                    }
                }
            } else {
                break;
            }
        }
        if !ident.is_empty() {
            path.push(ident);
        }
        if path.len() > prefix.len() {
            out.push(path);
        }
    }
    let mut out = Vec::new();
    group(&mut rest.chars().peekable(), Vec::new(), &mut out);
    out
}

/// The module a path's segments name: the longest prefix that is a module, else the module the root
/// re-exports its first segment from (`reexports` maps those names to modules, and the root's own
/// items to the root, ""); `None` for anything else (a macro's `$crate`, a name the text cannot
/// resolve).
fn target(path: &[String], mods: &BTreeMap<String, String>, reexports: &BTreeMap<String, String>) -> Option<String> {
    for n in (1..=path.len()).rev() {
        let m = path[..n].join("::");
        if mods.contains_key(&m) {
            return Some(m);
        }
    }
    reexports.get(path.first()?).cloned()
}

/// Module → the modules its code names.
fn edges(mods: &BTreeMap<String, String>) -> BTreeMap<String, BTreeSet<String>> {
    let root = mods.get("").cloned().unwrap_or_default();
    // Items the root re-exports (`pub use m::X;`): a `crate::X` elsewhere is a use of `m`; an item the
    // root defines is a use of the root.
    let mut reexports: BTreeMap<String, String> = root_items(&root).into_iter().map(|i| (i, String::new())).collect();
    for line in root.lines().map(str::trim).filter(|l| l.starts_with("pub use ") || l.starts_with("pub(crate) use ")) {
        let rest = line.split_once("use ").map_or("", |(_, r)| r);
        for p in expand(rest) {
            if let (Some(last), Some(m)) = (p.last(), target(&p[..p.len().saturating_sub(1)], mods, &BTreeMap::new())) {
                reexports.insert(last.clone(), m);
            }
        }
    }
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (name, code) in mods {
        let mut uses = BTreeSet::new();
        for (at, _) in code.match_indices("crate::") {
            let boundary = at == 0 || !code.as_bytes()[at - 1].is_ascii_alphanumeric() && code.as_bytes()[at - 1] != b'_';
            if !boundary || code[..at].ends_with("pub(") {
                continue;
            }
            for p in expand(&code[at + "crate::".len()..]) {
                if let Some(t) = target(&p, mods, &reexports) {
                    uses.insert(t);
                }
            }
        }
        if name.is_empty() {
            // The root's own code (not its `mod` declarations or re-exports) names its children directly.
            for line in code.lines().map(str::trim) {
                if line.starts_with("mod ") || line.starts_with("pub mod ") || line.starts_with("pub(crate) mod ") || line.starts_with("pub use ") || line.starts_with("pub(crate) use ") {
                    continue;
                }
                for m in mods.keys().filter(|m| !m.is_empty() && !m.contains("::")) {
                    if names_crate(line, m) {
                        uses.insert(m.clone());
                    }
                }
            }
        }
        uses.remove(name);
        graph.insert(name.clone(), uses);
    }
    graph
}

/// The graph's cycles: each strongly connected component of more than one module (Tarjan's).
fn cycles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct Tarjan<'a> {
        graph: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        out: Vec<Vec<String>>,
    }
    impl<'a> Tarjan<'a> {
        fn visit(&mut self, v: &'a str) {
            let i = self.index.len();
            self.index.insert(v, i);
            self.low.insert(v, i);
            self.stack.push(v);
            self.on_stack.insert(v);
            for w in self.graph.get(v).into_iter().flatten() {
                let w = w.as_str();
                if !self.graph.contains_key(w) {
                    continue;
                }
                if !self.index.contains_key(w) {
                    self.visit(w);
                    let lw = self.low[w];
                    let lv = self.low.get_mut(v).map_or(lw, |l| *l);
                    self.low.insert(v, lv.min(lw));
                } else if self.on_stack.contains(w) {
                    let iw = self.index[w];
                    let lv = self.low[v];
                    self.low.insert(v, lv.min(iw));
                }
            }
            if self.low[v] == self.index[v] {
                let mut scc = Vec::new();
                while let Some(w) = self.stack.pop() {
                    self.on_stack.remove(w);
                    scc.push(w.to_string());
                    if w == v {
                        break;
                    }
                }
                if scc.len() > 1 {
                    scc.sort();
                    self.out.push(scc);
                }
            }
        }
    }
    let mut t = Tarjan { graph, index: BTreeMap::new(), low: BTreeMap::new(), stack: Vec::new(), on_stack: BTreeSet::new(), out: Vec::new() };
    for v in graph.keys() {
        if !t.index.contains_key(v.as_str()) {
            t.visit(v);
        }
    }
    t.out
}

/// Runs both checks over every package; fails with every finding.
pub fn check() -> Result<()> {
    let mut problems = Vec::new();
    let root = repo_root();
    for dir in packages()? {
        let name = dir.strip_prefix(&root).unwrap_or(&dir).display().to_string();
        for dep in unused_dependencies(&dir)? {
            problems.push(format!("{name}: unused dependency {dep}"));
        }
        let graph = edges(&modules(&dir.join("src")));
        for cycle in cycles(&graph) {
            let ties: Vec<String> = cycle
                .iter()
                .map(|m| {
                    let to: Vec<&str> = graph[m].iter().filter(|t| cycle.contains(t)).map(String::as_str).collect();
                    format!("{} -> {}", if m.is_empty() { "(root)" } else { m }, to.join(", "))
                })
                .collect();
            problems.push(format!("{name}: import cycle among {}: {}", cycle.join(", "), ties.join("; ")));
        }
    }
    if problems.is_empty() {
        println!("structure: no unused dependency, no import cycle");
        Ok(())
    } else {
        bail!("structure:\n  {}", problems.join("\n  "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&[&str]]) -> Vec<Vec<String>> {
        v.iter().map(|p| p.iter().map(|s| s.to_string()).collect()).collect()
    }

    #[test]
    fn paths_and_brace_groups_expand_to_their_leaves() {
        assert_eq!(expand("a::b::C;"), strings(&[&["a", "b", "C"]]));
        assert_eq!(expand("a::B as C; fn x() {}"), strings(&[&["a", "B"]]));
        assert_eq!(expand("{a::B, c::{D, e::F}, g as H};"), strings(&[&["a", "B"], &["c", "D"], &["c", "e", "F"], &["g"]]));
    }

    #[test]
    fn crates_are_found_as_paths_macros_and_imports_only() {
        assert!(names_crate("let x = libc::getpid();", "libc"));
        assert!(names_crate("log::warn!(\"x\")", "log"));
        assert!(names_crate("use serde;", "serde"));
        assert!(!names_crate("let log = 1; catalog::x()", "log"));
        assert!(!names_crate("fn toml_file() {}", "toml"));
    }

    #[test]
    fn a_cycle_is_found_and_a_facade_is_not_one() {
        let mut mods = BTreeMap::new();
        mods.insert(String::new(), "mod a;\nmod b;\nmod c;\npub use a::Thing;\n".to_string());
        mods.insert("a".into(), "use crate::b::x;\n".into());
        mods.insert("b".into(), "use crate::a::Thing;\n".into());
        mods.insert("c".into(), "use crate::Thing;\n".into());
        let graph = edges(&mods);
        assert_eq!(graph["c"], BTreeSet::from(["a".to_string()]), "a re-exported item is its module's");
        assert_eq!(cycles(&graph), vec![vec!["a".to_string(), "b".to_string()]]);
    }
}
