//! Offline and review mode: Job manifests from YAML files (`--from-dir`) instead of a cluster,
//! and printing exactly what would be applied (`--once --dry-run -o yaml|json`).
//!
//! This module owns reading a directory of manifests the way `kubectl apply -f DIR -R` would
//! (every `*.yaml`/`*.yml`, multi-document, `List` objects unpacked, other kinds skipped) and
//! the two review formats. Rendering itself is [`super::render`].

use std::io::Write;
use std::path::{Path, PathBuf};

use k8s_openapi::api::batch::v1::Job;
use serde::Deserialize;
use serde_json::{json, Value};
use thiserror::Error;

use super::render::RenderOutcome;

/// How `--dry-run` prints the templates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    /// A multi-document YAML stream, as `kubectl apply -f` takes it.
    Yaml,
    /// A `v1` `List`.
    Json,
}

/// Why a directory of manifests could not be read. Every variant names the file.
#[derive(Debug, Error)]
pub enum OfflineError {
    /// The directory or a file in it could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The directory or file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A file is not valid YAML.
    #[error("{} is not valid YAML: {source}", path.display())]
    Yaml {
        /// The file.
        path: PathBuf,
        /// The parser's error, with its line and column.
        source: serde_yaml_ng::Error,
    },
    /// A document says `kind: Job` but is not a valid `batch/v1` Job.
    #[error("{} document {document}: not a valid batch/v1 Job: {source}", path.display())]
    InvalidJob {
        /// The file.
        path: PathBuf,
        /// 1-based index of the document in the file.
        document: usize,
        /// What does not fit the Job schema.
        source: serde_json::Error,
    },
}

/// Every `batch/v1` Job in the `*.yaml`/`*.yml` files under `dir` (recursively, in path order).
/// Documents of other kinds are skipped with a debug log; an unparsable file is an error.
pub fn load_jobs(dir: &Path) -> Result<Vec<Job>, OfflineError> {
    let mut files = Vec::new();
    collect_manifest_files(dir, &mut files)?;
    files.sort();
    let mut jobs = Vec::new();
    for path in files {
        let text = std::fs::read_to_string(&path).map_err(|source| OfflineError::Read {
            path: path.clone(),
            source,
        })?;
        for (n, document) in serde_yaml_ng::Deserializer::from_str(&text).enumerate() {
            let value = Value::deserialize(document).map_err(|source| OfflineError::Yaml {
                path: path.clone(),
                source,
            })?;
            collect_jobs(value, &path, n + 1, &mut jobs)?;
        }
    }
    Ok(jobs)
}

/// `dir`'s manifest files, descending into subdirectories (one per team, say).
fn collect_manifest_files(dir: &Path, files: &mut Vec<PathBuf>) -> Result<(), OfflineError> {
    let read_error = |source| OfflineError::Read {
        path: dir.to_path_buf(),
        source,
    };
    for entry in std::fs::read_dir(dir).map_err(read_error)? {
        let path = entry.map_err(read_error)?.path();
        if path.is_dir() {
            collect_manifest_files(&path, files)?;
        } else if matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml")
        ) {
            files.push(path);
        }
    }
    Ok(())
}

/// Adds the Job in one document (or in the items of a `List`) to `jobs`.
fn collect_jobs(
    value: Value,
    path: &Path,
    document: usize,
    jobs: &mut Vec<Job>,
) -> Result<(), OfflineError> {
    let kind = value
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let api_version = value
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default();
    match (api_version, kind) {
        ("batch/v1", "Job") => {
            let job = serde_json::from_value(value).map_err(|source| OfflineError::InvalidJob {
                path: path.to_path_buf(),
                document,
                source,
            })?;
            jobs.push(job);
        }
        (_, "List") => {
            if let Some(Value::Array(items)) = value.get("items") {
                for item in items {
                    collect_jobs(item.clone(), path, document, jobs)?;
                }
            }
        }
        _ if value.is_null() => {} // an empty document, e.g. a trailing `---`
        _ => tracing::debug!(
            file = %path.display(),
            document,
            api_version,
            kind,
            "skipping a document that is not a batch/v1 Job"
        ),
    }
    Ok(())
}

/// Writes the rendered templates as they would be applied, ordered by name: YAML as a
/// multi-document stream, JSON as a `v1` `List`.
pub fn print_templates(
    outcome: &RenderOutcome,
    format: OutputFormat,
    out: &mut impl Write,
) -> std::io::Result<()> {
    let mut templates: Vec<&Value> = outcome.templates.values().collect();
    templates.sort_by_key(|template| {
        template
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    });
    match format {
        OutputFormat::Yaml => {
            for template in templates {
                let text = serde_yaml_ng::to_string(template).map_err(std::io::Error::other)?;
                out.write_all(b"---\n")?;
                out.write_all(text.as_bytes())?;
            }
        }
        OutputFormat::Json => {
            let list = json!({"apiVersion": "v1", "kind": "List", "items": templates});
            serde_json::to_writer_pretty(&mut *out, &list)?;
            out.write_all(b"\n")?;
        }
    }
    Ok(())
}
