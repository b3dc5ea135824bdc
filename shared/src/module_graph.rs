//! The crate's import graph, read from its sources: which module names which through a
//! `crate::`, `super::` or `self::` path (test modules left out). The tests below keep it
//! free of cycles, between the crate's top-level modules and between the store's modules,
//! and keep the store's layers in order; `module_graph_lists_the_store` prints the
//! store's graph (`cargo test -p shared --lib module_graph -- --nocapture`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

type Graph = BTreeMap<String, BTreeSet<String>>;

/// Module path (`store::ops::write`) -> source, for every file under `src/`.
fn sources() -> BTreeMap<String, String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut modules = BTreeMap::new();
    let mut dirs = vec![root.clone()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("src/ is readable") {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            if path.extension().is_none_or(|ext| ext != "rs") {
                continue;
            }
            let relative = path.strip_prefix(&root).expect("under src/");
            let mut parts: Vec<String> = relative
                .with_extension("")
                .iter()
                .map(|part| part.to_string_lossy().into_owned())
                .collect();
            if matches!(parts.last().map(String::as_str), Some("mod" | "lib")) {
                parts.pop();
            }
            let source = std::fs::read_to_string(&path).expect("a readable source");
            modules.insert(parts.join("::"), source);
        }
    }
    modules
}

