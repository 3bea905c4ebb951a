//! The gateway's modules import each other without a cycle: each top-level module of
//! `gateway/src` (a file, or a folder with everything in it) may use only modules below it, so
//! it can be read, tested and replaced on its own. Read from the source's own `crate::` paths
//! (in `use` lines and inline), leaving out comments and the `#[cfg(test)]` module at the end
//! of a file.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Every `.rs` file under `dir`.
fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file belongs to (`broker/conn/driver.rs` -> `broker`), or `None`
/// for the crate roots.
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).unwrap();
    let first = rel.components().next()?.as_os_str().to_str()?.to_owned();
    match first.strip_suffix(".rs") {
        Some("lib" | "main") => None,
        Some(name) => Some(name.to_owned()),
        None => Some(first),
    }
}

/// The code of a file without comments and without its trailing `#[cfg(test)] mod tests`.
fn code(text: &str) -> String {
    let mut out = String::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("#[cfg(test)]")
            && lines
                .peek()
                .is_some_and(|next| next.trim_start().starts_with("mod tests"))
        {
            break;
        }
        let line = match line.find("//") {
            Some(i) => &line[..i],
            None => line,
        };
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// The top-level modules a piece of code names through `crate::`, including grouped imports
/// (`use crate::{a, b::c}`).
fn uses(code: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect()
    };
    for (i, _) in code.match_indices("crate::") {
        let before = code[..i].chars().next_back();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue; // `switchboard_crate::` and the like
        }
        let rest = &code[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // Only the top level of the group: the first name of each item.
            let mut depth = 0;
            let mut item = String::new();
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => {
                        let name = ident(item.trim());
                        if !name.is_empty() {
                            found.insert(name);
                        }
                        break;
                    }
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        let name = ident(item.trim());
                        if !name.is_empty() {
                            found.insert(name);
                        }
                        item.clear();
                    }
                    _ => item.push(c),
                }
            }
        } else {
            let name = ident(rest);
            if !name.is_empty() {
                found.insert(name);
            }
        }
    }
    found
}

/// One cycle in `graph`, if there is any (depth-first search).
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        state.insert(node.to_owned(), 1);
        stack.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            match state.get(next.as_str()).copied().unwrap_or(0) {
                1 => {
                    let start = stack.iter().position(|n| n == next).unwrap();
                    let mut cycle = stack[start..].to_vec();
                    cycle.push(next.clone());
                    return Some(cycle);
                }
                0 => {
                    if let Some(c) = visit(next, graph, state, stack) {
                        return Some(c);
                    }
                }
                _ => {}
            }
        }
        stack.pop();
        state.insert(node.to_owned(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for node in graph.keys() {
        if state.get(node.as_str()).copied().unwrap_or(0) == 0 {
            let mut stack = Vec::new();
            if let Some(c) = visit(node, graph, &mut state, &mut stack) {
                return Some(c);
            }
        }
    }
    None
}

/// `graph` in floors: floor 1 imports nothing, each floor only what is below it.
fn floors(graph: &BTreeMap<String, BTreeSet<String>>) -> BTreeMap<usize, Vec<String>> {
    fn floor(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        memo: &mut BTreeMap<String, usize>,
    ) -> usize {
        if let Some(&f) = memo.get(node) {
            return f;
        }
        let f = 1 + graph
            .get(node)
            .into_iter()
            .flatten()
            .map(|n| floor(n, graph, memo))
            .max()
            .unwrap_or(0);
        memo.insert(node.to_owned(), f);
        f
    }
    let mut memo = BTreeMap::new();
    let mut out: BTreeMap<usize, Vec<String>> = BTreeMap::new();
    for node in graph.keys() {
        let f = floor(node, graph, &mut memo);
        out.entry(f).or_default().push(node.clone());
    }
    out
}

fn gateway_graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in &files {
        let Some(module) = module_of(&src, file) else {
            continue;
        };
        let text = std::fs::read_to_string(file).unwrap();
        let entry = graph.entry(module.clone()).or_default();
        for used in uses(&code(&text)) {
            if used != module {
                entry.insert(used);
            }
        }
    }
    let known: BTreeSet<String> = graph.keys().cloned().collect();
    for used in graph.values_mut() {
        used.retain(|u| known.contains(u));
    }
    graph
}

#[test]
fn the_reader_finds_imports_and_cycles() {
    let text = "use crate::{a, b::{c, d}, e::f};\n// crate::commented\nfn x() { crate::g::h(); my_crate::no(); }\n#[cfg(test)]\nmod tests {\n    use crate::t;\n}\n";
    let found = uses(&code(text));
    assert_eq!(
        found,
        ["a", "b", "e", "g"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect()
    );
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    graph.insert("a".into(), ["b".into()].into());
    graph.insert("b".into(), ["c".into()].into());
    graph.insert("c".into(), BTreeSet::new());
    assert_eq!(find_cycle(&graph), None);
    graph.get_mut("c").unwrap().insert("a".into());
    assert_eq!(
        find_cycle(&graph),
        Some(vec!["a".into(), "b".into(), "c".into(), "a".into()])
    );
}

#[test]
fn gateway_modules_have_no_import_cycle() {
    let graph = gateway_graph();
    assert!(graph.len() > 10, "read too few modules: {graph:?}");
    assert!(
        graph["broker"].contains("security"),
        "the reader sees broker's imports: {graph:?}"
    );
    if let Some(cycle) = find_cycle(&graph) {
        let mut why = String::new();
        for pair in cycle.windows(2) {
            why.push_str(&format!("\n  {} uses crate::{}", pair[0], pair[1]));
        }
        panic!(
            "import cycle among gateway/src modules: {}{why}",
            cycle.join(" -> ")
        );
    }
    for (floor, modules) in floors(&graph).iter().rev() {
        println!("floor {floor}: {}", modules.join(", "));
    }
}
