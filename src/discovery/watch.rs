//! The discovery loop: watch template Jobs, wait for the cluster to settle, rebuild the whole
//! desired set of WorkflowTemplates and hand it to the [`Reconciler`].
//!
//! This module owns *when* discovery syncs: the reflector over `batch/v1` Jobs labelled
//! `tenant-gateway.io/template=true` (all namespaces, or one watcher per configured namespace),
//! the debounce after each change, the disappearance grace ([`JobMemory`]) that rides out an
//! Argo CD `Replace=true` sync (delete, then re-create a few seconds later), leader election on
//! a `coordination.k8s.io` Lease, retries with backoff, a periodic resync, `--once` and
//! `--dry-run`. What the desired set is comes from [`super::template_job`] and
//! [`super::render`]; the writes are [`super::reconcile`]'s.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use futures_util::stream::{self, BoxStream, StreamExt};
use k8s_openapi::api::batch::v1::Job;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client, ResourceExt};
use kube_lease_manager::{LeaseManager, LeaseManagerBuilder, LeaseManagerError};
use tokio::sync::watch as channel;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::health::{DiscoveryMetrics, ErrorStage, HealthServer, Readiness};
use super::offline;
use super::reconcile::Reconciler;
use super::render::{render, RenderConfig, RenderOutcome};
use super::template_job::{classify, Classified, IgnoredJob, TemplateJob, TEMPLATE_LABEL};
use super::DiscoverSettings;
use crate::telemetry::ErrorChain;

/// How often the leader re-syncs without any Job change: restores a template someone deleted
/// by hand. Cheap when nothing changed (one LIST).
pub const RESYNC_INTERVAL: Duration = Duration::from_secs(300);
/// A rebuild waits for `debounce` of quiet, but never longer than this many debounce periods
/// after the first change it covers.
pub const MAX_DEBOUNCE_FACTOR: u32 = 10;
/// First retry delay after a failed sync; doubles up to [`MAX_RETRY_BACKOFF`].
pub const MIN_RETRY_BACKOFF: Duration = Duration::from_secs(1);
/// Longest retry delay after failed syncs.
pub const MAX_RETRY_BACKOFF: Duration = Duration::from_secs(60);

/// Namespace and name of a Job: what identifies "the same" template Job across an Argo CD
/// replace (the uid changes, the name does not).
type JobKey = (String, String);

/// A Job that left the reflector store, still counted until its grace runs out.
#[derive(Debug, Clone)]
struct VanishedJob {
    /// When it was first seen missing.
    since: Instant,
    /// Its last seen copy, which keeps counting meanwhile.
    last_seen: Arc<Job>,
}

/// The disappearance grace, as pure bookkeeping over explicit instants (so it is tested without
/// sleeping). Feed it the store's contents after each change with [`JobMemory::observe`]; ask it
/// for the Jobs that count with [`JobMemory::effective_jobs`]; schedule a rebuild at
/// [`JobMemory::next_expiry`] and call [`JobMemory::expire`] then.
#[derive(Debug, Clone)]
pub struct JobMemory {
    /// How long a vanished Job still counts.
    grace: Duration,
    /// The Jobs in the store at the last observation.
    present: BTreeMap<JobKey, Arc<Job>>,
    /// Jobs that were present before and are missing now, with when they went missing.
    vanished: BTreeMap<JobKey, VanishedJob>,
}

impl JobMemory {
    /// An empty memory with the given grace.
    pub fn new(grace: Duration) -> Self {
        JobMemory {
            grace,
            present: BTreeMap::new(),
            vanished: BTreeMap::new(),
        }
    }

