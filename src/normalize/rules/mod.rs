//! The YAML rules file: maps upstream CloudEvents that do not follow the default
//! `...lifecycle.<action>` shape to lifecycle facts, and `rules check` (see
//! `docs/normalization.md`).
//!
//! The file is parsed once into [`Rule`]s whose globs, value sources and action specs are already
//! typed, so a running gateway never meets a malformed rule. Problems that serde sees (unknown
//! fields, wrong types) carry YAML line and column; the rest name the rule. This module parses
//! and applies rules; [`source`] holds where a rule finds a value in an event, [`check`] the
//! `rules check` command.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use wildmatch::WildMatch;

use super::{
    default_tenant, is_action_name, Lifecycle, NormalizeError, Normalizer, ObjectStorage,
    TenantName,
};
use crate::cloudevents::CloudEvent;

mod check;
mod source;

pub use check::{check, CheckError};
pub use source::ValueSource;

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

#[cfg(test)]
mod tests;
