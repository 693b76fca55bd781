//! The dispatcher: a transactional outbox reader that delivers pending emissions to the sink,
//! concurrently across tenants and strictly in order within a tenant.
//!
//! One coordinator task reads pending emissions from the journal in position order (waking on
//! every commit that stored new events, so nothing waits for a poll), in pages decoded and
//! encoded on blocking threads while the next page is read, into per-tenant queues.
//! A tenant with queued work has exactly one worker task, which delivers its queue front to
//! back. A delivery's record is queued to the journal's writer before the tenant's next
//! emission starts (a failure's record is awaited until durable); the writer commits in queue
//! order, so a crash can only lose a tenant's newest records, and the restart sends those again
//! in sequence. A semaphore bounds attempts in flight across all tenants.
//! A dead emission parks its tenant: its queue is dropped and the coordinator skips the tenant
//! until an operator replays or skips the dead event. Then the admin API unparks it through
//! [`DispatchControl::unpark`], and the coordinator catches the tenant up: it reads the
//! tenant's pending emissions in the tenant's delivery order (an in-place replay of the dead
//! emission first), page by page, while its position-ordered reads skip that tenant; rows they
//! meet later that the catch-up already read are skipped too.
//!
//! With several replicas on one journal ([`DispatchScope::Leased`]) a replica delivers only
//! the tenants of the buckets it holds (see `ownership` and `leases`): rows of other buckets are
//! left to their owners; a lost bucket's tenants are forgotten at once, and a worker's attempt
//! in flight for one is cancelled and recorded nowhere, exactly as on stop (the new owner
//! sends the same emission again); a gained bucket's parked tenants and in-place replays are
//! read from the journal and its rows read from the start of the outbox. Unparks reach the
//! owner by `NOTIFY`, and a periodic resync re-reads the parked tenants in case one was missed.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch, Notify, Semaphore};
use tokio::task::JoinSet;
use tracing::Instrument;

use super::emission::{EncodedEmission, QueuedEmission};
use super::leases::{self, LeaseError, LeaseKeeper, LeaseSettings, Signal};
use super::ownership::{bucket_of, Grant, TenantOwnership};
use super::retry::RetryPolicy;
use super::sinks::{DeliveryOutcome, Sink};
use super::tenant_book::{BookEntry, Queued, TenantBook, READ_PAGE};
use crate::journal::{
    AppendError, AttemptOutcome, AttemptRecord, EmissionStatus, EventJournal, JournalError,
    PendingPage,
};
use crate::metrics::{DeliveryLabels, GatewayMetrics, SinkLabels};

mod delivery;
mod health;
mod workflow_gate;

use delivery::deliver;
use health::{run_prober, sleep_backoff, SinkHealth};
use workflow_gate::{await_previous_workflow, Gate, WorkflowSignals};

/// How the dispatcher runs; the defaults suit one replica in front of Argo Events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DispatchSettings {
    /// Delivery attempts in flight at once, across tenants (default 64).
    pub concurrency: usize,
    /// Pending emissions held in memory at once (default 2,000, about 1 KiB each while queued
    /// and a few KiB while their page is decoded); the rest stay in the journal until the
    /// queues drain, so a large backlog costs no memory. 10,000 held 21 MiB more at the peak
    /// of a backlog and delivered no faster (docs/benchmarks.md).
    pub buffer: usize,
    /// Backoff and retry limit.
    pub retry: RetryPolicy,
    /// The gateway instance URI: the `source` of every emitted CloudEvent.
    pub instance_source: String,
    /// While the sink is failing and no attempt is in flight or started within this long, one
    /// waiting tenant tries early (default 1 s): the probe that notices a recovered sink when
    /// every tenant sleeps a long backoff. Its success wakes every waiting tenant at once.
    pub probe_interval: Duration,
    /// `await-workflow`: deliver a tenant's next emission only once the Workflow of its
    /// previous one finished; the value is the await timeout (a Workflow not seen within it of
    /// the delivery parks the tenant). `None` (default): deliver as soon as the sink took the
    /// previous one.
    pub await_workflow: Option<Duration>,
}

