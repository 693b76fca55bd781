//! `Application`: builds everything `serve` runs from [`Settings`], binds its own listener, and
//! runs until an injected shutdown future resolves. `main` and the tests both start it this way.

use std::future::Future;
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use actix_web::{web, App, HttpServer};

use crate::config::Settings;
use crate::ingest::auth::{CredentialError, IngestAuth};
use crate::ingest::{self, IngestState};
use crate::journal::{EventJournal, JournalError};
use crate::normalize::Normalizer;

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(
        "refusing to listen on non-loopback address {0} without credentials: \
         configure --token-file, or pass --insecure-no-auth to accept unauthenticated events"
    )]
    InsecureListener(SocketAddr),
    #[error(transparent)]
    Credentials(#[from] CredentialError),
    #[error("cannot open the journal: {0}")]
    Journal(#[from] JournalError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// A built, listening gateway that has not started serving yet.
pub struct Application {
    server: actix_web::dev::Server,
    ingest_addr: SocketAddr,
    journal: EventJournal,
    draining: Arc<AtomicBool>,
    /// How long to answer 503 before closing the listener on shutdown.
    shutdown_grace: std::time::Duration,
}

impl Application {
    pub async fn build(settings: Settings) -> Result<Self, StartupError> {
        let auth = IngestAuth::load(&settings.tokens)?;
        if !auth.requires_credentials()
            && !settings.listen.ip().is_loopback()
            && !settings.insecure_no_auth
        {
            return Err(StartupError::InsecureListener(settings.listen));
        }
        let journal = EventJournal::open(&settings.store, settings.journal.clone()).await?;
        let bind = |source| StartupError::Bind {
            addr: settings.listen,
            source,
        };
        let listener = TcpListener::bind(settings.listen).map_err(bind)?;
        let ingest_addr = listener.local_addr().map_err(bind)?;
        let draining = Arc::new(AtomicBool::new(false));
        let state = web::Data::new(IngestState {
            journal: journal.clone(),
            normalizer: Normalizer::new(settings.actions.iter().cloned()),
            auth,
            max_body: settings.max_body,
            draining: draining.clone(),
            queue_limit: settings.journal.queue_capacity,
        });
        let bench_null = settings.bench_null_endpoint;
        let server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .configure(|cfg| ingest::routes(cfg, bench_null))
        })
        .workers(settings.workers)
        // Shutdown is ours to drive (draining first); actix must not react to signals itself.
        .disable_signals()
        .shutdown_timeout(30)
        .listen(listener)
        .map_err(bind)?
        .run();
        tracing::info!(listen = %ingest_addr, store = %redact_url(&settings.store), auth = if settings.tokens.is_empty() { "none" } else { "tokens" }, "tenant-gateway listening");
        Ok(Application {
            server,
            ingest_addr,
            journal,
            draining,
            shutdown_grace: settings.shutdown_grace,
        })
    }

    /// The bound ingest address (the real port when configured with port 0).
    pub fn ingest_addr(&self) -> SocketAddr {
        self.ingest_addr
    }

    /// The journal the application writes to, for tests and embedding programs.
    pub fn journal(&self) -> &EventJournal {
        &self.journal
    }

    /// Serve until `shutdown` resolves, then drain: readiness and new posts answer 503 for the
    /// grace period, the listener stops, in-flight requests finish (their commits included),
    /// and the journal closes after its last queued commit.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()>,
    ) -> std::io::Result<()> {
        let handle = self.server.handle();
        let mut server = tokio::spawn(self.server);
        tokio::select! {
            res = &mut server => return flatten(res),
            () = shutdown => {}
        }
        tracing::info!(grace = ?self.shutdown_grace, "shutdown requested: draining");
        self.draining.store(true, Ordering::SeqCst);
        tokio::time::sleep(self.shutdown_grace).await;
        handle.stop(true).await;
        let res = flatten(server.await);
        self.journal.close().await;
        tracing::info!("stopped");
        res
    }
}

fn flatten(res: Result<std::io::Result<()>, tokio::task::JoinError>) -> std::io::Result<()> {
    res.map_err(std::io::Error::other)?
}

/// Store URLs may carry a password (postgres://user:pass@host); never log it.
fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            format!("{}://***@{}", &url[..scheme_end], &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}

/// Resolves on SIGINT or SIGTERM: the shutdown future `serve` passes in production.
pub async fn termination_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}

/// `tenant-gateway serve`.
pub async fn serve(settings: Settings) -> anyhow::Result<()> {
    let app = Application::build(settings).await?;
    app.run_until_stopped(termination_signal()).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted_from_store_urls() {
        assert_eq!(
            redact_url("postgres://u:secret@db:5432/x"),
            "postgres://***@db:5432/x"
        );
        assert_eq!(redact_url("sqlite://./data/x.db"), "sqlite://./data/x.db");
    }
}
