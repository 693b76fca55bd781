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
        /// When the sink took the emission (RFC 3339 UTC), if it did yet: where the lifecycle
        /// duration starts.
        delivered_at: Option<String>,
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

/// The newest emission of a tenant delivered while `await-workflow` was on, and what its
/// Workflow did: what the dispatcher checks before it delivers the tenant's next emission.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkflowWait {
    /// The emission's position.
    pub position: i64,
    /// The emission (its Workflow's `tenant-gateway.io/emission-id`).
    pub emission_id: Uuid,
    /// Whether the emission is still `delivered` (not parked, skipped or replayed since): only
    /// then does its Workflow hold the tenant.
    pub still_delivered: bool,
    /// When the sink took it (RFC 3339 UTC): the await timeout counts from here.
    pub delivered_at: String,
    /// Its Workflow, once seen.
    pub workflow: Option<WorkflowRecord>,
}

/// A completion event waiting for delivery upstream.
#[derive(Debug, Clone, PartialEq)]
pub struct PendingNotification {
    /// The CloudEvent `id`, also every attempt's `webhook-id`.
    pub notification_id: Uuid,
    /// The CloudEvent `subject`.
    pub tenant: String,
    /// The CloudEvent `type` (`lifecycle.<action>.succeeded|failed`).
    pub event_type: String,
    /// The CloudEvent `data`.
    pub data: serde_json::Value,
    /// The CloudEvent `time` (when the completion was recorded).
    pub created_at: String,
}

/// How a completion event's delivery ended, to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotificationFinished {
    /// The notification.
    pub notification_id: Uuid,
    /// Delivered (2xx), or refused for good (a 4xx other than 408 and 429).
    pub delivered: bool,
    /// Attempts made.
    pub attempts: u32,
    /// The last failure, if any.
    pub error: Option<String>,
}

/// The PostgreSQL form of a statement written with SQLite's `?N` placeholders.
fn numbered(sql: &str) -> String {
    sql.replace('?', "$")
}

/// The data of a completion event, as `docs/lifecycle-outcomes.md` documents it.
fn completion_data(facts: &EmissionFacts, observation: &WorkflowObservation) -> serde_json::Value {
    serde_json::json!({
        "tenant": facts.tenant,
        "action": facts.action,
        "eventId": facts.event_id,
        "emissionId": observation.emission_id,
        "workflowName": observation.workflow_name,
        "phase": observation.phase.as_str(),
        "message": observation.message,
        "startedAt": observation.started_at,
        "finishedAt": observation.finished_at,
        "origin": {"id": facts.origin_id, "source": facts.origin_source, "type": facts.origin_type},
    })
}

/// What recording a Workflow needs of its emission and event.
#[derive(sqlx::FromRow)]
struct EmissionFacts {
    tenant: String,
    action: String,
    event_id: String,
    origin_source: String,
    origin_id: String,
    origin_type: String,
    delivered_at: Option<String>,
}

const EMISSION_FACTS: &str = "SELECT m.tenant, e.action, e.event_id, e.source AS origin_source, \
     e.id AS origin_id, e.event_type AS origin_type, (SELECT MAX(a.finished_at) FROM \
     delivery_attempts AS a WHERE a.position = m.position AND a.outcome = 'delivered') \
     AS delivered_at FROM emissions AS m JOIN events AS e ON e.event_id = m.event_id WHERE m.emission_id = ?1";

/// Columns of [`WorkflowRow`].
const WORKFLOW_COLUMNS: &str = "emission_id, name, phase, started_at, finished_at, message, \
     observed_at";

#[derive(sqlx::FromRow)]
struct WorkflowRow {
    emission_id: String,
    name: String,
    phase: String,
    started_at: Option<String>,
    finished_at: Option<String>,
    message: Option<String>,
    observed_at: String,
}

impl WorkflowRow {
    fn decode(self) -> Result<(Uuid, WorkflowRecord), super::JournalError> {
        let emission_id = parse_stored_uuid(&self.emission_id, "workflow emission id")?;
        let phase = super::status::decode(&self.phase, "phase", &self.emission_id)?;
        Ok((
            emission_id,
            WorkflowRecord {
                name: self.name,
                phase,
                started_at: self.started_at,
                finished_at: self.finished_at,
                message: self.message,
                observed_at: self.observed_at,
            },
        ))
    }
}