/// The default `[dispatch] await-timeout`.
pub const DEFAULT_AWAIT_TIMEOUT: Duration = Duration::from_secs(3600);

impl Default for DispatchSettings {
    fn default() -> Self {
        DispatchSettings {
            concurrency: 64,
            buffer: 2_000,
            retry: RetryPolicy::default(),
            instance_source: String::from("urn:tenant-gateway"),
            probe_interval: Duration::from_secs(1),
            await_workflow: None,
        }
    }
}

/// Running totals since start, published on a watch channel: for tests, logs and the admin API.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DispatchProgress {
    /// Emissions the sink took.
    pub delivered: u64,
    /// Emissions that became dead.
    pub dead: u64,
    /// Delivery attempts made, successful or not.
    pub attempts: u64,
}

/// Which tenants this replica dispatches: chosen from the journal backend.
pub enum DispatchScope {
    /// The only replica (SQLite): every tenant, no leases.
    Everything,
    /// One of several replicas on a PostgreSQL journal: the tenants of the buckets it leases.
    Leased {
        /// Renews and balances the bucket leases.
        keeper: LeaseKeeper,
        /// The journal's database: peer notifications (unparks, commits).
        pool: sqlx::PgPool,
    },
}

/// How often a leased replica re-reads which tenants are parked: the backstop for an unpark
/// notification that never arrived (NOTIFY is not delivered to a listener that was
/// reconnecting).
const RESYNC_EVERY: Duration = Duration::from_secs(30);

impl DispatchScope {
    /// The scope of a journal: SQLite has a single replica, which owns every tenant.
    // The PostgreSQL journal's arm: `Self::leased(pool, LeaseSettings::default())`.
    pub async fn for_journal(journal: &EventJournal) -> Result<DispatchScope, LeaseError> {
        match journal {
            EventJournal::Sqlite(_) => Ok(DispatchScope::Everything),
            // Several replicas may share the database: each delivers the buckets it leases.
            EventJournal::Postgres(journal) => {
                Self::leased(journal.pool().clone(), LeaseSettings::default()).await
            }
        }
    }

    /// Leases tenant buckets in `pool` (creating the lease tables if needed).
    pub async fn leased(
        pool: sqlx::PgPool,
        settings: LeaseSettings,
    ) -> Result<DispatchScope, LeaseError> {
        let keeper = LeaseKeeper::start(pool.clone(), settings).await?;
        Ok(DispatchScope::Leased { keeper, pool })
    }
}

/// The running dispatcher. Stop it with [`Dispatcher::stop`] before closing the journal.
pub struct Dispatcher {
    /// State shared with the coordinator and the workers.
    shared: Arc<Shared>,
    /// Handed to the admin API.
    control: DispatchControl,
    /// The coordinator task (which owns the workers).
    coordinator: tokio::task::JoinHandle<()>,
    /// Progress, for [`Dispatcher::progress`].
    progress: watch::Receiver<DispatchProgress>,
    /// The lease keeper, stopped (its leases given back) after the coordinator.
    keeper: Option<LeaseKeeper>,
}

/// What the admin API may ask of a running dispatcher; cheap to clone.
#[derive(Debug, Clone)]
pub struct DispatchControl {
    /// Into the coordinator, which applies commands between its reads.
    commands: mpsc::UnboundedSender<Signal>,
    /// With several replicas: where to tell the others (the tenant's owner may be one).
    peers: Option<sqlx::PgPool>,
    /// Whether this replica runs the bulk replay jobs (always, when it is the only one).
    ownership: TenantOwnership,
    /// Woken when another replica announced a new bulk replay job.
    replay_jobs: Arc<Notify>,
    /// The Workflow watcher's wake-ups for tenants waiting on a Workflow.
    workflow_signals: Arc<WorkflowSignals>,
}

impl DispatchControl {
    /// Resolves once this replica may run bulk replay jobs: at once for the only replica, else
    /// when it holds the runner's lease (one replica at a time; another takes over when the
    /// holder dies).
    pub async fn replay_turn(&self) {
        self.ownership.replay_turn().await;
    }

