//! Applying the desired WorkflowTemplates to the cluster, pruning the ones no longer wanted, and
//! telling the owners of ignored Jobs why.
//!
//! This module owns every write discovery makes to the Kubernetes API: server-side apply of
//! WorkflowTemplates (one field manager, only when the content hash changed), deletion of managed
//! templates that are no longer desired, and `events.k8s.io/v1` Events on ignored Jobs. What the
//! desired set is comes from [`super::render`]; when to sync comes from [`super::watch`].

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch,
    PatchParams, PostParams,
};
use kube::Client;
use serde_json::Value;
use tracing::Instrument as _;

use super::health::{DiscoveryMetrics, ErrorStage};
use super::render::{
    template_name, RenderOutcome, ACTION_LABEL, CONTENT_HASH_ANNOTATION, MANAGED_BY_LABEL,
};
use super::template_job::IgnoredJob;
use crate::telemetry::ErrorChain;

/// The server-side apply field manager, and the value of the managed-by label.
pub const FIELD_MANAGER: &str = "tenant-gateway";
/// `reportingController` of the Events discovery creates.
pub const REPORTING_CONTROLLER: &str = "tenant-gateway.io/discovery";
/// `reason` of the Event on an ignored Job (what `kubectl describe job` shows in REASON).
pub const IGNORED_EVENT_REASON: &str = "TemplateIgnored";
/// `action` of the Event on an ignored Job (events.k8s.io/v1 requires one).
pub const IGNORED_EVENT_ACTION: &str = "Discover";
/// The Kubernetes limit on an Event's `note`, in bytes.
const EVENT_NOTE_LIMIT: usize = 1024;

/// The Argo `WorkflowTemplate` resource, addressed dynamically: discovery needs no CRD types,
/// only names, labels and one annotation of the live objects.
pub fn workflow_template_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("argoproj.io", "v1alpha1", "WorkflowTemplate"),
        "workflowtemplates",
    )
}

/// The label selector that finds the templates discovery manages (and may prune).
pub fn managed_selector() -> String {
    format!("{MANAGED_BY_LABEL}={FIELD_MANAGER}")
}

/// What one sync did, by template name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncReport {
    /// Templates sent with server-side apply (new or changed content).
    pub applied: Vec<String>,
    /// Desired templates whose live content hash already matched: nothing sent.
    pub unchanged: Vec<String>,
    /// Managed templates deleted because no longer desired.
    pub pruned: Vec<String>,
    /// Events created on ignored Jobs.
    pub events: usize,
    /// Live templates of actions that failed to render: left as they are (last good content).
    pub kept_last_good: Vec<String>,
}

/// One write that failed during a sync; the others were still attempted.
#[derive(Debug, thiserror::Error)]
#[error("cannot {operation} WorkflowTemplate {name}")]
pub struct TemplateWriteError {
    /// `apply` or `delete`.
    pub operation: &'static str,
    /// The template's name.
    pub name: String,
    /// The API error.
    #[source]
    pub source: kube::Error,
}

/// Why a sync did not complete. Every variant is retried by the watch loop with backoff.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// The managed templates could not be listed, so nothing was applied or pruned.
    #[error("cannot list managed WorkflowTemplates in namespace {namespace}")]
    List {
        /// The workflow namespace.
        namespace: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// Some applies or deletes failed; the rest went through (see `report`).
    #[error("{} WorkflowTemplate write(s) failed: {}", failures.len(), summarize(failures))]
    Incomplete {
        /// What did go through.
        report: SyncReport,
        /// Every failure, in the order they happened.
        failures: Vec<TemplateWriteError>,
    },
}

/// Identifies "this Job was ignored for this reason" so each is reported once: by uid when
/// known (a re-created Job is a new object and gets a new Event), else by namespace/name.
type ReportedKey = (String, String);

