//! Tidy checks over the workspace's source, as rust-analyzer keeps them: rules that a
//! reviewer would otherwise have to remember. Every Rust source file opens with a `//!`
//! paragraph saying what it is for; the pure parts (the tariff rating modules, the
//! engine's state and decide modules) do no I/O, read no clock, spawn no thread and know
//! nothing of tokio, so they stay deterministic and replayable.

use std::path::{Path, PathBuf};

/// The workspace root (this package lives in `tests/`).
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf()
}

/// Every `.rs` file under `dir`, skipping build output, fuzz corpora and hidden folders.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if path.is_dir() {
            if name.starts_with('.') || matches!(name.as_ref(), "target" | "corpus" | "artifacts" | "coverage") {
                continue;
            }
            rust_files(&path, out);
        } else if name.ends_with(".rs") {
            out.push(path);
        }
    }
}

fn workspace_sources() -> Vec<PathBuf> {
    let root = root();
    let mut files = Vec::new();
    for top in ["src", "engine", "tariffs", "mediation", "oss-adapters", "bss-modules", "benches", "fuzz", "tests"] {
        rust_files(&root.join(top), &mut files);
    }
    files.sort();
    files
}

#[test]
fn every_source_file_opens_with_a_module_doc_paragraph() {
    let files = workspace_sources();
    assert!(files.len() > 50, "the walk found the workspace's sources ({} files)", files.len());
    let missing: Vec<String> = files
        .iter()
        .filter(|path| {
            let text = std::fs::read_to_string(path).expect("source is UTF-8");
            !text.trim_start().starts_with("//!")
        })
        .map(|path| path.strip_prefix(root()).unwrap_or(path).display().to_string())
        .collect();
    assert!(missing.is_empty(), "files that do not open with a `//!` paragraph: {missing:#?}");
}

/// What a pure module must not name: file, network and process I/O, clocks, threads,
/// environment, and the async runtime.
const IMPURE: &[&str] = &[
    "std::fs",
    "std::net",
    "std::io",
    "std::thread",
    "std::env",
    "std::process",
    "SystemTime",
    "Instant",
    "tokio",
    "File::",
    "println!",
    "eprintln!",
];

/// Code lines only: comments (line, doc and trailing) are left out, so prose may name
/// what the code may not use.
fn code_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines().enumerate().filter_map(|(index, line)| {
        let code = match line.find("//") {
            Some(at) => &line[..at],
            None => line,
        };
        (!code.trim().is_empty()).then_some((index + 1, code))
    })
}

fn impure_uses(files: &[PathBuf]) -> Vec<String> {
    let mut found = Vec::new();
    for path in files {
        let text = std::fs::read_to_string(path).expect("source is UTF-8");
        for (line, code) in code_lines(&text) {
            for word in IMPURE.iter().filter(|word| code.contains(*word)) {
                found.push(format!("{}:{line}: `{word}`", path.strip_prefix(root()).unwrap_or(path).display()));
            }
        }
    }
    found
}

#[test]
fn rating_and_deciding_do_no_io_read_no_clock_and_know_no_tokio() {
    let root = root();
    let mut pure: Vec<PathBuf> = ["rate.rs", "calendar.rs", "money.rs", "prefix.rs", "plan.rs"]
        .iter()
        .map(|f| root.join("tariffs/src").join(f))
        .collect();
    rust_files(&root.join("engine/src/state"), &mut pure);
    rust_files(&root.join("engine/src/decide"), &mut pure);
    assert!(pure.len() >= 10 && pure.iter().all(|p| p.is_file()), "the pure modules moved: {pure:#?}");
    let found = impure_uses(&pure);
    assert!(found.is_empty(), "I/O, clocks, threads or tokio in a pure module: {found:#?}");
}

/// The check itself finds what it looks for, so a pure module passing it means something.
#[test]
fn the_purity_check_finds_io_a_clock_and_tokio_but_not_in_comments() {
    let dir = std::env::temp_dir().join(format!("tollgate-tidy-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("sample.rs");
    std::fs::write(
        &file,
        "//! Sample.\n// std::fs in a comment is fine\nuse std::time::Instant;\nfn f() { let _ = std::fs::read(\"x\"); } // tokio\nasync fn g() { tokio::task::yield_now().await }\n",
    )
    .expect("write sample");
    let found = impure_uses(std::slice::from_ref(&file));
    std::fs::remove_dir_all(&dir).ok();
    let words: Vec<&str> = found.iter().filter_map(|f| f.split('`').nth(1)).collect();
    assert_eq!(words, ["Instant", "std::fs", "tokio"], "{found:?}");
    assert!(found[0].ends_with(":3: `Instant`") && found[2].ends_with(":5: `tokio`"), "{found:?}");
}
