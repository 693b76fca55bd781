//! The SQLite journal backend: one database file in WAL mode, one dedicated write connection
//! owned by the group-commit writer, and a small pool of read connections.
//!
//! Durability: `synchronous=FULL` makes every commit fsync the WAL, so an event reported as
//! stored survives `kill -9` and power loss. WAL lets reads run while the writer commits.
//!
//! A group is written with a handful of statements whatever its size: one read of which of its
//! (source, id) origins are already stored (usually none), one read of the last sequence of
//! tenants the writer has not seen since it started, then the plan is made in Rust (duplicate,
//! conflict, or new with the tenant's next sequence; a request with a conflict contributes
//! nothing) and the new rows go in with multi-row INSERTs (one per 256 events). sqlx hands every
//! statement to the connection's worker thread and back, two thread wake-ups that cost more
//! than a row, so the number of statements per group is what is kept small. WAL checkpoints run
//! on their own connection ([`WalCheckpointer`]), never inside a commit.
//!
//! This module opens the journal and holds what the others share; [`reads`] are the
//! dispatcher's and the admin API's reads on the pool, [`writer`] the group-commit store on the
//! write connection, [`checkpointer`] the WAL checkpoints, [`rows`] the decoding of stored rows,
//! and [`operator`] the statements of the operator actions.

mod checkpointer;
mod operator;
mod reads;
mod rows;
mod writer;

use checkpointer::WalCheckpointer;
pub(super) use rows::pending_from_row;
use writer::SqliteWriter;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sqlx::migrate::Migrator;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::ConnectOptions;
use uuid::Uuid;

use super::group_commit::{GroupCommitter, QueueBounds};
use super::operator::{OperatorError, OperatorOutcome, OperatorWrite};
use super::{
    AppendError, Appended, AttemptRecord, CommitStats, JournalError, JournalOptions, NewEvent,
};

