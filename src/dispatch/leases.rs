//! Leases on tenant buckets in PostgreSQL: how several replicas on one journal split the
//! dispatch work so that each tenant is delivered by exactly one replica at a time.
//!
//! Tables (created here, idempotently, under an advisory lock so replicas starting together
//! do not race on `CREATE TABLE`):
//! - `dispatch_replicas`: one row per live replica, its heartbeat expiry. The number of live
//!   replicas gives each one its fair share, `ceil(BUCKETS / live)`.
//! - `dispatch_leases`: one row per leased bucket: owner, expiry, and whether the owner gave
//!   it back (a given-back lease is not renewed and is free once it expires).
//! - `dispatch_named_leases`: leases on one-of-a-kind work; `replay-runner` makes one replica
//!   at a time run the bulk replay jobs, and another take them over when it dies.
//!
//! Every `renew_every` a replica runs one round in one transaction: heartbeat, count the live
//! replicas, renew its unexpired leases, give back what exceeds its share, claim free or
//! expired buckets up to its share. Expiry is always the server's `now()` (the transaction's
//! start) plus the TTL, so replicas' clocks never compare with each other. Two replicas
//! claiming one bucket serialise on its row: `INSERT .. ON CONFLICT DO UPDATE .. WHERE
//! expires_at <= now()` re-checks the committed row after the lock, so only one wins.
//!
//! Safety rule: the holder acts on its leases only until `round start + ttl - margin` on its
//! own monotonic clock (`HeldBuckets::valid_until`). The round starts before the server reads
//! `now()`, so that deadline comes at least `margin` before any other replica can see the lease
//! expired; a replica whose renewals fail stops starting (and cancels) attempts before a
//! survivor may take over. A bucket given back keeps its row for `margin` more, so the giver
//! has stopped before the taker starts.
//!
//! Takeover of a dead replica's buckets takes at most `ttl + renew_every` (plus a round's
//! duration): 12 s with the defaults.
//!
//! Peer signals: `NOTIFY` on [`UNPARK_CHANNEL`] carries a tenant an operator unparked through
//! any replica's admin API to the replica that owns it; [`COMMITS_CHANNEL`] is the commit
//! wake-up the PostgreSQL journal sends in each commit transaction that stored events.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use sqlx::postgres::{PgListener, PgPool};
use tokio::sync::{mpsc, watch};

use super::ownership::{HeldBuckets, TenantOwnership, BUCKETS};

/// The channel of unpark notifications; the payload is the tenant.
pub const UNPARK_CHANNEL: &str = "tenant_gateway_unpark";
/// The channel the journal notifies in every commit that stored events (payload unused).
pub use crate::journal::COMMITS_CHANNEL;
/// The channel announcing a new bulk replay job to the replica that runs them.
pub const REPLAY_JOBS_CHANNEL: &str = "tenant_gateway_replay_jobs";
/// The named lease of the bulk replay job runner.
const REPLAY_RUNNER: &str = "replay-runner";

/// Key of the advisory lock that serialises schema creation across replicas.
const SCHEMA_LOCK: i64 = 0x7467_6c65_6173_6573; // "tgleases"

/// How a replica holds its leases.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseSettings {
    /// This replica's name in the lease tables; unique per process (a restarted pod is a new
    /// replica: it must not inherit leases it cannot know it held).
    pub replica: String,
    /// How long a lease lasts past its last renewal (default 10 s). Bounds the takeover time.
    pub ttl: Duration,
    /// How often the keeper runs a round (default 2 s).
    pub renew_every: Duration,
    /// How long before the lease's expiry the holder stops acting on it (default 3 s): covers
    /// a slow round, a busy scheduler and the cancellation of attempts in flight.
    pub margin: Duration,
}

impl Default for LeaseSettings {
    fn default() -> Self {
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "replica".into());
        LeaseSettings {
            replica: format!("{host}/{}", uuid::Uuid::now_v7()),
            ttl: Duration::from_secs(10),
            renew_every: Duration::from_secs(2),
            margin: Duration::from_secs(3),
        }
    }
}

