//! `await-workflow`: a tenant's next emission waits until the Workflow of its previous one
//! finished (see `docs/lifecycle-outcomes.md`, "Per-tenant execution order"). Argo's own
//! ordering ends at Workflow creation: the queue of a `synchronization` mutex or semaphore orders
//! waiting Workflows by priority, then creation time (argo-workflows
//! `workflow/sync/multi_throttler.go`, `priorityQueue.Less`), and that time is the Workflow's
//! `creationTimestamp` (`workflow/sync/sync_manager.go`, `prepAcquire`), whose resolution is a
//! second, so two lifecycles of a tenant created within a second may run in either
//! order. Waiting here for the terminal phase makes the order the journal's.
//!
//! The gate reads the journal (the tenant's newest emission delivered under await-workflow and
//! its Workflow record), so it holds across restarts and replicas; the Workflow watcher wakes
//! it per tenant through [`WorkflowSignals`], and a periodic re-read covers a record made by
//! another replica's watcher.

use std::collections::HashMap;

use super::*;
use crate::journal::{WorkflowPhase, WorkflowWait};

/// How often a waiting tenant re-reads its Workflow's record without being woken: the
/// backstop when another replica recorded it.
const RECHECK_EVERY: Duration = Duration::from_secs(5);

/// Per-tenant wake-ups from the Workflow watcher to the tenants waiting on a Workflow.
#[derive(Debug, Default)]
pub(super) struct WorkflowSignals {
    /// One `Notify` per waiting tenant; removed when its last waiter is gone.
    waiting: Mutex<HashMap<String, Arc<Notify>>>,
}

impl WorkflowSignals {
    fn waiting(&self) -> MutexGuard<'_, HashMap<String, Arc<Notify>>> {
        self.waiting.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The tenant's signal, registered for as long as the caller holds it.
    fn subscribe(&self, tenant: &str) -> Arc<Notify> {
        Arc::clone(self.waiting().entry(tenant.to_owned()).or_default())
    }

    /// Forgets the tenant's signal if no other waiter holds it.
    fn unsubscribe(&self, tenant: &str, signal: Arc<Notify>) {
        let mut waiting = self.waiting();
        drop(signal);
        if waiting
            .get(tenant)
            .is_some_and(|s| Arc::strong_count(s) == 1)
        {
            waiting.remove(tenant);
        }
    }

    /// Wakes whoever waits on the tenant's Workflow (nobody: nothing to do).
    pub(super) fn changed(&self, tenant: &str) {
        if let Some(signal) = self.waiting().get(tenant) {
            signal.notify_waiters();
        }
    }
}

/// What the gate decided for a tenant's next emission.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Gate {
    /// Deliver it: no awaited Workflow, or it succeeded (or the emission was dealt with).
    Open,
    /// The Workflow failed, or was not seen in time: the tenant is parked.
    Parked,
    /// Stopped, or the tenant's bucket lost while waiting.
    Abandoned,
}

/// What the journal's record of the awaited emission asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Verdict {
    Open,
    Park(String),
    /// Wait for a change, at most this long (the rest of the await timeout), or indefinitely.
    Wait(Option<Duration>),
}

