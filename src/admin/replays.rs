//! `/admin/v1/replays`: bulk replay by filter, as a dry run (count and sample) or as a
//! background job with progress, cancel and a rate limit, and the [`ReplayRunner`] that runs
//! the jobs.
//!
//! A job's events are fixed when it is created, and each batch of replays is written in the
//! same transaction as the job's progress, so a restart resumes a running job exactly where it
//! stopped. Jobs run one after the other, oldest first, each at its own rate. With several
//! replicas only the holder of the runner's lease runs them (`DispatchControl::replay_turn`);
//! when it dies another replica takes the lease over and resumes them.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::{web, HttpResponse};
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;
use uuid::Uuid;

use super::api::{ActionRequest, BulkReplayRequest, DryRunResult, ReplayJobList, ReplayJobView};
use super::events::{operator, parse_filter, parse_status, summary, unexpected};
use super::{optional_body, Actor, AdminError, AdminState};
use crate::dispatch::DispatchControl;
use crate::journal::{
    AppendError, EventJournal, NewReplayJob, OperatorError, OperatorOutcome, OperatorWrite,
    ReplayJob,
};

/// Replays per second when the request names no rate.
pub const DEFAULT_RATE: f64 = 100.0;
/// Lowest rate accepted: one replay every 10 s. Nearer 0 a job would never finish, and the
/// pacing below (`replayed / rate` seconds) would overflow a `Duration`.
pub const MIN_RATE: f64 = 0.1;
/// Highest rate accepted: above it a job would be a flood, not a recovery.
pub const MAX_RATE: f64 = 10_000.0;
/// Events a dry run shows.
const SAMPLE_SIZE: usize = 10;
/// Jobs `GET /admin/v1/replays` lists.
const JOBS_LISTED: usize = 100;
/// How often a job writes a batch: its rate is spread over batches this far apart.
const BATCH_INTERVAL: Duration = Duration::from_millis(100);

fn job_view(job: ReplayJob) -> ReplayJobView {
    ReplayJobView {
        id: job.job_id,
        status: job.status,
        // Written by `create` from an EventFilter; an unreadable one shows as empty.
        filter: serde_json::from_str(&job.filter).unwrap_or_default(),
        rate: job.rate,
        actor: job.actor,
        reason: job.reason,
        created_at: job.created_at,
        finished_at: job.finished_at,
        total: job.total,
        replayed: job.replayed,
        error: job.error,
    }
}

fn job_id(path: &str) -> Result<Uuid, AdminError> {
    super::hyphenated_uuid(path).ok_or_else(|| AdminError::InvalidJobId(path.to_owned()))
}

/// Why a body is not a bulk replay request. A filter `status` no state spells is a bad filter
/// condition (`invalid-filter`, like a bad time), not a malformed body, although serde refuses it
/// while reading the body.
fn request_error(body: &[u8], error: serde_json::Error) -> AdminError {
    let status = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|body| body.pointer("/filter/status")?.as_str().map(parse_status));
    match status {
        Some(Err(message)) => AdminError::InvalidFilter(message),
        _ => AdminError::InvalidBody(error.to_string()),
    }
}