/// The schema, embedded in the binary and applied at open.
static MIGRATOR: Migrator = sqlx::migrate!("./migrations/sqlite");

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
    /// Copies committed WAL pages back into the database file off the commit path.
    checkpointer: WalCheckpointer,
    /// The checkpointer's request that the writer restart the WAL before its next group
    /// (shared by the two; kept here so tests can make the request).
    #[cfg(test)]
    wal_restart: Arc<std::sync::atomic::AtomicBool>,
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
    /// The read pool (the shared reads of `journal::outcomes` run on it).
    pub(in crate::journal) fn readers(&self) -> &SqlitePool {
        &self.inner.readers
    }

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
        let write_options = connect_options.clone();
        let mut write_connection = write_options.connect().await.map_err(JournalError::Open)?;
        MIGRATOR
            .run(&mut write_connection)
            .await
            .map_err(JournalError::Migrate)?;
        let read_options = connect_options
            .create_if_missing(false)
            .pragma("cache_size", READ_CACHE_SIZE);
        let readers = SqlitePoolOptions::new()
            .max_connections(options.read_connections)
            .connect_with(read_options.clone())
            .await
            .map_err(JournalError::Open)?;
        let wal_restart = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let checkpointer = WalCheckpointer::start(
            read_options.connect().await.map_err(JournalError::Open)?,
            options.wal_limit,
            Arc::clone(&wal_restart),
        );
        let writer = SqliteWriter::new(write_connection, write_options, Arc::clone(&wal_restart));
        let committer = GroupCommitter::start(
            writer,
            QueueBounds {
                append_bytes: options.queue_bytes,
                internal_requests: options.internal_queue,
                max_group_events: options.max_group_events,
            },
        );
        Ok(SqliteJournal {
            inner: Arc::new(SqliteJournalInner {
                path,
                committer,
                readers,
                checkpointer,
                #[cfg(test)]
                wal_restart,
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

    pub(super) fn queued_append_bytes(&self) -> usize {
        self.inner.committer.queued_append_bytes()
    }

    pub(super) async fn close(&self) {
        self.inner.committer.close().await;
        self.inner.checkpointer.close().await;
        self.inner.readers.close().await;
    }
}

/// The writer's page cache, 16 MiB (SQLite's default is 2 MiB): the dedup and sequence indexes
/// take random inserts, and a miss there is a read inside the write transaction. 32 MiB was no
/// faster in one run of bench/ingest.sh and held 13 MiB more RSS (docs/benchmarks.md).
const WRITE_CACHE_SIZE: &str = "-16384";

/// Each reader's (and the checkpointer's) page cache, 4 MiB. Readers mostly walk recent rows
/// that the OS page cache holds anyway; with the writer's size (then 32 MiB) each, the four
/// readers' caches filled during a backlog and kept the process near 150 MB RSS for good.
const READ_CACHE_SIZE: &str = "-4096";

/// Connection settings shared by the writer and the readers (which take [`READ_CACHE_SIZE`]).
fn connect_options(path: &Path, options: &JournalOptions) -> SqliteConnectOptions {
    SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .foreign_keys(true)
        .busy_timeout(options.busy_timeout)
        .pragma("cache_size", WRITE_CACHE_SIZE)
        // Statement journals in memory. A multi-row INSERT or UPDATE that may stop on a
        // constraint keeps a statement journal (a copy of every page it changes) so it can be
        // undone alone; past 64 KiB SQLite spills it to a temporary file, unless temporary
        // storage is in memory (`src/pager.c` `openSubJournal`, `subjInMemory`). Those writes
        // were a fifth of the writer thread's time in a batch profile (docs/benchmarks.md).
        .pragma("temp_store", "memory")
        // No checkpoint inside a commit: the WalCheckpointer does it from its own connection,
        // so a commit (and the requests waiting on it) never pays for copying the WAL back.
        .pragma("wal_autocheckpoint", "0")
        // Whenever the WAL restarts, SQLite cuts the file back to this (WalCheckpointer).
        .pragma("journal_size_limit", options.wal_limit.to_string())
        .thread_name(|id| format!("journal-db-{id}"))
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The size of the `-wal` file beside the database at `path` (0 when there is none).
    pub(super) fn wal_size(path: &Path) -> u64 {
        let mut wal = path.as_os_str().to_owned();
        wal.push("-wal");
        std::fs::metadata(wal).map_or(0, |m| m.len())
    }

    /// Event `n` of a test, with `data` in its document.
    pub(super) fn event(n: usize, data: &str) -> NewEvent {
        NewEvent {
            source: "urn:test".into(),
            id: format!("e-{n}"),
            event_type: "com.acme.tenant.lifecycle.upsert".into(),
            tenant: format!("t-{}", n % 16),
            action: "upsert".into(),
            time: None,
            content_hash: format!("{n:064}"),
            document: format!(r#"{{"id":"e-{n}","data":"{data}"}}"#),
            lifecycle: r#"{"parameters":{},"objectStorage":null}"#.into(),
        }
    }

    /// A journal written before `tenant_sequences` and `tenant_deliveries` existed (migrations
    /// 1 to 4) gets both filled when it is opened: its tenants are listed with their last
    /// sequences and their newest deliveries, and their numbering goes on from there (from 0 it
    /// would collide with the stored events).
    #[tokio::test]
    async fn opening_an_older_journal_fills_the_tenant_tables() {
        use crate::journal::{EventJournal, TenantQuery};
        use sqlx::{ConnectOptions, Connection};
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("older.db");
        let mut connection = connect_options(&path, &JournalOptions::default())
            .connect()
            .await
            .expect("connect");
        let older = Migrator {
            migrations: std::borrow::Cow::Owned(MIGRATOR.migrations[..4].to_vec()),
            ..Migrator::DEFAULT
        };
        older.run(&mut connection).await.expect("migrations 1 to 4");
        for (n, (tenant, sequence)) in [("acme", 1), ("acme", 2), ("beta", 1), ("acme", 3)]
            .into_iter()
            .enumerate()
        {
            sqlx::query(
                "INSERT INTO events (event_id, source, id, event_type, tenant, action, sequence, \
                 received_at, document, content_hash) VALUES (?1, 'urn:older', ?2, 'upsert', \
                 ?3, 'upsert', ?4, '2026-01-01T00:00:00.000000Z', '{}', ?5)",
            )
            .bind(Uuid::now_v7().to_string())
            .bind(format!("older-{n}"))
            .bind(tenant)
            .bind(sequence)
            .bind(format!("{n:064}"))
            .execute(&mut connection)
            .await
            .expect("an event of the older journal");
        }
        // acme's third event delivered twice (a replay), beta's once; the later one counts.
        let acme_third: String = sqlx::query_scalar("SELECT event_id FROM events WHERE id = ?1")
            .bind("older-3")
            .fetch_one(&mut connection)
            .await
            .expect("event id");
        let beta_first: String = sqlx::query_scalar("SELECT event_id FROM events WHERE id = ?1")
            .bind("older-2")
            .fetch_one(&mut connection)
            .await
            .expect("event id");
        for (position, event_id, tenant, finished_at) in [
            (1, &acme_third, "acme", "2026-01-01T00:00:03.000000Z"),
            (2, &beta_first, "beta", "2026-01-01T00:00:02.000000Z"),
            (3, &acme_third, "acme", "2026-01-01T00:00:09.000000Z"),
        ] {
            sqlx::query(
                "INSERT INTO emissions (position, emission_id, event_id, tenant, status, \
                 created_at) VALUES (?1, ?2, ?3, ?4, 'delivered', ?5)",
            )
            .bind(position)
            .bind(Uuid::now_v7().to_string())
            .bind(event_id)
            .bind(tenant)
            .bind(finished_at)
            .execute(&mut connection)
            .await
            .expect("an emission");
            sqlx::query(
                "INSERT INTO delivery_attempts (position, attempt, started_at, finished_at, \
                 sink, outcome) VALUES (?1, 1, ?2, ?2, 'log', 'delivered')",
            )
            .bind(position)
            .bind(finished_at)
            .execute(&mut connection)
            .await
            .expect("an attempt");
        }
        connection.close().await.expect("close");

        let url = format!("sqlite://{}", path.display());
        let journal = EventJournal::open(&url, JournalOptions::default())
            .await
            .expect("open migrates");
        let tenants: Vec<(String, i64, Option<String>)> = journal
            .list_tenants(&TenantQuery::default(), 10)
            .await
            .expect("tenants")
            .into_iter()
            .map(|t| (t.tenant, t.last_sequence, t.state.updated_at))
            .collect();
        let newest = |at: &str| Some(format!("2026-01-01T00:00:0{at}.000000Z"));
        assert_eq!(
            tenants,
            [
                ("acme".to_owned(), 3, newest("9")),
                ("beta".to_owned(), 1, newest("2"))
            ]
        );
        let next = NewEvent {
            tenant: "acme".into(),
            ..event(100, "next")
        };
        let appended = journal.append(vec![next]).await.expect("append");
        assert_eq!(appended[0].sequence, 4);
        journal.close().await;
    }

    /// The checkpointer's restart request is carried out by the writer before its next group:
    /// right after a burst (the checkpointer empties an idle WAL only after two quiet ticks),
    /// one more append finds the WAL started over and its file cut to the limit. Without the
    /// writer's restart the file stays as long as the burst made it.
    #[tokio::test]
    async fn the_writer_restarts_the_wal_when_asked() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("restart.db");
        let limit = 256 << 10;
        let options = JournalOptions {
            wal_limit: limit,
            ..Default::default()
        };
        let journal = SqliteJournal::open(path.clone(), options)
            .await
            .expect("open");
        let blob = "x".repeat(2000);
        for batch in 0..200 {
            let events = (0..10).map(|i| event(batch * 10 + i, &blob)).collect();
            journal.append(events).await.expect("append");
        }
        let after_burst = wal_size(&path);
        assert!(
            after_burst > 4 * limit,
            "the burst outgrew the limit: {after_burst}"
        );
        journal
            .inner
            .wal_restart
            .store(true, std::sync::atomic::Ordering::Release);
        journal
            .append(vec![event(10_000, &blob)])
            .await
            .expect("append");
        let after_restart = wal_size(&path);
        assert!(
            after_restart <= limit,
            "WAL {after_burst} bytes after the burst, {after_restart} after the restart"
        );
        journal.close().await;
    }

    /// The writer's statement journals stay in memory (`temp_store = MEMORY`, which reads back
    /// as 2), not in a temporary file written beside every large group.
    #[tokio::test]
    async fn statement_journals_are_kept_in_memory() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut connection =
            connect_options(&dir.path().join("temp.db"), &JournalOptions::default())
                .connect()
                .await
                .expect("connect");
        let temp_store: i64 = sqlx::query_scalar("PRAGMA temp_store")
            .fetch_one(&mut connection)
            .await
            .expect("temp_store");
        assert_eq!(temp_store, 2, "2 is MEMORY");
    }

    /// Every read connection (the dispatcher's pages, the admin API's searches) and the
    /// checkpointer keep a 4 MiB page cache, not the writer's: with the writer's (then 32 MiB) the
    /// readers' caches filled during a backlog and held the process near 150 MB RSS.
    #[tokio::test]
    async fn readers_keep_a_small_page_cache() {
        let dir = tempfile::tempdir().expect("tempdir");
        let options = JournalOptions::default();
        let connections = options.read_connections;
        let journal = SqliteJournal::open(dir.path().join("cache.db"), options)
            .await
            .expect("open");
        // Hold every reader at once, so each one of the pool's connections is asked.
        let mut held = Vec::new();
        for _ in 0..connections {
            let mut connection = journal.readers().acquire().await.expect("reader");
            let kib: i64 = sqlx::query_scalar("PRAGMA cache_size")
                .fetch_one(&mut *connection)
                .await
                .expect("cache_size");
            assert_eq!(kib, -4096, "a negative cache_size is KiB");
            held.push(connection);
        }
        drop(held);
        journal.close().await;
    }
}
