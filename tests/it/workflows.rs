//! The Workflow watcher at the request level, against the fake API server of
//! `support::fake_argo` reached through a kubeconfig (as `serve` reaches a cluster): what it
//! asks the server (list, then watch from the list's resourceVersion, with the label selector),
//! and what it records through an in-memory recorder (phase changes with their times and
//! message, nothing twice after a resumed or restarted watch, malformed Workflows skipped, failed
//! records retried). Last, the real binary: `serve --watch-workflows` with `KUBECONFIG`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use serde_json::json;
use sqlx::ConnectOptions as _;
use tenant_gateway::journal::{WorkflowObservation, WorkflowPhase};
use tenant_gateway::metrics::{LifecycleLabels, WorkflowPhaseLabels};
use tenant_gateway::workflows::{
    updates_channel, JournalRecorder, RecordFailure, WorkflowRecorder, WorkflowWatchSettings,
    WorkflowWatcher,
};
use tokio::sync::{broadcast, watch};
use uuid::Uuid;

use crate::support::fake_argo::{workflow, ApiRequest, FakeArgo};
use crate::support::{lifecycle_event, serve_once, GatewayProcess, TestApp};

const NS: &str = "argo";
const LABEL: &str = "tenant-gateway.io/emission-id";
/// Deadline for anything the watcher does in reaction to the server.
const PATIENCE: Duration = Duration::from_secs(15);

/// Records in memory; can be told to fail its next calls.
#[derive(Default)]
struct MemoryRecorder {
    /// Every observation recorded, in order.
    records: watch::Sender<Vec<WorkflowObservation>>,
    /// Calls to fail before succeeding again.
    failures_left: AtomicUsize,
    /// The number of calls, failed or not.
    calls: watch::Sender<usize>,
}

impl WorkflowRecorder for MemoryRecorder {
    async fn record(&self, observation: WorkflowObservation) -> Result<(), RecordFailure> {
        self.calls.send_modify(|n| *n += 1);
        let fail = self
            .failures_left
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if fail {
            return Err(RecordFailure::new("the journal is unavailable"));
        }
        self.records.send_modify(|r| r.push(observation));
        Ok(())
    }
}

impl MemoryRecorder {
    /// Waits until `done` holds for the records; panics with them after [`PATIENCE`].
    async fn wait_until(
        &self,
        what: &str,
        mut done: impl FnMut(&[WorkflowObservation]) -> bool,
    ) -> Vec<WorkflowObservation> {
        let mut records = self.records.subscribe();
        let waited = tokio::time::timeout(PATIENCE, records.wait_for(|r| done(r))).await;
        match waited {
            Ok(Ok(records)) => records.clone(),
            _ => panic!("{what}: recorded only {:#?}", self.records.borrow()),
        }
    }

    fn recorded(&self) -> Vec<WorkflowObservation> {
        self.records.borrow().clone()
    }
}

/// A watcher over the fake, with its recorder, gauge and updates.
struct Watching {
    /// The watcher under test.
    watcher: WorkflowWatcher,
    /// What it recorded.
    recorder: Arc<MemoryRecorder>,
    /// Its `tenant_gateway_workflows` family.
    gauge: Family<WorkflowPhaseLabels, Gauge>,
    /// Its announcements of recorded observations.
    updates: broadcast::Receiver<WorkflowObservation>,
}

async fn watch(fake: &FakeArgo, recorder: MemoryRecorder) -> Watching {
    let recorder = Arc::new(recorder);
    let gauge = Family::<WorkflowPhaseLabels, Gauge>::default();
    let updates = updates_channel();
    let subscriber = updates.subscribe();
    let watcher = WorkflowWatcher::start(
        fake.client().await,
        WorkflowWatchSettings {
            namespace: NS.into(),
        },
        recorder.clone(),
        gauge.clone(),
        updates,
    );
    Watching {
        watcher,
        recorder,
        gauge,
        updates: subscriber,
    }
}

fn in_phase(gauge: &Family<WorkflowPhaseLabels, Gauge>, phase: &'static str) -> i64 {
    gauge.get_or_create(&WorkflowPhaseLabels { phase }).get()
}

fn emission(n: u32) -> String {
    format!("0190a5b2-7c3e-7d41-9b1a-{n:012}")
}

