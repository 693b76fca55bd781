//! The `POST /events` contract of `docs/api.md` against a running gateway: every status code,
//! atomic batches, dedup and conflict, authentication, the handshake and health endpoints.

use std::io::Write;

use serde_json::{json, Value};

use crate::support::{json_body, lifecycle_event, problem, TestApp};

#[tokio::test]
async fn binary_mode_event_is_stored_and_answered_202() {
    let app = TestApp::spawn().await;
    let resp = app
        .client
        .post(app.url("/events"))
        .header("ce-specversion", "1.0")
        .header("ce-id", "evt-1")
        .header("ce-source", "//crm.acme.example")
        .header("ce-type", "com.acme.tenant.lifecycle.upsert")
        .header("ce-subject", "acme-prod")
        .header("content-type", "application/json")
        .body(r#"{"plan":"gold"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    let body = json_body(resp).await;
    assert_eq!(body["accepted"], 1);
    assert_eq!(body["duplicates"], 0);
    let reported = &body["events"][0];
    assert_eq!(reported["id"], "evt-1");
    assert_eq!(reported["source"], "//crm.acme.example");
    assert_eq!(reported["tenant"], "acme-prod");
    assert_eq!(reported["action"], "upsert");
    assert_eq!(reported["status"], "accepted");

    // 202 means committed: the journal has it before the test asks.
    let stored = app
        .journal
        .find_by_origin("//crm.acme.example", "evt-1")
        .await
        .unwrap()
        .expect("stored");
    assert_eq!(reported["eventId"], stored.event_id.to_string());
    assert_eq!(stored.event_id.get_version_num(), 7, "eventId is a UUIDv7");
    assert_eq!(stored.tenant, "acme-prod");
    assert_eq!(stored.sequence, 1);
    assert_eq!(stored.document["data"], json!({"plan": "gold"}));
    app.stop().await;
}

#[tokio::test]
async fn resending_the_same_event_is_a_200_duplicate_with_the_same_event_id() {
    let app = TestApp::spawn().await;
    let event = lifecycle_event("dup-1", "acme", "upsert");
    let first = json_body(app.post_structured(&event).await).await;
    let resp = app.post_structured(&event).await;
    assert_eq!(resp.status(), 200);
    let second = json_body(resp).await;
    assert_eq!(second["accepted"], 0);
    assert_eq!(second["duplicates"], 1);
    assert_eq!(second["events"][0]["status"], "duplicate");
    assert_eq!(
        second["events"][0]["eventId"],
        first["events"][0]["eventId"]
    );
    assert_eq!(app.journal.tenant_timeline("acme").await.unwrap().len(), 1);
    app.stop().await;
}

#[tokio::test]
async fn same_source_and_id_with_other_content_is_a_409() {
    let app = TestApp::spawn().await;
    let event = lifecycle_event("c-1", "acme", "upsert");
    assert_eq!(app.post_structured(&event).await.status(), 202);
    let mut changed = event.clone();
    changed["data"] = json!({"plan": "silver"});
    let body = problem(app.post_structured(&changed).await, 409).await;
    assert_eq!(body["errors"][0]["attribute"], "id");
    let stored = app
        .journal
        .find_by_origin("//billing.acme.example/invoices", "c-1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        stored.document["data"]["plan"], "gold",
        "the original is kept"
    );
    app.stop().await;
}

#[tokio::test]
async fn invalid_cloudevent_is_a_400_naming_the_attribute() {
    let app = TestApp::spawn().await;
    let mut event = lifecycle_event("x", "acme", "upsert");
    event["time"] = json!("not a time");
    let body = problem(app.post_structured(&event).await, 400).await;
    assert_eq!(body["errors"][0]["attribute"], "time");

    let resp = app
        .client
        .post(app.url("/events"))
        .header("content-type", "application/cloudevents+json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    let body = problem(resp, 400).await;
    assert!(body["detail"].as_str().unwrap().contains("JSON"), "{body}");

    // Binary mode: an invalid percent-encoding in a header value.
    let resp = app
        .client
        .post(app.url("/events"))
        .header("ce-specversion", "1.0")
        .header("ce-id", "p-1")
        .header("ce-source", "/s")
        .header("ce-type", "lifecycle.upsert")
        .header("ce-subject", "acme%C0%A0")
        .send()
        .await
        .unwrap();
    let body = problem(resp, 400).await;
    assert_eq!(body["errors"][0]["attribute"], "subject");
    app.stop().await;
}

#[tokio::test]
async fn structured_format_other_than_json_is_a_415() {
    let app = TestApp::spawn().await;
    let resp = app
        .client
        .post(app.url("/events"))
        .header("content-type", "application/cloudevents+avro")
        .body(vec![1u8, 2, 3])
        .send()
        .await
        .unwrap();
    problem(resp, 415).await;
    app.stop().await;
}

#[tokio::test]
async fn body_over_the_limit_is_a_413_and_stores_nothing() {
    let app = TestApp::spawn_with(|s| s.max_body = 1024).await;
    let mut event = lifecycle_event("big", "acme", "upsert");
    event["data"] = json!({"blob": "x".repeat(2000)});
    problem(app.post_structured(&event).await, 413).await;
    assert!(app
        .journal
        .tenant_timeline("acme")
        .await
        .unwrap()
        .is_empty());
    // Just under the limit is fine.
    let small = lifecycle_event("small", "acme", "upsert");
    assert_eq!(app.post_structured(&small).await.status(), 202);
    app.stop().await;
}

#[tokio::test]
async fn events_the_default_rule_cannot_normalize_are_a_422() {
    let app = TestApp::spawn().await;
    let mut no_suffix = lifecycle_event("n-1", "acme", "upsert");
    no_suffix["type"] = json!("com.acme.invoice.paid");
    let body = problem(app.post_structured(&no_suffix).await, 422).await;
    assert_eq!(body["errors"][0]["attribute"], "type");

    let mut no_tenant = lifecycle_event("n-2", "acme", "upsert");
    no_tenant.as_object_mut().unwrap().remove("tenant");
    let body = problem(app.post_structured(&no_tenant).await, 422).await;
    assert_eq!(body["errors"][0]["attribute"], "tenant");

    let bad_tenant = lifecycle_event("n-3", "Acme_Corp", "upsert");
    let body = problem(app.post_structured(&bad_tenant).await, 422).await;
    assert!(body["errors"][0]["message"]
        .as_str()
        .unwrap()
        .contains("DNS-1123"));

    let unknown_action = lifecycle_event("n-4", "acme", "explode");
    problem(app.post_structured(&unknown_action).await, 422).await;
    app.stop().await;
}

#[tokio::test]
async fn batch_is_atomic_and_lists_every_bad_index() {
    let app = TestApp::spawn().await;
    let mut bad = lifecycle_event("b-2", "acme", "upsert");
    bad.as_object_mut().unwrap().remove("source");
    let batch = vec![
        lifecycle_event("b-1", "acme", "upsert"),
        bad,
        lifecycle_event("b-3", "acme", "upsert"),
        json!({"specversion": "1.0", "id": "", "source": "/s", "type": "t"}),
    ];
    let body = problem(app.post_batch(&batch).await, 400).await;
    let indices: Vec<_> = body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["index"].as_u64().unwrap())
        .collect();
    assert!(indices.contains(&1) && indices.contains(&3), "{body}");
    assert!(!indices.contains(&0) && !indices.contains(&2));
    assert!(
        app.journal
            .tenant_timeline("acme")
            .await
            .unwrap()
            .is_empty(),
        "nothing stored"
    );

    // 422 members: every index listed, nothing stored.
    let batch = vec![
        lifecycle_event("u-1", "acme", "upsert"),
        lifecycle_event("u-2", "NOPE", "upsert"),
        lifecycle_event("u-3", "acme", "explode"),
    ];
    let body = problem(app.post_batch(&batch).await, 422).await;
    let indices: Vec<_> = body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["index"].clone())
        .collect();
    assert_eq!(indices, vec![json!(1), json!(2)]);
    assert!(app
        .journal
        .tenant_timeline("acme")
        .await
        .unwrap()
        .is_empty());

    // A conflicting member makes the whole batch a 409 and stores none of it.
    assert_eq!(
        app.post_structured(&lifecycle_event("k-1", "acme", "upsert"))
            .await
            .status(),
        202
    );
    let mut conflicting = lifecycle_event("k-1", "acme", "upsert");
    conflicting["data"] = json!({"plan": "changed"});
    let batch = vec![lifecycle_event("k-0", "acme", "upsert"), conflicting];
    let body = problem(app.post_batch(&batch).await, 409).await;
    assert_eq!(body["errors"][0]["index"], 1);
    assert!(app
        .journal
        .find_by_origin("//billing.acme.example/invoices", "k-0")
        .await
        .unwrap()
        .is_none());
    app.stop().await;
}

