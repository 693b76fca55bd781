//! Contracts of the lifecycle outcomes (`journal::outcomes`, docs/lifecycle-outcomes.md): the
//! Workflow records, the tenant state derived from them, the workflow-phase search, the
//! completion outbox and the await-workflow parking. Run on every backend by the suite.

use tenant_gateway::journal::{
    Lifecycle, LifecycleOutcome, NotificationFinished, TenantQuery, WorkflowObservation,
    WorkflowPhase, WorkflowRecorded,
};

use super::*;

/// An event of `tenant` with the short action the normalizer gives (`upsert`, `delete`, ...).
fn lifecycle_event(tenant: &str, id: &str, action: &str) -> NewEvent {
    NewEvent {
        action: action.into(),
        ..event(tenant, id)
    }
}

fn seen(emission_id: Uuid, phase: WorkflowPhase) -> WorkflowObservation {
    WorkflowObservation {
        emission_id,
        workflow_name: format!("wf-{}", &emission_id.to_string()[..8]),
        phase,
        started_at: (phase != WorkflowPhase::Pending).then(|| "2026-12-02T10:00:00Z".into()),
        finished_at: phase.is_terminal().then(|| "2026-12-02T10:05:00Z".into()),
        message: (phase == WorkflowPhase::Failed).then(|| "child 'provision' failed".into()),
    }
}

/// Records the first (and only) pending emission of the event as delivered.
async fn deliver(journal: &EventJournal, appended: Appended, awaits_workflow: bool) -> i64 {
    let pending = journal
        .pending_emissions(0, None, 1000)
        .await
        .expect("pending");
    let emission = pending
        .iter()
        .find(|p| p.emission_id == appended.event_id || p.replay_of == Some(appended.event_id))
        .expect("a pending emission of the event");
    let mut record = attempt(
        emission.position,
        appended.event_id,
        emission.attempts + 1,
        AttemptOutcome::Delivered,
        EmissionStatus::Delivered,
    );
    record.awaits_workflow = awaits_workflow;
    journal.record_attempts(vec![record]).await.expect("record");
    emission.position
}

async fn record(journal: &EventJournal, observation: WorkflowObservation) -> WorkflowRecorded {
    journal
        .record_workflow(observation, true)
        .await
        .expect("record workflow")
}

/// One record per emission, the latest phase kept; the same observation again writes nothing;
/// an emission this journal does not know is not recorded.
pub(super) async fn workflow_records_keep_the_latest_phase_once(store: TestStore) {
    let journal = &store.journal;
    let a = accept(journal, lifecycle_event("acme", "o-1", "upsert")).await;
    let recorded = record(journal, seen(a.event_id, WorkflowPhase::Pending)).await;
    assert!(
        matches!(&recorded, WorkflowRecorded::Changed { tenant, action, previous: None, .. }
            if tenant == "acme" && action == "upsert"),
        "{recorded:?}"
    );
    assert_eq!(
        record(journal, seen(a.event_id, WorkflowPhase::Pending)).await,
        WorkflowRecorded::Unchanged
    );
    let running = record(journal, seen(a.event_id, WorkflowPhase::Running)).await;
    assert!(
        matches!(
            running,
            WorkflowRecorded::Changed {
                previous: Some(WorkflowPhase::Pending),
                ..
            }
        ),
        "{running:?}"
    );
    let failed = seen(a.event_id, WorkflowPhase::Failed);
    record(journal, failed.clone()).await;
    assert_eq!(
        record(journal, seen(Uuid::now_v7(), WorkflowPhase::Running)).await,
        WorkflowRecorded::UnknownEmission
    );
    let records = journal
        .workflow_records(&[a.event_id, Uuid::now_v7()])
        .await
        .expect("records");
    assert_eq!(records.len(), 1, "only the known emission has a record");
    let stored = &records[&a.event_id];
    assert_eq!(stored.name, failed.workflow_name);
    assert_eq!(stored.phase, WorkflowPhase::Failed);
    assert_eq!(stored.started_at, failed.started_at);
    assert_eq!(stored.finished_at, failed.finished_at);
    assert_eq!(stored.message, failed.message);
    store.journal.close().await;
}