/// `POST /admin/v1/replays`.
pub(super) async fn create(
    actor: Actor,
    state: web::Data<AdminState>,
    body: web::Bytes,
) -> Result<HttpResponse, AdminError> {
    let request: BulkReplayRequest =
        serde_json::from_slice(&body).map_err(|error| request_error(&body, error))?;
    if request.filter.is_empty() {
        return Err(AdminError::InvalidFilter(
            "the filter is empty and would replay the whole journal; set at least one of \
             tenant, action, status, source, since, until, workflowPhase"
                .into(),
        ));
    }
    let query = parse_filter(&request.filter).map_err(AdminError::InvalidFilter)?;
    let rate = request.rate.unwrap_or(DEFAULT_RATE);
    if !(MIN_RATE..=MAX_RATE).contains(&rate) {
        return Err(AdminError::InvalidRate(format!(
            "rate: {rate} is not a number of events per second from {MIN_RATE} to {MAX_RATE}"
        )));
    }
    if request.dry_run {
        let count = state.journal.count_events(&query).await?;
        let sample = state.journal.list_events(&query, 0, SAMPLE_SIZE).await?;
        return Ok(HttpResponse::Ok().json(DryRunResult {
            count,
            sample: sample.into_iter().map(summary).collect(),
        }));
    }
    let job_id = Uuid::now_v7();
    let filter = serde_json::to_string(&request.filter)
        .map_err(|error| AdminError::InvalidFilter(error.to_string()))?;
    let outcome = state
        .journal
        .operate(OperatorWrite::CreateJob(NewReplayJob {
            job_id,
            query,
            filter,
            rate,
            operator: operator(actor, request.reason),
            expected_count: request.expected_count,
        }))
        .await?;
    let OperatorOutcome::JobCreated(job) = outcome else {
        return Err(unexpected(&outcome));
    };
    tracing::info!(%job_id, total = job.total, rate, actor = %job.actor, "replay job created");
    state.replays.wake();
    Ok(HttpResponse::Accepted()
        .insert_header((
            actix_web::http::header::LOCATION,
            format!("/admin/v1/replays/{job_id}"),
        ))
        .json(job_view(job)))
}

/// `GET /admin/v1/replays`.
pub(super) async fn list(
    _actor: Actor,
    state: web::Data<AdminState>,
) -> Result<HttpResponse, AdminError> {
    let jobs = state.journal.replay_jobs(false, JOBS_LISTED).await?;
    Ok(HttpResponse::Ok().json(ReplayJobList {
        jobs: jobs.into_iter().map(job_view).collect(),
    }))
}

/// `GET /admin/v1/replays/{jobId}`.
pub(super) async fn show(
    _actor: Actor,
    state: web::Data<AdminState>,
    path: web::Path<String>,
) -> Result<HttpResponse, AdminError> {
    let job_id = job_id(&path)?;
    let job = state
        .journal
        .replay_job(job_id)
        .await?
        .ok_or(OperatorError::JobNotFound(job_id))?;
    Ok(HttpResponse::Ok().json(job_view(job)))
}

/// `POST /admin/v1/replays/{jobId}/cancel`.
pub(super) async fn cancel(
    actor: Actor,
    state: web::Data<AdminState>,
    path: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, AdminError> {
    let job_id = job_id(&path)?;
    let operator = operator(actor, optional_body::<ActionRequest>(&body)?.reason);
    let outcome = state
        .journal
        .operate(OperatorWrite::CancelJob { job_id, operator })
        .await?;
    let OperatorOutcome::JobCancelled(job) = outcome else {
        return Err(unexpected(&outcome));
    };
    tracing::info!(%job_id, replayed = job.replayed, "replay job cancelled");
    Ok(HttpResponse::Ok().json(job_view(job)))
}

/// Runs bulk replay jobs in the background; stop it before the dispatcher and the journal.
pub struct ReplayRunner {
    /// Wakes the task when a job is created.
    wake: Arc<Notify>,
    /// Becomes true on stop.
    stopping: watch::Sender<bool>,
    /// The task, until `stop`.
    task: std::sync::Mutex<Option<JoinHandle<()>>>,
    /// Announces new jobs to the replica that runs them.
    dispatch: DispatchControl,
}

impl ReplayRunner {
    /// Starts the runner; it resumes the jobs a previous run left running.
    pub fn start(journal: EventJournal, dispatch: DispatchControl) -> Self {
        let wake = Arc::new(Notify::new());
        let stopping = watch::channel(false).0;
        let task = tokio::spawn(run_jobs(
            journal,
            dispatch.clone(),
            Arc::clone(&wake),
            stopping.subscribe(),
        ));
        ReplayRunner {
            wake,
            stopping,
            task: std::sync::Mutex::new(Some(task)),
            dispatch,
        }
    }

    /// Looks for running jobs now (here, or on the replica that runs them).
    pub fn wake(&self) {
        self.wake.notify_one();
        self.dispatch.announce_replay_job();
    }

    /// Stops between two batches (a running job resumes at the next start) and waits.
    pub async fn stop(&self) {
        self.stopping.send_replace(true);
        let task = self
            .task
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(task) = task {
            if let Err(error) = task.await {
                tracing::error!(%error, "replay job runner ended abnormally");
            }
        }
    }
}

/// Resolves once stop is requested.
async fn stopped(stopping: &mut watch::Receiver<bool>) {
    // An Err means the runner handle is gone: stop too.
    let _ = stopping.wait_for(|stop| *stop).await;
}

/// The runner loop: run every running job, oldest first, then wait for a new one.
async fn run_jobs(
    journal: EventJournal,
    dispatch: DispatchControl,
    wake: Arc<Notify>,
    mut stopping: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            () = stopped(&mut stopping) => return,
            () = dispatch.replay_turn() => {}
        }
        // Registered before the read, so a job created during it still wakes the wait below.
        let woken = wake.notified();
        match journal.replay_jobs(true, JOBS_LISTED).await {
            Ok(jobs) => {
                for job in jobs.into_iter().rev() {
                    if !run_job(&journal, &dispatch, job, &mut stopping).await {
                        return;
                    }
                }
            }
            Err(error) => {
                tracing::error!(
                    error = %crate::telemetry::ErrorChain(&error),
                    "reading running replay jobs failed; retrying in 1 s"
                );
                tokio::select! {
                    () = stopped(&mut stopping) => return,
                    () = tokio::time::sleep(Duration::from_secs(1)) => continue,
                }
            }
        }
        tokio::select! {
            () = stopped(&mut stopping) => return,
            () = woken => {}
            () = dispatch.replay_job_announced() => {}
        }
    }
}

