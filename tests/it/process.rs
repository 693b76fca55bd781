//! The real binary: acknowledged events survive `kill -9`, and SIGTERM drains and exits 0.

use std::time::{Duration, Instant};

use crate::support::argo_webhook::ArgoWebhook;
use crate::support::{lifecycle_event, GatewayProcess};

async fn post(
    client: &reqwest::Client,
    gw_url: &str,
    event: &serde_json::Value,
) -> reqwest::Result<reqwest::StatusCode> {
    client
        .post(gw_url)
        .header("content-type", "application/cloudevents+json")
        .body(event.to_string())
        .send()
        .await
        .map(|r| r.status())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_events_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("journal.db");
    let mut gw = GatewayProcess::start(&store, &[]);
    let url = gw.url("/events");
    let client = reqwest::Client::new();

    // 32 concurrent posters, 25 events each; remember what was acknowledged.
    let mut tasks = Vec::new();
    for worker in 0..32 {
        let (client, url) = (client.clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            for n in 0..25 {
                let event = lifecycle_event(
                    &format!("k9-{worker}-{n}"),
                    &format!("tenant-{}", worker % 8),
                    "upsert",
                );
                if let Ok(status) = post(&client, &url, &event).await {
                    assert_eq!(status, 202, "first post of a new event");
                    acked.push(event);
                }
            }
            acked
        }));
    }
    let mut acknowledged = Vec::new();
    for t in tasks {
        acknowledged.extend(t.await.unwrap());
    }
    // SIGKILL right after the last response: no chance to flush anything more.
    gw.child.kill().unwrap();
    gw.child.wait().unwrap();
    assert_eq!(acknowledged.len(), 800);

    let gw = GatewayProcess::start(&store, &[]);
    let url = gw.url("/events");
    for event in &acknowledged {
        let status = post(&client, &url, event).await.unwrap();
        assert_eq!(
            status, 200,
            "acknowledged event {} must be a duplicate after restart",
            event["id"]
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_then_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let mut gw = GatewayProcess::start(&dir.path().join("journal.db"), &["--shutdown-grace", "5s"]);
    let client = reqwest::Client::new();
    assert_eq!(
        post(
            &client,
            &gw.url("/events"),
            &lifecycle_event("s-1", "acme", "upsert")
        )
        .await
        .unwrap(),
        202
    );

    let status = std::process::Command::new("kill")
        .args(["-TERM", &gw.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());

    // Readiness flips to 503 while the process drains (bounded poll, not a fixed sleep).
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut ready = 200;
    while Instant::now() < deadline {
        ready = client
            .get(gw.url("/readyz"))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16();
        if ready == 503 {
            break;
        }
    }
    assert_eq!(ready, 503, "readiness must fail while draining");
    assert_eq!(
        post(
            &client,
            &gw.url("/events"),
            &lifecycle_event("s-2", "acme", "upsert")
        )
        .await
        .unwrap(),
        503
    );

    let deadline = Instant::now() + Duration::from_secs(30);
    let exit = loop {
        if let Some(exit) = gw.child.try_wait().unwrap() {
            break exit;
        }
        assert!(
            Instant::now() < deadline,
            "gateway did not exit after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(exit.code(), Some(0));

    // The event acknowledged before shutdown is in the journal.
    let journal = tenant_gateway::journal::EventJournal::open(
        &format!("sqlite://{}", dir.path().join("journal.db").display()),
        Default::default(),
    )
    .await
    .unwrap();
    assert!(journal
        .find_by_origin("//billing.acme.example/invoices", "s-1")
        .await
        .unwrap()
        .is_some());
    assert!(journal
        .find_by_origin("//billing.acme.example/invoices", "s-2")
        .await
        .unwrap()
        .is_none());
    journal.close().await;
}

/// `discover --from-dir --once --dry-run -o json` prints exactly the reviewed golden templates;
/// an action that cannot be rendered makes the command fail after printing the others.
#[test]
fn discover_dry_run_from_dir_prints_what_would_be_applied() {
    let crate_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let run = |dir: &std::path::Path| {
        std::process::Command::new(env!("CARGO_BIN_EXE_tenant-gateway"))
            .args(["discover", "--once", "--dry-run", "-o", "json"])
            .args([
                "--object-storage-secret",
                "tenant-object-storage",
                "--from-dir",
            ])
            .arg(dir)
            .output()
            .expect("run tenant-gateway discover")
    };

    let output = run(&crate_dir.join("examples/jobs"));
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let list: serde_json::Value = serde_json::from_slice(&output.stdout).expect("a JSON List");
    assert_eq!(list["kind"], "List");
    let items = list["items"].as_array().expect("items");
    assert_eq!(items.len(), 5, "one template per default action");
    for item in items {
        let name = item["metadata"]["name"].as_str().expect("name");
        let golden = std::fs::read_to_string(
            crate_dir.join(format!("tests/fixtures/discovery/golden/{name}.yaml")),
        )
        .expect("a golden file per printed template");
        let golden: serde_json::Value = serde_yaml_ng::from_str(&golden).expect("golden YAML");
        assert_eq!(item, &golden, "{name}");
    }

    // A dependency on a Job that does not exist: upsert cannot be rendered.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("broken.yaml"),
        r#"
apiVersion: batch/v1
kind: Job
metadata:
  name: needs-missing
  namespace: team-a
  labels: {tenant-gateway.io/template: "true"}
  annotations:
    tenant-gateway.io/lifecycle: lifecycle.upsert
    tenant-gateway.io/depends-on: team-a/not-there
spec:
  suspend: true
  template:
    spec:
      restartPolicy: Never
      containers: [{name: step, image: busybox}]
"#,
    )
    .unwrap();
    let output = run(dir.path());
    assert!(
        !output.status.success(),
        "a problem action fails the command"
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("upsert") && stderr.contains("not-there"),
        "{stderr}"
    );
    let list: serde_json::Value = serde_json::from_slice(&output.stdout).expect("a JSON List");
    let names: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["metadata"]["name"].as_str().unwrap())
        .collect();
    assert!(!names.contains(&"tenant-lifecycle-upsert"), "{names:?}");
    assert_eq!(
        names.len(),
        4,
        "the other actions are still printed: {names:?}"
    );
}

/// The default `log` sink: the binary prints each emitted canonical event as one JSON line on
/// stdout (logs stay on stderr).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_sink_prints_one_json_line_per_event_on_stdout() {
    let dir = tempfile::tempdir().unwrap();
    let gw = GatewayProcess::start(
        &dir.path().join("journal.db"),
        &["--instance-uri", "urn:tenant-gateway:process-test"],
    );
    let client = reqwest::Client::new();
    for (id, tenant) in [("log-1", "acme"), ("log-2", "acme"), ("log-3", "globex")] {
        let event = lifecycle_event(id, tenant, "upsert");
        let status = post(&client, &gw.url("/events"), &event).await.unwrap();
        assert_eq!(status, 202);
    }
    let lines: Vec<serde_json::Value> = (0..3)
        .map(|_| {
            let line = gw.stdout_line(Duration::from_secs(30));
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"))
        })
        .collect();
    let mut seen: Vec<(String, i64, String)> = lines
        .iter()
        .map(|event| {
            assert_eq!(event["source"], "urn:tenant-gateway:process-test");
            assert_eq!(event["type"], "lifecycle.upsert");
            assert_eq!(
                event["data"]["payload"],
                serde_json::json!({"plan": "gold"})
            );
            (
                event["subject"].as_str().unwrap().to_owned(),
                event["sequence"].as_i64().unwrap(),
                event["originid"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        [
            ("acme".into(), 1, "log-1".into()),
            ("acme".into(), 2, "log-2".into()),
            ("globex".into(), 1, "log-3".into()),
        ]
    );
}

/// A 12-factor deployment configures the webhook sink without a file: `--sink webhook
/// --webhook-url URL --webhook-token-file FILE`, or the same as `TENANT_GATEWAY_*` variables.
/// Either way the event reaches the EventSource with the token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_sink_from_flags_or_environment_delivers() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("webhook-token");
    std::fs::write(&token_file, "hook-s3cret\n").unwrap();
    let token_path = token_file.display().to_string();
    let client = reqwest::Client::new();
    for by_environment in [false, true] {
        let webhook = ArgoWebhook::start_with_token("hook-s3cret").await;
        let url = webhook.url();
        let store = dir.path().join(format!("journal-{by_environment}.db"));
        let gw = if by_environment {
            GatewayProcess::start_with_env(
                &store,
                &[],
                &[
                    ("TENANT_GATEWAY_SINK", "webhook"),
                    ("TENANT_GATEWAY_WEBHOOK_URL", &url),
                    ("TENANT_GATEWAY_WEBHOOK_TOKEN_FILE", &token_path),
                ],
            )
        } else {
            GatewayProcess::start(
                &store,
                &[
                    "--sink",
                    "webhook",
                    "--webhook-url",
                    &url,
                    "--webhook-token-file",
                    &token_path,
                ],
            )
        };
        let id = format!("twelve-factor-{by_environment}");
        let status = post(
            &client,
            &gw.url("/events"),
            &lifecycle_event(&id, "acme", "upsert"),
        )
        .await
        .unwrap();
        assert_eq!(status, 202);
        let received = webhook.wait_for(1, Duration::from_secs(60)).await;
        assert_eq!(received[0].status, 200, "by environment: {by_environment}");
        let emitted = received[0].json.as_ref().expect("a JSON body");
        assert_eq!(emitted["originid"], id.as_str());
        assert_eq!(emitted["subject"], "acme");
    }
}

/// `kill -9` while the dispatcher is busy: after a restart every acknowledged event reaches the
/// receiver, and each tenant's accepted deliveries stay in sequence (an emission the receiver
/// took just before the kill may come again: at-least-once, never out of order).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_dispatch_loses_nothing_and_keeps_order() {
    use crate::support::argo_webhook::{ArgoWebhook, Behaviour};
    const TENANTS: usize = 10;
    const EVENTS: usize = 20;
    let hook = ArgoWebhook::start().await;
    // Slow answers keep deliveries in flight when the kill comes.
    hook.set_default(Behaviour::Slow(Duration::from_millis(100)));
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            "[sink]\nkind = \"webhook\"\nurl = \"{}\"\n[dispatch]\ninitial-backoff = \"10ms\"\n",
            hook.url()
        ),
    )
    .unwrap();
    let store = dir.path().join("journal.db");
    let args = ["--config", config.to_str().unwrap()];
    let mut gw = GatewayProcess::start(&store, &args);
    let client = reqwest::Client::new();
    let url = gw.url("/events");
    let posters = (0..TENANTS).map(|t| {
        let (client, url) = (client.clone(), url.clone());
        async move {
            for e in 0..EVENTS {
                let event = lifecycle_event(&format!("k{t}-{e}"), &format!("tenant-{t}"), "upsert");
                assert_eq!(post(&client, &url, &event).await.unwrap(), 202);
            }
        }
    });
    futures_util::future::join_all(posters).await;
    hook.wait_for(30, Duration::from_secs(30)).await;
    gw.child.kill().unwrap();
    gw.child.wait().unwrap();
    let before_restart = hook.requests().len();
    assert!(
        before_restart < TENANTS * EVENTS,
        "the kill came before the backlog was sent"
    );
    hook.set_default(Behaviour::Accept);

    let _gw = GatewayProcess::start(&store, &args);
    let total = TENANTS * EVENTS;
    let mut wanted = total;
    // Per tenant: the sequences accepted before the kill, and after the restart.
    type Runs = std::collections::BTreeMap<String, (Vec<i64>, Vec<i64>)>;
    let runs: Runs = loop {
        let requests = hook.wait_for(wanted, Duration::from_secs(30)).await;
        let mut runs = Runs::new();
        for (index, request) in requests.iter().enumerate() {
            if request.status != 200 {
                continue;
            }
            let event = request.json.as_ref().expect("JSON");
            let run = runs
                .entry(event["tenant"].as_str().unwrap().to_owned())
                .or_default();
            let sequence = event["sequence"].as_i64().unwrap();
            if index < before_restart {
                run.0.push(sequence);
            } else {
                run.1.push(sequence);
            }
        }
        let last = |run: &(Vec<i64>, Vec<i64>)| run.1.last().or(run.0.last()).copied();
        if runs.len() == TENANTS && runs.values().all(|run| last(run) == Some(EVENTS as i64)) {
            break runs;
        }
        wanted = requests.len() + 1;
    };
    let consecutive = |s: &[i64]| s.windows(2).all(|w| w[1] == w[0] + 1);
    for (tenant, (before, after)) in &runs {
        // Before the kill: 1, 2, 3, ... in order. After the restart: a consecutive run to the
        // end that starts no later than right after what was sent before. Records lost in the
        // crash can only be a tenant's newest, so the restart repeats a suffix, in order.
        assert!(
            before.first().is_none_or(|first| *first == 1),
            "{tenant}: {before:?}"
        );
        assert!(consecutive(before), "{tenant}: {before:?}");
        assert!(consecutive(after), "{tenant}: {after:?}");
        let sent_before = before.last().copied().unwrap_or(0);
        if let Some(first_after) = after.first() {
            assert!(
                *first_after >= 1 && *first_after <= sent_before + 1,
                "{tenant}: a gap between {before:?} and {after:?}"
            );
        } else {
            assert_eq!(sent_before, EVENTS as i64, "{tenant}: {before:?}");
        }
    }
}