fn observation(
    n: u32,
    name: &str,
    phase: WorkflowPhase,
    times: (Option<&str>, Option<&str>),
    message: Option<&str>,
) -> WorkflowObservation {
    WorkflowObservation {
        emission_id: Uuid::parse_str(&emission(n)).unwrap(),
        workflow_name: name.into(),
        phase,
        started_at: times.0.map(str::to_owned),
        finished_at: times.1.map(str::to_owned),
        message: message.map(str::to_owned),
    }
}

fn lists(requests: &[ApiRequest]) -> Vec<&ApiRequest> {
    requests.iter().filter(|r| !r.is_watch()).collect()
}

fn watches(requests: &[ApiRequest]) -> Vec<&ApiRequest> {
    requests.iter().filter(|r| r.is_watch()).collect()
}

/// Every request is a GET of the namespace's Workflows selecting the emission label.
fn assert_selective_gets(requests: &[ApiRequest]) {
    for request in requests {
        assert_eq!(request.method, "GET", "{request:?}");
        assert_eq!(request.path, FakeArgo::workflows_path(NS), "{request:?}");
        assert_eq!(request.param("labelSelector"), Some(LABEL), "{request:?}");
    }
}

/// Waits until a watch from `resource_version` was opened.
async fn watch_from(fake: &FakeArgo, resource_version: u64) -> Vec<ApiRequest> {
    let rv = resource_version.to_string();
    fake.wait_until(PATIENCE, |requests| {
        watches(requests)
            .iter()
            .any(|w| w.param("resourceVersion") == Some(rv.as_str()))
    })
    .await
}

#[tokio::test]
async fn lists_then_watches_and_records_each_phase_change() {
    let fake = FakeArgo::start(NS).await;
    fake.apply(workflow("upsert-acme-1", &emission(1), None));
    // Not the gateway's: the server-side selector keeps it out.
    let mut foreign = workflow("someone-else", &emission(9), None);
    foreign["metadata"]["labels"] = json!({"app": "other"});
    fake.apply(foreign);
    let listed_at = fake.resource_version();
    let mut w = watch(&fake, MemoryRecorder::default()).await;

    let pending = observation(
        1,
        "upsert-acme-1",
        WorkflowPhase::Pending,
        (None, None),
        None,
    );
    w.recorder
        .wait_until("no status is Pending", |r| !r.is_empty())
        .await;
    let requests = watch_from(&fake, listed_at).await;
    assert_selective_gets(&requests);
    let first = &requests[0];
    assert!(!first.is_watch(), "a list first: {first:?}");
    assert_eq!(first.param("resourceVersion"), None, "a fresh list");

    fake.apply(workflow(
        "upsert-acme-1",
        &emission(1),
        Some(json!({"phase": "Running", "startedAt": "2026-03-01T10:00:00Z"})),
    ));
    fake.apply(workflow(
        "upsert-acme-1",
        &emission(1),
        Some(json!({
            "phase": "Succeeded",
            "startedAt": "2026-03-01T10:00:00Z",
            "finishedAt": "2026-03-01T10:02:30Z",
            "message": "all steps done",
            "progress": "3/3",
        })),
    ));
    let records = w
        .recorder
        .wait_until("Succeeded", |r| {
            r.last()
                .is_some_and(|o| o.phase == WorkflowPhase::Succeeded)
        })
        .await;
    let started = Some("2026-03-01T10:00:00Z");
    let running = observation(
        1,
        "upsert-acme-1",
        WorkflowPhase::Running,
        (started, None),
        None,
    );
    let succeeded = observation(
        1,
        "upsert-acme-1",
        WorkflowPhase::Succeeded,
        (started, Some("2026-03-01T10:02:30Z")),
        Some("all steps done"),
    );
    // Pending->Running may merge when both changes arrive before a record; the first and the
    // last are always there.
    assert_eq!(records.first(), Some(&pending));
    assert_eq!(records.last(), Some(&succeeded));
    assert!(
        records == [pending.clone(), running.clone(), succeeded.clone()]
            || records == [pending.clone(), succeeded.clone()],
        "{records:#?}"
    );
    // Each record was announced to the subscriber, in order.
    for expected in &records {
        let update = tokio::time::timeout(PATIENCE, w.updates.recv())
            .await
            .expect("an update")
            .expect("not lagging");
        assert_eq!(&update, expected);
    }
    assert_eq!(in_phase(&w.gauge, "Succeeded"), 1);
    assert_eq!(in_phase(&w.gauge, "Running"), 0);
    assert_eq!(in_phase(&w.gauge, "Pending"), 0);

    // A deletion stops counting and records nothing.
    fake.delete("upsert-acme-1");
    fake.apply(workflow("upsert-acme-2", &emission(2), None));
    w.recorder
        .wait_until("the second Workflow", |r| {
            r.iter().any(|o| o.workflow_name == "upsert-acme-2")
        })
        .await;
    assert_eq!(in_phase(&w.gauge, "Succeeded"), 0);
    assert_eq!(in_phase(&w.gauge, "Pending"), 1);
    assert_eq!(w.recorder.recorded().len(), records.len() + 1);
    // One list, one watch: nothing re-listed meanwhile.
    let requests = fake.requests();
    assert_eq!(lists(&requests).len(), 1, "{requests:#?}");
    assert_eq!(watches(&requests).len(), 1, "{requests:#?}");
    w.watcher.stop().await;
}