/// Replays one job's events in batches paced to its rate until it is done or cancelled; false
/// if the runner must stop.
async fn run_job(
    journal: &EventJournal,
    dispatch: &DispatchControl,
    job: ReplayJob,
    stopping: &mut watch::Receiver<bool>,
) -> bool {
    let job_id = job.job_id;
    // The rate spread over batches: 100/s is 10 replays every 100 ms.
    let batch = ((job.rate * BATCH_INTERVAL.as_secs_f64()).ceil() as usize).clamp(1, 1000);
    let started = Instant::now();
    let mut replayed_here = 0_u64;
    let mut replayed = job.replayed;
    tracing::info!(%job_id, total = job.total, replayed, rate = job.rate, "replay job running");
    loop {
        if *stopping.borrow() {
            return false;
        }
        if !dispatch.runs_replay_jobs() {
            tracing::warn!(%job_id, replayed, "the replay runner's lease is gone; the replica that takes it resumes the job");
            return true;
        }
        match journal
            .operate(OperatorWrite::JobBatch { job_id, max: batch })
            .await
        {
            Ok(OperatorOutcome::JobProgress { job, unparked }) => {
                for tenant in &unparked {
                    dispatch.unpark(tenant);
                }
                replayed_here += job.replayed.saturating_sub(replayed);
                replayed = job.replayed;
                if job.status.is_final() {
                    tracing::info!(%job_id, replayed, status = %job.status, "replay job ended");
                    return true;
                }
            }
            // Cancelled (or gone) meanwhile.
            Err(OperatorError::JobFinished { .. } | OperatorError::JobNotFound(_)) => {
                tracing::info!(%job_id, replayed, "replay job stopped");
                return true;
            }
            Err(OperatorError::Store(AppendError::Closed)) => return false,
            other => {
                tracing::error!(%job_id, outcome = ?other, "replay job batch failed; retrying in 1 s");
                tokio::select! {
                    () = stopped(stopping) => return false,
                    () = tokio::time::sleep(Duration::from_secs(1)) => continue,
                }
            }
        }
        // The next batch may start once the replays so far fit the rate.
        let due = started + Duration::from_secs_f64(replayed_here as f64 / job.rate);
        tokio::select! {
            () = stopped(stopping) => return false,
            () = tokio::time::sleep_until(due.into()) => {}
        }
    }
}
