//! The whole chain without a cluster: an upstream CloudEvent posted to `serve` reaches Argo
//! Events through the sink of each deploy overlay, the Sensor of that variant (read from
//! sensors/) builds and submits the Workflow exactly as Argo would, against a fake API server,
//! and that Workflow is valid, names a WorkflowTemplate that `discover --from-dir
//! examples/jobs` renders, passes every parameter the template declares and carries the
//! emission id, tenant and action as labels. Events are handled one at a time in the order the
//! Sensor's one consumer receives them; an action the Sensor does not know becomes a dead
//! letter; a redelivery is a quiet success.
//!
//! Argo Events is emulated from its source (argoproj/argo-events), only as far as the Sensors
//! here use it:
//! - `pkg/eventbus/jetstream/sensor/trigger_conn.go`: each trigger pulls `default.
//!   <eventSourceName>.<eventName>` through its own durable consumer (`Subscribe`, one per
//!   trigger and dependency, `DeliverNew`, explicit ack) and handles the messages one after the
//!   other on one goroutine (`processMsgs`), acknowledging each after its action returned
//!   (`processMsg`); it keeps an event only if its `source`/`subject` are a dependency's
//!   `eventSourceName`/`eventName` (`getDependencyNames`);
//! - `pkg/sensors/listener.go`: every trigger runs on its own goroutine (`listenEvents`), an
//!   `atLeastOnce` trigger runs synchronously (`triggerActions`), its `retryStrategy` retries
//!   the whole build and execution, and then the `dlqTrigger` runs (`actionFunc`); filters and
//!   parameters see the CloudEvent as a context (`id`, `source`, `specversion`, `type`,
//!   `datacontenttype`, `subject`, `time`; no extensions) and its data (`convertEvent`);
//! - `pkg/sensors/triggers/params.go`: `dataKey`/`contextKey` are gjson paths (`getValueByKey`:
//!   objects and arrays as their JSON text, `null` as `null`, other values as strings), data
//!   needs `datacontenttype: application/json`; a `dataTemplate` is Go's text/template with
//!   sprig's functions run on `{"Input": <data>}`, and an error or empty output falls back to
//!   the key, then to `value`, and fails the parameter without either (`ResolveParamValue`,
//!   `getValueWithTemplate`); the value is written with `sjson.SetBytes` (a JSON string) at
//!   `dest`;
//! - `pkg/sensors/triggers/standard-k8s/standard-k8s.go` (`Execute`): `create` labels the
//!   object with the Sensor, the trigger and a timestamp and creates it (AlreadyExists is an
//!   error); `patch` gets it, creates it unlabelled when NotFound, and otherwise sends it as a
//!   JSON merge patch;
//! - `pkg/eventsources/sources/webhook/start.go` and `pkg/eventsources/eventing.go`: the webhook
//!   EventSource publishes `{"header", "body", "metadata"}` as the data of a CloudEvent of type
//!   `webhook` with its own id, source = the EventSource name, subject = the event name.

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
use tenant_gateway::normalize::DEFAULT_ACTIONS;

use crate::support::argo_webhook::ArgoWebhook;
use crate::support::manifests::{assert_valid, crate_dir, yaml_documents};
use crate::support::nats::{create_argo_stream, NatsServer};
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
// text/template with sprig, the subset the Sensors' `dataTemplate` uses

/// One `{{ }}` action of the template subset (`getValueWithTemplate` in params.go runs Go's
/// text/template with sprig's functions on `{"Input": <the data as gjson's Value()>}`).
#[derive(Debug, Clone, PartialEq)]
enum TemplateAction {
    /// `$var := .Input.a.b`
    Assign {
        var: String,
        path: Vec<String>,
    },
    /// `if has $var (list "a" "b")`: sprig's `has` is `reflect.DeepEqual` against each item
    /// (Masterminds/sprig `list.go`, `mustHas`), so only an equal string matches.
    IfHas {
        var: String,
        list: Vec<String>,
    },
    Else,
    End,
    /// `$var`, printed.
    Print {
        var: String,
    },
    /// `fail "message"`: sprig returns the message as an error, which ends `Execute`.
    Fail {
        message: String,
    },
}

/// A parsed template: literal text and actions, whitespace trim markers applied.
#[derive(Debug, Clone, PartialEq)]
enum TemplatePiece {
    Text(String),
    Action(TemplateAction),
}

/// Parses the subset; anything else is refused rather than guessed. `{{- ` trims the white
/// space before the action and ` -}}` the white space after it, as text/template does.
fn parse_template(text: &str) -> Vec<TemplatePiece> {
    let mut pieces = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        let mut before = &rest[..start];
        let opened = &rest[start + 2..];
        let end = opened
            .find("}}")
            .unwrap_or_else(|| panic!("unclosed action in {text:?}"));
        let mut inner = &opened[..end];
        if let Some(trimmed) = inner.strip_prefix("- ") {
            before = before.trim_end();
            inner = trimmed;
        }
        let trim_after = match inner.strip_suffix(" -") {
            Some(trimmed) => {
                inner = trimmed;
                true
            }
            None => false,
        };
        if !before.is_empty() {
            pieces.push(TemplatePiece::Text(before.to_owned()));
        }
        pieces.push(TemplatePiece::Action(parse_action(inner.trim())));
        rest = &opened[end + 2..];
        if trim_after {
            rest = rest.trim_start();
        }
    }
    if !rest.is_empty() {
        pieces.push(TemplatePiece::Text(rest.to_owned()));
    }
    pieces
}

