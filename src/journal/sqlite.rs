//! The SQLite journal backend: one database file in WAL mode, one dedicated write connection
//! owned by the group-commit writer, and a small pool of read connections.
//!
//! Durability: `synchronous=FULL` makes every commit fsync the WAL, so an event reported as
//! stored survives `kill -9` and power loss. WAL lets reads run while the writer commits.
//!
//! Per accepted event the writer runs one statement: an `INSERT ... ON CONFLICT (source, id) DO
//! NOTHING RETURNING sequence` whose sequence is the tenant's current maximum plus one, read from
//! the `(tenant, sequence)` unique index inside the same transaction. Only when that inserts
//! nothing (a repeat) does a second statement fetch the stored hash to tell a duplicate from a
//! conflict.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sqlx::migrate::Migrator;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteSynchronous,
};
use sqlx::{ConnectOptions, Connection};
use uuid::Uuid;

use super::group_commit::{GroupCommitter, GroupStore, RequestOutcome};
use super::{
    AppendError, AppendStatus, Appended, CommitStats, JournalError, JournalOptions, NewEvent,
    StoredEvent,
};

/// The schema, embedded in the binary and applied at open.
static MIGRATOR: Migrator = sqlx::migrate!("./migrations/sqlite");

/// Inserts one event unless its (source, id) is already stored; returns its sequence when it
/// was inserted. The sequence is the tenant's highest so far plus one (an index lookup on
/// `events_tenant_sequence`); the writer is the only writer, so no other transaction can take it.
const INSERT_EVENT: &str = "\
INSERT INTO events (event_id, source, id, event_type, tenant, action, sequence, time,
                    received_at, document, content_hash)
VALUES (?1, ?2, ?3, ?4, ?5, ?6,
        COALESCE((SELECT MAX(sequence) FROM events WHERE tenant = ?5), 0) + 1,
        ?7, ?8, ?9, ?10)
ON CONFLICT (source, id) DO NOTHING
RETURNING sequence";

/// The stored identity and hash of an event that was already there.
const SELECT_STORED_ORIGIN: &str =
    "SELECT event_id, sequence, content_hash FROM events WHERE source = ?1 AND id = ?2";

/// Columns of [`StoredEvent`], in [`EventRow`] order.
const STORED_EVENT_COLUMNS: &str = "event_id, source, id, event_type, tenant, action, sequence, \
                                    time, received_at, document, content_hash, status";

/// Savepoint around a multi-event request, so a conflict undoes only that request.
const SAVEPOINT: &str = "SAVEPOINT append_request";
const ROLLBACK_TO_SAVEPOINT: &str = "ROLLBACK TO append_request";
const RELEASE_SAVEPOINT: &str = "RELEASE append_request";

/// Turns the part of a `sqlite://PATH` URL after `sqlite://` into a file path.
pub(super) fn parse_path(rest: &str) -> Result<PathBuf, JournalError> {
    if rest.is_empty() {
        return Err(JournalError::InvalidUrl(
            "sqlite:// URL has no file path (expected sqlite://PATH)".into(),
        ));
    }
    if rest.contains('?') {
        return Err(JournalError::InvalidUrl(
            "sqlite:// URL must be a plain file path; query parameters are not supported".into(),
        ));
    }
    if rest == ":memory:" || rest.starts_with("file:") {
        return Err(JournalError::InvalidUrl(
            "the SQLite journal needs a file path: the writer and the readers share one \
             database file, so in-memory and `file:` URIs are not supported"
                .into(),
        ));
    }
    Ok(PathBuf::from(rest))
}

/// The SQLite journal. Use it through [`EventJournal`](super::EventJournal); cloning is cheap.
#[derive(Clone)]
pub struct SqliteJournal {
    inner: Arc<SqliteJournalInner>,
}

/// State shared by every clone of a [`SqliteJournal`].
struct SqliteJournalInner {
    /// The database file, for diagnostics.
    path: PathBuf,
    /// The group-commit writer that owns the write connection.
    committer: GroupCommitter,
    /// Connections for reads, separate from the writer so reads never queue behind commits.
    readers: SqlitePool,
}

impl fmt::Debug for SqliteJournal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteJournal")
            .field("path", &self.inner.path)
            .field("accepting", &self.inner.committer.is_accepting())
            .finish_non_exhaustive()
    }
}

