//! Which Jobs are lifecycle templates, which are ignored and why.
//!
//! A team takes part in a tenant lifecycle by shipping an ordinary `batch/v1` Job with
//! `spec.suspend: true` and the lifecycle annotation (`lifecycle.upsert,lifecycle.migrate-in`).
//! This module owns reading such a Job: the annotation grammar, the optional `depends-on`,
//! `timeout` and `retries` annotations, and the sentence a team gets back when its Job cannot
//! be used. It never talks to the cluster; the watch and the offline loader both call
//! [`classify`].

use std::collections::BTreeSet;
use std::fmt;
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;

/// Label that selects template Jobs on the server side (value `"true"`). Offline manifests may
/// lack it; [`classify`] does not require it.
pub const TEMPLATE_LABEL: &str = "tenant-gateway.io/template";
/// Other template Jobs of the same action that must succeed first: comma-separated
/// `namespace/name` (a bare `name` means the Job's own namespace).
pub const DEPENDS_ON_ANNOTATION: &str = "tenant-gateway.io/depends-on";
/// How long one attempt of the Job may take, as a humantime duration (`15m`, `1h 30m`).
pub const TIMEOUT_ANNOTATION: &str = "tenant-gateway.io/timeout";
/// How many times Argo retries the Job after a failed attempt (integer >= 0).
pub const RETRIES_ANNOTATION: &str = "tenant-gateway.io/retries";

/// Every entry of the lifecycle annotation starts with this prefix (`lifecycle.<action>`).
pub const ACTION_PREFIX: &str = "lifecycle.";
/// Longest action name: `tenant-lifecycle-<action>` must stay a 63-character label value,
/// because Argo labels each Workflow with the name of its WorkflowTemplate.
pub const MAX_ACTION_LEN: usize = 63 - "tenant-lifecycle-".len();

/// A Job by namespace and name; ordered so that everything built from Jobs is deterministic.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct JobRef {
    /// The Job's namespace (where the bridge creates the real Job and the event ConfigMap).
    pub namespace: String,
    /// The template Job's `metadata.name`.
    pub name: String,
}

impl fmt::Display for JobRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// A suspended, well-annotated Job: the unit the renderer turns into one bridge task per action.
#[derive(Debug, Clone)]
pub struct TemplateJob {
    /// Where the template Job lives.
    pub reference: JobRef,
    /// Short action names (`upsert`, `migrate-in`) from the lifecycle annotation.
    pub actions: BTreeSet<String>,
    /// Template Jobs that must succeed before this one, in annotation order, without duplicates.
    pub depends_on: Vec<JobRef>,
    /// Per-attempt limit from [`TIMEOUT_ANNOTATION`]; `None` uses the configured default.
    pub timeout: Option<Duration>,
    /// Argo retries from [`RETRIES_ANNOTATION`]; `None` means no retries.
    pub retries: Option<u32>,
    /// The template Job as found (the renderer strips and injects on a copy).
    pub job: Job,
}

/// A Job that carries the lifecycle annotation but cannot be used; reported to its team.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IgnoredJob {
    /// Where the ignored Job lives.
    pub reference: JobRef,
    /// Its uid, so a report (an Event, a log line) can point at this exact object.
    pub uid: Option<String>,
    /// A sentence the owning team can act on.
    pub reason: String,
}

/// What [`classify`] made of one Job.
// Not boxed: the variants are the interface the watch matches on, and a classification lives
// only as long as one Job is looked at.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum Classified {
    /// A usable template Job.
    Template(TemplateJob),
    /// Annotated, but not suspended or with a malformed annotation.
    Ignored(IgnoredJob),
    /// No lifecycle annotation at all: not ours (the label selector may be absent offline).
    NotATemplate,
}

