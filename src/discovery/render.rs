//! The pure function from template Jobs to Argo WorkflowTemplates (see `docs/discovery.md`).
//!
//! This module owns the shape of every generated `tenant-lifecycle-<action>` WorkflowTemplate:
//! its parameters, the per-tenant mutex, the DAG of bridge tasks ordered by `depends-on`
//! (split into nested DAGs past the CRD's 200-task limit), the bridge itself (the real Job
//! built from the template Job, created suspended; its event ConfigMap, owned by it; the Job
//! resumed and awaited), the no-op template of an action without Jobs, and the content hash that lets the reconciler skip unchanged applies.
//! Nothing here talks to the cluster, reads the clock or depends on input order, so the same
//! Jobs always give byte-identical templates. docs/discovery.md explains the decisions.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{
    ConfigMapKeySelector, ConfigMapVolumeSource, Container, EnvFromSource, EnvVar, EnvVarSource,
    SecretEnvSource, Volume, VolumeMount,
};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::template_job::{
    is_valid_action, JobRef, TemplateJob, DEPENDS_ON_ANNOTATION, RETRIES_ANNOTATION,
    TEMPLATE_LABEL, TIMEOUT_ANNOTATION,
};
use super::DiscoverSettings;

/// Label on every generated WorkflowTemplate (value [`MANAGED_BY_VALUE`]): what the
/// reconciler may prune.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// Value of [`MANAGED_BY_LABEL`].
pub const MANAGED_BY_VALUE: &str = "tenant-gateway";
/// Short action name on WorkflowTemplates, Workflows, event ConfigMaps and created Jobs.
pub const ACTION_LABEL: &str = "tenant-gateway.io/action";
/// Tenant on Workflows, event ConfigMaps and created Jobs, so operators can find them.
pub const TENANT_LABEL: &str = "tenant-gateway.io/tenant";
/// Name of the Workflow that created an event ConfigMap or a Job.
pub const WORKFLOW_LABEL: &str = "tenant-gateway.io/workflow";
/// On created Jobs: `namespace/name` of the template Job they were built from.
pub const TEMPLATE_JOB_ANNOTATION: &str = "tenant-gateway.io/template-job";
/// Hex sha256 of the canonical JSON of everything else in the WorkflowTemplate.
pub const CONTENT_HASH_ANNOTATION: &str = "tenant-gateway.io/content-hash";
/// Argo UI shows this annotation as the template's description.
pub const DESCRIPTION_ANNOTATION: &str = "workflows.argoproj.io/description";

/// Where the event ConfigMap is mounted in every container and init container.
pub const EVENT_MOUNT_PATH: &str = "/etc/tenant-lifecycle";
/// Name of the event volume in created Jobs (a same-named volume of the template is replaced).
pub const EVENT_VOLUME: &str = "tenant-lifecycle-event";
/// Environment variables injected into every container and init container.
pub const INJECTED_ENV: [&str; 4] = [
    "TENANT_ID",
    "LIFECYCLE_ACTION",
    "EVENT_ID",
    "OBJECT_STORAGE_URL",
];
/// Actions whose Jobs get `envFrom` the object-storage Secret when one is configured.
pub const MIGRATION_ACTIONS: [&str; 2] = ["migrate-out", "migrate-in"];

/// Argo CRD limits (`maxItems` in argoproj.io_workflowtemplates.yaml): templates per
/// WorkflowTemplate and tasks per DAG.
pub const MAX_TEMPLATES: usize = 200;
/// See [`MAX_TEMPLATES`].
pub const MAX_DAG_TASKS: usize = 200;
/// Largest rendered WorkflowTemplate (JSON bytes) accepted: etcd's default request limit is
/// 1.5 MiB, and Argo copies the template into every Workflow's status.
pub const MAX_TEMPLATE_BYTES: usize = 1_536 * 1024;
/// How many entries of a Job's `status.conditions` the failure condition looks at: the Job
/// controller keeps at most one condition per type (`ensureJobConditionStatus` in
/// kubernetes `pkg/controller/job/job_controller.go`) and there are five types (`Suspended`,
/// `FailureTarget`, `Failed`, `SuccessCriteriaMet`, `Complete`), so a failure is always among
/// the first five.
pub const JOB_CONDITION_SLOTS: usize = 5;