fn parse_stored_uuid(value: &str, what: &str) -> Result<Uuid, super::JournalError> {
    Uuid::parse_str(value).map_err(|error| super::JournalError::Corrupt {
        event_id: value.to_owned(),
        reason: format!("{what} is not a UUID: {error}"),
    })
}

const UPSERT_WORKFLOW: &str = "INSERT INTO workflows (emission_id, tenant, name, phase, \
     started_at, finished_at, message, observed_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) \
     ON CONFLICT (emission_id) DO UPDATE SET name = excluded.name, phase = excluded.phase, \
     started_at = excluded.started_at, finished_at = excluded.finished_at, \
     message = excluded.message, observed_at = excluded.observed_at";

const INSERT_NOTIFICATION: &str = "INSERT INTO notifications (notification_id, emission_id, \
     outcome, tenant, event_type, data, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) \
     ON CONFLICT (emission_id, outcome) DO NOTHING";

const INSERT_WAIT: &str = "INSERT INTO workflow_waits (position, tenant, emission_id, \
     delivered_at) SELECT position, tenant, emission_id, ?2 FROM emissions WHERE position = ?1 \
     ON CONFLICT (position) DO NOTHING";

/// Marks a delivered emission dead because of its Workflow, and its event with it when it is
/// the event's latest emission (the event's status follows its latest emission).
const PARK_EMISSION: &str = "UPDATE emissions SET status = 'dead', last_error = ?2, \
     finished_at = ?3 WHERE position = ?1 AND status = 'delivered'";
const PARK_EVENT: &str = "UPDATE events SET status = 'dead' WHERE event_id = \
     (SELECT event_id FROM emissions WHERE position = ?1) AND NOT EXISTS (SELECT 1 FROM \
     emissions AS later WHERE later.event_id = events.event_id AND later.position > ?1)";

const FINISH_NOTIFICATION: &str = "UPDATE notifications SET status = ?2, attempts = ?3, \
     finished_at = ?4, last_error = ?5 WHERE notification_id = ?1 AND status = 'pending'";

const PENDING_NOTIFICATIONS: &str = "SELECT notification_id, tenant, event_type, data, \
     created_at FROM notifications WHERE status = 'pending' AND notification_id > ?1 \
     ORDER BY notification_id LIMIT ?2";

const WORKFLOW_WAIT: &str = "SELECT w.position, w.emission_id, w.delivered_at, \
     CAST(CASE WHEN m.status = 'delivered' THEN 1 ELSE 0 END AS BIGINT) AS still_delivered \
     FROM workflow_waits AS w JOIN emissions AS m ON m.position = w.position \
     WHERE w.tenant = ?1 ORDER BY w.delivered_at DESC, w.position DESC LIMIT 1";

const PARKED_REASON: &str = "SELECT last_error FROM emissions WHERE tenant = ?1 \
     AND status = 'dead' AND replaced_by IS NULL ORDER BY position LIMIT 1";

/// The lifecycle of the tenant `t.tenant`: from the action of its last succeeded Workflow
/// among the actions that change it, by its `finishedAt`, and within the same second
/// (Kubernetes times have one-second resolution) by when the gateway recorded it. The
/// `workflows_tenant_succeeded` index serves the walk back from the newest, which stops at the
/// first Workflow of such an action. A macro so `concat!` can build both statements with it.
macro_rules! lifecycle_of_t {
    () => {
        "CASE (SELECT se.action FROM workflows AS sw \
           JOIN emissions AS sm ON sm.emission_id = sw.emission_id \
           JOIN events AS se ON se.event_id = sm.event_id \
           WHERE sw.tenant = t.tenant AND sw.phase = 'Succeeded' \
           AND se.action IN ('upsert', 'migrate-in', 'migrate-out', 'delete') \
           ORDER BY COALESCE(sw.finished_at, sw.observed_at) DESC, sw.observed_at DESC LIMIT 1) \
         WHEN 'upsert' THEN 'active' WHEN 'migrate-in' THEN 'active' \
         WHEN 'migrate-out' THEN 'migrated-out' WHEN 'delete' THEN 'deleted' \
         ELSE 'unknown' END"
    };
}

