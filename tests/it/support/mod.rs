//! Test support: an in-process gateway started exactly as `serve` starts it, the spawned real
//! binary for crash and signal tests, and event builders; and in submodules the fakes and
//! helpers several test files share: the Argo webhook EventSource fake (`argo_webhook`), a fake
//! Kubernetes API server holding Argo Workflows (`fake_argo`), a real `nats-server` with Argo's
//! stream (`nats`), the YAML and Argo schema helpers (`manifests`).

pub(crate) mod argo_webhook;
pub(crate) mod fake_argo;
pub(crate) mod manifests;
pub(crate) mod nats;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};
use tenant_gateway::app::Application;
use tenant_gateway::config::Settings;
use tenant_gateway::journal::EventJournal;
use tokio::sync::oneshot;

/// A gateway running inside the test process on a random port with its own journal file.
pub struct TestApp {
    pub addr: SocketAddr,
    /// The admin listener (metrics, health).
    pub admin_addr: SocketAddr,
    /// The dispatcher's running totals.
    pub progress: tokio::sync::watch::Receiver<tenant_gateway::dispatch::DispatchProgress>,
    pub client: reqwest::Client,
    pub journal: EventJournal,
    pub store_path: PathBuf,
    shutdown: Option<oneshot::Sender<()>>,
    running: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    _dir: tempfile::TempDir,
}

impl TestApp {
    pub async fn spawn() -> TestApp {
        Self::spawn_with(|_| {}).await
    }

    /// Start with test defaults (port 0, fresh SQLite file, one worker, no drain grace), after
    /// `customize` has changed what the test needs.
    pub async fn spawn_with(customize: impl FnOnce(&mut Settings)) -> TestApp {
        let dir = tempfile::tempdir().expect("tempdir");
        Self::spawn_in(dir, customize).await
    }

    /// Stops this gateway and starts a new one on the same journal file, as a restart would.
    pub async fn restart(mut self, customize: impl FnOnce(&mut Settings)) -> TestApp {
        self.shutdown_and_wait().await;
        let dir = std::mem::replace(&mut self._dir, tempfile::tempdir().expect("tempdir"));
        Self::spawn_in(dir, customize).await
    }

    async fn spawn_in(dir: tempfile::TempDir, customize: impl FnOnce(&mut Settings)) -> TestApp {
        let store_path = dir.path().join("journal.db");
        let mut settings = Settings::local();
        settings.listen = "127.0.0.1:0".parse().unwrap();
        settings.admin_listen = "127.0.0.1:0".parse().unwrap();
        settings.store = format!("sqlite://{}", store_path.display());
        settings.workers = 1;
        settings.shutdown_grace = Duration::ZERO;
        customize(&mut settings);
        let app = Application::build(settings)
            .await
            .expect("application builds");
        let addr = app.ingest_addr();
        let admin_addr = app.admin_addr();
        let progress = app.dispatch_progress();
        let journal = app.journal().clone();
        let (tx, rx) = oneshot::channel::<()>();
        let running = tokio::spawn(app.run_until_stopped(async {
            let _ = rx.await;
        }));
        TestApp {
            addr,
            admin_addr,
            progress,
            client: reqwest::Client::new(),
            journal,
            store_path,
            shutdown: Some(tx),
            running: Some(running),
            _dir: dir,
        }
    }

    /// Waits until the dispatcher's totals satisfy `done`, failing with `what` after 30 s.
    pub async fn wait_for_progress(
        &mut self,
        what: &str,
        done: impl FnMut(&tenant_gateway::dispatch::DispatchProgress) -> bool,
    ) {
        let waited = tokio::time::timeout(Duration::from_secs(30), self.progress.wait_for(done))
            .await
            .map(|result| result.is_ok());
        match waited {
            Ok(true) => {}
            Ok(false) => panic!("dispatcher stopped while waiting for {what}"),
            Err(_) => panic!(
                "timed out waiting for {what}; dispatch progress is {:?}",
                *self.progress.borrow()
            ),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// POST a structured-mode event.
    pub async fn post_structured(&self, event: &Value) -> reqwest::Response {
        self.client
            .post(self.url("/events"))
            .header("content-type", "application/cloudevents+json")
            .body(event.to_string())
            .send()
            .await
            .expect("request sent")
    }

    /// POST a batch.
    pub async fn post_batch(&self, events: &[Value]) -> reqwest::Response {
        self.client
            .post(self.url("/events"))
            .header("content-type", "application/cloudevents-batch+json")
            .body(Value::from(events.to_vec()).to_string())
            .send()
            .await
            .expect("request sent")
    }

    /// Take the journal file's write lock from another connection, as another process could:
    /// the gateway's writer then cannot commit until [`StoreLock::release`].
    pub async fn lock_store(&self) -> StoreLock {
        StoreLock::acquire(&self.store_path).await
    }

    /// Begin shutdown and wait until the server has stopped and the journal is closed.
    pub async fn stop(mut self) {
        self.shutdown_and_wait().await;
    }

    async fn shutdown_and_wait(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(running) = self.running.take() {
            running
                .await
                .expect("server task")
                .expect("server stopped cleanly");
        }
    }

    /// Trigger shutdown without waiting (to observe draining).
    pub fn begin_shutdown(&mut self) -> tokio::task::JoinHandle<std::io::Result<()>> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.running.take().expect("still running")
    }
}

/// A write lock on an SQLite journal file, held through a connection of its own.
pub struct StoreLock(sqlx::SqliteConnection);

impl StoreLock {
    pub async fn acquire(path: &Path) -> StoreLock {
        use sqlx::Connection;
        let mut connection =
            sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display()))
                .await
                .expect("open the journal file");
        sqlx::query("BEGIN EXCLUSIVE")
            .execute(&mut connection)
            .await
            .expect("take the write lock");
        StoreLock(connection)
    }

    pub async fn release(mut self) {
        use sqlx::Connection;
        sqlx::query("ROLLBACK")
            .execute(&mut self.0)
            .await
            .expect("release the write lock");
        self.0.close().await.expect("close the lock connection");
    }
}

