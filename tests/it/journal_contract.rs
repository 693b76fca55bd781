//! Contract tests of the event journal: what every storage backend must do.
//!
//! Each contract is an async function over a [`TestStore`] (a journal opened on a fresh, empty
//! store). `journal_contract_suite!` turns every contract into a test for one backend, one line
//! per backend. Each PostgreSQL test runs on a database of its own (see `postgres_support`),
//! and is skipped, saying so, when no PostgreSQL is reachable and `CI` is not set.
//!
//! Timing is never left to chance: where a test needs requests to share (or not share) a group,
//! it parks the writer behind a write lock it holds itself ([`ParkedWriter`]) and waits for
//! observable queue states.

use std::future::Future;
use std::path::PathBuf;
use std::task::Poll;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, Connection};
use tenant_gateway::journal::{
    AppendError, AppendStatus, Appended, AttemptOutcome, AttemptRecord, EmissionStatus,
    EventJournal, EventQuery, EventStatus, JournalError, JournalOptions, NewEvent, NewReplayJob,
    Operator, OperatorError, OperatorOutcome, OperatorWrite, TenantQuery,
};
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::postgres_support::{PostgresLock, TestDatabase};

mod outcomes;
use outcomes::*;

/// Instantiates every contract for one backend: `journal_contract_suite!(name, opener)` where
/// `opener(JournalOptions) -> TestStore` opens a journal on a fresh store. Each contract is listed
/// with the options its store is opened with.
macro_rules! journal_contract_suite {
    ($backend:ident, $open_fresh:path) => {
        mod $backend {
            use super::*;

            journal_contract_suite! {
                @contracts $open_fresh;
                accepts_new_events_with_per_tenant_sequences => JournalOptions::default(),
                duplicate_returns_the_original => JournalOptions::default(),
                conflict_stores_nothing_of_the_request => JournalOptions::default(),
                conflict_in_a_group_spares_the_other_requests => parked_options(5),
                duplicate_inside_one_request => JournalOptions::default(),
                requests_of_one_group_see_each_other => parked_options(3),
                concurrent_single_appends_get_gapless_sequences => parked_options(64),
                close_and_reopen_keeps_events_and_sequences => JournalOptions::default(),
                close_finishes_queued_requests_and_refuses_later_ones => parked_options(2),
                locked_store_is_unavailable_then_recovers => short_busy_timeout(),
                tenant_timeline_is_in_sequence_order => JournalOptions::default(),
                stored_event_round_trips => JournalOptions::default(),
                accepted_events_are_pending_emissions_in_sequence_order => JournalOptions::default(),
                recorded_attempts_move_emissions_on => JournalOptions::default(),
                dead_emission_parks_its_tenant_across_reopen => JournalOptions::default(),
                commits_with_new_events_wake_subscribers => JournalOptions::default(),
                replaying_a_dead_emission_takes_its_place_and_unparks => JournalOptions::default(),
                replaying_a_delivered_event_queues_behind => JournalOptions::default(),
                skipping_needs_a_dead_emission_and_unparks => JournalOptions::default(),
                replay_job_replays_exactly_its_selection_and_resumes => JournalOptions::default(),
                event_search_filters_and_pages_in_journal_order => JournalOptions::default(),
                workflow_records_keep_the_latest_phase_once => JournalOptions::default(),
                terminal_phases_queue_one_notification_each => JournalOptions::default(),
                tenant_state_follows_deliveries_and_workflows => JournalOptions::default(),
                the_newest_delivery_is_the_one_that_finished_last => JournalOptions::default(),
                workflow_phase_search_matches_the_latest_emission => JournalOptions::default(),
                awaited_workflows_park_like_dead_deliveries => JournalOptions::default(),
                a_repeated_attempt_number_fails_no_group => parked_options(4),
                own_writes_never_take_room_from_appends => JournalOptions {
                    queue_bytes: 8 << 10,
                    internal_queue: 2,
                    ..parked_options(2)
                },
            }
        }
    };
    (@contracts $open_fresh:path; $($contract:ident => $options:expr),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $contract() {
                if let Some(store) = $open_fresh(stringify!($contract), $options).await {
                    super::$contract(store).await;
                }
            }
        )*
    };
}

journal_contract_suite!(sqlite, sqlite_store);
journal_contract_suite!(postgres, open_fresh_postgres);

// ---------------------------------------------------------------------------------------------
// Backends
// ---------------------------------------------------------------------------------------------

/// A journal opened on a fresh store, and what a test needs to reach that store behind the
/// journal's back (to reopen it, or to lock it).
struct TestStore {
    journal: EventJournal,
    url: String,
    options: JournalOptions,
    backend: BackendStore,
}

/// The backend-specific side of a [`TestStore`].
enum BackendStore {
    /// A database file in its own temporary directory (removed when the store is dropped).
    Sqlite {
        path: PathBuf,
        _dir: tempfile::TempDir,
    },
    /// A database of its own on the test PostgreSQL (dropped when the store is dropped).
    Postgres(TestDatabase),
}

/// [`open_fresh_sqlite`] as the suite's opener.
async fn sqlite_store(_test: &str, options: JournalOptions) -> Option<TestStore> {
    Some(open_fresh_sqlite(options).await)
}

/// A fresh PostgreSQL store: an empty database of the test's own; `None` when PostgreSQL is
/// not reachable and `CI` is not set.
async fn open_fresh_postgres(test: &str, options: JournalOptions) -> Option<TestStore> {
    let database = TestDatabase::create(&format!("journal_contract::postgres::{test}")).await?;
    let journal = EventJournal::open(&database.url, options.clone())
        .await
        .expect("open a fresh PostgreSQL journal");
    Some(TestStore {
        journal,
        url: database.url.clone(),
        options,
        backend: BackendStore::Postgres(database),
    })
}

/// A fresh SQLite store, in a directory that does not exist yet (open must create it).
async fn open_fresh_sqlite(options: JournalOptions) -> TestStore {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("data").join("journal.db");
    let url = format!("sqlite://{}", path.display());
    let journal = EventJournal::open(&url, options.clone())
        .await
        .expect("open a fresh SQLite journal");
    assert!(
        path.is_file(),
        "open creates the database file and its directory"
    );
    TestStore {
        journal,
        url,
        options,
        backend: BackendStore::Sqlite { path, _dir: dir },
    }
}

/// The store's write lock, taken through a connection of its own, as another process would.
enum WriteLock {
    Sqlite(crate::support::StoreLock),
    Postgres(PostgresLock),
}

impl WriteLock {
    async fn acquire(store: &TestStore) -> WriteLock {
        match &store.backend {
            BackendStore::Sqlite { path, .. } => {
                WriteLock::Sqlite(crate::support::StoreLock::acquire(path).await)
            }
            BackendStore::Postgres(database) => {
                WriteLock::Postgres(PostgresLock::acquire(database).await)
            }
        }
    }

