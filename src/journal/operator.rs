//! Operator actions on the journal (see `docs/admin.md`): event search, an event's emissions,
//! a tenant's state, and the operator's writes (replay, skip, bulk replay jobs), each recorded
//! with who did it and why. (Not crash recovery: the journal needs none beyond SQLite's WAL.)
//!
//! Replay semantics live here, in one place for every backend:
//! - a replay is a new emission of the stored event (new emission id, `replay_of` set);
//! - replaying the dead emission that parks a tenant puts the replay in the dead one's
//!   `place`, so it is retried before the events waiting behind it, and marks the dead one
//!   `replaced_by` (the tenant is no longer parked by it);
//! - any other replay queues behind the tenant's pending emissions;
//! - skipping a dead emission marks it `skipped`, which unparks its tenant.
//!
//! Operator writes go through the group-commit writer like appends, so emission positions stay
//! in commit order and the dispatcher is woken by the commit.

use uuid::Uuid;

use super::outcomes::{NotificationFinished, WorkflowObservation, WorkflowRecorded};
pub use super::status::{EventStatus, ReplayJobStatus, WorkflowPhase};
use super::AppendError;

/// A validated event search: every condition optional, combined with AND.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventQuery {
    /// Only this tenant.
    pub tenant: Option<String>,
    /// Only this short action (`upsert`).
    pub action: Option<String>,
    /// Only events in this state.
    pub status: Option<EventStatus>,
    /// Only this upstream `source`.
    pub source: Option<String>,
    /// Received at or after (RFC 3339 UTC with microseconds, the stored format, so the
    /// comparison is a string comparison).
    pub since: Option<String>,
    /// Received before (same format).
    pub until: Option<String>,
    /// Only events whose latest emission's Workflow is in one of these phases (empty: any, also
    /// none seen).
    pub workflow_phases: Vec<WorkflowPhase>,
}

impl EventQuery {
    /// The phases as one bound parameter, `,Failed,Error,` (the SQL matches `,Phase,` in it),
    /// or `None` for no phase condition: one placeholder for any number of phases.
    pub(super) fn phase_list(&self) -> Option<String> {
        if self.workflow_phases.is_empty() {
            return None;
        }
        let mut list = String::from(",");
        for phase in &self.workflow_phases {
            list.push_str(phase.as_str());
            list.push(',');
        }
        Some(list)
    }
}

/// Formats a time the way the journal stores `received_at`, so stored times compare as strings.
pub fn stored_time(time: chrono::DateTime<chrono::Utc>) -> String {
    time.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// An event without its documents: what listings and timelines show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventHeader {
    /// The position of the event's first emission: the event's place in the journal, which
    /// orders listings and makes their cursors stable (it only ever grows).
    pub position: i64,
    /// The gateway's id of the event.
    pub event_id: Uuid,
    /// Upstream `source`.
    pub source: String,
    /// Upstream `id`.
    pub id: String,
    /// Upstream `type`.
    pub event_type: String,
    /// Tenant.
    pub tenant: String,
    /// Short action.
    pub action: String,
    /// Per-tenant sequence.
    pub sequence: i64,
    /// Upstream `time`, if any.
    pub time: Option<String>,
    /// When the gateway accepted it.
    pub received_at: String,
    /// State of its latest emission.
    pub status: EventStatus,
}

/// One emission of an event, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEmission {
    /// Creation order.
    pub position: i64,
    /// The emitted CloudEvent's id.
    pub emission_id: Uuid,
    /// The event it emits.
    pub event_id: Uuid,
    /// On replays, the replayed event.
    pub replay_of: Option<Uuid>,
    /// The bulk replay job that created it.
    pub replay_job: Option<Uuid>,
    /// Its delivery state; an [`EventStatus`] because a stored emission can also be skipped
    /// (see [`super::EmissionStatus`] for the states an attempt leaves).
    pub status: EventStatus,
    /// When it was created.
    pub created_at: String,
    /// When it became final.
    pub finished_at: Option<String>,
    /// The last failure's message.
    pub last_error: Option<String>,
    /// On a replayed dead emission, the replay that took its place.
    pub replaced_by: Option<Uuid>,
    /// Attempts made.
    pub attempts: u32,
}

/// An operator action as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperatorAction {
    /// When (RFC 3339 UTC).
    pub at: String,
    /// The admin token's name, or `loopback`.
    pub actor: String,
    /// `replay`, `skip`, `bulk-replay` or `cancel-replay`.
    pub action: String,
    /// The event acted on.
    pub event_id: Option<Uuid>,
    /// Its tenant.
    pub tenant: Option<String>,
    /// The emission created or skipped.
    pub emission_id: Option<Uuid>,
    /// The bulk replay job.
    pub job_id: Option<Uuid>,
    /// Why.
    pub reason: Option<String>,
}

/// Who acts, and why: recorded with every operator write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operator {
    /// The admin token's name, or `loopback`.
    pub actor: String,
    /// The operator's reason, if given.
    pub reason: Option<String>,
}

/// A tenant's delivery state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantState {
    /// Events per status, in [`EventStatus::ALL`] order.
    pub counts: [u64; 4],
    /// The tenant's highest sequence (0: no events).
    pub last_sequence: i64,
    /// The event whose dead emission parks the tenant.
    pub parked_by: Option<EventHeader>,
}

