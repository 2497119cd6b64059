//! Tidy checks over the workspace's source, as rust-analyzer keeps them: rules that a
//! reviewer would otherwise have to remember. Every Rust source file opens with a `//!`
//! paragraph saying what it is for; the pure parts (the tariff rating modules, the
//! engine's state and decide modules) do no I/O, read no clock, spawn no thread and know
//! nothing of tokio, so they stay deterministic and replayable; an integer field that
//! holds a time says its unit in its name (`valid_from_at`, `timeout_seconds`; the rule is
//! at [`TIME_WORDS`]).

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
fn rating_deciding_and_billing_do_no_io_read_no_clock_and_know_no_tokio() {
    let root = root();
    let mut pure: Vec<PathBuf> = ["rate.rs", "calendar.rs", "money.rs", "prefix.rs", "plan.rs"]
        .iter()
        .map(|f| root.join("tariffs/src").join(f))
        .collect();
    rust_files(&root.join("engine/src/state"), &mut pure);
    rust_files(&root.join("engine/src/decide"), &mut pure);
    // The bill run's rules: the CLI and the store bring their inputs and keep their output.
    rust_files(&root.join("bss-modules/billing/src"), &mut pure);
    assert!(pure.len() >= 19 && pure.iter().all(|p| p.is_file()), "the pure modules moved: {pure:#?}");
    let found = impure_uses(&pure);
    assert!(found.is_empty(), "I/O, clocks, threads or tokio in a pure module: {found:#?}");
}