/// A Go string literal without escapes.
fn go_string_literal(text: &str) -> String {
    let inner = text
        .strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .unwrap_or_else(|| panic!("{text:?} is not a string literal"));
    assert!(
        !inner.contains(['"', '\\']),
        "escapes in {text:?} not emulated"
    );
    inner.to_owned()
}

fn parse_action(action: &str) -> TemplateAction {
    let variable = |name: &str| -> String {
        assert!(
            name.starts_with('$') && name[1..].chars().all(|c| c.is_ascii_alphanumeric()),
            "{name:?} is not a variable"
        );
        name.to_owned()
    };
    if let Some((var, expression)) = action.split_once(" := ") {
        let path = expression
            .strip_prefix(".Input")
            .unwrap_or_else(|| panic!("{expression:?}: only .Input paths are emulated"));
        let path = path
            .split('.')
            .skip(1)
            .map(|key| {
                assert!(
                    !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric()),
                    "field {key:?} in {expression:?}"
                );
                key.to_owned()
            })
            .collect();
        return TemplateAction::Assign {
            var: variable(var),
            path,
        };
    }
    if let Some(rest) = action.strip_prefix("if has ") {
        let (var, list) = rest.split_once(' ').unwrap_or_else(|| panic!("{action:?}"));
        let items = list
            .strip_prefix("(list ")
            .and_then(|l| l.strip_suffix(')'))
            .unwrap_or_else(|| panic!("{action:?}: has needs a (list ...) literal"));
        return TemplateAction::IfHas {
            var: variable(var),
            list: items.split(' ').map(go_string_literal).collect(),
        };
    }
    if let Some(message) = action.strip_prefix("fail ") {
        return TemplateAction::Fail {
            message: go_string_literal(message),
        };
    }
    match action {
        "else" => TemplateAction::Else,
        "end" => TemplateAction::End,
        var if !var.contains(' ') => TemplateAction::Print { var: variable(var) },
        other => panic!("template action {other:?} is not emulated"),
    }
}

/// `tpl.Execute` on `{"Input": input}`: the output, or the error that ends execution.
fn execute_template(pieces: &[TemplatePiece], input: &Value) -> Result<String, String> {
    // A missing map key yields Go's zero value (None here); a field of a non-map is an error.
    let mut variables: BTreeMap<&str, Option<&Value>> = BTreeMap::new();
    // Per open `if`: (condition, in the else branch).
    let mut branches: Vec<(bool, bool)> = Vec::new();
    let mut out = String::new();
    for piece in pieces {
        let active = branches
            .iter()
            .all(|&(condition, in_else)| condition != in_else);
        match piece {
            TemplatePiece::Text(text) if active => out.push_str(text),
            TemplatePiece::Text(_) => {}
            TemplatePiece::Action(action) => match action {
                TemplateAction::Assign { var, path } if active => {
                    let mut current = Some(input);
                    for key in path {
                        current = match current {
                            Some(Value::Object(map)) => map.get(key),
                            Some(other) => {
                                return Err(format!("can't evaluate field {key} in {other}"))
                            }
                            None => return Err(format!("nil pointer evaluating .{key}")),
                        };
                    }
                    variables.insert(var, current);
                }
                TemplateAction::IfHas { var, list } => {
                    let needle = variables.get(var.as_str()).copied().flatten();
                    let found = matches!(needle, Some(Value::String(s)) if list.contains(s));
                    branches.push((found, false));
                }
                TemplateAction::Else => {
                    branches.last_mut().expect("else inside if").1 = true;
                }
                TemplateAction::End => {
                    branches.pop().expect("end of an if");
                }
                TemplateAction::Print { var } if active => {
                    match variables.get(var.as_str()).copied().flatten() {
                        Some(Value::String(s)) => out.push_str(s),
                        None => out.push_str("<no value>"),
                        Some(other) => panic!("printing {other} is not emulated"),
                    }
                }
                TemplateAction::Fail { message } if active => return Err(message.clone()),
                _ => {}
            },
        }
    }
    assert!(branches.is_empty(), "unterminated if");
    Ok(out)
}

/// `getValueWithTemplate`: an empty output or `<no value>` is an error too.
fn value_with_template(template: &str, input: &Value) -> Result<String, String> {
    let out = execute_template(&parse_template(template), input)?;
    if out.is_empty() || out == "<no value>" {
        return Err(format!(
            "template evaluated to empty string or no value: {template}"
        ));
    }
    Ok(out)
}