/// Every tenant's derived state, one row per tenant in name order; parameters: ?1 one tenant
/// (or NULL), ?2 the cursor (or NULL), ?3 lifecycle, ?4 outcome, ?5 action (each or NULL),
/// ?6 the limit. Every part is a lookup by key from a row of `tenant_sequences` (one per
/// tenant), so a page costs what its tenants cost, not what the journal holds.
///
/// - the newest emission that reached the sink: the one with the latest `delivered` attempt
///   (a Workflow failure under await-workflow marks it dead afterwards, it still counts), as
///   the writer keeps it in `tenant_deliveries` when it records the attempts;
/// - its outcome: from its Workflow's phase (none seen yet, or Pending: pending);
/// - the lifecycle: see [`lifecycle_of_t`].
const TENANT_STATES: &str = concat!(
    "SELECT s.tenant, s.last_sequence, s.parked, s.last_action, \
     s.last_outcome, s.lifecycle, s.updated_at FROM ( \
     SELECT t.tenant, t.last_sequence, \
       CAST(CASE WHEN EXISTS (SELECT 1 FROM emissions AS d WHERE d.tenant = t.tenant \
         AND d.status = 'dead' AND d.replaced_by IS NULL) THEN 1 ELSE 0 END AS BIGINT) AS parked, \
       le.action AS last_action, \
       CASE WHEN le.action IS NULL THEN NULL \
         WHEN lw.phase IS NULL OR lw.phase = 'Pending' THEN 'pending' \
         WHEN lw.phase = 'Running' THEN 'running' \
         WHEN lw.phase = 'Succeeded' THEN 'succeeded' ELSE 'failed' END AS last_outcome, ",
    lifecycle_of_t!(),
    " AS lifecycle, CASE WHEN lw.observed_at > td.delivered_at THEN lw.observed_at \
       ELSE td.delivered_at END AS updated_at \
     FROM (SELECT tenant, last_sequence FROM tenant_sequences \
         WHERE (?1 IS NULL OR tenant = ?1) AND (?2 IS NULL OR tenant > ?2)) AS t \
     LEFT JOIN tenant_deliveries AS td ON td.tenant = t.tenant \
     LEFT JOIN emissions AS lm ON lm.position = td.position \
     LEFT JOIN events AS le ON le.event_id = lm.event_id \
     LEFT JOIN workflows AS lw ON lw.emission_id = lm.emission_id \
     ) AS s WHERE (?3 IS NULL OR s.lifecycle = ?3) AND (?4 IS NULL OR s.last_outcome = ?4) \
     AND (?5 IS NULL OR s.last_action = ?5) ORDER BY s.tenant LIMIT ?6"
);

/// Tenants per lifecycle, for the `tenant_gateway_tenants` gauge counted at every scrape: one
/// row per tenant and one index walk each, so a scrape costs what the tenants cost and does
/// not grow with the events stored.
const TENANTS_PER_LIFECYCLE: &str = concat!(
    "SELECT lifecycle, COUNT(*) FROM (SELECT ",
    lifecycle_of_t!(),
    " AS lifecycle FROM tenant_sequences AS t) AS states GROUP BY lifecycle"
);

/// The reads over all tenants, by name, in SQLite's syntax (`?N`; PostgreSQL takes `$N`): for
/// the tests that check their query plans never pass over the journal's events.
pub fn tenant_read_statements() -> [(&'static str, &'static str); 2] {
    [
        ("tenant states", TENANT_STATES),
        ("tenants per lifecycle", TENANTS_PER_LIFECYCLE),
    ]
}

#[derive(sqlx::FromRow)]
struct TenantRow {
    tenant: String,
    last_sequence: i64,
    parked: i64,
    last_action: Option<String>,
    last_outcome: Option<String>,
    lifecycle: String,
    updated_at: Option<String>,
}

impl TenantRow {
    fn decode(self) -> Result<TenantSummary, super::JournalError> {
        let last_outcome = self
            .last_outcome
            .as_deref()
            .map(|outcome| super::status::decode(outcome, "last outcome", &self.tenant))
            .transpose()?;
        Ok(TenantSummary {
            state: TenantLifecycle {
                lifecycle: super::status::decode(&self.lifecycle, "lifecycle", &self.tenant)?,
                last_action: self.last_action,
                last_outcome,
                updated_at: self.updated_at,
            },
            parked: self.parked != 0,
            last_sequence: self.last_sequence,
            tenant: self.tenant,
        })
    }
}