impl LeaseSettings {
    /// A round must fit twice between renewal and the margin, so one failed round never drops
    /// the leases.
    fn validate(&self) -> Result<(), LeaseError> {
        if self.replica.is_empty() {
            return Err(LeaseError::Settings("the replica name is empty".into()));
        }
        if self.renew_every.is_zero() || self.renew_every * 2 + self.margin > self.ttl {
            return Err(LeaseError::Settings(format!(
                "lease ttl {:?} must be at least twice the renewal interval {:?} plus the \
                 margin {:?}",
                self.ttl, self.renew_every, self.margin
            )));
        }
        Ok(())
    }
}

/// Why leases could not be set up or renewed.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    /// The settings cannot keep the safety rule.
    #[error("invalid lease settings: {0}")]
    Settings(String),
    /// A lease query failed.
    #[error("lease query failed")]
    Query(#[from] sqlx::Error),
}

/// Creates the lease tables if missing; safe when several replicas start at once.
pub async fn ensure_schema(pool: &PgPool) -> Result<(), LeaseError> {
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(SCHEMA_LOCK)
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS dispatch_replicas (
             replica    text PRIMARY KEY,
             expires_at timestamptz NOT NULL
         )",
    )
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS dispatch_leases (
             bucket      integer PRIMARY KEY,
             owner       text NOT NULL,
             expires_at  timestamptz NOT NULL,
             given_back  boolean NOT NULL DEFAULT false
         )",
    )
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS dispatch_named_leases (
             name       text PRIMARY KEY,
             owner      text NOT NULL,
             expires_at timestamptz NOT NULL
         )",
    )
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}

/// What one round left this replica with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoundOutcome {
    /// The buckets it holds (renewed or claimed) after the round.
    pub held: BTreeSet<u16>,
    /// Live replicas counted, itself included.
    pub live: u32,
    /// Whether it holds the replay runner's lease.
    pub runs_replay_jobs: bool,
}

/// One replica's lease rounds, without timing: the keeper calls [`BucketLeases::round`] on
/// its schedule; tests call it directly.
#[derive(Debug, Clone)]
pub struct BucketLeases {
    /// The journal's database.
    pool: PgPool,
    /// Name, TTL and margin.
    settings: LeaseSettings,
}

fn seconds(duration: Duration) -> f64 {
    duration.as_secs_f64()
}

impl BucketLeases {
    /// Leases of replica `settings.replica` on `pool` (whose schema [`ensure_schema`] made).
    pub fn new(pool: PgPool, settings: LeaseSettings) -> Result<Self, LeaseError> {
        settings.validate()?;
        Ok(BucketLeases { pool, settings })
    }

    /// The settings in use.
    pub fn settings(&self) -> &LeaseSettings {
        &self.settings
    }

