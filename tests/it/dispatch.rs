//! The dispatcher end to end: events posted to the gateway reach a fake Argo webhook EventSource
//! or a real JetStream EventBus, in sequence per tenant, with retries, dead events, parked
//! tenants, restarts, metrics and readiness.

use std::collections::BTreeMap;
use std::time::Duration;

use async_nats::jetstream::consumer;
use futures_util::StreamExt;
use serde_json::{json, Value};
use tenant_gateway::config::Settings;
use tenant_gateway::dispatch::sinks::{EventbusConfig, SinkConfig, WebhookConfig};
use tenant_gateway::dispatch::RetryPolicy;
use tenant_gateway::journal::{AttemptOutcome, EventStatus};

use crate::support::argo_webhook::{ArgoWebhook, Behaviour, Received};
use crate::support::nats::{create_argo_stream, eventbus_config, NatsServer};
use crate::support::{lifecycle_event, TestApp};

/// Long enough for any wait here; a test that reaches it has failed.
const WAIT: Duration = Duration::from_secs(30);

/// Test settings: the webhook sink on `hook`, quick retries, a short client timeout.
pub(crate) fn webhook_settings(hook: &ArgoWebhook) -> impl FnOnce(&mut Settings) {
    let url = hook.url();
    move |settings| {
        settings.sink = SinkConfig::Webhook(WebhookConfig {
            url,
            token_file: None,
            timeout: Duration::from_millis(500),
        });
        settings.dispatch.retry = RetryPolicy {
            initial_backoff: Duration::from_millis(5),
            max_backoff: Duration::from_millis(50),
            retry_limit: Duration::from_secs(3600),
        };
        settings.dispatch.instance_source = "urn:tenant-gateway:test".into();
    }
}

pub(crate) async fn post(app: &TestApp, event: &Value) {
    let resp = app.post_structured(event).await;
    assert_eq!(
        resp.status().as_u16(),
        202,
        "{}",
        resp.text().await.unwrap_or_default()
    );
}

/// (tenant, sequence, upstream id) of a request the fake received.
fn delivered(request: &Received) -> (String, i64, String) {
    let event = request.json.as_ref().expect("JSON body");
    (
        event["tenant"]
            .as_str()
            .expect("tenant extension")
            .to_owned(),
        event["sequence"].as_i64().expect("sequence extension"),
        event["originid"]
            .as_str()
            .expect("originid extension")
            .to_owned(),
    )
}

/// The accepted (200) deliveries per tenant, in arrival order.
fn accepted_by_tenant(requests: &[Received]) -> BTreeMap<String, Vec<(i64, String)>> {
    let mut by_tenant: BTreeMap<String, Vec<(i64, String)>> = BTreeMap::new();
    for request in requests.iter().filter(|r| r.status == 200) {
        let (tenant, sequence, id) = delivered(request);
        by_tenant.entry(tenant).or_default().push((sequence, id));
    }
    by_tenant
}

async fn metrics(app: &TestApp) -> String {
    let resp = reqwest::get(format!("http://{}/metrics", app.admin_addr))
        .await
        .expect("scrape");
    assert_eq!(resp.status().as_u16(), 200);
    resp.text().await.expect("metrics text")
}

/// The value of the sample line starting with `series` (name and labels).
fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find(|line| line.starts_with(series) && line[series.len()..].starts_with(' '))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
}

