//! `Application`: builds everything `serve` runs from [`Settings`], binds its own listener, and
//! runs until an injected shutdown future resolves. `main` and the tests both start it this way.

use std::future::Future;
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use actix_web::{web, App, HttpServer};

use crate::admin::{self, AdminAuth, AdminState, ReplayRunner, WorkflowLinks};
use crate::config::Settings;
use crate::dispatch::emission::EmissionTarget;
use crate::dispatch::leases::LeaseError;
use crate::dispatch::sinks::SinkError;
use crate::dispatch::{DispatchScope, Dispatcher};
use crate::ingest::auth::{CredentialError, IngestAuth};
use crate::ingest::{self, IngestState};
use crate::journal::{EventJournal, JournalError};
use crate::metrics::GatewayMetrics;
use crate::normalize::rules::{RuleSet, RulesError};
use crate::normalize::Normalizer;
use crate::notify::{Notifier, NotifierHandle};
use crate::workflows::{JournalRecorder, KubeClientError, WorkflowWatchSettings, WorkflowWatcher};

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(
        "refusing to listen on non-loopback address {0} without credentials: \
         configure --token-file, or pass --insecure-no-auth to accept unauthenticated events"
    )]
    InsecureListener(SocketAddr),
    #[error(
        "refusing to serve the admin API on non-loopback address {0} without credentials: \
         configure --admin-token-file, or pass --insecure-no-auth"
    )]
    InsecureAdminListener(SocketAddr),
    #[error(transparent)]
    Credentials(#[from] CredentialError),
    #[error("cannot open the journal: {0}")]
    Journal(#[from] JournalError),
    #[error(transparent)]
    Rules(#[from] RulesError),
    #[error("cannot start the sink: {0}")]
    Sink(#[from] SinkError),
    #[error("cannot set up the dispatch leases: {0}")]
    Leases(#[from] LeaseError),
    #[error("cannot start the completion notifier: {0}")]
    Notify(#[from] crate::notify::NotifyError),
    #[error("TLS: {0}")]
    Tls(#[from] crate::tls::TlsError),
    #[error(transparent)]
    WorkflowWatch(#[from] KubeClientError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// A built, listening gateway that has not started serving yet.
pub struct Application {
    /// The ingest HTTP server.
    server: actix_web::dev::Server,
    /// The admin HTTP server (metrics, health).
    admin_server: actix_web::dev::Server,
    ingest_addr: SocketAddr,
    admin_addr: SocketAddr,
    journal: EventJournal,
    /// Delivers what ingest journals; stopped after ingest and before the journal closes.
    dispatcher: Dispatcher,
    /// Delivers completion events upstream when `[notify]` is set; stopped with the dispatcher,
    /// before the journal closes.
    notifier: Option<Notifier>,
    /// The admin handlers' state, which holds the replay job runner (stopped before the
    /// dispatcher).
    admin_state: web::Data<AdminState>,
    draining: Arc<AtomicBool>,
    /// How long to answer 503 before closing the listener on shutdown.
    shutdown_grace: std::time::Duration,
    /// The tasks that re-read the listeners' certificate files; stopped with the servers.
    tls_watchers: Vec<tokio::task::JoinHandle<()>>,
    /// Gives freed heap memory back to the system once ingest is idle (`memory`); aborted
    /// with the servers.
    memory_release: tokio::task::JoinHandle<()>,
    /// The Workflow watcher (`watch-workflows`); stopped before the journal closes.
    workflow_watcher: Option<WorkflowWatcher>,
    /// Each recorded Workflow observation, for in-process subscribers.
    workflow_updates: tokio::sync::broadcast::Sender<crate::journal::WorkflowObservation>,
}

/// A listener's rustls configuration and the task that keeps its certificate current.
fn tls_listener(
    settings: &Option<crate::tls::TlsSettings>,
    reload_interval: std::time::Duration,
    watchers: &mut Vec<tokio::task::JoinHandle<()>>,
) -> Result<Option<rustls::ServerConfig>, crate::tls::TlsError> {
    let Some(tls) = settings else {
        return Ok(None);
    };
    let certificate = Arc::new(crate::tls::ReloadingCertificate::load(tls)?);
    let config = crate::tls::server_config(tls, Arc::clone(&certificate))?;
    watchers.push(tokio::spawn(crate::tls::watch_certificate(
        certificate,
        reload_interval,
        std::future::pending(),
    )));
    Ok(Some(config))
}

impl Application {
    pub async fn build(settings: Settings) -> Result<Self, StartupError> {
        let auth = IngestAuth::load(&settings.tokens)?;
        let signatures = crate::ingest::auth::SignatureAuth::load(
            &settings.signing_secrets,
            settings.require_signature,
            settings.signature_tolerance,
        )?;
        if !auth.requires_credentials()
            && !signatures.is_configured()
            && !settings.listen.ip().is_loopback()
            && !settings.insecure_no_auth
        {
            return Err(StartupError::InsecureListener(settings.listen));
        }
        let admin_loopback = settings.admin_listen.ip().is_loopback();
        let admin_auth = AdminAuth::load(&settings.admin_tokens, admin_loopback)?;
        if !admin_auth.has_tokens() && !admin_loopback && !settings.insecure_no_auth {
            return Err(StartupError::InsecureAdminListener(settings.admin_listen));
        }
        let normalizer = match &settings.rules {
            Some(path) => {
                Normalizer::with_rules(settings.actions.iter().cloned(), RuleSet::load(path)?)?
            }
            None => Normalizer::new(settings.actions.iter().cloned()),
        };
        // Built first, so a missing kubeconfig fails the start before anything listens.
        let kube_client = if settings.watch_workflows {
            Some(crate::workflows::kube_client().await?)
        } else {
            None
        };
        let sink = settings.sink.build().await?;
        let journal = EventJournal::open(&settings.store, settings.journal.clone()).await?;
        let metrics = GatewayMetrics::new(&journal);
        let bind_error = |addr| move |source| StartupError::Bind { addr, source };
        let bind = bind_error(settings.listen);
        let listener = TcpListener::bind(settings.listen).map_err(bind)?;
        let ingest_addr = listener.local_addr().map_err(bind)?;
        let bind_admin = bind_error(settings.admin_listen);
        let admin_listener = TcpListener::bind(settings.admin_listen).map_err(bind_admin)?;
        let admin_addr = admin_listener.local_addr().map_err(bind_admin)?;
        let draining = Arc::new(AtomicBool::new(false));
        let state = web::Data::new(IngestState {
            journal: journal.clone(),
            normalizer,
            auth,
            signatures,
            global_rate: settings.global_rate.map(|(rate, burst)| {
                crate::ingest::rate_limit::TokenBucket::new(rate, burst, std::time::Instant::now())
            }),
            auth_failures: Default::default(),
            max_body: settings.max_body,
            limits: settings.decode_limits,
            body_read_timeout: settings.body_read_timeout,
            max_request_events: settings.journal.max_group_events,
            emission_target: EmissionTarget {
                instance_source: settings.dispatch.instance_source.clone(),
                routing: sink.argo_routing().cloned(),
            },
            draining: draining.clone(),
            metrics: metrics.clone(),
        });
        let sink_description = sink.describe();
        // Which tenants this replica delivers: all of them on SQLite, leased buckets when
        // several replicas share a PostgreSQL journal.
        let scope = DispatchScope::for_journal(&journal).await?;
        let dispatcher = Dispatcher::start_in(
            journal.clone(),
            sink.clone(),
            settings.dispatch.clone(),
            metrics.clone(),
            scope,
        );
        let notifier = settings
            .notify
            .as_ref()
            .map(|notify| {
                Notifier::start(
                    journal.clone(),
                    notify,
                    settings.dispatch.instance_source.clone(),
                    settings.dispatch.retry,
                    metrics.clone(),
                )
            })
            .transpose()?;
        let admin_state = web::Data::new(AdminState {
            metrics,
            journal: journal.clone(),
            sink,
            dispatch: dispatcher.control(),
            auth: admin_auth,
            replays: ReplayRunner::start(journal.clone(), dispatcher.control()),
            instance_source: settings.dispatch.instance_source.clone(),
            workflow_links: settings.argo_ui_url.clone().map(|base_url| WorkflowLinks {
                base_url,
                namespace: settings.workflow_namespace.clone(),
            }),
        });
        let mut tls_watchers = Vec::new();
        let admin_tls = tls_listener(
            &settings.admin_tls,
            settings.tls_reload_interval,
            &mut tls_watchers,
        )?;
        let ingest_tls = tls_listener(
            &settings.tls,
            settings.tls_reload_interval,
            &mut tls_watchers,
        )?;
        let admin_data = admin_state.clone();
        let admin_server = HttpServer::new(move || {
            App::new()
                .app_data(admin_data.clone())
                .configure(admin::routes)
        })
        .workers(1)
        .disable_signals()
        .shutdown_timeout(5);
        let admin_server = match admin_tls {
            Some(config) => admin_server.listen_rustls_0_23(admin_listener, config),
            None => admin_server.listen(admin_listener),
        }
        .map_err(bind_admin)?
        .run();
        let bench_null = settings.bench_null_endpoint;
        let server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .configure(|cfg| ingest::routes(cfg, bench_null))
        })
        .workers(settings.workers)
        // Shutdown is ours to drive (draining first); actix must not react to signals itself.
        .disable_signals()
        .shutdown_timeout(30);
        let server = match ingest_tls {
            Some(config) => server.listen_rustls_0_23(listener, config),
            None => server.listen(listener),
        }
        .map_err(bind)?
        .run();
        tracing::info!(
            listen = %ingest_addr,
            admin = %admin_addr,
            store = %crate::redact::redact_url(&settings.store),
            sink = %sink_description,
            auth = if settings.tokens.is_empty() { "none" } else { "tokens" },
            tls = settings.tls.is_some(),
            admin_tls = settings.admin_tls.is_some(),
            "tenant-gateway listening"
        );
        let workflow_updates = crate::workflows::updates_channel();
        let workflow_watcher = kube_client.map(|client| {
            WorkflowWatcher::start(
                client,
                WorkflowWatchSettings {
                    namespace: settings.workflow_namespace.clone(),
                },
                JournalRecorder {
                    journal: journal.clone(),
                    notifier: notifier.as_ref().map(Notifier::handle),
                    dispatch: Some(dispatcher.control()),
                    lifecycle_seconds: admin_state.metrics.lifecycle_seconds.clone(),
                },
                admin_state.metrics.workflows.clone(),
                workflow_updates.clone(),
            )
        });
        let memory_release = tokio::spawn(crate::memory::release_when_idle(
            journal.subscribe_commits(),
            crate::memory::IDLE_INTERVAL,
            std::future::pending(),
        ));
        Ok(Application {
            memory_release,
            server,
            admin_server,
            ingest_addr,
            admin_addr,
            journal,
            dispatcher,
            notifier,
            admin_state,
            draining,
            shutdown_grace: settings.shutdown_grace,
            tls_watchers,
            workflow_watcher,
            workflow_updates,
        })
    }

    /// The bound admin address (metrics, health).
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_addr
    }

    /// Running totals of the dispatcher, for tests and embedding programs.
    pub fn dispatch_progress(
        &self,
    ) -> tokio::sync::watch::Receiver<crate::dispatch::DispatchProgress> {
        self.dispatcher.progress()
    }

    /// Wakes the completion notifier (`None` without `[notify]`): whoever records a Workflow's
    /// terminal phase calls `wake()` when the journal answers `notification_queued: true`.
    pub fn notifier(&self) -> Option<NotifierHandle> {
        self.notifier.as_ref().map(Notifier::handle)
    }

    /// The bound ingest address (the real port when configured with port 0).
    pub fn ingest_addr(&self) -> SocketAddr {
        self.ingest_addr
    }

    /// Each Workflow observation the watcher records from now on (nothing unless
    /// `watch_workflows`); a wake-up, see [`crate::workflows`].
    pub fn workflow_updates(
        &self,
    ) -> tokio::sync::broadcast::Receiver<crate::journal::WorkflowObservation> {
        self.workflow_updates.subscribe()
    }

    /// The journal the application writes to, for tests and embedding programs.
    pub fn journal(&self) -> &EventJournal {
        &self.journal
    }

    /// Serve until `shutdown` resolves, then drain: readiness and new posts answer 503 for the
    /// grace period, the listener stops, in-flight requests finish (their commits included),
    /// the dispatcher stops (undelivered emissions stay pending for the next start), and the
    /// journal closes after its last queued commit.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()>,
    ) -> std::io::Result<()> {
        let handle = self.server.handle();
        let admin_handle = self.admin_server.handle();
        let mut server = tokio::spawn(self.server);
        let admin = tokio::spawn(self.admin_server);
        let early = tokio::select! {
            res = &mut server => Some(flatten(res)),
            () = shutdown => None,
        };
        let res = match early {
            Some(res) => res,
            None => {
                tracing::info!(grace = ?self.shutdown_grace, "shutdown requested: draining");
                self.draining.store(true, Ordering::SeqCst);
                tokio::time::sleep(self.shutdown_grace).await;
                handle.stop(true).await;
                flatten(server.await)
            }
        };
        if let Some(watcher) = self.workflow_watcher {
            watcher.stop().await;
        }
        self.admin_state.replays.stop().await;
        self.dispatcher.stop().await;
        if let Some(notifier) = self.notifier {
            notifier.stop().await;
        }
        admin_handle.stop(true).await;
        if let Err(error) = flatten(admin.await) {
            tracing::warn!(%error, "admin listener ended with an error");
        }
        for watcher in &self.tls_watchers {
            watcher.abort();
        }
        self.memory_release.abort();
        self.journal.close().await;
        tracing::info!("stopped");
        res
    }
}

fn flatten(res: Result<std::io::Result<()>, tokio::task::JoinError>) -> std::io::Result<()> {
    res.map_err(std::io::Error::other)?
}

/// `tenant-gateway serve`.
pub async fn serve(settings: Settings) -> anyhow::Result<()> {
    let app = Application::build(settings).await?;
    app.run_until_stopped(crate::shutdown::termination_signal())
        .await?;
    Ok(())
}
