//! The YAML rules file: maps upstream CloudEvents that do not follow the default
//! `...lifecycle.<action>` shape to lifecycle facts (DESIGN section 4), and `rules check`.
//!
//! The file is parsed once into [`Rule`]s whose globs, value sources and action specs are already
//! typed, so a running gateway never meets a malformed rule. Problems that serde sees (unknown
//! fields, wrong types) carry YAML line and column; the rest name the rule.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use wildmatch::WildMatch;

use super::{
    default_tenant, is_action_name, scalar_string, Lifecycle, NormalizeError, Normalizer,
    ObjectStorage, TenantName,
};
use crate::cloudevents::event::is_valid_attribute_name;
use crate::cloudevents::format::event_from_json;
use crate::cloudevents::{CloudEvent, Data, ExtensionValue};

/// Why a rules file cannot be used. Each message is one line naming the rule and the problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RulesError {
    #[error("cannot read rules file {}: {reason}", path.display())]
    Read {
        /// The file that could not be read.
        path: PathBuf,
        /// The operating system's reason.
        reason: String,
    },
    /// A problem found in a file, with the file named once in front.
    #[error("rules file {}: {error}", path.display())]
    File {
        /// The rules file.
        path: PathBuf,
        /// What is wrong in it.
        error: Box<RulesError>,
    },
    /// Not YAML, or not the rules schema; serde's message carries the line and column.
    #[error("invalid rules YAML: {0}")]
    Syntax(String),
    /// Every rule-level problem found, each prefixed with its rule.
    #[error("{}", .0.join("; "))]
    Invalid(Vec<String>),
}

/// A validated rules file, in file order.
#[derive(Debug, Clone)]
pub struct RuleSet {
    /// Tried in this order; the first match owns the event.
    rules: Vec<Rule>,
}

impl RuleSet {
    /// Read and validate a rules file; errors name the file.
    pub fn load(path: &Path) -> Result<RuleSet, RulesError> {
        let text = std::fs::read_to_string(path).map_err(|e| RulesError::Read {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
        RuleSet::parse(&text).map_err(|e| RulesError::File {
            path: path.to_owned(),
            error: Box::new(e),
        })
    }

    /// Validate rules YAML. Every rule-level problem is reported, not just the first, so one
    /// `rules check` run shows everything to fix.
    pub fn parse(yaml: &str) -> Result<RuleSet, RulesError> {
        let raw: Option<RawFile> =
            serde_yaml_ng::from_str(yaml).map_err(|e| RulesError::Syntax(e.to_string()))?;
        let Some(raw) = raw else {
            return Err(RulesError::Syntax(
                "the document is empty; expected a top-level `rules:` list".into(),
            ));
        };
        let mut rules = Vec::with_capacity(raw.rules.len());
        let mut problems = Vec::new();
        let mut seen: BTreeMap<String, usize> = BTreeMap::new();
        for (index, raw_rule) in raw.rules.into_iter().enumerate() {
            let label = if raw_rule.name.is_empty() {
                format!("rules[{index}]")
            } else {
                format!("rule {:?} (rules[{index}])", raw_rule.name)
            };
            if raw_rule.name.is_empty() {
                problems.push(format!("{label}: name must not be empty"));
            } else if let Some(first) = seen.insert(raw_rule.name.clone(), index) {
                problems.push(format!(
                    "{label}: duplicate name, already used by rules[{first}]"
                ));
            }
            match Rule::from_raw(raw_rule) {
                Ok(rule) => rules.push(rule),
                Err(found) => problems.extend(found.into_iter().map(|p| format!("{label}: {p}"))),
            }
        }
        if problems.is_empty() {
            Ok(RuleSet { rules })
        } else {
            Err(RulesError::Invalid(problems))
        }
    }

    /// Rule names in file order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.rules.iter().map(|r| r.name.as_str())
    }

    pub fn len(&self) -> usize {
        self.rules.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Every action a rule can produce without looking at an event must be allowed; an
    /// `action-from` without a map can only be checked per event.
    pub(crate) fn check_actions(&self, allowed: &BTreeSet<String>) -> Result<(), RulesError> {
        let allowed_list = allowed
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join(", ");
        let mut problems = Vec::new();
        for rule in &self.rules {
            match &rule.action {
                ActionSpec::Literal(action) if !allowed.contains(action) => {
                    problems.push(format!(
                        "rule {:?}: action {action:?} is not one of the allowed actions ({allowed_list})",
                        rule.name
                    ));
                }
                ActionSpec::Literal(_) => {}
                ActionSpec::From { map, .. } => {
                    for (from, action) in map.iter().flatten() {
                        if !allowed.contains(action) {
                            problems.push(format!(
                                "rule {:?}: action-map maps {from:?} to {action:?}, which is not one of the allowed actions ({allowed_list})",
                                rule.name
                            ));
                        }
                    }
                }
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(RulesError::Invalid(problems))
        }
    }

    pub(crate) fn into_rules(self) -> Vec<Rule> {
        self.rules
    }
}

/// The file as written; only [`Rule::from_raw`] turns it into something usable.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawFile {
    /// The rules in the order they are tried.
    rules: Vec<RawRule>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawRule {
    /// Identifies the rule in errors, logs and `rules check`.
    name: String,
    /// Which events the rule owns.
    #[serde(rename = "match")]
    matcher: RawMatch,
    /// A literal short action name.
    action: Option<String>,
    /// Where to find the action in the event instead.
    action_from: Option<String>,
    /// Translates upstream vocabulary (`cancelled`) into actions (`delete`).
    action_map: Option<BTreeMap<String, String>>,
    /// Where the tenant is; absent means the default lookup order.
    tenant: Option<String>,
    /// Parameter name -> value source.
    #[serde(default)]
    parameters: BTreeMap<String, String>,
    /// Where the object storage URL of a migration is.
    object_storage_url: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawMatch {
    /// Glob over the `type` attribute.
    #[serde(rename = "type")]
    ty: Option<String>,
    /// Glob over the `source` attribute.
    source: Option<String>,
}

/// One validated rule.
#[derive(Debug, Clone)]
pub(crate) struct Rule {
    /// Unique within the file; reported in errors and in [`Lifecycle::rule`].
    name: String,
    /// `type` glob; `None` matches any type.
    ty: Option<WildMatch>,
    /// `source` glob; `None` matches any source.
    source: Option<WildMatch>,
    /// How the action is found.
    action: ActionSpec,
    /// Where the tenant is; `None` means the default lookup order.
    tenant: Option<ValueSource>,
    /// Parameter name -> where its value is.
    parameters: BTreeMap<String, ValueSource>,
    /// Where the object storage URL is, for migrations.
    object_storage_url: Option<ValueSource>,
}

/// How a rule finds the action.
#[derive(Debug, Clone)]
enum ActionSpec {
    /// Always this short action name (checked against the allowed set at load).
    Literal(String),
    From {
        /// Where the upstream value is.
        source: ValueSource,
        /// Upstream value -> short action name; without it the value must be an action name.
        map: Option<BTreeMap<String, String>>,
    },
}

/// Where a value comes from in an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ValueSource {
    /// `extension:NAME`: an extension attribute.
    Extension(String),
    /// `subject`.
    Subject,
    /// `data:POINTER`: an RFC 6901 JSON pointer into JSON data.
    Data(String),
    /// `type`.
    Type,
    /// `source`.
    Source,
    /// `id`.
    Id,
}

/// Context attributes that are not extensions: `extension:subject` could never be found, so it
/// is refused at load with a hint.
const CONTEXT_ATTRIBUTES: [&str; 10] = [
    "specversion",
    "id",
    "source",
    "type",
    "subject",
    "time",
    "datacontenttype",
    "dataschema",
    "schemaurl",
    "data",
];

impl FromStr for ValueSource {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let expected = "expected extension:NAME, subject, data:/POINTER, type, source or id";
        if let Some(name) = s.strip_prefix("extension:") {
            if CONTEXT_ATTRIBUTES.contains(&name) {
                return Err(format!(
                    "{s:?}: {name} is a context attribute, not an extension (write {name:?})"
                ));
            }
            if !is_valid_attribute_name(name) {
                return Err(format!(
                    "{s:?}: extension names are lower-case ASCII letters and digits"
                ));
            }
            return Ok(ValueSource::Extension(name.to_owned()));
        }
        if let Some(pointer) = s.strip_prefix("data:") {
            check_pointer(pointer).map_err(|reason| format!("{s:?}: {reason}"))?;
            return Ok(ValueSource::Data(pointer.to_owned()));
        }
        match s {
            "subject" => Ok(ValueSource::Subject),
            "type" => Ok(ValueSource::Type),
            "source" => Ok(ValueSource::Source),
            "id" => Ok(ValueSource::Id),
            _ => Err(format!("invalid value source {s:?}: {expected}")),
        }
    }
}

impl fmt::Display for ValueSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ValueSource::Extension(name) => write!(f, "extension:{name}"),
            ValueSource::Subject => f.write_str("subject"),
            ValueSource::Data(pointer) => write!(f, "data:{pointer}"),
            ValueSource::Type => f.write_str("type"),
            ValueSource::Source => f.write_str("source"),
            ValueSource::Id => f.write_str("id"),
        }
    }
}