#[derive(sqlx::FromRow)]
struct NotificationRow {
    notification_id: String,
    tenant: String,
    event_type: String,
    data: String,
    created_at: String,
}

impl NotificationRow {
    fn decode(self) -> Result<PendingNotification, super::JournalError> {
        let data =
            serde_json::from_str(&self.data).map_err(|error| super::JournalError::Corrupt {
                event_id: self.notification_id.clone(),
                reason: format!("notification data is not JSON: {error}"),
            })?;
        Ok(PendingNotification {
            notification_id: parse_stored_uuid(&self.notification_id, "notification id")?,
            tenant: self.tenant,
            event_type: self.event_type,
            data,
            created_at: self.created_at,
        })
    }
}

#[derive(sqlx::FromRow)]
struct WaitRow {
    position: i64,
    emission_id: String,
    delivered_at: String,
    still_delivered: i64,
}

/// How a backend writes placeholders: SQLite takes the statements as written (`?N`),
/// PostgreSQL wants `$N`.
trait Dialect {
    /// Whether `?N` becomes `$N`.
    const NUMBERED: bool;

    /// A statement of this module in the backend's syntax.
    fn sql(text: &str) -> String {
        if Self::NUMBERED {
            numbered(text)
        } else {
            text.to_owned()
        }
    }
}

