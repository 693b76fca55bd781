//! Several real `tenant-gateway serve` processes on one PostgreSQL journal (127.0.0.1:5432,
//! user `postgres`, trust; each test creates and drops its own database; with `CI` set a
//! missing server fails, else the test is skipped): failover after SIGKILL, and parking on one
//! replica replayed through the admin API of the other.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::postgres_support::TestDatabase;
use crate::support::argo_webhook::{ArgoWebhook, Behaviour, Received};
use crate::support::lifecycle_event;

/// Long enough for any wait here on a loaded machine; a test that reaches it has failed.
pub(crate) const WAIT: Duration = Duration::from_secs(120);

/// One `serve` process on a PostgreSQL journal; killed (SIGKILL) on drop.
pub(crate) struct Replica {
    /// The process, to kill it.
    pub(crate) child: Child,
    /// The bound ingest address.
    ingest: SocketAddr,
    /// The bound admin address (admin API, readiness).
    admin: SocketAddr,
    /// The `source` of every CloudEvent it emits, which tells the replicas' deliveries apart.
    instance_uri: String,
    /// Its warning and error log lines so far, for failure messages.
    problems: Arc<Mutex<Vec<String>>>,
}

impl Replica {
    /// Starts `serve` on `store` with the webhook sink at `webhook_url` and a short initial
    /// backoff (retries come quickly), and waits for its "listening" line.
    pub(crate) fn start(config_dir: &Path, name: &str, store: &str, webhook_url: &str) -> Replica {
        let instance_uri = format!("urn:tenant-gateway:replica-{name}");
        let config = config_dir.join(format!("{name}.toml"));
        std::fs::write(
            &config,
            format!(
                "instance-uri = \"{instance_uri}\"\n[sink]\nkind = \"webhook\"\nurl = \
                 \"{webhook_url}\"\n[dispatch]\ninitial-backoff = \"10ms\"\n"
            ),
        )
        .expect("write the replica's configuration");
        let mut child = Command::new(env!("CARGO_BIN_EXE_tenant-gateway"))
            .args(["serve", "--config"])
            .arg(&config)
            .args([
                "--listen",
                "127.0.0.1:0",
                "--admin-listen",
                "127.0.0.1:0",
                "--log-format",
                "json",
                "--store",
                store,
            ])
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn tenant-gateway");
        let stderr = child.stderr.take().expect("stderr piped");
        let mut lines = BufReader::new(stderr).lines();
        let (ingest, admin) = loop {
            let line = match lines.next() {
                Some(Ok(line)) => line,
                other => panic!("replica {name} exited before listening: {other:?}"),
            };
            let Ok(entry) = serde_json::from_str::<Value>(&line) else {
                continue;
            };
            if entry["message"] == "tenant-gateway listening" {
                let address = |field: &str| -> SocketAddr {
                    entry[field]
                        .as_str()
                        .and_then(|a| a.parse().ok())
                        .unwrap_or_else(|| panic!("{field} address in {line}"))
                };
                break (address("listen"), address("admin"));
            }
        };
        // Keep draining stderr so the child never blocks on a full pipe; keep warnings and
        // errors for a failure message.
        let problems = Arc::new(Mutex::new(Vec::new()));
        let kept = problems.clone();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                if line.contains("\"WARN\"") || line.contains("\"ERROR\"") {
                    kept.lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .push(line);
                }
            }
        });
        Replica {
            child,
            ingest,
            admin,
            instance_uri,
            problems,
        }
    }

    fn problems(&self) -> Vec<String> {
        self.problems
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub(crate) fn events_url(&self) -> String {
        format!("http://{}/events", self.ingest)
    }

    pub(crate) fn admin_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.admin)
    }

    /// SIGKILL: no shutdown, leases left to expire.
    fn kill(&mut self) {
        self.child.kill().expect("kill the replica");
        self.child.wait().expect("reap the replica");
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Posts one event: its status and body; `Err` when the replica cannot be reached.
pub(crate) async fn post(
    client: &reqwest::Client,
    url: &str,
    event: &Value,
) -> reqwest::Result<(u16, Value)> {
    let response = client
        .post(url)
        .header("content-type", "application/cloudevents+json")
        .body(event.to_string())
        .send()
        .await?;
    let status = response.status().as_u16();
    Ok((status, response.json().await?))
}

/// Waits until `replicas` replicas hold unexpired bucket leases, so the work is spread before
/// events come (a replica that starts first holds every bucket until the other joins).
async fn wait_for_replicas_holding_leases(database: &TestDatabase, replicas: i64) {
    let mut connection = database.connect().await;
    let deadline = Instant::now() + WAIT;
    loop {
        // The table exists once a replica ran its first lease round.
        let holders: Result<i64, _> = sqlx::query_scalar(
            "SELECT count(DISTINCT owner) FROM dispatch_leases \
             WHERE expires_at > now() AND NOT given_back",
        )
        .fetch_one(&mut connection)
        .await;
        if holders.as_ref().is_ok_and(|&n| n >= replicas) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{replicas} replicas never held leases at once: {holders:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// (replica instance URI, tenant, sequence, emission id) of a delivery the fake accepted.
pub(crate) fn delivery(request: &Received) -> (String, String, i64, String) {
    let event = request.json.as_ref().expect("JSON body");
    let text = |name: &str| event[name].as_str().unwrap_or_default().to_owned();
    (
        text("source"),
        text("tenant"),
        event["sequence"].as_i64().expect("sequence"),
        text("id"),
    )
}

/// (tenant, sequence, status, attempts) of every emission not delivered yet, for a failure
/// message.
async fn undelivered(database: &TestDatabase) -> Vec<(String, i64, String, i64)> {
    let mut connection = database.connect().await;
    sqlx::query_as(
        "SELECT m.tenant, e.sequence, m.status, m.attempts::bigint FROM emissions m \
         JOIN events e USING (event_id) WHERE m.status <> 'delivered' ORDER BY m.position",
    )
    .fetch_all(&mut connection)
    .await
    .unwrap_or_default()
}

/// Distinct emission ids the fake accepted so far.
fn accepted_emissions(requests: &[Received]) -> usize {
    requests
        .iter()
        .filter(|r| r.status == 200)
        .map(|r| delivery(r).3)
        .collect::<BTreeSet<_>>()
        .len()
}

/// Checks that every tenant got `1..=events` in order. A replica's deliveries of a tenant are
/// consecutive; when the other replica takes over, it may start again at any sequence already
/// sent, but only with the same emissions (ids): the attempts the dead replica made but had
/// not recorded yet are repeated, in order; no new emission is created for them.
fn check_in_sequence(requests: &[Received], tenants: usize, events: i64) {
    let mut by_tenant: BTreeMap<String, Vec<(i64, String, String)>> = BTreeMap::new();
    for request in requests.iter().filter(|r| r.status == 200) {
        let (replica, tenant, sequence, id) = delivery(request);
        by_tenant
            .entry(tenant)
            .or_default()
            .push((sequence, id, replica));
    }
    assert_eq!(by_tenant.len(), tenants, "every tenant delivered");
    for (tenant, deliveries) in by_tenant {
        // The emission id sent for each sequence so far.
        let mut sent: BTreeMap<i64, &str> = BTreeMap::new();
        let mut expected = 1;
        let mut last_replica = "";
        for (sequence, id, replica) in &deliveries {
            if replica != last_replica && *sequence < expected {
                // A handoff: resume at an earlier sequence, with the emission sent then.
                expected = *sequence;
            }
            last_replica = replica;
            assert_eq!(*sequence, expected, "{tenant}: {deliveries:?}");
            let first = *sent.entry(*sequence).or_insert(id);
            assert_eq!(
                first, id,
                "{tenant}: a new emission for {sequence}: {deliveries:?}"
            );
            expected += 1;
        }
        assert_eq!(
            sent.len() as i64,
            events,
            "{tenant} incomplete: {deliveries:?}"
        );
    }
}

/// Two replicas on one database, events for 50 tenants posted to both, one replica killed
/// with SIGKILL while deliveries are in flight: every acknowledged event is delivered, each
/// tenant in sequence (the emission in flight at the kill may come again with the same id, from
/// the survivor), and the survivor takes over the dead replica's tenants once its leases
/// expire (`docs/dispatch.md`, "Ownership: several replicas on one journal": within 12 s of the last renewal).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn survivor_takes_over_a_killed_replica_and_keeps_every_tenant_in_order() {
    const TENANTS: usize = 50;
    const EVENTS: usize = 10;
    let Some(database) = TestDatabase::create("replicas_failover").await else {
        return;
    };
    let hook = ArgoWebhook::start().await;
    // Slow answers keep a backlog, and deliveries in flight, when the kill comes.
    hook.set_default(Behaviour::Slow(Duration::from_millis(50)));
    let dir = tempfile::tempdir().expect("temporary directory");
    let mut a = Replica::start(dir.path(), "a", &database.url, &hook.url());
    let b = Replica::start(dir.path(), "b", &database.url, &hook.url());
    wait_for_replicas_holding_leases(&database, 2).await;

    let client = reqwest::Client::new();
    let (a_url, b_url) = (a.events_url(), b.events_url());
    // One poster per tenant, in order, alternating between the replicas; a post the killed
    // replica cannot take goes to the other (as a load balancer would retry it).
    let posters: Vec<_> = (0..TENANTS)
        .map(|t| {
            let client = client.clone();
            let urls = [a_url.clone(), b_url.clone()];
            tokio::spawn(async move {
                for e in 0..EVENTS {
                    let event =
                        lifecycle_event(&format!("f{t}-{e}"), &format!("tenant-{t}"), "upsert");
                    let first = (t + e) % 2;
                    match post(&client, &urls[first], &event).await {
                        Ok((status, body)) => assert_eq!(status, 202, "{body}"),
                        Err(_) => {
                            // 200 when the killed replica committed it but its answer was lost.
                            let (status, body) = post(&client, &urls[1 - first], &event)
                                .await
                                .expect("the survivor answers");
                            assert!(status == 202 || status == 200, "{status} {body}");
                        }
                    }
                }
            })
        })
        .collect();

    // Kill A once it delivered a good part of its share, with more to come.
    let deadline = Instant::now() + WAIT;
    loop {
        let by_a = hook
            .requests()
            .iter()
            .filter(|r| r.status == 200 && delivery(r).0 == a.instance_uri)
            .count();
        if by_a >= 40 {
            break;
        }
        assert!(Instant::now() < deadline, "replica a delivered {by_a}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    a.kill();
    let killed_at = Instant::now();
    let before_kill = hook.requests();
    let a_tenants: BTreeSet<String> = before_kill
        .iter()
        .filter(|r| r.status == 200 && delivery(r).0 == a.instance_uri)
        .map(|r| delivery(r).1)
        .collect();
    assert!(
        accepted_emissions(&before_kill) < TENANTS * EVENTS,
        "the kill came before the backlog was delivered"
    );
    for poster in posters {
        poster.await.expect("poster");
    }

    // The survivor delivers the dead replica's tenants: measure when it first does, and wait
    // (generous bound) until every emission is in.
    let mut first_takeover: Option<Duration> = None;
    let deadline = killed_at + WAIT;
    let requests = loop {
        let requests = hook.requests();
        if first_takeover.is_none()
            && requests[before_kill.len()..].iter().any(|r| {
                let (replica, tenant, _, _) = delivery(r);
                r.status == 200 && replica == b.instance_uri && a_tenants.contains(&tenant)
            })
        {
            first_takeover = Some(killed_at.elapsed());
        }
        if accepted_emissions(&requests) == TENANTS * EVENTS {
            break requests;
        }
        if Instant::now() >= deadline {
            panic!(
                "{} of {} emissions delivered {WAIT:?} after the kill; undelivered in the \
                 journal: {:?}; last requests: {:?}; survivor's warnings: {:#?}",
                accepted_emissions(&requests),
                TENANTS * EVENTS,
                undelivered(&database).await,
                requests
                    .iter()
                    .rev()
                    .take(10)
                    .map(|r| (r.status, delivery(r)))
                    .collect::<Vec<_>>(),
                b.problems()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let all_delivered = killed_at.elapsed();
    check_in_sequence(&requests, TENANTS, EVENTS as i64);
    // Every delivery after the kill is the survivor's, including the dead replica's tenants.
    let after_kill = &requests[before_kill.len()..];
    assert!(after_kill.iter().all(|r| delivery(r).0 == b.instance_uri));
    let taken_over: BTreeSet<String> = after_kill
        .iter()
        .map(|r| delivery(r).1)
        .filter(|tenant| a_tenants.contains(tenant))
        .collect();
    assert!(
        !taken_over.is_empty(),
        "the survivor delivered some of the dead replica's tenants"
    );
    println!(
        "takeover: first delivery of a dead replica's tenant by the survivor {first_takeover:?} \
         after SIGKILL; everything delivered after {all_delivered:?}; {} of the dead \
         replica's {} tenants taken over",
        taken_over.len(),
        a_tenants.len()
    );
}

/// The deliveries the fake accepted for `tenant`: (sequence, emission id, replica).
pub(crate) fn accepted_for(hook: &ArgoWebhook, tenant: &str) -> Vec<(i64, String, String)> {
    hook.requests()
        .iter()
        .filter(|r| r.status == 200)
        .map(delivery)
        .filter(|(_, t, _, _)| t == tenant)
        .map(|(replica, _, sequence, id)| (sequence, id, replica))
        .collect()
}

/// A tenant parked by a refusal (400) that one replica saw is replayed through the admin API
/// of the other replica: the unpark reaches the owner (`NOTIFY tenant_gateway_unpark`,
/// `docs/dispatch.md`), which sends the replay first and then the tenant's later events, in
/// order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_parked_on_one_replica_is_replayed_through_the_other() {
    let Some(database) = TestDatabase::create("replicas_park_replay").await else {
        return;
    };
    let hook = ArgoWebhook::start().await;
    let dir = tempfile::tempdir().expect("temporary directory");
    let replicas = [
        Replica::start(dir.path(), "a", &database.url, &hook.url()),
        Replica::start(dir.path(), "b", &database.url, &hook.url()),
    ];
    wait_for_replicas_holding_leases(&database, 2).await;
    let client = reqwest::Client::new();
    const TENANT: &str = "parked-tenant";

    // The first delivery is refused for good: the event is dead and its tenant parked.
    hook.push_behaviour(Behaviour::BadPayload);
    let first = lifecycle_event("park-1", TENANT, "upsert");
    let (status, body) = post(&client, &replicas[0].events_url(), &first)
        .await
        .expect("post");
    assert_eq!(status, 202, "{body}");
    let event_id = body["events"][0]["eventId"]
        .as_str()
        .expect("eventId")
        .to_owned();
    let refused = hook.wait_for(1, WAIT).await;
    assert_eq!(refused[0].status, 400);
    let (owner_uri, _, _, refused_id) = delivery(&refused[0]);
    let other = replicas
        .iter()
        .find(|r| r.instance_uri != owner_uri)
        .expect("the replica that did not deliver");

    // The other replica's admin API reads the tenant as parked (once the dead record commits).
    let tenant_url = other.admin_url(&format!("/admin/v1/tenants/{TENANT}"));
    let deadline = Instant::now() + WAIT;
    loop {
        let view: Value = client
            .get(&tenant_url)
            .send()
            .await
            .expect("admin API")
            .json()
            .await
            .expect("tenant view");
        if view["parked"] == true {
            break;
        }
        assert!(Instant::now() < deadline, "never parked: {view}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Later events of the parked tenant wait; another tenant's event goes through.
    for (n, replica) in [(2, &replicas[0]), (3, &replicas[1])] {
        let event = lifecycle_event(&format!("park-{n}"), TENANT, "upsert");
        assert_eq!(
            post(&client, &replica.events_url(), &event)
                .await
                .expect("post")
                .0,
            202
        );
    }
    let free = lifecycle_event("free-1", "free-tenant", "upsert");
    assert_eq!(
        post(&client, &other.events_url(), &free)
            .await
            .expect("post")
            .0,
        202
    );
    hook.wait_for(2, WAIT).await;
    assert!(
        accepted_for(&hook, TENANT).is_empty(),
        "nothing of the parked tenant is sent"
    );

    // The replay through the other replica's admin API.
    let response = client
        .post(other.admin_url(&format!("/admin/v1/events/{event_id}/replay")))
        .json(&serde_json::json!({"reason": "fixed upstream"}))
        .send()
        .await
        .expect("admin API");
    assert_eq!(response.status(), 202);
    let replayed: Value = response.json().await.expect("replay result");
    let replay_id = replayed["emissionId"]
        .as_str()
        .expect("emissionId")
        .to_owned();
    assert_ne!(replay_id, refused_id, "a replay is a new emission");

    let deadline = Instant::now() + WAIT;
    let deliveries = loop {
        let deliveries = accepted_for(&hook, TENANT);
        if deliveries.len() >= 3 {
            break deliveries;
        }
        assert!(
            Instant::now() < deadline,
            "after the replay: {deliveries:?}; warnings: {:?} {:?}",
            replicas[0].problems(),
            replicas[1].problems()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let sequences: Vec<i64> = deliveries.iter().map(|d| d.0).collect();
    assert_eq!(sequences, [1, 2, 3], "{deliveries:?}");
    assert_eq!(deliveries[0].1, replay_id, "the replay comes first");
}
