//! Normalization: from an accepted upstream CloudEvent to the lifecycle facts the gateway acts on
//! (tenant, action, parameters, object storage), and from those facts to the canonical CloudEvent
//! it emits (see `docs/normalization.md`).
//!
//! Layout:
//! - this module: [`Lifecycle`], [`TenantName`], [`NormalizeError`], the [`Normalizer`] and the
//!   built-in default rule;
//! - [`rules`]: the YAML rules file that maps any other upstream shape, and `rules check`;
//! - [`canonical`]: the canonical event and its `workflowName`.

pub mod canonical;
pub mod rules;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::cloudevents::{CloudEvent, Data, ExtensionValue};

pub use canonical::{
    canonical_event, workflow_name, CanonicalEvent, EmissionInput, Payload, Upstream,
};
pub use rules::{RuleSet, RulesError};

/// The actions a default deployment knows (`docs/normalization.md`).
pub const DEFAULT_ACTIONS: [&str; 5] = ["upsert", "delete", "migrate-out", "migrate-in", "admin"];

/// A tenant name: a DNS-1123 label, because it ends up in Kubernetes object and mutex names.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TenantName(String);

impl TenantName {
    pub fn parse(value: &str) -> Result<Self, String> {
        if value.is_empty() || value.len() > 63 {
            return Err(format!(
                "tenant {value:?} must be 1 to 63 characters (a DNS-1123 label)"
            ));
        }
        let bytes = value.as_bytes();
        let allowed = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-';
        if !bytes.iter().all(allowed) {
            return Err(format!(
                "tenant {value:?} may only contain lower-case letters, digits and '-' (a DNS-1123 label)"
            ));
        }
        if bytes[0] == b'-' || bytes[bytes.len() - 1] == b'-' {
            return Err(format!(
                "tenant {value:?} must start and end with a letter or digit (a DNS-1123 label)"
            ));
        }
        Ok(TenantName(value.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TenantName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What normalization extracts from an upstream event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lifecycle {
    /// The tenant the event is about; scopes the journal sequence and the Argo mutex.
    pub tenant: TenantName,
    /// The short action name (`upsert`); the emitted CloudEvent type is `lifecycle.<action>`.
    pub action: String,
    /// Named values for the teams' Jobs, carried in the canonical event's `data.parameters`.
    pub parameters: BTreeMap<String, String>,
    /// Where migrate-out exports to / migrate-in imports from; `None` when the event names none.
    pub object_storage: Option<ObjectStorage>,
    /// The rule that matched, for `rules check` and logs; `None` means the default rule.
    pub rule: Option<String>,
}

/// The object storage location of a migration, as emitted in `data.objectStorage`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectStorage {
    /// The location as the upstream system named it (e.g. `s3://bucket/tenant/export`).
    pub url: String,
}

/// What normalization found besides tenant and action, as the journal keeps it (the `lifecycle`
/// column): fixed at ingest, so a rules change never alters what an accepted event emits.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LifecycleDetails {
    /// Named values for the workflow, from the rule's parameter mappings.
    #[serde(default)]
    pub parameters: BTreeMap<String, String>,
    /// Where a migration reads or writes the tenant's data.
    #[serde(default, rename = "objectStorage")]
    pub object_storage: Option<ObjectStorage>,
}

impl LifecycleDetails {
    /// The details of a freshly normalized event.
    pub fn of(lifecycle: &Lifecycle) -> Self {
        LifecycleDetails {
            parameters: lifecycle.parameters.clone(),
            object_storage: lifecycle.object_storage.clone(),
        }
    }

    /// The JSON text the journal stores.
    pub fn to_json_string(&self) -> String {
        // A map of strings and an optional struct of strings always serialize.
        serde_json::to_string(self).unwrap_or_else(|_| String::from("{}"))
    }
}

/// Why a valid CloudEvent is not a lifecycle event this gateway can act on (HTTP 422). Every
/// message is meant to be read by the upstream team as the problem's detail.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NormalizeError {
    #[error("type {ty:?} does not end in lifecycle.<action>")]
    NotLifecycle {
        /// The event's type.
        ty: String,
    },
    #[error("action {action:?} is not one of the allowed actions ({allowed})")]
    UnknownAction {
        /// The action the type named.
        action: String,
        /// The configured actions, comma-separated, so the sender sees what would work.
        allowed: String,
    },
    #[error("no tenant: set the tenant extension, the subject, or data /tenant or /tenant/id")]
    NoTenant,
    #[error("{0}")]
    InvalidTenant(String),
    /// A rule matched the event but could not take what it needs from it. Rules do not fall
    /// through: the first matching rule owns the event.
    #[error("rule {rule:?}: {reason}")]
    Rule {
        /// The name of the rule that matched.
        rule: String,
        /// The CloudEvent attribute the rule read (`data`, `subject`, an extension name, ...).
        attribute: String,
        /// What the rule could not find or use.
        reason: String,
    },
    /// Rules are configured, none matched, and the default rule failed too.
    #[error("no rule matches type {ty:?} source {event_source:?}; default rule: {default}")]
    NoRuleMatches {
        /// The event's type, which no rule's glob matched.
        ty: String,
        /// The event's source (not named `source`: thiserror reserves that for causes).
        event_source: String,
        /// Why the default rule failed.
        default: Box<NormalizeError>,
    },
}

impl NormalizeError {
    /// The CloudEvent attribute the problem is about, for per-index error lists.
    pub fn attribute(&self) -> &str {
        match self {
            NormalizeError::NotLifecycle { .. } | NormalizeError::UnknownAction { .. } => "type",
            NormalizeError::NoTenant | NormalizeError::InvalidTenant(_) => "tenant",
            NormalizeError::Rule { attribute, .. } => attribute,
            NormalizeError::NoRuleMatches { default, .. } => default.attribute(),
        }
    }
}

/// Maps upstream events to [`Lifecycle`] facts. Built once at start from configuration.
#[derive(Debug, Clone)]
pub struct Normalizer {
    /// Short action names a lifecycle may carry; anything else is a 422.
    allowed_actions: BTreeSet<String>,
    /// The rules file, tried in order before the default rule; shared because every ingest
    /// worker holds a clone of the normalizer.
    rules: Arc<[rules::Rule]>,
}

impl Default for Normalizer {
    fn default() -> Self {
        Normalizer::new(DEFAULT_ACTIONS.iter().map(|a| a.to_string()))
    }
}

impl Normalizer {
    /// A normalizer with the default rule only.
    pub fn new(allowed_actions: impl IntoIterator<Item = String>) -> Self {
        Normalizer {
            allowed_actions: allowed_actions.into_iter().collect(),
            rules: Arc::from(Vec::new()),
        }
    }

