//! Lifecycle outcomes in the admin API, end to end on a real gateway: each emission's Workflow
//! in event details and tenant timelines, the tenant state derived from the Workflows, the
//! tenant registry (filters, cursors), the `workflowPhase` condition of the event search and of
//! bulk replay, and the CLI's `tenants list`. Workflows are recorded the way the watcher
//! records them, through the gateway's own journal handle.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tenant_gateway::journal::{WorkflowObservation, WorkflowPhase};
use uuid::Uuid;

use crate::admin::{assert_schema, cli, AdminApi};
use crate::dispatch::{post, webhook_settings};
use crate::support::argo_webhook::{ArgoWebhook, Behaviour};
use crate::support::{lifecycle_event, problem, TestApp};

/// Long enough for any wait here; a test that reaches it has failed.
const WAIT: Duration = Duration::from_secs(60);

/// GET that must answer 200 with JSON.
async fn get_json(admin: &AdminApi, path: &str) -> Value {
    let resp = admin.get(path).await;
    let status = resp.status().as_u16();
    let body = resp.text().await.unwrap_or_default();
    assert_eq!(status, 200, "GET {path}: {body}");
    serde_json::from_str(&body).expect("JSON body")
}

/// POST that must answer `status` with JSON.
async fn post_json(admin: &AdminApi, path: &str, body: &Value, status: u16) -> Value {
    let resp = admin.post(path, body).await;
    let got = resp.status().as_u16();
    let text = resp.text().await.unwrap_or_default();
    assert_eq!(got, status, "POST {path}: {text}");
    serde_json::from_str(&text).expect("JSON body")
}

/// The gateway's id of the event posted with `upstream_id`.
async fn event_id(app: &TestApp, upstream_id: &str) -> Uuid {
    app.journal
        .find_by_origin("//billing.acme.example/invoices", upstream_id)
        .await
        .expect("journal read")
        .expect("event stored")
        .event_id
}

/// The latest emission of an event: (emission id, Workflow name), from its detail.
async fn latest_emission(admin: &AdminApi, event: Uuid) -> (Uuid, String) {
    let detail = get_json(admin, &format!("/admin/v1/events/{event}")).await;
    let emission = detail["emissions"]
        .as_array()
        .and_then(|all| all.last())
        .expect("an emission")
        .clone();
    (
        emission["emissionId"]
            .as_str()
            .and_then(|id| id.parse().ok())
            .expect("an emission id"),
        emission["workflowName"]
            .as_str()
            .expect("a workflow name")
            .to_owned(),
    )
}

/// Records what a watcher would see of the Workflow of the event's latest emission.
async fn observe(
    app: &TestApp,
    admin: &AdminApi,
    event: Uuid,
    phase: WorkflowPhase,
    message: Option<&str>,
) {
    let (emission_id, workflow_name) = latest_emission(admin, event).await;
    let finished = phase.is_terminal();
    app.journal
        .record_workflow(
            WorkflowObservation {
                emission_id,
                workflow_name,
                phase,
                started_at: (phase != WorkflowPhase::Pending)
                    .then(|| "2026-11-23T10:00:05Z".to_owned()),
                finished_at: finished.then(|| "2026-11-23T10:01:00Z".to_owned()),
                message: message.map(str::to_owned),
            },
            false,
        )
        .await
        .expect("workflow recorded");
}

/// `GET /admin/v1/tenants/{tenant}`'s `state`.
async fn tenant_state(admin: &AdminApi, tenant: &str) -> Value {
    get_json(admin, &format!("/admin/v1/tenants/{tenant}")).await["state"].clone()
}

/// The (lifecycle, lastAction, lastOutcome) of a state.
fn triple(state: &Value) -> (String, String, String) {
    let text = |v: &Value| v.as_str().unwrap_or("null").to_owned();
    (
        text(&state["lifecycle"]),
        text(&state["lastAction"]),
        text(&state["lastOutcome"]),
    )
}

fn words(lifecycle: &str, action: &str, outcome: &str) -> (String, String, String) {
    (lifecycle.into(), action.into(), outcome.into())
}