/// 50 tenants x 20 events, posted concurrently across tenants (each tenant's events one after
/// the other, so the post order is the sequence order), while the receiver fails every 7th
/// request: every event arrives, once accepted, and each tenant's in sequence.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_receives_every_tenant_strictly_in_sequence() {
    const TENANTS: usize = 50;
    const EVENTS: usize = 20;
    let hook = ArgoWebhook::start().await;
    for i in 0..(TENANTS * EVENTS) {
        hook.push_behaviour(if i % 7 == 3 {
            Behaviour::PublishFails
        } else {
            Behaviour::Accept
        });
    }
    let mut app = TestApp::spawn_with(webhook_settings(&hook)).await;

    let posters = (0..TENANTS).map(|t| {
        let app = &app;
        async move {
            for e in 0..EVENTS {
                let event =
                    lifecycle_event(&format!("t{t}-e{e}"), &format!("tenant-{t}"), "upsert");
                post(app, &event).await;
            }
        }
    });
    futures_util::future::join_all(posters).await;
    app.wait_for_progress("every event delivered", |p| {
        p.delivered == (TENANTS * EVENTS) as u64
    })
    .await;

    let requests = hook.requests();
    let by_tenant = accepted_by_tenant(&requests);
    assert_eq!(by_tenant.len(), TENANTS);
    for (tenant, deliveries) in &by_tenant {
        let t: usize = tenant["tenant-".len()..].parse().expect("tenant number");
        let expected: Vec<(i64, String)> = (0..EVENTS)
            .map(|e| (e as i64 + 1, format!("t{t}-e{e}")))
            .collect();
        assert_eq!(
            deliveries, &expected,
            "{tenant} out of sequence or incomplete"
        );
    }
    // Failed attempts were retried before anything later of the same tenant was sent.
    let mut last_sent: BTreeMap<String, i64> = BTreeMap::new();
    for request in &requests {
        let (tenant, sequence, _) = delivered(request);
        let last = last_sent.entry(tenant.clone()).or_insert(0);
        assert!(
            sequence >= *last,
            "{tenant}: sequence {sequence} sent after {last}"
        );
        *last = sequence;
    }
    assert!(
        requests.iter().any(|r| r.status == 500),
        "the script made some attempts fail"
    );
    app.stop().await;
}

/// 500, 429 and a timeout are retried; the event is then delivered, and every attempt is in the
/// journal with its outcome, status code and error.
#[tokio::test]
async fn retryable_failures_are_retried_and_every_attempt_recorded() {
    let hook = ArgoWebhook::start().await;
    hook.push_behaviour(Behaviour::PublishFails);
    hook.push_behaviour(Behaviour::Status(429));
    hook.push_behaviour(Behaviour::Slow(Duration::from_secs(2)));
    let mut app = TestApp::spawn_with(webhook_settings(&hook)).await;
    post(&app, &lifecycle_event("r-1", "acme", "upsert")).await;
    app.wait_for_progress("the event delivered", |p| p.delivered == 1)
        .await;

    let stored = app
        .journal
        .find_by_origin("//billing.acme.example/invoices", "r-1")
        .await
        .unwrap()
        .expect("stored");
    assert_eq!(stored.status, EventStatus::Delivered);
    let attempts = app
        .journal
        .delivery_attempts(stored.event_id)
        .await
        .unwrap();
    let summary: Vec<(u32, &str, Option<u16>)> = attempts
        .iter()
        .map(|a| (a.attempt, a.outcome.as_str(), a.status_code))
        .collect();
    assert_eq!(
        summary,
        [
            (1, "retryable", Some(500)),
            (2, "retryable", Some(429)),
            (3, "retryable", None),
            (4, "delivered", Some(200)),
        ]
    );
    assert!(attempts
        .iter()
        .all(|a| a.sink == "webhook" && a.emission_id == stored.event_id));
    let timeout = attempts[2].error.as_deref().unwrap_or_default();
    assert!(
        timeout.contains("timed out") || timeout.contains("timeout"),
        "{timeout}"
    );
    assert!(attempts[0]
        .error
        .as_deref()
        .unwrap_or_default()
        .contains("500"));
    assert_eq!(attempts[3].error, None);
    app.stop().await;
}

/// Argo's webhook EventSource answers 400 `endpoint is inactive` while its route is not
/// registered (every restart): that 400 is retried until the route is back; another 400 after
/// it is still permanent.
#[tokio::test]
async fn inactive_route_400_is_retried_and_other_400s_stay_permanent() {
    let hook = ArgoWebhook::start().await;
    hook.push_behaviour(Behaviour::RouteInactive);
    hook.push_behaviour(Behaviour::RouteInactive);
    let mut app = TestApp::spawn_with(webhook_settings(&hook)).await;
    post(&app, &lifecycle_event("i-1", "acme", "upsert")).await;
    app.wait_for_progress("i-1 delivered", |p| p.delivered == 1)
        .await;
    let stored = app
        .journal
        .find_by_origin("//billing.acme.example/invoices", "i-1")
        .await
        .unwrap()
        .expect("stored");
    assert_eq!(stored.status, EventStatus::Delivered);
    let attempts = app
        .journal
        .delivery_attempts(stored.event_id)
        .await
        .unwrap();
    let summary: Vec<(&str, Option<u16>)> = attempts
        .iter()
        .map(|a| (a.outcome.as_str(), a.status_code))
        .collect();
    assert_eq!(
        summary,
        [
            ("retryable", Some(400)),
            ("retryable", Some(400)),
            ("delivered", Some(200)),
        ]
    );
    assert!(attempts[0]
        .error
        .as_deref()
        .is_some_and(|e| e.contains("endpoint is inactive")));

    hook.push_behaviour(Behaviour::BadPayload);
    post(&app, &lifecycle_event("i-2", "globex", "upsert")).await;
    app.wait_for_progress("i-2 dead", |p| p.dead == 1).await;
    let dead = app
        .journal
        .find_by_origin("//billing.acme.example/invoices", "i-2")
        .await
        .unwrap()
        .expect("stored");
    let attempts = app.journal.delivery_attempts(dead.event_id).await.unwrap();
    assert_eq!(attempts.len(), 1);
    assert_eq!(
        (attempts[0].outcome.as_str(), attempts[0].status_code),
        ("permanent", Some(400))
    );
    app.stop().await;
}