impl SqliteJournal {
    /// Creates the directory and file if needed, migrates, and starts the writer.
    pub(super) async fn open(path: PathBuf, options: JournalOptions) -> Result<Self, JournalError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            tokio::fs::create_dir_all(parent).await.map_err(|source| {
                JournalError::CreateDirectory {
                    path: parent.to_path_buf(),
                    source,
                }
            })?;
        }
        let connect_options = connect_options(&path, &options);
        let mut write_connection = connect_options
            .connect()
            .await
            .map_err(JournalError::Open)?;
        MIGRATOR
            .run(&mut write_connection)
            .await
            .map_err(JournalError::Migrate)?;
        let readers = SqlitePoolOptions::new()
            .max_connections(options.read_connections)
            .connect_with(connect_options.clone().create_if_missing(false))
            .await
            .map_err(JournalError::Open)?;
        let writer = SqliteWriter {
            connection: Some(write_connection),
            connect_options,
            in_transaction: false,
        };
        let committer =
            GroupCommitter::start(writer, options.queue_capacity, options.max_group_events);
        Ok(SqliteJournal {
            inner: Arc::new(SqliteJournalInner {
                path,
                committer,
                readers,
            }),
        })
    }

    pub(super) async fn append(&self, events: Vec<NewEvent>) -> Result<Vec<Appended>, AppendError> {
        self.inner.committer.append(events).await
    }

    pub(super) async fn find_by_origin(
        &self,
        source: &str,
        id: &str,
    ) -> Result<Option<StoredEvent>, JournalError> {
        let sql =
            format!("SELECT {STORED_EVENT_COLUMNS} FROM events WHERE source = ?1 AND id = ?2");
        let row: Option<EventRow> = sqlx::query_as(&sql)
            .bind(source)
            .bind(id)
            .fetch_optional(&self.inner.readers)
            .await
            .map_err(read_error)?;
        row.map(EventRow::into_stored).transpose()
    }

    pub(super) async fn tenant_timeline(
        &self,
        tenant: &str,
    ) -> Result<Vec<StoredEvent>, JournalError> {
        let sql = format!(
            "SELECT {STORED_EVENT_COLUMNS} FROM events WHERE tenant = ?1 ORDER BY sequence"
        );
        let rows: Vec<EventRow> = sqlx::query_as(&sql)
            .bind(tenant)
            .fetch_all(&self.inner.readers)
            .await
            .map_err(read_error)?;
        rows.into_iter().map(EventRow::into_stored).collect()
    }

    pub(super) async fn check_ready(&self) -> Result<(), JournalError> {
        if !self.inner.committer.is_accepting() {
            return Err(JournalError::Closed);
        }
        let applied: Option<i64> =
            sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations WHERE success = 1")
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

    pub(super) async fn close(&self) {
        self.inner.committer.close().await;
        self.inner.readers.close().await;
    }
}

/// Connection settings shared by the writer and the readers.
fn connect_options(path: &Path, options: &JournalOptions) -> SqliteConnectOptions {
    SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .foreign_keys(true)
        .busy_timeout(options.busy_timeout)
        .thread_name(|id| format!("journal-db-{id}"))
}

/// Maps a read failure; a closed pool means the journal was closed.
fn read_error(error: sqlx::Error) -> JournalError {
    match error {
        sqlx::Error::PoolClosed => JournalError::Closed,
        other => JournalError::Query(other),
    }
}

/// A row of `events` as SQLite returns it, before decoding the id and document.
#[derive(sqlx::FromRow)]
struct EventRow {
    event_id: String,
    source: String,
    id: String,
    event_type: String,
    tenant: String,
    action: String,
    sequence: i64,
    time: Option<String>,
    received_at: String,
    document: String,
    content_hash: String,
    status: String,
}

impl EventRow {
    fn into_stored(self) -> Result<StoredEvent, JournalError> {
        let event_id = Uuid::parse_str(&self.event_id).map_err(|error| JournalError::Corrupt {
            event_id: self.event_id.clone(),
            reason: format!("event id is not a UUID: {error}"),
        })?;
        let document =
            serde_json::from_str(&self.document).map_err(|error| JournalError::Corrupt {
                event_id: self.event_id.clone(),
                reason: format!("document is not JSON: {error}"),
            })?;
        Ok(StoredEvent {
            event_id,
            source: self.source,
            id: self.id,
            event_type: self.event_type,
            tenant: self.tenant,
            action: self.action,
            sequence: self.sequence,
            time: self.time,
            received_at: self.received_at,
            document,
            content_hash: self.content_hash,
            status: self.status,
        })
    }
}

/// The writer's side of the SQLite journal: the dedicated write connection and the statements of
/// a group transaction.
struct SqliteWriter {
    /// The write connection; `None` after a failure that may have broken it, reopened lazily at
    /// the next group.
    connection: Option<SqliteConnection>,
    /// How to reopen the connection.
    connect_options: SqliteConnectOptions,
    /// Whether `BEGIN` succeeded and neither `COMMIT` nor `ROLLBACK` has run since, so `rollback`
    /// knows whether there is anything to undo.
    in_transaction: bool,
}

/// What the journal found for one event inside the transaction.
enum EventOutcome {
    Appended(Appended),
    Conflict { event_id: Uuid },
}

impl SqliteWriter {
    /// The write connection, reopened if a previous failure dropped it.
    async fn connection(&mut self) -> Result<&mut SqliteConnection, sqlx::Error> {
        let connection = match self.connection.take() {
            Some(connection) => connection,
            None => {
                tracing::info!("reopening the journal write connection");
                self.connect_options.connect().await?
            }
        };
        Ok(self.connection.insert(connection))
    }

