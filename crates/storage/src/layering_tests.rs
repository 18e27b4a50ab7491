//! Keeps the crate's modules layered: every module imports only modules below it, so the module graph
//! (an edge for each `crate::module` a file names outside its tests) has no cycle, and `lib.rs` holds no
//! code of its own for a module to import "up" from.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Each library module's source, by module name (test modules left out: they may import anything).
fn library_modules() -> BTreeMap<String, String> {
    let source_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut modules = BTreeMap::new();
    for entry in std::fs::read_dir(&source_dir).expect("read src/") {
        let path = entry.expect("a directory entry").path();
        let name = path
            .file_stem()
            .and_then(|stem| stem.to_str())
            .expect("a file name")
            .to_string();
        let is_test_module = name == "tests"
            || name == "testsuite"
            || name == "memory_log"
            || name.ends_with("_tests");
        if path.extension().is_none_or(|extension| extension != "rs") || is_test_module {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("read a module");
        // A module's own unit tests (at its end) may reach anything.
        let library_part = text
            .split("#[cfg(test)]\nmod tests")
            .next()
            .unwrap_or_default()
            .to_string();
        modules.insert(name, library_part);
    }
    modules
}

/// The modules each module names through `crate::`.
fn imports(modules: &BTreeMap<String, String>) -> BTreeMap<String, BTreeSet<String>> {
    let mut graph = BTreeMap::new();
    for (name, text) in modules {
        let mut named = BTreeSet::new();
        for (index, _) in text.match_indices("crate::") {
            let rest = &text[index + "crate::".len()..];
            let module: String = rest
                .chars()
                .take_while(|character| character.is_ascii_lowercase() || *character == '_')
                .collect();
            if modules.contains_key(&module) && module != *name && module != "lib" {
                named.insert(module);
            }
        }
        graph.insert(name.clone(), named);
    }
    graph
}

/// A cycle in the graph, if there is one (as the modules along it).
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        module: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        finished: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(start) = path.iter().position(|on_path| on_path == module) {
            let mut cycle = path[start..].to_vec();
            cycle.push(module.to_string());
            return Some(cycle);
        }
        if finished.contains(module) {
            return None;
        }
        path.push(module.to_string());
        for next in graph.get(module).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, path, finished) {
                return Some(cycle);
            }
        }
        path.pop();
        finished.insert(module.to_string());
        None
    }
    let mut finished = BTreeSet::new();
    for module in graph.keys() {
        if let Some(cycle) = visit(module, graph, &mut Vec::new(), &mut finished) {
            return Some(cycle);
        }
    }
    None
}

#[test]
fn every_module_imports_only_modules_below_it() {
    let modules = library_modules();
    assert!(modules.len() > 20, "the crate's modules were read");
    let graph = imports(&modules);
    assert!(
        graph["storage"].contains("engine") && graph["engine"].contains("journal"),
        "imports are seen"
    );
    if let Some(cycle) = find_cycle(&graph) {
        panic!(
            "these modules import each other: {} (move what both need below both)",
            cycle.join(" → ")
        );
    }
}

#[test]
fn the_crate_root_only_declares_and_reexports() {
    let root = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/lib.rs"))
        .expect("read lib.rs");
    for line in root.lines() {
        let line = line.trim();
        let allowed = line.is_empty()
            || line.starts_with("//")
            || line.starts_with("#![")
            || line.starts_with("#[cfg(")
            || line.starts_with("mod ")
            || line.starts_with("pub mod ")
            || line.starts_with("pub use ")
            || !line.contains(['{', '(', '='])
                && !line.starts_with("fn ")
                && !line.starts_with("struct ");
        assert!(
            allowed,
            "lib.rs holds code a module would import up from: {line}"
        );
    }
}