/// A terminal phase queues one completion notification (per emission and outcome), with a
/// fixed id and the documented data; a delivered one is no longer pending; without `notify`,
/// nothing is queued.
pub(super) async fn terminal_phases_queue_one_notification_each(store: TestStore) {
    let journal = &store.journal;
    let a = accept(journal, lifecycle_event("acme", "n-1", "migrate-in")).await;
    let b = accept(journal, lifecycle_event("acme", "n-2", "delete")).await;
    record(journal, seen(a.event_id, WorkflowPhase::Running)).await;
    assert!(journal
        .pending_notifications(None, 10)
        .await
        .unwrap()
        .is_empty());
    let succeeded = record(journal, seen(a.event_id, WorkflowPhase::Succeeded)).await;
    assert!(
        matches!(
            succeeded,
            WorkflowRecorded::Changed {
                notification_queued: true,
                ..
            }
        ),
        "{succeeded:?}"
    );
    // Another look at the same outcome (its message changed): recorded, not notified again.
    let mut again = seen(a.event_id, WorkflowPhase::Succeeded);
    again.message = Some("done".into());
    let again = record(journal, again).await;
    assert!(
        matches!(
            again,
            WorkflowRecorded::Changed {
                notification_queued: false,
                ..
            }
        ),
        "{again:?}"
    );
    // Without [notify], no outbox row.
    journal
        .record_workflow(seen(b.event_id, WorkflowPhase::Error), false)
        .await
        .unwrap();
    let pending = journal.pending_notifications(None, 10).await.unwrap();
    assert_eq!(pending.len(), 1, "{pending:?}");
    let notification = &pending[0];
    assert_eq!(notification.tenant, "acme");
    assert_eq!(notification.event_type, "lifecycle.migrate-in.succeeded");
    let data = &notification.data;
    assert_eq!(data["tenant"], "acme");
    assert_eq!(data["action"], "migrate-in");
    assert_eq!(data["eventId"], a.event_id.to_string());
    assert_eq!(data["emissionId"], a.event_id.to_string());
    assert_eq!(data["phase"], "Succeeded");
    assert_eq!(data["startedAt"], "2026-12-02T10:00:00Z");
    assert_eq!(data["finishedAt"], "2026-12-02T10:05:00Z");
    assert_eq!(data["origin"]["id"], "n-1");
    assert_eq!(data["origin"]["source"], SOURCE);
    assert!(data["message"].is_null());
    // A failure of b is an outcome of its own.
    record(journal, seen(b.event_id, WorkflowPhase::Failed)).await;
    let pending = journal.pending_notifications(None, 10).await.unwrap();
    assert_eq!(pending.len(), 2);
    assert_eq!(pending[1].event_type, "lifecycle.delete.failed");
    assert_eq!(pending[1].data["message"], "child 'provision' failed");
    // Paging by id, then finishing one.
    let after = journal
        .pending_notifications(Some(pending[0].notification_id), 10)
        .await
        .unwrap();
    assert_eq!(after, pending[1..].to_vec());
    journal
        .finish_notification(NotificationFinished {
            notification_id: pending[0].notification_id,
            delivered: true,
            attempts: 2,
            error: None,
        })
        .await
        .unwrap();
    let left = journal.pending_notifications(None, 10).await.unwrap();
    assert_eq!(left, pending[1..].to_vec());
    store.journal.close().await;
}

