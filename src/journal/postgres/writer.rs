//! The group-commit store on the write connection. Each kind of row goes in with one statement
//! over arrays (`UNNEST`), whatever the group's size, and statements that can share a round
//! trip do: a group of appends costs four round trips however many requests it holds.
//!
//! Every write transaction of every replica first takes one transaction-level advisory lock
//! ([`BEGIN_LOCKED`]), so the journal's writes are serialized across replicas. That is what
//! makes emission positions (an identity drawn at INSERT) visible in commit order, which the
//! dispatchers' paging by `position > cursor` relies on (see `begin`); it also means that once
//! the lock is held, every earlier group of every replica has committed and no other group
//! writes until this one commits. An append group, in its READ COMMITTED transaction:
//! 1. `BEGIN` and the lock, in one simple-protocol message;
//! 2. one statement reads the tenants' last sequences and which of the group's origins are
//!    stored (its snapshot, taken after the lock, holds every earlier commit);
//! 3. plan in Rust: duplicate, conflict, or new with the tenant's next sequence;
//! 4. one statement inserts the events and their outbox rows, sets the counters and `NOTIFY`s
//!    the commits channel (data-modifying CTEs: all or nothing);
//! 5. `COMMIT`.
//!
//! The unique constraints stay the last word: should anything write without the lock, a
//! repeated (source, id) or (tenant, sequence) aborts the group, whose callers get an error and
//! retry; nothing is acknowledged that was not committed.

use std::borrow::Cow;
use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{Connection, Executor, Row};
use uuid::Uuid;

use super::{connect_once, COMMITS_CHANNEL};
use crate::journal::group_commit::{GroupStore, RequestOutcome};
use crate::journal::operator::{OperatorError, OperatorOutcome, OperatorWrite};
use crate::journal::{AppendStatus, Appended, AttemptRecord, EmissionStatus, NewEvent};

/// `BEGIN` and the journal's write lock, in one simple-protocol message (one round trip; nothing
/// is bound). The lock is transaction-level, so COMMIT or ROLLBACK releases it; its key is
/// `i64::from_be_bytes(*b"tgjournl")`, a constant no other client of the database uses. READ
/// COMMITTED whatever the server's default: each statement must see every commit made before
/// the lock was granted (see the module doc).
const BEGIN_LOCKED: &str = "BEGIN ISOLATION LEVEL READ COMMITTED; \
     SELECT pg_advisory_xact_lock(8387789857945185900)";

/// The statements the writer prepares, by name, with their number of parameters: exported so
/// that tests/it/journal_postgres.rs can hold their generic plans to index lookups under
/// [`WRITE_PLANNER_SETTINGS`].
pub const WRITE_STATEMENTS: [(&str, &str, usize); 3] = [
    ("group state", SELECT_GROUP_STATE, 3),
    ("insert group", INSERT_GROUP, 15),
    ("record attempts", RECORD_ATTEMPTS, 16),
];

/// The write connection's planner settings, sent as startup options (`write_connect_options`).
/// Every statement the writer runs finds rows by the keys it binds (a group's origins, tenants,
/// positions and event ids), so one index lookup per key is the right plan at any size. A plan
/// is chosen once per connection, though: after five custom plans a prepared statement keeps a
/// generic one (`choose_custom_plan` in PostgreSQL's src/backend/utils/cache/plancache.c) until
/// an invalidation such as an ANALYZE of its tables. Chosen while the journal was young (a fresh
/// database, tables of a few hundred rows), that plan was a sequential scan under a hash join,
/// and it stayed one as the tables grew: on a database filled from empty, a group's delivery
/// records took 5.5 ms at 12,000 events instead of 1.2 ms, and the group-state read 2.4 ms
/// instead of 0.14 ms (docs/benchmarks.md, "Ingest by store"). Turned off, these paths cost
/// `disable_cost` (`cost_seqscan` and the join costing in src/backend/optimizer/path/costsize.c),
/// so the planner takes the index lookups whatever the statistics say.
pub const WRITE_PLANNER_SETTINGS: [(&str, &str); 3] = [
    ("enable_seqscan", "off"),
    ("enable_hashjoin", "off"),
    ("enable_mergejoin", "off"),
];

