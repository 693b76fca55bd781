//! The group-commit store on the write connection: plans each group in Rust and writes it with
//! a handful of multi-row statements.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock};

use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{ConnectOptions, Connection, Row};
use uuid::Uuid;

use crate::journal::group_commit::{GroupStore, RequestOutcome};
use crate::journal::operator::{OperatorError, OperatorOutcome, OperatorWrite};
use crate::journal::{
    AppendStatus, Appended, AttemptOutcome, AttemptRecord, EmissionStatus, NewEvent,
};

/// Rows per multi-row statement: a chunk of a group is padded up to the next of these sizes.
/// sqlx sends each statement to the connection's worker thread and back, a round trip (two
/// thread wake-ups) that costs more than the rows themselves, so a group of up to 256 events is
/// one statement of each kind; a few fixed sizes keep the prepared-statement cache small.
/// 256 rows x 11 columns stays far below SQLite's 32766 bound parameters.
const CHUNK_SIZES: [usize; 4] = [1, 8, 64, 256];

/// A multi-row statement prepared in each of the [`CHUNK_SIZES`].
struct ChunkedStatement {
    /// `sql[i]` has room for `CHUNK_SIZES[i]` rows.
    sql: Vec<String>,
}

/// One statement's worth of rows: the statement, the rows, and how many padding rows of NULLs
/// to bind after them (padding never matches or inserts anything).
struct Chunk<'a, T> {
    sql: &'a str,
    rows: &'a [T],
    padding: usize,
}

impl ChunkedStatement {
    fn new(head: &str, row: &str, tail: &str) -> Self {
        let sql = CHUNK_SIZES
            .iter()
            .map(|size| format!("{head}{}{tail}", vec![row; *size].join(", ")))
            .collect();
        ChunkedStatement { sql }
    }

    /// Splits `rows` into chunks of at most 256, each with the smallest statement it fits.
    fn chunks<'a, T>(&'a self, rows: &'a [T]) -> impl Iterator<Item = Chunk<'a, T>> {
        let largest = CHUNK_SIZES[CHUNK_SIZES.len() - 1];
        rows.chunks(largest).map(move |rows| {
            let index = CHUNK_SIZES
                .iter()
                .position(|size| *size >= rows.len())
                .unwrap_or(CHUNK_SIZES.len() - 1);
            Chunk {
                sql: &self.sql[index],
                rows,
                padding: CHUNK_SIZES[index] - rows.len(),
            }
        })
    }
}

/// Binds `count` NULLs: the padding of a chunk.
fn bind_nulls<'q>(
    query: sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments<'q>>,
    count: usize,
) -> sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments<'q>> {
    (0..count).fold(query, |q, _| q.bind(None::<String>))
}

/// New rows. The writer has already decided in Rust that every row is new, so a constraint
/// violation here is a bug that fails the group rather than a normal outcome. Padding rows have
/// a NULL event id and are filtered out.
static INSERT_EVENTS: LazyLock<ChunkedStatement> = LazyLock::new(|| {
    ChunkedStatement::new(
        "INSERT INTO events (event_id, source, id, event_type, tenant, action, sequence, time, \
         received_at, document, content_hash, lifecycle) \
         SELECT column1, column2, column3, column4, column5, column6, column7, column8, \
         column9, column10, column11, column12 FROM (VALUES ",
        "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        ") WHERE column1 IS NOT NULL",
    )
});
/// Columns bound per inserted row.
const INSERT_COLUMNS: usize = 12;

/// The first emission of each new event, in the same transaction: the transactional outbox.
/// Rows go in sequence order, so positions follow sequences within a tenant.
static INSERT_EMISSIONS: LazyLock<ChunkedStatement> = LazyLock::new(|| {
    ChunkedStatement::new(
        "INSERT INTO emissions (emission_id, event_id, tenant, created_at) \
         SELECT column1, column1, column2, column3 FROM (VALUES ",
        "(?, ?, ?)",
        ") WHERE column1 IS NOT NULL",
    )
});