/// Labels the Job controller sets, which a new Job must not copy from its template.
const CONTROLLER_LABELS: [&str; 4] = [
    "controller-uid",
    "batch.kubernetes.io/controller-uid",
    "job-name",
    "batch.kubernetes.io/job-name",
];
/// Templates every non-empty action uses; `chunk-<n>` DAGs come on top.
const FIXED_TEMPLATES: [&str; 5] = [
    "main",
    "bridge",
    "create-suspended-job",
    "apply-event-configmap",
    "start-job",
];
/// Longest task name we generate: leaves room for `-<workflow uid>` in the ConfigMap name.
const MAX_TASK_NAME: usize = 61;

/// Everything the renderer needs besides the Jobs.
#[derive(Debug, Clone)]
pub struct RenderConfig {
    /// Namespace of the WorkflowTemplates (where Workflows run).
    pub workflow_namespace: String,
    /// Service account of the Workflows; it creates Jobs and ConfigMaps in team namespaces.
    pub bridge_service_account: String,
    /// `ttlSecondsAfterFinished` of created Jobs.
    pub job_ttl: Duration,
    /// Per-attempt timeout of a Job without a timeout annotation.
    pub default_timeout: Duration,
    /// Short action names that always get a template (a no-op one when no Job takes part).
    pub actions: Vec<String>,
    /// Secret in each Job's namespace passed as `envFrom` to migrate-out/migrate-in Jobs.
    pub object_storage_secret: Option<String>,
}

impl RenderConfig {
    /// The render part of `discover`'s settings. Actions may be given as `upsert` or
    /// `lifecycle.upsert`; blanks and duplicates are dropped.
    pub fn from_settings(settings: &DiscoverSettings) -> Self {
        let mut actions: Vec<String> = Vec::new();
        for action in &settings.actions {
            let action = action.trim();
            let action = action.strip_prefix("lifecycle.").unwrap_or(action);
            if !action.is_empty() && !actions.iter().any(|known| known == action) {
                actions.push(action.to_string());
            }
        }
        RenderConfig {
            workflow_namespace: settings.workflow_namespace.clone(),
            bridge_service_account: settings.bridge_service_account.clone(),
            job_ttl: settings.job_ttl,
            default_timeout: settings.default_timeout,
            actions,
            object_storage_secret: settings
                .object_storage_secret
                .clone()
                .filter(|secret| !secret.trim().is_empty()),
        }
    }
}

/// What [`render`] produced: a template per renderable action, a reason per other action.
#[derive(Debug, Clone, Default)]
pub struct RenderOutcome {
    /// Action -> a complete WorkflowTemplate object, ready for server-side apply.
    pub templates: BTreeMap<String, Value>,
    /// Action -> why it could not be rendered (cycle, missing dependency, size). The caller
    /// keeps the last good template of such an action and does not prune it.
    pub problems: BTreeMap<String, String>,
}

/// `tenant-lifecycle-<action>`.
pub fn template_name(action: &str) -> String {
    format!("tenant-lifecycle-{action}")
}

/// Renders one WorkflowTemplate per action in `config.actions` and per action found on `jobs`.
/// Pure and deterministic: input order does not matter (Jobs are sorted by namespace/name; a
/// duplicate namespace/name keeps the first in that order).
pub fn render(jobs: &[TemplateJob], config: &RenderConfig) -> RenderOutcome {
    let mut by_reference: BTreeMap<&JobRef, &TemplateJob> = BTreeMap::new();
    for job in jobs {
        by_reference.entry(&job.reference).or_insert(job);
    }
    let mut actions: BTreeSet<String> = config.actions.iter().cloned().collect();
    for job in by_reference.values() {
        actions.extend(job.actions.iter().cloned());
    }
    let mut outcome = RenderOutcome::default();
    for action in actions {
        let members: Vec<&TemplateJob> = by_reference
            .values()
            .filter(|job| job.actions.contains(&action))
            .copied()
            .collect();
        match render_action(&action, &members, &by_reference, config) {
            Ok(template) => {
                outcome.templates.insert(action, template);
            }
            Err(problem) => {
                outcome.problems.insert(action, problem);
            }
        }
    }
    outcome
}

