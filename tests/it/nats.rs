//! The `eventbus` sink against a real `nats-server` with JetStream (`support::nats`), set up the
//! way Argo's JetStream EventBus is.

use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer, stream};
use bytes::Bytes;
use futures_util::StreamExt;
use serde_json::{json, Value};
use tenant_gateway::dispatch::sinks::{DeliveryOutcome, EventbusConfig, Sink, SinkConfig};

use crate::support::nats::{
    create_argo_stream, create_argo_stream_with, eventbus_config, free_port, nats_server_installed,
    NatsServer,
};
use crate::support::skip_or_fail;

async fn eventbus_sink(config: EventbusConfig) -> Sink {
    SinkConfig::Eventbus(config)
        .build()
        .await
        .expect("eventbus sink builds")
}

/// A canonical emission as the dispatcher sends it (`docs/normalization.md`), compact JSON.
fn canonical_event(emission_id: &str, tenant: &str) -> Bytes {
    let event = json!({
        "specversion": "1.0",
        "id": emission_id,
        "source": "urn:tenant-gateway:eu-west-1:gw-0",
        "type": "lifecycle.upsert",
        "subject": tenant,
        "time": "2026-11-23T10:00:00Z",
        "datacontenttype": "application/json",
        "tenant": tenant,
        "sequence": 7,
        "originid": "inv-42",
        "originsource": "//billing.acme.example/invoices",
        "origintype": "com.acme.tenant.lifecycle.upsert",
        "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "data": {
            "tenant": tenant,
            "action": "lifecycle.upsert",
            "parameters": {"plan": "gold", "region": "eu-west-1"},
            "objectStorage": null,
            "workflowName": format!("{tenant}-upsert-{}", &emission_id[..8]),
            "origin": {
                "id": "inv-42",
                "source": "//billing.acme.example/invoices",
                "type": "com.acme.tenant.lifecycle.upsert",
                "time": "2026-11-23T10:00:00Z"
            },
            "payload": {"plan": "gold", "note": "unicode ✓ and \"quotes\""}
        }
    });
    Bytes::from(serde_json::to_vec(&event).expect("serialize"))
}

/// Reads every message in the stream, through a pull consumer as a Sensor would.
async fn stored_messages(stream: &stream::Stream, expected: usize) -> Vec<jetstream::Message> {
    let consumer = stream
        .create_consumer(consumer::pull::Config {
            ack_policy: consumer::AckPolicy::Explicit,
            deliver_policy: consumer::DeliverPolicy::All,
            ..Default::default()
        })
        .await
        .expect("create consumer");
    let mut batch = consumer
        .fetch()
        .max_messages(expected + 1)
        .expires(Duration::from_millis(500))
        .messages()
        .await
        .expect("fetch");
    let mut messages = Vec::new();
    while let Some(message) = batch.next().await {
        let message = message.expect("message");
        message.ack().await.expect("ack");
        messages.push(message);
    }
    messages
}

