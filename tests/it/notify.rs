//! Completion events to upstream (`[notify]`): the notifier against a real journal (SQLite, and
//! PostgreSQL for the restart) and a real HTTP receiver (the fake webhook of
//! `support/argo_webhook.rs`, which records every request with its arrival time). Completions
//! are queued as the Workflow watcher queues them: an appended event, then `record_workflow`
//! with a terminal phase and `notify: true`.

use std::path::Path;
use std::time::{Duration, Instant};

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use tenant_gateway::dispatch::RetryPolicy;
use tenant_gateway::ingest::signature::{self, SignatureHeaders};
use tenant_gateway::journal::{
    AppendStatus, EventJournal, JournalOptions, NewEvent, WorkflowObservation, WorkflowPhase,
    WorkflowRecorded,
};
use tenant_gateway::metrics::GatewayMetrics;
use tenant_gateway::notify::{Notifier, NotifySettings};
use uuid::Uuid;

use crate::postgres_support::TestDatabase;
use crate::support::argo_webhook::{ArgoWebhook, Behaviour, Received};

/// The upstream `source` of the events whose completions are sent.
const ORIGIN_SOURCE: &str = "https://upstream.example/tenants";

/// The instance URI: the `source` of completion events.
const INSTANCE: &str = "urn:tenant-gateway:notify-test";

/// How long any awaited condition may take before the test fails.
const DEADLINE: Duration = Duration::from_secs(20);

/// A journal on a fresh store, and what keeps that store alive.
struct TestOutbox {
    /// The journal the notifier reads.
    journal: EventJournal,
    /// The store URL, to reopen it as a restarted gateway would.
    url: String,
    /// The SQLite file's directory (removed on drop).
    _dir: Option<tempfile::TempDir>,
    /// The PostgreSQL database (dropped on drop).
    _database: Option<TestDatabase>,
}

