//! PostgreSQL statements of the operator actions (see `journal::operator` for the semantics;
//! they are those of `sqlite::operator` in PostgreSQL's syntax): the reads of the admin API on
//! the read pool, and the operator writes inside the writer's group transaction.

use sqlx::postgres::{PgArguments, PgConnection, PgRow};
use sqlx::{Postgres, Row};
use uuid::Uuid;

use super::{parse_uuid, read_error, stored_u32, PostgresJournal};
use crate::journal::operator::{
    EventHeader, EventQuery, EventStatus, NewReplayJob, Operator, OperatorAction, OperatorError,
    OperatorOutcome, OperatorWrite, ReplayJob, Replayed, StoredEmission, TenantState,
};
use crate::journal::outcomes::postgres as outcomes;
use crate::journal::rows::{EventRow, STORED_EVENT_COLUMNS};
use crate::journal::status::decode;
use crate::journal::{JournalError, StoredEvent};

/// An event's first emission, joined with the event: the rows listings walk, in position order.
const EVENT_HEADERS: &str = "SELECT m.position, e.event_id, e.source, e.id, e.event_type, \
     e.tenant, e.action, e.sequence, e.time, e.received_at, e.status \
     FROM emissions AS m JOIN events AS e ON e.event_id = m.event_id \
     WHERE m.replay_of IS NULL";

/// The conditions of an [`EventQuery`], parameters $1 to $7 (see [`bind_query`]); $7 is the
/// workflow phases as `,Failed,Error,`, matched against the event's latest emission's Workflow.
const QUERY_CONDITIONS: &str = "($1 IS NULL OR e.tenant = $1) AND ($2 IS NULL OR e.action = $2) \
     AND ($3 IS NULL OR e.status = $3) AND ($4 IS NULL OR e.source = $4) \
     AND ($5 IS NULL OR e.received_at >= $5) AND ($6 IS NULL OR e.received_at < $6) \
     AND ($7 IS NULL OR EXISTS (SELECT 1 FROM emissions AS lm \
     JOIN workflows AS w ON w.emission_id = lm.emission_id \
     WHERE lm.position = (SELECT MAX(m3.position) FROM emissions AS m3 \
     WHERE m3.event_id = e.event_id) AND $7 LIKE '%,' || w.phase || ',%'))";

/// Columns of [`StoredEmission`], in [`emission_from_row`] order.
const EMISSION_COLUMNS: &str = "position, emission_id, event_id, replay_of, replay_job, status, \
     created_at, finished_at, last_error, replaced_by, attempts";

/// Columns of [`ReplayJob`], in [`job_from_row`] order.
const JOB_COLUMNS: &str = "job_id, status, filter, rate, actor, reason, created_at, finished_at, \
     total, replayed, error";

/// Columns of [`OperatorAction`], in [`action_from_row`] order.
const ACTION_COLUMNS: &str = "at, actor, action, event_id, tenant, emission_id, job_id, reason";

/// The unresolved dead emission of an event: its position and place.
const UNRESOLVED_DEAD_OF_EVENT: &str = "SELECT position, COALESCE(place, position) FROM emissions \
     WHERE event_id = $1 AND status = 'dead' AND replaced_by IS NULL \
     ORDER BY position DESC LIMIT 1";

/// Whether a tenant still has a dead emission nobody replayed or skipped.
const TENANT_IS_PARKED: &str = "SELECT EXISTS (SELECT 1 FROM emissions \
     WHERE tenant = $1 AND status = 'dead' AND replaced_by IS NULL)";

type Query<'q> = sqlx::query::Query<'q, Postgres, PgArguments>;

/// Binds the seven parameters of [`QUERY_CONDITIONS`].
fn bind_query<'q>(query: Query<'q>, filter: &'q EventQuery) -> Query<'q> {
    query
        .bind(filter.tenant.as_deref())
        .bind(filter.action.as_deref())
        .bind(filter.status.map(EventStatus::as_str))
        .bind(filter.source.as_deref())
        .bind(filter.since.as_deref())
        .bind(filter.until.as_deref())
        .bind(filter.phase_list())
}

fn optional_uuid(value: Option<String>, what: &str) -> Result<Option<Uuid>, JournalError> {
    value.map(|v| parse_uuid(&v, what)).transpose()
}

