//! The journal: the durable store of every accepted upstream CloudEvent (see
//! `docs/architecture.md`, "Journal and group commit").
//!
//! It owns three things the rest of the gateway relies on:
//! - deduplication by upstream identity (`source`, `id`): a repeat with the same content is a
//!   duplicate, a repeat with other content is a conflict;
//! - the per-tenant sequence numbers (1, 2, 3, ... in commit order) the dispatcher delivers by;
//! - durability before acknowledgement: [`EventJournal::append`] returns only after the commit
//!   reached the disk, so the HTTP layer can answer 2xx right after it;
//! - the dispatch outbox: each accepted event's first emission is written in the same
//!   transaction, and delivery attempts are recorded against it (see `docs/dispatch.md`).
//!
//! Writes (appends and attempt records) go through one group-commit writer per journal (see
//! `group_commit`): concurrent requests share one transaction and one fsync, which is what makes tens of thousands of small requests
//! per second possible on a durable store.
//!
//! [`EventJournal`] is an enum over storage backends, chosen once from the store URL: SQLite for
//! the embedded single replica (`sqlite://PATH`), PostgreSQL for several replicas on one
//! database (`postgres://USER@HOST:PORT/DB`). Both sit behind the same API and pass the same
//! contract suite.

pub mod copy;
mod group_commit;
pub mod operator;
mod outcomes;
mod postgres;
mod rows;
mod sqlite;
mod status;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use uuid::Uuid;

pub use operator::{
    EventHeader, EventQuery, NewReplayJob, Operator, OperatorAction, OperatorError,
    OperatorOutcome, OperatorWrite, ReplayJob, Replayed, StoredEmission, TenantState,
};
pub use outcomes::{
    tenant_read_statements, NotificationFinished, PendingNotification, TenantLifecycle,
    TenantQuery, TenantSummary, WorkflowObservation, WorkflowRecord, WorkflowRecorded,
    WorkflowWait,
};
pub use postgres::{
    pending_page_statement, PostgresJournal, COMMITS_CHANNEL, READ_PLANNER_SETTINGS,
    WRITE_PLANNER_SETTINGS, WRITE_STATEMENTS,
};
pub use sqlite::SqliteJournal;
pub use status::{
    AttemptOutcome, EmissionStatus, EventStatus, Lifecycle, LifecycleOutcome, ReplayJobStatus,
    UnknownValue, WorkflowPhase,
};

/// Tuning of an [`EventJournal`]; the defaults suit the embedded single-replica deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalOptions {
    /// How long a write waits for a database locked by another writer before the append fails
    /// with [`AppendError::Unavailable`] (default 5 s), so a stuck lock turns into a retryable
    /// 503 instead of a hung request.
    pub busy_timeout: Duration,
    /// Upper bound on the events written in one shared transaction (default 4096), so one group
    /// cannot hold the write lock, and the callers waiting on it, for too long. A single request
    /// larger than this is still written, alone.
    pub max_group_events: usize,
    /// Bytes that ingest's appends may hold while they wait for the writer or are being written
    /// (default 64 MiB). An append that would go over it is refused at once with
    /// [`AppendError::Overloaded`] (ingest answers 429), so memory stays bounded when ingest
    /// outruns the disk. The gateway's own writes do not count against it.
    pub queue_bytes: usize,
    /// The gateway's own writes (delivery records, operator writes) that may wait for the
    /// writer (default 1024); when it is full their callers wait, never ingest.
    pub internal_queue: usize,
    /// SQLite only: the WAL file's size the checkpointer keeps it near (default 64 MiB). Past it
    /// a checkpoint holds the writer back once to start the WAL over, and an idle journal's WAL
    /// is emptied, so the file never grows with the load.
    pub wal_limit: u64,
    /// Size of the read connection pool (default 4), used by lookups, timelines and readiness
    /// checks so reads never wait behind the writer. A PostgreSQL journal holds this many plus
    /// one write connection, so three replicas stay far below PostgreSQL's default
    /// `max_connections` of 100.
    pub read_connections: u32,
    /// A file holding the PostgreSQL password (trimmed), for a `postgres://` URL without one:
    /// the secret stays out of the URL, the command line and the environment.
    pub password_file: Option<PathBuf>,
    /// How long opening a PostgreSQL journal keeps retrying a server it cannot reach (default
    /// 30 s) before it fails, so a gateway started with its database rides out the database's
    /// start-up but a wrong host still ends in a clear error.
    pub connect_wait: Duration,
}

impl Default for JournalOptions {
    fn default() -> Self {
        JournalOptions {
            busy_timeout: Duration::from_secs(5),
            max_group_events: 4096,
            queue_bytes: 64 << 20,
            internal_queue: 1024,
            read_connections: 4,
            password_file: None,
            connect_wait: Duration::from_secs(30),
            wal_limit: 64 << 20,
        }
    }
}