/// Delivery attempts of a group.
static INSERT_ATTEMPTS: LazyLock<ChunkedStatement> = LazyLock::new(|| {
    ChunkedStatement::new(
        "INSERT INTO delivery_attempts (position, attempt, started_at, finished_at, sink, \
         outcome, status_code, error) \
         SELECT column1, column2, column3, column4, column5, column6, column7, column8 \
         FROM (VALUES ",
        "(?, ?, ?, ?, ?, ?, ?, ?)",
        // A replica that lost a tenant's bucket may record the attempt number the new owner
        // records too (the same emission sent by both, which is allowed): the second record
        // must not fail the whole group, and the appends in it, with a unique violation. (The
        // WHERE clause also lets SQLite parse the upsert after a SELECT.)
        ") WHERE column1 IS NOT NULL ON CONFLICT (position, attempt) DO NOTHING",
    )
});

/// The emissions' state after their attempts (padding rows match no position).
static UPDATE_EMISSIONS: LazyLock<ChunkedStatement> = LazyLock::new(|| {
    ChunkedStatement::new(
        "UPDATE emissions SET status = v.column2, attempts = v.column3, \
         first_attempt_at = COALESCE(emissions.first_attempt_at, v.column4), \
         finished_at = v.column5, last_error = COALESCE(v.column6, emissions.last_error) \
         FROM (VALUES ",
        "(?, ?, ?, ?, ?, ?)",
        ") AS v WHERE emissions.position = v.column1",
    )
});

/// Each tenant's newest delivery (`tenant_deliveries`, migrations/sqlite 0005), from the
/// group's delivered attempts: a row changes only for a later finish time (or the same time
/// and a higher position), so the order of the group's rows, or a replica's late record, never
/// moves it back. (The WHERE clause lets SQLite parse the upsert after a join: SQLite's
/// lang_upsert.html, "Parsing Ambiguity".)
static UPSERT_TENANT_DELIVERIES: LazyLock<ChunkedStatement> = LazyLock::new(|| {
    ChunkedStatement::new(
        "INSERT INTO tenant_deliveries (tenant, position, delivered_at) \
         SELECT m.tenant, v.column1, v.column2 FROM (VALUES ",
        "(?, ?)",
        ") AS v JOIN emissions AS m ON m.position = v.column1 WHERE v.column1 IS NOT NULL \
         ON CONFLICT (tenant) DO UPDATE SET position = excluded.position, \
         delivered_at = excluded.delivered_at \
         WHERE (excluded.delivered_at, excluded.position) \
         > (tenant_deliveries.delivered_at, tenant_deliveries.position)",
    )
});

/// The events' status follows their emission's, once it is final.
static UPDATE_EVENT_STATUS: LazyLock<ChunkedStatement> = LazyLock::new(|| {
    ChunkedStatement::new(
        "UPDATE events SET status = v.column2 FROM (VALUES ",
        "(?, ?)",
        ") AS v WHERE events.event_id = v.column1",
    )
});

/// The stored events among a group's origins: usually none, so usually no rows come back.
/// A join from the VALUES list (CROSS JOIN fixes the order): SQLite plans
/// `(source, id) IN (VALUES ...)` as a full table scan, this as one index search per origin.
/// Padding rows are NULL and match nothing.
static SELECT_STORED_ORIGINS: LazyLock<ChunkedStatement> = LazyLock::new(|| {
    ChunkedStatement::new(
        "SELECT e.source, e.id, e.event_id, e.sequence, e.content_hash FROM (VALUES ",
        "(?, ?)",
        ") AS o CROSS JOIN events AS e ON e.source = o.column1 AND e.id = o.column2",
    )
});

