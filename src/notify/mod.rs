//! Completion events to upstream (`[notify]`): the notifier task delivers the journal's
//! completion outbox (`notifications`, queued by `EventJournal::record_workflow` in the same
//! transaction as a Workflow's terminal phase) as structured CloudEvents, one at a time, in
//! notification id order (`docs/lifecycle-outcomes.md`, "Completion events").
//!
//! - Every attempt of one notification carries the same CloudEvent `id` and `webhook-id`: both
//!   come from the outbox row, fixed when the completion was recorded.
//! - Timeouts, connection errors, 408, 429 and 5xx are retried with the sinks' backoff
//!   ([`RetryPolicy`]), without a limit: an upstream outage delays completions, it loses none.
//!   Each notification waits out its own backoff while the others are still tried, so one that
//!   upstream keeps refusing holds back no other (a retried one may then arrive after later
//!   ones).
//! - Any other answer finishes the notification as failed (status and body excerpt recorded,
//!   logged at error level); the next one is delivered.
//! - A stop (or a crash) mid-delivery leaves the notification pending: the next start sends it
//!   again with the same id. Replicas sharing a PostgreSQL journal each deliver the outbox, so a
//!   notification may arrive more than once, always with the same id (at-least-once).

mod request;

use std::collections::{HashMap, HashSet};
use std::ops::ControlFlow;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{watch, Notify};
use tokio::time::Instant;
use uuid::Uuid;

use crate::dispatch::RetryPolicy;
use crate::journal::{EventJournal, NotificationFinished, PendingNotification};
use crate::metrics::GatewayMetrics;
use crate::telemetry::ErrorChain;
use request::{AttemptResult, UpstreamReceiver};

pub use request::completion_event;

/// The default `[notify] timeout`.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// How often the outbox is read again without a wake-up: another replica may have queued a
/// notification, or a wake-up was missed.
pub const DEFAULT_RESCAN_INTERVAL: Duration = Duration::from_secs(5);

/// Notifications read from the journal at once.
const BATCH: usize = 100;

/// The `[notify]` table, resolved: where completion events go and how they are authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotifySettings {
    /// The receiver (http or https); every completion event is POSTed here.
    pub url: String,
    /// A bearer token for `Authorization: Bearer`, read at start.
    pub token_file: Option<PathBuf>,
    /// A Standard Webhooks secret (`whsec_<base64>`): every request is then signed.
    pub signing_secret_file: Option<PathBuf>,
    /// Whole-request timeout of one attempt; a timeout is retried.
    pub timeout: Duration,
    /// The backstop re-read of the outbox (not in the TOML file; tests shorten it).
    pub rescan_interval: Duration,
}

impl NotifySettings {
    /// Completion events to `url`, unauthenticated, unsigned, with the default timeout.
    pub fn new(url: impl Into<String>) -> Self {
        NotifySettings {
            url: url.into(),
            token_file: None,
            signing_secret_file: None,
            timeout: DEFAULT_TIMEOUT,
            rescan_interval: DEFAULT_RESCAN_INTERVAL,
        }
    }

    /// Checks what the configuration can: the URL, the timeout, the files readable and the
    /// secret decodable. `config` calls it so a bad `[notify]` table fails at load.
    pub fn validate(&self) -> Result<(), NotifyError> {
        request::parse_url(&self.url)?;
        request::check_timeout(self.timeout)?;
        request::read_secrets(self).map(drop)
    }
}

/// Why the notifier could not start.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// A `[notify]` key is wrong: the URL, the timeout, or a file that cannot be read or
    /// decoded (the key names which).
    #[error("invalid {key}: {reason}")]
    Invalid {
        /// The TOML key, e.g. `notify.token-file`.
        key: &'static str,
        /// What is wrong with it (a file's path, never its content).
        reason: String,
    },
    /// The HTTP client could not be built (TLS roots).
    #[error("cannot build the HTTP client for completion events: {0}")]
    HttpClient(String),
}

/// Wakes the notifier: call it after `record_workflow` answered `notification_queued: true`,
/// so the event goes out without waiting for the backstop re-read. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct NotifierHandle {
    /// A wake-up before the notifier waits is kept (one permit), so none is lost.
    wake: Arc<Notify>,
}

