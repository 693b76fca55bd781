//! The heap a burst or a backlog leaves behind, given back to the operating system once ingest
//! is idle.
//!
//! glibc's allocator keeps freed memory in its arenas (one per thread that allocated, up to
//! eight per core) and returns it only from the top of the main heap. After a burst of batches
//! the gateway held about 116 MiB of anonymous memory with nothing pending; `malloc_trim(0)`
//! (which also releases whole free pages inside every arena, glibc `malloc/malloc.c`
//! `mtrim`) brought that to 87 MiB. [`release_when_idle`] calls it once ingest has committed
//! nothing for an interval; on other C libraries it does nothing.

use std::future::Future;
use std::time::Duration;

use tokio::sync::watch;

/// How long ingest must have committed nothing before freed memory is released.
pub const IDLE_INTERVAL: Duration = Duration::from_secs(10);

/// Returns freed heap memory to the operating system; `true` if any was returned.
pub fn release_freed_memory() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: `malloc_trim` takes no pointers and only walks the allocator's own free lists
        // under its arena locks; it is safe to call from any thread at any time.
        unsafe { libc::malloc_trim(0) == 1 }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

/// Whether a tick that saw commit counter `now`, after `previous` at the last tick, finds
/// ingest idle: no new commit in between. Trimming only then keeps the allocator's locks off
/// the request path under load.
pub fn is_idle(previous: u64, now: u64) -> bool {
    previous == now
}

/// Every `interval`, releases freed memory if the journal committed no new events since the
/// last tick, until `stop` resolves. `commits` is [`crate::journal::EventJournal::subscribe_commits`].
pub async fn release_when_idle(
    commits: watch::Receiver<u64>,
    interval: Duration,
    stop: impl Future<Output = ()>,
) {
    tokio::pin!(stop);
    let mut previous = *commits.borrow();
    loop {
        tokio::select! {
            () = &mut stop => return,
            () = tokio::time::sleep(interval) => {}
        }
        let now = *commits.borrow();
        if is_idle(previous, now) && release_freed_memory() {
            tracing::debug!("returned freed heap memory to the operating system");
        }
        previous = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_means_no_commit_since_the_last_tick() {
        assert!(is_idle(7, 7));
        assert!(!is_idle(7, 8));
    }

    fn rss_anon_kib() -> u64 {
        std::fs::read_to_string("/proc/self/status")
            .expect("/proc/self/status")
            .lines()
            .find_map(|line| line.strip_prefix("RssAnon:"))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("RssAnon in /proc/self/status")
    }

    /// Small allocations freed on another thread stay in that thread's arena until trimmed:
    /// the release gives most of them back.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    fn freed_small_allocations_go_back_to_the_system() {
        // 64 MiB in 1 KiB blocks (far below the mmap threshold, so they live in an arena),
        // every other one kept until the rest are freed, so the heap's top cannot shrink alone.
        let worker = std::thread::spawn(|| {
            let blocks: Vec<Vec<u8>> = (0..65_536).map(|i| vec![i as u8; 1024]).collect();
            let before = rss_anon_kib();
            let (kept, freed): (Vec<_>, Vec<_>) = blocks
                .into_iter()
                .enumerate()
                .partition(|(i, _)| i % 64 == 0);
            drop(freed);
            let after_free = rss_anon_kib();
            drop(kept);
            (before, after_free)
        });
        let (before, after_free) = worker.join().expect("worker");
        assert!(
            after_free + 32 * 1024 > before,
            "freeing alone returned most of it ({before} -> {after_free} KiB): nothing to test"
        );
        let released = release_freed_memory();
        let after_release = rss_anon_kib();
        assert!(released, "malloc_trim returned nothing");
        assert!(
            after_release + 32 * 1024 < after_free,
            "RssAnon {before} KiB full, {after_free} KiB freed, {after_release} KiB released"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_task_stops_when_asked() {
        let (_sender, commits) = watch::channel(0);
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(release_when_idle(commits, IDLE_INTERVAL, async {
            let _ = stop_rx.await;
        }));
        tokio::time::sleep(IDLE_INTERVAL * 3).await;
        assert!(!task.is_finished());
        stop_tx.send(()).expect("task listens");
        task.await.expect("task ends");
    }
}
