//! The WAL checkpointer: copies committed WAL pages into the database file off the commit path.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sqlx::sqlite::SqliteConnection;
use sqlx::Connection;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

/// How often the checkpointer copies committed WAL pages into the database file.
const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(1);

/// How long a restarting or truncating checkpoint waits for readers and the writer before it
/// gives up until the next tick: those modes hold new writers back while they wait, so the wait
/// stays short (a passive checkpoint never waits).
pub(super) const BLOCKING_CHECKPOINT_WAIT: Duration = Duration::from_millis(200);

/// Runs `PRAGMA wal_checkpoint(PASSIVE)` from its own connection every
/// [`CHECKPOINT_INTERVAL`]. A passive checkpoint never blocks the writer or the readers; the
/// writer restarts the WAL from its beginning once a checkpoint has caught up, so the WAL stays
/// about one interval of commits long. SQLite's default, a checkpoint inside the commit that
/// crosses 1000 WAL pages, stalled every request of that group.
///
/// Under a sustained write load a passive checkpoint never catches up, so the WAL would only
/// grow (2.28 GB beside a 0.95 GB database was measured filling 1 million events). Two bounds:
/// when the WAL holds more than `wal_limit` bytes the checkpointer asks the writer for a
/// `RESTART` checkpoint before its next group (`SqliteWriter::restart_wal`: only the writer
/// gets the write lock while it writes; after it the writer starts the WAL from its
/// beginning), and once the writer is idle (everything checkpointed, nothing new) the
/// checkpointer runs a `TRUNCATE` one, which empties the file. `journal_size_limit` (set on every connection) makes SQLite cut the file
/// back to `wal_limit` whenever the WAL restarts.
pub(super) struct WalCheckpointer {
    /// Wakes the task to do a last, truncating checkpoint and stop.
    shutdown: Arc<Notify>,
    /// The task, until `close` has waited for it.
    task: tokio::sync::Mutex<Option<JoinHandle<()>>>,
}

/// What `PRAGMA wal_checkpoint` answers: whether it could not finish, the WAL's frames, and
/// how many of them are in the database file now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct CheckpointResult {
    busy: bool,
    log_frames: i64,
    checkpointed_frames: i64,
}

async fn checkpoint(
    connection: &mut SqliteConnection,
    mode: &str,
) -> Result<CheckpointResult, sqlx::Error> {
    let (busy, log_frames, checkpointed_frames): (i64, i64, i64) =
        sqlx::query_as(&format!("PRAGMA wal_checkpoint({mode})"))
            .fetch_one(connection)
            .await?;
    Ok(CheckpointResult {
        busy: busy != 0,
        log_frames,
        checkpointed_frames,
    })
}

/// The checkpoint a tick runs after its passive one, if any.
fn next_mode(
    passive: CheckpointResult,
    previous_log_frames: i64,
    frame_limit: i64,
) -> Option<&'static str> {
    if passive.log_frames > 0
        && passive.log_frames == passive.checkpointed_frames
        && passive.log_frames == previous_log_frames
    {
        // Idle: everything is in the database and nothing was written since the last tick.
        // Checked first: a RESTART checkpoint leaves the WAL's header as it is (SQLite
        // `src/wal.c` `walCheckpoint`: only TRUNCATE calls `walRestartHdr`); the next write
        // transaction starts the log over (`walRestartLog`, where `journal_size_limit` cuts the
        // file). An idle writer writes nothing, so restarting each tick kept a burst's 148 MB
        // of WAL beside an idle journal.
        Some("TRUNCATE")
    } else if passive.log_frames > frame_limit {
        Some("RESTART")
    } else {
        None
    }
}