#[tokio::test]
async fn event_details_and_tenant_states_follow_the_recorded_workflows() {
    let hook = ArgoWebhook::start().await;
    let mut app = TestApp::spawn_with(|settings| {
        webhook_settings(&hook)(settings);
        settings.argo_ui_url = Some("https://argo.example.com".into());
        settings.workflow_namespace = "workflows".into();
    })
    .await;
    let admin = AdminApi::of(&app);
    post(&app, &lifecycle_event("a-1", "acme", "upsert")).await;
    app.wait_for_progress("upsert delivered", |p| p.delivered == 1)
        .await;
    let upsert = event_id(&app, "a-1").await;

    // Delivered, no Workflow seen yet: null, and the tenant's upsert is pending.
    let detail = get_json(&admin, &format!("/admin/v1/events/{upsert}")).await;
    let emission = &detail["emissions"][0];
    assert!(emission.get("workflow").is_some(), "{emission}");
    assert_eq!(emission["workflow"], Value::Null);
    assert_eq!(
        triple(&tenant_state(&admin, "acme").await),
        words("unknown", "upsert", "pending")
    );

    observe(&app, &admin, upsert, WorkflowPhase::Running, None).await;
    let detail = get_json(&admin, &format!("/admin/v1/events/{upsert}")).await;
    let emission = &detail["emissions"][0];
    let workflow = &emission["workflow"];
    assert_eq!(workflow["name"], emission["workflowName"]);
    assert_eq!(workflow["phase"], "Running");
    assert_eq!(workflow["startedAt"], "2026-11-23T10:00:05Z");
    assert_eq!(workflow["finishedAt"], Value::Null);
    assert_eq!(workflow["message"], Value::Null);
    let url = format!(
        "https://argo.example.com/workflows/workflows/{}",
        emission["workflowName"].as_str().unwrap()
    );
    assert_eq!(workflow["url"], url.as_str());
    assert_eq!(emission["workflowUrl"], url.as_str());
    assert_schema("EventDetail", &detail);
    assert_eq!(
        triple(&tenant_state(&admin, "acme").await),
        words("unknown", "upsert", "running")
    );

    observe(&app, &admin, upsert, WorkflowPhase::Succeeded, None).await;
    let state = tenant_state(&admin, "acme").await;
    assert_eq!(triple(&state), words("active", "upsert", "succeeded"));
    assert!(state["updatedAt"].as_str().is_some(), "{state}");

    // A later delete whose Workflow fails: the outcome is failed, the lifecycle stays active.
    post(&app, &lifecycle_event("a-2", "acme", "delete")).await;
    app.wait_for_progress("delete delivered", |p| p.delivered == 2)
        .await;
    let delete = event_id(&app, "a-2").await;
    assert_eq!(
        triple(&tenant_state(&admin, "acme").await),
        words("active", "delete", "pending")
    );
    observe(
        &app,
        &admin,
        delete,
        WorkflowPhase::Failed,
        Some("child 'drop-schema' failed"),
    )
    .await;
    let view = get_json(&admin, "/admin/v1/tenants/acme").await;
    assert_eq!(triple(&view["state"]), words("active", "delete", "failed"));
    assert_eq!(view["parked"], false);
    assert!(view.get("parkedReason").is_none(), "{view}");
    assert_schema("TenantView", &view);
    // The timeline shows each emission's Workflow too.
    let timeline = view["timeline"].as_array().expect("timeline");
    let phases: Vec<&Value> = timeline
        .iter()
        .map(|entry| &entry["emissions"][0]["workflow"]["phase"])
        .collect();
    assert_eq!(phases, [&json!("Succeeded"), &json!("Failed")]);
    assert_eq!(
        timeline[1]["emissions"][0]["workflow"]["message"],
        "child 'drop-schema' failed"
    );
    assert_eq!(timeline[1]["emissions"][0]["workflow"]["url"], {
        let name = timeline[1]["emissions"][0]["workflowName"]
            .as_str()
            .unwrap();
        json!(format!(
            "https://argo.example.com/workflows/workflows/{name}"
        ))
    });

    // A parked tenant says why.
    hook.push_behaviour(Behaviour::BadPayload);
    post(&app, &lifecycle_event("b-1", "beta", "upsert")).await;
    app.wait_for_progress("beta dead", |p| p.dead == 1).await;
    let beta = get_json(&admin, "/admin/v1/tenants/beta").await;
    assert_eq!(beta["parked"], true);
    assert_schema("TenantView", &beta);
    let reason = beta["parkedReason"].as_str().expect("a parked reason");
    assert!(reason.contains("400"), "{reason}");
    // Nothing reached the sink: no action, no outcome yet.
    assert_eq!(triple(&beta["state"]), words("unknown", "null", "null"));

    // The CLI shows the state, the reason and the phases.
    let (ok, out, err) = cli(&app, &["tenants", "show", "acme"], "").await;
    assert!(ok, "{err}");
    assert!(
        out.contains("state          active, last delete failed ("),
        "{out}"
    );
    assert!(out.contains("  Failed  "), "{out}");
    let (ok, out, err) = cli(&app, &["tenants", "show", "beta"], "").await;
    assert!(ok, "{err}");
    assert!(out.contains("parked reason  "), "{out}");
    let (ok, out, err) = cli(&app, &["events", "show", &delete.to_string()], "").await;
    assert!(ok, "{err}");
    assert!(out.contains("workflow phase     Failed\n"), "{out}");
    assert!(
        out.contains("workflow message   child 'drop-schema' failed\n"),
        "{out}"
    );
    app.stop().await;
}