/// The actions a Sensor's WorkflowTemplate selection knows: the `list` of its `if has`.
pub(crate) fn known_actions(template: &str) -> Vec<String> {
    let lists: Vec<Vec<String>> = parse_template(template)
        .into_iter()
        .filter_map(|piece| match piece {
            TemplatePiece::Action(TemplateAction::IfHas { list, .. }) => Some(list),
            _ => None,
        })
        .collect();
    let [list] = lists.as_slice() else {
        panic!("one `if has` in {template:?}");
    };
    list.clone()
}

// ---------------------------------------------------------------------------------------------
// The API server, as far as the Sensor's k8s triggers use it

/// Objects by kind, namespace and name, in creation order; Get, Create (AlreadyExists,
/// generateName) and JSON merge patch (RFC 7386, `application/merge-patch+json`, the default
/// `patchStrategy` of a k8s trigger).
#[derive(Debug, Default)]
struct FakeApiServer {
    /// Every stored object, oldest first.
    objects: Vec<Value>,
    /// Every request as `verb kind namespace/name`, and whether a patch changed the object.
    requests: Vec<String>,
    /// Suffix counter for generateName.
    generated: usize,
}

impl FakeApiServer {
    fn position(&self, kind: &str, namespace: &str, name: &str) -> Option<usize> {
        self.objects.iter().position(|o| {
            o["kind"] == kind
                && o["metadata"]["namespace"] == namespace
                && o["metadata"]["name"] == name
        })
    }

    fn get(&mut self, kind: &str, namespace: &str, name: &str) -> Option<&Value> {
        self.requests.push(format!("get {kind} {namespace}/{name}"));
        self.position(kind, namespace, name)
            .map(|at| &self.objects[at])
    }

    fn create(&mut self, mut object: Value) -> Result<(), String> {
        if let Some(prefix) = object["metadata"]["generateName"].as_str() {
            if object["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .is_empty()
            {
                self.generated += 1;
                object["metadata"]["name"] = json!(format!("{prefix}{:05}", self.generated));
            }
        }
        let kind = object["kind"].as_str().expect("kind").to_owned();
        let namespace = object["metadata"]["namespace"]
            .as_str()
            .expect("namespace")
            .to_owned();
        let name = object["metadata"]["name"]
            .as_str()
            .expect("name")
            .to_owned();
        assert!(!name.is_empty(), "an object needs a name");
        self.requests
            .push(format!("create {kind} {namespace}/{name}"));
        for (key, value) in object["metadata"]["labels"]
            .as_object()
            .into_iter()
            .flatten()
        {
            assert_label_value(key, value.as_str().expect("label values are strings"));
        }
        if self.position(&kind, &namespace, &name).is_some() {
            return Err(format!("{kind} {name:?} already exists (AlreadyExists)"));
        }
        self.objects.push(object);
        Ok(())
    }

    /// Returns whether the object changed (the API server writes nothing when it did not).
    fn merge_patch(&mut self, patch: &Value) -> Result<bool, String> {
        let kind = patch["kind"].as_str().expect("kind");
        let namespace = patch["metadata"]["namespace"].as_str().expect("namespace");
        let name = patch["metadata"]["name"].as_str().expect("name");
        let at = self
            .position(kind, namespace, name)
            .ok_or_else(|| format!("{kind} {name:?} not found (NotFound)"))?;
        let before = self.objects[at].clone();
        merge_patch(&mut self.objects[at], patch);
        let changed = self.objects[at] != before;
        self.requests.push(format!(
            "patch {kind} {namespace}/{name} ({})",
            if changed { "changed" } else { "unchanged" }
        ));
        Ok(changed)
    }

    fn of_kind(&self, kind: &str) -> Vec<&Value> {
        self.objects.iter().filter(|o| o["kind"] == kind).collect()
    }
}

/// RFC 7386: objects merge key by key, `null` removes, anything else replaces (arrays too).
fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = json!({});
    }
    let target = target.as_object_mut().expect("object");
    for (key, value) in patch {
        if value.is_null() {
            target.remove(key);
        } else {
            merge_patch(target.entry(key.clone()).or_insert(Value::Null), value);
        }
    }
}

