//! Tests of the code's layout, the rules `README.md` ("The code's layout") states: every
//! source file says its job in an opening `//!` comment, holds at most 500 lines before its
//! test module, and no two modules of a crate use each other, directly or through others.
//!
//! The module graph is read from the text: `crate::`, `super::` and `self::` paths, resolved
//! to the modules the files define. A use between two modules counts as a use between the
//! siblings that contain them (`daemon::serve` using `metrics` is `daemon` using `metrics`),
//! and a module using its own parent or child does not count: a parent declares its children.

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    path::{Path, PathBuf},
};

/// Source folders of the crates whose layout is held to the rules.
const CRATES: [&str; 5] = [
    "filter-daemon/src",
    "filter-ebpf/src",
    "filter-common/src",
    "tests/src",
    "xtask/src",
];

/// Most lines a file holds before its `#[cfg(test)]` module.
const LINES_MAX: usize = 500;

type ModPath = Vec<String>;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask sits in the workspace")
        .to_path_buf()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    out.sort();
}

/// The lines of a file before its test module.
fn before_tests(text: &str) -> impl Iterator<Item = &str> {
    text.lines()
        .take_while(|l| l.trim_start() != "#[cfg(test)]")
}

/// The module a file defines: `a/b.rs` and `a/b/mod.rs` are `[a, b]`; the crate roots and
/// binaries (`lib.rs`, `main.rs`, `bin/*.rs`) are their own roots, `None`.
fn module_of(src: &Path, file: &Path) -> Option<ModPath> {
    let rel = file.strip_prefix(src).ok()?;
    let mut parts: ModPath = rel
        .iter()
        .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_owned())
        .collect();
    if parts.first().is_some_and(|p| p == "bin") {
        return None;
    }
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    if parts.len() == 1 && (parts[0] == "lib" || parts[0] == "main") {
        return Some(Vec::new());
    }
    Some(parts)
}

/// The code of a line without its comment.
fn code(line: &str) -> &str {
    line.find("//").map_or(line, |i| &line[..i])
}

/// Every path a file names from `crate`, `super` or `self`, as written: `crate::a::b`, and
/// each leaf of a grouped `use crate::{a, b::{c, d}}`.
fn paths_named(text: &str) -> Vec<Vec<String>> {
    let code: String = before_tests(text).map(code).collect::<Vec<_>>().join("\n");
    let mut out = Vec::new();
    let bytes = code.as_bytes();
    for start in ["crate::", "super::", "self::"] {
        let mut from = 0;
        while let Some(at) = code[from..].find(start) {
            let at = from + at;
            from = at + start.len();
            let before = at.checked_sub(1).map(|i| bytes[i]);
            if before.is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':') {
                continue;
            }
            let head = start.trim_end_matches("::").to_owned();
            expand(&code[at + start.len()..], vec![head], &mut out);
        }
    }
    out
}

/// Reads one path (or a braced group of them) at the start of `rest`, prefixed by `prefix`.
fn expand(rest: &str, prefix: Vec<String>, out: &mut Vec<Vec<String>>) {
    let rest = rest.trim_start();
    if let Some(group) = rest.strip_prefix('{') {
        let mut depth = 0;
        let mut item = String::new();
        for c in group.chars() {
            match c {
                '{' => depth += 1,
                '}' if depth == 0 => break,
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    expand(&item, prefix.clone(), out);
                    item.clear();
                    continue;
                }
                _ => {}
            }
            item.push(c);
        }
        expand(&item, prefix, out);
        return;
    }
    let word: String = rest
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    if word.is_empty() {
        out.push(prefix);
        return;
    }
    let mut path = prefix;
    path.push(word.clone());
    let after = &rest[word.len()..];
    match after.strip_prefix("::") {
        Some(more) => expand(more, path, out),
        None => out.push(path),
    }
}

/// The module a path names, from module `at`: the longest known module it starts with.
fn resolve(at: &ModPath, path: &[String], modules: &BTreeSet<ModPath>) -> Option<ModPath> {
    let (mut base, rest) = match path.first().map(String::as_str) {
        Some("crate") => (Vec::new(), &path[1..]),
        Some("self") => (at.clone(), &path[1..]),
        Some("super") => {
            let mut base = at.clone();
            let mut rest = path;
            while rest.first().is_some_and(|s| s == "super") {
                base.pop()?;
                rest = &rest[1..];
            }
            (base, rest)
        }
        _ => return None,
    };
    let mut found = base.clone();
    for segment in rest {
        base.push(segment.clone());
        if modules.contains(&base) {
            found = base.clone();
        } else {
            break;
        }
    }
    Some(found)
}

