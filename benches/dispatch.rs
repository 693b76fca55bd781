//! Dispatch throughput, printed as numbers (no assertions): `cargo bench --bench dispatch`.
//!
//! In one run, against the same `nats-server` (spawned here with JetStream, a stream `default`
//! on `default.*.*` as Argo's EventBus creates it):
//! 1. raw: an async-nats JetStream publish loop with as many publishes in flight as the
//!    dispatcher's concurrency, each awaiting its ack: the ceiling;
//! 2. eventbus: the dispatcher draining a pre-filled journal to the `eventbus` sink;
//! 3. webhook: the dispatcher draining a pre-filled journal to a local HTTP receiver that
//!    answers 200 at once;
//! 4. null: the same drain to a sink that costs nothing (the `log` sink writing to
//!    `io::sink()`): the dispatcher's and journal's own ceiling, which tells whether a sink's
//!    shortfall is in the publish or in what surrounds it;
//! 5. wake-up latency: single events appended to an idle dispatcher until the webhook receiver
//!    has taken them.
//!
//! Environment: `BENCH_EVENTS` (default 20000), `BENCH_TENANTS` (default 1000),
//! `BENCH_CONCURRENCY` (default 64).

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tenant_gateway::cloudevents::{CloudEvent, Data};
use tenant_gateway::dispatch::sinks::{EventbusConfig, LogSink, Sink, SinkConfig, WebhookConfig};
use tenant_gateway::dispatch::{DispatchSettings, Dispatcher};
use tenant_gateway::journal::{EventJournal, JournalOptions, NewEvent};
use tenant_gateway::metrics::GatewayMetrics;
use tenant_gateway::normalize::LifecycleDetails;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct NatsProcess(Child);

impl Drop for NatsProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