/// What the API server accepts as a label value (apimachinery `IsValidLabelValue`): at most
/// 63 characters, alphanumerics with `-`, `_`, `.` inside, or empty.
fn assert_label_value(key: &str, value: &str) {
    let edges_ok = |c: Option<char>| c.is_none_or(|c| c.is_ascii_alphanumeric());
    assert!(
        value.len() <= 63
            && value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            && edges_ok(value.chars().next())
            && edges_ok(value.chars().last()),
        "label {key}: {value:?} is not a valid label value"
    );
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

/// How the Sensor's trigger ended for one event.
#[derive(Debug, PartialEq)]
enum Handled {
    /// The trigger succeeded (within its retries).
    Triggered,
    /// Every attempt failed with `error`; the dead-letter trigger wrote its ConfigMap.
    DeadLettered { error: String },
}

/// The parts of a Sensor the chain needs, read from its YAML.
struct Sensor {
    /// `metadata.name`, which Argo's create operation puts in a label.
    name: String,
    /// The one dependency.
    dependency: Value,
    /// The one trigger.
    trigger: Value,
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
        let spec = &sensor["spec"];
        let (Some([dependency]), Some([trigger])) = (
            spec["dependencies"].as_array().map(Vec::as_slice),
            spec["triggers"].as_array().map(Vec::as_slice),
        ) else {
            panic!("one dependency and one trigger in {}", path.display());
        };
        let dependency_name = &dependency["name"];
        assert!(
            trigger["template"]["conditions"].is_null()
                || trigger["template"]["conditions"] == *dependency_name,
            "the trigger waits for the one dependency"
        );
        assert!(
            dependency.get("filters").is_none(),
            "no filter: an event the trigger cannot handle must reach the dead letter"
        );
        Sensor {
            name: sensor["metadata"]["name"]
                .as_str()
                .expect("Sensor name")
                .to_owned(),
            dependency: dependency.clone(),
            trigger: trigger.clone(),
        }
    }

    /// The EventBus subject the Sensor pulls.
    fn subject(&self) -> String {
        format!(
            "default.{}.{}",
            self.dependency["eventSourceName"]
                .as_str()
                .expect("eventSourceName"),
            self.dependency["eventName"].as_str().expect("eventName")
        )
    }

    /// `trigger_conn.go`'s routing (`getDependencyNames`): the event's `source`/`subject` must
    /// be the dependency's EventSource/event pair, or it is discarded before the trigger.
    fn routes(&self, event: &ArgoEvent) -> bool {
        self.dependency["eventSourceName"] == event.context["source"]
            && self.dependency["eventName"] == event.context["subject"]
    }

    /// `ApplyResourceParameters`: the object a k8s trigger (`template` being the trigger or its
    /// `dlqTrigger`) sends for `event`, or the error that fails the trigger.
    fn build(&self, template: &Value, event: &ArgoEvent) -> Result<Value, String> {
        let k8s = &template["template"]["k8s"];
        let mut object = k8s["source"]["resource"].clone();
        for parameter in k8s["parameters"].as_array().expect("parameters") {
            let src = &parameter["src"];
            assert_eq!(
                src["dependencyName"], self.dependency["name"],
                "{parameter}"
            );
            assert!(
                parameter.get("operation").is_none() && src.get("useRawData").is_none(),
                "{parameter}: this emulation implements overwrite of strings only"
            );
            let value = resolve(src, event)?;
            sjson_set(
                &mut object,
                parameter["dest"].as_str().expect("dest"),
                &value,
            );
        }
        Ok(object)
    }

    /// `StandardK8sTrigger.Execute` for `create` and `patch`.
    fn execute(
        &self,
        template: &Value,
        mut object: Value,
        api: &mut FakeApiServer,
    ) -> Result<(), String> {
        assert!(
            object["metadata"]["namespace"].is_string(),
            "the object names its namespace"
        );
        match template["template"]["k8s"]["operation"]
            .as_str()
            .unwrap_or("create")
        {
            "create" => {
                // Only create labels the object, with a timestamp that differs per attempt.
                let labels = &mut object["metadata"]["labels"];
                if labels.is_null() {
                    *labels = json!({});
                }
                labels["events.argoproj.io/sensor"] = json!(self.name);
                labels["events.argoproj.io/trigger"] = template["template"]["name"].clone();
                labels["events.argoproj.io/action-timestamp"] = json!("1764000000000");
                api.create(object)
            }
            "patch" => {
                let kind = object["kind"].as_str().expect("kind").to_owned();
                let namespace = object["metadata"]["namespace"]
                    .as_str()
                    .expect("ns")
                    .to_owned();
                let name = object["metadata"]["name"]
                    .as_str()
                    .expect("name")
                    .to_owned();
                if api.get(&kind, &namespace, &name).is_none() {
                    // "object not found, creating the object...": the object as built.
                    return api.create(object);
                }
                api.merge_patch(&object).map(|_| ())
            }
            other => panic!("operation {other} is not emulated"),
        }
    }

    /// `actionFunc` of `listener.go`: the trigger with its retry strategy (every attempt
    /// builds and executes again), then the dead-letter trigger with its own.
    fn handle(&self, event: &ArgoEvent, api: &mut FakeApiServer) -> Handled {
        assert!(self.routes(event), "the event is routed to the dependency");
        let attempts = |trigger: &Value| trigger["retryStrategy"]["steps"].as_u64().unwrap_or(1);
        let mut error = String::new();
        for _ in 0..attempts(&self.trigger) {
            match self
                .build(&self.trigger, event)
                .and_then(|object| self.execute(&self.trigger, object, api))
            {
                Ok(()) => return Handled::Triggered,
                Err(e) => error = e,
            }
        }
        let dead_letter = &self.trigger["dlqTrigger"];
        let mut written = Err(String::from("no attempt"));
        for _ in 0..attempts(dead_letter) {
            written = self
                .build(dead_letter, event)
                .and_then(|object| self.execute(dead_letter, object, api));
            if written.is_ok() {
                break;
            }
        }
        written.unwrap_or_else(|e| panic!("the dead letter is written: {e}"));
        Handled::DeadLettered { error }
    }

    /// The WorkflowTemplate the trigger selects for `event`, or why it cannot.
    fn template_for(&self, event: &ArgoEvent) -> Result<String, String> {
        self.build(&self.trigger, event).map(|workflow| {
            workflow["spec"]["workflowTemplateRef"]["name"]
                .as_str()
                .expect("workflowTemplateRef")
                .to_owned()
        })
    }
}

