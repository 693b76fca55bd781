//! The whole chain without a cluster: an upstream CloudEvent posted to `serve` reaches Argo
//! Events through the sink of each deploy overlay, the Sensor of that variant (read from
//! sensors/) selects a trigger and builds the Workflow exactly as Argo would, and that Workflow
//! is valid, names a WorkflowTemplate that `discover --from-dir examples/jobs` renders, and
//! passes every parameter the template declares.
//!
//! Argo Events is emulated from its source (argoproj/argo-events), only as far as the Sensors
//! here use it:
//! - `pkg/eventbus/jetstream/sensor/trigger_conn.go`: a Sensor pulls `default.<eventSourceName>.
//!   <eventName>` and keeps an event only if its `source`/`subject` are a dependency's
//!   `eventSourceName`/`eventName`;
//! - `pkg/sensors/listener.go` (`convertEvent`): filters and parameters see the CloudEvent as a
//!   context (`id`, `source`, `specversion`, `type`, `datacontenttype`, `subject`, `time`; no
//!   extensions) and its data;
//! - `pkg/sensors/dependencies/filter.go`: `filterContext` compares the non-empty expected
//!   `type`/`subject`/`source`/`datacontenttype`; `filterData` reads a gjson path of the data
//!   (a missing path fails the filter) and matches `string` values as Go regular expressions;
//! - `pkg/sensors/triggers/params.go`: `dataKey`/`contextKey` are gjson paths (`getValueByKey`:
//!   objects and arrays as their JSON text, `null` as `null`, other values as strings), data
//!   needs `datacontenttype: application/json`, a missing key falls back to `value`, and the
//!   value is written with `sjson.SetBytes` (a JSON string) at `dest`;
//! - `pkg/sensors/triggers/standard-k8s/standard-k8s.go`: `operation: create` labels the object
//!   with the Sensor, the trigger and a timestamp, and creates it in its own namespace;
//! - `pkg/eventsources/sources/webhook/start.go` and `pkg/eventsources/eventing.go`: the webhook
//!   EventSource publishes `{"header", "body", "metadata"}` as the data of a CloudEvent of type
//!   `webhook`, source = the EventSource name, subject = the event name.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use async_nats::jetstream::{self, consumer};
use clap::Parser;
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::{json, Value};
use tenant_gateway::cli::{Cli, Command};
use tenant_gateway::discovery::offline::load_jobs;
use tenant_gateway::discovery::render::RenderConfig;
use tenant_gateway::discovery::watch::desired_state;
use tenant_gateway::dispatch::sinks::SinkConfig;

use crate::argo_webhook::ArgoWebhook;
use crate::manifests::{assert_valid, crate_dir, yaml_documents};
use crate::nats::{create_argo_stream, NatsServer};
use crate::support::{json_body, TestApp};

/// Long enough for any wait here; a test that reaches it has failed.
const WAIT: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------------------------
// gjson / sjson, the subset the Sensors use

/// gjson's `Get`: dot-separated keys (`\.` escapes a dot), array indices as keys, and the
/// `@this` modifier (the whole document). Wildcards and other modifiers are not used by the
/// Sensors, so they are refused rather than guessed.
fn gjson_get<'a>(document: &'a Value, path: &str) -> Option<&'a Value> {
    if path == "@this" {
        return Some(document);
    }
    assert!(
        !path.contains(['*', '?', '#', '|', '@']),
        "gjson path {path:?} uses syntax this emulation does not implement"
    );
    let mut current = document;
    for key in split_path(path) {
        current = match current {
            Value::Object(map) => map.get(&key)?,
            Value::Array(items) => items.get(key.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(current)
}

/// Path keys split on unescaped dots (gjson and sjson share this syntax).
fn split_path(path: &str) -> Vec<String> {
    let mut keys = vec![String::new()];
    let mut chars = path.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => keys
                .last_mut()
                .expect("at least one key")
                .extend(chars.next()),
            '.' => keys.push(String::new()),
            other => keys.last_mut().expect("at least one key").push(other),
        }
    }
    keys
}

