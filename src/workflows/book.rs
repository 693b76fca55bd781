//! The watcher's bookkeeping as a plain struct (tested without a server): which Workflows are
//! watched in which phase (the `tenant_gateway_workflows` gauge), what was last recorded per
//! emission (so a re-list records nothing unchanged), and what still waits to be recorded (so a
//! failed record is retried, never dropped).

use std::collections::{BTreeMap, HashMap, HashSet};

use uuid::Uuid;

use super::object::{ArgoWorkflow, Unobservable};
use crate::journal::{WorkflowObservation, WorkflowPhase};

/// See the module doc. Fed with the watcher's events in order.
#[derive(Debug, Default)]
pub struct WorkflowBook {
    /// Every watched Workflow with a valid observation, by name: its emission and phase.
    watched: HashMap<String, (Uuid, WorkflowPhase)>,
    /// How many of `watched` are in each phase (index: position in `WorkflowPhase::ALL`), kept
    /// current on every change so the gauge costs nothing per event, even during a long re-list.
    counts: [i64; WorkflowPhase::ALL.len()],
    /// The names listed since the re-list began (`None` outside a re-list): what is missing at
    /// its end was deleted while the watch was down.
    relisted: Option<HashSet<String>>,
    /// The last observation recorded per emission: an equal one is not recorded again.
    recorded: HashMap<Uuid, WorkflowObservation>,
    /// The newest unrecorded observation per emission (a newer one replaces an older one:
    /// only the latest phase is kept), in a stable order for retries.
    pending: BTreeMap<Uuid, WorkflowObservation>,
}

impl WorkflowBook {
    /// An empty book.
    pub fn new() -> Self {
        Self::default()
    }

    /// A Workflow was added, changed or listed. Returns whether something new waits to be
    /// recorded; an unobservable Workflow stops counting in the gauge and is returned as the
    /// error for the caller to log.
    pub fn apply(&mut self, workflow: &ArgoWorkflow) -> Result<bool, Unobservable> {
        let name = workflow.name().to_owned();
        if let Some(relisted) = &mut self.relisted {
            relisted.insert(name.clone());
        }
        let observation = match workflow.observation() {
            Ok(observation) => observation,
            Err(unobservable) => {
                self.unwatch(&name);
                return Err(unobservable);
            }
        };
        let emission = observation.emission_id;
        self.unwatch(&name);
        self.watched.insert(name, (emission, observation.phase));
        self.counts[phase_index(observation.phase)] += 1;
        if self.pending.get(&emission) == Some(&observation) {
            return Ok(false);
        }
        if self.recorded.get(&emission) == Some(&observation) {
            // The Workflow is back to what is recorded (`argo retry` of a Failed one that had not
            // been recorded yet): the pending state is no longer the latest.
            self.pending.remove(&emission);
            return Ok(false);
        }
        self.pending.insert(emission, observation);
        Ok(true)
    }

    /// A Workflow was deleted: it no longer counts. An unrecorded last state is still recorded
    /// (a Workflow whose TTL deleted it right after it finished keeps its outcome).
    pub fn delete(&mut self, workflow: &ArgoWorkflow) {
        self.forget(workflow.name());
    }

    fn forget(&mut self, name: &str) {
        if let Some(emission) = self.unwatch(name) {
            // Bounded memory: only emissions of watched Workflows are remembered.
            self.recorded.remove(&emission);
        }
    }

    /// Stops counting `name`; returns its emission if it was watched.
    fn unwatch(&mut self, name: &str) -> Option<Uuid> {
        let (emission, phase) = self.watched.remove(name)?;
        self.counts[phase_index(phase)] -= 1;
        Some(emission)
    }

    /// The watcher starts a (re-)list.
    pub fn begin_relist(&mut self) {
        self.relisted = Some(HashSet::new());
    }

    /// The (re-)list is complete: a Workflow watched before and not listed now is gone.
    pub fn end_relist(&mut self) {
        let Some(listed) = self.relisted.take() else {
            return;
        };
        let gone: Vec<String> = self
            .watched
            .keys()
            .filter(|name| !listed.contains(*name))
            .cloned()
            .collect();
        for name in gone {
            self.forget(&name);
        }
    }

    /// The next observation to record, if any.
    pub fn next_pending(&self) -> Option<WorkflowObservation> {
        self.pending.values().next().cloned()
    }

    /// How many observations wait to be recorded.
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    /// `observation` was recorded: it is no longer pending (unless a newer one replaced it)
    /// and the same one will not be recorded again.
    pub fn mark_recorded(&mut self, observation: &WorkflowObservation) {
        let emission = observation.emission_id;
        if self.pending.get(&emission) == Some(observation) {
            self.pending.remove(&emission);
        }
        self.recorded.insert(emission, observation.clone());
    }

    /// The number of watched Workflows in each phase, every phase listed (zeros included, so
    /// the gauge drops to 0 instead of keeping a stale value).
    pub fn phase_counts(&self) -> [(WorkflowPhase, i64); WorkflowPhase::ALL.len()] {
        WorkflowPhase::ALL.map(|phase| (phase, self.counts[phase_index(phase)]))
    }
}