/// The options of the write connection: the journal's, plus [`WRITE_PLANNER_SETTINGS`].
pub(super) fn write_connect_options(connect: &PgConnectOptions) -> PgConnectOptions {
    connect.clone().options(WRITE_PLANNER_SETTINGS)
}

/// The group's known state in one statement: kind `s` rows are the tenants' last sequences
/// (tenant, last sequence); kind `o` rows are the stored events among the group's origins
/// (source, id, event id, sequence, content hash), one index search each on `events_origin`.
const SELECT_GROUP_STATE: &str = "SELECT 's', s.tenant, NULL, NULL, s.last_sequence, NULL \
     FROM tenant_sequences AS s WHERE s.tenant = ANY($1::text[]) \
     UNION ALL \
     SELECT 'o', e.source, e.id, e.event_id, e.sequence, e.content_hash \
     FROM UNNEST($2::text[], $3::text[]) AS o (source, id) \
     JOIN events AS e ON e.source = o.source AND e.id = o.id";

/// The planned new events, their first emissions (the transactional outbox) and the tenants'
/// counters, with the commit notification (delivered to listeners when the transaction
/// commits), as one statement. Positions are drawn in input order, which is sequence order
/// within a tenant. The emissions' foreign key is checked at the end of the statement, when
/// the events are in.
const INSERT_GROUP: &str = "WITH new_events AS (\
     INSERT INTO events (event_id, source, id, event_type, tenant, \
     action, sequence, time, received_at, document, content_hash, lifecycle) \
     SELECT u.event_id, u.source, u.id, u.event_type, u.tenant, u.action, u.sequence, u.time, \
     $9, u.document, u.content_hash, u.lifecycle \
     FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], \
     $7::bigint[], $8::text[], $10::text[], $11::text[], $12::text[]) \
     AS u (event_id, source, id, event_type, tenant, action, sequence, time, document, \
     content_hash, lifecycle)), \
     new_emissions AS (\
     INSERT INTO emissions (emission_id, event_id, tenant, created_at) \
     SELECT u.event_id, u.event_id, u.tenant, $9 \
     FROM UNNEST($1::text[], $5::text[]) WITH ORDINALITY AS u (event_id, tenant, ordinal) \
     ORDER BY u.ordinal), \
     counters AS (\
     INSERT INTO tenant_sequences AS s (tenant, last_sequence) \
     SELECT * FROM UNNEST($13::text[], $14::bigint[]) \
     ON CONFLICT (tenant) DO UPDATE SET last_sequence = EXCLUDED.last_sequence) \
     SELECT pg_notify($15, '')";