/// One action's WorkflowTemplate, or why it cannot be rendered.
fn render_action(
    action: &str,
    members: &[&TemplateJob],
    all_jobs: &BTreeMap<&JobRef, &TemplateJob>,
    config: &RenderConfig,
) -> Result<Value, String> {
    if !is_valid_action(action) {
        return Err(format!(
            "action {action:?} cannot name a WorkflowTemplate: use lower-case letters, digits \
             and '-' (at most {} characters)",
            super::template_job::MAX_ACTION_LEN
        ));
    }
    check_dependencies(action, members, all_jobs)?;
    let order = dependency_order(members)?;
    let task_names = task_names(members);

    let templates = if members.is_empty() {
        vec![
            json!({"name": "main", "dag": {"tasks": [{"name": "no-op", "template": "no-op"}]}}),
            // A suspend node with duration 0 resumes at once and needs no pod, no image pull
            // and no permissions: the cheapest step Argo can run.
            json!({"name": "no-op", "suspend": {"duration": "0"}}),
        ]
    } else {
        let mut tasks = Vec::with_capacity(members.len());
        for &index in &order {
            tasks.push(bridge_task(
                action,
                members[index],
                &task_names[index],
                config,
            ));
        }
        let mut templates = dag_templates(members, &order, &task_names, tasks)?;
        templates.push(bridge_template());
        templates.push(create_suspended_job_template());
        templates.push(event_configmap_template(action));
        templates.push(start_job_template());
        templates
    };

    let job_count = members.len();
    let description = if job_count == 0 {
        format!(
            "Tenant lifecycle {action}: no template Job takes part yet, so this runs a single \
             no-op step. Generated by tenant-gateway discover; do not edit."
        )
    } else {
        format!(
            "Tenant lifecycle {action}: {job_count} bridge task(s), one per suspended template \
             Job annotated with lifecycle.{action}. Generated by tenant-gateway discover; do \
             not edit."
        )
    };
    let mut template = json!({
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "WorkflowTemplate",
        "metadata": {
            "name": template_name(action),
            "namespace": config.workflow_namespace,
            "labels": {
                MANAGED_BY_LABEL: MANAGED_BY_VALUE,
                ACTION_LABEL: action,
            },
            "annotations": {
                DESCRIPTION_ANNOTATION: description,
            },
        },
        "spec": {
            "entrypoint": "main",
            "arguments": {"parameters": [
                {"name": "tenant", "description": "Tenant name (a DNS-1123 label)."},
                {"name": "event", "description": "The canonical lifecycle CloudEvent, as JSON."},
                {"name": "event-id", "description": "Id of the emission that started this Workflow."},
                {"name": "object-storage-url", "value": "",
                 "description": "Object storage location of a migration (empty otherwise)."},
            ]},
            "serviceAccountName": config.bridge_service_account,
            "synchronization": {"mutexes": [{"name": "tenant-{{workflow.parameters.tenant}}"}]},
            "workflowMetadata": {
                "labels": {ACTION_LABEL: action},
                "labelsFrom": {TENANT_LABEL: {"expression": "workflow.parameters.tenant"}},
            },
            // Bridge pods only create and watch; keep the failed ones for troubleshooting.
            "podGC": {"strategy": "OnPodSuccess"},
            "templates": templates,
        },
    });
    let hash = content_hash(&template);
    template["metadata"]["annotations"][CONTENT_HASH_ANNOTATION] = Value::String(hash);
    let size = serde_json::to_vec(&template)
        .map(|bytes| bytes.len())
        .unwrap_or(usize::MAX);
    if size > MAX_TEMPLATE_BYTES {
        return Err(format!(
            "the rendered WorkflowTemplate is {size} bytes, over the {MAX_TEMPLATE_BYTES}-byte \
             budget of a Kubernetes object; {job_count} Jobs take part, make their manifests \
             smaller or split the action"
        ));
    }
    Ok(template)
}

/// Every `depends-on` of a member must name another member of the same action.
fn check_dependencies(
    action: &str,
    members: &[&TemplateJob],
    all_jobs: &BTreeMap<&JobRef, &TemplateJob>,
) -> Result<(), String> {
    let member_refs: BTreeSet<&JobRef> = members.iter().map(|job| &job.reference).collect();
    let mut missing = Vec::new();
    for job in members {
        for dependency in &job.depends_on {
            if member_refs.contains(dependency) {
                continue;
            }
            let why = if all_jobs.contains_key(dependency) {
                format!("which does not take part in lifecycle.{action}")
            } else {
                "which is not a discovered template Job (missing, not suspended, or with a bad \
                 annotation)"
                    .to_string()
            };
            missing.push(format!("{} depends on {dependency}, {why}", job.reference));
        }
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!("missing dependency: {}", missing.join("; ")))
    }
}