/// The fraud detectors are pure too (ARCHITECTURE.md): the time comes from the events.
/// Only their benchmark (`examples/`) reads a clock.
#[test]
fn fraud_detection_does_no_io_reads_no_clock_and_knows_no_tokio() {
    let mut pure = Vec::new();
    rust_files(&root().join("oss-adapters/fraud/src"), &mut pure);
    assert!(pure.len() >= 10 && pure.iter().any(|p| p.ends_with("spike.rs")), "the fraud sources moved: {pure:#?}");
    let found = impure_uses(&pure);
    assert!(found.is_empty(), "I/O, clocks, threads or tokio in the fraud detectors: {found:#?}");
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

/// Words that, ending a field's name, say that the field holds a time: an instant
/// (`now`, `valid_from`, `created`) or a duration (`timeout`, `lease`, `window`).
///
/// The rule (issue 15, STYLE "units in names, last"): an integer that holds a time ends
/// its name with the unit, one of [`UNIT_SUFFIXES`], so `valid_from` is `valid_from_at`
/// and `timeout` is `timeout_seconds`; the check flags an integer field whose last word is
/// one of these (`from_units` ends in its unit and passes; a field named just `at` is an
/// instant in Unix seconds). An instant is a Unix time: `_at` means Unix seconds
/// (the engine's, the tariffs' and mediation's clock: `decided_at`, `expires_at`) and
/// `_at_ms` Unix milliseconds (the store's `created_at_ms`); the rating side's
/// `start_utc_seconds` spells the same Unix seconds out. A duration says its unit:
/// `validity_seconds`, `work_ms`, `payment_terms_days`. Types that carry their unit
/// (`Duration`, `Instant`, `SystemTime`, `jiff::Timestamp`) need no suffix; a `usize` counts
/// or sizes things and is never a time (`dedupe_window` is a number of keys). The formats
/// store no field names (rkyv, the hand-written journal and ledger records), so a rename
/// changes no file; a serde-serialised field keeps its public name with
/// `#[serde(rename = "...")]`, a CLI flag with `#[arg(long = "...")]`.
#[rustfmt::skip]
const TIME_WORDS: &[&str] = &[
    // instants
    "now", "start", "end", "from", "to", "since", "until", "expires", "expiry", "deadline", "created",
    "updated", "anchor", "epoch", "time", "timestamp", "exp", "nbf", "iat",
    // durations
    "timeout", "interval", "duration", "retention", "window", "age", "delay", "ttl", "elapsed", "grace",
    "lease", "period", "validity", "backoff", "latency", "uptime",
];

/// The endings that say a time field's unit (see [`TIME_WORDS`] for the rule).
const UNIT_SUFFIXES: &[&str] = &["_at", "_at_ms", "_utc_seconds", "_seconds", "_ms", "_us", "_ns", "_days", "_minute"];

/// Fields whose name ends in a time word but that hold no time.
const NOT_TIMES: &[&str] = &[
    // Diameter's End-to-End Identifier (RFC 6733 section 3), beside `hop_by_hop`.
    "end_to_end",
];

/// A named field of a struct, union or enum variant, as declared.
#[derive(Debug)]
struct Field {
    line: usize,
    name: String,
    ty: String,
}

/// `text` with its comments and the insides of its string and char literals blanked out
/// (newlines kept), so braces, commas and keywords in prose or literals count for nothing.
fn mask_comments_and_literals(text: &str) -> Vec<char> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::with_capacity(chars.len());
    let blank = |c: char| if c == '\n' { '\n' } else { ' ' };
    let ident = |c: Option<&char>| c.is_some_and(|c| c.is_alphanumeric() || *c == '_');
    let mut i = 0;
    while i < chars.len() {
        let (c, next) = (chars[i], chars.get(i + 1).copied());
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                out.push(' ');
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    out.extend(['/', '*']);
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    out.extend(['*', '/']);
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    out.push(blank(chars[i]));
                    i += 1;
                }
            }
        } else if c == 'r'
            && matches!(next, Some('"' | '#'))
            && (!ident(i.checked_sub(1).and_then(|p| chars.get(p)))
                || (chars[i - 1] == 'b' && !ident(i.checked_sub(2).and_then(|p| chars.get(p)))))
        {
            // A raw string: r"…", r#"…"#, br"…".
            let hashes = chars[i + 1..].iter().take_while(|c| **c == '#').count();
            if chars.get(i + 1 + hashes) != Some(&'"') {
                out.push(c);
                i += 1;
                continue;
            }
            out.extend(std::iter::repeat_n(' ', hashes + 2));
            i += hashes + 2;
            while i < chars.len() {
                if chars[i] == '"' && chars[i + 1..].iter().take(hashes).filter(|c| **c == '#').count() == hashes {
                    out.extend(std::iter::repeat_n(' ', hashes + 1));
                    i += hashes + 1;
                    break;
                }
                out.push(blank(chars[i]));
                i += 1;
            }
        } else if c == '"' {
            out.push(' ');
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                let step = if chars[i] == '\\' { 2 } else { 1 };
                for skipped in &chars[i..(i + step).min(chars.len())] {
                    out.push(blank(*skipped));
                }
                i += step;
            }
            out.push(' ');
            i += 1;
        } else if c == '\'' && (next == Some('\\') || chars.get(i + 2) == Some(&'\'')) {
            // A char literal ('x', '\n', '\''), not a lifetime.
            let from = if next == Some('\\') { i + 3 } else { i + 2 };
            let close = chars
                .get(from..)
                .and_then(|rest| rest.iter().position(|c| *c == '\''))
                .map_or(chars.len(), |at| from + at + 1);
            out.extend(std::iter::repeat_n(' ', close - i));
            i = close;
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

/// The named fields of the structs, unions and enum variants declared in `text`. A small
/// scanner, not a parser: after `struct`/`union`/`enum Name` it takes the body in braces
/// and splits it at the field level (depth 1 in a struct, 2 in an enum's variant) on the
/// commas outside brackets; each piece, attributes and visibility dropped, is `name: Type`.
fn declared_fields(text: &str) -> Vec<Field> {
    let code = mask_comments_and_literals(text);
    let is_ident = |c: char| c.is_alphanumeric() || c == '_';
    let word_at = |at: usize| -> String { code[at..].iter().take_while(|c| is_ident(**c)).collect() };
    let mut fields = Vec::new();
    let mut line = 1;
    let mut i = 0;
    while i < code.len() {
        let c = code[i];
        if c == '\n' {
            line += 1;
        }
        let starts_word = is_ident(c) && (i == 0 || !is_ident(code[i - 1]));
        let keyword = if starts_word { word_at(i) } else { String::new() };
        if !matches!(keyword.as_str(), "struct" | "union" | "enum") {
            i += 1;
            continue;
        }
        let after = i + keyword.len();
        let gap = code[after..].iter().take_while(|c| c.is_whitespace()).count();
        if gap == 0 || !code.get(after + gap).is_some_and(|c| c.is_alphabetic() || *c == '_') {
            i = after;
            continue;
        }
        // The header up to the body: `(` or `;` outside generics means no named fields.
        let (mut at, mut angle) = (after, 0i32);
        let body = loop {
            match code.get(at) {
                None => break None,
                Some('<') => angle += 1,
                Some('>') if code[at - 1] != '-' => angle -= 1,
                Some('(' | ';') if angle == 0 => break None,
                Some('{') => break Some(at),
                Some('\n') => line += 1,
                _ => {}
            }
            at += 1;
        };
        let Some(open) = body else {
            i = at;
            continue;
        };
        let field_depth = if keyword == "enum" { 2 } else { 1 };
        // Commas inside (), [] or a type's <> belong to the field; `<` only counts outside
        // () and [], where an attribute's `1 << 20` cannot be.
        let (mut depth, mut nested, mut angle) = (0usize, 0i32, 0i32);
        let mut piece: Vec<(char, usize)> = Vec::new();
        at = open;
        while at < code.len() {
            let ch = code[at];
            match ch {
                '{' => {
                    depth += 1;
                    (nested, angle) = (0, 0);
                }
                '}' => {
                    if depth == field_depth {
                        fields.extend(field_of(&piece));
                        piece.clear();
                    }
                    depth -= 1;
                    if depth == 0 {
                        break;
                    }
                }
                '(' | '[' if depth == field_depth => nested += 1,
                ')' | ']' if depth == field_depth => nested -= 1,
                '<' if depth == field_depth && nested == 0 => angle += 1,
                '>' if depth == field_depth && nested == 0 && code[at - 1] != '-' => angle -= 1,
                ',' if depth == field_depth && nested == 0 && angle == 0 => {
                    fields.extend(field_of(&piece));
                    piece.clear();
                }
                _ => {}
            }
            if depth == field_depth && !matches!(ch, '{' | '}') && !(ch == ',' && nested == 0 && angle == 0) {
                piece.push((ch, line));
            }
            if ch == '\n' {
                line += 1;
            }
            at += 1;
        }
        i = at + 1;
    }
    fields
}

/// `name: Type` out of one field's text (with its line per char), attributes and
/// visibility dropped; `None` for anything else (a tuple variant, a discriminant).
fn field_of(piece: &[(char, usize)]) -> Option<Field> {
    let mut at = 0;
    let skip_space = |at: &mut usize| {
        while piece.get(*at).is_some_and(|(c, _)| c.is_whitespace()) {
            *at += 1;
        }
    };
    let skip_group = |at: &mut usize, open: char, close: char| {
        let mut depth = 0;
        while let Some((c, _)) = piece.get(*at) {
            *at += 1;
            if *c == open {
                depth += 1;
            } else if *c == close {
                depth -= 1;
                if depth == 0 {
                    break;
                }
            }
        }
    };
    let word = |at: usize| -> String {
        piece[at..].iter().map(|(c, _)| *c).take_while(|c| c.is_alphanumeric() || *c == '_').collect()
    };
    loop {
        skip_space(&mut at);
        if piece.get(at).is_some_and(|(c, _)| *c == '#') {
            at += 1;
            skip_group(&mut at, '[', ']');
        } else if word(at) == "pub" {
            at += 3;
            skip_space(&mut at);
            if piece.get(at).is_some_and(|(c, _)| *c == '(') {
                skip_group(&mut at, '(', ')');
            }
        } else {
            break;
        }
    }
    if piece.get(at).is_some_and(|(c, _)| *c == 'r') && piece.get(at + 1).is_some_and(|(c, _)| *c == '#') {
        at += 2;
    }
    let name = word(at);
    let line = piece.get(at)?.1;
    at += name.len();
    skip_space(&mut at);
    let colon = piece.get(at).is_some_and(|(c, _)| *c == ':') && piece.get(at + 1).is_none_or(|(c, _)| *c != ':');
    if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) || !colon {
        return None;
    }
    let ty: String = piece[at + 1..].iter().map(|(c, _)| *c).collect();
    Some(Field { line, name, ty: ty.split_whitespace().collect::<Vec<_>>().join(" ") })
}