    /// Replace the view of the cluster with `current` (everything the reflector stores hold) as
    /// of `now`. A Job present before and missing now starts its grace; a vanished Job that is
    /// back (same name, any uid) simply replaces its old copy.
    pub fn observe(&mut self, now: Instant, current: impl IntoIterator<Item = Arc<Job>>) {
        let current: BTreeMap<JobKey, Arc<Job>> = current
            .into_iter()
            .map(|job| (job_key(&job), job))
            .collect();
        let previous = std::mem::take(&mut self.present);
        for (key, job) in previous {
            if !current.contains_key(&key) {
                self.vanished.entry(key).or_insert(VanishedJob {
                    since: now,
                    last_seen: job,
                });
            }
        }
        for key in current.keys() {
            self.vanished.remove(key);
        }
        self.present = current;
    }

    /// Forget vanished Jobs whose grace has run out at `now`; returns how many.
    pub fn expire(&mut self, now: Instant) -> usize {
        let before = self.vanished.len();
        let grace = self.grace;
        self.vanished.retain(|_, v| now < v.since + grace);
        before - self.vanished.len()
    }

    /// When the next vanished Job's grace runs out, if any is waiting.
    pub fn next_expiry(&self) -> Option<Instant> {
        self.vanished.values().map(|v| v.since + self.grace).min()
    }

    /// The Jobs that count at `now`: those present, plus the last seen copy of each vanished Job
    /// still within its grace. Sorted by namespace and name.
    pub fn effective_jobs(&self, now: Instant) -> Vec<Arc<Job>> {
        let mut jobs: BTreeMap<&JobKey, &Arc<Job>> = self.present.iter().collect();
        for (key, v) in &self.vanished {
            if now < v.since + self.grace {
                jobs.insert(key, &v.last_seen);
            }
        }
        jobs.into_values().cloned().collect()
    }

    /// How many Jobs are currently in their grace period.
    pub fn vanished_len(&self) -> usize {
        self.vanished.len()
    }
}

fn job_key(job: &Job) -> JobKey {
    (job.namespace().unwrap_or_default(), job.name_any())
}

/// The whole desired state, rebuilt from the Jobs that count.
#[derive(Debug, Default)]
pub struct DesiredState {
    /// The rendered templates and the actions that failed to render.
    pub outcome: RenderOutcome,
    /// Annotated Jobs that are not valid templates, with why.
    pub ignored: Vec<IgnoredJob>,
    /// Template Jobs per action (every configured action listed, with 0 when none): the
    /// `template_jobs` gauge.
    pub jobs_per_action: BTreeMap<String, usize>,
}

/// Classify every Job with the lifecycle annotation `annotation_key` and render the templates.
/// Pure: the same Jobs give the same state.
pub fn desired_state<'a>(
    jobs: impl IntoIterator<Item = &'a Job>,
    annotation_key: &str,
    config: &RenderConfig,
    known_actions: &[String],
) -> DesiredState {
    let mut templates: Vec<TemplateJob> = Vec::new();
    let mut ignored = Vec::new();
    for job in jobs {
        match classify(job, annotation_key) {
            Classified::Template(t) => templates.push(t),
            Classified::Ignored(i) => ignored.push(i),
            Classified::NotATemplate => {}
        }
    }
    let mut jobs_per_action: BTreeMap<String, usize> =
        known_actions.iter().map(|a| (a.clone(), 0)).collect();
    for t in &templates {
        for action in &t.actions {
            *jobs_per_action.entry(action.clone()).or_default() += 1;
        }
    }
    DesiredState {
        outcome: render(&templates, config),
        ignored,
        jobs_per_action,
    }
}

/// One reflector per watched namespace (or one over all namespaces), merged into one stream of
/// `(watcher index, event)`.
struct JobWatch {
    /// The read side of each reflector store.
    stores: Vec<Store<Job>>,
    /// The merged, backed-off watch streams.
    events: BoxStream<'static, (usize, Result<watcher::Event<Job>, watcher::Error>)>,
    /// Whether each watcher delivered its initial list.
    synced: Vec<bool>,
}