/// `getValueByKey`'s string: JSON text for objects and arrays, `null` for null, the plain
/// string or number text otherwise.
fn gjson_string(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// `sjson.SetBytes(document, path, value)` with a string value: missing object keys are
/// created, array elements must exist (the Sensors only address declared parameters).
fn sjson_set(document: &mut Value, path: &str, value: &str) {
    let keys = split_path(path);
    let mut current = document;
    for (n, key) in keys.iter().enumerate() {
        let last = n + 1 == keys.len();
        current = match current {
            Value::Object(map) => {
                map.entry(key.clone())
                    .or_insert_with(|| if last { Value::Null } else { json!({}) })
            }
            Value::Array(items) => {
                let index: usize = key.parse().expect("array index in dest");
                let len = items.len();
                items
                    .get_mut(index)
                    .unwrap_or_else(|| panic!("dest {path:?}: index {index} of {len}"))
            }
            other => panic!("dest {path:?} goes through a non-container: {other}"),
        };
    }
    *current = Value::String(value.to_owned());
}

// ---------------------------------------------------------------------------------------------
// The Sensor, as Argo runs it

/// An event as a Sensor's filters and parameters see it (`convertEvent`).
#[derive(Debug, Clone)]
struct ArgoEvent {
    /// `json.Marshal(event.Context)`: the seven context attributes, no extensions.
    context: Value,
    /// The data bytes, parsed.
    data: Value,
}

impl ArgoEvent {
    /// The context Argo builds from a CloudEvent's attributes.
    fn new(attributes: &Value, data: Value) -> ArgoEvent {
        let mut context = serde_json::Map::new();
        for key in [
            "id",
            "source",
            "specversion",
            "type",
            "datacontenttype",
            "subject",
            "time",
        ] {
            context.insert(
                key.to_owned(),
                attributes.get(key).cloned().unwrap_or(json!("")),
            );
        }
        ArgoEvent {
            context: Value::Object(context),
            data,
        }
    }

    /// A context attribute as a string ("" when absent, as Go's zero value).
    fn attribute(&self, key: &str) -> &str {
        self.context[key].as_str().unwrap_or_default()
    }
}

/// The parts of a Sensor the chain needs, read from its YAML.
struct Sensor {
    /// `metadata.name`, which Argo's create trigger puts in a label.
    name: String,
    /// Dependencies by name.
    dependencies: BTreeMap<String, Value>,
    /// `spec.triggers`, in order.
    triggers: Vec<Value>,
}

impl Sensor {
    /// Loads the one Sensor in `sensors/<variant>/`.
    fn load(variant: &str) -> Sensor {
        let path = crate_dir()
            .join("sensors")
            .join(variant)
            .join("sensor.yaml");
        let documents = yaml_documents(&path);
        let [sensor] = documents.as_slice() else {
            panic!("{} holds one Sensor", path.display());
        };
        assert_valid("io.argoproj.events.v1alpha1.Sensor", sensor, &path);
        let dependencies = sensor["spec"]["dependencies"]
            .as_array()
            .expect("dependencies")
            .iter()
            .map(|d| (d["name"].as_str().expect("name").to_owned(), d.clone()))
            .collect();
        Sensor {
            name: sensor["metadata"]["name"]
                .as_str()
                .expect("Sensor name")
                .to_owned(),
            dependencies,
            triggers: sensor["spec"]["triggers"]
                .as_array()
                .expect("triggers")
                .clone(),
        }
    }

    /// The EventBus subjects the Sensor pulls (one per EventSource/event pair).
    fn subjects(&self) -> BTreeSet<String> {
        self.dependencies
            .values()
            .map(|d| {
                format!(
                    "default.{}.{}",
                    d["eventSourceName"].as_str().expect("eventSourceName"),
                    d["eventName"].as_str().expect("eventName")
                )
            })
            .collect()
    }

    /// `trigger_conn.go`'s routing: the dependency names whose EventSource/event pair is the
    /// event's `source`/`subject`. An event matching none is discarded before any filter.
    fn routed(&self, event: &ArgoEvent) -> BTreeSet<String> {
        self.dependencies
            .iter()
            .filter(|(_, d)| {
                d["eventSourceName"] == event.context["source"]
                    && d["eventName"] == event.context["subject"]
            })
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// The dependency a trigger waits for: its `conditions`, which must name exactly one (with
    /// several dependencies and no conditions Argo would wait for all of them at once).
    fn dependency_of<'a>(&self, trigger: &'a Value) -> &'a str {
        let condition = trigger["template"]["conditions"]
            .as_str()
            .expect("every trigger names its dependency in conditions");
        assert!(
            self.dependencies.contains_key(condition),
            "conditions {condition:?} is one dependency"
        );
        condition
    }

    /// Names of the triggers that fire for `event`.
    fn firing(&self, event: &ArgoEvent) -> Vec<String> {
        let routed = self.routed(event);
        self.triggers
            .iter()
            .filter(|t| {
                let dependency = self.dependency_of(t);
                routed.contains(dependency) && passes(&self.dependencies[dependency], event)
            })
            .map(|t| t["template"]["name"].as_str().expect("name").to_owned())
            .collect()
    }

    /// The trigger named `name`.
    fn trigger(&self, name: &str) -> &Value {
        self.triggers
            .iter()
            .find(|t| t["template"]["name"] == name)
            .unwrap_or_else(|| panic!("no trigger {name}"))
    }

    /// What a k8s `create` trigger (`template` being a trigger or its `dlqTrigger`) would send
    /// to the API server for `event`.
    fn build(&self, template: &Value, dependency: &str, event: &ArgoEvent) -> Value {
        let k8s = &template["template"]["k8s"];
        assert_eq!(k8s["operation"], "create", "only create triggers");
        let mut object = k8s["source"]["resource"].clone();
        for parameter in k8s["parameters"].as_array().expect("parameters") {
            let src = &parameter["src"];
            assert_eq!(src["dependencyName"], dependency, "{parameter}");
            assert!(
                parameter.get("operation").is_none() && src.get("useRawData").is_none(),
                "{parameter}: this emulation implements overwrite of strings only"
            );
            let value = resolve(src, event)
                .unwrap_or_else(|| panic!("{parameter} does not resolve for {:?}", event.context));
            sjson_set(
                &mut object,
                parameter["dest"].as_str().expect("dest"),
                &value,
            );
        }
        let labels = &mut object["metadata"]["labels"];
        if labels.is_null() {
            *labels = json!({});
        }
        labels["events.argoproj.io/sensor"] = json!(self.name);
        labels["events.argoproj.io/trigger"] = template["template"]["name"].clone();
        labels["events.argoproj.io/action-timestamp"] = json!("1764000000000");
        assert!(
            object["metadata"]["namespace"].is_string(),
            "the object names its namespace"
        );
        object
    }
}