    /// Whether this replica may run bulk replay jobs now; checked before every batch.
    pub fn runs_replay_jobs(&self) -> bool {
        self.ownership.runs_replay_jobs()
    }

    /// Tells the replica that runs the bulk replay jobs that one was created (if not this one).
    pub fn announce_replay_job(&self) {
        if let Some(pool) = self.peers.clone() {
            tokio::spawn(async move {
                if let Err(error) = leases::notify_replay_job(&pool).await {
                    tracing::warn!(
                        error = %crate::telemetry::ErrorChain(&error),
                        "announcing a replay job to the other replicas failed"
                    );
                }
            });
        }
    }

    /// Tells the tenant's emissions waiting on a Workflow (`await-workflow`) that one of its
    /// Workflows was recorded: they read the journal again now instead of at their next
    /// periodic check.
    pub fn workflow_changed(&self, tenant: &str) {
        self.workflow_signals.changed(tenant);
    }

    /// Resolves when another replica announced a new bulk replay job (never with one replica).
    pub async fn replay_job_announced(&self) {
        self.replay_jobs.notified().await;
    }

    /// Takes `tenant` up again after an operator replayed or skipped the dead emission that
    /// parked it (the journal says it has no dead emission left): its pending emissions are
    /// read again, in its delivery order. A tenant that is not parked is left alone. With
    /// several replicas the owner is told by `NOTIFY` (here too, if it is this one).
    pub fn unpark(&self, tenant: &str) {
        // One unpark per operator action: sent here directly, or (several replicas) by
        // NOTIFY, which reaches this replica too. Two would unpark a tenant whose replay died
        // again in between.
        let Some(pool) = self.peers.clone() else {
            // Fails only once the dispatcher has stopped; a restart reads the journal anyway.
            let _ = self.commands.send(Signal::Unpark(tenant.to_owned()));
            return;
        };
        let tenant = tenant.to_owned();
        tokio::spawn(async move {
            if let Err(error) = leases::notify_unpark(&pool, &tenant).await {
                // The owner's periodic resync finds the tenant unparked anyway.
                tracing::warn!(
                    tenant,
                    error = %crate::telemetry::ErrorChain(&error),
                    "telling the other replicas about an unpark failed"
                );
            }
        });
    }
}

/// What the coordinator and the workers share.
struct Shared {
    /// Source of pending emissions and destination of attempt records.
    journal: EventJournal,
    /// Where emissions go.
    sink: Sink,
    /// Which tenants are this replica's to deliver.
    ownership: TenantOwnership,
    /// Concurrency, buffer, retries, instance URI.
    settings: DispatchSettings,
    /// Delivery counters and latency, parked tenants.
    metrics: GatewayMetrics,
    /// Whether the sink is failing, and the signals that end the tenants' backoffs.
    health: SinkHealth,
    /// Bounds attempts in flight across tenants.
    permits: Semaphore,
    /// The per-tenant queues, the parked tenants and the catch-ups.
    tenants: Mutex<TenantBook<QueuedEmission>>,
    /// Wakes the coordinator when the buffer has room for a refill again.
    room: Notify,
    /// Becomes true on stop; every wait selects on it.
    stopping: watch::Sender<bool>,
    /// Totals since start.
    progress: watch::Sender<DispatchProgress>,
    /// Wakes the tenants that wait for a Workflow (`await-workflow`).
    workflow_signals: Arc<WorkflowSignals>,
}

impl BookEntry for QueuedEmission {
    fn tenant(&self) -> &str {
        &self.tenant
    }
    fn position(&self) -> i64 {
        self.position
    }
    fn place(&self) -> i64 {
        self.place
    }
}

impl Shared {
    fn tenants(&self) -> MutexGuard<'_, TenantBook<QueuedEmission>> {
        // The lock is never held across an await or a panic-prone call; recover anyway.
        self.tenants.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn is_stopping(&self) -> bool {
        *self.stopping.borrow()
    }

    /// Resolves once stop has been requested.
    async fn stopped(&self) {
        let mut stopping = self.stopping.subscribe();
        // An Err means the sender is gone, which only happens once everything stops.
        let _ = stopping.wait_for(|stop| *stop).await;
    }
}