fn count(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

fn header_from_row(row: &PgRow) -> Result<EventHeader, JournalError> {
    let event_id: String = row.try_get(1).map_err(read_error)?;
    let status: String = row.try_get(10).map_err(read_error)?;
    Ok(EventHeader {
        status: decode(&status, "status", &event_id)?,
        position: row.try_get(0).map_err(read_error)?,
        event_id: parse_uuid(&event_id, "event id")?,
        source: row.try_get(2).map_err(read_error)?,
        id: row.try_get(3).map_err(read_error)?,
        event_type: row.try_get(4).map_err(read_error)?,
        tenant: row.try_get(5).map_err(read_error)?,
        action: row.try_get(6).map_err(read_error)?,
        sequence: row.try_get(7).map_err(read_error)?,
        time: row.try_get(8).map_err(read_error)?,
        received_at: row.try_get(9).map_err(read_error)?,
    })
}

fn emission_from_row(row: &PgRow) -> Result<StoredEmission, JournalError> {
    let emission_id: String = row.try_get(1).map_err(read_error)?;
    let event_id: String = row.try_get(2).map_err(read_error)?;
    let status: String = row.try_get(5).map_err(read_error)?;
    Ok(StoredEmission {
        status: decode(&status, "emission status", &event_id)?,
        position: row.try_get(0).map_err(read_error)?,
        emission_id: parse_uuid(&emission_id, "emission id")?,
        event_id: parse_uuid(&event_id, "event id")?,
        replay_of: optional_uuid(row.try_get(3).map_err(read_error)?, "replay_of")?,
        replay_job: optional_uuid(row.try_get(4).map_err(read_error)?, "replay_job")?,
        created_at: row.try_get(6).map_err(read_error)?,
        finished_at: row.try_get(7).map_err(read_error)?,
        last_error: row.try_get(8).map_err(read_error)?,
        replaced_by: optional_uuid(row.try_get(9).map_err(read_error)?, "replaced_by")?,
        attempts: stored_u32(row.try_get(10).map_err(read_error)?, "attempts")?,
    })
}

fn job_from_row(row: &PgRow) -> Result<ReplayJob, JournalError> {
    let job_id: String = row.try_get(0).map_err(read_error)?;
    let status: String = row.try_get(1).map_err(read_error)?;
    Ok(ReplayJob {
        status: decode(&status, "replay job status", &job_id)?,
        job_id: parse_uuid(&job_id, "replay job id")?,
        filter: row.try_get(2).map_err(read_error)?,
        rate: row.try_get(3).map_err(read_error)?,
        actor: row.try_get(4).map_err(read_error)?,
        reason: row.try_get(5).map_err(read_error)?,
        created_at: row.try_get(6).map_err(read_error)?,
        finished_at: row.try_get(7).map_err(read_error)?,
        total: count(row.try_get(8).map_err(read_error)?),
        replayed: count(row.try_get(9).map_err(read_error)?),
        error: row.try_get(10).map_err(read_error)?,
    })
}

fn action_from_row(row: &PgRow) -> Result<OperatorAction, JournalError> {
    Ok(OperatorAction {
        at: row.try_get(0).map_err(read_error)?,
        actor: row.try_get(1).map_err(read_error)?,
        action: row.try_get(2).map_err(read_error)?,
        event_id: optional_uuid(row.try_get(3).map_err(read_error)?, "event id")?,
        tenant: row.try_get(4).map_err(read_error)?,
        emission_id: optional_uuid(row.try_get(5).map_err(read_error)?, "emission id")?,
        job_id: optional_uuid(row.try_get(6).map_err(read_error)?, "job id")?,
        reason: row.try_get(7).map_err(read_error)?,
    })
}

impl PostgresJournal {
    pub(in crate::journal) async fn list_events(
        &self,
        filter: &EventQuery,
        after: i64,
        limit: usize,
    ) -> Result<Vec<EventHeader>, JournalError> {
        let sql = format!(
            "{EVENT_HEADERS} AND {QUERY_CONDITIONS} AND m.position > $8 \
             ORDER BY m.position LIMIT $9"
        );
        let rows = bind_query(sqlx::query(&sql), filter)
            .bind(after)
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .fetch_all(&self.inner.readers)
            .await
            .map_err(read_error)?;
        rows.iter().map(header_from_row).collect()
    }

    pub(in crate::journal) async fn count_events(
        &self,
        filter: &EventQuery,
    ) -> Result<u64, JournalError> {
        let sql = format!(
            "SELECT COUNT(*) FROM emissions AS m JOIN events AS e ON e.event_id = m.event_id \
             WHERE m.replay_of IS NULL AND {QUERY_CONDITIONS}"
        );
        let total: i64 = bind_query(sqlx::query(&sql), filter)
            .fetch_one(&self.inner.readers)
            .await
            .map_err(read_error)?
            .try_get(0)
            .map_err(read_error)?;
        Ok(count(total))
    }

    pub(in crate::journal) async fn find_event(
        &self,
        event_id: Uuid,
    ) -> Result<Option<StoredEvent>, JournalError> {
        let sql = format!("SELECT {STORED_EVENT_COLUMNS} FROM events WHERE event_id = $1");
        let row: Option<EventRow> = sqlx::query_as(&sql)
            .bind(event_id.to_string())
            .fetch_optional(&self.inner.readers)
            .await
            .map_err(read_error)?;
        row.map(EventRow::into_stored).transpose()
    }

    pub(in crate::journal) async fn event_of_emission(
        &self,
        emission_id: Uuid,
    ) -> Result<Option<Uuid>, JournalError> {
        let event_id: Option<String> =
            sqlx::query_scalar("SELECT event_id FROM emissions WHERE emission_id = $1")
                .bind(emission_id.to_string())
                .fetch_optional(&self.inner.readers)
                .await
                .map_err(read_error)?;
        optional_uuid(event_id, "event id")
    }

    pub(in crate::journal) async fn event_emissions(
        &self,
        event_id: Uuid,
    ) -> Result<Vec<StoredEmission>, JournalError> {
        let sql = format!(
            "SELECT {EMISSION_COLUMNS} FROM emissions WHERE event_id = $1 ORDER BY position"
        );
        let rows = sqlx::query(&sql)
            .bind(event_id.to_string())
            .fetch_all(&self.inner.readers)
            .await
            .map_err(read_error)?;
        rows.iter().map(emission_from_row).collect()
    }

    pub(in crate::journal) async fn tenant_events(
        &self,
        tenant: &str,
        limit: usize,
    ) -> Result<(Vec<EventHeader>, Vec<StoredEmission>), JournalError> {
        // The latest `limit` events, then put back in sequence order.
        let sql = format!(
            "SELECT * FROM ({EVENT_HEADERS} AND e.tenant = $1 ORDER BY e.sequence DESC LIMIT $2) \
             AS latest ORDER BY 8"
        );
        let rows = sqlx::query(&sql)
            .bind(tenant)
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .fetch_all(&self.inner.readers)
            .await
            .map_err(read_error)?;
        let events: Vec<EventHeader> =
            rows.iter().map(header_from_row).collect::<Result<_, _>>()?;
        let Some(first) = events.first() else {
            return Ok((events, Vec::new()));
        };
        let sql = format!(
            "SELECT {EMISSION_COLUMNS} FROM emissions WHERE tenant = $1 AND position >= $2 \
             ORDER BY position"
        );
        let rows = sqlx::query(&sql)
            .bind(tenant)
            .bind(first.position)
            .fetch_all(&self.inner.readers)
            .await
            .map_err(read_error)?;
        let emissions = rows
            .iter()
            .map(emission_from_row)
            .collect::<Result<_, _>>()?;
        Ok((events, emissions))
    }

    pub(in crate::journal) async fn tenant_state(
        &self,
        tenant: &str,
    ) -> Result<Option<TenantState>, JournalError> {
        let rows = sqlx::query(
            "SELECT status, COUNT(*), MAX(sequence) FROM events WHERE tenant = $1 GROUP BY status",
        )
        .bind(tenant)
        .fetch_all(&self.inner.readers)
        .await
        .map_err(read_error)?;
        if rows.is_empty() {
            return Ok(None);
        }
        let mut counts = [0; 4];
        let mut last_sequence = 0;
        for row in &rows {
            let status: String = row.try_get(0).map_err(read_error)?;
            if let Some(index) = EventStatus::ALL.iter().position(|s| s.as_str() == status) {
                counts[index] = count(row.try_get(1).map_err(read_error)?);
            }
            last_sequence = last_sequence.max(row.try_get::<i64, _>(2).map_err(read_error)?);
        }
        let sql = format!(
            "{EVENT_HEADERS} AND e.event_id = (SELECT event_id FROM emissions \
             WHERE tenant = $1 AND status = 'dead' AND replaced_by IS NULL \
             ORDER BY position LIMIT 1)"
        );
        let parked_by = sqlx::query(&sql)
            .bind(tenant)
            .fetch_optional(&self.inner.readers)
            .await
            .map_err(read_error)?
            .as_ref()
            .map(header_from_row)
            .transpose()?;
        Ok(Some(TenantState {
            counts,
            last_sequence,
            parked_by,
        }))
    }

    pub(in crate::journal) async fn operator_actions(
        &self,
        event_id: Option<Uuid>,
        tenant: Option<&str>,
        limit: usize,
    ) -> Result<Vec<OperatorAction>, JournalError> {
        // The latest `limit`, oldest first.
        let sql = format!(
            "SELECT * FROM (SELECT {ACTION_COLUMNS}, id FROM operator_actions \
             WHERE ($1 IS NULL OR event_id = $1) AND ($2 IS NULL OR tenant = $2) \
             ORDER BY id DESC LIMIT $3) AS latest ORDER BY id"
        );
        let rows = sqlx::query(&sql)
            .bind(event_id.map(|id| id.to_string()))
            .bind(tenant)
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .fetch_all(&self.inner.readers)
            .await
            .map_err(read_error)?;
        rows.iter().map(action_from_row).collect()
    }

    pub(in crate::journal) async fn replay_job(
        &self,
        job_id: Uuid,
    ) -> Result<Option<ReplayJob>, JournalError> {
        let sql = format!("SELECT {JOB_COLUMNS} FROM replay_jobs WHERE job_id = $1");
        sqlx::query(&sql)
            .bind(job_id.to_string())
            .fetch_optional(&self.inner.readers)
            .await
            .map_err(read_error)?
            .as_ref()
            .map(job_from_row)
            .transpose()
    }

    pub(in crate::journal) async fn replay_jobs(
        &self,
        running_only: bool,
        limit: usize,
    ) -> Result<Vec<ReplayJob>, JournalError> {
        let sql = format!(
            "SELECT {JOB_COLUMNS} FROM replay_jobs WHERE (NOT $1 OR status = 'running') \
             ORDER BY created_at DESC, job_id DESC LIMIT $2"
        );
        let rows = sqlx::query(&sql)
            .bind(running_only)
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .fetch_all(&self.inner.readers)
            .await
            .map_err(read_error)?;
        rows.iter().map(job_from_row).collect()
    }

    pub(in crate::journal) async fn tenants_with_in_place_replays(
        &self,
    ) -> Result<Vec<String>, JournalError> {
        sqlx::query_scalar(
            "SELECT DISTINCT tenant FROM emissions WHERE status = 'pending' AND place IS NOT NULL",
        )
        .fetch_all(&self.inner.readers)
        .await
        .map_err(read_error)
    }
}

/// Applies one operator write inside the writer's open transaction. A refusal
/// (`Ok(Err(..))`) is decided before anything is written, so it leaves no trace; `Err` is a
/// database failure, which fails the whole group.
pub(super) async fn apply(
    connection: &mut PgConnection,
    write: &OperatorWrite,
) -> Result<Result<OperatorOutcome, OperatorError>, sqlx::Error> {
    let now = crate::journal::operator::stored_time(chrono::Utc::now());
    match write {
        OperatorWrite::Replay { event_id, operator } => {
            Ok(replay(connection, *event_id, Some(operator), None, &now)
                .await?
                .map(OperatorOutcome::Replayed))
        }
        OperatorWrite::Skip { event_id, operator } => {
            skip(connection, *event_id, operator, &now).await
        }
        OperatorWrite::CreateJob(job) => create_job(connection, job, &now).await,
        OperatorWrite::JobBatch { job_id, max } => job_batch(connection, *job_id, *max, &now).await,
        OperatorWrite::CancelJob { job_id, operator } => {
            cancel_job(connection, *job_id, operator, &now).await
        }
        OperatorWrite::RecordWorkflow {
            observation,
            notify,
        } => Ok(Ok(OperatorOutcome::WorkflowRecorded(
            outcomes::record_workflow(connection, observation, *notify).await?,
        ))),
        OperatorWrite::ParkForWorkflow { position, reason } => {
            Ok(Ok(OperatorOutcome::ParkedForWorkflow(
                outcomes::park_for_workflow(connection, *position, reason).await?,
            )))
        }
        OperatorWrite::FinishNotification(finished) => {
            outcomes::finish_notification(connection, finished).await?;
            Ok(Ok(OperatorOutcome::NotificationFinished))
        }
    }
}

/// Records an operator action.
async fn record_action(
    connection: &mut PgConnection,
    now: &str,
    operator: &Operator,
    action: &str,
    subject: ActionSubject<'_>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO operator_actions (at, actor, action, event_id, tenant, emission_id, job_id, \
         reason) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(now)
    .bind(&operator.actor)
    .bind(action)
    .bind(subject.event_id.map(|id| id.to_string()))
    .bind(subject.tenant)
    .bind(subject.emission_id.map(|id| id.to_string()))
    .bind(subject.job_id.map(|id| id.to_string()))
    .bind(operator.reason.as_deref())
    .execute(connection)
    .await?;
    Ok(())
}

/// What an operator action is about.
#[derive(Default)]
struct ActionSubject<'a> {
    event_id: Option<Uuid>,
    tenant: Option<&'a str>,
    emission_id: Option<Uuid>,
    job_id: Option<Uuid>,
}

