//! The part of an Argo `Workflow` (argoproj.io/v1alpha1) the watcher reads, and how one object
//! becomes a [`WorkflowObservation`].
//!
//! Field names and spellings are argo-workflows': `pkg/apis/workflow/v1alpha1/workflow_types.go`
//! (`Workflow`: `metadata`, `status`; `WorkflowStatus`: `phase`, `startedAt`, `finishedAt`,
//! `message`, all `omitempty`, the times `metav1.Time`, RFC 3339 or `null` when zero) and
//! `pkg/apis/workflow/v1alpha1/workflow_phase.go` (`WorkflowPhase`: `""` unknown, `Pending`,
//! `Running`, `Succeeded`, `Failed`, `Error`). Only these fields are decoded: the spec and the
//! node statuses of a large Workflow are never held in memory.

use std::borrow::Cow;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::NamespaceResourceScope;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::journal::{WorkflowObservation, WorkflowPhase};

/// The label both Sensors put on every Workflow they create: the emission it runs.
pub const EMISSION_LABEL: &str = "tenant-gateway.io/emission-id";

/// An Argo Workflow as far as the watcher needs it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ArgoWorkflow {
    /// Name, labels and the resourceVersion the watcher resumes from.
    pub metadata: ObjectMeta,
    /// Absent until the controller first updates the Workflow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<ArgoWorkflowStatus>,
}

/// `WorkflowStatus`, the fields the journal records.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ArgoWorkflowStatus {
    /// `Pending`, `Running`, `Succeeded`, `Failed`, `Error`, or empty (not set yet).
    #[serde(default)]
    pub phase: Option<String>,
    /// When the controller started it (RFC 3339).
    #[serde(default)]
    pub started_at: Option<String>,
    /// When it finished (RFC 3339).
    #[serde(default)]
    pub finished_at: Option<String>,
    /// The controller's summary, usually why it failed.
    #[serde(default)]
    pub message: Option<String>,
}

impl kube::Resource for ArgoWorkflow {
    type DynamicType = ();
    type Scope = NamespaceResourceScope;

    fn kind(_: &()) -> Cow<'_, str> {
        Cow::Borrowed("Workflow")
    }

    fn group(_: &()) -> Cow<'_, str> {
        Cow::Borrowed("argoproj.io")
    }

    fn version(_: &()) -> Cow<'_, str> {
        Cow::Borrowed("v1alpha1")
    }

    fn plural(_: &()) -> Cow<'_, str> {
        Cow::Borrowed("workflows")
    }

    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }

    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

/// Why a watched Workflow gives no observation. Each is logged and the Workflow skipped; the
/// watch goes on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unobservable {
    /// The server-side selector makes this impossible; kept so a misbehaving server cannot
    /// panic the watcher.
    #[error("Workflow {name} has no {EMISSION_LABEL} label")]
    MissingLabel {
        /// The Workflow's name.
        name: String,
    },
    /// Not an emission id of any gateway (set by hand, or by another tool).
    #[error("Workflow {name}: label {EMISSION_LABEL}={value:?} is not a UUID")]
    MalformedEmissionId {
        /// The Workflow's name.
        name: String,
        /// The label's value.
        value: String,
    },
    /// A phase this build does not know (a newer Argo): recording a guess would be wrong.
    #[error("Workflow {name}: unknown phase {phase:?}")]
    UnknownPhase {
        /// The Workflow's name.
        name: String,
        /// The phase as sent.
        phase: String,
    },
}

impl ArgoWorkflow {
    /// The Workflow's name (empty if the server sent none, which it never does).
    pub fn name(&self) -> &str {
        self.metadata.name.as_deref().unwrap_or_default()
    }

    /// Its phase: no status or an empty phase is `Pending` (Argo's `WorkflowUnknown`, a
    /// Workflow the controller has not picked up yet).
    pub fn phase(&self) -> Result<WorkflowPhase, Unobservable> {
        let phase = self
            .status
            .as_ref()
            .and_then(|s| s.phase.as_deref())
            .unwrap_or_default();
        if phase.is_empty() {
            return Ok(WorkflowPhase::Pending);
        }
        phase.parse().map_err(|_| Unobservable::UnknownPhase {
            name: self.name().to_owned(),
            phase: phase.to_owned(),
        })
    }

