//! The discovery sidecar's own small HTTP port: `/healthz`, `/readyz` and `/metrics`.
//!
//! This module owns the sidecar's Prometheus metrics ([`DiscoveryMetrics`], updated by the
//! reconciler and the watch loop), its readiness state ([`Readiness`]) and the listener that
//! serves both ([`HealthServer`]). It is separate from the gateway's ingest port on purpose: the
//! sidecar runs in its own container and is probed on its own.

use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::ServerHandle;
use actix_web::http::header::ContentType;
use actix_web::{web, App, HttpResponse, HttpServer};
use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// The label of the per-action gauge. Actions are the configured lifecycle actions (a handful),
/// never a tenant or a Job name, so the series count stays small.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ActionLabel {
    /// The lifecycle action, e.g. `upsert`.
    action: String,
}

/// The label of the error counter: which part of the loop failed.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StageLabel {
    /// `watch`, `sync`, `event` or `lease`.
    stage: String,
}

/// Where an error counted by [`DiscoveryMetrics::record_error`] happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorStage {
    /// The Job watch stream (it retries by itself with backoff).
    Watch,
    /// Listing, applying or pruning WorkflowTemplates.
    Sync,
    /// Creating an Event on an ignored Job.
    Event,
    /// Leader election (the Lease).
    Lease,
}

impl ErrorStage {
    fn as_str(self) -> &'static str {
        match self {
            ErrorStage::Watch => "watch",
            ErrorStage::Sync => "sync",
            ErrorStage::Event => "event",
            ErrorStage::Lease => "lease",
        }
    }
}

/// The sidecar's metrics, cheap to clone (every clone updates the same series). Names start with
/// `tenant_gateway_discovery_`.
#[derive(Clone)]
pub struct DiscoveryMetrics {
    /// The registry every metric below is registered in; `/metrics` encodes it.
    registry: Arc<Registry>,
    /// Template Jobs discovered per action, as of the last rebuild.
    template_jobs: Family<ActionLabel, Gauge>,
    /// Annotated Jobs ignored (not suspended, bad annotation), as of the last rebuild.
    ignored_jobs: Gauge,
    /// WorkflowTemplates applied (server-side apply sent because the content changed).
    applies: Counter,
    /// WorkflowTemplates deleted because no longer wanted.
    prunes: Counter,
    /// Events created on ignored Jobs.
    events: Counter,
    /// Errors per stage.
    errors: Family<StageLabel, Counter>,
    /// Duration of one sync against the API server, in seconds.
    sync_duration: Histogram,
    /// 1 while this replica may apply (leader, or leader election off), else 0.
    leader: Gauge,
}

impl Default for DiscoveryMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for DiscoveryMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DiscoveryMetrics").finish_non_exhaustive()
    }
}