    /// One round: heartbeat, renew, give back above the fair share, claim up to it.
    pub async fn round(&self) -> Result<RoundOutcome, LeaseError> {
        let me = &self.settings.replica;
        let ttl = seconds(self.settings.ttl);
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO dispatch_replicas (replica, expires_at)
             VALUES ($1, now() + make_interval(secs => $2))
             ON CONFLICT (replica) DO UPDATE SET expires_at = EXCLUDED.expires_at",
        )
        .bind(me)
        .bind(ttl)
        .execute(&mut *tx)
        .await?;
        // Long-dead replicas' rows are only clutter; a minute past expiry they go.
        sqlx::query("DELETE FROM dispatch_replicas WHERE expires_at < now() - interval '1 minute'")
            .execute(&mut *tx)
            .await?;
        let live: i64 =
            sqlx::query_scalar("SELECT count(*) FROM dispatch_replicas WHERE expires_at > now()")
                .fetch_one(&mut *tx)
                .await?;
        let live = u32::try_from(live.max(1)).unwrap_or(u32::MAX);
        let share = usize::from(BUCKETS).div_ceil(usize::try_from(live).unwrap_or(usize::MAX));
        let renewed: Vec<i32> = sqlx::query_scalar(
            "UPDATE dispatch_leases SET expires_at = now() + make_interval(secs => $2)
             WHERE owner = $1 AND expires_at > now() AND NOT given_back
             RETURNING bucket",
        )
        .bind(me)
        .bind(ttl)
        .fetch_all(&mut *tx)
        .await?;
        let mut held: BTreeSet<u16> = renewed
            .into_iter()
            .filter_map(|bucket| u16::try_from(bucket).ok())
            .collect();
        if held.len() > share {
            // Give back the highest buckets: any would do, a fixed choice keeps it simple.
            let extra: Vec<i32> = held
                .iter()
                .rev()
                .take(held.len() - share)
                .map(|&b| i32::from(b))
                .collect();
            sqlx::query(
                "UPDATE dispatch_leases
                 SET given_back = true,
                     expires_at = LEAST(expires_at, now() + make_interval(secs => $3))
                 WHERE owner = $1 AND bucket = ANY($2)",
            )
            .bind(me)
            .bind(&extra)
            .bind(seconds(self.settings.margin))
            .execute(&mut *tx)
            .await?;
            for bucket in extra {
                held.remove(&u16::try_from(bucket).unwrap_or(u16::MAX));
            }
        } else if held.len() < share {
            let claimed: Vec<i32> = sqlx::query_scalar(
                "INSERT INTO dispatch_leases (bucket, owner, expires_at, given_back)
                 SELECT b, $1, now() + make_interval(secs => $2), false
                 FROM generate_series(0, $3 - 1) AS b
                 WHERE NOT EXISTS (
                     SELECT 1 FROM dispatch_leases l WHERE l.bucket = b AND l.expires_at > now()
                 )
                 ORDER BY random()
                 LIMIT $4
                 ON CONFLICT (bucket) DO UPDATE
                 SET owner = EXCLUDED.owner, expires_at = EXCLUDED.expires_at, given_back = false
                 WHERE dispatch_leases.expires_at <= now()
                 RETURNING bucket",
            )
            .bind(me)
            .bind(ttl)
            .bind(i32::from(BUCKETS))
            .bind(i64::try_from(share - held.len()).unwrap_or(i64::MAX))
            .fetch_all(&mut *tx)
            .await?;
            held.extend(claimed.into_iter().filter_map(|b| u16::try_from(b).ok()));
        }
        // The runner's lease: renewed by its holder, taken by anyone once it expired.
        let runs_replay_jobs = sqlx::query_scalar::<_, String>(
            "INSERT INTO dispatch_named_leases (name, owner, expires_at)
             VALUES ($1, $2, now() + make_interval(secs => $3))
             ON CONFLICT (name) DO UPDATE
             SET owner = EXCLUDED.owner, expires_at = EXCLUDED.expires_at
             WHERE dispatch_named_leases.owner = EXCLUDED.owner
                OR dispatch_named_leases.expires_at <= now()
             RETURNING owner",
        )
        .bind(REPLAY_RUNNER)
        .bind(me)
        .bind(ttl)
        .fetch_optional(&mut *tx)
        .await?
        .is_some();
        tx.commit().await?;
        Ok(RoundOutcome {
            held,
            live,
            runs_replay_jobs,
        })
    }

    /// Gives every lease and the heartbeat up at once (a clean stop, after the dispatcher
    /// stopped): the others take the buckets over at their next round.
    pub async fn release_all(&self) -> Result<(), LeaseError> {
        let me = &self.settings.replica;
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM dispatch_leases WHERE owner = $1")
            .bind(me)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM dispatch_named_leases WHERE owner = $1")
            .bind(me)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM dispatch_replicas WHERE replica = $1")
            .bind(me)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }
}

/// Runs lease rounds on a schedule and publishes the holdings; see the module docs.
pub struct LeaseKeeper {
    /// The published holdings.
    held: watch::Receiver<HeldBuckets>,
    /// Ends the round loop.
    stop: watch::Sender<bool>,
    /// The round loop; answers the leases to release on stop.
    task: tokio::task::JoinHandle<BucketLeases>,
}

