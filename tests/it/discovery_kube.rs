//! Discovery against the Kubernetes API, at the request level: a `tower_test` mock stands in for
//! the API server (the ApiServerVerifier pattern of kube-rs/controller-rs). A spawned verifier
//! receives each request in order, checks method, path, query and body, and answers; a request
//! nobody expected, or an expected one that never comes, fails the test.
//!
//! The desired sets are rendered by the real renderer from hand-built Jobs, so these tests also
//! pin how classification, rendering and reconciling fit together.
//!
//! One `#[ignore]`d test runs the whole loop once against the current kubeconfig; see
//! docs/discovery-operations.md.

use std::collections::BTreeMap;
use std::time::Duration;

use http::{Method, Request, Response, StatusCode};
use k8s_openapi::api::batch::v1::Job;
use kube::client::Body;
use kube::Client;
use serde_json::{json, Value};
use tenant_gateway::discovery::health::DiscoveryMetrics;
use tenant_gateway::discovery::reconcile::{
    ReconcileError, Reconciler, SyncReport, IGNORED_EVENT_REASON, REPORTING_CONTROLLER,
};
use tenant_gateway::discovery::render::{template_name, RenderConfig};
use tenant_gateway::discovery::watch::{self, DesiredState};
use tenant_gateway::discovery::DiscoverSettings;
use tower_test::mock::{self, Handle, SendResponse};

type ApiHandle = Handle<Request<Body>, Response<Body>>;

const WORKFLOW_NS: &str = "argo";
const TEMPLATES_PATH: &str = "/apis/argoproj.io/v1alpha1/namespaces/argo/workflowtemplates";
const ANNOTATION: &str = "tenant-gateway.io/lifecycle";
/// How long the verifier waits for each expected request, and the test for a sync.
const PATIENCE: Duration = Duration::from_secs(10);

// ----- fixtures -------------------------------------------------------------------------------

/// The default `discover` settings with the test's Workflow namespace.
fn discover_settings() -> DiscoverSettings {
    DiscoverSettings {
        workflow_namespace: WORKFLOW_NS.into(),
        ..DiscoverSettings::default()
    }
}

/// A template Job as a team would ship it (label, lifecycle annotation, suspended).
fn template_job(ns: &str, name: &str, lifecycle: &str, image: &str) -> Job {
    job_value(ns, name, lifecycle, image, true)
}

fn job_value(ns: &str, name: &str, lifecycle: &str, image: &str, suspend: bool) -> Job {
    serde_json::from_value(json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "namespace": ns,
            "uid": format!("uid-{ns}-{name}"),
            "labels": {"tenant-gateway.io/template": "true"},
            "annotations": {ANNOTATION: lifecycle},
        },
        "spec": {
            "suspend": suspend,
            "backoffLimit": 2,
            "template": {"spec": {
                "restartPolicy": "Never",
                "containers": [{"name": "main", "image": image}],
            }},
        },
    }))
    .expect("a valid Job")
}

fn with_annotation(mut job: Job, key: &str, value: &str) -> Job {
    job.metadata
        .annotations
        .get_or_insert_with(Default::default)
        .insert(key.into(), value.into());
    job
}

/// The desired state of `jobs` with the default `discover` flags (five configured actions).
fn desired(jobs: &[Job]) -> DesiredState {
    let config = RenderConfig::from_settings(&discover_settings());
    watch::desired_state(jobs.iter(), ANNOTATION, &config, &config.actions)
}

/// What the API server returns for a template it stores: the applied object plus server fields.
fn as_live(template: &Value) -> Value {
    let mut live = template.clone();
    live["metadata"]["resourceVersion"] = json!("42");
    live["metadata"]["uid"] = json!(format!(
        "uid-{}",
        template["metadata"]["name"].as_str().unwrap_or("x")
    ));
    live
}

fn live_templates(state: &DesiredState) -> Vec<Value> {
    state.outcome.templates.values().map(as_live).collect()
}

fn names<'a>(actions: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    actions.into_iter().map(template_name).collect()
}

fn reconciler(client: Client) -> (Reconciler, DiscoveryMetrics) {
    let metrics = DiscoveryMetrics::new();
    let reconciler =
        Reconciler::new(client, WORKFLOW_NS, metrics.clone()).with_reporting_instance("test-pod");
    (reconciler, metrics)
}

