//! The admin API end to end: a dead event parks its tenant, replay and skip take it up again
//! in sequence, bulk replay jobs (dry run, progress, rate limit, cancel), stable pagination,
//! authentication, and the OpenAPI document against what is served.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sqlx::{ConnectOptions, Row};
use tenant_gateway::config::{Settings, TokenConfig};
use tenant_gateway::journal::EventStatus;

use crate::dispatch::{post, webhook_settings};
use crate::support::argo_webhook::{ArgoWebhook, Behaviour, Received};
use crate::support::{json_body, lifecycle_event, problem, TestApp};

/// Long enough for any wait here; a test that reaches it has failed.
const WAIT: Duration = Duration::from_secs(60);

/// A client of one gateway's admin listener.
pub(crate) struct AdminApi {
    /// `http://<admin addr>`.
    base: String,
    /// Sent as `Authorization: Bearer`, when set.
    token: Option<String>,
    /// Shared connection pool.
    client: reqwest::Client,
}

impl AdminApi {
    pub(crate) fn of(app: &TestApp) -> AdminApi {
        AdminApi {
            base: format!("http://127.0.0.1:{}", app.admin_addr.port()),
            token: None,
            client: reqwest::Client::new(),
        }
    }

    fn with_token(mut self, token: &str) -> AdminApi {
        self.token = Some(token.to_owned());
        self
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let builder = self.client.request(method, format!("{}{path}", self.base));
        match &self.token {
            Some(token) => builder.bearer_auth(token),
            None => builder,
        }
    }

    pub(crate) async fn get(&self, path: &str) -> reqwest::Response {
        self.request(reqwest::Method::GET, path)
            .send()
            .await
            .expect("admin request sent")
    }

    pub(crate) async fn post(&self, path: &str, body: &Value) -> reqwest::Response {
        self.request(reqwest::Method::POST, path)
            .json(body)
            .send()
            .await
            .expect("admin request sent")
    }

    /// GET that must answer `status` with JSON.
    async fn get_json(&self, path: &str) -> Value {
        let resp = self.get(path).await;
        let status = resp.status().as_u16();
        let body = resp.text().await.unwrap_or_default();
        assert_eq!(status, 200, "GET {path}: {body}");
        serde_json::from_str(&body).expect("JSON body")
    }

    /// POST that must answer `status` with JSON.
    async fn post_json(&self, path: &str, body: &Value, status: u16) -> Value {
        let resp = self.post(path, body).await;
        let got = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        assert_eq!(got, status, "POST {path}: {text}");
        serde_json::from_str(&text).expect("JSON body")
    }

