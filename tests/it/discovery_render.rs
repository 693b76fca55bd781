//! Discovery rendering: classify, render and the offline mode, against reviewed golden files,
//! the Argo Workflows JSON schema, the WorkflowTemplate CRD's structural schema and the CRD's
//! CEL rules (checked by hand here, since no JSON schema can express them).
//!
//! `UPDATE_GOLDEN=1 cargo test --test it discovery_render` rewrites the golden files; review
//! the diff before committing it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use serde_json::{json, Value};
use tenant_gateway::discovery::offline::{load_jobs, print_templates, OfflineError, OutputFormat};
use tenant_gateway::discovery::render::{
    content_hash, render, template_name, RenderConfig, RenderOutcome, ACTION_LABEL,
    CONTENT_HASH_ANNOTATION, EVENT_MOUNT_PATH, INJECTED_ENV, MANAGED_BY_LABEL,
};
use tenant_gateway::discovery::template_job::{
    classify, Classified, JobRef, TemplateJob, DEPENDS_ON_ANNOTATION, RETRIES_ANNOTATION,
    TEMPLATE_LABEL, TIMEOUT_ANNOTATION,
};
use tenant_gateway::discovery::DiscoverSettings;

const KEY: &str = "tenant-gateway.io/lifecycle";
const STORAGE_SECRET: &str = "tenant-object-storage";

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn golden_dir() -> PathBuf {
    crate_dir().join("tests/fixtures/discovery/golden")
}

/// The fixed configuration of the golden files (the flag defaults plus a storage Secret).
fn config() -> RenderConfig {
    RenderConfig {
        workflow_namespace: "argo".into(),
        bridge_service_account: "tenant-lifecycle-bridge".into(),
        job_ttl: Duration::from_secs(3600),
        default_timeout: Duration::from_secs(3600),
        actions: ["upsert", "delete", "migrate-out", "migrate-in", "admin"]
            .map(String::from)
            .to_vec(),
        object_storage_secret: Some(STORAGE_SECRET.into()),
    }
}

fn templates_of(jobs: &[Job]) -> Vec<TemplateJob> {
    jobs.iter()
        .filter_map(|job| match classify(job, KEY) {
            Classified::Template(template) => Some(template),
            _ => None,
        })
        .collect()
}

fn example_templates() -> Vec<TemplateJob> {
    let jobs = load_jobs(&crate_dir().join("examples/jobs")).expect("examples load");
    for job in &jobs {
        assert!(
            matches!(classify(job, KEY), Classified::Template(_)),
            "every example is a usable template: {:?}",
            job.metadata.name
        );
    }
    templates_of(&jobs)
}

/// A template Job built from annotations, through `classify` like the real thing.
fn job(namespace: &str, name: &str, annotations: &[(&str, &str)]) -> Job {
    let annotations: BTreeMap<&str, &str> = annotations.iter().copied().collect();
    serde_json::from_value(json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": namespace, "annotations": annotations,
                     "labels": {TEMPLATE_LABEL: "true"}},
        "spec": {"suspend": true, "template": {"spec": {
            "restartPolicy": "Never",
            "containers": [{"name": "main", "image": "registry.example.com/step:1"}]}}},
    }))
    .expect("job")
}

fn template(namespace: &str, name: &str, lifecycle: &str, depends_on: &str) -> TemplateJob {
    let mut annotations = vec![(KEY, lifecycle)];
    if !depends_on.is_empty() {
        annotations.push((DEPENDS_ON_ANNOTATION, depends_on));
    }
    match classify(&job(namespace, name, &annotations), KEY) {
        Classified::Template(template) => template,
        other => panic!("{namespace}/{name} should be a template: {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Golden files

#[test]
fn examples_render_to_the_reviewed_golden_files() {
    let outcome = render(&example_templates(), &config());
    assert!(outcome.problems.is_empty(), "{:?}", outcome.problems);
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let dir = golden_dir();
    let mut expected_files = BTreeSet::new();
    for (action, template) in &outcome.templates {
        let file = format!("{}.yaml", template_name(action));
        let mut one = RenderOutcome::default();
        one.templates.insert(action.clone(), template.clone());
        let mut text = Vec::new();
        print_templates(&one, OutputFormat::Yaml, &mut text).expect("print");
        let text = String::from_utf8(text).expect("utf-8");
        let path = dir.join(&file);
        if update {
            std::fs::create_dir_all(&dir).expect("golden dir");
            std::fs::write(&path, &text).expect("write golden");
        }
        let golden = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{} ({e}); run with UPDATE_GOLDEN=1", path.display()));
        assert_eq!(text, golden, "{file} differs from the reviewed golden file");
        expected_files.insert(file);
    }
    let on_disk: BTreeSet<String> = std::fs::read_dir(&dir)
        .expect("golden dir")
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter(|name| name.ends_with(".yaml"))
        .collect();
    assert_eq!(on_disk, expected_files, "stale or missing golden files");
}

// ---------------------------------------------------------------------------------------------
// Schema, CRD limits and embedded Jobs

fn argo_schema() -> &'static jsonschema::Validator {
    static VALIDATOR: OnceLock<jsonschema::Validator> = OnceLock::new();
    VALIDATOR.get_or_init(|| {
        let path = crate_dir().join("tests/fixtures/argo/argo-workflows.schema.json");
        let document: Value =
            serde_json::from_str(&std::fs::read_to_string(path).expect("schema")).expect("json");
        let schema = json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "definitions": document["definitions"],
            "$ref": "#/definitions/io.argoproj.workflow.v1alpha1.WorkflowTemplate",
        });
        jsonschema::draft202012::new(&schema).expect("the Argo schema compiles")
    })
}

/// The CRD's structural schema: its maxItems, maxLength and patterns (task and template
/// names) are not in the JSON schema.
fn crd_schema() -> &'static jsonschema::Validator {
    static VALIDATOR: OnceLock<jsonschema::Validator> = OnceLock::new();
    VALIDATOR.get_or_init(|| {
        let path =
            crate_dir().join("tests/fixtures/argo/argo-workflows.workflowtemplates.crd.yaml");
        let crd: Value =
            serde_yaml_ng::from_str(&std::fs::read_to_string(path).expect("crd")).expect("yaml");
        let schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone();
        assert!(schema.is_object(), "the CRD has an openAPIV3Schema");
        jsonschema::draft4::new(&schema).expect("the CRD schema compiles")
    })
}