/// The rule of the gate, on its own: `now` and `timeout` decide an unseen Workflow.
fn verdict(
    wait: Option<&WorkflowWait>,
    now: chrono::DateTime<chrono::Utc>,
    timeout: Duration,
) -> Verdict {
    let Some(wait) = wait else {
        return Verdict::Open;
    };
    // Parked, skipped or replayed since: the journal's parking rules hold the tenant, not this.
    if !wait.still_delivered {
        return Verdict::Open;
    }
    match &wait.workflow {
        Some(workflow) => match workflow.phase {
            WorkflowPhase::Succeeded => Verdict::Open,
            WorkflowPhase::Failed | WorkflowPhase::Error => Verdict::Park(format!(
                "Workflow {} of emission {} ended {}{}",
                workflow.name,
                wait.emission_id,
                workflow.phase,
                workflow
                    .message
                    .as_deref()
                    .map(|m| format!(": {m}"))
                    .unwrap_or_default()
            )),
            // Running for hours is allowed: only an unseen Workflow times out.
            WorkflowPhase::Pending | WorkflowPhase::Running => Verdict::Wait(None),
        },
        None => {
            let delivered = chrono::DateTime::parse_from_rfc3339(&wait.delivered_at)
                .map(|t| t.with_timezone(&chrono::Utc))
                .unwrap_or(now);
            let waited = (now - delivered).to_std().unwrap_or_default();
            match timeout.checked_sub(waited) {
                Some(left) if !left.is_zero() => Verdict::Wait(Some(left)),
                _ => Verdict::Park(format!(
                    "no Workflow of emission {} was seen within {} of its delivery \
                     (await-timeout)",
                    wait.emission_id,
                    humantime::format_duration(timeout)
                )),
            }
        }
    }
}

/// Waits until the tenant's previous emission's Workflow lets its next emission go (see the
/// module doc); parks the tenant when the Workflow failed or never appeared.
pub(super) async fn await_previous_workflow(
    shared: &Arc<Shared>,
    tenant: &str,
    grant: Grant,
    timeout: Duration,
) -> Gate {
    let signal = shared.workflow_signals.subscribe(tenant);
    let gate = loop {
        // Armed before the read, so a change recorded between the read and the wait wakes it.
        let changed = signal.notified();
        tokio::pin!(changed);
        changed.as_mut().enable();
        let wait = match shared.journal.workflow_wait(tenant).await {
            Ok(wait) => wait,
            Err(error) => {
                tracing::warn!(
                    tenant,
                    error = %crate::telemetry::ErrorChain(&error),
                    "reading the awaited Workflow failed; retrying in 1 s"
                );
                tokio::select! {
                    () = shared.stopped() => break Gate::Abandoned,
                    () = tokio::time::sleep(Duration::from_secs(1)) => continue,
                }
            }
        };
        let wait_for = match verdict(wait.as_ref(), chrono::Utc::now(), timeout) {
            Verdict::Open => break Gate::Open,
            Verdict::Park(reason) => {
                let Some(wait) = wait else {
                    break Gate::Open;
                };
                break park_for_workflow(shared, tenant, grant, wait.position, reason).await;
            }
            Verdict::Wait(limit) => limit.unwrap_or(RECHECK_EVERY).min(RECHECK_EVERY),
        };
        tokio::select! {
            () = shared.stopped() => break Gate::Abandoned,
            () = shared.ownership.lost(grant) => break Gate::Abandoned,
            () = &mut changed => {}
            () = tokio::time::sleep(wait_for) => {}
        }
    };
    shared.workflow_signals.unsubscribe(tenant, signal);
    gate
}