impl DiscoveryMetrics {
    /// A fresh registry with every discovery metric registered (at zero).
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("tenant_gateway_discovery");
        let template_jobs = Family::<ActionLabel, Gauge>::default();
        registry.register(
            "template_jobs",
            "Suspended, annotated template Jobs discovered per lifecycle action",
            template_jobs.clone(),
        );
        let ignored_jobs = Gauge::default();
        registry.register(
            "ignored_jobs",
            "Annotated Jobs ignored (not suspended or bad annotations)",
            ignored_jobs.clone(),
        );
        let applies = Counter::default();
        registry.register(
            "applies",
            "WorkflowTemplates applied with server-side apply",
            applies.clone(),
        );
        let prunes = Counter::default();
        registry.register(
            "prunes",
            "Managed WorkflowTemplates deleted because no longer wanted",
            prunes.clone(),
        );
        let events = Counter::default();
        registry.register(
            "events",
            "Kubernetes Events created on ignored Jobs",
            events.clone(),
        );
        let errors = Family::<StageLabel, Counter>::default();
        registry.register(
            "errors",
            "Errors talking to the Kubernetes API, per stage",
            errors.clone(),
        );
        let sync_duration = Histogram::new(exponential_buckets(0.01, 2.0, 12));
        registry.register(
            "sync_duration_seconds",
            "Duration of one sync of the WorkflowTemplates against the API server",
            sync_duration.clone(),
        );
        let leader = Gauge::default();
        registry.register(
            "leader",
            "1 while this replica applies templates (leader, or leader election off)",
            leader.clone(),
        );
        DiscoveryMetrics {
            registry: Arc::new(registry),
            template_jobs,
            ignored_jobs,
            applies,
            prunes,
            events,
            errors,
            sync_duration,
            leader,
        }
    }

    /// Replace the per-action counts of discovered template Jobs and the ignored count. Actions
    /// that had Jobs before and have none now show 0 when listed in `per_action`.
    pub fn record_discovered<'a>(
        &self,
        per_action: impl IntoIterator<Item = (&'a str, usize)>,
        ignored: usize,
    ) {
        self.template_jobs.clear();
        for (action, count) in per_action {
            self.template_jobs
                .get_or_create(&ActionLabel {
                    action: action.to_owned(),
                })
                .set(saturating_i64(count));
        }
        self.ignored_jobs.set(saturating_i64(ignored));
    }

    /// One WorkflowTemplate applied.
    pub fn record_apply(&self) {
        self.applies.inc();
    }

    /// One WorkflowTemplate pruned.
    pub fn record_prune(&self) {
        self.prunes.inc();
    }

    /// One Event created on an ignored Job.
    pub fn record_event(&self) {
        self.events.inc();
    }

    /// One error in `stage`.
    pub fn record_error(&self, stage: ErrorStage) {
        self.errors
            .get_or_create(&StageLabel {
                stage: stage.as_str().to_owned(),
            })
            .inc();
    }

    /// How long one sync took.
    pub fn observe_sync(&self, elapsed: Duration) {
        self.sync_duration.observe(elapsed.as_secs_f64());
    }

    /// Whether this replica currently applies templates.
    pub fn set_leader(&self, leader: bool) {
        self.leader.set(i64::from(leader));
    }

    /// The metrics in the Prometheus text exposition format (OpenMetrics flavour).
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

fn saturating_i64(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// What `/readyz` answers from. Ready means: the Job watch has listed every watched namespace
/// at least once, and either the first sync succeeded or this replica is a follower under
/// leader election (a follower never syncs, yet it is a healthy standby).
#[derive(Debug, Default)]
pub struct Readiness {
    /// Every watcher delivered its initial list.
    watch_synced: AtomicBool,
    /// A sync (or, with `--dry-run`, a print) succeeded at least once.
    first_sync_done: AtomicBool,
    /// Leader election is on and this replica does not hold the Lease.
    follower: AtomicBool,
}

impl Readiness {
    /// Every watcher delivered its initial list (or not any more, after a restart of the list).
    pub fn set_watch_synced(&self, synced: bool) {
        self.watch_synced.store(synced, Ordering::SeqCst);
    }

    /// A sync succeeded.
    pub fn mark_synced_once(&self) {
        self.first_sync_done.store(true, Ordering::SeqCst);
    }

    /// This replica is a follower under leader election (`false` when leading or when leader
    /// election is off).
    pub fn set_follower(&self, follower: bool) {
        self.follower.store(follower, Ordering::SeqCst);
    }

    /// Whether `/readyz` answers 200.
    pub fn is_ready(&self) -> bool {
        self.watch_synced.load(Ordering::SeqCst)
            && (self.first_sync_done.load(Ordering::SeqCst) || self.follower.load(Ordering::SeqCst))
    }
}

/// Failures starting the listener.
#[derive(Debug, thiserror::Error)]
pub enum HealthError {
    /// The address could not be bound (in use, no permission).
    #[error("cannot listen on {addr} for /healthz, /readyz and /metrics")]
    Bind {
        /// The configured `--listen` address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// State shared by the handlers.
struct HealthState {
    /// Metrics to encode on `/metrics`.
    metrics: DiscoveryMetrics,
    /// Readiness to answer `/readyz` from.
    readiness: Arc<Readiness>,
}

/// The running listener. Stop it with [`HealthServer::stop`]; dropping it leaves it running
/// until the runtime ends.
pub struct HealthServer {
    /// The bound address (the real port when configured with port 0).
    addr: SocketAddr,
    /// Handle to stop the actix server.
    handle: ServerHandle,
    /// The server task.
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl HealthServer {
    /// Bind `listen` and serve `/healthz`, `/readyz` and `/metrics` on one worker thread (probes
    /// and scrapes are rare; the sidecar should stay small).
    pub fn start(
        listen: SocketAddr,
        metrics: DiscoveryMetrics,
        readiness: Arc<Readiness>,
    ) -> Result<HealthServer, HealthError> {
        let bind = |source| HealthError::Bind {
            addr: listen,
            source,
        };
        let listener = TcpListener::bind(listen).map_err(bind)?;
        let addr = listener.local_addr().map_err(bind)?;
        let state = web::Data::new(HealthState { metrics, readiness });
        let server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .route("/healthz", web::get().to(healthz))
                .route("/readyz", web::get().to(readyz))
                .route("/metrics", web::get().to(metrics_text))
        })
        .workers(1)
        // Shutdown is driven by the discovery loop, not by actix's own signal handling.
        .disable_signals()
        .shutdown_timeout(5)
        .listen(listener)
        .map_err(bind)?
        .run();
        let handle = server.handle();
        let task = tokio::spawn(server);
        tracing::info!(listen = %addr, "discovery health listener started");
        Ok(HealthServer { addr, handle, task })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stop accepting, finish in-flight requests, and wait for the server to end.
    pub async fn stop(self) {
        self.handle.stop(true).await;
        match self.task.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "discovery health listener ended with an error")
            }
            Err(e) => tracing::warn!(error = %e, "discovery health listener task failed"),
        }
    }
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok()
        .content_type(ContentType::plaintext())
        .body("ok\n")
}

