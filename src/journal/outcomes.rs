//! What became of each emission after the sink took it: the Argo Workflow the Sensor created
//! for it (its latest phase, recorded by the Workflow watcher), the tenant state derived from
//! those outcomes, and the completion notifications waiting for delivery upstream (see
//! `docs/lifecycle-outcomes.md`).
//!
//! The SQL lives here once for both backends: both store the same text columns, so only the
//! placeholder syntax differs (`?` here, `$n` on PostgreSQL, see [`numbered`]).

use uuid::Uuid;

use super::status::{Lifecycle, LifecycleOutcome, WorkflowPhase};

/// One look at a Workflow the gateway's Sensor created: what the watcher saw, to be recorded
/// against the emission named by its `tenant-gateway.io/emission-id` label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkflowObservation {
    /// The emission the Workflow was created for (its label).
    pub emission_id: Uuid,
    /// The Workflow's `metadata.name`.
    pub workflow_name: String,
    /// Its `status.phase` (`Pending` when it has no status yet).
    pub phase: WorkflowPhase,
    /// Its `status.startedAt` as the API server sent it (RFC 3339), if set.
    pub started_at: Option<String>,
    /// Its `status.finishedAt`, if set.
    pub finished_at: Option<String>,
    /// Its `status.message`, if set (why it failed, usually).
    pub message: Option<String>,
}

/// The latest recorded state of an emission's Workflow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkflowRecord {
    /// The Workflow's name.
    pub name: String,
    /// Its latest phase.
    pub phase: WorkflowPhase,
    /// Its `startedAt`, if set.
    pub started_at: Option<String>,
    /// Its `finishedAt`, if set.
    pub finished_at: Option<String>,
    /// Its `message`, if set.
    pub message: Option<String>,
    /// When the gateway last recorded a change (RFC 3339 UTC).
    pub observed_at: String,
}

/// What recording an observation changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WorkflowRecorded {
    /// No emission of this journal has that id (a Workflow another gateway's Sensor created in
    /// the same namespace, or one whose journal was replaced): nothing was written.
    UnknownEmission,
    /// The record already said exactly this (a re-list, a resync): nothing was written.
    Unchanged,
    /// The record was written (created or moved to another phase).
    Changed {
        /// The emission's tenant.
        tenant: String,
        /// The emission's action.
        action: String,
        /// The phase recorded before, if any.
        previous: Option<WorkflowPhase>,
        /// Whether a completion notification was queued by this write.
        notification_queued: bool,
    },
}

/// A tenant's lifecycle, derived from its emissions' Workflows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantLifecycle {
    /// From the last succeeded action that changes it.
    pub lifecycle: Lifecycle,
    /// The action of the tenant's newest emission that reached the sink.
    pub last_action: Option<String>,
    /// What that emission came to.
    pub last_outcome: Option<LifecycleOutcome>,
    /// When that emission was delivered, or its Workflow last changed, whichever is later.
    pub updated_at: Option<String>,
}

/// A tenant as the registry lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantSummary {
    /// The tenant.
    pub tenant: String,
    /// Whether a dead emission parks it.
    pub parked: bool,
    /// Its lifecycle state.
    pub state: TenantLifecycle,
    /// Its highest sequence.
    pub last_sequence: i64,
}

/// A tenant registry query: every condition optional, combined with AND; ordered by tenant
/// name, after the cursor.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TenantQuery {
    /// Only tenants in this lifecycle.
    pub lifecycle: Option<Lifecycle>,
    /// Only tenants whose newest delivered emission came to this.
    pub outcome: Option<LifecycleOutcome>,
    /// Only tenants whose newest delivered emission has this action.
    pub action: Option<String>,
    /// Only tenants named after this one (the cursor).
    pub after: Option<String>,
}