fn mock_client() -> (Client, ApiHandle) {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    (Client::new(service, "default"), handle)
}

// ----- the verifier -------------------------------------------------------------------------

/// One request the fake API server expects next, and how it answers.
#[derive(Debug, Clone)]
enum Expected {
    /// `GET` of the managed WorkflowTemplates; answers with these items.
    ListTemplates(Vec<Value>),
    /// Server-side apply of exactly this template; echoes it back.
    Apply(Value),
    /// Server-side apply of the template with this name; answers 500.
    ApplyFails(String),
    /// `DELETE` of the template with this name.
    Delete(String),
    /// `POST` of an events.k8s.io/v1 Event in `namespace` regarding the Job `job`.
    Event { namespace: String, job: String },
}

/// Path and decoded query parameters of a request URI.
fn split_uri(uri: &http::Uri) -> (String, BTreeMap<String, String>) {
    let query = uri
        .query()
        .unwrap_or("")
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect();
    (uri.path().to_owned(), query)
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).expect("ascii");
                out.push(u8::from_str_radix(hex, 16).expect("hex escape"));
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).expect("utf-8")
}

async fn body_json(request: Request<Body>) -> Value {
    let bytes = request
        .into_body()
        .collect_bytes()
        .await
        .expect("request body");
    serde_json::from_slice(&bytes).expect("request body is JSON")
}

fn respond(send: SendResponse<Response<Body>>, status: StatusCode, body: &Value) {
    send.send_response(
        Response::builder()
            .status(status)
            .header("content-type", "application/json")
            .body(Body::from(serde_json::to_vec(body).expect("json")))
            .expect("response"),
    );
}

/// Answer the expected requests in order; panics (failing the test) on a mismatch or when an
/// expected request does not come within [`PATIENCE`]. Returns the handle and the bodies of the
/// Events it received.
fn verify(
    mut handle: ApiHandle,
    expected: Vec<Expected>,
) -> tokio::task::JoinHandle<(ApiHandle, Vec<Value>)> {
    tokio::spawn(async move {
        let mut events = Vec::new();
        for (step, expectation) in expected.into_iter().enumerate() {
            let next = tokio::time::timeout(PATIENCE, handle.next_request())
                .await
                .unwrap_or_else(|_| {
                    panic!("step {step}: expected {expectation:?}, no request came")
                });
            let (request, send) =
                next.unwrap_or_else(|| panic!("step {step}: client gone before {expectation:?}"));
            let (path, query) = split_uri(request.uri());
            let method = request.method().clone();
            match expectation {
                Expected::ListTemplates(items) => {
                    assert_eq!(
                        (&method, path.as_str()),
                        (&Method::GET, TEMPLATES_PATH),
                        "step {step}"
                    );
                    assert_eq!(
                        query.get("labelSelector").map(String::as_str),
                        Some("app.kubernetes.io/managed-by=tenant-gateway"),
                        "step {step}: list must select only managed templates"
                    );
                    let list = json!({
                        "apiVersion": "argoproj.io/v1alpha1",
                        "kind": "WorkflowTemplateList",
                        "metadata": {"resourceVersion": "100"},
                        "items": items,
                    });
                    respond(send, StatusCode::OK, &list);
                }
                Expected::Apply(template) => {
                    let name = template["metadata"]["name"]
                        .as_str()
                        .expect("name")
                        .to_owned();
                    assert_eq!(method, Method::PATCH, "step {step}: apply of {name}");
                    assert_eq!(path, format!("{TEMPLATES_PATH}/{name}"), "step {step}");
                    assert_eq!(
                        query.get("fieldManager").map(String::as_str),
                        Some("tenant-gateway"),
                        "step {step}"
                    );
                    assert_eq!(
                        query.get("force").map(String::as_str),
                        Some("true"),
                        "step {step}"
                    );
                    assert_eq!(
                        request
                            .headers()
                            .get("content-type")
                            .and_then(|v| v.to_str().ok()),
                        Some("application/apply-patch+yaml"),
                        "step {step}: server-side apply content type"
                    );
                    let body = body_json(request).await;
                    assert_eq!(
                        body, template,
                        "step {step}: SSA body is the desired template"
                    );
                    respond(send, StatusCode::OK, &as_live(&body));
                }
                Expected::ApplyFails(name) => {
                    assert_eq!(method, Method::PATCH, "step {step}");
                    assert_eq!(path, format!("{TEMPLATES_PATH}/{name}"), "step {step}");
                    let status = json!({
                        "apiVersion": "v1", "kind": "Status", "status": "Failure",
                        "message": "admission webhook denied the request", "reason": "InternalError",
                        "code": 500,
                    });
                    respond(send, StatusCode::INTERNAL_SERVER_ERROR, &status);
                }
                Expected::Delete(name) => {
                    assert_eq!(method, Method::DELETE, "step {step}: prune of {name}");
                    assert_eq!(path, format!("{TEMPLATES_PATH}/{name}"), "step {step}");
                    let gone = json!({
                        "apiVersion": "argoproj.io/v1alpha1", "kind": "WorkflowTemplate",
                        "metadata": {"name": name, "namespace": WORKFLOW_NS},
                    });
                    respond(send, StatusCode::OK, &gone);
                }
                Expected::Event { namespace, job } => {
                    assert_eq!(
                        method,
                        Method::POST,
                        "step {step}: Event on {namespace}/{job}"
                    );
                    assert_eq!(
                        path,
                        format!("/apis/events.k8s.io/v1/namespaces/{namespace}/events"),
                        "step {step}"
                    );
                    let body = body_json(request).await;
                    assert_eq!(body["regarding"]["kind"], "Job", "step {step}: {body}");
                    assert_eq!(
                        body["regarding"]["name"],
                        job.as_str(),
                        "step {step}: {body}"
                    );
                    assert_eq!(
                        body["regarding"]["namespace"],
                        namespace.as_str(),
                        "step {step}"
                    );
                    let mut created = body.clone();
                    created["metadata"]["name"] = json!(format!("{job}.abcde"));
                    respond(send, StatusCode::CREATED, &created);
                    events.push(body);
                }
            }
        }
        (handle, events)
    })
}