impl JournalOptions {
    /// Rejects values that would make the journal unusable (a zero-sized queue, group or pool)
    /// instead of silently replacing them.
    fn validate(&self) -> Result<(), JournalError> {
        let zero = [
            ("max_group_events", self.max_group_events == 0),
            ("queue_bytes", self.queue_bytes == 0),
            ("internal_queue", self.internal_queue == 0),
            ("read_connections", self.read_connections == 0),
        ];
        match zero.iter().find(|(_, is_zero)| *is_zero) {
            Some((name, _)) => Err(JournalError::InvalidOptions(format!(
                "{name} must be at least 1"
            ))),
            None => Ok(()),
        }
    }
}

/// An accepted, normalized upstream event, ready to be journaled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEvent {
    /// Upstream CloudEvent `source`; with `id`, the deduplication key.
    pub source: String,
    /// Upstream CloudEvent `id`; with `source`, the deduplication key.
    pub id: String,
    /// Upstream CloudEvent `type`, kept for search and for the canonical event's `origintype`.
    pub event_type: String,
    /// Tenant named by normalization (already validated as a DNS-1123 label); the sequence scope.
    pub tenant: String,
    /// Short lifecycle action from normalization (e.g. `upsert`); emitted as
    /// `lifecycle.<action>`.
    pub action: String,
    /// Upstream `time` attribute exactly as sent (RFC 3339), if the event had one.
    pub time: Option<String>,
    /// Canonical structured-mode JSON of the upstream event: what replays are built from.
    pub document: String,
    /// Hex SHA-256 of `document`; equal hashes mean equal content, which tells a duplicate from a
    /// conflict.
    pub content_hash: String,
    /// JSON object of what normalization found besides tenant and action (parameters, object
    /// storage), fixed at ingest so a later rules change never alters what the event emits.
    /// Not part of the content hash: it is derived from the document.
    pub lifecycle: String,
}

/// What the journal did with one event of an append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppendStatus {
    /// Newly stored by this append.
    Accepted,
    /// Already stored with the same content; nothing was written for it.
    Duplicate,
}

/// The journal's answer for one event of an append (one per input event, in input order).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    /// The gateway's id (UUIDv7) of the stored event; for a duplicate, the original's id.
    pub event_id: Uuid,
    /// The stored event's per-tenant sequence number; for a duplicate, the original's.
    pub sequence: i64,
    /// Whether this append stored the event or found it already stored.
    pub status: AppendStatus,
}

/// Why an append (or a record of delivery attempts) stored nothing.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    /// An event has the same `source` and `id` as a stored event (or an earlier event of the same
    /// request) but a different content hash. Nothing of the request was stored (HTTP 409).
    #[error(
        "event {index} has the same source and id as stored event {event_id} but different \
         content; nothing of the request was stored"
    )]
    Conflict {
        /// Position of the conflicting event in the request.
        index: usize,
        /// The stored event it conflicts with. When it clashes with an earlier event of the same
        /// request, that event was never stored: this is the id it would have had.
        event_id: Uuid,
    },
    /// The store failed (busy, locked, I/O). Nothing of the request was stored and retrying
    /// later is safe (HTTP 503). The error is shared by every request of the failed group, hence
    /// the `Arc`.
    #[error("journal store unavailable; nothing of the request was stored, retry later")]
    Unavailable(#[source] Arc<sqlx::Error>),
    /// The journal is closed or closing for shutdown (HTTP 503).
    #[error("journal is closed")]
    Closed,
    /// Appends already waiting for the writer hold [`JournalOptions::queue_bytes`]: nothing was
    /// queued and retrying shortly is safe (HTTP 429).
    #[error(
        "{queued_bytes} bytes of events are already waiting for the journal (the bound is \
         {limit}); retry shortly"
    )]
    Overloaded {
        /// Bytes held by waiting appends when this one was refused.
        queued_bytes: usize,
        /// [`JournalOptions::queue_bytes`].
        limit: usize,
    },
}