/// The position of `phase` in `WorkflowPhase::ALL`.
fn phase_index(phase: WorkflowPhase) -> usize {
    WorkflowPhase::ALL
        .iter()
        .position(|p| *p == phase)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workflows::object::EMISSION_LABEL;
    use serde_json::json;

    fn workflow(name: &str, emission: &str, phase: Option<&str>) -> ArgoWorkflow {
        let mut value = json!({"metadata": {"name": name, "labels": {EMISSION_LABEL: emission}}});
        if let Some(phase) = phase {
            value["status"] = json!({"phase": phase});
        }
        serde_json::from_value(value).unwrap()
    }

    const E1: &str = "0190a5b2-7c3e-7d41-9b1a-000000000001";
    const E2: &str = "0190a5b2-7c3e-7d41-9b1a-000000000002";

    fn count(book: &WorkflowBook, phase: WorkflowPhase) -> i64 {
        book.phase_counts()
            .into_iter()
            .find(|(p, _)| *p == phase)
            .unwrap()
            .1
    }

    /// Records everything pending, returning the phases recorded.
    fn record_all(book: &mut WorkflowBook) -> Vec<WorkflowPhase> {
        let mut phases = Vec::new();
        while let Some(o) = book.next_pending() {
            book.mark_recorded(&o);
            phases.push(o.phase);
        }
        phases
    }

    #[test]
    fn an_unchanged_workflow_is_recorded_once_across_relists() {
        let mut book = WorkflowBook::new();
        assert_eq!(book.apply(&workflow("a", E1, Some("Running"))), Ok(true));
        assert_eq!(record_all(&mut book), [WorkflowPhase::Running]);
        book.begin_relist();
        assert_eq!(book.apply(&workflow("a", E1, Some("Running"))), Ok(false));
        book.end_relist();
        assert_eq!(book.next_pending(), None);
        assert_eq!(book.apply(&workflow("a", E1, Some("Succeeded"))), Ok(true));
        assert_eq!(record_all(&mut book), [WorkflowPhase::Succeeded]);
    }

    #[test]
    fn only_the_latest_unrecorded_state_is_kept() {
        let mut book = WorkflowBook::new();
        book.apply(&workflow("a", E1, None)).unwrap();
        book.apply(&workflow("a", E1, Some("Running"))).unwrap();
        book.apply(&workflow("a", E1, Some("Failed"))).unwrap();
        assert_eq!(book.pending_len(), 1);
        assert_eq!(record_all(&mut book), [WorkflowPhase::Failed]);
    }

    #[test]
    fn a_failed_record_stays_pending_until_marked() {
        let mut book = WorkflowBook::new();
        book.apply(&workflow("a", E1, Some("Running"))).unwrap();
        let first = book.next_pending().unwrap();
        // Nothing marked (the record failed): still there, also after a re-list.
        book.begin_relist();
        assert_eq!(book.apply(&workflow("a", E1, Some("Running"))), Ok(false));
        book.end_relist();
        assert_eq!(book.next_pending(), Some(first));
    }

    #[test]
    fn deleted_workflows_stop_counting_but_their_last_state_is_still_recorded() {
        let mut book = WorkflowBook::new();
        book.apply(&workflow("a", E1, Some("Running"))).unwrap();
        book.apply(&workflow("b", E2, Some("Running"))).unwrap();
        assert_eq!(count(&book, WorkflowPhase::Running), 2);
        book.delete(&workflow("a", E1, Some("Running")));
        assert_eq!(count(&book, WorkflowPhase::Running), 1);
        assert_eq!(book.pending_len(), 2, "a's Running is still recorded");
        // b vanished while the watch was down: the re-list's end forgets it.
        book.begin_relist();
        book.end_relist();
        assert_eq!(count(&book, WorkflowPhase::Running), 0);
        assert_eq!(count(&book, WorkflowPhase::Pending), 0);
    }

    #[test]
    fn the_counts_follow_phase_changes_of_the_same_workflow() {
        let mut book = WorkflowBook::new();
        book.apply(&workflow("a", E1, None)).unwrap();
        book.apply(&workflow("a", E1, Some("Running"))).unwrap();
        book.apply(&workflow("b", E2, Some("Running"))).unwrap();
        assert_eq!(count(&book, WorkflowPhase::Pending), 0);
        assert_eq!(count(&book, WorkflowPhase::Running), 2);
        // A phase turning unknown stops counting it.
        assert!(book.apply(&workflow("b", E2, Some("Paused"))).is_err());
        assert_eq!(count(&book, WorkflowPhase::Running), 1);
        book.delete(&workflow("b", E2, None));
        book.delete(&workflow("a", E1, None));
        assert!(book.phase_counts().iter().all(|(_, n)| *n == 0));
    }

    #[test]
    fn an_unobservable_workflow_is_skipped_and_others_still_count() {
        let mut book = WorkflowBook::new();
        assert!(book.apply(&workflow("bad", "not-a-uuid", None)).is_err());
        assert!(book.apply(&workflow("new", E1, Some("Paused"))).is_err());
        assert_eq!(book.apply(&workflow("ok", E2, None)), Ok(true));
        assert_eq!(count(&book, WorkflowPhase::Pending), 1);
        assert_eq!(record_all(&mut book), [WorkflowPhase::Pending]);
    }
}