/// RFC 6901: empty (the whole document) or `/`-separated tokens where `~` only escapes `~0`
/// and `~1`. serde_json would read `~2` literally, which hides a typo.
fn check_pointer(pointer: &str) -> Result<(), String> {
    if !pointer.is_empty() && !pointer.starts_with('/') {
        return Err("a JSON pointer must be empty or start with '/'".into());
    }
    let mut chars = pointer.chars();
    while let Some(c) = chars.next() {
        if c == '~' && !matches!(chars.next(), Some('0' | '1')) {
            return Err(
                "in a JSON pointer '~' must be followed by 0 or 1 (~0 is '~', ~1 is '/')".into(),
            );
        }
    }
    Ok(())
}

/// A value found in an event, before it is turned into a string.
enum Found<'a> {
    /// From an attribute: already a string.
    Text(Cow<'a, str>),
    /// From JSON data: any JSON value.
    Json(&'a Value),
}

impl ValueSource {
    /// The attribute an error about this source points at.
    fn attribute(&self) -> &str {
        match self {
            ValueSource::Extension(name) => name,
            ValueSource::Subject => "subject",
            ValueSource::Data(_) => "data",
            ValueSource::Type => "type",
            ValueSource::Source => "source",
            ValueSource::Id => "id",
        }
    }

    fn find<'a>(&self, event: &'a CloudEvent) -> Result<Found<'a>, String> {
        let text = |s: &'a str| Ok(Found::Text(Cow::Borrowed(s)));
        match self {
            ValueSource::Extension(name) => match event.extension(name) {
                Some(ExtensionValue::String(s)) => text(s),
                Some(ExtensionValue::Boolean(b)) => Ok(Found::Text(b.to_string().into())),
                Some(ExtensionValue::Integer(i)) => Ok(Found::Text(i.to_string().into())),
                None => Err(format!("{self}: the event has no {name} extension")),
            },
            ValueSource::Subject => match &event.subject {
                Some(s) => text(s),
                None => Err("subject: the event has no subject".into()),
            },
            ValueSource::Type => text(&event.ty),
            ValueSource::Source => text(&event.source),
            ValueSource::Id => text(&event.id),
            ValueSource::Data(pointer) => match &event.data {
                Some(Data::Json(data)) => data
                    .pointer(pointer)
                    .map(Found::Json)
                    .ok_or_else(|| format!("{self}: not found in the event data")),
                Some(Data::Text(_)) => Err(format!("{self}: the event data is text, not JSON")),
                Some(Data::Binary(_)) => Err(format!("{self}: the event data is binary, not JSON")),
                None => Err(format!("{self}: the event has no data")),
            },
        }
    }

    /// For the tenant, the action and the URL: a string, number or boolean.
    fn scalar(&self, event: &CloudEvent) -> Result<String, String> {
        match self.find(event)? {
            Found::Text(s) => Ok(s.into_owned()),
            Found::Json(v) => scalar_string(v).ok_or_else(|| {
                format!(
                    "{self}: is {}, expected a string, number or boolean",
                    json_kind(v)
                )
            }),
        }
    }

    /// For parameters: like [`Self::scalar`], but objects and arrays pass as compact JSON text
    /// so a team can receive structured input; null is still an error, like a missing value.
    fn parameter(&self, event: &CloudEvent) -> Result<String, String> {
        match self.find(event)? {
            Found::Text(s) => Ok(s.into_owned()),
            Found::Json(Value::Null) => Err(format!(
                "{self}: is null, expected a string, number, boolean, object or array"
            )),
            Found::Json(v @ (Value::Object(_) | Value::Array(_))) => Ok(v.to_string()),
            Found::Json(v) => Ok(scalar_string(v).unwrap_or_default()),
        }
    }
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a JSON array",
        Value::Object(_) => "a JSON object",
    }
}