/// The code of a source that counts: no test module, no comments.
fn code(source: &str) -> String {
    let source = source
        .split("#[cfg(test)]\nmod tests")
        .next()
        .unwrap_or_default();
    source
        .lines()
        .map(|line| line.split("//").next().unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every path starting with `crate`, `super` or `self` in `code`, with `{a, b::c}` groups
/// expanded one level (`super::{a, b}` is `super::a` and `super::b`).
fn paths(code: &str) -> Vec<String> {
    let mut found = Vec::new();
    let bytes: Vec<char> = code.chars().collect();
    let mut at = 0;
    while at < bytes.len() {
        let starts_word = at == 0 || !(bytes[at - 1].is_alphanumeric() || bytes[at - 1] == '_');
        let rest: String = bytes[at..bytes.len().min(at + 7)].iter().collect();
        let head = ["crate::", "super::", "self::"]
            .into_iter()
            .find(|head| rest.starts_with(head));
        let Some(head) = head.filter(|_| starts_word) else {
            at += 1;
            continue;
        };
        let mut end = at + head.len();
        while end < bytes.len() && (bytes[end].is_alphanumeric() || "_:".contains(bytes[end])) {
            end += 1;
        }
        let path: String = bytes[at..end].iter().collect();
        if path.ends_with("::") && bytes.get(end) == Some(&'{') {
            let close = bytes[end..].iter().position(|c| *c == '}').unwrap_or(0) + end;
            let group: String = bytes[end + 1..close].iter().collect();
            for member in group.split(',') {
                let member = member.split_whitespace().next().unwrap_or_default();
                if !member.is_empty() && member != "self" {
                    found.push(format!("{path}{member}"));
                }
            }
            found.push(path.trim_end_matches("::").to_owned());
            at = close.max(end);
        } else {
            found.push(path.trim_end_matches("::").to_owned());
            at = end;
        }
    }
    found
}

/// The module `path`, used in `module`, names (the longest module it starts with).
fn target(modules: &BTreeMap<String, String>, module: &str, path: &str) -> Option<String> {
    let mut segments: Vec<&str> = path.split("::").collect();
    let mut base: Vec<&str> = if module.is_empty() {
        Vec::new()
    } else {
        module.split("::").collect()
    };
    match segments.first() {
        Some(&"crate") => base.clear(),
        Some(&"super") => {
            while segments.first() == Some(&"super") {
                base.pop();
                segments.remove(0);
            }
            segments.insert(0, "");
        }
        Some(&"self") => {}
        _ => return None,
    }
    let segments = &segments[1..];
    (0..=segments.len())
        .rev()
        .map(|taken| {
            let mut parts = base.clone();
            parts.extend(&segments[..taken]);
            parts.join("::")
        })
        .find(|candidate| modules.contains_key(candidate))
}

/// Module -> the modules it names. A module's own submodules are part of it (a parent
/// re-exports its children), so only names outside it count.
fn graph() -> Graph {
    let modules = sources();
    let mut graph = Graph::new();
    for (module, source) in &modules {
        for path in paths(&code(source)) {
            let Some(target) = target(&modules, module, &path) else {
                continue;
            };
            let inside = target == *module || target.starts_with(&format!("{module}::"));
            if !inside && !target.is_empty() {
                graph.entry(module.clone()).or_default().insert(target);
            }
        }
    }
    graph
}

/// The graph with each module replaced by `group(module)`, self-loops dropped.
fn grouped(graph: &Graph, group: impl Fn(&str) -> Option<String>) -> Graph {
    let mut out = Graph::new();
    for (from, targets) in graph {
        for to in targets {
            if let (Some(a), Some(b)) = (group(from), group(to)) {
                if a != b {
                    out.entry(a).or_default().insert(b);
                }
            }
        }
    }
    out
}

/// A cycle of `graph`, if it has one.
fn cycle(graph: &Graph) -> Option<Vec<String>> {
    fn visit(
        graph: &Graph,
        node: &str,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|seen| seen == node) {
            let mut found = path[at..].to_vec();
            found.push(node.to_owned());
            return Some(found);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(found) = visit(graph, next, path, done) {
                return Some(found);
            }
        }
        path.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|node| visit(graph, node, &mut Vec::new(), &mut done))
}

/// The store's modules only, `store::` left out.
fn store_graph(graph: &Graph) -> Graph {
    grouped(graph, |module| {
        module
            .strip_prefix("store::")
            .map(str::to_owned)
            .or_else(|| (module == "store").then(|| "(store)".to_owned()))
    })
}

#[test]
fn top_level_modules_form_no_cycle() {
    let top = grouped(&graph(), |module| {
        Some(module.split("::").next().unwrap_or_default().to_owned())
    });
    assert_eq!(cycle(&top), None, "{top:#?}");
}

#[test]
fn store_modules_form_no_cycle() {
    let store = store_graph(&graph());
    assert_eq!(cycle(&store), None, "{store:#?}");
}

#[test]
fn store_layers_only_look_down() {
    let store = store_graph(&graph());
    let layer = |module: &str| match module.split("::").next() {
        Some("schema") => 0,
        Some("expr" | "error") => 1,
        Some("codec") => 2,
        _ => 3,
    };
    for (from, targets) in &store {
        for to in targets {
            assert!(
                layer(to) <= layer(from),
                "`store::{from}` uses `store::{to}`, a layer above it"
            );
        }
    }
    // The schema layer stands alone: nothing from the rest of the store.
    for (from, targets) in store.iter().filter(|(from, _)| layer(from) == 0) {
        assert!(
            targets.iter().all(|to| to.starts_with("schema")),
            "{from}: {targets:?}"
        );
    }
}

#[test]
fn only_the_store_builds_queries() {
    for (module, source) in sources() {
        if module == "store" || module.starts_with("store::") || module == "module_graph" {
            continue;
        }
        let code = code(&source);
        for raw in ["ops::queries", "store::testing", "SortKey", "Index::"] {
            assert!(
                !code.contains(raw),
                "`{module}` names `{raw}`: add a `Store` method to `ops::lists`"
            );
        }
    }
}

#[test]
fn module_graph_lists_the_store() {
    for (from, targets) in store_graph(&graph()) {
        let targets: Vec<_> = targets.into_iter().collect();
        println!("- {from} -> {}", targets.join(", "));
    }
}

#[test]
fn paths_are_read_with_their_groups() {
    let found = paths("use super::{a::B, c};\nlet x = crate::store::s(1);");
    assert_eq!(
        found,
        ["super::a::B", "super::c", "super", "crate::store::s"]
    );
}