impl JobWatch {
    fn start(client: &Client, namespaces: &[String]) -> JobWatch {
        let namespaces: BTreeSet<&String> = namespaces.iter().filter(|n| !n.is_empty()).collect();
        let apis: Vec<Api<Job>> = if namespaces.is_empty() {
            vec![Api::all(client.clone())]
        } else {
            namespaces
                .into_iter()
                .map(|ns| Api::namespaced(client.clone(), ns))
                .collect()
        };
        let config = watcher::Config::default().labels(&format!("{TEMPLATE_LABEL}=true"));
        let mut stores = Vec::new();
        let mut streams = Vec::new();
        for (index, api) in apis.into_iter().enumerate() {
            let (reader, writer) = reflector::store();
            stores.push(reader);
            let events = watcher(api, config.clone())
                .default_backoff()
                // Managed fields are large and never rendered; don't keep them in memory.
                .modify(|job: &mut Job| job.managed_fields_mut().clear())
                .reflect(writer)
                .map(move |event| (index, event))
                .boxed();
            streams.push(events);
        }
        let synced = vec![false; stores.len()];
        JobWatch {
            stores,
            events: stream::select_all(streams).boxed(),
            synced,
        }
    }

    fn all_synced(&self) -> bool {
        self.synced.iter().all(|s| *s)
    }

    fn jobs(&self) -> impl Iterator<Item = Arc<Job>> + '_ {
        self.stores.iter().flat_map(|s| s.state())
    }
}

/// Who may write. Without leader election this replica always leads.
enum Leadership {
    /// Leader election off (or `--dry-run`, which writes nothing).
    Always,
    /// A Lease held through kube-lease-manager's background task.
    Lease {
        /// `true` while this replica holds the Lease.
        state: channel::Receiver<bool>,
        /// The lease manager's task; it releases the Lease when `state` is dropped.
        task: JoinHandle<Result<LeaseManager, LeaseManagerError>>,
    },
}

impl Leadership {
    fn is_leader(&self) -> bool {
        match self {
            Leadership::Always => true,
            Leadership::Lease { state, .. } => *state.borrow(),
        }
    }

    /// Drop the receiver so the lease manager releases the Lease, and wait (briefly) for it.
    async fn release(self) {
        if let Leadership::Lease { state, task } = self {
            drop(state);
            match tokio::time::timeout(Duration::from_secs(5), task).await {
                Ok(Ok(Ok(_))) => tracing::info!("released the discovery Lease"),
                Ok(Ok(Err(e))) => {
                    tracing::warn!(error = %ErrorChain(&e), "could not release the discovery Lease")
                }
                Ok(Err(e)) => tracing::warn!(error = %e, "lease manager task failed"),
                Err(_) => tracing::warn!("timed out releasing the discovery Lease"),
            }
        }
    }
}

/// The Lease holder identity: the pod name, unique among replicas.
fn lease_identity() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| format!("discovery-{}", std::process::id()))
}