#[tokio::test]
async fn a_watch_that_ends_resumes_from_its_resource_version() {
    let fake = FakeArgo::start(NS).await;
    fake.apply(workflow("w1", &emission(1), None));
    let listed_at = fake.resource_version();
    let w = watch(&fake, MemoryRecorder::default()).await;
    watch_from(&fake, listed_at).await;
    let running = fake.apply(workflow(
        "w1",
        &emission(1),
        Some(json!({"phase": "Running"})),
    ));
    w.recorder.wait_until("Running", |r| r.len() == 2).await;

    fake.end_watches();
    // kube's watcher resumes from the last resourceVersion it saw, without a list.
    let requests = watch_from(&fake, running).await;
    assert_selective_gets(&requests);
    assert_eq!(lists(&requests).len(), 1, "{requests:#?}");
    fake.apply(workflow(
        "w1",
        &emission(1),
        Some(json!({"phase": "Failed"})),
    ));
    let records = w.recorder.wait_until("Failed", |r| r.len() == 3).await;
    let phases: Vec<WorkflowPhase> = records.iter().map(|o| o.phase).collect();
    assert_eq!(
        phases,
        [
            WorkflowPhase::Pending,
            WorkflowPhase::Running,
            WorkflowPhase::Failed
        ]
    );
    w.watcher.stop().await;
}

/// After a re-list, a later change recorded proves the re-listed objects were handled: they
/// come first on the same stream.
async fn assert_relist_records_only_changes(fake: &FakeArgo, w: &Watching, before: usize) {
    let records = w
        .recorder
        .wait_until("the marker after the re-list", |r| {
            r.iter().any(|o| o.workflow_name == "marker")
        })
        .await;
    let new: Vec<(&str, WorkflowPhase)> = records[before..]
        .iter()
        .map(|o| (o.workflow_name.as_str(), o.phase))
        .collect();
    assert_eq!(
        new,
        [
            ("w2", WorkflowPhase::Succeeded),
            ("marker", WorkflowPhase::Pending)
        ],
        "only what changed: {records:#?}"
    );
    assert_selective_gets(&fake.requests());
}

#[tokio::test]
async fn a_watch_that_ends_with_its_history_expired_relists_without_duplicates() {
    let fake = FakeArgo::start(NS).await;
    fake.apply(workflow(
        "w1",
        &emission(1),
        Some(json!({"phase": "Running"})),
    ));
    fake.apply(workflow(
        "w2",
        &emission(2),
        Some(json!({"phase": "Running"})),
    ));
    let listed_at = fake.resource_version();
    let w = watch(&fake, MemoryRecorder::default()).await;
    w.recorder.wait_until("both", |r| r.len() == 2).await;
    watch_from(&fake, listed_at).await;

    // While the watch is down, w2 finishes and the history is compacted away (no await in
    // between: the watcher, on this test's runtime, cannot resume before the compaction).
    fake.end_watches();
    let finished = fake.apply(workflow(
        "w2",
        &emission(2),
        Some(json!({"phase": "Succeeded"})),
    ));
    fake.expire_history();
    // The resumed watch gets 410, so the watcher lists again.
    let requests = fake.wait_until(PATIENCE, |r| lists(r).len() == 2).await;
    let resumed = watches(&requests);
    assert_eq!(
        resumed.last().and_then(|w| w.param("resourceVersion")),
        Some(listed_at.to_string().as_str()),
        "resumed from the old resourceVersion first: {requests:#?}"
    );
    watch_from(&fake, finished).await;
    fake.apply(workflow("marker", &emission(3), None));
    assert_relist_records_only_changes(&fake, &w, 2).await;
    w.watcher.stop().await;
}