/// Parks the tenant behind its delivered emission, in the order a dead delivery does: the
/// queue first, then the durable record, which is what lets an operator unpark it.
async fn park_for_workflow(
    shared: &Arc<Shared>,
    tenant: &str,
    grant: Grant,
    position: i64,
    reason: String,
) -> Gate {
    if !shared.ownership.holds(grant) {
        return Gate::Abandoned;
    }
    tracing::warn!(tenant, %reason, "tenant parked behind its Workflow; replay or skip it");
    park(shared, tenant);
    loop {
        if !shared.ownership.holds(grant) {
            return Gate::Abandoned;
        }
        match shared
            .journal
            .park_for_workflow(position, reason.clone())
            .await
        {
            // False: another replica (the previous owner) parked it already; either way the
            // journal now says the tenant is parked.
            Ok(_) => {
                shared.tenants().park_is_durable(tenant);
                return Gate::Parked;
            }
            Err(AppendError::Closed) => return Gate::Abandoned,
            Err(error) => {
                tracing::error!(
                    error = %crate::telemetry::ErrorChain(&error),
                    "recording a parked tenant failed; retrying in 1 s"
                );
                tokio::select! {
                    () = shared.stopped() => return Gate::Abandoned,
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future;

    use crate::journal::WorkflowRecord;

    fn at(text: &str) -> chrono::DateTime<chrono::Utc> {
        chrono::DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&chrono::Utc)
    }

    fn wait(phase: Option<WorkflowPhase>, still_delivered: bool) -> WorkflowWait {
        WorkflowWait {
            position: 7,
            emission_id: uuid::Uuid::nil(),
            still_delivered,
            delivered_at: "2026-12-02T10:00:00.000000Z".into(),
            workflow: phase.map(|phase| WorkflowRecord {
                name: "tenant-a-upsert-x".into(),
                phase,
                started_at: None,
                finished_at: None,
                message: Some("step provision failed".into()),
                observed_at: "2026-12-02T10:00:01.000000Z".into(),
            }),
        }
    }

    const HOUR: Duration = Duration::from_secs(3600);

    #[test]
    fn nothing_awaited_or_succeeded_lets_the_next_go() {
        let now = at("2026-12-02T10:00:05Z");
        assert_eq!(verdict(None, now, HOUR), Verdict::Open);
        let done = wait(Some(WorkflowPhase::Succeeded), true);
        assert_eq!(verdict(Some(&done), now, HOUR), Verdict::Open);
        // Parked, skipped or replayed since: the journal's parking decides, not the gate.
        let failed_but_handled = wait(Some(WorkflowPhase::Failed), false);
        assert_eq!(verdict(Some(&failed_but_handled), now, HOUR), Verdict::Open);
    }

    #[test]
    fn failed_and_error_park_with_the_workflow_named() {
        let now = at("2026-12-02T10:00:05Z");
        for phase in [WorkflowPhase::Failed, WorkflowPhase::Error] {
            let Verdict::Park(reason) = verdict(Some(&wait(Some(phase), true)), now, HOUR) else {
                panic!("{phase} must park");
            };
            assert!(reason.contains("tenant-a-upsert-x"), "{reason}");
            assert!(reason.contains(phase.as_str()), "{reason}");
            assert!(reason.contains("step provision failed"), "{reason}");
        }
    }

    #[test]
    fn a_running_workflow_is_waited_for_without_a_deadline() {
        // Long after the timeout: a Workflow that was seen is never timed out.
        let now = at("2026-12-03T10:00:00Z");
        for phase in [WorkflowPhase::Pending, WorkflowPhase::Running] {
            assert_eq!(
                verdict(Some(&wait(Some(phase), true)), now, HOUR),
                Verdict::Wait(None)
            );
        }
    }

    #[test]
    fn an_unseen_workflow_parks_once_the_timeout_since_delivery_passed() {
        let unseen = wait(None, true);
        assert_eq!(
            verdict(Some(&unseen), at("2026-12-02T10:59:00Z"), HOUR),
            Verdict::Wait(Some(Duration::from_secs(60)))
        );
        let Verdict::Park(reason) = verdict(Some(&unseen), at("2026-12-02T11:00:00Z"), HOUR) else {
            panic!("an unseen Workflow past the timeout must park");
        };
        assert!(reason.contains("no Workflow"), "{reason}");
        assert!(reason.contains("1h"), "{reason}");
    }

    #[test]
    fn signals_wake_only_the_tenant_named_and_are_forgotten_after() {
        let signals = WorkflowSignals::default();
        let a = signals.subscribe("a");
        let b = signals.subscribe("b");
        {
            let woken = a.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            let other = b.notified();
            tokio::pin!(other);
            other.as_mut().enable();
            signals.changed("a");
            let waker = futures_util::task::noop_waker();
            let mut cx = std::task::Context::from_waker(&waker);
            assert!(woken.as_mut().poll(&mut cx).is_ready());
            assert!(other.as_mut().poll(&mut cx).is_pending());
        }
        signals.unsubscribe("a", a);
        signals.unsubscribe("b", b);
        assert!(signals.waiting().is_empty());
    }
}