/// Applies desired WorkflowTemplates and reports ignored Jobs, remembering which ignored Jobs it
/// already reported so their owners get one Event, not one per sync.
pub struct Reconciler {
    /// Client for Events (in the Jobs' namespaces).
    client: Client,
    /// WorkflowTemplates in the workflow namespace.
    templates: Api<DynamicObject>,
    /// The namespace the templates live in.
    workflow_namespace: String,
    /// `reportingInstance` of Events: the pod name.
    reporting_instance: String,
    /// Where applies, prunes, events, errors and durations are counted.
    metrics: DiscoveryMetrics,
    /// Ignored Jobs already reported, for the same reason. Entries whose Job is no longer
    /// ignored (fixed or deleted) are forgotten, so a relapse is reported again.
    reported: BTreeSet<ReportedKey>,
}

impl std::fmt::Debug for Reconciler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reconciler")
            .field("workflow_namespace", &self.workflow_namespace)
            .field("reporting_instance", &self.reporting_instance)
            .field("reported", &self.reported.len())
            .finish_non_exhaustive()
    }
}

impl Reconciler {
    /// A reconciler writing templates to `workflow_namespace`. The Events' reporting instance
    /// is the pod name (`HOSTNAME`), or `discovery` outside a pod.
    pub fn new(
        client: Client,
        workflow_namespace: impl Into<String>,
        metrics: DiscoveryMetrics,
    ) -> Self {
        let workflow_namespace = workflow_namespace.into();
        let templates = Api::namespaced_with(
            client.clone(),
            &workflow_namespace,
            &workflow_template_resource(),
        );
        let reporting_instance = std::env::var("HOSTNAME")
            .ok()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "discovery".to_owned());
        Reconciler {
            client,
            templates,
            workflow_namespace,
            reporting_instance,
            metrics,
            reported: BTreeSet::new(),
        }
    }

    /// Override the Events' reporting instance (tests; embedding programs).
    pub fn with_reporting_instance(mut self, instance: impl Into<String>) -> Self {
        self.reporting_instance = instance.into();
        self
    }

    /// Bring the cluster to `outcome`: apply the desired templates whose content hash differs
    /// from the live one, delete managed templates no longer desired (except those of actions
    /// in `outcome.problems`, which keep their last good template), and create one Event per
    /// newly ignored Job.
    ///
    /// A failed apply or delete does not stop the others; the sync then ends in
    /// [`ReconcileError::Incomplete`] so the caller retries. A failed Event is logged and
    /// counted, and retried on the next sync, but does not fail the sync: templates matter more
    /// than the report.
    pub async fn sync(
        &mut self,
        outcome: &RenderOutcome,
        ignored: &[IgnoredJob],
    ) -> Result<SyncReport, ReconcileError> {
        let span = tracing::info_span!(
            "discovery_sync",
            namespace = %self.workflow_namespace,
            desired = outcome.templates.len(),
            problems = outcome.problems.len(),
            ignored = ignored.len(),
            applied = tracing::field::Empty,
            unchanged = tracing::field::Empty,
            pruned = tracing::field::Empty,
            events = tracing::field::Empty,
        );
        let started = Instant::now();
        let result = async {
            let result = self.sync_templates(outcome).await;
            // Events go out even when template writes failed: the two are independent.
            let events = self.report_ignored(ignored).await;
            match result {
                Ok(mut report) => {
                    report.events = events;
                    Ok(report)
                }
                Err(ReconcileError::Incomplete {
                    mut report,
                    failures,
                }) => {
                    report.events = events;
                    Err(ReconcileError::Incomplete { report, failures })
                }
                Err(e) => Err(e),
            }
        }
        .instrument(span.clone())
        .await;
        self.metrics.observe_sync(started.elapsed());
        let report = match &result {
            Ok(report) | Err(ReconcileError::Incomplete { report, .. }) => report,
            Err(ReconcileError::List { .. }) => return result,
        };
        span.record("applied", report.applied.len());
        span.record("unchanged", report.unchanged.len());
        span.record("pruned", report.pruned.len());
        span.record("events", report.events);
        if result.is_ok() {
            span.in_scope(|| {
                if report.applied.is_empty() && report.pruned.is_empty() && report.events == 0 {
                    tracing::debug!(
                        unchanged = report.unchanged.len(),
                        "WorkflowTemplates already in sync"
                    );
                } else {
                    tracing::info!(
                        applied = ?report.applied,
                        pruned = ?report.pruned,
                        kept_last_good = ?report.kept_last_good,
                        "WorkflowTemplates in sync"
                    );
                }
            });
        }
        result
    }

    /// The template half of [`Reconciler::sync`].
    async fn sync_templates(&self, outcome: &RenderOutcome) -> Result<SyncReport, ReconcileError> {
        let live = self
            .templates
            .list(&ListParams::default().labels(&managed_selector()))
            .await
            .map_err(|source| {
                self.metrics.record_error(ErrorStage::Sync);
                ReconcileError::List {
                    namespace: self.workflow_namespace.clone(),
                    source,
                }
            })?;
        // name -> (action, content hash) of what is in the cluster now.
        let live: BTreeMap<String, (Option<String>, Option<String>)> = live
            .items
            .iter()
            .filter_map(|t| {
                let name = t.metadata.name.clone()?;
                let action = t
                    .metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(ACTION_LABEL))
                    .cloned();
                let hash = t
                    .metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(CONTENT_HASH_ANNOTATION))
                    .cloned();
                Some((name, (action, hash)))
            })
            .collect();

        let mut report = SyncReport::default();
        let mut failures = Vec::new();
        let mut desired_names = BTreeSet::new();
        for (action, template) in &outcome.templates {
            let name = desired_name(action, template);
            desired_names.insert(name.clone());
            let desired_hash = desired_hash(template);
            let live_hash = live.get(&name).and_then(|(_, h)| h.as_deref());
            if desired_hash.is_some() && desired_hash == live_hash {
                report.unchanged.push(name);
                continue;
            }
            let params = PatchParams::apply(FIELD_MANAGER).force();
            match self
                .templates
                .patch(&name, &params, &Patch::Apply(template))
                .await
            {
                Ok(_) => {
                    self.metrics.record_apply();
                    tracing::info!(template = %name, action = %action, "applied WorkflowTemplate");
                    report.applied.push(name);
                }
                Err(source) => {
                    self.metrics.record_error(ErrorStage::Sync);
                    let failure = TemplateWriteError {
                        operation: "apply",
                        name,
                        source,
                    };
                    tracing::warn!(error = %ErrorChain(&failure), "apply failed; retrying later");
                    failures.push(failure);
                }
            }
        }

        // Which actions' templates must survive a failed render, by template name.
        let problem_names: BTreeSet<String> =
            outcome.problems.keys().map(|a| template_name(a)).collect();
        for (name, (action, _)) in &live {
            if desired_names.contains(name) {
                continue;
            }
            let is_problem = problem_names.contains(name)
                || action
                    .as_ref()
                    .is_some_and(|a| outcome.problems.contains_key(a));
            if is_problem {
                tracing::warn!(template = %name, "action failed to render; keeping its last good WorkflowTemplate");
                report.kept_last_good.push(name.clone());
                continue;
            }
            match self.templates.delete(name, &DeleteParams::default()).await {
                Ok(_) => {
                    self.metrics.record_prune();
                    tracing::info!(template = %name, "pruned WorkflowTemplate no longer wanted");
                    report.pruned.push(name.clone());
                }
                // Someone else deleted it in between: the goal is reached.
                Err(kube::Error::Api(status)) if status.code == 404 => {
                    report.pruned.push(name.clone());
                }
                Err(source) => {
                    self.metrics.record_error(ErrorStage::Sync);
                    let failure = TemplateWriteError {
                        operation: "delete",
                        name: name.clone(),
                        source,
                    };
                    tracing::warn!(error = %ErrorChain(&failure), "prune failed; retrying later");
                    failures.push(failure);
                }
            }
        }

        if failures.is_empty() {
            Ok(report)
        } else {
            Err(ReconcileError::Incomplete { report, failures })
        }
    }

    /// Create one Event per ignored Job not yet reported for the same reason; forget reports of
    /// Jobs no longer ignored. Returns how many Events were created.
    async fn report_ignored(&mut self, ignored: &[IgnoredJob]) -> usize {
        let current: BTreeSet<ReportedKey> = ignored.iter().map(reported_key).collect();
        self.reported.retain(|k| current.contains(k));
        let mut created = 0;
        for job in ignored {
            let key = reported_key(job);
            if self.reported.contains(&key) {
                continue;
            }
            let event = ignored_event(job, &self.reporting_instance);
            let events: Api<Event> = Api::namespaced(self.client.clone(), &job.reference.namespace);
            match events.create(&PostParams::default(), &event).await {
                Ok(_) => {
                    self.metrics.record_event();
                    tracing::info!(
                        job.namespace = %job.reference.namespace,
                        job.name = %job.reference.name,
                        reason = %job.reason,
                        "reported ignored template Job"
                    );
                    self.reported.insert(key);
                    created += 1;
                }
                Err(e) => {
                    self.metrics.record_error(ErrorStage::Event);
                    tracing::warn!(
                        job.namespace = %job.reference.namespace,
                        job.name = %job.reference.name,
                        error = %ErrorChain(&e),
                        "cannot create Event on ignored Job; retrying on the next sync"
                    );
                }
            }
        }
        created
    }
}