impl Dispatcher {
    /// Starts delivering the journal's pending emissions to `sink`, resuming whatever a previous
    /// run left pending; the only replica ([`DispatchScope::Everything`]).
    pub fn start(
        journal: EventJournal,
        sink: Sink,
        settings: DispatchSettings,
        metrics: GatewayMetrics,
    ) -> Dispatcher {
        Self::start_in(journal, sink, settings, metrics, DispatchScope::Everything)
    }

    /// Like [`start`](Self::start), delivering only the tenants `scope` gives this replica.
    pub fn start_in(
        journal: EventJournal,
        sink: Sink,
        settings: DispatchSettings,
        metrics: GatewayMetrics,
        scope: DispatchScope,
    ) -> Dispatcher {
        let (progress_tx, progress) = watch::channel(DispatchProgress::default());
        let (commands_tx, commands) = mpsc::unbounded_channel();
        let mut book = TenantBook::new(settings.buffer);
        let (ownership, keeper, peers) = match scope {
            DispatchScope::Everything => (TenantOwnership::Everything, None, None),
            DispatchScope::Leased { keeper, pool } => {
                book.hold_only();
                (keeper.ownership(), Some(keeper), Some(pool))
            }
        };
        let shared = Arc::new(Shared {
            permits: Semaphore::new(settings.concurrency.max(1)),
            journal,
            sink,
            ownership,
            settings,
            metrics,
            tenants: Mutex::new(book),
            room: Notify::new(),
            health: SinkHealth::default(),
            stopping: watch::channel(false).0,
            progress: progress_tx,
            workflow_signals: Arc::default(),
        });
        let coordinator = tokio::spawn(run_coordinator(Arc::clone(&shared), commands));
        tokio::spawn(run_prober(Arc::clone(&shared)));
        let replay_jobs = Arc::new(Notify::new());
        if let Some(pool) = peers.clone() {
            tokio::spawn(run_peer_signals(
                Arc::clone(&shared),
                pool,
                commands_tx.clone(),
                Arc::clone(&replay_jobs),
            ));
        }
        Dispatcher {
            control: DispatchControl {
                commands: commands_tx,
                peers,
                ownership: shared.ownership.clone(),
                replay_jobs,
                workflow_signals: Arc::clone(&shared.workflow_signals),
            },
            shared,
            coordinator,
            progress,
            keeper,
        }
    }

    /// A handle for the admin API (unparking tenants).
    pub fn control(&self) -> DispatchControl {
        self.control.clone()
    }

    /// A receiver of running totals.
    pub fn progress(&self) -> watch::Receiver<DispatchProgress> {
        self.progress.clone()
    }

    /// Stops: no new attempt starts, attempts in flight are abandoned (their emissions stay
    /// pending and are sent again after a restart), and every worker has ended on return.
    pub async fn stop(self) {
        self.shared.stopping.send_replace(true);
        if let Err(error) = self.coordinator.await {
            tracing::error!(%error, "dispatch coordinator ended abnormally");
        }
        // Nothing is in flight any more: the buckets may go to the other replicas at once.
        if let Some(keeper) = self.keeper {
            keeper.stop().await;
        }
    }
}

/// Forwards the other replicas' notifications to the coordinator and asks it to resync
/// every [`RESYNC_EVERY`], until stopped.
async fn run_peer_signals(
    shared: Arc<Shared>,
    pool: sqlx::PgPool,
    commands: mpsc::UnboundedSender<Signal>,
    replay_jobs: Arc<Notify>,
) {
    let (signals_tx, mut signals) = mpsc::unbounded_channel();
    let listener = tokio::spawn(leases::listen_to_peers(pool, signals_tx));
    let mut resync = tokio::time::interval(RESYNC_EVERY);
    resync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first tick is immediate; the listener's first Resync covers the start.
    resync.tick().await;
    loop {
        let signal = tokio::select! {
            () = shared.stopped() => break,
            _ = resync.tick() => Signal::Resync,
            signal = signals.recv() => match signal {
                Some(signal) => signal,
                None => break,
            },
        };
        if signal == Signal::ReplayJob {
            // For the replay job runner, not the coordinator; kept if it is busy.
            replay_jobs.notify_one();
            continue;
        }
        if commands.send(signal).is_err() {
            break;
        }
    }
    listener.abort();
}