#[tokio::test]
async fn batch_of_new_and_duplicate_events_reports_each_in_order() {
    let app = TestApp::spawn().await;
    assert_eq!(
        app.post_structured(&lifecycle_event("m-1", "acme", "upsert"))
            .await
            .status(),
        202
    );
    let batch = vec![
        lifecycle_event("m-1", "acme", "upsert"),
        lifecycle_event("m-2", "acme", "delete"),
        lifecycle_event("m-3", "globex", "upsert"),
    ];
    let resp = app.post_batch(&batch).await;
    assert_eq!(resp.status(), 202);
    let body = json_body(resp).await;
    assert_eq!(
        (body["accepted"].clone(), body["duplicates"].clone()),
        (json!(2), json!(1))
    );
    let statuses: Vec<_> = body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["status"].clone())
        .collect();
    assert_eq!(
        statuses,
        vec![json!("duplicate"), json!("accepted"), json!("accepted")]
    );
    let acme: Vec<_> = app
        .journal
        .tenant_timeline("acme")
        .await
        .unwrap()
        .iter()
        .map(|e| (e.id.clone(), e.sequence))
        .collect();
    assert_eq!(acme, vec![("m-1".to_string(), 1), ("m-2".to_string(), 2)]);

    // An empty batch is valid and stores nothing.
    let resp = app.post_batch(&[]).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(json_body(resp).await["accepted"], 0);
    app.stop().await;
}

