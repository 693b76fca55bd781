//! The YAML and Argo schema helpers shared by the manifest tests (`manifests.rs`) and the
//! chain test (`argo_chain.rs`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde::Deserialize;
use serde_json::{json, Value};

/// The repository root (where Cargo.toml is).
pub(crate) fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every non-empty document of a YAML file (or stream), as JSON values.
pub(crate) fn yaml_documents(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    yaml_stream(&text, &path.display().to_string())
}

/// The non-empty documents of YAML text; `what` names it in failures.
pub(crate) fn yaml_stream(text: &str, what: &str) -> Vec<Value> {
    serde_yaml_ng::Deserializer::from_str(text)
        .enumerate()
        .map(|(n, document)| {
            Value::deserialize(document)
                .unwrap_or_else(|e| panic!("{what} document {}: not YAML: {e}", n + 1))
        })
        .filter(|document| !document.is_null())
        .collect()
}

/// The schema definitions of both Argo projects, compiled once per definition used.
struct Schemas {
    /// Definition name -> validator.
    validators: BTreeMap<&'static str, jsonschema::Validator>,
}

/// The definitions objects here are validated against, and the schema file holding each. The
/// Kubernetes core objects come from the argo-events file, which embeds the Kubernetes OpenAPI
/// definitions its CRDs reference.
pub(crate) const DEFINITIONS: [(&str, &str); 8] = [
    ("io.argoproj.events.v1alpha1.Sensor", "argo-events"),
    ("io.argoproj.events.v1alpha1.EventSource", "argo-events"),
    ("io.argoproj.events.v1alpha1.EventBus", "argo-events"),
    ("io.argoproj.workflow.v1alpha1.Workflow", "argo-workflows"),
    (
        "io.argoproj.workflow.v1alpha1.WorkflowTemplate",
        "argo-workflows",
    ),
    ("io.k8s.api.core.v1.ServiceAccount", "argo-events"),
    ("io.k8s.api.core.v1.Secret", "argo-events"),
    ("io.k8s.api.core.v1.PodSpec", "argo-events"),
];

fn schemas() -> &'static Schemas {
    static SCHEMAS: OnceLock<Schemas> = OnceLock::new();
    SCHEMAS.get_or_init(|| {
        let mut files: BTreeMap<&str, Value> = BTreeMap::new();
        for project in ["argo-events", "argo-workflows"] {
            let path = crate_dir().join(format!("tests/fixtures/argo/{project}.schema.json"));
            let mut document: Value =
                serde_json::from_str(&std::fs::read_to_string(&path).expect("schema file"))
                    .expect("schema JSON");
            if project == "argo-events" {
                relax_event_context(&mut document);
            }
            files.insert(project, document);
        }
        let validators = DEFINITIONS
            .iter()
            .map(|&(definition, project)| {
                let schema = json!({
                    "$schema": "https://json-schema.org/draft/2020-12/schema",
                    "definitions": files[project]["definitions"],
                    "$ref": format!("#/definitions/{definition}"),
                });
                let validator = jsonschema::draft202012::new(&schema)
                    .unwrap_or_else(|e| panic!("{definition} compiles: {e}"));
                (definition, validator)
            })
            .collect();
        Schemas { validators }
    })
}

/// The one place the events schema is looser than the file. It is generated from Go structs
/// and lists every `EventContext` field as required, because none has `omitempty`; but a
/// context filter is a partial context: Argo compares only the non-empty `type`, `subject`,
/// `source` and `datacontenttype` (argo-events `pkg/sensors/dependencies/filter.go`,
/// `filterContext`), its own examples set one or two fields
/// (`examples/sensors/filter-with-context.yaml`), and the Sensor CRD is schemaless, so the API
/// server accepts them. A `time` placeholder would even break the Sensor (metav1.Time cannot
/// parse ""). Everything else stays as published.
fn relax_event_context(document: &mut Value) {
    let context = &mut document["definitions"]["io.argoproj.events.v1alpha1.EventContext"];
    assert!(
        context["required"].is_array(),
        "the schema still lists EventContext's required fields"
    );
    if let Some(object) = context.as_object_mut() {
        object.remove("required");
    }
}

/// Asserts `object` validates against the schema `definition`; `origin` names it.
pub(crate) fn assert_valid(definition: &str, object: &Value, origin: &Path) {
    let validator = schemas()
        .validators
        .get(definition)
        .unwrap_or_else(|| panic!("no validator for {definition}"));
    let errors: Vec<String> = validator
        .iter_errors(object)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "{} ({definition}) in {}: {errors:#?}",
        object["metadata"]["name"],
        origin.display()
    );
}
