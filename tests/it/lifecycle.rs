//! The loop closed, end to end and without a cluster (docs/lifecycle-outcomes.md): the real
//! `serve` binary with the webhook sink, `watch-workflows` pointed at a fake API server
//! ([`FakeArgo`]) through `KUBECONFIG`, `[notify]` pointed at an upstream receiver, and in the
//! test a fake "Argo" ([`FakeSensor`]) that turns each delivered emission into a Workflow, as the
//! Sensor does, whose phases the test then moves.
//!
//! What is asserted is what an operator and an upstream system see: the admin API's event
//! detail, tenant state and registry, the CLI's replay, the signed completion events, and the
//! per-tenant order `await-workflow` gives; then that a restart while Workflows run loses no
//! completion event and sends none under two ids.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use base64::Engine as _;
use serde_json::{json, Value};
use tenant_gateway::ingest::signature::{self, SignatureHeaders};
use tokio::sync::watch;

use crate::support::argo_webhook::{ArgoWebhook, Behaviour, Received};
use crate::support::fake_argo::FakeArgo;
use crate::support::{lifecycle_event, GatewayProcess};

/// Long enough for any wait here on a loaded machine; a test that reaches it has failed.
const WAIT: Duration = Duration::from_secs(120);

/// The namespace the Sensors create Workflows in.
const NAMESPACE: &str = "argo";

/// The signing key of `[notify]`, as raw bytes (the file holds `whsec_<base64>`).
const NOTIFY_KEY: &[u8] = b"completion-events-signing-key-32b";

/// A Workflow the fake Sensor created for one delivered emission.
#[derive(Debug, Clone)]
struct Created {
    /// Its name: the emission's `workflowName`.
    name: String,
    /// The emission id (the delivered CloudEvent's `id`).
    emission: String,
    /// The tenant and action from the emission's data.
    tenant: String,
    action: String,
}

/// Stands in for the Argo Sensor and workflow controller: each emission the sink receives
/// becomes a Workflow in the fake API server, labelled as `sensors/webhook/sensor.yaml` labels
/// it (a redelivery of an emission finds its Workflow and changes nothing, as `operation:
/// patch` does); Workflows of tenants in `auto_succeed` run and succeed at once, the others wait
/// for the test to move them.
struct FakeSensor {
    /// Every Workflow created, in creation order; bumped on `created_count`.
    created: Arc<Mutex<Vec<Created>>>,
    created_count: watch::Receiver<usize>,
    argo: Arc<FakeArgo>,
    task: tokio::task::JoinHandle<()>,
}

impl FakeSensor {
    fn start(hook: Arc<ArgoWebhook>, argo: Arc<FakeArgo>, auto_succeed: &[&str]) -> FakeSensor {
        let created = Arc::new(Mutex::new(Vec::<Created>::new()));
        let (count_tx, created_count) = watch::channel(0);
        let auto: BTreeSet<String> = auto_succeed.iter().map(|t| (*t).to_owned()).collect();
        let task = {
            let (created, argo) = (created.clone(), argo.clone());
            tokio::spawn(async move {
                let mut seen = 0;
                loop {
                    let requests = hook.wait_for(seen + 1, Duration::from_secs(3600)).await;
                    for request in &requests[seen..] {
                        let Some(body) = request.json.as_ref().filter(|_| request.status == 200)
                        else {
                            continue;
                        };
                        let made = Created {
                            name: text(&body["data"]["workflowName"]),
                            emission: text(&body["id"]),
                            tenant: text(&body["data"]["tenant"]),
                            action: text(&body["data"]["action"]),
                        };
                        let mut list = created.lock().unwrap_or_else(PoisonError::into_inner);
                        if list.iter().any(|c| c.name == made.name) {
                            continue;
                        }
                        argo.apply(workflow_object(&made, None));
                        if auto.contains(&made.tenant) {
                            argo.apply(workflow_object(&made, Some(("Running", None))));
                            argo.apply(workflow_object(&made, Some(("Succeeded", None))));
                        }
                        list.push(made);
                        count_tx.send_replace(list.len());
                    }
                    seen = requests.len();
                }
            })
        };
        FakeSensor {
            created,
            created_count,
            argo,
            task,
        }
    }