#[tokio::test]
async fn a_410_gone_error_event_relists_without_duplicates() {
    let fake = FakeArgo::start(NS).await;
    fake.apply(workflow(
        "w1",
        &emission(1),
        Some(json!({"phase": "Running"})),
    ));
    fake.apply(workflow("w2", &emission(2), None));
    let w = watch(&fake, MemoryRecorder::default()).await;
    w.recorder.wait_until("both", |r| r.len() == 2).await;
    watch_from(&fake, fake.resource_version()).await;

    // The change happens in the history the 410 discards; only the re-list shows it.
    fake.expire_history();
    let finished = fake.apply(workflow(
        "w2",
        &emission(2),
        Some(json!({"phase": "Succeeded"})),
    ));
    fake.send_gone();
    let requests = fake.wait_until(PATIENCE, |r| lists(r).len() == 2).await;
    assert_eq!(
        watches(&requests).len(),
        1,
        "re-listed at once: {requests:#?}"
    );
    watch_from(&fake, finished).await;
    fake.apply(workflow("marker", &emission(3), None));
    assert_relist_records_only_changes(&fake, &w, 2).await;
    assert_eq!(in_phase(&w.gauge, "Running"), 1);
    assert_eq!(in_phase(&w.gauge, "Succeeded"), 1);
    assert_eq!(in_phase(&w.gauge, "Pending"), 1);
    w.watcher.stop().await;
}

#[tokio::test]
async fn a_workflow_with_a_malformed_label_or_an_unknown_phase_is_skipped() {
    let fake = FakeArgo::start(NS).await;
    fake.apply(workflow("bad-label", "not-a-uuid", None));
    fake.apply(workflow("good-1", &emission(1), None));
    fake.apply(workflow(
        "odd-phase",
        &emission(2),
        Some(json!({"phase": "Hibernating"})),
    ));
    let w = watch(&fake, MemoryRecorder::default()).await;
    w.recorder
        .wait_until("the good one", |r| !r.is_empty())
        .await;
    // Changes of the bad ones are skipped too; the watch goes on.
    fake.apply(workflow(
        "bad-label",
        "not-a-uuid",
        Some(json!({"phase": "Running"})),
    ));
    fake.apply(workflow(
        "good-1",
        &emission(1),
        Some(json!({"phase": "Running"})),
    ));
    let records = w
        .recorder
        .wait_until("good-1 Running", |r| r.len() == 2)
        .await;
    let names: Vec<(&str, WorkflowPhase)> = records
        .iter()
        .map(|o| (o.workflow_name.as_str(), o.phase))
        .collect();
    assert_eq!(
        names,
        [
            ("good-1", WorkflowPhase::Pending),
            ("good-1", WorkflowPhase::Running)
        ]
    );
    assert_eq!(in_phase(&w.gauge, "Running"), 1, "only good-1 counts");
    w.watcher.stop().await;
}

#[tokio::test]
async fn a_failed_record_is_retried_until_it_is_recorded() {
    let fake = FakeArgo::start(NS).await;
    fake.apply(workflow(
        "w1",
        &emission(1),
        Some(json!({"phase": "Failed", "message": "step x failed"})),
    ));
    let w = watch(
        &fake,
        MemoryRecorder {
            failures_left: AtomicUsize::new(2),
            ..MemoryRecorder::default()
        },
    )
    .await;
    let records = w.recorder.wait_until("retried", |r| !r.is_empty()).await;
    assert_eq!(
        records,
        [observation(
            1,
            "w1",
            WorkflowPhase::Failed,
            (None, None),
            Some("step x failed")
        )]
    );
    assert_eq!(*w.recorder.calls.borrow(), 3, "two failures, one success");
    // Nothing was announced for the failed attempts.
    let mut updates = w.updates;
    assert_eq!(
        updates.try_recv().ok().map(|o| o.phase),
        Some(WorkflowPhase::Failed)
    );
    assert!(updates.try_recv().is_err());
    w.watcher.stop().await;
}