#[tokio::test]
async fn publishes_like_an_argo_eventsource() {
    let Some(server) = NatsServer::start().await else {
        return;
    };
    let mut stream = create_argo_stream(&server.url(), "default").await;
    let sink = eventbus_sink(eventbus_config(&server.url())).await;
    assert_eq!(sink.kind(), "eventbus");
    assert!(sink.describe().contains("default.tenant-gateway.lifecycle"));
    sink.check_ready().await.expect("stream exists: ready");

    let emission_id = "0193a6f0-7c1e-7b4a-9f00-6a1d2c3b4e5f";
    let body = canonical_event(emission_id, "acme-prod");
    let outcome = sink.deliver(emission_id, &body).await;
    assert_eq!(outcome, DeliveryOutcome::Delivered { status: None });

    let messages = stored_messages(&stream, 1).await;
    assert_eq!(messages.len(), 1);
    let message = &messages[0];
    assert_eq!(message.subject.as_str(), "default.tenant-gateway.lifecycle");
    assert_eq!(message.payload, body, "body bytes unchanged");
    let headers = message.headers.as_ref().expect("headers");
    assert_eq!(
        headers.get("Nats-Msg-Id").map(|v| v.as_str()),
        Some(emission_id)
    );

    // What a Sensor unmarshals: the CloudEvent, attributes and data intact.
    let event: Value = serde_json::from_slice(&message.payload).expect("JSON CloudEvent");
    assert_eq!(event["specversion"], "1.0");
    assert_eq!(event["id"], emission_id);
    assert_eq!(event["type"], "lifecycle.upsert");
    assert_eq!(event["source"], "urn:tenant-gateway:eu-west-1:gw-0");
    assert_eq!(event["subject"], "acme-prod");
    assert_eq!(event["datacontenttype"], "application/json");
    assert_eq!(event["sequence"], 7);
    assert_eq!(event["data"]["tenant"], "acme-prod");
    assert_eq!(event["data"]["parameters"]["region"], "eu-west-1");
    assert_eq!(event["data"]["payload"]["note"], "unicode ✓ and \"quotes\"");

    let info = stream.info().await.expect("stream info");
    assert_eq!(info.state.messages, 1);
}

#[tokio::test]
async fn redelivery_within_the_duplicates_window_is_stored_once() {
    let Some(server) = NatsServer::start().await else {
        return;
    };
    let mut stream = create_argo_stream(&server.url(), "default").await;
    let sink = eventbus_sink(eventbus_config(&server.url())).await;
    let id = "0193a6f0-7c1e-7b4a-9f00-000000000001";
    let body = canonical_event(id, "acme");

    for attempt in 0..3 {
        let outcome = sink.deliver(id, &body).await;
        assert_eq!(
            outcome,
            DeliveryOutcome::Delivered { status: None },
            "attempt {attempt}"
        );
    }
    assert_eq!(stream.info().await.expect("info").state.messages, 1);

    // The server acknowledges the repeat as a duplicate (what the sink logs and counts as
    // delivered): seen here with a raw publish carrying the same message id.
    let client = async_nats::connect(server.url()).await.expect("connect");
    let ack = jetstream::new(client)
        .send_publish(
            "default.tenant-gateway.lifecycle",
            jetstream::message::PublishMessage::build()
                .payload(body.clone())
                .message_id(id),
        )
        .await
        .expect("publish")
        .await
        .expect("ack");
    assert!(ack.duplicate, "{ack:?}");

    // A replay is a new emission id: stored again.
    let replay_id = "0193a6f0-7c1e-7b4a-9f00-000000000002";
    let outcome = sink
        .deliver(replay_id, &canonical_event(replay_id, "acme"))
        .await;
    assert_eq!(outcome, DeliveryOutcome::Delivered { status: None });
    assert_eq!(stream.info().await.expect("info").state.messages, 2);
}

#[tokio::test]
async fn a_missing_stream_is_not_ready_and_deliveries_are_retryable() {
    let Some(server) = NatsServer::start().await else {
        return;
    };
    let sink = eventbus_sink(eventbus_config(&server.url())).await;

    let err = sink.check_ready().await.expect_err("no stream: not ready");
    let message = err.to_string();
    assert!(
        message.contains("JetStream stream `default` not found")
            && message.contains(&server.url())
            && message.contains("create the Argo EventBus first"),
        "{message}"
    );

    let id = "0193a6f0-7c1e-7b4a-9f00-000000000003";
    let started = Instant::now();
    let outcome = sink.deliver(id, &canonical_event(id, "acme")).await;
    assert!(
        started.elapsed() < Duration::from_secs(2) + Duration::from_millis(500),
        "took {:?}",
        started.elapsed()
    );
    let DeliveryOutcome::Retryable {
        status: None,
        error,
    } = outcome
    else {
        panic!("expected retryable, got {outcome:?}");
    };
    assert!(
        error.contains("stream `default` missing") && error.contains("no responders"),
        "{error}"
    );

    // Once the EventBus exists, the same sink is ready and delivers.
    create_argo_stream(&server.url(), "default").await;
    sink.check_ready()
        .await
        .expect("ready once the stream exists");
    let outcome = sink.deliver(id, &canonical_event(id, "acme")).await;
    assert_eq!(outcome, DeliveryOutcome::Delivered { status: None });
}

