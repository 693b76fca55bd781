//! The SQLite journal backend: one database file in WAL mode, one dedicated write connection
//! owned by the group-commit writer, and a small pool of read connections.
//!
//! Durability: `synchronous=FULL` makes every commit fsync the WAL, so an event reported as
//! stored survives `kill -9` and power loss. WAL lets reads run while the writer commits.
//!
//! Per event the writer runs one statement, `INSERT ... ON CONFLICT (source, id) DO NOTHING
//! RETURNING sequence`, whose sequence is the tenant's current maximum plus one (read from the
//! `(tenant, sequence)` unique index inside the same transaction), and it sends a whole group's
//! inserts in a few multi-statement batches rather than one round trip per event. Only an event
//! the insert skipped (a repeat) costs a second statement, fetching the stored hash to tell a
//! duplicate from a conflict. A conflict inside a multi-event request after some of its members
//! were inserted is the one case that rolls the group back and redoes it request by request,
//! each multi-event request in a savepoint.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock};

use futures_util::TryStreamExt;
use sqlx::migrate::Migrator;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteSynchronous,
};
use sqlx::{ConnectOptions, Connection, Either, Executor, Row};
use uuid::Uuid;

use super::group_commit::{GroupCommitter, GroupStore, RequestOutcome};
use super::{
    AppendError, AppendStatus, Appended, CommitStats, JournalError, JournalOptions, NewEvent,
    StoredEvent,
};

/// The schema, embedded in the binary and applied at open.
static MIGRATOR: Migrator = sqlx::migrate!("./migrations/sqlite");

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
        // The writer's batches stream two results per insert back from the connection's worker
        // thread; a buffer that holds a whole batch keeps that thread from stalling on each one.
        let write_options = connect_options
            .clone()
            .row_buffer_size(2 * MAX_INSERT_BATCH + 1);
        let mut write_connection = write_options.connect().await.map_err(JournalError::Open)?;
        MIGRATOR
            .run(&mut write_connection)
            .await
            .map_err(JournalError::Migrate)?;
        let readers = SqlitePoolOptions::new()
            .max_connections(options.read_connections)
            .connect_with(connect_options.create_if_missing(false))
            .await
            .map_err(JournalError::Open)?;
        let writer = SqliteWriter {
            connection: Some(write_connection),
            connect_options: write_options,
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

/// Most insert statements sent to SQLite in one round trip. Each statement crosses to the
/// connection's worker thread and back, which costs more than the insert itself, so a group is
/// written in batches of 256, 128, ..., 1 statements (one cached prepared batch per size): a
/// group of n events costs about n/256 + log2(256) round trips instead of n.
const MAX_INSERT_BATCH: usize = 256;

/// The SQL of the insert batches: `INSERT_BATCHES[i]` holds 2^i insert statements.
static INSERT_BATCHES: LazyLock<Vec<String>> = LazyLock::new(|| {
    std::iter::successors(Some(1_usize), |size| Some(size * 2))
        .take_while(|size| *size <= MAX_INSERT_BATCH)
        .map(|size| INSERT_EVENT.repeat(size))
        .collect()
});

/// Inserts one event unless its (source, id) is already stored, and then returns its sequence:
/// the tenant's highest so far plus one, an index lookup on `events_tenant_sequence` that sees
/// this transaction's earlier inserts. The writer is the only writer, so no other transaction
/// can take the same number.
///
/// Positional parameters (the tenant is bound twice) because a batch repeats the statement and
/// sqlx hands each statement of a batch the next run of arguments.
const INSERT_EVENT: &str = "\
INSERT INTO events (event_id, source, id, event_type, tenant, action, sequence, time, \
                    received_at, document, content_hash) \
VALUES (?, ?, ?, ?, ?, ?, COALESCE((SELECT MAX(sequence) FROM events WHERE tenant = ?), 0) + 1, \
        ?, ?, ?, ?) \
ON CONFLICT (source, id) DO NOTHING RETURNING sequence;\n";

/// An event with the values the journal gives it when it is inserted.
struct StagedEvent<'a> {
    event: &'a NewEvent,
    /// The gateway id it gets if it is new.
    event_id: Uuid,
    /// Its acceptance time, RFC 3339 UTC.
    received_at: String,
}