/// `ResolveParamValue` for a `contextKey`/`contextTemplate` or `dataKey`/`dataTemplate` source
/// with an optional `value`: the template first, then the key, then the value; an error when
/// none yields a value.
fn resolve(src: &Value, event: &ArgoEvent) -> Result<String, String> {
    let default = src["value"].as_str().map(str::to_owned);
    let (payload, key, template) = if src["dataKey"].is_string() || src["dataTemplate"].is_string()
    {
        // renderEventDataAsJSON: data is only read as JSON when the context says so.
        assert_eq!(event.attribute("datacontenttype"), "application/json");
        (
            &event.data,
            src["dataKey"].as_str(),
            src["dataTemplate"].as_str(),
        )
    } else if src["contextKey"].is_string() || src["contextTemplate"].is_string() {
        (
            &event.context,
            src["contextKey"].as_str(),
            src["contextTemplate"].as_str(),
        )
    } else {
        panic!("{src}: no key or template")
    };
    let mut error = None;
    if let Some(template) = template {
        match value_with_template(template, payload) {
            Ok(value) => return Ok(value),
            Err(e) => error = Some(e),
        }
    }
    if let Some(found) = key.and_then(|key| gjson_get(payload, key)) {
        return Ok(gjson_string(found));
    }
    default.ok_or_else(|| {
        format!(
            "unable to resolve '{}' parameter value. err: {}",
            src["dependencyName"].as_str().unwrap_or_default(),
            error.unwrap_or_else(|| format!("no {key:?} in the event"))
        )
    })
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
    let args = tenant_gateway::discovery::DiscoverSettings::from(args);
    let config = RenderConfig::from_settings(&args);
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

/// An action the gateway is configured for here but the Sensors are not: its events must end
/// as dead letters.
const ACTION_UNKNOWN_TO_THE_SENSOR: &str = "suspend";

/// A migration mapped by `config/rules.example.yaml` (rule 3, with an object storage bundle),
/// an upsert and then a delete of one tenant by the default rule, and an event of an action
/// the Sensors do not know.
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
        Case {
            upstream: json!({
                "specversion": "1.0",
                "id": "inv-43",
                "source": "//billing.acme.example/invoices",
                "type": "com.acme.tenant.lifecycle.delete",
                "tenant": "globex",
                "datacontenttype": "application/json",
                "data": {"reason": "churned"}
            }),
            action: "delete",
            tenant: "globex",
            object_storage_url: "",
        },
        Case {
            upstream: json!({
                "specversion": "1.0",
                "id": "ops-9",
                "source": "//ops.acme.example/console",
                "type": format!("com.acme.tenant.lifecycle.{ACTION_UNKNOWN_TO_THE_SENSOR}"),
                "tenant": "hooli",
                "datacontenttype": "application/json",
                "data": {"ticket": "OPS-9"}
            }),
            action: ACTION_UNKNOWN_TO_THE_SENSOR,
            tenant: "hooli",
            object_storage_url: "",
        },
    ]
}

/// Posts every case in order and returns the gateway's `eventId` of each, in case order.
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
/// receiver), the example rules (they map the migration), the default actions and one the
/// Sensors do not know, a test instance URI.
fn chain_settings(sink: SinkConfig) -> impl FnOnce(&mut tenant_gateway::config::Settings) {
    move |settings| {
        settings.sink = sink;
        settings.rules = Some(rules_example());
        settings
            .actions
            .push(ACTION_UNKNOWN_TO_THE_SENSOR.to_owned());
        settings.dispatch.instance_source = "urn:tenant-gateway:chain-test".into();
    }
}

/// `config/rules.example.yaml`.
fn rules_example() -> PathBuf {
    crate_dir().join("config/rules.example.yaml")
}

/// The index of the case an emitted canonical event stems from, found by the upstream id in
/// `data.origin.id`.
fn case_of(cases: &[Case], canonical: &Value) -> usize {
    let origin = &canonical["data"]["origin"]["id"];
    cases
        .iter()
        .position(|case| case.upstream["id"] == *origin)
        .unwrap_or_else(|| panic!("no case posted an event with id {origin}"))
}

/// One event as the Sensor received it, with the case it stems from.
struct Received {
    /// Index into `cases()`.
    case: usize,
    /// The canonical event the gateway emitted.
    canonical: Value,
    /// What the Workflow's `event` parameter (and the dead letter's `event`) must hold.
    expected_event: Value,
    /// The event as the Sensor's parameters see it.
    event: ArgoEvent,
}