/// The tenant state: last action and outcome from the newest delivered emission and its
/// Workflow, the lifecycle from the last succeeded action that changes it; the registry lists
/// tenants by name with filters and a cursor.
pub(super) async fn tenant_state_follows_deliveries_and_workflows(store: TestStore) {
    let journal = &store.journal;
    let state = |tenant: &'static str| async move {
        journal
            .tenant_summary(tenant)
            .await
            .expect("summary")
            .expect("known tenant")
            .state
    };
    let upsert = accept(journal, lifecycle_event("acme", "s-1", "upsert")).await;
    accept(journal, lifecycle_event("beta", "s-2", "upsert")).await;
    assert_eq!(journal.tenant_summary("nobody").await.unwrap(), None);
    let fresh = state("acme").await;
    assert_eq!(
        (fresh.lifecycle, fresh.last_action, fresh.last_outcome),
        (Lifecycle::Unknown, None, None)
    );
    // A Workflow seen before the delivery is recorded counts once the delivery is.
    record(journal, seen(upsert.event_id, WorkflowPhase::Running)).await;
    assert_eq!(state("acme").await.last_outcome, None);
    deliver(journal, upsert, false).await;
    let running = state("acme").await;
    assert_eq!(running.last_action.as_deref(), Some("upsert"));
    assert_eq!(running.last_outcome, Some(LifecycleOutcome::Running));
    assert_eq!(running.lifecycle, Lifecycle::Unknown);
    assert!(running.updated_at.is_some());
    record(journal, seen(upsert.event_id, WorkflowPhase::Succeeded)).await;
    let active = state("acme").await;
    assert_eq!(
        (active.lifecycle, active.last_outcome),
        (Lifecycle::Active, Some(LifecycleOutcome::Succeeded))
    );
    // A later delete: pending until its Workflow is seen, then failed; still active.
    let delete = accept(journal, lifecycle_event("acme", "s-3", "delete")).await;
    deliver(journal, delete, false).await;
    let pending = state("acme").await;
    assert_eq!(pending.last_action.as_deref(), Some("delete"));
    assert_eq!(pending.last_outcome, Some(LifecycleOutcome::Pending));
    record(journal, seen(delete.event_id, WorkflowPhase::Error)).await;
    let failed = state("acme").await;
    assert_eq!(
        (failed.lifecycle, failed.last_outcome),
        (Lifecycle::Active, Some(LifecycleOutcome::Failed))
    );
    // `admin` changes no lifecycle, even when it succeeds.
    let admin = accept(journal, lifecycle_event("acme", "s-4", "admin")).await;
    deliver(journal, admin, false).await;
    record(journal, seen(admin.event_id, WorkflowPhase::Succeeded)).await;
    let after_admin = state("acme").await;
    assert_eq!(after_admin.lifecycle, Lifecycle::Active);
    assert_eq!(after_admin.last_action.as_deref(), Some("admin"));

    let names = |tenants: Vec<tenant_gateway::journal::TenantSummary>| -> Vec<String> {
        tenants.into_iter().map(|t| t.tenant).collect()
    };
    let list = |query: TenantQuery, limit: usize| async move {
        names(journal.list_tenants(&query, limit).await.expect("list"))
    };
    accept(journal, lifecycle_event("gamma", "s-5", "upsert")).await;
    assert_eq!(
        list(TenantQuery::default(), 10).await,
        ["acme", "beta", "gamma"]
    );
    let all = journal
        .list_tenants(&TenantQuery::default(), 10)
        .await
        .unwrap();
    assert_eq!(all[0].last_sequence, 3);
    assert!(!all[0].parked);
    assert_eq!(
        list(
            TenantQuery {
                lifecycle: Some(Lifecycle::Active),
                ..TenantQuery::default()
            },
            10
        )
        .await,
        ["acme"]
    );
    assert_eq!(
        list(
            TenantQuery {
                lifecycle: Some(Lifecycle::Unknown),
                ..TenantQuery::default()
            },
            10
        )
        .await,
        ["beta", "gamma"]
    );
    assert_eq!(
        list(
            TenantQuery {
                outcome: Some(LifecycleOutcome::Succeeded),
                action: Some("admin".into()),
                ..TenantQuery::default()
            },
            10
        )
        .await,
        ["acme"]
    );
    assert!(list(
        TenantQuery {
            outcome: Some(LifecycleOutcome::Failed),
            ..TenantQuery::default()
        },
        10
    )
    .await
    .is_empty());
    // Pages by name: after the cursor, at most the limit.
    assert_eq!(list(TenantQuery::default(), 2).await, ["acme", "beta"]);
    assert_eq!(
        list(
            TenantQuery {
                after: Some("beta".into()),
                ..TenantQuery::default()
            },
            2
        )
        .await,
        ["gamma"]
    );
    let counts = journal.count_lifecycles().await.unwrap();
    assert_eq!(counts.get(&Lifecycle::Active), Some(&1));
    assert_eq!(counts.get(&Lifecycle::Unknown), Some(&2));
    store.journal.close().await;
}