/// `filterContext` and `filterData` of one dependency (the only filters the Sensors use, and
/// with the default `and` operators).
fn passes(dependency: &Value, event: &ArgoEvent) -> bool {
    let filters = &dependency["filters"];
    for key in filters.as_object().map(|m| m.keys()).into_iter().flatten() {
        assert!(
            key == "context" || key == "data",
            "filter {key} not emulated"
        );
    }
    assert!(dependency.get("filtersLogicalOperator").is_none());
    if let Some(expected) = filters["context"].as_object() {
        for (key, value) in expected {
            assert!(
                ["type", "subject", "source", "datacontenttype"].contains(&key.as_str()),
                "Argo ignores a context filter on {key}"
            );
            let value = value.as_str().expect("string");
            if !value.is_empty() && event.attribute(key) != value {
                return false;
            }
        }
    }
    for filter in filters["data"].as_array().into_iter().flatten() {
        assert_eq!(filter["type"], "string", "{filter}");
        assert!(filter.get("comparator").is_none() && filter.get("template").is_none());
        let Some(found) = gjson_get(&event.data, filter["path"].as_str().expect("path")) else {
            return false;
        };
        let actual = gjson_string(found);
        let values = filter["value"].as_array().expect("values");
        if !values
            .iter()
            .any(|v| anchored_literal(v.as_str().expect("string")) == actual)
        {
            return false;
        }
    }
    true
}