impl NotifierHandle {
    /// Asks the notifier to read the outbox now.
    pub fn wake(&self) {
        self.wake.notify_one();
    }
}

/// The running notifier task. Dropping it stops the task too (without waiting for it).
pub struct Notifier {
    /// Given to the code that queues notifications.
    handle: NotifierHandle,
    /// `true` (or dropped) stops the task.
    stop: watch::Sender<bool>,
    /// The task, awaited by [`Notifier::stop`].
    task: tokio::task::JoinHandle<()>,
    /// How often the task found the outbox empty, for [`Notifier::idle_passes`].
    idle_passes: watch::Receiver<u64>,
}

impl Notifier {
    /// Starts delivering `journal`'s completion outbox per `settings`: `source` is the
    /// CloudEvent `source` (the instance URI), `retry` the sinks' backoff (its retry limit is
    /// not used: notifications are retried until delivered or refused).
    pub fn start(
        journal: EventJournal,
        settings: &NotifySettings,
        source: String,
        retry: RetryPolicy,
        metrics: GatewayMetrics,
    ) -> Result<Notifier, NotifyError> {
        let receiver = UpstreamReceiver::build(settings)?;
        let handle = NotifierHandle::default();
        let (stop, stopped) = watch::channel(false);
        let (idle_passes, idle_passes_seen) = watch::channel(0);
        tracing::info!(url = %receiver.shown_url(), "completion events go upstream");
        let worker = Worker {
            journal,
            receiver,
            source,
            retry,
            metrics,
            wake: Arc::clone(&handle.wake),
            rescan_interval: settings.rescan_interval,
            stopped,
            idle_passes,
        };
        Ok(Notifier {
            handle,
            stop,
            task: tokio::spawn(worker.run()),
            idle_passes: idle_passes_seen,
        })
    }

    /// A handle to wake the notifier with.
    pub fn handle(&self) -> NotifierHandle {
        self.handle.clone()
    }

    /// How many times the task found nothing pending and began to wait (for a wake-up, the
    /// rescan or a stop): lets tests and embedding programs know the outbox was drained.
    pub fn idle_passes(&self) -> watch::Receiver<u64> {
        self.idle_passes.clone()
    }

    /// Stops the task and waits for it; a notification in flight stays pending (sent again,
    /// same id, by the next start).
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        if let Err(error) = self.task.await {
            tracing::warn!(error = %ErrorChain(&error), "the notifier task ended abnormally");
        }
    }
}

/// The notifier task's state.
struct Worker {
    /// Where the outbox is.
    journal: EventJournal,
    /// Where completion events go.
    receiver: UpstreamReceiver,
    /// The CloudEvent `source`.
    source: String,
    /// Backoff between attempts.
    retry: RetryPolicy,
    /// `tenant_gateway_notifications_total`.
    metrics: GatewayMetrics,
    /// Woken by [`NotifierHandle::wake`].
    wake: Arc<Notify>,
    /// Backstop re-read of the outbox.
    rescan_interval: Duration,
    /// Stop requested (or the [`Notifier`] dropped).
    stopped: watch::Receiver<bool>,
    /// Counts passes that found nothing pending.
    idle_passes: watch::Sender<u64>,
}

/// A notification that failed with a retryable answer: when to try it again.
struct Retry {
    /// Attempts made so far (in this process: a restart starts over, with the same id).
    attempts: u32,
    /// Not before this.
    next_at: tokio::time::Instant,
    /// The last failure, recorded with the final outcome.
    last_error: String,
}

/// What one attempt at a notification came to.
enum Attempted {
    /// Delivered or refused for good: recorded, gone from the outbox.
    Finished,
    /// To be tried again at the given time.
    Retry(Retry),
    /// The notifier stops: left pending.
    Stopped,
}