/// A group's delivery records as one statement: the attempts ($1-$8), the emissions' state
/// after them ($9-$14, one row per emission: see `write_attempts`) and the final status of
/// their events ($15-$16, which follows their emission's once it is final), and each tenant's
/// newest delivery (`tenant_deliveries`, from $1, $4 and $6: one row per tenant, since an
/// upsert may change a row only once per statement, "ON CONFLICT DO UPDATE command cannot affect
/// row a second time" in `ExecOnConflictUpdate`, src/backend/executor/nodeModifyTable.c; moved
/// only forward, so two replicas' records of one tenant leave the later one; the contract
/// `the_newest_delivery_is_the_one_that_finished_last` records two of one tenant at once).
/// A late record from a replica that just lost the tenant's bucket can carry the attempt number
/// the new owner records too (both read the same `attempts`): the first one stands, and the
/// conflict must not fail the whole group (docs/dispatch.md, "Ownership").
const RECORD_ATTEMPTS: &str = "WITH attempts AS (\
     INSERT INTO delivery_attempts (position, attempt, started_at, \
     finished_at, sink, outcome, status_code, error) \
     SELECT * FROM UNNEST($1::bigint[], $2::integer[], $3::text[], $4::text[], $5::text[], \
     $6::text[], $7::integer[], $8::text[]) \
     ON CONFLICT (position, attempt) DO NOTHING), \
     emission_state AS (\
     UPDATE emissions AS m SET status = u.status, \
     attempts = u.attempts, first_attempt_at = COALESCE(m.first_attempt_at, u.started_at), \
     finished_at = u.finished_at, last_error = COALESCE(u.error, m.last_error) \
     FROM UNNEST($9::bigint[], $10::text[], $11::bigint[], $12::text[], $13::text[], \
     $14::text[]) AS u (position, status, attempts, started_at, finished_at, error) \
     WHERE m.position = u.position), \
     event_state AS (\
     UPDATE events AS e SET status = u.status \
     FROM UNNEST($15::text[], $16::text[]) AS u (event_id, status) \
     WHERE e.event_id = u.event_id), \
     tenant_delivery AS (\
     INSERT INTO tenant_deliveries AS td (tenant, position, delivered_at) \
     SELECT DISTINCT ON (m.tenant) m.tenant, d.position, d.finished_at \
     FROM UNNEST($1::bigint[], $4::text[], $6::text[]) AS d (position, finished_at, outcome) \
     JOIN emissions AS m ON m.position = d.position WHERE d.outcome = 'delivered' \
     ORDER BY m.tenant, d.finished_at DESC, d.position DESC \
     ON CONFLICT (tenant) DO UPDATE SET position = excluded.position, \
     delivered_at = excluded.delivered_at \
     WHERE (excluded.delivered_at, excluded.position) > (td.delivered_at, td.position)) \
     SELECT 1";

/// What the journal knows of an event with a given (source, id): stored before this group, or
/// accepted earlier in it.
struct KnownOrigin<'a> {
    event_id: Uuid,
    sequence: i64,
    /// Borrowed from the request for events of this group; owned when read from the database.
    content_hash: Cow<'a, str>,
}

/// A new event with the values the journal gives it.
struct PlannedInsert<'a> {
    event: &'a NewEvent,
    event_id: Uuid,
    sequence: i64,
}

/// One emission's state after the group's attempts: a row of `UPDATE_EMISSIONS`.
struct EmissionUpdate<'a> {
    /// The emission.
    position: i64,
    /// Its state after its last attempt of the group.
    status: &'a str,
    /// Its last attempt's number.
    attempts: i64,
    /// When its first attempt of the group started (kept only if none was recorded before).
    started_at: String,
    /// When it became final, if it did.
    finished_at: Option<String>,
    /// The last error of the group's attempts (an earlier one is kept when none is given).
    error: Option<&'a str>,
}

/// The writer's side of the PostgreSQL journal: its dedicated write connection. It keeps no
/// state across groups: other replicas write too, so the database is the only truth.
pub(super) struct PostgresWriter {
    /// The write connection; `None` after a failure that may have broken it, reopened lazily
    /// at the next group.
    connection: Option<PgConnection>,
    /// How to reopen the connection.
    connect_options: PgConnectOptions,
    /// How long a reconnect may take before the group fails (a server gone silent must turn
    /// into a 503, not a hung writer).
    connect_timeout: Duration,
    /// Whether `BEGIN` succeeded and neither `COMMIT` nor `ROLLBACK` has run since.
    in_transaction: bool,
}

impl PostgresWriter {
    pub(super) fn new(
        connection: PgConnection,
        connect_options: PgConnectOptions,
        connect_timeout: Duration,
    ) -> Self {
        PostgresWriter {
            connection: Some(connection),
            connect_options,
            connect_timeout,
            in_transaction: false,
        }
    }

    /// The write connection, reopened if a previous failure dropped it.
    async fn connection(&mut self) -> Result<&mut PgConnection, sqlx::Error> {
        let connection = match self.connection.take() {
            Some(connection) => connection,
            None => {
                tracing::info!("reopening the journal write connection");
                connect_once(&self.connect_options, self.connect_timeout).await?
            }
        };
        Ok(self.connection.insert(connection))
    }