/// The statements and reads of this module for one sqlx backend, written once: both backends
/// store the same columns, so only the connection types and the placeholders differ.
macro_rules! backend {
    ($module:ident, $db:ty, $dialect:ident) => {
        pub(super) mod $module {
            use std::collections::HashMap;

            use sqlx::Row;
            use uuid::Uuid;

            use super::*;
            use crate::journal::operator::stored_time;
            use crate::journal::JournalError;

            type Connection = <$db as sqlx::Database>::Connection;
            type Pool = sqlx::Pool<$db>;

            fn sql(text: &str) -> String {
                <super::$dialect as Dialect>::sql(text)
            }

            fn read_error(error: sqlx::Error) -> JournalError {
                JournalError::Query(error)
            }

            /// Records what the watcher saw (see [`WorkflowRecorded`]); queues the completion
            /// notification in the same transaction when `notify` and the phase is terminal.
            pub(in crate::journal) async fn record_workflow(
                connection: &mut Connection,
                observation: &WorkflowObservation,
                notify: bool,
            ) -> Result<WorkflowRecorded, sqlx::Error> {
                let emission_id = observation.emission_id.to_string();
                let facts: Option<EmissionFacts> = sqlx::query_as(&sql(EMISSION_FACTS))
                    .bind(&emission_id)
                    .fetch_optional(&mut *connection)
                    .await?;
                let Some(facts) = facts else {
                    return Ok(WorkflowRecorded::UnknownEmission);
                };
                let stored: Option<WorkflowRow> = sqlx::query_as(&sql(
                    "SELECT emission_id, name, phase, started_at, finished_at, message, \
                     observed_at FROM workflows WHERE emission_id = ?1",
                ))
                .bind(&emission_id)
                .fetch_optional(&mut *connection)
                .await?;
                let previous = match &stored {
                    Some(row) => {
                        let same = row.name == observation.workflow_name
                            && row.phase == observation.phase.as_str()
                            && row.started_at == observation.started_at
                            && row.finished_at == observation.finished_at
                            && row.message == observation.message;
                        if same {
                            return Ok(WorkflowRecorded::Unchanged);
                        }
                        row.phase.parse().ok()
                    }
                    None => None,
                };
                let now = stored_time(chrono::Utc::now());
                sqlx::query(&sql(UPSERT_WORKFLOW))
                    .bind(&emission_id)
                    .bind(&facts.tenant)
                    .bind(&observation.workflow_name)
                    .bind(observation.phase.as_str())
                    .bind(observation.started_at.as_deref())
                    .bind(observation.finished_at.as_deref())
                    .bind(observation.message.as_deref())
                    .bind(&now)
                    .execute(&mut *connection)
                    .await?;
                let mut notification_queued = false;
                if notify && observation.phase.is_terminal() {
                    let outcome = observation.phase.outcome().as_str();
                    let data = completion_data(&facts, observation);
                    let inserted = sqlx::query(&sql(INSERT_NOTIFICATION))
                        .bind(Uuid::now_v7().to_string())
                        .bind(&emission_id)
                        .bind(outcome)
                        .bind(&facts.tenant)
                        .bind(format!("lifecycle.{}.{outcome}", facts.action))
                        .bind(data.to_string())
                        .bind(&now)
                        .execute(&mut *connection)
                        .await?;
                    notification_queued = inserted.rows_affected() == 1;
                }
                Ok(WorkflowRecorded::Changed {
                    tenant: facts.tenant,
                    action: facts.action,
                    previous,
                    notification_queued,
                    delivered_at: facts.delivered_at,
                })
            }

            /// Marks the delivered emission at `position` dead with `reason`, which parks its
            /// tenant like a dead delivery; false if it is no longer delivered.
            pub(in crate::journal) async fn park_for_workflow(
                connection: &mut Connection,
                position: i64,
                reason: &str,
            ) -> Result<bool, sqlx::Error> {
                let now = stored_time(chrono::Utc::now());
                let parked = sqlx::query(&sql(PARK_EMISSION))
                    .bind(position)
                    .bind(reason)
                    .bind(&now)
                    .execute(&mut *connection)
                    .await?
                    .rows_affected()
                    == 1;
                if parked {
                    sqlx::query(&sql(PARK_EVENT))
                        .bind(position)
                        .execute(&mut *connection)
                        .await?;
                }
                Ok(parked)
            }

            /// Records that a delivered emission's Workflow is awaited (see `workflow_waits`).
            pub(in crate::journal) async fn record_wait(
                connection: &mut Connection,
                position: i64,
                delivered_at: &str,
            ) -> Result<(), sqlx::Error> {
                sqlx::query(&sql(INSERT_WAIT))
                    .bind(position)
                    .bind(delivered_at)
                    .execute(&mut *connection)
                    .await?;
                Ok(())
            }

            /// Records the end of a completion event's delivery.
            pub(in crate::journal) async fn finish_notification(
                connection: &mut Connection,
                finished: &NotificationFinished,
            ) -> Result<(), sqlx::Error> {
                let status = if finished.delivered {
                    "delivered"
                } else {
                    "failed"
                };
                sqlx::query(&sql(FINISH_NOTIFICATION))
                    .bind(finished.notification_id.to_string())
                    .bind(status)
                    .bind(i64::from(finished.attempts))
                    .bind(stored_time(chrono::Utc::now()))
                    .bind(finished.error.as_deref())
                    .execute(&mut *connection)
                    .await?;
                Ok(())
            }

            /// The latest Workflow record of each of these emissions that has one.
            pub(in crate::journal) async fn workflow_records(
                pool: &Pool,
                emission_ids: &[Uuid],
            ) -> Result<HashMap<Uuid, WorkflowRecord>, JournalError> {
                let mut records = HashMap::new();
                // Bounded statements: SQLite allows 32766 parameters, PostgreSQL 65535.
                for chunk in emission_ids.chunks(500) {
                    let placeholders: Vec<String> =
                        (1..=chunk.len()).map(|i| format!("?{i}")).collect();
                    let text = format!(
                        "SELECT {WORKFLOW_COLUMNS} FROM workflows WHERE emission_id IN ({})",
                        placeholders.join(", ")
                    );
                    let text = sql(&text);
                    let rows: Vec<WorkflowRow> = chunk
                        .iter()
                        .fold(sqlx::query_as(&text), |query, id| {
                            query.bind(id.to_string())
                        })
                        .fetch_all(pool)
                        .await
                        .map_err(read_error)?;
                    for row in rows {
                        let (emission_id, record) = row.decode()?;
                        records.insert(emission_id, record);
                    }
                }
                Ok(records)
            }

            /// Tenants with their derived state (see [`TENANT_STATES`]).
            pub(in crate::journal) async fn tenant_summaries(
                pool: &Pool,
                tenant: Option<&str>,
                query: &TenantQuery,
                limit: usize,
            ) -> Result<Vec<TenantSummary>, JournalError> {
                let rows: Vec<TenantRow> = sqlx::query_as(&sql(TENANT_STATES))
                    .bind(tenant)
                    .bind(query.after.as_deref())
                    .bind(query.lifecycle.map(|l| l.as_str()))
                    .bind(query.outcome.map(|o| o.as_str()))
                    .bind(query.action.as_deref())
                    .bind(i64::try_from(limit).unwrap_or(i64::MAX))
                    .fetch_all(pool)
                    .await
                    .map_err(read_error)?;
                rows.into_iter().map(TenantRow::decode).collect()
            }

            /// Why the tenant is parked: its oldest unresolved dead emission's last error.
            pub(in crate::journal) async fn parked_reason(
                pool: &Pool,
                tenant: &str,
            ) -> Result<Option<String>, JournalError> {
                let row = sqlx::query(&sql(PARKED_REASON))
                    .bind(tenant)
                    .fetch_optional(pool)
                    .await
                    .map_err(read_error)?;
                row.map(|row| row.try_get::<Option<String>, _>(0))
                    .transpose()
                    .map(Option::flatten)
                    .map_err(read_error)
            }

            /// The tenant's newest awaited emission (see [`WorkflowWait`]).
            pub(in crate::journal) async fn workflow_wait(
                pool: &Pool,
                tenant: &str,
            ) -> Result<Option<WorkflowWait>, JournalError> {
                let row: Option<WaitRow> = sqlx::query_as(&sql(WORKFLOW_WAIT))
                    .bind(tenant)
                    .fetch_optional(pool)
                    .await
                    .map_err(read_error)?;
                let Some(row) = row else {
                    return Ok(None);
                };
                let emission_id = parse_stored_uuid(&row.emission_id, "awaited emission id")?;
                let mut workflow = workflow_records(pool, &[emission_id]).await?;
                Ok(Some(WorkflowWait {
                    position: row.position,
                    emission_id,
                    still_delivered: row.still_delivered != 0,
                    delivered_at: row.delivered_at,
                    workflow: workflow.remove(&emission_id),
                }))
            }

            /// Pending completion events after `after` (notification id order), at most `limit`.
            pub(in crate::journal) async fn pending_notifications(
                pool: &Pool,
                after: Option<Uuid>,
                limit: usize,
            ) -> Result<Vec<PendingNotification>, JournalError> {
                let rows: Vec<NotificationRow> = sqlx::query_as(&sql(PENDING_NOTIFICATIONS))
                    .bind(after.unwrap_or(Uuid::nil()).to_string())
                    .bind(i64::try_from(limit).unwrap_or(i64::MAX))
                    .fetch_all(pool)
                    .await
                    .map_err(read_error)?;
                rows.into_iter().map(NotificationRow::decode).collect()
            }

            /// Tenants per lifecycle (for the `tenant_gateway_tenants` gauge).
            pub(in crate::journal) async fn count_lifecycles(
                pool: &Pool,
            ) -> Result<HashMap<Lifecycle, u64>, JournalError> {
                let rows = sqlx::query(TENANTS_PER_LIFECYCLE)
                    .fetch_all(pool)
                    .await
                    .map_err(read_error)?;
                let mut counts = HashMap::new();
                for row in rows {
                    let lifecycle: String = row.try_get(0).map_err(read_error)?;
                    let count: i64 = row.try_get(1).map_err(read_error)?;
                    let lifecycle = crate::journal::status::decode(&lifecycle, "lifecycle", "-")?;
                    counts.insert(lifecycle, u64::try_from(count).unwrap_or(0));
                }
                Ok(counts)
            }
        }
    };
}

/// SQLite: the statements as written.
struct SqliteDialect;
impl Dialect for SqliteDialect {
    const NUMBERED: bool = false;
}

/// PostgreSQL: `$N` placeholders.
struct PostgresDialect;
impl Dialect for PostgresDialect {
    const NUMBERED: bool = true;
}

backend!(sqlite, sqlx::Sqlite, SqliteDialect);
backend!(postgres, sqlx::Postgres, PostgresDialect);
