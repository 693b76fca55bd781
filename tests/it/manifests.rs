//! The Kubernetes manifests: every YAML file under sensors/, eventsources/ and deploy/ parses,
//! every Argo object validates against the Argo JSON schemas (tests/fixtures/argo/), each
//! deploy overlay renders with `kubectl kustomize`, and the rendered objects grant exactly the
//! documented RBAC, run the pod locked down, and configure the sink of their variant.
//!
//! The YAML and schema helpers it shares with the chain test are in `support::manifests`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};
use tenant_gateway::config::{FileConfig, FlagsAndEnvironment, Settings};
use tenant_gateway::normalize::rules::RuleSet;
use tenant_gateway::normalize::DEFAULT_ACTIONS;

use crate::support::manifests::{
    assert_valid, crate_dir, yaml_documents, yaml_stream, DEFINITIONS,
};
use crate::support::skip_or_fail;

/// The schema definition of an Argo object, by kind.
fn definition_of(kind: &str) -> &'static str {
    DEFINITIONS
        .iter()
        .map(|&(definition, _)| definition)
        .find(|definition| definition.rsplit('.').next() == Some(kind))
        .unwrap_or_else(|| panic!("no schema for the Argo kind {kind}"))
}

/// Every `*.yaml`/`*.yml` below `dir`, sorted.
fn yaml_files(dir: &Path, files: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            yaml_files(&path, files);
        } else if matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml")
        ) {
            files.push(path);
        }
    }
    files.sort();
}

/// Validates one Argo object, and the Workflows a Sensor would create from it (before
/// parameters) as Workflows.
fn validate_argo_object(object: &Value, origin: &Path) {
    let kind = object["kind"].as_str().expect("kind");
    assert_valid(definition_of(kind), object, origin);
    if kind == "Sensor" {
        for trigger in object["spec"]["triggers"].as_array().expect("triggers") {
            let resource = &trigger["template"]["k8s"]["source"]["resource"];
            assert_eq!(resource["kind"], "Workflow", "{}", origin.display());
            assert_valid(definition_of("Workflow"), resource, origin);
        }
    }
}

#[test]
fn every_manifest_parses_and_every_argo_object_validates() {
    let mut files = Vec::new();
    for dir in ["sensors", "eventsources", "deploy"] {
        yaml_files(&crate_dir().join(dir), &mut files);
    }
    let mut argo_kinds: BTreeMap<String, usize> = BTreeMap::new();
    for file in &files {
        let documents = yaml_documents(file);
        assert!(!documents.is_empty(), "{} is empty", file.display());
        for document in &documents {
            let api_version = document["apiVersion"].as_str().unwrap_or_default();
            if api_version == "argoproj.io/v1alpha1" {
                validate_argo_object(document, file);
                let kind = document["kind"].as_str().expect("kind").to_owned();
                *argo_kinds.entry(kind).or_default() += 1;
            }
        }
    }
    assert_eq!(
        argo_kinds,
        BTreeMap::from([
            ("EventBus".to_owned(), 1),
            ("EventSource".to_owned(), 1),
            ("Sensor".to_owned(), 2),
        ]),
        "the Argo objects of both variants were all found and checked"
    );
    // The deploy base's rules file is a valid rules file.
    RuleSet::load(&crate_dir().join("deploy/base/rules.yaml")).expect("deploy rules load");
}

/// The Sensor of `variant`.
fn sensor(variant: &str) -> Value {
    yaml_documents(&crate_dir().join(format!("sensors/{variant}/sensor.yaml"))).remove(0)
}

/// Both Sensors: the trigger is at-least-once with retries and a dead-letter trigger, and the
/// dead-letter trigger is at-least-once too. argo-events `pkg/reconciler/sensor/validate.go`,
/// `validateDlqTrigger`: "to use dlqTrigger, trigger.atLeastOnce must be set to true" and
/// "atLeastOnce must be set to true within the dlqTrigger"; the controller marks the Sensor
/// invalid otherwise and never deploys it. It then validates the dead-letter trigger as a
/// trigger (`validateTrigger`), so its own names must be unique and its k8s operation known.
#[test]
fn every_dead_letter_trigger_is_at_least_once_as_argo_requires() {
    for variant in ["webhook", "eventbus"] {
        let sensor = sensor(variant);
        let mut names = BTreeSet::new();
        for trigger in sensor["spec"]["triggers"].as_array().expect("triggers") {
            let name = trigger["template"]["name"].as_str().expect("name");
            assert!(names.insert(name), "{variant}: duplicate trigger {name}");
            assert_eq!(trigger["atLeastOnce"], true, "{variant}/{name}");
            assert!(
                trigger["retryStrategy"]["steps"].as_u64() > Some(1),
                "{variant}/{name} retries"
            );
            let dead_letter = &trigger["dlqTrigger"];
            assert_eq!(
                dead_letter["atLeastOnce"], true,
                "{variant}/{name}: atLeastOnce within the dlqTrigger"
            );
            assert!(
                dead_letter["dlqTrigger"].is_null(),
                "no dead letter of the dead letter"
            );
            // generateName: only create makes a new object (patch would Get an empty name).
            assert_eq!(dead_letter["template"]["k8s"]["operation"], "create");
            assert_ne!(dead_letter["template"]["name"], trigger["template"]["name"]);
        }
    }
}