    async fn release(self) {
        match self {
            WriteLock::Sqlite(lock) => lock.release().await,
            WriteLock::Postgres(lock) => lock.release().await,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Test tools
// ---------------------------------------------------------------------------------------------

pub(crate) const SOURCE: &str = "urn:test:billing";

/// A lifecycle event of `tenant` with upstream id `id`; its document and hash derive from both.
pub(crate) fn event(tenant: &str, id: &str) -> NewEvent {
    event_with_data(
        tenant,
        id,
        serde_json::json!({ "tenant": tenant, "plan": "gold" }),
    )
}

/// Like [`event`], with chosen data (so the same id can come with other content).
pub(crate) fn event_with_data(tenant: &str, id: &str, data: serde_json::Value) -> NewEvent {
    let document = serde_json::json!({
        "specversion": "1.0",
        "id": id,
        "source": SOURCE,
        "type": "com.acme.tenant.lifecycle.upsert",
        "time": "2025-01-02T03:04:05Z",
        "data": data,
    })
    .to_string();
    NewEvent {
        source: SOURCE.into(),
        id: id.into(),
        event_type: "com.acme.tenant.lifecycle.upsert".into(),
        tenant: tenant.into(),
        action: "lifecycle.upsert".into(),
        time: Some("2025-01-02T03:04:05Z".into()),
        content_hash: hex::encode(Sha256::digest(document.as_bytes())),
        document,
        lifecycle: r#"{"parameters":{},"objectStorage":null}"#.into(),
    }
}

/// The same upstream identity as `original` with different content: a conflict.
pub(crate) fn conflicting(original: &NewEvent) -> NewEvent {
    event_with_data(
        &original.tenant,
        &original.id,
        serde_json::json!({ "tenant": original.tenant, "plan": "changed" }),
    )
}

/// Appends one event and expects it to be newly accepted.
async fn accept(journal: &EventJournal, event: NewEvent) -> Appended {
    let appended = journal.append(vec![event]).await.expect("append");
    assert_eq!(appended.len(), 1);
    assert_eq!(appended[0].status, AppendStatus::Accepted);
    appended[0]
}

/// The sequences of `tenant`'s timeline, in timeline order.
async fn timeline_sequences(journal: &EventJournal, tenant: &str) -> Vec<i64> {
    let timeline = journal.tenant_timeline(tenant).await.expect("timeline");
    timeline.iter().map(|e| e.sequence).collect()
}

/// The upstream ids of `tenant`'s timeline, in timeline order.
async fn timeline_ids(journal: &EventJournal, tenant: &str) -> Vec<String> {
    let timeline = journal.tenant_timeline(tenant).await.expect("timeline");
    timeline.into_iter().map(|e| e.id).collect()
}

/// Options for tests that park the writer: groups of at most `max_group_events` events, and a
/// busy timeout far beyond any test, so the parked writer waits for the lock instead of failing.
fn parked_options(max_group_events: usize) -> JournalOptions {
    JournalOptions {
        busy_timeout: Duration::from_secs(120),
        max_group_events,
        ..JournalOptions::default()
    }
}

/// Options for the Unavailable contract: a write waits 200 ms for a locked store, then fails.
fn short_busy_timeout() -> JournalOptions {
    JournalOptions {
        busy_timeout: Duration::from_millis(200),
        ..JournalOptions::default()
    }
}

/// Polls until `condition` holds, failing after 10 s. For states a test cannot await directly
/// (a request taken off the queue); it returns as soon as the state is reached.
async fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

type AppendTask = JoinHandle<Result<Vec<Appended>, AppendError>>;

/// Starts an append on its own task and returns once the request is in the journal's queue (or
/// already taken by the writer): `append` queues its request in its first poll when the queue
/// has room, which is polled here before the task takes the future over.
async fn submit(journal: &EventJournal, events: Vec<NewEvent>) -> AppendTask {
    let journal = journal.clone();
    let mut append = Box::pin(async move { journal.append(events).await });
    std::future::poll_fn(|cx| {
        assert!(
            append.as_mut().poll(cx).is_pending(),
            "a queued append waits for the writer"
        );
        Poll::Ready(())
    })
    .await;
    tokio::spawn(append)
}

/// The writer held at a known point: it has taken a request of exactly `max_group_events`
/// events (a full group, so it took nothing else from the queue) and waits for the write lock
/// this test holds. Until [`release`](Self::release), every later request stays queued, so the
/// test knows exactly which requests the next group holds.
struct ParkedWriter {
    lock: WriteLock,
    blocker: AppendTask,
    events: usize,
}

impl ParkedWriter {
    async fn park(store: &TestStore) -> ParkedWriter {
        let lock = WriteLock::acquire(store).await;
        let events = store.options.max_group_events;
        let blocker_events = (0..events)
            .map(|i| event("parker", &format!("parker-{i}")))
            .collect();
        let blocker = submit(&store.journal, blocker_events).await;
        wait_until("the writer took the parking request", || {
            store.journal.queued_requests() == 0
        })
        .await;
        ParkedWriter {
            lock,
            blocker,
            events,
        }
    }

    /// Releases the lock and checks that the parking request was stored.
    async fn release(self) {
        self.lock.release().await;
        let appended = self
            .blocker
            .await
            .expect("parking task")
            .expect("parking request stored");
        assert_eq!(appended.len(), self.events);
        assert!(appended.iter().all(|a| a.status == AppendStatus::Accepted));
    }
}

/// Submits one request while the writer is parked and checks that it is queued behind it.
async fn queue_behind(
    store: &TestStore,
    events: Vec<NewEvent>,
    expected_queue: usize,
) -> AppendTask {
    let task = submit(&store.journal, events).await;
    assert_eq!(
        store.journal.queued_requests(),
        expected_queue,
        "the parked writer leaves requests queued"
    );
    task
}

async fn answer(task: AppendTask) -> Result<Vec<Appended>, AppendError> {
    task.await.expect("append task")
}

// ---------------------------------------------------------------------------------------------
// Contracts
// ---------------------------------------------------------------------------------------------

async fn accepts_new_events_with_per_tenant_sequences(store: TestStore) {
    let journal = &store.journal;
    let mut appended = Vec::new();
    for (tenant, id) in [
        ("acme", "a1"),
        ("beta", "b1"),
        ("acme", "a2"),
        ("acme", "a3"),
        ("beta", "b2"),
    ] {
        appended.push(accept(journal, event(tenant, id)).await);
    }
    let multi = journal
        .append(vec![
            event("beta", "b3"),
            event("acme", "a4"),
            event("beta", "b4"),
        ])
        .await
        .expect("multi-event append");
    let sequences: Vec<i64> = appended.iter().chain(&multi).map(|a| a.sequence).collect();
    assert_eq!(sequences, [1, 1, 2, 3, 2, 3, 4, 4]);
    assert!(multi.iter().all(|a| a.status == AppendStatus::Accepted));

    let mut ids: Vec<Uuid> = appended.iter().chain(&multi).map(|a| a.event_id).collect();
    assert!(
        ids.iter().all(|id| id.get_version_num() == 7),
        "event ids are UUIDv7"
    );
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 8, "every event gets its own id");

    assert_eq!(timeline_sequences(journal, "acme").await, [1, 2, 3, 4]);
    assert_eq!(timeline_sequences(journal, "beta").await, [1, 2, 3, 4]);
    let a2 = journal
        .find_by_origin(SOURCE, "a2")
        .await
        .expect("find")
        .expect("a2 stored");
    assert_eq!(
        (a2.event_id, a2.sequence, a2.tenant.as_str()),
        (appended[2].event_id, 2, "acme")
    );

    // Sequential appends never share a transaction: one commit per append.
    let stats = journal.commit_stats();
    assert_eq!((stats.commits, stats.events), (6, 8));
}

async fn duplicate_returns_the_original(store: TestStore) {
    let journal = &store.journal;
    accept(journal, event("acme", "first")).await;
    let original = accept(journal, event("acme", "dup")).await;

    let again = journal
        .append(vec![event("acme", "dup")])
        .await
        .expect("duplicate append");
    assert_eq!(
        again,
        [Appended {
            event_id: original.event_id,
            sequence: 2,
            status: AppendStatus::Duplicate
        }]
    );
    // A duplicate takes no sequence number and adds no row.
    assert_eq!(accept(journal, event("acme", "next")).await.sequence, 3);
    assert_eq!(
        timeline_ids(journal, "acme").await,
        ["first", "dup", "next"]
    );
    assert_eq!(journal.commit_stats().events, 3);
}

async fn conflict_stores_nothing_of_the_request(store: TestStore) {
    let journal = &store.journal;
    let stored_event = event("acme", "x");
    let stored = accept(journal, stored_event.clone()).await;

    let single = journal.append(vec![conflicting(&stored_event)]).await;
    assert!(
        matches!(single, Err(AppendError::Conflict { index: 0, event_id }) if event_id == stored.event_id),
        "{single:?}"
    );

    let multi = journal
        .append(vec![
            event("acme", "n1"),
            event("beta", "n2"),
            conflicting(&stored_event),
            event("acme", "n3"),
        ])
        .await;
    assert!(
        matches!(multi, Err(AppendError::Conflict { index: 2, event_id }) if event_id == stored.event_id),
        "{multi:?}"
    );
    // Members that are all repeats inserted nothing, so there is nothing to undo either.
    let repeats = journal
        .append(vec![stored_event.clone(), conflicting(&stored_event)])
        .await;
    assert!(
        matches!(repeats, Err(AppendError::Conflict { index: 1, event_id }) if event_id == stored.event_id),
        "{repeats:?}"
    );
    for id in ["n1", "n2", "n3"] {
        assert_eq!(
            journal.find_by_origin(SOURCE, id).await.expect("find"),
            None,
            "{id} was not stored"
        );
    }
    assert!(journal
        .tenant_timeline("beta")
        .await
        .expect("timeline")
        .is_empty());

    // The stored event is untouched and the conflict burned no sequence number.
    let kept = journal
        .find_by_origin(SOURCE, "x")
        .await
        .expect("find")
        .expect("x stored");
    assert_eq!(kept.content_hash, stored_event.content_hash);
    assert_eq!(accept(journal, event("acme", "n1")).await.sequence, 2);
    assert_eq!(journal.commit_stats().events, 2);
    // The tenants and their last sequences (kept apart from the events) are the committed
    // ones: the refused requests left neither a tenant (beta has no event) nor a number.
    let tenants: Vec<(String, i64)> = journal
        .list_tenants(&TenantQuery::default(), 10)
        .await
        .expect("tenants")
        .into_iter()
        .map(|t| (t.tenant, t.last_sequence))
        .collect();
    assert_eq!(tenants, [("acme".to_owned(), 2)]);
}

async fn conflict_in_a_group_spares_the_other_requests(store: TestStore) {
    let journal = &store.journal;
    let stored_event = event("acme", "x");
    let stored = accept(journal, stored_event.clone()).await;
    let before = journal.commit_stats();

    // One group of 1 + 2 + 1 + 1 events (max_group_events = 5): A, B (multi, conflicting
    // member), C, D (single, conflicting).
    let parked = ParkedWriter::park(&store).await;
    let a = queue_behind(&store, vec![event("acme", "a")], 1).await;
    let b = queue_behind(
        &store,
        vec![event("acme", "b"), conflicting(&stored_event)],
        2,
    )
    .await;
    let c = queue_behind(&store, vec![event("acme", "c")], 3).await;
    let d = queue_behind(&store, vec![conflicting(&stored_event)], 4).await;
    parked.release().await;

    let a = answer(a).await.expect("A stored");
    let b = answer(b).await;
    let c = answer(c).await.expect("C stored");
    let d = answer(d).await;
    assert_eq!((a[0].status, a[0].sequence), (AppendStatus::Accepted, 2));
    assert!(
        matches!(b, Err(AppendError::Conflict { index: 1, event_id }) if event_id == stored.event_id),
        "{b:?}"
    );
    // B's first member took sequence 3 inside the transaction; its rollback gave it back to C.
    assert_eq!((c[0].status, c[0].sequence), (AppendStatus::Accepted, 3));
    assert!(
        matches!(d, Err(AppendError::Conflict { index: 0, event_id }) if event_id == stored.event_id),
        "{d:?}"
    );

    assert_eq!(timeline_ids(journal, "acme").await, ["x", "a", "c"]);
    assert_eq!(timeline_sequences(journal, "acme").await, [1, 2, 3]);
    let after = journal.commit_stats();
    assert_eq!(
        after.commits - before.commits,
        2,
        "the parking group, then A to D in one"
    );
    assert_eq!(after.events - before.events, 5 + 2);
}

async fn duplicate_inside_one_request(store: TestStore) {
    let journal = &store.journal;
    let twice = journal
        .append(vec![
            event("acme", "e"),
            event("acme", "other"),
            event("acme", "e"),
        ])
        .await
        .expect("append");
    assert_eq!(
        twice
            .iter()
            .map(|a| (a.status, a.sequence))
            .collect::<Vec<_>>(),
        [
            (AppendStatus::Accepted, 1),
            (AppendStatus::Accepted, 2),
            (AppendStatus::Duplicate, 1)
        ]
    );
    assert_eq!(twice[2].event_id, twice[0].event_id);

    let f = event("acme", "f");
    let clash = journal.append(vec![f.clone(), conflicting(&f)]).await;
    assert!(
        matches!(clash, Err(AppendError::Conflict { index: 1, .. })),
        "{clash:?}"
    );
    assert_eq!(
        journal.find_by_origin(SOURCE, "f").await.expect("find"),
        None
    );
    assert_eq!(timeline_ids(journal, "acme").await, ["e", "other"]);
}

async fn requests_of_one_group_see_each_other(store: TestStore) {
    let journal = &store.journal;
    let e = event("acme", "e");
    let parked = ParkedWriter::park(&store).await;
    let first = queue_behind(&store, vec![e.clone()], 1).await;
    let repeat = queue_behind(&store, vec![e.clone()], 2).await;
    let clash = queue_behind(&store, vec![conflicting(&e)], 3).await;
    parked.release().await;

    let first = answer(first).await.expect("first stored");
    let repeat = answer(repeat).await.expect("repeat is a duplicate");
    let clash = answer(clash).await;
    assert_eq!(
        (first[0].status, first[0].sequence),
        (AppendStatus::Accepted, 1)
    );
    assert_eq!(
        repeat,
        [Appended {
            event_id: first[0].event_id,
            sequence: 1,
            status: AppendStatus::Duplicate
        }]
    );
    assert!(
        matches!(clash, Err(AppendError::Conflict { index: 0, event_id }) if event_id == first[0].event_id),
        "{clash:?}"
    );
    assert_eq!(timeline_ids(journal, "acme").await, ["e"]);
}

async fn concurrent_single_appends_get_gapless_sequences(store: TestStore) {
    const APPENDS: usize = 200;
    const TENANTS: usize = 5;
    let journal = &store.journal;
    let before = journal.commit_stats();

    // All 200 requests race into the queue while the writer is parked, so the groups after it
    // are full: 64 + 64 + 64 + 8 (max_group_events = 64).
    let parked = ParkedWriter::park(&store).await;
    let tasks: Vec<_> = (0..APPENDS)
        .map(|i| {
            let journal = journal.clone();
            let tenant = format!("tenant-{}", i % TENANTS);
            tokio::spawn(
                async move { journal.append(vec![event(&tenant, &format!("c{i}"))]).await },
            )
        })
        .collect();
    wait_until("every append is queued", || {
        journal.queued_requests() == APPENDS
    })
    .await;
    parked.release().await;

    let mut sequences = vec![Vec::new(); TENANTS];
    for (i, task) in tasks.into_iter().enumerate() {
        let appended = answer(task).await.expect("concurrent append");
        assert_eq!(appended[0].status, AppendStatus::Accepted);
        sequences[i % TENANTS].push(appended[0].sequence);
    }
    let per_tenant = (APPENDS / TENANTS) as i64;
    for (t, mut seen) in sequences.into_iter().enumerate() {
        seen.sort_unstable();
        assert_eq!(
            seen,
            (1..=per_tenant).collect::<Vec<_>>(),
            "tenant-{t} answers"
        );
        assert_eq!(
            timeline_sequences(journal, &format!("tenant-{t}")).await,
            (1..=per_tenant).collect::<Vec<_>>(),
            "tenant-{t} timeline"
        );
    }
    let after = journal.commit_stats();
    assert_eq!(after.events - before.events, (64 + APPENDS) as u64);
    assert_eq!(
        after.commits - before.commits,
        1 + 4,
        "200 requests in 4 shared transactions"
    );
}

async fn close_and_reopen_keeps_events_and_sequences(store: TestStore) {
    accept(&store.journal, event("acme", "a1")).await;
    store
        .journal
        .append(vec![
            event("acme", "a2"),
            event("beta", "b1"),
            event("acme", "a3"),
        ])
        .await
        .expect("append");
    let a2_before = store
        .journal
        .find_by_origin(SOURCE, "a2")
        .await
        .expect("find")
        .expect("a2");
    store.journal.close().await;

    let reopened = EventJournal::open(&store.url, store.options.clone())
        .await
        .expect("reopen");
    reopened
        .check_ready()
        .await
        .expect("reopened journal is ready");
    let a2_after = reopened
        .find_by_origin(SOURCE, "a2")
        .await
        .expect("find")
        .expect("a2 kept");
    assert_eq!(a2_after, a2_before);
    assert_eq!(timeline_ids(&reopened, "acme").await, ["a1", "a2", "a3"]);

    let again = reopened
        .append(vec![event("acme", "a2")])
        .await
        .expect("duplicate");
    assert_eq!(
        (again[0].status, again[0].event_id),
        (AppendStatus::Duplicate, a2_before.event_id)
    );
    assert_eq!(accept(&reopened, event("acme", "a4")).await.sequence, 4);
    assert_eq!(accept(&reopened, event("beta", "b2")).await.sequence, 2);
    assert_eq!(
        reopened.commit_stats().events,
        2,
        "stats count from the reopen"
    );
    reopened.close().await;
}

async fn close_finishes_queued_requests_and_refuses_later_ones(store: TestStore) {
    let journal = &store.journal;
    accept(journal, event("acme", "before")).await;
    journal.check_ready().await.expect("ready while open");

    let parked = ParkedWriter::park(&store).await;
    let queued_1 = queue_behind(&store, vec![event("acme", "q1")], 1).await;
    let queued_2 = queue_behind(&store, vec![event("acme", "q2"), event("beta", "q3")], 2).await;
    let closing = tokio::spawn({
        let journal = journal.clone();
        async move { journal.close().await }
    });
    // Readiness drops as soon as the close starts, while the queue is still being worked off.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match journal.check_ready().await {
            Err(JournalError::Closed) => break,
            Ok(()) => assert!(Instant::now() < deadline, "close never started"),
            Err(other) => panic!("readiness while closing: {other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let refused = tokio::time::timeout(
        Duration::from_secs(10),
        journal.append(vec![event("acme", "late")]),
    )
    .await
    .expect("a refused append does not wait for the writer");
    assert!(matches!(refused, Err(AppendError::Closed)), "{refused:?}");
    assert!(
        !closing.is_finished(),
        "close waits for the queued requests"
    );

    parked.release().await;
    closing.await.expect("close task");
    assert_eq!(answer(queued_1).await.expect("q1 stored")[0].sequence, 2);
    let q2 = answer(queued_2).await.expect("q2 and q3 stored");
    assert_eq!(q2.iter().map(|a| a.sequence).collect::<Vec<_>>(), [3, 1]);

    journal.close().await; // idempotent
    assert!(matches!(
        journal.append(vec![event("acme", "later")]).await,
        Err(AppendError::Closed)
    ));
    assert!(matches!(
        journal.find_by_origin(SOURCE, "q1").await,
        Err(JournalError::Closed)
    ));

    let reopened = EventJournal::open(&store.url, store.options.clone())
        .await
        .expect("reopen");
    assert_eq!(
        timeline_ids(&reopened, "acme").await,
        ["before", "q1", "q2"]
    );
    assert_eq!(
        reopened.find_by_origin(SOURCE, "late").await.expect("find"),
        None
    );
    reopened.close().await;
}

async fn locked_store_is_unavailable_then_recovers(store: TestStore) {
    let journal = &store.journal;
    accept(journal, event("acme", "a1")).await;

    let lock = WriteLock::acquire(&store).await;
    let started = Instant::now();
    let failed = journal
        .append(vec![event("acme", "a2"), event("beta", "b1")])
        .await;
    match &failed {
        Err(AppendError::Unavailable(cause)) => {
            assert!(matches!(**cause, sqlx::Error::Database(_)), "{cause:?}")
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
    assert!(
        started.elapsed() >= Duration::from_millis(200),
        "waited for the busy timeout"
    );
    // Reads go on while the store is locked for writing, and nothing of the failed append is there.
    assert_eq!(
        journal.find_by_origin(SOURCE, "a2").await.expect("find"),
        None
    );
    lock.release().await;

    let retried = journal
        .append(vec![event("acme", "a2"), event("beta", "b1")])
        .await
        .expect("the retry after the lock is released succeeds");
    assert_eq!(
        retried.iter().map(|a| a.sequence).collect::<Vec<_>>(),
        [2, 1]
    );
    assert_eq!(timeline_ids(journal, "acme").await, ["a1", "a2"]);
}

async fn tenant_timeline_is_in_sequence_order(store: TestStore) {
    let journal = &store.journal;
    accept(journal, event("acme", "t1")).await;
    accept(journal, event("beta", "u1")).await;
    journal
        .append(vec![
            event("acme", "t2"),
            event("beta", "u2"),
            event("acme", "t3"),
        ])
        .await
        .expect("append");
    accept(journal, event("acme", "t4")).await;

    let timeline = journal.tenant_timeline("acme").await.expect("timeline");
    assert_eq!(
        timeline
            .iter()
            .map(|e| (e.id.as_str(), e.sequence))
            .collect::<Vec<_>>(),
        [("t1", 1), ("t2", 2), ("t3", 3), ("t4", 4)]
    );
    assert!(timeline.iter().all(|e| e.tenant == "acme"));
    assert_eq!(timeline_ids(journal, "beta").await, ["u1", "u2"]);
    assert!(journal
        .tenant_timeline("nobody")
        .await
        .expect("timeline")
        .is_empty());
}

async fn stored_event_round_trips(store: TestStore) {
    let journal = &store.journal;
    let document = serde_json::json!({
        "specversion": "1.0",
        "id": "rt-1",
        "source": "urn:test:control-plane",
        "type": "com.acme.tenant.lifecycle.migrate-out",
        "time": "2025-03-04T05:06:07.123+01:00",
        "subject": "acme",
        "data": {"tenant": {"id": "acme"}, "note": "héllo \u{1F600} \"quoted\"", "nested": [1, 2.5, {"x": null}]},
    });
    let document_text = document.to_string();
    let with_time = NewEvent {
        source: "urn:test:control-plane".into(),
        id: "rt-1".into(),
        event_type: "com.acme.tenant.lifecycle.migrate-out".into(),
        tenant: "acme".into(),
        action: "lifecycle.migrate-out".into(),
        time: Some("2025-03-04T05:06:07.123+01:00".into()),
        content_hash: hex::encode(Sha256::digest(document_text.as_bytes())),
        document: document_text,
        lifecycle: r#"{"parameters":{"plan":"gold"},"objectStorage":{"url":"s3://b/acme"}}"#.into(),
    };
    let without_time = NewEvent {
        id: "rt-2".into(),
        time: None,
        ..event("acme", "rt-2")
    };

    let before = chrono::Utc::now();
    let appended = journal
        .append(vec![with_time.clone(), without_time.clone()])
        .await
        .expect("append");
    let after = chrono::Utc::now();

    let stored = journal
        .find_by_origin("urn:test:control-plane", "rt-1")
        .await
        .expect("find")
        .expect("rt-1 stored");
    assert_eq!(stored.event_id, appended[0].event_id);
    assert_eq!(stored.source, with_time.source);
    assert_eq!(stored.id, "rt-1");
    assert_eq!(stored.event_type, with_time.event_type);
    assert_eq!(stored.tenant, "acme");
    assert_eq!(stored.action, "lifecycle.migrate-out");
    assert_eq!(stored.sequence, 1);
    assert_eq!(
        stored.time.as_deref(),
        Some("2025-03-04T05:06:07.123+01:00")
    );
    assert_eq!(stored.document, document);
    assert_eq!(stored.content_hash, with_time.content_hash);
    assert_eq!(stored.status, EventStatus::Pending);
    assert!(
        stored.received_at.ends_with('Z'),
        "received_at is UTC: {}",
        stored.received_at
    );
    let received_at = chrono::DateTime::parse_from_rfc3339(&stored.received_at).expect("RFC 3339");
    assert!(
        before <= received_at && received_at <= after,
        "{received_at} outside [{before}, {after}]"
    );

    let untimed = journal
        .find_by_origin(SOURCE, "rt-2")
        .await
        .expect("find")
        .expect("rt-2 stored");
    assert_eq!(untimed.time, None);
    assert_eq!(untimed.sequence, 2);
    assert_eq!(untimed.event_id, appended[1].event_id);
    let expected_document: serde_json::Value =
        serde_json::from_str(&without_time.document).expect("JSON");
    assert_eq!(untimed.document, expected_document);
}

// ---------------------------------------------------------------------------------------------
// Opening: URLs and options (not backend contracts: they decide the backend)
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_urls_and_options_are_refused() {
    for (url, reason) in [
        ("./data/journal.db", "no `scheme://`"),
        ("mysql://u:p@h/db", "unsupported scheme `mysql`"),
        ("sqlite://", "no file path"),
        ("sqlite://:memory:", "needs a file path"),
        ("sqlite://./x.db?mode=ro", "query parameters"),
    ] {
        match EventJournal::open(url, JournalOptions::default()).await {
            Err(JournalError::InvalidUrl(message)) => {
                assert!(message.contains(reason), "{url}: {message}");
                assert!(!message.contains("u:p@"), "the URL is never echoed");
            }
            other => panic!("{url}: expected InvalidUrl, got {other:?}"),
        }
    }
    let dir = tempfile::tempdir().expect("temporary directory");
    let url = format!("sqlite://{}", dir.path().join("x.db").display());
    let zero_queue = JournalOptions {
        queue_bytes: 0,
        ..JournalOptions::default()
    };
    match EventJournal::open(&url, zero_queue).await {
        Err(JournalError::InvalidOptions(message)) => {
            assert!(message.contains("queue_bytes"), "{message}")
        }
        other => panic!("expected InvalidOptions, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_store_is_in_wal_mode() {
    let store = open_fresh_sqlite(JournalOptions::default()).await;
    let BackendStore::Sqlite { path, .. } = &store.backend else {
        unreachable!("open_fresh_sqlite opens a SQLite store");
    };
    let mut raw = SqliteConnectOptions::new()
        .filename(path)
        .connect()
        .await
        .expect("raw connection");
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(&mut raw)
        .await
        .expect("journal_mode");
    assert_eq!(mode, "wal");
    raw.close().await.expect("close");
    store.journal.close().await;
}

// ---------------------------------------------------------------------------------------------
// Benchmark (ignored): cargo test --release --test it journal_throughput -- --ignored --nocapture
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark; run with --release --ignored --nocapture"]
async fn journal_throughput() {
    const EVENTS: usize = 10_000;

    // Events are built before the clock starts: only the journal is measured.
    let events = |prefix: &str| -> Vec<NewEvent> {
        (0..EVENTS)
            .map(|i| event(&format!("t{}", i % 50), &format!("{prefix}{i}")))
            .collect()
    };

    let store = open_fresh_sqlite(JournalOptions::default()).await;
    let sequential = events("s");
    let started = Instant::now();
    for event in sequential {
        let appended = store.journal.append(vec![event]).await;
        assert!(appended.is_ok(), "{appended:?}");
    }
    report("sequential", &store.journal, started.elapsed());
    store.journal.close().await;

    for tasks in [64, 256] {
        let store = open_fresh_sqlite(JournalOptions::default()).await;
        let mut per_task: Vec<Vec<NewEvent>> = vec![Vec::new(); tasks];
        for (i, event) in events("c").into_iter().enumerate() {
            per_task[i % tasks].push(event);
        }
        let started = Instant::now();
        let running: Vec<_> = per_task
            .into_iter()
            .map(|events| {
                let journal = store.journal.clone();
                tokio::spawn(async move {
                    for event in events {
                        let appended = journal.append(vec![event]).await;
                        assert!(appended.is_ok(), "{appended:?}");
                    }
                })
            })
            .collect();
        for task in running {
            task.await.expect("bench task");
        }
        report(
            &format!("concurrent, {tasks} tasks"),
            &store.journal,
            started.elapsed(),
        );
        store.journal.close().await;
    }

    fn report(what: &str, journal: &EventJournal, elapsed: Duration) {
        let stats = journal.commit_stats();
        println!(
            "{what}: {} single-event appends in {:.3} s = {:.0} events/s, {} commits ({:.1} events/commit)",
            stats.events,
            elapsed.as_secs_f64(),
            stats.events as f64 / elapsed.as_secs_f64(),
            stats.commits,
            stats.events as f64 / stats.commits as f64,
        );
    }
}

/// The gateway's own writes (delivery records) have their own queue: while the writer is held
/// and that queue is full, an append still queues. Appends are bounded by the bytes they hold:
/// over the bound one is refused at once, saying so, and nothing of it is stored.
async fn own_writes_never_take_room_from_appends(store: TestStore) {
    let journal = &store.journal;
    let first = accept(journal, event("acme", "a-1")).await;
    let position = journal
        .pending_emissions(0, None, 10)
        .await
        .expect("pending")[0]
        .position;
    let parked = ParkedWriter::park(&store).await;
    // More record requests than their queue holds (2): the third waits for room.
    let records: Vec<_> = (1..=3)
        .map(|n| {
            let journal = journal.clone();
            let record = attempt(
                position,
                first.event_id,
                n,
                AttemptOutcome::Retryable,
                EmissionStatus::Pending,
            );
            tokio::spawn(async move {
                let receipt = journal.submit_attempts(vec![record]).await?;
                receipt.durable().await
            })
        })
        .collect();
    wait_until("three record requests are waiting", || {
        journal.queued_requests() == 3
    })
    .await;
    let queued = queue_behind(&store, vec![event("acme", "a-2")], 4).await;
    assert!(journal.queued_append_bytes() > 0);

    // The parked request and a-2 hold some of the 8 KiB; 16 KiB of data cannot fit.
    let large = event_with_data(
        "beta",
        "b-1",
        serde_json::json!({ "blob": "x".repeat(16 << 10) }),
    );
    match journal.append(vec![large]).await {
        Err(
            error @ AppendError::Overloaded {
                queued_bytes,
                limit,
            },
        ) => {
            assert!(queued_bytes > 0, "{error}");
            assert_eq!(limit, 8 << 10);
            assert!(error.to_string().contains("bound is 8192"), "{error}");
        }
        other => panic!("expected Overloaded, got {other:?}"),
    }

    parked.release().await;
    assert_eq!(answer(queued).await.expect("a-2 stored")[0].sequence, 2);
    for record in records {
        record.await.expect("record task").expect("record durable");
    }
    assert_eq!(timeline_ids(journal, "beta").await, Vec::<String>::new());
    // Everything queued was answered: the bytes are given back.
    assert_eq!(journal.queued_append_bytes(), 0);
    accept(journal, event("beta", "b-2")).await;
}

/// An attempt record for `position` with the given result.
fn attempt(
    position: i64,
    event_id: Uuid,
    attempt: u32,
    outcome: AttemptOutcome,
    emission_status: EmissionStatus,
) -> AttemptRecord {
    let now = chrono::Utc::now();
    AttemptRecord {
        position,
        event_id,
        attempt,
        started_at: now,
        finished_at: now,
        sink: "webhook",
        outcome,
        status_code: (outcome != AttemptOutcome::Delivered).then_some(503),
        error: (outcome != AttemptOutcome::Delivered).then(|| "HTTP 503: publish failed".into()),
        emission_status,
        awaits_workflow: false,
    }
}

/// Every accepted event gets its first emission in the same commit, pending, with the event id
/// as emission id; per tenant, positions follow sequences, and duplicates add nothing.
async fn accepted_events_are_pending_emissions_in_sequence_order(store: TestStore) {
    let journal = &store.journal;
    let mut appended = Vec::new();
    for i in 0..4 {
        for tenant in ["acme", "globex"] {
            appended.push((
                tenant,
                accept(journal, event(tenant, &format!("{tenant}-{i}"))).await,
            ));
        }
    }
    let duplicate = journal
        .append(vec![event("acme", "acme-0")])
        .await
        .expect("duplicate");
    assert_eq!(duplicate[0].status, AppendStatus::Duplicate);

    let pending = journal
        .pending_emissions(0, None, 100)
        .await
        .expect("pending");
    assert_eq!(
        pending.len(),
        8,
        "one emission per accepted event, none for the duplicate"
    );
    assert!(pending.windows(2).all(|w| w[0].position < w[1].position));
    for emission in &pending {
        assert_eq!(emission.emission_id, emission.event.event_id);
        assert_eq!(emission.replay_of, None);
        assert_eq!(emission.attempts, 0);
        let stored = journal
            .find_event(emission.event.event_id)
            .await
            .expect("find")
            .expect("stored");
        assert_eq!(stored.status, EventStatus::Pending);
        assert_eq!(stored.document.to_string(), emission.event.document);
    }
    for tenant in ["acme", "globex"] {
        let sequences: Vec<i64> = pending
            .iter()
            .filter(|e| e.event.tenant == tenant)
            .map(|e| e.event.sequence)
            .collect();
        assert_eq!(sequences, vec![1, 2, 3, 4], "{tenant}");
        let only = journal
            .pending_emissions(0, Some(tenant), 100)
            .await
            .expect("pending");
        assert_eq!(only.len(), 4);
    }
    let after = journal
        .pending_emissions(pending[5].position, None, 100)
        .await
        .expect("after");
    assert_eq!(after, pending[6..].to_vec());
    let limited = journal.pending_emissions(0, None, 3).await.expect("limit");
    assert_eq!(limited, pending[..3].to_vec());
    assert_eq!(journal.count_pending().await.expect("count"), 8);
    let lifecycle: serde_json::Value =
        serde_json::from_str(&pending[0].event.lifecycle).expect("lifecycle is JSON");
    assert_eq!(
        lifecycle,
        serde_json::json!({"parameters": {}, "objectStorage": null})
    );
    store.journal.close().await;
}

/// Two replicas may both send an emission during a bucket handover and record the same attempt
/// number: the second record is dropped, and neither it nor the appends sharing its group fail
/// (a unique violation there once turned ingest requests into 503s).
async fn a_repeated_attempt_number_fails_no_group(store: TestStore) {
    let journal = &store.journal;
    let first = accept(journal, event("acme", "h-1")).await;
    let position = journal.pending_emissions(0, None, 1).await.unwrap()[0].position;
    let record = |outcome, status| attempt(position, first.event_id, 1, outcome, status);
    journal
        .record_attempts(vec![record(
            AttemptOutcome::Delivered,
            EmissionStatus::Delivered,
        )])
        .await
        .expect("the new owner's record");
    // The old owner's record of the same attempt, in one group with an append.
    let parked = ParkedWriter::park(&store).await;
    let append = queue_behind(&store, vec![event("beta", "h-2")], 1).await;
    let late = {
        let journal = journal.clone();
        let again = record(AttemptOutcome::Delivered, EmissionStatus::Delivered);
        tokio::spawn(async move { journal.record_attempts(vec![again]).await })
    };
    wait_until("both wait for the writer", || {
        journal.queued_requests() == 2
    })
    .await;
    parked.release().await;
    late.await
        .expect("task")
        .expect("a repeated attempt number is no error");
    let appended = answer(append).await.expect("the append in the same group");
    assert_eq!(appended[0].status, AppendStatus::Accepted);
    let attempts = journal.delivery_attempts(first.event_id).await.unwrap();
    assert_eq!(attempts.len(), 1, "{attempts:?}");
    store.journal.close().await;
}

/// A failed attempt keeps the emission pending (counting the attempt); a delivered one leaves
/// the work list and marks the event delivered; every attempt is kept.
async fn recorded_attempts_move_emissions_on(store: TestStore) {
    let journal = &store.journal;
    let first = accept(journal, event("acme", "a-1")).await;
    accept(journal, event("acme", "a-2")).await;
    let pending = journal
        .pending_emissions(0, None, 10)
        .await
        .expect("pending");
    let position = pending[0].position;

    journal
        .record_attempts(vec![attempt(
            position,
            first.event_id,
            1,
            AttemptOutcome::Retryable,
            EmissionStatus::Pending,
        )])
        .await
        .expect("record");
    let pending = journal
        .pending_emissions(0, None, 10)
        .await
        .expect("pending");
    assert_eq!(pending.len(), 2);
    assert_eq!(pending[0].attempts, 1);
    assert!(pending[0].first_attempt_at.is_some());

    journal
        .record_attempts(vec![attempt(
            position,
            first.event_id,
            2,
            AttemptOutcome::Delivered,
            EmissionStatus::Delivered,
        )])
        .await
        .expect("record");
    let pending = journal
        .pending_emissions(0, None, 10)
        .await
        .expect("pending");
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].event.id, "a-2");
    let stored = journal
        .find_by_origin(SOURCE, "a-1")
        .await
        .expect("find")
        .expect("stored");
    assert_eq!(stored.status, EventStatus::Delivered);

    let attempts = journal
        .delivery_attempts(first.event_id)
        .await
        .expect("attempts");
    assert_eq!(attempts.len(), 2);
    assert_eq!(
        (attempts[0].attempt, attempts[0].outcome.as_str()),
        (1, "retryable")
    );
    assert_eq!(attempts[0].status_code, Some(503));
    assert_eq!(
        attempts[0].error.as_deref(),
        Some("HTTP 503: publish failed")
    );
    assert_eq!(
        (attempts[1].attempt, attempts[1].outcome.as_str()),
        (2, "delivered")
    );
    assert!(attempts
        .iter()
        .all(|a| a.emission_id == first.event_id && a.sink == "webhook"));
    store.journal.close().await;
}

/// A dead emission parks its tenant, and that survives a restart; the tenant's later events
/// stay pending.
async fn dead_emission_parks_its_tenant_across_reopen(store: TestStore) {
    let first = accept(&store.journal, event("acme", "d-1")).await;
    accept(&store.journal, event("acme", "d-2")).await;
    accept(&store.journal, event("globex", "g-1")).await;
    let pending = store
        .journal
        .pending_emissions(0, None, 10)
        .await
        .expect("pending");
    store
        .journal
        .record_attempts(vec![attempt(
            pending[0].position,
            first.event_id,
            1,
            AttemptOutcome::Permanent,
            EmissionStatus::Dead,
        )])
        .await
        .expect("record");
    store.journal.close().await;
    let journal = EventJournal::open(&store.url, store.options.clone())
        .await
        .expect("reopen");
    assert_eq!(
        journal.parked_tenants().await.expect("parked"),
        vec!["acme".to_string()]
    );
    let pending = journal
        .pending_emissions(0, None, 10)
        .await
        .expect("pending");
    let ids: Vec<&str> = pending.iter().map(|e| e.event.id.as_str()).collect();
    assert_eq!(ids, ["d-2", "g-1"]);
    let dead = journal
        .find_by_origin(SOURCE, "d-1")
        .await
        .expect("find")
        .expect("stored");
    assert_eq!(dead.status, EventStatus::Dead);
    journal.close().await;
}

/// The commit watch changes when a commit stored new events, and not for a duplicate.
async fn commits_with_new_events_wake_subscribers(store: TestStore) {
    let mut commits = store.journal.subscribe_commits();
    commits.borrow_and_update();
    accept(&store.journal, event("acme", "w-1")).await;
    assert!(commits.has_changed().expect("writer alive"));
    commits.borrow_and_update();
    let duplicate = store
        .journal
        .append(vec![event("acme", "w-1")])
        .await
        .expect("append");
    assert_eq!(duplicate[0].status, AppendStatus::Duplicate);
    assert!(!commits.has_changed().expect("writer alive"));
    store.journal.close().await;
}

// ---------------------------------------------------------------------------------------------
// Operator recovery
// ---------------------------------------------------------------------------------------------

fn operator(reason: &str) -> Operator {
    Operator {
        actor: "alice".into(),
        reason: Some(reason.into()),
    }
}

/// Makes the first pending emission of `tenant` dead, as the dispatcher records it.
async fn kill_first_pending(journal: &EventJournal, tenant: &str) -> Uuid {
    let pending = journal
        .pending_emissions(0, Some(tenant), 1)
        .await
        .expect("pending");
    let emission = &pending[0];
    journal
        .record_attempts(vec![attempt(
            emission.position,
            emission.event.event_id,
            1,
            AttemptOutcome::Permanent,
            EmissionStatus::Dead,
        )])
        .await
        .expect("record");
    emission.event.event_id
}

/// The upstream ids of a tenant's pending emissions in its delivery order.
async fn delivery_order(journal: &EventJournal, tenant: &str) -> Vec<(String, bool)> {
    journal
        .tenant_pending_page(tenant, 0, 100)
        .await
        .expect("tenant page")
        .decode()
        .expect("decode")
        .into_iter()
        .map(|e| (e.event.id, e.replay_of.is_some()))
        .collect()
}

/// `docs/admin.md`: replaying the dead event that parks a tenant retries it in its own place, before
/// the events waiting behind it; the tenant is no longer parked by it, also after a reopen.
async fn replaying_a_dead_emission_takes_its_place_and_unparks(store: TestStore) {
    let journal = &store.journal;
    for id in ["r-1", "r-2", "r-3"] {
        accept(journal, event("acme", id)).await;
    }
    let dead = kill_first_pending(journal, "acme").await;
    assert_eq!(journal.parked_tenants().await.unwrap(), ["acme"]);
    let outcome = journal
        .operate(OperatorWrite::Replay {
            event_id: dead,
            operator: operator("fixed"),
        })
        .await
        .expect("replay");
    let OperatorOutcome::Replayed(replayed) = outcome else {
        panic!("{outcome:?}")
    };
    assert!(replayed.in_place && replayed.tenant_unparked);
    assert_ne!(replayed.emission_id, dead);
    assert!(journal.parked_tenants().await.unwrap().is_empty());
    let expected = [
        ("r-1".to_string(), true),
        ("r-2".to_string(), false),
        ("r-3".to_string(), false),
    ];
    assert_eq!(delivery_order(journal, "acme").await, expected);
    assert_eq!(
        journal.tenants_with_in_place_replays().await.unwrap(),
        ["acme"]
    );
    let emissions = journal.event_emissions(dead).await.unwrap();
    assert_eq!(emissions.len(), 2);
    assert_eq!(emissions[0].replaced_by, Some(replayed.emission_id));
    assert_eq!(emissions[1].replay_of, Some(dead));
    let actions = journal
        .operator_actions(Some(dead), None, 10)
        .await
        .unwrap();
    assert_eq!(actions.len(), 1);
    assert_eq!(
        (actions[0].actor.as_str(), actions[0].action.as_str()),
        ("alice", "replay")
    );
    assert_eq!(actions[0].reason.as_deref(), Some("fixed"));
    store.journal.close().await;
    let journal = EventJournal::open(&store.url, store.options.clone())
        .await
        .expect("reopen");
    assert!(journal.parked_tenants().await.unwrap().is_empty());
    assert_eq!(delivery_order(&journal, "acme").await, expected);
    journal.close().await;
}

/// Replaying an event that is not dead adds an emission behind the tenant's pending ones and
/// wakes the dispatcher.
async fn replaying_a_delivered_event_queues_behind(store: TestStore) {
    let journal = &store.journal;
    let first = accept(journal, event("acme", "q-1")).await;
    let pending = journal.pending_emissions(0, None, 1).await.unwrap();
    journal
        .record_attempts(vec![attempt(
            pending[0].position,
            first.event_id,
            1,
            AttemptOutcome::Delivered,
            EmissionStatus::Delivered,
        )])
        .await
        .unwrap();
    accept(journal, event("acme", "q-2")).await;
    let mut commits = journal.subscribe_commits();
    commits.borrow_and_update();
    let outcome = journal
        .operate(OperatorWrite::Replay {
            event_id: first.event_id,
            operator: operator("again"),
        })
        .await
        .unwrap();
    let OperatorOutcome::Replayed(replayed) = outcome else {
        panic!("{outcome:?}")
    };
    assert!(!replayed.in_place && !replayed.tenant_unparked);
    assert!(
        commits.has_changed().unwrap(),
        "a replay wakes the dispatcher"
    );
    assert_eq!(
        delivery_order(journal, "acme").await,
        [("q-2".to_string(), false), ("q-1".to_string(), true)]
    );
    let missing = journal
        .operate(OperatorWrite::Replay {
            event_id: Uuid::now_v7(),
            operator: operator("x"),
        })
        .await;
    assert!(matches!(missing, Err(OperatorError::EventNotFound(_))));
    store.journal.close().await;
}

/// Only a dead emission can be skipped; skipping it unparks the tenant and records who did it.
async fn skipping_needs_a_dead_emission_and_unparks(store: TestStore) {
    let journal = &store.journal;
    accept(journal, event("acme", "s-1")).await;
    let waiting = accept(journal, event("acme", "s-2")).await;
    let refused = journal
        .operate(OperatorWrite::Skip {
            event_id: waiting.event_id,
            operator: operator("x"),
        })
        .await;
    assert!(
        matches!(&refused, Err(OperatorError::NotDead { status, .. }) if *status == EventStatus::Pending),
        "{refused:?}"
    );
    let dead = kill_first_pending(journal, "acme").await;
    let outcome = journal
        .operate(OperatorWrite::Skip {
            event_id: dead,
            operator: operator("obsolete"),
        })
        .await
        .unwrap();
    assert!(matches!(
        outcome,
        OperatorOutcome::Skipped {
            tenant_parked: false,
            ..
        }
    ));
    assert!(journal.parked_tenants().await.unwrap().is_empty());
    let stored = journal.find_event(dead).await.unwrap().unwrap();
    assert_eq!(stored.status, EventStatus::Skipped);
    let state = journal.tenant_state("acme").await.unwrap().unwrap();
    assert_eq!(state.counts, [1, 0, 0, 1]);
    assert!(state.parked_by.is_none());
    assert!(journal.tenant_state("nobody").await.unwrap().is_none());
    store.journal.close().await;
}

/// A job replays exactly the events its query selected at creation (not those accepted
/// later), in batches whose progress survives a reopen; a finished job refuses more work.
async fn replay_job_replays_exactly_its_selection_and_resumes(store: TestStore) {
    let journal = &store.journal;
    for n in 0..5 {
        accept(journal, event(&format!("t{n}"), &format!("j-{n}"))).await;
    }
    let query = EventQuery {
        status: Some(EventStatus::Pending),
        ..EventQuery::default()
    };
    assert_eq!(journal.count_events(&query).await.unwrap(), 5);
    let job_id = Uuid::now_v7();
    let new_job = |expected_count| {
        OperatorWrite::CreateJob(NewReplayJob {
            job_id,
            query: query.clone(),
            filter: "{}".into(),
            rate: 10.0,
            operator: operator("outage"),
            expected_count,
        })
    };
    let changed = journal.operate(new_job(Some(4))).await;
    assert!(matches!(
        changed,
        Err(OperatorError::CountChanged {
            count: 5,
            expected: 4
        })
    ));
    let OperatorOutcome::JobCreated(job) = journal.operate(new_job(Some(5))).await.unwrap() else {
        panic!("job not created")
    };
    assert_eq!(
        (job.total, job.replayed, job.status.as_str()),
        (5, 0, "running")
    );
    accept(journal, event("t9", "j-late")).await;
    let batch = OperatorWrite::JobBatch { job_id, max: 2 };
    let OperatorOutcome::JobProgress { job, .. } = journal.operate(batch.clone()).await.unwrap()
    else {
        panic!("no progress")
    };
    assert_eq!(job.replayed, 2);
    store.journal.close().await;
    let journal = EventJournal::open(&store.url, store.options.clone())
        .await
        .expect("reopen");
    let running = journal.replay_jobs(true, 10).await.unwrap();
    assert_eq!(running.len(), 1);
    assert_eq!(running[0].replayed, 2);
    let mut last = None;
    for _ in 0..2 {
        last = Some(journal.operate(batch.clone()).await.unwrap());
    }
    let Some(OperatorOutcome::JobProgress { job, .. }) = last else {
        panic!("no progress")
    };
    assert_eq!((job.replayed, job.status.as_str()), (5, "completed"));
    assert!(matches!(
        journal.operate(batch).await,
        Err(OperatorError::JobFinished { .. })
    ));
    let replays: usize = journal
        .pending_emissions(0, None, 100)
        .await
        .unwrap()
        .iter()
        .filter(|e| e.replay_of.is_some())
        .count();
    assert_eq!(replays, 5, "each selected event once, the late one not");
    journal.close().await;
}

/// Search: filters combine, pages follow journal order from a position, counts agree.
async fn event_search_filters_and_pages_in_journal_order(store: TestStore) {
    let journal = &store.journal;
    for n in 0..9 {
        accept(journal, event(&format!("t{}", n % 3), &format!("e-{n}"))).await;
    }
    let everything = EventQuery::default();
    let first = journal.list_events(&everything, 0, 4).await.unwrap();
    let rest = journal
        .list_events(&everything, first[3].position, 100)
        .await
        .unwrap();
    let ids: Vec<String> = first.iter().chain(&rest).map(|e| e.id.clone()).collect();
    assert_eq!(ids, (0..9).map(|n| format!("e-{n}")).collect::<Vec<_>>());
    let t1 = EventQuery {
        tenant: Some("t1".into()),
        ..EventQuery::default()
    };
    let found = journal.list_events(&t1, 0, 100).await.unwrap();
    assert_eq!(
        found.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(),
        ["e-1", "e-4", "e-7"]
    );
    assert_eq!(journal.count_events(&t1).await.unwrap(), 3);
    let future = EventQuery {
        since: Some("2999-01-01T00:00:00.000000Z".into()),
        ..EventQuery::default()
    };
    assert_eq!(journal.count_events(&future).await.unwrap(), 0);
    let delivered = EventQuery {
        status: Some(EventStatus::Delivered),
        ..t1
    };
    assert!(journal
        .list_events(&delivered, 0, 10)
        .await
        .unwrap()
        .is_empty());
    store.journal.close().await;
}
