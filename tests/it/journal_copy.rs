//! `tenant-gateway journal copy --from sqlite://... --to postgres://...` with the real binary:
//! a SQLite journal with delivered, dead, replayed and pending events reads the same from the
//! PostgreSQL copy, and a gateway started on the copy continues delivery in order. PostgreSQL on
//! 127.0.0.1:5432 (a database per test; with `CI` set a missing server fails, else skipped).

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use tenant_gateway::journal::EventJournal;

use crate::postgres_support::TestDatabase;
use crate::replicas::{accepted_for, delivery, post, Replica, WAIT};
use crate::support::argo_webhook::{ArgoWebhook, Behaviour};
use crate::support::lifecycle_event;

const TENANTS: [&str; 3] = ["t-ok", "t-dead", "t-replayed"];

fn journal_copy(from: &str, to: &str) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_tenant-gateway"))
        .args(["journal", "copy", "--from", from, "--to", to])
        .output()
        .expect("run tenant-gateway journal copy")
}

/// Posts `event` and returns its gateway event id.
async fn post_new(client: &reqwest::Client, replica: &Replica, event: &Value) -> String {
    let (status, body) = post(client, &replica.events_url(), event)
        .await
        .expect("post");
    assert_eq!(status, 202, "{body}");
    body["events"][0]["eventId"]
        .as_str()
        .expect("eventId")
        .to_owned()
}

async fn replay(client: &reqwest::Client, replica: &Replica, event_id: &str) {
    let response = client
        .post(replica.admin_url(&format!("/admin/v1/events/{event_id}/replay")))
        .send()
        .await
        .expect("admin API");
    assert_eq!(response.status(), 202);
}