/// Run one sync against the verifier; fail on any unexpected extra request.
async fn sync_against(
    reconciler: &mut Reconciler,
    handle: ApiHandle,
    state: &DesiredState,
    expected: Vec<Expected>,
) -> (Result<SyncReport, ReconcileError>, ApiHandle, Vec<Value>) {
    let verifier = verify(handle, expected);
    let result =
        tokio::time::timeout(PATIENCE, reconciler.sync(&state.outcome, &state.ignored)).await;
    let (mut handle, events) = verifier.await.expect("the API server saw what it expected");
    // Everything the sync sends, it sends before returning: anything queued now is unexpected.
    if let Ok(Some((request, _))) =
        tokio::time::timeout(Duration::from_millis(50), handle.next_request()).await
    {
        panic!("unexpected request {} {}", request.method(), request.uri());
    }
    let result = result.expect("sync finished in time");
    (result, handle, events)
}

fn metric_line(metrics: &DiscoveryMetrics, prefix: &str) -> String {
    let text = metrics.encode().expect("metrics encode");
    text.lines()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no {prefix} in\n{text}"))
        .to_owned()
}

// ----- the cases ----------------------------------------------------------------------------

fn two_teams() -> Vec<Job> {
    vec![
        template_job(
            "team-a",
            "schema",
            "lifecycle.upsert,lifecycle.delete",
            "registry.example/schema:1",
        ),
        template_job(
            "team-b",
            "cache",
            "lifecycle.upsert",
            "registry.example/cache:1",
        ),
    ]
}

#[tokio::test]
async fn first_sync_applies_every_desired_template_with_server_side_apply() {
    let state = desired(&two_teams());
    assert!(
        state.outcome.problems.is_empty(),
        "{:?}",
        state.outcome.problems
    );
    assert_eq!(state.outcome.templates.len(), 5, "five configured actions");
    let (client, handle) = mock_client();
    let (mut reconciler, metrics) = reconciler(client);

    let mut expected = vec![Expected::ListTemplates(vec![])];
    expected.extend(
        state
            .outcome
            .templates
            .values()
            .cloned()
            .map(Expected::Apply),
    );
    let (result, _, events) = sync_against(&mut reconciler, handle, &state, expected).await;

    let report = result.expect("sync succeeds");
    assert_eq!(
        report.applied,
        names(["admin", "delete", "migrate-in", "migrate-out", "upsert"])
    );
    assert!(report.unchanged.is_empty() && report.pruned.is_empty());
    assert_eq!(report.events, 0);
    assert!(events.is_empty());
    assert_eq!(
        metric_line(&metrics, "tenant_gateway_discovery_applies_total"),
        "tenant_gateway_discovery_applies_total 5"
    );
}

