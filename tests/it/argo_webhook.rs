//! The `webhook` sink against the fake of Argo Events' webhook EventSource
//! (`support::argo_webhook`), and the fake's own behaviour.

use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::{json, Value};
use tenant_gateway::dispatch::sinks::{DeliveryOutcome, Sink, SinkConfig, WebhookConfig};

use crate::support::argo_webhook::{ArgoWebhook, Behaviour, MAX_PAYLOAD};

fn webhook_config(url: &str) -> WebhookConfig {
    WebhookConfig {
        url: url.to_owned(),
        token_file: None,
        timeout: Duration::from_secs(5),
    }
}

async fn webhook_sink(config: WebhookConfig) -> Sink {
    SinkConfig::Webhook(config)
        .build()
        .await
        .expect("webhook sink builds")
}

fn canonical_event(id: &str) -> Bytes {
    Bytes::from(
        json!({
            "specversion": "1.0",
            "id": id,
            "source": "urn:tenant-gateway:gw-0",
            "type": "lifecycle.delete",
            "subject": "acme",
            "datacontenttype": "application/json",
            "tenant": "acme",
            "data": {"tenant": "acme", "action": "lifecycle.delete", "parameters": {}}
        })
        .to_string(),
    )
}

#[tokio::test]
async fn accepted_posts_are_structured_cloudevents_with_the_token() {
    let argo = ArgoWebhook::start_with_token("webhook-t0ken").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "webhook-t0ken\n").expect("write token");
    let mut config = webhook_config(&argo.url());
    config.token_file = Some(token_file);
    let sink = webhook_sink(config).await;
    assert_eq!(sink.kind(), "webhook");
    sink.check_ready().await.expect("webhook is always ready");

    let body = canonical_event("e-1");
    let outcome = sink.deliver("e-1", &body).await;
    assert_eq!(outcome, DeliveryOutcome::Delivered { status: Some(200) });

    let requests = argo.wait_for(1, Duration::from_secs(5)).await;
    assert_eq!(requests.len(), 1);
    let request = &requests[0];
    assert_eq!(request.method, "POST");
    assert_eq!(request.path, ArgoWebhook::ENDPOINT);
    assert_eq!(
        request.header("content-type"),
        Some("application/cloudevents+json; charset=utf-8")
    );
    assert_eq!(
        request.header("authorization"),
        Some("Bearer webhook-t0ken")
    );
    assert!(
        request.header("ce-id").is_none(),
        "structured mode has no ce- headers"
    );
    assert_eq!(request.body, body, "body bytes unchanged");
    let event = request.json.as_ref().expect("JSON body");
    assert_eq!(event["id"], "e-1");
    assert_eq!(event["data"]["tenant"], "acme");
}

#[tokio::test]
async fn a_failed_argo_publish_is_retryable() {
    let argo = ArgoWebhook::start().await;
    argo.set_default(Behaviour::PublishFails);
    let sink = webhook_sink(webhook_config(&argo.url())).await;
    let outcome = sink.deliver("e-1", &canonical_event("e-1")).await;
    let DeliveryOutcome::Retryable {
        status: Some(500),
        error,
    } = outcome
    else {
        panic!("expected retryable 500, got {outcome:?}");
    };
    assert!(
        error.contains("HTTP 500 Internal Server Error")
            && error.contains(&argo.url())
            && error.ends_with(": failed to record event"),
        "{error}"
    );
}

#[tokio::test]
async fn too_many_requests_and_server_errors_are_retryable() {
    let argo = ArgoWebhook::start().await;
    for code in [429, 502, 503] {
        argo.push_behaviour(Behaviour::Status(code));
    }
    let sink = webhook_sink(webhook_config(&argo.url())).await;
    for code in [429, 502, 503] {
        let outcome = sink.deliver("e-1", &canonical_event("e-1")).await;
        assert!(
            matches!(&outcome, DeliveryOutcome::Retryable { status: Some(s), error }
                if *s == code && error.contains(&format!("status {code}"))),
            "{code}: {outcome:?}"
        );
    }
}