/// Why the journal could not be opened or read.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// The PostgreSQL database named by the URL does not exist. It is never created: a
    /// mistyped name must not start a second, empty journal.
    #[error(
        "the PostgreSQL database {location} does not exist; create it (the gateway never \
         creates its database) or correct the store URL"
    )]
    DatabaseMissing {
        /// `host:port/database` (never the password).
        location: String,
    },
    /// The PostgreSQL server did not answer within [`JournalOptions::connect_wait`].
    #[error("cannot reach the PostgreSQL server at {location} (retried for {waited})")]
    Unreachable {
        /// `host:port/database`.
        location: String,
        /// How long it was retried.
        waited: String,
        /// The last connection failure.
        #[source]
        source: sqlx::Error,
    },
    /// The store password file could not be used.
    #[error("cannot use the store password file {}: {reason}", path.display())]
    PasswordFile {
        /// The file given.
        path: PathBuf,
        /// Why it was refused.
        reason: String,
    },
    /// The store URL is malformed; the message says why (it never repeats the URL, which may
    /// hold credentials).
    #[error("invalid journal store URL: {0}")]
    InvalidUrl(String),
    /// A [`JournalOptions`] value is out of range.
    #[error("invalid journal options: {0}")]
    InvalidOptions(String),
    /// The directory of the SQLite file could not be created.
    #[error("cannot create the journal directory {}", path.display())]
    CreateDirectory {
        /// The directory that was being created.
        path: PathBuf,
        /// The underlying I/O failure.
        #[source]
        source: std::io::Error,
    },
    /// The store could not be opened or connected to.
    #[error("cannot open the journal store")]
    Open(#[source] sqlx::Error),
    /// The schema migrations failed.
    #[error("cannot migrate the journal schema")]
    Migrate(#[source] sqlx::migrate::MigrateError),
    /// A read failed.
    #[error("journal query failed")]
    Query(#[source] sqlx::Error),
    /// The store is reachable but lacks migrations this build needs.
    #[error("journal schema is not migrated: {0}")]
    NotMigrated(String),
    /// A stored row cannot be decoded (invalid event id or document).
    #[error("stored event {event_id} is unreadable: {reason}")]
    Corrupt {
        /// The stored event id as found in the row.
        event_id: String,
        /// What could not be decoded.
        reason: String,
    },
    /// The journal is closed or closing for shutdown.
    #[error("journal is closed")]
    Closed,
}

/// One journaled event as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent {
    /// The gateway's id (UUIDv7), assigned when the event was first accepted.
    pub event_id: Uuid,
    /// Upstream CloudEvent `source` (deduplication key, with `id`).
    pub source: String,
    /// Upstream CloudEvent `id` (deduplication key, with `source`).
    pub id: String,
    /// Upstream CloudEvent `type`.
    pub event_type: String,
    /// Tenant the event is about.
    pub tenant: String,
    /// Canonical lifecycle action.
    pub action: String,
    /// Per-tenant sequence number: delivery order within the tenant.
    pub sequence: i64,
    /// Upstream `time` attribute as sent, if any.
    pub time: Option<String>,
    /// When the gateway accepted the event (RFC 3339, UTC, microseconds).
    pub received_at: String,
    /// Canonical structured-mode JSON of the upstream event.
    pub document: serde_json::Value,
    /// Hex SHA-256 of the document as it was appended.
    pub content_hash: String,
    /// Delivery state of the event's latest emission.
    pub status: EventStatus,
    /// What normalization found besides tenant and action, as stored at ingest.
    pub lifecycle: serde_json::Value,
}

/// An emission waiting for delivery, with what the dispatcher needs to build the canonical event.
#[derive(Debug, Clone, PartialEq)]
pub struct PendingEmission {
    /// Creation order of the emission; within a tenant, the delivery order.
    pub position: i64,
    /// The id of the CloudEvent this emission sends (the event id on first delivery).
    pub emission_id: Uuid,
    /// On a replay, the event id it replays.
    pub replay_of: Option<Uuid>,
    /// Attempts already made (before a restart, say): the backoff continues from there.
    pub attempts: u32,
    /// When the first attempt started, if any: the retry limit counts from there.
    pub first_attempt_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Its place in the tenant's delivery order: its position, or for the replay of a dead
    /// emission, the dead one's place.
    pub place: i64,
    /// The journaled event the emission sends.
    pub event: PendingEvent,
}

/// The event of a pending emission: what its canonical event is built from. The stored
/// documents stay text: the dispatcher reads from them only what it emits.
#[derive(Debug, Clone, PartialEq)]
pub struct PendingEvent {
    /// The gateway's id of the event.
    pub event_id: Uuid,
    /// Upstream CloudEvent `id` (logs, the delivery-order tests).
    pub id: String,
    /// Tenant the event is about.
    pub tenant: String,
    /// Canonical lifecycle action.
    pub action: String,
    /// Per-tenant sequence number: delivery order within the tenant.
    pub sequence: i64,
    /// When the gateway accepted the event (RFC 3339, UTC, microseconds).
    pub received_at: String,
    /// Canonical structured-mode JSON of the upstream event, as stored.
    pub document: String,
    /// The stored lifecycle details (JSON), as stored.
    pub lifecycle: String,
}

/// The answer to [`EventJournal::submit_attempts`]: resolves once the records are durable.
#[derive(Debug)]
pub struct RecordReceipt(tokio::sync::oneshot::Receiver<Result<(), AppendError>>);

impl RecordReceipt {
    /// Waits until the submitted records are committed (or the commit failed).
    pub async fn durable(self) -> Result<(), AppendError> {
        // A dropped reply means the writer task is gone: a closed journal to the caller.
        self.0.await.map_err(|_| AppendError::Closed)?
    }
}

/// A page of pending emissions as the store returned it, not decoded yet.
pub enum PendingPage {
    /// Rows of the SQLite read.
    Sqlite(Vec<sqlx::sqlite::SqliteRow>),
    /// Rows of the PostgreSQL read.
    Postgres(Vec<sqlx::postgres::PgRow>),
}

impl PendingPage {
    /// Rows in the page.
    pub fn len(&self) -> usize {
        match self {
            PendingPage::Sqlite(rows) => rows.len(),
            PendingPage::Postgres(rows) => rows.len(),
        }
    }

    /// Whether the page is empty (nothing pending after the cursor).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Position of the page's last emission: where the next read starts.
    pub fn last_position(&self) -> Option<i64> {
        match self {
            PendingPage::Sqlite(rows) => {
                use sqlx::Row;
                rows.last().and_then(|row| row.try_get(0).ok())
            }
            PendingPage::Postgres(rows) => {
                use sqlx::Row;
                rows.last().and_then(|row| row.try_get(0).ok())
            }
        }
    }

    /// Decodes every row (worth a blocking thread for a full page, with the encoding after it).
    pub fn decode(self) -> Result<Vec<PendingEmission>, JournalError> {
        match self {
            PendingPage::Sqlite(rows) => rows.iter().map(sqlite::pending_from_row).collect(),
            PendingPage::Postgres(rows) => rows.iter().map(postgres::pending_from_row).collect(),
        }
    }
}

/// One delivery attempt to record, with the emission's state after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptRecord {
    /// The emission attempted.
    pub position: i64,
    /// Its event, whose status follows the emission's.
    pub event_id: Uuid,
    /// 1 for the first attempt of the emission, then 2, 3, ...
    pub attempt: u32,
    /// When the attempt started (the first one also starts the retry-limit clock).
    pub started_at: chrono::DateTime<chrono::Utc>,
    /// When the sink answered or the attempt timed out.
    pub finished_at: chrono::DateTime<chrono::Utc>,
    /// The sink kind (`log`, `webhook`, `eventbus`).
    pub sink: &'static str,
    /// How the attempt ended.
    pub outcome: AttemptOutcome,
    /// The sink's HTTP status, when it answered over HTTP.
    pub status_code: Option<u16>,
    /// What went wrong, for failed attempts.
    pub error: Option<String>,
    /// The emission's state after this attempt.
    pub emission_status: EmissionStatus,
    /// `await-workflow` is on: a delivered emission's Workflow holds its tenant's next
    /// emission (recorded in `workflow_waits`).
    pub awaits_workflow: bool,
}

