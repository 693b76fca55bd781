//! The sink's health shared by every tenant (the circuit breaker) and the prober that notices a
//! recovered sink while every tenant sleeps a long backoff.

use super::*;

/// The sink's health, one fact shared by every tenant. A tenant whose attempt failed sleeps
/// its own backoff; when the sink answers again (any attempt's answer, or a probe's) every
/// sleeping tenant retries at once, bounded by the attempt semaphore, like a circuit breaker
/// closing: after a long outage the backlog drains at once instead of each tenant waiting out
/// up to `max-backoff`.
#[derive(Default)]
pub(super) struct SinkHealth {
    /// The last answer was a retryable failure.
    failing: std::sync::atomic::AtomicBool,
    /// Woken (all waiters) when the sink answers again.
    recovered: Notify,
    /// Woken (one waiter) to probe a failing sink early.
    probe: Notify,
    /// When the last attempt started, in milliseconds since `epoch`.
    last_attempt_ms: std::sync::atomic::AtomicU64,
    /// The clock origin of `last_attempt_ms`.
    epoch: std::sync::OnceLock<Instant>,
}

impl SinkHealth {
    pub(super) fn now_ms(&self) -> u64 {
        let epoch = self.epoch.get_or_init(Instant::now);
        u64::try_from(epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    pub(super) fn attempt_started(&self) {
        self.last_attempt_ms
            .store(self.now_ms(), std::sync::atomic::Ordering::Release);
    }

    pub(super) fn is_failing(&self) -> bool {
        self.failing.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Takes one attempt's outcome: a retryable failure marks the sink failing; any other
    /// answer (delivered, or refused for good, which the sink can only say when it is up)
    /// ends a failure and wakes every sleeping tenant.
    pub(super) fn observe(&self, outcome: &DeliveryOutcome) {
        use std::sync::atomic::Ordering;
        match outcome {
            DeliveryOutcome::Retryable { .. } => self.failing.store(true, Ordering::Release),
            DeliveryOutcome::Delivered { .. } | DeliveryOutcome::Permanent { .. } => {
                if self.failing.swap(false, Ordering::AcqRel) {
                    tracing::info!("the sink answers again; every waiting tenant retries now");
                    self.recovered.notify_waiters();
                }
            }
        }
    }

    /// Whether a probe is due: failing, and no attempt started within `interval`.
    pub(super) fn probe_due(&self, interval: Duration) -> bool {
        let last = self
            .last_attempt_ms
            .load(std::sync::atomic::Ordering::Acquire);
        let interval = u64::try_from(interval.as_millis()).unwrap_or(u64::MAX);
        self.is_failing() && self.now_ms().saturating_sub(last) >= interval
    }
}

/// While the sink fails, wakes one sleeping tenant whenever no attempt is in flight and none
/// started within the probe interval; until stopped.
pub(super) async fn run_prober(shared: Arc<Shared>) {
    let interval = shared.settings.probe_interval.max(Duration::from_millis(1));
    let concurrency = shared.settings.concurrency.max(1);
    loop {
        tokio::select! {
            () = shared.stopped() => return,
            () = tokio::time::sleep(interval) => {}
        }
        let idle = shared.permits.available_permits() == concurrency;
        if idle && shared.health.probe_due(interval) {
            tracing::debug!("probing the failing sink with one waiting tenant");
            shared.health.probe.notify_one();
        }
    }
}

/// Sleeps a retry backoff of `wait`, cut short when the sink answers again or a probe picks
/// this tenant; false if stopped first.
pub(super) async fn sleep_backoff(shared: &Shared, wait: Duration) -> bool {
    // Registered before the health check, so a recovery in between is not missed.
    let recovered = shared.health.recovered.notified();
    tokio::pin!(recovered);
    recovered.as_mut().enable();
    if !shared.health.is_failing() {
        // Another tenant's attempt succeeded since this one failed.
        return !shared.is_stopping();
    }
    tokio::select! {
        () = shared.stopped() => false,
        () = tokio::time::sleep(wait) => true,
        () = &mut recovered => true,
        () = shared.health.probe.notified() => true,
    }
}
