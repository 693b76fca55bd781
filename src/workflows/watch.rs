//! The watch loop: kube-rs's `watcher` over the labelled Workflows of one namespace, fed into
//! the [`WorkflowBook`], whose pending observations go to the recorder, retried with backoff.
//!
//! Restarts and watch loss are kube-runtime's (5.0, `src/watcher.rs`, `step_trampolined`): a
//! watch that ends resumes from the last resourceVersion (`Watching` -> `InitListed`); a
//! `410 Gone` ERROR event (resourceVersion too old) starts over with a full list
//! (`State::default()`), which arrives as `Init`, `InitApply`..., `InitDone`. Errors come out of
//! the stream as `Err` items and the stream goes on; `default_backoff` spaces the retries
//! (800 ms doubling to 30 s, reset after 120 s without errors: `DefaultBackoff`).

use std::time::Duration;

use futures_util::StreamExt;
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::{broadcast, oneshot};
use tokio::time::Instant;

use super::book::WorkflowBook;
use super::object::{ArgoWorkflow, EMISSION_LABEL};
use super::{WorkflowRecorder, WorkflowWatchSettings};
use crate::journal::WorkflowObservation;
use crate::metrics::WorkflowPhaseLabels;
use crate::telemetry::ErrorChain;

/// First delay before recording again after a failed record; doubles up to
/// [`MAX_RECORD_BACKOFF`].
pub const MIN_RECORD_BACKOFF: Duration = Duration::from_millis(250);
/// Longest delay between attempts to record.
pub const MAX_RECORD_BACKOFF: Duration = Duration::from_secs(30);
/// At most one warning per this interval for watch errors and failed records; the others are
/// counted and the count logged with the next warning (a flapping API server must not flood the
/// log).
pub const ERROR_LOG_INTERVAL: Duration = Duration::from_secs(30);

/// Rate-limited warnings of one kind.
struct ErrorLog {
    /// What the warnings are about, for the message.
    what: &'static str,
    /// When the last warning was written.
    last: Option<Instant>,
    /// Errors not logged since then.
    suppressed: u64,
}

impl ErrorLog {
    fn new(what: &'static str) -> Self {
        ErrorLog {
            what,
            last: None,
            suppressed: 0,
        }
    }

    fn report(&mut self, error: &dyn std::error::Error) {
        let now = Instant::now();
        if self
            .last
            .is_some_and(|last| now.duration_since(last) < ERROR_LOG_INTERVAL)
        {
            self.suppressed += 1;
            return;
        }
        tracing::warn!(error = %ErrorChain(error), suppressed = self.suppressed, "{}", self.what);
        self.last = Some(now);
        self.suppressed = 0;
    }
}

/// Everything the loop owns.
pub(super) struct WatchLoop<R> {
    /// Where observations go.
    pub recorder: R,
    /// The `tenant_gateway_workflows` gauge family.
    pub gauge: Family<WorkflowPhaseLabels, Gauge>,
    /// Told of each recorded observation.
    pub updates: broadcast::Sender<WorkflowObservation>,
}

impl<R: WorkflowRecorder> WatchLoop<R> {
    /// Watches until `stop` fires (or its sender is dropped).
    pub async fn run(
        self,
        client: Client,
        settings: WorkflowWatchSettings,
        mut stop: oneshot::Receiver<()>,
    ) {
        let api: Api<ArgoWorkflow> = Api::namespaced(client, &settings.namespace);
        // Existence selector, evaluated by the API server: only the Sensors' Workflows.
        let config = watcher::Config::default().labels(EMISSION_LABEL);
        let mut events = watcher(api, config).default_backoff().boxed();
        let mut book = WorkflowBook::new();
        let mut watch_errors = ErrorLog::new("the Workflow watch failed; retrying");
        let mut record_errors = ErrorLog::new("cannot record a Workflow observation; retrying");
        // Set while recording is backing off after a failure.
        let mut retry_at: Option<Instant> = None;
        let mut backoff = MIN_RECORD_BACKOFF;
        tracing::info!(namespace = %settings.namespace, label = EMISSION_LABEL, "watching Workflows");
        loop {
            let deadline = retry_at;
            let retry_due = async move {
                match deadline {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                _ = &mut stop => break,
                () = retry_due => retry_at = None,
                event = events.next() => match event {
                    Some(Ok(event)) => self.apply(&mut book, event),
                    Some(Err(error)) => watch_errors.report(&error),
                    // The watcher's stream never ends; if it did, nothing more would come.
                    None => break,
                },
            }
            self.publish_gauge(&book);
            if retry_at.is_some() {
                continue;
            }
            while let Some(observation) = book.next_pending() {
                let recorded = tokio::select! {
                    biased;
                    _ = &mut stop => return,
                    recorded = self.recorder.record(observation.clone()) => recorded,
                };
                match recorded {
                    Ok(()) => {
                        book.mark_recorded(&observation);
                        backoff = MIN_RECORD_BACKOFF;
                        tracing::debug!(
                            emission_id = %observation.emission_id,
                            workflow = %observation.workflow_name,
                            phase = %observation.phase,
                            "recorded the Workflow's phase"
                        );
                        // No subscriber is fine: the notification is a wake-up, not the record.
                        let _ = self.updates.send(observation);
                    }
                    Err(failure) => {
                        record_errors.report(&failure);
                        retry_at = Some(Instant::now() + backoff);
                        backoff = (backoff * 2).min(MAX_RECORD_BACKOFF);
                        break;
                    }
                }
            }
        }
        if book.pending_len() > 0 {
            // Not lost: the next start lists every Workflow again and records their state.
            tracing::info!(
                pending = book.pending_len(),
                "stopping with unrecorded Workflow observations"
            );
        }
    }

    fn apply(&self, book: &mut WorkflowBook, event: watcher::Event<ArgoWorkflow>) {
        let result = match event {
            watcher::Event::Init => {
                book.begin_relist();
                return;
            }
            watcher::Event::InitDone => {
                book.end_relist();
                return;
            }
            watcher::Event::InitApply(workflow) | watcher::Event::Apply(workflow) => {
                book.apply(&workflow)
            }
            watcher::Event::Delete(workflow) => {
                book.delete(&workflow);
                return;
            }
        };
        if let Err(unobservable) = result {
            tracing::warn!(error = %unobservable, "skipping a Workflow");
        }
    }

    fn publish_gauge(&self, book: &WorkflowBook) {
        for (phase, count) in book.phase_counts() {
            self.gauge
                .get_or_create(&WorkflowPhaseLabels {
                    phase: phase.as_str(),
                })
                .set(count);
        }
    }
}
