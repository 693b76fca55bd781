//! Several replicas on one journal: the bucket leases against the real PostgreSQL
//! (127.0.0.1:5432, user `postgres`, trust; each test creates and drops its own database; with
//! `CI` set a missing server fails, else the test is skipped), and dispatchers that share one
//! journal and split its tenants by those leases.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use serde_json::Value;
use sha2::{Digest, Sha256};
use sqlx::postgres::{PgPool, PgPoolOptions};
use tenant_gateway::dispatch::leases::{BucketLeases, LeaseKeeper, LeaseSettings};
use tenant_gateway::dispatch::ownership::{bucket_of, BUCKETS};
use tenant_gateway::dispatch::sinks::{SinkConfig, WebhookConfig};
use tenant_gateway::dispatch::{
    DispatchControl, DispatchScope, DispatchSettings, Dispatcher, RetryPolicy,
};
use tenant_gateway::journal::{
    EventJournal, EventStatus, JournalOptions, NewEvent, Operator, OperatorOutcome, OperatorWrite,
};
use tenant_gateway::metrics::GatewayMetrics;

use crate::support::argo_webhook::{ArgoWebhook, Behaviour, Received};
use crate::support::skip_or_fail;

/// Long enough for any wait here; a test that reaches it has failed.
const WAIT: Duration = Duration::from_secs(60);

const SERVER: &str = "postgres://postgres@127.0.0.1:5432";

/// A database of its own for one test, dropped at the end (also when the test panics).
pub(crate) struct TestDatabase {
    /// Its name (`tg_test_<uuid>`).
    name: String,
    /// A pool on it.
    pub(crate) pool: PgPool,
}

impl TestDatabase {
    /// Creates the database; `None` (skipped) when no server answers outside CI.
    pub(crate) async fn create() -> Option<TestDatabase> {
        let admin = PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(10))
            .connect(&format!("{SERVER}/postgres"))
            .await;
        let admin = match admin {
            Ok(admin) => admin,
            Err(_) => {
                skip_or_fail("PostgreSQL on 127.0.0.1:5432");
                return None;
            }
        };
        let name = format!("tg_test_{}", uuid::Uuid::now_v7().simple());
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&admin)
            .await
            .expect("create the test database");
        admin.close().await;
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .connect(&format!("{SERVER}/{name}"))
            .await
            .expect("connect to the test database");
        Some(TestDatabase { name, pool })
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        // Async work cannot run in drop on the test's runtime: a thread of its own does it.
        let name = self.name.clone();
        let pool = self.pool.clone();
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime");
            runtime.block_on(async move {
                pool.close().await;
                let admin = PgPoolOptions::new()
                    .max_connections(1)
                    .connect(&format!("{SERVER}/postgres"))
                    .await?;
                sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .execute(&admin)
                    .await?;
                admin.close().await;
                Ok::<_, sqlx::Error>(())
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("could not drop test database {}", self.name);
        }
    }
}

/// Quick leases: expiry 3 s, rounds every 1 s, margin 0.5 s.
fn quick(replica: &str) -> LeaseSettings {
    LeaseSettings {
        replica: replica.to_owned(),
        ttl: Duration::from_secs(3),
        renew_every: Duration::from_secs(1),
        margin: Duration::from_millis(500),
    }
}

async fn leases(db: &TestDatabase, replica: &str) -> BucketLeases {
    tenant_gateway::dispatch::leases::ensure_schema(&db.pool)
        .await
        .expect("schema");
    BucketLeases::new(db.pool.clone(), quick(replica)).expect("valid settings")
}

async fn round(leases: &BucketLeases) -> BTreeSet<u16> {
    leases.round().await.expect("lease round").held
}