/// Everything the Sensor must have made of the events, handled one by one in the order its
/// single consumer received them.
fn check_outcome(
    sensor: &Sensor,
    received: &[Received],
    cases: &[Case],
    event_ids: &[String],
    retype: impl Fn(&ArgoEvent, Value) -> ArgoEvent,
) {
    let templates = discovered_templates();
    let mut api = FakeApiServer::default();
    for r in received {
        let handled = sensor.handle(&r.event, &mut api);
        let known = DEFAULT_ACTIONS.contains(&cases[r.case].action);
        assert_eq!(
            matches!(handled, Handled::Triggered),
            known,
            "{}: {handled:?}",
            cases[r.case].action
        );
    }

    // Per tenant, the Workflows were created in the order of the tenant's events.
    let workflows = api.of_kind("Workflow");
    let globex: Vec<&str> = workflows
        .iter()
        .filter(|w| w["metadata"]["labels"]["tenant-gateway.io/tenant"] == "globex")
        .map(|w| {
            w["metadata"]["labels"]["tenant-gateway.io/action"]
                .as_str()
                .expect("action")
        })
        .collect();
    assert_eq!(
        globex,
        ["upsert", "delete"],
        "globex's Workflows in event order"
    );

    for r in received {
        let case = &cases[r.case];
        let event_id = event_ids[r.case].as_str();
        let workflow_name = r.canonical["data"]["workflowName"].as_str().expect("name");
        let workflow = workflows
            .iter()
            .find(|w| w["metadata"]["name"] == workflow_name);
        let dead_letters: Vec<&Value> = api
            .of_kind("ConfigMap")
            .into_iter()
            .filter(|c| c["data"]["event-id"] == event_id)
            .collect();
        if DEFAULT_ACTIONS.contains(&case.action) {
            let workflow = workflow.unwrap_or_else(|| panic!("a Workflow for {}", case.action));
            check_workflow(
                workflow,
                case,
                event_id,
                &r.canonical,
                &r.expected_event,
                &templates,
            );
            assert!(dead_letters.is_empty(), "{}: no dead letter", case.action);
        } else {
            assert!(workflow.is_none(), "no Workflow for an unknown action");
            let [dead_letter] = dead_letters.as_slice() else {
                panic!("one dead letter for the unknown action: {dead_letters:?}");
            };
            check_dead_letter(
                dead_letter,
                case,
                event_id,
                workflow_name,
                &r.expected_event,
            );
        }

        // The template selection discriminates exactly: each default action its own template,
        // anything else (near misses, no action, not a string) fails the trigger.
        for action in DEFAULT_ACTIONS {
            assert_eq!(
                sensor.template_for(&retype(&r.event, json!(action))),
                Ok(format!("tenant-lifecycle-{action}"))
            );
        }
        for near_miss in [
            json!("upsert-x"),
            json!("Upsert"),
            json!("lifecycle.upsert"),
            json!(""),
            Value::Null,
            json!(5),
        ] {
            assert!(
                sensor
                    .template_for(&retype(&r.event, near_miss.clone()))
                    .is_err(),
                "action {near_miss} selects no template"
            );
        }
    }
    let workflow_count = workflows.len();
    assert_eq!(
        workflow_count,
        cases.len() - 1,
        "one Workflow per known event"
    );

    // A redelivery (the Sensor restarted before its ack, or the gateway resent after a lost
    // answer) finds the Workflow: a quiet success, no second Workflow, no dead letter, and the
    // patch changes nothing the workflow controller could react to.
    let first = received
        .iter()
        .find(|r| cases[r.case].action == "upsert")
        .expect("the upsert was received");
    let before = api.objects.clone();
    let requests_before = api.requests.len();
    assert_eq!(sensor.handle(&first.event, &mut api), Handled::Triggered);
    assert_eq!(api.objects, before, "the redelivery changed nothing");
    let workflow_name = first.canonical["data"]["workflowName"]
        .as_str()
        .expect("name");
    assert_eq!(
        api.requests[requests_before..],
        [
            format!("get Workflow argo/{workflow_name}"),
            format!("patch Workflow argo/{workflow_name} (unchanged)"),
        ]
    );
}