    /// Waits until the replay job is no longer running; returns every state seen on the way.
    async fn wait_for_job(&self, job: &str) -> Vec<Value> {
        let deadline = Instant::now() + WAIT;
        let mut seen = Vec::new();
        loop {
            let state = self.get_json(&format!("/admin/v1/replays/{job}")).await;
            let running = state["status"] == "running";
            seen.push(state);
            if !running {
                return seen;
            }
            assert!(Instant::now() < deadline, "replay job {job} still running");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Runs the real `tenant-gateway` binary against the app's admin listener with `stdin` as its
/// input; returns (exit success, stdout, stderr).
pub(crate) async fn cli(app: &TestApp, args: &[&str], stdin: &str) -> (bool, String, String) {
    use std::io::Write;
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_tenant-gateway"));
    command
        .args(args)
        .args([
            "--server",
            &format!("http://127.0.0.1:{}", app.admin_addr.port()),
        ])
        .env_remove("TENANT_GATEWAY_ADMIN_TOKEN")
        .env_remove("TENANT_GATEWAY_ADMIN_TOKEN_FILE")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let stdin = stdin.to_owned();
    // The CLI talks to the app in this process: wait for it off the async threads.
    let run = tokio::task::spawn_blocking(move || {
        let mut child = command.spawn().expect("run tenant-gateway");
        let mut input = child.stdin.take().expect("stdin");
        input.write_all(stdin.as_bytes()).expect("write stdin");
        drop(input);
        child.wait_with_output().expect("CLI output")
    });
    let output = tokio::time::timeout(WAIT, run)
        .await
        .expect("the CLI finished")
        .expect("CLI thread");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// The JSON Schema of `#/components/schemas/<name>` in the OpenAPI document, compiled with the
/// whole document as its root so every `$ref` resolves.
fn schema_of(document: &Value, name: &str) -> jsonschema::Validator {
    let mut root = document.clone();
    root["$ref"] = json!(format!("#/components/schemas/{name}"));
    jsonschema::draft202012::new(&root).unwrap_or_else(|error| panic!("schema {name}: {error}"))
}

/// The checked-in OpenAPI document.
fn openapi_document() -> Value {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/openapi.json"))
        .expect("docs/openapi.json");
    serde_json::from_str(&text).expect("docs/openapi.json is JSON")
}

/// Asserts that `value` is valid against the named schema of the OpenAPI document.
pub(crate) fn assert_schema(name: &str, value: &Value) {
    let validator = schema_of(&openapi_document(), name);
    let errors: Vec<String> = validator
        .iter_errors(value)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{name}: {errors:?}\n{value:#}");
}

/// (sequence, CloudEvent id, replayof) of the requests the fake received for `tenant`, with
/// the status it answered, in arrival order.
fn tenant_requests(requests: &[Received], tenant: &str) -> Vec<(i64, String, Option<String>, u16)> {
    requests
        .iter()
        .filter_map(|r| {
            let event = r.json.as_ref()?;
            (event["tenant"] == tenant).then(|| {
                (
                    event["sequence"].as_i64().expect("sequence"),
                    event["id"].as_str().expect("id").to_owned(),
                    event["replayof"].as_str().map(str::to_owned),
                    r.status,
                )
            })
        })
        .collect()
}

/// Event ids by upstream id, from the journal.
async fn event_id(app: &TestApp, upstream_id: &str) -> String {
    app.journal
        .find_by_origin("//billing.acme.example/invoices", upstream_id)
        .await
        .expect("journal read")
        .expect("event stored")
        .event_id
        .to_string()
}

/// A gateway whose webhook sink answers event `acme` #2 with a 400: the event is dead and
/// `acme` parked, with events 3 to 5 waiting and `beta` delivered meanwhile.
async fn parked_tenant(hook: &ArgoWebhook) -> (TestApp, String) {
    let mut app = TestApp::spawn_with(webhook_settings(hook)).await;
    post(&app, &lifecycle_event("a-1", "acme", "upsert")).await;
    app.wait_for_progress("acme #1 delivered", |p| p.delivered == 1)
        .await;
    hook.push_behaviour(Behaviour::BadPayload);
    post(&app, &lifecycle_event("a-2", "acme", "migrate-out")).await;
    app.wait_for_progress("acme #2 dead", |p| p.dead == 1).await;
    for n in 3..=5 {
        post(&app, &lifecycle_event(&format!("a-{n}"), "acme", "upsert")).await;
    }
    post(&app, &lifecycle_event("b-1", "beta", "upsert")).await;
    app.wait_for_progress("beta delivered", |p| p.delivered == 2)
        .await;
    let dead = event_id(&app, "a-2").await;
    (app, dead)
}

#[tokio::test]
async fn replaying_the_dead_event_delivers_it_then_the_waiting_ones_in_sequence() {
    let hook = ArgoWebhook::start().await;
    let (mut app, dead) = parked_tenant(&hook).await;
    let admin = AdminApi::of(&app);

    let tenant = admin.get_json("/admin/v1/tenants/acme").await;
    assert_schema("TenantView", &tenant);
    assert_eq!(tenant["parked"], true, "{tenant:#}");
    assert_eq!(tenant["parkedBy"]["eventId"], dead.as_str());
    assert_eq!(
        tenant["counts"],
        json!({"pending": 3, "delivered": 1, "dead": 1, "skipped": 0})
    );
    assert_eq!(
        tenant_requests(&hook.requests(), "acme")
            .iter()
            .map(|(sequence, _, _, status)| (*sequence, *status))
            .collect::<Vec<_>>(),
        [(1, 200), (2, 400)],
        "the waiting events must not be sent while the tenant is parked"
    );

    // The sink has recovered (its script is empty again): replay through the CLI.
    let (ok, stdout, stderr) = cli(
        &app,
        &[
            "replay",
            &dead,
            "--reason",
            "bad payload fixed upstream",
            "-o",
            "json",
        ],
        "",
    )
    .await;
    assert!(ok, "replay failed: {stderr}");
    let replayed: Value = serde_json::from_str(&stdout).expect("JSON output");
    let replayed = &replayed[0];
    assert_schema("ReplayResult", replayed);
    assert_eq!(replayed["placement"], "in-place");
    app.wait_for_progress("replay and waiting events delivered", |p| p.delivered == 6)
        .await;

    let acme = tenant_requests(&hook.requests(), "acme");
    let order: Vec<(i64, u16)> = acme.iter().map(|(s, _, _, status)| (*s, *status)).collect();
    assert_eq!(
        order,
        [(1, 200), (2, 400), (2, 200), (3, 200), (4, 200), (5, 200)]
    );
    let (_, replay_id, replay_of, _) = &acme[2];
    assert_eq!(replay_id, replayed["emissionId"].as_str().unwrap());
    assert_ne!(replay_id, &dead, "a replay is a new emission");
    assert_eq!(replay_of.as_deref(), Some(dead.as_str()));

    let detail = admin.get_json(&format!("/admin/v1/events/{dead}")).await;
    assert_schema("EventDetail", &detail);
    assert_eq!(detail["event"]["status"], "delivered");
    let emissions = detail["emissions"].as_array().unwrap();
    assert_eq!(emissions.len(), 2);
    assert_eq!(emissions[0]["status"], "dead");
    assert_eq!(emissions[0]["replacedBy"], replayed["emissionId"]);
    assert_eq!(emissions[0]["deliveryAttempts"][0]["statusCode"], 400);
    assert_eq!(emissions[1]["status"], "delivered");
    assert_ne!(emissions[0]["workflowName"], emissions[1]["workflowName"]);
    let action = &detail["operatorActions"][0];
    assert_eq!(action["action"], "replay");
    assert_eq!(action["actor"], "loopback");
    assert_eq!(action["reason"], "bad payload fixed upstream");
    assert_eq!(detail["canonical"]["id"], dead.as_str());
    assert_eq!(detail["canonical"]["type"], "lifecycle.migrate-out");
    // A Workflow's `event-id` is the emission id: it leads to the same event.
    let by_emission = admin
        .get_json(&format!("/admin/v1/events/{replay_id}"))
        .await;
    assert_eq!(by_emission["event"]["eventId"], dead.as_str());

    let tenant = admin.get_json("/admin/v1/tenants/acme").await;
    assert_eq!(tenant["parked"], false);
    assert_eq!(tenant["counts"]["delivered"], 5);
    app.stop().await;
}

#[tokio::test]
async fn skipping_the_dead_event_lets_the_waiting_ones_go() {
    let hook = ArgoWebhook::start().await;
    let (mut app, dead) = parked_tenant(&hook).await;
    let admin = AdminApi::of(&app);

    let missing = admin
        .post(&format!("/admin/v1/events/{dead}/skip"), &json!({}))
        .await;
    let body = problem(missing, 400).await;
    assert_eq!(body["type"], "urn:tenant-gateway:problem:missing-reason");
    let delivered = event_id(&app, "a-1").await;
    let not_dead = admin
        .post(
            &format!("/admin/v1/events/{delivered}/skip"),
            &json!({"reason": "x"}),
        )
        .await;
    assert_eq!(
        problem(not_dead, 409).await["type"],
        "urn:tenant-gateway:problem:not-dead"
    );

    let (ok, stdout, stderr) = cli(
        &app,
        &[
            "skip",
            &dead,
            "--reason",
            "tenant data migrated by hand",
            "-o",
            "json",
        ],
        "",
    )
    .await;
    assert!(ok, "skip failed: {stderr}");
    let skipped: Value = serde_json::from_str(&stdout).expect("JSON output");
    assert_schema("SkipResult", &skipped);
    assert_eq!(skipped["tenantParked"], false);
    app.wait_for_progress("waiting events delivered", |p| p.delivered == 5)
        .await;
    let order: Vec<(i64, u16)> = tenant_requests(&hook.requests(), "acme")
        .iter()
        .map(|(s, _, _, status)| (*s, *status))
        .collect();
    assert_eq!(order, [(1, 200), (2, 400), (3, 200), (4, 200), (5, 200)]);
    let detail = admin.get_json(&format!("/admin/v1/events/{dead}")).await;
    assert_eq!(detail["event"]["status"], "skipped");
    assert_eq!(detail["operatorActions"][0]["action"], "skip");
    assert_eq!(
        detail["operatorActions"][0]["reason"],
        "tenant data migrated by hand"
    );
    app.stop().await;
}

#[tokio::test]
async fn replaying_a_delivered_event_queues_a_new_emission_with_a_workflow_link() {
    let hook = ArgoWebhook::start().await;
    let mut app = TestApp::spawn_with(|settings| {
        webhook_settings(&hook)(settings);
        settings.argo_ui_url = Some("https://argo.example.com".into());
        settings.workflow_namespace = "workflows".into();
    })
    .await;
    post(&app, &lifecycle_event("d-1", "acme", "upsert")).await;
    app.wait_for_progress("delivered", |p| p.delivered == 1)
        .await;
    let admin = AdminApi::of(&app);
    let id = event_id(&app, "d-1").await;
    let replayed = admin
        .post_json(&format!("/admin/v1/events/{id}/replay"), &json!(null), 202)
        .await;
    assert_eq!(replayed["placement"], "queued");
    app.wait_for_progress("replay delivered", |p| p.delivered == 2)
        .await;
    let requests = hook.requests();
    let sent = requests
        .last()
        .and_then(|r| r.json.clone())
        .expect("replay sent");
    assert_eq!(sent["replayof"], id.as_str());
    assert_eq!(sent["data"]["workflowName"], replayed["workflowName"]);
    let detail = admin.get_json(&format!("/admin/v1/events/{id}")).await;
    let replay = &detail["emissions"][1];
    assert_eq!(
        replay["workflowUrl"],
        format!(
            "https://argo.example.com/workflows/workflows/{}",
            sent["data"]["workflowName"].as_str().unwrap()
        )
    );
    let unknown = admin
        .post(
            "/admin/v1/events/0190d1a4-0000-7000-8000-000000000000/replay",
            &json!({}),
        )
        .await;
    assert_eq!(
        problem(unknown, 404).await["type"],
        "urn:tenant-gateway:problem:event-not-found"
    );
    app.stop().await;
}

/// Posts `count` events over `tenants` tenants, in batches of 100.
async fn post_many(app: &TestApp, count: usize, tenants: usize, prefix: &str) {
    let events: Vec<Value> = (0..count)
        .map(|n| {
            lifecycle_event(
                &format!("{prefix}-{n}"),
                &format!("t{}", n % tenants),
                "upsert",
            )
        })
        .collect();
    for batch in events.chunks(100) {
        let resp = app.post_batch(batch).await;
        assert_eq!(resp.status().as_u16(), 202);
    }
}

/// Emissions a replay job created, and the first and last creation times, from the journal.
async fn job_emissions(app: &TestApp, job: &str) -> (i64, Option<(String, String)>) {
    let mut connection = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(&app.store_path)
        .read_only(true)
        .connect()
        .await
        .expect("read the journal");
    let row = sqlx::query(
        "SELECT COUNT(*), MIN(created_at), MAX(created_at) FROM emissions WHERE replay_job = ?1",
    )
    .bind(job)
    .fetch_one(&mut connection)
    .await
    .expect("count");
    let first: Option<String> = row.get(1);
    let last: Option<String> = row.get(2);
    (row.get(0), first.zip(last))
}

fn seconds_between(first: &str, last: &str) -> f64 {
    let parse = |t: &str| chrono::DateTime::parse_from_rfc3339(t).expect("RFC 3339");
    (parse(last) - parse(first)).as_seconds_f64()
}

#[tokio::test]
async fn bulk_replay_of_ten_thousand_events_counts_exactly_reports_progress_and_keeps_its_rate() {
    const EVENTS: usize = 10_000;
    const RATE: f64 = 4_000.0;
    let hook = ArgoWebhook::start().await;
    let mut app = TestApp::spawn_with(webhook_settings(&hook)).await;
    post_many(&app, EVENTS, 100, "bulk").await;
    app.wait_for_progress("first deliveries", |p| p.delivered == EVENTS as u64)
        .await;
    let admin = AdminApi::of(&app);
    let filter = json!({"action": "upsert", "status": "delivered"});
    // Not EVENTS: with the test sink's 500 ms timeout a loaded machine retries some deliveries
    // (the same emission again, as designed); the dry run must add none.
    let sent_before = hook.requests().len();

    let dry = admin
        .post_json(
            "/admin/v1/replays",
            &json!({"filter": filter, "dryRun": true}),
            200,
        )
        .await;
    assert_schema("DryRunResult", &dry);
    assert_eq!(dry["count"], EVENTS);
    assert_eq!(dry["sample"].as_array().unwrap().len(), 10);
    assert_eq!(
        hook.requests().len(),
        sent_before,
        "a dry run sends nothing"
    );

    let changed = admin
        .post(
            "/admin/v1/replays",
            &json!({"filter": filter, "expectedCount": EVENTS + 1}),
        )
        .await;
    assert_eq!(
        problem(changed, 409).await["type"],
        "urn:tenant-gateway:problem:count-changed"
    );

    let job = admin
        .post_json(
            "/admin/v1/replays",
            &json!({"filter": filter, "rate": RATE, "reason": "argo outage",
                    "expectedCount": dry["count"]}),
            202,
        )
        .await;
    assert_schema("ReplayJobView", &job);
    assert_eq!(job["total"], EVENTS);
    let id = job["id"].as_str().unwrap().to_owned();
    let states = admin.wait_for_job(&id).await;
    let last = states.last().unwrap();
    assert_eq!(last["status"], "completed", "{last:#}");
    assert_eq!(last["replayed"], EVENTS);
    assert!(
        states.iter().any(|s| {
            let replayed = s["replayed"].as_u64().unwrap();
            replayed > 0 && replayed < EVENTS as u64
        }),
        "progress was reported on the way: {:?}",
        states.iter().map(|s| &s["replayed"]).collect::<Vec<_>>()
    );

    let (created, span) = job_emissions(&app, &id).await;
    assert_eq!(
        created, EVENTS as i64,
        "the job replays exactly what the dry run counted"
    );
    // The first batch (rate x 100 ms) goes at once; each later one waits for the rate.
    let (first, last_created) = span.expect("replays created");
    let floor = (EVENTS as f64 - RATE * 0.1) / RATE;
    let took = seconds_between(&first, &last_created);
    assert!(
        took >= floor,
        "{EVENTS} replays at {RATE}/s took {took:.3} s, less than {floor:.3} s"
    );
    app.wait_for_progress("replays delivered", |p| p.delivered == 2 * EVENTS as u64)
        .await;
    app.stop().await;
}

#[tokio::test]
async fn cancel_stops_a_replay_job() {
    let hook = ArgoWebhook::start().await;
    let mut app = TestApp::spawn_with(webhook_settings(&hook)).await;
    post_many(&app, 2_000, 20, "c").await;
    app.wait_for_progress("delivered", |p| p.delivered == 2_000)
        .await;
    let admin = AdminApi::of(&app);
    let job = admin
        .post_json(
            "/admin/v1/replays",
            &json!({"filter": {"action": "upsert"}, "rate": 200}),
            202,
        )
        .await;
    let id = job["id"].as_str().unwrap().to_owned();
    let deadline = Instant::now() + WAIT;
    loop {
        let state = admin.get_json(&format!("/admin/v1/replays/{id}")).await;
        if state["replayed"].as_u64().unwrap() > 0 {
            break;
        }
        assert!(Instant::now() < deadline, "the job never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let cancelled = admin
        .post_json(
            &format!("/admin/v1/replays/{id}/cancel"),
            &json!({"reason": "wrong filter"}),
            200,
        )
        .await;
    assert_eq!(cancelled["status"], "cancelled");
    let replayed = cancelled["replayed"].as_u64().unwrap();
    assert!(replayed < 2_000, "cancelled after {replayed}");
    let again = admin
        .post(&format!("/admin/v1/replays/{id}/cancel"), &json!({}))
        .await;
    assert_eq!(
        problem(again, 409).await["type"],
        "urn:tenant-gateway:problem:job-finished"
    );

    // Jobs run one after the other: once a later job has completed, the runner has left the
    // cancelled one for good.
    let later = admin
        .post_json(
            "/admin/v1/replays",
            &json!({"filter": {"tenant": "t1"}, "rate": 10000}),
            202,
        )
        .await;
    let states = admin.wait_for_job(later["id"].as_str().unwrap()).await;
    assert_eq!(states.last().unwrap()["status"], "completed");
    let (created, _) = job_emissions(&app, &id).await;
    assert_eq!(
        created as u64, replayed,
        "nothing replayed after the cancel"
    );
    let state = admin.get_json(&format!("/admin/v1/replays/{id}")).await;
    assert_eq!(state["replayed"].as_u64(), Some(replayed));
    let jobs = admin.get_json("/admin/v1/replays").await;
    assert_schema("ReplayJobList", &jobs);
    assert_eq!(jobs["jobs"].as_array().unwrap().len(), 2);
    app.stop().await;
}

/// A bulk replay condition no event could meet is a bad filter, whichever condition it is (a
/// status is read by serde with the body, a time afterwards); a member of the wrong JSON type
/// is a bad body.
#[tokio::test]
async fn a_bad_bulk_replay_condition_is_an_invalid_filter() {
    let app = TestApp::spawn().await;
    let admin = AdminApi::of(&app);
    for (body, slug, named) in [
        (
            json!({"filter": {"status": "lost"}}),
            "invalid-filter",
            "status",
        ),
        (
            json!({"filter": {"since": "yesterday"}}),
            "invalid-filter",
            "since",
        ),
        (json!({"filter": {"status": 3}}), "invalid-body", "a string"),
    ] {
        let answer = problem(admin.post("/admin/v1/replays", &body).await, 400).await;
        assert_eq!(
            answer["type"],
            format!("urn:tenant-gateway:problem:{slug}"),
            "{body}: {answer}"
        );
        assert!(
            answer["detail"].as_str().unwrap().contains(named),
            "{body}: {answer}"
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn pagination_never_skips_or_repeats_while_events_arrive() {
    let hook = ArgoWebhook::start().await;
    let app = TestApp::spawn_with(webhook_settings(&hook)).await;
    post_many(&app, 300, 7, "p").await;
    let admin = AdminApi::of(&app);
    // Events keep arriving while the pages are read.
    let ingest = app.client.clone();
    let url = app.url("/events");
    let writer = tokio::spawn(async move {
        for n in 0..300 {
            let event = lifecycle_event(&format!("late-{n}"), &format!("t{}", n % 7), "delete");
            let resp = ingest
                .post(&url)
                .header("content-type", "application/cloudevents+json")
                .body(event.to_string())
                .send()
                .await
                .expect("post");
            assert_eq!(resp.status().as_u16(), 202);
        }
    });
    let mut paged: Vec<String> = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(cursor) => format!("/admin/v1/events?limit=7&cursor={cursor}"),
            None => "/admin/v1/events?limit=7".to_owned(),
        };
        let page = admin.get_json(&path).await;
        assert_schema("EventPage", &page);
        for event in page["events"].as_array().unwrap() {
            paged.push(event["eventId"].as_str().unwrap().to_owned());
        }
        match page["nextCursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    writer.await.expect("writer");
    let unique: HashSet<&String> = paged.iter().collect();
    assert_eq!(unique.len(), paged.len(), "an event was repeated");
    // Everything the pages returned is a prefix of the journal order, with nothing skipped.
    let mut all: Vec<String> = Vec::new();
    let mut cursor = String::new();
    loop {
        let page = admin
            .get_json(&format!("/admin/v1/events?limit=1000{cursor}"))
            .await;
        all.extend(
            page["events"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["eventId"].as_str().unwrap().to_owned()),
        );
        match page["nextCursor"].as_str() {
            Some(next) => cursor = format!("&cursor={next}"),
            None => break,
        }
    }
    assert_eq!(all.len(), 600);
    assert!(
        paged.len() >= 300,
        "the events stored before paging are all there"
    );
    assert_eq!(
        paged[..],
        all[..paged.len()],
        "pages skipped or reordered events"
    );

    // Filters combine; a bad parameter is a problem naming it.
    let deletes = admin
        .get_json("/admin/v1/events?tenant=t3&action=lifecycle.delete&limit=1000")
        .await;
    let expected = (0..300).filter(|n| n % 7 == 3).count();
    assert_eq!(deletes["events"].as_array().unwrap().len(), expected);
    assert!(deletes["events"]
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["tenant"] == "t3" && e["action"] == "delete"));
    for (query, names) in [
        ("status=lost", "status"),
        ("since=yesterday", "since"),
        ("limit=0", "limit"),
        ("cursor=nope", "cursor"),
        ("colour=red", "colour"),
    ] {
        let resp = admin.get(&format!("/admin/v1/events?{query}")).await;
        let body = problem(resp, 400).await;
        assert_eq!(body["type"], "urn:tenant-gateway:problem:invalid-query");
        assert!(
            body["detail"].as_str().unwrap().contains(names),
            "{query}: {body}"
        );
    }
    app.stop().await;
}

/// An admin token file named `alice` (its name in the operator action records).
fn admin_token(dir: &tempfile::TempDir, secret: &str) -> TokenConfig {
    let path = dir.path().join("alice");
    std::fs::write(&path, format!("{secret}\n")).expect("token file");
    TokenConfig {
        name: "alice".into(),
        file: path,
        ..TokenConfig::default()
    }
}

#[tokio::test]
async fn a_non_loopback_admin_listener_requires_the_admin_token() {
    let dir = tempfile::tempdir().expect("tempdir");
    let token = admin_token(&dir, "op3rator");
    let hook = ArgoWebhook::start().await;
    let mut app = TestApp::spawn_with(|settings: &mut Settings| {
        webhook_settings(&hook)(settings);
        settings.admin_listen = "0.0.0.0:0".parse().unwrap();
        settings.admin_tokens = vec![token];
    })
    .await;
    post(&app, &lifecycle_event("z-1", "acme", "upsert")).await;
    app.wait_for_progress("delivered", |p| p.delivered == 1)
        .await;
    let id = event_id(&app, "z-1").await;
    let anonymous = AdminApi::of(&app);
    let wrong = AdminApi::of(&app).with_token("guess");
    for (method, path) in tenant_gateway::admin::ROUTES {
        if !path.starts_with("/admin/v1/") {
            continue;
        }
        let path = path
            .replace("{eventId}", &id)
            .replace("{tenant}", "acme")
            .replace("{jobId}", "0190d1a4-0000-7000-8000-000000000000");
        for client in [&anonymous, &wrong] {
            let resp = match *method {
                "get" => client.get(&path).await,
                _ => client.post(&path, &json!({"reason": "r"})).await,
            };
            assert!(
                resp.headers().contains_key("www-authenticate"),
                "{method} {path}"
            );
            let body = problem(resp, 401).await;
            assert_eq!(body["type"], "urn:tenant-gateway:problem:unauthorized");
        }
    }
    // Probes and scrapes stay open.
    for path in ["/healthz", "/readyz", "/metrics", "/admin/openapi.json"] {
        assert_eq!(anonymous.get(path).await.status().as_u16(), 200, "{path}");
    }
    assert_eq!(
        app.journal
            .find_event(id.parse().unwrap())
            .await
            .unwrap()
            .unwrap()
            .status,
        EventStatus::Delivered,
        "refused calls changed nothing"
    );
    let alice = AdminApi::of(&app).with_token("op3rator");
    alice
        .post_json(
            &format!("/admin/v1/events/{id}/replay"),
            &json!({"reason": "check"}),
            202,
        )
        .await;
    let detail = alice.get_json(&format!("/admin/v1/events/{id}")).await;
    assert_eq!(detail["operatorActions"][0]["actor"], "alice");
    app.stop().await;
}

#[tokio::test]
async fn a_loopback_listener_with_tokens_requires_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let token = admin_token(&dir, "op3rator");
    let app =
        TestApp::spawn_with(|settings: &mut Settings| settings.admin_tokens = vec![token]).await;
    let anonymous = AdminApi::of(&app);
    problem(anonymous.get("/admin/v1/events").await, 401).await;
    let wrong = AdminApi::of(&app).with_token("guess");
    problem(wrong.get("/admin/v1/events").await, 401).await;
    for malformed in ["Basic b3A6b3A=", "Bearer", "op3rator"] {
        let resp = app
            .client
            .get(format!("http://{}/admin/v1/events", app.admin_addr))
            .header("authorization", malformed)
            .send()
            .await
            .expect("request sent");
        let body = problem(resp, 401).await;
        assert!(
            body["detail"].as_str().unwrap().contains("malformed"),
            "{malformed}: {body}"
        );
    }
    let right = AdminApi::of(&app).with_token("op3rator");
    assert_eq!(right.get("/admin/v1/events").await.status().as_u16(), 200);
    app.stop().await;
}

#[tokio::test]
async fn a_non_loopback_admin_listener_without_tokens_refuses_to_start() {
    let mut settings = Settings::local();
    settings.listen = "127.0.0.1:0".parse().unwrap();
    settings.admin_listen = "0.0.0.0:0".parse().unwrap();
    let dir = tempfile::tempdir().expect("tempdir");
    settings.store = format!("sqlite://{}", dir.path().join("j.db").display());
    let error = tenant_gateway::app::Application::build(settings)
        .await
        .err()
        .expect("refused");
    assert!(error.to_string().contains("admin-token-file"), "{error}");
}

#[tokio::test]
async fn the_openapi_document_matches_the_served_routes() {
    let app = TestApp::spawn().await;
    let admin = AdminApi::of(&app);
    let document = openapi_document();
    let served = admin.get("/admin/openapi.json").await;
    assert_eq!(served.status().as_u16(), 200);
    assert_eq!(json_body(served).await, document, "served as checked in");
    assert_eq!(document["openapi"], "3.1.0");

    let mut documented: Vec<(String, String)> = Vec::new();
    for (path, item) in document["paths"].as_object().expect("paths") {
        for method in item.as_object().unwrap().keys() {
            if ["get", "post", "put", "patch", "delete"].contains(&method.as_str()) {
                documented.push((method.clone(), path.clone()));
            }
        }
    }
    let mut routes: Vec<(String, String)> = tenant_gateway::admin::ROUTES
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    documented.sort();
    routes.sort();
    assert_eq!(
        documented, routes,
        "docs/openapi.json and the served routes differ"
    );

    // Every documented route is served (a route-level 404 has no problem body), and an
    // undocumented one is not.
    for (method, path) in &routes {
        let path = path
            .replace("{eventId}", "0190d1a4-0000-7000-8000-000000000000")
            .replace("{tenant}", "nobody")
            .replace("{jobId}", "0190d1a4-0000-7000-8000-000000000000");
        let resp = match method.as_str() {
            "get" => admin.get(&path).await,
            // Each route's own body, so the answers are the route's, not a body error.
            _ if path == "/admin/v1/replays" => {
                let body = json!({"filter": {"tenant": "nobody"}, "reason": "r"});
                admin.post(&path, &body).await
            }
            _ => admin.post(&path, &json!({"reason": "r"})).await,
        };
        let status = resp.status().as_u16();
        let problem_body = resp
            .headers()
            .get("content-type")
            .is_some_and(|ct| ct == "application/problem+json");
        assert!(
            status != 404 && status != 405 || problem_body,
            "{method} {path} is documented but not served ({status})"
        );
        if let Some(responses) =
            document["paths"][path_template(&path, &routes)][method]["responses"].as_object()
        {
            assert!(
                responses.contains_key(&status.to_string()),
                "{method} {path} answered {status}, which the document does not list"
            );
        }
    }
    let resp = admin.get("/admin/v1/everything").await;
    assert_eq!(resp.status().as_u16(), 404);
    app.stop().await;
}

/// The route template a concrete path was made from.
fn path_template(path: &str, routes: &[(String, String)]) -> String {
    routes
        .iter()
        .map(|(_, template)| template)
        .find(|template| {
            let t: Vec<&str> = template.split('/').collect();
            let p: Vec<&str> = path.split('/').collect();
            t.len() == p.len() && t.iter().zip(&p).all(|(t, p)| t == p || t.starts_with('{'))
        })
        .cloned()
        .unwrap_or_default()
}

#[tokio::test]
async fn bulk_replay_through_the_cli_asks_first_and_follows_the_job() {
    let hook = ArgoWebhook::start().await;
    let mut app = TestApp::spawn_with(webhook_settings(&hook)).await;
    post_many(&app, 300, 3, "k").await;
    app.wait_for_progress("delivered", |p| p.delivered == 300)
        .await;
    let filter = ["--tenant", "t1", "--status", "delivered"];

    let (ok, _, stderr) = cli(
        &app,
        &[&["replay"][..], &filter, &["--rate", "500"]].concat(),
        "n\n",
    )
    .await;
    assert!(!ok, "declining must fail the command");
    assert!(stderr.contains("aborted: nothing replayed"), "{stderr}");
    let jobs = AdminApi::of(&app).get_json("/admin/v1/replays").await;
    assert!(
        jobs["jobs"].as_array().unwrap().is_empty(),
        "nothing was created"
    );

    let (ok, _, stderr) = cli(
        &app,
        &[&["replay"][..], &filter, &["--dry-run"]].concat(),
        "",
    )
    .await;
    assert!(ok, "{stderr}");
    assert_eq!(hook.requests().len(), 300, "a dry run sends nothing");

    let (ok, stdout, stderr) = cli(
        &app,
        &[
            &["replay"][..],
            &filter,
            &["--rate", "500", "--reason", "argo outage", "-o", "json"],
        ]
        .concat(),
        "y\n",
    )
    .await;
    assert!(ok, "{stderr}");
    assert!(
        stderr.contains("Replay 100 events"),
        "the prompt names the count: {stderr}"
    );
    assert!(
        stderr
            .lines()
            .any(|line| line.contains("replayed") || line.contains("/100")),
        "plain progress lines without a terminal: {stderr}"
    );
    let job: Value = serde_json::from_str(&stdout).expect("the final job as JSON");
    assert_eq!(job["status"], "completed");
    assert_eq!(
        (job["total"].as_u64(), job["replayed"].as_u64()),
        (Some(100), Some(100))
    );
    assert_eq!(job["actor"], "loopback");
    app.wait_for_progress("replays delivered", |p| p.delivered == 400)
        .await;
    app.stop().await;
}

#[tokio::test]
async fn an_in_place_replay_keeps_its_place_across_a_restart() {
    let hook = ArgoWebhook::start().await;
    let (mut app, dead) = parked_tenant(&hook).await;
    // Argo is down: the replay is retried, and stays pending, in the dead event's place.
    hook.set_default(Behaviour::PublishFails);
    let admin = AdminApi::of(&app);
    let replayed = admin
        .post_json(&format!("/admin/v1/events/{dead}/replay"), &json!({}), 202)
        .await;
    assert_eq!(replayed["placement"], "in-place");
    let before = hook.requests().len();
    app.wait_for_progress("the replay failed once", |p| p.attempts >= 4)
        .await;
    let sent = hook.requests();
    assert!(
        sent[before..].iter().all(|r| r
            .json
            .as_ref()
            .is_some_and(|e| e["replayof"] == dead.as_str())),
        "nothing passes the pending replay"
    );
    // Restart with Argo back: the replay still goes first, then acme #3 to #5. Argo comes back
    // only once the first gateway has stopped (`restart` calls this between the two): before
    // it, the stopping gateway could still deliver the replay itself (the next test).
    let mut app = app
        .restart(|settings| {
            hook.set_default(Behaviour::Accept);
            webhook_settings(&hook)(settings)
        })
        .await;
    app.wait_for_progress("replay and waiting events delivered", |p| p.delivered == 4)
        .await;
    let after_restart: Vec<(i64, Option<String>)> = tenant_requests(&hook.requests(), "acme")
        .into_iter()
        .filter(|(_, _, _, status)| *status == 200)
        .map(|(sequence, _, replay_of, _)| (sequence, replay_of))
        .collect();
    assert_eq!(
        after_restart,
        [
            (1, None),
            (2, Some(dead.clone())),
            (3, None),
            (4, None),
            (5, None)
        ]
    );
    app.stop().await;
}

/// The interleaving the previous test rules out, forced: the replay is delivered just before the
/// gateway stops, while the next waiting event is failing. After the restart nothing is caught
/// up (no in-place replay is pending): the waiting events follow in sequence, from the
/// position-ordered reads, and the delivered replay is not sent again.
#[tokio::test]
async fn a_replay_delivered_just_before_a_restart_is_not_sent_again() {
    let hook = ArgoWebhook::start().await;
    let (app, dead) = parked_tenant(&hook).await;
    hook.set_default(Behaviour::PublishFails);
    hook.push_behaviour(Behaviour::Accept);
    let admin = AdminApi::of(&app);
    let replayed = admin
        .post_json(&format!("/admin/v1/events/{dead}/replay"), &json!({}), 202)
        .await;
    assert_eq!(replayed["placement"], "in-place");
    // The replay is taken, then #3 fails at least once: the replay's delivery is recorded (the
    // dispatcher queues it before #3 starts, and the journal writes it before it closes).
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let acme = tenant_requests(&hook.requests(), "acme");
        let replay_taken = acme
            .iter()
            .any(|(_, _, replay_of, status)| replay_of.as_deref() == Some(&dead) && *status == 200);
        let third_failed = acme
            .iter()
            .any(|(sequence, _, _, status)| *sequence == 3 && *status == 500);
        if replay_taken && third_failed {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the replay was never taken, or #3 never tried: {acme:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut app = app
        .restart(|settings| {
            hook.set_default(Behaviour::Accept);
            webhook_settings(&hook)(settings)
        })
        .await;
    app.wait_for_progress("acme #3 to #5 delivered", |p| p.delivered == 3)
        .await;
    let accepted: Vec<(i64, Option<String>)> = tenant_requests(&hook.requests(), "acme")
        .into_iter()
        .filter(|(_, _, _, status)| *status == 200)
        .map(|(sequence, _, replay_of, _)| (sequence, replay_of))
        .collect();
    assert_eq!(
        accepted,
        [
            (1, None),
            (2, Some(dead.clone())),
            (3, None),
            (4, None),
            (5, None)
        ]
    );
    app.stop().await;
}

/// A served path with a method it is not served with is `405` with `Allow` naming the methods
/// the document lists for it (RFC 9110 section 15.5.6); an unknown path stays `404`.
#[tokio::test]
async fn a_method_a_path_is_not_served_with_is_405_with_allow() {
    let app = TestApp::spawn().await;
    let document = openapi_document();
    let job = "/admin/v1/replays/0190d1a4-0000-7000-8000-000000000000";
    for (path, template) in [
        ("/healthz", "/healthz"),
        ("/admin/openapi.json", "/admin/openapi.json"),
        ("/admin/v1/replays", "/admin/v1/replays"),
        (job, "/admin/v1/replays/{jobId}"),
    ] {
        let mut documented: Vec<String> = document["paths"][template]
            .as_object()
            .expect("documented path")
            .keys()
            .map(|method| method.to_uppercase())
            .collect();
        documented.sort();
        for method in ["TRACE", "PUT", "DELETE", "PATCH"] {
            let resp = app
                .client
                .request(
                    reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
                    format!("http://{}{path}", app.admin_addr),
                )
                .send()
                .await
                .expect("request sent");
            let allow = resp
                .headers()
                .get("allow")
                .and_then(|value| value.to_str().ok())
                .map(str::to_owned);
            let body = problem(resp, 405).await;
            assert_eq!(
                body["type"],
                "urn:tenant-gateway:problem:method-not-allowed"
            );
            let mut allowed: Vec<String> = allow
                .unwrap_or_else(|| panic!("{method} {path}: 405 without Allow"))
                .split(',')
                .map(|m| m.trim().to_owned())
                .collect();
            allowed.sort();
            assert_eq!(allowed, documented, "{method} {path}");
        }
    }
    let unknown = app
        .client
        .request(
            reqwest::Method::TRACE,
            format!("http://{}/admin/v1/nothing", app.admin_addr),
        )
        .send()
        .await
        .expect("request sent");
    assert_eq!(unknown.status().as_u16(), 404);
    app.stop().await;
}

/// What schemathesis found the server taking or refusing against the document: `rate` is
/// bounded below (5e-324 made a job that never finishes), an empty cursor or filter is refused
/// as the document now says, a count written `1.0` is a count, and ids are hyphenated UUIDs.
#[tokio::test]
async fn the_admin_api_takes_and_refuses_what_its_document_says() {
    let app = TestApp::spawn().await;
    let admin = AdminApi::of(&app);
    let document = openapi_document();
    let replays = "/admin/v1/replays";
    for rate in [json!(5e-324), json!(0.09), json!(10000.5)] {
        let body = json!({"filter": {"tenant": "nobody"}, "dryRun": true, "rate": rate});
        let answer = problem(admin.post(replays, &body).await, 400).await;
        assert_eq!(
            answer["type"], "urn:tenant-gateway:problem:invalid-rate",
            "{rate}"
        );
        assert!(!schema_of(&document, "BulkReplayRequest").is_valid(&body));
    }
    for rate in [0.1, 10_000.0] {
        let body = json!({"filter": {"tenant": "nobody"}, "dryRun": true, "rate": rate});
        assert_eq!(
            admin.post(replays, &body).await.status().as_u16(),
            200,
            "{rate}"
        );
        assert_schema("BulkReplayRequest", &body);
    }
    for filter in [json!({}), json!({"tenant": null})] {
        let body = json!({"filter": filter, "dryRun": true});
        let answer = problem(admin.post(replays, &body).await, 400).await;
        assert_eq!(answer["type"], "urn:tenant-gateway:problem:invalid-filter");
        assert!(!schema_of(&document, "BulkReplayRequest").is_valid(&body));
    }
    // The filter selects nothing, so a count of 1 (written 1.0) no longer holds: the count
    // was read, not refused as a malformed body.
    let body = json!({"filter": {"tenant": "nobody"}, "expectedCount": 1.0, "reason": "r"});
    assert_schema("BulkReplayRequest", &body);
    let answer = problem(admin.post(replays, &body).await, 409).await;
    assert_eq!(answer["type"], "urn:tenant-gateway:problem:count-changed");

    let answer = problem(admin.get("/admin/v1/events?cursor=").await, 400).await;
    assert_eq!(answer["type"], "urn:tenant-gateway:problem:invalid-query");
    assert!(answer["detail"].as_str().unwrap().contains("cursor"));
    // base64url of `p` and 19 nines: past every position, an empty last page.
    let page = admin
        .get_json("/admin/v1/events?cursor=cDk5OTk5OTk5OTk5OTk5OTk5OTk")
        .await;
    assert_eq!(page["events"], json!([]));
    assert!(page.get("nextCursor").is_none_or(Value::is_null), "{page}");

    let id = uuid::Uuid::from_u128(0x0190_d1a4_0000_7000_8000_0000_0000_0001);
    for (path, slug) in [
        (
            format!("/admin/v1/events/{}", id.simple()),
            "invalid-event-id",
        ),
        (
            format!("/admin/v1/replays/{}", id.braced()),
            "invalid-job-id",
        ),
    ] {
        let answer = problem(admin.get(&path).await, 400).await;
        assert_eq!(
            answer["type"],
            format!("urn:tenant-gateway:problem:{slug}"),
            "{path}"
        );
    }
    let answer = problem(admin.get(&format!("/admin/v1/events/{id}")).await, 404).await;
    assert_eq!(answer["type"], "urn:tenant-gateway:problem:event-not-found");
    app.stop().await;
}