/// The literal an anchored regular expression `^...$` matches, for patterns whose only
/// metacharacters are the anchors and escaped dots. Go's `regexp.Match` is unanchored, so only
/// anchored patterns discriminate `lifecycle.upsert` from `lifecycle.upsert-x`; the test
/// insists on that form and then compares exactly.
fn anchored_literal(pattern: &str) -> String {
    let inner = pattern
        .strip_prefix('^')
        .and_then(|p| p.strip_suffix('$'))
        .unwrap_or_else(|| panic!("filter value {pattern:?} is not anchored"));
    let literal = inner.replace("\\.", ".");
    assert!(
        !literal.contains(['\\', '*', '+', '?', '(', ')', '[', ']', '{', '}', '|', '^', '$']),
        "filter value {pattern:?} is more than an anchored literal"
    );
    assert!(
        !inner.replace("\\.", "").contains('.'),
        "unescaped dot in {pattern:?}"
    );
    literal
}

/// `ResolveParamValue` for a `contextKey` or `dataKey` source with an optional `value`.
fn resolve(src: &Value, event: &ArgoEvent) -> Option<String> {
    let default = src["value"].as_str().map(str::to_owned);
    let found = if let Some(key) = src["contextKey"].as_str() {
        gjson_get(&event.context, key)
    } else if let Some(key) = src["dataKey"].as_str() {
        // renderEventDataAsJSON: data is only read as JSON when the context says so.
        assert_eq!(event.attribute("datacontenttype"), "application/json");
        gjson_get(&event.data, key)
    } else {
        panic!("{src}: neither contextKey nor dataKey")
    };
    found.map(gjson_string).or(default)
}

// ---------------------------------------------------------------------------------------------
// Discovery and the deploy configuration

/// The WorkflowTemplates `discover --from-dir examples/jobs --once --dry-run` prints, with the
/// workflow namespace and bridge service account the deploy base gives the sidecar.
fn discovered_templates() -> BTreeMap<String, Value> {
    let base = yaml_documents(&crate_dir().join("deploy/base/deployment.yaml"));
    let sidecar = base[0]["spec"]["template"]["spec"]["containers"]
        .as_array()
        .expect("containers")
        .iter()
        .find(|c| c["name"] == "discovery")
        .expect("discovery container")
        .clone();
    let env = |name: &str| -> String {
        sidecar["env"]
            .as_array()
            .expect("env")
            .iter()
            .find(|e| e["name"] == name)
            .and_then(|e| e["value"].as_str())
            .unwrap_or_else(|| panic!("{name} in the sidecar's env"))
            .to_owned()
    };
    let examples = crate_dir().join("examples/jobs");
    let cli = Cli::try_parse_from([
        "tenant-gateway".to_owned(),
        "discover".to_owned(),
        "--from-dir".to_owned(),
        examples.display().to_string(),
        "--once".to_owned(),
        "--dry-run".to_owned(),
        "--workflow-namespace".to_owned(),
        env("TENANT_GATEWAY_WORKFLOW_NAMESPACE"),
        "--bridge-service-account".to_owned(),
        env("TENANT_GATEWAY_BRIDGE_SERVICE_ACCOUNT"),
    ])
    .expect("discover flags");
    let Command::Discover(args) = cli.command else {
        panic!("discover")
    };
    let config = RenderConfig::from_args(&args);
    let jobs = load_jobs(&examples).expect("examples/jobs load");
    let state = desired_state(&jobs, &args.annotation_key, &config, &config.actions);
    assert!(
        state.outcome.problems.is_empty(),
        "{:?}",
        state.outcome.problems
    );
    state
        .outcome
        .templates
        .into_values()
        .map(|t| (t["metadata"]["name"].as_str().expect("name").to_owned(), t))
        .collect()
}

/// The `[sink]` table of an overlay's config.toml, as the gateway reads it.
fn overlay_sink(variant: &str) -> SinkConfig {
    let path = crate_dir().join(format!("deploy/overlays/{variant}/config.toml"));
    let text = std::fs::read_to_string(&path).expect("overlay config");
    let config: toml::Table = toml::from_str(&text).expect("TOML");
    SinkConfig::deserialize(config["sink"].clone()).expect("[sink] table")
}