/// Indices of `members` in dependency order (Kahn's algorithm, ties broken by namespace/name),
/// or the cycle that prevents one.
fn dependency_order(members: &[&TemplateJob]) -> Result<Vec<usize>, String> {
    let index: BTreeMap<&JobRef, usize> = members
        .iter()
        .enumerate()
        .map(|(i, job)| (&job.reference, i))
        .collect();
    let dependencies: Vec<Vec<usize>> = members
        .iter()
        .map(|job| {
            job.depends_on
                .iter()
                .filter_map(|dependency| index.get(dependency).copied())
                .collect()
        })
        .collect();
    let mut waiting_on: Vec<usize> = dependencies.iter().map(Vec::len).collect();
    let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); members.len()];
    for (job, deps) in dependencies.iter().enumerate() {
        for &dependency in deps {
            dependents[dependency].push(job);
        }
    }
    // Members are sorted by reference, so ordering ready jobs by index is by namespace/name.
    let mut ready: BTreeSet<usize> = (0..members.len()).filter(|&i| waiting_on[i] == 0).collect();
    let mut order = Vec::with_capacity(members.len());
    while let Some(next) = ready.pop_first() {
        order.push(next);
        for &dependent in &dependents[next] {
            waiting_on[dependent] -= 1;
            if waiting_on[dependent] == 0 {
                ready.insert(dependent);
            }
        }
    }
    if order.len() == members.len() {
        return Ok(order);
    }
    // Every job left waits on another job left: follow dependencies until one repeats.
    let start = (0..members.len())
        .find(|&i| waiting_on[i] > 0)
        .unwrap_or_default();
    let mut path = vec![start];
    let mut current = start;
    while let Some(&next) = dependencies[current].iter().find(|&&d| waiting_on[d] > 0) {
        if let Some(position) = path.iter().position(|&seen| seen == next) {
            let cycle: Vec<String> = path[position..]
                .iter()
                .chain(std::iter::once(&next))
                .map(|&i| members[i].reference.to_string())
                .collect();
            return Err(format!(
                "dependency cycle: {} (each depends on the next)",
                cycle.join(" -> ")
            ));
        }
        path.push(next);
        current = next;
    }
    Err("dependency cycle among the Jobs of this action".to_string())
}

/// Stable, unique DAG task names: `<namespace>-<name>` made a valid Argo task name (letters,
/// digits and '-', not starting with a digit, at most [`MAX_TASK_NAME`]); names that collide
/// (after truncation or because `a-b/c` and `a/b-c` read alike) get a hash suffix.
fn task_names(members: &[&TemplateJob]) -> Vec<String> {
    let bases: Vec<String> = members
        .iter()
        .map(|job| {
            let raw = format!("{}-{}", job.reference.namespace, job.reference.name);
            let mut name: String = raw
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() {
                        c.to_ascii_lowercase()
                    } else {
                        '-'
                    }
                })
                .collect();
            if name.starts_with(|c: char| c.is_ascii_digit()) {
                name.insert_str(0, "job-");
            }
            name
        })
        .collect();
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    for base in &bases {
        *seen.entry(base.as_str()).or_default() += 1;
    }
    members
        .iter()
        .zip(&bases)
        .map(|(job, base)| {
            if base.len() <= MAX_TASK_NAME && seen.get(base.as_str()) == Some(&1) {
                return base.clone();
            }
            let digest = hex::encode(Sha256::digest(job.reference.to_string().as_bytes()));
            let keep = MAX_TASK_NAME - 9;
            let stem = base[..base.len().min(keep)].trim_end_matches('-');
            format!("{stem}-{}", &digest[..8])
        })
        .collect()
}

/// The entrypoint `main`, and when the action has more Jobs than one DAG may hold, the
/// `chunk-<n>` DAGs it runs one after another (each at most [`MAX_DAG_TASKS`] tasks, in
/// dependency order, so every dependency is in the same or an earlier chunk).
fn dag_templates(
    members: &[&TemplateJob],
    order: &[usize],
    task_names: &[String],
    tasks: Vec<Value>,
) -> Result<Vec<Value>, String> {
    let position: BTreeMap<&JobRef, usize> = order
        .iter()
        .enumerate()
        .map(|(position, &i)| (&members[i].reference, position))
        .collect();
    let chunk_of = |position: usize| position / MAX_DAG_TASKS;
    let chunk_count = order.len().div_ceil(MAX_DAG_TASKS);
    let max_chunks = (MAX_TEMPLATES - FIXED_TEMPLATES.len()).min(MAX_DAG_TASKS);
    if chunk_count > max_chunks {
        return Err(format!(
            "{} Jobs take part, more than {} nested DAGs of {MAX_DAG_TASKS} tasks can hold",
            order.len(),
            max_chunks
        ));
    }
    let mut chunks: Vec<Vec<Value>> = vec![Vec::new(); chunk_count];
    for (at, (mut task, &i)) in tasks.into_iter().zip(order).enumerate() {
        let mut in_chunk: Vec<&str> = members[i]
            .depends_on
            .iter()
            .filter_map(|dependency| position.get(dependency).copied())
            .filter(|&p| chunk_of(p) == chunk_of(at))
            .map(|p| task_names[order[p]].as_str())
            .collect();
        in_chunk.sort_unstable();
        if !in_chunk.is_empty() {
            task["depends"] = Value::String(in_chunk.join(" && "));
        }
        chunks[chunk_of(at)].push(task);
    }
    if chunk_count == 1 {
        let tasks = chunks.pop().unwrap_or_default();
        return Ok(vec![json!({"name": "main", "dag": {"tasks": tasks}})]);
    }
    let mut main_tasks = Vec::with_capacity(chunk_count);
    let mut templates = vec![Value::Null];
    for (n, tasks) in chunks.into_iter().enumerate() {
        let name = format!("chunk-{}", n + 1);
        let mut task = json!({"name": name, "template": name});
        if n > 0 {
            task["depends"] = Value::String(format!("chunk-{n}"));
        }
        main_tasks.push(task);
        templates.push(json!({"name": name, "dag": {"tasks": tasks}}));
    }
    templates[0] = json!({"name": "main", "dag": {"tasks": main_tasks}});
    Ok(templates)
}

