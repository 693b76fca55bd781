//! The group-commit writer: one task per journal that owns the write connection and turns a
//! stream of append requests into few, large transactions.
//!
//! Why: a durable commit costs one fsync, and a single-event request per fsync caps the gateway
//! at a few hundred events per second. Here the writer takes the first waiting request, drains
//! whatever else is already queued (up to `max_group_events` events), writes them all in one
//! transaction and answers every caller after the one commit. Under load, groups grow by
//! themselves; when idle, a lone request is committed at once (no timer, no added latency).
//!
//! Each request stays atomic inside the shared transaction (the backend's business, see
//! [`GroupStore::write_requests`]), so one request's conflict never affects its neighbours. A
//! database failure fails the whole group (nothing of it is stored) and the writer carries on
//! with the next one.
//!
//! Two queues feed the writer: ingest's appends, bounded by the bytes they hold (an append over
//! the bound is refused at once, which ingest answers with 429), and the gateway's own writes
//! (delivery records, operator writes), bounded by count (a full queue makes the dispatcher
//! wait). So the gateway's bookkeeping never takes room from ingest: a dispatcher catching up on
//! a backlog queues one record per delivered event, and those once made ingest refuse events
//! while a few clients were connected. Each queue is committed in its own order.
//!
//! The loop is backend-neutral: a backend supplies the statements through [`GroupStore`].

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use tokio::sync::{mpsc, oneshot, watch, Mutex, Notify};
use tokio::task::JoinHandle;
use uuid::Uuid;

use super::operator::{OperatorError, OperatorOutcome, OperatorWrite};
use super::{AppendError, AppendStatus, Appended, AttemptRecord, CommitStats, NewEvent};

/// What became of one request inside a group transaction (before the commit).
pub(crate) enum RequestOutcome {
    /// Every event is accepted or a duplicate; one entry per event, in request order.
    Stored(Vec<Appended>),
    /// An event conflicts with a stored one; the request's writes were undone.
    Conflict {
        /// Position of the conflicting event in the request.
        index: usize,
        /// The stored event it conflicts with.
        event_id: Uuid,
    },
}

/// The backend side of group commit: the statements of one shared transaction.
///
/// The writer calls `begin`, then `write_requests` with every request of the group, then
/// `commit`; on any error it calls `rollback` and fails the whole group. Methods return `Send`
/// futures so the writer can run as a spawned task.
pub(crate) trait GroupStore: Send + 'static {
    /// Starts the group's transaction, taking the store's write lock.
    fn begin(&mut self) -> impl Future<Output = Result<(), sqlx::Error>> + Send;

    /// Writes every append request inside the open transaction, in order, each one atomically:
    /// a request with a conflict must leave no trace and is an `Ok(Conflict)` entry, while the
    /// other requests are still written. One outcome per request, in order. `Err` is reserved
    /// for database failures. Taking the whole group lets a backend batch its statements.
    fn write_requests(
        &mut self,
        requests: &[&[NewEvent]],
    ) -> impl Future<Output = Result<Vec<RequestOutcome>, sqlx::Error>> + Send;

    /// Writes the group's delivery attempts and the emission states they lead to. They cannot
    /// conflict: only a database failure (which fails the group) stops them.
    fn write_attempts(
        &mut self,
        attempts: &[&AttemptRecord],
    ) -> impl Future<Output = Result<(), sqlx::Error>> + Send;

    /// Applies the group's operator writes (replays, skips, replay jobs), each atomically: a
    /// refusal (`Ok(Err(..))`) must leave no trace. One result per write, in order; `Err` is
    /// reserved for database failures.
    fn write_operations(
        &mut self,
        operations: &[&OperatorWrite],
    ) -> impl Future<Output = Result<Vec<Result<OperatorOutcome, OperatorError>>, sqlx::Error>> + Send;

    /// Commits the group durably.
    fn commit(&mut self) -> impl Future<Output = Result<(), sqlx::Error>> + Send;

    /// Undoes whatever of the group is still open after a failure and leaves the store ready for
    /// the next `begin` (reconnecting if it has to). Never fails: problems are logged.
    fn rollback(&mut self) -> impl Future<Output = ()> + Send;

    /// Releases the write connection at shutdown.
    fn close(self) -> impl Future<Output = ()> + Send;
}