/// Walks `GET /admin/v1/tenants` with `query` page by page (`limit` each); returns every
/// tenant name in the order served, and the number of requests.
async fn walk(admin: &AdminApi, query: &str, limit: usize) -> (Vec<String>, usize) {
    let mut names = Vec::new();
    let mut cursor: Option<String> = None;
    let mut requests = 0;
    loop {
        let mut path = format!("/admin/v1/tenants?limit={limit}");
        if !query.is_empty() {
            path.push('&');
            path.push_str(query);
        }
        if let Some(cursor) = &cursor {
            path.push_str(&format!("&cursor={cursor}"));
        }
        let page = get_json(admin, &path).await;
        requests += 1;
        let tenants = page["tenants"].as_array().expect("tenants");
        assert!(tenants.len() <= limit, "{page}");
        names.extend(
            tenants
                .iter()
                .map(|t| t["tenant"].as_str().expect("name").to_owned()),
        );
        match page["nextCursor"].as_str() {
            Some(next) => {
                assert_eq!(tenants.len(), limit, "a cursor on a short page: {page}");
                cursor = Some(next.to_owned());
            }
            None => return (names, requests),
        }
        assert!(requests < 100, "the walk does not end");
    }
}

/// Tenants `t-01` .. `t-09`, each with one delivered upsert; the Workflows: 1-3 succeeded,
/// 4-5 failed (5 in `Error`), 6 running, 7-9 none seen. `t-03` then gets a migrate-out that
/// succeeds.
async fn registry(app: &mut TestApp, admin: &AdminApi) {
    for n in 1..=9 {
        post(
            app,
            &lifecycle_event(&format!("u-{n}"), &format!("t-{n:02}"), "upsert"),
        )
        .await;
    }
    app.wait_for_progress("upserts delivered", |p| p.delivered == 9)
        .await;
    for (n, phase) in [
        (1, WorkflowPhase::Succeeded),
        (2, WorkflowPhase::Succeeded),
        (3, WorkflowPhase::Succeeded),
        (4, WorkflowPhase::Failed),
        (5, WorkflowPhase::Error),
        (6, WorkflowPhase::Running),
    ] {
        let event = event_id(app, &format!("u-{n}")).await;
        observe(app, admin, event, phase, None).await;
    }
    post(app, &lifecycle_event("m-3", "t-03", "migrate-out")).await;
    app.wait_for_progress("migrate-out delivered", |p| p.delivered == 10)
        .await;
    let event = event_id(app, "m-3").await;
    observe(app, admin, event, WorkflowPhase::Succeeded, None).await;
}

fn names(range: impl IntoIterator<Item = u32>) -> Vec<String> {
    range.into_iter().map(|n| format!("t-{n:02}")).collect()
}