/// A recorded delivery attempt, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredAttempt {
    /// The emission attempted.
    pub emission_id: Uuid,
    /// 1, 2, 3, ... within the emission.
    pub attempt: u32,
    /// Start and end (RFC 3339, UTC, microseconds).
    pub started_at: String,
    /// See `started_at`.
    pub finished_at: String,
    /// The sink kind it went to.
    pub sink: String,
    /// How it ended.
    pub outcome: AttemptOutcome,
    /// The sink's HTTP status, when it answered over HTTP.
    pub status_code: Option<u16>,
    /// What went wrong, for failed attempts.
    pub error: Option<String>,
}

/// Counters of the group-commit writer since the journal was opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CommitStats {
    /// Transactions committed (each one fsync); `events / commits` is the mean group size.
    pub commits: u64,
    /// Events newly stored by those transactions (duplicates and conflicts not counted).
    pub events: u64,
}

/// The journal handle shared by the whole gateway; cloning it is cheap (an `Arc`).
#[derive(Debug, Clone)]
pub enum EventJournal {
    /// The embedded SQLite store (`sqlite://PATH`).
    Sqlite(SqliteJournal),
    /// A PostgreSQL database shared by every replica (`postgres://USER@HOST:PORT/DB`).
    Postgres(PostgresJournal),
}

// Every actix worker holds a clone: the handle must stay cheap to clone and shareable.
const _: () = {
    fn shareable<T: Clone + Send + Sync + 'static>() {}
    let _ = shareable::<EventJournal>;
};

/// Where a store URL points, once its scheme is understood.
enum StoreLocation {
    /// A SQLite database file.
    Sqlite(PathBuf),
    /// A PostgreSQL database; the URL is parsed by the backend.
    Postgres,
}

/// Splits a store URL into its backend and location without ever echoing the URL (a
/// `postgres://` URL may carry a password).
fn parse_store_url(url: &str) -> Result<StoreLocation, JournalError> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err(JournalError::InvalidUrl(
            "expected sqlite://PATH or postgres://...; the value has no `scheme://` prefix".into(),
        ));
    };
    match scheme.to_ascii_lowercase().as_str() {
        "sqlite" => sqlite::parse_path(rest).map(StoreLocation::Sqlite),
        "postgres" | "postgresql" => Ok(StoreLocation::Postgres),
        other => Err(JournalError::InvalidUrl(format!(
            "unsupported scheme `{other}`: expected sqlite://PATH or postgres://..."
        ))),
    }
}