async fn readyz(state: web::Data<HealthState>) -> HttpResponse {
    if state.readiness.is_ready() {
        HttpResponse::Ok()
            .content_type(ContentType::plaintext())
            .body("ready\n")
    } else {
        HttpResponse::ServiceUnavailable()
            .content_type(ContentType::plaintext())
            .body("not ready\n")
    }
}

async fn metrics_text(state: web::Data<HealthState>) -> HttpResponse {
    match state.metrics.encode() {
        Ok(body) => HttpResponse::Ok()
            .content_type("application/openmetrics-text; version=1.0.0; charset=utf-8")
            .body(body),
        Err(e) => {
            tracing::warn!(error = %e, "cannot encode discovery metrics");
            HttpResponse::InternalServerError().finish()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_needs_watch_and_first_sync_or_follower() {
        let r = Readiness::default();
        assert!(!r.is_ready());
        r.set_watch_synced(true);
        assert!(!r.is_ready(), "watch synced but nothing applied yet");
        r.set_follower(true);
        assert!(r.is_ready(), "a synced follower is a healthy standby");
        r.set_follower(false);
        assert!(!r.is_ready(), "a new leader is ready once it synced");
        r.mark_synced_once();
        assert!(r.is_ready());
        r.set_watch_synced(false);
        assert!(!r.is_ready());
    }

    #[test]
    fn metrics_encode_per_action_counts_without_tenants() {
        let m = DiscoveryMetrics::new();
        m.record_discovered([("upsert", 3), ("delete", 0)], 1);
        m.record_apply();
        m.record_prune();
        m.record_event();
        m.record_error(ErrorStage::Sync);
        m.observe_sync(Duration::from_millis(20));
        m.set_leader(true);
        let text = m.encode().expect("encodes");
        for line in [
            "tenant_gateway_discovery_template_jobs{action=\"upsert\"} 3",
            "tenant_gateway_discovery_template_jobs{action=\"delete\"} 0",
            "tenant_gateway_discovery_ignored_jobs 1",
            "tenant_gateway_discovery_applies_total 1",
            "tenant_gateway_discovery_prunes_total 1",
            "tenant_gateway_discovery_events_total 1",
            "tenant_gateway_discovery_errors_total{stage=\"sync\"} 1",
            "tenant_gateway_discovery_sync_duration_seconds_count 1",
            "tenant_gateway_discovery_leader 1",
        ] {
            assert!(text.contains(line), "missing {line:?} in\n{text}");
        }
        // A later rebuild replaces the per-action series.
        m.record_discovered([("upsert", 1)], 0);
        let text = m.encode().expect("encodes");
        assert!(!text.contains("action=\"delete\""), "{text}");
    }
}