/// One caller's write waiting for the writer. Appends (ingest) and attempt records (dispatch)
/// share the writer, so they share its transactions and fsyncs too.
enum WriteRequest {
    Append {
        /// The events to store atomically.
        events: Vec<NewEvent>,
        /// The bytes these events hold against [`JournalBudget`], given back once answered.
        _reserved: ReservedBytes,
        /// Where the writer sends the answer once the group's commit is done (or failed).
        reply: oneshot::Sender<Result<Vec<Appended>, AppendError>>,
    },
    Record {
        /// Delivery attempts to record.
        attempts: Vec<AttemptRecord>,
        /// Where the writer answers once they are durable.
        reply: oneshot::Sender<Result<(), AppendError>>,
    },
    Operate {
        /// The operator write to apply (boxed: it is much larger than the other requests, and
        /// rare).
        operation: Box<OperatorWrite>,
        /// Where the writer answers once it is durable (or refused).
        reply: oneshot::Sender<Result<OperatorOutcome, OperatorError>>,
    },
}

impl WriteRequest {
    /// Rows the request writes: what `max_group_events` bounds.
    fn weight(&self) -> usize {
        match self {
            WriteRequest::Append { events, .. } => events.len(),
            WriteRequest::Record { attempts, .. } => attempts.len(),
            WriteRequest::Operate { operation, .. } => match operation.as_ref() {
                OperatorWrite::JobBatch { max, .. } => *max,
                _ => 1,
            },
        }
    }

    /// One of the gateway's own writes rather than ingest's.
    fn is_internal(&self) -> bool {
        !matches!(self, WriteRequest::Append { .. })
    }

    /// Answers the request with a failure that hit its whole group.
    fn fail(self, error: AppendError) {
        // A caller that stopped waiting is not an error.
        match self {
            WriteRequest::Append { reply, .. } => drop(reply.send(Err(error))),
            WriteRequest::Record { reply, .. } => drop(reply.send(Err(error))),
            WriteRequest::Operate { reply, .. } => drop(reply.send(Err(error.into()))),
        }
    }
}

/// Commit counters, shared between the writer (which updates them) and the handle (which reads
/// them), hence atomics.
struct CommitCounters {
    /// Committed group transactions.
    commits: AtomicU64,
    /// Events newly stored by them.
    events: AtomicU64,
    /// Rows written per committed group (events and attempt records): the metric that shows
    /// whether group commit is grouping.
    group_sizes: Histogram,
    /// Requests sent to either queue and not yet taken by the writer.
    queued_requests: AtomicUsize,
}

impl Default for CommitCounters {
    fn default() -> Self {
        CommitCounters {
            commits: AtomicU64::default(),
            events: AtomicU64::default(),
            // 1, 2, 4, ... 4096: up to the default group bound.
            group_sizes: Histogram::new(exponential_buckets(1.0, 2.0, 13)),
            queued_requests: AtomicUsize::new(0),
        }
    }
}

/// The bytes ingest's appends may hold while they wait for the writer or are being written.
struct JournalBudget {
    /// Bytes held now.
    held: AtomicUsize,
    /// Most bytes held at once; one request is always let in when nothing is held, so a
    /// request larger than the bound is not refused forever.
    limit: usize,
}

/// Bytes an append holds against the [`JournalBudget`]; given back when dropped (the request
/// answered, or refused before it queued).
struct ReservedBytes {
    budget: Arc<JournalBudget>,
    bytes: usize,
}