async fn start_nats(dir: &std::path::Path) -> (NatsProcess, String) {
    let port = free_port();
    let child = Command::new("nats-server")
        .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("nats-server on PATH (Debian package nats-server)");
    let url = format!("nats://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while async_nats::connect(&url).await.is_err() {
        assert!(Instant::now() < deadline, "nats-server did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    (NatsProcess(child), url)
}

async fn create_stream(url: &str) -> async_nats::jetstream::Context {
    let js = async_nats::jetstream::new(async_nats::connect(url).await.expect("connect"));
    let _ = js.delete_stream("default").await;
    js.create_stream(async_nats::jetstream::stream::Config {
        name: "default".into(),
        subjects: vec!["default.*.*".into()],
        storage: async_nats::jetstream::stream::StorageType::File,
        max_messages: 10_000_000,
        duplicate_window: Duration::from_secs(300),
        ..Default::default()
    })
    .await
    .expect("create stream");
    js
}

/// A canonical-sized body (the dispatcher sends about this much per event).
fn sample_body() -> Bytes {
    let mut event = CloudEvent::new("sample", "urn:tenant-gateway", "lifecycle.upsert");
    event.subject = Some("tenant-0001".into());
    event.data = Some(Data::Json(serde_json::json!({
        "tenant": "tenant-0001", "action": "upsert", "parameters": {},
        "objectStorage": null, "workflowName": "tenant-0001-upsert-aaaaaaaaaaaaaaaaaaaaaaaaaa",
        "origin": {"id": "e-1", "source": "//billing.acme.example", "type": "com.acme.tenant.lifecycle.upsert", "time": null},
        "payload": {"plan": "gold"}
    })));
    Bytes::from(event.to_json().to_string())
}

async fn raw_publish(url: &str, events: usize, concurrency: usize) -> f64 {
    let js = create_stream(url).await;
    let body = sample_body();
    let started = Instant::now();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let js = js.clone();
        let body = body.clone();
        let next = Arc::clone(&next);
        tasks.spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= events {
                    break;
                }
                let mut headers = async_nats::HeaderMap::new();
                headers.insert("Nats-Msg-Id", format!("raw-{i}").as_str());
                js.publish_with_headers("default.bench.raw", headers, body.clone())
                    .await
                    .expect("publish")
                    .await
                    .expect("ack");
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    events as f64 / started.elapsed().as_secs_f64()
}

/// The ceiling of the webhook sink: a reqwest loop posting canonical-sized bodies to the same
/// receiver, `concurrency` requests in flight, each awaiting its answer.
async fn raw_post(url: &str, events: usize, concurrency: usize) -> f64 {
    let client = reqwest::Client::new();
    let body = sample_body();
    let started = Instant::now();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let client = client.clone();
        let url = url.to_owned();
        let body = body.clone();
        let next = Arc::clone(&next);
        tasks.spawn(async move {
            while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < events {
                let response = client
                    .post(&url)
                    .header("content-type", "application/cloudevents+json")
                    .body(body.clone())
                    .send()
                    .await
                    .expect("post");
                assert!(response.status().is_success(), "{}", response.status());
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    events as f64 / started.elapsed().as_secs_f64()
}

fn new_event(tenant: usize, i: usize) -> NewEvent {
    let mut event = CloudEvent::new(
        format!("e-{i}"),
        "//billing.acme.example/bench",
        "com.acme.tenant.lifecycle.upsert",
    );
    event.subject = Some(format!("tenant-{tenant:04}"));
    event.data = Some(Data::Json(serde_json::json!({"plan": "gold"})));
    let document = event.to_json().to_string();
    NewEvent {
        source: event.source.clone(),
        id: event.id.clone(),
        event_type: event.ty.clone(),
        tenant: format!("tenant-{tenant:04}"),
        action: "upsert".into(),
        time: None,
        content_hash: CloudEvent::content_hash(&document),
        document,
        lifecycle: LifecycleDetails::default().to_json_string(),
    }
}

async fn filled_journal(dir: &std::path::Path, events: usize, tenants: usize) -> EventJournal {
    let url = format!("sqlite://{}", dir.join("journal.db").display());
    let journal = EventJournal::open(&url, JournalOptions::default())
        .await
        .expect("journal");
    let all: Vec<NewEvent> = (0..events).map(|i| new_event(i % tenants, i)).collect();
    for chunk in all.chunks(1000) {
        journal.append(chunk.to_vec()).await.expect("append");
    }
    journal
}

async fn drain(journal: EventJournal, sink: Sink, events: usize, concurrency: usize) -> f64 {
    let metrics = GatewayMetrics::new(&journal);
    let settings = DispatchSettings {
        concurrency,
        ..DispatchSettings::default()
    };
    let commits_before = journal.commit_stats().commits;
    let started = Instant::now();
    let dispatcher = Dispatcher::start(journal.clone(), sink, settings, metrics);
    let mut progress = dispatcher.progress();
    progress
        .wait_for(|p| p.delivered as usize >= events)
        .await
        .expect("dispatcher running");
    let rate = events as f64 / started.elapsed().as_secs_f64();
    let commits = journal.commit_stats().commits - commits_before;
    println!(
        "  ({commits} journal commits, {:.0} attempt records per commit)",
        events as f64 / commits.max(1) as f64
    );
    dispatcher.stop().await;
    journal.close().await;
    rate
}

async fn start_receiver() -> String {
    use actix_web::{web, App, HttpResponse, HttpServer};
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let server = HttpServer::new(|| {
        App::new().route(
            "/lifecycle",
            web::post().to(|_body: Bytes| async { HttpResponse::Ok().body("success") }),
        )
    })
    .workers(1)
    .disable_signals()
    .listen(listener)
    .expect("listen")
    .run();
    tokio::spawn(server);
    format!("http://{addr}/lifecycle")
}

async fn wake_latency(
    dir: &std::path::Path,
    receiver: String,
    samples: usize,
) -> (Duration, Duration) {
    let journal = filled_journal(dir, 0, 1).await;
    let sink = SinkConfig::Webhook(WebhookConfig {
        url: receiver,
        token_file: None,
        timeout: Duration::from_secs(30),
    })
    .build()
    .await
    .expect("webhook sink");
    let metrics = GatewayMetrics::new(&journal);
    let dispatcher = Dispatcher::start(journal.clone(), sink, DispatchSettings::default(), metrics);
    let mut progress = dispatcher.progress();
    let mut latencies = Vec::with_capacity(samples);
    for i in 0..samples {
        let started = Instant::now();
        journal
            .append(vec![new_event(i % 7, 1_000_000 + i)])
            .await
            .expect("append");
        progress
            .wait_for(|p| p.delivered as usize > i)
            .await
            .expect("running");
        latencies.push(started.elapsed());
        // Idle between samples, as a quiet gateway is.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    dispatcher.stop().await;
    journal.close().await;
    latencies.sort();
    (latencies[samples / 2], latencies[samples * 99 / 100])
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let events = env_usize("BENCH_EVENTS", 20_000);
    let tenants = env_usize("BENCH_TENANTS", 1000);
    let concurrency = env_usize("BENCH_CONCURRENCY", 64);
    let dir = tempfile::tempdir().expect("tempdir");
    let (_nats, url) = start_nats(&dir.path().join("nats")).await;
    println!(
        "dispatch benchmark: {events} events over {tenants} tenants, concurrency {concurrency}"
    );

    let raw = raw_publish(&url, events, concurrency).await;
    println!("raw JetStream publish+ack:   {raw:>9.0} msgs/s");

    create_stream(&url).await;
    let journal = filled_journal(&dir.path().join("eventbus"), events, tenants).await;
    let eventbus = drain(
        journal,
        SinkConfig::Eventbus(EventbusConfig {
            url: url.clone(),
            stream: "default".into(),
            event_source_name: "bench".into(),
            event_name: "lifecycle".into(),
            user: None,
            password_file: None,
            client_auth_file: None,
            token_file: None,
            ca_file: None,
            ack_timeout: Duration::from_secs(10),
        })
        .build()
        .await
        .expect("eventbus sink"),
        events,
        concurrency,
    )
    .await;
    println!(
        "dispatch -> eventbus sink:   {eventbus:>9.0} events/s ({:.0}% of raw)",
        100.0 * eventbus / raw
    );

    let receiver = start_receiver().await;
    let raw_webhook = raw_post(&receiver, events, concurrency).await;
    println!("raw reqwest POST loop:       {raw_webhook:>9.0} requests/s");
    let journal = filled_journal(&dir.path().join("webhook"), events, tenants).await;
    let webhook = drain(
        journal,
        SinkConfig::Webhook(WebhookConfig {
            url: receiver.clone(),
            token_file: None,
            timeout: Duration::from_secs(30),
        })
        .build()
        .await
        .expect("webhook sink"),
        events,
        concurrency,
    )
    .await;
    println!("dispatch -> webhook sink:    {webhook:>9.0} events/s");

    let journal = filled_journal(&dir.path().join("null"), events, tenants).await;
    let null = drain(
        journal,
        Sink::Log(LogSink::to_writer(std::io::sink())),
        events,
        concurrency,
    )
    .await;
    println!("dispatch -> null sink:       {null:>9.0} events/s (the dispatcher's own ceiling)");

    let (p50, p99) = wake_latency(&dir.path().join("latency"), receiver, 200).await;
    println!("commit -> delivered (webhook, idle dispatcher): p50 {p50:?}, p99 {p99:?}");
    // Last line: the ratios the targets are stated in (docs/benchmarks.md).
    println!(
        "ratios: eventbus/raw publish {:.0} % (target >= 50 %), webhook/raw POST {:.0} % (target >= 50 %)",
        100.0 * eventbus / raw,
        100.0 * webhook / raw_webhook
    );
}