    /// The connection of the open transaction. Never a reconnect: a fresh connection has no
    /// transaction, and a COMMIT there would acknowledge what was never written.
    fn transaction_connection(&mut self) -> Result<&mut PgConnection, sqlx::Error> {
        self.connection
            .as_mut()
            .filter(|_| self.in_transaction)
            .ok_or_else(|| {
                sqlx::Error::Protocol("the journal write transaction is not open".into())
            })
    }
}

/// The tenants' last sequences (a tenant without a row has none yet) and the stored events
/// among `origins`, keyed by (source, id), as of every commit before this group's lock.
async fn group_state<'a>(
    connection: &mut PgConnection,
    tenants: &BTreeSet<&str>,
    origins: &[(&'a str, &'a str)],
) -> Result<
    (
        HashMap<(&'a str, &'a str), KnownOrigin<'a>>,
        HashMap<String, i64>,
    ),
    sqlx::Error,
> {
    let tenants: Vec<&str> = tenants.iter().copied().collect();
    let sources: Vec<&str> = origins.iter().map(|o| o.0).collect();
    let ids: Vec<&str> = origins.iter().map(|o| o.1).collect();
    let rows = sqlx::query(SELECT_GROUP_STATE)
        .bind(tenants)
        .bind(sources)
        .bind(ids)
        .fetch_all(connection)
        .await?;
    let mut known = HashMap::new();
    let mut last_sequences = HashMap::new();
    for row in rows {
        let kind: &str = row.try_get(0)?;
        if kind == "s" {
            last_sequences.insert(row.try_get(1)?, row.try_get(4)?);
            continue;
        }
        let (source, id): (&str, &str) = (row.try_get(1)?, row.try_get(2)?);
        // Key the (rare) stored origins by the group's own strings, so planning borrows them.
        let Some(key) = origins.iter().find(|(s, i)| *s == source && *i == id) else {
            continue;
        };
        let event_id: &str = row.try_get(3)?;
        known.insert(
            *key,
            KnownOrigin {
                event_id: Uuid::parse_str(event_id)
                    .map_err(|error| sqlx::Error::Decode(Box::new(error)))?,
                sequence: row.try_get(4)?,
                content_hash: Cow::Owned(row.try_get(5)?),
            },
        );
    }
    Ok((known, last_sequences))
}

/// Decides, in Rust, what becomes of every request of the group: each event is a duplicate or
/// a conflict of a known origin, or new with the tenant's next sequence after `last_sequences`.
/// A request with a conflict contributes nothing (no rows, no sequence numbers). Returns the
/// outcomes, the inserts, and every tenant's last sequence after the group.
fn plan<'a>(
    requests: &[&'a [NewEvent]],
    mut known: HashMap<(&'a str, &'a str), KnownOrigin<'a>>,
    mut last_sequences: HashMap<String, i64>,
) -> (
    Vec<RequestOutcome>,
    Vec<PlannedInsert<'a>>,
    HashMap<String, i64>,
) {
    let mut outcomes = Vec::with_capacity(requests.len());
    let mut inserts = Vec::new();
    for events in requests {
        let mut appended = Vec::with_capacity(events.len());
        let mut request_inserts: Vec<PlannedInsert<'a>> = Vec::new();
        // This request's sequence numbers, applied only if the whole request stands.
        let mut request_sequences: HashMap<&str, i64> = HashMap::new();
        let mut conflict = None;
        for (index, event) in events.iter().enumerate() {
            let key = (event.source.as_str(), event.id.as_str());
            if let Some(existing) = known.get(&key) {
                if existing.content_hash == event.content_hash {
                    appended.push(Appended {
                        event_id: existing.event_id,
                        sequence: existing.sequence,
                        status: AppendStatus::Duplicate,
                    });
                    continue;
                }
                conflict = Some(RequestOutcome::Conflict {
                    index,
                    event_id: existing.event_id,
                });
                break;
            }
            let tenant = event.tenant.as_str();
            let last = request_sequences
                .get(tenant)
                .or_else(|| last_sequences.get(tenant))
                .copied()
                .unwrap_or(0);
            let planned = PlannedInsert {
                event,
                event_id: Uuid::now_v7(),
                sequence: last + 1,
            };
            request_sequences.insert(tenant, planned.sequence);
            // Later events of the group (this request's too) see it as stored.
            known.insert(
                key,
                KnownOrigin {
                    event_id: planned.event_id,
                    sequence: planned.sequence,
                    content_hash: Cow::Borrowed(&event.content_hash),
                },
            );
            appended.push(Appended {
                event_id: planned.event_id,
                sequence: planned.sequence,
                status: AppendStatus::Accepted,
            });
            request_inserts.push(planned);
        }
        match conflict {
            Some(conflict) => {
                // The request stores nothing: forget what it had planned.
                for planned in &request_inserts {
                    known.remove(&(planned.event.source.as_str(), planned.event.id.as_str()));
                }
                outcomes.push(conflict);
            }
            None => {
                for (tenant, sequence) in request_sequences {
                    last_sequences.insert(tenant.to_owned(), sequence);
                }
                inserts.extend(request_inserts);
                outcomes.push(RequestOutcome::Stored(appended));
            }
        }
    }
    (outcomes, inserts, last_sequences)
}