impl EventJournal {
    /// Opens (creating if needed) and migrates the store named by `url`, and starts its writer.
    ///
    /// `sqlite://PATH` takes a relative or absolute file path (`sqlite://./data/gw.db`,
    /// `sqlite:///var/lib/gw/gw.db`); the parent directory and the file are created if missing.
    /// `postgres://USER[:PASSWORD]@HOST:PORT/DB` names an existing database (never created);
    /// an unreachable server is retried for [`JournalOptions::connect_wait`].
    pub async fn open(url: &str, options: JournalOptions) -> Result<Self, JournalError> {
        options.validate()?;
        match parse_store_url(url)? {
            StoreLocation::Sqlite(path) => {
                if options.password_file.is_some() {
                    return Err(JournalError::InvalidOptions(
                        "a store password file is only used by postgres:// stores".into(),
                    ));
                }
                SqliteJournal::open(path, options).await.map(Self::Sqlite)
            }
            StoreLocation::Postgres => PostgresJournal::open(url, options)
                .await
                .map(Self::Postgres),
        }
    }

    /// Stores `events` atomically, deduplicating each by (`source`, `id`), and returns one
    /// [`Appended`] per event in input order once the commit is durable.
    ///
    /// Either every event is accepted or a duplicate, or nothing is stored (`Conflict`,
    /// `Unavailable`, `Closed`). If the returned future is dropped after the request reached the
    /// writer, the events may still be stored: a retry then sees duplicates.
    pub async fn append(&self, events: Vec<NewEvent>) -> Result<Vec<Appended>, AppendError> {
        match self {
            Self::Sqlite(journal) => journal.append(events).await,
            Self::Postgres(journal) => journal.append(events).await,
        }
    }

    /// The stored event with upstream identity (`source`, `id`), if any.
    pub async fn find_by_origin(
        &self,
        source: &str,
        id: &str,
    ) -> Result<Option<StoredEvent>, JournalError> {
        match self {
            Self::Sqlite(journal) => journal.find_by_origin(source, id).await,
            Self::Postgres(journal) => journal.find_by_origin(source, id).await,
        }
    }

    /// Every stored event of `tenant`, ordered by sequence (empty for an unknown tenant).
    pub async fn tenant_timeline(&self, tenant: &str) -> Result<Vec<StoredEvent>, JournalError> {
        match self {
            Self::Sqlite(journal) => journal.tenant_timeline(tenant).await,
            Self::Postgres(journal) => journal.tenant_timeline(tenant).await,
        }
    }

    /// Ok when the store answers a cheap query and carries every migration of this build;
    /// `Closed` once [`close`](Self::close) has started (readiness goes down while draining).
    pub async fn check_ready(&self) -> Result<(), JournalError> {
        match self {
            Self::Sqlite(journal) => journal.check_ready().await,
            Self::Postgres(journal) => journal.check_ready().await,
        }
    }

    /// Records delivery attempts and the emission states they lead to; returns once durable.
    /// Shares the writer (and its transactions) with appends.
    pub async fn record_attempts(&self, attempts: Vec<AttemptRecord>) -> Result<(), AppendError> {
        self.submit_attempts(attempts).await?.durable().await
    }

    /// Queues delivery attempts for the writer and returns without waiting for the commit.
    /// Submissions become durable in the order they were made, so a caller that submits one
    /// record after the other never sees a later one survive a crash without the earlier ones.
    pub async fn submit_attempts(
        &self,
        attempts: Vec<AttemptRecord>,
    ) -> Result<RecordReceipt, AppendError> {
        let receipt = match self {
            Self::Sqlite(journal) => journal.submit_attempts(attempts).await?,
            Self::Postgres(journal) => journal.submit_attempts(attempts).await?,
        };
        Ok(RecordReceipt(receipt))
    }

    /// Pending emissions after `position` in position order (of one tenant, if given), at most
    /// `limit`, each with its event.
    pub async fn pending_emissions(
        &self,
        after: i64,
        tenant: Option<&str>,
        limit: usize,
    ) -> Result<Vec<PendingEmission>, JournalError> {
        let page = self.pending_page(after, tenant, limit).await?;
        if page.len() <= 8 {
            return page.decode();
        }
        // Decoding many documents is real CPU work: off the async thread.
        tokio::task::spawn_blocking(move || page.decode())
            .await
            .map_err(|error| JournalError::Query(sqlx::Error::Protocol(error.to_string())))?
    }