/// Everything the Workflow the Sensor created for one case must satisfy. `canonical` is the
/// event the gateway emitted and `expected_event` what the Workflow's `event` parameter must
/// hold.
fn check_workflow(
    workflow: &Value,
    case: &Case,
    event_id: &str,
    canonical: &Value,
    expected_event: &Value,
    templates: &BTreeMap<String, Value>,
) {
    assert_valid(
        "io.argoproj.workflow.v1alpha1.Workflow",
        workflow,
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
    // The three labels, with the event's values (the WorkflowTemplate's workflowMetadata sets
    // the same tenant and action, so the workflow controller agrees).
    let labels = &workflow["metadata"]["labels"];
    assert_eq!(labels["tenant-gateway.io/emission-id"], event_id);
    assert_eq!(labels["tenant-gateway.io/tenant"], case.tenant);
    assert_eq!(labels["tenant-gateway.io/action"], case.action);
    let metadata = &template["spec"]["workflowMetadata"];
    assert_eq!(
        metadata["labels"]["tenant-gateway.io/action"], labels["tenant-gateway.io/action"],
        "the template labels the same action"
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
}

/// The dead letter records what an operator needs to replay.
fn check_dead_letter(
    dead_letter: &Value,
    case: &Case,
    event_id: &str,
    workflow_name: &str,
    expected_event: &Value,
) {
    assert_eq!(dead_letter["metadata"]["namespace"], "argo-events");
    let labels = &dead_letter["metadata"]["labels"];
    assert_eq!(labels["tenant-gateway.io/dead-letter"], "true");
    assert_eq!(labels["tenant-gateway.io/action"], case.action);
    assert_eq!(dead_letter["data"]["event-id"], event_id);
    assert_eq!(dead_letter["data"]["tenant"], case.tenant);
    assert_eq!(dead_letter["data"]["action"], case.action);
    assert_eq!(dead_letter["data"]["workflow-name"], workflow_name);
    assert_eq!(
        serde_json::from_str::<Value>(dead_letter["data"]["event"].as_str().expect("event"))
            .expect("JSON"),
        *expected_event
    );
}

/// The `eventbus` variant: the overlay's sink publishes to a real JetStream stream created as
/// the Argo clients create it; the Sensor of sensors/eventbus/ reads the gateway's own
/// CloudEvent through one durable pull consumer, as its single trigger does.
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
        sensor.subject(),
        subject,
        "the Sensor pulls the subject the sink publishes to"
    );
    let stream = create_argo_stream(&nats.url(), &sink.stream).await;
    // trigger_conn.go, Subscribe: one durable pull consumer per trigger and dependency,
    // explicit acks, new messages only; created before anything is published.
    let consumer = stream
        .create_consumer(consumer::pull::Config {
            durable_name: Some("tenant-lifecycle-lifecycle-lifecycle".into()),
            filter_subject: subject.clone(),
            deliver_policy: consumer::DeliverPolicy::New,
            ack_policy: consumer::AckPolicy::Explicit,
            ..Default::default()
        })
        .await
        .expect("pull consumer");
    // The overlay's credentials and TLS are the cluster's; this server is plain and open.
    sink.url = nats.url();
    sink.user = None;
    sink.password_file = None;
    sink.client_auth_file = None;
    sink.ca_file = None;
    let mut app = TestApp::spawn_with(chain_settings(SinkConfig::Eventbus(sink))).await;
    let cases = cases();
    let event_ids = post_cases(&mut app, &cases).await;

    let mut messages = consumer.messages().await.expect("messages");
    let mut received = Vec::new();
    for _ in 0..cases.len() {
        let message: jetstream::Message = tokio::time::timeout(WAIT, messages.next())
            .await
            .expect("a message within the wait")
            .expect("stream open")
            .expect("message");
        assert_eq!(message.subject.as_str(), subject);
        let cloudevent: Value = serde_json::from_slice(&message.payload).expect("CloudEvent");
        message.ack().await.expect("ack");
        // Tenants are dispatched concurrently: find the case by the upstream id it carries.
        let case = case_of(&cases, &cloudevent);
        assert_eq!(cloudevent["data"]["payload"], cases[case].upstream["data"]);
        // The Sensor sees no extensions, so its `event` parameter is the canonical data: the
        // whole lifecycle (tenant, action, parameters, objectStorage, origin, payload).
        received.push(Received {
            case,
            event: ArgoEvent::new(&cloudevent, cloudevent["data"].clone()),
            expected_event: cloudevent["data"].clone(),
            canonical: cloudevent,
        });
    }
    check_outcome(&sensor, &received, &cases, &event_ids, |event, action| {
        let mut retyped = event.clone();
        retyped.data["action"] = action;
        retyped
    });
    app.stop().await;
}

/// The `webhook` variant: the overlay's sink posts to a fake of Argo's webhook EventSource
/// (with the EventSource's bearer token); the event is wrapped as that EventSource wraps it and
/// the Sensor of sensors/webhook/ reads it under `body.`, in the order the EventSource
/// received the requests.
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

    let accepted: Vec<_> = hook
        .requests()
        .into_iter()
        .filter(|r| r.status == 200)
        .collect();
    assert_eq!(accepted.len(), cases.len());
    let mut received = Vec::new();
    for (n, request) in accepted.iter().enumerate() {
        let body = request.json.clone().expect("JSON body");
        let case = case_of(&cases, &body);
        assert_eq!(body["data"]["payload"], cases[case].upstream["data"]);
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
            "id": format!("9f0c5a52-6f0e-4c43-a7a4-3c1c7e0f4b{n:02}"),
            "source": eventsource["metadata"]["name"],
            "specversion": "1.0",
            "type": "webhook",
            "datacontenttype": "application/json",
            "subject": event_name,
            "time": "2026-11-23T10:00:01Z",
        });
        // Here the Sensor has the whole canonical event: the `event` parameter is the body.
        received.push(Received {
            case,
            event: ArgoEvent::new(&attributes, data),
            expected_event: body.clone(),
            canonical: body,
        });
    }
    check_outcome(&sensor, &received, &cases, &event_ids, |event, action| {
        let mut retyped = event.clone();
        retyped.data["body"]["data"]["action"] = action;
        retyped
    });
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
    assert_eq!(go_canonical_header("content-type"), "Content-Type");
    assert_eq!(go_canonical_header("webhook-id"), "Webhook-Id");
}