/// Pages read from the journal and still being decoded and encoded, at most: reading the next
/// page overlaps with encoding the previous ones.
const PAGES_IN_FLIGHT: usize = 2;

/// Below this many rows a page is decoded and encoded in place: cheaper than the hand-off to a
/// blocking thread, and an idle gateway's single events go out sooner.
const ENCODE_INLINE_UP_TO: usize = 8;

/// A page being decoded and encoded on a blocking thread.
struct PageInFlight {
    /// Rows in the page, counted against the buffer until they are queued.
    rows: usize,
    /// Position just before the page: where reading restarts if the page fails.
    after: i64,
    /// The decoding and encoding.
    task: tokio::task::JoinHandle<Result<Vec<QueuedEmission>, JournalError>>,
}

/// Reads pending emissions into the tenant queues and starts workers, until stopped.
async fn run_coordinator(shared: Arc<Shared>, mut commands: mpsc::UnboundedReceiver<Signal>) {
    let mut commits = shared.journal.subscribe_commits();
    let mut ownership = shared.ownership.clone();
    let mut workers = JoinSet::new();
    if !load_parked(&shared, None).await {
        return;
    }
    // The buckets held and their grants, as last applied to the book (leased scope only).
    let mut holdings: BTreeMap<u16, u64> = BTreeMap::new();
    // Position of the last emission read; everything after it is still in the journal.
    let mut cursor = 0;
    // Whether the journal may hold pending emissions past the cursor that were never read:
    // set by whatever can put them there (a commit with new events or replays, another
    // replica's commit, a change of ownership, a page to read again), cleared by a read that
    // came back short. Without it every wake-up (each worker that ends, each freed slot) would
    // cost a read that finds nothing: a query per delivered event.
    let mut unread = true;
    // The writer's commit counter as of the last look (see the loop's first lines).
    let mut seen_commits = *commits.borrow();
    let mut pages: VecDeque<PageInFlight> = VecDeque::new();
    while !shared.is_stopping() {
        // Marked seen before reading, so a commit landing during the read wakes the next wait.
        // A commit the wait below did not report (it woke for something else) is noticed
        // here, by the counter's value: marking it seen must not lose it.
        let commit_count = *commits.borrow_and_update();
        if commit_count != seen_commits {
            seen_commits = commit_count;
            unread = true;
        }
        let (room, catch_up) = {
            let tenants = shared.tenants();
            let in_flight: usize = pages.iter().map(|page| page.rows).sum();
            let room = tenants.room_for_read(in_flight);
            (room, room.and(tenants.next_catch_up()))
        };
        let mut more = false;
        if let (Some(room), Some((tenant, progress))) = (room, catch_up) {
            // Unparked tenants first: their emissions waited longest.
            let limit = room.min(READ_PAGE);
            match catch_up_page(&shared, &mut workers, &tenant, progress.after_place, limit).await {
                Ok(()) => continue,
                Err(error) => {
                    tracing::error!(
                        error = %crate::telemetry::ErrorChain(&error),
                        "reading an unparked tenant's emissions failed; retrying in 1 s"
                    );
                    tokio::select! {
                        () = shared.stopped() => break,
                        () = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    }
                }
            }
        }
        if let Some(room) = room.filter(|_| unread && pages.len() < PAGES_IN_FLIGHT) {
            let limit = room.min(READ_PAGE);
            shared.metrics.dispatch_reads.inc();
            match shared.journal.pending_page(cursor, None, limit).await {
                Ok(page) => {
                    more = page.len() == limit;
                    // A commit during the read moves the counter: the next loop sees it.
                    unread = more;
                    if let Some(last) = page.last_position() {
                        pages.push_back(PageInFlight {
                            rows: page.len(),
                            after: cursor,
                            task: encode_page(&shared, page),
                        });
                        cursor = last;
                    }
                }
                Err(error) => {
                    tracing::error!(
                        error = %crate::telemetry::ErrorChain(&error),
                        "reading pending emissions failed; retrying in 1 s"
                    );
                    tokio::select! {
                        () = shared.stopped() => break,
                        () = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    }
                }
            }
        }
        if more && pages.len() < PAGES_IN_FLIGHT {
            continue;
        }
        tokio::select! {
            () = shared.stopped() => break,
            encoded = next_page(&mut pages), if !pages.is_empty() => {
                match encoded {
                    Ok(queued) => {
                        enqueue(&shared, &mut workers, queued);
                        if pages.is_empty() {
                            // Every row up to the cursor has been through `enqueue`: the
                            // catch-up marks at or below it have done their work.
                            shared.tenants().reads_passed(cursor);
                        }
                    }
                    Err((after, error)) => {
                        // Read it, and whatever came after it, again (in order) in a moment.
                        tracing::error!(%error, "decoding pending emissions failed; reading them again in 1 s");
                        cursor = after;
                        unread = true;
                        for page in pages.drain(..) {
                            page.task.abort();
                        }
                        tokio::select! {
                            () = shared.stopped() => break,
                            () = tokio::time::sleep(Duration::from_secs(1)) => {}
                        }
                    }
                }
            }
            changed = commits.changed() => {
                if changed.is_err() {
                    // The journal's writer is gone: the journal is closing.
                    break;
                }
                // The loop's first lines see the new count and read.
            }
            () = shared.room.notified() => {}
            () = ownership.changed() => {
                if !apply_ownership(&shared, &mut holdings, &mut cursor, &mut pages).await {
                    break;
                }
                unread = true;
            }
            Some(signal) = commands.recv() => match signal {
                Signal::Unpark(tenant) => unpark(&shared, &tenant),
                // Another replica committed: the next loop reads.
                Signal::Commit => unread = true,
                Signal::Resync => {
                    resync_parked(&shared).await;
                    unread = true;
                }
                Signal::ReplayJob => unread = true,
            },
            Some(result) = workers.join_next(), if !workers.is_empty() => {
                if let Err(error) = result {
                    tracing::error!(%error, "dispatch worker ended abnormally");
                }
            }
        }
    }
    shared.stopping.send_replace(true);
    for page in pages {
        page.task.abort();
    }
    while let Some(result) = workers.join_next().await {
        if let Err(error) = result {
            tracing::error!(%error, "dispatch worker ended abnormally");
        }
    }
    tracing::debug!("dispatcher stopped");
}