// ---------------------------------------------------------------------------------------------
// The scenario

/// One upstream event and what the chain must make of it, all known from the input alone.
struct Case {
    /// The structured-mode CloudEvent posted to `serve`.
    upstream: Value,
    /// The action the rules (or the default rule) map it to.
    action: &'static str,
    /// The tenant named in the input.
    tenant: &'static str,
    /// The object storage URL in the input, "" when it has none.
    object_storage_url: &'static str,
}

/// A migration mapped by `config/rules.example.yaml` (rule 3, with an object storage bundle)
/// and an event of the default rule without one.
fn cases() -> Vec<Case> {
    vec![
        Case {
            upstream: json!({
                "specversion": "1.0",
                "id": "mig-7",
                "source": "https://migrations.acme.example/eu-west-1",
                "type": "io.acme.migration.export-requested",
                "subject": "initech",
                "time": "2026-11-23T10:00:00Z",
                "datacontenttype": "application/json",
                "data": {"direction": "out", "target": {"region": "us-east-2"},
                         "bundle": {"url": "s3://tenant-moves/initech/2026-11-23.tar.zst"}}
            }),
            action: "migrate-out",
            tenant: "initech",
            object_storage_url: "s3://tenant-moves/initech/2026-11-23.tar.zst",
        },
        Case {
            upstream: json!({
                "specversion": "1.0",
                "id": "inv-42",
                "source": "//billing.acme.example/invoices",
                "type": "com.acme.tenant.lifecycle.upsert",
                "tenant": "globex",
                "datacontenttype": "application/json",
                "data": {"plan": "gold", "note": "quotes \" and unicode ✓"}
            }),
            action: "upsert",
            tenant: "globex",
            object_storage_url: "",
        },
    ]
}

/// Posts every case and returns the gateway's `eventId` of each, in case order.
async fn post_cases(app: &mut TestApp, cases: &[Case]) -> Vec<String> {
    let mut ids = Vec::new();
    for case in cases {
        let response = app.post_structured(&case.upstream).await;
        assert_eq!(response.status().as_u16(), 202);
        let body = json_body(response).await;
        ids.push(
            body["events"][0]["eventId"]
                .as_str()
                .expect("eventId")
                .to_owned(),
        );
    }
    let expected = cases.len() as u64;
    app.wait_for_progress("every event delivered", |p| p.delivered == expected)
        .await;
    ids
}

/// Gateway settings for the chain: the overlay's sink (already pointed at the test's
/// receiver), the example rules (they map the migration), a test instance URI.
fn chain_settings(sink: SinkConfig) -> impl FnOnce(&mut tenant_gateway::config::Settings) {
    move |settings| {
        settings.sink = sink;
        settings.rules = Some(rules_example());
        settings.dispatch.instance_source = "urn:tenant-gateway:chain-test".into();
    }
}

/// `config/rules.example.yaml`.
fn rules_example() -> PathBuf {
    crate_dir().join("config/rules.example.yaml")
}

/// The case (and its gateway `eventId`) an emitted canonical event stems from, found by the
/// upstream id in `data.origin.id`.
fn case_of<'a>(
    cases: &'a [Case],
    event_ids: &'a [String],
    canonical: &Value,
) -> (&'a Case, &'a str) {
    let origin = &canonical["data"]["origin"]["id"];
    let index = cases
        .iter()
        .position(|case| case.upstream["id"] == *origin)
        .unwrap_or_else(|| panic!("no case posted an event with id {origin}"));
    (&cases[index], event_ids[index].as_str())
}