fn token_file(dir: &tempfile::TempDir, name: &str, secret: &str) -> std::path::PathBuf {
    let path = dir.path().join(name);
    let mut f = std::fs::File::create(&path).unwrap();
    writeln!(f, "{secret}").unwrap();
    path
}

#[tokio::test]
async fn bearer_tokens_are_required_when_configured_and_limit_sources() {
    let dir = tempfile::tempdir().unwrap();
    let open_token = token_file(&dir, "ops", "ops-secret");
    let billing_token = token_file(&dir, "billing", "billing-secret");
    let app = TestApp::spawn_with(|s| {
        s.tokens = vec![
            tenant_gateway::config::TokenConfig {
                name: "ops".into(),
                file: open_token,
                ..Default::default()
            },
            tenant_gateway::config::TokenConfig {
                name: "billing".into(),
                file: billing_token,
                sources: vec!["//billing.acme.example/*".into()],
                ..Default::default()
            },
        ]
    })
    .await;
    let event = lifecycle_event("a-1", "acme", "upsert");

    let resp = app.post_structured(&event).await;
    assert!(resp.headers().get("www-authenticate").is_some());
    problem(resp, 401).await;

    let wrong = app
        .client
        .post(app.url("/events"))
        .bearer_auth("guess")
        .header("content-type", "application/cloudevents+json")
        .body(event.to_string())
        .send()
        .await
        .unwrap();
    problem(wrong, 401).await;
    assert!(app
        .journal
        .tenant_timeline("acme")
        .await
        .unwrap()
        .is_empty());

    let ok = app
        .client
        .post(app.url("/events"))
        .bearer_auth("billing-secret")
        .header("content-type", "application/cloudevents+json")
        .body(event.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 202);

    // The webhook spec's query parameter works too.
    let via_query = app
        .client
        .post(app.url("/events?access_token=ops-secret"))
        .header("content-type", "application/cloudevents+json")
        .body(lifecycle_event("a-2", "acme", "upsert").to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(via_query.status(), 202);

    // The billing token may not post another source's events.
    let mut foreign = lifecycle_event("a-3", "acme", "upsert");
    foreign["source"] = json!("//crm.acme.example");
    let resp = app
        .client
        .post(app.url("/events"))
        .bearer_auth("billing-secret")
        .header("content-type", "application/cloudevents+json")
        .body(foreign.to_string())
        .send()
        .await
        .unwrap();
    let body = problem(resp, 403).await;
    assert_eq!(body["errors"][0]["attribute"], "source");
    assert_eq!(app.journal.tenant_timeline("acme").await.unwrap().len(), 2);
    app.stop().await;
}

#[tokio::test]
async fn non_loopback_listener_without_credentials_refuses_to_start() {
    let mut settings = tenant_gateway::config::Settings::local();
    settings.listen = "0.0.0.0:0".parse().unwrap();
    settings.admin_listen = "127.0.0.1:0".parse().unwrap();
    let dir = tempfile::tempdir().unwrap();
    settings.store = format!("sqlite://{}", dir.path().join("j.db").display());
    let err = tenant_gateway::app::Application::build(settings.clone())
        .await
        .err()
        .expect("must refuse");
    assert!(err.to_string().contains("--insecure-no-auth"), "{err}");
    settings.insecure_no_auth = true;
    let app = tenant_gateway::app::Application::build(settings)
        .await
        .expect("starts when told");
    drop(app);
}

#[tokio::test]
async fn locked_store_is_a_503_with_retry_after_and_recovers() {
    let app =
        TestApp::spawn_with(|s| s.journal.busy_timeout = std::time::Duration::from_millis(200))
            .await;
    // Another process holding the write lock: the journal cannot commit.
    let locker = app.lock_store().await;
    let event = lifecycle_event("l-1", "acme", "upsert");
    let resp = app.post_structured(&event).await;
    assert_eq!(
        resp.headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some("1")
    );
    let body = problem(resp, 503).await;
    assert!(
        !body["detail"]
            .as_str()
            .unwrap()
            .contains("database is locked"),
        "no internals leak"
    );
    locker.release().await;
    assert_eq!(
        app.post_structured(&event).await.status(),
        202,
        "a retry succeeds"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_journal_queue_is_a_429_with_retry_after() {
    let app = std::sync::Arc::new(
        TestApp::spawn_with(|s| {
            // One event's bytes: the first post is let in (nothing is held), the next refused
            // while the writer holds it.
            s.journal.queue_bytes = 1;
            s.journal.busy_timeout = std::time::Duration::from_secs(30);
            s.workers = 2;
        })
        .await,
    );
    // Stall the writer on a lock held elsewhere, so requests pile up in its queue.
    let locker = app.lock_store().await;
    // Post until one is refused: the writer takes a request and blocks on the lock, holding its
    // bytes, and the next one must be refused at once. Which post is which
    // depends on scheduling, so no post is assumed to be the refused one; a post that has not
    // answered within the wait is one of those held by the stalled writer.
    let mut held = Vec::new();
    let mut refused = None;
    for n in 0..20 {
        let poster = app.clone();
        let id = format!("q-{n}");
        let mut post = tokio::spawn(async move {
            let resp = poster
                .post_structured(&lifecycle_event(&id, "acme", "upsert"))
                .await;
            let retry_after = resp
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            (
                id,
                resp.status().as_u16(),
                retry_after,
                json_body(resp).await,
            )
        });
        match tokio::time::timeout(std::time::Duration::from_millis(300), &mut post).await {
            Ok(answer) => {
                refused = Some(answer.unwrap());
                break;
            }
            Err(_) => held.push(post),
        }
    }
    let (refused_id, status, retry_after, body) =
        refused.expect("a post is refused while the journal queue is full");
    assert_eq!(status, 429, "{body}");
    assert_eq!(retry_after.as_deref(), Some("1"));
    assert_eq!(body["type"], "urn:tenant-gateway:problem:overloaded");
    assert!(!held.is_empty(), "the writer holds one request");
    locker.release().await;
    for post in held {
        let (_, status, _, body) = post.await.unwrap();
        assert_eq!(
            status, 202,
            "held posts complete once the lock is gone: {body}"
        );
    }
    assert!(app
        .journal
        .find_by_origin("//billing.acme.example/invoices", &refused_id)
        .await
        .unwrap()
        .is_none());
}

#[tokio::test]
async fn draining_answers_503_and_readiness_fails() {
    let mut app =
        TestApp::spawn_with(|s| s.shutdown_grace = std::time::Duration::from_secs(30)).await;
    assert_eq!(
        app.client
            .get(app.url("/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let stopping = app.begin_shutdown();
    // Draining starts as soon as the shutdown future resolves; poll for it (bounded).
    let mut ready_status = 200;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::time::Instant::now() < deadline {
        ready_status = app
            .client
            .get(app.url("/readyz"))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16();
        if ready_status == 503 {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert_eq!(ready_status, 503);
    let resp = app
        .post_structured(&lifecycle_event("d-1", "acme", "upsert"))
        .await;
    assert!(resp.headers().get("retry-after").is_some());
    problem(resp, 503).await;
    assert_eq!(
        app.client
            .get(app.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    stopping.abort();
}

#[tokio::test]
async fn webhook_abuse_protection_handshake() {
    let app = TestApp::spawn().await;
    let resp = app
        .client
        .request(reqwest::Method::OPTIONS, app.url("/events"))
        .header("WebHook-Request-Origin", "eventemitter.example.com")
        .header("WebHook-Request-Rate", "120")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let h = resp.headers();
    assert_eq!(h["webhook-allowed-origin"], "eventemitter.example.com");
    assert_eq!(h["webhook-allowed-rate"], "*");
    assert!(h["allow"].to_str().unwrap().contains("POST"));
    app.stop().await;
}

#[tokio::test]
async fn health_and_readiness() {
    let app = TestApp::spawn().await;
    let health: Value = app
        .client
        .get(app.url("/healthz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["status"], "ok");
    let ready = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    app.stop().await;
}

#[tokio::test]
async fn per_tenant_sequences_under_concurrent_posts() {
    let app = std::sync::Arc::new(TestApp::spawn_with(|s| s.workers = 2).await);
    let mut tasks = Vec::new();
    for i in 0..100 {
        let app = app.clone();
        tasks.push(tokio::spawn(async move {
            let tenant = format!("t{}", i % 4);
            app.post_structured(&lifecycle_event(&format!("cc-{i}"), &tenant, "upsert"))
                .await
                .status()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 202);
    }
    for t in 0..4 {
        let seqs: Vec<i64> = app
            .journal
            .tenant_timeline(&format!("t{t}"))
            .await
            .unwrap()
            .iter()
            .map(|e| e.sequence)
            .collect();
        assert_eq!(seqs, (1..=25).collect::<Vec<_>>());
    }
}

#[tokio::test]
async fn send_subcommand_posts_binary_and_structured() {
    use clap::Parser;
    let app = TestApp::spawn().await;
    for (mode, id) in [("binary", "send-1"), ("structured", "send-2")] {
        let cli = tenant_gateway::cli::Cli::try_parse_from([
            "tenant-gateway",
            "send",
            "--type",
            "com.acme.tenant.lifecycle.upsert",
            "--tenant",
            "acme",
            "--data",
            r#"{"plan":"gold"}"#,
            "--mode",
            mode,
            "--id",
            id,
            "--subject",
            "caf\u{e9} \u{2615}",
            "--url",
            &app.url("/events"),
        ])
        .unwrap();
        let tenant_gateway::cli::Command::Send(args) = cli.command else {
            unreachable!()
        };
        let answer = tenant_gateway::ingest::send::run(args.into())
            .await
            .expect("accepted");
        assert_eq!(answer["accepted"], 1);
        let stored = app
            .journal
            .find_by_origin("/tenant-gateway/send", id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(stored.document["subject"], "caf\u{e9} \u{2615}");
        assert_eq!(stored.document["data"]["plan"], "gold");
    }
    // A rejected event is an error carrying the problem detail.
    let cli = tenant_gateway::cli::Cli::try_parse_from([
        "tenant-gateway",
        "send",
        "--type",
        "com.acme.other",
        "--tenant",
        "acme",
        "--url",
        &app.url("/events"),
    ])
    .unwrap();
    let tenant_gateway::cli::Command::Send(args) = cli.command else {
        unreachable!()
    };
    let err = tenant_gateway::ingest::send::run(args.into())
        .await
        .unwrap_err();
    assert!(err.to_string().starts_with("422"), "{err}");
    app.stop().await;
}