/// A 400 is permanent: the event is dead after one attempt, its tenant parked (later events of
/// it wait, other tenants go on), and the metrics show it without naming any tenant.
#[tokio::test]
async fn permanent_failure_makes_the_event_dead_and_parks_the_tenant() {
    let hook = ArgoWebhook::start().await;
    hook.push_behaviour(Behaviour::BadPayload);
    let mut app = TestApp::spawn_with(webhook_settings(&hook)).await;
    post(&app, &lifecycle_event("a-1", "acme", "upsert")).await;
    post(&app, &lifecycle_event("a-2", "acme", "delete")).await;
    app.wait_for_progress("a-1 dead", |p| p.dead == 1).await;
    post(&app, &lifecycle_event("g-1", "globex", "upsert")).await;
    app.wait_for_progress("g-1 delivered", |p| p.delivered == 1)
        .await;
    post(&app, &lifecycle_event("a-3", "acme", "upsert")).await;
    post(&app, &lifecycle_event("g-2", "globex", "upsert")).await;
    app.wait_for_progress("g-2 delivered", |p| p.delivered == 2)
        .await;

    let sent: Vec<(String, i64, String)> = hook.requests().iter().map(delivered).collect();
    assert_eq!(
        sent,
        [
            ("acme".to_string(), 1, "a-1".to_string()),
            ("globex".to_string(), 1, "g-1".to_string()),
            ("globex".to_string(), 2, "g-2".to_string()),
        ],
        "nothing of acme after its dead event is sent"
    );
    let timeline = app.journal.tenant_timeline("acme").await.unwrap();
    let statuses: Vec<&str> = timeline.iter().map(|e| e.status.as_str()).collect();
    assert_eq!(statuses, ["dead", "pending", "pending"]);
    let attempts = app
        .journal
        .delivery_attempts(timeline[0].event_id)
        .await
        .unwrap();
    assert_eq!(attempts.len(), 1);
    assert_eq!(
        (attempts[0].outcome.as_str(), attempts[0].status_code),
        ("permanent", Some(400))
    );

    let invalid = app.post_structured(&json!({"specversion": "1.0"})).await;
    assert_eq!(invalid.status().as_u16(), 400);
    let text = metrics(&app).await;
    assert_eq!(
        sample(
            &text,
            r#"tenant_gateway_ingest_requests_rejected_total{reason="invalid-cloudevent"}"#
        ),
        Some(1.0)
    );
    let commits = sample(&text, "tenant_gateway_journal_commit_group_size_count");
    assert!(commits.is_some_and(|c| c >= 5.0), "{text}");
    assert_eq!(sample(&text, "tenant_gateway_parked_tenants"), Some(1.0));
    // a-2 and a-3 wait behind the dead a-1.
    assert_eq!(sample(&text, "tenant_gateway_pending_events"), Some(2.0));
    assert_eq!(
        sample(
            &text,
            r#"tenant_gateway_deliveries_total{sink="webhook",outcome="permanent"}"#
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &text,
            r#"tenant_gateway_deliveries_total{sink="webhook",outcome="delivered"}"#
        ),
        Some(2.0)
    );
    assert_eq!(
        sample(&text, "tenant_gateway_events_received_total"),
        Some(5.0)
    );
    assert_eq!(
        sample(&text, "tenant_gateway_events_accepted_total"),
        Some(5.0)
    );
    assert!(
        !text.contains("acme") && !text.contains("globex"),
        "no tenant label:\n{text}"
    );
    app.stop().await;
}

