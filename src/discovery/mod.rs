//! Discovery (`tenant-gateway discover`, a sidecar): finds suspended Jobs annotated with the
//! lifecycle actions they take part in, renders one Argo WorkflowTemplate per action with one
//! bridge task per Job, and applies them with server-side apply.
//!
//! - [`template_job`]: which Jobs are templates, which are ignored and why.
//! - [`render`]: the pure function from template Jobs to WorkflowTemplates.
//! - [`offline`]: Job manifests from YAML files, and printing what would be applied.
//! - [`reconcile`]: applying, pruning and reporting against the Kubernetes API.
//! - [`watch`]: the reflector loop (debounce, disappearance grace, leader election).
//! - [`health`]: the sidecar's /healthz, /readyz and /metrics listener.

pub mod health;
pub mod offline;
pub mod reconcile;
pub mod render;
pub mod template_job;
pub mod watch;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;

use crate::config::LogFormat;
use health::DiscoveryMetrics;
use offline::OutputFormat;
use reconcile::Reconciler;
use render::RenderConfig;

/// The annotation listing the lifecycle actions a template Job takes part in, by default.
pub const DEFAULT_ANNOTATION_KEY: &str = "tenant-gateway.io/lifecycle";
/// The Lease that `--leader-election` competes for, by default.
pub const DEFAULT_LEASE_NAME: &str = "tenant-gateway-discovery";
/// The sidecar's /healthz, /readyz and /metrics listener, by default.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8082";
/// The service account the Workflows run as, by default.
pub const DEFAULT_BRIDGE_SERVICE_ACCOUNT: &str = "tenant-lifecycle-bridge";
/// The actions that always get a WorkflowTemplate, by default.
pub const DEFAULT_ACTIONS: [&str; 5] = ["upsert", "delete", "migrate-out", "migrate-in", "admin"];

/// Everything `discover` needs; `cli` builds it from the flags and environment, tests build it
/// directly (from [`DiscoverSettings::default`], which equals the flags' defaults).
#[derive(Debug, Clone, PartialEq)]
pub struct DiscoverSettings {
    /// Annotation listing the lifecycle actions a template Job takes part in.
    pub annotation_key: String,
    /// Namespaces watched for template Jobs; empty means all namespaces.
    pub namespaces: Vec<String>,
    /// Namespace of the WorkflowTemplates (where Workflows run), also the Lease's namespace.
    pub workflow_namespace: String,
    /// Read Job manifests from the YAML files here instead of a cluster.
    pub from_dir: Option<PathBuf>,
    /// Render and apply once, then exit.
    pub once: bool,
    /// Print what would be applied instead of applying it.
    pub dry_run: bool,
    /// Format of what `dry_run` prints.
    pub output: OutputFormat,
    /// Only the holder of the Lease applies (several replicas).
    pub leader_election: bool,
    /// Name of that Lease.
    pub lease_name: String,
    /// Listener for /healthz, /readyz and /metrics; port 0 picks a free port (tests).
    pub listen: SocketAddr,
    /// Quiet period after the last Job change before the templates are rebuilt.
    pub debounce: Duration,
    /// How long a vanished template Job still counts (Argo CD Replace deletes and re-creates).
    pub disappearance_grace: Duration,
    /// Service account of the Workflows.
    pub bridge_service_account: String,
    /// `ttlSecondsAfterFinished` of the Jobs the bridge creates.
    pub job_ttl: Duration,
    /// Timeout of a bridge step whose Job has no timeout annotation.
    pub default_timeout: Duration,
    /// Secret passed as environment to migrate-out / migrate-in Jobs.
    pub object_storage_secret: Option<String>,
    /// Actions that always get a WorkflowTemplate, as given (normalized by [`RenderConfig`]).
    pub actions: Vec<String>,
    /// Log line format.
    pub log_format: LogFormat,
}

impl Default for DiscoverSettings {
    fn default() -> Self {
        DiscoverSettings {
            annotation_key: DEFAULT_ANNOTATION_KEY.to_owned(),
            namespaces: Vec::new(),
            workflow_namespace: crate::config::DEFAULT_WORKFLOW_NAMESPACE.to_owned(),
            from_dir: None,
            once: false,
            dry_run: false,
            output: OutputFormat::Yaml,
            leader_election: false,
            lease_name: DEFAULT_LEASE_NAME.to_owned(),
            listen: DEFAULT_LISTEN
                .parse()
                .expect("valid default listen address"),
            debounce: Duration::from_secs(2),
            disappearance_grace: Duration::from_secs(30),
            bridge_service_account: DEFAULT_BRIDGE_SERVICE_ACCOUNT.to_owned(),
            job_ttl: Duration::from_secs(3600),
            default_timeout: Duration::from_secs(3600),
            object_storage_secret: None,
            actions: DEFAULT_ACTIONS.map(String::from).to_vec(),
            log_format: LogFormat::Human,
        }
    }
}

/// `tenant-gateway discover`: from a cluster (the sidecar loop), or from files.
pub async fn run(settings: DiscoverSettings) -> anyhow::Result<()> {
    match settings.from_dir.clone() {
        Some(dir) => run_from_dir(&dir, &settings).await,
        None => {
            let client = kube_client().await?;
            watch::run(settings, client, crate::shutdown::termination_signal()).await
        }
    }
}

async fn kube_client() -> anyhow::Result<kube::Client> {
    kube::Client::try_default()
        .await
        .context("cannot reach a Kubernetes API server (no kubeconfig, and not running in a pod)")
}

/// `--from-dir`: Job manifests from YAML files, rendered once (files do not change while we
/// run). With `--dry-run`, the review mode, print exactly what would be applied; otherwise apply
/// it to the cluster of the current kubeconfig. Exits non-zero when an action could not be
/// rendered, after printing or applying the others.
async fn run_from_dir(dir: &Path, settings: &DiscoverSettings) -> anyhow::Result<()> {
    let jobs = offline::load_jobs(dir)?;
    let config = RenderConfig::from_settings(settings);
    let state = watch::desired_state(&jobs, &settings.annotation_key, &config, &config.actions);
    if settings.dry_run {
        watch::print_desired(settings, &state)?;
    } else {
        let client = kube_client().await?;
        let mut reconciler = Reconciler::new(
            client,
            &settings.workflow_namespace,
            DiscoveryMetrics::new(),
        );
        watch::apply_desired(settings, &mut reconciler, &state).await?;
    }
    if state.outcome.problems.is_empty() {
        return Ok(());
    }
    let problems: Vec<String> = state
        .outcome
        .problems
        .iter()
        .map(|(action, why)| format!("{action}: {why}"))
        .collect();
    anyhow::bail!(
        "{} action(s) could not be rendered and keep their last good template: {}",
        problems.len(),
        problems.join("; ")
    )
}
