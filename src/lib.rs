//! tenant-gateway: receives tenant lifecycle CloudEvents, journals them durably, normalizes them
//! and emits them to Argo Events; discovers the WorkflowTemplates Argo runs them with.
//!
//! Modules, one line each (docs/architecture.md has the map with every file, and the pages of
//! the contract each module implements):
//! - [`admin`]: the admin listener: operator API, metrics, probes; the operator CLI's client.
//! - [`app`]: `Application`, which wires the modules for `serve` and for the tests.
//! - [`cli`]: the command-line definitions, converted into the plain settings the library takes.
//! - [`cloudevents`]: the strict CloudEvents model, JSON format and HTTP binding.
//! - [`config`]: typed settings for `serve` (flags > environment > TOML > defaults).
//! - [`discovery`]: the sidecar that renders annotated Jobs into Argo WorkflowTemplates.
//! - [`dispatch`]: the outbox reader that delivers emissions to a sink, in order per tenant.
//! - [`error`]: problem+json, the one renderer of HTTP errors.
//! - [`ingest`]: `POST /events` and its authentication; the `send` client.
//! - [`journal`]: the durable store of events, emissions, attempts and operator actions.
//! - [`memory`]: freed heap memory given back to the system once ingest is idle.
//! - [`metrics`]: the Prometheus registry (no tenant labels).
//! - [`normalize`]: upstream event -> tenant, action and details; the canonical emitted event.
//! - [`notify`]: completion events to upstream: the notifier that delivers the journal's outbox.
//! - [`redact`]: URLs as logs may show them (user information and query masked).
//! - [`secret_file`]: reading a token, password or secret from a mounted file.
//! - [`shutdown`]: the termination signal `serve` and `discover` stop on.
//! - [`telemetry`]: logs and traces, and the error cause-chain formatter.
//! - [`tls`]: rustls for the listeners; certificates re-read when their files change.
//! - [`workflows`]: `serve --watch-workflows`: the Argo Workflows of each emission, watched.

pub mod admin;
pub mod app;
pub mod cli;
pub mod cloudevents;
pub mod config;
pub mod discovery;
pub mod dispatch;
pub mod error;
pub mod ingest;
pub mod journal;
pub mod memory;
pub mod metrics;
pub mod normalize;
pub mod notify;
pub mod redact;
pub mod secret_file;
pub mod shutdown;
pub mod telemetry;
pub mod tls;
pub mod workflows;

/// The map stays true: the module list above, docs/architecture.md and the docs pages the code
/// cites all match the tree.
#[cfg(test)]
mod map_tests {
    use std::collections::BTreeSet;
    use std::path::{Path, PathBuf};