/// `apply tenant-lifecycle-upsert: <cause chain>; delete ...`, for the Incomplete message.
fn summarize(failures: &[TemplateWriteError]) -> String {
    failures
        .iter()
        .map(|f| ErrorChain(f).to_string())
        .collect::<Vec<_>>()
        .join("; ")
}

fn reported_key(job: &IgnoredJob) -> ReportedKey {
    let identity = job
        .uid
        .clone()
        .unwrap_or_else(|| format!("{}/{}", job.reference.namespace, job.reference.name));
    (identity, job.reason.clone())
}

/// The template's `metadata.name`, or the conventional name when the renderer left it out.
fn desired_name(action: &str, template: &Value) -> String {
    template
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .map_or_else(|| template_name(action), str::to_owned)
}

/// The content hash annotation of a desired template. `None` makes the template always apply.
fn desired_hash(template: &Value) -> Option<&str> {
    template
        .get("metadata")
        .and_then(|m| m.get("annotations"))
        .and_then(|a| a.get(CONTENT_HASH_ANNOTATION))
        .and_then(Value::as_str)
}

/// The Warning Event regarding an ignored Job, as `kubectl describe job` shows it.
pub fn ignored_event(job: &IgnoredJob, reporting_instance: &str) -> Event {
    Event {
        metadata: ObjectMeta {
            generate_name: Some(format!("{}.", job.reference.name)),
            namespace: Some(job.reference.namespace.clone()),
            ..ObjectMeta::default()
        },
        event_time: Some(MicroTime(k8s_openapi::jiff::Timestamp::now())),
        action: Some(IGNORED_EVENT_ACTION.to_owned()),
        reason: Some(IGNORED_EVENT_REASON.to_owned()),
        note: Some(truncate_note(&job.reason)),
        type_: Some("Warning".to_owned()),
        regarding: Some(ObjectReference {
            api_version: Some("batch/v1".to_owned()),
            kind: Some("Job".to_owned()),
            name: Some(job.reference.name.clone()),
            namespace: Some(job.reference.namespace.clone()),
            uid: job.uid.clone(),
            ..ObjectReference::default()
        }),
        reporting_controller: Some(REPORTING_CONTROLLER.to_owned()),
        reporting_instance: Some(reporting_instance.to_owned()),
        ..Event::default()
    }
}

/// The API server rejects notes over 1 KiB; cut at a character boundary.
fn truncate_note(note: &str) -> String {
    if note.len() <= EVENT_NOTE_LIMIT {
        return note.to_owned();
    }
    let mut end = EVENT_NOTE_LIMIT - 3;
    while !note.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &note[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_notes_are_cut_on_a_char_boundary() {
        let note = "é".repeat(600);
        let cut = truncate_note(&note);
        assert!(cut.len() <= EVENT_NOTE_LIMIT);
        assert!(cut.ends_with("..."));
        assert_eq!(truncate_note("short"), "short");
    }

    #[test]
    fn desired_name_falls_back_to_the_convention() {
        let t = serde_json::json!({"metadata": {"name": "x"}});
        assert_eq!(desired_name("upsert", &t), "x");
        assert_eq!(
            desired_name("upsert", &serde_json::json!({})),
            template_name("upsert")
        );
    }
}