/// The DAG task that runs one template Job: the generic `bridge` with this Job's manifest.
fn bridge_task(action: &str, job: &TemplateJob, task: &str, config: &RenderConfig) -> Value {
    let timeout = job.timeout.unwrap_or(config.default_timeout);
    // One deadline for the Job and for Argo's wait: the timeout, or the template's own
    // activeDeadlineSeconds when that is shorter. Kubernetes then marks the Job Failed
    // (DeadlineExceeded), which the failure condition sees; Argo's timeout is the backstop.
    let own_deadline = job
        .job
        .spec
        .as_ref()
        .and_then(|spec| spec.active_deadline_seconds)
        .and_then(|seconds| u64::try_from(seconds).ok())
        .filter(|&seconds| seconds > 0);
    let requested = timeout.as_secs_f64().ceil().max(1.0) as u64;
    let timeout_seconds = own_deadline.map_or(requested, |own| own.min(requested));
    let configmap = format!("{task}-{{{{workflow.uid}}}}");
    let manifest = bridge_job(action, job, &configmap, timeout_seconds, config);
    json!({
        "name": task,
        "template": "bridge",
        "arguments": {"parameters": [
            {"name": "namespace", "value": job.reference.namespace},
            {"name": "event-configmap", "value": configmap},
            {"name": "manifest", "value": manifest},
            // A duration, not a bare number: Argo rejects a whole number as `timeout`.
            {"name": "timeout", "value": format!("{timeout_seconds}s")},
            {"name": "retries", "value": job.retries.unwrap_or(0).to_string()},
        ]},
    })
}

/// The Job the bridge creates, as YAML: the template Job with the template-only parts
/// stripped and the tenant's event injected. See docs/discovery.md for each change.
fn bridge_job(
    action: &str,
    template: &TemplateJob,
    configmap: &str,
    timeout_seconds: u64,
    config: &RenderConfig,
) -> String {
    let mut job: Job = template.job.clone();
    job.status = None;
    let metadata = &mut job.metadata;
    metadata.generate_name = Some(generate_name(&template.reference.name, action));
    metadata.name = None;
    metadata.namespace = Some(template.reference.namespace.clone());
    metadata.uid = None;
    metadata.resource_version = None;
    metadata.managed_fields = None;
    metadata.owner_references = None;
    metadata.creation_timestamp = None;
    metadata.deletion_timestamp = None;
    metadata.deletion_grace_period_seconds = None;
    metadata.generation = None;
    metadata.finalizers = None;
    metadata.self_link = None;
    let labels = metadata.labels.get_or_insert_with(Default::default);
    labels.retain(|key, _| !CONTROLLER_LABELS.contains(&key.as_str()) && key != TEMPLATE_LABEL);
    labels.extend(run_labels(action));
    let annotations = metadata.annotations.get_or_insert_with(Default::default);
    annotations.retain(|key, value| !is_template_only_annotation(key, value));
    annotations.insert(
        TEMPLATE_JOB_ANNOTATION.to_string(),
        template.reference.to_string(),
    );

    let spec = job.spec.get_or_insert_with(Default::default);
    // Created suspended: no pod starts before the event ConfigMap, which needs this Job's uid
    // for its owner reference, exists. The bridge's `start-job` step resumes it.
    spec.suspend = Some(true);
    spec.selector = None;
    spec.manual_selector = None;
    spec.ttl_seconds_after_finished = Some(clamp_i32(config.job_ttl.as_secs()));
    spec.active_deadline_seconds = Some(clamp_i64(timeout_seconds));

    let pod_metadata = spec.template.metadata.get_or_insert_with(Default::default);
    let pod_labels = pod_metadata.labels.get_or_insert_with(Default::default);
    pod_labels.retain(|key, _| !CONTROLLER_LABELS.contains(&key.as_str()) && key != TEMPLATE_LABEL);
    pod_labels.extend(run_labels(action));

    let pod = spec.template.spec.get_or_insert_with(Default::default);
    let volumes = pod.volumes.get_or_insert_with(Vec::new);
    volumes.retain(|volume| volume.name != EVENT_VOLUME);
    volumes.push(Volume {
        name: EVENT_VOLUME.to_string(),
        config_map: Some(ConfigMapVolumeSource {
            name: configmap.to_string(),
            ..Default::default()
        }),
        ..Default::default()
    });
    let storage_secret = config
        .object_storage_secret
        .as_deref()
        .filter(|_| MIGRATION_ACTIONS.contains(&action));
    for container in pod.containers.iter_mut() {
        inject(container, action, configmap, storage_secret);
    }
    for container in pod.init_containers.iter_mut().flatten() {
        inject(container, action, configmap, storage_secret);
    }
    // A Job always serializes; the fallback only keeps this function total.
    serde_yaml_ng::to_string(&job).unwrap_or_default()
}