    /// Waits until the Workflow of the delivered emission of (`tenant`, `action`) numbered
    /// `nth` (0: its first) exists.
    async fn workflow_of(&self, tenant: &str, action: &str, nth: usize) -> Created {
        let find = || {
            self.created
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .iter()
                .filter(|c| c.tenant == tenant && c.action == action)
                .nth(nth)
                .cloned()
        };
        let mut count = self.created_count.clone();
        let waited = tokio::time::timeout(WAIT, count.wait_for(|_| find().is_some())).await;
        assert!(
            waited.is_ok(),
            "no Workflow #{nth} of {tenant} {action}; created: {:?}",
            self.created()
        );
        find().expect("found")
    }

    fn created(&self) -> Vec<Created> {
        self.created
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Moves a Workflow to `phase` (with Argo's times, and a message for a failure).
    fn set_phase(&self, workflow: &Created, phase: &str, message: Option<&str>) {
        self.argo
            .apply(workflow_object(workflow, Some((phase, message))));
    }
}

impl Drop for FakeSensor {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn text(value: &Value) -> String {
    value.as_str().unwrap_or_default().to_owned()
}

/// The Workflow the Sensor creates for `made`, with a status when given.
fn workflow_object(made: &Created, status: Option<(&str, Option<&str>)>) -> Value {
    let mut object = json!({
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Workflow",
        "metadata": {
            "name": made.name,
            "labels": {
                "tenant-gateway.io/emission-id": made.emission,
                "tenant-gateway.io/tenant": made.tenant,
                "tenant-gateway.io/action": made.action,
            },
        },
        "spec": {"workflowTemplateRef": {"name": format!("tenant-lifecycle-{}", made.action)}},
    });
    if let Some((phase, message)) = status {
        let mut status = json!({"phase": phase, "startedAt": "2026-12-02T10:00:00Z"});
        if matches!(phase, "Succeeded" | "Failed" | "Error") {
            status["finishedAt"] = json!("2026-12-02T10:03:00Z");
        }
        if let Some(message) = message {
            status["message"] = json!(message);
        }
        object["status"] = status;
    }
    object
}

/// The gateway under test and what it talks to.
struct Loop {
    gateway: GatewayProcess,
    client: reqwest::Client,
}

/// Writes the configuration and starts `serve` on `store` (a SQLite file).
fn start_gateway(
    dir: &Path,
    store: &Path,
    hook: &ArgoWebhook,
    upstream: &ArgoWebhook,
    argo: &FakeArgo,
    await_workflow: bool,
) -> Loop {
    let secret = dir.join("notify-secret");
    std::fs::write(
        &secret,
        format!(
            "whsec_{}",
            base64::engine::general_purpose::STANDARD.encode(NOTIFY_KEY)
        ),
    )
    .expect("write the signing secret");
    let config = dir.join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            "instance-uri = \"urn:tenant-gateway:e2e\"\n\
             watch-workflows = true\n\
             workflow-namespace = \"{NAMESPACE}\"\n\
             argo-ui-url = \"https://argo.example\"\n\
             [sink]\nkind = \"webhook\"\nurl = \"{}\"\n\
             [dispatch]\ninitial-backoff = \"10ms\"\nawait-workflow = {await_workflow}\n\
             [notify]\nurl = \"{}\"\nsigning-secret-file = \"{}\"\ntimeout = \"5s\"\n",
            hook.url(),
            upstream.url(),
            secret.display()
        ),
    )
    .expect("write the configuration");
    let kubeconfig = argo.write_kubeconfig(dir);
    let gateway = GatewayProcess::start_with_env(
        store,
        &["--config", config.to_str().expect("UTF-8 path")],
        &[("KUBECONFIG", kubeconfig.to_str().expect("UTF-8 path"))],
    );
    Loop {
        gateway,
        client: reqwest::Client::new(),
    }
}

impl Loop {
    async fn post(&self, id: &str, tenant: &str, action: &str) -> String {
        let response = self
            .client
            .post(self.gateway.url("/events"))
            .header("content-type", "application/cloudevents+json")
            .body(lifecycle_event(id, tenant, action).to_string())
            .send()
            .await
            .expect("post an event");
        assert_eq!(response.status(), 202, "{id}");
        let body: Value = response.json().await.expect("JSON");
        text(&body["events"][0]["eventId"])
    }