    /// Like [`pending_emissions`](Self::pending_emissions), but returns the rows undecoded, so
    /// the caller can decode them on a thread of its choice while it reads the next page.
    pub async fn pending_page(
        &self,
        after: i64,
        tenant: Option<&str>,
        limit: usize,
    ) -> Result<PendingPage, JournalError> {
        match self {
            Self::Sqlite(journal) => journal
                .pending_page(after, tenant, limit)
                .await
                .map(PendingPage::Sqlite),
            Self::Postgres(journal) => journal
                .pending_page(after, tenant, limit)
                .await
                .map(PendingPage::Postgres),
        }
    }

    /// Like [`pending_page`](Self::pending_page) for one tenant, in its delivery order (by
    /// place: an in-place replay comes before the emissions that waited behind its dead one),
    /// after `after_place`.
    pub async fn tenant_pending_page(
        &self,
        tenant: &str,
        after_place: i64,
        limit: usize,
    ) -> Result<PendingPage, JournalError> {
        match self {
            Self::Sqlite(journal) => journal
                .tenant_pending_page(tenant, after_place, limit)
                .await
                .map(PendingPage::Sqlite),
            Self::Postgres(journal) => journal
                .tenant_pending_page(tenant, after_place, limit)
                .await
                .map(PendingPage::Postgres),
        }
    }

    /// Tenants with a pending in-place replay: at start, the dispatcher reads them in their
    /// delivery order rather than in position order.
    pub async fn tenants_with_in_place_replays(&self) -> Result<Vec<String>, JournalError> {
        match self {
            Self::Sqlite(journal) => journal.tenants_with_in_place_replays().await,
            Self::Postgres(journal) => journal.tenants_with_in_place_replays().await,
        }
    }

    /// Events the query selects after journal position `after`, in journal order, at most
    /// `limit`. New events only ever come after the last position, so paging by position
    /// never skips or repeats an event.
    pub async fn list_events(
        &self,
        query: &EventQuery,
        after: i64,
        limit: usize,
    ) -> Result<Vec<EventHeader>, JournalError> {
        match self {
            Self::Sqlite(journal) => journal.list_events(query, after, limit).await,
            Self::Postgres(journal) => journal.list_events(query, after, limit).await,
        }
    }

    /// How many events the query selects.
    pub async fn count_events(&self, query: &EventQuery) -> Result<u64, JournalError> {
        match self {
            Self::Sqlite(journal) => journal.count_events(query).await,
            Self::Postgres(journal) => journal.count_events(query).await,
        }
    }

    /// The event with this id, if any.
    pub async fn find_event(&self, event_id: Uuid) -> Result<Option<StoredEvent>, JournalError> {
        match self {
            Self::Sqlite(journal) => journal.find_event(event_id).await,
            Self::Postgres(journal) => journal.find_event(event_id).await,
        }
    }

    /// The event an emission emits (an emission id is what a Workflow's `event-id` shows).
    pub async fn event_of_emission(&self, emission_id: Uuid) -> Result<Option<Uuid>, JournalError> {
        match self {
            Self::Sqlite(journal) => journal.event_of_emission(emission_id).await,
            Self::Postgres(journal) => journal.event_of_emission(emission_id).await,
        }
    }

    /// Every emission of the event, oldest first.
    pub async fn event_emissions(
        &self,
        event_id: Uuid,
    ) -> Result<Vec<StoredEmission>, JournalError> {
        match self {
            Self::Sqlite(journal) => journal.event_emissions(event_id).await,
            Self::Postgres(journal) => journal.event_emissions(event_id).await,
        }
    }

    /// The tenant's latest `limit` events in sequence order, and every emission of theirs.
    pub async fn tenant_events(
        &self,
        tenant: &str,
        limit: usize,
    ) -> Result<(Vec<EventHeader>, Vec<StoredEmission>), JournalError> {
        match self {
            Self::Sqlite(journal) => journal.tenant_events(tenant, limit).await,
            Self::Postgres(journal) => journal.tenant_events(tenant, limit).await,
        }
    }

    /// The tenant's counts, last sequence and parking event; `None` for an unknown tenant.
    pub async fn tenant_state(&self, tenant: &str) -> Result<Option<TenantState>, JournalError> {
        match self {
            Self::Sqlite(journal) => journal.tenant_state(tenant).await,
            Self::Postgres(journal) => journal.tenant_state(tenant).await,
        }
    }

    /// The latest `limit` operator actions on an event or a tenant, oldest first.
    pub async fn operator_actions(
        &self,
        event_id: Option<Uuid>,
        tenant: Option<&str>,
        limit: usize,
    ) -> Result<Vec<OperatorAction>, JournalError> {
        match self {
            Self::Sqlite(journal) => journal.operator_actions(event_id, tenant, limit).await,
            Self::Postgres(journal) => journal.operator_actions(event_id, tenant, limit).await,
        }
    }

