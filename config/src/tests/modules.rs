//! The crate's module graph: which module uses which (`crate::` paths outside comments), and that
//! it has no cycles (`lib.rs`, the facade that re-exports, is left out).

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

/// Module name → the modules its code names with `crate::`.
fn graph() -> BTreeMap<String, Vec<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut graph = BTreeMap::new();
    for entry in fs::read_dir(&src).unwrap() {
        let path = entry.unwrap().path();
        let (Some(stem), Some("rs")) = (
            path.file_stem().and_then(|s| s.to_str()),
            path.extension().and_then(|e| e.to_str()),
        ) else {
            continue;
        };
        if stem == "lib" {
            continue;
        }
        let text = fs::read_to_string(&path).unwrap();
        let mut uses: Vec<String> = Vec::new();
        for line in text.lines().map(str::trim).filter(|l| !l.starts_with("//")) {
            for (i, _) in line.match_indices("crate::") {
                let rest = &line[i + "crate::".len()..];
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                // `crate::{a, b}` and items re-exported at the root are the facade's, not a module.
                let is_module = src.join(format!("{name}.rs")).exists();
                if is_module && name != stem && !uses.contains(&name) {
                    uses.push(name);
                }
            }
        }
        uses.sort();
        graph.insert(stem.to_string(), uses);
    }
    graph
}

/// A cycle through `node`, if any (depth-first, `path` is the current chain).
fn cycle(
    graph: &BTreeMap<String, Vec<String>>,
    node: &str,
    path: &mut Vec<String>,
) -> Option<Vec<String>> {
    if let Some(at) = path.iter().position(|n| n == node) {
        let mut cycle = path[at..].to_vec();
        cycle.push(node.to_string());
        return Some(cycle);
    }
    path.push(node.to_string());
    for next in graph.get(node).into_iter().flatten() {
        if let Some(c) = cycle(graph, next, path) {
            return Some(c);
        }
    }
    path.pop();
    None
}

#[test]
fn the_module_graph_is_acyclic() {
    let graph = graph();
    assert!(
        graph.contains_key("rules") && graph.contains_key("build"),
        "{graph:?}"
    );
    for node in graph.keys() {
        if let Some(c) = cycle(&graph, node, &mut Vec::new()) {
            panic!("module cycle: {}\n(graph: {graph:#?})", c.join(" -> "));
        }
    }
    // The rules are a leaf below the file reader: they know nothing of TOML.
    for up in ["build", "build_devices", "load", "raw", "source"] {
        assert!(
            !graph["rules"].contains(&up.to_string()),
            "rules uses {up}: {:?}",
            graph["rules"]
        );
    }
}