    async fn admin(&self, path: &str) -> Value {
        let response = self
            .client
            .get(format!("http://{}{path}", self.gateway.admin_addr))
            .send()
            .await
            .expect("admin API");
        assert_eq!(response.status(), 200, "{path}");
        response.json().await.expect("JSON")
    }

    /// Polls an admin resource until `done` holds (state the gateway reaches on its own, with
    /// no event to wait on from outside): a deadline, never a fixed sleep.
    async fn admin_until(&self, path: &str, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let body = self.admin(path).await;
            if done(&body) {
                return body;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{path} never got there: {body}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Runs the CLI against the admin listener: (success, stdout, stderr).
    async fn cli(&self, args: &[&str]) -> (bool, String, String) {
        let server = format!("http://{}", self.gateway.admin_addr);
        let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
        let output = tokio::task::spawn_blocking(move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_tenant-gateway"))
                .args(&args)
                .args(["--server", &server])
                .env_remove("TENANT_GATEWAY_ADMIN_TOKEN")
                .env_remove("TENANT_GATEWAY_ADMIN_TOKEN_FILE")
                .output()
                .expect("run the CLI")
        })
        .await
        .expect("CLI thread");
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    }
}

/// Deliveries the sink took, as (tenant, action, emission id), in arrival order.
fn deliveries(hook: &ArgoWebhook) -> Vec<(String, String, String)> {
    hook.requests()
        .iter()
        .filter(|r| r.status == 200)
        .filter_map(|r| r.json.as_ref())
        .map(|body| {
            (
                text(&body["data"]["tenant"]),
                text(&body["data"]["action"]),
                text(&body["id"]),
            )
        })
        .collect()
}

/// Checks a completion event's Standard Webhooks signature with the project's verifier and
/// that `webhook-id` is the CloudEvent `id`; returns the event.
fn verified_completion(request: &Received) -> Value {
    let event = request.json.clone().expect("a JSON completion event");
    let id = request.header("webhook-id").expect("webhook-id");
    assert_eq!(id, text(&event["id"]), "webhook-id is the CloudEvent id");
    let headers = SignatureHeaders {
        id: Some(id.as_bytes()),
        timestamp: request.header("webhook-timestamp").map(str::as_bytes),
        signature: request.header("webhook-signature").map(str::as_bytes),
    };
    signature::verify(
        &[NOTIFY_KEY],
        headers,
        &request.body,
        chrono::Utc::now().timestamp(),
        300,
    )
    .expect("the completion event's signature verifies");
    event
}

/// Completion events the upstream receiver accepted, by (tenant, action, outcome).
fn completions(upstream: &ArgoWebhook) -> BTreeMap<(String, String, String), Vec<Value>> {
    let mut by_step: BTreeMap<_, Vec<Value>> = BTreeMap::new();
    for request in upstream.requests().iter().filter(|r| r.status == 200) {
        let event = verified_completion(request);
        let outcome = text(&event["type"])
            .rsplit('.')
            .next()
            .unwrap_or_default()
            .to_owned();
        by_step
            .entry((
                text(&event["data"]["tenant"]),
                text(&event["data"]["action"]),
                outcome,
            ))
            .or_default()
            .push(event);
    }
    by_step
}

/// Waits until the upstream receiver accepted `n` completion events.
async fn completions_received(upstream: &ArgoWebhook, n: usize) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while upstream
        .requests()
        .iter()
        .filter(|r| r.status == 200)
        .count()
        < n
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "expected {n} completion events, got {:?}",
            completions(upstream).keys().collect::<Vec<_>>()
        );
        upstream.wait_for(upstream.requests().len() + 1, WAIT).await;
    }
}