/// A valid lifecycle event in the JSON event format.
pub fn lifecycle_event(id: &str, tenant: &str, action: &str) -> Value {
    json!({
        "specversion": "1.0",
        "id": id,
        "source": "//billing.acme.example/invoices",
        "type": format!("com.acme.tenant.lifecycle.{action}"),
        "time": "2026-11-23T10:00:00Z",
        "tenant": tenant,
        "datacontenttype": "application/json",
        "data": {"plan": "gold"}
    })
}

pub async fn json_body(resp: reqwest::Response) -> Value {
    resp.json().await.expect("JSON body")
}

/// Assert a problem+json response and return its body.
pub async fn problem(resp: reqwest::Response, status: u16) -> Value {
    let got = resp.status().as_u16();
    if got != status {
        let body = resp.text().await.unwrap_or_default();
        panic!("expected status {status}, got {got}: {body}");
    }
    let ct = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert_eq!(ct, "application/problem+json");
    let body: Value = resp.json().await.expect("problem body");
    assert_eq!(body["status"], status);
    for field in ["type", "title", "detail"] {
        assert!(
            body[field].as_str().is_some_and(|s| !s.is_empty()),
            "{field} missing in {body}"
        );
    }
    body
}

/// Runs the real binary's `serve` on loopback port 0 with `store`, plus what `configure` adds
/// (arguments, the child's environment), for a start that must be refused: returns whether it
/// succeeded and its stderr. Runs in a fresh directory, so nothing lands in the checkout.
pub fn serve_once(store: &str, configure: impl FnOnce(&mut Command)) -> (bool, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut command = Command::new(env!("CARGO_BIN_EXE_tenant-gateway"));
    command
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
        ])
        .args(["--store", store, "--shutdown-grace", "0s"])
        .current_dir(dir.path())
        .stdin(Stdio::null());
    configure(&mut command);
    let output = command.output().expect("run tenant-gateway serve");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// The real binary, started with `serve` and JSON logs; its listen address is read from the
/// "tenant-gateway listening" log line, so port 0 works.
pub struct GatewayProcess {
    pub child: Child,
    pub addr: SocketAddr,
    /// The admin listener (metrics, admin API), also read from the "listening" line.
    pub admin_addr: SocketAddr,
    /// Lines the gateway writes on stdout (the `log` sink's emitted events), read by a thread.
    stdout: std::sync::mpsc::Receiver<String>,
}

impl GatewayProcess {
    pub fn start(store: &Path, extra: &[&str]) -> GatewayProcess {
        Self::start_with_env(store, extra, &[])
    }

    /// [`GatewayProcess::start`] with extra environment variables for the child only.
    pub fn start_with_env(store: &Path, extra: &[&str], env: &[(&str, &str)]) -> GatewayProcess {
        let mut child = Command::new(env!("CARGO_BIN_EXE_tenant-gateway"))
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--admin-listen",
                "127.0.0.1:0",
                "--log-format",
                "json",
                "--store",
            ])
            .arg(format!("sqlite://{}", store.display()))
            .args(extra)
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn tenant-gateway");
        let stdout = child.stdout.take().expect("stdout piped");
        let (lines_tx, stdout_lines) = std::sync::mpsc::channel();
        // Read continuously, so the child never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if lines_tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = child.stderr.take().expect("stderr piped");
        let mut lines = BufReader::new(stderr).lines();
        let (addr, admin_addr) = loop {
            let line = match lines.next() {
                Some(Ok(line)) => line,
                other => panic!("gateway exited before listening: {other:?}"),
            };
            let Ok(entry) = serde_json::from_str::<Value>(&line) else {
                continue;
            };
            if entry["message"] == "tenant-gateway listening" {
                let address = |field: &str| -> SocketAddr {
                    entry[field]
                        .as_str()
                        .unwrap_or_else(|| panic!("{field} field"))
                        .parse()
                        .unwrap_or_else(|e| panic!("{field} address: {e}"))
                };
                break (address("listen"), address("admin"));
            }
        };
        // Keep draining stderr so the child never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        GatewayProcess {
            child,
            addr,
            admin_addr,
            stdout: stdout_lines,
        }
    }

    /// The next line the gateway printed on stdout; panics after `timeout`.
    pub fn stdout_line(&self, timeout: Duration) -> String {
        self.stdout
            .recv_timeout(timeout)
            .unwrap_or_else(|e| panic!("no stdout line from the gateway within {timeout:?}: {e}"))
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether an external dependency a test needs is missing: in CI that is a failure with a clear
/// message, elsewhere the test reports itself skipped.
pub fn skip_or_fail(what: &str) -> bool {
    if std::env::var_os("CI").is_some() {
        panic!("{what} is required in CI but is not available");
    }
    eprintln!("SKIPPED: {what} is not available");
    true
}