/// wildmatch accepts any text, so the mistakes it would silently treat literally are refused
/// here: character classes, alternatives and escapes, which glob users commonly expect.
fn parse_glob(key: &str, pattern: &str) -> Result<WildMatch, String> {
    if pattern.is_empty() {
        return Err(format!(
            "match.{key}: the glob is empty and would never match"
        ));
    }
    if let Some(c) = pattern
        .chars()
        .find(|c| matches!(c, '[' | ']' | '{' | '}' | '\\') || c.is_whitespace() || c.is_control())
    {
        return Err(format!(
            "match.{key}: invalid glob {pattern:?}: {c:?} is not supported (only * and ? are wildcards; use ? for a literal bracket)"
        ));
    }
    Ok(WildMatch::new(pattern))
}

impl Rule {
    /// Typed rule from the raw one, or every problem found in it (without the rule label).
    fn from_raw(raw: RawRule) -> Result<Rule, Vec<String>> {
        let mut problems = Vec::new();
        let mut glob = |key: &str, pattern: Option<String>| {
            pattern.and_then(|p| parse_glob(key, &p).map_err(|e| problems.push(e)).ok())
        };
        let (has_type, has_source) = (raw.matcher.ty.is_some(), raw.matcher.source.is_some());
        let ty = glob("type", raw.matcher.ty);
        let source = glob("source", raw.matcher.source);
        if !has_type && !has_source {
            problems.push("match needs at least one of type, source".into());
        }

        let mut value_source = |field: &str, text: &str| {
            text.parse::<ValueSource>()
                .map_err(|e| problems.push(format!("{field}: {e}")))
                .ok()
        };
        let tenant = raw
            .tenant
            .as_deref()
            .and_then(|t| value_source("tenant", t));
        let object_storage_url = raw
            .object_storage_url
            .as_deref()
            .and_then(|u| value_source("object-storage-url", u));
        let mut parameters = BTreeMap::new();
        for (name, text) in &raw.parameters {
            if let Some(src) = value_source(&format!("parameters.{name}"), text) {
                parameters.insert(name.clone(), src);
            }
        }
        let action_from = raw
            .action_from
            .as_deref()
            .and_then(|a| value_source("action-from", a));
        if raw.parameters.keys().any(String::is_empty) {
            problems.push("parameters: a parameter name must not be empty".into());
        }

        let action = match (raw.action, raw.action_from.is_some(), raw.action_map) {
            (Some(_), true, _) => {
                problems.push("set either action or action-from, not both".into());
                None
            }
            (None, false, _) => {
                problems.push("one of action or action-from is required".into());
                None
            }
            (Some(_), false, Some(_)) => {
                problems.push("action-map only applies with action-from".into());
                None
            }
            (Some(action), false, None) => {
                if is_action_name(&action) {
                    Some(ActionSpec::Literal(action))
                } else {
                    problems.push(format!(
                        "action {action:?} is not a short action name (lower-case letters, digits and '-', e.g. upsert)"
                    ));
                    None
                }
            }
            (None, true, map) => {
                if map.as_ref().is_some_and(BTreeMap::is_empty) {
                    problems
                        .push("action-map is empty; omit it or list the upstream values".into());
                }
                for (from, to) in map.iter().flatten() {
                    if !is_action_name(to) {
                        problems.push(format!(
                            "action-map maps {from:?} to {to:?}, which is not a short action name (lower-case letters, digits and '-')"
                        ));
                    }
                }
                action_from.map(|source| ActionSpec::From { source, map })
            }
        };

        match action {
            Some(action) if problems.is_empty() => Ok(Rule {
                name: raw.name,
                ty,
                source,
                action,
                tenant,
                parameters,
                object_storage_url,
            }),
            _ => Err(problems),
        }
    }

    pub(crate) fn matches(&self, event: &CloudEvent) -> bool {
        self.ty.as_ref().is_none_or(|g| g.matches(&event.ty))
            && self
                .source
                .as_ref()
                .is_none_or(|g| g.matches(&event.source))
    }