/// Everything the admin API and the dispatcher read of the journal, per tenant.
async fn views(journal: &EventJournal) -> Vec<String> {
    let mut views = Vec::new();
    for tenant in TENANTS {
        let timeline = journal.tenant_timeline(tenant).await.expect("timeline");
        views.push(format!("{tenant} timeline {timeline:?}"));
        views.push(format!(
            "{tenant} state {:?}",
            journal.tenant_state(tenant).await.expect("state")
        ));
        views.push(format!(
            "{tenant} summary {:?}",
            journal.tenant_summary(tenant).await.expect("summary")
        ));
        let emissions: Vec<uuid::Uuid> = timeline.iter().map(|e| e.event_id).collect();
        let mut workflows: Vec<_> = journal
            .workflow_records(&emissions)
            .await
            .expect("workflows")
            .into_iter()
            .collect();
        workflows.sort_by_key(|(id, _)| *id);
        views.push(format!("{tenant} workflows {workflows:?}"));
        views.push(format!(
            "{tenant} actions {:?}",
            journal
                .operator_actions(None, Some(tenant), 100)
                .await
                .expect("actions")
        ));
        for event in timeline {
            views.push(format!(
                "{} detail {:?} {:?} {:?}",
                event.event_id,
                journal.find_event(event.event_id).await.expect("event"),
                journal
                    .event_emissions(event.event_id)
                    .await
                    .expect("emissions"),
                journal
                    .delivery_attempts(event.event_id)
                    .await
                    .expect("attempts"),
            ));
        }
    }
    views.push(format!(
        "pending {:?}",
        journal
            .pending_emissions(0, None, 100)
            .await
            .expect("pending")
    ));
    views.push(format!(
        "parked {:?}",
        journal.parked_tenants().await.expect("parked")
    ));
    views
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn journal_copy_moves_a_sqlite_journal_to_postgres_and_delivery_continues() {
    let Some(database) = TestDatabase::create("journal_copy").await else {
        return;
    };
    let dir = tempfile::tempdir().expect("temporary directory");
    let sqlite_url = format!("sqlite://{}", dir.path().join("journal.db").display());
    let hook = ArgoWebhook::start().await;
    let client = reqwest::Client::new();

    // On SQLite: t-ok delivered; t-dead's first event dead (its tenant parked, its second
    // pending); t-replayed's first event dead, then replayed, then its second delivered.
    let mut sqlite_gateway = Replica::start(dir.path(), "sqlite", &sqlite_url, &hook.url());
    hook.push_behaviour(Behaviour::BadPayload);
    let replayed_first = post_new(
        &client,
        &sqlite_gateway,
        &lifecycle_event("r-1", "t-replayed", "upsert"),
    )
    .await;
    hook.wait_for(1, WAIT).await;
    hook.push_behaviour(Behaviour::BadPayload);
    let dead_first = post_new(
        &client,
        &sqlite_gateway,
        &lifecycle_event("d-1", "t-dead", "upsert"),
    )
    .await;
    hook.wait_for(2, WAIT).await;
    for id in ["o-1", "o-2"] {
        post_new(
            &client,
            &sqlite_gateway,
            &lifecycle_event(id, "t-ok", "upsert"),
        )
        .await;
    }
    for (id, tenant) in [("d-2", "t-dead"), ("r-2", "t-replayed")] {
        post_new(
            &client,
            &sqlite_gateway,
            &lifecycle_event(id, tenant, "upsert"),
        )
        .await;
    }
    hook.wait_for(4, WAIT).await;
    replay(&client, &sqlite_gateway, &replayed_first).await;
    hook.wait_for(6, WAIT).await;
    // SIGTERM: the gateway drains and records what it sent before it exits.
    let terminated = Command::new("kill")
        .args(["-TERM", &sqlite_gateway.child.id().to_string()])
        .status()
        .expect("kill -TERM");
    assert!(terminated.success());
    let deadline = Instant::now() + WAIT;
    while sqlite_gateway.child.try_wait().expect("wait").is_none() {
        assert!(Instant::now() < deadline, "the SQLite gateway did not exit");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // A Workflow outcome and its completion notification, as the watcher records them.
    let source = EventJournal::open(&sqlite_url, Default::default())
        .await
        .expect("open the SQLite journal");
    let ok_first = source.tenant_timeline("t-ok").await.expect("timeline")[0].event_id;
    let observation = tenant_gateway::journal::WorkflowObservation {
        emission_id: ok_first,
        workflow_name: "t-ok-upsert-1".into(),
        phase: tenant_gateway::journal::WorkflowPhase::Succeeded,
        started_at: Some("2026-12-02T10:00:00Z".into()),
        finished_at: Some("2026-12-02T10:01:00Z".into()),
        message: None,
    };
    source
        .record_workflow(observation, true)
        .await
        .expect("record a Workflow");
    source.close().await;

    let copied = journal_copy(&sqlite_url, &database.url);
    let stdout = String::from_utf8_lossy(&copied.stdout);
    assert!(
        copied.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&copied.stderr)
    );
    // 6 events, 7 emissions (one replay), one replay action, three tenants.
    for (table, rows) in [
        ("events", 6),
        ("emissions", 7),
        ("operator_actions", 1),
        ("workflows", 1),
        ("notifications", 1),
        ("tenant_sequences", 3),
    ] {
        assert!(
            stdout.lines().any(|line| line
                .split_whitespace()
                .take(2)
                .eq([table, &rows.to_string()])),
            "{table} {rows}: {stdout}"
        );
    }
    // A second copy into the now non-empty journal is refused.
    let again = journal_copy(&sqlite_url, &database.url);
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("not empty"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );

    let source = EventJournal::open(&sqlite_url, Default::default())
        .await
        .expect("open the SQLite journal");
    let target = EventJournal::open(&database.url, Default::default())
        .await
        .expect("open the PostgreSQL journal");
    let (source_views, target_views) = (views(&source).await, views(&target).await);
    assert_eq!(
        source
            .pending_notifications(None, 10)
            .await
            .expect("outbox"),
        target
            .pending_notifications(None, 10)
            .await
            .expect("outbox"),
        "the completion outbox is copied"
    );
    assert!(source_views.iter().any(|v| v.contains("t-dead")));
    for (from, to) in source_views.iter().zip(&target_views) {
        assert_eq!(from, to);
    }
    assert_eq!(source_views.len(), target_views.len());
    source.close().await;
    target.close().await;

    // A gateway on the copy: t-dead's replay, then its pending second event, then a new event
    // of t-ok numbered after the copied ones.
    let delivered_before = hook.requests().len();
    let postgres_gateway = Replica::start(dir.path(), "postgres", &database.url, &hook.url());
    replay(&client, &postgres_gateway, &dead_first).await;
    post_new(
        &client,
        &postgres_gateway,
        &lifecycle_event("o-3", "t-ok", "upsert"),
    )
    .await;
    hook.wait_for(delivered_before + 3, WAIT).await;
    let after_copy = |tenant: &str| -> Vec<i64> {
        hook.requests()[delivered_before..]
            .iter()
            .filter(|r| r.status == 200)
            .map(delivery)
            .filter(|d| d.1 == tenant)
            .map(|d| d.2)
            .collect()
    };
    assert_eq!(after_copy("t-dead"), [1, 2]);
    assert_eq!(after_copy("t-ok"), [3]);
    assert_eq!(
        accepted_for(&hook, "t-replayed").len(),
        2,
        "nothing sent twice"
    );
}