/// One crate's uses between sibling modules: `(parent, from, to)`, each a child of `parent`.
fn sibling_uses(src: &Path) -> BTreeSet<(ModPath, String, String)> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let named: Vec<(ModPath, String)> = files
        .iter()
        .filter_map(|f| {
            let text = fs::read_to_string(f).expect("a readable source file");
            module_of(src, f).map(|m| (m, text))
        })
        .collect();
    let modules: BTreeSet<ModPath> = named.iter().map(|(m, _)| m.clone()).collect();
    let mut uses = BTreeSet::new();
    for (at, text) in &named {
        for path in paths_named(text) {
            let Some(to) = resolve(at, &path, &modules) else {
                continue;
            };
            let common = at.iter().zip(&to).take_while(|(a, b)| a == b).count();
            // A module and its own ancestors or descendants: declared, not used.
            if common == at.len() || common == to.len() {
                continue;
            }
            uses.insert((
                at[..common].to_vec(),
                at[common].clone(),
                to[common].clone(),
            ));
        }
    }
    uses
}

/// A circle in a graph of uses, as the names along it, if there is one.
fn circle(edges: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|p| p == node) {
            let mut found = path[i..].to_vec();
            found.push(node.to_owned());
            return Some(found);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_owned());
        for next in edges.get(node).into_iter().flatten() {
            if let Some(found) = visit(next, edges, path, done) {
                return Some(found);
            }
        }
        path.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    edges
        .keys()
        .find_map(|n| visit(n, edges, &mut Vec::new(), &mut done))
}

/// Every circle of uses between sibling modules of the crate in `src`.
fn circles(src: &Path) -> Vec<String> {
    let mut by_parent: BTreeMap<ModPath, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    for (parent, from, to) in sibling_uses(src) {
        by_parent
            .entry(parent)
            .or_default()
            .entry(from)
            .or_default()
            .insert(to);
    }
    by_parent
        .iter()
        .filter_map(|(parent, edges)| {
            circle(edges).map(|c| {
                c.iter()
                    .map(|m| {
                        [parent.as_slice(), std::slice::from_ref(m)]
                            .concat()
                            .join("::")
                    })
                    .collect::<Vec<_>>()
                    .join(" -> ")
            })
        })
        .collect()
}

#[test]
fn no_source_file_holds_more_than_500_lines_before_its_tests() {
    let root = root();
    let mut long = Vec::new();
    for src in CRATES {
        let mut files = Vec::new();
        rust_files(&root.join(src), &mut files);
        for f in files {
            let text = fs::read_to_string(&f).expect("a readable source file");
            let n = before_tests(&text).count();
            if n > LINES_MAX {
                long.push(format!(
                    "{} ({n} lines)",
                    f.strip_prefix(&root).unwrap().display()
                ));
            }
        }
    }
    assert!(
        long.is_empty(),
        "over {LINES_MAX} lines before the tests: {long:#?}"
    );
}

#[test]
fn every_source_file_opens_with_its_job() {
    let root = root();
    let mut silent = Vec::new();
    for src in CRATES {
        let mut files = Vec::new();
        rust_files(&root.join(src), &mut files);
        for f in files {
            let text = fs::read_to_string(&f).expect("a readable source file");
            if !text.trim_start().starts_with("//!") {
                silent.push(f.strip_prefix(&root).unwrap().display().to_string());
            }
        }
    }
    assert!(silent.is_empty(), "no opening //! comment: {silent:#?}");
}

#[test]
fn no_module_uses_another_that_uses_it_back() {
    let root = root();
    let found: Vec<String> = CRATES
        .iter()
        .flat_map(|src| {
            circles(&root.join(src))
                .into_iter()
                .map(move |c| format!("{src}: {c}"))
        })
        .collect();
    assert!(found.is_empty(), "import circles: {found:#?}");
}

#[test]
fn the_reader_of_uses_finds_a_circle_it_is_shown() {
    let dir = tempfile_dir();
    let write = |name: &str, text: &str| fs::write(dir.join(name), text).unwrap();
    write("lib.rs", "//! root\nmod a;\nmod b;\nmod c;\n");
    write("a.rs", "//! a\nuse crate::{b::{self, X}, Error};\n");
    write("b.rs", "//! b\nfn f() { crate::c::g(); }\n");
    write(
        "c.rs",
        "//! c\nuse super::a::Y;\n#[cfg(test)]\nmod tests { use crate::b; }\n",
    );
    let found = circles(&dir);
    assert_eq!(found, vec!["a -> b -> c -> a".to_owned()], "{found:?}");
    // Without c's use of a, no circle; c's test module is not read.
    write("c.rs", "//! c\n#[cfg(test)]\nmod tests { use crate::a; }\n");
    assert!(circles(&dir).is_empty());
    fs::remove_dir_all(&dir).unwrap();
}

/// A fresh folder under the system's temporary one.
fn tempfile_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("layout-test-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}