/// The event's tenant, action and status.
async fn event_facts(
    connection: &mut PgConnection,
    event_id: Uuid,
) -> Result<Option<(String, String, EventStatus)>, sqlx::Error> {
    let facts: Option<(String, String, String)> =
        sqlx::query_as("SELECT tenant, action, status FROM events WHERE event_id = $1")
            .bind(event_id.to_string())
            .fetch_optional(connection)
            .await?;
    facts
        .map(|(tenant, action, status)| {
            decode(&status, "status", &event_id.to_string())
                .map(|status| (tenant, action, status))
                .map_err(|error| sqlx::Error::Decode(Box::new(error)))
        })
        .transpose()
}

/// The event's dead emission nobody replayed or skipped: (position, place).
async fn unresolved_dead(
    connection: &mut PgConnection,
    event_id: Uuid,
) -> Result<Option<(i64, i64)>, sqlx::Error> {
    sqlx::query_as(UNRESOLVED_DEAD_OF_EVENT)
        .bind(event_id.to_string())
        .fetch_optional(connection)
        .await
}

async fn tenant_is_parked(
    connection: &mut PgConnection,
    tenant: &str,
) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(TENANT_IS_PARKED)
        .bind(tenant)
        .fetch_one(connection)
        .await
}

/// A new emission of a stored event; in the dead emission's place when it has one.
async fn replay(
    connection: &mut PgConnection,
    event_id: Uuid,
    operator: Option<&Operator>,
    job: Option<Uuid>,
    now: &str,
) -> Result<Result<Replayed, OperatorError>, sqlx::Error> {
    let Some((tenant, action, _)) = event_facts(connection, event_id).await? else {
        return Ok(Err(OperatorError::EventNotFound(event_id)));
    };
    // The journal's write lock, held since `begin`, orders the writes of every replica (see
    // the module doc of `postgres`): the new emission's position follows every emission
    // committed for the tenant before it, as in the single-writer SQLite journal.
    let dead = unresolved_dead(connection, event_id).await?;
    let emission_id = Uuid::now_v7();
    sqlx::query(
        "INSERT INTO emissions (emission_id, event_id, tenant, replay_of, created_at, place, \
         replay_job) VALUES ($1, $2, $3, $2, $4, $5, $6)",
    )
    .bind(emission_id.to_string())
    .bind(event_id.to_string())
    .bind(&tenant)
    .bind(now)
    .bind(dead.map(|(_, place)| place))
    .bind(job.map(|id| id.to_string()))
    .execute(&mut *connection)
    .await?;
    if let Some((position, _)) = dead {
        sqlx::query("UPDATE emissions SET replaced_by = $1 WHERE position = $2")
            .bind(emission_id.to_string())
            .bind(position)
            .execute(&mut *connection)
            .await?;
    }
    sqlx::query("UPDATE events SET status = 'pending' WHERE event_id = $1")
        .bind(event_id.to_string())
        .execute(&mut *connection)
        .await?;
    if let Some(operator) = operator {
        let subject = ActionSubject {
            event_id: Some(event_id),
            tenant: Some(&tenant),
            emission_id: Some(emission_id),
            job_id: None,
        };
        record_action(connection, now, operator, "replay", subject).await?;
    }
    let tenant_unparked = dead.is_some() && !tenant_is_parked(connection, &tenant).await?;
    Ok(Ok(Replayed {
        event_id,
        tenant,
        action,
        emission_id,
        in_place: dead.is_some(),
        tenant_unparked,
    }))
}