    /// The replay job with this id, if any.
    pub async fn replay_job(&self, job_id: Uuid) -> Result<Option<ReplayJob>, JournalError> {
        match self {
            Self::Sqlite(journal) => journal.replay_job(job_id).await,
            Self::Postgres(journal) => journal.replay_job(job_id).await,
        }
    }

    /// The latest `limit` replay jobs (only the running ones, if asked), newest first.
    pub async fn replay_jobs(
        &self,
        running_only: bool,
        limit: usize,
    ) -> Result<Vec<ReplayJob>, JournalError> {
        match self {
            Self::Sqlite(journal) => journal.replay_jobs(running_only, limit).await,
            Self::Postgres(journal) => journal.replay_jobs(running_only, limit).await,
        }
    }

    /// Applies an operator write (replay, skip, replay job) atomically through the writer and
    /// returns once it is durable; a refusal writes nothing.
    pub async fn operate(&self, write: OperatorWrite) -> Result<OperatorOutcome, OperatorError> {
        match self {
            Self::Sqlite(journal) => journal.operate(write).await,
            Self::Postgres(journal) => journal.operate(write).await,
        }
    }

    /// Records what the Workflow watcher saw of an emission's Workflow, through the writer;
    /// with `notify`, a terminal phase also queues its completion notification in the same
    /// transaction. Idempotent: the same observation again writes nothing.
    pub async fn record_workflow(
        &self,
        observation: WorkflowObservation,
        notify: bool,
    ) -> Result<WorkflowRecorded, AppendError> {
        match self
            .outcome_write(OperatorWrite::RecordWorkflow {
                observation,
                notify,
            })
            .await?
        {
            OperatorOutcome::WorkflowRecorded(recorded) => Ok(recorded),
            other => Err(unexpected_outcome(&other)),
        }
    }

    /// Parks the tenant of the delivered emission at `position` (its Workflow failed, or was not
    /// seen in time): the emission becomes dead with `reason`, like a dead delivery. False if it
    /// was no longer delivered.
    pub async fn park_for_workflow(
        &self,
        position: i64,
        reason: String,
    ) -> Result<bool, AppendError> {
        match self
            .outcome_write(OperatorWrite::ParkForWorkflow { position, reason })
            .await?
        {
            OperatorOutcome::ParkedForWorkflow(parked) => Ok(parked),
            other => Err(unexpected_outcome(&other)),
        }
    }

    /// Records how a completion notification's delivery ended; returns once durable.
    pub async fn finish_notification(
        &self,
        finished: NotificationFinished,
    ) -> Result<(), AppendError> {
        self.outcome_write(OperatorWrite::FinishNotification(finished))
            .await
            .map(drop)
    }

    /// An outcome write through the writer; these writes refuse nothing, so only a store
    /// failure remains.
    async fn outcome_write(&self, write: OperatorWrite) -> Result<OperatorOutcome, AppendError> {
        self.operate(write).await.map_err(|error| match error {
            OperatorError::Store(error) => error,
            other => AppendError::Unavailable(Arc::new(sqlx::Error::Protocol(other.to_string()))),
        })
    }

    /// The latest Workflow record of each of these emissions that has one.
    pub async fn workflow_records(
        &self,
        emission_ids: &[Uuid],
    ) -> Result<std::collections::HashMap<Uuid, WorkflowRecord>, JournalError> {
        match self {
            Self::Sqlite(j) => outcomes::sqlite::workflow_records(j.readers(), emission_ids).await,
            Self::Postgres(j) => outcomes::postgres::workflow_records(j.pool(), emission_ids).await,
        }
    }

    /// The tenant's derived state; `None` for a tenant without events.
    pub async fn tenant_summary(
        &self,
        tenant: &str,
    ) -> Result<Option<TenantSummary>, JournalError> {
        let query = TenantQuery::default();
        let mut found = match self {
            Self::Sqlite(j) => {
                outcomes::sqlite::tenant_summaries(j.readers(), Some(tenant), &query, 1).await?
            }
            Self::Postgres(j) => {
                outcomes::postgres::tenant_summaries(j.pool(), Some(tenant), &query, 1).await?
            }
        };
        Ok(found.pop())
    }

    /// Tenants the query selects, in name order after its cursor, at most `limit`.
    pub async fn list_tenants(
        &self,
        query: &TenantQuery,
        limit: usize,
    ) -> Result<Vec<TenantSummary>, JournalError> {
        match self {
            Self::Sqlite(j) => {
                outcomes::sqlite::tenant_summaries(j.readers(), None, query, limit).await
            }
            Self::Postgres(j) => {
                outcomes::postgres::tenant_summaries(j.pool(), None, query, limit).await
            }
        }
    }

    /// Why the tenant is parked (its dead emission's last error); `None` if it is not.
    pub async fn parked_reason(&self, tenant: &str) -> Result<Option<String>, JournalError> {
        match self {
            Self::Sqlite(j) => outcomes::sqlite::parked_reason(j.readers(), tenant).await,
            Self::Postgres(j) => outcomes::postgres::parked_reason(j.pool(), tenant).await,
        }
    }