    /// What the journal records of this Workflow, against the emission of its label.
    pub fn observation(&self) -> Result<WorkflowObservation, Unobservable> {
        let name = self.name().to_owned();
        let label = self
            .metadata
            .labels
            .as_ref()
            .and_then(|labels| labels.get(EMISSION_LABEL));
        let Some(label) = label else {
            return Err(Unobservable::MissingLabel { name });
        };
        let emission_id =
            Uuid::parse_str(label).map_err(|_| Unobservable::MalformedEmissionId {
                name: name.clone(),
                value: label.clone(),
            })?;
        let phase = self.phase()?;
        let status = self.status.clone().unwrap_or_default();
        Ok(WorkflowObservation {
            emission_id,
            workflow_name: name,
            phase,
            started_at: status.started_at,
            finished_at: status.finished_at,
            message: status.message,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn workflow(value: serde_json::Value) -> ArgoWorkflow {
        serde_json::from_value(value).expect("a Workflow")
    }

    const EMISSION: &str = "0190a5b2-7c3e-7d41-9b1a-2f3c4d5e6f70";

    #[test]
    fn a_finished_workflow_is_observed_with_its_times_and_message() {
        let w = workflow(json!({
            "apiVersion": "argoproj.io/v1alpha1",
            "kind": "Workflow",
            "metadata": {"name": "upsert-acme-x1", "labels": {EMISSION_LABEL: EMISSION}},
            "spec": {"workflowTemplateRef": {"name": "t"}},
            "status": {
                "phase": "Failed",
                "startedAt": "2026-01-02T03:04:05Z",
                "finishedAt": "2026-01-02T03:05:00Z",
                "message": "child 'x' failed",
                "nodes": {"n": {"phase": "Failed"}},
            },
        }));
        assert_eq!(
            w.observation(),
            Ok(WorkflowObservation {
                emission_id: Uuid::parse_str(EMISSION).unwrap(),
                workflow_name: "upsert-acme-x1".into(),
                phase: WorkflowPhase::Failed,
                started_at: Some("2026-01-02T03:04:05Z".into()),
                finished_at: Some("2026-01-02T03:05:00Z".into()),
                message: Some("child 'x' failed".into()),
            })
        );
    }

    #[test]
    fn no_status_or_an_empty_phase_is_pending() {
        let labels = json!({EMISSION_LABEL: EMISSION});
        for status in [
            None,
            Some(json!({})),
            Some(json!({"phase": ""})),
            Some(json!({"phase": null, "startedAt": null})),
        ] {
            let mut value = json!({"metadata": {"name": "w", "labels": labels}});
            if let Some(status) = status.clone() {
                value["status"] = status;
            }
            let o = workflow(value).observation().expect("observed");
            assert_eq!(o.phase, WorkflowPhase::Pending, "{status:?}");
            assert_eq!(o.started_at, None);
        }
    }

    #[test]
    fn every_argo_phase_is_known_and_others_are_refused() {
        for phase in ["Pending", "Running", "Succeeded", "Failed", "Error"] {
            let w = workflow(json!({"metadata": {"name": "w"}, "status": {"phase": phase}}));
            assert_eq!(w.phase().map(|p| p.as_str()), Ok(phase));
        }
        let w = workflow(json!({"metadata": {"name": "w"}, "status": {"phase": "Paused"}}));
        assert_eq!(
            w.phase(),
            Err(Unobservable::UnknownPhase {
                name: "w".into(),
                phase: "Paused".into()
            })
        );
        // Argo's casing only.
        let w = workflow(json!({"metadata": {"name": "w"}, "status": {"phase": "running"}}));
        assert!(w.phase().is_err());
    }

    #[test]
    fn a_label_that_is_not_a_uuid_is_unobservable() {
        let w = workflow(json!({"metadata": {"name": "w", "labels": {EMISSION_LABEL: "abc"}}}));
        assert_eq!(
            w.observation(),
            Err(Unobservable::MalformedEmissionId {
                name: "w".into(),
                value: "abc".into()
            })
        );
        let w = workflow(json!({"metadata": {"name": "w", "labels": {"other": "x"}}}));
        assert_eq!(
            w.observation(),
            Err(Unobservable::MissingLabel { name: "w".into() })
        );
    }

    #[test]
    fn the_resource_is_argos_namespaced_workflows() {
        use kube::Resource as _;
        assert_eq!(
            ArgoWorkflow::url_path(&(), Some("argo")),
            "/apis/argoproj.io/v1alpha1/namespaces/argo/workflows"
        );
        assert_eq!(ArgoWorkflow::api_version(&()), "argoproj.io/v1alpha1");
    }
}