#[tokio::test]
async fn an_unchanged_resync_sends_only_the_list() {
    let state = desired(&two_teams());
    let (client, handle) = mock_client();
    let (mut reconciler, metrics) = reconciler(client);

    let expected = vec![Expected::ListTemplates(live_templates(&state))];
    let (result, _, _) = sync_against(&mut reconciler, handle, &state, expected).await;

    let report = result.expect("sync succeeds");
    assert!(report.applied.is_empty(), "{report:?}");
    assert_eq!(report.unchanged.len(), 5);
    assert_eq!(
        metric_line(&metrics, "tenant_gateway_discovery_applies_total"),
        "tenant_gateway_discovery_applies_total 0"
    );
}

#[tokio::test]
async fn a_changed_job_reapplies_only_its_action() {
    let before = desired(&[
        template_job(
            "team-a",
            "schema",
            "lifecycle.upsert",
            "registry.example/schema:1",
        ),
        template_job(
            "team-b",
            "cache",
            "lifecycle.delete",
            "registry.example/cache:1",
        ),
    ]);
    let after = desired(&[
        template_job(
            "team-a",
            "schema",
            "lifecycle.upsert",
            "registry.example/schema:2",
        ),
        template_job(
            "team-b",
            "cache",
            "lifecycle.delete",
            "registry.example/cache:1",
        ),
    ]);
    let (client, handle) = mock_client();
    let (mut reconciler, _) = reconciler(client);

    let expected = vec![
        Expected::ListTemplates(live_templates(&before)),
        Expected::Apply(after.outcome.templates["upsert"].clone()),
    ];
    let (result, _, _) = sync_against(&mut reconciler, handle, &after, expected).await;

    let report = result.expect("sync succeeds");
    assert_eq!(report.applied, names(["upsert"]));
    assert_eq!(
        report.unchanged,
        names(["admin", "delete", "migrate-in", "migrate-out"])
    );
}

#[tokio::test]
async fn a_removed_action_is_pruned_while_a_problem_action_keeps_its_last_good_template() {
    // Before: a team also took part in an extra action, `reindex`, and upsert rendered fine.
    let before = desired(&[
        template_job(
            "team-a",
            "schema",
            "lifecycle.upsert,lifecycle.reindex",
            "registry.example/schema:1",
        ),
        template_job(
            "team-b",
            "cache",
            "lifecycle.upsert",
            "registry.example/cache:1",
        ),
    ]);
    assert!(before.outcome.templates.contains_key("reindex"));
    // After: reindex is gone, and upsert cannot render (cache depends on a Job that is not a
    // template), so upsert must keep what it had.
    let after = desired(&[
        template_job(
            "team-a",
            "schema",
            "lifecycle.upsert",
            "registry.example/schema:1",
        ),
        with_annotation(
            template_job(
                "team-b",
                "cache",
                "lifecycle.upsert",
                "registry.example/cache:1",
            ),
            "tenant-gateway.io/depends-on",
            "team-c/missing",
        ),
    ]);
    assert!(
        after.outcome.problems.contains_key("upsert"),
        "{:?}",
        after.outcome.problems
    );
    let (client, handle) = mock_client();
    let (mut reconciler, metrics) = reconciler(client);

    let expected = vec![
        Expected::ListTemplates(live_templates(&before)),
        Expected::Delete(template_name("reindex")),
    ];
    let (result, _, _) = sync_against(&mut reconciler, handle, &after, expected).await;

    let report = result.expect("sync succeeds");
    assert_eq!(report.pruned, names(["reindex"]));
    assert_eq!(report.kept_last_good, names(["upsert"]));
    assert!(report.applied.is_empty(), "{report:?}");
    assert_eq!(
        metric_line(&metrics, "tenant_gateway_discovery_prunes_total"),
        "tenant_gateway_discovery_prunes_total 1"
    );
}