/// The last sequence of tenants the writer has not seen since it started.
static SELECT_LAST_SEQUENCES: LazyLock<ChunkedStatement> = LazyLock::new(|| {
    ChunkedStatement::new(
        "SELECT tenant, last_sequence FROM tenant_sequences WHERE tenant IN (",
        "?",
        ")",
    )
});

/// The group's tenants' new last sequences, in the transaction that appends their events, so
/// `tenant_sequences` always holds each tenant's highest stored sequence (migrations/sqlite
/// 0005). One row per tenant of the group, in a table of one row per tenant: a few pages.
static UPSERT_LAST_SEQUENCES: LazyLock<ChunkedStatement> = LazyLock::new(|| {
    ChunkedStatement::new(
        "INSERT INTO tenant_sequences (tenant, last_sequence) \
         SELECT column1, column2 FROM (VALUES ",
        "(?, ?)",
        ") WHERE column1 IS NOT NULL \
         ON CONFLICT (tenant) DO UPDATE SET last_sequence = excluded.last_sequence",
    )
});

/// What the journal knows of an event with a given (source, id): stored before this group, or
/// accepted earlier in it.
struct KnownOrigin<'a> {
    event_id: Uuid,
    sequence: i64,
    /// Borrowed from the request for events of this group; owned when read from the database.
    content_hash: Cow<'a, str>,
}

/// A new event with the values the journal gives it.
struct PlannedInsert<'a> {
    event: &'a NewEvent,
    event_id: Uuid,
    sequence: i64,
}

/// The writer's side of the SQLite journal: the dedicated write connection, and the tenants'
/// last sequence numbers, which only this writer assigns.
pub(super) struct SqliteWriter {
    /// The write connection; `None` after a failure that may have broken it, reopened lazily at
    /// the next group.
    connection: Option<SqliteConnection>,
    /// How to reopen the connection.
    connect_options: SqliteConnectOptions,
    /// Whether `BEGIN` succeeded and neither `COMMIT` nor `ROLLBACK` has run since, so `rollback`
    /// knows whether there is anything to undo.
    in_transaction: bool,
    /// Last committed sequence per tenant seen since start. The writer is the database's only
    /// writer, so this stays exact and saves an index lookup per event; a tenant not in it is
    /// read once from the database.
    last_sequences: HashMap<String, i64>,
    /// Sequences assigned by the open transaction; merged into `last_sequences` on commit and
    /// dropped on rollback, so a failed group gives its numbers back.
    uncommitted_sequences: HashMap<String, i64>,
    /// Set by the [`super::checkpointer::WalCheckpointer`] when the WAL has outgrown its
    /// limit: the writer restarts the WAL itself before its next group (see `restart_wal`).
    wal_restart: Arc<AtomicBool>,
}

impl SqliteWriter {
    /// The writer on an open, migrated `connection`, reopened with `connect_options` after a
    /// failure.
    pub(super) fn new(
        connection: SqliteConnection,
        connect_options: SqliteConnectOptions,
        wal_restart: Arc<AtomicBool>,
    ) -> Self {
        SqliteWriter {
            connection: Some(connection),
            connect_options,
            in_transaction: false,
            last_sequences: HashMap::new(),
            uncommitted_sequences: HashMap::new(),
            wal_restart,
        }
    }