/// Everything a WorkflowTemplate must satisfy to be accepted and to run.
fn assert_valid_template(template: &Value) {
    let name = template["metadata"]["name"]
        .as_str()
        .unwrap_or("?")
        .to_string();
    let errors: Vec<String> = argo_schema()
        .iter_errors(template)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{name}: Argo schema: {errors:#?}");
    let errors: Vec<String> = crd_schema()
        .iter_errors(template)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{name}: CRD schema: {errors:#?}");
    assert_crd_rules(template);
    assert_references_resolve(template);
    assert_embedded_jobs(template);
    let hash = template["metadata"]["annotations"][CONTENT_HASH_ANNOTATION].as_str();
    assert_eq!(
        hash,
        Some(content_hash(template).as_str()),
        "{name}: content hash"
    );
}

/// The CEL rules and limits of argoproj.io_workflowtemplates.yaml that our output could hit.
fn assert_crd_rules(template: &Value) {
    let name = template["metadata"]["name"].as_str().expect("name");
    // Argo labels Workflows with their template's name: a label value.
    assert!(name.len() <= 63, "{name}: name over 63 characters");
    let templates = template["spec"]["templates"].as_array().expect("templates");
    assert!(
        templates.len() <= 200,
        "{name}: {} templates",
        templates.len()
    );
    let names: BTreeSet<&str> = templates
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert_eq!(
        names.len(),
        templates.len(),
        "{name}: template names unique"
    );
    let entrypoint = template["spec"]["entrypoint"].as_str().expect("entrypoint");
    assert!(names.contains(entrypoint), "{name}: entrypoint exists");
    let serialized = template.to_string();
    assert!(
        !serialized.contains("setOwnerReference"),
        "{name}: no owner references"
    );
    assert!(
        template["spec"]["synchronization"].get("mutex").is_none(),
        "{name}: the singular mutex is gone in Argo v4"
    );
    for t in templates {
        let tname = t["name"].as_str().expect("template name");
        let types = [
            "container",
            "script",
            "dag",
            "steps",
            "resource",
            "suspend",
            "containerSet",
            "data",
            "http",
            "plugin",
        ];
        let count = types.iter().filter(|ty| t.get(**ty).is_some()).count();
        assert_eq!(count, 1, "{name}/{tname}: exactly one template type");
        let composite = t.get("dag").is_some() || t.get("steps").is_some();
        if composite {
            assert!(
                t.get("timeout").is_none(),
                "{name}/{tname}: timeout on a DAG/steps"
            );
            assert!(
                t.get("activeDeadlineSeconds").is_none(),
                "{name}/{tname}: deadline"
            );
        }
        if let Some(timeout) = t.get("timeout").and_then(Value::as_str) {
            assert!(
                timeout.parse::<u64>().is_err(),
                "{name}/{tname}: whole-number timeout"
            );
        }
        if let Some(tasks) = t["dag"]["tasks"].as_array() {
            assert!(
                !tasks.is_empty() && tasks.len() <= 200,
                "{name}/{tname}: {} tasks",
                tasks.len()
            );
            let task_names: BTreeSet<&str> = tasks
                .iter()
                .filter_map(|task| task["name"].as_str())
                .collect();
            assert_eq!(
                task_names.len(),
                tasks.len(),
                "{name}/{tname}: task names unique"
            );
            for task in tasks {
                let task_name = task["name"].as_str().expect("task name");
                let has_depends = task.get("depends").is_some();
                assert!(
                    !(has_depends && task.get("dependencies").is_some()),
                    "{name}/{task_name}: depends and dependencies"
                );
                assert!(
                    !(has_depends && task.get("continueOn").is_some()),
                    "{task_name}"
                );
                assert!(
                    !(has_depends && task_name.starts_with(|c: char| c.is_ascii_digit())),
                    "{name}/{task_name}: digit-leading task name with depends"
                );
                let target = task["template"].as_str().expect("task template");
                assert!(
                    names.contains(target),
                    "{name}/{task_name}: template {target} exists"
                );
                if let Some(depends) = task["depends"].as_str() {
                    for dependency in depends.split(" && ") {
                        assert!(
                            task_names.contains(dependency),
                            "{name}/{task_name}: depends on {dependency}, not in this DAG"
                        );
                    }
                }
            }
        }
    }
}

/// Every `{{inputs.parameters.x}}` is a declared input, every `{{workflow.parameters.x}}` a
/// declared argument, and every call passes each input of the template it calls (what
/// `argo lint` checks).
fn assert_references_resolve(template: &Value) {
    let name = template["metadata"]["name"].as_str().expect("name");
    let arguments: BTreeSet<&str> = template["spec"]["arguments"]["parameters"]
        .as_array()
        .expect("arguments")
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert_eq!(
        arguments,
        BTreeSet::from(["tenant", "event", "event-id", "object-storage-url"]),
        "{name}: workflow parameters"
    );
    let templates = template["spec"]["templates"].as_array().expect("templates");
    let inputs_of: BTreeMap<&str, BTreeSet<&str>> = templates
        .iter()
        .map(|t| {
            let inputs = t["inputs"]["parameters"]
                .as_array()
                .map(|ps| ps.iter().filter_map(|p| p["name"].as_str()).collect())
                .unwrap_or_default();
            (t["name"].as_str().expect("name"), inputs)
        })
        .collect();
    for t in templates {
        let tname = t["name"].as_str().expect("name");
        let declared = &inputs_of[tname];
        // Arguments passed down are resolved in the caller; only this template's own text.
        let mut own = t.clone();
        if let Some(tasks) = own["dag"]["tasks"].as_array_mut() {
            for task in tasks {
                task["arguments"] = Value::Null;
            }
        }
        let text = own.to_string();
        for reference in placeholders(&text) {
            if let Some(input) = reference.strip_prefix("inputs.parameters.") {
                assert!(
                    declared.contains(input),
                    "{name}/{tname}: undeclared {reference}"
                );
            } else if let Some(parameter) = reference.strip_prefix("workflow.parameters.") {
                assert!(
                    arguments.contains(parameter),
                    "{name}/{tname}: undeclared {reference}"
                );
            } else if reference.starts_with("steps.") {
                // Checked by assert_step_outputs_resolve.
            } else {
                assert!(
                    ["workflow.name", "workflow.uid"].contains(&reference.as_str()),
                    "{name}/{tname}: unexpected reference {reference}"
                );
            }
        }
        let calls: Vec<&Value> = t["dag"]["tasks"]
            .as_array()
            .into_iter()
            .flatten()
            .chain(
                t["steps"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .flat_map(|group| group.as_array().into_iter().flatten()),
            )
            .collect();
        for call in calls {
            let target = call["template"].as_str().expect("called template");
            let passed: BTreeSet<&str> = call["arguments"]["parameters"]
                .as_array()
                .map(|ps| ps.iter().filter_map(|p| p["name"].as_str()).collect())
                .unwrap_or_default();
            assert_eq!(
                &passed, &inputs_of[target],
                "{name}/{tname} -> {target}: arguments"
            );
            for reference in placeholders(&call["arguments"].to_string()) {
                assert!(
                    reference.starts_with("inputs.parameters.")
                        || reference.starts_with("workflow.")
                        || reference.starts_with("steps."),
                    "{name}/{tname}: argument reference {reference}"
                );
            }
        }
        assert_step_outputs_resolve(name, t, templates);
    }
}

/// Every `{{steps.<step>.outputs.parameters.<p>}}` in a steps template names a step of an
/// earlier group whose template declares output `<p>` (Argo resolves step outputs only from
/// steps that already ran: workflow/controller/steps.go).
fn assert_step_outputs_resolve(name: &str, t: &Value, templates: &[Value]) {
    let tname = t["name"].as_str().expect("name");
    let Some(groups) = t["steps"].as_array() else {
        return;
    };
    let outputs_of = |target: &str| -> BTreeSet<String> {
        templates
            .iter()
            .find(|candidate| candidate["name"] == target)
            .and_then(|candidate| candidate["outputs"]["parameters"].as_array())
            .map(|ps| {
                ps.iter()
                    .filter_map(|p| p["name"].as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut earlier: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for group in groups {
        let steps = group.as_array().expect("step group");
        for step in steps {
            for reference in placeholders(&step["arguments"].to_string()) {
                let Some(rest) = reference.strip_prefix("steps.") else {
                    continue;
                };
                let (step_name, output) = rest
                    .split_once(".outputs.parameters.")
                    .unwrap_or_else(|| panic!("{name}/{tname}: step reference {reference}"));
                let declared = earlier
                    .get(step_name)
                    .unwrap_or_else(|| panic!("{name}/{tname}: {reference} names no earlier step"));
                assert!(
                    declared.contains(output),
                    "{name}/{tname}: {reference}: no such output"
                );
            }
        }
        for step in steps {
            let step_name = step["name"].as_str().expect("step name").to_string();
            let target = step["template"].as_str().expect("step template");
            earlier.insert(step_name, outputs_of(target));
        }
    }
}

fn placeholders(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else { break };
        found.push(after[..end].trim().to_string());
        rest = &after[end + 2..];
    }
    found
}

/// Every bridge task: its manifest is a Job with the template-only parts stripped and the
/// event injected into every container, in the namespace the ConfigMap is created in.
fn assert_embedded_jobs(template: &Value) {
    let name = template["metadata"]["name"].as_str().expect("name");
    let action = template["metadata"]["labels"][ACTION_LABEL]
        .as_str()
        .expect("action");
    for (task, arguments) in bridge_tasks(template) {
        let manifest = &arguments["manifest"];
        let job: Job = serde_yaml_ng::from_str(manifest)
            .unwrap_or_else(|e| panic!("{name}/{task}: manifest is not a Job: {e}"));
        let value = serde_json::to_value(&job).expect("job json");
        assert_eq!(value["apiVersion"], "batch/v1");
        assert_eq!(value["kind"], "Job");
        let meta = &job.metadata;
        assert!(meta.name.is_none(), "{task}: name");
        let generate_name = meta.generate_name.as_deref().expect("generateName");
        assert!(
            generate_name.ends_with('-') && generate_name.len() <= 58,
            "{generate_name}"
        );
        assert!(
            generate_name.contains(action),
            "{generate_name} names the action"
        );
        assert_eq!(
            meta.namespace.as_deref(),
            Some(arguments["namespace"].as_str())
        );
        assert!(
            meta.uid.is_none() && meta.resource_version.is_none(),
            "{task}: uid"
        );
        assert!(
            meta.managed_fields.is_none() && meta.owner_references.is_none(),
            "{task}"
        );
        assert!(
            meta.creation_timestamp.is_none() && meta.generation.is_none(),
            "{task}"
        );
        assert!(meta.finalizers.is_none(), "{task}: finalizers");
        assert!(job.status.is_none(), "{task}: status");
        let labels = meta.labels.clone().unwrap_or_default();
        for stripped in [
            "controller-uid",
            "batch.kubernetes.io/controller-uid",
            "job-name",
            "batch.kubernetes.io/job-name",
            TEMPLATE_LABEL,
        ] {
            assert!(!labels.contains_key(stripped), "{task}: label {stripped}");
        }
        assert_eq!(labels.get(ACTION_LABEL).map(String::as_str), Some(action));
        assert_eq!(
            labels.get("tenant-gateway.io/tenant").map(String::as_str),
            Some("{{workflow.parameters.tenant}}")
        );
        assert_eq!(
            labels.get("tenant-gateway.io/workflow").map(String::as_str),
            Some("{{workflow.name}}")
        );
        let annotations = meta.annotations.clone().unwrap_or_default();
        for (key, value) in &annotations {
            assert!(
                !key.starts_with("argocd.argoproj.io/")
                    && ![
                        KEY,
                        DEPENDS_ON_ANNOTATION,
                        TIMEOUT_ANNOTATION,
                        RETRIES_ANNOTATION
                    ]
                    .contains(&key.as_str())
                    && !value.starts_with("lifecycle."),
                "{task}: annotation {key}"
            );
        }
        let spec = job.spec.as_ref().expect("spec");
        assert_eq!(
            spec.suspend,
            Some(true),
            "{task}: created suspended, resumed once its event ConfigMap exists"
        );
        assert!(
            spec.selector.is_none() && spec.manual_selector.is_none(),
            "{task}: selector"
        );
        assert_eq!(spec.ttl_seconds_after_finished, Some(3600), "{task}: ttl");
        let timeout: i64 = arguments["timeout"]
            .trim_end_matches('s')
            .parse()
            .expect("timeout seconds");
        let deadline = spec.active_deadline_seconds.expect("activeDeadlineSeconds");
        assert_eq!(
            deadline, timeout,
            "{task}: the Job and Argo share one deadline"
        );
        let pod_labels = spec
            .template
            .metadata
            .as_ref()
            .and_then(|m| m.labels.clone());
        let pod_labels = pod_labels.unwrap_or_default();
        assert!(!pod_labels.contains_key("job-name") && !pod_labels.contains_key("controller-uid"));
        let pod = spec.template.spec.as_ref().expect("pod spec");
        let configmap = &arguments["event-configmap"];
        let event_volumes: Vec<_> = pod
            .volumes
            .iter()
            .flatten()
            .filter(|v| v.name == "tenant-lifecycle-event")
            .collect();
        assert_eq!(event_volumes.len(), 1, "{task}: one event volume");
        assert_eq!(
            event_volumes[0]
                .config_map
                .as_ref()
                .map(|c| c.name.as_str()),
            Some(configmap.as_str())
        );
        let containers = pod
            .containers
            .iter()
            .chain(pod.init_containers.iter().flatten());
        for container in containers {
            let env = container.env.clone().unwrap_or_default();
            let first: Vec<&str> = env.iter().take(4).map(|e| e.name.as_str()).collect();
            assert_eq!(
                first, INJECTED_ENV,
                "{task}/{}: injected env first",
                container.name
            );
            for injected in INJECTED_ENV {
                assert_eq!(
                    env.iter().filter(|e| e.name == injected).count(),
                    1,
                    "{injected}"
                );
            }
            let action_env = env
                .iter()
                .find(|e| e.name == "LIFECYCLE_ACTION")
                .expect("env");
            assert_eq!(action_env.value.as_deref(), Some(action));
            for from_configmap in ["TENANT_ID", "EVENT_ID", "OBJECT_STORAGE_URL"] {
                let var = env.iter().find(|e| e.name == from_configmap).expect("env");
                let key_ref = var
                    .value_from
                    .as_ref()
                    .and_then(|v| v.config_map_key_ref.as_ref())
                    .expect("from the event ConfigMap");
                assert_eq!(&key_ref.name, configmap);
            }
            let mounts = container.volume_mounts.clone().unwrap_or_default();
            let at_path: Vec<_> = mounts
                .iter()
                .filter(|m| m.mount_path == EVENT_MOUNT_PATH)
                .collect();
            assert_eq!(
                at_path.len(),
                1,
                "{task}/{}: one event mount",
                container.name
            );
            assert_eq!(at_path[0].name, "tenant-lifecycle-event");
            let secret_refs: Vec<&str> = container
                .env_from
                .iter()
                .flatten()
                .filter_map(|e| e.secret_ref.as_ref().map(|s| s.name.as_str()))
                .collect();
            let migration = action == "migrate-out" || action == "migrate-in";
            assert_eq!(
                secret_refs.contains(&STORAGE_SECRET),
                migration,
                "{name}/{task}/{}: object-storage Secret only for migrations",
                container.name
            );
        }
    }
}

/// (task name, argument name -> value) of every bridge task, in every DAG.
fn bridge_tasks(template: &Value) -> Vec<(String, BTreeMap<String, String>)> {
    let mut found = Vec::new();
    for t in template["spec"]["templates"].as_array().expect("templates") {
        for task in t["dag"]["tasks"].as_array().into_iter().flatten() {
            if task["template"] != "bridge" {
                continue;
            }
            let arguments = task["arguments"]["parameters"]
                .as_array()
                .expect("arguments")
                .iter()
                .map(|p| {
                    let name = p["name"].as_str().expect("name").to_string();
                    (name, p["value"].as_str().expect("value").to_string())
                })
                .collect();
            found.push((task["name"].as_str().expect("name").to_string(), arguments));
        }
    }
    found
}

#[test]
fn every_example_template_is_valid() {
    let outcome = render(&example_templates(), &config());
    assert_eq!(outcome.templates.len(), 5);
    for template in outcome.templates.values() {
        assert_valid_template(template);
    }
}

#[test]
fn synthetic_templates_are_valid() {
    // The no-op, the nested DAGs of a large action, colliding names, a cluster-fetched Job.
    let mut jobs: Vec<TemplateJob> = (0..450)
        .map(|i| {
            let depends = if i > 0 {
                format!("bulk/step-{:03}", i - 1)
            } else {
                String::new()
            };
            template(
                "bulk",
                &format!("step-{i:03}"),
                "lifecycle.upsert",
                &depends,
            )
        })
        .collect();
    jobs.push(template("a-b", "c", "lifecycle.delete", ""));
    jobs.push(template("a", "b-c", "lifecycle.delete", ""));
    jobs.push(template("9lives", "x", "lifecycle.delete", ""));
    jobs.push(template(
        "team",
        "a-very-long-job-name-that-keeps-going-and-going-well-past-the-limit",
        "lifecycle.delete",
        "",
    ));
    let cluster = load_jobs(&crate_dir().join("tests/fixtures/discovery/jobs")).expect("fixtures");
    let cluster = cluster
        .iter()
        .find(|j| j.metadata.name.as_deref() == Some("sync-catalog"))
        .expect("from-cluster fixture");
    match classify(cluster, "collibra.com/tenant.lifecycle") {
        Classified::Template(t) => jobs.push(t),
        other => panic!("{other:?}"),
    }
    let outcome = render(&jobs, &config());
    assert!(outcome.problems.is_empty(), "{:?}", outcome.problems);
    assert!(
        outcome.templates.contains_key("admin"),
        "the no-op is rendered"
    );
    for template in outcome.templates.values() {
        assert_valid_template(template);
    }
}

// ---------------------------------------------------------------------------------------------
// classify

fn reason(job: &Job) -> String {
    match classify(job, KEY) {
        Classified::Ignored(ignored) => ignored.reason,
        other => panic!("expected Ignored, got {other:?}"),
    }
}

#[test]
fn classify_table() {
    struct Case {
        what: &'static str,
        annotations: Vec<(&'static str, &'static str)>,
        suspend: Option<bool>,
        /// None: a template; Some(text): ignored with a reason containing text.
        ignored_because: Option<&'static str>,
    }
    let cases = [
        Case {
            what: "plain",
            annotations: vec![(KEY, "lifecycle.upsert")],
            suspend: Some(true),
            ignored_because: None,
        },
        Case {
            what: "not suspended",
            annotations: vec![(KEY, "lifecycle.upsert")],
            suspend: None,
            ignored_because: Some("spec.suspend is not true"),
        },
        Case {
            what: "suspend false",
            annotations: vec![(KEY, "lifecycle.upsert")],
            suspend: Some(false),
            ignored_because: Some("spec.suspend is not true"),
        },
        Case {
            what: "bare action",
            annotations: vec![(KEY, "lifecycle.upsert,delete")],
            suspend: Some(true),
            ignored_because: Some("\"delete\" is not of the form lifecycle.<action>"),
        },
        Case {
            what: "other prefix",
            annotations: vec![(KEY, "tenant.upsert")],
            suspend: Some(true),
            ignored_because: Some("not of the form"),
        },
        Case {
            what: "empty",
            annotations: vec![(KEY, " , ")],
            suspend: Some(true),
            ignored_because: Some("lists no action"),
        },
        Case {
            what: "upper case",
            annotations: vec![(KEY, "lifecycle.Upsert")],
            suspend: Some(true),
            ignored_because: Some("lower-case"),
        },
        Case {
            what: "empty action",
            annotations: vec![(KEY, "lifecycle.")],
            suspend: Some(true),
            ignored_because: Some("lower-case"),
        },
        Case {
            what: "bad depends-on",
            annotations: vec![(KEY, "lifecycle.upsert"), (DEPENDS_ON_ANNOTATION, "a/b/c")],
            suspend: Some(true),
            ignored_because: Some("is not namespace/name"),
        },
        Case {
            what: "bad timeout",
            annotations: vec![(KEY, "lifecycle.upsert"), (TIMEOUT_ANNOTATION, "soon")],
            suspend: Some(true),
            ignored_because: Some("not a duration"),
        },
        Case {
            what: "zero timeout",
            annotations: vec![(KEY, "lifecycle.upsert"), (TIMEOUT_ANNOTATION, "0s")],
            suspend: Some(true),
            ignored_because: Some("at least 1s"),
        },
        Case {
            what: "negative retries",
            annotations: vec![(KEY, "lifecycle.upsert"), (RETRIES_ANNOTATION, "-1")],
            suspend: Some(true),
            ignored_because: Some("whole number"),
        },
        Case {
            what: "word retries",
            annotations: vec![(KEY, "lifecycle.upsert"), (RETRIES_ANNOTATION, "three")],
            suspend: Some(true),
            ignored_because: Some("whole number"),
        },
    ];
    for case in cases {
        let mut job = job("team", "step", &case.annotations);
        job.spec.as_mut().expect("spec").suspend = case.suspend;
        match (classify(&job, KEY), case.ignored_because) {
            (Classified::Template(_), None) => {}
            (Classified::Ignored(ignored), Some(text)) => {
                assert!(
                    ignored.reason.contains(text),
                    "{}: {:?}",
                    case.what,
                    ignored.reason
                );
                assert_eq!(
                    ignored.reference,
                    JobRef {
                        namespace: "team".into(),
                        name: "step".into()
                    }
                );
            }
            (other, expected) => panic!(
                "{}: got {other:?}, expected ignored={expected:?}",
                case.what
            ),
        }
    }
}

#[test]
fn classify_without_annotation_is_not_a_template() {
    let job = job("team", "step", &[]);
    assert!(matches!(classify(&job, KEY), Classified::NotATemplate));
    // Another key than the configured one does not count either.
    let job = self::job(
        "team",
        "step",
        &[("collibra.com/tenant.lifecycle", "lifecycle.upsert")],
    );
    assert!(matches!(classify(&job, KEY), Classified::NotATemplate));
    assert!(matches!(
        classify(&job, "collibra.com/tenant.lifecycle"),
        Classified::Template(_)
    ));
}

#[test]
fn classify_parses_every_optional_annotation() {
    let job = job(
        "search",
        "warm-cache",
        &[
            (
                KEY,
                " lifecycle.upsert ,lifecycle.migrate-in,lifecycle.upsert,",
            ),
            (
                DEPENDS_ON_ANNOTATION,
                "identity/create-schema, create-index,identity/create-schema",
            ),
            (TIMEOUT_ANNOTATION, "1h 30m"),
            (RETRIES_ANNOTATION, "3"),
        ],
    );
    let Classified::Template(t) = classify(&job, KEY) else {
        panic!("template")
    };
    assert_eq!(
        t.reference,
        JobRef {
            namespace: "search".into(),
            name: "warm-cache".into()
        }
    );
    assert_eq!(
        t.actions,
        BTreeSet::from(["upsert".to_string(), "migrate-in".to_string()])
    );
    assert_eq!(
        t.depends_on,
        vec![
            JobRef {
                namespace: "identity".into(),
                name: "create-schema".into()
            },
            JobRef {
                namespace: "search".into(),
                name: "create-index".into()
            },
        ]
    );
    assert_eq!(t.timeout, Some(Duration::from_secs(5400)));
    assert_eq!(t.retries, Some(3));

    let plain = self::job("search", "x", &[(KEY, "lifecycle.upsert")]);
    let Classified::Template(t) = classify(&plain, KEY) else {
        panic!("template")
    };
    assert!(t.depends_on.is_empty() && t.timeout.is_none() && t.retries.is_none());
}

#[test]
fn classify_reports_the_fixture_jobs() {
    let jobs = load_jobs(&crate_dir().join("tests/fixtures/discovery/jobs")).expect("fixtures");
    let find = |name: &str| {
        jobs.iter()
            .find(|j| j.metadata.name.as_deref() == Some(name))
            .unwrap_or_else(|| panic!("{name}"))
    };
    assert!(reason(find("runs-as-is")).contains("spec.suspend is not true"));
    assert!(reason(find("bad-annotation")).contains("\"delete\""));
    assert!(matches!(
        classify(find("nightly-report"), KEY),
        Classified::NotATemplate
    ));
    // The lifecycle annotation of sync-catalog is under the custom key.
    assert!(matches!(
        classify(find("sync-catalog"), KEY),
        Classified::NotATemplate
    ));
}

#[test]
fn classify_rejects_argo_expressions_in_the_spec() {
    let mut job = job("team", "step", &[(KEY, "lifecycle.upsert")]);
    let pod = job
        .spec
        .as_mut()
        .and_then(|s| s.template.spec.as_mut())
        .expect("pod");
    pod.containers[0].args = Some(vec!["{{workflow.name}}".into()]);
    assert!(reason(&job).contains("{{"));
}

// ---------------------------------------------------------------------------------------------
// Ordering, problems, limits

/// Task name -> its `depends`, for the entrypoint DAG.
fn main_dag(template: &Value) -> Vec<(String, Option<String>)> {
    let main = template["spec"]["templates"]
        .as_array()
        .expect("templates")
        .iter()
        .find(|t| t["name"] == "main")
        .expect("main");
    main["dag"]["tasks"]
        .as_array()
        .expect("tasks")
        .iter()
        .map(|t| {
            (
                t["name"].as_str().expect("name").to_string(),
                t["depends"].as_str().map(String::from),
            )
        })
        .collect()
}

#[test]
fn depends_on_orders_the_dag_within_and_across_namespaces() {
    let outcome = render(&example_templates(), &config());
    let upsert = main_dag(&outcome.templates["upsert"]);
    let depends: BTreeMap<String, Option<String>> = upsert.iter().cloned().collect();
    assert_eq!(depends["identity-create-schema"], None);
    assert_eq!(
        depends["search-create-index"].as_deref(),
        Some("identity-create-schema")
    );
    assert_eq!(
        depends["search-warm-cache"].as_deref(),
        Some("search-create-index")
    );
    assert_eq!(depends["billing-provision-account"], None);
    // Tasks are listed in dependency order.
    let position = |task: &str| upsert.iter().position(|(n, _)| n == task).expect(task);
    assert!(position("identity-create-schema") < position("search-create-index"));
    assert!(position("search-create-index") < position("search-warm-cache"));
    let delete = main_dag(&outcome.templates["delete"]);
    assert_eq!(
        delete,
        vec![
            ("billing-close-account".to_string(), None),
            (
                "identity-drop-schema".to_string(),
                Some("billing-close-account".to_string())
            ),
        ]
    );
}

#[test]
fn a_cycle_is_a_problem_for_that_action_only() {
    let jobs = vec![
        template("a", "one", "lifecycle.upsert,lifecycle.delete", "b/two"),
        template("b", "two", "lifecycle.upsert", "c/three"),
        template("c", "three", "lifecycle.upsert", "a/one"),
        template("d", "free", "lifecycle.upsert,lifecycle.delete", ""),
    ];
    let outcome = render(&jobs, &config());
    let problem = &outcome.problems["upsert"];
    assert!(problem.contains("dependency cycle"), "{problem}");
    for job in ["a/one", "b/two", "c/three"] {
        assert!(problem.contains(job), "{problem} names {job}");
    }
    assert!(!problem.contains("d/free"), "{problem}");
    assert!(!outcome.templates.contains_key("upsert"));
    // delete: a/one depends on b/two, which is not part of delete.
    assert!(outcome.problems["delete"].contains("does not take part in lifecycle.delete"));
    for action in ["migrate-out", "migrate-in", "admin"] {
        assert_valid_template(&outcome.templates[action]);
    }
    assert_eq!(outcome.problems.len(), 2);

    let self_loop = vec![template("a", "one", "lifecycle.admin", "one")];
    let outcome = render(&self_loop, &config());
    assert!(
        outcome.problems["admin"].contains("a/one -> a/one"),
        "{:?}",
        outcome.problems
    );
}

#[test]
fn a_missing_dependency_is_a_problem_for_that_action_only() {
    let jobs = vec![
        template(
            "search",
            "create-index",
            "lifecycle.upsert",
            "identity/create-schema",
        ),
        template("search", "export-index", "lifecycle.migrate-out", ""),
    ];
    let outcome = render(&jobs, &config());
    let problem = &outcome.problems["upsert"];
    assert!(
        problem.contains("search/create-index depends on identity/create-schema"),
        "{problem}"
    );
    assert!(
        problem.contains("not a discovered template Job"),
        "{problem}"
    );
    assert_eq!(outcome.problems.len(), 1);
    assert_eq!(outcome.templates.len(), 4);
    assert_valid_template(&outcome.templates["migrate-out"]);
}

#[test]
fn more_jobs_than_one_dag_holds_become_nested_dags_in_order() {
    // A chain across chunk boundaries plus independent Jobs.
    let mut jobs: Vec<TemplateJob> = (0..450)
        .map(|i| {
            let depends = if i % 3 == 0 && i > 0 {
                format!("bulk/step-{:03}", i - 3)
            } else {
                String::new()
            };
            template(
                "bulk",
                &format!("step-{i:03}"),
                "lifecycle.upsert",
                &depends,
            )
        })
        .collect();
    jobs.reverse(); // input order must not matter
    let outcome = render(&jobs, &config());
    let upsert = &outcome.templates["upsert"];
    assert_valid_template(upsert);
    assert_eq!(
        main_dag(upsert),
        vec![
            ("chunk-1".to_string(), None),
            ("chunk-2".to_string(), Some("chunk-1".to_string())),
            ("chunk-3".to_string(), Some("chunk-2".to_string())),
        ]
    );
    let templates = upsert["spec"]["templates"].as_array().expect("templates");
    let mut chunk_of: BTreeMap<String, usize> = BTreeMap::new();
    let mut total = 0;
    for n in 1..=3 {
        let chunk = templates
            .iter()
            .find(|t| t["name"] == format!("chunk-{n}"))
            .expect("chunk");
        let tasks = chunk["dag"]["tasks"].as_array().expect("tasks");
        assert!(tasks.len() <= 200);
        total += tasks.len();
        for task in tasks {
            chunk_of.insert(task["name"].as_str().expect("name").to_string(), n);
        }
    }
    assert_eq!(total, 450, "every Job is in exactly one chunk");
    for i in (3..450).step_by(3) {
        let job = format!("bulk-step-{i:03}");
        let dependency = format!("bulk-step-{:03}", i - 3);
        assert!(
            chunk_of[&dependency] <= chunk_of[&job],
            "{dependency} runs no later than {job}"
        );
    }
}

#[test]
fn an_action_without_jobs_gets_a_no_op_template() {
    let outcome = render(&[], &config());
    assert_eq!(outcome.templates.len(), 5);
    let admin = &outcome.templates["admin"];
    assert_valid_template(admin);
    assert_eq!(admin["metadata"]["name"], "tenant-lifecycle-admin");
    assert_eq!(admin["metadata"]["namespace"], "argo");
    assert_eq!(
        admin["metadata"]["labels"][MANAGED_BY_LABEL],
        "tenant-gateway"
    );
    assert_eq!(admin["metadata"]["labels"][ACTION_LABEL], "admin");
    assert_eq!(
        admin["spec"]["synchronization"]["mutexes"],
        json!([{"name": "tenant-{{workflow.parameters.tenant}}"}])
    );
    let templates = admin["spec"]["templates"].as_array().expect("templates");
    assert_eq!(templates.len(), 2);
    let no_op = templates
        .iter()
        .find(|t| t["name"] == "no-op")
        .expect("no-op");
    assert_eq!(no_op["suspend"], json!({"duration": "0"}));
    assert!(
        !admin.to_string().contains("image"),
        "no pod, no image pull"
    );
}

#[test]
fn invalid_configured_actions_are_problems() {
    let mut config = config();
    config.actions.push("Not_Valid".into());
    let outcome = render(&[], &config);
    assert!(outcome.problems["Not_Valid"].contains("cannot name a WorkflowTemplate"));
    assert_eq!(outcome.templates.len(), 5);
}

#[test]
fn task_names_are_unique_valid_and_stable() {
    let jobs = vec![
        template("a-b", "c", "lifecycle.upsert", ""),
        template("a", "b-c", "lifecycle.upsert", ""),
        template("9lives", "x.y", "lifecycle.upsert", ""),
    ];
    let outcome = render(&jobs, &config());
    let names: Vec<String> = main_dag(&outcome.templates["upsert"])
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    let unique: BTreeSet<&String> = names.iter().collect();
    assert_eq!(unique.len(), 3, "{names:?}");
    assert!(names.contains(&"job-9lives-x-y".to_string()), "{names:?}");
    assert!(
        names.iter().filter(|n| n.starts_with("a-b-c-")).count() == 2,
        "{names:?}"
    );
    let again = render(&jobs, &config());
    assert_eq!(outcome.templates["upsert"], again.templates["upsert"]);
}

// ---------------------------------------------------------------------------------------------
// Content hash

fn hashes(outcome: &RenderOutcome) -> BTreeMap<String, String> {
    outcome
        .templates
        .iter()
        .map(|(action, t)| {
            let hash = t["metadata"]["annotations"][CONTENT_HASH_ANNOTATION].as_str();
            (action.clone(), hash.expect("hash").to_string())
        })
        .collect()
}

#[test]
fn content_hash_is_stable_and_follows_changes() {
    let jobs = example_templates();
    let first = render(&jobs, &config());
    let mut reversed = jobs.clone();
    reversed.reverse();
    let second = render(&reversed, &config());
    assert_eq!(
        hashes(&first),
        hashes(&second),
        "input order does not matter"
    );
    assert_eq!(first.templates, second.templates);
    for (action, hash) in hashes(&first) {
        assert_eq!(hash.len(), 64, "{action}: hex sha256");
    }

    // A change to one upsert Job: the upsert hash changes, no other does.
    let mut changed = jobs.clone();
    let warm = changed
        .iter_mut()
        .find(|t| t.reference.name == "warm-cache")
        .expect("warm-cache");
    let pod = warm
        .job
        .spec
        .as_mut()
        .and_then(|s| s.template.spec.as_mut())
        .expect("pod");
    pod.containers[0].image = Some("registry.example.com/search/cache-warmer:2.0.2".into());
    let third = render(&changed, &config());
    let (before, after) = (hashes(&first), hashes(&third));
    assert_ne!(before["upsert"], after["upsert"]);
    for action in ["delete", "migrate-out", "migrate-in", "admin"] {
        assert_eq!(before[action], after[action], "{action} is unchanged");
    }

    // Argo CD Replace: a new uid and resourceVersion for the same spec change nothing.
    let mut replaced = jobs.clone();
    for t in &mut replaced {
        t.job.metadata.uid = Some("11111111-2222-3333-4444-555555555555".into());
        t.job.metadata.resource_version = Some("99".into());
    }
    assert_eq!(hashes(&render(&replaced, &config())), before);
}

// ---------------------------------------------------------------------------------------------
// The bridge Job

#[test]
fn a_cluster_fetched_job_is_stripped_and_injected() {
    let jobs = load_jobs(&crate_dir().join("tests/fixtures/discovery/jobs")).expect("fixtures");
    let cluster = jobs
        .iter()
        .find(|j| j.metadata.name.as_deref() == Some("sync-catalog"))
        .expect("fixture");
    let Classified::Template(t) = classify(cluster, "collibra.com/tenant.lifecycle") else {
        panic!("template")
    };
    let outcome = render(&[t], &config());
    let upsert = &outcome.templates["upsert"];
    assert_valid_template(upsert);
    let (task, arguments) = bridge_tasks(upsert).pop().expect("one bridge task");
    assert_eq!(task, "catalog-sync-catalog");
    assert_eq!(
        arguments["event-configmap"],
        "catalog-sync-catalog-{{workflow.uid}}"
    );
    assert_eq!(arguments["timeout"], "2700s");
    assert_eq!(arguments["retries"], "4");
    let job: Job = serde_yaml_ng::from_str(&arguments["manifest"]).expect("job");
    assert_eq!(
        job.metadata.generate_name.as_deref(),
        Some("sync-catalog-upsert-")
    );
    let annotations = job.metadata.annotations.clone().unwrap_or_default();
    assert_eq!(
        annotations.keys().map(String::as_str).collect::<Vec<_>>(),
        vec!["team.example.com/owner", "tenant-gateway.io/template-job"]
    );
    assert_eq!(
        annotations["tenant-gateway.io/template-job"],
        "catalog/sync-catalog"
    );
    let spec = job.spec.expect("spec");
    // The template's 2h deadline is cut to the 45m timeout; the 0s TTL is replaced.
    assert_eq!(spec.active_deadline_seconds, Some(2700));
    assert_eq!(spec.ttl_seconds_after_finished, Some(3600));
    assert_eq!(spec.completions, Some(1));
    let pod = spec.template.spec.expect("pod");
    let volumes: Vec<&str> = pod
        .volumes
        .iter()
        .flatten()
        .map(|v| v.name.as_str())
        .collect();
    assert_eq!(volumes, vec!["cache", "tenant-lifecycle-event"]);
    let sync = &pod.containers[0];
    let env: Vec<&str> = sync.env.iter().flatten().map(|e| e.name.as_str()).collect();
    assert_eq!(
        env,
        vec![
            "TENANT_ID",
            "LIFECYCLE_ACTION",
            "EVENT_ID",
            "OBJECT_STORAGE_URL",
            "CATALOG_URL"
        ]
    );
    let mounts: Vec<(&str, &str)> = sync
        .volume_mounts
        .iter()
        .flatten()
        .map(|m| (m.name.as_str(), m.mount_path.as_str()))
        .collect();
    assert_eq!(
        mounts,
        vec![
            ("cache", "/cache"),
            ("tenant-lifecycle-event", EVENT_MOUNT_PATH)
        ]
    );
    // The sidecar and the init container get the same injection.
    assert_eq!(pod.containers[1].env.as_ref().map(Vec::len), Some(4));
    let init = &pod.init_containers.expect("init")[0];
    let stale = init
        .env
        .iter()
        .flatten()
        .find(|e| e.name == "LIFECYCLE_ACTION")
        .expect("env");
    assert_eq!(stale.value.as_deref(), Some("upsert"));
    // Not a migration: no object-storage Secret.
    assert!(sync.env_from.is_none());
}

#[test]
fn migrations_get_the_object_storage_secret_only_when_configured() {
    let jobs = vec![template(
        "search",
        "export-index",
        "lifecycle.migrate-out,lifecycle.upsert",
        "",
    )];
    let with_secret = render(&jobs, &config());
    let secret_in = |outcome: &RenderOutcome, action: &str| {
        let (_, arguments) = bridge_tasks(&outcome.templates[action])
            .pop()
            .expect("task");
        let job: Job = serde_yaml_ng::from_str(&arguments["manifest"]).expect("job");
        let pod = job.spec.and_then(|s| s.template.spec).expect("pod");
        pod.containers[0]
            .env_from
            .iter()
            .flatten()
            .any(|e| e.secret_ref.as_ref().map(|s| s.name.as_str()) == Some(STORAGE_SECRET))
    };
    assert!(secret_in(&with_secret, "migrate-out"));
    assert!(!secret_in(&with_secret, "upsert"));
    let mut no_secret = config();
    no_secret.object_storage_secret = None;
    assert!(!secret_in(&render(&jobs, &no_secret), "migrate-out"));
}

/// `{{key}}` -> value for every key, the way Argo substitutes a template's parameters.
fn substitute(text: &str, values: &BTreeMap<String, String>) -> String {
    values.iter().fold(text.to_string(), |text, (key, value)| {
        text.replace(&format!("{{{{{key}}}}}"), value)
    })
}

fn leaf<'a>(template: &'a Value, name: &str) -> &'a Value {
    template["spec"]["templates"]
        .as_array()
        .expect("templates")
        .iter()
        .find(|t| t["name"] == name)
        .unwrap_or_else(|| panic!("template {name}"))
}

/// One bridge attempt as Argo's controller and executor run it: the steps in order, each
/// step's arguments substituted from the bridge's inputs and the outputs of earlier steps
/// (workflow/controller/steps.go), each resource step's manifest applied to an in-memory
/// namespace with its `action` (workflow/executor/resource.go `ExecResource`), and the
/// outputs read back by `jsonPath` (`SaveResourceParameters`). Returns every API write in
/// order as (action, kind, object as it stands after the write).
fn run_bridge_attempt(
    template: &Value,
    task_arguments: &BTreeMap<String, String>,
    job_uid: &str,
) -> Vec<(String, String, Value)> {
    let bridge = leaf(template, "bridge");
    let globals: BTreeMap<String, String> = [
        ("workflow.name", "acme-upsert-1"),
        ("workflow.uid", "0b7e3f2c-1111-4222-8333-444455556666"),
        ("workflow.parameters.tenant", "acme"),
        ("workflow.parameters.event", r#"{"id":"e-1"}"#),
        ("workflow.parameters.event-id", "e-1"),
        ("workflow.parameters.object-storage-url", ""),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    // The DAG task's arguments are resolved in the DAG's scope (globals) first.
    let mut scope: BTreeMap<String, String> = task_arguments
        .iter()
        .map(|(k, v)| (format!("inputs.parameters.{k}"), substitute(v, &globals)))
        .collect();
    scope.extend(globals);
    let mut objects: BTreeMap<(String, String), Value> = BTreeMap::new();
    let mut writes = Vec::new();
    for group in bridge["steps"].as_array().expect("steps") {
        let step = &group.as_array().expect("group")[0];
        let step_name = step["name"].as_str().expect("step name");
        let target = leaf(template, step["template"].as_str().expect("template"));
        let mut inputs = scope
            .iter()
            .filter(|(k, _)| k.starts_with("workflow."))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect::<BTreeMap<_, _>>();
        for parameter in step["arguments"]["parameters"].as_array().expect("args") {
            let value = substitute(parameter["value"].as_str().expect("value"), &scope);
            let name = parameter["name"].as_str().expect("name");
            inputs.insert(format!("inputs.parameters.{name}"), value);
        }
        let resource = &target["resource"];
        let manifest = substitute(resource["manifest"].as_str().expect("manifest"), &inputs);
        assert!(
            !manifest.contains("{{"),
            "{step_name}: unresolved placeholder in {manifest}"
        );
        let mut object: Value = serde_yaml_ng::from_str(&manifest).expect("manifest YAML");
        let kind = object["kind"].as_str().expect("kind").to_string();
        let action = resource["action"].as_str().expect("action").to_string();
        match action.as_str() {
            "create" => {
                let generate = object["metadata"]["generateName"].as_str().unwrap_or("");
                if object["metadata"]["name"].is_null() {
                    object["metadata"]["name"] = json!(format!("{generate}x7k2p"));
                }
                object["metadata"]["uid"] = json!(job_uid);
                let key = (
                    kind.clone(),
                    object["metadata"]["name"].as_str().expect("name").into(),
                );
                assert!(!objects.contains_key(&key), "{step_name}: AlreadyExists");
                objects.insert(key, object.clone());
            }
            "apply" => {
                let key = (
                    kind.clone(),
                    object["metadata"]["name"].as_str().expect("name").into(),
                );
                objects.insert(key, object.clone());
            }
            "patch" => {
                assert_eq!(resource["mergeStrategy"], "merge", "{step_name}");
                let key = (
                    kind.clone(),
                    object["metadata"]["name"].as_str().expect("name").into(),
                );
                let current = objects
                    .get_mut(&key)
                    .unwrap_or_else(|| panic!("{step_name}: patch of a missing {key:?}"));
                json_merge_patch(current, &object);
                object = current.clone();
            }
            other => panic!("{step_name}: unexpected action {other}"),
        }
        for output in target["outputs"]["parameters"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let path = output["valueFrom"]["jsonPath"].as_str().expect("jsonPath");
            let pointer = path
                .trim_start_matches('{')
                .trim_end_matches('}')
                .replace('.', "/");
            let value = object
                .pointer(&pointer)
                .and_then(Value::as_str)
                .expect("output");
            let name = output["name"].as_str().expect("output name");
            scope.insert(
                format!("steps.{step_name}.outputs.parameters.{name}"),
                value.to_string(),
            );
        }
        writes.push((action, kind, object));
    }
    writes
}

/// RFC 7386 JSON merge patch, what `kubectl patch --type merge` sends.
fn json_merge_patch(target: &mut Value, patch: &Value) {
    let Some(patch) = patch.as_object() else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = json!({});
    }
    let map = target.as_object_mut().expect("object");
    for (key, value) in patch {
        if value.is_null() {
            map.remove(key);
        } else {
            json_merge_patch(map.entry(key.clone()).or_insert(Value::Null), value);
        }
    }
}

#[test]
fn the_bridge_creates_the_job_suspended_then_its_owned_configmap_then_resumes_it() {
    let outcome = render(&example_templates(), &config());
    let upsert = &outcome.templates["upsert"];
    assert_valid_template(upsert);
    let (task, arguments) = bridge_tasks(upsert).pop().expect("a bridge task");
    let uid = "6f1c2d3e-0000-4000-8000-00000000abcd";
    let writes = run_bridge_attempt(upsert, &arguments, uid);
    let sequence: Vec<(&str, &str)> = writes
        .iter()
        .map(|(action, kind, _)| (action.as_str(), kind.as_str()))
        .collect();
    assert_eq!(
        sequence,
        vec![("create", "Job"), ("apply", "ConfigMap"), ("patch", "Job")],
        "{task}: Job (suspended), then its ConfigMap, then the Job resumed"
    );
    let (_, _, created) = &writes[0];
    assert_eq!(
        created["spec"]["suspend"], true,
        "no pod may start before its ConfigMap exists"
    );
    let (_, _, configmap) = &writes[1];
    let job_name = created["metadata"]["name"].as_str().expect("job name");
    // An owner reference must name an owner in the dependent's own namespace (Kubernetes
    // garbage collection: cross-namespace owner references are disallowed), by uid.
    assert_eq!(
        configmap["metadata"]["namespace"],
        created["metadata"]["namespace"]
    );
    assert_eq!(
        configmap["metadata"]["ownerReferences"],
        json!([{"apiVersion": "batch/v1", "kind": "Job", "name": job_name, "uid": uid}]),
        "owned by this attempt's Job, without blockOwnerDeletion (needs jobs/finalizers)"
    );
    // The Job mounts and reads exactly this ConfigMap.
    let name = configmap["metadata"]["name"]
        .as_str()
        .expect("configmap name");
    let volumes = created["spec"]["template"]["spec"]["volumes"].to_string();
    assert!(
        volumes.contains(&format!("\"name\":\"{name}\"")),
        "{volumes}"
    );
    let (_, _, resumed) = &writes[2];
    assert_eq!(resumed["spec"]["suspend"], false, "resumed");
    assert_eq!(resumed["metadata"]["uid"], uid, "the same Job");
    // The TTL that removes the Job (and with it the ConfigMap) is on the created Job.
    assert_eq!(created["spec"]["ttlSecondsAfterFinished"], 3600);

    // A retry runs the whole attempt again: a new Job (generateName), and the same ConfigMap
    // re-applied server-side, so its owner reference moves to the new Job.
    let bridge = leaf(upsert, "bridge");
    assert_eq!(
        bridge["retryStrategy"]["limit"],
        "{{inputs.parameters.retries}}"
    );
    assert_eq!(bridge["retryStrategy"]["retryPolicy"], "Always");
    let apply = &leaf(upsert, "apply-event-configmap")["resource"];
    assert_eq!(apply["action"], "apply");
    assert_eq!(
        apply["flags"],
        json!(["--server-side", "--force-conflicts"])
    );
    let second = run_bridge_attempt(upsert, &arguments, "a-second-uid");
    assert_eq!(second[1].2["metadata"]["name"], name);
    assert_eq!(
        second[1].2["metadata"]["ownerReferences"][0]["uid"],
        "a-second-uid"
    );

    // Only the wait carries conditions and the timeout; the create returns at once.
    let create = leaf(upsert, "create-suspended-job");
    assert!(create["resource"].get("successCondition").is_none());
    assert!(create.get("timeout").is_none());
    let start = leaf(upsert, "start-job");
    assert_eq!(start["timeout"], "{{inputs.parameters.timeout}}");
    assert!(start["resource"]["successCondition"].is_string());
    assert!(start["resource"]["failureCondition"].is_string());

    let manifest = leaf(upsert, "apply-event-configmap")["resource"]["manifest"]
        .as_str()
        .expect("manifest");
    // Substitute like Argo does and parse the ConfigMap, with an event full of YAML traps.
    let event = r#"{"id":"e-1","data":{"note":"it's \"quoted\": {a: b} # not a comment","n":1}}"#;
    let substituted = manifest
        .replace("{{inputs.parameters.name}}", "search-create-index-0b7e3f2c")
        .replace("{{inputs.parameters.namespace}}", "search")
        .replace(
            "{{inputs.parameters.job-name}}",
            "create-index-upsert-x7k2p",
        )
        .replace(
            "{{inputs.parameters.job-uid}}",
            "6f1c2d3e-0000-4000-8000-00000000abcd",
        )
        .replace("{{workflow.name}}", "acme-upsert-1")
        .replace("{{workflow.parameters.tenant}}", "acme")
        .replace(
            "{{workflow.parameters.event-id}}",
            "0190f5a0-0000-7000-8000-000000000000",
        )
        .replace("{{workflow.parameters.object-storage-url}}", "")
        .replace("{{workflow.parameters.event}}", event);
    let parsed: Value = serde_yaml_ng::from_str(&substituted).expect("ConfigMap YAML");
    assert_eq!(parsed["kind"], "ConfigMap");
    assert_eq!(parsed["metadata"]["namespace"], "search");
    assert_eq!(parsed["data"]["event.json"], event);
    assert_eq!(parsed["data"]["tenant"], "acme");
    assert_eq!(parsed["data"]["object-storage-url"], "");
    assert_eq!(
        parsed["metadata"]["labels"]["tenant-gateway.io/tenant"],
        "acme"
    );
    // Unsubstituted (as `argo lint` sees it with placeholders) it is valid YAML too.
    serde_yaml_ng::from_str::<Value>(manifest).expect("valid YAML before substitution");
}

// ---------------------------------------------------------------------------------------------
// Offline mode

#[test]
fn load_jobs_reads_multi_document_files_lists_and_skips_other_kinds() {
    let jobs = load_jobs(&crate_dir().join("tests/fixtures/discovery/jobs")).expect("fixtures");
    let names: Vec<&str> = jobs
        .iter()
        .filter_map(|j| j.metadata.name.as_deref())
        .collect();
    // from-cluster.yaml, ignored.yaml (3 documents), mixed-kinds.yaml (a List and a Job).
    assert_eq!(
        names,
        vec![
            "sync-catalog",
            "runs-as-is",
            "bad-annotation",
            "nightly-report",
            "listed",
            "plain"
        ]
    );
    let examples = load_jobs(&crate_dir().join("examples/jobs")).expect("examples");
    assert_eq!(
        examples.len(),
        9,
        "examples in subdirectories, .yaml and .yml"
    );
}

#[test]
fn load_jobs_names_a_broken_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("good.yaml"),
        "apiVersion: v1\nkind: ConfigMap\n",
    )
    .expect("w");
    std::fs::write(
        dir.path().join("broken.yaml"),
        "kind: Job\n  bad: [indent\n",
    )
    .expect("w");
    let error = load_jobs(dir.path()).expect_err("broken file");
    assert!(matches!(error, OfflineError::Yaml { .. }), "{error:?}");
    assert!(error.to_string().contains("broken.yaml"), "{error}");

    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("wrong.yml"),
        "apiVersion: batch/v1\nkind: Job\nspec: {suspend: maybe}\n",
    )
    .expect("w");
    let error = load_jobs(dir.path()).expect_err("not a Job");
    assert!(
        matches!(error, OfflineError::InvalidJob { document: 1, .. }),
        "{error:?}"
    );
    assert!(error.to_string().contains("wrong.yml"), "{error}");

    let error = load_jobs(Path::new("/nonexistent/tenant-gateway")).expect_err("missing dir");
    assert!(
        error.to_string().contains("/nonexistent/tenant-gateway"),
        "{error}"
    );
}

#[test]
fn printed_yaml_and_json_parse_back_to_the_same_objects() {
    let outcome = render(&example_templates(), &config());
    let expected: Vec<&Value> = outcome.templates.values().collect();

    let mut yaml = Vec::new();
    print_templates(&outcome, OutputFormat::Yaml, &mut yaml).expect("yaml");
    let yaml = String::from_utf8(yaml).expect("utf-8");
    let documents: Vec<Value> = serde_yaml_ng::Deserializer::from_str(&yaml)
        .map(|d| serde::Deserialize::deserialize(d).expect("document"))
        .collect();
    assert_eq!(documents.iter().collect::<Vec<_>>(), expected);
    let names: Vec<&str> = documents
        .iter()
        .map(|d| d["metadata"]["name"].as_str().expect("name"))
        .collect();
    let mut sorted = names.clone();
    sorted.sort_unstable();
    assert_eq!(names, sorted, "ordered by name");

    let mut json_out = Vec::new();
    print_templates(&outcome, OutputFormat::Json, &mut json_out).expect("json");
    let list: Value = serde_json::from_slice(&json_out).expect("json parses");
    assert_eq!(list["apiVersion"], "v1");
    assert_eq!(list["kind"], "List");
    assert_eq!(
        list["items"]
            .as_array()
            .expect("items")
            .iter()
            .collect::<Vec<_>>(),
        expected
    );
}

#[test]
fn render_config_comes_from_the_discover_settings() {
    let settings = DiscoverSettings {
        workflow_namespace: "workflows".into(),
        bridge_service_account: "bridge".into(),
        job_ttl: Duration::from_secs(1800),
        default_timeout: Duration::from_secs(7200),
        object_storage_secret: Some("s3-creds".into()),
        actions: ["upsert", "lifecycle.delete", "upsert", " "]
            .map(String::from)
            .to_vec(),
        ..DiscoverSettings::default()
    };
    let config = RenderConfig::from_settings(&settings);
    assert_eq!(config.workflow_namespace, "workflows");
    assert_eq!(config.bridge_service_account, "bridge");
    assert_eq!(config.job_ttl, Duration::from_secs(1800));
    assert_eq!(config.default_timeout, Duration::from_secs(7200));
    assert_eq!(config.object_storage_secret.as_deref(), Some("s3-creds"));
    assert_eq!(
        config.actions,
        vec!["upsert".to_string(), "delete".to_string()]
    );
    let blank_secret = DiscoverSettings {
        object_storage_secret: Some("  ".into()),
        ..DiscoverSettings::default()
    };
    assert_eq!(
        RenderConfig::from_settings(&blank_secret).object_storage_secret,
        None
    );
}

/// The checks above are only worth something if they reject what Argo rejects.
#[test]
fn the_validators_reject_invalid_templates() {
    let outcome = render(&example_templates(), &config());
    let valid = outcome.templates["upsert"].clone();

    let mut no_spec = valid.clone();
    no_spec.as_object_mut().expect("object").remove("spec");
    assert!(!argo_schema().is_valid(&no_spec), "spec is required");

    let mut wrong_type = valid.clone();
    wrong_type["spec"]["templates"][0]["dag"]["tasks"][0]["arguments"]["parameters"][0]["value"] =
        json!(7);
    assert!(
        !argo_schema().is_valid(&wrong_type),
        "parameter values are strings"
    );

    let mut bad_task_name = valid.clone();
    bad_task_name["spec"]["templates"][0]["dag"]["tasks"][0]["name"] = json!("Bad_Name");
    assert!(!crd_schema().is_valid(&bad_task_name), "task name pattern");

    let mut too_many_tasks = valid.clone();
    let task = too_many_tasks["spec"]["templates"][0]["dag"]["tasks"][0].clone();
    too_many_tasks["spec"]["templates"][0]["dag"]["tasks"] = Value::Array(vec![task; 201]);
    assert!(
        !crd_schema().is_valid(&too_many_tasks),
        "at most 200 tasks per DAG"
    );

    let mut too_many_templates = valid.clone();
    let leaf = too_many_templates["spec"]["templates"][1].clone();
    too_many_templates["spec"]["templates"] = Value::Array(vec![leaf; 201]);
    assert!(
        !crd_schema().is_valid(&too_many_templates),
        "at most 200 templates"
    );

    let mut timeout_on_dag = valid.clone();
    timeout_on_dag["spec"]["templates"][0]["timeout"] = json!("1h");
    let caught = std::panic::catch_unwind(|| assert_crd_rules(&timeout_on_dag));
    assert!(caught.is_err(), "timeout on a DAG template");

    let mut undeclared = valid.clone();
    let templates = undeclared["spec"]["templates"]
        .as_array_mut()
        .expect("templates");
    let create_job = templates
        .iter_mut()
        .find(|t| t["name"] == "start-job")
        .expect("leaf");
    create_job["resource"]["successCondition"] =
        json!("status.succeeded > {{inputs.parameters.nope}}");
    let caught = std::panic::catch_unwind(|| assert_references_resolve(&undeclared));
    assert!(caught.is_err(), "undeclared input");
}

// ---------------------------------------------------------------------------------------------
// The bridge's success and failure conditions, evaluated the way Argo's executor does

/// One requirement of a Kubernetes label selector, as apimachinery pkg/labels/selector.go
/// parses it (`Parser.parse`, `parseRequirement`, `NewRequirement`).
#[derive(Debug)]
enum Requirement {
    Exists(String),
    DoesNotExist(String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    GreaterThan(String, i64),
    LessThan(String, i64),
}

/// A valid label key (apimachinery pkg/api/validate/content/kube.go `IsLabelKey`): an
/// optional DNS-subdomain prefix and `/`, then at most 63 of `[-A-Za-z0-9_.]`, starting and
/// ending alphanumeric. `NewRequirement` refuses any other key, so the gjson path in a
/// condition can use only dots and array indices: no `#(...)` query, no wildcard.
fn is_label_key(key: &str) -> bool {
    let name = match key.split('/').collect::<Vec<_>>().as_slice() {
        [name] => *name,
        [prefix, name] => {
            let prefix_ok = !prefix.is_empty()
                && prefix.len() <= 253
                && prefix.split('.').all(|label| {
                    !label.is_empty()
                        && label
                            .chars()
                            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                        && !label.starts_with('-')
                        && !label.ends_with('-')
                });
            if !prefix_ok {
                return false;
            }
            name
        }
        _ => return false,
    };
    is_label_value(name) && !name.is_empty()
}

/// A valid label value (`IsLabelValue`): empty, or the name part of a label key.
fn is_label_value(value: &str) -> bool {
    value.is_empty()
        || (value.len() <= 63
            && value.starts_with(|c: char| c.is_ascii_alphanumeric())
            && value.ends_with(|c: char| c.is_ascii_alphanumeric())
            && value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
}

/// `labels.Parse`: the lexer splits on whitespace and the special symbols `= ! ( ) , > <`
/// (`isSpecialSymbol`); requirements are separated by commas outside parentheses.
fn parse_selector(selector: &str) -> Result<Vec<Requirement>, String> {
    if selector.trim().is_empty() {
        // Argo skips an empty condition (`WaitResource`).
        return Ok(Vec::new());
    }
    #[derive(Debug, PartialEq)]
    enum Token {
        Word(String),
        Symbol(String),
    }
    let special = |c: char| matches!(c, '=' | '!' | '(' | ')' | ',' | '>' | '<');
    let mut tokens = Vec::new();
    let chars: Vec<char> = selector.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if special(c) {
            // Two-character operators: `==`, `!=`.
            if (c == '=' || c == '!') && chars.get(i + 1) == Some(&'=') {
                tokens.push(Token::Symbol(format!("{c}=")));
                i += 2;
            } else {
                tokens.push(Token::Symbol(c.to_string()));
                i += 1;
            }
        } else {
            let start = i;
            while i < chars.len() && !chars[i].is_whitespace() && !special(chars[i]) {
                i += 1;
            }
            tokens.push(Token::Word(chars[start..i].iter().collect()));
        }
    }
    let mut requirements = Vec::new();
    let mut at = 0;
    let key_at = |at: usize| match tokens.get(at) {
        Some(Token::Word(key)) if is_label_key(key) => Ok(key.clone()),
        other => Err(format!("invalid key {other:?}")),
    };
    let value = |word: &str| {
        if is_label_value(word) {
            Ok(word.to_string())
        } else {
            Err(format!("invalid value {word:?}"))
        }
    };
    loop {
        if tokens.get(at) == Some(&Token::Symbol("!".into())) {
            requirements.push(Requirement::DoesNotExist(key_at(at + 1)?));
            at += 2;
        } else {
            let key = key_at(at)?;
            at += 1;
            match tokens.get(at) {
                None => requirements.push(Requirement::Exists(key)),
                Some(Token::Symbol(s)) if s == "," => requirements.push(Requirement::Exists(key)),
                Some(Token::Word(op)) if op == "in" || op == "notin" => {
                    if tokens.get(at + 1) != Some(&Token::Symbol("(".into())) {
                        return Err("expected '('".into());
                    }
                    at += 2;
                    let mut values = Vec::new();
                    loop {
                        match tokens.get(at) {
                            Some(Token::Word(word)) => values.push(value(word)?),
                            other => return Err(format!("expected a value, got {other:?}")),
                        }
                        at += 1;
                        match tokens.get(at) {
                            Some(Token::Symbol(s)) if s == "," => at += 1,
                            Some(Token::Symbol(s)) if s == ")" => break,
                            other => return Err(format!("expected ',' or ')', got {other:?}")),
                        }
                    }
                    at += 1;
                    requirements.push(if op == "in" {
                        Requirement::In(key, values)
                    } else {
                        Requirement::NotIn(key, values)
                    });
                }
                Some(Token::Symbol(op)) => {
                    let Some(Token::Word(word)) = tokens.get(at + 1) else {
                        return Err(format!("{op} needs a value"));
                    };
                    let word = value(word)?;
                    at += 2;
                    let number = || {
                        word.parse::<i64>()
                            .map_err(|_| format!("{op} needs an integer, got {word}"))
                    };
                    requirements.push(match op.as_str() {
                        "=" | "==" => Requirement::In(key, vec![word.clone()]),
                        "!=" => Requirement::NotIn(key, vec![word.clone()]),
                        ">" => Requirement::GreaterThan(key, number()?),
                        "<" => Requirement::LessThan(key, number()?),
                        other => return Err(format!("unknown operator {other}")),
                    });
                }
                Some(Token::Word(other)) => return Err(format!("unexpected {other}")),
            }
        }
        match tokens.get(at) {
            None => return Ok(requirements),
            Some(Token::Symbol(s)) if s == "," => at += 1,
            other => return Err(format!("expected ',' or end, got {other:?}")),
        }
    }
}

/// `gjson.GetBytes(json, path)` for the paths a label key can spell: dot-separated object
/// keys and array indices. Returns `Result.String()` when `Result.Exists()`: strings as they
/// are, numbers and booleans as their JSON text, `null` as "" (it exists), objects and arrays
/// as their JSON.
fn gjson_lookup(document: &Value, path: &str) -> Option<String> {
    let mut current = document;
    for component in path.split('.') {
        current = match current {
            Value::Object(map) => map.get(component)?,
            Value::Array(items) => items.get(component.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(match current {
        Value::String(text) => text.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    })
}

/// `Requirement.Matches` over Argo's `gjsonLabels` (Has = Exists, Lookup = String).
fn matches(requirement: &Requirement, document: &Value) -> bool {
    match requirement {
        Requirement::Exists(key) => gjson_lookup(document, key).is_some(),
        Requirement::DoesNotExist(key) => gjson_lookup(document, key).is_none(),
        Requirement::In(key, values) => {
            gjson_lookup(document, key).is_some_and(|value| values.contains(&value))
        }
        Requirement::NotIn(key, values) => {
            gjson_lookup(document, key).is_none_or(|value| !values.contains(&value))
        }
        Requirement::GreaterThan(key, bound) => gjson_lookup(document, key)
            .and_then(|value| value.parse::<i64>().ok())
            .is_some_and(|value| value > *bound),
        Requirement::LessThan(key, bound) => gjson_lookup(document, key)
            .and_then(|value| value.parse::<i64>().ok())
            .is_some_and(|value| value < *bound),
    }
}

/// What one poll of argo-workflows workflow/executor/resource.go `matchConditions` decides.
#[derive(Debug, PartialEq)]
enum Verdict {
    /// A failure requirement held: the step fails (any one of them suffices).
    Failed,
    /// Every success requirement held.
    Succeeded,
    /// Neither: poll again after RESOURCE_STATE_CHECK_INTERVAL.
    Waiting,
}

fn match_conditions(success: &str, failure: &str, job: &Value) -> Verdict {
    let success = parse_selector(success).expect("Argo parses the success condition");
    let failure = parse_selector(failure).expect("Argo parses the failure condition");
    if failure.iter().any(|r| matches(r, job)) {
        return Verdict::Failed;
    }
    if success.iter().filter(|r| matches(r, job)).count() >= success.len() {
        return Verdict::Succeeded;
    }
    Verdict::Waiting
}

#[test]
fn the_condition_evaluator_follows_the_label_selector_rules() {
    // A gjson query cannot select a condition by type: its key is not a label key.
    assert!(parse_selector(r#"status.conditions.#(type=="Failed").status == True"#).is_err());
    assert!(parse_selector("status.conditions.*.type in (Failed)").is_err());
    assert!(parse_selector("status.failed > six").is_err());
    let job = json!({"status": {"failed": 2, "conditions": [{"type": "Failed"}], "x": null}});
    assert!(matches(
        &parse_selector("status.failed > 1").expect("p")[0],
        &job
    ));
    assert!(!matches(
        &parse_selector("status.failed > 2").expect("p")[0],
        &job
    ));
    assert!(matches(
        &parse_selector("status.conditions.0.type == Failed").expect("p")[0],
        &job
    ));
    assert!(
        matches(&parse_selector("status.x").expect("p")[0], &job),
        "null exists"
    );
    assert!(matches(
        &parse_selector("!status.succeeded").expect("p")[0],
        &job
    ));
    assert!(matches(
        &parse_selector("status.succeeded notin (1)").expect("p")[0],
        &job
    ));
    // Failure: any requirement; success: all of them.
    assert_eq!(
        match_conditions(
            "status.failed > 1,status.succeeded",
            "status.failed > 5,status.failed > 1",
            &job
        ),
        Verdict::Failed
    );
    assert_eq!(
        match_conditions(
            "status.failed > 1,status.succeeded",
            "status.failed > 5",
            &job
        ),
        Verdict::Waiting
    );
}

/// A template Job of one failure kind, rendered on its own: its `start-job` conditions.
fn conditions_of(spec: Value) -> (String, String) {
    let mut job = job("team", "step", &[(KEY, "lifecycle.upsert")]);
    let mut value = serde_json::to_value(&job).expect("json");
    json_merge_patch(&mut value["spec"], &spec);
    job = serde_json::from_value(value).expect("job");
    let template = match classify(&job, KEY) {
        Classified::Template(template) => template,
        other => panic!("{other:?}"),
    };
    let outcome = render(&[template], &config());
    let upsert = &outcome.templates["upsert"];
    assert_valid_template(upsert);
    let resource = &leaf(upsert, "start-job")["resource"];
    (
        resource["successCondition"]
            .as_str()
            .expect("success")
            .to_string(),
        resource["failureCondition"]
            .as_str()
            .expect("failure")
            .to_string(),
    )
}

/// Job statuses as the Job controller writes them (kubernetes pkg/controller/job/
/// job_controller.go): created suspended, the first sync adds `Suspended: True`; resuming
/// flips it to `False` in place and resets `startTime` (`syncJob`). A failure is first
/// recorded as `FailureTarget` while pods terminate, then `Failed` (`newFailureCondition`,
/// `trackJobStatusAndRemoveFinalizers`, `enactJobFinished`, with JobPodReplacementPolicy or
/// JobManagedBy on, the default since 1.31); older controllers write `Failed` directly.
fn condition(kind: &str, status: &str, reason: &str) -> Value {
    json!({"type": kind, "status": status, "reason": reason,
           "lastProbeTime": "2026-08-01T10:05:00Z", "lastTransitionTime": "2026-08-01T10:05:00Z",
           "message": format!("{reason}")})
}

fn job_status(status: Value) -> Value {
    json!({"apiVersion": "batch/v1", "kind": "Job",
           "metadata": {"name": "step-upsert-x7k2p", "namespace": "team"},
           "spec": {"suspend": false}, "status": status})
}

fn resumed() -> Value {
    condition("Suspended", "False", "JobResumed")
}

#[test]
fn every_kind_of_job_failure_fails_the_step_and_only_completion_succeeds_it() {
    // (what failed, the template Job's spec, the status the Job controller writes)
    let reason_backoff = "BackoffLimitExceeded";
    let cases: Vec<(&str, Value, Vec<Value>)> = vec![
        (
            "backoffLimit exceeded, restartPolicy Never",
            json!({"backoffLimit": 2, "template": {"spec": {"restartPolicy": "Never"}}}),
            vec![
                json!({"failed": 3, "startTime": "2026-08-01T10:00:00Z", "active": 0, "ready": 0,
                       "terminating": 1, "uncountedTerminatedPods": {},
                       "conditions": [resumed(), condition("FailureTarget", "True", reason_backoff)]}),
                json!({"failed": 3, "startTime": "2026-08-01T10:00:00Z", "ready": 0, "terminating": 0,
                       "uncountedTerminatedPods": {},
                       "conditions": [resumed(), condition("FailureTarget", "True", reason_backoff),
                                      condition("Failed", "True", reason_backoff)]}),
            ],
        ),
        (
            // Restarts in place never raise status.failed (`pastBackoffLimitOnFailure` counts
            // container restarts); only the pod deleted at the end is counted.
            "backoffLimit exceeded by restarts, restartPolicy OnFailure",
            json!({"backoffLimit": 6, "template": {"spec": {"restartPolicy": "OnFailure"}}}),
            vec![
                json!({"startTime": "2026-08-01T10:00:00Z", "active": 0, "ready": 0, "terminating": 1,
                       "uncountedTerminatedPods": {},
                       "conditions": [resumed(), condition("FailureTarget", "True", reason_backoff)]}),
                json!({"failed": 1, "startTime": "2026-08-01T10:00:00Z", "ready": 0, "terminating": 0,
                       "uncountedTerminatedPods": {},
                       "conditions": [resumed(), condition("FailureTarget", "True", reason_backoff),
                                      condition("Failed", "True", reason_backoff)]}),
            ],
        ),
        (
            "podFailurePolicy FailJob",
            json!({"backoffLimit": 6, "template": {"spec": {"restartPolicy": "Never"}},
                   "podFailurePolicy": {"rules": [{"action": "FailJob",
                       "onExitCodes": {"containerName": "main", "operator": "In", "values": [42]}}]}}),
            vec![
                json!({"failed": 1, "startTime": "2026-08-01T10:00:00Z", "ready": 0, "terminating": 0,
                        "uncountedTerminatedPods": {},
                        "conditions": [resumed(), condition("FailureTarget", "True", "PodFailurePolicy"),
                                       condition("Failed", "True", "PodFailurePolicy")]}),
            ],
        ),
        (
            "activeDeadlineSeconds exceeded",
            json!({"activeDeadlineSeconds": 600, "template": {"spec": {"restartPolicy": "Never"}}}),
            vec![
                json!({"startTime": "2026-08-01T10:00:00Z", "active": 0, "ready": 0, "terminating": 1,
                       "uncountedTerminatedPods": {},
                       "conditions": [resumed(), condition("FailureTarget", "True", "DeadlineExceeded")]}),
                json!({"failed": 1, "startTime": "2026-08-01T10:00:00Z", "ready": 0, "terminating": 0,
                       "uncountedTerminatedPods": {},
                       "conditions": [resumed(), condition("FailureTarget", "True", "DeadlineExceeded"),
                                      condition("Failed", "True", "DeadlineExceeded")]}),
                // A controller without delayed terminal conditions, which never saw the Job
                // suspended: `Failed` alone, first.
                json!({"failed": 1, "startTime": "2026-08-01T10:00:00Z",
                       "conditions": [condition("Failed", "True", "DeadlineExceeded")]}),
            ],
        ),
    ];
    for (kind, spec, statuses) in cases {
        let (success, failure) = conditions_of(spec);
        for status in statuses {
            assert_eq!(
                match_conditions(&success, &failure, &job_status(status.clone())),
                Verdict::Failed,
                "{kind}: {status}"
            );
            // Without the success condition matching either (failure is checked first).
            let success_only = match_conditions(&success, "", &job_status(status.clone()));
            assert_eq!(
                success_only,
                Verdict::Waiting,
                "{kind}: success on {status}"
            );
        }
    }

    let (success, failure) =
        conditions_of(json!({"template": {"spec": {"restartPolicy": "Never"}}}));
    let verdict = |status: Value| match_conditions(&success, &failure, &job_status(status));
    // Succeeded: SuccessCriteriaMet, then Complete with completionTime (`enactJobFinished`).
    assert_eq!(
        verdict(json!({"succeeded": 1, "startTime": "2026-08-01T10:00:00Z",
                       "completionTime": "2026-08-01T10:04:00Z", "ready": 0, "terminating": 0,
                       "uncountedTerminatedPods": {},
                       "conditions": [resumed(), condition("SuccessCriteriaMet", "True", "CompletionsReached"),
                                      condition("Complete", "True", "CompletionsReached")]})),
        Verdict::Succeeded
    );
    // A success criterion met while pods still terminate is not yet a completed Job.
    assert_eq!(
        verdict(
            json!({"succeeded": 1, "startTime": "2026-08-01T10:00:00Z", "terminating": 1,
                       "conditions": [resumed(), condition("SuccessCriteriaMet", "True", "CompletionsReached")]})
        ),
        Verdict::Waiting
    );
    // Running, with one failed pod being replaced (backoffLimit not reached): neither.
    assert_eq!(
        verdict(
            json!({"active": 1, "ready": 1, "failed": 1, "startTime": "2026-08-01T10:00:00Z",
                       "terminating": 0, "uncountedTerminatedPods": {}, "conditions": [resumed()]})
        ),
        Verdict::Waiting
    );
    // Created, still suspended: neither.
    assert_eq!(
        verdict(json!({"conditions": [condition("Suspended", "True", "JobSuspended")]})),
        Verdict::Waiting
    );
    // Resumed before the controller ever saw it suspended: no conditions at all.
    assert_eq!(
        verdict(json!({"active": 1, "startTime": "2026-08-01T10:00:00Z"})),
        Verdict::Waiting
    );
}

/// The old conditions (`status.succeeded > 0` / `status.failed > <backoffLimit>`) missed
/// these failures until the timeout: the evaluator above would have said so.
#[test]
fn the_previous_conditions_missed_those_failures() {
    let on_failure = job_status(json!({"failed": 1, "startTime": "2026-08-01T10:00:00Z",
        "conditions": [resumed(), condition("FailureTarget", "True", "BackoffLimitExceeded"),
                       condition("Failed", "True", "BackoffLimitExceeded")]}));
    assert_eq!(
        match_conditions("status.succeeded > 0", "status.failed > 6", &on_failure),
        Verdict::Waiting
    );
}