/// Sorts a Job into template, ignored or not ours. `annotation_key` is the configured lifecycle
/// annotation (`tenant-gateway.io/lifecycle` by default, e.g. `collibra.com/tenant.lifecycle`).
///
/// Ignored when: not `spec.suspend: true`; the lifecycle annotation lists no action or an entry
/// that is not `lifecycle.<name>` with a DNS-label name; `depends-on`, `timeout` or `retries`
/// cannot be parsed; the Job has no name or namespace; or its spec contains `{{`, which Argo
/// would try to expand as a template expression when the manifest is embedded.
pub fn classify(job: &Job, annotation_key: &str) -> Classified {
    let annotations = job.metadata.annotations.clone().unwrap_or_default();
    let Some(lifecycle) = annotations.get(annotation_key) else {
        return Classified::NotATemplate;
    };
    let reference = JobRef {
        namespace: job.metadata.namespace.clone().unwrap_or_default(),
        name: job.metadata.name.clone().unwrap_or_default(),
    };
    let ignored = |reason: String| {
        Classified::Ignored(IgnoredJob {
            reference: reference.clone(),
            uid: job.metadata.uid.clone(),
            reason,
        })
    };
    if reference.name.is_empty() {
        return ignored("the Job has no metadata.name; a template Job needs a fixed name".into());
    }
    if reference.namespace.is_empty() {
        return ignored(
            "the Job has no metadata.namespace; name the namespace its real Jobs should run in"
                .into(),
        );
    }
    let actions = match parse_actions(annotation_key, lifecycle) {
        Ok(actions) => actions,
        Err(reason) => return ignored(reason),
    };
    let suspended = job.spec.as_ref().and_then(|spec| spec.suspend) == Some(true);
    if !suspended {
        return ignored(format!(
            "the Job is annotated with {annotation_key} but spec.suspend is not true, so it \
             would run as is; set spec.suspend: true to make it a lifecycle template"
        ));
    }
    let depends_on = match annotations.get(DEPENDS_ON_ANNOTATION) {
        None => Vec::new(),
        Some(value) => match parse_depends_on(value, &reference.namespace) {
            Ok(refs) => refs,
            Err(reason) => return ignored(reason),
        },
    };
    let timeout = match annotations.get(TIMEOUT_ANNOTATION) {
        None => None,
        Some(value) => match parse_timeout(value) {
            Ok(timeout) => Some(timeout),
            Err(reason) => return ignored(reason),
        },
    };
    let retries = match annotations.get(RETRIES_ANNOTATION) {
        None => None,
        Some(value) => match value.trim().parse::<u32>() {
            Ok(retries) => Some(retries),
            Err(_) => {
                return ignored(format!(
                    "{RETRIES_ANNOTATION} is {value:?}; it must be a whole number of retries, \
                     0 or more"
                ))
            }
        },
    };
    if let Some(spec) = &job.spec {
        // A spec that cannot be serialized cannot be embedded either; both are reported alike.
        let text = serde_json::to_string(spec).unwrap_or_else(|_| "{{".to_string());
        if text.contains("{{") {
            return ignored(
                "the Job's spec contains \"{{\", which Argo would expand as a template \
                 expression when the manifest is embedded in a WorkflowTemplate; remove it \
                 (for example build the string in the container's command)"
                    .into(),
            );
        }
    }
    Classified::Template(TemplateJob {
        reference,
        actions,
        depends_on,
        timeout,
        retries,
        job: job.clone(),
    })
}

/// Whether `action` can name a WorkflowTemplate: a DNS label of at most [`MAX_ACTION_LEN`].
pub fn is_valid_action(action: &str) -> bool {
    let bytes = action.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= MAX_ACTION_LEN
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes.first() != Some(&b'-')
        && bytes.last() != Some(&b'-')
}

/// `lifecycle.upsert, lifecycle.migrate-in` -> {upsert, migrate-in}. Blank entries (a trailing
/// comma) are tolerated; anything else that is not `lifecycle.<action>` is an error.
fn parse_actions(annotation_key: &str, value: &str) -> Result<BTreeSet<String>, String> {
    let mut actions = BTreeSet::new();
    for entry in value.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let Some(action) = entry.strip_prefix(ACTION_PREFIX) else {
            return Err(format!(
                "{annotation_key} entry {entry:?} is not of the form lifecycle.<action> \
                 (e.g. lifecycle.upsert)"
            ));
        };
        if !is_valid_action(action) {
            return Err(format!(
                "{annotation_key} entry {entry:?}: the action must be lower-case letters, digits \
                 and '-', at most {MAX_ACTION_LEN} characters, starting and ending with a letter \
                 or digit"
            ));
        }
        actions.insert(action.to_string());
    }
    if actions.is_empty() {
        return Err(format!(
            "{annotation_key} lists no action; list one or more, e.g. \
             \"lifecycle.upsert,lifecycle.delete\""
        ));
    }
    Ok(actions)
}

/// `team-a/create-db, warm-cache` -> [team-a/create-db, <own namespace>/warm-cache].
fn parse_depends_on(value: &str, own_namespace: &str) -> Result<Vec<JobRef>, String> {
    let mut refs: Vec<JobRef> = Vec::new();
    for entry in value.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let (namespace, name) = match entry.split_once('/') {
            Some((namespace, name)) => (namespace.trim(), name.trim()),
            None => (own_namespace, entry),
        };
        let well_formed = !namespace.is_empty()
            && !name.is_empty()
            && !name.contains('/')
            && [namespace, name].iter().all(|part| {
                part.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
            });
        if !well_formed {
            return Err(format!(
                "{DEPENDS_ON_ANNOTATION} entry {entry:?} is not namespace/name (or a bare name \
                 in the Job's own namespace)"
            ));
        }
        let reference = JobRef {
            namespace: namespace.to_string(),
            name: name.to_string(),
        };
        if !refs.contains(&reference) {
            refs.push(reference);
        }
    }
    Ok(refs)
}

/// A humantime duration of at least one second (Argo and Kubernetes count whole seconds).
fn parse_timeout(value: &str) -> Result<Duration, String> {
    match humantime::parse_duration(value.trim()) {
        Ok(timeout) if timeout >= Duration::from_secs(1) => Ok(timeout),
        Ok(_) => Err(format!(
            "{TIMEOUT_ANNOTATION} is {value:?}; it must be at least 1s"
        )),
        Err(error) => Err(format!(
            "{TIMEOUT_ANNOTATION} is {value:?}, not a duration ({error}); write e.g. \"15m\" or \
             \"1h 30m\""
        )),
    }
}