impl TestOutbox {
    async fn sqlite() -> TestOutbox {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}", dir.path().join("journal.db").display());
        TestOutbox {
            journal: open(&url).await,
            url,
            _dir: Some(dir),
            _database: None,
        }
    }

    /// `None` when PostgreSQL is not reachable and `CI` is not set (the skip is printed).
    async fn postgres(test: &str) -> Option<TestOutbox> {
        let database = TestDatabase::create(test).await?;
        let url = database.url.clone();
        Some(TestOutbox {
            journal: open(&url).await,
            url,
            _dir: None,
            _database: Some(database),
        })
    }

    /// Closes the journal and opens the store again (a restart).
    async fn reopen(&mut self) {
        self.journal.close().await;
        self.journal = open(&self.url).await;
    }

    /// How the notification's delivery ended, read from the store itself:
    /// `(status, attempts, last_error)`.
    async fn row(&self, notification_id: Uuid) -> (String, i64, Option<String>) {
        let id = notification_id.to_string();
        if self.url.starts_with("sqlite:") {
            let pool = sqlx::SqlitePool::connect(&self.url).await.expect("connect");
            let row = sqlx::query_as(
                "SELECT status, attempts, last_error FROM notifications WHERE notification_id = ?",
            )
            .bind(id)
            .fetch_one(&pool)
            .await
            .expect("the notification's row");
            pool.close().await;
            row
        } else {
            let pool = sqlx::PgPool::connect(&self.url).await.expect("connect");
            let row = sqlx::query_as(
                "SELECT status, CAST(attempts AS BIGINT), last_error FROM notifications \
                 WHERE notification_id = $1",
            )
            .bind(id)
            .fetch_one(&pool)
            .await
            .expect("the notification's row");
            pool.close().await;
            row
        }
    }

    /// Waits until the outbox has no pending notification.
    async fn wait_until_drained(&self) {
        let started = Instant::now();
        loop {
            let pending = self
                .journal
                .pending_notifications(None, 10)
                .await
                .expect("read the outbox");
            if pending.is_empty() {
                return;
            }
            assert!(
                started.elapsed() < DEADLINE,
                "still pending after {DEADLINE:?}: {pending:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn open(url: &str) -> EventJournal {
    EventJournal::open(url, JournalOptions::default())
        .await
        .expect("open the journal")
}

/// What the test knows of one queued completion, to compare the received event with.
struct Queued {
    /// The notification (CloudEvent) id, as the outbox holds it.
    notification_id: Uuid,
    /// When it was queued, as the outbox holds it.
    created_at: String,
    /// The stored event's id.
    event_id: Uuid,
    /// The upstream event's id.
    origin_id: String,
    /// Its tenant.
    tenant: String,
    /// Its action.
    action: String,
    /// What the Workflow watcher reported.
    observation: WorkflowObservation,
}

/// Appends an upstream event for `tenant` and `action`, then records its Workflow in `phase`
/// with `notify: true`: one completion notification queued.
async fn queue_completion(
    journal: &EventJournal,
    tenant: &str,
    action: &str,
    phase: WorkflowPhase,
) -> Queued {
    let origin_id = format!("{tenant}-{action}-{}", Uuid::now_v7().simple());
    let event_type = format!("com.acme.tenant.lifecycle.{action}");
    let document = serde_json::json!({
        "specversion": "1.0",
        "id": origin_id,
        "source": ORIGIN_SOURCE,
        "type": event_type,
        "data": {"tenant": tenant},
    })
    .to_string();
    let appended = journal
        .append(vec![NewEvent {
            source: ORIGIN_SOURCE.into(),
            id: origin_id.clone(),
            event_type,
            tenant: tenant.into(),
            action: action.into(),
            time: None,
            content_hash: hex::encode(Sha256::digest(document.as_bytes())),
            document,
            lifecycle: r#"{"parameters":{},"objectStorage":null}"#.into(),
        }])
        .await
        .expect("append");
    assert_eq!(appended[0].status, AppendStatus::Accepted);
    let event_id = appended[0].event_id;
    // An event's first emission has the event's id.
    let observation = WorkflowObservation {
        emission_id: event_id,
        workflow_name: format!("{tenant}-{action}-x7k2p"),
        phase,
        started_at: Some("2026-03-04T05:06:07Z".into()),
        finished_at: Some("2026-03-04T05:08:09Z".into()),
        message: (phase != WorkflowPhase::Succeeded).then(|| "step deploy failed".to_owned()),
    };
    let before: Vec<Uuid> = pending_ids(journal).await;
    let recorded = journal
        .record_workflow(observation.clone(), true)
        .await
        .expect("record the Workflow");
    assert!(
        matches!(
            recorded,
            WorkflowRecorded::Changed {
                notification_queued: true,
                ..
            }
        ),
        "{recorded:?}"
    );
    let queued = journal
        .pending_notifications(None, 1000)
        .await
        .expect("read the outbox")
        .into_iter()
        .find(|n| !before.contains(&n.notification_id))
        .expect("the new notification is pending");
    Queued {
        notification_id: queued.notification_id,
        created_at: queued.created_at,
        event_id,
        origin_id,
        tenant: tenant.into(),
        action: action.into(),
        observation,
    }
}

async fn pending_ids(journal: &EventJournal) -> Vec<Uuid> {
    journal
        .pending_notifications(None, 1000)
        .await
        .expect("read the outbox")
        .into_iter()
        .map(|n| n.notification_id)
        .collect()
}

fn start(journal: &EventJournal, settings: &NotifySettings, metrics: &GatewayMetrics) -> Notifier {
    Notifier::start(
        journal.clone(),
        settings,
        INSTANCE.to_owned(),
        RetryPolicy::default(),
        metrics.clone(),
    )
    .expect("the notifier starts")
}

/// The `id` of a received CloudEvent.
fn event_id_of(request: &Received) -> String {
    let json = request.json.as_ref().expect("a JSON body");
    json["id"].as_str().expect("an id").to_owned()
}

/// The value of `tenant_gateway_notifications_total` for `outcome` (0 when absent).
fn notifications_total(metrics: &GatewayMetrics, outcome: &str) -> u64 {
    let wanted = format!("tenant_gateway_notifications_total{{outcome=\"{outcome}\"}} ");
    metrics
        .encode()
        .lines()
        .find_map(|line| line.strip_prefix(&wanted))
        .map_or(0, |value| value.trim().parse().expect("a count"))
}

fn write_file(dir: &Path, name: &str, content: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, content).expect("write");
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sends_a_signed_structured_cloudevent_with_every_attribute() {
    let outbox = TestOutbox::sqlite().await;
    let receiver = ArgoWebhook::start_with_token("upstream-token").await;
    let secrets = tempfile::tempdir().expect("temp dir");
    let key: Vec<u8> = (0u8..32)
        .map(|i| i.wrapping_mul(37).wrapping_add(11))
        .collect();
    let secret_text = format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(&key)
    );
    let mut settings = NotifySettings::new(receiver.url());
    settings.token_file = Some(write_file(secrets.path(), "token", "upstream-token\n"));
    settings.signing_secret_file = Some(write_file(secrets.path(), "secret", &secret_text));

    let succeeded =
        queue_completion(&outbox.journal, "acme", "upsert", WorkflowPhase::Succeeded).await;
    // Error counts as failed.
    let errored = queue_completion(&outbox.journal, "globex", "delete", WorkflowPhase::Error).await;
    let metrics = GatewayMetrics::new(&outbox.journal);
    let notifier = start(&outbox.journal, &settings, &metrics);
    let requests = receiver.wait_for(2, DEADLINE).await;

    for (request, queued, event_type) in [
        (&requests[0], &succeeded, "lifecycle.upsert.succeeded"),
        (&requests[1], &errored, "lifecycle.delete.failed"),
    ] {
        assert_eq!(request.method, "POST");
        assert_eq!(request.status, 200, "the bearer token was accepted");
        assert_eq!(
            request.header("authorization"),
            Some("Bearer upstream-token")
        );
        assert_eq!(
            request.header("content-type"),
            Some("application/cloudevents+json")
        );
        let observation = &queued.observation;
        let expected = serde_json::json!({
            "specversion": "1.0",
            "id": queued.notification_id.to_string(),
            "source": INSTANCE,
            "type": event_type,
            "subject": queued.tenant,
            "time": queued.created_at,
            "datacontenttype": "application/json",
            "data": {
                "tenant": queued.tenant,
                "action": queued.action,
                "eventId": queued.event_id.to_string(),
                "emissionId": observation.emission_id.to_string(),
                "workflowName": observation.workflow_name,
                "phase": observation.phase.as_str(),
                "message": observation.message,
                "startedAt": "2026-03-04T05:06:07Z",
                "finishedAt": "2026-03-04T05:08:09Z",
                "origin": {
                    "id": queued.origin_id,
                    "source": ORIGIN_SOURCE,
                    "type": format!("com.acme.tenant.lifecycle.{}", queued.action),
                },
            },
        });
        assert_eq!(request.json.as_ref(), Some(&expected));

        // Standard Webhooks: the webhook-id is the CloudEvent id; the project's verifier
        // accepts the signature...
        let id = request.header("webhook-id").expect("webhook-id");
        assert_eq!(id, queued.notification_id.to_string());
        let timestamp = request
            .header("webhook-timestamp")
            .expect("webhook-timestamp");
        let sent_signature = request
            .header("webhook-signature")
            .expect("webhook-signature");
        let now = chrono::Utc::now().timestamp();
        let verified = signature::verify(
            &[key.as_slice()],
            SignatureHeaders {
                id: Some(id.as_bytes()),
                timestamp: Some(timestamp.as_bytes()),
                signature: Some(sent_signature.as_bytes()),
            },
            &request.body,
            now,
            300,
        )
        .expect("the signature verifies");
        assert_eq!(verified.webhook_id, id);
        assert!((now - verified.timestamp).abs() < 60, "a current timestamp");
        // ...and so does an independent computation of the spec's scheme.
        let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("any key length");
        mac.update(format!("{id}.{timestamp}.").as_bytes());
        mac.update(&request.body);
        let recomputed = format!(
            "v1,{}",
            base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
        );
        assert_eq!(sent_signature, recomputed);
    }

    outbox.wait_until_drained().await;
    for queued in [&succeeded, &errored] {
        let (status, attempts, error) = outbox.row(queued.notification_id).await;
        assert_eq!((status.as_str(), attempts, error), ("delivered", 1, None));
    }
    assert_eq!(notifications_total(&metrics, "delivered"), 2);
    notifier.stop().await;
    assert_eq!(receiver.requests().len(), 2, "each sent once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unavailable_receiver_is_retried_with_the_same_ids() {
    let outbox = TestOutbox::sqlite().await;
    let receiver = ArgoWebhook::start().await;
    receiver.push_behaviour(Behaviour::Status(503));
    receiver.push_behaviour(Behaviour::Status(503));
    let secrets = tempfile::tempdir().expect("temp dir");
    let mut settings = NotifySettings::new(receiver.url());
    settings.signing_secret_file = Some(write_file(
        secrets.path(),
        "secret",
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    ));
    let queued =
        queue_completion(&outbox.journal, "acme", "migrate-in", WorkflowPhase::Failed).await;
    let metrics = GatewayMetrics::new(&outbox.journal);
    let notifier = start(&outbox.journal, &settings, &metrics);

    let requests = receiver.wait_for(3, DEADLINE).await;
    outbox.wait_until_drained().await;
    let statuses: Vec<u16> = requests.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [503, 503, 200]);
    let id = queued.notification_id.to_string();
    for request in &requests {
        assert_eq!(event_id_of(request), id);
        assert_eq!(request.header("webhook-id"), Some(id.as_str()));
        assert_eq!(request.body, requests[0].body, "the same event every time");
    }
    // The sinks' backoff: 1 s with jitter (0.5 to 1 s) before the first retry.
    let first_retry = requests[1].arrived - requests[0].arrived;
    assert!(
        first_retry >= Duration::from_millis(400) && first_retry < Duration::from_secs(3),
        "first retry after {first_retry:?}"
    );
    let (status, attempts, error) = outbox.row(queued.notification_id).await;
    assert_eq!((status.as_str(), attempts), ("delivered", 3));
    assert!(
        error.is_some_and(|e| e.contains("503")),
        "the last failure is kept"
    );
    assert_eq!(notifications_total(&metrics, "retried"), 2);
    assert_eq!(notifications_total(&metrics, "delivered"), 1);
    notifier.stop().await;
    assert_eq!(receiver.requests().len(), 3, "nothing after the delivery");
}

/// A completion upstream answers with a 5xx waits out its own backoff; the ones after it are
/// sent meanwhile (one failing completion never holds back the others).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_notification_holds_back_no_other() {
    let outbox = TestOutbox::sqlite().await;
    let receiver = ArgoWebhook::start().await;
    receiver.push_behaviour(Behaviour::Status(503));
    let first = queue_completion(&outbox.journal, "acme", "upsert", WorkflowPhase::Failed).await;
    let second =
        queue_completion(&outbox.journal, "beta", "upsert", WorkflowPhase::Succeeded).await;
    let metrics = GatewayMetrics::new(&outbox.journal);
    let notifier = start(
        &outbox.journal,
        &NotifySettings::new(receiver.url()),
        &metrics,
    );
    let requests = receiver.wait_for(3, DEADLINE).await;
    outbox.wait_until_drained().await;
    let sent: Vec<(String, u16)> = requests
        .iter()
        .map(|r| (event_id_of(r), r.status))
        .collect();
    let (first, second) = (
        first.notification_id.to_string(),
        second.notification_id.to_string(),
    );
    assert_eq!(
        sent,
        [(first.clone(), 503), (second, 200), (first, 200)],
        "the second went while the first waited out its backoff"
    );
    notifier.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_notification_is_finished_as_failed_and_the_next_is_delivered() {
    let outbox = TestOutbox::sqlite().await;
    let receiver = ArgoWebhook::start().await;
    receiver.push_behaviour(Behaviour::Status(400));
    let refused =
        queue_completion(&outbox.journal, "acme", "upsert", WorkflowPhase::Succeeded).await;
    let next = queue_completion(&outbox.journal, "acme", "delete", WorkflowPhase::Succeeded).await;
    let metrics = GatewayMetrics::new(&outbox.journal);
    let notifier = start(
        &outbox.journal,
        &NotifySettings::new(receiver.url()),
        &metrics,
    );

    let requests = receiver.wait_for(2, DEADLINE).await;
    outbox.wait_until_drained().await;
    assert_eq!(
        event_id_of(&requests[0]),
        refused.notification_id.to_string()
    );
    assert_eq!(requests[0].status, 400);
    assert_eq!(event_id_of(&requests[1]), next.notification_id.to_string());
    assert_eq!(requests[1].status, 200);
    assert!(
        requests[0].header("webhook-signature").is_none(),
        "unsigned without a signing secret"
    );
    let (status, attempts, error) = outbox.row(refused.notification_id).await;
    assert_eq!((status.as_str(), attempts), ("failed", 1));
    let error = error.expect("the refusal is recorded");
    // The fake answers `status 400` as its body.
    assert!(
        error.contains("400") && error.contains("status 400"),
        "{error}"
    );
    let (status, _, _) = outbox.row(next.notification_id).await;
    assert_eq!(status, "delivered");
    assert_eq!(notifications_total(&metrics, "failed"), 1);
    assert_eq!(notifications_total(&metrics, "retried"), 0);
    notifier.stop().await;
    assert_eq!(
        receiver.requests().len(),
        2,
        "the refused one is not retried"
    );
}

/// Stop a notifier while the receiver fails, start another on the reopened store: it delivers
/// the pending notification with the same id, and not the one delivered before.
async fn restart_resends_only_what_is_pending(mut outbox: TestOutbox) {
    let receiver = ArgoWebhook::start().await;
    let settings = NotifySettings::new(receiver.url());
    let delivered =
        queue_completion(&outbox.journal, "acme", "upsert", WorkflowPhase::Succeeded).await;
    let metrics = GatewayMetrics::new(&outbox.journal);
    let first = start(&outbox.journal, &settings, &metrics);
    receiver.wait_for(1, DEADLINE).await;
    outbox.wait_until_drained().await;

    receiver.set_default(Behaviour::Status(503));
    let pending = queue_completion(&outbox.journal, "acme", "delete", WorkflowPhase::Failed).await;
    first.handle().wake();
    receiver.wait_for(2, DEADLINE).await;
    first.stop().await;
    let before_restart = receiver.requests().len();
    assert_eq!(
        pending_ids(&outbox.journal).await,
        [pending.notification_id]
    );

    outbox.reopen().await;
    receiver.set_default(Behaviour::Accept);
    let second = start(&outbox.journal, &settings, &metrics);
    receiver.wait_for(before_restart + 1, DEADLINE).await;
    outbox.wait_until_drained().await;
    second.stop().await;

    // Everything received, including anything sent after the delivery (there must be none).
    let requests = receiver.requests();
    assert!(requests.len() > before_restart);
    let ids: Vec<String> = requests.iter().map(event_id_of).collect();
    let delivered_id = delivered.notification_id.to_string();
    let pending_id = pending.notification_id.to_string();
    assert_eq!(
        ids.iter().filter(|id| **id == delivered_id).count(),
        1,
        "the delivered one is not sent again: {ids:?}"
    );
    assert!(
        ids[1..].iter().all(|id| *id == pending_id),
        "every later request is the pending notification, same id: {ids:?}"
    );
    assert_eq!(requests.last().map(|r| r.status), Some(200));
    let (status, _, _) = outbox.row(pending.notification_id).await;
    assert_eq!(status, "delivered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_on_sqlite_resends_only_what_is_pending() {
    restart_resends_only_what_is_pending(TestOutbox::sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_on_postgres_resends_only_what_is_pending() {
    if let Some(outbox) = TestOutbox::postgres("notify::restart_on_postgres").await {
        restart_resends_only_what_is_pending(outbox).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wake_sends_at_once_without_waiting_for_the_rescan() {
    let outbox = TestOutbox::sqlite().await;
    let receiver = ArgoWebhook::start().await;
    let mut settings = NotifySettings::new(receiver.url());
    // Far beyond the deadline: only the wake can explain a delivery.
    settings.rescan_interval = Duration::from_secs(3600);
    let metrics = GatewayMetrics::new(&outbox.journal);
    let notifier = start(&outbox.journal, &settings, &metrics);
    // Let the notifier find the outbox empty and go idle first.
    wait_for_idle(&notifier).await;
    let queued =
        queue_completion(&outbox.journal, "acme", "upsert", WorkflowPhase::Succeeded).await;
    notifier.handle().wake();
    let requests = receiver.wait_for(1, DEADLINE).await;
    assert_eq!(
        event_id_of(&requests[0]),
        queued.notification_id.to_string()
    );
    notifier.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rescan_finds_what_another_replica_queued() {
    let outbox = TestOutbox::sqlite().await;
    let receiver = ArgoWebhook::start().await;
    let mut settings = NotifySettings::new(receiver.url());
    settings.rescan_interval = Duration::from_millis(200);
    let metrics = GatewayMetrics::new(&outbox.journal);
    let notifier = start(&outbox.journal, &settings, &metrics);
    wait_for_idle(&notifier).await;
    // Queued without a wake, as by another replica.
    let queued =
        queue_completion(&outbox.journal, "acme", "upsert", WorkflowPhase::Succeeded).await;
    let requests = receiver.wait_for(1, DEADLINE).await;
    assert_eq!(
        event_id_of(&requests[0]),
        queued.notification_id.to_string()
    );
    notifier.stop().await;
}

/// Waits until the notifier has found the outbox empty at least once: it is then waiting for
/// a wake-up or its rescan, so what is queued next is found only by one of those.
async fn wait_for_idle(notifier: &Notifier) {
    let mut idle = notifier.idle_passes();
    tokio::time::timeout(DEADLINE, idle.wait_for(|passes| *passes >= 1))
        .await
        .expect("the notifier goes idle")
        .expect("the notifier runs");
}

/// `serve` with a `[notify]` table: the application starts the notifier with the instance URI
/// as `source`, counts on `/metrics`, and stops it on shutdown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_runs_the_notifier_when_configured() {
    let receiver = ArgoWebhook::start().await;
    let url = receiver.url();
    let app = crate::support::TestApp::spawn_with(|settings| {
        let mut notify = NotifySettings::new(url);
        // The gateway's own Workflow watcher wakes it; here the rescan finds the completion.
        notify.rescan_interval = Duration::from_millis(100);
        settings.notify = Some(notify);
        settings.dispatch.instance_source = INSTANCE.to_owned();
    })
    .await;
    let queued = queue_completion(&app.journal, "acme", "upsert", WorkflowPhase::Succeeded).await;
    let requests = receiver.wait_for(1, DEADLINE).await;
    let event = requests[0].json.as_ref().expect("a JSON body");
    assert_eq!(event["id"], queued.notification_id.to_string());
    assert_eq!(event["source"], INSTANCE);
    let started = Instant::now();
    let metrics = loop {
        let text = app
            .client
            .get(format!("http://{}/metrics", app.admin_addr))
            .send()
            .await
            .expect("scrape")
            .text()
            .await
            .expect("metrics text");
        if text.contains("tenant_gateway_notifications_total{outcome=\"delivered\"} 1") {
            break text;
        }
        assert!(started.elapsed() < DEADLINE, "no delivered count: {text}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(!metrics.contains("tenant="), "no tenant label");
    app.stop().await;
}
