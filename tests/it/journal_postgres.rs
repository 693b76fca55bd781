//! What only the PostgreSQL journal has to do: several journals (replicas) on one database,
//! start-up against a missing database or an unreachable server, losing the database, and the
//! commit notifications. The backend contracts both stores share are in `journal_contract`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::postgres::{PgConnectOptions, PgConnection, PgListener};
use sqlx::{Connection, Executor};
use tenant_gateway::journal::{
    pending_page_statement, tenant_read_statements, AppendError, AppendStatus, EventJournal,
    JournalError, JournalOptions, COMMITS_CHANNEL, READ_PLANNER_SETTINGS, WRITE_PLANNER_SETTINGS,
    WRITE_STATEMENTS,
};
use tokio::sync::Barrier;

use crate::journal_contract::{conflicting, event, event_with_data, SOURCE};
use crate::postgres_support::{admin_connection, TestDatabase};
use crate::support::serve_once;

/// Two journals (two pools and two writers, as two replicas) on a fresh database.
async fn two_replicas(test: &str) -> Option<(TestDatabase, EventJournal, EventJournal)> {
    let database = TestDatabase::create(test).await?;
    // Opened at the same moment: both run the migrations, which must serialize (sqlx's
    // advisory lock) rather than fail.
    let (a, b) = tokio::join!(
        EventJournal::open(&database.url, JournalOptions::default()),
        EventJournal::open(&database.url, JournalOptions::default()),
    );
    let (a, b) = (a.expect("open replica a"), b.expect("open replica b"));
    a.check_ready().await.expect("replica a ready");
    b.check_ready().await.expect("replica b ready");
    Some((database, a, b))
}