/// Inserts the planned events with their first emissions, sets the counters of the tenants
/// whose last sequence moved, and notifies [`COMMITS_CHANNEL`]: one statement.
async fn insert_group(
    connection: &mut PgConnection,
    inserts: &[PlannedInsert<'_>],
    counters: (Vec<String>, Vec<i64>),
    received_at: &str,
) -> Result<(), sqlx::Error> {
    fn text<'a>(
        inserts: &'a [PlannedInsert<'a>],
        field: impl Fn(&'a NewEvent) -> &'a str,
    ) -> Vec<&'a str> {
        inserts.iter().map(|p| field(p.event)).collect()
    }
    let event_ids: Vec<String> = inserts.iter().map(|p| p.event_id.to_string()).collect();
    sqlx::query(INSERT_GROUP)
        .bind(&event_ids)
        .bind(text(inserts, |e| &e.source))
        .bind(text(inserts, |e| &e.id))
        .bind(text(inserts, |e| &e.event_type))
        .bind(text(inserts, |e| &e.tenant))
        .bind(text(inserts, |e| &e.action))
        .bind(inserts.iter().map(|p| p.sequence).collect::<Vec<i64>>())
        .bind(
            inserts
                .iter()
                .map(|p| p.event.time.as_deref())
                .collect::<Vec<Option<&str>>>(),
        )
        .bind(received_at)
        .bind(text(inserts, |e| &e.document))
        .bind(text(inserts, |e| &e.content_hash))
        .bind(text(inserts, |e| &e.lifecycle))
        .bind(counters.0)
        .bind(counters.1)
        .bind(COMMITS_CHANNEL)
        .execute(connection)
        .await
        .map(drop)
}

/// Notifies [`COMMITS_CHANNEL`]; delivered to listeners when the transaction commits.
async fn notify_commit(connection: &mut PgConnection) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_notify($1, '')")
        .bind(COMMITS_CHANNEL)
        .execute(connection)
        .await
        .map(drop)
}