impl Worker {
    async fn run(mut self) {
        // Notifications waiting out a backoff, by id. Each has its own backoff, so one that
        // upstream keeps refusing with a 5xx never holds back the others.
        let mut retries: HashMap<Uuid, Retry> = HashMap::new();
        loop {
            // One pass over the outbox in id order: every notification that is due is tried
            // once. A pass starts from the beginning, so one another replica queued with a
            // smaller id is not skipped.
            let mut after: Option<Uuid> = None;
            let mut pending = HashSet::new();
            loop {
                let batch = match self.journal.pending_notifications(after, BATCH).await {
                    Ok(batch) => batch,
                    Err(error) => {
                        tracing::warn!(
                            error = %ErrorChain(&error),
                            "cannot read the completion outbox"
                        );
                        break;
                    }
                };
                let full = batch.len() == BATCH;
                for notification in batch {
                    let id = notification.notification_id;
                    after = Some(id);
                    pending.insert(id);
                    if retries.get(&id).is_some_and(|r| r.next_at > Instant::now()) {
                        continue;
                    }
                    match self.attempt(&notification, retries.remove(&id)).await {
                        Attempted::Finished => {}
                        Attempted::Retry(retry) => {
                            retries.insert(id, retry);
                        }
                        Attempted::Stopped => return,
                    }
                }
                if !full {
                    break;
                }
            }
            // Finished elsewhere (another replica) meanwhile: forget their backoff.
            retries.retain(|id, _| pending.contains(id));
            if retries.is_empty() {
                self.idle_passes.send_modify(|passes| *passes += 1);
            }
            let next_retry = retries.values().map(|r| r.next_at).min();
            if self.idle(next_retry).await.is_break() {
                return;
            }
        }
    }

    /// Waits for a wake-up, the next retry, the backstop interval or a stop (`Break`).
    async fn idle(&mut self, next_retry: Option<Instant>) -> ControlFlow<()> {
        let rescan = Instant::now() + self.rescan_interval;
        let until = next_retry.map_or(rescan, |at| at.min(rescan));
        tokio::select! {
            () = self.wake.notified() => ControlFlow::Continue(()),
            () = tokio::time::sleep_until(until) => ControlFlow::Continue(()),
            () = stop_requested(&mut self.stopped) => ControlFlow::Break(()),
        }
    }

    /// One attempt at a notification (`retry`: its earlier failures in this process).
    async fn attempt(
        &mut self,
        notification: &PendingNotification,
        retry: Option<Retry>,
    ) -> Attempted {
        let id = notification.notification_id;
        let body = Bytes::from(completion_event(notification, &self.source).to_string());
        let attempts = retry.as_ref().map_or(0, |r| r.attempts) + 1;
        let last_error = retry.map(|r| r.last_error);
        let timestamp = chrono::Utc::now().timestamp();
        let result = tokio::select! {
            result = self.receiver.post(id, &body, timestamp) => result,
            () = stop_requested(&mut self.stopped) => return Attempted::Stopped,
        };
        let (delivered, error) = match result {
            AttemptResult::Delivered => {
                self.count("delivered");
                tracing::debug!(notification = %id, attempts, "completion event delivered");
                (true, last_error)
            }
            AttemptResult::Refused(error) => {
                self.count("failed");
                tracing::error!(
                    notification = %id,
                    tenant = %notification.tenant,
                    r#type = %notification.event_type,
                    attempts,
                    %error,
                    "completion event refused by the receiver; not retried"
                );
                (false, Some(error))
            }
            AttemptResult::Retryable(error) => {
                self.count("retried");
                let wait = self.retry.backoff(attempts);
                tracing::warn!(
                    notification = %id,
                    attempts,
                    retry_in = %humantime::format_duration(wait),
                    %error,
                    "completion event not delivered; will retry"
                );
                return Attempted::Retry(Retry {
                    attempts,
                    next_at: Instant::now() + wait,
                    last_error: error,
                });
            }
        };
        let finished = NotificationFinished {
            notification_id: id,
            delivered,
            attempts,
            error,
        };
        if let Err(error) = self.journal.finish_notification(finished).await {
            // Left pending: a later pass sends it again, with the same id.
            tracing::warn!(
                notification = %id,
                error = %ErrorChain(&error),
                "cannot record how a completion event ended; it will be sent again"
            );
        }
        Attempted::Finished
    }

    fn count(&self, outcome: &'static str) {
        self.metrics.count_notification(outcome);
    }
}

/// Resolves once a stop is requested or the [`Notifier`] is gone.
async fn stop_requested(stopped: &mut watch::Receiver<bool>) {
    // An error means the sender was dropped: stop too.
    let _ = stopped.wait_for(|stop| *stop).await;
}