/// Whether `ty` is a plain integer (`u64`, `Option<i64>`, `AtomicI64`, `NonZeroU32`, the
/// tariff source's `Spanned<u64>`); `usize` and `isize` count or size things.
fn is_integer(ty: &str) -> bool {
    let mut ty = ty.trim();
    while let Some(inner) = ty.strip_prefix("Option<").or_else(|| ty.strip_prefix("Spanned<")) {
        ty = inner.trim_start();
    }
    let ty = ty.rsplit("::").next().unwrap_or(ty);
    let ty = ty.strip_prefix("Atomic").or_else(|| ty.strip_prefix("NonZero")).unwrap_or(ty);
    let base: String = ty.chars().take_while(char::is_ascii_alphanumeric).collect();
    matches!(
        base.to_ascii_lowercase().as_str(),
        "i8" | "i16" | "i32" | "i64" | "i128" | "u8" | "u16" | "u32" | "u64" | "u128"
    )
}

/// The integer fields in `text` named for a time without their unit (see [`TIME_WORDS`]).
fn unitless_times(text: &str) -> Vec<Field> {
    declared_fields(text)
        .into_iter()
        .filter(|field| {
            let last = field.name.rsplit('_').next().unwrap_or(&field.name);
            is_integer(&field.ty)
                && TIME_WORDS.contains(&last)
                && !UNIT_SUFFIXES.iter().any(|suffix| field.name.ends_with(suffix))
                && !NOT_TIMES.contains(&field.name.as_str())
        })
        .collect()
}