/// One dependency and one trigger per Sensor. Every trigger gets its own durable JetStream
/// consumer and its own goroutine (argo-events `pkg/sensors/listener.go`, `listenEvents`;
/// `pkg/eventbus/jetstream/sensor/trigger_conn.go`, `Subscribe`, one `PullSubscribe` per
/// trigger and dependency with the durable name `getDurableName(sensor, trigger,
/// dependency)`), so two triggers could turn a tenant's upsert and the delete after it into
/// Workflows in either order; within one trigger, one goroutine handles the messages in turn
/// (`processMsgs`). No filter: an event the trigger cannot handle must become a dead letter,
/// not be dropped silently.
#[test]
fn every_sensor_has_one_dependency_and_one_trigger() {
    for variant in ["webhook", "eventbus"] {
        let sensor = sensor(variant);
        let dependencies = sensor["spec"]["dependencies"]
            .as_array()
            .expect("dependencies");
        let triggers = sensor["spec"]["triggers"].as_array().expect("triggers");
        let ([dependency], [trigger]) = (dependencies.as_slice(), triggers.as_slice()) else {
            panic!(
                "{variant}: {} dependencies, {} triggers",
                dependencies.len(),
                triggers.len()
            );
        };
        assert!(dependency.get("filters").is_none(), "{variant}: no filter");
        assert!(
            dependency.get("transform").is_none(),
            "{variant}: no transform"
        );
        let conditions = &trigger["template"]["conditions"];
        assert!(
            conditions.is_null() || *conditions == dependency["name"],
            "{variant}: the trigger waits for the one dependency"
        );
        assert!(
            trigger.get("rateLimit").is_none(),
            "{variant}: no rate limit"
        );
    }
}

/// The WorkflowTemplate is chosen from the event, and the list of actions the Sensor knows is
/// the gateway's default action set, in both Sensors; the trigger patches (Get, Create on
/// NotFound, else a merge patch: argo-events `pkg/sensors/triggers/standard-k8s/
/// standard-k8s.go`, `Execute`) so a redelivery finds its Workflow.
#[test]
fn the_sensors_know_the_default_actions_and_patch() {
    for variant in ["webhook", "eventbus"] {
        let sensor = sensor(variant);
        let k8s = &sensor["spec"]["triggers"][0]["template"]["k8s"];
        assert_eq!(k8s["operation"], "patch", "{variant}");
        assert!(
            k8s.get("patchStrategy").is_none(),
            "{variant}: the default merge patch"
        );
        let selection: Vec<&Value> = k8s["parameters"]
            .as_array()
            .expect("parameters")
            .iter()
            .filter(|p| p["dest"] == "spec.workflowTemplateRef.name")
            .collect();
        let [selection] = selection.as_slice() else {
            panic!("{variant}: one parameter sets the template");
        };
        let src = &selection["src"];
        // No key and no value: a failing template must fail the parameter, not fall back
        // (argo-events `pkg/sensors/triggers/params.go`, `ResolveParamValue`).
        assert!(
            src.get("dataKey").is_none() && src.get("value").is_none(),
            "{variant}: nothing to fall back to"
        );
        let template = src["dataTemplate"].as_str().expect("dataTemplate");
        assert_eq!(
            crate::argo_chain::known_actions(template),
            DEFAULT_ACTIONS,
            "{variant}: the gateway's default actions"
        );
    }
}

/// Every Workflow the Sensors build is labelled with the emission id, the tenant and the
/// action, from the event (the chain test checks the values; this, that each label is set
/// from the right field and has no fallback, so a Workflow without them is never created).
#[test]
fn every_workflow_is_labelled_with_emission_tenant_and_action() {
    let expected = |variant: &str| -> BTreeMap<&'static str, (&'static str, String)> {
        let (data, id) = match variant {
            "webhook" => ("body.data.", ("dataKey", "body.id".to_owned())),
            _ => ("", ("contextKey", "id".to_owned())),
        };
        BTreeMap::from([
            ("tenant-gateway.io/emission-id", id),
            (
                "tenant-gateway.io/tenant",
                ("dataKey", format!("{data}tenant")),
            ),
            (
                "tenant-gateway.io/action",
                ("dataKey", format!("{data}action")),
            ),
        ])
    };
    for variant in ["webhook", "eventbus"] {
        let sensor = sensor(variant);
        let k8s = &sensor["spec"]["triggers"][0]["template"]["k8s"];
        let mut found = BTreeMap::new();
        for parameter in k8s["parameters"].as_array().expect("parameters") {
            let dest = parameter["dest"].as_str().expect("dest");
            let Some(label) = dest.strip_prefix("metadata.labels.") else {
                continue;
            };
            let label = label.replace("\\.", ".");
            let src = &parameter["src"];
            assert!(src.get("value").is_none(), "{variant} {label}: no fallback");
            let (kind, key) = ["dataKey", "contextKey"]
                .into_iter()
                .find_map(|k| src[k].as_str().map(|v| (k, v.to_owned())))
                .expect("a key");
            found.insert(label, (kind, key));
        }
        let found: BTreeMap<&str, (&str, String)> =
            found.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
        assert_eq!(found, expected(variant), "{variant}");
    }
}