impl Drop for ReservedBytes {
    fn drop(&mut self) {
        self.budget.held.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

impl JournalBudget {
    /// Reserves `bytes`, or says how many are held already.
    fn reserve(self: &Arc<Self>, bytes: usize) -> Result<ReservedBytes, usize> {
        let before = self.held.fetch_add(bytes, Ordering::AcqRel);
        let reserved = ReservedBytes {
            budget: Arc::clone(self),
            bytes,
        };
        if before > 0 && before + bytes > self.limit {
            drop(reserved);
            return Err(before);
        }
        Ok(reserved)
    }
}

/// Bytes an event holds in the writer's queue: what it carries, plus a fixed allowance for the
/// rest of the request.
fn queued_bytes(event: &NewEvent) -> usize {
    const PER_EVENT: usize = 256;
    PER_EVENT
        + event.document.len()
        + event.lifecycle.len()
        + event.source.len()
        + event.id.len()
        + event.event_type.len()
}

/// How big the writer's queues may grow.
#[derive(Debug, Clone, Copy)]
pub(crate) struct QueueBounds {
    /// Bytes of appends queued or being written; over it an append is refused at once.
    pub(crate) append_bytes: usize,
    /// The gateway's own writes (delivery records, operator writes) that may wait; when full,
    /// their callers wait.
    pub(crate) internal_requests: usize,
    /// Upper bound on rows per group.
    pub(crate) max_group_events: usize,
}

/// The handle the journal keeps on its writer task.
pub(crate) struct GroupCommitter {
    /// Ingest's appends into the writer; bounded by bytes through `budget`.
    appends: mpsc::UnboundedSender<WriteRequest>,
    /// The gateway's own writes into the writer; bounded by count, so a dispatcher that outruns
    /// the disk waits.
    internal: mpsc::Sender<WriteRequest>,
    /// The bytes appends may hold.
    budget: Arc<JournalBudget>,
    /// False once `close` has started: later appends are refused before they queue.
    accepting: AtomicBool,
    /// Wakes the writer to stop taking requests and drain the queue.
    shutdown: Arc<Notify>,
    /// The writer task until `close` has waited for it; a mutex so concurrent `close` calls all
    /// wait for the same end.
    writer: Mutex<Option<JoinHandle<()>>>,
    /// Counters the writer updates.
    counters: Arc<CommitCounters>,
    /// Bumped after every commit that stored new events, so the dispatcher wakes on new work
    /// instead of polling.
    commits: watch::Receiver<u64>,
}

impl GroupCommitter {
    /// Spawns the writer task over `store`. Must be called inside a Tokio runtime.
    pub(crate) fn start<S: GroupStore>(store: S, bounds: QueueBounds) -> Self {
        let (appends, append_queue) = mpsc::unbounded_channel();
        let (internal, internal_queue) = mpsc::channel(bounds.internal_requests.max(1));
        let shutdown = Arc::new(Notify::new());
        let counters = Arc::new(CommitCounters::default());
        let (notify_commits, commits) = watch::channel(0);
        let writer = tokio::spawn(run_writer(
            store,
            Queues {
                appends: append_queue,
                internal: internal_queue,
                draining: false,
            },
            Arc::clone(&shutdown),
            Writer {
                counters: Arc::clone(&counters),
                commits: notify_commits,
                max_group_events: bounds.max_group_events.max(1),
                max_internal_rows: INTERNAL_ROWS_PER_GROUP,
            },
        ));
        GroupCommitter {
            appends,
            internal,
            budget: Arc::new(JournalBudget {
                held: AtomicUsize::new(0),
                limit: bounds.append_bytes.max(1),
            }),
            accepting: AtomicBool::new(true),
            shutdown,
            writer: Mutex::new(Some(writer)),
            counters,
            commits,
        }
    }

    /// Queues `events` as one request and waits for the writer's answer; refused at once with
    /// [`AppendError::Overloaded`] when the appends already waiting hold the byte bound.
    pub(crate) async fn append(&self, events: Vec<NewEvent>) -> Result<Vec<Appended>, AppendError> {
        if !self.is_accepting() {
            return Err(AppendError::Closed);
        }
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let bytes = events.iter().map(queued_bytes).sum();
        let reserved = self
            .budget
            .reserve(bytes)
            .map_err(|held| AppendError::Overloaded {
                queued_bytes: held,
                limit: self.budget.limit,
            })?;
        let (reply, answer) = oneshot::channel();
        self.counters.queued_requests.fetch_add(1, Ordering::AcqRel);
        if self
            .appends
            .send(WriteRequest::Append {
                events,
                _reserved: reserved,
                reply,
            })
            .is_err()
        {
            self.counters.queued_requests.fetch_sub(1, Ordering::AcqRel);
            return Err(AppendError::Closed);
        }
        // The writer answers every request it receives; a dropped reply means the writer task
        // itself is gone (runtime shutting down), which is a closed journal to the caller.
        answer.await.map_err(|_| AppendError::Closed)?
    }

    /// Queues delivery attempts behind every request queued before them and returns at once;
    /// the receiver answers when they are durable. Requests are committed in queue order, so
    /// records queued one after the other can never become durable out of order. Records are
    /// taken until the writer stops taking requests (the dispatcher stops before the journal
    /// closes, and its last records must land).
    pub(crate) async fn submit(
        &self,
        attempts: Vec<AttemptRecord>,
    ) -> Result<oneshot::Receiver<Result<(), AppendError>>, AppendError> {
        let (reply, answer) = oneshot::channel();
        if attempts.is_empty() {
            let _ = reply.send(Ok(()));
            return Ok(answer);
        }
        self.send_internal(WriteRequest::Record { attempts, reply })
            .await?;
        Ok(answer)
    }

    /// Queues one of the gateway's own writes, waiting for room.
    async fn send_internal(&self, request: WriteRequest) -> Result<(), AppendError> {
        self.counters.queued_requests.fetch_add(1, Ordering::AcqRel);
        let sent = self.internal.send(request).await;
        if sent.is_err() {
            self.counters.queued_requests.fetch_sub(1, Ordering::AcqRel);
        }
        sent.map_err(|_| AppendError::Closed)
    }

    /// Queues an operator write and waits until it is durable (or refused).
    pub(crate) async fn operate(
        &self,
        operation: OperatorWrite,
    ) -> Result<OperatorOutcome, OperatorError> {
        if !self.is_accepting() {
            return Err(AppendError::Closed.into());
        }
        let (reply, answer) = oneshot::channel();
        self.send_internal(WriteRequest::Operate {
            operation: Box::new(operation),
            reply,
        })
        .await?;
        answer.await.map_err(|_| AppendError::Closed)?
    }

    /// A receiver that changes after every commit that stored new events or emissions.
    pub(crate) fn subscribe_commits(&self) -> watch::Receiver<u64> {
        self.commits.clone()
    }

    /// The group-size histogram, for the metrics registry.
    pub(crate) fn group_sizes(&self) -> Histogram {
        self.counters.group_sizes.clone()
    }

    /// False once `close` has started.
    pub(crate) fn is_accepting(&self) -> bool {
        self.accepting.load(Ordering::Acquire)
    }

    /// Counters since start.
    pub(crate) fn stats(&self) -> CommitStats {
        CommitStats {
            commits: self.counters.commits.load(Ordering::Relaxed),
            events: self.counters.events.load(Ordering::Relaxed),
        }
    }

    /// Requests queued (or being queued) and not yet taken by the writer.
    pub(crate) fn queued_requests(&self) -> usize {
        self.counters.queued_requests.load(Ordering::Acquire)
    }

    /// Bytes held by appends queued or being written.
    pub(crate) fn queued_append_bytes(&self) -> usize {
        self.budget.held.load(Ordering::Acquire)
    }

    /// Refuses new appends, lets the writer finish every queued request, and waits for it to
    /// close its connection.
    pub(crate) async fn close(&self) {
        self.accepting.store(false, Ordering::Release);
        self.shutdown.notify_one();
        let mut writer = self.writer.lock().await;
        if let Some(task) = writer.as_mut() {
            // Awaited in place and only then forgotten, so a `close` that is itself cancelled
            // leaves the next caller something to wait for.
            if let Err(error) = task.await {
                tracing::error!(%error, "journal writer task ended abnormally");
            }
            *writer = None;
        }
    }
}

/// What the writer task reports through.
struct Writer {
    /// Counters shared with the handle.
    counters: Arc<CommitCounters>,
    /// Bumped after commits that stored new events.
    commits: watch::Sender<u64>,
    /// Upper bound on rows per group.
    max_group_events: usize,
    /// Upper bound on the gateway's own rows per group ([`INTERNAL_ROWS_PER_GROUP`]).
    max_internal_rows: usize,
}

/// The most delivery records and operator rows one group takes. A dispatcher draining a
/// backlog keeps thousands of records queued; with no other bound than `max_group_events`,
/// each group wrote 4,000 of them (60 ms and more of writing) and every append waited behind
/// them: single-event ingest fell to 500 to 900 events/s with p99 300 ms while a backlog
/// drained (docs/benchmarks.md). 512 rows keep a group's own writing to a few milliseconds,
/// and the per-group cost (one fsync) stays small beside them, so the backlog still drains at
/// the writer's pace.
const INTERNAL_ROWS_PER_GROUP: usize = 512;

/// The writer's two inputs.
struct Queues {
    /// Ingest's appends.
    appends: mpsc::UnboundedReceiver<WriteRequest>,
    /// The gateway's own writes.
    internal: mpsc::Receiver<WriteRequest>,
    /// True once shutdown closed both queues: what is queued is still written.
    draining: bool,
}

impl Queues {
    /// Waits for the next request from either queue. On the shutdown signal it closes both
    /// (later sends fail) and keeps returning what was already queued; `None` once both are
    /// empty and closed, or every sender is gone.
    async fn next(&mut self, shutdown: &Notify) -> Option<WriteRequest> {
        if !self.draining {
            tokio::select! {
                biased;
                () = shutdown.notified() => {
                    self.draining = true;
                    self.appends.close();
                    self.internal.close();
                }
                Some(request) = self.appends.recv() => return Some(request),
                Some(request) = self.internal.recv() => return Some(request),
                else => return None,
            }
        }
        if let Some(request) = self.appends.recv().await {
            return Some(request);
        }
        self.internal.recv().await
    }

    /// A request already queued, if any: ingest's first, then the gateway's own.
    fn try_next(&mut self) -> Option<WriteRequest> {
        self.appends
            .try_recv()
            .or_else(|_| self.internal.try_recv())
            .ok()
    }
}

/// The writer loop: group, write, commit, answer; until shutdown or until every handle is gone.
async fn run_writer<S: GroupStore>(
    mut store: S,
    mut queues: Queues,
    shutdown: Arc<Notify>,
    writer: Writer,
) {
    let mut group: Vec<WriteRequest> = Vec::new();
    // A request taken from a queue that did not fit in the previous group.
    let mut carried_over: Option<WriteRequest> = None;
    let taken = || {
        writer
            .counters
            .queued_requests
            .fetch_sub(1, Ordering::AcqRel)
    };
    loop {
        let first = match carried_over.take() {
            Some(request) => request,
            None => match queues.next(&shutdown).await {
                Some(request) => {
                    taken();
                    request
                }
                None => break,
            },
        };
        let mut group_rows = first.weight();
        let mut internal_rows = if first.is_internal() { group_rows } else { 0 };
        group.push(first);
        while group_rows < writer.max_group_events {
            let Some(request) = queues.try_next() else {
                break;
            };
            taken();
            let weight = request.weight();
            let internal_full = request.is_internal()
                && internal_rows > 0
                && internal_rows + weight > writer.max_internal_rows;
            if group_rows + weight > writer.max_group_events || internal_full {
                carried_over = Some(request);
                break;
            }
            group_rows += weight;
            if request.is_internal() {
                internal_rows += weight;
            }
            group.push(request);
        }
        commit_group(&mut store, &mut group, &writer).await;
    }
    store.close().await;
    tracing::debug!("journal writer stopped");
}

/// Writes `group` in one transaction and answers each request; empties `group`.
async fn commit_group<S: GroupStore>(
    store: &mut S,
    group: &mut Vec<WriteRequest>,
    writer: &Writer,
) {
    match write_group(store, group).await {
        Ok((mut outcomes, operations)) => {
            let accepted = outcomes
                .iter()
                .map(|outcome| match outcome {
                    RequestOutcome::Stored(appended) => appended
                        .iter()
                        .filter(|a| a.status == AppendStatus::Accepted)
                        .count() as u64,
                    RequestOutcome::Conflict { .. } => 0,
                })
                .sum::<u64>();
            let counters = &writer.counters;
            counters.commits.fetch_add(1, Ordering::Relaxed);
            counters.events.fetch_add(accepted, Ordering::Relaxed);
            let rows: usize = group.iter().map(WriteRequest::weight).sum();
            counters.group_sizes.observe(rows as f64);
            // Replays are new emissions: the dispatcher must look, as for new events.
            let replays = operations.iter().any(|outcome| {
                matches!(
                    outcome,
                    Ok(OperatorOutcome::Replayed(_) | OperatorOutcome::JobProgress { .. })
                )
            });
            if accepted > 0 || replays {
                writer.commits.send_modify(|commits| *commits += 1);
            }
            let mut outcomes = outcomes.drain(..);
            let mut operations = operations.into_iter();
            for request in group.drain(..) {
                // A caller that stopped waiting is not an error: its writes are stored anyway.
                match request {
                    WriteRequest::Append { reply, .. } => {
                        let answer = match outcomes.next() {
                            Some(RequestOutcome::Stored(appended)) => Ok(appended),
                            Some(RequestOutcome::Conflict { index, event_id }) => {
                                Err(AppendError::Conflict { index, event_id })
                            }
                            // write_group checked there is one outcome per append.
                            None => Err(AppendError::Closed),
                        };
                        let _ = reply.send(answer);
                    }
                    WriteRequest::Record { reply, .. } => {
                        let _ = reply.send(Ok(()));
                    }
                    WriteRequest::Operate { reply, .. } => {
                        // write_group checked there is one result per operation.
                        let answer = operations
                            .next()
                            .unwrap_or(Err(OperatorError::Store(AppendError::Closed)));
                        let _ = reply.send(answer);
                    }
                }
            }
        }
        Err(error) => {
            store.rollback().await;
            tracing::error!(
                %error,
                requests = group.len(),
                "journal group transaction failed; nothing of it was stored, \
                 every request of the group is answered Unavailable"
            );
            let error = Arc::new(error);
            for request in group.drain(..) {
                request.fail(AppendError::Unavailable(Arc::clone(&error)));
            }
        }
    }
}

/// What a group's transaction answers: one outcome per append, one result per operator write.
type GroupOutcomes = (
    Vec<RequestOutcome>,
    Vec<Result<OperatorOutcome, OperatorError>>,
);

/// The transaction of one group: begin, every append in order, the attempt records, the
/// operator writes, commit. Operator writes come last so they see the attempts recorded with
/// them (a replay requested right after a delivery failed sees the emission dead).
async fn write_group<S: GroupStore>(
    store: &mut S,
    group: &[WriteRequest],
) -> Result<GroupOutcomes, sqlx::Error> {
    store.begin().await?;
    let mut appends: Vec<&[NewEvent]> = Vec::new();
    let mut attempts: Vec<&AttemptRecord> = Vec::new();
    let mut operations: Vec<&OperatorWrite> = Vec::new();
    for request in group {
        match request {
            WriteRequest::Append { events, .. } => appends.push(events),
            WriteRequest::Record {
                attempts: records, ..
            } => attempts.extend(records),
            WriteRequest::Operate { operation, .. } => operations.push(operation.as_ref()),
        }
    }
    let outcomes = if appends.is_empty() {
        Vec::new()
    } else {
        store.write_requests(&appends).await?
    };
    if outcomes.len() != appends.len() {
        // A backend bug; failing the group keeps every caller's answer truthful.
        return Err(sqlx::Error::Protocol(format!(
            "journal backend answered {} of {} requests",
            outcomes.len(),
            appends.len()
        )));
    }
    if !attempts.is_empty() {
        store.write_attempts(&attempts).await?;
    }
    let results = if operations.is_empty() {
        Vec::new()
    } else {
        store.write_operations(&operations).await?
    };
    if results.len() != operations.len() {
        return Err(sqlx::Error::Protocol(format!(
            "journal backend answered {} of {} operator writes",
            results.len(),
            operations.len()
        )));
    }
    store.commit().await?;
    Ok((outcomes, results))
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex as StdMutex;

    use super::*;
    use crate::journal::{AttemptOutcome, EmissionStatus};

    /// What one group held: append requests and attempt records.
    #[derive(Debug, Default, Clone, Copy)]
    struct GroupShape {
        appends: usize,
        records: usize,
    }

    /// A store that keeps nothing but the shape of each group, and holds its first `begin`
    /// until the test opens `gate`, so the test fills the queues while the writer waits.
    struct ShapeStore {
        parked: Option<oneshot::Sender<()>>,
        gate: Option<oneshot::Receiver<()>>,
        current: GroupShape,
        groups: Arc<StdMutex<Vec<GroupShape>>>,
    }

    impl GroupStore for ShapeStore {
        async fn begin(&mut self) -> Result<(), sqlx::Error> {
            if let (Some(parked), Some(gate)) = (self.parked.take(), self.gate.take()) {
                let _ = parked.send(());
                let _ = gate.await;
            }
            self.current = GroupShape::default();
            Ok(())
        }

        async fn write_requests(
            &mut self,
            requests: &[&[NewEvent]],
        ) -> Result<Vec<RequestOutcome>, sqlx::Error> {
            self.current.appends += requests.len();
            Ok(requests
                .iter()
                .map(|events| {
                    RequestOutcome::Stored(
                        events
                            .iter()
                            .map(|_| Appended {
                                event_id: Uuid::now_v7(),
                                sequence: 1,
                                status: AppendStatus::Accepted,
                            })
                            .collect(),
                    )
                })
                .collect())
        }

        async fn write_attempts(&mut self, attempts: &[&AttemptRecord]) -> Result<(), sqlx::Error> {
            self.current.records += attempts.len();
            Ok(())
        }

        async fn write_operations(
            &mut self,
            _operations: &[&OperatorWrite],
        ) -> Result<Vec<Result<OperatorOutcome, OperatorError>>, sqlx::Error> {
            Ok(Vec::new())
        }

        async fn commit(&mut self) -> Result<(), sqlx::Error> {
            self.groups.lock().unwrap().push(self.current);
            Ok(())
        }

        async fn rollback(&mut self) {}

        async fn close(self) {}
    }

    fn event(n: usize) -> NewEvent {
        NewEvent {
            source: "//test".into(),
            id: format!("e{n}"),
            event_type: "com.acme.lifecycle.upsert".into(),
            tenant: "acme".into(),
            action: "upsert".into(),
            time: None,
            document: "{}".into(),
            content_hash: String::new(),
            lifecycle: "{}".into(),
        }
    }

    fn record(position: i64) -> AttemptRecord {
        let now = chrono::Utc::now();
        AttemptRecord {
            position,
            event_id: Uuid::now_v7(),
            attempt: 1,
            started_at: now,
            finished_at: now,
            sink: "log",
            outcome: AttemptOutcome::Delivered,
            status_code: None,
            error: None,
            emission_status: EmissionStatus::Delivered,
            awaits_workflow: false,
        }
    }

    /// A backlog of delivery records queued ahead of ingest takes at most
    /// INTERNAL_ROWS_PER_GROUP rows of a group, so waiting appends are committed in the next
    /// group instead of behind thousands of records; and every record is still written.
    #[tokio::test]
    async fn a_backlog_of_records_takes_a_bounded_share_of_each_group() {
        let (open, gate) = oneshot::channel();
        let (parked, writer_parked) = oneshot::channel();
        let groups = Arc::new(StdMutex::new(Vec::new()));
        let store = ShapeStore {
            parked: Some(parked),
            gate: Some(gate),
            current: GroupShape::default(),
            groups: Arc::clone(&groups),
        };
        let committer = Arc::new(GroupCommitter::start(
            store,
            QueueBounds {
                append_bytes: 1 << 30,
                internal_requests: 10_000,
                max_group_events: 4096,
            },
        ));
        // The writer takes this one and waits in `begin`.
        let first = tokio::spawn({
            let committer = Arc::clone(&committer);
            async move { committer.append(vec![event(0)]).await }
        });
        writer_parked.await.unwrap();
        let (mut answers, records) = (Vec::new(), 3000);
        for position in 0..records {
            answers.push(committer.submit(vec![record(position)]).await.unwrap());
        }
        let mut appends = Vec::new();
        for n in 1..=64 {
            let committer = Arc::clone(&committer);
            appends.push(tokio::spawn(async move {
                committer.append(vec![event(n)]).await
            }));
        }
        // Every append queued before the writer goes on.
        let all_queued = async {
            while committer.queued_requests() < records as usize + 64 {
                tokio::task::yield_now().await;
            }
        };
        tokio::time::timeout(std::time::Duration::from_secs(30), all_queued)
            .await
            .expect("the 64 appends never reached the queue");
        open.send(()).unwrap();
        first.await.unwrap().unwrap();
        for append in appends {
            append.await.unwrap().unwrap();
        }
        for answer in answers {
            answer.await.unwrap().unwrap();
        }
        let groups = groups.lock().unwrap().clone();
        // The parked group, then the 64 appends with the first share of records.
        assert_eq!(groups[0].appends, 1, "{groups:?}");
        assert_eq!(groups[1].appends, 64, "{groups:?}");
        assert!(
            groups.iter().all(|g| g.records <= INTERNAL_ROWS_PER_GROUP),
            "{groups:?}"
        );
        assert_eq!(
            groups.iter().map(|g| g.records).sum::<usize>(),
            records as usize
        );
        committer.close().await;
    }
}