    /// Runs a statement without parameters or results on the write connection.
    async fn execute(&mut self, sql: &'static str) -> Result<(), sqlx::Error> {
        let connection = self.connection().await?;
        sqlx::query(sql).execute(connection).await.map(drop)
    }

    /// Stores one event, or finds it already stored.
    async fn append_event(&mut self, event: &NewEvent) -> Result<EventOutcome, sqlx::Error> {
        let connection = self.connection().await?;
        let event_id = Uuid::now_v7();
        let received_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
        let inserted: Option<i64> = sqlx::query_scalar(INSERT_EVENT)
            .bind(event_id.to_string())
            .bind(&event.source)
            .bind(&event.id)
            .bind(&event.event_type)
            .bind(&event.tenant)
            .bind(&event.action)
            .bind(event.time.as_deref())
            .bind(received_at)
            .bind(&event.document)
            .bind(&event.content_hash)
            .fetch_optional(&mut *connection)
            .await?;
        if let Some(sequence) = inserted {
            return Ok(EventOutcome::Appended(Appended {
                event_id,
                sequence,
                status: AppendStatus::Accepted,
            }));
        }
        let stored: Option<(String, i64, String)> = sqlx::query_as(SELECT_STORED_ORIGIN)
            .bind(&event.source)
            .bind(&event.id)
            .fetch_optional(&mut *connection)
            .await?;
        let Some((stored_id, sequence, stored_hash)) = stored else {
            // The insert only skips rows whose (source, id) exists, and this transaction is the
            // only writer: the row must be visible. Fail the group rather than guess.
            return Err(sqlx::Error::Protocol(format!(
                "event ({}, {}) was neither inserted nor found",
                event.source, event.id
            )));
        };
        let stored_id =
            Uuid::parse_str(&stored_id).map_err(|error| sqlx::Error::Decode(Box::new(error)))?;
        if stored_hash == event.content_hash {
            Ok(EventOutcome::Appended(Appended {
                event_id: stored_id,
                sequence,
                status: AppendStatus::Duplicate,
            }))
        } else {
            Ok(EventOutcome::Conflict {
                event_id: stored_id,
            })
        }
    }
}

impl GroupStore for SqliteWriter {
    async fn begin(&mut self) -> Result<(), sqlx::Error> {
        // IMMEDIATE takes the write lock now (waiting up to busy_timeout), so the statements
        // after it can never fail on a lock upgrade halfway through the group.
        self.execute("BEGIN IMMEDIATE").await?;
        self.in_transaction = true;
        Ok(())
    }

    async fn append_request(&mut self, events: &[NewEvent]) -> Result<RequestOutcome, sqlx::Error> {
        if let [event] = events {
            // A single event needs no savepoint: a conflicting event inserts nothing.
            return Ok(match self.append_event(event).await? {
                EventOutcome::Appended(appended) => RequestOutcome::Stored(vec![appended]),
                EventOutcome::Conflict { event_id } => {
                    RequestOutcome::Conflict { index: 0, event_id }
                }
            });
        }
        self.execute(SAVEPOINT).await?;
        let mut appended = Vec::with_capacity(events.len());
        for (index, event) in events.iter().enumerate() {
            match self.append_event(event).await? {
                EventOutcome::Appended(one) => appended.push(one),
                EventOutcome::Conflict { event_id } => {
                    self.execute(ROLLBACK_TO_SAVEPOINT).await?;
                    self.execute(RELEASE_SAVEPOINT).await?;
                    return Ok(RequestOutcome::Conflict { index, event_id });
                }
            }
        }
        self.execute(RELEASE_SAVEPOINT).await?;
        Ok(RequestOutcome::Stored(appended))
    }

    async fn commit(&mut self) -> Result<(), sqlx::Error> {
        self.execute("COMMIT").await?;
        self.in_transaction = false;
        Ok(())
    }

    async fn rollback(&mut self) {
        if !std::mem::take(&mut self.in_transaction) {
            return;
        }
        let Some(connection) = self.connection.as_mut() else {
            return;
        };
        match sqlx::query("ROLLBACK").execute(connection).await {
            Ok(_) => {}
            // SQLite already rolled back by itself (it does on I/O and disk-full errors).
            Err(sqlx::Error::Database(error))
                if error.message().contains("no transaction is active") => {}
            Err(error) => {
                // The transaction may still be open: dropping the connection rolls it back, and
                // the next group opens a fresh one.
                tracing::warn!(%error, "journal rollback failed; reopening the write connection");
                self.connection = None;
            }
        }
    }

    async fn close(self) {
        if let Some(connection) = self.connection {
            if let Err(error) = connection.close().await {
                tracing::warn!(%error, "closing the journal write connection failed");
            }
        }
    }
}