    /// A `RESTART` checkpoint from the write connection, between groups. From the
    /// checkpointer's own connection it starved under sustained writes: a RESTART first takes
    /// the write lock through the busy handler (SQLite `src/wal.c` `walCheckpoint`, `xBusy` on
    /// `WAL_WRITE_LOCK`), and the writer took the lock back after every commit before the
    /// handler's next poll, so filling 1 million events let the WAL reach 914 MiB. Here the
    /// lock is the writer's own; the checkpointer's passive checkpoints have already copied
    /// most frames, so this copies what the last second added and waits (at most
    /// [`super::checkpointer::BLOCKING_CHECKPOINT_WAIT`]) for readers to leave the WAL. The
    /// next commit then starts the WAL over, and `journal_size_limit` cuts the file.
    async fn restart_wal(&mut self) {
        let wait = super::checkpointer::BLOCKING_CHECKPOINT_WAIT.as_millis();
        let restart = async {
            let connection = self.connection().await?;
            let usual: i64 = sqlx::query_scalar("PRAGMA busy_timeout")
                .fetch_one(&mut *connection)
                .await?;
            sqlx::query(&format!("PRAGMA busy_timeout = {wait}"))
                .execute(&mut *connection)
                .await?;
            let result: Result<(i64, i64, i64), _> =
                sqlx::query_as("PRAGMA wal_checkpoint(RESTART)")
                    .fetch_one(&mut *connection)
                    .await;
            sqlx::query(&format!("PRAGMA busy_timeout = {usual}"))
                .execute(&mut *connection)
                .await?;
            result
        };
        match restart.await {
            Ok((busy, frames, _)) => {
                tracing::debug!(
                    busy = busy != 0,
                    frames,
                    "journal WAL restart from the writer"
                )
            }
            Err(error) => tracing::warn!(%error, "journal WAL restart failed; retrying later"),
        }
    }

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