/// Runs rounds of every replica, in turn, until each holds what `done` wants of the held
/// sets; returns the last sets.
async fn rounds_until(
    replicas: &[&BucketLeases],
    what: &str,
    done: impl Fn(&[BTreeSet<u16>]) -> bool,
) -> Vec<BTreeSet<u16>> {
    let deadline = Instant::now() + WAIT;
    loop {
        let mut held = Vec::new();
        for replica in replicas {
            held.push(round(replica).await);
        }
        if done(&held) {
            return held;
        }
        assert!(Instant::now() < deadline, "{what}: still {held:?}");
        // A round a replica would run on its schedule; the given-back leases expire meanwhile.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Disjoint sets that together are every bucket.
fn partition(held: &[BTreeSet<u16>]) -> bool {
    let total: usize = held.iter().map(BTreeSet::len).sum();
    let union: BTreeSet<u16> = held.iter().flatten().copied().collect();
    total == usize::from(BUCKETS) && union.len() == usize::from(BUCKETS)
}

#[tokio::test]
async fn two_replicas_split_the_buckets_and_a_third_gets_its_share() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let a = leases(&db, "a").await;
    let b = leases(&db, "b").await;
    assert_eq!(
        round(&a).await.len(),
        usize::from(BUCKETS),
        "alone, a takes all"
    );
    assert!(
        round(&b).await.is_empty(),
        "every bucket is a's and unexpired"
    );
    // a sees two live replicas and gives half back; b takes them once they expire.
    let held = rounds_until(&[&a, &b], "two replicas split", |held| {
        held.iter().all(|h| h.len() == 32) && partition(held)
    })
    .await;
    assert!(held[0].is_disjoint(&held[1]));

    let c = leases(&db, "c").await;
    let held = rounds_until(&[&a, &b, &c], "three replicas balance", |held| {
        // ceil(64 / 3) = 22 each at most: 22 + 22 + 20.
        held.iter().all(|h| (20..=22).contains(&h.len())) && partition(held)
    })
    .await;
    assert!(held.iter().all(|h| h.len() <= 22), "{held:?}");
    db.pool.close().await;
}

#[tokio::test]
async fn a_dead_replicas_buckets_are_taken_over_after_expiry_and_not_before() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let a = leases(&db, "a").await;
    let b = leases(&db, "b").await;
    let held = rounds_until(&[&a, &b], "split", |held| {
        held.iter().all(|h| h.len() == 32) && partition(held)
    })
    .await;
    let of_a = held[0].clone();
    // a's last round; then a is dead. a came first: it runs the replay jobs.
    let last_round_of_a = Instant::now();
    let last = a.round().await.expect("round");
    assert_eq!(last.held, of_a);
    assert!(last.runs_replay_jobs);
    assert!(
        !b.round().await.expect("round").runs_replay_jobs,
        "one runner at a time"
    );
    let settings = quick("a");
    let deadline = Instant::now() + WAIT;
    loop {
        let outcome = b.round().await.expect("round");
        let held_by_b = outcome.held;
        let now = Instant::now();
        if outcome.runs_replay_jobs {
            assert!(
                now >= last_round_of_a + (settings.ttl - settings.margin),
                "b took the replay runner's lease {:?} after a's renewal",
                now - last_round_of_a
            );
        }
        if !held_by_b.is_disjoint(&of_a) {
            // Never before a's own validity ran out: a stopped acting on them first.
            assert!(
                now >= last_round_of_a + (settings.ttl - settings.margin),
                "b took a's buckets {:?} after a's renewal",
                now - last_round_of_a
            );
        }
        if held_by_b.len() == usize::from(BUCKETS) && outcome.runs_replay_jobs {
            // Takeover within the TTL and a round or two (plus the test's own pace).
            assert!(
                now - last_round_of_a < settings.ttl + settings.renew_every * 3,
                "took {:?}",
                now - last_round_of_a
            );
            break;
        }
        assert!(now < deadline, "b never took a's buckets over");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    db.pool.close().await;
}

#[tokio::test]
async fn a_keeper_whose_renewal_hangs_stops_before_its_leases_expire() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let keeper = LeaseKeeper::start(db.pool.clone(), quick("a"))
        .await
        .expect("keeper");
    let ownership = keeper.ownership();
    let tenant = "acme";
    let deadline = Instant::now() + WAIT;
    let grant = loop {
        if let Some(grant) = ownership.grant(tenant) {
            break grant;
        }
        assert!(
            Instant::now() < deadline,
            "the keeper never took the buckets"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // Another session locks the lease table: the keeper's renewals hang behind it.
    let mut locker = db.pool.begin().await.expect("begin");
    sqlx::query("LOCK TABLE dispatch_leases IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *locker)
        .await
        .expect("lock");
    tokio::time::timeout(WAIT, ownership.lost(grant))
        .await
        .expect("the holder stops acting on its leases");
    // At that moment, by the server's clock, none of its leases has expired yet: nobody else
    // could have taken a bucket while it still delivered.
    let unexpired: bool = sqlx::query_scalar(
        "SELECT bool_and(expires_at > clock_timestamp()) FROM dispatch_leases WHERE owner = 'a'",
    )
    .fetch_one(&mut *locker)
    .await
    .expect("read the leases");
    assert!(
        unexpired,
        "the holder stopped only after its leases expired"
    );
    assert_eq!(ownership.grant(tenant), None);
    locker.rollback().await.expect("unlock");
    // Renewals go through again: the buckets come back, under a new grant.
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(again) = ownership.grant(tenant) {
            assert_ne!(again, grant);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the keeper never took the buckets again"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    keeper.stop().await;
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM dispatch_leases")
        .fetch_one(&db.pool)
        .await
        .expect("count");
    assert_eq!(left, 0, "a clean stop gives every lease back");
    db.pool.close().await;
}

// --- Dispatchers sharing one journal -------------------------------------------------------

/// One replica's dispatcher, told apart at the receiver by its instance source.
struct Replica {
    /// Stops it.
    dispatcher: Dispatcher,
    /// Its admin API's handle.
    control: DispatchControl,
}

/// Leases for dispatchers: expiry 6 s, rounds every 1 s, margin 2 s (room for a busy machine).
fn replica_leases(replica: &str) -> LeaseSettings {
    LeaseSettings {
        replica: replica.to_owned(),
        ttl: Duration::from_secs(6),
        renew_every: Duration::from_secs(1),
        margin: Duration::from_secs(2),
    }
}

async fn start_replica(
    db: &TestDatabase,
    journal: &EventJournal,
    hook: &ArgoWebhook,
    name: &str,
) -> Replica {
    let sink = SinkConfig::Webhook(WebhookConfig {
        url: hook.url(),
        token_file: None,
        timeout: Duration::from_secs(5),
    })
    .build()
    .await
    .expect("sink");
    let settings = DispatchSettings {
        retry: RetryPolicy {
            initial_backoff: Duration::from_millis(5),
            max_backoff: Duration::from_millis(50),
            retry_limit: Duration::from_secs(3600),
        },
        instance_source: format!("urn:replica:{name}"),
        ..DispatchSettings::default()
    };
    let scope = DispatchScope::leased(db.pool.clone(), replica_leases(name))
        .await
        .expect("leases");
    let dispatcher = Dispatcher::start_in(
        journal.clone(),
        sink,
        settings,
        GatewayMetrics::new(journal),
        scope,
    );
    let control = dispatcher.control();
    Replica {
        dispatcher,
        control,
    }
}

fn event(tenant: &str, id: &str) -> NewEvent {
    let document = serde_json::json!({
        "specversion": "1.0",
        "id": id,
        "source": "//billing.acme.example/invoices",
        "type": "com.acme.tenant.lifecycle.upsert",
        "data": { "tenant": tenant },
    })
    .to_string();
    NewEvent {
        source: "//billing.acme.example/invoices".into(),
        id: id.into(),
        event_type: "com.acme.tenant.lifecycle.upsert".into(),
        tenant: tenant.into(),
        action: "upsert".into(),
        time: None,
        content_hash: hex::encode(Sha256::digest(document.as_bytes())),
        document,
        lifecycle: r#"{"parameters":{},"objectStorage":null}"#.into(),
    }
}

/// (replica, tenant, sequence, emission id) of an accepted delivery.
fn delivery(request: &Received) -> (String, String, i64, String) {
    let event = request.json.as_ref().expect("JSON body");
    let text = |name: &str| event[name].as_str().unwrap_or_default().to_owned();
    (
        text("source"),
        text("tenant"),
        event["sequence"].as_i64().expect("sequence"),
        text("id"),
    )
}

/// Checks every tenant got `1..=events` in order, a repeat only of the emission just sent
/// (the same id, by the replica that took the tenant over); returns who delivered each
/// tenant's sequences.
fn check_in_sequence(
    requests: &[Received],
    tenants: usize,
    events: i64,
) -> BTreeMap<String, Vec<(i64, String)>> {
    let mut by_tenant: BTreeMap<String, Vec<(i64, String, String)>> = BTreeMap::new();
    for request in requests.iter().filter(|r| r.status == 200) {
        let (replica, tenant, sequence, id) = delivery(request);
        by_tenant
            .entry(tenant)
            .or_default()
            .push((sequence, id, replica));
    }
    assert_eq!(by_tenant.len(), tenants);
    let mut who = BTreeMap::new();
    for (tenant, deliveries) in by_tenant {
        let mut expected = 1;
        let mut last_id = String::new();
        let mut last_replica = "";
        for (sequence, id, replica) in &deliveries {
            if *sequence == expected - 1 && *id == last_id && replica != last_replica {
                // The same emission again from the new owner: allowed after a handoff.
                last_replica = replica;
                continue;
            }
            last_replica = replica;
            assert_eq!(*sequence, expected, "{tenant}: {deliveries:?}");
            expected += 1;
            last_id.clone_from(id);
        }
        assert_eq!(expected - 1, events, "{tenant} incomplete: {deliveries:?}");
        who.insert(
            tenant,
            deliveries.into_iter().map(|(s, _, r)| (s, r)).collect(),
        );
    }
    who
}

async fn append_round(journal: &EventJournal, tenants: usize, round: usize) {
    for t in 0..tenants {
        journal
            .append(vec![event(
                &format!("tenant-{t}"),
                &format!("t{t}-r{round}"),
            )])
            .await
            .expect("append");
    }
}

/// Waits until `n` distinct emissions were accepted (a redelivery counts once).
async fn accepted(hook: &ArgoWebhook, n: usize) -> Vec<Received> {
    let deadline = Instant::now() + WAIT;
    loop {
        let requests = hook.requests();
        let count = requests
            .iter()
            .filter(|r| r.status == 200)
            .map(|r| delivery(r).3)
            .collect::<BTreeSet<_>>()
            .len();
        if count >= n {
            return requests;
        }
        assert!(Instant::now() < deadline, "{count} of {n} delivered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Two dispatchers on one journal (one SQLite journal stands in for the shared store: the
/// ownership logic does not depend on the backend): the first alone delivers everything; the
/// second joins and takes about half the tenants; the first stops and the second takes
/// everything. Every tenant's events arrive once each, in sequence, and both did work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_split_tenants_and_hand_them_over_in_sequence() {
    const TENANTS: usize = 50;
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let store = format!("sqlite://{}", dir.path().join("gw.db").display());
    let journal = EventJournal::open(&store, JournalOptions::default())
        .await
        .expect("journal");
    let hook = ArgoWebhook::start().await;
    let a = start_replica(&db, &journal, &hook, "a").await;
    append_round(&journal, TENANTS, 0).await;
    accepted(&hook, TENANTS).await;

    let b = start_replica(&db, &journal, &hook, "b").await;
    // b's share comes once a gave it back: wait until b delivers, with new events each round.
    let mut round = 1;
    loop {
        append_round(&journal, TENANTS, round).await;
        round += 1;
        let requests = accepted(&hook, TENANTS * round).await;
        let by_b = requests
            .iter()
            .filter(|r| r.status == 200 && delivery(r).0 == "urn:replica:b")
            .count();
        if by_b >= TENANTS / 4 || round > 40 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    a.dispatcher.stop().await;
    for _ in 0..3 {
        append_round(&journal, TENANTS, round).await;
        round += 1;
    }
    let requests = accepted(&hook, TENANTS * round).await;
    let who = check_in_sequence(&requests, TENANTS, i64::try_from(round).expect("small"));
    // Each tenant moved at most once, from a to b: never delivered by both at a time.
    for (tenant, deliveries) in &who {
        let mut owners: Vec<&str> = deliveries.iter().map(|(_, r)| r.as_str()).collect();
        owners.dedup();
        assert!(
            ["urn:replica:a", "urn:replica:b"].starts_with(&owners),
            "{tenant} went back and forth: {deliveries:?}"
        );
    }
    // Spread: after b joined, some tenants went to b while a kept others.
    let last_before_stop = round - 3;
    let tenants_of = |replica: &str| {
        who.values()
            .filter(|d| {
                d.iter().any(|(s, r)| {
                    *s > 1 && *s <= i64::try_from(last_before_stop).expect("small") && r == replica
                })
            })
            .count()
    };
    assert!(tenants_of("urn:replica:b") > 0, "b took some tenants");
    assert!(tenants_of("urn:replica:a") > 0, "a kept some tenants");
    // After a stopped, b delivered everything.
    for (tenant, deliveries) in &who {
        let last = deliveries.last().expect("deliveries");
        assert_eq!(last.1, "urn:replica:b", "{tenant}: {deliveries:?}");
    }
    b.dispatcher.stop().await;
    journal.close().await;
    drop(b.control);
    drop(a.control);
}

/// A tenant parked by a dead event on the replica that owns it is replayed by an operator
/// through the other replica: the unpark reaches the owner, which delivers the replay and then
/// what waited behind it, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_parked_on_its_owner_is_unparked_through_the_other_replica() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let store = format!("sqlite://{}", dir.path().join("gw.db").display());
    let journal = EventJournal::open(&store, JournalOptions::default())
        .await
        .expect("journal");
    let hook = ArgoWebhook::start().await;
    let a = start_replica(&db, &journal, &hook, "a").await;
    let b = start_replica(&db, &journal, &hook, "b").await;
    // Wait until the buckets are split and stable: each replica holds 32.
    let deadline = Instant::now() + WAIT;
    loop {
        let counts: Vec<(String, i64)> = sqlx::query_as(
            "SELECT owner, count(*) FROM dispatch_leases
             WHERE expires_at > now() AND NOT given_back GROUP BY owner ORDER BY owner",
        )
        .fetch_all(&db.pool)
        .await
        .expect("leases");
        if counts == [("a".to_owned(), 32), ("b".to_owned(), 32)] {
            break;
        }
        assert!(Instant::now() < deadline, "leases never split: {counts:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let tenant = "acme";
    let owner: String = sqlx::query_scalar("SELECT owner FROM dispatch_leases WHERE bucket = $1")
        .bind(i32::from(bucket_of(tenant)))
        .fetch_one(&db.pool)
        .await
        .expect("owner");
    let (owner_source, other) = if owner == "a" {
        ("urn:replica:a", &b)
    } else {
        ("urn:replica:b", &a)
    };
    hook.push_behaviour(Behaviour::BadPayload);
    let first = journal
        .append(vec![event(tenant, "p-1")])
        .await
        .expect("append")[0];
    let deadline = Instant::now() + WAIT;
    while journal.parked_tenants().await.expect("parked") != [tenant.to_owned()] {
        assert!(Instant::now() < deadline, "the tenant was never parked");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    journal
        .append(vec![event(tenant, "p-2"), event(tenant, "p-3")])
        .await
        .expect("append");
    let outcome = journal
        .operate(OperatorWrite::Replay {
            event_id: first.event_id,
            operator: Operator {
                actor: "test".into(),
                reason: None,
            },
        })
        .await
        .expect("replay");
    assert!(
        matches!(outcome, OperatorOutcome::Replayed(_)),
        "{outcome:?}"
    );
    let unparked_at = Instant::now();
    other.control.unpark(tenant);
    let requests = accepted(&hook, 3).await;
    // By the notification, not the owner's periodic resync (every 30 s).
    assert!(
        unparked_at.elapsed() < Duration::from_secs(20),
        "the unpark took {:?} to reach the owner",
        unparked_at.elapsed()
    );
    let delivered: Vec<(String, i64)> = requests
        .iter()
        .filter(|r| r.status == 200)
        .map(|r| {
            let (source, _, sequence, _) = delivery(r);
            (source, sequence)
        })
        .collect();
    let from_owner = |sequence| (owner_source.to_owned(), sequence);
    assert_eq!(delivered, [from_owner(1), from_owner(2), from_owner(3)]);
    let dead: Vec<&Value> = requests
        .iter()
        .filter(|r| r.status == 400)
        .filter_map(|r| r.json.as_ref())
        .collect();
    assert_eq!(dead.len(), 1, "one failed attempt before the replay");
    a.dispatcher.stop().await;
    b.dispatcher.stop().await;
    journal.close().await;
}

/// A replica whose lease renewal hangs cancels its attempt in flight before its leases expire
/// and, once it holds the bucket again, sends the same emission again (same id): nothing is
/// lost and nothing new is created.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attempt_in_flight_stops_when_renewal_fails_and_goes_again_with_the_same_id() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let store = format!("sqlite://{}", dir.path().join("gw.db").display());
    let journal = EventJournal::open(&store, JournalOptions::default())
        .await
        .expect("journal");
    let hook = ArgoWebhook::start().await;
    // The first attempt would take longer than this test may.
    hook.push_behaviour(Behaviour::Slow(Duration::from_secs(600)));
    let a = start_replica(&db, &journal, &hook, "a").await;
    journal
        .append(vec![event("acme", "s-1")])
        .await
        .expect("append");
    let first = hook.wait_for(1, WAIT).await.remove(0);
    // Renewals hang behind a lock until every lease of a has expired by the database's clock.
    let mut locker = db.pool.begin().await.expect("begin");
    sqlx::query("LOCK TABLE dispatch_leases IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *locker)
        .await
        .expect("lock");
    let deadline = Instant::now() + WAIT;
    loop {
        let expired: bool = sqlx::query_scalar(
            "SELECT bool_and(expires_at < clock_timestamp()) FROM dispatch_leases",
        )
        .fetch_one(&mut *locker)
        .await
        .expect("read the leases");
        if expired {
            break;
        }
        assert!(Instant::now() < deadline, "the leases never expired");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    locker.rollback().await.expect("unlock");
    let requests = hook.wait_for(2, WAIT).await;
    let id = |r: &Received| delivery(r).3;
    assert_eq!(id(&requests[1]), id(&first), "the same emission again");
    assert_eq!(requests[1].status, 200);
    let deadline = Instant::now() + WAIT;
    loop {
        let stored = journal
            .find_by_origin("//billing.acme.example/invoices", "s-1")
            .await
            .expect("find")
            .expect("stored");
        if stored.status == EventStatus::Delivered {
            // The abandoned attempt is recorded nowhere: one attempt, the delivery.
            let attempts = journal
                .delivery_attempts(stored.event_id)
                .await
                .expect("attempts");
            let summary: Vec<(u32, &str)> = attempts
                .iter()
                .map(|a| (a.attempt, a.outcome.as_str()))
                .collect();
            assert_eq!(summary, [(1, "delivered")]);
            break;
        }
        assert!(Instant::now() < deadline, "never recorded as delivered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(hook.requests().len(), 2, "no other emission was sent");
    a.dispatcher.stop().await;
    journal.close().await;
}
