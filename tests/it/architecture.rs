//! The shape ARCHITECTURE.md describes, checked: no module imports another in a cycle (between the crate's
//! top-level modules, and between the modules of one folder), and nothing under `src/app/` names an HTTP or an
//! AWS SDK type.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The code of a file without its comments and without its unit tests (a `#[cfg(test)]` module at the end).
fn code(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    let text = text
        .split("#[cfg(test)]\nmod tests")
        .next()
        .unwrap_or_default();
    text.lines()
        .map(|line| match line.find("//") {
            Some(at) if !line[..at].contains('"') => &line[..at],
            _ => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The names that follow `prefix` in `code` (`crate::storage::…` gives `storage`), including grouped imports
/// (`use crate::{domain, storage}`).
fn named_after(code: &str, prefix: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    for (at, _) in code.match_indices(prefix) {
        let rest = &code[at + prefix.len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let group = group.split('}').next().unwrap_or_default();
            for item in group.split(',') {
                let name = ident(item.trim());
                if !name.is_empty() {
                    names.insert(name);
                }
            }
        } else {
            let name = ident(rest);
            if !name.is_empty() {
                names.insert(name);
            }
        }
    }
    names
}

/// The module graph: for each top-level module of `src/`, the others it names; for each folder, the siblings
/// each of its files names through `super::`.
fn module_graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(ROOT).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let tops: BTreeSet<String> = files
        .iter()
        .filter_map(|f| {
            let rel = f.strip_prefix(&src).ok()?;
            let first = rel.components().next()?.as_os_str().to_string_lossy();
            Some(first.trim_end_matches(".rs").to_owned())
        })
        .filter(|m| m != "lib" && m != "bin")
        .collect();
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in &files {
        let rel = file.strip_prefix(&src).unwrap();
        let parts: Vec<String> = rel
            .components()
            .map(|c| {
                c.as_os_str()
                    .to_string_lossy()
                    .trim_end_matches(".rs")
                    .to_owned()
            })
            .collect();
        if !tops.contains(&parts[0]) {
            continue;
        }
        let code = code(file);
        let top = parts[0].clone();
        let entry = graph.entry(top.clone()).or_default();
        for name in named_after(&code, "crate::") {
            if tops.contains(&name) && name != top {
                entry.insert(name);
            }
        }
        // A file in a folder (not the folder's mod.rs) and the siblings it reaches through `super::`.
        if parts.len() >= 2 && parts.last().is_some_and(|p| p != "mod") {
            let folder = parts[..parts.len() - 1].join("/");
            let me = format!("{folder}/{}", parts[parts.len() - 1]);
            let siblings: BTreeSet<String> = named_after(&code, "super::")
                .into_iter()
                .filter(|name| {
                    let dir = file.parent().unwrap();
                    dir.join(format!("{name}.rs")).exists()
                        || dir.join(name).join("mod.rs").exists()
                })
                .map(|name| format!("{folder}/{name}"))
                .filter(|name| *name != me)
                .collect();
            graph.entry(me).or_default().extend(siblings);
        }
    }
    graph
}

/// A cycle in `graph`, as the path around it, if there is one.
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            let mut cycle = path[at..].to_vec();
            cycle.push(node.to_owned());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|node| visit(node, graph, &mut Vec::new(), &mut done))
}

#[test]
fn no_module_imports_another_in_a_cycle() {
    let graph = module_graph();
    assert!(graph.contains_key("app") && graph.contains_key("storage/dynamo"));
    assert_eq!(find_cycle(&graph), None, "{graph:#?}");
}

#[test]
fn a_cycle_is_found() {
    let graph: BTreeMap<String, BTreeSet<String>> = [
        ("a", vec!["b"]),
        ("b", vec!["c"]),
        ("c", vec!["a"]),
        ("d", vec!["a"]),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.into_iter().map(str::to_owned).collect()))
    .collect();
    assert_eq!(
        find_cycle(&graph),
        Some(vec!["a".into(), "b".into(), "c".into(), "a".into()])
    );
    let mut acyclic = graph.clone();
    acyclic.get_mut("c").unwrap().clear();
    assert_eq!(find_cycle(&acyclic), None);
}

#[test]
fn the_use_cases_name_no_http_or_aws_type() {
    let mut files = Vec::new();
    rust_files(&Path::new(ROOT).join("src/app"), &mut files);
    assert!(files.len() >= 10);
    for file in files {
        let code = code(&file);
        for forbidden in ["lambda_http", "axum", "aws_sdk_", "aws_smithy", "http::"] {
            assert!(
                !code.contains(forbidden),
                "{} names {forbidden}",
                file.display()
            );
        }
    }
}