/// The text/template subset on the behaviour Go and sprig document: trim markers, a missing
/// key as no value, `has` as equality, `fail` as an error, empty output as an error
/// (`getValueWithTemplate`).
#[test]
fn the_template_subset_behaves_like_text_template_and_sprig() {
    let template = "{{- $a := .Input.x.action -}}\n  {{- if has $a (list \"b\" \"c-d\") -}}\n  \
                    t-{{ $a }}\n  {{- else -}}\n  {{- fail \"no\" -}}\n  {{- end -}}";
    let input = |action: Value| json!({"x": {"action": action}});
    assert_eq!(
        value_with_template(template, &input(json!("b"))),
        Ok("t-b".into())
    );
    assert_eq!(
        value_with_template(template, &input(json!("c-d"))),
        Ok("t-c-d".into())
    );
    for other in [json!("c"), json!("B"), json!(1), Value::Null] {
        assert_eq!(
            value_with_template(template, &input(other)),
            Err("no".into())
        );
    }
    assert_eq!(
        value_with_template(template, &json!({"x": {}})),
        Err("no".into())
    );
    assert!(
        value_with_template(template, &json!({})).is_err(),
        "nil.action"
    );
    assert!(
        value_with_template(template, &json!({"x": "s"})).is_err(),
        "field of a string"
    );
    // Without trim markers the white space is output; an empty result is an error.
    assert_eq!(
        value_with_template("{{ $a := .Input.k }} {{ $a }}", &json!({"k": "v"})),
        Ok(" v".into())
    );
    assert!(value_with_template("{{ $a := .Input.k }}{{ $a }}", &json!({"k": ""})).is_err());
    assert!(value_with_template("{{ $a := .Input.k }}{{ $a }}", &json!({})).is_err());
    assert_eq!(known_actions(template), ["b", "c-d"]);
}

/// The fake API server: Create refuses an existing name, a merge patch of identical content
/// changes nothing, and RFC 7386's own example.
#[test]
fn the_fake_api_server_behaves_like_the_api_server() {
    let mut api = FakeApiServer::default();
    let object = json!({"kind": "Workflow", "metadata": {"namespace": "argo", "name": "w",
                        "labels": {"a": "1"}}, "spec": {"p": [1, 2]}});
    assert_eq!(api.create(object.clone()), Ok(()));
    assert!(api
        .create(object.clone())
        .is_err_and(|e| e.contains("AlreadyExists")));
    assert_eq!(api.merge_patch(&object), Ok(false));
    let mut changed = object.clone();
    changed["metadata"]["labels"]["b"] = json!("2");
    assert_eq!(api.merge_patch(&changed), Ok(true));
    assert_eq!(
        api.objects[0]["metadata"]["labels"],
        json!({"a": "1", "b": "2"})
    );
    let missing = json!({"kind": "Workflow", "metadata": {"namespace": "argo", "name": "x"}});
    assert!(api
        .merge_patch(&missing)
        .is_err_and(|e| e.contains("NotFound")));

    let mut target = json!({"a": "b", "c": {"d": "e", "f": "g"}});
    merge_patch(&mut target, &json!({"a": "z", "c": {"f": null}}));
    assert_eq!(target, json!({"a": "z", "c": {"d": "e"}}));
    let mut target = json!({"a": [1, 2]});
    merge_patch(&mut target, &json!({"a": [3]}));
    assert_eq!(target, json!({"a": [3]}), "arrays are replaced");

    let dead_letter = json!({"kind": "ConfigMap",
                             "metadata": {"namespace": "argo-events", "generateName": "dl-"}});
    assert_eq!(api.create(dead_letter.clone()), Ok(()));
    assert_eq!(
        api.create(dead_letter),
        Ok(()),
        "generateName: always a new name"
    );
    assert_eq!(api.of_kind("ConfigMap").len(), 2);
}

/// With `operation: create`, the Sensors' redelivery would not be quiet: the second create is
/// refused and, after the retries, dead-lettered. This is what `patch` avoids.
#[test]
fn a_create_trigger_would_dead_letter_a_redelivery() {
    let mut sensor = Sensor::load("eventbus");
    sensor.trigger["template"]["k8s"]["operation"] = json!("create");
    let data = json!({"tenant": "globex", "action": "upsert", "workflowName": "globex-upsert-1",
                      "objectStorage": null});
    let event = ArgoEvent::new(
        &json!({"id": "e-1", "source": "tenant-gateway", "subject": "lifecycle",
                "specversion": "1.0", "type": "lifecycle.upsert",
                "datacontenttype": "application/json"}),
        data,
    );
    let mut api = FakeApiServer::default();
    assert_eq!(sensor.handle(&event, &mut api), Handled::Triggered);
    let handled = sensor.handle(&event, &mut api);
    assert!(
        matches!(&handled, Handled::DeadLettered { error } if error.contains("AlreadyExists")),
        "{handled:?}"
    );
}
