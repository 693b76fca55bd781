//! The WAL checkpointer: copies committed WAL pages into the database file off the commit path.

use std::sync::Arc;
use std::time::Duration;

use sqlx::sqlite::SqliteConnection;
use sqlx::Connection;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

/// How often the checkpointer copies committed WAL pages into the database file.
const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(1);

/// Runs `PRAGMA wal_checkpoint(PASSIVE)` from its own connection every
/// [`CHECKPOINT_INTERVAL`]. A passive checkpoint never blocks the writer or the readers; the
/// writer restarts the WAL from its beginning once a checkpoint has caught up, so the WAL stays
/// about one interval of commits long. SQLite's default, a checkpoint inside the commit that
/// crosses 1000 WAL pages, stalled every request of that group.
pub(super) struct WalCheckpointer {
    /// Wakes the task to do a last, truncating checkpoint and stop.
    shutdown: Arc<Notify>,
    /// The task, until `close` has waited for it.
    task: tokio::sync::Mutex<Option<JoinHandle<()>>>,
}

impl WalCheckpointer {
    pub(super) fn start(mut connection: SqliteConnection) -> Self {
        let shutdown = Arc::new(Notify::new());
        let stop = Arc::clone(&shutdown);
        let task = tokio::spawn(async move {
            loop {
                let stopping = tokio::select! {
                    () = stop.notified() => true,
                    () = tokio::time::sleep(CHECKPOINT_INTERVAL) => false,
                };
                // TRUNCATE at the end leaves no WAL behind a stopped journal.
                let sql = if stopping {
                    "PRAGMA wal_checkpoint(TRUNCATE)"
                } else {
                    "PRAGMA wal_checkpoint(PASSIVE)"
                };
                if let Err(error) = sqlx::query(sql).execute(&mut connection).await {
                    tracing::warn!(%error, "journal WAL checkpoint failed; retrying later");
                }
                if stopping {
                    break;
                }
            }
            if let Err(error) = connection.close().await {
                tracing::warn!(%error, "closing the journal checkpoint connection failed");
            }
        });
        WalCheckpointer {
            shutdown,
            task: tokio::sync::Mutex::new(Some(task)),
        }
    }

    pub(super) async fn close(&self) {
        self.shutdown.notify_one();
        if let Some(task) = self.task.lock().await.take() {
            if let Err(error) = task.await {
                tracing::error!(%error, "journal checkpoint task ended abnormally");
            }
        }
    }
}

impl Drop for WalCheckpointer {
    /// A journal dropped without `close` still stops its checkpointer.
    fn drop(&mut self) {
        self.shutdown.notify_one();
    }
}