    /// A normalizer that tries `rules` first. Fails when a rule names an action (literally or
    /// as an `action-map` target) that is not allowed, so such a file never goes live.
    pub fn with_rules(
        allowed_actions: impl IntoIterator<Item = String>,
        rules: RuleSet,
    ) -> Result<Self, RulesError> {
        let allowed_actions: BTreeSet<String> = allowed_actions.into_iter().collect();
        rules.check_actions(&allowed_actions)?;
        Ok(Normalizer {
            allowed_actions,
            rules: Arc::from(rules.into_rules()),
        })
    }

    /// The first rule whose globs match the event owns it; a failure inside that rule is the
    /// answer (no fall-through, so a half-matching event never silently takes the default
    /// path). Without a matching rule the default rule applies.
    pub fn normalize(&self, event: &CloudEvent) -> Result<Lifecycle, NormalizeError> {
        if let Some(rule) = self.rules.iter().find(|r| r.matches(event)) {
            return rule.apply(event, self);
        }
        self.default_rule(event).map_err(|e| {
            if self.rules.is_empty() {
                e
            } else {
                NormalizeError::NoRuleMatches {
                    ty: event.ty.clone(),
                    event_source: event.source.clone(),
                    default: Box::new(e),
                }
            }
        })
    }

    /// The default rule: the action from a `lifecycle.<action>` type suffix; the tenant from, in
    /// order, the `tenant` extension, `subject`, data `/tenant` (a string) or data `/tenant/id`.
    /// The first place that names a tenant decides; an invalid name there is an error rather
    /// than a reason to look further. Parameters come from data `/parameters` and the object
    /// storage location from data `/objectStorage/url`, when they have those shapes.
    fn default_rule(&self, event: &CloudEvent) -> Result<Lifecycle, NormalizeError> {
        let action = lifecycle_action(&event.ty).ok_or_else(|| NormalizeError::NotLifecycle {
            ty: event.ty.clone(),
        })?;
        self.check_action(action)?;
        let tenant = default_tenant(event)?;
        let data = match &event.data {
            Some(Data::Json(data)) => Some(data),
            _ => None,
        };
        Ok(Lifecycle {
            tenant,
            action: action.to_owned(),
            parameters: data.map(default_parameters).unwrap_or_default(),
            object_storage: data
                .and_then(|d| d.pointer("/objectStorage/url"))
                .and_then(Value::as_str)
                .map(|url| ObjectStorage {
                    url: url.to_owned(),
                }),
            rule: None,
        })
    }