impl LeaseKeeper {
    /// Creates the schema if needed and starts the rounds (the first one at once).
    pub async fn start(pool: PgPool, settings: LeaseSettings) -> Result<LeaseKeeper, LeaseError> {
        let leases = BucketLeases::new(pool.clone(), settings)?;
        ensure_schema(&pool).await?;
        let (held_tx, held) = watch::channel(HeldBuckets::default());
        let (stop, stop_rx) = watch::channel(false);
        let task = tokio::spawn(run_rounds(leases, held_tx, stop_rx));
        Ok(LeaseKeeper { held, stop, task })
    }

    /// What the dispatcher follows.
    pub fn ownership(&self) -> TenantOwnership {
        TenantOwnership::Leased(self.held.clone())
    }

    /// Stops the rounds and gives every lease back. Call after the dispatcher stopped.
    pub async fn stop(self) {
        self.stop.send_replace(true);
        match self.task.await {
            Ok(leases) => {
                if let Err(error) = leases.release_all().await {
                    // The leases then expire on their own, within the TTL.
                    tracing::warn!(
                        error = %crate::telemetry::ErrorChain(&error),
                        "giving the dispatch leases back failed; they expire on their own"
                    );
                }
            }
            Err(error) => tracing::error!(%error, "the lease keeper ended abnormally"),
        }
    }
}

/// The keeper's loop: a round every `renew_every`; the holdings are published after each
/// round, and withdrawn when their validity runs out before a round succeeds.
async fn run_rounds(
    leases: BucketLeases,
    held_tx: watch::Sender<HeldBuckets>,
    mut stop: watch::Receiver<bool>,
) -> BucketLeases {
    let settings = leases.settings().clone();
    let mut next_grant: u64 = 1;
    let mut ticker = tokio::time::interval(settings.renew_every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.wait_for(|stop| *stop) => return leases,
            _ = ticker.tick() => {}
        }
        let started = Instant::now();
        let valid_until = started + settings.ttl.saturating_sub(settings.margin);
        // The round may hang (a stuck connection); the holdings it would renew must not
        // outlive their validity meanwhile.
        let current_until = held_tx.borrow().valid_until;
        let deadline = async {
            match current_until {
                Some(until) => tokio::time::sleep_until(until.into()).await,
                None => std::future::pending().await,
            }
        };
        let outcome = {
            let round = leases.round();
            tokio::pin!(round);
            tokio::select! {
                outcome = &mut round => Some(outcome),
                () = deadline => {
                    withdraw(&held_tx, "the lease renewal is taking too long");
                    tokio::select! {
                        outcome = &mut round => Some(outcome),
                        _ = stop.wait_for(|stop| *stop) => None,
                    }
                }
            }
        };
        let Some(outcome) = outcome else {
            return leases;
        };
        match outcome {
            Ok(RoundOutcome {
                held,
                live,
                runs_replay_jobs,
            }) => {
                held_tx.send_if_modified(|current| {
                    let still_valid = current.valid_until.is_some_and(|u| Instant::now() < u);
                    let grants: BTreeMap<u16, u64> = held
                        .iter()
                        .map(|&bucket| {
                            let kept = current.grants.get(&bucket).filter(|_| still_valid);
                            let id = kept.copied().unwrap_or_else(|| {
                                next_grant += 1;
                                next_grant
                            });
                            (bucket, id)
                        })
                        .collect();
                    let changed =
                        grants != current.grants || runs_replay_jobs != current.runs_replay_jobs;
                    if changed {
                        tracing::info!(
                            held = grants.len(),
                            live_replicas = live,
                            runs_replay_jobs,
                            "dispatch buckets changed"
                        );
                    }
                    *current = HeldBuckets {
                        grants,
                        runs_replay_jobs,
                        valid_until: Some(valid_until),
                    };
                    // Every renewal extends the validity: always publish.
                    true
                });
            }
            Err(error) => {
                tracing::error!(
                    error = %crate::telemetry::ErrorChain(&error),
                    "renewing the dispatch leases failed; retrying"
                );
                let expired = held_tx
                    .borrow()
                    .valid_until
                    .is_some_and(|until| Instant::now() >= until);
                if expired {
                    withdraw(&held_tx, "the dispatch leases could not be renewed in time");
                }
            }
        }
    }
}