/// Everything the Workflow a Sensor builds for one case must satisfy. `canonical` is the event
/// the gateway emitted and `expected_event` what the Workflow's `event` parameter must hold.
fn check_workflow(
    sensor: &Sensor,
    event: &ArgoEvent,
    case: &Case,
    event_id: &str,
    canonical: &Value,
    expected_event: &Value,
    templates: &BTreeMap<String, Value>,
) {
    let firing = sensor.firing(event);
    assert_eq!(
        firing,
        [case.action],
        "exactly the trigger of the event's action fires"
    );
    let trigger = sensor.trigger(case.action);
    let dependency = sensor.dependency_of(trigger);
    let workflow = sensor.build(trigger, dependency, event);
    assert_valid(
        "io.argoproj.workflow.v1alpha1.Workflow",
        &workflow,
        Path::new("the Workflow the Sensor submits"),
    );

    let template_name = workflow["spec"]["workflowTemplateRef"]["name"]
        .as_str()
        .expect("workflowTemplateRef");
    assert_eq!(template_name, format!("tenant-lifecycle-{}", case.action));
    let template = templates
        .get(template_name)
        .unwrap_or_else(|| panic!("discover renders no {template_name}"));
    assert_eq!(
        workflow["metadata"]["namespace"], template["metadata"]["namespace"],
        "the Workflow runs where its template is"
    );
    assert_eq!(
        workflow["metadata"]["name"],
        canonical["data"]["workflowName"]
    );

    let declared: BTreeSet<&str> = template["spec"]["arguments"]["parameters"]
        .as_array()
        .expect("declared parameters")
        .iter()
        .map(|p| p["name"].as_str().expect("name"))
        .collect();
    let passed: BTreeMap<&str, &str> = workflow["spec"]["arguments"]["parameters"]
        .as_array()
        .expect("passed parameters")
        .iter()
        .map(|p| {
            (
                p["name"].as_str().expect("name"),
                p["value"].as_str().expect("every value is a string"),
            )
        })
        .collect();
    assert_eq!(
        passed.keys().copied().collect::<BTreeSet<_>>(),
        declared,
        "every declared parameter, and nothing else"
    );
    assert_eq!(passed["tenant"], case.tenant);
    assert_eq!(passed["event-id"], event_id);
    assert_eq!(passed["object-storage-url"], case.object_storage_url);
    let event_parameter: Value =
        serde_json::from_str(passed["event"]).expect("the event parameter is JSON");
    assert_eq!(&event_parameter, expected_event);
    assert!(
        !passed["event"].contains('\n'),
        "single line: the bridge substitutes it into a YAML block scalar"
    );

    // The dead-letter trigger records what an operator needs to replay.
    let dead_letter = sensor.build(&trigger["dlqTrigger"], dependency, event);
    assert_eq!(dead_letter["kind"], "ConfigMap");
    assert_eq!(dead_letter["data"]["event-id"], event_id);
    assert_eq!(dead_letter["data"]["tenant"], case.tenant);
    assert_eq!(dead_letter["data"]["action"], case.action);
    assert_eq!(
        dead_letter["data"]["workflow-name"],
        workflow["metadata"]["name"]
    );
    assert_eq!(
        serde_json::from_str::<Value>(dead_letter["data"]["event"].as_str().expect("event"))
            .expect("JSON"),
        *expected_event
    );
}

/// The filters discriminate: the same event with another action's type fires that action's
/// trigger only, and types that merely contain an action fire nothing. `retype` returns the
/// event with its lifecycle type replaced.
fn check_discrimination(sensor: &Sensor, retype: impl Fn(&str) -> ArgoEvent) {
    let actions: Vec<String> = sensor
        .triggers
        .iter()
        .map(|t| t["template"]["name"].as_str().expect("name").to_owned())
        .collect();
    for action in &actions {
        assert_eq!(
            sensor.firing(&retype(&format!("lifecycle.{action}"))),
            std::slice::from_ref(action),
            "type lifecycle.{action}"
        );
    }
    for near_miss in [
        "lifecycle.upsert-x",
        "xlifecycle.upsert",
        "lifecycleXupsert",
        "com.acme.tenant.lifecycle.upsert",
    ] {
        assert!(
            sensor.firing(&retype(near_miss)).is_empty(),
            "{near_miss} fires nothing"
        );
    }
}

