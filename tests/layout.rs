//! The architecture test: the folders of `src/` are the stages a delivery travels through, and
//! imports run one way, down this list:
//!
//! ```text
//! app -> http -> follow_up -> apply -> intake -> store -> shared pieces (secret, backoff, networks, config_error)
//! ```
//!
//! A later stage may read an earlier one's types (the worker reads what the inbox stored); an
//! earlier one never knows of a later one, and nothing but `app` knows `app`. The stages below
//! `http` know nothing of axum, the state rules (`rules.rs`) touch no database, no HTTP and no
//! clock, and no source file grows past 500 lines. Every `crate::` and `super::` path under
//! `src/` is read; a failure names the file and the import.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
};

/// The top-level folders, from the top; a folder may import only those after it.
const LAYERS: &[&str] = &["app", "http", "follow_up", "apply", "intake", "store"];
/// The small shared pieces at the bottom (files of `src/` itself).
const SHARED: &[&str] = &["secret", "backoff", "networks", "config_error"];
/// Folders that must not know the web framework.
const NO_AXUM: &[&str] = &["follow_up", "apply", "intake", "store"];
/// What the pure state rules must not mention.
const NOT_IN_RULES: &[&str] = &[
    "sqlx",
    "axum",
    "tokio",
    "reqwest",
    "Utc::now",
    "Local::now",
    "SystemTime",
    "Instant",
];
/// The longest a source file may be.
const MAX_LINES: usize = 500;

/// The rank of a top-level module: 0 for `app`, larger further down; shared pieces and the crate
/// root's own items are the bottom.
fn rank(top: &str) -> usize {
    LAYERS
        .iter()
        .position(|layer| *layer == top)
        .unwrap_or(LAYERS.len())
}

/// Every `.rs` file under `dir`.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("readable src") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// The module path of a file: `src/http/admin/events.rs` is `["http", "admin", "events"]`,
/// `src/http/mod.rs` is `["http"]`, `src/lib.rs` is `[]`.
fn module_path(src: &Path, file: &Path) -> Vec<String> {
    let relative = file.strip_prefix(src).expect("under src");
    let mut parts: Vec<String> = relative
        .iter()
        .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_string())
        .collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    parts
}

/// The code of a file without its comments (doc comments name modules in prose).
fn code(text: &str) -> String {
    text.lines()
        .map(|line| match line.find("//") {
            Some(i) => &line[..i],
            None => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The first segments of the paths that follow `prefix` at `at`: `crate::a::b` gives `a`,
/// `crate::{a::b, c}` gives `a` and `c`.
fn first_segments(code: &str, at: usize) -> Vec<String> {
    let rest = &code[at..];
    let ident = |s: &str| {
        s.trim_start()
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect::<String>()
    };
    if let Some(group) = rest.strip_prefix('{') {
        let (mut depth, mut start, mut names) = (0usize, 0usize, Vec::new());
        for (i, c) in group.char_indices() {
            match c {
                '{' => depth += 1,
                '}' if depth == 0 => {
                    names.push(ident(&group[start..i]));
                    break;
                }
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    names.push(ident(&group[start..i]));
                    start = i + 1;
                }
                _ => {}
            }
        }
        names.into_iter().filter(|n| !n.is_empty()).collect()
    } else {
        vec![ident(rest)]
            .into_iter()
            .filter(|n| !n.is_empty())
            .collect()
    }
}

/// The top-level modules a file imports, with the text of each import (for the message).
fn imports(module: &[String], code: &str) -> Vec<(String, String)> {
    let mut found = Vec::new();
    for (at, _) in code.match_indices("crate::") {
        let before = code[..at].chars().last();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue; // `fluid_webhooks_crate::` or the like
        }
        found.extend(imported(code, at, at + "crate::".len()));
    }
    // `super::` paths climb from the file's module; only those that leave its top folder matter.
    for (at, _) in code.match_indices("super::") {
        if code[..at].ends_with("super::") || code[..at].ends_with('_') {
            continue; // counted from the first `super`
        }
        let mut ups = 0;
        let mut rest = &code[at..];
        while let Some(r) = rest.strip_prefix("super::") {
            ups += 1;
            rest = r;
        }
        if ups < module.len() {
            continue; // still inside its own top folder
        }
        found.extend(imported(code, at, code.len() - rest.len()));
    }
    found
}

/// The top-level modules named by the path whose segments start at `start`, each with the line of
/// the import (from `at`) for the message.
fn imported(code: &str, at: usize, start: usize) -> Vec<(String, String)> {
    let line = code[at..].lines().next().unwrap_or_default().trim();
    first_segments(code, start)
        .into_iter()
        .map(|top| (top, line.to_string()))
        .collect()
}

/// Every broken rule of the tree under `src`, as one line each.
fn violations(src: &Path) -> Vec<String> {
    let mut broken = Vec::new();
    let mut edges: BTreeMap<(String, String), String> = BTreeMap::new();
    for file in rust_files(src) {
        let text = std::fs::read_to_string(&file).expect("readable file");
        let shown = file
            .strip_prefix(src)
            .unwrap_or(&file)
            .display()
            .to_string();
        let lines = text.lines().count();
        if lines > MAX_LINES {
            broken.push(format!(
                "src/{shown}: {lines} lines, over {MAX_LINES}: split it by responsibility"
            ));
        }
        let module = module_path(src, &file);
        let Some(own) = module.first().cloned() else {
            continue; // lib.rs and main.rs wire the tree together
        };
        let code = code(&text);
        if NO_AXUM.contains(&own.as_str()) && code.contains("axum") {
            broken.push(format!(
                "src/{shown}: `{own}` must know nothing of axum; take `http` types and convert in `http`"
            ));
        }
        if file.file_name().is_some_and(|n| n == "rules.rs") {
            for word in NOT_IN_RULES {
                if code.contains(word) {
                    broken.push(format!(
                        "src/{shown}: the state rules are a pure function, but it mentions `{word}`"
                    ));
                }
            }
        }
        for (top, line) in imports(&module, &code) {
            if top == own || top == "self" {
                continue;
            }
            let known = LAYERS.contains(&top.as_str()) || SHARED.contains(&top.as_str());
            if !known {
                continue; // an item of the crate root, such as `install_crypto_provider`
            }
            if rank(&top) < rank(&own) || SHARED.contains(&own.as_str()) {
                broken.push(format!(
                    "src/{shown}: `{own}` imports `{top}`, which is above it: {line}"
                ));
            }
            edges.entry((own.clone(), top)).or_insert(shown.clone());
        }
    }
    let pairs: BTreeSet<(String, String)> = edges.keys().cloned().collect();
    for (a, b) in &pairs {
        if a < b && pairs.contains(&(b.clone(), a.clone())) {
            broken.push(format!(
                "`{a}` and `{b}` import each other (src/{} and src/{})",
                edges[&(a.clone(), b.clone())],
                edges[&(b.clone(), a.clone())]
            ));
        }
    }
    broken
}

#[test]
fn imports_run_one_way_down_the_stages() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let broken = violations(&src);
    assert!(
        broken.is_empty(),
        "the layout is broken:\n{}",
        broken.join("\n")
    );
}