/// The EventBus's JetStream version is one the controller lists. argo-events
/// `pkg/reconciler/config.go`, `GetJetStreamVersion`: an unlisted version is "unsupported" and
/// the EventBus is never deployed. The list is the controller's default
/// `argo-events-controller-config` (tests/fixtures/argo/argo-events-controller-config.yaml,
/// see PROVENANCE.md).
#[test]
fn the_eventbus_uses_a_jetstream_version_the_controller_lists() {
    let fixture = crate_dir().join("tests/fixtures/argo/argo-events-controller-config.yaml");
    let config_map = yaml_documents(&fixture).remove(0);
    assert_eq!(
        config_map["metadata"]["name"],
        "argo-events-controller-config"
    );
    let text = config_map["data"]["controller-config.yaml"]
        .as_str()
        .expect("controller-config.yaml");
    let config: Value = serde_yaml_ng::from_str(text).expect("controller config YAML");
    let versions: BTreeSet<&str> = config["eventBus"]["jetstream"]["versions"]
        .as_array()
        .expect("jetstream versions")
        .iter()
        .map(|v| v["version"].as_str().expect("version"))
        .collect();
    assert!(
        versions.contains("latest"),
        "the fixture is the full list: {versions:?}"
    );
    assert!(
        !versions.contains("2.10.10"),
        "the fixture is the current list (v1.9.10 dropped 2.10.10)"
    );
    let bus = yaml_documents(&crate_dir().join("eventsources/eventbus/eventbus.yaml")).remove(0);
    let version = bus["spec"]["jetstream"]["version"]
        .as_str()
        .expect("version");
    assert!(versions.contains(version), "{version} not in {versions:?}");
}

// ---------------------------------------------------------------------------------------------
// The rendered overlays

/// `kubectl kustomize <dir>`'s objects, or `None` when kubectl is missing (skipped; a failure
/// in CI).
fn kustomize(dir: &Path) -> Option<Vec<Value>> {
    let output = match Command::new("kubectl").arg("kustomize").arg(dir).output() {
        Ok(output) => output,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            skip_or_fail("kubectl (for kubectl kustomize)");
            return None;
        }
        Err(e) => panic!("cannot run kubectl: {e}"),
    };
    assert!(
        output.status.success(),
        "kubectl kustomize {} failed: {}",
        dir.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).expect("UTF-8");
    Some(yaml_stream(&text, &format!("kustomize {}", dir.display())))
}

/// The only object of `kind` (and `name`, when given).
fn one<'a>(objects: &'a [Value], kind: &str, name: Option<&str>) -> &'a Value {
    let found: Vec<&Value> = objects
        .iter()
        .filter(|o| o["kind"] == kind && name.is_none_or(|n| o["metadata"]["name"] == n))
        .collect();
    let [object] = found.as_slice() else {
        panic!("expected one {kind} {name:?}, found {}", found.len());
    };
    object
}

/// One permission: (subject, where, apiGroup, resource, verb, resourceNames). `where` is
/// `cluster` or a namespace.
type Grant = (String, String, String, String, String, String);

/// Every permission the bindings in `objects` give, per service account.
fn grants(objects: &[Value]) -> BTreeSet<Grant> {
    let roles: BTreeMap<(String, String, String), &Value> = objects
        .iter()
        .filter(|o| o["kind"] == "Role" || o["kind"] == "ClusterRole")
        .map(|o| {
            (
                (
                    o["kind"].as_str().expect("kind").to_owned(),
                    o["metadata"]["namespace"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                    o["metadata"]["name"].as_str().expect("name").to_owned(),
                ),
                o,
            )
        })
        .collect();
    let mut grants = BTreeSet::new();
    for binding in objects
        .iter()
        .filter(|o| o["kind"] == "RoleBinding" || o["kind"] == "ClusterRoleBinding")
    {
        let scope = match binding["kind"].as_str() {
            Some("ClusterRoleBinding") => "cluster".to_owned(),
            _ => binding["metadata"]["namespace"]
                .as_str()
                .expect("a RoleBinding's namespace")
                .to_owned(),
        };
        let role_kind = binding["roleRef"]["kind"].as_str().expect("roleRef kind");
        let role_namespace = if role_kind == "Role" {
            scope.clone()
        } else {
            String::new()
        };
        let key = (
            role_kind.to_owned(),
            role_namespace,
            binding["roleRef"]["name"]
                .as_str()
                .expect("roleRef name")
                .to_owned(),
        );
        let role = roles
            .get(&key)
            .unwrap_or_else(|| panic!("binding to a missing role {key:?}"));
        for subject in binding["subjects"].as_array().expect("subjects") {
            assert_eq!(subject["kind"], "ServiceAccount", "only service accounts");
            let subject = format!(
                "{}/{}",
                subject["namespace"].as_str().expect("subject namespace"),
                subject["name"].as_str().expect("subject name")
            );
            for rule in role["rules"].as_array().expect("rules") {
                for (group, resource, verb, names) in expand(rule) {
                    grants.insert((subject.clone(), scope.clone(), group, resource, verb, names));
                }
            }
        }
    }
    grants
}

/// A rule as (apiGroup, resource, verb, resourceNames) tuples; wildcards and non-resource URLs
/// are refused outright.
fn expand(rule: &Value) -> Vec<(String, String, String, String)> {
    assert!(rule.get("nonResourceURLs").is_none(), "{rule}");
    let strings = |key: &str| -> Vec<String> {
        rule[key]
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .map(|i| i.as_str().expect("string").to_owned())
                    .collect()
            })
            .unwrap_or_default()
    };
    let names = strings("resourceNames").join(",");
    let mut out = Vec::new();
    for group in strings("apiGroups") {
        for resource in strings("resources") {
            for verb in strings("verbs") {
                for item in [&group, &resource, &verb] {
                    assert!(!item.contains('*'), "wildcard in {rule}");
                }
                out.push((group.clone(), resource.clone(), verb, names.clone()));
            }
        }
    }
    out
}