/// The `eventbus` variant: the overlay's sink publishes to a real JetStream stream created as
/// Argo's controller creates it; the Sensor of sensors/eventbus/ reads the gateway's own
/// CloudEvent from the subject it pulls.
#[tokio::test]
async fn eventbus_variant_builds_the_workflows_discovery_expects() {
    let Some(nats) = NatsServer::start().await else {
        return;
    };
    let sensor = Sensor::load("eventbus");
    let SinkConfig::Eventbus(mut sink) = overlay_sink("eventbus") else {
        panic!("the eventbus overlay configures the eventbus sink");
    };
    let subject = format!(
        "{}.{}.{}",
        sink.stream, sink.event_source_name, sink.event_name
    );
    assert_eq!(
        sensor.subjects(),
        BTreeSet::from([subject.clone()]),
        "the Sensor pulls the subject the sink publishes to"
    );
    let stream = create_argo_stream(&nats.url(), &sink.stream).await;
    // The overlay's credentials and TLS are the cluster's; this server is plain and open.
    sink.url = nats.url();
    sink.user = None;
    sink.password_file = None;
    let mut app = TestApp::spawn_with(chain_settings(SinkConfig::Eventbus(sink))).await;
    let cases = cases();
    let event_ids = post_cases(&mut app, &cases).await;

    let consumer = stream
        .create_consumer(consumer::pull::Config {
            durable_name: Some("tenant-lifecycle-sensor".into()),
            filter_subject: subject.clone(),
            deliver_policy: consumer::DeliverPolicy::All,
            ack_policy: consumer::AckPolicy::Explicit,
            ..Default::default()
        })
        .await
        .expect("pull consumer");
    let mut messages = consumer.messages().await.expect("messages");
    let templates = discovered_templates();
    for _ in 0..cases.len() {
        let message: jetstream::Message = tokio::time::timeout(WAIT, messages.next())
            .await
            .expect("a message within the wait")
            .expect("stream open")
            .expect("message");
        message.ack().await.expect("ack");
        assert_eq!(message.subject.as_str(), subject);
        let cloudevent: Value = serde_json::from_slice(&message.payload).expect("CloudEvent");
        // Tenants are dispatched concurrently: find the case by the upstream id it carries.
        let (case, event_id) = case_of(&cases, &event_ids, &cloudevent);
        let event = ArgoEvent::new(&cloudevent, cloudevent["data"].clone());
        assert_eq!(
            sensor.routed(&event).len(),
            sensor.dependencies.len(),
            "source/subject route the event to the Sensor's dependencies"
        );
        // The Sensor sees no extensions, so its `event` parameter is the canonical data: the
        // whole lifecycle (tenant, action, parameters, objectStorage, origin, payload).
        check_workflow(
            &sensor,
            &event,
            case,
            event_id,
            &cloudevent,
            &cloudevent["data"],
            &templates,
        );
        assert_eq!(cloudevent["data"]["payload"], case.upstream["data"]);
        check_discrimination(&sensor, |ty| {
            let mut retyped = event.clone();
            retyped.context["type"] = json!(ty);
            retyped
        });
    }
    app.stop().await;
}