impl GroupStore for PostgresWriter {
    async fn begin(&mut self) -> Result<(), sqlx::Error> {
        let connection = self.connection().await?;
        // READ COMMITTED whatever the server's default: every statement must see the commits
        // of the replicas whose tenant locks it waited for (see the module doc).
        // The store's write lock, held until COMMIT: emission positions (an identity) are drawn
        // at INSERT, and the dispatchers page the outbox by `position > cursor`. Without it one
        // replica's group could draw position p, another's draw p + 1 and commit first, a
        // dispatcher pass p, and p commit behind its cursor: never delivered, and its tenant's
        // later events sent before it (found by tests/it/replicas.rs). Serialized, positions
        // become visible in commit order.
        // A bare `&str` has no arguments, so sqlx sends it with the simple query protocol, which
        // runs both statements (`PgConnection::run` in sqlx-postgres' connection/executor.rs).
        let begun = connection.execute(BEGIN_LOCKED).await.map(drop);
        match begun {
            Ok(()) => {
                self.in_transaction = true;
                Ok(())
            }
            Err(error) => {
                // Most likely a broken connection: the next group opens a fresh one (dropping
                // this one ends a begun transaction on the server side).
                self.connection = None;
                Err(error)
            }
        }
    }

    async fn write_requests(
        &mut self,
        requests: &[&[NewEvent]],
    ) -> Result<Vec<RequestOutcome>, sqlx::Error> {
        let events = || requests.iter().flat_map(|events| events.iter());
        let tenants: BTreeSet<&str> = events().map(|e| e.tenant.as_str()).collect();
        let origins: Vec<(&str, &str)> = events()
            .map(|e| (e.source.as_str(), e.id.as_str()))
            .collect();
        let received_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
        let connection = self.transaction_connection()?;
        let (known, before) = group_state(connection, &tenants, &origins).await?;
        let (outcomes, inserts, after) = plan(requests, known, before.clone());
        if inserts.is_empty() {
            return Ok(outcomes);
        }
        let counters = after
            .into_iter()
            .filter(|(tenant, last)| before.get(tenant) != Some(last))
            .unzip();
        insert_group(connection, &inserts, counters, &received_at).await?;
        Ok(outcomes)
    }

    async fn write_attempts(&mut self, attempts: &[&AttemptRecord]) -> Result<(), sqlx::Error> {
        let connection = self.transaction_connection()?;
        let time = |t: &chrono::DateTime<chrono::Utc>| {
            t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
        };
        // One row per emission: an UPDATE ... FROM with two rows for one target applies only
        // one of them, chosen by the plan. The emission ends in its last record's state; its
        // first attempt started with its first record; its last error is the last one given.
        let mut emissions: Vec<EmissionUpdate<'_>> = Vec::new();
        let mut index: HashMap<i64, usize> = HashMap::new();
        for a in attempts {
            let finished_at =
                (a.emission_status != EmissionStatus::Pending).then(|| time(&a.finished_at));
            match index.get(&a.position) {
                Some(&i) => {
                    let entry = &mut emissions[i];
                    entry.status = a.emission_status.as_str();
                    entry.attempts = i64::from(a.attempt);
                    entry.finished_at = finished_at;
                    entry.error = a.error.as_deref().or(entry.error);
                }
                None => {
                    index.insert(a.position, emissions.len());
                    emissions.push(EmissionUpdate {
                        position: a.position,
                        status: a.emission_status.as_str(),
                        attempts: i64::from(a.attempt),
                        started_at: time(&a.started_at),
                        finished_at,
                        error: a.error.as_deref(),
                    });
                }
            }
        }
        // Likewise one row per event: its last final state in the group.
        let mut finals: HashMap<Uuid, &str> = HashMap::new();
        for a in attempts {
            if a.emission_status != EmissionStatus::Pending {
                finals.insert(a.event_id, a.emission_status.as_str());
            }
        }
        let (final_events, final_statuses): (Vec<String>, Vec<&str>) = finals
            .into_iter()
            .map(|(event_id, status)| (event_id.to_string(), status))
            .unzip();
        sqlx::query(RECORD_ATTEMPTS)
            .bind(attempts.iter().map(|a| a.position).collect::<Vec<i64>>())
            .bind(
                attempts
                    .iter()
                    .map(|a| i32::try_from(a.attempt).unwrap_or(i32::MAX))
                    .collect::<Vec<i32>>(),
            )
            .bind(
                attempts
                    .iter()
                    .map(|a| time(&a.started_at))
                    .collect::<Vec<_>>(),
            )
            .bind(
                attempts
                    .iter()
                    .map(|a| time(&a.finished_at))
                    .collect::<Vec<_>>(),
            )
            .bind(attempts.iter().map(|a| a.sink).collect::<Vec<&str>>())
            .bind(
                attempts
                    .iter()
                    .map(|a| a.outcome.as_str())
                    .collect::<Vec<&str>>(),
            )
            .bind(
                attempts
                    .iter()
                    .map(|a| a.status_code.map(i32::from))
                    .collect::<Vec<Option<i32>>>(),
            )
            .bind(
                attempts
                    .iter()
                    .map(|a| a.error.as_deref())
                    .collect::<Vec<Option<&str>>>(),
            )
            .bind(emissions.iter().map(|e| e.position).collect::<Vec<i64>>())
            .bind(emissions.iter().map(|e| e.status).collect::<Vec<&str>>())
            .bind(emissions.iter().map(|e| e.attempts).collect::<Vec<i64>>())
            .bind(
                emissions
                    .iter()
                    .map(|e| e.started_at.as_str())
                    .collect::<Vec<&str>>(),
            )
            .bind(
                emissions
                    .iter()
                    .map(|e| e.finished_at.as_deref())
                    .collect::<Vec<Option<&str>>>(),
            )
            .bind(
                emissions
                    .iter()
                    .map(|e| e.error)
                    .collect::<Vec<Option<&str>>>(),
            )
            .bind(final_events)
            .bind(final_statuses)
            .execute(&mut *connection)
            .await?;
        // Only with await-workflow: a delivered emission whose Workflow its tenant waits for.
        for a in attempts
            .iter()
            .filter(|a| a.awaits_workflow && a.emission_status == EmissionStatus::Delivered)
        {
            crate::journal::outcomes::postgres::record_wait(
                &mut *connection,
                a.position,
                &time(&a.finished_at),
            )
            .await?;
        }
        Ok(())
    }