#[tokio::test]
async fn an_annotated_job_that_is_not_suspended_gets_one_event() {
    let jobs = vec![
        template_job(
            "team-a",
            "schema",
            "lifecycle.upsert",
            "registry.example/schema:1",
        ),
        job_value(
            "team-c",
            "runner",
            "lifecycle.upsert",
            "registry.example/runner:1",
            false,
        ),
    ];
    let state = desired(&jobs);
    assert_eq!(state.ignored.len(), 1, "{:?}", state.ignored);
    let (client, handle) = mock_client();
    let (mut reconciler, metrics) = reconciler(client);

    // First sync: templates unchanged, one Event on the ignored Job.
    let expected = vec![
        Expected::ListTemplates(live_templates(&state)),
        Expected::Event {
            namespace: "team-c".into(),
            job: "runner".into(),
        },
    ];
    let (result, handle, events) = sync_against(&mut reconciler, handle, &state, expected).await;
    assert_eq!(result.expect("sync succeeds").events, 1);
    let event = &events[0];
    assert_eq!(event["type"], "Warning");
    assert_eq!(event["reason"], IGNORED_EVENT_REASON);
    assert_eq!(event["reportingController"], REPORTING_CONTROLLER);
    assert_eq!(event["reportingInstance"], "test-pod");
    assert_eq!(event["regarding"]["uid"], "uid-team-c-runner");
    assert_eq!(event["regarding"]["apiVersion"], "batch/v1");
    assert_eq!(event["metadata"]["generateName"], "runner.");
    assert!(event["eventTime"].is_string(), "{event}");
    let note = event["note"].as_str().expect("note");
    assert!(note.contains("spec.suspend"), "the team learns why: {note}");

    // Second sync with the same Jobs: no second Event.
    let expected = vec![Expected::ListTemplates(live_templates(&state))];
    let (result, _, events) = sync_against(&mut reconciler, handle, &state, expected).await;
    assert_eq!(result.expect("sync succeeds").events, 0);
    assert!(events.is_empty());
    assert_eq!(
        metric_line(&metrics, "tenant_gateway_discovery_events_total"),
        "tenant_gateway_discovery_events_total 1"
    );
}

#[tokio::test]
async fn a_job_ignored_again_after_being_fixed_is_reported_again() {
    let broken = desired(&[job_value(
        "team-c",
        "runner",
        "lifecycle.upsert",
        "img:1",
        false,
    )]);
    let fixed = desired(&[template_job(
        "team-c",
        "runner",
        "lifecycle.upsert",
        "img:1",
    )]);
    let (client, handle) = mock_client();
    let (mut reconciler, _) = reconciler(client);
    let event = || Expected::Event {
        namespace: "team-c".into(),
        job: "runner".into(),
    };

    let (r, handle, _) = sync_against(
        &mut reconciler,
        handle,
        &broken,
        vec![Expected::ListTemplates(live_templates(&broken)), event()],
    )
    .await;
    assert_eq!(r.expect("sync").events, 1);
    let (r, handle, _) = sync_against(
        &mut reconciler,
        handle,
        &fixed,
        vec![Expected::ListTemplates(live_templates(&fixed))],
    )
    .await;
    assert_eq!(r.expect("sync").events, 0);
    let (r, _, _) = sync_against(
        &mut reconciler,
        handle,
        &broken,
        vec![Expected::ListTemplates(live_templates(&broken)), event()],
    )
    .await;
    assert_eq!(r.expect("sync").events, 1, "a relapse is news to the team");
}

#[tokio::test]
async fn a_failed_apply_does_not_stop_the_others_and_fails_the_sync_for_a_retry() {
    let state = desired(&two_teams());
    let (client, handle) = mock_client();
    let (mut reconciler, metrics) = reconciler(client);

    let mut expected = vec![Expected::ListTemplates(vec![])];
    for (action, template) in &state.outcome.templates {
        expected.push(if action == "admin" {
            Expected::ApplyFails(template_name(action))
        } else {
            Expected::Apply(template.clone())
        });
    }
    let (result, _, _) = sync_against(&mut reconciler, handle, &state, expected).await;

    match result {
        Err(ReconcileError::Incomplete { report, failures }) => {
            assert_eq!(report.applied.len(), 4);
            assert_eq!(failures.len(), 1);
            assert_eq!(failures[0].name, template_name("admin"));
        }
        other => panic!("expected an incomplete sync, got {other:?}"),
    }
    assert_eq!(
        metric_line(&metrics, "tenant_gateway_discovery_errors_total"),
        "tenant_gateway_discovery_errors_total{stage=\"sync\"} 1"
    );
}