impl WalCheckpointer {
    /// Starts checkpointing over `connection`, keeping the WAL near `wal_limit` bytes.
    /// `wal_restart` is the writer's (see `SqliteWriter::restart_wal`): set when the WAL needs
    /// a restart, which only the writer can do while it writes.
    pub(super) fn start(
        mut connection: SqliteConnection,
        wal_limit: u64,
        wal_restart: Arc<AtomicBool>,
    ) -> Self {
        let shutdown = Arc::new(Notify::new());
        let stop = Arc::clone(&shutdown);
        let task = tokio::spawn(async move {
            let page_size: i64 = sqlx::query_scalar("PRAGMA page_size")
                .fetch_one(&mut connection)
                .await
                .unwrap_or(4096)
                .max(512);
            // A WAL frame is a page plus its 24-byte header.
            let frame_limit = i64::try_from(wal_limit).unwrap_or(i64::MAX) / (page_size + 24);
            let wait = format!(
                "PRAGMA busy_timeout = {}",
                BLOCKING_CHECKPOINT_WAIT.as_millis()
            );
            if let Err(error) = sqlx::query(&wait).execute(&mut connection).await {
                tracing::warn!(%error, "setting the checkpoint connection's busy timeout failed");
            }
            let mut previous_log_frames = -1;
            loop {
                let stopping = tokio::select! {
                    () = stop.notified() => true,
                    () = tokio::time::sleep(CHECKPOINT_INTERVAL) => false,
                };
                // TRUNCATE at the end leaves no WAL behind a stopped journal.
                let mode = if stopping { "TRUNCATE" } else { "PASSIVE" };
                match checkpoint(&mut connection, mode).await {
                    Ok(passive) if !stopping => {
                        let mode = next_mode(passive, previous_log_frames, frame_limit);
                        if mode == Some("RESTART") {
                            wal_restart.store(true, Ordering::Release);
                        } else if let Some(mode) = mode {
                            match checkpoint(&mut connection, mode).await {
                                Ok(result) if result.busy => tracing::debug!(
                                    mode,
                                    "journal WAL checkpoint could not finish; next tick"
                                ),
                                Ok(_) => tracing::debug!(mode, "journal WAL reset"),
                                Err(error) => tracing::warn!(
                                    %error, mode, "journal WAL checkpoint failed; retrying later"
                                ),
                            }
                        }
                        previous_log_frames = passive.log_frames;
                    }
                    Ok(_) => {}
                    Err(error) => {
                        tracing::warn!(%error, "journal WAL checkpoint failed; retrying later")
                    }
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

#[cfg(test)]
mod tests {
    use super::super::tests::{event, wal_size};
    use super::*;

    fn result(log_frames: i64, checkpointed_frames: i64) -> CheckpointResult {
        CheckpointResult {
            busy: false,
            log_frames,
            checkpointed_frames,
        }
    }

    #[test]
    fn a_long_wal_is_restarted_and_an_idle_one_truncated() {
        // Over the limit and written to: restart, whether or not the passive one caught up.
        assert_eq!(next_mode(result(101, 40), 90, 100), Some("RESTART"));
        assert_eq!(next_mode(result(101, 101), 90, 100), Some("RESTART"));
        // Caught up and unchanged since the last tick: the writer is idle, over the limit too.
        assert_eq!(next_mode(result(50, 50), 50, 100), Some("TRUNCATE"));
        assert_eq!(next_mode(result(101, 101), 101, 100), Some("TRUNCATE"));
        // Caught up but written to since the last tick, or behind: leave it to the writer.
        assert_eq!(next_mode(result(50, 50), 30, 100), None);
        assert_eq!(next_mode(result(50, 20), 50, 100), None);
        // Empty: nothing to do.
        assert_eq!(next_mode(result(0, 0), 0, 100), None);
    }

    /// Polls `condition` (the checkpointer acts once a second) until it holds, for at most 60 s.
    async fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while !condition() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting until {what}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    const LIMIT: u64 = 256 << 10;

    /// A journal with a [`LIMIT`] WAL bound, after a burst of 4 MiB of events that outgrew it.
    async fn journal_after_a_burst(path: &std::path::Path) -> crate::journal::EventJournal {
        let options = crate::journal::JournalOptions {
            wal_limit: LIMIT,
            ..Default::default()
        };
        let url = format!("sqlite://{}", path.display());
        let journal = crate::journal::EventJournal::open(&url, options)
            .await
            .expect("open");
        let blob = "x".repeat(2000);
        let mut peak = 0;
        for batch in 0..200 {
            let events = (0..10).map(|i| event(batch * 10 + i, &blob)).collect();
            journal.append(events).await.expect("append");
            peak = peak.max(wal_size(path));
        }
        assert!(peak > 2 * LIMIT, "the burst outgrew the limit: {peak}");
        journal
    }

    /// The WAL file shrinks back while writes go on (without the bound it only ever grows until
    /// the journal closes), and an idle journal's WAL is emptied.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_wal_is_cut_back_under_load_and_emptied_when_idle() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("wal.db");
        let journal = journal_after_a_burst(&path).await;
        let (limit, blob) = (LIMIT, "x".repeat(2000));
        // Writes go on, slowly, while the WAL is cut back.
        let writer = {
            let journal = journal.clone();
            let blob = blob.clone();
            tokio::spawn(async move {
                for n in 2000.. {
                    if journal.append(vec![event(n, &blob)]).await.is_err() {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            })
        };
        wait_until("the WAL shrinks while writes go on", || {
            wal_size(&path) < 2 * limit
        })
        .await;
        writer.abort();
        let _ = writer.await;
        wait_until("an idle journal's WAL is empty", || wal_size(&path) == 0).await;
        journal.close().await;
    }
    /// A burst that leaves the WAL over the limit and then stops: nothing restarts the WAL (only
    /// a writer does), so the idle journal's file must be emptied by a truncating checkpoint.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_wal_left_over_the_limit_by_a_burst_is_emptied_when_idle() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("wal.db");
        let journal = journal_after_a_burst(&path).await;
        wait_until("an idle journal's WAL is empty", || wal_size(&path) == 0).await;
        journal.close().await;
    }
}