#[tokio::test]
async fn other_client_errors_are_permanent() {
    let argo = ArgoWebhook::start_with_token("right").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "right").expect("write token");
    let mut config = webhook_config(&argo.url());
    config.token_file = Some(token_file.clone());
    let sink = webhook_sink(config.clone()).await;

    argo.push_behaviour(Behaviour::BadPayload);
    argo.push_behaviour(Behaviour::Status(404));
    for code in [400, 404] {
        let outcome = sink.deliver("e-1", &canonical_event("e-1")).await;
        assert!(
            matches!(&outcome, DeliveryOutcome::Permanent { status: Some(s), .. } if *s == code),
            "{code}: {outcome:?}"
        );
    }

    // Argo's own checks: a body that is not JSON, a wrong path, a wrong token.
    let outcome = sink.deliver("e-2", &Bytes::from_static(b"not json")).await;
    assert!(
        matches!(&outcome, DeliveryOutcome::Permanent { status: Some(400), error }
            if error.contains("failed to construct the event payload")),
        "{outcome:?}"
    );
    let wrong_path = webhook_sink(webhook_config(&format!("{}/other", argo.base_url()))).await;
    let outcome = wrong_path.deliver("e-3", &canonical_event("e-3")).await;
    assert!(
        matches!(
            &outcome,
            DeliveryOutcome::Permanent {
                status: Some(404),
                ..
            }
        ),
        "{outcome:?}"
    );
    std::fs::write(&token_file, "wrong-secret").expect("write token");
    let wrong_token = webhook_sink(config).await;
    let outcome = wrong_token.deliver("e-4", &canonical_event("e-4")).await;
    let DeliveryOutcome::Permanent {
        status: Some(401),
        error,
    } = outcome
    else {
        panic!("expected permanent 401, got {outcome:?}");
    };
    assert!(error.contains("Invalid Auth token"), "{error}");
    assert!(!error.contains("wrong-secret"), "{error}");

    let statuses: Vec<u16> = argo.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [400, 404, 400, 404, 401]);
}

#[tokio::test]
async fn a_slow_answer_times_out_as_retryable() {
    let argo = ArgoWebhook::start().await;
    argo.push_behaviour(Behaviour::Slow(Duration::from_secs(5)));
    let mut config = webhook_config(&argo.url());
    config.timeout = Duration::from_secs(1);
    let sink = webhook_sink(config).await;

    let started = Instant::now();
    let outcome = sink.deliver("e-1", &canonical_event("e-1")).await;
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_secs(1) && elapsed < Duration::from_secs(3),
        "{elapsed:?}"
    );
    let DeliveryOutcome::Retryable {
        status: None,
        error,
    } = outcome
    else {
        panic!("expected retryable without status, got {outcome:?}");
    };
    assert!(
        error.starts_with("timed out after 1s waiting for"),
        "{error}"
    );

    // The script is used up: the next delivery is accepted.
    let outcome = sink.deliver("e-1", &canonical_event("e-1")).await;
    assert_eq!(outcome, DeliveryOutcome::Delivered { status: Some(200) });
    assert_eq!(argo.wait_for(2, Duration::from_secs(5)).await.len(), 2);
}

#[tokio::test]
async fn a_refused_connection_is_retryable() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let url = format!("http://127.0.0.1:{port}/lifecycle");
    let sink = webhook_sink(webhook_config(&url)).await;
    let outcome = sink.deliver("e-1", &canonical_event("e-1")).await;
    let DeliveryOutcome::Retryable {
        status: None,
        error,
    } = outcome
    else {
        panic!("expected retryable, got {outcome:?}");
    };
    assert!(
        error.starts_with(&format!("cannot connect to {url}: ")),
        "{error}"
    );
}

#[tokio::test]
async fn scripted_behaviours_then_the_default() {
    let argo = ArgoWebhook::start().await;
    argo.push_behaviour(Behaviour::PublishFails);
    argo.push_behaviour(Behaviour::Status(503));
    let sink = webhook_sink(webhook_config(&argo.url())).await;
    let mut labels = Vec::new();
    for _ in 0..3 {
        labels.push(sink.deliver("e-1", &canonical_event("e-1")).await.label());
    }
    assert_eq!(labels, ["retryable", "retryable", "delivered"]);
    let statuses: Vec<u16> = argo
        .wait_for(3, Duration::from_secs(5))
        .await
        .iter()
        .map(|r| r.status)
        .collect();
    assert_eq!(statuses, [500, 503, 200]);
}

#[tokio::test]
async fn the_fake_answers_health_checks_and_other_methods_like_argo() {
    let argo = ArgoWebhook::start().await;
    let client = reqwest::Client::new();
    let health = client
        .get(format!("{}/health", argo.base_url()))
        .send()
        .await
        .expect("health");
    assert_eq!(health.status().as_u16(), 200);
    let get = client.get(argo.url()).send().await.expect("get");
    assert_eq!(get.status().as_u16(), 400);
    // An empty body is JSON null to Argo.
    let empty = client.post(argo.url()).send().await.expect("post");
    assert_eq!(empty.status().as_u16(), 200);
    let big = client
        .post(argo.url())
        .body(vec![b' '; MAX_PAYLOAD + 1])
        .send()
        .await
        .expect("post");
    assert_eq!(big.status().as_u16(), 400);
    let requests = argo.wait_for(4, Duration::from_secs(5)).await;
    assert_eq!(requests[2].json, Some(Value::Null));
}