/// Create (or find) the Lease and start competing for it, retrying with backoff until it works
/// or `shutdown` fires (`None` then).
async fn start_leader_election(
    client: &Client,
    settings: &DiscoverSettings,
    metrics: &DiscoveryMetrics,
    shutdown: &mut (impl Future<Output = ()> + Unpin),
) -> Option<Leadership> {
    let identity = lease_identity();
    let mut backoff = MIN_RETRY_BACKOFF;
    loop {
        let built = LeaseManagerBuilder::new(client.clone(), &settings.lease_name)
            .with_namespace(&settings.workflow_namespace)
            .with_identity(&identity)
            // One SSA field manager per replica, so two replicas conflict instead of sharing.
            .with_field_manager(format!("tenant-gateway-lease-{identity}"))
            .build()
            .await;
        match built {
            Ok(manager) => {
                tracing::info!(lease = %settings.lease_name, namespace = %settings.workflow_namespace, identity = %identity, "competing for the discovery Lease");
                let (state, task) = manager.watch().await;
                return Some(Leadership::Lease { state, task });
            }
            Err(e) => {
                metrics.record_error(ErrorStage::Lease);
                tracing::warn!(error = %ErrorChain(&e), retry_in = ?backoff, "cannot set up the discovery Lease");
            }
        }
        tokio::select! {
            () = &mut *shutdown => return None,
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(MAX_RETRY_BACKOFF);
    }
}

/// Run discovery against the cluster until `shutdown` resolves (or, with `--once`, until one
/// sync is done). Serves `/healthz`, `/readyz` and `/metrics` on `settings.listen` meanwhile.
///
/// `settings.from_dir` is not looked at here: offline discovery needs no cluster.
pub async fn run(
    settings: DiscoverSettings,
    client: Client,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let metrics = DiscoveryMetrics::new();
    let readiness = Arc::new(Readiness::default());
    let health = HealthServer::start(settings.listen, metrics.clone(), readiness.clone())?;
    let result = run_loop(&settings, client, shutdown, &metrics, &readiness).await;
    health.stop().await;
    result
}

/// Everything of [`run`] but the HTTP listener.
async fn run_loop(
    settings: &DiscoverSettings,
    client: Client,
    shutdown: impl Future<Output = ()>,
    metrics: &DiscoveryMetrics,
    readiness: &Readiness,
) -> anyhow::Result<()> {
    let mut shutdown = std::pin::pin!(shutdown);
    let debounce = settings.debounce;
    let render_config = RenderConfig::from_settings(settings);
    let mut reconciler = Reconciler::new(
        client.clone(),
        &settings.workflow_namespace,
        metrics.clone(),
    );
    let mut memory = JobMemory::new(settings.disappearance_grace);
    let mut watch = JobWatch::start(&client, &settings.namespaces);

    let mut leadership = if settings.leader_election && !settings.dry_run {
        match start_leader_election(&client, settings, metrics, &mut shutdown).await {
            Some(l) => l,
            None => return Ok(()),
        }
    } else {
        if settings.leader_election {
            tracing::info!("--dry-run writes nothing: leader election skipped");
        }
        Leadership::Always
    };
    let mut leader = leadership.is_leader();
    metrics.set_leader(leader);
    readiness.set_follower(!leader);

    // When the next rebuild is due (debounce, retry, resync); None = nothing pending.
    let mut rebuild_at: Option<Instant> = None;
    // The first Job change not yet rebuilt, which bounds how long debouncing may postpone.
    let mut first_change_at: Option<Instant> = None;
    let mut retry_backoff = MIN_RETRY_BACKOFF;
    tracing::info!(
        namespaces = ?settings.namespaces,
        workflow_namespace = %settings.workflow_namespace,
        debounce = ?debounce,
        grace = ?settings.disappearance_grace,
        leader_election = settings.leader_election,
        "discovery started"
    );

    loop {
        let wake = match (rebuild_at, memory.next_expiry()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        tokio::select! {
            biased;
            () = &mut shutdown => {
                tracing::info!("shutdown requested: discovery stops");
                break;
            }
            changed = lease_changed(&mut leadership) => {
                match changed {
                    Ok(now_leader) => {
                        if now_leader != leader {
                            tracing::info!(leader = now_leader, "discovery leadership changed");
                        }
                        leader = now_leader;
                        metrics.set_leader(leader);
                        readiness.set_follower(!leader);
                        if leader {
                            // A new leader trusts nothing it did not check itself: sync now.
                            rebuild_at = Some(Instant::now());
                        }
                    }
                    Err(()) => {
                        metrics.record_error(ErrorStage::Lease);
                        metrics.set_leader(false);
                        anyhow::bail!("the discovery Lease manager stopped; restarting is the way to rejoin the election");
                    }
                }
            }
            () = sleep_until(wake), if wake.is_some() => {
                let now = Instant::now();
                if memory.expire(now) > 0 {
                    tracing::info!("a vanished template Job's grace ran out; rebuilding");
                    rebuild_at = Some(now);
                }
                if rebuild_at.is_some_and(|at| at <= now) {
                    rebuild_at = None;
                    first_change_at = None;
                    if !watch.all_synced() {
                        // The first InitDone of the last watcher schedules the rebuild again.
                        continue;
                    }
                    let state = desired_state(
                        memory.effective_jobs(now).iter().map(|j| j.as_ref()),
                        &settings.annotation_key,
                        &render_config,
                        &render_config.actions,
                    );
                    metrics.record_discovered(
                        state.jobs_per_action.iter().map(|(a, n)| (a.as_str(), *n)),
                        state.ignored.len(),
                    );
                    if !leader {
                        tracing::debug!("follower: desired state rebuilt, not applied");
                        continue;
                    }
                    match apply_desired(settings, &mut reconciler, &state).await {
                        Ok(()) => {
                            readiness.mark_synced_once();
                            retry_backoff = MIN_RETRY_BACKOFF;
                            if settings.once {
                                break;
                            }
                            if !settings.dry_run {
                                rebuild_at = Some(now + RESYNC_INTERVAL);
                            }
                        }
                        Err(e) => {
                            if settings.once {
                                leadership.release().await;
                                return Err(e);
                            }
                            tracing::warn!(error = format!("{e:#}"), retry_in = ?retry_backoff, "discovery sync failed");
                            rebuild_at = Some(now + retry_backoff);
                            retry_backoff = (retry_backoff * 2).min(MAX_RETRY_BACKOFF);
                        }
                    }
                }
            }
            item = watch.events.next() => {
                let Some((index, event)) = item else {
                    anyhow::bail!("the Job watch ended");
                };
                match event {
                    Ok(event) => {
                        let settled = match &event {
                            watcher::Event::InitDone => {
                                watch.synced[index] = true;
                                true
                            }
                            watcher::Event::Apply(_) | watcher::Event::Delete(_) => true,
                            // The store swaps in a relist only at InitDone.
                            watcher::Event::Init | watcher::Event::InitApply(_) => false,
                        };
                        if settled {
                            memory.observe(Instant::now(), watch.jobs());
                            readiness.set_watch_synced(watch.all_synced());
                            let now = Instant::now();
                            let first = *first_change_at.get_or_insert(now);
                            rebuild_at = Some(if settings.once {
                                now
                            } else {
                                // Debounce, but a steady trickle of changes must not postpone
                                // the rebuild for ever.
                                (now + debounce).min(first + debounce * MAX_DEBOUNCE_FACTOR)
                            });
                        }
                    }
                    Err(e) => {
                        metrics.record_error(ErrorStage::Watch);
                        tracing::warn!(error = %ErrorChain(&e), "Job watch error; the watcher retries with backoff");
                    }
                }
            }
        }
    }
    leadership.release().await;
    Ok(())
}

/// `--dry-run`: print exactly what would be applied (and log the ignored Jobs, whose Events a
/// real run would create).
pub(crate) fn print_desired(
    settings: &DiscoverSettings,
    state: &DesiredState,
) -> anyhow::Result<()> {
    for job in &state.ignored {
        tracing::warn!(job.namespace = %job.reference.namespace, job.name = %job.reference.name, reason = %job.reason, "template Job ignored");
    }
    let mut out = std::io::stdout().lock();
    offline::print_templates(&state.outcome, settings.output, &mut out)
        .context("cannot print the rendered WorkflowTemplates")
}

/// Print (`--dry-run`) or sync the desired state.
pub(crate) async fn apply_desired(
    settings: &DiscoverSettings,
    reconciler: &mut Reconciler,
    state: &DesiredState,
) -> anyhow::Result<()> {
    if settings.dry_run {
        return print_desired(settings, state);
    }
    for (action, problem) in &state.outcome.problems {
        tracing::warn!(action = %action, problem = %problem, "action failed to render; its last good template stays");
    }
    reconciler
        .sync(&state.outcome, &state.ignored)
        .await
        .map(|_| ())
        .map_err(anyhow::Error::new)
}

/// The next leadership change, or pending forever without leader election. `Err(())` when the
/// lease manager's task is gone.
async fn lease_changed(leadership: &mut Leadership) -> Result<bool, ()> {
    match leadership {
        Leadership::Always => std::future::pending().await,
        Leadership::Lease { state, .. } => match state.changed().await {
            Ok(()) => Ok(*state.borrow_and_update()),
            Err(_) => Err(()),
        },
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn job(ns: &str, name: &str, uid: &str) -> Arc<Job> {
        Arc::new(Job {
            metadata: ObjectMeta {
                namespace: Some(ns.into()),
                name: Some(name.into()),
                uid: Some(uid.into()),
                ..ObjectMeta::default()
            },
            ..Job::default()
        })
    }

    fn uids(jobs: &[Arc<Job>]) -> Vec<String> {
        jobs.iter()
            .map(|j| j.metadata.uid.clone().unwrap_or_default())
            .collect()
    }

    const GRACE: Duration = Duration::from_secs(30);

    #[test]
    fn a_vanished_job_counts_until_its_grace_runs_out() {
        let t0 = Instant::now();
        let mut memory = JobMemory::new(GRACE);
        memory.observe(
            t0,
            [job("team-a", "schema", "u1"), job("team-b", "cache", "u2")],
        );
        assert_eq!(uids(&memory.effective_jobs(t0)), ["u1", "u2"]);
        assert_eq!(memory.next_expiry(), None);

        let t1 = t0 + Duration::from_secs(5);
        memory.observe(t1, [job("team-b", "cache", "u2")]);
        assert_eq!(memory.vanished_len(), 1);
        assert_eq!(memory.next_expiry(), Some(t1 + GRACE));
        assert_eq!(
            uids(&memory.effective_jobs(t1 + GRACE - Duration::from_millis(1))),
            ["u1", "u2"],
            "the last seen copy still counts within the grace"
        );
        assert_eq!(uids(&memory.effective_jobs(t1 + GRACE)), ["u2"]);

        assert_eq!(memory.expire(t1 + GRACE - Duration::from_millis(1)), 0);
        assert_eq!(memory.expire(t1 + GRACE), 1);
        assert_eq!(memory.next_expiry(), None);
        assert_eq!(uids(&memory.effective_jobs(t1 + GRACE)), ["u2"]);
    }

    #[test]
    fn a_replaced_job_that_reappears_replaces_its_old_copy() {
        let t0 = Instant::now();
        let mut memory = JobMemory::new(GRACE);
        memory.observe(t0, [job("team-a", "schema", "old")]);
        // Argo CD Replace=true: deleted ...
        memory.observe(t0 + Duration::from_secs(1), []);
        assert_eq!(
            uids(&memory.effective_jobs(t0 + Duration::from_secs(1))),
            ["old"]
        );
        // ... and re-created with a new uid three seconds later.
        memory.observe(
            t0 + Duration::from_secs(4),
            [job("team-a", "schema", "new")],
        );
        assert_eq!(memory.vanished_len(), 0);
        assert_eq!(memory.next_expiry(), None);
        assert_eq!(
            uids(&memory.effective_jobs(t0 + Duration::from_secs(60))),
            ["new"]
        );
    }

    #[test]
    fn the_grace_starts_when_a_job_is_first_seen_missing() {
        let t0 = Instant::now();
        let mut memory = JobMemory::new(GRACE);
        memory.observe(t0, [job("ns", "a", "1"), job("ns", "b", "2")]);
        memory.observe(t0 + Duration::from_secs(10), [job("ns", "b", "2")]);
        // Later observations without the Job do not restart its grace.
        memory.observe(t0 + Duration::from_secs(20), [job("ns", "b", "2")]);
        assert_eq!(
            memory.next_expiry(),
            Some(t0 + Duration::from_secs(10) + GRACE)
        );
    }

    #[test]
    fn zero_grace_forgets_at_once() {
        let t0 = Instant::now();
        let mut memory = JobMemory::new(Duration::ZERO);
        memory.observe(t0, [job("ns", "a", "1")]);
        memory.observe(t0, []);
        assert!(memory.effective_jobs(t0).is_empty());
        assert_eq!(memory.expire(t0), 1);
    }
}