/// Publishes "nothing held" (if anything was).
fn withdraw(held_tx: &watch::Sender<HeldBuckets>, why: &str) {
    held_tx.send_if_modified(|current| {
        if current.grants.is_empty() && !current.runs_replay_jobs {
            return false;
        }
        tracing::warn!(
            buckets = current.grants.len(),
            "{why}; delivering nothing until renewed"
        );
        *current = HeldBuckets::default();
        true
    });
}

/// What makes the dispatch coordinator act besides its own reads: unparks (from this
/// replica's admin API or a peer's), peers' commits, and resyncs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signal {
    /// An operator unparked this tenant (through some replica's admin API).
    Unpark(String),
    /// Some replica committed new events.
    Commit,
    /// Some replica created a bulk replay job.
    ReplayJob,
    /// The listener reconnected: notifications may have been missed; re-read parked state and
    /// the outbox.
    Resync,
}

/// Tells every replica that a bulk replay job was created (the runner's holder runs it).
pub async fn notify_replay_job(pool: &PgPool) -> Result<(), LeaseError> {
    sqlx::query("SELECT pg_notify($1, '')")
        .bind(REPLAY_JOBS_CHANNEL)
        .execute(pool)
        .await?;
    Ok(())
}

/// Tells every replica that `tenant` was unparked (the owner acts on it).
pub async fn notify_unpark(pool: &PgPool, tenant: &str) -> Result<(), LeaseError> {
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(UNPARK_CHANNEL)
        .bind(tenant)
        .execute(pool)
        .await?;
    Ok(())
}

/// Listens for peer signals until `signals` is closed; reconnects on its own (sqlx's
/// `PgListener::try_recv` answers `Ok(None)` when the connection dropped and reconnects and
/// listens again on the next call), sending [`Signal::Resync`] after each reconnect.
pub async fn listen_to_peers(pool: PgPool, signals: mpsc::UnboundedSender<Signal>) {
    loop {
        let listener = async {
            let mut listener = PgListener::connect_with(&pool).await?;
            listener
                .listen_all([UNPARK_CHANNEL, COMMITS_CHANNEL, REPLAY_JOBS_CHANNEL])
                .await?;
            Ok::<_, sqlx::Error>(listener)
        };
        let mut listener = tokio::select! {
            () = signals.closed() => return,
            listener = listener => match listener {
                Ok(listener) => listener,
                Err(error) => {
                    tracing::error!(error = %crate::telemetry::ErrorChain(&error), "cannot listen for peer replicas; retrying in 1 s");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            }
        };
        // Whatever happened before the listener was up is read from the journal.
        if signals.send(Signal::Resync).is_err() {
            return;
        }
        loop {
            let received = tokio::select! {
                () = signals.closed() => return,
                received = listener.try_recv() => received,
            };
            let signal = match received {
                Ok(Some(notification)) if notification.channel() == UNPARK_CHANNEL => {
                    Signal::Unpark(notification.payload().to_owned())
                }
                Ok(Some(notification)) if notification.channel() == REPLAY_JOBS_CHANNEL => {
                    Signal::ReplayJob
                }
                Ok(Some(_)) => Signal::Commit,
                Ok(None) => {
                    tracing::warn!("the peer listener lost its connection; reconnecting");
                    Signal::Resync
                }
                Err(error) => {
                    tracing::error!(error = %crate::telemetry::ErrorChain(&error), "peer listener failed; reconnecting in 1 s");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    break;
                }
            };
            if signals.send(signal).is_err() {
                return;
            }
        }
    }
}