    /// The stored events among `origins`, keyed by (source, id).
    async fn stored_origins<'a>(
        &mut self,
        origins: &[(&'a str, &'a str)],
    ) -> Result<HashMap<(&'a str, &'a str), KnownOrigin<'a>>, sqlx::Error> {
        let connection = self.connection().await?;
        let mut rows = Vec::new();
        for chunk in SELECT_STORED_ORIGINS.chunks(origins) {
            let query = chunk
                .rows
                .iter()
                .fold(sqlx::query(chunk.sql), |q, (source, id)| {
                    q.bind(*source).bind(*id)
                });
            let query = bind_nulls(query, 2 * chunk.padding);
            rows.extend(query.fetch_all(&mut *connection).await?);
        }
        if rows.is_empty() {
            return Ok(HashMap::new());
        }
        // Key the (rare) stored origins by the group's own strings, so planning borrows them.
        // Indexed by id alone: a map keyed by a tuple of borrowed strings cannot be queried
        // with a tuple of shorter-lived ones.
        let mut requested: HashMap<&'a str, Vec<(&'a str, &'a str)>> = HashMap::new();
        for origin in origins {
            requested.entry(origin.1).or_default().push(*origin);
        }
        let mut known = HashMap::with_capacity(rows.len());
        for row in rows {
            let (source, id): (String, String) = (row.try_get(0)?, row.try_get(1)?);
            let Some(key) = requested
                .get(id.as_str())
                .and_then(|same_id| same_id.iter().find(|(s, _)| *s == source))
            else {
                continue;
            };
            let event_id: String = row.try_get(2)?;
            known.insert(
                *key,
                KnownOrigin {
                    event_id: Uuid::parse_str(&event_id)
                        .map_err(|error| sqlx::Error::Decode(Box::new(error)))?,
                    sequence: row.try_get(3)?,
                    content_hash: Cow::Owned(row.try_get(4)?),
                },
            );
        }
        Ok(known)
    }

    /// Loads the last sequence of every tenant in `tenants` not yet in `last_sequences`.
    async fn load_last_sequences<'t>(
        &mut self,
        tenants: impl Iterator<Item = &'t str>,
    ) -> Result<(), sqlx::Error> {
        let unknown: Vec<&str> = tenants
            .filter(|t| !self.last_sequences.contains_key(*t))
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        if unknown.is_empty() {
            return Ok(());
        }
        let connection = self.connection().await?;
        let mut found = HashMap::new();
        for chunk in SELECT_LAST_SEQUENCES.chunks(&unknown) {
            let query = chunk
                .rows
                .iter()
                .fold(sqlx::query(chunk.sql), |q, t| q.bind(*t));
            let query = bind_nulls(query, chunk.padding);
            for row in query.fetch_all(&mut *connection).await? {
                found.insert(row.try_get::<String, _>(0)?, row.try_get::<i64, _>(1)?);
            }
        }
        for tenant in unknown {
            let last = found.get(tenant).copied().unwrap_or(0);
            self.last_sequences.insert(tenant.to_owned(), last);
        }
        Ok(())
    }

    /// Decides, in Rust, what becomes of every request of the group: each event is a duplicate
    /// or a conflict of a known origin, or new with the tenant's next sequence. A request with
    /// a conflict contributes nothing (no rows, no sequence numbers).
    fn plan<'a>(
        &mut self,
        requests: &[&'a [NewEvent]],
        mut known: HashMap<(&'a str, &'a str), KnownOrigin<'a>>,
    ) -> (Vec<RequestOutcome>, Vec<PlannedInsert<'a>>) {
        let mut outcomes = Vec::with_capacity(requests.len());
        let mut inserts = Vec::new();
        for events in requests {
            let mut appended = Vec::with_capacity(events.len());
            let mut request_inserts: Vec<PlannedInsert<'a>> = Vec::new();
            // This request's sequence numbers, applied only if the whole request stands.
            let mut request_sequences: HashMap<&str, i64> = HashMap::new();
            let mut conflict = None;
            for (index, event) in events.iter().enumerate() {
                let key = (event.source.as_str(), event.id.as_str());
                if let Some(existing) = known.get(&key) {
                    if existing.content_hash == event.content_hash {
                        appended.push(Appended {
                            event_id: existing.event_id,
                            sequence: existing.sequence,
                            status: AppendStatus::Duplicate,
                        });
                        continue;
                    }
                    conflict = Some(RequestOutcome::Conflict {
                        index,
                        event_id: existing.event_id,
                    });
                    break;
                }
                let tenant = event.tenant.as_str();
                let last = request_sequences.get(tenant).copied().unwrap_or_else(|| {
                    self.uncommitted_sequences
                        .get(tenant)
                        .or_else(|| self.last_sequences.get(tenant))
                        .copied()
                        .unwrap_or(0)
                });
                let planned = PlannedInsert {
                    event,
                    event_id: Uuid::now_v7(),
                    sequence: last + 1,
                };
                request_sequences.insert(tenant, planned.sequence);
                // Later events of the group (this request's too) see it as stored.
                known.insert(
                    key,
                    KnownOrigin {
                        event_id: planned.event_id,
                        sequence: planned.sequence,
                        content_hash: Cow::Borrowed(&event.content_hash),
                    },
                );
                appended.push(Appended {
                    event_id: planned.event_id,
                    sequence: planned.sequence,
                    status: AppendStatus::Accepted,
                });
                request_inserts.push(planned);
            }
            match conflict {
                Some(conflict) => {
                    // The request stores nothing: forget what it had planned.
                    for planned in &request_inserts {
                        known.remove(&(planned.event.source.as_str(), planned.event.id.as_str()));
                    }
                    outcomes.push(conflict);
                }
                None => {
                    for (tenant, sequence) in request_sequences {
                        match self.uncommitted_sequences.get_mut(tenant) {
                            Some(last) => *last = sequence,
                            None => {
                                self.uncommitted_sequences
                                    .insert(tenant.to_owned(), sequence);
                            }
                        }
                    }
                    inserts.extend(request_inserts);
                    outcomes.push(RequestOutcome::Stored(appended));
                }
            }
        }
        (outcomes, inserts)
    }

    /// Writes the planned rows, and the tenants' new last sequences, in as few statements as
    /// possible.
    async fn insert(&mut self, inserts: &[PlannedInsert<'_>]) -> Result<(), sqlx::Error> {
        let received_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
        let connection = self.connection().await?;
        for chunk in INSERT_EVENTS.chunks(inserts) {
            let query = chunk
                .rows
                .iter()
                .fold(sqlx::query(chunk.sql), |q, planned| {
                    let event = planned.event;
                    q.bind(planned.event_id.to_string())
                        .bind(&event.source)
                        .bind(&event.id)
                        .bind(&event.event_type)
                        .bind(&event.tenant)
                        .bind(&event.action)
                        .bind(planned.sequence)
                        .bind(event.time.as_deref())
                        .bind(&received_at)
                        .bind(&event.document)
                        .bind(&event.content_hash)
                        .bind(&event.lifecycle)
                });
            bind_nulls(query, INSERT_COLUMNS * chunk.padding)
                .execute(&mut *connection)
                .await?;
        }
        for chunk in INSERT_EMISSIONS.chunks(inserts) {
            let query = chunk
                .rows
                .iter()
                .fold(sqlx::query(chunk.sql), |q, planned| {
                    q.bind(planned.event_id.to_string())
                        .bind(&planned.event.tenant)
                        .bind(&received_at)
                });
            bind_nulls(query, 3 * chunk.padding)
                .execute(&mut *connection)
                .await?;
        }
        let mut group_last: HashMap<&str, i64> = HashMap::new();
        for planned in inserts {
            let last = group_last.entry(&planned.event.tenant).or_default();
            *last = (*last).max(planned.sequence);
        }
        let group_last: Vec<(&str, i64)> = group_last.into_iter().collect();
        for chunk in UPSERT_LAST_SEQUENCES.chunks(&group_last) {
            let query = chunk
                .rows
                .iter()
                .fold(sqlx::query(chunk.sql), |q, (tenant, last)| {
                    q.bind(*tenant).bind(*last)
                });
            bind_nulls(query, 2 * chunk.padding)
                .execute(&mut *connection)
                .await?;
        }
        Ok(())
    }
}