/// The whole loop with `--once`: lists Jobs with the template label, waits for the initial
/// list, syncs once and returns. The fake API server answers by route here, because the Job
/// watch and the sync run concurrently.
#[tokio::test]
async fn once_watches_labelled_jobs_syncs_and_exits() {
    let jobs = two_teams();
    let state = desired(&jobs);
    let (client, mut handle) = mock_client();
    let args = DiscoverSettings {
        once: true,
        listen: "127.0.0.1:0".parse().expect("address"),
        debounce: Duration::from_millis(10),
        ..discover_settings()
    };
    let job_items: Vec<Value> = jobs
        .iter()
        .map(|j| serde_json::to_value(j).expect("json"))
        .collect();
    let server = tokio::spawn(async move {
        let mut applied = Vec::new();
        let mut job_lists = 0;
        // Open watches are held, never answered, until the client goes away.
        let mut open_watches = Vec::new();
        while let Some((request, send)) = handle.next_request().await {
            let (path, query) = split_uri(request.uri());
            match (request.method().clone(), path.as_str()) {
                (Method::GET, "/apis/batch/v1/jobs") => {
                    assert_eq!(
                        query.get("labelSelector").map(String::as_str),
                        Some("tenant-gateway.io/template=true")
                    );
                    if query.get("watch").map(String::as_str) == Some("true") {
                        open_watches.push(send);
                    } else {
                        job_lists += 1;
                        let list = json!({
                            "apiVersion": "batch/v1", "kind": "JobList",
                            "metadata": {"resourceVersion": "7"}, "items": job_items,
                        });
                        respond(send, StatusCode::OK, &list);
                    }
                }
                (Method::GET, TEMPLATES_PATH) => {
                    let list = json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "WorkflowTemplateList", "metadata": {}, "items": []});
                    respond(send, StatusCode::OK, &list);
                }
                (Method::PATCH, p) if p.starts_with(TEMPLATES_PATH) => {
                    let body = body_json(request).await;
                    applied.push(
                        body["metadata"]["name"]
                            .as_str()
                            .unwrap_or_default()
                            .to_owned(),
                    );
                    respond(send, StatusCode::OK, &as_live(&body));
                }
                (method, _) => panic!("unexpected request {method} {}", request.uri()),
            }
        }
        (applied, job_lists)
    });

    tokio::time::timeout(PATIENCE, watch::run(args, client, std::future::pending()))
        .await
        .expect("--once returns")
        .expect("--once succeeds");
    let (applied, job_lists) = tokio::time::timeout(PATIENCE, server)
        .await
        .expect("the client is dropped after --once")
        .expect("the fake API server saw only expected requests");
    assert_eq!(job_lists, 1);
    let expected: Vec<String> = state
        .outcome
        .templates
        .values()
        .map(|t| {
            t["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    assert_eq!(applied, expected);
}

/// Runs discovery once against the cluster of the current kubeconfig. Read-only (`--dry-run`)
/// unless `TENANT_GATEWAY_IT_APPLY=1`; the usual `TENANT_GATEWAY_*` variables of `discover`
/// (namespaces, workflow namespace, annotation key) apply. See docs/discovery-operations.md.
#[tokio::test]
#[ignore = "needs a Kubernetes cluster in the current kubeconfig"]
async fn discovery_runs_once_against_the_current_kubeconfig() {
    let client = Client::try_default()
        .await
        .expect("a kubeconfig or in-cluster configuration");
    let apply = std::env::var("TENANT_GATEWAY_IT_APPLY").is_ok_and(|v| v == "1");
    let args = DiscoverSettings {
        once: true,
        dry_run: !apply,
        listen: "127.0.0.1:0".parse().expect("address"),
        ..DiscoverSettings::default()
    };
    tokio::time::timeout(
        Duration::from_secs(120),
        watch::run(args, client, std::future::pending()),
    )
    .await
    .expect("discovery --once finished within 2 minutes")
    .expect("discovery --once succeeded");
}
