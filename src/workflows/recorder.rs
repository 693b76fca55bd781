//! The recorder `serve` uses: the journal ([`EventJournal::record_workflow`]), then what a
//! change means for the rest of the process: the dispatcher's `await-workflow` gate is woken for
//! the tenant, the completion notifier when a completion event was queued, and a step that
//! reached a terminal phase is timed from its delivery
//! (`tenant_gateway_lifecycle_duration_seconds`).

use chrono::{DateTime, Utc};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;

use super::{RecordFailure, WorkflowRecorder};
use crate::dispatch::DispatchControl;
use crate::journal::{EventJournal, WorkflowObservation, WorkflowPhase, WorkflowRecorded};
use crate::metrics::LifecycleLabels;
use crate::notify::NotifierHandle;

/// Records observations in the journal; see the module doc.
#[derive(Clone)]
pub struct JournalRecorder {
    /// Where the observations are recorded (idempotent: an unchanged one writes nothing).
    pub journal: EventJournal,
    /// The completion notifier (`[notify]` configured): a terminal phase then also queues its
    /// completion event (the journal writes both in one transaction) and wakes it. `None`
    /// queues nothing.
    pub notifier: Option<NotifierHandle>,
    /// Woken per tenant after a change, so a tenant waiting on this Workflow goes on at once.
    pub dispatch: Option<DispatchControl>,
    /// `tenant_gateway_lifecycle_duration_seconds` (`GatewayMetrics::lifecycle_seconds`).
    pub lifecycle_seconds: Family<LifecycleLabels, Histogram>,
}

impl WorkflowRecorder for JournalRecorder {
    async fn record(&self, observation: WorkflowObservation) -> Result<(), RecordFailure> {
        let phase = observation.phase;
        let finished_at = observation.finished_at.clone();
        let emission_id = observation.emission_id;
        let recorded = self
            .journal
            .record_workflow(observation, self.notifier.is_some())
            .await
            .map_err(RecordFailure::new)?;
        match recorded {
            WorkflowRecorded::UnknownEmission => {
                tracing::debug!(%emission_id, "a Workflow of an emission this journal does not have");
            }
            WorkflowRecorded::Unchanged => {}
            WorkflowRecorded::Changed {
                tenant,
                action,
                previous,
                delivered_at,
                notification_queued,
            } => {
                if let Some(dispatch) = &self.dispatch {
                    dispatch.workflow_changed(&tenant);
                }
                if notification_queued {
                    if let Some(notifier) = &self.notifier {
                        notifier.wake();
                    }
                }
                let newly_terminal =
                    phase.is_terminal() && !previous.is_some_and(|p| p.is_terminal());
                if newly_terminal {
                    if let Some(seconds) =
                        lifecycle_seconds(delivered_at.as_deref(), finished_at.as_deref())
                    {
                        self.lifecycle_seconds
                            .get_or_create(&LifecycleLabels {
                                action,
                                outcome: outcome_label(phase),
                            })
                            .observe(seconds);
                    }
                }
            }
        }
        Ok(())
    }
}

/// `succeeded` or `failed` (Error counts as failed), as the completion events say it.
fn outcome_label(phase: WorkflowPhase) -> &'static str {
    phase.outcome().as_str()
}

/// From the delivery to the Workflow's own `finishedAt` (now, when it has none); `None` without
/// a delivery time (a Workflow seen before its delivery was recorded) or with unreadable times.
fn lifecycle_seconds(delivered_at: Option<&str>, finished_at: Option<&str>) -> Option<f64> {
    let parse = |t: &str| {
        DateTime::parse_from_rfc3339(t)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    };
    let delivered = parse(delivered_at?)?;
    let finished = match finished_at {
        Some(t) => parse(t)?,
        None => Utc::now(),
    };
    // A clock skew between the gateway and the cluster never makes a negative duration.
    let millis = (finished - delivered).num_milliseconds().max(0);
    Some(millis as f64 / 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_duration_runs_from_delivery_to_the_workflows_finish() {
        assert_eq!(
            lifecycle_seconds(Some("2026-01-01T00:00:00Z"), Some("2026-01-01T00:01:30.5Z")),
            Some(90.5)
        );
        // Skewed clocks: never negative.
        assert_eq!(
            lifecycle_seconds(Some("2026-01-01T00:01:00Z"), Some("2026-01-01T00:00:00Z")),
            Some(0.0)
        );
        assert_eq!(lifecycle_seconds(None, Some("2026-01-01T00:00:00Z")), None);
        assert_eq!(lifecycle_seconds(Some("yesterday"), None), None);
        assert!(lifecycle_seconds(Some("2026-01-01T00:00:00Z"), None).is_some_and(|s| s > 0.0));
    }

    #[test]
    fn error_counts_as_failed() {
        assert_eq!(outcome_label(WorkflowPhase::Succeeded), "succeeded");
        assert_eq!(outcome_label(WorkflowPhase::Failed), "failed");
        assert_eq!(outcome_label(WorkflowPhase::Error), "failed");
    }
}