/// Waits for the oldest page in flight and takes it off the list; on failure, the position to
/// read again from and why.
async fn next_page(
    pages: &mut VecDeque<PageInFlight>,
) -> Result<Vec<QueuedEmission>, (i64, String)> {
    let Some(page) = pages.front_mut() else {
        return std::future::pending().await;
    };
    let result = (&mut page.task).await;
    let after = page.after;
    pages.pop_front();
    match result {
        Ok(Ok(queued)) => Ok(queued),
        Ok(Err(error)) => Err((after, crate::telemetry::ErrorChain(&error).to_string())),
        Err(error) => Err((after, error.to_string())),
    }
}

/// Decodes and encodes a page: in place when it is small, else on a blocking thread.
fn encode_page(
    shared: &Shared,
    page: PendingPage,
) -> tokio::task::JoinHandle<Result<Vec<QueuedEmission>, JournalError>> {
    let instance_source = shared.settings.instance_source.clone();
    let routing = shared.sink.argo_routing().cloned();
    let small = page.len() <= ENCODE_INLINE_UP_TO;
    let encode = move || {
        let emissions = page.decode()?;
        Ok(emissions
            .into_iter()
            .map(|emission| QueuedEmission::prepare(emission, &instance_source, routing.as_ref()))
            .collect())
    };
    if small {
        let encoded = encode();
        tokio::spawn(async move { encoded })
    } else {
        tokio::task::spawn_blocking(encode)
    }
}