impl GroupStore for SqliteWriter {
    async fn begin(&mut self) -> Result<(), sqlx::Error> {
        if self.wal_restart.swap(false, Ordering::AcqRel) {
            self.restart_wal().await;
        }
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
        // Two reads (stored origins, and the last sequence of tenants not seen before), a plan
        // made in Rust, then multi-row inserts: a handful of round trips per group, whatever
        // its size.
        let events = || requests.iter().flat_map(|events| events.iter());
        let origins: Vec<(&str, &str)> = events()
            .map(|e| (e.source.as_str(), e.id.as_str()))
            .collect();
        let known = self.stored_origins(&origins).await?;
        self.load_last_sequences(events().map(|e| e.tenant.as_str()))
            .await?;
        let (outcomes, inserts) = self.plan(requests, known);
        self.insert(&inserts).await?;
        Ok(outcomes)
    }

    async fn write_attempts(&mut self, attempts: &[&AttemptRecord]) -> Result<(), sqlx::Error> {
        let connection = self.connection().await?;
        let time = |t: &chrono::DateTime<chrono::Utc>| {
            t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
        };
        for chunk in INSERT_ATTEMPTS.chunks(attempts) {
            let query = chunk.rows.iter().fold(sqlx::query(chunk.sql), |q, a| {
                q.bind(a.position)
                    .bind(a.attempt)
                    .bind(time(&a.started_at))
                    .bind(time(&a.finished_at))
                    .bind(a.sink)
                    .bind(a.outcome.as_str())
                    .bind(a.status_code)
                    .bind(a.error.as_deref())
            });
            bind_nulls(query, 8 * chunk.padding)
                .execute(&mut *connection)
                .await?;
        }
        for chunk in UPDATE_EMISSIONS.chunks(attempts) {
            let query = chunk.rows.iter().fold(sqlx::query(chunk.sql), |q, a| {
                let finished =
                    (a.emission_status != EmissionStatus::Pending).then(|| time(&a.finished_at));
                q.bind(a.position)
                    .bind(a.emission_status.as_str())
                    .bind(a.attempt)
                    .bind(time(&a.started_at))
                    .bind(finished)
                    .bind(a.error.as_deref())
            });
            bind_nulls(query, 6 * chunk.padding)
                .execute(&mut *connection)
                .await?;
        }
        let finals: Vec<&&AttemptRecord> = attempts
            .iter()
            .filter(|a| a.emission_status != EmissionStatus::Pending)
            .collect();
        for chunk in UPDATE_EVENT_STATUS.chunks(&finals) {
            let query = chunk.rows.iter().fold(sqlx::query(chunk.sql), |q, a| {
                q.bind(a.event_id.to_string())
                    .bind(a.emission_status.as_str())
            });
            bind_nulls(query, 2 * chunk.padding)
                .execute(&mut *connection)
                .await?;
        }
        let delivered: Vec<&&AttemptRecord> = attempts
            .iter()
            .filter(|a| a.outcome == AttemptOutcome::Delivered)
            .collect();
        for chunk in UPSERT_TENANT_DELIVERIES.chunks(&delivered) {
            let query = chunk.rows.iter().fold(sqlx::query(chunk.sql), |q, a| {
                q.bind(a.position).bind(time(&a.finished_at))
            });
            bind_nulls(query, 2 * chunk.padding)
                .execute(&mut *connection)
                .await?;
        }
        // Only with await-workflow: a delivered emission whose Workflow its tenant waits for.
        for a in attempts
            .iter()
            .filter(|a| a.awaits_workflow && a.emission_status == EmissionStatus::Delivered)
        {
            crate::journal::outcomes::sqlite::record_wait(
                &mut *connection,
                a.position,
                &time(&a.finished_at),
            )
            .await?;
        }
        Ok(())
    }