/// Labels on created Jobs, their pods and event ConfigMaps.
fn run_labels(action: &str) -> [(String, String); 3] {
    [
        (WORKFLOW_LABEL.to_string(), "{{workflow.name}}".to_string()),
        (
            TENANT_LABEL.to_string(),
            "{{workflow.parameters.tenant}}".to_string(),
        ),
        (ACTION_LABEL.to_string(), action.to_string()),
    ]
}

/// Annotations that describe the template rather than a run: ours, Argo CD's sync options,
/// kubectl's last-applied copy, and the lifecycle list itself (its key is configurable, so it
/// is recognized by its value: every entry `lifecycle.<action>`).
fn is_template_only_annotation(key: &str, value: &str) -> bool {
    let ours = [
        DEPENDS_ON_ANNOTATION,
        TIMEOUT_ANNOTATION,
        RETRIES_ANNOTATION,
        TEMPLATE_LABEL,
    ];
    let lifecycle_list = {
        let mut entries = value
            .split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .peekable();
        entries.peek().is_some() && entries.all(|entry| entry.starts_with("lifecycle."))
    };
    ours.contains(&key)
        || key.starts_with("argocd.argoproj.io/")
        || key == "kubectl.kubernetes.io/last-applied-configuration"
        || lifecycle_list
}