    /// The tenant's newest emission delivered under await-workflow, with its Workflow.
    pub async fn workflow_wait(&self, tenant: &str) -> Result<Option<WorkflowWait>, JournalError> {
        match self {
            Self::Sqlite(j) => outcomes::sqlite::workflow_wait(j.readers(), tenant).await,
            Self::Postgres(j) => outcomes::postgres::workflow_wait(j.pool(), tenant).await,
        }
    }

    /// Completion notifications waiting for delivery, after `after`, at most `limit`.
    pub async fn pending_notifications(
        &self,
        after: Option<Uuid>,
        limit: usize,
    ) -> Result<Vec<PendingNotification>, JournalError> {
        match self {
            Self::Sqlite(j) => {
                outcomes::sqlite::pending_notifications(j.readers(), after, limit).await
            }
            Self::Postgres(j) => {
                outcomes::postgres::pending_notifications(j.pool(), after, limit).await
            }
        }
    }

    /// Tenants per lifecycle.
    pub async fn count_lifecycles(
        &self,
    ) -> Result<std::collections::HashMap<Lifecycle, u64>, JournalError> {
        match self {
            Self::Sqlite(j) => outcomes::sqlite::count_lifecycles(j.readers()).await,
            Self::Postgres(j) => outcomes::postgres::count_lifecycles(j.pool()).await,
        }
    }

    /// Tenants with a dead emission: parked until an operator replays or skips it.
    pub async fn parked_tenants(&self) -> Result<Vec<String>, JournalError> {
        match self {
            Self::Sqlite(journal) => journal.parked_tenants().await,
            Self::Postgres(journal) => journal.parked_tenants().await,
        }
    }

    /// Emissions not delivered yet (the backlog).
    pub async fn count_pending(&self) -> Result<u64, JournalError> {
        match self {
            Self::Sqlite(journal) => journal.count_pending().await,
            Self::Postgres(journal) => journal.count_pending().await,
        }
    }

    /// Every recorded delivery attempt of the event's emissions, oldest first.
    pub async fn delivery_attempts(
        &self,
        event_id: Uuid,
    ) -> Result<Vec<StoredAttempt>, JournalError> {
        match self {
            Self::Sqlite(journal) => journal.delivery_attempts(event_id).await,
            Self::Postgres(journal) => journal.delivery_attempts(event_id).await,
        }
    }

    /// A receiver that changes after every commit that stored new events: the dispatcher's
    /// wake-up, so new work starts without a polling delay.
    pub fn subscribe_commits(&self) -> tokio::sync::watch::Receiver<u64> {
        match self {
            Self::Sqlite(journal) => journal.subscribe_commits(),
            Self::Postgres(journal) => journal.subscribe_commits(),
        }
    }

    /// Rows written per committed group, as a Prometheus histogram to register.
    pub fn group_sizes(&self) -> prometheus_client::metrics::histogram::Histogram {
        match self {
            Self::Sqlite(journal) => journal.group_sizes(),
            Self::Postgres(journal) => journal.group_sizes(),
        }
    }

    /// Commits and accepted events so far (tests, and the group-size metric).
    pub fn commit_stats(&self) -> CommitStats {
        match self {
            Self::Sqlite(journal) => journal.commit_stats(),
            Self::Postgres(journal) => journal.commit_stats(),
        }
    }

    /// Write requests (appends and the gateway's own) waiting for the writer right now: a gauge.
    pub fn queued_requests(&self) -> usize {
        match self {
            Self::Sqlite(journal) => journal.queued_requests(),
            Self::Postgres(journal) => journal.queued_requests(),
        }
    }

    /// Bytes held by appends waiting for the writer or being written: a gauge, bounded by
    /// [`JournalOptions::queue_bytes`].
    pub fn queued_append_bytes(&self) -> usize {
        match self {
            Self::Sqlite(journal) => journal.queued_append_bytes(),
            Self::Postgres(journal) => journal.queued_append_bytes(),
        }
    }

    /// Shuts down: later appends get [`AppendError::Closed`], every request already queued is
    /// still written and answered, then the connections are closed. Idempotent; concurrent
    /// callers all return once the shutdown is complete.
    pub async fn close(&self) {
        match self {
            Self::Sqlite(journal) => journal.close().await,
            Self::Postgres(journal) => journal.close().await,
        }
    }
}

/// An outcome write answered with another write's outcome: a bug, reported as a store failure.
fn unexpected_outcome(outcome: &OperatorOutcome) -> AppendError {
    AppendError::Unavailable(Arc::new(sqlx::Error::Protocol(format!(
        "the writer answered an outcome write with {outcome:?}"
    ))))
}