/// Applies a change of the held buckets: lost ones are forgotten, gained ones read (their
/// parked tenants and in-place replays, then their rows from the start of the outbox); false
/// if stopped meanwhile.
async fn apply_ownership(
    shared: &Arc<Shared>,
    holdings: &mut BTreeMap<u16, u64>,
    cursor: &mut i64,
    pages: &mut VecDeque<PageInFlight>,
) -> bool {
    let Some(now) = shared.ownership.current() else {
        return true;
    };
    let lost: HashSet<u16> = holdings
        .iter()
        .filter(|(bucket, grant)| now.get(bucket) != Some(grant))
        .map(|(bucket, _)| *bucket)
        .collect();
    let gained: HashSet<u16> = now
        .iter()
        .filter(|(bucket, grant)| holdings.get(bucket) != Some(grant))
        .map(|(bucket, _)| *bucket)
        .collect();
    *holdings = now;
    if !lost.is_empty() {
        tracing::info!(
            buckets = lost.len(),
            "tenant buckets lost; their tenants are left to their new owner"
        );
        let mut tenants = shared.tenants();
        if tenants.lose(&lost) {
            shared.room.notify_one();
        }
        shared
            .metrics
            .parked_tenants
            .set(i64::try_from(tenants.parked_count()).unwrap_or(i64::MAX));
    }
    if gained.is_empty() {
        return true;
    }
    tracing::info!(
        buckets = gained.len(),
        "tenant buckets gained; reading their pending events"
    );
    // Rows of pages in flight are not queued yet: they are read again.
    let queued_to = pages.front().map_or(*cursor, |page| page.after);
    for page in pages.drain(..) {
        page.task.abort();
    }
    shared.tenants().gain(&gained, queued_to);
    *cursor = 0;
    load_parked(shared, Some(&gained)).await
}

/// Unparks every tenant parked here that the journal no longer has parked (an unpark notice
/// that did not arrive).
async fn resync_parked(shared: &Shared) {
    let mark = shared.tenants().durable_mark();
    match shared.journal.parked_tenants().await {
        Ok(parked) => {
            let parked: HashSet<String> = parked.into_iter().collect();
            let unparked = shared.tenants().parked_but_not_in(&parked, mark);
            for tenant in unparked {
                unpark(shared, &tenant);
            }
        }
        // The next resync tries again.
        Err(error) => tracing::warn!(
            error = %crate::telemetry::ErrorChain(&error),
            "re-reading the parked tenants failed"
        ),
    }
}