async fn skip(
    connection: &mut PgConnection,
    event_id: Uuid,
    operator: &Operator,
    now: &str,
) -> Result<Result<OperatorOutcome, OperatorError>, sqlx::Error> {
    let Some((tenant, _, status)) = event_facts(connection, event_id).await? else {
        return Ok(Err(OperatorError::EventNotFound(event_id)));
    };
    let Some((position, _)) = unresolved_dead(connection, event_id).await? else {
        return Ok(Err(OperatorError::NotDead { event_id, status }));
    };
    let emission_id: String = sqlx::query_scalar(
        "UPDATE emissions SET status = 'skipped', finished_at = $1 WHERE position = $2 \
         RETURNING emission_id",
    )
    .bind(now)
    .bind(position)
    .fetch_one(&mut *connection)
    .await?;
    let emission_id =
        Uuid::parse_str(&emission_id).map_err(|error| sqlx::Error::Decode(Box::new(error)))?;
    sqlx::query("UPDATE events SET status = 'skipped' WHERE event_id = $1")
        .bind(event_id.to_string())
        .execute(&mut *connection)
        .await?;
    let subject = ActionSubject {
        event_id: Some(event_id),
        tenant: Some(&tenant),
        emission_id: Some(emission_id),
        job_id: None,
    };
    record_action(connection, now, operator, "skip", subject).await?;
    let tenant_parked = tenant_is_parked(connection, &tenant).await?;
    Ok(Ok(OperatorOutcome::Skipped {
        tenant,
        emission_id,
        tenant_parked,
    }))
}