/// Retryable failures past the retry limit make the event dead too.
#[tokio::test]
async fn exhausted_retries_make_the_event_dead() {
    let hook = ArgoWebhook::start().await;
    hook.set_default(Behaviour::PublishFails);
    let mut app = TestApp::spawn_with(|settings| {
        webhook_settings(&hook)(settings);
        settings.dispatch.retry.retry_limit = Duration::from_millis(100);
    })
    .await;
    post(&app, &lifecycle_event("x-1", "acme", "upsert")).await;
    app.wait_for_progress("x-1 dead", |p| p.dead == 1).await;
    let stored = app.journal.tenant_timeline("acme").await.unwrap();
    assert_eq!(stored[0].status, EventStatus::Dead);
    let attempts = app
        .journal
        .delivery_attempts(stored[0].event_id)
        .await
        .unwrap();
    assert!(
        attempts.len() >= 2,
        "retried before giving up: {attempts:?}"
    );
    assert!(attempts
        .iter()
        .all(|a| a.outcome == AttemptOutcome::Retryable && a.status_code == Some(500)));
    app.stop().await;
}

/// Events left pending by a stopped gateway (the receiver failing meanwhile) are delivered
/// after a restart: nothing lost, nothing out of order, already-delivered ones not resent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_resumes_pending_events_in_order() {
    let hook = ArgoWebhook::start().await;
    let mut app = TestApp::spawn_with(webhook_settings(&hook)).await;
    for t in 0..3 {
        post(
            &app,
            &lifecycle_event(&format!("t{t}-e0"), &format!("tenant-{t}"), "upsert"),
        )
        .await;
    }
    app.wait_for_progress("first events delivered", |p| p.delivered == 3)
        .await;
    hook.set_default(Behaviour::PublishFails);
    for e in 1..5 {
        for t in 0..3 {
            let id = format!("t{t}-e{e}");
            post(
                &app,
                &lifecycle_event(&id, &format!("tenant-{t}"), "upsert"),
            )
            .await;
        }
    }
    app.wait_for_progress("failed attempts", |p| p.attempts >= 3 + 3)
        .await;

    let mut app = app.restart(webhook_settings(&hook)).await;
    hook.set_default(Behaviour::Accept);
    app.wait_for_progress("the backlog delivered", |p| p.delivered == 12)
        .await;

    let by_tenant = accepted_by_tenant(&hook.requests());
    for t in 0..3 {
        let expected: Vec<(i64, String)> = (0..5).map(|e| (e + 1, format!("t{t}-e{e}"))).collect();
        assert_eq!(by_tenant[&format!("tenant-{t}")], expected, "tenant-{t}");
    }
    assert_eq!(app.journal.count_pending().await.unwrap(), 0);
    app.stop().await;
}