#[tokio::test]
async fn a_stream_that_does_not_take_the_subject_is_not_ready() {
    let Some(server) = NatsServer::start().await else {
        return;
    };
    let client = async_nats::connect(server.url()).await.expect("connect");
    jetstream::new(client)
        .create_stream(stream::Config {
            name: "default".to_owned(),
            subjects: vec!["other.>".to_owned()],
            ..Default::default()
        })
        .await
        .expect("create stream");
    let sink = eventbus_sink(eventbus_config(&server.url())).await;
    let message = sink.check_ready().await.expect_err("not ready").to_string();
    assert!(
        message.contains("does not take subject `default.tenant-gateway.lifecycle`")
            && message.contains("other.>"),
        "{message}"
    );
}

/// No server yet: the sink still builds (within one connection attempt), is not ready, and
/// deliveries are retryable at once, saying why.
#[tokio::test]
async fn an_unreachable_server_does_not_fail_the_build() {
    // Nothing listens on a port just released.
    let url = format!("nats://127.0.0.1:{}", free_port());
    let started = Instant::now();
    let sink = eventbus_sink(eventbus_config(&url)).await;
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    let message = sink.check_ready().await.expect_err("not ready").to_string();
    assert!(
        message.starts_with(&format!("not connected to NATS at {url}: connecting")),
        "{message}"
    );
    let outcome = sink
        .deliver(
            "0193a6f0-7c1e-7b4a-9f00-000000000009",
            &canonical_event("0193a6f0-7c1e-7b4a-9f00-000000000009", "acme"),
        )
        .await;
    let DeliveryOutcome::Retryable { error, .. } = outcome else {
        panic!("not retryable: {outcome:?}");
    };
    assert!(error.contains("not connected to NATS"), "{error}");
}

#[tokio::test]
async fn a_lost_server_makes_deliveries_retryable_within_the_ack_timeout() {
    let Some(mut server) = NatsServer::start().await else {
        return;
    };
    create_argo_stream(&server.url(), "default").await;
    let sink = eventbus_sink(eventbus_config(&server.url())).await;
    server.kill();

    let id = "0193a6f0-7c1e-7b4a-9f00-000000000004";
    let started = Instant::now();
    let outcome = sink.deliver(id, &canonical_event(id, "acme")).await;
    assert!(
        started.elapsed() < Duration::from_secs(2) + Duration::from_millis(500),
        "took {:?}",
        started.elapsed()
    );
    assert!(
        matches!(outcome, DeliveryOutcome::Retryable { status: None, .. }),
        "{outcome:?}"
    );
    let message = tokio::time::timeout(Duration::from_secs(5), sink.check_ready())
        .await
        .expect("check_ready is bounded")
        .expect_err("server gone: not ready")
        .to_string();
    assert!(message.contains(&server.url()), "{message}");
}