/// The `webhook` variant: the overlay's sink posts to a fake of Argo's webhook EventSource
/// (with the EventSource's bearer token); the event is wrapped as that EventSource wraps it and
/// the Sensor of sensors/webhook/ reads it under `body.`.
#[tokio::test]
async fn webhook_variant_builds_the_workflows_discovery_expects() {
    let sensor = Sensor::load("webhook");
    let eventsource_path = crate_dir().join("eventsources/webhook/eventsource.yaml");
    let eventsource = yaml_documents(&eventsource_path).remove(0);
    let (event_name, webhook) = eventsource["spec"]["webhook"]
        .as_object()
        .and_then(|m| m.iter().next())
        .expect("one webhook event");
    let SinkConfig::Webhook(mut sink) = overlay_sink("webhook") else {
        panic!("the webhook overlay configures the webhook sink");
    };
    assert!(
        sink.url.ends_with(&format!(
            ":{}{}",
            webhook["port"].as_str().expect("port"),
            webhook["endpoint"].as_str().expect("endpoint")
        )),
        "the sink posts to the EventSource's port and endpoint"
    );
    assert_eq!(webhook["endpoint"], ArgoWebhook::ENDPOINT);

    let token = "chain-test-webhook-token";
    let hook = ArgoWebhook::start_with_token(token).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, format!("{token}\n")).expect("write token");
    sink.url = hook.url();
    sink.token_file = Some(token_file);
    let mut app = TestApp::spawn_with(chain_settings(SinkConfig::Webhook(sink))).await;
    let cases = cases();
    let event_ids = post_cases(&mut app, &cases).await;

    let templates = discovered_templates();
    let accepted: Vec<_> = hook
        .requests()
        .into_iter()
        .filter(|r| r.status == 200)
        .collect();
    assert_eq!(accepted.len(), cases.len());
    for request in &accepted {
        let body = request.json.clone().expect("JSON body");
        let (case, event_id) = case_of(&cases, &event_ids, &body);
        // The webhook EventSource's CloudEvent: its own id, type `webhook`, and the
        // EventSource/event names as source/subject; the request becomes the data.
        let mut header: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (name, value) in &request.headers {
            header
                .entry(go_canonical_header(name))
                .or_default()
                .push(value.clone());
        }
        let data = json!({"header": header, "body": body, "metadata": null});
        let attributes = json!({
            "id": "9f0c5a52-6f0e-4c43-a7a4-3c1c7e0f4b11",
            "source": eventsource["metadata"]["name"],
            "specversion": "1.0",
            "type": "webhook",
            "datacontenttype": "application/json",
            "subject": event_name,
            "time": "2026-11-23T10:00:01Z",
        });
        let event = ArgoEvent::new(&attributes, data);
        assert_eq!(
            sensor.routed(&event).len(),
            sensor.dependencies.len(),
            "the EventSource/event names route the event to the Sensor's dependencies"
        );
        // Here the Sensor has the whole canonical event: the `event` parameter is the body.
        check_workflow(&sensor, &event, case, event_id, &body, &body, &templates);
        assert_eq!(body["data"]["payload"], case.upstream["data"]);
        check_discrimination(&sensor, |ty| {
            let mut retyped = event.clone();
            retyped.data["body"]["type"] = json!(ty);
            retyped
        });
    }
    app.stop().await;
}

/// Go's `http.CanonicalHeaderKey`, which `request.Header` keys are in: `content-type` ->
/// `Content-Type`.
fn go_canonical_header(name: &str) -> String {
    name.split('-')
        .map(|part| {
            let mut chars = part.chars();
            match chars.next() {
                Some(first) => {
                    first.to_ascii_uppercase().to_string() + &chars.as_str().to_ascii_lowercase()
                }
                None => String::new(),
            }
        })
        .collect::<Vec<_>>()
        .join("-")
}

/// The emulation itself, on Argo's documented examples, so a wrong helper cannot make the
/// chain tests pass by accident.
#[test]
fn the_gjson_and_sjson_subset_behaves_like_the_libraries() {
    let document = json!({"body": {"a.b": 1, "list": ["x", {"y": null}], "s": "t"}});
    assert_eq!(gjson_get(&document, "body.list.1.y"), Some(&Value::Null));
    assert_eq!(gjson_get(&document, "body.a\\.b"), Some(&json!(1)));
    assert_eq!(gjson_get(&document, "body.missing"), None);
    assert_eq!(gjson_get(&document, "body.s.deeper"), None);
    assert_eq!(gjson_get(&document, "@this"), Some(&document));
    assert_eq!(gjson_string(&json!({"k": [1, "2"]})), r#"{"k":[1,"2"]}"#);
    assert_eq!(gjson_string(&Value::Null), "null");
    assert_eq!(gjson_string(&json!("plain")), "plain");

    let mut object = json!({"spec": {"arguments": {"parameters": [{"name": "a", "value": ""}]}}});
    sjson_set(&mut object, "metadata.name", "wf-1");
    sjson_set(
        &mut object,
        "spec.arguments.parameters.0.value",
        r#"{"j":1}"#,
    );
    assert_eq!(
        object,
        json!({"metadata": {"name": "wf-1"},
               "spec": {"arguments": {"parameters": [{"name": "a", "value": "{\"j\":1}"}]}}})
    );
    assert_eq!(
        anchored_literal("^lifecycle\\.migrate-in$"),
        "lifecycle.migrate-in"
    );
    assert_eq!(go_canonical_header("content-type"), "Content-Type");
    assert_eq!(go_canonical_header("webhook-id"), "Webhook-Id");
}