#[test]
fn integer_time_fields_carry_their_unit_or_at_in_their_names() {
    let root = root();
    let crate_sources: Vec<PathBuf> = workspace_sources()
        .into_iter()
        .filter(|path| path.strip_prefix(&root).is_ok_and(|p| p.components().any(|c| c.as_os_str() == "src")))
        .collect();
    assert!(crate_sources.len() > 50, "the walk found the crates' sources ({} files)", crate_sources.len());
    let mut found = Vec::new();
    let mut integers = 0;
    for path in &crate_sources {
        let text = std::fs::read_to_string(path).expect("source is UTF-8");
        integers += declared_fields(&text).iter().filter(|field| is_integer(&field.ty)).count();
        for field in unitless_times(&text) {
            let file = path.strip_prefix(&root).unwrap_or(path).display();
            found.push(format!("{file}:{}: `{}: {}`", field.line, field.name, field.ty));
        }
    }
    assert!(integers > 200, "the scanner found the integer fields ({integers})");
    assert!(
        found.is_empty(),
        "integer fields named for a time without their unit; end them with one of {UNIT_SUFFIXES:?} \
         (keep a public serde name with #[serde(rename)]): {found:#?}"
    );
}

/// The scanner finds fields in structs and in enum variants, one per line or several on
/// one, and not in comments, strings, tuple variants or function parameters; the check
/// flags a unitless time and passes each accepted suffix.
#[test]
fn the_time_field_check_finds_a_unitless_time_but_not_in_comments_or_literals() {
    let sample = "//! Sample.\n\
        pub struct Bucket {\n\
        \x20   /// valid_from: i64 in a doc comment is fine\n\
        \x20   pub valid_from: i64,\n\
        \x20   pub(crate) valid_until_at: i64,\n\
        \x20   #[serde(rename = \"timeout\", default)] #[arg(default_value_t = 1 << 20)]\n\
        \x20   timeout_ms: Option<u32>,\n\
        \x20   grace: Duration, window: usize,\n\
        \x20   lease: std::sync::atomic::AtomicU64,\n\
        \x20   names: HashMap<String, (u64, i64)>,\n\
        }\n\
        enum Effect { Moved { from: i64, at: i64 }, Tuple(u64), Unit = 3 }\n\
        struct Pair(i64, i64);\n\
        fn f(now: i64) -> [char; 2] { let _ = r#\"struct Fake { deadline: u64 }\"#; ['\\'', '{'] }\n\
        struct Last<T: Fn(u8) -> u8> where T: Copy { f: T, end: Option<u32> }\n";
    let fields: Vec<String> =
        declared_fields(sample).iter().map(|f| format!("{}:{}: {}", f.line, f.name, f.ty)).collect();
    assert_eq!(
        fields,
        [
            "4:valid_from: i64",
            "5:valid_until_at: i64",
            "7:timeout_ms: Option<u32>",
            "8:grace: Duration",
            "8:window: usize",
            "9:lease: std::sync::atomic::AtomicU64",
            "10:names: HashMap<String, (u64, i64)>",
            "12:from: i64",
            "12:at: i64",
            "15:f: T",
            "15:end: Option<u32>",
        ],
    );
    let flagged: Vec<String> = unitless_times(sample).iter().map(|f| format!("{}:{}", f.line, f.name)).collect();
    assert_eq!(flagged, ["4:valid_from", "9:lease", "12:from", "15:end"]);
    for suffix in UNIT_SUFFIXES {
        let renamed = format!("//! Sample.\nstruct S {{ valid_from{suffix}: i64, timeout{suffix}: u32 }}\n");
        assert!(unitless_times(&renamed).is_empty(), "{suffix} is accepted");
    }
}
