//! The PostgreSQL journal backend: for deployments of several replicas on one database.
//!
//! Like the SQLite backend, one dedicated write connection is owned by the group-commit writer
//! (one transaction and one commit for many concurrent requests) and a small pool serves the
//! reads. Unlike it, this writer is not the store's only writer: every replica has one. So
//! nothing the writer knows is cached across groups: a tenant's last sequence number lives in
//! its `tenant_sequences` row. Every write transaction of every replica first takes one
//! advisory lock, so the replicas' groups are serialized: once a group holds it, every earlier
//! group has committed and its statements read those commits (READ COMMITTED), sequence numbers
//! stay gapless and emission positions become visible in commit order (see [`writer`]). The
//! unique constraints remain the last word against anything that writes without the lock.
//!
//! Every group that stores new events or replays sends a `NOTIFY` on [`COMMITS_CHANNEL`] in its
//! transaction, so it reaches listeners exactly when the commit does: the hook for waking the
//! dispatchers of other replicas.
//!
//! [`reads`] are the dispatcher's and ingest's reads, [`operator`] the admin API's reads and the
//! operator writes, [`writer`] the group-commit store, [`rows`] the decoding of stored rows.

mod operator;
mod reads;
mod rows;
mod writer;

pub use reads::{pending_page_statement, READ_PLANNER_SETTINGS};
pub(super) use rows::pending_from_row;
use writer::PostgresWriter;
pub use writer::{WRITE_PLANNER_SETTINGS, WRITE_STATEMENTS};

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};
use sqlx::ConnectOptions;
use uuid::Uuid;

use super::group_commit::{GroupCommitter, QueueBounds};
use super::operator::{OperatorError, OperatorOutcome, OperatorWrite};
use super::{
    AppendError, Appended, AttemptRecord, CommitStats, JournalError, JournalOptions, NewEvent,
};

/// The schema, embedded in the binary and applied at open. Two replicas starting at once are
/// safe: sqlx's migrator takes `pg_advisory_lock` keyed by the database name before it even
/// creates its `_sqlx_migrations` table, and releases it at the end (sqlx-core 0.8
/// `migrate/migrator.rs` `Migrator::run_direct`, sqlx-postgres 0.8 `migrate.rs`
/// `Migrate::lock` / `unlock` for `PgConnection`), so the second waits and then finds every
/// migration applied.
static MIGRATOR: Migrator = sqlx::migrate!("./migrations/postgres");

/// The channel every commit with new events or replays notifies (in its transaction, so the
/// notification is delivered when, and only if, the commit is). The payload is empty.
pub const COMMITS_CHANNEL: &str = "tenant_gateway_commits";

/// The PostgreSQL journal. Use it through [`EventJournal`](super::EventJournal); cloning is
/// cheap.
#[derive(Clone)]
pub struct PostgresJournal {
    inner: Arc<PostgresJournalInner>,
}

/// State shared by every clone of a [`PostgresJournal`].
struct PostgresJournalInner {
    /// Host, port and database, for diagnostics (never the password).
    location: String,
    /// The group-commit writer that owns the write connection.
    committer: GroupCommitter,
    /// Connections for reads, separate from the writer so reads never queue behind commits.
    readers: PgPool,
}

impl PostgresJournal {
    /// The read pool, which the dispatcher's bucket leases and notifications share.
    pub fn pool(&self) -> &PgPool {
        &self.inner.readers
    }
}

impl fmt::Debug for PostgresJournal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresJournal")
            .field("location", &self.inner.location)
            .field("accepting", &self.inner.committer.is_accepting())
            .finish_non_exhaustive()
    }
}