/// Env (first, so the team's own variables may refer to them as `$(TENANT_ID)`), the event
/// mount and, for migrations, the object-storage Secret, into one container.
fn inject(container: &mut Container, action: &str, configmap: &str, storage_secret: Option<&str>) {
    let from_configmap = |name: &str, key: &str| EnvVar {
        name: name.to_string(),
        value_from: Some(EnvVarSource {
            config_map_key_ref: Some(ConfigMapKeySelector {
                name: configmap.to_string(),
                key: key.to_string(),
                optional: None,
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let mut env = vec![
        from_configmap("TENANT_ID", "tenant"),
        EnvVar {
            name: "LIFECYCLE_ACTION".to_string(),
            value: Some(action.to_string()),
            ..Default::default()
        },
        from_configmap("EVENT_ID", "event-id"),
        from_configmap("OBJECT_STORAGE_URL", "object-storage-url"),
    ];
    let own = container.env.take().unwrap_or_default();
    env.extend(
        own.into_iter()
            .filter(|var| !INJECTED_ENV.contains(&var.name.as_str())),
    );
    container.env = Some(env);

    let mounts = container.volume_mounts.get_or_insert_with(Vec::new);
    mounts.retain(|mount| mount.name != EVENT_VOLUME && mount.mount_path != EVENT_MOUNT_PATH);
    mounts.push(VolumeMount {
        name: EVENT_VOLUME.to_string(),
        mount_path: EVENT_MOUNT_PATH.to_string(),
        read_only: Some(true),
        ..Default::default()
    });

    if let Some(secret) = storage_secret {
        container
            .env_from
            .get_or_insert_with(Vec::new)
            .push(EnvFromSource {
                secret_ref: Some(SecretEnvSource {
                    name: secret.to_string(),
                    optional: None,
                }),
                ..Default::default()
            });
    }
}

/// `<job name>-<action>-`, short enough that the API server's 5-character suffix keeps the
/// Job name within 63 characters (it ends up in the pods' `job-name` label). A long Job name
/// is cut, never the action, so operators can still tell which lifecycle created the Job.
fn generate_name(job_name: &str, action: &str) -> String {
    const MAX_PREFIX: usize = 58;
    let room = MAX_PREFIX.saturating_sub(action.len() + 2).max(1);
    let mut job_part: String = job_name.chars().take(room).collect();
    while job_part.ends_with(['-', '.']) {
        job_part.pop();
    }
    format!("{job_part}-{action}-")
}

/// The generic bridge, one attempt per try: create the Job suspended, apply the event
/// ConfigMap owned by that Job, then resume the Job and wait for it. The event ConfigMap has
/// the Job as owner in its own namespace, so the Job's `ttlSecondsAfterFinished` removes both
/// (the garbage collector deletes dependents of a deleted owner). Retries wrap the whole
/// attempt: each creates a new Job and hands the ConfigMap over to it.
fn bridge_template() -> Value {
    json!({
        "name": "bridge",
        "inputs": {"parameters": [
            {"name": "namespace"}, {"name": "event-configmap"}, {"name": "manifest"},
            {"name": "timeout"}, {"name": "retries"},
        ]},
        "retryStrategy": {"limit": "{{inputs.parameters.retries}}", "retryPolicy": "Always"},
        "steps": [
            [{"name": "job", "template": "create-suspended-job", "arguments": {"parameters": [
                {"name": "manifest", "value": "{{inputs.parameters.manifest}}"},
            ]}}],
            [{"name": "event-configmap", "template": "apply-event-configmap", "arguments": {"parameters": [
                {"name": "namespace", "value": "{{inputs.parameters.namespace}}"},
                {"name": "name", "value": "{{inputs.parameters.event-configmap}}"},
                {"name": "job-name", "value": "{{steps.job.outputs.parameters.name}}"},
                {"name": "job-uid", "value": "{{steps.job.outputs.parameters.uid}}"},
            ]}}],
            [{"name": "run", "template": "start-job", "arguments": {"parameters": [
                {"name": "namespace", "value": "{{inputs.parameters.namespace}}"},
                {"name": "job-name", "value": "{{steps.job.outputs.parameters.name}}"},
                {"name": "timeout", "value": "{{inputs.parameters.timeout}}"},
            ]}}],
        ],
    })
}

/// Creates the Job (suspended, see [`bridge_job`]) and returns its generated name and uid.
/// No conditions: Argo's executor returns as soon as the create succeeded, then reads the
/// outputs with `kubectl get -o jsonpath` (argo-workflows workflow/executor/resource.go,
/// `WaitResource` and `SaveResourceParameters`).
fn create_suspended_job_template() -> Value {
    json!({
        "name": "create-suspended-job",
        "inputs": {"parameters": [{"name": "manifest"}]},
        "outputs": {"parameters": [
            {"name": "name", "valueFrom": {"jsonPath": "{.metadata.name}"}},
            {"name": "uid", "valueFrom": {"jsonPath": "{.metadata.uid}"}},
        ]},
        "resource": {"action": "create", "manifest": "{{inputs.parameters.manifest}}"},
    })
}

/// Applies the ConfigMap holding the event (and the other parameters, one key each) in the
/// Job's namespace, owned by this attempt's Job. Every substituted value sits in a YAML block
/// scalar, so no quoting in the event can break the manifest (the values are single-line:
/// compact JSON, names, a URL).
///
/// Server-side apply rather than create: a retry re-applies the same ConfigMap name and its
/// owner reference moves to the new Job (the field manager owns the list entry it no longer
/// applies, so the old one is dropped), so the ConfigMap lives as long as the last attempt's
/// Job. `blockOwnerDeletion` is left unset: setting it needs `update` on `jobs/finalizers`
/// (OwnerReferencesPermissionEnforcement), and the garbage collector deletes the dependent
/// either way.
fn event_configmap_template(action: &str) -> Value {
    let manifest = format!(
        "apiVersion: v1\n\
         kind: ConfigMap\n\
         metadata:\n  \
           name: \"{{{{inputs.parameters.name}}}}\"\n  \
           namespace: \"{{{{inputs.parameters.namespace}}}}\"\n  \
           labels:\n    \
             {WORKFLOW_LABEL}: \"{{{{workflow.name}}}}\"\n    \
             {TENANT_LABEL}: \"{{{{workflow.parameters.tenant}}}}\"\n    \
             {ACTION_LABEL}: \"{action}\"\n  \
           ownerReferences:\n    \
             - apiVersion: batch/v1\n      \
               kind: Job\n      \
               name: \"{{{{inputs.parameters.job-name}}}}\"\n      \
               uid: \"{{{{inputs.parameters.job-uid}}}}\"\n\
         data:\n  \
           event.json: |-\n    \
             {{{{workflow.parameters.event}}}}\n  \
           tenant: |-\n    \
             {{{{workflow.parameters.tenant}}}}\n  \
           action: \"{action}\"\n  \
           event-id: |-\n    \
             {{{{workflow.parameters.event-id}}}}\n  \
           object-storage-url: |-\n    \
             {{{{workflow.parameters.object-storage-url}}}}\n"
    );
    json!({
        "name": "apply-event-configmap",
        "inputs": {"parameters": [
            {"name": "namespace"}, {"name": "name"}, {"name": "job-name"}, {"name": "job-uid"},
        ]},
        "resource": {
            "action": "apply",
            "flags": ["--server-side", "--force-conflicts"],
            "manifest": manifest,
        },
    })
}

/// Resumes the Job (a merge patch of `spec.suspend: false`) and waits, bounded by the step's
/// timeout, for Kubernetes' own verdict on it. See [`success_condition`] and
/// [`failure_condition`]; Argo's executor evaluates them on every poll after the patch
/// (every `RESOURCE_STATE_CHECK_INTERVAL`, 5 s by default), failure first.
fn start_job_template() -> Value {
    let manifest = "apiVersion: batch/v1\n\
         kind: Job\n\
         metadata:\n  \
           name: \"{{inputs.parameters.job-name}}\"\n  \
           namespace: \"{{inputs.parameters.namespace}}\"\n\
         spec:\n  \
           suspend: false\n";
    json!({
        "name": "start-job",
        "inputs": {"parameters": [{"name": "namespace"}, {"name": "job-name"}, {"name": "timeout"}]},
        "timeout": "{{inputs.parameters.timeout}}",
        "resource": {
            "action": "patch",
            "mergeStrategy": "merge",
            "manifest": manifest,
            "successCondition": success_condition(),
            "failureCondition": failure_condition(),
        },
    })
}

/// Success once the Job is `Complete`: the Job controller sets `status.completionTime`
/// together with the `Complete` condition and on no other path (`enactJobFinished` in
/// kubernetes pkg/controller/job/job_controller.go). A condition lookup cannot be used here:
/// Argo requires every requirement of a success condition to hold, and the `Complete`
/// condition has no fixed index.
pub fn success_condition() -> String {
    "status.completionTime".to_string()
}

/// Failure once the Job has a `FailureTarget` or `Failed` condition, whatever the cause
/// (backoffLimit with `Never` or `OnFailure`, a podFailurePolicy `FailJob`, an exceeded
/// `activeDeadlineSeconds`, failed indexes): the Job controller sets `FailureTarget` first when
/// it delays the terminal condition until pods are gone, `Failed` directly otherwise, always
/// with status `True` (`newFailureCondition`, `trackJobStatusAndRemoveFinalizers`).
///
/// Argo parses the condition as a Kubernetes label selector whose keys are gjson paths
/// (workflow/executor/resource.go, `WaitResource`, `gjsonLabels`). A key must be a valid label
/// key (apimachinery pkg/labels/selector.go `NewRequirement`), so gjson queries such as
/// `conditions.#(type=="Failed")` do not parse; only an index does. Argo fails the step when
/// any one requirement holds (`matchConditions`), so one requirement per index covers them
/// all.
pub fn failure_condition() -> String {
    (0..JOB_CONDITION_SLOTS)
        .map(|index| format!("status.conditions.{index}.type in (Failed,FailureTarget)"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Hex sha256 of the canonical JSON (keys sorted at every level, no whitespace) of `value`
/// without its content-hash annotation.
pub fn content_hash(value: &Value) -> String {
    let mut value = value.clone();
    if let Some(annotations) = value
        .pointer_mut("/metadata/annotations")
        .and_then(Value::as_object_mut)
    {
        annotations.remove(CONTENT_HASH_ANNOTATION);
    }
    let mut canonical = String::new();
    write_canonical(&value, &mut canonical);
    hex::encode(Sha256::digest(canonical.as_bytes()))
}

/// Canonical JSON, independent of serde_json's map ordering feature.
fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let sorted: BTreeMap<&String, &Value> = map.iter().collect();
            out.push('{');
            for (n, (key, item)) in sorted.into_iter().enumerate() {
                if n > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                write_canonical(item, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (n, item) in items.iter().enumerate() {
                if n > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

fn clamp_i32(value: u64) -> i32 {
    i32::try_from(value).unwrap_or(i32::MAX)
}

fn clamp_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}
