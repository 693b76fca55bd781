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
//! The loop is backend-neutral: a backend supplies the statements through [`GroupStore`].

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use tokio::sync::{mpsc, oneshot, watch, Mutex, Notify};
use tokio::task::JoinHandle;
use uuid::Uuid;

use super::recovery::{OperatorError, OperatorOutcome, OperatorWrite};
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
}

impl Default for CommitCounters {
    fn default() -> Self {
        CommitCounters {
            commits: AtomicU64::default(),
            events: AtomicU64::default(),
            // 1, 2, 4, ... 4096: up to the default group bound.
            group_sizes: Histogram::new(exponential_buckets(1.0, 2.0, 13)),
        }
    }
}

/// The handle the journal keeps on its writer task.
pub(crate) struct GroupCommitter {
    /// Queue into the writer; bounded, so a slow disk pushes back on ingest.
    requests: mpsc::Sender<WriteRequest>,
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
    pub(crate) fn start<S: GroupStore>(
        store: S,
        queue_capacity: usize,
        max_group_events: usize,
    ) -> Self {
        let (requests, queue) = mpsc::channel(queue_capacity.max(1));
        let shutdown = Arc::new(Notify::new());
        let counters = Arc::new(CommitCounters::default());
        let (notify_commits, commits) = watch::channel(0);
        let writer = tokio::spawn(run_writer(
            store,
            queue,
            Arc::clone(&shutdown),
            Writer {
                counters: Arc::clone(&counters),
                commits: notify_commits,
                max_group_events: max_group_events.max(1),
            },
        ));
        GroupCommitter {
            requests,
            accepting: AtomicBool::new(true),
            shutdown,
            writer: Mutex::new(Some(writer)),
            counters,
            commits,
        }
    }

    /// Queues `events` as one request (waiting for queue space) and waits for the writer's answer.
    pub(crate) async fn append(&self, events: Vec<NewEvent>) -> Result<Vec<Appended>, AppendError> {
        if !self.is_accepting() {
            return Err(AppendError::Closed);
        }
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let (reply, answer) = oneshot::channel();
        self.requests
            .send(WriteRequest::Append { events, reply })
            .await
            .map_err(|_| AppendError::Closed)?;
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
        self.requests
            .send(WriteRequest::Record { attempts, reply })
            .await
            .map_err(|_| AppendError::Closed)?;
        Ok(answer)
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
        self.requests
            .send(WriteRequest::Operate {
                operation: Box::new(operation),
                reply,
            })
            .await
            .map_err(|_| AppendError::Closed)?;
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
        self.requests
            .max_capacity()
            .saturating_sub(self.requests.capacity())
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
}

/// The writer loop: group, write, commit, answer; until shutdown or until every handle is gone.
async fn run_writer<S: GroupStore>(
    mut store: S,
    mut queue: mpsc::Receiver<WriteRequest>,
    shutdown: Arc<Notify>,
    writer: Writer,
) {
    let mut group: Vec<WriteRequest> = Vec::new();
    // A request taken from the queue that did not fit in the previous group.
    let mut carried_over: Option<WriteRequest> = None;
    let mut draining = false;
    loop {
        let first = match carried_over.take() {
            Some(request) => request,
            None => match next_request(&mut queue, &shutdown, &mut draining).await {
                Some(request) => request,
                None => break,
            },
        };
        let mut group_rows = first.weight();
        group.push(first);
        while group_rows < writer.max_group_events {
            let Ok(request) = queue.try_recv() else {
                break;
            };
            if group_rows + request.weight() > writer.max_group_events {
                carried_over = Some(request);
                break;
            }
            group_rows += request.weight();
            group.push(request);
        }
        commit_group(&mut store, &mut group, &writer).await;
    }
    store.close().await;
    tracing::debug!("journal writer stopped");
}

/// Waits for the next request. On the shutdown signal it closes the queue (later sends fail)
/// and keeps returning what was already queued; `None` once the queue is empty and closed, or
/// every sender is gone.
async fn next_request(
    queue: &mut mpsc::Receiver<WriteRequest>,
    shutdown: &Notify,
    draining: &mut bool,
) -> Option<WriteRequest> {
    if !*draining {
        tokio::select! {
            biased;
            () = shutdown.notified() => {
                *draining = true;
                queue.close();
            }
            request = queue.recv() => return request,
        }
    }
    queue.recv().await
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