/// Parses a `postgres://USER@HOST:PORT/DB` URL and applies the password file and the options
/// every connection of the journal shares. Never echoes the URL (it may hold a password).
pub(super) async fn connect_options(
    url: &str,
    options: &JournalOptions,
) -> Result<PgConnectOptions, JournalError> {
    let mut connect = PgConnectOptions::from_str(url).map_err(|error| {
        JournalError::InvalidUrl(match error {
            sqlx::Error::Configuration(reason) => format!("invalid postgres:// URL: {reason}"),
            _ => "invalid postgres:// URL".to_owned(),
        })
    })?;
    if connect.get_database().is_none() {
        return Err(JournalError::InvalidUrl(
            "postgres:// URL names no database (expected postgres://USER@HOST:PORT/DB)".into(),
        ));
    }
    if let Some(path) = &options.password_file {
        connect = connect.password(&read_password(path).await?);
    }
    // A write waiting on a lock held by someone else gives up after busy_timeout, as SQLite's
    // busy timeout does: the append answers 503 instead of hanging.
    let lock_timeout = options.busy_timeout.as_millis().max(1).to_string();
    Ok(connect
        .application_name("tenant-gateway")
        .options([("lock_timeout", lock_timeout.as_str())]))
}

/// The password file's content, trimmed; an empty file is refused.
async fn read_password(path: &std::path::Path) -> Result<String, JournalError> {
    let refused = |reason: String| JournalError::PasswordFile {
        path: path.to_owned(),
        reason,
    };
    let text = tokio::fs::read_to_string(path)
        .await
        .map_err(|error| refused(error.to_string()))?;
    let password = text.trim();
    if password.is_empty() {
        return Err(refused("the file is empty".into()));
    }
    Ok(password.to_owned())
}

/// Where the options point: `host:port/database`.
fn location(connect: &PgConnectOptions) -> String {
    format!(
        "{}:{}/{}",
        connect.get_host(),
        connect.get_port(),
        connect.get_database().unwrap_or_default()
    )
}

/// Whether PostgreSQL refused the connection because the database does not exist (SQLSTATE
/// 3D000, invalid_catalog_name).
fn is_missing_database(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(db) if db.code().as_deref() == Some("3D000"))
}

/// Whether a failed connection attempt is worth retrying: the server is not reachable yet, or
/// is starting up (SQLSTATE 57P03, cannot_connect_now). Refusals (authentication, a missing
/// database) are not.
fn is_transient_connect_error(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::Tls(_) => true,
        sqlx::Error::Database(db) => db.code().as_deref() == Some("57P03"),
        _ => false,
    }
}

/// Connects once, bounded by `timeout` (a server that accepts TCP but never answers must not
/// hang the caller).
pub(super) async fn connect_once(
    connect: &PgConnectOptions,
    timeout: Duration,
) -> Result<PgConnection, sqlx::Error> {
    match tokio::time::timeout(timeout, connect.connect()).await {
        Ok(result) => result,
        Err(_) => Err(sqlx::Error::Io(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!(
                "no answer from the PostgreSQL server within {}",
                humantime::format_duration(timeout)
            ),
        ))),
    }
}