#[tokio::test]
async fn a_newer_phase_replaces_one_still_waiting_for_a_retry() {
    let fake = FakeArgo::start(NS).await;
    fake.apply(workflow(
        "w1",
        &emission(1),
        Some(json!({"phase": "Running"})),
    ));
    let recorder = MemoryRecorder {
        // Long enough to still be backing off when the change arrives.
        failures_left: AtomicUsize::new(3),
        ..MemoryRecorder::default()
    };
    let w = watch(&fake, recorder).await;
    // The first attempt failed.
    let mut calls = w.recorder.calls.subscribe();
    tokio::time::timeout(PATIENCE, calls.wait_for(|n| *n >= 1))
        .await
        .expect("a record attempt")
        .expect("recorder alive");
    fake.apply(workflow(
        "w1",
        &emission(1),
        Some(json!({"phase": "Succeeded"})),
    ));
    let records = w
        .recorder
        .wait_until("Succeeded", |r| {
            r.iter().any(|o| o.phase == WorkflowPhase::Succeeded)
        })
        .await;
    // Running may have been recorded by a retry before the change arrived; Succeeded is the
    // last, and nothing is recorded twice.
    let phases: Vec<WorkflowPhase> = records.iter().map(|o| o.phase).collect();
    assert!(
        phases == [WorkflowPhase::Succeeded]
            || phases == [WorkflowPhase::Running, WorkflowPhase::Succeeded],
        "{phases:?}"
    );
    w.watcher.stop().await;
}

/// The real binary: `serve --watch-workflows` builds its client from `KUBECONFIG`, watches the
/// configured namespace, shows the phases on `/metrics` and records them in its journal.
#[tokio::test]
async fn serve_watches_workflows_of_the_configured_namespace_through_kubeconfig() {
    let team_ns = "team-workflows";
    let fake = FakeArgo::start(team_ns).await;
    fake.apply(workflow("w1", &emission(1), None));
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = fake.write_kubeconfig(dir.path());
    let kubeconfig = kubeconfig.to_str().unwrap();
    let gateway = GatewayProcess::start_with_env(
        &dir.path().join("journal.db"),
        &["--watch-workflows", "--workflow-namespace", team_ns],
        &[("KUBECONFIG", kubeconfig)],
    );
    let requests = fake.wait_until(PATIENCE, |r| !watches(r).is_empty()).await;
    let paths: BTreeMap<&str, usize> = requests.iter().fold(BTreeMap::new(), |mut m, r| {
        *m.entry(r.path.as_str()).or_default() += 1;
        m
    });
    assert_eq!(
        paths.keys().copied().collect::<Vec<_>>(),
        [FakeArgo::workflows_path(team_ns).as_str()]
    );
    for request in &requests {
        assert_eq!(request.param("labelSelector"), Some(LABEL));
    }
    assert!(!requests[0].is_watch());

    // The watcher's view is on the admin listener's /metrics, updated with each change.
    fake.apply(workflow(
        "w2",
        &emission(2),
        Some(json!({"phase": "Running"})),
    ));
    let metrics = format!("http://{}/metrics", gateway.admin_addr);
    let client = reqwest::Client::new();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let expected = [
        r#"tenant_gateway_workflows{phase="Pending"} 1"#,
        r#"tenant_gateway_workflows{phase="Running"} 1"#,
        r#"tenant_gateway_workflows{phase="Succeeded"} 0"#,
    ];
    loop {
        let text = client
            .get(&metrics)
            .send()
            .await
            .expect("scrape")
            .text()
            .await
            .expect("metrics text");
        if expected
            .iter()
            .all(|series| text.lines().any(|l| l == *series))
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the gauge never showed {expected:?}: {text}"
        );
        // A scrape has nothing to wait on; the next one comes shortly.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // serve records in its journal: an event delivered by the log sink, its Workflow finished.
    let resp = client
        .post(gateway.url("/events"))
        .header("content-type", "application/cloudevents+json")
        .body(lifecycle_event("e-1", "acme", "upsert").to_string())
        .send()
        .await
        .expect("post");
    assert_eq!(resp.status(), 202);
    let emitted: serde_json::Value =
        serde_json::from_str(&gateway.stdout_line(PATIENCE)).expect("the emitted event");
    let emission_id = emitted["id"].as_str().expect("emission id").to_owned();
    fake.apply(workflow(
        "acme-upsert-1",
        &emission_id,
        Some(json!({"phase": "Succeeded", "finishedAt": "2026-03-01T10:02:30Z"})),
    ));
    let mut journal = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(dir.path().join("journal.db"))
        .read_only(true)
        .connect()
        .await
        .expect("read the journal");
    loop {
        let phase: Option<String> =
            sqlx::query_scalar("SELECT phase FROM workflows WHERE emission_id = ?1")
                .bind(&emission_id)
                .fetch_optional(&mut journal)
                .await
                .expect("query the journal");
        if phase.as_deref() == Some("Succeeded") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline + PATIENCE,
            "not recorded: {phase:?}"
        );
        // The journal has nothing to wait on from outside the process; read again shortly.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[test]
fn serve_without_any_kubernetes_configuration_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let store = format!("sqlite://{}", dir.path().join("j.db").display());
    let (started, stderr) = serve_once(&store, |command| {
        command
            .env("TENANT_GATEWAY_WATCH_WORKFLOWS", "true")
            .env("KUBECONFIG", dir.path().join("missing-kubeconfig"))
            .env("HOME", dir.path())
            .env_remove("KUBERNETES_SERVICE_HOST")
            .env_remove("KUBERNETES_SERVICE_PORT");
    });
    assert!(!started);
    assert!(
        stderr.contains("cannot build a Kubernetes client to watch Workflows"),
        "{stderr}"
    );
}