/// Reads which tenants are parked, and which have an in-place replay pending (they start
/// catching up: the replay goes before the emissions that waited behind its dead one), of the
/// held buckets (of `only`, if given); false if stopped before it succeeded.
async fn load_parked(shared: &Shared, only: Option<&HashSet<u16>>) -> bool {
    let wanted = |tenant: &String| only.is_none_or(|only| only.contains(&bucket_of(tenant)));
    loop {
        let read = async {
            let parked = shared.journal.parked_tenants().await?;
            let replayed = shared.journal.tenants_with_in_place_replays().await?;
            Ok::<_, JournalError>((parked, replayed))
        };
        match read.await {
            Ok((parked, replayed)) => {
                let parked: Vec<String> = parked.into_iter().filter(wanted).collect();
                let replayed: Vec<String> = replayed.into_iter().filter(wanted).collect();
                let mut tenants = shared.tenants();
                tenants.load(parked, replayed);
                let count = tenants.parked_count();
                drop(tenants);
                shared
                    .metrics
                    .parked_tenants
                    .set(i64::try_from(count).unwrap_or(i64::MAX));
                if count > 0 {
                    tracing::warn!(
                        tenants = count,
                        "tenants are parked behind dead events; replay or skip them"
                    );
                }
                return true;
            }
            Err(error) => {
                tracing::error!(
                    error = %crate::telemetry::ErrorChain(&error),
                    "reading parked tenants failed; retrying in 1 s"
                );
                tokio::select! {
                    () = shared.stopped() => return false,
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }
    }
}

/// Queues `emissions` of a position-ordered read behind their tenants' earlier ones, starting
/// a worker for each tenant that had none. Parked tenants' emissions are left in the journal,
/// and those of tenants catching up to their catch-up.
fn enqueue(shared: &Arc<Shared>, workers: &mut JoinSet<()>, emissions: Vec<QueuedEmission>) {
    let mut tenants = shared.tenants();
    for emission in emissions {
        if let Some((tenant, Queued::StartWorker)) = tenants.queue_read(emission) {
            if let Some(worker) = tenants.worker_of(&tenant) {
                workers.spawn(run_tenant(Arc::clone(shared), tenant, worker));
            }
        }
    }
}

/// Applies [`DispatchControl::unpark`]: a parked tenant starts catching up.
fn unpark(shared: &Shared, tenant: &str) {
    let mut tenants = shared.tenants();
    if !tenants.unpark(tenant) {
        return;
    }
    tracing::info!(tenant, "tenant unparked; delivering its waiting events");
    shared
        .metrics
        .parked_tenants
        .set(i64::try_from(tenants.parked_count()).unwrap_or(i64::MAX));
}

/// Reads the next page of a catching-up tenant's pending emissions (after `after_place`, in
/// its delivery order) into its queue; a short page ends its catch-up.
async fn catch_up_page(
    shared: &Arc<Shared>,
    workers: &mut JoinSet<()>,
    tenant: &str,
    after_place: i64,
    limit: usize,
) -> Result<(), JournalError> {
    let page = shared
        .journal
        .tenant_pending_page(tenant, after_place, limit)
        .await?;
    let full = page.len() == limit;
    let emissions = encode_page(shared, page)
        .await
        .map_err(|error| JournalError::Query(sqlx::Error::Protocol(error.to_string())))??;
    // `None`: parked again meanwhile (its replay died) or its bucket lost, the catch-up is
    // over.
    let mut tenants = shared.tenants();
    if tenants.queue_catch_up(tenant, emissions, full) == Some(Queued::StartWorker) {
        if let Some(worker) = tenants.worker_of(tenant) {
            workers.spawn(run_tenant(Arc::clone(shared), tenant.to_owned(), worker));
        }
    }
    Ok(())
}

/// Delivers one tenant's queue in order until it is empty, the tenant is parked, its bucket
/// lost, or stop. `worker` is the book's id of this worker's queue.
async fn run_tenant(shared: Arc<Shared>, tenant: String, worker: u64) {
    loop {
        let taken = shared.tenants().take_next(&tenant, worker);
        let Some((next, room)) = taken else {
            return;
        };
        if room {
            shared.room.notify_one();
        }
        let outcome = match shared.ownership.grant(&tenant) {
            Some(grant) => match shared.settings.await_workflow {
                Some(timeout) => {
                    match await_previous_workflow(&shared, &tenant, grant, timeout).await {
                        Gate::Open => deliver(&shared, next, grant).await,
                        // `next` stays pending in the journal; the unpark catch-up reads it again.
                        Gate::Parked => return,
                        Gate::Abandoned => None,
                    }
                }
                None => deliver(&shared, next, grant).await,
            },
            // The bucket is gone: the coordinator forgets the queue as soon as it sees it.
            None => None,
        };
        match outcome {
            Some(EmissionStatus::Delivered) => {}
            // `park` already took the queue; after an unpark a new worker may own the tenant.
            Some(EmissionStatus::Dead) => return,
            // Stopped, or the bucket lost: what is left stays pending in the journal.
            Some(EmissionStatus::Pending) | None => {
                if shared.tenants().drop_queue(&tenant, worker) {
                    shared.room.notify_one();
                }
                return;
            }
        }
    }
}

/// Parks `tenant` behind a dead emission: drops its queue (the emissions stay pending in the
/// journal) and stops reading it. Called before the dead emission's record is written, so an
/// operator, who acts on what the journal says, can only unpark the tenant after this.
fn park(shared: &Shared, tenant: &str) {
    let mut tenants = shared.tenants();
    if tenants.park(tenant) {
        shared.room.notify_one();
    }
    shared
        .metrics
        .parked_tenants
        .set(i64::try_from(tenants.parked_count()).unwrap_or(i64::MAX));
}