/// Connects at start-up: a server that cannot be reached is retried (backing off from 100 ms
/// to 2 s) until `options.connect_wait` has passed; a missing database is refused at once and
/// never created, so a mistyped name cannot split the journal.
async fn connect_at_start(
    connect: &PgConnectOptions,
    options: &JournalOptions,
) -> Result<PgConnection, JournalError> {
    let started = Instant::now();
    let mut backoff = Duration::from_millis(100);
    loop {
        let attempt_timeout = options.busy_timeout.max(Duration::from_secs(1));
        match connect_once(connect, attempt_timeout).await {
            Ok(connection) => return Ok(connection),
            Err(error) if is_missing_database(&error) => {
                return Err(JournalError::DatabaseMissing {
                    location: location(connect),
                })
            }
            Err(error) if is_transient_connect_error(&error) => {
                let waited = started.elapsed();
                if waited + backoff > options.connect_wait {
                    return Err(JournalError::Unreachable {
                        location: location(connect),
                        waited: humantime::format_duration(Duration::from_millis(
                            waited.as_millis() as u64,
                        ))
                        .to_string(),
                        source: error,
                    });
                }
                tracing::warn!(
                    %error,
                    location = %location(connect),
                    "PostgreSQL journal not reachable yet; retrying"
                );
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
            Err(error) => return Err(JournalError::Open(error)),
        }
    }
}

impl PostgresJournal {
    /// Connects (waiting a bounded time for the server), migrates, and starts the writer.
    pub(super) async fn open(url: &str, options: JournalOptions) -> Result<Self, JournalError> {
        let connect = connect_options(url, &options).await?;
        let write_connect = writer::write_connect_options(&connect);
        let mut write_connection = connect_at_start(&write_connect, &options).await?;
        MIGRATOR
            .run(&mut write_connection)
            .await
            .map_err(JournalError::Migrate)?;
        let readers = PgPoolOptions::new()
            .max_connections(options.read_connections)
            // A read (a readiness check above all) on a database that went away fails within
            // the busy timeout instead of waiting sqlx's default 30 s for a connection.
            .acquire_timeout(options.busy_timeout.max(Duration::from_secs(1)))
            .connect_lazy_with(connect.clone().options(reads::READ_PLANNER_SETTINGS));
        let writer = PostgresWriter::new(
            write_connection,
            write_connect,
            options.busy_timeout.max(Duration::from_secs(1)),
        );
        let committer = GroupCommitter::start(
            writer,
            QueueBounds {
                append_bytes: options.queue_bytes,
                internal_requests: options.internal_queue,
                max_group_events: options.max_group_events,
            },
        );
        Ok(PostgresJournal {
            inner: Arc::new(PostgresJournalInner {
                location: location(&connect),
                committer,
                readers,
            }),
        })
    }

    pub(super) async fn append(&self, events: Vec<NewEvent>) -> Result<Vec<Appended>, AppendError> {
        self.inner.committer.append(events).await
    }

    pub(super) async fn submit_attempts(
        &self,
        attempts: Vec<AttemptRecord>,
    ) -> Result<tokio::sync::oneshot::Receiver<Result<(), AppendError>>, AppendError> {
        self.inner.committer.submit(attempts).await
    }

    pub(super) async fn operate(
        &self,
        write: OperatorWrite,
    ) -> Result<OperatorOutcome, OperatorError> {
        self.inner.committer.operate(write).await
    }

    pub(super) fn subscribe_commits(&self) -> tokio::sync::watch::Receiver<u64> {
        self.inner.committer.subscribe_commits()
    }

    pub(super) fn group_sizes(&self) -> prometheus_client::metrics::histogram::Histogram {
        self.inner.committer.group_sizes()
    }

    pub(super) async fn check_ready(&self) -> Result<(), JournalError> {
        if !self.inner.committer.is_accepting() {
            return Err(JournalError::Closed);
        }
        let applied: Option<i64> =
            sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations WHERE success")
                .fetch_one(&self.inner.readers)
                .await
                .map_err(read_error)?;
        let required = MIGRATOR.iter().map(|migration| migration.version).max();
        match (required, applied) {
            (Some(required), Some(applied)) if applied < required => {
                Err(JournalError::NotMigrated(format!(
                    "the store is at migration {applied}, this build needs {required}"
                )))
            }
            (Some(required), None) => Err(JournalError::NotMigrated(format!(
                "no migration applied, this build needs {required}"
            ))),
            _ => Ok(()),
        }
    }

    pub(super) fn commit_stats(&self) -> CommitStats {
        self.inner.committer.stats()
    }

    pub(super) fn queued_requests(&self) -> usize {
        self.inner.committer.queued_requests()
    }

    pub(super) fn queued_append_bytes(&self) -> usize {
        self.inner.committer.queued_append_bytes()
    }

    pub(super) async fn close(&self) {
        self.inner.committer.close().await;
        self.inner.readers.close().await;
    }
}

/// Maps a read failure; a closed pool means the journal was closed.
fn read_error(error: sqlx::Error) -> JournalError {
    match error {
        sqlx::Error::PoolClosed => JournalError::Closed,
        other => JournalError::Query(other),
    }
}

/// Parses a stored UUID, or says which row is unreadable.
fn parse_uuid(value: &str, what: &str) -> Result<Uuid, JournalError> {
    Uuid::parse_str(value).map_err(|error| JournalError::Corrupt {
        event_id: value.to_owned(),
        reason: format!("{what} is not a UUID: {error}"),
    })
}

/// A stored count or attempt number as the `u32` the journal's types carry.
fn stored_u32(value: i64, what: &str) -> Result<u32, JournalError> {
    u32::try_from(value).map_err(|_| JournalError::Corrupt {
        event_id: String::new(),
        reason: format!("{what} {value} is out of range"),
    })
}