/// A tenant's last action is its delivery that finished last, whatever order the records
/// arrive in: two deliveries of one tenant in one group of records (the later one recorded
/// first), and a delivery that finished earlier recorded afterwards, leave the one that
/// finished last.
pub(super) async fn the_newest_delivery_is_the_one_that_finished_last(store: TestStore) {
    let journal = &store.journal;
    let upsert = accept(journal, lifecycle_event("acme", "n-1", "upsert")).await;
    let delete = accept(journal, lifecycle_event("acme", "n-2", "delete")).await;
    let beta = accept(journal, lifecycle_event("beta", "n-3", "upsert")).await;
    let pending = journal
        .pending_emissions(0, None, 10)
        .await
        .expect("pending");
    let position = |event_id: Uuid| {
        pending
            .iter()
            .find(|p| p.emission_id == event_id)
            .expect("pending emission")
            .position
    };
    let at = |seconds: i64| chrono::DateTime::UNIX_EPOCH + chrono::Duration::seconds(seconds);
    let delivered = |appended: Appended, number: u32, finished: i64| {
        let mut record = attempt(
            position(appended.event_id),
            appended.event_id,
            number,
            AttemptOutcome::Delivered,
            EmissionStatus::Delivered,
        );
        (record.started_at, record.finished_at) = (at(finished - 1), at(finished));
        record
    };
    journal
        .record_attempts(vec![
            delivered(delete, 1, 2_000),
            delivered(upsert, 1, 1_000),
            delivered(beta, 1, 1_500),
        ])
        .await
        .expect("record");
    let last =
        |tenants: Vec<tenant_gateway::journal::TenantSummary>| -> Vec<(String, Option<String>)> {
            tenants
                .into_iter()
                .map(|t| (t.tenant, t.state.last_action))
                .collect()
        };
    let expected = [
        ("acme".to_owned(), Some("delete".to_owned())),
        ("beta".to_owned(), Some("upsert".to_owned())),
    ];
    let tenants = journal
        .list_tenants(&TenantQuery::default(), 10)
        .await
        .expect("tenants");
    assert_eq!(
        tenants[0].state.updated_at.as_deref(),
        Some("1970-01-01T00:33:20.000000Z")
    );
    assert_eq!(last(tenants), expected);
    // A second delivery of the upsert that finished before the delete's changes nothing.
    journal
        .record_attempts(vec![delivered(upsert, 2, 1_200)])
        .await
        .expect("record");
    let tenants = journal
        .list_tenants(&TenantQuery::default(), 10)
        .await
        .expect("tenants");
    assert_eq!(last(tenants), expected);
    store.journal.close().await;
}

/// `workflowPhase` selects events by their latest emission's Workflow, in search, count and
/// bulk replay jobs alike.
pub(super) async fn workflow_phase_search_matches_the_latest_emission(store: TestStore) {
    let journal = &store.journal;
    let failed = accept(journal, lifecycle_event("acme", "p-1", "migrate-in")).await;
    let succeeded = accept(journal, lifecycle_event("beta", "p-2", "migrate-in")).await;
    let errored = accept(journal, lifecycle_event("gamma", "p-3", "upsert")).await;
    accept(journal, lifecycle_event("delta", "p-4", "migrate-in")).await;
    record(journal, seen(failed.event_id, WorkflowPhase::Failed)).await;
    record(journal, seen(succeeded.event_id, WorkflowPhase::Succeeded)).await;
    record(journal, seen(errored.event_id, WorkflowPhase::Error)).await;
    let query = |phases: Vec<WorkflowPhase>, action: Option<&str>| EventQuery {
        workflow_phases: phases,
        action: action.map(str::to_owned),
        ..EventQuery::default()
    };
    let ids = |headers: Vec<tenant_gateway::journal::EventHeader>| -> Vec<String> {
        headers.into_iter().map(|h| h.id).collect()
    };
    let failures = query(vec![WorkflowPhase::Failed, WorkflowPhase::Error], None);
    assert_eq!(journal.count_events(&failures).await.unwrap(), 2);
    assert_eq!(
        ids(journal.list_events(&failures, 0, 10).await.unwrap()),
        ["p-1", "p-3"]
    );
    let failed_migrations = query(
        vec![WorkflowPhase::Failed, WorkflowPhase::Error],
        Some("migrate-in"),
    );
    assert_eq!(
        ids(journal
            .list_events(&failed_migrations, 0, 10)
            .await
            .unwrap()),
        ["p-1"]
    );
    // No phase: every event, also those without a Workflow.
    assert_eq!(journal.count_events(&query(vec![], None)).await.unwrap(), 4);
    // A replay of the failed one is its latest emission now: no Workflow yet, not selected.
    journal
        .operate(OperatorWrite::Replay {
            event_id: failed.event_id,
            operator: operator("retry"),
        })
        .await
        .unwrap();
    assert_eq!(journal.count_events(&failed_migrations).await.unwrap(), 0);
    // A bulk replay job selects exactly what the dry run counted.
    let job = journal
        .operate(OperatorWrite::CreateJob(NewReplayJob {
            job_id: Uuid::now_v7(),
            query: failures.clone(),
            filter: r#"{"workflowPhase":"Failed,Error"}"#.into(),
            rate: 10.0,
            operator: operator("failed last night"),
            expected_count: Some(1),
        }))
        .await;
    assert!(
        matches!(job, Ok(OperatorOutcome::JobCreated(ref job)) if job.total == 1),
        "{job:?}"
    );
    store.journal.close().await;
}