    fn root() -> &'static Path {
        Path::new(env!("CARGO_MANIFEST_DIR"))
    }

    fn read(path: &Path) -> String {
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    /// Every `.rs` file under `dir`, recursively.
    fn rust_files(dir: &Path) -> Vec<PathBuf> {
        let mut files = Vec::new();
        let mut dirs = vec![dir.to_path_buf()];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).expect("readable dir") {
                let path = entry.expect("dir entry").path();
                if path.is_dir() {
                    dirs.push(path);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    files.push(path);
                }
            }
        }
        files
    }

    /// Names of the entries of `dir`: `name.rs` for files, `name/` for directories.
    fn entries(dir: &Path) -> BTreeSet<String> {
        std::fs::read_dir(dir)
            .expect("readable dir")
            .map(|entry| {
                let path = entry.expect("dir entry").path();
                let name = path.file_name().unwrap().to_string_lossy().into_owned();
                if path.is_dir() {
                    format!("{name}/")
                } else {
                    name
                }
            })
            .collect()
    }

    /// The quoted heading after a cited page (a docs path in backticks, a comma, then
    /// `"Heading"`), across a comment's line break.
    fn cited_heading(after_path: &str) -> Option<&str> {
        let rest = after_path
            .strip_prefix('`')?
            .strip_prefix(',')?
            .trim_start();
        let rest = ["///", "//!", "//"]
            .iter()
            .find_map(|marker| rest.strip_prefix(marker))
            .unwrap_or(rest)
            .trim_start();
        let quoted = rest.strip_prefix('"')?;
        quoted.split('"').next()
    }

    #[test]
    fn every_docs_page_the_code_cites_exists_with_the_cited_heading() {
        let stale = [concat!("DESIGN", ".md"), concat!("DESIGN", " section")];
        let mut cited = 0;
        for dir in ["src", "tests", "benches"] {
            for file in rust_files(&root().join(dir)) {
                let text = read(&file);
                let shown = file.strip_prefix(root()).unwrap().display().to_string();
                for word in stale {
                    assert!(
                        !text.contains(word),
                        "{shown} cites {word}, not a docs page"
                    );
                }
                for (at, _) in text.match_indices("docs/") {
                    let path: String = text[at..]
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || "_./-".contains(*c))
                        .collect();
                    // A sentence may end right after the path.
                    let path = path.trim_end_matches('.');
                    let Some(extension) = Path::new(path).extension() else {
                        continue;
                    };
                    let page = root().join(path);
                    assert!(page.is_file(), "{shown} cites {path}, which does not exist");
                    cited += 1;
                    if extension != "md" {
                        continue;
                    }
                    if let Some(heading) = cited_heading(&text[at + path.len()..]) {
                        let has_heading = read(&page).lines().any(|line| {
                            line.starts_with('#')
                                && line.trim_start_matches('#').trim().starts_with(heading)
                        });
                        assert!(
                            has_heading,
                            "{shown} cites {path} \"{heading}\": no such heading"
                        );
                    }
                }
            }
        }
        assert!(
            cited > 10,
            "only {cited} citations found: is the scan broken?"
        );
    }

    #[test]
    fn the_crate_doc_lists_every_module_on_one_line() {
        let lib = include_str!("lib.rs");
        let declared: BTreeSet<&str> = lib
            .lines()
            .filter_map(|line| line.strip_prefix("pub mod ")?.strip_suffix(';'))
            .collect();
        let listed: BTreeSet<&str> = lib
            .lines()
            .filter_map(|line| line.strip_prefix("//! - [`")?.split_once("`]: "))
            .map(|(module, _)| module)
            .collect();
        assert_eq!(listed, declared, "the module list in src/lib.rs");
        let in_tree: BTreeSet<String> = entries(&root().join("src"))
            .into_iter()
            .filter(|name| name != "lib.rs" && name != "main.rs")
            .map(|name| {
                name.trim_end_matches('/')
                    .trim_end_matches(".rs")
                    .to_owned()
            })
            .collect();
        let declared: BTreeSet<String> = declared.into_iter().map(str::to_owned).collect();
        assert_eq!(declared, in_tree, "modules of src/lib.rs against src/");
    }

    #[test]
    fn the_architecture_map_names_every_module_and_each_of_their_files() {
        let map = read(&root().join("docs/architecture.md"));
        let layout = map
            .split("## Source layout")
            .nth(1)
            .and_then(|rest| rest.split("\n## ").next())
            .expect("docs/architecture.md has a Source layout section");
        // Table rows: `| modules | what they own |`.
        let rows: Vec<(&str, &str)> = layout
            .lines()
            .filter_map(|line| line.strip_prefix("| `")?.split_once(" | "))
            .collect();
        let row_of = |module: &str| {
            rows.iter()
                .find(|(modules, _)| format!("`{modules}").contains(&format!("`{module}`")))
                .map(|(_, owns)| *owns)
                .unwrap_or_else(|| panic!("docs/architecture.md has no row for {module}"))
        };
        for entry in entries(&root().join("src")) {
            if entry == "lib.rs" {
                continue;
            }
            let owns = row_of(&entry);
            if let Some(module) = entry.strip_suffix('/') {
                for child in entries(&root().join("src").join(module)) {
                    if child == "mod.rs" {
                        continue;
                    }
                    assert!(
                        owns.contains(&format!("`{child}`")),
                        "the {entry} row of docs/architecture.md does not name `{child}`"
                    );
                }
            }
        }
    }
}