    /// Take the lifecycle facts from an event this rule matched. Errors name the rule.
    pub(crate) fn apply(
        &self,
        event: &CloudEvent,
        normalizer: &Normalizer,
    ) -> Result<Lifecycle, NormalizeError> {
        let fail = |attribute: &str, reason: String| NormalizeError::Rule {
            rule: self.name.clone(),
            attribute: attribute.to_owned(),
            reason,
        };
        let action = match &self.action {
            ActionSpec::Literal(action) => action.clone(),
            ActionSpec::From { source, map } => {
                let at = source.attribute();
                let found = source
                    .scalar(event)
                    .map_err(|r| fail(at, format!("action: {r}")))?;
                let action = match map {
                    None => found,
                    Some(map) => map.get(&found).cloned().ok_or_else(|| {
                        let known = map.keys().map(|k| format!("{k:?}")).collect::<Vec<_>>();
                        fail(
                            at,
                            format!(
                                "action: {source} is {found:?}, which action-map does not list ({})",
                                known.join(", ")
                            ),
                        )
                    })?,
                };
                if !normalizer.allowed_actions.contains(&action) {
                    return Err(fail(
                        at,
                        format!(
                            "action {action:?} (from {source}) is not one of the allowed actions ({})",
                            normalizer.allowed_list()
                        ),
                    ));
                }
                action
            }
        };

        let tenant = match &self.tenant {
            Some(source) => {
                let at = source.attribute();
                let name = source
                    .scalar(event)
                    .map_err(|r| fail(at, format!("tenant: {r}")))?;
                TenantName::parse(&name)
                    .map_err(|r| fail(at, format!("tenant from {source}: {r}")))?
            }
            None => default_tenant(event).map_err(|e| fail(e.attribute(), e.to_string()))?,
        };

        let mut parameters = BTreeMap::new();
        for (name, source) in &self.parameters {
            let value = source
                .parameter(event)
                .map_err(|r| fail(source.attribute(), format!("parameter {name:?}: {r}")))?;
            parameters.insert(name.clone(), value);
        }

        let object_storage = match &self.object_storage_url {
            None => None,
            Some(source) => {
                let at = source.attribute();
                let url = source
                    .scalar(event)
                    .map_err(|r| fail(at, format!("object-storage-url: {r}")))?;
                if url.is_empty() {
                    return Err(fail(at, format!("object-storage-url: {source} is empty")));
                }
                Some(ObjectStorage { url })
            }
        };

        Ok(Lifecycle {
            tenant,
            action,
            parameters,
            object_storage,
            rule: Some(self.name.clone()),
        })
    }
}

/// Why `rules check` failed.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error(transparent)]
    Rules(#[from] RulesError),
    /// The event file is unreadable, not JSON, or not a valid CloudEvent.
    #[error("event file {}: {reason}", path.display())]
    Event {
        /// The `--event` file.
        path: PathBuf,
        /// Why it is not a usable CloudEvent.
        reason: String,
    },
    /// The event is valid but the rules (or the default rule) cannot normalize it.
    #[error("event {} does not normalize: {error}", path.display())]
    DoesNotNormalize {
        /// The `--event` file.
        path: PathBuf,
        /// What the gateway would answer with its 422.
        error: NormalizeError,
    },
}

/// The lifecycle as `rules check` prints it: a struct rather than a JSON map so the members
/// come out in reading order, named as in the canonical event's data.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CheckReport<'a> {
    /// The normalized tenant.
    tenant: &'a str,
    /// The short action name.
    action: &'a str,
    /// The parameters, as strings.
    parameters: &'a BTreeMap<String, String>,
    /// The object storage location, `null` when the event names none.
    object_storage: Option<&'a ObjectStorage>,
}

