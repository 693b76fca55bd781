//! [`NatsServer`]: a real `nats-server` with JetStream for the tests that need one, and the
//! helpers that set its stream up the way Argo's JetStream EventBus does.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, stream};
use tenant_gateway::dispatch::sinks::EventbusConfig;
use tokio::io::AsyncReadExt;

use super::skip_or_fail;

/// A `nats-server` with JetStream on a free loopback port and its own store directory, killed
/// on drop.
pub(crate) struct NatsServer {
    /// The server process, killed on drop.
    child: Child,
    /// The client port.
    port: u16,
    /// The JetStream store and the server log; removed on drop.
    dir: tempfile::TempDir,
}

impl NatsServer {
    /// Starts a server without authentication. `None` means the test should return: `nats-server`
    /// is not installed, and this is not CI (in CI that is a failure, see [`skip_or_fail`]).
    pub(crate) async fn start() -> Option<NatsServer> {
        Self::start_with(&[]).await
    }

    /// Starts a server with extra flags (e.g. `["--user", "u", "--pass", "p"]`).
    pub(crate) async fn start_with(extra: &[&str]) -> Option<NatsServer> {
        if !nats_server_installed() {
            skip_or_fail("nats-server (the Debian package nats-server) on PATH");
            return None;
        }
        // A free port can be taken by someone else before the server binds it: try again then.
        let mut last_failure = String::new();
        for _ in 0..3 {
            match Self::try_start(extra).await {
                Ok(server) => return Some(server),
                Err(failure) => last_failure = failure,
            }
        }
        panic!("nats-server did not start: {last_failure}");
    }

    /// Starts a server without authentication on `port` (one a client was told about before).
    pub(crate) async fn start_on(port: u16) -> Option<NatsServer> {
        if !nats_server_installed() {
            skip_or_fail("nats-server (the Debian package nats-server) on PATH");
            return None;
        }
        match Self::try_start_on(port, &[]).await {
            Ok(server) => Some(server),
            Err(failure) => panic!("nats-server did not start on port {port}: {failure}"),
        }
    }

    async fn try_start(extra: &[&str]) -> Result<NatsServer, String> {
        Self::try_start_on(free_port(), extra).await
    }

    async fn try_start_on(port: u16, extra: &[&str]) -> Result<NatsServer, String> {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = std::fs::File::create(dir.path().join("nats.log")).expect("log file");
        let child = Command::new("nats-server")
            .args(["-js", "-a", "127.0.0.1", "-p"])
            .arg(port.to_string())
            .arg("-sd")
            .arg(dir.path().join("jetstream"))
            .args(extra)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot spawn nats-server: {e}"))?;
        let mut server = NatsServer { child, port, dir };
        server.wait_until_accepting().await?;
        Ok(server)
    }

    /// Polls until the server greets a client with its INFO line, or fails with its log.
    async fn wait_until_accepting(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("nats-server exited ({status}): {}", self.log()));
            }
            if self.greets().await {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "nats-server not accepting connections on port {} after 10s: {}",
                    self.port,
                    self.log()
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn greets(&self) -> bool {
        let Ok(mut socket) = tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await else {
            return false;
        };
        let mut greeting = [0u8; 5];
        matches!(
            tokio::time::timeout(Duration::from_secs(1), socket.read_exact(&mut greeting)).await,
            Ok(Ok(_)) if &greeting == b"INFO "
        )
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("nats.log")).unwrap_or_default()
    }

    /// `nats://127.0.0.1:<port>`.
    pub(crate) fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Kills the server now (to test a lost EventBus).
    pub(crate) fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

pub(crate) fn nats_server_installed() -> bool {
    std::env::var_os("PATH").is_some_and(|paths| {
        std::env::split_paths(&paths).any(|dir: PathBuf| dir.join("nats-server").is_file())
    })
}

pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("free port")
        .port()
}

/// Creates the stream the way Argo's JetStream EventBus does (argoproj/argo-events
/// `pkg/eventbus/jetstream/base/jetstream.go`, `CreateStream`): subjects `<name>.*.*`, file
/// storage, limits retention (`retention: 0`), discard old (`discard: 0`), and the limits of the
/// controller's default `streamConfig` (`manifests/base/controller-manager/controller-config.yaml`:
/// `maxMsgs: 50000`, `maxAge: 168h`, `maxBytes: -1`, `duplicates: 300s`). Replicas are 1
/// instead of Argo's 3: this is a single server.
pub(crate) async fn create_argo_stream(url: &str, name: &str) -> stream::Stream {
    create_argo_stream_with(async_nats::ConnectOptions::new(), url, name).await
}

/// [`create_argo_stream`] on a server that needs credentials (`options` carries them).
pub(crate) async fn create_argo_stream_with(
    options: async_nats::ConnectOptions,
    url: &str,
    name: &str,
) -> stream::Stream {
    let client = options.connect(url).await.expect("connect to nats-server");
    jetstream::new(client)
        .create_stream(stream::Config {
            name: name.to_owned(),
            subjects: vec![format!("{name}.*.*")],
            retention: stream::RetentionPolicy::Limits,
            discard: stream::DiscardPolicy::Old,
            storage: stream::StorageType::File,
            max_messages: 50_000,
            max_age: Duration::from_secs(168 * 3600),
            max_bytes: -1,
            duplicate_window: Duration::from_secs(300),
            num_replicas: 1,
            ..Default::default()
        })
        .await
        .expect("create the Argo EventBus stream")
}

/// The sink settings tests use: Argo's stream `default`, EventSource `tenant-gateway`, event
/// `lifecycle`, no credentials, a 2 s ack timeout.
pub(crate) fn eventbus_config(url: &str) -> EventbusConfig {
    EventbusConfig {
        url: url.to_owned(),
        stream: "default".to_owned(),
        event_source_name: "tenant-gateway".to_owned(),
        event_name: "lifecycle".to_owned(),
        user: None,
        password_file: None,
        client_auth_file: None,
        token_file: None,
        ca_file: None,
        ack_timeout: Duration::from_secs(2),
    }
}
