//! The shape of the crate: rules about which module may name what, read from the sources.

use std::path::{Path, PathBuf};

/// Every `.rs` file under `dir`, recursively.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).expect("readable source directory") {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            files.push(path);
        }
    }
    files
}

/// Whether `text` names `word` as a whole identifier (so `clapper` does not count).
fn names(text: &str, word: &str) -> bool {
    let is_ident = |c: char| c.is_alphanumeric() || c == '_';
    text.match_indices(word).any(|(at, _)| {
        let before = text[..at].chars().next_back();
        let after = text[at + word.len()..].chars().next();
        !before.is_some_and(is_ident) && !after.is_some_and(is_ident)
    })
}

/// The command line stays at the edge: library modules take plain settings structs, so only
/// `cli.rs` (clap definitions and their conversion, with its tests in `cli/`) and `main.rs` may
/// name clap or the cli module.
#[test]
fn only_the_command_line_names_clap() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let files = rust_files(&src);
    assert!(files.len() > 20, "found only {files:?}");
    let mut offenders = Vec::new();
    for path in files {
        let relative = path.strip_prefix(&src).expect("under src");
        if relative == Path::new("cli.rs")
            || relative.starts_with("cli")
            || relative == Path::new("main.rs")
        {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("readable source");
        for word in ["clap", "crate::cli", "super::cli"] {
            if names(&text, word) {
                offenders.push(format!("{} names {word}", relative.display()));
            }
        }
    }
    assert!(offenders.is_empty(), "{offenders:#?}");
}

#[test]
fn names_matches_whole_identifiers_only() {
    assert!(names("use clap::Parser;", "clap"));
    assert!(names("#[derive(clap::ValueEnum)]", "clap"));
    assert!(names("use crate::cli::ServeArgs;", "crate::cli"));
    assert!(!names("a clapper board", "clap"));
    assert!(!names("use crate::client::X;", "crate::cli"));
}

/// serde_json parses floats exactly only with its `float_roundtrip` feature. Without it a
/// number beyond 64-bit integers (a float) can land one step away from the nearest double, and
/// the shortest text of that double then reads back as a different one, so an event's data
/// changed between ingest and a later read of the stored document (found by the http_binding
/// fuzz target). The test builds cannot show it: a dev-dependency (jsonschema) turns the
/// feature on for them. So this checks that the gateway's own dependency asks for it.
#[test]
fn serde_json_parses_floats_exactly_in_the_gateway_build() {
    let manifest: toml::Table =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"))
            .expect("Cargo.toml")
            .parse()
            .expect("Cargo.toml is TOML");
    let features = manifest["dependencies"]["serde_json"]
        .get("features")
        .and_then(toml::Value::as_array)
        .cloned()
        .unwrap_or_default();
    assert!(
        features
            .iter()
            .any(|f| f.as_str() == Some("float_roundtrip")),
        "serde_json in [dependencies] lacks float_roundtrip: {features:?}"
    );
}