#[test]
fn every_top_level_folder_is_a_known_stage() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    for entry in std::fs::read_dir(&src).expect("src") {
        let path = entry.expect("entry").path();
        let name = path
            .file_stem()
            .expect("name")
            .to_string_lossy()
            .to_string();
        let known = LAYERS.contains(&name.as_str())
            || SHARED.contains(&name.as_str())
            || ["lib", "main"].contains(&name.as_str());
        assert!(
            known,
            "src/{name} is neither a stage ({LAYERS:?}) nor a shared piece ({SHARED:?}): \
             put it in the stage it serves, or add it to tests/layout.rs with a reason"
        );
    }
}

/// The checker itself fails on a tree that breaks each rule.
#[test]
fn the_checker_names_each_kind_of_bad_import() {
    let dir = tempfile::tempdir().expect("temp dir");
    let src = dir.path();
    let write = |path: &str, text: &str| {
        let path = src.join(path);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, text).expect("write");
    };
    write(
        "lib.rs",
        "pub mod app; pub mod store; pub mod intake; pub mod apply;\n",
    );
    write("app/mod.rs", "use crate::store::database::pool;\n");
    // Upward: the store reaches up to the settings of `app`.
    write(
        "store/retention.rs",
        "use crate::{\n    app::config::Settings,\n    secret::Secret,\n};\n",
    );
    // A cycle: intake and apply import each other (and intake is above apply).
    write("intake/inbox.rs", "use crate::apply::worker::Worker;\n");
    write(
        "apply/worker.rs",
        "use super::super::intake::inbox::Inbox;\n",
    );
    // The rules reach for the clock and the database.
    write(
        "apply/transactions/rules.rs",
        "fn now() { let _ = chrono::Utc::now(); }\nuse sqlx::PgPool;\n",
    );
    write(
        "intake/route.rs",
        "use axum::Json; // a route does not belong here\n",
    );
    // Comments do not count.
    write(
        "store/database.rs",
        "//! Unlike crate::app, this file is fine.\n",
    );

    let broken = violations(src);
    let has = |needle: &str| broken.iter().any(|line| line.contains(needle));
    assert!(
        has("src/store/retention.rs: `store` imports `app`, which is above it: crate::{"),
        "{broken:#?}"
    );
    assert!(
        has("src/intake/inbox.rs: `intake` imports `apply`"),
        "{broken:#?}"
    );
    assert!(has("`apply` and `intake` import each other"), "{broken:#?}");
    assert!(has(
        "rules.rs: the state rules are a pure function, but it mentions `sqlx`"
    ));
    assert!(has("mentions `Utc::now`"), "{broken:#?}");
    assert!(has(
        "src/intake/route.rs: `intake` must know nothing of axum"
    ));
    assert!(
        !has("database.rs"),
        "a comment is not an import: {broken:#?}"
    );
    assert!(has("`app` and `store` import each other"), "{broken:#?}");
    assert!(
        !has("src/app/mod.rs: `app` imports"),
        "app may import anything: {broken:#?}"
    );
    assert_eq!(broken.len(), 7, "{broken:#?}");
}