/// `serve`'s recorder: what the watch sees lands in the journal against the delivered event's
/// emission; a Workflow of an emission the journal does not have is not retried forever; a
/// restarted watcher (a new process's) re-lists and the journal changes nothing, so the
/// lifecycle duration is observed once.
#[tokio::test]
async fn the_journal_recorder_records_against_the_emission_once_across_restarts() {
    let mut app = TestApp::spawn().await;
    let resp = app
        .post_structured(&lifecycle_event("e-1", "acme", "upsert"))
        .await;
    assert_eq!(resp.status(), 202);
    app.wait_for_progress("delivered", |p| p.delivered == 1)
        .await;
    let event_id = app.journal.tenant_timeline("acme").await.unwrap()[0].event_id;
    let fake = FakeArgo::start(NS).await;
    // Not an emission of this journal: recorded as unknown, which is no failure.
    fake.apply(workflow(
        "foreign",
        &emission(7),
        Some(json!({"phase": "Running"})),
    ));
    fake.apply(workflow(
        "upsert-acme-1",
        &event_id.to_string(),
        Some(json!({
            "phase": "Succeeded",
            "startedAt": "2026-03-01T10:00:00Z",
            "finishedAt": "2999-01-01T00:00:00Z",
        })),
    ));
    let lifecycle_seconds = Family::<LifecycleLabels, Histogram>::new_with_constructor(|| {
        Histogram::new([1.0].into_iter())
    });
    let mut registry = Registry::default();
    registry.register("lifecycle", "test", lifecycle_seconds.clone());
    let start = |updates| {
        let recorder = JournalRecorder {
            journal: app.journal.clone(),
            notifier: None,
            dispatch: None,
            lifecycle_seconds: lifecycle_seconds.clone(),
        };
        let settings = WorkflowWatchSettings {
            namespace: NS.into(),
        };
        let client = fake.client();
        async move {
            WorkflowWatcher::start(client.await, settings, recorder, Family::default(), updates)
        }
    };
    for round in ["first start", "restart"] {
        let updates = updates_channel();
        let mut recorded = updates.subscribe();
        let watcher = start(updates).await;
        let mut names = Vec::new();
        while names.len() < 2 {
            let update = tokio::time::timeout(PATIENCE, recorded.recv())
                .await
                .unwrap_or_else(|_| panic!("{round}: recorded only {names:?}"))
                .expect("an update");
            names.push(update.workflow_name);
        }
        names.sort();
        assert_eq!(names, ["foreign", "upsert-acme-1"], "{round}");
        watcher.stop().await;
        let records = app.journal.workflow_records(&[event_id]).await.unwrap();
        let record = &records[&event_id];
        assert_eq!(record.name, "upsert-acme-1");
        assert_eq!(record.phase, WorkflowPhase::Succeeded);
        assert_eq!(record.started_at.as_deref(), Some("2026-03-01T10:00:00Z"));
        assert_eq!(record.finished_at.as_deref(), Some("2999-01-01T00:00:00Z"));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(
            text.contains(r#"lifecycle_count{action="upsert",outcome="succeeded"} 1"#),
            "{round}: observed once: {text}"
        );
    }
    app.stop().await;
}