/// Polls `condition` every 10 ms, failing after 30 s (a generous bound for a busy machine).
async fn wait_for_condition(what: &str, mut condition: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !condition().await {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_appending_for_the_same_tenants_give_gapless_sequences() {
    let Some((_database, a, b)) = two_replicas("two_replicas_gapless").await else {
        return;
    };
    const TASKS_PER_REPLICA: usize = 16;
    const REQUESTS_PER_TASK: usize = 12;
    let tenants = ["acme", "beta", "gamma"];
    let start = Arc::new(Barrier::new(2 * TASKS_PER_REPLICA));
    let mut tasks = Vec::new();
    for (replica, journal) in [("a", &a), ("b", &b)] {
        for task in 0..TASKS_PER_REPLICA {
            let journal = journal.clone();
            let start = Arc::clone(&start);
            tasks.push(tokio::spawn(async move {
                start.wait().await;
                let mut answers = Vec::new();
                for request in 0..REQUESTS_PER_TASK {
                    // Single events and small batches spanning tenants, so groups of both
                    // replicas lock overlapping sets of tenants.
                    let events: Vec<_> = (0..1 + request % 3)
                        .map(|i| {
                            let tenant = tenants[(task + request + i) % tenants.len()];
                            event(tenant, &format!("{replica}-{task}-{request}-{i}"))
                        })
                        .collect();
                    let tenants_of: Vec<String> = events.iter().map(|e| e.tenant.clone()).collect();
                    let appended = journal.append(events).await.expect("append");
                    answers.extend(tenants_of.into_iter().zip(appended));
                }
                answers
            }));
        }
    }
    let mut answered: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for task in tasks {
        for (tenant, appended) in task.await.expect("append task") {
            assert_eq!(appended.status, AppendStatus::Accepted);
            answered.entry(tenant).or_default().push(appended.sequence);
        }
    }
    let mut total = 0;
    for tenant in tenants {
        let mut sequences = answered.remove(tenant).unwrap_or_default();
        sequences.sort_unstable();
        let expected: Vec<i64> = (1..=sequences.len() as i64).collect();
        assert_eq!(
            sequences, expected,
            "{tenant}: answered sequences are 1..n, once each"
        );
        let stored: Vec<i64> = a
            .tenant_timeline(tenant)
            .await
            .expect("timeline")
            .iter()
            .map(|e| e.sequence)
            .collect();
        assert_eq!(stored, expected, "{tenant}: stored sequences are 1..n");
        // The outbox follows: one pending emission per event, in sequence order per tenant.
        let pending = b
            .tenant_pending_page(tenant, 0, 10_000)
            .await
            .expect("pending")
            .decode()
            .expect("decode");
        let order: Vec<i64> = pending.iter().map(|p| p.event.sequence).collect();
        assert_eq!(order, expected, "{tenant}: emissions are in sequence order");
        total += expected.len();
    }
    assert_eq!(total, 2 * TASKS_PER_REPLICA * REQUESTS_PER_TASK * 2);
    a.close().await;
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_event_posted_to_two_replicas_at_once_is_stored_once() {
    let Some((_database, a, b)) = two_replicas("racing_duplicates").await else {
        return;
    };
    for round in 0..25 {
        let original = event("acme", &format!("race-{round}"));
        let start = Arc::new(Barrier::new(2));
        let post = |journal: &EventJournal, event| {
            let (journal, start) = (journal.clone(), Arc::clone(&start));
            tokio::spawn(async move {
                start.wait().await;
                journal.append(vec![event]).await
            })
        };
        let (to_a, to_b) = (post(&a, original.clone()), post(&b, original.clone()));
        let answers = [
            to_a.await.expect("task").expect("append on a")[0],
            to_b.await.expect("task").expect("append on b")[0],
        ];
        let accepted = answers
            .iter()
            .filter(|x| x.status == AppendStatus::Accepted)
            .count();
        assert_eq!(
            accepted, 1,
            "round {round}: exactly one is accepted: {answers:?}"
        );
        assert_eq!(answers[0].event_id, answers[1].event_id, "round {round}");
        assert_eq!(answers[0].sequence, answers[1].sequence, "round {round}");
        assert_eq!(
            answers[0].sequence,
            round + 1,
            "round {round}: no sequence is lost"
        );

        // Other content under the same identity is a conflict on both replicas.
        for journal in [&a, &b] {
            match journal.append(vec![conflicting(&original)]).await {
                Err(AppendError::Conflict { index: 0, event_id }) => {
                    assert_eq!(event_id, answers[0].event_id)
                }
                other => panic!("round {round}: expected Conflict, got {other:?}"),
            }
        }
    }
    let timeline = a.tenant_timeline("acme").await.expect("timeline");
    assert_eq!(timeline.len(), 25, "every raced event is stored once");
    a.close().await;
    b.close().await;
}

/// The race the journal's write lock cannot order: the same (source, id) stored meanwhile by a
/// writer that bypasses the lock (here a transaction of the test's own; every replica takes the
/// lock). The unique constraint stays the last word: the journal's insert waits for it, the
/// group fails and acknowledges nothing (503), and the caller's retry reads the stored event: a
/// conflict (other content) or a duplicate (same content), with no sequence number spent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_origin_stored_meanwhile_by_a_writer_without_the_lock_is_never_stored_twice() {
    let Some(database) = TestDatabase::create("origin_stored_meanwhile").await else {
        return;
    };
    let journal = EventJournal::open(&database.url, JournalOptions::default())
        .await
        .expect("open");
    for (round, same_content) in [(0, false), (1, true)] {
        let theirs = event("other", &format!("meanwhile-{round}"));
        let ours = if same_content {
            theirs.clone()
        } else {
            event_with_data(
                "acme",
                &theirs.id,
                serde_json::json!({ "tenant": "acme", "plan": "another" }),
            )
        };
        let their_event_id = uuid::Uuid::now_v7();
        let mut other_writer = database.connect().await;
        sqlx::query("BEGIN")
            .execute(&mut other_writer)
            .await
            .expect("begin");
        sqlx::query(
            "INSERT INTO events (event_id, source, id, event_type, tenant, action, sequence, \
             received_at, document, content_hash) \
             VALUES ($1, $2, $3, 'upsert', $4, 'upsert', $5, '2025-01-01T00:00:00.000000Z', \
             $6, $7)",
        )
        .bind(their_event_id.to_string())
        .bind(SOURCE)
        .bind(&theirs.id)
        .bind(&theirs.tenant)
        .bind(round + 1)
        .bind(&theirs.document)
        .bind(&theirs.content_hash)
        .execute(&mut other_writer)
        .await
        .expect("the other writer's insert");

        let appending = tokio::spawn({
            let journal = journal.clone();
            let ours = ours.clone();
            async move { journal.append(vec![ours]).await }
        });
        let name = database.name.clone();
        let mut watcher = database.connect().await;
        wait_for_condition(
            "the journal's insert waits for the other writer",
            async || {
                let waiting: i64 = sqlx::query_scalar(
                    "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = $1 \
                 AND application_name = 'tenant-gateway' AND wait_event_type = 'Lock'",
                )
                .bind(&name)
                .fetch_one(&mut watcher)
                .await
                .expect("pg_stat_activity");
                waiting == 1
            },
        )
        .await;
        sqlx::query("COMMIT")
            .execute(&mut other_writer)
            .await
            .expect("commit");
        let answer = appending.await.expect("append task");
        assert!(
            matches!(answer, Err(AppendError::Unavailable(_))),
            "round {round}: the raced group must fail, not store a second copy: {answer:?}"
        );
        match (same_content, journal.append(vec![ours]).await) {
            (false, Err(AppendError::Conflict { index: 0, event_id })) => {
                assert_eq!(event_id, their_event_id)
            }
            (true, Ok(appended)) => {
                assert_eq!(appended[0].status, AppendStatus::Duplicate);
                assert_eq!(appended[0].event_id, their_event_id);
            }
            (_, other) => panic!("round {round}: unexpected answer {other:?}"),
        }
        other_writer.close().await.expect("close");
    }
    // acme spent no sequence number on the conflict.
    let next = journal
        .append(vec![event("acme", "after")])
        .await
        .expect("append");
    assert_eq!(
        (next[0].status, next[0].sequence),
        (AppendStatus::Accepted, 1)
    );
    journal.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_database_is_refused_and_never_created() {
    let Some(mut admin) = admin_connection("missing_database").await else {
        return;
    };
    let Some(database) = TestDatabase::create("missing_database").await else {
        return;
    };
    let missing = format!("{}_typo", database.name);
    let url = database.url.replace(&database.name, &missing);
    match EventJournal::open(&url, JournalOptions::default()).await {
        Err(error @ JournalError::DatabaseMissing { .. }) => {
            let message = error.to_string();
            assert!(message.contains(&missing), "{message}");
            assert!(message.contains("does not exist"), "{message}");
        }
        other => panic!("expected DatabaseMissing, got {other:?}"),
    }
    // The binary says it in one line, once: each cause of the chain appears a single time.
    let (started, stderr) = serve_once(&url, |_| {});
    assert!(!started, "{stderr}");
    let line = stderr
        .lines()
        .find(|line| line.starts_with("tenant-gateway: "))
        .unwrap_or_else(|| panic!("no error line in {stderr}"));
    assert_eq!(line.matches("does not exist").count(), 1, "{line}");
    assert!(line.contains(&missing), "{line}");
    let created: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(&missing)
            .fetch_one(&mut admin)
            .await
            .expect("pg_database");
    assert!(!created, "the journal never creates its database");
    admin.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_server_is_retried_for_connect_wait_then_refused() {
    // Port 9 (discard) on loopback: nothing listens there on a test machine.
    let url = "postgres://gw:s3cret@127.0.0.1:9/journal";
    let options = JournalOptions {
        connect_wait: Duration::from_secs(1),
        ..JournalOptions::default()
    };
    let started = Instant::now();
    match EventJournal::open(url, options).await {
        Err(error @ JournalError::Unreachable { .. }) => {
            let message = error.to_string();
            assert!(message.contains("127.0.0.1:9/journal"), "{message}");
            assert!(!message.contains("s3cret"), "the password is never echoed");
        }
        other => panic!("expected Unreachable, got {other:?}"),
    }
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(500),
        "it retried: {waited:?}"
    );
    assert!(
        waited < Duration::from_secs(20),
        "the wait is bounded: {waited:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_password_file_is_read_and_an_empty_one_refused() {
    let Some(database) = TestDatabase::create("password_file").await else {
        return;
    };
    let dir = tempfile::tempdir().expect("temporary directory");
    let empty = dir.path().join("empty");
    std::fs::write(&empty, "\n").expect("write");
    let options = |path: &std::path::Path| JournalOptions {
        password_file: Some(path.to_owned()),
        ..JournalOptions::default()
    };
    match EventJournal::open(&database.url, options(&empty)).await {
        Err(error @ JournalError::PasswordFile { .. }) => {
            assert!(error.to_string().contains("empty"), "{error}")
        }
        other => panic!("expected PasswordFile, got {other:?}"),
    }
    let missing = dir.path().join("missing");
    assert!(matches!(
        EventJournal::open(&database.url, options(&missing)).await,
        Err(JournalError::PasswordFile { .. })
    ));
    // The test server trusts local connections, so any password opens it; a SQLite store
    // refuses a password file outright (it would be silently ignored).
    let file = dir.path().join("password");
    std::fs::write(&file, "s3cret\n").expect("write");
    let journal = EventJournal::open(&database.url, options(&file))
        .await
        .expect("open with a password file");
    journal.close().await;
    let sqlite = format!("sqlite://{}", dir.path().join("j.db").display());
    assert!(matches!(
        EventJournal::open(&sqlite, options(&file)).await,
        Err(JournalError::InvalidOptions(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_journal_that_lost_its_database_is_not_ready_and_acknowledges_nothing() {
    let Some(mut database) = TestDatabase::create("lost_database").await else {
        return;
    };
    let options = JournalOptions {
        busy_timeout: Duration::from_secs(2),
        ..JournalOptions::default()
    };
    let journal = EventJournal::open(&database.url, options)
        .await
        .expect("open");
    journal
        .append(vec![event("acme", "before")])
        .await
        .expect("append");
    journal.check_ready().await.expect("ready");

    database.drop_now().await;
    assert!(
        journal.check_ready().await.is_err(),
        "not ready without its database"
    );
    for attempt in 0..2 {
        // The first append finds the write connection broken, the second cannot reconnect.
        match journal.append(vec![event("acme", "after")]).await {
            Err(AppendError::Unavailable(_)) => {}
            other => panic!("append {attempt}: expected Unavailable, got {other:?}"),
        }
    }
    journal.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commits_with_new_events_notify_listeners_of_every_replica() {
    let Some(database) = TestDatabase::create("commit_notifications").await else {
        return;
    };
    let journal = EventJournal::open(&database.url, JournalOptions::default())
        .await
        .expect("open");
    let mut listener = PgListener::connect(&database.url).await.expect("listener");
    listener.listen(COMMITS_CHANNEL).await.expect("listen");
    journal
        .append(vec![event("acme", "n-1")])
        .await
        .expect("append");
    let notification = tokio::time::timeout(Duration::from_secs(30), listener.recv())
        .await
        .expect("a notification within 30 s")
        .expect("notification");
    assert_eq!(notification.channel(), COMMITS_CHANNEL);
    journal.close().await;
}

/// The generic plan PostgreSQL keeps for `statement` on `connection` (a prepared statement uses
/// one after five custom plans; forced here, so it is the one a young journal's writer keeps).
async fn generic_plan(connection: &mut PgConnection, statement: &str, parameters: usize) -> String {
    connection
        .execute("SET plan_cache_mode = force_generic_plan")
        .await
        .expect("plan_cache_mode");
    connection
        .execute(format!("PREPARE planned AS {statement}").as_str())
        .await
        .expect("prepare");
    let arguments = vec!["NULL"; parameters].join(", ");
    explain_and_deallocate(connection, "planned", &arguments).await
}

/// The plan of prepared statement `name` run with `arguments`; the statement is deallocated.
async fn explain_and_deallocate(
    connection: &mut PgConnection,
    name: &str,
    arguments: &str,
) -> String {
    let lines: Vec<String> = sqlx::query_scalar(&format!("EXPLAIN EXECUTE {name}({arguments})"))
        .fetch_all(&mut *connection)
        .await
        .expect("explain");
    connection
        .execute(format!("DEALLOCATE {name}").as_str())
        .await
        .expect("deallocate");
    lines.join("\n")
}

/// A connection to `database` with planner `settings` as startup options, as the journal's
/// writer or read pool connects.
async fn connect_with_settings(database: &TestDatabase, settings: &[(&str, &str)]) -> PgConnection {
    let options: PgConnectOptions = database.url.parse().expect("url");
    PgConnection::connect_with(&options.options(settings.iter().copied()))
        .await
        .expect("connect with planner settings")
}

/// A fresh database with the journal's schema (opened once to migrate, then closed).
async fn migrated_database(test: &str) -> Option<TestDatabase> {
    let database = TestDatabase::create(test).await?;
    EventJournal::open(&database.url, JournalOptions::default())
        .await
        .expect("open (migrates)")
        .close()
        .await;
    Some(database)
}

/// A fresh journal's tables are empty and never analyzed, so the plans its writer settles on
/// then are the ones it keeps while the tables grow. Under the writer's planner settings every
/// statement reaches its tables by index lookups; with PostgreSQL's defaults at least one of
/// them scans a whole table, the slowdown those settings are there to prevent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_writers_plans_on_a_fresh_journal_are_index_lookups() {
    let Some(database) = migrated_database("writer_plans").await else {
        return;
    };
    let mut writer = connect_with_settings(&database, &WRITE_PLANNER_SETTINGS).await;
    let mut default = database.connect().await;
    let mut scanned_by_default = Vec::new();
    for (name, statement, parameters) in WRITE_STATEMENTS {
        let plan = generic_plan(&mut writer, statement, parameters).await;
        for whole_table in ["Seq Scan", "Hash Join", "Merge Join"] {
            assert!(
                !plan.contains(whole_table),
                "{name}: {whole_table} in\n{plan}"
            );
        }
        if generic_plan(&mut default, statement, parameters)
            .await
            .contains("Seq Scan")
        {
            scanned_by_default.push(name);
        }
    }
    assert!(
        !scanned_by_default.is_empty(),
        "no statement scans a table under the default settings: the test no longer shows \
         what the writer's settings are for"
    );
    writer.close().await.expect("close");
    default.close().await.expect("close");
}

/// The plan a connection uses for the dispatcher's page read after it ran five times on a young
/// journal (`young` events) and the journal then grew to `grown` events, all pending: what a
/// long-lived pool connection of a gateway started on an empty database ends up with.
async fn page_plan_after_growth(
    journal: &EventJournal,
    connection: &mut PgConnection,
    tenant: &str,
    young: usize,
    grown: usize,
) -> String {
    let append = async |from: usize, to: usize| {
        for chunk in (from..to).collect::<Vec<_>>().chunks(250) {
            let events = chunk
                .iter()
                .map(|n| event(&format!("{tenant}-{}", n % 100), &format!("{tenant}-{n}")))
                .collect();
            journal.append(events).await.expect("append");
        }
    };
    append(0, young).await;
    connection
        .execute(
            format!(
                "PREPARE page (bigint, text, bigint) AS {}",
                pending_page_statement()
            )
            .as_str(),
        )
        .await
        .expect("prepare");
    for _ in 0..6 {
        connection
            .execute("EXECUTE page(0, NULL, 100)")
            .await
            .expect("execute");
    }
    append(young, grown).await;
    explain_and_deallocate(connection, "page", "0, NULL, 100").await
}

/// Under the read pool's planner settings the dispatcher's page read walks the pending index in
/// order and stops at the page's end, however small the journal was when the connection first
/// ran it. With PostgreSQL's defaults the connection keeps the plan it made for the young
/// journal, which collects and sorts every pending row to return one page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dispatchers_page_read_stays_an_ordered_index_walk_as_the_journal_grows() {
    let Some(database) = TestDatabase::create("reader_plans").await else {
        return;
    };
    let journal = EventJournal::open(&database.url, JournalOptions::default())
        .await
        .expect("open");
    // No ANALYZE during the test: it would replan the default connection's statement too.
    let mut default = database.connect().await;
    default
        .execute(
            "ALTER TABLE events SET (autovacuum_enabled = false); \
             ALTER TABLE emissions SET (autovacuum_enabled = false)",
        )
        .await
        .expect("autovacuum off");
    let mut reader = connect_with_settings(&database, &READ_PLANNER_SETTINGS).await;

    let plan = page_plan_after_growth(&journal, &mut reader, "reader", 20, 3000).await;
    assert!(
        plan.contains("Index Scan using emissions_pending") && !plan.contains("Sort"),
        "the read pool's plan:\n{plan}"
    );
    let plan = page_plan_after_growth(&journal, &mut default, "default", 20, 3000).await;
    assert!(
        plan.contains("Sort"),
        "with the default settings the young journal's plan no longer sorts: the test no \
         longer shows what the read pool's settings are for:\n{plan}"
    );
    reader.close().await.expect("close");
    default.close().await.expect("close");
    journal.close().await;
}

/// The tables a plan (`EXPLAIN (FORMAT JSON)`) reads without an index condition: whole.
fn read_whole(node: &serde_json::Value, found: &mut Vec<String>) {
    if let Some(table) = node["Relation Name"].as_str() {
        if node["Index Cond"].is_null() {
            found.push(format!("{} on {table}", node["Node Type"]));
        }
    }
    for child in node["Plans"].as_array().into_iter().flatten() {
        read_whole(child, found);
    }
}

/// The reads over all tenants (the tenants list, the `tenant_gateway_tenants` gauge of every
/// scrape) read `tenant_sequences` whole and every other table through an index condition,
/// also in the generic plan a pooled connection keeps. Checked with sequential scans priced
/// out (`enable_seqscan = off`): on a young journal's tiny tables a sequential scan is the
/// right plan, so what the test asserts is that an index search exists for every access, i.e.
/// no table but the tenants' own is read whole once the journal is large. The lifecycle is a
/// backward walk of its own index.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_reads_read_only_the_tenants_whole() {
    let Some(database) = migrated_database("tenant_read_plans").await else {
        return;
    };
    let mut connection = connect_with_settings(&database, &READ_PLANNER_SETTINGS).await;
    connection
        .execute("SET enable_seqscan = off; SET plan_cache_mode = force_generic_plan")
        .await
        .expect("planner settings");
    for (name, statement) in tenant_read_statements() {
        let statement = statement.replace('?', "$");
        // Typed, as sqlx binds them: the planner cannot infer `$3 IS NULL OR lifecycle = $3`.
        let types: Vec<&str> = (1..=6)
            .filter(|n| statement.contains(&format!("${n}")))
            .map(|n| if n == 6 { "bigint" } else { "text" })
            .collect();
        let explain = if types.is_empty() {
            format!("EXPLAIN (FORMAT JSON) {statement}")
        } else {
            connection
                .execute(format!("PREPARE planned ({}) AS {statement}", types.join(", ")).as_str())
                .await
                .expect("prepare");
            format!(
                "EXPLAIN (FORMAT JSON) EXECUTE planned({})",
                vec!["NULL"; types.len()].join(", ")
            )
        };
        let plan: serde_json::Value = sqlx::query_scalar(&explain)
            .fetch_one(&mut connection)
            .await
            .expect("explain");
        if !types.is_empty() {
            connection
                .execute("DEALLOCATE planned")
                .await
                .expect("deallocate");
        }
        let mut whole = Vec::new();
        read_whole(&plan[0]["Plan"], &mut whole);
        whole.retain(|read| !read.ends_with("on tenant_sequences"));
        assert!(whole.is_empty(), "{name}: {whole:?} in\n{plan:#}");
        let text = plan.to_string();
        assert!(
            text.contains("\"Index Name\":\"workflows_tenant_succeeded\"")
                && text.contains("\"Scan Direction\":\"Backward\""),
            "{name}: the lifecycle lookup does not walk its index back in\n{plan:#}"
        );
    }
    connection.close().await.expect("close");
}