    fn check_action(&self, action: &str) -> Result<(), NormalizeError> {
        if self.allowed_actions.contains(action) {
            return Ok(());
        }
        Err(NormalizeError::UnknownAction {
            action: action.to_owned(),
            allowed: self.allowed_list(),
        })
    }

    fn allowed_list(&self) -> String {
        self.allowed_actions
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// `com.acme.tenant.lifecycle.upsert` -> `upsert`; the suffix must be the last dot segment.
fn lifecycle_action(ty: &str) -> Option<&str> {
    let (prefix, action) = ty.rsplit_once('.')?;
    let is_lifecycle = prefix == "lifecycle" || prefix.ends_with(".lifecycle");
    (is_lifecycle && is_action_name(action)).then_some(action)
}

/// Short action names are what `lifecycle.<action>` and Workflow names can carry.
pub(crate) fn is_action_name(action: &str) -> bool {
    !action.is_empty()
        && action
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// The default tenant lookup order, shared with rules that do not say where the tenant is.
pub(crate) fn default_tenant(event: &CloudEvent) -> Result<TenantName, NormalizeError> {
    match find_tenant(event)? {
        Some(t) => TenantName::parse(t).map_err(NormalizeError::InvalidTenant),
        None => Err(NormalizeError::NoTenant),
    }
}

fn find_tenant(event: &CloudEvent) -> Result<Option<&str>, NormalizeError> {
    match event.extension("tenant") {
        Some(ExtensionValue::String(s)) => return Ok(Some(s)),
        Some(_) => {
            return Err(NormalizeError::InvalidTenant(
                "the tenant extension must be a string".into(),
            ))
        }
        None => {}
    }
    if let Some(subject) = &event.subject {
        return Ok(Some(subject));
    }
    if let Some(Data::Json(data)) = &event.data {
        if let Some(t) = data.pointer("/tenant").and_then(|v| v.as_str()) {
            return Ok(Some(t));
        }
        if let Some(t) = data.pointer("/tenant/id").and_then(|v| v.as_str()) {
            return Ok(Some(t));
        }
    }
    Ok(None)
}

/// Data `/parameters` when it is an object whose values are all strings, numbers or booleans;
/// anything else yields no parameters, because the default rule has no one to report a
/// half-usable shape to (a rules file makes it explicit).
fn default_parameters(data: &Value) -> BTreeMap<String, String> {
    let Some(Value::Object(members)) = data.pointer("/parameters") else {
        return BTreeMap::new();
    };
    members
        .iter()
        .map(|(k, v)| scalar_string(v).map(|s| (k.clone(), s)))
        .collect::<Option<_>>()
        .unwrap_or_default()
}

/// Strings as they are, numbers and booleans in their JSON spelling; `None` for the rest.
pub(crate) fn scalar_string(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Null | Value::Array(_) | Value::Object(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(ty: &str) -> CloudEvent {
        CloudEvent::new("1", "/billing", ty)
    }

    fn with_tenant_ext(ty: &str, tenant: &str) -> CloudEvent {
        let mut e = event(ty);
        e.extensions
            .insert("tenant".into(), ExtensionValue::String(tenant.into()));
        e
    }

    #[test]
    fn action_comes_from_the_type_suffix() {
        let n = Normalizer::default();
        for (ty, action) in [
            ("com.acme.tenant.lifecycle.upsert", "upsert"),
            ("lifecycle.migrate-out", "migrate-out"),
        ] {
            let l = n.normalize(&with_tenant_ext(ty, "acme")).unwrap();
            assert_eq!(l.action, action);
            assert_eq!(l.rule, None);
        }
        for ty in [
            "com.acme.tenant.upsert",
            "com.acme.mylifecycle.upsert",
            "lifecycle.",
        ] {
            assert!(matches!(
                n.normalize(&with_tenant_ext(ty, "acme")),
                Err(NormalizeError::NotLifecycle { .. })
            ));
        }
        assert!(matches!(
            n.normalize(&with_tenant_ext("lifecycle.explode", "acme")),
            Err(NormalizeError::UnknownAction { .. })
        ));
    }

    #[test]
    fn tenant_sources_in_order() {
        let n = Normalizer::default();
        let ty = "lifecycle.upsert";
        let mut e = event(ty);
        e.data = Some(Data::Json(json!({"tenant": {"id": "from-id"}})));
        assert_eq!(n.normalize(&e).unwrap().tenant.as_str(), "from-id");
        e.data = Some(Data::Json(json!({"tenant": "from-data"})));
        assert_eq!(n.normalize(&e).unwrap().tenant.as_str(), "from-data");
        e.subject = Some("from-subject".into());
        assert_eq!(n.normalize(&e).unwrap().tenant.as_str(), "from-subject");
        e.extensions
            .insert("tenant".into(), ExtensionValue::String("from-ext".into()));
        assert_eq!(n.normalize(&e).unwrap().tenant.as_str(), "from-ext");
    }

    #[test]
    fn missing_or_invalid_tenant() {
        let n = Normalizer::default();
        assert_eq!(
            n.normalize(&event("lifecycle.upsert")),
            Err(NormalizeError::NoTenant)
        );
        for bad in ["Acme", "-acme", "acme-", "ac_me", &"a".repeat(64)] {
            assert!(
                matches!(
                    n.normalize(&with_tenant_ext("lifecycle.upsert", bad)),
                    Err(NormalizeError::InvalidTenant(_))
                ),
                "{bad} accepted"
            );
        }
        assert!(TenantName::parse(&"a".repeat(63)).is_ok());
        assert!(TenantName::parse("0tenant-9").is_ok());
    }

    #[test]
    fn default_rule_parameters_and_object_storage() {
        let n = Normalizer::default();
        let mut e = with_tenant_ext("lifecycle.migrate-out", "acme");
        e.data = Some(Data::Json(json!({
            "parameters": {"plan": "gold", "seats": 12, "trial": false},
            "objectStorage": {"url": "s3://exports/acme"}
        })));
        let l = n.normalize(&e).unwrap();
        let expected: BTreeMap<String, String> =
            [("plan", "gold"), ("seats", "12"), ("trial", "false")]
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

        // Shapes the default rule cannot use yield nothing rather than an error.
        for data in [
            json!({"parameters": {"nested": {"a": 1}}, "objectStorage": {"url": 5}}),
            json!({"parameters": ["a"], "objectStorage": "s3://x"}),
            json!({"parameters": {"n": null}}),
            json!("text"),
        ] {
            e.data = Some(Data::Json(data.clone()));
            let l = n.normalize(&e).unwrap();
            assert!(l.parameters.is_empty(), "{data}");
            assert_eq!(l.object_storage, None, "{data}");
        }
        e.data = Some(Data::Text("plain".into()));
        assert!(n.normalize(&e).unwrap().parameters.is_empty());
    }

    #[test]
    fn default_errors_keep_their_attribute() {
        let n = Normalizer::default();
        let e = n.normalize(&event("com.acme.invoice.paid")).unwrap_err();
        assert_eq!(e.attribute(), "type");
        assert_eq!(
            e.to_string(),
            "type \"com.acme.invoice.paid\" does not end in lifecycle.<action>"
        );
        let e = n.normalize(&event("lifecycle.upsert")).unwrap_err();
        assert_eq!(e.attribute(), "tenant");
    }
}
