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

use std::path::Path;

use anyhow::Context;

use crate::cli::DiscoverArgs;
use health::DiscoveryMetrics;
use reconcile::Reconciler;
use render::RenderConfig;

/// `tenant-gateway discover`: from a cluster (the sidecar loop), or from files.
pub async fn run(args: DiscoverArgs) -> anyhow::Result<()> {
    match args.from_dir.clone() {
        Some(dir) => run_from_dir(&dir, &args).await,
        None => {
            let client = kube_client().await?;
            watch::run(args, client, crate::app::termination_signal()).await
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
async fn run_from_dir(dir: &Path, args: &DiscoverArgs) -> anyhow::Result<()> {
    let jobs = offline::load_jobs(dir)?;
    let config = RenderConfig::from_args(args);
    let state = watch::desired_state(&jobs, &args.annotation_key, &config, &config.actions);
    if args.dry_run {
        watch::print_desired(args, &state)?;
    } else {
        let client = kube_client().await?;
        let mut reconciler =
            Reconciler::new(client, &args.workflow_namespace, DiscoveryMetrics::new());
        watch::apply_desired(args, &mut reconciler, &state).await?;
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