/// A bulk replay job as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplayJob {
    /// Its id.
    pub job_id: Uuid,
    /// Where the job stands.
    pub status: ReplayJobStatus,
    /// The operator's filter (JSON), for display.
    pub filter: String,
    /// Replays per second.
    pub rate: f64,
    /// Who created it.
    pub actor: String,
    /// Why.
    pub reason: Option<String>,
    /// When it was created.
    pub created_at: String,
    /// When it became final.
    pub finished_at: Option<String>,
    /// Events selected at creation.
    pub total: u64,
    /// Events replayed so far.
    pub replayed: u64,
    /// Why it failed.
    pub error: Option<String>,
}

/// A bulk replay job to create.
#[derive(Debug, Clone, PartialEq)]
pub struct NewReplayJob {
    /// Its id (chosen by the caller, so it can answer with it).
    pub job_id: Uuid,
    /// The events it replays: those the query selects now.
    pub query: EventQuery,
    /// The filter as the operator wrote it (JSON), for display.
    pub filter: String,
    /// Replays per second.
    pub rate: f64,
    /// Who and why.
    pub operator: Operator,
    /// Refuse unless the query selects exactly this many events (what a dry run showed).
    pub expected_count: Option<u64>,
}

/// An operator write, applied atomically by the journal's writer.
#[derive(Debug, Clone, PartialEq)]
pub enum OperatorWrite {
    /// Replay one event.
    Replay {
        /// The event.
        event_id: Uuid,
        /// Who and why.
        operator: Operator,
    },
    /// Skip an event's dead emission.
    Skip {
        /// The event.
        event_id: Uuid,
        /// Who and why.
        operator: Operator,
    },
    /// Create a bulk replay job.
    CreateJob(NewReplayJob),
    /// Replay the next events of a running job and record its progress.
    JobBatch {
        /// The job.
        job_id: Uuid,
        /// At most this many replays.
        max: usize,
    },
    /// Cancel a running job.
    CancelJob {
        /// The job.
        job_id: Uuid,
        /// Who and why.
        operator: Operator,
    },
    /// Record what the Workflow watcher saw of an emission's Workflow (not an operator's
    /// action: it shares the writer so outcomes stay in commit order with deliveries).
    RecordWorkflow {
        /// What was seen.
        observation: WorkflowObservation,
        /// Queue a completion notification when the phase is terminal (`[notify]` is set).
        notify: bool,
    },
    /// Park a tenant behind its delivered emission whose Workflow failed or never appeared
    /// (`await-workflow`): the emission becomes dead, exactly like a dead delivery.
    ParkForWorkflow {
        /// The emission.
        position: i64,
        /// Why, as `parkedReason` shows it.
        reason: String,
    },
    /// Record how a completion notification's delivery ended.
    FinishNotification(NotificationFinished),
}

/// A replay that was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replayed {
    /// The event replayed.
    pub event_id: Uuid,
    /// Its tenant.
    pub tenant: String,
    /// Its action (for the workflow name).
    pub action: String,
    /// The new emission.
    pub emission_id: Uuid,
    /// Whether it took the place of a dead emission (else it queues behind).
    pub in_place: bool,
    /// Whether this replay left the tenant with no dead emission, so the dispatcher must take
    /// the tenant up again.
    pub tenant_unparked: bool,
}

/// What an operator write did.
#[derive(Debug, Clone, PartialEq)]
pub enum OperatorOutcome {
    /// [`OperatorWrite::Replay`].
    Replayed(Replayed),
    /// [`OperatorWrite::Skip`].
    Skipped {
        /// Its tenant.
        tenant: String,
        /// The emission now skipped.
        emission_id: Uuid,
        /// Whether the tenant is still parked (by another dead emission).
        tenant_parked: bool,
    },
    /// [`OperatorWrite::CreateJob`]: the job, as created.
    JobCreated(ReplayJob),
    /// [`OperatorWrite::JobBatch`].
    JobProgress {
        /// The job after the batch (`running` while events remain).
        job: ReplayJob,
        /// Tenants this batch unparked (replays of dead emissions).
        unparked: Vec<String>,
    },
    /// [`OperatorWrite::CancelJob`]: the job, now cancelled.
    JobCancelled(ReplayJob),
    /// [`OperatorWrite::RecordWorkflow`].
    WorkflowRecorded(WorkflowRecorded),
    /// [`OperatorWrite::ParkForWorkflow`]: false if the emission was no longer delivered
    /// (replayed, skipped or parked meanwhile).
    ParkedForWorkflow(bool),
    /// [`OperatorWrite::FinishNotification`].
    NotificationFinished,
}

/// Why an operator write changed nothing.
#[derive(Debug, thiserror::Error)]
pub enum OperatorError {
    /// No event has this id.
    #[error("no event {0} in the journal")]
    EventNotFound(Uuid),
    /// Only a dead event can be skipped.
    #[error("event {event_id} is {status}; only a dead event can be skipped")]
    NotDead {
        /// The event.
        event_id: Uuid,
        /// Its status.
        status: EventStatus,
    },
    /// The filter selects another number of events than expected.
    #[error(
        "the filter now selects {count} events, not the {expected} expected; run the dry run again"
    )]
    CountChanged {
        /// What it selects now.
        count: u64,
        /// What the caller expected.
        expected: u64,
    },
    /// No job has this id.
    #[error("no replay job {0}")]
    JobNotFound(Uuid),
    /// The job is no longer running.
    #[error("replay job {job_id} is already {status}")]
    JobFinished {
        /// The job.
        job_id: Uuid,
        /// Its final status.
        status: ReplayJobStatus,
    },
    /// The store failed or is closed; nothing was written.
    #[error(transparent)]
    Store(#[from] AppendError),
}