impl<'a> StagedEvent<'a> {
    fn new(event: &'a NewEvent) -> Self {
        StagedEvent {
            event,
            event_id: Uuid::now_v7(),
            received_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        }
    }
}

/// What the journal found for an event that its insert skipped.
enum StoredOrigin {
    /// Stored with the same content hash.
    Duplicate(Appended),
    /// Stored with another content hash; the stored event's id.
    Conflict(Uuid),
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

    /// Inserts every staged event that is not stored yet, in order, in as few round trips as
    /// possible; returns the sequence of each inserted event and `None` for each skipped one.
    async fn insert_all(
        &mut self,
        staged: &[StagedEvent<'_>],
    ) -> Result<Vec<Option<i64>>, sqlx::Error> {
        let connection = self.connection().await?;
        let mut sequences = Vec::with_capacity(staged.len());
        let mut rest = staged;
        while !rest.is_empty() {
            // The largest batch size (a power of two) that fits what is left.
            let size_index =
                (usize::BITS - 1 - rest.len().min(MAX_INSERT_BATCH).leading_zeros()) as usize;
            let (batch, remaining) = rest.split_at(1 << size_index);
            insert_batch(
                connection,
                &INSERT_BATCHES[size_index],
                batch,
                &mut sequences,
            )
            .await?;
            rest = remaining;
        }
        Ok(sequences)
    }

    /// Looks up the stored event an insert skipped.
    async fn stored_origin(&mut self, event: &NewEvent) -> Result<StoredOrigin, sqlx::Error> {
        let connection = self.connection().await?;
        let stored: Option<(String, i64, String)> = sqlx::query_as(SELECT_STORED_ORIGIN)
            .bind(&event.source)
            .bind(&event.id)
            .fetch_optional(connection)
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
        Ok(if stored_hash == event.content_hash {
            StoredOrigin::Duplicate(Appended {
                event_id: stored_id,
                sequence,
                status: AppendStatus::Duplicate,
            })
        } else {
            StoredOrigin::Conflict(stored_id)
        })
    }

    /// The outcome of each request after the batched inserts, or `None` when a multi-event
    /// request conflicts after some of its members were inserted: those inserts (and the
    /// sequences of everything after them) must be undone, which only a redo can do.
    async fn resolve(
        &mut self,
        requests: &[&[NewEvent]],
        staged: &[StagedEvent<'_>],
        sequences: &[Option<i64>],
    ) -> Result<Option<Vec<RequestOutcome>>, sqlx::Error> {
        let mut outcomes = Vec::with_capacity(requests.len());
        let mut first = 0;
        for request in requests {
            let range = first..first + request.len();
            first = range.end;
            let mut appended = Vec::with_capacity(request.len());
            let mut conflict = None;
            for (index, (event, sequence)) in staged[range.clone()]
                .iter()
                .zip(&sequences[range.clone()])
                .enumerate()
            {
                if let Some(sequence) = *sequence {
                    appended.push(Appended {
                        event_id: event.event_id,
                        sequence,
                        status: AppendStatus::Accepted,
                    });
                    continue;
                }
                match self.stored_origin(event.event).await? {
                    StoredOrigin::Duplicate(duplicate) => appended.push(duplicate),
                    StoredOrigin::Conflict(event_id) => {
                        conflict = Some(RequestOutcome::Conflict { index, event_id });
                        break;
                    }
                }
            }
            match conflict {
                Some(_) if sequences[range].iter().any(Option::is_some) => return Ok(None),
                Some(conflict) => outcomes.push(conflict),
                None => outcomes.push(RequestOutcome::Stored(appended)),
            }
        }
        Ok(Some(outcomes))
    }

    /// Rolls the group's transaction back and starts a new one.
    async fn restart_transaction(&mut self) -> Result<(), sqlx::Error> {
        self.execute("ROLLBACK").await?;
        self.in_transaction = false;
        self.begin().await
    }

    /// The exact, slower way: request by request, event by event, each multi-event request in a
    /// savepoint that a conflict rolls back. Used when the batched pass hit such a conflict.
    async fn write_one_by_one(
        &mut self,
        requests: &[&[NewEvent]],
    ) -> Result<Vec<RequestOutcome>, sqlx::Error> {
        let mut outcomes = Vec::with_capacity(requests.len());
        for events in requests {
            outcomes.push(self.write_request(events).await?);
        }
        Ok(outcomes)
    }

    /// Writes one request atomically (see [`write_one_by_one`](Self::write_one_by_one)).
    async fn write_request(&mut self, events: &[NewEvent]) -> Result<RequestOutcome, sqlx::Error> {
        let savepoint = events.len() > 1;
        if savepoint {
            self.execute(SAVEPOINT).await?;
        }
        let mut appended = Vec::with_capacity(events.len());
        for (index, event) in events.iter().enumerate() {
            let staged = [StagedEvent::new(event)];
            if let [Some(sequence)] = self.insert_all(&staged).await?[..] {
                appended.push(Appended {
                    event_id: staged[0].event_id,
                    sequence,
                    status: AppendStatus::Accepted,
                });
                continue;
            }
            match self.stored_origin(event).await? {
                StoredOrigin::Duplicate(duplicate) => appended.push(duplicate),
                StoredOrigin::Conflict(event_id) => {
                    // A single event's conflict inserted nothing: no savepoint to undo.
                    if savepoint {
                        self.execute(ROLLBACK_TO_SAVEPOINT).await?;
                        self.execute(RELEASE_SAVEPOINT).await?;
                    }
                    return Ok(RequestOutcome::Conflict { index, event_id });
                }
            }
        }
        if savepoint {
            self.execute(RELEASE_SAVEPOINT).await?;
        }
        Ok(RequestOutcome::Stored(appended))
    }
}

/// Sends one batch of insert statements and appends, per event, its sequence if it was inserted.
async fn insert_batch(
    connection: &mut SqliteConnection,
    sql: &str,
    batch: &[StagedEvent<'_>],
    sequences: &mut Vec<Option<i64>>,
) -> Result<(), sqlx::Error> {
    let mut query = sqlx::query(sql);
    for staged in batch {
        let event = staged.event;
        query = query
            .bind(staged.event_id.to_string())
            .bind(&event.source)
            .bind(&event.id)
            .bind(&event.event_type)
            .bind(&event.tenant)
            .bind(&event.action)
            .bind(&event.tenant)
            .bind(event.time.as_deref())
            .bind(&staged.received_at)
            .bind(&event.document)
            .bind(&event.content_hash);
    }
    // Each statement yields its RETURNING row (only if it inserted) and then its result.
    let expected = sequences.len() + batch.len();
    let mut returned = None;
    let mut results = connection.fetch_many(query);
    while let Some(item) = results.try_next().await? {
        match item {
            Either::Right(row) => returned = Some(row.try_get::<i64, _>(0)?),
            Either::Left(_) => sequences.push(returned.take()),
        }
    }
    if sequences.len() != expected {
        return Err(sqlx::Error::Protocol(format!(
            "an insert batch of {} statements reported {} results",
            batch.len(),
            batch.len() + sequences.len() - expected
        )));
    }
    Ok(())
}

impl GroupStore for SqliteWriter {
    async fn begin(&mut self) -> Result<(), sqlx::Error> {
        // IMMEDIATE takes the write lock now (waiting up to busy_timeout), so the statements
        // after it can never fail on a lock upgrade halfway through the group.
        self.execute("BEGIN IMMEDIATE").await?;
        self.in_transaction = true;
        Ok(())
    }

    async fn write_requests(
        &mut self,
        requests: &[&[NewEvent]],
    ) -> Result<Vec<RequestOutcome>, sqlx::Error> {
        // Optimistic pass: every event of the group in batched inserts. New events (the usual
        // case) need nothing more; skipped ones are looked up as duplicates or conflicts.
        let staged: Vec<StagedEvent<'_>> = requests
            .iter()
            .flat_map(|events| events.iter())
            .map(StagedEvent::new)
            .collect();
        let sequences = self.insert_all(&staged).await?;
        if let Some(outcomes) = self.resolve(requests, &staged, &sequences).await? {
            return Ok(outcomes);
        }
        self.restart_transaction().await?;
        self.write_one_by_one(requests).await
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