fn tenant_names(page: &Value) -> Vec<String> {
    page["tenants"]
        .as_array()
        .expect("tenants")
        .iter()
        .map(|t| text(&t["tenant"]))
        .collect()
}

/// The whole story on one gateway with `await-workflow`: Workflows tracked into the
/// event detail and the tenant state, the registry's filters, signed completion events, a
/// tenant's next emission held until its Workflow finished while another tenant's go, a failed
/// Workflow parking its tenant, and `replay --workflow-phase Failed` recovering it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workflows_are_followed_to_their_outcome_in_tenant_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hook = Arc::new(ArgoWebhook::start().await);
    let upstream = ArgoWebhook::start().await;
    let argo = Arc::new(FakeArgo::start(NAMESPACE).await);
    let sensor = FakeSensor::start(hook.clone(), argo.clone(), &["beta"]);
    let gw = start_gateway(
        dir.path(),
        &dir.path().join("journal.db"),
        &hook,
        &upstream,
        &argo,
        true,
    );

    // acme's first lifecycle runs; its second waits for it.
    let a1 = gw.post("a-1", "acme", "upsert").await;
    let a2 = gw.post("a-2", "acme", "migrate-out").await;
    let acme_upsert = sensor.workflow_of("acme", "upsert", 0).await;
    sensor.set_phase(&acme_upsert, "Running", None);
    let running = gw
        .admin_until(&format!("/admin/v1/events/{a1}"), |e| {
            e["emissions"][0]["workflow"]["phase"] == "Running"
        })
        .await;
    let workflow = &running["emissions"][0]["workflow"];
    assert_eq!(workflow["name"], acme_upsert.name.as_str());
    assert_eq!(workflow["startedAt"], "2026-12-02T10:00:00Z");
    assert!(workflow["finishedAt"].is_null());
    assert_eq!(
        workflow["url"],
        format!(
            "https://argo.example/workflows/{NAMESPACE}/{}",
            acme_upsert.name
        )
        .as_str()
    );
    let state = gw.admin("/admin/v1/tenants/acme").await;
    assert_eq!(state["state"]["lastAction"], "upsert");
    assert_eq!(state["state"]["lastOutcome"], "running");
    assert_eq!(state["state"]["lifecycle"], "unknown");

    // Another tenant is never held: beta's two lifecycles run one after the other meanwhile.
    gw.post("b-1", "beta", "upsert").await;
    gw.post("b-2", "beta", "admin").await;
    completions_received(&upstream, 2).await;
    assert!(
        !deliveries(&hook).iter().any(|(_, _, id)| *id == a2),
        "acme's second emission went before its first Workflow finished: {:?}",
        deliveries(&hook)
    );
    let order: Vec<(String, String)> = deliveries(&hook)
        .into_iter()
        .map(|(tenant, action, _)| (tenant, action))
        .collect();
    assert_eq!(
        order,
        [("acme", "upsert"), ("beta", "upsert"), ("beta", "admin")]
            .map(|(t, a)| (t.to_owned(), a.to_owned()))
    );

    // acme's upsert succeeds: its migrate-out goes, and then fails.
    sensor.set_phase(&acme_upsert, "Succeeded", None);
    let acme_migrate = sensor.workflow_of("acme", "migrate-out", 0).await;
    assert_eq!(acme_migrate.emission, a2);
    let a3 = gw.post("a-3", "acme", "upsert").await;
    sensor.set_phase(&acme_migrate, "Failed", Some("child 'drain' failed"));
    let parked = gw
        .admin_until("/admin/v1/tenants/acme", |t| t["parked"] == true)
        .await;
    let reason = text(&parked["parkedReason"]);
    assert!(
        reason.contains(&acme_migrate.name) && reason.contains("Failed"),
        "{reason}"
    );
    assert!(reason.contains("child 'drain' failed"), "{reason}");
    assert_eq!(parked["state"]["lastAction"], "migrate-out");
    assert_eq!(parked["state"]["lastOutcome"], "failed");
    assert_eq!(parked["state"]["lifecycle"], "active");
    let failed = gw.admin(&format!("/admin/v1/events/{a2}")).await;
    assert_eq!(failed["event"]["status"], "dead");
    assert_eq!(failed["emissions"][0]["workflow"]["phase"], "Failed");
    assert_eq!(
        failed["emissions"][0]["workflow"]["message"],
        "child 'drain' failed"
    );

    // The registry and its filters.
    let all = gw.admin("/admin/v1/tenants").await;
    assert_eq!(tenant_names(&all), ["acme", "beta"]);
    let failed_tenants = gw.admin("/admin/v1/tenants?outcome=failed").await;
    assert_eq!(tenant_names(&failed_tenants), ["acme"]);
    let active = gw.admin("/admin/v1/tenants?lifecycle=active").await;
    assert_eq!(tenant_names(&active), ["acme", "beta"]);
    let by_admin = gw.admin("/admin/v1/tenants?action=admin").await;
    assert_eq!(tenant_names(&by_admin), ["beta"]);
    assert_eq!(by_admin["tenants"][0]["state"]["lastOutcome"], "succeeded");

    // Recovery: the dry run counts exactly the failed one, the replay retries it in its place.
    let (ok, out, err) = gw
        .cli(&[
            "replay",
            "--workflow-phase",
            "Failed",
            "--dry-run",
            "-o",
            "json",
        ])
        .await;
    assert!(ok, "{err}");
    let dry: Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(dry["count"], 1, "{dry}");
    let (ok, _, err) = gw
        .cli(&["replay", "--workflow-phase", "Failed", "--yes"])
        .await;
    assert!(ok, "{err}");
    let replayed = sensor.workflow_of("acme", "migrate-out", 1).await;
    assert_ne!(replayed.emission, a2, "a replay is a new emission");
    assert!(
        !deliveries(&hook).iter().any(|(_, _, id)| *id == a3),
        "acme's waiting upsert went before the replay's Workflow finished"
    );
    sensor.set_phase(&replayed, "Succeeded", None);
    let last = sensor.workflow_of("acme", "upsert", 1).await;
    assert_eq!(last.emission, a3);
    sensor.set_phase(&last, "Succeeded", None);
    let recovered = gw
        .admin_until("/admin/v1/tenants/acme", |t| {
            t["state"]["lastAction"] == "upsert" && t["state"]["lastOutcome"] == "succeeded"
        })
        .await;
    assert_eq!(recovered["parked"], false);
    assert_eq!(recovered["state"]["lifecycle"], "active");

    // Upstream heard of every end, once each, signed, with the documented attributes.
    completions_received(&upstream, 6).await;
    let heard = completions(&upstream);
    let steps: Vec<(&str, &str, &str)> = heard
        .keys()
        .map(|(t, a, o)| (t.as_str(), a.as_str(), o.as_str()))
        .collect();
    assert_eq!(
        steps,
        [
            ("acme", "migrate-out", "failed"),
            ("acme", "migrate-out", "succeeded"),
            ("acme", "upsert", "succeeded"),
            ("beta", "admin", "succeeded"),
            ("beta", "upsert", "succeeded"),
        ]
    );
    assert_eq!(
        heard[&("acme".into(), "upsert".into(), "succeeded".into())].len(),
        2
    );
    let failure = &heard[&("acme".into(), "migrate-out".into(), "failed".into())][0];
    assert_eq!(failure["type"], "lifecycle.migrate-out.failed");
    assert_eq!(failure["source"], "urn:tenant-gateway:e2e");
    assert_eq!(failure["subject"], "acme");
    assert_eq!(failure["data"]["eventId"], a2.as_str());
    assert_eq!(failure["data"]["emissionId"], a2.as_str());
    assert_eq!(failure["data"]["workflowName"], acme_migrate.name.as_str());
    assert_eq!(failure["data"]["phase"], "Failed");
    assert_eq!(failure["data"]["message"], "child 'drain' failed");
    assert_eq!(failure["data"]["origin"]["id"], "a-2");
    let retried = &heard[&("acme".into(), "migrate-out".into(), "succeeded".into())][0];
    assert_eq!(retried["data"]["eventId"], a2.as_str(), "the stored event");
    assert_eq!(
        retried["data"]["emissionId"],
        replayed.emission.as_str(),
        "the replay's emission"
    );
    let ids: BTreeSet<String> = heard.values().flatten().map(|e| text(&e["id"])).collect();
    assert_eq!(ids.len(), 6, "six completions, six ids");
}