#[tokio::test]
async fn connects_with_the_eventbus_credentials() {
    let Some(server) = NatsServer::start_with(&["--user", "argo", "--pass", "s3cret-pw"]).await
    else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let password_file = dir.path().join("password");
    std::fs::write(&password_file, "s3cret-pw\n").expect("write password");
    create_argo_stream_with(
        async_nats::ConnectOptions::with_user_and_password("argo".into(), "s3cret-pw".into()),
        &server.url(),
        "default",
    )
    .await;

    let mut config = eventbus_config(&server.url());
    config.user = Some("argo".to_owned());
    config.password_file = Some(password_file.clone());
    let sink = eventbus_sink(config.clone()).await;
    sink.check_ready().await.expect("ready");
    let id = "0193a6f0-7c1e-7b4a-9f00-000000000005";
    let outcome = sink.deliver(id, &canonical_event(id, "acme")).await;
    assert_eq!(outcome, DeliveryOutcome::Delivered { status: None });

    // A wrong password does not stop startup (the server may be rolling new credentials out);
    // readiness says what the server answered.
    std::fs::write(&password_file, "wrong-pw").expect("write password");
    let wrong = eventbus_sink(config.clone()).await;
    let message = wrong
        .check_ready()
        .await
        .expect_err("wrong password")
        .to_string();
    assert!(message.contains("authorization violation"), "{message}");
    assert!(!message.contains("wrong-pw"), "{message}");

    // The client would ignore credentials in the URL: refused, and masked in the message.
    config.user = None;
    config.password_file = None;
    config.url = format!(
        "nats://argo:s3cret-pw@{}",
        server.url().trim_start_matches("nats://")
    );
    let message = SinkConfig::Eventbus(config)
        .build()
        .await
        .expect_err("credentials in the URL")
        .to_string();
    assert!(
        message.contains("nats://***@127.0.0.1") && message.contains("password-file"),
        "{message}"
    );
    assert!(!message.contains("s3cret-pw"), "{message}");
}

#[tokio::test]
async fn connects_with_a_token() {
    let Some(server) = NatsServer::start_with(&["--auth", "t0ken"]).await else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "t0ken\n").expect("write token");
    create_argo_stream_with(
        async_nats::ConnectOptions::with_token("t0ken".into()),
        &server.url(),
        "default",
    )
    .await;
    let mut config = eventbus_config(&server.url());
    config.token_file = Some(token_file);
    let sink = eventbus_sink(config).await;
    let id = "0193a6f0-7c1e-7b4a-9f00-000000000006";
    assert_eq!(
        sink.deliver(id, &canonical_event(id, "acme")).await,
        DeliveryOutcome::Delivered { status: None }
    );
}

/// `serve` with the eventbus sink starts while no NATS server listens: ingest journals, the admin
/// readiness says the sink is not connected, and the event is delivered once a server starts.
#[tokio::test]
async fn eventbus_sink_starts_without_a_server_and_delivers_once_one_listens() {
    if !nats_server_installed() {
        skip_or_fail("nats-server (the Debian package nats-server) on PATH");
        return;
    }
    let port = free_port();
    let url = format!("nats://127.0.0.1:{port}");
    let mut app = crate::support::TestApp::spawn_with(move |settings| {
        settings.sink = SinkConfig::Eventbus(EventbusConfig {
            ack_timeout: Duration::from_secs(5),
            ..eventbus_config(&url)
        });
        settings.dispatch.retry = tenant_gateway::dispatch::RetryPolicy {
            initial_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(200),
            retry_limit: Duration::from_secs(3600),
        };
    })
    .await;
    let event = crate::support::lifecycle_event("down-1", "acme", "upsert");
    let resp = app.post_structured(&event).await;
    assert_eq!(resp.status().as_u16(), 202);
    let ready = reqwest::get(format!("http://{}/readyz", app.admin_addr))
        .await
        .unwrap();
    let body = crate::support::problem(ready, 503).await;
    let detail = body["detail"].as_str().unwrap_or_default();
    assert!(detail.contains("not connected to NATS"), "{detail}");
    let ingest = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(
        ingest.status().as_u16(),
        200,
        "ingest does not wait for the bus"
    );

    let Some(nats) = NatsServer::start_on(port).await else {
        return;
    };
    let stream = create_argo_stream(&nats.url(), "default").await;
    app.wait_for_progress("delivered once the server listens", |p| p.delivered == 1)
        .await;
    let consumer = stream
        .create_consumer(consumer::pull::Config {
            durable_name: Some("test".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut messages = consumer.messages().await.unwrap();
    let message = tokio::time::timeout(Duration::from_secs(30), messages.next())
        .await
        .expect("a message")
        .expect("stream open")
        .expect("message");
    let body: Value = serde_json::from_slice(&message.payload).expect("JSON body");
    assert_eq!(body["originid"], "down-1");
    app.stop().await;
}