/// `tenant-gateway rules check`: validate a rules file against `actions` and, given an event
/// file (structured-mode JSON), show how it normalizes. Returns the report to print.
pub fn check(
    rules_file: &Path,
    event_file: Option<&Path>,
    actions: &[String],
) -> Result<String, CheckError> {
    let rules = RuleSet::load(rules_file)?;
    let names: Vec<String> = rules.names().map(str::to_owned).collect();
    let normalizer =
        Normalizer::with_rules(actions.iter().cloned(), rules).map_err(|e| RulesError::File {
            path: rules_file.to_owned(),
            error: Box::new(e),
        })?;
    let Some(event_file) = event_file else {
        let noun = if names.len() == 1 { "rule" } else { "rules" };
        return Ok(if names.is_empty() {
            "0 rules OK (every event takes the default rule)".to_owned()
        } else {
            format!("{} {noun} OK: {}", names.len(), names.join(", "))
        });
    };

    let event_error = |reason: String| CheckError::Event {
        path: event_file.to_owned(),
        reason,
    };
    let text = std::fs::read_to_string(event_file).map_err(|e| event_error(e.to_string()))?;
    let value: Value =
        serde_json::from_str(&text).map_err(|e| event_error(format!("not JSON: {e}")))?;
    let event = event_from_json(value).map_err(|violations| {
        let all: Vec<String> = violations.iter().map(ToString::to_string).collect();
        event_error(format!("not a valid CloudEvent: {}", all.join("; ")))
    })?;
    let lifecycle = normalizer
        .normalize(&event)
        .map_err(|error| CheckError::DoesNotNormalize {
            path: event_file.to_owned(),
            error,
        })?;

    let header = match &lifecycle.rule {
        Some(rule) => format!("matched rule {rule:?}"),
        None => format!(
            "matched the default rule (no rule matches type {:?} source {:?})",
            event.ty, event.source
        ),
    };
    let report = CheckReport {
        tenant: lifecycle.tenant.as_str(),
        action: &lifecycle.action,
        parameters: &lifecycle.parameters,
        object_storage: lifecycle.object_storage.as_ref(),
    };
    let pretty = serde_json::to_string_pretty(&report)
        .map_err(|e| event_error(format!("cannot render the lifecycle: {e}")))?;
    Ok(format!("{header}\n{pretty}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::normalize::DEFAULT_ACTIONS;
    use serde_json::json;

    fn normalizer(yaml: &str) -> Normalizer {
        let rules = RuleSet::parse(yaml).unwrap_or_else(|e| panic!("{e}"));
        Normalizer::with_rules(DEFAULT_ACTIONS.iter().map(|a| a.to_string()), rules)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    fn event(value: Value) -> CloudEvent {
        event_from_json(value).unwrap_or_else(|v| panic!("{v:?}"))
    }

    fn base(ty: &str, source: &str, data: Value) -> Value {
        json!({"specversion": "1.0", "id": "e-1", "source": source, "type": ty, "data": data})
    }

    fn error_text(yaml: &str) -> String {
        RuleSet::parse(yaml)
            .and_then(|r| Normalizer::with_rules(DEFAULT_ACTIONS.iter().map(|a| a.to_string()), r))
            .expect_err("should be rejected")
            .to_string()
    }

    fn rule_with(body: &str) -> String {
        format!(
            "rules:\n  - name: r\n    match: {{type: \"com.acme.*\"}}\n    tenant: data:/t\n{body}"
        )
    }

    #[test]
    fn value_sources_parse() {
        for (text, expected) in [
            ("extension:region", ValueSource::Extension("region".into())),
            ("subject", ValueSource::Subject),
            ("data:/a/b", ValueSource::Data("/a/b".into())),
            ("data:", ValueSource::Data(String::new())),
            ("data:/a~1b~0", ValueSource::Data("/a~1b~0".into())),
            ("type", ValueSource::Type),
            ("source", ValueSource::Source),
            ("id", ValueSource::Id),
        ] {
            let parsed: ValueSource = text.parse().unwrap();
            assert_eq!(parsed, expected);
            assert_eq!(parsed.to_string(), text);
        }
        for bad in [
            "data:a/b",
            "data:/a~2",
            "data:/a~",
            "extension:Region",
            "extension:",
            "extension:subject",
            "time",
            "",
            "/a/b",
        ] {
            assert!(bad.parse::<ValueSource>().is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn ways_of_finding_the_action() {
        let n = normalizer(
            r#"
rules:
  - name: literal
    match: {type: "t.literal"}
    action: delete
  - name: from-data
    match: {type: "t.data"}
    action-from: data:/op
  - name: from-extension
    match: {type: "t.ext"}
    action-from: extension:op
  - name: from-subject
    match: {type: "t.subject"}
    action-from: subject
    tenant: data:/tenant
  - name: from-id
    match: {type: "t.id"}
    action-from: id
  - name: from-source
    match: {type: "t.source"}
    action-from: source
  - name: from-type
    match: {type: "admin"}
    action-from: type
  - name: mapped
    match: {type: "t.map"}
    action-from: data:/op
    action-map: {created: upsert, cancelled: delete, "7": admin}
"#,
        );
        let case = |ty: &str, source: &str, id: &str, extra: Value, data: Value| {
            let mut v = base(ty, source, data);
            v["id"] = json!(id);
            v["tenant"] = json!("acme");
            if let Value::Object(m) = extra {
                for (k, x) in m {
                    v[k] = x;
                }
            }
            n.normalize(&event(v))
        };
        let ok = |r: Result<Lifecycle, NormalizeError>| r.map(|l| (l.action, l.rule));
        let some = |a: &str, r: &str| Ok((a.to_owned(), Some(r.to_owned())));

        assert_eq!(
            ok(case("t.literal", "/s", "1", json!({}), json!({}))),
            some("delete", "literal")
        );
        assert_eq!(
            ok(case(
                "t.data",
                "/s",
                "1",
                json!({}),
                json!({"op": "migrate-in"})
            )),
            some("migrate-in", "from-data")
        );
        assert_eq!(
            ok(case("t.ext", "/s", "1", json!({"op": "upsert"}), json!({}))),
            some("upsert", "from-extension")
        );
        assert_eq!(
            ok(case(
                "t.subject",
                "/s",
                "1",
                json!({"subject": "admin"}),
                json!({"tenant": "acme"})
            )),
            some("admin", "from-subject")
        );
        assert_eq!(
            ok(case("t.id", "/s", "delete", json!({}), json!({}))),
            some("delete", "from-id")
        );
        assert_eq!(
            ok(case("t.source", "upsert", "1", json!({}), json!({}))),
            some("upsert", "from-source")
        );
        assert_eq!(
            ok(case("admin", "/s", "1", json!({}), json!({}))),
            some("admin", "from-type")
        );
        assert_eq!(
            ok(case(
                "t.map",
                "/s",
                "1",
                json!({}),
                json!({"op": "cancelled"})
            )),
            some("delete", "mapped")
        );
        // Numbers are looked up by their JSON spelling.
        assert_eq!(
            ok(case("t.map", "/s", "1", json!({}), json!({"op": 7}))),
            some("admin", "mapped")
        );

        let err = case("t.map", "/s", "1", json!({}), json!({"op": "paused"})).unwrap_err();
        assert_eq!(err.attribute(), "data");
        assert_eq!(
            err.to_string(),
            "rule \"mapped\": action: data:/op is \"paused\", which action-map does not list (\"7\", \"cancelled\", \"created\")"
        );
        let err = case("t.data", "/s", "1", json!({}), json!({"op": "explode"})).unwrap_err();
        assert_eq!(
            err.to_string(),
            "rule \"from-data\": action \"explode\" (from data:/op) is not one of the allowed actions (admin, delete, migrate-in, migrate-out, upsert)"
        );
        let err = case("t.data", "/s", "1", json!({}), json!({"op": {"x": 1}})).unwrap_err();
        assert!(
            err.to_string().contains("data:/op: is a JSON object"),
            "{err}"
        );
        let err = case("t.data", "/s", "1", json!({}), json!({"op": null})).unwrap_err();
        assert!(err.to_string().contains("data:/op: is null"), "{err}");
        let err = case("t.ext", "/s", "1", json!({}), json!({})).unwrap_err();
        assert_eq!(err.attribute(), "op");
        assert!(
            err.to_string().contains("the event has no op extension"),
            "{err}"
        );
    }

    #[test]
    fn ways_of_finding_the_tenant() {
        let n = normalizer(
            r#"
rules:
  - name: data
    match: {type: "t.data"}
    action: upsert
    tenant: data:/account/slug
  - name: extension
    match: {type: "t.ext"}
    action: upsert
    tenant: extension:org
  - name: subject
    match: {type: "t.subject"}
    action: upsert
    tenant: subject
  - name: source
    match: {type: "t.source"}
    action: upsert
    tenant: source
  - name: id
    match: {type: "t.id"}
    action: upsert
    tenant: id
  - name: number
    match: {type: "t.number"}
    action: upsert
    tenant: data:/n
  - name: default-order
    match: {type: "t.default"}
    action: upsert
"#,
        );
        let tenant = |v: Value| n.normalize(&event(v)).map(|l| l.tenant.to_string());
        let with = |ty: &str, extra: Value| {
            let mut v = base(
                ty,
                "acme-src",
                json!({"account": {"slug": "acme-data"}, "n": 42, "tenant": "from-data"}),
            );
            v["id"] = json!("acme-id");
            if let Value::Object(m) = extra {
                for (k, x) in m {
                    v[k] = x;
                }
            }
            v
        };
        assert_eq!(tenant(with("t.data", json!({}))).unwrap(), "acme-data");
        assert_eq!(
            tenant(with("t.ext", json!({"org": "acme-ext"}))).unwrap(),
            "acme-ext"
        );
        assert_eq!(
            tenant(with("t.subject", json!({"subject": "acme-subj"}))).unwrap(),
            "acme-subj"
        );
        assert_eq!(tenant(with("t.source", json!({}))).unwrap(), "acme-src");
        assert_eq!(tenant(with("t.id", json!({}))).unwrap(), "acme-id");
        assert_eq!(tenant(with("t.number", json!({}))).unwrap(), "42");
        // Absent: the default order (tenant extension, subject, data /tenant, /tenant/id).
        assert_eq!(tenant(with("t.default", json!({}))).unwrap(), "from-data");
        assert_eq!(
            tenant(with("t.default", json!({"subject": "subj"}))).unwrap(),
            "subj"
        );
        assert_eq!(
            tenant(with(
                "t.default",
                json!({"subject": "subj", "tenant": "ext"})
            ))
            .unwrap(),
            "ext"
        );

        let err = tenant(with("t.ext", json!({"org": "Acme_Corp"}))).unwrap_err();
        assert_eq!(err.attribute(), "org");
        assert!(
            err.to_string()
                .starts_with("rule \"extension\": tenant from extension:org: tenant \"Acme_Corp\""),
            "{err}"
        );
        assert!(err.to_string().contains("DNS-1123"), "{err}");
        let err = tenant(with("t.subject", json!({}))).unwrap_err();
        assert_eq!(
            err.to_string(),
            "rule \"subject\": tenant: subject: the event has no subject"
        );
        let mut no_tenant = with("t.default", json!({}));
        no_tenant["data"] = json!({});
        let err = tenant(no_tenant).unwrap_err();
        assert_eq!(err.attribute(), "tenant");
        assert!(
            err.to_string()
                .starts_with("rule \"default-order\": no tenant"),
            "{err}"
        );
    }

    #[test]
    fn parameters_and_object_storage() {
        let n = normalizer(
            r#"
rules:
  - name: p
    match: {type: "t.p"}
    action: migrate-out
    tenant: data:/tenant
    parameters:
      plan: data:/plan/name
      seats: data:/seats
      trial: data:/trial
      limits: data:/limits
      tags: data:/tags
      region: extension:region
      kind: type
    object-storage-url: data:/export/url
"#,
        );
        let data = json!({
            "tenant": "acme", "plan": {"name": "gold"}, "seats": 12.5, "trial": true,
            "limits": {"cpu": 4}, "tags": ["a", "b"], "export": {"url": "s3://exports/acme"}
        });
        let mut v = base("t.p", "/s", data);
        v["region"] = json!("eu-west-1");
        let l = n.normalize(&event(v.clone())).unwrap();
        let expected: BTreeMap<String, String> = [
            ("plan", "gold"),
            ("seats", "12.5"),
            ("trial", "true"),
            ("limits", r#"{"cpu":4}"#),
            ("tags", r#"["a","b"]"#),
            ("region", "eu-west-1"),
            ("kind", "t.p"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        assert_eq!(l.parameters, expected);
        assert_eq!(
            l.object_storage,
            Some(ObjectStorage {
                url: "s3://exports/acme".into()
            })
        );
        assert_eq!(l.rule.as_deref(), Some("p"));

        let mut missing = v.clone();
        missing["data"]["plan"] = json!({});
        let err = n.normalize(&event(missing)).unwrap_err();
        assert_eq!(err.attribute(), "data");
        assert_eq!(
            err.to_string(),
            "rule \"p\": parameter \"plan\": data:/plan/name: not found in the event data"
        );
        let mut null = v.clone();
        null["data"]["seats"] = Value::Null;
        assert!(n
            .normalize(&event(null))
            .unwrap_err()
            .to_string()
            .contains("parameter \"seats\": data:/seats: is null"));
        let mut bad_url = v.clone();
        bad_url["data"]["export"]["url"] = json!(["s3://a"]);
        let err = n.normalize(&event(bad_url)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "rule \"p\": object-storage-url: data:/export/url: is a JSON array, expected a string, number or boolean"
        );
        let mut text = v;
        text["datacontenttype"] = json!("text/plain");
        text["data"] = json!("hello");
        text["tenant"] = json!("acme");
        let err = n.normalize(&event(text)).unwrap_err();
        assert!(
            err.to_string().contains("the event data is text, not JSON"),
            "{err}"
        );
    }

    #[test]
    fn first_match_wins_without_fall_through() {
        let n = normalizer(
            r#"
rules:
  - name: specific
    match: {type: "com.acme.billing.*", source: "https://billing.acme.example/*"}
    action: delete
    tenant: data:/account
  - name: broad
    match: {type: "com.acme.*"}
    action: upsert
    tenant: data:/tenant
"#,
        );
        let v = base(
            "com.acme.billing.cancelled",
            "https://billing.acme.example/v1",
            json!({"account": "acme", "tenant": "other"}),
        );
        let l = n.normalize(&event(v.clone())).unwrap();
        assert_eq!(
            (l.rule.as_deref(), l.action.as_str(), l.tenant.as_str()),
            (Some("specific"), "delete", "acme")
        );
        // Same type from another source: only the type glob of `broad` matches.
        let mut other = v.clone();
        other["source"] = json!("/elsewhere");
        assert_eq!(
            n.normalize(&event(other)).unwrap().rule.as_deref(),
            Some("broad")
        );
        // `specific` matches but fails: its error is the answer, `broad` is not tried.
        let mut broken = v;
        broken["data"] = json!({"tenant": "other"});
        assert_eq!(
            n.normalize(&event(broken)).unwrap_err().to_string(),
            "rule \"specific\": tenant: data:/account: not found in the event data"
        );
    }

    #[test]
    fn default_rule_when_no_rule_matches() {
        let n = normalizer("rules:\n  - name: billing\n    match: {type: \"com.acme.billing.*\"}\n    action: upsert\n");
        let v = base(
            "com.acme.tenant.lifecycle.delete",
            "/x",
            json!({"tenant": "acme", "parameters": {"a": 1}}),
        );
        let l = n.normalize(&event(v)).unwrap();
        assert_eq!(
            (l.rule, l.action.as_str(), l.tenant.as_str()),
            (None, "delete", "acme")
        );
        assert_eq!(l.parameters.get("a").map(String::as_str), Some("1"));

        let err = n
            .normalize(&event(base("com.other.thing", "/x", json!({}))))
            .unwrap_err();
        assert_eq!(err.attribute(), "type");
        assert_eq!(
            err.to_string(),
            "no rule matches type \"com.other.thing\" source \"/x\"; default rule: type \"com.other.thing\" does not end in lifecycle.<action>"
        );
        let err = n
            .normalize(&event(base("lifecycle.upsert", "/x", json!({}))))
            .unwrap_err();
        assert_eq!(err.attribute(), "tenant");
        assert!(
            err.to_string().starts_with(
                "no rule matches type \"lifecycle.upsert\" source \"/x\"; default rule: no tenant"
            ),
            "{err}"
        );
    }

    #[test]
    fn load_time_validation() {
        let cases: Vec<(String, &str)> = vec![
            (
                "rules:\n  - name: a\n    match: {type: x}\n    action: upsert\n  - name: a\n    match: {type: y}\n    action: upsert\n".into(),
                "rule \"a\" (rules[1]): duplicate name, already used by rules[0]",
            ),
            (rule_with("    action: upsert\n").replace("com.acme.*", "com.[ab].*"), "rule \"r\" (rules[0]): match.type: invalid glob \"com.[ab].*\": '[' is not supported"),
            (rule_with("    action: upsert\n").replace("tenant: data:/t", "tenant: data:t"), "rule \"r\" (rules[0]): tenant: \"data:t\": a JSON pointer must be empty or start with '/'"),
            (rule_with("    action: upsert\n    paramters: {}\n"), "invalid rules YAML: rules[0]: unknown field `paramters`"),
            (rule_with("    action: explode\n"), "rule \"r\": action \"explode\" is not one of the allowed actions (admin, delete, migrate-in, migrate-out, upsert)"),
            (rule_with("    action-from: data:/op\n    action-map: {gone: vanish}\n"), "rule \"r\": action-map maps \"gone\" to \"vanish\", which is not one of the allowed actions"),
            (rule_with("    action: upsert\n    action-from: data:/op\n"), "rule \"r\" (rules[0]): set either action or action-from, not both"),
            (rule_with(""), "rule \"r\" (rules[0]): one of action or action-from is required"),
            (rule_with("    action: upsert\n    action-map: {a: delete}\n"), "action-map only applies with action-from"),
            (rule_with("    action: Upsert\n"), "action \"Upsert\" is not a short action name"),
            ("rules:\n  - name: m\n    match: {}\n    action: upsert\n".into(), "rule \"m\" (rules[0]): match needs at least one of type, source"),
            ("rules:\n  - name: \"\"\n    match: {type: x}\n    action: upsert\n".into(), "rules[0]: name must not be empty"),
            ("rules:\n  - match: {type: x}\n    action: upsert\n".into(), "invalid rules YAML: rules[0]: missing field `name`"),
            (rule_with("    action: upsert\n    parameters: {p: \"extension:a_b\"}\n"), "parameters.p: \"extension:a_b\": extension names are lower-case"),
            (rule_with("    action: upsert\n    object-storage-url: body\n"), "object-storage-url: invalid value source \"body\""),
            ("".into(), "the document is empty"),
            ("rules: [\n".into(), "invalid rules YAML"),
        ];
        for (yaml, expected) in cases {
            let text = error_text(&yaml);
            assert!(
                text.contains(expected),
                "{yaml}\n=> {text}\nexpected {expected}"
            );
        }
        // Unknown fields carry their line.
        let text = error_text(&rule_with("    action: upsert\n    paramters: {}\n"));
        assert!(text.contains("line 6"), "{text}");
        let text = error_text("rules:\n  - name: a\n    match: {typ: x}\n    action: upsert\n");
        assert!(
            text.contains("unknown field `typ`") && text.contains("line 3"),
            "{text}"
        );
        // Several problems are reported together.
        let text = error_text("rules:\n  - name: a\n    match: {}\n  - name: a\n    match: {type: x}\n    action: upsert\n");
        assert_eq!(text.matches("; ").count(), 2, "{text}");
    }

    #[test]
    fn actions_are_checked_against_the_configured_set() {
        let rules = RuleSet::parse(&rule_with("    action: reindex\n")).unwrap();
        assert!(Normalizer::with_rules(["upsert".to_owned()], rules.clone()).is_err());
        assert!(Normalizer::with_rules(["reindex".to_owned()], rules).is_ok());
    }

    #[test]
    fn the_example_file_normalizes_as_documented() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/rules.example.yaml");
        let rules = RuleSet::load(&path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            rules.names().collect::<Vec<_>>(),
            [
                "billing-subscriptions",
                "crm-accounts",
                "migration-orchestrator"
            ]
        );
        let n = Normalizer::with_rules(DEFAULT_ACTIONS.iter().map(|a| a.to_string()), rules)
            .unwrap_or_else(|e| panic!("{e}"));

        let billing = event(json!({
            "specversion": "1.0", "id": "inv-981", "type": "com.acme.billing.subscription.cancelled",
            "source": "https://billing.acme.example/subscriptions",
            "data": {"status": "cancelled", "account": {"slug": "acme-corp"}, "plan": {"name": "enterprise", "seats": 250}}
        }));
        let l = n.normalize(&billing).unwrap();
        assert_eq!(l.rule.as_deref(), Some("billing-subscriptions"));
        assert_eq!(
            (l.tenant.as_str(), l.action.as_str()),
            ("acme-corp", "delete")
        );
        assert_eq!(
            l.parameters.get("plan").map(String::as_str),
            Some("enterprise")
        );
        assert_eq!(l.parameters.get("seats").map(String::as_str), Some("250"));
        assert_eq!(l.object_storage, None);

        let crm = event(json!({
            "specversion": "1.0", "id": "crm-17", "type": "CrmAccountUpdated",
            "source": "urn:crm:acme:prod", "crmtenant": "globex", "crmregion": "eu-west-1",
            "data": {"account": {"tier": "gold", "contacts": [{"email": "ops@globex.example"}]}}
        }));
        let l = n.normalize(&crm).unwrap();
        assert_eq!(l.rule.as_deref(), Some("crm-accounts"));
        assert_eq!((l.tenant.as_str(), l.action.as_str()), ("globex", "upsert"));
        assert_eq!(
            l.parameters.get("region").map(String::as_str),
            Some("eu-west-1")
        );
        assert_eq!(l.parameters.get("tier").map(String::as_str), Some("gold"));
        assert_eq!(
            l.parameters.get("contacts").map(String::as_str),
            Some(r#"[{"email":"ops@globex.example"}]"#)
        );

        let migration = event(json!({
            "specversion": "1.0", "id": "mig-3", "type": "io.acme.migration.export-requested",
            "source": "https://migrations.acme.example/eu-west-1", "subject": "initech",
            "data": {"direction": "out", "target": {"region": "us-east-2"},
                     "bundle": {"url": "s3://tenant-moves/initech/2024-05-01.tar.zst"}}
        }));
        let l = n.normalize(&migration).unwrap();
        assert_eq!(l.rule.as_deref(), Some("migration-orchestrator"));
        assert_eq!(
            (l.tenant.as_str(), l.action.as_str()),
            ("initech", "migrate-out")
        );
        assert_eq!(
            l.parameters.get("target-region").map(String::as_str),
            Some("us-east-2")
        );
        assert_eq!(
            l.object_storage.map(|o| o.url),
            Some("s3://tenant-moves/initech/2024-05-01.tar.zst".to_owned())
        );

        // Events of the standard shape still take the default rule.
        let standard = event(json!({
            "specversion": "1.0", "id": "s-1", "type": "com.acme.tenant.lifecycle.admin",
            "source": "/ops", "tenant": "acme"
        }));
        assert_eq!(n.normalize(&standard).unwrap().rule, None);
    }

    #[test]
    fn rules_check_reports() {
        let dir = tempfile::tempdir().unwrap();
        let rules = dir.path().join("rules.yaml");
        std::fs::write(
            &rules,
            "rules:\n  - name: billing\n    match: {type: \"com.acme.billing.*\"}\n    action-from: data:/op\n    action-map: {created: upsert}\n    tenant: data:/account\n    parameters: {plan: data:/plan}\n",
        )
        .unwrap();
        let actions: Vec<String> = DEFAULT_ACTIONS.iter().map(|a| a.to_string()).collect();
        assert_eq!(check(&rules, None, &actions).unwrap(), "1 rule OK: billing");

        let ev = dir.path().join("event.json");
        std::fs::write(
            &ev,
            r#"{"specversion":"1.0","id":"1","source":"/b","type":"com.acme.billing.x","data":{"op":"created","account":"acme","plan":"gold"}}"#,
        )
        .unwrap();
        let report = check(&rules, Some(&ev), &actions).unwrap();
        let (header, body) = report.split_once('\n').unwrap();
        assert_eq!(header, "matched rule \"billing\"");
        let body: Value = serde_json::from_str(body).unwrap();
        assert_eq!(
            body,
            json!({"tenant": "acme", "action": "upsert", "parameters": {"plan": "gold"}, "objectStorage": null})
        );

        std::fs::write(&ev, r#"{"specversion":"1.0","id":"1","source":"/b","type":"lifecycle.delete","subject":"acme"}"#).unwrap();
        let report = check(&rules, Some(&ev), &actions).unwrap();
        assert!(report.starts_with("matched the default rule (no rule matches type \"lifecycle.delete\" source \"/b\")\n"), "{report}");

        std::fs::write(&ev, r#"{"specversion":"1.0","id":"1","source":"/b","type":"com.acme.billing.x","data":{"op":"paused"}}"#).unwrap();
        let err = check(&rules, Some(&ev), &actions).unwrap_err();
        assert!(matches!(err, CheckError::DoesNotNormalize { .. }));
        assert!(
            err.to_string()
                .contains("does not normalize: rule \"billing\": action: data:/op is \"paused\""),
            "{err}"
        );

        std::fs::write(&ev, r#"{"specversion":"1.0","id":"1"}"#).unwrap();
        let err = check(&rules, Some(&ev), &actions).unwrap_err();
        assert!(err.to_string().contains("not a valid CloudEvent"), "{err}");

        std::fs::write(
            &rules,
            "rules:\n  - name: billing\n    match: {type: x}\n    action: vanish\n",
        )
        .unwrap();
        let err = check(&rules, None, &actions).unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with(&format!(
                "rules file {}: rule \"billing\": action \"vanish\"",
                rules.display()
            )),
            "{text}"
        );
        assert!(!text.contains('\n'));
        let err = check(&dir.path().join("missing.yaml"), None, &actions).unwrap_err();
        assert!(
            err.to_string().starts_with("cannot read rules file"),
            "{err}"
        );
    }
}