/// The gateway container's own service account (deploy/base/serviceaccounts.yaml), as
/// `namespace/name`.
const GATEWAY_ACCOUNT: &str = "tenant-gateway/tenant-gateway";

/// Where kube-rs's in-cluster configuration reads `token`, `ca.crt` and `namespace`
/// (kube-client `config/incluster_config.rs`: `SERVICE_TOKENFILE`, `SERVICE_CERTFILE`,
/// `SERVICE_DEFAULT_NS`).
const IN_CLUSTER_CREDENTIALS: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// The documented RBAC (deploy/README.md): per service account, every (where, apiGroup,
/// resource, verb, resourceNames).
fn expected_grants(workflow_namespace: &str) -> BTreeSet<Grant> {
    let mut expected = BTreeSet::new();
    let mut add =
        |subject: &str, scope: &str, group: &str, resource: &str, verbs: &[&str], names: &str| {
            for verb in verbs {
                expected.insert((
                    subject.to_owned(),
                    scope.to_owned(),
                    group.to_owned(),
                    resource.to_owned(),
                    (*verb).to_owned(),
                    names.to_owned(),
                ));
            }
        };
    let discovery = "tenant-gateway/tenant-gateway-discovery";
    add(
        discovery,
        "cluster",
        "batch",
        "jobs",
        &["list", "watch"],
        "",
    );
    add(
        discovery,
        "cluster",
        "events.k8s.io",
        "events",
        &["create"],
        "",
    );
    add(
        discovery,
        workflow_namespace,
        "argoproj.io",
        "workflowtemplates",
        &["list", "create", "patch", "delete"],
        "",
    );
    add(
        discovery,
        workflow_namespace,
        "coordination.k8s.io",
        "leases",
        &["create"],
        "",
    );
    add(
        discovery,
        workflow_namespace,
        "coordination.k8s.io",
        "leases",
        &["get", "patch"],
        "tenant-gateway-discovery",
    );
    // The gateway's Workflow watch (serve --watch-workflows), on its own account: the read
    // verbs and nothing else.
    add(
        GATEWAY_ACCOUNT,
        workflow_namespace,
        "argoproj.io",
        "workflows",
        &["get", "list", "watch"],
        "",
    );
    let bridge = format!("{workflow_namespace}/tenant-lifecycle-bridge");
    add(
        &bridge,
        workflow_namespace,
        "argoproj.io",
        "workflowtaskresults",
        &["create", "patch"],
        "",
    );
    let sensor = "argo-events/tenant-lifecycle-sensor";
    add(
        sensor,
        workflow_namespace,
        "argoproj.io",
        "workflows",
        &["get", "create", "patch"],
        "",
    );
    add(sensor, "argo-events", "", "configmaps", &["create"], "");
    expected
}

/// The pod spec of the gateway Deployment and its container `name`.
fn container<'a>(pod: &'a Value, name: &str) -> &'a Value {
    pod["containers"]
        .as_array()
        .expect("containers")
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("container {name}"))
}

/// An env value of a container.
fn env<'a>(container: &'a Value, name: &str) -> Option<&'a str> {
    container["env"]
        .as_array()?
        .iter()
        .find(|e| e["name"] == name)?["value"]
        .as_str()
}

/// Whether the container mounts volume `volume`, and only read-only.
fn mount_read_only(container: &Value, volume: &str) -> bool {
    let mounts: Vec<&Value> = container["volumeMounts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| m["name"] == volume)
        .collect();
    !mounts.is_empty() && mounts.iter().all(|m| m["readOnly"] == true)
}

/// The gateway account's token Secret: of the service-account-token type, for the account
/// `tenant-gateway`, and without data, which the token controller fills in (Kubernetes docs,
/// "Manage service accounts", Token controller).
fn check_gateway_token_secret(secret: &Value) {
    assert_eq!(secret["type"], "kubernetes.io/service-account-token");
    assert_eq!(secret["metadata"]["namespace"], "tenant-gateway");
    assert_eq!(
        secret["metadata"]["annotations"]["kubernetes.io/service-account.name"],
        "tenant-gateway"
    );
    assert!(
        secret.get("data").is_none() && secret.get("stringData").is_none(),
        "no committed token"
    );
}

/// Where the container mounts volume `volume`, if it does.
fn mount_path<'a>(container: &'a Value, volume: &str) -> Option<&'a str> {
    container["volumeMounts"]
        .as_array()?
        .iter()
        .find(|m| m["name"] == volume)?["mountPath"]
        .as_str()
}

/// Whether `path` lies under one of the container's mounts of a volume for which `accept` holds.
fn under_mount(
    pod: &Value,
    container: &Value,
    path: &str,
    accept: impl Fn(&Value) -> bool,
) -> bool {
    let volumes = pod["volumes"].as_array().expect("volumes");
    container["volumeMounts"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|mount| {
            let volume = volumes
                .iter()
                .find(|v| v["name"] == mount["name"])
                .expect("mounted volume exists");
            let dir = mount["mountPath"].as_str().expect("mountPath");
            path.strip_prefix(dir)
                .is_some_and(|rest| rest.starts_with('/'))
                && accept(volume)
        })
}