#[tokio::test]
async fn the_tenant_registry_filters_and_pages_in_name_order() {
    let hook = ArgoWebhook::start().await;
    let mut app = TestApp::spawn_with(webhook_settings(&hook)).await;
    let admin = AdminApi::of(&app);
    registry(&mut app, &admin).await;

    // Every tenant, whatever the page size, once each and in name order.
    for limit in [1, 2, 4, 9, 100] {
        let (listed, _) = walk(&admin, "", limit).await;
        assert_eq!(listed, names(1..=9), "limit {limit}");
    }
    let page = get_json(&admin, "/admin/v1/tenants").await;
    assert_schema("TenantPage", &page);
    assert_eq!(page["nextCursor"], Value::Null);
    let first = &page["tenants"][0];
    assert_eq!(first["tenant"], "t-01");
    assert_eq!(first["parked"], false);
    assert_eq!(first["lastSequence"], 1);
    assert_eq!(
        triple(&first["state"]),
        words("active", "upsert", "succeeded")
    );
    let third = &page["tenants"][2];
    assert_eq!(third["lastSequence"], 2);
    assert_eq!(
        triple(&third["state"]),
        words("migrated-out", "migrate-out", "succeeded")
    );

    // Each filter, alone and combined; `action` takes the emitted type too.
    for (query, expected) in [
        ("outcome=failed", names([4, 5])),
        ("outcome=succeeded", names([1, 2, 3])),
        ("outcome=running", names([6])),
        ("outcome=pending", names(7..=9)),
        ("lifecycle=active", names([1, 2])),
        ("lifecycle=migrated-out", names([3])),
        ("lifecycle=unknown", names(4..=9)),
        ("lifecycle=deleted", vec![]),
        ("action=upsert", names([1, 2, 4, 5, 6, 7, 8, 9])),
        ("action=lifecycle.upsert", names([1, 2, 4, 5, 6, 7, 8, 9])),
        ("action=migrate-out", names([3])),
        ("lifecycle=unknown&outcome=pending", names(7..=9)),
        ("lifecycle=active&action=migrate-out", vec![]),
    ] {
        let (listed, _) = walk(&admin, query, 2).await;
        assert_eq!(listed, expected, "{query}");
    }

    // A cursor stays valid while tenants arrive: a new one before it is not shown on later
    // pages, one after it is, and nothing repeats.
    let page = get_json(&admin, "/admin/v1/tenants?limit=3").await;
    let cursor = page["nextCursor"].as_str().expect("a full page").to_owned();
    post(&app, &lifecycle_event("n-0", "t-00", "upsert")).await;
    post(&app, &lifecycle_event("n-99", "t-99", "upsert")).await;
    let next = get_json(
        &admin,
        &format!("/admin/v1/tenants?limit=100&cursor={cursor}"),
    )
    .await;
    let rest: Vec<&str> = next["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["tenant"].as_str().unwrap())
        .collect();
    assert_eq!(
        rest,
        ["t-04", "t-05", "t-06", "t-07", "t-08", "t-09", "t-99"]
    );
    let (all, _) = walk(&admin, "", 4).await;
    let unique: HashSet<&String> = all.iter().collect();
    assert_eq!(unique.len(), all.len());
    assert_eq!(all.first().map(String::as_str), Some("t-00"));

    // Bad values name their parameter.
    for (query, named) in [
        ("lifecycle=gone", "lifecycle"),
        ("outcome=error", "outcome"),
        ("outcome=Failed", "outcome"),
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("limit=ten", "limit"),
        ("cursor=", "cursor"),
        ("cursor=not%20a%20cursor", "cursor"),
        ("cursor=dB", "cursor"),
        ("tenant=acme", "tenant"),
    ] {
        let answer = problem(admin.get(&format!("/admin/v1/tenants?{query}")).await, 400).await;
        assert_eq!(answer["type"], "urn:tenant-gateway:problem:invalid-query");
        let detail = answer["detail"].as_str().unwrap();
        assert!(detail.contains(named), "{query}: {detail}");
    }
    let answer = problem(admin.get("/admin/v1/tenants?lifecycle=gone").await, 400).await;
    let detail = answer["detail"].as_str().unwrap();
    assert!(
        detail.contains("unknown, active, migrated-out, deleted"),
        "{detail}"
    );

    // The CLI: every page as a table, or the API's JSON.
    let (ok, out, err) = cli(&app, &["tenants", "list", "--outcome", "failed"], "").await;
    assert!(ok, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].starts_with("TENANT  LIFECYCLE  LAST ACTION  OUTCOME  PARKED  LAST SEQ  UPDATED"),
        "{out}"
    );
    let rows: Vec<Vec<&str>> = lines[1..]
        .iter()
        .map(|line| line.split_whitespace().collect())
        .collect();
    assert_eq!(rows.len(), 2, "{out}");
    assert_eq!(
        rows[0][..6],
        ["t-04", "unknown", "upsert", "failed", "no", "1"]
    );
    assert_eq!(rows[1][0], "t-05");
    let (ok, out, err) = cli(
        &app,
        &[
            "tenants",
            "list",
            "--lifecycle",
            "unknown",
            "--limit",
            "2",
            "-o",
            "json",
        ],
        "",
    )
    .await;
    assert!(ok, "{err}");
    let printed: Value = serde_json::from_str(&out).expect("JSON");
    let listed: Vec<&str> = printed["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["tenant"].as_str().unwrap())
        .collect();
    assert_eq!(
        listed,
        ["t-00", "t-04", "t-05", "t-06", "t-07", "t-08", "t-09", "t-99"]
    );
    assert_eq!(printed["nextCursor"], Value::Null);
    app.stop().await;
}

/// Waits until the replay job is no longer running; returns its final state.
async fn finished_job(admin: &AdminApi, job: &str) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let state = get_json(admin, &format!("/admin/v1/replays/{job}")).await;
        if state["status"] != "running" {
            return state;
        }
        assert!(Instant::now() < deadline, "replay job {job} still running");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Event upstream ids of a search answer, in order.
async fn search(admin: &AdminApi, query: &str) -> Vec<String> {
    let page = get_json(admin, &format!("/admin/v1/events?{query}")).await;
    let mut ids = Vec::new();
    for event in page["events"].as_array().expect("events") {
        ids.push(event["id"].as_str().expect("upstream id").to_owned());
    }
    ids
}

#[tokio::test]
async fn workflow_phases_select_events_for_search_and_bulk_replay() {
    let hook = ArgoWebhook::start().await;
    let mut app = TestApp::spawn_with(webhook_settings(&hook)).await;
    let admin = AdminApi::of(&app);
    // One event per tenant, so none waits on another.
    let plan = [
        ("p-1", "migrate-in", Some(WorkflowPhase::Failed)),
        ("p-2", "migrate-in", Some(WorkflowPhase::Error)),
        ("p-3", "upsert", Some(WorkflowPhase::Failed)),
        ("p-4", "migrate-in", Some(WorkflowPhase::Succeeded)),
        ("p-5", "migrate-in", Some(WorkflowPhase::Running)),
        ("p-6", "migrate-in", None),
    ];
    for (id, action, _) in &plan {
        post(&app, &lifecycle_event(id, &format!("tenant-{id}"), action)).await;
    }
    app.wait_for_progress("all delivered", |p| p.delivered == plan.len() as u64)
        .await;
    for (id, _, phase) in &plan {
        if let Some(phase) = phase {
            let event = event_id(&app, id).await;
            observe(&app, &admin, event, *phase, Some("step failed")).await;
        }
    }

    for (query, expected) in [
        ("workflowPhase=Failed", vec!["p-1", "p-3"]),
        ("workflowPhase=Failed,Error", vec!["p-1", "p-2", "p-3"]),
        ("workflowPhase=Error%2CFailed", vec!["p-1", "p-2", "p-3"]),
        ("workflowPhase=Succeeded,Running", vec!["p-4", "p-5"]),
        ("workflowPhase=Pending", vec![]),
        (
            "workflowPhase=Failed,Error&action=migrate-in",
            vec!["p-1", "p-2"],
        ),
        (
            "workflowPhase=Failed,Error&action=lifecycle.migrate-in",
            vec!["p-1", "p-2"],
        ),
    ] {
        assert_eq!(search(&admin, query).await, expected, "{query}");
    }
    // The search without a phase still sees every event, those without a Workflow too.
    assert_eq!(search(&admin, "").await.len(), plan.len());

    // Unknown or miscased phases are refused with the accepted ones.
    for query in [
        "workflowPhase=failed",
        "workflowPhase=Failed,Lost",
        "workflowPhase=",
        "workflowPhase=Failed,",
    ] {
        let answer = problem(admin.get(&format!("/admin/v1/events?{query}")).await, 400).await;
        assert_eq!(answer["type"], "urn:tenant-gateway:problem:invalid-query");
        let detail = answer["detail"].as_str().unwrap();
        assert!(detail.contains("workflowPhase"), "{query}: {detail}");
        assert!(
            detail.contains("Pending, Running, Succeeded, Failed, Error"),
            "{query}: {detail}"
        );
    }
    let answer = problem(
        admin
            .post(
                "/admin/v1/replays",
                &json!({"filter": {"workflowPhase": "Lost"}, "dryRun": true}),
            )
            .await,
        400,
    )
    .await;
    assert_eq!(answer["type"], "urn:tenant-gateway:problem:invalid-filter");
    assert!(
        answer["detail"]
            .as_str()
            .unwrap()
            .contains("Pending, Running, Succeeded, Failed, Error"),
        "{answer}"
    );

    // The dry run counts what the job would replay; the job's stored filter keeps the phases.
    let filter = json!({"workflowPhase": "Failed,Error", "action": "migrate-in"});
    let dry = post_json(
        &admin,
        "/admin/v1/replays",
        &json!({"filter": filter, "dryRun": true}),
        200,
    )
    .await;
    assert_eq!(dry["count"], 2, "{dry}");
    let sample: Vec<&str> = dry["sample"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    assert_eq!(sample, ["p-1", "p-2"]);
    let phase_only = post_json(
        &admin,
        "/admin/v1/replays",
        &json!({"filter": {"workflowPhase": "Failed,Error"}, "dryRun": true}),
        200,
    )
    .await;
    assert_eq!(phase_only["count"], 3, "{phase_only}");
    let job = post_json(
        &admin,
        "/admin/v1/replays",
        &json!({"filter": filter, "expectedCount": 2, "reason": "argo fixed"}),
        202,
    )
    .await;
    assert_eq!(job["filter"]["workflowPhase"], "Failed,Error");
    let done = finished_job(&admin, job["id"].as_str().unwrap()).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["replayed"], 2);
    assert_eq!(done["filter"], filter);
    app.wait_for_progress("replays delivered", |p| {
        p.delivered == plan.len() as u64 + 2
    })
    .await;
    // The phase is matched against each event's latest emission: the replays' Workflows are
    // not seen yet, so only p-3 still counts as failed.
    assert_eq!(search(&admin, "workflowPhase=Failed,Error").await, ["p-3"]);

    // The CLI passes the phases through to the dry run.
    let (ok, out, err) = cli(
        &app,
        &[
            "replay",
            "--workflow-phase",
            "Failed,Error",
            "--since",
            "24h",
            "--dry-run",
            "-o",
            "json",
        ],
        "",
    )
    .await;
    assert!(ok, "{err}");
    let printed: Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(printed["count"], 1, "{printed}");
    let (ok, out, err) = cli(
        &app,
        &["events", "list", "--workflow-phase", "Failed", "-o", "json"],
        "",
    )
    .await;
    assert!(ok, "{err}");
    let printed: Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(printed["events"][0]["id"], "p-3", "{printed}");
    app.stop().await;
}

#[tokio::test]
async fn the_tenant_registry_on_postgresql_pages_and_takes_any_cursor_it_describes() {
    let Some(database) =
        crate::postgres_support::TestDatabase::create("admin_outcomes_registry").await
    else {
        return;
    };
    let hook = ArgoWebhook::start().await;
    let url = database.url.clone();
    let webhook = webhook_settings(&hook);
    let mut app = TestApp::spawn_with(move |settings| {
        webhook(settings);
        settings.store = url;
    })
    .await;
    let admin = AdminApi::of(&app);
    registry(&mut app, &admin).await;
    for limit in [1, 4, 100] {
        let (listed, _) = walk(&admin, "", limit).await;
        assert_eq!(listed, names(1..=9), "limit {limit}");
    }
    for (query, expected) in [
        ("outcome=failed", names([4, 5])),
        ("lifecycle=migrated-out", names([3])),
        ("action=lifecycle.upsert&outcome=pending", names(7..=9)),
    ] {
        let (listed, _) = walk(&admin, query, 2).await;
        assert_eq!(listed, expected, "{query}");
    }
    // Cursors the document allows but the server never issued (a NUL byte, bytes that are not
    // UTF-8) still name a place in the order; PostgreSQL text cannot hold a NUL.
    for cursor in ["AA", "AGE", "_w", "_-8"] {
        let resp = admin
            .get(&format!("/admin/v1/tenants?cursor={cursor}"))
            .await;
        let status = resp.status().as_u16();
        let body = resp.text().await.unwrap_or_default();
        assert_eq!(status, 200, "cursor {cursor}: {body}");
    }
    let resp = admin.get("/admin/v1/tenants?action=%00").await;
    assert_eq!(resp.status().as_u16(), 200);
    // The same for the event search, a bulk replay's dry run and a tenant's page: a NUL
    // matches nothing, it is no store failure.
    for query in ["tenant=%00", "action=up%00", "source=%00&status=dead"] {
        let page = get_json(&admin, &format!("/admin/v1/events?{query}")).await;
        assert_eq!(page["events"], json!([]), "{query}");
    }
    let dry = post_json(
        &admin,
        "/admin/v1/replays",
        &json!({"filter": {"tenant": "t-01\u{0}"}, "dryRun": true}),
        200,
    )
    .await;
    assert_eq!(dry["count"], 0);
    problem(admin.get("/admin/v1/tenants/t-01%00").await, 404).await;
    // Without the NUL, the same conditions select.
    assert_eq!(search(&admin, "tenant=t-01").await, ["u-1"]);
    app.stop().await;
}
