//! The workspace's shape, as the house style wants it: no module of a crate uses items of a
//! module that (directly or through others) uses items of it. Cycles make a module impossible
//! to read or test alone; this test finds them by reading `crate::` paths in each crate's
//! `src/`, module by top-level module (`lib.rs` is the crate root), outside `#[cfg(test)]`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const CRATES: [&str; 9] = [
    "report",
    "stored",
    "plumbing",
    "gateway",
    "ingester",
    "volunteer",
    "testenv",
    "systests",
    "stats",
];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file belongs to: `crate` for `lib.rs`/`main.rs`, else the first
/// component of its path under `src/`.
fn module_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).expect("under src");
    let first = rel
        .components()
        .next()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .unwrap_or_default();
    match first.as_str() {
        "lib.rs" | "main.rs" => "crate".into(),
        other => other.trim_end_matches(".rs").to_owned(),
    }
}

/// Identifiers right after each `crate::`, and inside `use crate::{…}`.
fn crate_paths(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("crate::") {
        rest = &rest[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for item in group[..end].split(',') {
                let name: String = item
                    .trim()
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                out.push(name);
            }
        } else {
            out.push(
                rest.chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect(),
            );
        }
    }
    out
}

/// Every module that can reach itself through the graph, with one such path.
fn cycles(edges: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    let mut found = Vec::new();
    for start in edges.keys() {
        // Depth-first search for a path back to `start`.
        let mut stack = vec![(start.clone(), vec![start.clone()])];
        let mut seen = BTreeSet::new();
        while let Some((node, path)) = stack.pop() {
            for next in edges.get(&node).into_iter().flatten() {
                if next == start {
                    let mut cycle = path.clone();
                    cycle.push(start.clone());
                    found.push(cycle);
                } else if seen.insert(next.clone()) {
                    let mut longer = path.clone();
                    longer.push(next.clone());
                    stack.push((next.clone(), longer));
                }
            }
        }
    }
    found
}

#[test]
fn no_module_uses_a_module_that_uses_it() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut problems = Vec::new();
    let mut modules_seen = 0;
    for krate in CRATES {
        let src = root.join(krate).join("src");
        let mut files = Vec::new();
        rust_files(&src, &mut files);
        assert!(!files.is_empty(), "{krate}/src has no Rust files");
        let modules: BTreeSet<String> = files.iter().map(|f| module_of(&src, f)).collect();
        modules_seen += modules.len();
        let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for file in &files {
            let text = std::fs::read_to_string(file).expect("readable source");
            let code = text.split("#[cfg(test)]").next().unwrap_or_default();
            let from = module_of(&src, file);
            for name in crate_paths(code) {
                let to = if modules.contains(&name) {
                    name
                } else {
                    "crate".to_owned()
                };
                if to != from {
                    edges.entry(from.clone()).or_default().insert(to);
                }
            }
        }
        for cycle in cycles(&edges) {
            problems.push(format!("{krate}: {}", cycle.join(" -> ")));
        }
    }
    assert!(modules_seen > 30, "only {modules_seen} modules read");
    assert!(
        problems.is_empty(),
        "module cycles:\n{}",
        problems.join("\n")
    );
}

/// `cargo machete` finds a member's unused dependencies; this finds the workspace's: an entry
/// of `[workspace.dependencies]` that no member uses.
#[test]
fn every_workspace_dependency_is_used_by_a_member() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let workspace = std::fs::read_to_string(root.join("Cargo.toml")).expect("Cargo.toml");
    let table = workspace
        .split("[workspace.dependencies]")
        .nth(1)
        .and_then(|rest| rest.split("\n[").next())
        .expect("a [workspace.dependencies] table");
    let names: Vec<&str> = table
        .lines()
        .filter_map(|l| l.split_once('=').map(|(name, _)| name.trim()))
        .filter(|name| !name.is_empty() && !name.starts_with('#'))
        .collect();
    assert!(
        names.len() > 20,
        "only {} workspace dependencies read",
        names.len()
    );
    let manifests: Vec<String> = CRATES
        .iter()
        .map(|c| std::fs::read_to_string(root.join(c).join("Cargo.toml")).expect("manifest"))
        .collect();
    let unused: Vec<&str> = names
        .iter()
        .copied()
        .filter(|name| {
            !manifests.iter().any(|m| {
                m.lines().any(|l| {
                    let l = l.trim_start();
                    l.strip_prefix(name).is_some_and(|rest| {
                        let rest = rest.trim_start();
                        rest.starts_with(".workspace") || rest.starts_with("= { workspace")
                    })
                })
            })
        })
        .collect();
    assert!(
        unused.is_empty(),
        "unused workspace dependencies: {unused:?}"
    );
}

#[test]
fn the_cycle_finder_finds_a_cycle() {
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    edges.entry("a".into()).or_default().insert("b".into());
    edges.entry("b".into()).or_default().insert("c".into());
    edges.entry("c".into()).or_default().insert("a".into());
    edges.entry("d".into()).or_default().insert("a".into());
    let found = cycles(&edges);
    assert!(
        found.iter().any(|c| c == &["a", "b", "c", "a"]),
        "{found:?}"
    );
    assert!(found.iter().all(|c| c[0] != "d"), "{found:?}");
    assert_eq!(
        crate_paths("use crate::{anonymize::Key, omit};\nlet x = crate::config::X;"),
        ["anonymize", "omit", "config"]
    );
}

/// One integration-test binary per crate (`tests/it/main.rs` and its modules): each extra
/// binary links tokio, axum and kube again on a 2-core CI. Cargo makes a binary of every
/// `tests/*.rs` and of every `tests/*/main.rs`.
#[test]
fn each_crate_has_at_most_one_integration_test_binary() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut extra = Vec::new();
    for krate in CRATES {
        let Ok(entries) = std::fs::read_dir(root.join(krate).join("tests")) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = path
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            let is_binary = (path.is_file() && name.ends_with(".rs"))
                || (path.is_dir() && name != "it" && path.join("main.rs").is_file());
            if is_binary {
                extra.push(format!("{krate}/tests/{name}"));
            }
        }
    }
    assert!(
        extra.is_empty(),
        "integration-test binaries besides tests/it: {extra:?}"
    );
}