/// The security settings every container of the pod must have.
fn assert_locked_down(pod: &Value) {
    assert_eq!(pod["automountServiceAccountToken"], false);
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    assert!(pod["securityContext"]["runAsUser"].as_u64() > Some(0));
    for c in pod["containers"].as_array().expect("containers") {
        let name = c["name"].as_str().expect("name");
        let security = &c["securityContext"];
        assert_eq!(security["runAsNonRoot"], true, "{name}");
        assert_eq!(security["allowPrivilegeEscalation"], false, "{name}");
        assert_eq!(security["readOnlyRootFilesystem"], true, "{name}");
        assert_eq!(security["capabilities"], json!({"drop": ["ALL"]}), "{name}");
        assert!(security.get("privileged").is_none(), "{name}");
        for resource in ["cpu", "memory"] {
            assert!(
                c["resources"]["requests"][resource].is_string(),
                "{name} requests {resource}"
            );
        }
        assert!(
            c["resources"]["limits"]["memory"].is_string(),
            "{name} memory limit"
        );
        assert!(
            c["livenessProbe"]["httpGet"]["path"] == "/healthz",
            "{name} liveness"
        );
    }
}

/// What every overlay must render: the RBAC, the pod, and the Argo objects of `variant`.
/// `sqlite`: one replica on the SQLite journal's volume (else the `ha` overlay checks its
/// replicas and store itself). Returns the parsed config.toml of the gateway.
fn check_overlay(variant: &str, objects: &[Value], sqlite: bool) -> toml::Table {
    // No Secret values are committed: the operator creates every Secret but one, the gateway
    // account's token Secret, which carries no data (the token controller fills it in).
    let secrets: Vec<&Value> = objects.iter().filter(|o| o["kind"] == "Secret").collect();
    let [token_secret] = secrets.as_slice() else {
        panic!("{variant}: one Secret, the token's: {}", secrets.len());
    };
    check_gateway_token_secret(token_secret);
    for object in objects {
        let kind = object["kind"].as_str().expect("kind");
        if matches!(kind, "ServiceAccount" | "Secret") {
            assert_valid(
                definition_of(kind),
                object,
                Path::new(&format!("kustomize {variant}")),
            );
        }
    }
    let deployment = one(objects, "Deployment", Some("tenant-gateway"));
    if sqlite {
        assert_eq!(deployment["spec"]["replicas"], 1, "one SQLite writer");
        assert_eq!(deployment["spec"]["strategy"], json!({"type": "Recreate"}));
    }
    let pod = &deployment["spec"]["template"]["spec"];
    assert_valid(
        definition_of("PodSpec"),
        pod,
        Path::new(&format!("kustomize {variant}")),
    );
    assert_locked_down(pod);
    let gateway = container(pod, "gateway");
    let discovery = container(pod, "discovery");
    let workflow_namespace = env(discovery, "TENANT_GATEWAY_WORKFLOW_NAMESPACE")
        .expect("the sidecar names the workflow namespace");

    // RBAC: exactly the documented grants, to exactly these subjects.
    assert_eq!(
        grants(objects),
        expected_grants(workflow_namespace),
        "{variant}: rendered RBAC"
    );
    assert_eq!(pod["serviceAccountName"], "tenant-gateway-discovery");
    // The bridge's team-namespace ClusterRole exists but is never bound cluster-wide; the
    // per-namespace RoleBinding the operator applies binds it to the bridge account only.
    let bridge_role = one(objects, "ClusterRole", Some("tenant-lifecycle-bridge"));
    let rules: BTreeSet<_> = bridge_role["rules"]
        .as_array()
        .expect("rules")
        .iter()
        .flat_map(expand)
        .collect();
    // The bridge creates its Job suspended, applies the event ConfigMap owned by it, then
    // patches the Job to start it (docs/discovery.md): nothing more.
    let expected_rules: BTreeSet<_> = [
        ("batch", "jobs", "create"),
        ("batch", "jobs", "get"),
        ("batch", "jobs", "patch"),
        ("", "configmaps", "create"),
        ("", "configmaps", "patch"),
    ]
    .iter()
    .map(|&(group, resource, verb)| {
        (
            group.to_owned(),
            resource.to_owned(),
            verb.to_owned(),
            String::new(),
        )
    })
    .collect();
    assert_eq!(rules, expected_rules);
    let team_binding =
        yaml_documents(&crate_dir().join("deploy/team-namespace/rolebinding.yaml")).remove(0);
    assert_eq!(team_binding["roleRef"]["name"], "tenant-lifecycle-bridge");
    assert!(
        team_binding["metadata"].get("namespace").is_none(),
        "applied per namespace"
    );
    assert_eq!(
        team_binding["subjects"],
        json!([{"kind": "ServiceAccount", "name": "tenant-lifecycle-bridge",
                "namespace": workflow_namespace}])
    );
    let accounts: BTreeMap<String, &Value> = objects
        .iter()
        .filter(|o| o["kind"] == "ServiceAccount")
        .map(|o| {
            (
                format!(
                    "{}/{}",
                    o["metadata"]["namespace"].as_str().expect("namespace"),
                    o["metadata"]["name"].as_str().expect("name")
                ),
                o,
            )
        })
        .collect();
    assert_eq!(
        accounts.keys().map(String::as_str).collect::<BTreeSet<_>>(),
        BTreeSet::from([
            "tenant-gateway/tenant-gateway-discovery",
            GATEWAY_ACCOUNT,
            "argo-events/tenant-lifecycle-sensor",
            &format!("{workflow_namespace}/tenant-lifecycle-bridge") as &str,
        ])
    );
    for account in ["tenant-gateway/tenant-gateway-discovery", GATEWAY_ACCOUNT] {
        assert_eq!(
            accounts[account]["automountServiceAccountToken"], false,
            "{account}"
        );
    }

    // The Workflow grant: bound to the gateway's account alone; the discovery account reads no
    // Workflows (it writes WorkflowTemplates, nothing about Workflows).
    let workflow_binding = one(objects, "RoleBinding", Some("tenant-gateway-workflows"));
    assert_eq!(
        workflow_binding["metadata"]["namespace"],
        workflow_namespace
    );
    assert_eq!(
        workflow_binding["subjects"],
        json!([{"kind": "ServiceAccount", "name": "tenant-gateway",
                "namespace": "tenant-gateway"}])
    );
    let rendered = grants(objects);
    let discovery_on_workflows: Vec<&Grant> = rendered
        .iter()
        .filter(|g| g.0 == "tenant-gateway/tenant-gateway-discovery" && g.3 == "workflows")
        .collect();
    assert!(
        discovery_on_workflows.is_empty(),
        "{variant}: discovery reads Workflows: {discovery_on_workflows:?}"
    );

    // Credentials: the discovery container mounts the pod's projected token, the gateway
    // container its own account's token Secret, each read-only where kube-rs looks, neither
    // the other's.
    let token_volumes: Vec<&str> = pod["volumes"]
        .as_array()
        .expect("volumes")
        .iter()
        .filter(|v| {
            v["projected"]["sources"]
                .as_array()
                .is_some_and(|s| s.iter().any(|s| s.get("serviceAccountToken").is_some()))
        })
        .map(|v| v["name"].as_str().expect("name"))
        .collect();
    let [token_volume] = token_volumes.as_slice() else {
        panic!("one projected token volume: {token_volumes:?}");
    };
    assert_eq!(
        mount_path(discovery, token_volume),
        Some(IN_CLUSTER_CREDENTIALS)
    );
    assert!(mount_read_only(discovery, token_volume));
    assert_eq!(
        mount_path(gateway, token_volume),
        None,
        "the gateway has not the discovery account's token"
    );
    let secret_volumes: Vec<&str> = pod["volumes"]
        .as_array()
        .expect("volumes")
        .iter()
        .filter(|v| v["secret"]["secretName"] == token_secret["metadata"]["name"])
        .map(|v| v["name"].as_str().expect("name"))
        .collect();
    let [gateway_token] = secret_volumes.as_slice() else {
        panic!("one volume of the token Secret: {secret_volumes:?}");
    };
    assert_eq!(
        mount_path(gateway, gateway_token),
        Some(IN_CLUSTER_CREDENTIALS)
    );
    assert!(mount_read_only(gateway, gateway_token), "read-only");
    assert_eq!(
        mount_path(discovery, gateway_token),
        None,
        "discovery has not the gateway account's token"
    );

    // Probes: ingest readiness that ignores the sink; discovery has no readiness probe, so it
    // cannot take ingest out of the Service.
    assert_eq!(gateway["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(gateway["readinessProbe"]["httpGet"]["port"], "ingest");
    assert!(discovery.get("readinessProbe").is_none());
    assert_eq!(
        env(discovery, "TENANT_GATEWAY_DISCOVERY_LISTEN"),
        Some("0.0.0.0:8082")
    );
    assert_eq!(
        env(discovery, "TENANT_GATEWAY_LEADER_ELECTION"),
        Some("true")
    );
    assert_eq!(
        env(discovery, "TENANT_GATEWAY_BRIDGE_SERVICE_ACCOUNT"),
        Some("tenant-lifecycle-bridge")
    );

    // The config: mounted where --config points, every file it names mounted.
    let config_map = objects
        .iter()
        .find(|o| {
            o["kind"] == "ConfigMap"
                && o["metadata"]["name"]
                    .as_str()
                    .is_some_and(|n| n.starts_with("tenant-gateway-config-"))
        })
        .expect("the generated config ConfigMap");
    let config_path = {
        let args: Vec<&str> = gateway["args"]
            .as_array()
            .expect("args")
            .iter()
            .map(|a| a.as_str().expect("arg"))
            .collect();
        assert_eq!(args[0], "serve");
        let at = args
            .iter()
            .position(|a| *a == "--config")
            .expect("--config");
        args[at + 1].to_owned()
    };
    let config_dir = mount_path(gateway, "config").expect("config mounted");
    assert_eq!(
        Path::new(&config_path).parent(),
        Some(Path::new(config_dir)),
        "--config is in the mounted ConfigMap"
    );
    let config_volume = pod["volumes"]
        .as_array()
        .expect("volumes")
        .iter()
        .find(|v| v["name"] == "config")
        .expect("config volume");
    assert_eq!(
        config_volume["configMap"]["name"],
        config_map["metadata"]["name"]
    );
    let text = config_map["data"]["config.toml"]
        .as_str()
        .expect("config.toml");
    let config: toml::Table = toml::from_str(text).expect("config.toml is TOML");
    let rules_file = config["rules"].as_str().expect("rules");
    assert_eq!(
        Path::new(rules_file).strip_prefix(config_dir).ok(),
        Some(Path::new("rules.yaml"))
    );
    RuleSet::parse(
        config_map["data"]["rules.yaml"]
            .as_str()
            .expect("rules.yaml"),
    )
    .expect("the rules parse");
    let is_secret = |v: &Value| v["secret"]["secretName"].is_string();
    let is_journal =
        |v: &Value| v["persistentVolumeClaim"]["claimName"] == "tenant-gateway-journal";
    let token_files = config["token-file"].as_array().expect("token-file");
    let admin_token_files = config["admin-token-file"]
        .as_array()
        .expect("admin-token-file");
    assert!(
        !admin_token_files.is_empty(),
        "the admin listener is off loopback"
    );
    for file in token_files.iter().chain(admin_token_files) {
        let file = file.as_str().expect("path");
        assert!(
            under_mount(pod, gateway, file, is_secret),
            "token-file {file}"
        );
    }
    if sqlite {
        let store = config["store"].as_str().expect("store");
        let journal_file = store.strip_prefix("sqlite://").expect("sqlite store");
        assert!(
            under_mount(pod, gateway, journal_file, is_journal),
            "the journal is on the PVC"
        );
    }
    assert_eq!(mount_path(discovery, "journal"), None);
    assert_eq!(config["listen"].as_str(), Some("0.0.0.0:8080"));
    assert_eq!(config["admin-listen"].as_str(), Some("0.0.0.0:8081"));

    // Every key is real configuration of `serve`, and it resolves with the Workflow watch on
    // in the Sensors' namespace and await-workflow on.
    let file = toml::from_str::<FileConfig>(text).expect("known configuration keys");
    let settings = Settings::resolve(FlagsAndEnvironment::default(), file)
        .unwrap_or_else(|e| panic!("{variant}: config.toml resolves: {e}"));
    assert!(settings.watch_workflows, "{variant}: watch-workflows");
    assert!(
        settings.dispatch.await_workflow.is_some(),
        "{variant}: await-workflow"
    );
    assert_eq!(
        settings.workflow_namespace, workflow_namespace,
        "{variant}: the gateway watches where discovery renders the templates"
    );

    // The Argo objects of this variant, all in argo-events, the Workflows in the namespace
    // discovery renders the templates in.
    let bus = one(objects, "EventBus", Some("default"));
    assert_eq!(bus["metadata"]["namespace"], "argo-events");
    let sensor = one(objects, "Sensor", None);
    assert_eq!(
        sensor["spec"]["template"]["serviceAccountName"],
        "tenant-lifecycle-sensor"
    );
    for trigger in sensor["spec"]["triggers"].as_array().expect("triggers") {
        assert_eq!(
            trigger["template"]["k8s"]["source"]["resource"]["metadata"]["namespace"],
            workflow_namespace
        );
    }
    config
}

/// The Sensor's single EventSource/event pair.
fn sensor_source(objects: &[Value]) -> (String, String) {
    let sensor = one(objects, "Sensor", None);
    let pairs: BTreeSet<(String, String)> = sensor["spec"]["dependencies"]
        .as_array()
        .expect("dependencies")
        .iter()
        .map(|d| {
            (
                d["eventSourceName"]
                    .as_str()
                    .expect("eventSourceName")
                    .to_owned(),
                d["eventName"].as_str().expect("eventName").to_owned(),
            )
        })
        .collect();
    let [pair] = pairs
        .into_iter()
        .collect::<Vec<_>>()
        .try_into()
        .unwrap_or_else(|p: Vec<_>| panic!("one EventSource/event pair: {p:?}"));
    pair
}

#[test]
fn the_webhook_overlay_renders_the_webhook_variant() {
    let Some(objects) = kustomize(&crate_dir().join("deploy/overlays/webhook")) else {
        return;
    };
    let config = check_overlay("webhook", &objects, true);
    let sink = config["sink"].as_table().expect("[sink]");
    assert_eq!(sink["kind"].as_str(), Some("webhook"));

    let source = one(&objects, "EventSource", None);
    let (event_source, event_name) = sensor_source(&objects);
    assert_eq!(source["metadata"]["name"], event_source.as_str());
    let webhook = &source["spec"]["webhook"][&event_name];
    assert_eq!(webhook["method"], "POST");
    assert_eq!(webhook["maxPayloadSize"], 1_048_576);
    // Argo's Service for an EventSource is <name>-eventsource-svc.
    assert_eq!(
        sink["url"].as_str(),
        Some(
            format!(
                "http://{}-eventsource-svc.{}.svc:{}{}",
                event_source,
                source["metadata"]["namespace"].as_str().expect("namespace"),
                webhook["port"].as_str().expect("port"),
                webhook["endpoint"].as_str().expect("endpoint")
            )
            .as_str()
        )
    );
    assert_eq!(
        source["spec"]["service"]["ports"][0]["port"].to_string(),
        webhook["port"].as_str().expect("port")
    );
    // Both ends of the bearer token: the EventSource's authSecret, the sink's token file.
    assert!(webhook["authSecret"]["name"].is_string() && webhook["authSecret"]["key"].is_string());
    let pod = &one(&objects, "Deployment", None)["spec"]["template"]["spec"];
    let token_file = sink["token-file"].as_str().expect("token-file");
    assert!(under_mount(
        pod,
        container(pod, "gateway"),
        token_file,
        |v| { v["secret"]["secretName"] == "tenant-gateway-sink" }
    ));
}

#[test]
fn the_eventbus_overlay_renders_the_eventbus_variant() {
    let Some(objects) = kustomize(&crate_dir().join("deploy/overlays/eventbus")) else {
        return;
    };
    let config = check_overlay("eventbus", &objects, true);
    let sink = config["sink"].as_table().expect("[sink]");
    assert_eq!(sink["kind"].as_str(), Some("eventbus"));
    assert!(
        objects.iter().all(|o| o["kind"] != "EventSource"),
        "no EventSource: the gateway publishes itself"
    );
    let (event_source, event_name) = sensor_source(&objects);
    assert_eq!(
        sink["event-source-name"].as_str(),
        Some(event_source.as_str())
    );
    assert_eq!(sink["event-name"].as_str(), Some(event_name.as_str()));
    assert_eq!(
        sink["stream"].as_str(),
        Some("default"),
        "Argo's stream name"
    );
    // Argo's Service for a JetStream EventBus is eventbus-<name>-js-svc, client port 4222.
    let bus = one(&objects, "EventBus", None);
    assert_eq!(
        sink["url"].as_str(),
        Some(
            format!(
                "tls://eventbus-{}-js-svc.{}.svc:4222",
                bus["metadata"]["name"].as_str().expect("name"),
                bus["metadata"]["namespace"].as_str().expect("namespace")
            )
            .as_str()
        )
    );
    let pod = &one(&objects, "Deployment", None)["spec"]["template"]["spec"];
    let gateway = container(pod, "gateway");
    let from_sink_secret = |v: &Value| v["secret"]["secretName"] == "tenant-gateway-sink";
    // Argo's generated Secrets, copied key for key into tenant-gateway-sink (docs/operations.md):
    // the client auth (user and password) and the CA of the EventBus's TLS.
    let client_auth = sink["client-auth-file"].as_str().expect("client-auth-file");
    assert!(under_mount(pod, gateway, client_auth, from_sink_secret));
    let ca = sink["ca-file"].as_str().expect("ca-file");
    assert!(under_mount(pod, gateway, ca, from_sink_secret));
}

/// The two overlays differ in [sink] only, so switching variants changes nothing else.
#[test]
fn the_overlay_configs_differ_only_in_the_sink() {
    let read = |variant: &str| -> toml::Table {
        let path = crate_dir().join(format!("deploy/overlays/{variant}/config.toml"));
        let mut table: toml::Table =
            toml::from_str(&std::fs::read_to_string(path).expect("config")).expect("TOML");
        let sink = table.remove("sink").expect("[sink]");
        assert_eq!(sink["kind"].as_str(), Some(variant));
        table
    };
    assert_eq!(read("webhook"), read("eventbus"));
}

/// The `ha` overlay: the webhook variant with three active replicas on PostgreSQL, replaced
/// one at a time, at least two kept through voluntary disruptions, no volume, the store URL
/// from a Secret, discovery electing a leader in every pod.
#[test]
fn the_ha_overlay_runs_three_replicas_on_postgresql() {
    let Some(objects) = kustomize(&crate_dir().join("deploy/overlays/ha")) else {
        return;
    };
    let config = check_overlay("ha", &objects, false);
    assert_eq!(config["sink"]["kind"].as_str(), Some("webhook"));
    let deployment = one(&objects, "Deployment", Some("tenant-gateway"));
    assert_eq!(deployment["spec"]["replicas"], 3);
    assert_eq!(
        deployment["spec"]["strategy"],
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}})
    );
    let labels = &deployment["spec"]["template"]["metadata"]["labels"];
    let pdb = one(&objects, "PodDisruptionBudget", Some("tenant-gateway"));
    assert_eq!(pdb["metadata"]["namespace"], "tenant-gateway");
    assert_eq!(pdb["spec"]["minAvailable"], 2, "two of three stay up");
    let selector = pdb["spec"]["selector"]["matchLabels"]
        .as_object()
        .expect("matchLabels");
    assert!(
        selector.iter().all(|(k, v)| &labels[k] == v),
        "the budget selects the gateway's pods"
    );
    // No journal volume anywhere: the journal is the database.
    assert!(objects.iter().all(|o| o["kind"] != "PersistentVolumeClaim"));
    let pod = &deployment["spec"]["template"]["spec"];
    assert!(pod["volumes"]
        .as_array()
        .expect("volumes")
        .iter()
        .all(|v| v.get("persistentVolumeClaim").is_none()));
    // The store: not in the ConfigMap (it carries the password), from the Secret.
    assert!(
        config.get("store").is_none(),
        "no store URL in the ConfigMap"
    );
    let gateway = container(pod, "gateway");
    let store = gateway["env"]
        .as_array()
        .expect("env")
        .iter()
        .find(|e| e["name"] == "TENANT_GATEWAY_STORE")
        .expect("TENANT_GATEWAY_STORE");
    assert_eq!(
        store["valueFrom"]["secretKeyRef"],
        json!({"name": "tenant-gateway-store", "key": "url"})
    );
    // Discovery runs in every pod; only the Lease holder applies.
    let discovery = container(pod, "discovery");
    assert_eq!(
        env(discovery, "TENANT_GATEWAY_LEADER_ELECTION"),
        Some("true")
    );
    assert!(env(discovery, "TENANT_GATEWAY_LEASE_NAME").is_some());
}