/// Reads a job inside the transaction.
async fn load_job(
    connection: &mut PgConnection,
    job_id: Uuid,
) -> Result<Option<ReplayJob>, sqlx::Error> {
    let sql = format!("SELECT {JOB_COLUMNS} FROM replay_jobs WHERE job_id = $1");
    let row = sqlx::query(&sql)
        .bind(job_id.to_string())
        .fetch_optional(connection)
        .await?;
    row.as_ref()
        .map(job_from_row)
        .transpose()
        .map_err(|error| sqlx::Error::Decode(Box::new(error)))
}

/// A job that must exist and still run.
async fn running_job(
    connection: &mut PgConnection,
    job_id: Uuid,
) -> Result<Result<ReplayJob, OperatorError>, sqlx::Error> {
    Ok(match load_job(connection, job_id).await? {
        None => Err(OperatorError::JobNotFound(job_id)),
        Some(job) if job.status.is_final() => Err(OperatorError::JobFinished {
            job_id,
            status: job.status,
        }),
        Some(job) => Ok(job),
    })
}

async fn create_job(
    connection: &mut PgConnection,
    job: &NewReplayJob,
    now: &str,
) -> Result<Result<OperatorOutcome, OperatorError>, sqlx::Error> {
    let selected = format!(
        "FROM emissions AS m JOIN events AS e ON e.event_id = m.event_id \
         WHERE m.replay_of IS NULL AND {QUERY_CONDITIONS}"
    );
    let total: i64 = bind_query(
        sqlx::query(&format!("SELECT COUNT(*) {selected}")),
        &job.query,
    )
    .fetch_one(&mut *connection)
    .await?
    .try_get(0)?;
    let total = count(total);
    if let Some(expected) = job.expected_count.filter(|expected| *expected != total) {
        return Ok(Err(OperatorError::CountChanged {
            count: total,
            expected,
        }));
    }
    let (status, finished_at) = if total == 0 {
        ("completed", Some(now))
    } else {
        ("running", None)
    };
    sqlx::query(
        "INSERT INTO replay_jobs (job_id, status, filter, rate, actor, reason, created_at, \
         finished_at, total) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(job.job_id.to_string())
    .bind(status)
    .bind(&job.filter)
    .bind(job.rate)
    .bind(&job.operator.actor)
    .bind(job.operator.reason.as_deref())
    .bind(now)
    .bind(finished_at)
    .bind(i64::try_from(total).unwrap_or(i64::MAX))
    .execute(&mut *connection)
    .await?;
    let insert = format!(
        "INSERT INTO replay_job_events (job_id, ordinal, event_id) \
         SELECT $8, ROW_NUMBER() OVER (ORDER BY m.position), e.event_id {selected}"
    );
    bind_query(sqlx::query(&insert), &job.query)
        .bind(job.job_id.to_string())
        .execute(&mut *connection)
        .await?;
    let subject = ActionSubject {
        job_id: Some(job.job_id),
        ..ActionSubject::default()
    };
    record_action(connection, now, &job.operator, "bulk-replay", subject).await?;
    Ok(load_job(connection, job.job_id)
        .await?
        .map(OperatorOutcome::JobCreated)
        .ok_or(OperatorError::JobNotFound(job.job_id)))
}

async fn job_batch(
    connection: &mut PgConnection,
    job_id: Uuid,
    max: usize,
    now: &str,
) -> Result<Result<OperatorOutcome, OperatorError>, sqlx::Error> {
    let job = match running_job(connection, job_id).await? {
        Ok(job) => job,
        Err(refusal) => return Ok(Err(refusal)),
    };
    let events: Vec<String> = sqlx::query_scalar(
        "SELECT event_id FROM replay_job_events WHERE job_id = $1 AND ordinal > $2 \
         ORDER BY ordinal LIMIT $3",
    )
    .bind(job_id.to_string())
    .bind(i64::try_from(job.replayed).unwrap_or(i64::MAX))
    .bind(i64::try_from(max.max(1)).unwrap_or(i64::MAX))
    .fetch_all(&mut *connection)
    .await?;
    let mut unparked = Vec::new();
    for event_id in &events {
        let event_id =
            Uuid::parse_str(event_id).map_err(|error| sqlx::Error::Decode(Box::new(error)))?;
        // Events are never deleted, so every event of the job is still there.
        if let Ok(replayed) = replay(connection, event_id, None, Some(job_id), now).await? {
            if replayed.tenant_unparked {
                unparked.push(replayed.tenant);
            }
        }
    }
    let replayed = job.replayed + events.len() as u64;
    let done = events.is_empty() || replayed >= job.total;
    sqlx::query(
        "UPDATE replay_jobs SET replayed = $1, status = $2, finished_at = $3 WHERE job_id = $4",
    )
    .bind(i64::try_from(replayed).unwrap_or(i64::MAX))
    .bind(if done { "completed" } else { "running" })
    .bind(done.then_some(now))
    .bind(job_id.to_string())
    .execute(&mut *connection)
    .await?;
    Ok(load_job(connection, job_id)
        .await?
        .map(|job| OperatorOutcome::JobProgress { job, unparked })
        .ok_or(OperatorError::JobNotFound(job_id)))
}

async fn cancel_job(
    connection: &mut PgConnection,
    job_id: Uuid,
    operator: &Operator,
    now: &str,
) -> Result<Result<OperatorOutcome, OperatorError>, sqlx::Error> {
    if let Err(refusal) = running_job(connection, job_id).await? {
        return Ok(Err(refusal));
    }
    sqlx::query("UPDATE replay_jobs SET status = 'cancelled', finished_at = $1 WHERE job_id = $2")
        .bind(now)
        .bind(job_id.to_string())
        .execute(&mut *connection)
        .await?;
    let subject = ActionSubject {
        job_id: Some(job_id),
        ..ActionSubject::default()
    };
    record_action(connection, now, operator, "cancel-replay", subject).await?;
    Ok(load_job(connection, job_id)
        .await?
        .map(OperatorOutcome::JobCancelled)
        .ok_or(OperatorError::JobNotFound(job_id)))
}
