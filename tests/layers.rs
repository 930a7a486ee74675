//! The layer order of `src/lib.rs`, kept: dependencies run one way, lowest
//! first. Every file under `src/` is read and each `crate::` path it names
//! (in a `use` or written out in the code, tests included) is checked
//! against the order: a module may use the layers below its own, never its
//! own layer's neighbours or a layer above. A failure names the file, the
//! line and the module it reached for.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The module map of `src/lib.rs`, lowest first. The binary (`main.rs`)
/// stands above all of them.
const LAYERS: &[&[&str]] = &[
    // Foundations: no knowledge of captures, sessions or verdicts.
    &["fasthash", "logging", "clock", "process"],
    &["wire", "sql", "columnar", "workers"],
    &["metrics", "cluster", "redis_server"],
    // The capture: the tap event contract, the recorder, the reader.
    &["capture"],
    // Producers and consumers of captures.
    &["proxy", "replay"],
    &["diff"],
    &["report"],
    &["demo"],
    &["cli"],
];

/// Modules that stand beside the stack: (module, the layers below `n` it
/// may use — the foundations —, the first layer that may use it — the
/// commands).
const BESIDE: &[(&str, usize, usize)] = &[("workload", 3, 7)];

/// Where a module may sit: its layer index, and the highest layer it may use
/// (exclusive).
fn place(module: &str) -> Option<(usize, usize)> {
    if let Some(i) = LAYERS.iter().position(|l| l.contains(&module)) {
        return Some((i, i));
    }
    BESIDE
        .iter()
        .find(|(m, _, _)| *m == module)
        .map(|&(_, below, _)| (LAYERS.len(), below))
}

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

/// The text of a line before its `//` comment (doc links are not uses).
fn code(line: &str) -> &str {
    match line.find("//") {
        Some(i) => &line[..i],
        None => line,
    }
}

fn ident(s: &str) -> &str {
    let end = s
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    &s[..end]
}

/// The top-level modules a file names through `crate::`, with the line
/// each is named on. `use crate::{a::x, b}` names `a` and `b`.
fn uses(text: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    let lines: Vec<&str> = text.lines().map(code).collect();
    for (n, line) in lines.iter().enumerate() {
        let mut rest = *line;
        while let Some(i) = rest.find("crate::") {
            let before = rest[..i].chars().last();
            rest = &rest[i + "crate::".len()..];
            if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
                continue; // `pgtape_crate::` and the like
            }
            if let Some(group) = rest.strip_prefix('{') {
                // The group may span lines: read to its closing brace.
                let mut body = String::from(group);
                let mut k = n + 1;
                while depth(&body) > 0 && k < lines.len() {
                    body.push_str(lines[k]);
                    k += 1;
                }
                for m in group_heads(&body) {
                    found.push((n + 1, m));
                }
            } else {
                let m = ident(rest);
                if !m.is_empty() {
                    found.push((n + 1, m.to_string()));
                }
            }
        }
    }
    found
}

/// Open braces minus closed ones, counting the group's own opening brace.
fn depth(s: &str) -> i32 {
    1 + s.matches('{').count() as i32 - s.matches('}').count() as i32
}

/// The first segment of each item of a `{a::x, b::{y, z}}` group.
fn group_heads(body: &str) -> Vec<String> {
    let mut heads = Vec::new();
    let mut level = 0;
    let mut at_item = true;
    let mut rest = body;
    while let Some(c) = rest.chars().next() {
        match c {
            '{' => level += 1,
            '}' if level == 0 => break,
            '}' => level -= 1,
            ',' if level == 0 => at_item = true,
            c if at_item && (c.is_ascii_alphabetic() || c == '_') => {
                let m = ident(rest);
                heads.push(m.to_string());
                at_item = false;
                rest = &rest[m.len()..];
                continue;
            }
            _ => {}
        }
        rest = &rest[c.len_utf8()..];
    }
    heads
}

#[test]
fn no_module_uses_one_above_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();

    // Every top-level module of the library has a place in the order.
    let lib = std::fs::read_to_string(src.join("lib.rs")).unwrap();
    for line in lib.lines() {
        if let Some(m) = line.trim().strip_prefix("pub mod ") {
            let m = m.trim_end_matches(';');
            assert!(
                place(m).is_some(),
                "src/lib.rs declares `{m}`, which tests/layers.rs does not place: add it to LAYERS"
            );
        }
    }

    let mut offences: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    for file in &files {
        let rel = file.strip_prefix(&src).unwrap();
        let first = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy();
        let module = first.trim_end_matches(".rs");
        if module == "main" || module == "lib" {
            continue;
        }
        let (own, below) = place(module).unwrap_or_else(|| {
            panic!(
                "src/{} belongs to `{module}`, which LAYERS does not place",
                rel.display()
            )
        });
        let text = std::fs::read_to_string(file).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        for (n, used) in uses(&text) {
            if used == module || used == "self" || used == "super" {
                continue;
            }
            let Some((theirs, _)) = place(&used) else {
                continue; // a macro or a name that is not a module
            };
            let allowed = match BESIDE.iter().find(|(m, _, _)| *m == used) {
                Some(&(_, _, from)) => own >= from && own < LAYERS.len(),
                None => theirs < below,
            };
            if !allowed {
                let key = (format!("src/{}", rel.display()), used.clone());
                let at = format!("{n}: {}", lines[n - 1].trim());
                let seen = offences.entry(key).or_default();
                if !seen.contains(&at) {
                    seen.push(at);
                }
            }
        }
    }

    let mut report = String::new();
    for ((file, used), at) in &offences {
        report.push_str(&format!(
            "{file} uses `{used}`, a layer at or above its own:\n"
        ));
        for line in at {
            report.push_str(&format!("    {line}\n"));
        }
    }
    assert!(
        report.is_empty(),
        "the layer order of src/lib.rs is broken (lowest first: {LAYERS:?}, beside: {BESIDE:?}):\n{report}"
    );
}

#[test]
fn group_heads_reads_nested_groups() {
    assert_eq!(
        group_heads("capture::{a, b}, proxy::x, diff};"),
        vec!["capture", "proxy", "diff"]
    );
    assert_eq!(uses("use crate::cli::exit;"), vec![(1, "cli".to_string())]);
    assert_eq!(
        uses("use crate::{\n    report::x,\n    wire,\n};"),
        vec![(1, "report".to_string()), (1, "wire".to_string())]
    );
}