/// `await-workflow`: a delivery made with it is awaited; parking for its Workflow makes the
/// emission dead like a dead delivery (the tenant parked, with the reason), and a replay in its
/// place unparks it; deliveries made without it are never awaited.
pub(super) async fn awaited_workflows_park_like_dead_deliveries(store: TestStore) {
    let journal = &store.journal;
    let plain = accept(journal, lifecycle_event("beta", "w-0", "upsert")).await;
    deliver(journal, plain, false).await;
    assert_eq!(journal.workflow_wait("beta").await.unwrap(), None);

    let first = accept(journal, lifecycle_event("acme", "w-1", "upsert")).await;
    accept(journal, lifecycle_event("acme", "w-2", "upsert")).await;
    let position = deliver(journal, first, true).await;
    let wait = journal
        .workflow_wait("acme")
        .await
        .unwrap()
        .expect("awaited");
    assert_eq!(
        (wait.position, wait.emission_id, wait.still_delivered),
        (position, first.event_id, true)
    );
    assert_eq!(wait.workflow, None);
    record(journal, seen(first.event_id, WorkflowPhase::Failed)).await;
    let wait = journal
        .workflow_wait("acme")
        .await
        .unwrap()
        .expect("awaited");
    assert_eq!(wait.workflow.map(|w| w.phase), Some(WorkflowPhase::Failed));

    let reason = "Workflow wf-1 of emission x ended Failed".to_owned();
    assert!(journal
        .park_for_workflow(position, reason.clone())
        .await
        .unwrap());
    // Twice (a second replica, say): already parked, nothing changes.
    assert!(!journal
        .park_for_workflow(position, reason.clone())
        .await
        .unwrap());
    assert_eq!(journal.parked_tenants().await.unwrap(), ["acme"]);
    assert_eq!(
        journal.parked_reason("acme").await.unwrap().as_deref(),
        Some(reason.as_str())
    );
    assert_eq!(journal.parked_reason("beta").await.unwrap(), None);
    let parked = journal.find_event(first.event_id).await.unwrap().unwrap();
    assert_eq!(parked.status, EventStatus::Dead);
    let summary = journal.tenant_summary("acme").await.unwrap().unwrap();
    assert!(summary.parked);
    // Still the newest emission that reached the sink, with its failed Workflow.
    assert_eq!(summary.state.last_outcome, Some(LifecycleOutcome::Failed));
    assert!(
        !journal
            .workflow_wait("acme")
            .await
            .unwrap()
            .expect("awaited")
            .still_delivered
    );

    let replayed = journal
        .operate(OperatorWrite::Replay {
            event_id: first.event_id,
            operator: operator("fixed the step"),
        })
        .await
        .unwrap();
    assert!(
        matches!(&replayed, OperatorOutcome::Replayed(r) if r.in_place && r.tenant_unparked),
        "{replayed:?}"
    );
    assert!(journal.parked_tenants().await.unwrap().is_empty());
    assert_eq!(
        delivery_order(journal, "acme").await,
        [("w-1".to_owned(), true), ("w-2".to_owned(), false)]
    );
    store.journal.close().await;
}
