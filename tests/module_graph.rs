//! No import cycles anywhere in the workspace: for every member crate, the
//! graph of its modules (an edge wherever one module names another through
//! `crate::…` or `super::…`, child-to-parent references included) must be
//! acyclic. Crates cannot form cycles (cargo refuses them), so this is the
//! remaining way for the layering to rot. The detector itself is checked on
//! a small crate written with a cycle.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Module path (`train::spec`; `""` for the crate root, `"main"` for a
/// binary's `main.rs`) → the `.rs` source with comments removed.
fn modules(src: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("read src") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().and_then(|e| e.to_str()) != Some("rs") {
                continue;
            }
            let rel = path
                .strip_prefix(src)
                .expect("under src")
                .with_extension("");
            let mut parts: Vec<String> = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            match parts.last().map(String::as_str) {
                Some("mod") | Some("lib") => {
                    parts.pop();
                }
                _ => {}
            }
            let text = std::fs::read_to_string(&path).expect("read source");
            out.insert(parts.join("::"), strip_comments(&text));
        }
    }
    out
}

fn strip_comments(text: &str) -> String {
    text.lines()
        .map(|l| match l.find("//") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn ident_at(s: &str) -> Option<&str> {
    let end = s
        .find(|c: char| !(c.is_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    (end > 0).then(|| &s[..end])
}

/// `prefix` followed by the `a::b::c` path at the start of `rest`.
fn extend(mut prefix: Vec<String>, mut rest: &str) -> Vec<String> {
    while let Some(id) = ident_at(rest) {
        prefix.push(id.to_string());
        match rest[id.len()..].strip_prefix("::") {
            Some(r) => rest = r,
            None => break,
        }
    }
    prefix
}

/// Every module path named by `crate::`/`super::` in `text` (as written,
/// relative paths resolved against `module`), longest form.
fn referenced_paths(module: &str, text: &str) -> Vec<Vec<String>> {
    let base: Vec<String> = if module.is_empty() {
        Vec::new()
    } else {
        module.split("::").map(str::to_string).collect()
    };
    let mut out = Vec::new();
    let bytes = text.as_bytes();
    for kw in ["crate::", "super::"] {
        let mut from = 0;
        while let Some(i) = text[from..].find(kw) {
            let at = from + i;
            from = at + kw.len();
            if at > 0 && (bytes[at - 1].is_ascii_alphanumeric() || bytes[at - 1] == b'_') {
                continue;
            }
            if at > 1 && &text[at - 2..at] == "::" {
                continue; // the tail of `super::super::…`, handled from its start
            }
            let mut prefix: Vec<String> = if kw == "crate::" {
                Vec::new()
            } else {
                base[..base.len().saturating_sub(1)].to_vec()
            };
            let mut rest = &text[at + kw.len()..];
            while let Some(r) = rest.strip_prefix("super::") {
                prefix.pop();
                rest = r;
            }
            if let Some(group) = rest.strip_prefix('{') {
                // `use crate::{a, b::c}`: the first segment of each item.
                let inner = group.split('}').next().unwrap_or("");
                for item in inner.split(',') {
                    out.push(extend(prefix.clone(), item.trim()));
                }
                continue;
            }
            out.push(extend(prefix, rest));
        }
    }
    out
}

/// Module graph: an edge from each module to every other module it names.
fn graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mods = modules(src);
    let mut g = BTreeMap::new();
    for (m, text) in &mods {
        let mut deps = BTreeSet::new();
        for path in referenced_paths(m, text) {
            // The longest prefix that is a module.
            for k in (0..=path.len()).rev() {
                let name = path[..k].join("::");
                if mods.contains_key(&name) {
                    if &name != m {
                        deps.insert(name);
                    }
                    break;
                }
            }
        }
        g.insert(m.clone(), deps);
    }
    g
}

/// One cycle of `g` (as a path that returns to its start), if any.
fn find_cycle(g: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        v: &str,
        g: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        state.insert(v.to_string(), 1);
        path.push(v.to_string());
        for w in g.get(v).into_iter().flatten() {
            match state.get(w.as_str()).copied().unwrap_or(0) {
                0 => {
                    if let Some(c) = visit(w, g, state, path) {
                        return Some(c);
                    }
                }
                1 => {
                    let start = path.iter().position(|p| p == w).unwrap_or(0);
                    let mut c = path[start..].to_vec();
                    c.push(w.clone());
                    return Some(c);
                }
                _ => {}
            }
        }
        path.pop();
        state.insert(v.to_string(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for v in g.keys() {
        if state.get(v.as_str()).copied().unwrap_or(0) == 0 {
            if let Some(c) = visit(v, g, &mut state, &mut Vec::new()) {
                return Some(c);
            }
        }
    }
    None
}

fn members() -> Vec<PathBuf> {
    let root = common::root();
    let text = std::fs::read_to_string(root.join("Cargo.toml")).expect("Cargo.toml");
    let manifest: toml::Table = toml::from_str(&text).expect("parse Cargo.toml");
    manifest["workspace"]["members"]
        .as_array()
        .expect("members")
        .iter()
        .map(|m| root.join(m.as_str().expect("member path")))
        .collect()
}

#[test]
fn no_module_imports_in_a_cycle() {
    let members = members();
    assert!(members.len() >= 10, "{members:?}");
    let mut report = Vec::new();
    for member in &members {
        let g = graph(&member.join("src"));
        assert!(!g.is_empty(), "{}: no sources", member.display());
        if let Some(c) = find_cycle(&g) {
            report.push(format!("{}: {}", member.display(), c.join(" -> ")));
        }
    }
    assert!(report.is_empty(), "import cycles:\n{}", report.join("\n"));
}

#[test]
fn the_detector_finds_a_cycle_and_its_edges() {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("src");
    std::fs::create_dir_all(src.join("train")).expect("mkdir");
    let write = |p: &str, t: &str| std::fs::write(src.join(p), t).expect("write");
    write("lib.rs", "pub mod config;\npub mod train;\n");
    write(
        "config.rs",
        "// crate::train is only named in a comment\npub fn x() {}\n",
    );
    write(
        "train/mod.rs",
        "pub mod spec;\npub mod run;\nuse crate::config;\n",
    );
    write("train/spec.rs", "use super::run::Start;\n");
    write(
        "train/run.rs",
        "use crate::{config, train::spec::Spec};\nfn f() { super::super::config::x() }\n",
    );
    let g = graph(&src);
    assert_eq!(g["config"], BTreeSet::new());
    assert_eq!(
        g["train::run"],
        BTreeSet::from(["config".to_string(), "train::spec".to_string()])
    );
    let cycle = find_cycle(&g).expect("spec <-> run is a cycle");
    assert!(
        cycle.contains(&"train::spec".to_string()) && cycle.contains(&"train::run".to_string()),
        "{cycle:?}"
    );
    // Without the back edge there is none.
    write("train/spec.rs", "pub struct Spec;\n");
    assert_eq!(find_cycle(&graph(&src)), None);
}