/// The `eventbus` sink through `serve`: the message on Argo's subject is the canonical event
/// with the emission id as `Nats-Msg-Id`, the upstream traceparent passed through, and the
/// `source`/`subject` an Argo Sensor routes by.
#[tokio::test]
async fn eventbus_sink_publishes_the_canonical_event() {
    let Some(nats) = NatsServer::start().await else {
        return;
    };
    let stream = create_argo_stream(&nats.url(), "default").await;
    let url = nats.url();
    let mut app = TestApp::spawn_with(move |settings| {
        settings.sink = SinkConfig::Eventbus(EventbusConfig {
            ack_timeout: Duration::from_secs(5),
            ..eventbus_config(&url)
        });
        settings.dispatch.instance_source = "urn:tenant-gateway:test".into();
    })
    .await;
    let ready = reqwest::get(format!("http://{}/readyz", app.admin_addr))
        .await
        .unwrap();
    assert_eq!(ready.status().as_u16(), 200);

    let mut event = lifecycle_event("bus-1", "acme", "migrate-out");
    event["traceparent"] = json!("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
    event["data"] = json!({"objectStorage": {"url": "s3://exports/acme"}, "region": "eu"});
    post(&app, &event).await;
    app.wait_for_progress("published", |p| p.delivered == 1)
        .await;

    let consumer = stream
        .create_consumer(consumer::pull::Config {
            durable_name: Some("test".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut messages = consumer.messages().await.unwrap();
    let message = tokio::time::timeout(WAIT, messages.next())
        .await
        .expect("a message")
        .expect("stream open")
        .expect("message");
    assert_eq!(message.subject.as_str(), "default.tenant-gateway.lifecycle");
    let stored = app.journal.tenant_timeline("acme").await.unwrap();
    let event_id = stored[0].event_id.to_string();
    let msg_id = message
        .headers
        .as_ref()
        .and_then(|h| h.get("Nats-Msg-Id"))
        .map(|v| v.as_str().to_owned());
    assert_eq!(msg_id.as_deref(), Some(event_id.as_str()));
    let body: Value = serde_json::from_slice(&message.payload).expect("JSON body");
    assert_eq!(body["specversion"], "1.0");
    assert_eq!(body["id"], event_id);
    // Argo's Sensors route by source = EventSource name and subject = event name.
    assert_eq!(body["source"], "tenant-gateway");
    assert_eq!(body["subject"], "lifecycle");
    assert_eq!(body["gatewaysource"], "urn:tenant-gateway:test");
    assert_eq!(body["type"], "lifecycle.migrate-out");
    assert_eq!(body["time"], "2026-11-23T10:00:00Z");
    assert_eq!(body["datacontenttype"], "application/json");
    assert_eq!(body["tenant"], "acme");
    assert_eq!(body["sequence"], 1);
    assert_eq!(body["originid"], "bus-1");
    assert_eq!(body["originsource"], "//billing.acme.example/invoices");
    assert_eq!(body["origintype"], "com.acme.tenant.lifecycle.migrate-out");
    assert_eq!(body["traceparent"], event["traceparent"]);
    assert!(body.get("replayof").is_none());
    let data = &body["data"];
    assert_eq!(data["tenant"], "acme");
    assert_eq!(data["action"], "migrate-out");
    assert_eq!(data["objectStorage"], json!({"url": "s3://exports/acme"}));
    assert_eq!(data["payload"], event["data"]);
    assert_eq!(
        data["origin"],
        json!({"id": "bus-1", "source": "//billing.acme.example/invoices",
               "type": "com.acme.tenant.lifecycle.migrate-out", "time": "2026-11-23T10:00:00Z"})
    );
    let workflow = data["workflowName"].as_str().expect("workflowName");
    assert!(
        workflow.starts_with("acme-migrate-out-") && workflow.len() <= 63,
        "{workflow}"
    );
    message.ack().await.unwrap();
    app.stop().await;
}

/// Without the EventBus stream the admin readiness says so, while ingest stays ready (events
/// are journaled and wait).
#[tokio::test]
async fn eventbus_without_its_stream_is_not_ready() {
    let Some(nats) = NatsServer::start().await else {
        return;
    };
    let url = nats.url();
    let app = TestApp::spawn_with(move |settings| {
        settings.sink = SinkConfig::Eventbus(EventbusConfig {
            ack_timeout: Duration::from_millis(500),
            ..eventbus_config(&url)
        });
    })
    .await;
    let resp = reqwest::get(format!("http://{}/readyz", app.admin_addr))
        .await
        .unwrap();
    let body = crate::support::problem(resp, 503).await;
    let detail = body["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("eventbus") && detail.contains("default"),
        "{detail}"
    );
    let ingest = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(ingest.status().as_u16(), 200);
    post(&app, &lifecycle_event("wait-1", "acme", "upsert")).await;
    app.stop().await;
}

/// `serve --rules`: an upstream shape only a rule understands is accepted, and the emitted event
/// carries the rule's action, tenant and parameters; a matching rule that cannot find its value
/// answers 422 naming the rule.
#[tokio::test]
async fn rules_file_shapes_the_emitted_event() {
    let hook = ArgoWebhook::start().await;
    let rules = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/rules.example.yaml");
    let mut app = TestApp::spawn_with(|settings| {
        webhook_settings(&hook)(settings);
        settings.rules = Some(rules);
    })
    .await;
    let billing = json!({
        "specversion": "1.0", "id": "sub-9", "type": "com.acme.billing.subscription.cancelled",
        "source": "https://billing.acme.example/subscriptions",
        "data": {"status": "cancelled", "account": {"slug": "acme-corp"},
                 "plan": {"name": "enterprise", "seats": 250}}
    });
    post(&app, &billing).await;
    app.wait_for_progress("delivered", |p| p.delivered == 1)
        .await;
    let sent = hook.requests()[0].json.clone().expect("JSON");
    assert_eq!(sent["type"], "lifecycle.delete");
    assert_eq!(sent["subject"], "acme-corp");
    assert_eq!(
        sent["data"]["parameters"],
        json!({"plan": "enterprise", "seats": "250"})
    );
    assert_eq!(sent["data"]["payload"], billing["data"]);

    let mut paused = billing.clone();
    paused["id"] = json!("sub-10");
    paused["data"]["status"] = json!("paused");
    let resp = app.post_structured(&paused).await;
    let body = crate::support::problem(resp, 422).await;
    let detail = body["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("billing-subscriptions") && detail.contains("paused"),
        "{detail}"
    );
    app.stop().await;
}

/// A backlog many times the in-memory buffer is read in refills and still delivered completely
/// and in sequence; a parked tenant's dropped queue frees its buffer space.
#[tokio::test]
async fn backlog_larger_than_the_buffer_is_delivered_in_order() {
    let hook = ArgoWebhook::start().await;
    hook.set_default(Behaviour::PublishFails);
    let mut app = TestApp::spawn_with(|settings| {
        webhook_settings(&hook)(settings);
        settings.dispatch.buffer = 3;
    })
    .await;
    // tenant-0's first event fails for good: its queue is dropped and the tenant parked.
    hook.push_behaviour(Behaviour::BadPayload);
    post(&app, &lifecycle_event("t0-e0", "tenant-0", "upsert")).await;
    app.wait_for_progress("t0-e0 dead", |p| p.dead == 1).await;
    for e in 1..=8 {
        for t in 0..4 {
            let id = format!("t{t}-e{e}");
            post(
                &app,
                &lifecycle_event(&id, &format!("tenant-{t}"), "upsert"),
            )
            .await;
        }
    }
    hook.set_default(Behaviour::Accept);
    app.wait_for_progress("the backlog delivered", |p| p.delivered == 3 * 8)
        .await;
    let by_tenant = accepted_by_tenant(&hook.requests());
    assert!(!by_tenant.contains_key("tenant-0"), "parked tenant-0 waits");
    for t in 1..4 {
        let expected: Vec<(i64, String)> = (1..=8).map(|e| (e, format!("t{t}-e{e}"))).collect();
        assert_eq!(by_tenant[&format!("tenant-{t}")], expected, "tenant-{t}");
    }
    assert_eq!(app.journal.count_pending().await.unwrap(), 8);
    app.stop().await;
}

/// The sink's health is one fact for all tenants: after an outage long enough that every
/// tenant sleeps a long backoff, the sink is probed (one attempt at a time), and its first
/// success sends every waiting tenant at once instead of each waiting out its backoff. The
/// backoff here is an hour, so without that nothing could be delivered within the test's wait.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recovered_sink_sends_every_waiting_tenant_at_once() {
    let hook = ArgoWebhook::start().await;
    hook.set_default(Behaviour::PublishFails);
    let mut app = TestApp::spawn_with(|settings| {
        webhook_settings(&hook)(settings);
        settings.dispatch.retry = RetryPolicy {
            initial_backoff: Duration::from_secs(3600),
            max_backoff: Duration::from_secs(3600),
            retry_limit: Duration::from_secs(24 * 3600),
        };
        settings.dispatch.probe_interval = Duration::from_millis(50);
    })
    .await;
    let tenants: Vec<String> = (0..10).map(|n| format!("tenant-{n}")).collect();
    for tenant in &tenants {
        post(
            &app,
            &lifecycle_event(&format!("{tenant}-1"), tenant, "upsert"),
        )
        .await;
        post(
            &app,
            &lifecycle_event(&format!("{tenant}-2"), tenant, "upsert"),
        )
        .await;
    }
    // Every tenant failed once (so sleeps its hour), and probes followed: more failed requests
    // than tenants.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let failed: Vec<String> = hook
            .requests()
            .iter()
            .filter(|r| r.status == 500)
            .map(|r| delivered(r).0)
            .collect();
        let all_tried = tenants.iter().all(|t| failed.contains(t));
        if all_tried && failed.len() >= tenants.len() + 3 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "tenants tried and probes: {failed:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(app.progress.borrow().delivered, 0);
    hook.set_default(Behaviour::Accept);
    app.wait_for_progress("every tenant's two events delivered", |p| p.delivered == 20)
        .await;
    let accepted = accepted_by_tenant(&hook.requests());
    for tenant in &tenants {
        let sequences: Vec<i64> = accepted[tenant].iter().map(|(s, _)| *s).collect();
        assert_eq!(sequences, [1, 2], "{tenant} in sequence, once each");
    }
    app.stop().await;
}

/// The largest event ingest accepts is delivered in full (its emission fits Argo's 1 MiB, and
/// its data twice as a JSON string fits a Workflow under etcd's 1.5 MiB); one byte more is a 413
/// whose detail names the limit, and nothing of it is stored.
#[tokio::test]
async fn the_largest_accepted_event_is_delivered_and_one_byte_more_is_refused() {
    let hook = ArgoWebhook::start().await;
    let mut app = TestApp::spawn_with(webhook_settings(&hook)).await;
    let event_of = |n: usize| {
        let mut event = lifecycle_event(&format!("big-{n}"), "acme", "upsert");
        event["data"] = json!({"blob": "x".repeat(n)});
        event
    };
    // Binary search on the payload size, against the running gateway.
    let (mut accepted, mut refused) = (0usize, 1024 * 1024);
    let mut posted = 0;
    let mut refusal = Value::Null;
    while refused - accepted > 1 {
        let middle = (accepted + refused) / 2;
        let resp = app.post_structured(&event_of(middle)).await;
        match resp.status().as_u16() {
            202 => {
                accepted = middle;
                posted += 1;
            }
            413 => {
                refused = middle;
                refusal = resp.json().await.unwrap();
            }
            other => panic!("unexpected {other} at {middle}"),
        }
    }
    assert!(
        accepted > 512 * 1024,
        "the limit is not needlessly low: {accepted}"
    );
    let detail = refusal["detail"].as_str().unwrap_or_default();
    assert!(detail.contains("over the limit of"), "{refusal}");
    assert_eq!(
        refusal["type"],
        "urn:tenant-gateway:problem:payload-too-large"
    );
    let resp = app.post_structured(&event_of(accepted + 1)).await;
    assert_eq!(resp.status().as_u16(), 413);
    assert!(app
        .journal
        .find_by_origin(
            "//billing.acme.example/invoices",
            &format!("big-{}", accepted + 1)
        )
        .await
        .unwrap()
        .is_none());

    app.wait_for_progress("every accepted event delivered", |p| p.delivered == posted)
        .await;
    let largest = hook
        .requests()
        .into_iter()
        .find(|r| {
            r.json
                .as_ref()
                .is_some_and(|j| j["originid"] == format!("big-{accepted}"))
        })
        .expect("the largest event was delivered");
    // Argo's limits, not the gateway's constants: JetStream's and the webhook's 1 MiB, and the
    // Workflow's two JSON-string copies of data under etcd's 1.5 MiB.
    assert!(largest.body.len() < 1024 * 1024, "{}", largest.body.len());
    let json = largest.json.as_ref().expect("JSON");
    assert_eq!(
        json["data"]["payload"]["blob"].as_str().map(str::len),
        Some(accepted)
    );
    let data_text = serde_json::to_string(&json["data"]).unwrap();
    let quoted = serde_json::to_string(&Value::String(data_text)).unwrap();
    assert!(2 * quoted.len() < 1536 * 1024, "{}", quoted.len());
    app.stop().await;
}

/// The dispatcher reads the journal when a commit may have put something there, not at every
/// wake-up: 200 tenants' events committed at once (one batch, one group commit) are delivered
/// by 200 workers, and the workers ending (each one wakes the dispatcher) cost no reads.
/// Before, every wake-up read a page that found nothing: a query per delivered event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivering_a_commit_of_many_tenants_reads_the_journal_a_few_times_not_once_per_event() {
    const TENANTS: usize = 200;
    let hook = ArgoWebhook::start().await;
    let mut app = TestApp::spawn_with(webhook_settings(&hook)).await;
    let events: Vec<Value> = (0..TENANTS)
        .map(|t| lifecycle_event(&format!("many-{t}"), &format!("tenant-{t}"), "upsert"))
        .collect();
    let resp = app.post_batch(&events).await;
    assert_eq!(resp.status().as_u16(), 202);
    app.wait_for_progress("every event delivered", |p| p.delivered == TENANTS as u64)
        .await;
    let text = metrics(&app).await;
    let reads = sample(&text, "tenant_gateway_dispatch_reads_total").expect("dispatch reads");
    // The read at start, the read after the batch's commit (and one more should that commit
    // land while the first read runs): never one per delivered event.
    assert!(
        (1.0..=4.0).contains(&reads),
        "{reads} journal reads to deliver one commit of {TENANTS} tenants"
    );
    app.stop().await;
}
