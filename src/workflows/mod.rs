//! Workflow tracking: `serve --watch-workflows` follows the Argo `Workflow` objects the Sensors
//! create (label `tenant-gateway.io/emission-id`) in the workflow namespace and hands each phase
//! change to a [`WorkflowRecorder`] (the journal, [`JournalRecorder`], in `serve`), to be
//! recorded against its emission. It only reads: list and watch, nothing is written to
//! Kubernetes. Operating it: `docs/operations.md`, "Workflow tracking".
//!
//! - [`object`]: the decoded part of a Workflow and how it becomes a
//!   [`WorkflowObservation`]; unobservable ones (a label that is not a UUID, an unknown phase)
//!   are logged and skipped.
//! - [`book`]: the bookkeeping (watched phases for the gauge, last recorded and pending
//!   observations per emission).
//! - [`recorder`]: [`JournalRecorder`], the journal as the recorder, waking the dispatcher's
//!   `await-workflow` gate and timing finished lifecycle steps.
//! - `watch`: the loop over kube-rs's `watcher`, with retries of failed records.
//!
//! Guarantees: an observation whose record failed is retried with backoff until it is recorded
//! (only the latest per emission is kept meanwhile); one equal to the last recorded one for its
//! emission (a re-list after a restart of the watch) is not recorded again in the same process.
//! After a process restart the first list records each Workflow's state once more, which the
//! recorder must treat as unchanged (the journal keeps only the latest phase per emission).
//! After each successful record the observation is also sent to the `updates` channel given to
//! [`WorkflowWatcher::start`]: a wake-up for in-process subscribers (a slow subscriber that lags
//! loses notifications, never records; it should re-read the journal).

pub mod book;
pub mod object;
pub mod recorder;
mod watch;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use kube::Client;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::{broadcast, oneshot};
use tokio::task::JoinHandle;

pub use object::{ArgoWorkflow, ArgoWorkflowStatus, Unobservable, EMISSION_LABEL};
pub use recorder::JournalRecorder;
pub use watch::{ERROR_LOG_INTERVAL, MAX_RECORD_BACKOFF, MIN_RECORD_BACKOFF};

use crate::journal::WorkflowObservation;
use crate::metrics::WorkflowPhaseLabels;

/// Capacity of an updates channel made with [`updates_channel`]: notifications a subscriber may
/// fall behind by before it misses some.
pub const UPDATES_CAPACITY: usize = 1024;

/// What `serve` watches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkflowWatchSettings {
    /// The namespace the Sensors create Workflows in (`workflow-namespace`).
    pub namespace: String,
}

/// Recording an observation failed (the journal unavailable, for example); the watcher retries.
#[derive(Debug, thiserror::Error)]
#[error("cannot record the Workflow observation: {source}")]
pub struct RecordFailure {
    /// Why, as the recorder's own error.
    #[source]
    source: Box<dyn std::error::Error + Send + Sync + 'static>,
}

impl RecordFailure {
    /// Wraps the recorder's error.
    pub fn new(source: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>) -> Self {
        RecordFailure {
            source: source.into(),
        }
    }
}

/// Where the watcher's observations go. Must be idempotent: the same observation may come
/// again after a process restart (and must then change nothing).
pub trait WorkflowRecorder: Send + Sync + 'static {
    /// Records `observation` durably; `Err` means "not recorded, try again later".
    fn record(
        &self,
        observation: WorkflowObservation,
    ) -> impl Future<Output = Result<(), RecordFailure>> + Send;
}

impl<R: WorkflowRecorder> WorkflowRecorder for Arc<R> {
    fn record(
        &self,
        observation: WorkflowObservation,
    ) -> impl Future<Output = Result<(), RecordFailure>> + Send {
        (**self).record(observation)
    }
}

/// An updates channel for [`WorkflowWatcher::start`]; keep the sender to `subscribe()`.
pub fn updates_channel() -> broadcast::Sender<WorkflowObservation> {
    broadcast::channel(UPDATES_CAPACITY).0
}

/// The Kubernetes client could not be built.
#[derive(Debug, thiserror::Error)]
#[error(
    "cannot build a Kubernetes client to watch Workflows (KUBECONFIG or ~/.kube/config, \
     else the in-cluster service account): {0}"
)]
pub struct KubeClientError(#[source] kube::Error);

/// The client of the standard inference (kube-client 5.0 `Config::infer`: the kubeconfig of
/// `KUBECONFIG` or `~/.kube/config` first, else the in-cluster service account), so a test can
/// point `serve` at a fake API server with a kubeconfig.
pub async fn kube_client() -> Result<Client, KubeClientError> {
    Client::try_default().await.map_err(KubeClientError)
}

/// The running watcher task.
pub struct WorkflowWatcher {
    /// Tells the loop to stop.
    stop: oneshot::Sender<()>,
    /// The loop, awaited on [`WorkflowWatcher::stop`].
    task: JoinHandle<()>,
}

impl WorkflowWatcher {
    /// How long [`WorkflowWatcher::stop`] waits for a record in flight before aborting it.
    pub const STOP_TIMEOUT: Duration = Duration::from_secs(5);

    /// Starts watching the Workflows of `settings.namespace` with `client`: observations go to
    /// `recorder`, the per-phase counts to `gauge` (`GatewayMetrics::workflows`), and each
    /// recorded observation to `updates`.
    pub fn start(
        client: Client,
        settings: WorkflowWatchSettings,
        recorder: impl WorkflowRecorder,
        gauge: Family<WorkflowPhaseLabels, Gauge>,
        updates: broadcast::Sender<WorkflowObservation>,
    ) -> WorkflowWatcher {
        let (stop, stopped) = oneshot::channel();
        let watch = watch::WatchLoop {
            recorder,
            gauge,
            updates,
        };
        let task = tokio::spawn(watch.run(client, settings, stopped));
        WorkflowWatcher { stop, task }
    }

    /// Stops watching (unrecorded observations are recorded by the next start's list).
    pub async fn stop(self) {
        let _ = self.stop.send(());
        let mut task = self.task;
        if tokio::time::timeout(Self::STOP_TIMEOUT, &mut task)
            .await
            .is_err()
        {
            tracing::warn!("the Workflow watcher did not stop in time; aborted");
            task.abort();
        }
    }
}