    async fn write_operations(
        &mut self,
        operations: &[&OperatorWrite],
    ) -> Result<Vec<Result<OperatorOutcome, OperatorError>>, sqlx::Error> {
        let connection = self.connection().await?;
        let mut outcomes = Vec::with_capacity(operations.len());
        for operation in operations {
            outcomes.push(super::operator::apply(connection, operation).await?);
        }
        Ok(outcomes)
    }

    async fn commit(&mut self) -> Result<(), sqlx::Error> {
        self.execute("COMMIT").await?;
        self.in_transaction = false;
        self.last_sequences
            .extend(self.uncommitted_sequences.drain());
        Ok(())
    }

    async fn rollback(&mut self) {
        self.uncommitted_sequences.clear();
        // After a failure the database is the only sure source (a COMMIT that reported an
        // error may still have reached the disk): reload every tenant's last sequence lazily.
        self.last_sequences.clear();
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

#[cfg(test)]
mod tests {
    use super::super::{connect_options, MIGRATOR};
    use super::*;
    use crate::journal::JournalOptions;

    /// The writer's reads must stay index searches: a scan would make every group's cost grow
    /// with the size of the journal.
    #[tokio::test]
    async fn group_reads_use_indexes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plan.db");
        let mut connection = connect_options(&path, &JournalOptions::default())
            .connect()
            .await
            .unwrap();
        MIGRATOR.run(&mut connection).await.unwrap();
        for (statements, binds, table) in [
            (&*SELECT_STORED_ORIGINS, 2, "events"),
            (&*SELECT_LAST_SEQUENCES, 1, "tenant_sequences"),
        ] {
            let sql = format!("EXPLAIN QUERY PLAN {}", statements.sql[0]);
            let query = (0..binds).fold(sqlx::query(&sql), |q, i| q.bind(format!("v{i}")));
            let plan: Vec<String> = query
                .fetch_all(&mut connection)
                .await
                .unwrap()
                .iter()
                .map(|row| row.get::<String, _>(3))
                .collect();
            assert!(
                plan.iter()
                    .any(|step| step.contains(table) && step.starts_with("SEARCH")),
                "{sql}: {plan:?}"
            );
            assert!(
                !plan
                    .iter()
                    .any(|step| step.starts_with("SCAN") && step.contains(table)),
                "{sql}: {plan:?}"
            );
        }
    }
}