/// A restart while Workflows run and upstream is down: after it, every completion reaches
/// upstream, each under the one id fixed when it was recorded (every attempt's `webhook-id`),
/// and nothing is recorded or sent twice as two events.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_while_workflows_run_loses_and_doubles_no_completion() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("journal.db");
    let hook = Arc::new(ArgoWebhook::start().await);
    let upstream = ArgoWebhook::start().await;
    upstream.set_default(Behaviour::Status(503));
    let argo = Arc::new(FakeArgo::start(NAMESPACE).await);
    let sensor = FakeSensor::start(hook.clone(), argo.clone(), &[]);
    let gw = start_gateway(dir.path(), &store, &hook, &upstream, &argo, false);
    for tenant in ["t1", "t2", "t3"] {
        gw.post(&format!("{tenant}-1"), tenant, "upsert").await;
    }
    let mut workflows = Vec::new();
    for tenant in ["t1", "t2", "t3"] {
        let workflow = sensor.workflow_of(tenant, "upsert", 0).await;
        sensor.set_phase(&workflow, "Running", None);
        workflows.push(workflow);
    }
    // Two finish while the gateway runs; upstream refuses their completion events.
    sensor.set_phase(&workflows[0], "Succeeded", None);
    sensor.set_phase(&workflows[1], "Failed", Some("quota exceeded"));
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let tried: BTreeSet<String> = upstream
            .requests()
            .iter()
            .filter_map(|r| r.json.as_ref())
            .map(|e| text(&e["subject"]))
            .collect();
        if tried.contains("t1") && tried.contains("t2") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no attempts: {tried:?}"
        );
        upstream.wait_for(upstream.requests().len() + 1, WAIT).await;
    }
    drop(gw); // SIGKILL: no drain, nothing flushed on the way out.

    // The third finishes while the gateway is down; upstream recovers.
    sensor.set_phase(&workflows[2], "Succeeded", None);
    upstream.set_default(Behaviour::Accept);
    let gw = start_gateway(dir.path(), &store, &hook, &upstream, &argo, false);
    completions_received(&upstream, 3).await;
    for workflow in &workflows {
        gw.admin_until(&format!("/admin/v1/events/{}", workflow.emission), |e| {
            e["emissions"][0]["workflow"]["phase"] != "Running"
        })
        .await;
    }

    // Every attempt of one completion carries its one id; one id per completion.
    let mut ids_by_emission: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for request in upstream.requests() {
        let event = request.json.clone().expect("JSON");
        assert_eq!(
            request.header("webhook-id"),
            event["id"].as_str(),
            "webhook-id is the CloudEvent id on every attempt"
        );
        ids_by_emission
            .entry(text(&event["data"]["emissionId"]))
            .or_default()
            .insert(text(&event["id"]));
    }
    assert_eq!(ids_by_emission.len(), 3, "{ids_by_emission:?}");
    for (emission, ids) in &ids_by_emission {
        assert_eq!(ids.len(), 1, "{emission} was sent under two ids: {ids:?}");
    }
    let accepted = completions(&upstream);
    assert!(
        accepted.values().all(|events| events.len() == 1),
        "a completion was delivered twice after the restart: {accepted:?}"
    );
    assert_eq!(
        accepted
            .keys()
            .map(|(t, _, o)| (t.as_str(), o.as_str()))
            .collect::<Vec<_>>(),
        [("t1", "succeeded"), ("t2", "failed"), ("t3", "succeeded")]
    );
    drop(gw);
}