    async fn write_operations(
        &mut self,
        operations: &[&OperatorWrite],
    ) -> Result<Vec<Result<OperatorOutcome, OperatorError>>, sqlx::Error> {
        let connection = self.transaction_connection()?;
        let mut outcomes = Vec::with_capacity(operations.len());
        for operation in operations {
            outcomes.push(super::operator::apply(connection, operation).await?);
        }
        let replays = outcomes.iter().any(|outcome| {
            matches!(
                outcome,
                Ok(OperatorOutcome::Replayed(_) | OperatorOutcome::JobProgress { .. })
            )
        });
        if replays {
            notify_commit(connection).await?;
        }
        Ok(outcomes)
    }

    async fn commit(&mut self) -> Result<(), sqlx::Error> {
        let connection = self.transaction_connection()?;
        sqlx::query("COMMIT").execute(connection).await?;
        self.in_transaction = false;
        Ok(())
    }

    async fn rollback(&mut self) {
        if !std::mem::take(&mut self.in_transaction) {
            return;
        }
        let Some(connection) = self.connection.as_mut() else {
            return;
        };
        if let Err(error) = sqlx::query("ROLLBACK").execute(connection).await {
            // The connection is likely gone; dropping it ends the transaction on the server
            // side, and the next group opens a fresh one.
            tracing::warn!(%error, "journal rollback failed; reopening the write connection");
            self.connection = None;
        }
    }

    async fn close(self) {
        if let Some(connection) = self.connection {
            if let Err(error) = connection.close().await {
                tracing::warn!(%error, "closing the journal write connection failed");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::BEGIN_LOCKED;

    /// The key written out in `BEGIN_LOCKED` is the documented one, the same on every replica.
    #[test]
    fn the_write_lock_key_is_tgjournl() {
        let key = i64::from_be_bytes(*b"tgjournl").to_string();
        assert!(
            BEGIN_LOCKED.ends_with(&format!("pg_advisory_xact_lock({key})")),
            "{BEGIN_LOCKED}"
        );
    }
}
