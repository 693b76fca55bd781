//! Normalization: from an accepted upstream CloudEvent to the lifecycle facts the gateway acts on
//! (which tenant, which action). This holds the built-in default rule of DESIGN section 4; YAML
//! rules files come later behind the same [`Normalizer`].

use std::collections::BTreeSet;
use std::fmt;

use crate::cloudevents::{CloudEvent, Data, ExtensionValue};

/// The actions a default deployment knows (DESIGN section 4).
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
    pub tenant: TenantName,
    /// The short action name (`upsert`); the emitted CloudEvent type is `lifecycle.<action>`.
    pub action: String,
}

/// Why a valid CloudEvent is not a lifecycle event this gateway can act on (HTTP 422).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NormalizeError {
    #[error("type {ty:?} does not end in lifecycle.<action>, and no rule matches it")]
    NotLifecycle { ty: String },
    #[error("action {action:?} is not one of the allowed actions ({allowed})")]
    UnknownAction { action: String, allowed: String },
    #[error("no tenant: set the tenant extension, the subject, or data /tenant or /tenant/id")]
    NoTenant,
    #[error("{0}")]
    InvalidTenant(String),
}

impl NormalizeError {
    /// The CloudEvent attribute the problem is about, for per-index error lists.
    pub fn attribute(&self) -> &'static str {
        match self {
            NormalizeError::NotLifecycle { .. } | NormalizeError::UnknownAction { .. } => "type",
            NormalizeError::NoTenant | NormalizeError::InvalidTenant(_) => "tenant",
        }
    }
}

/// Maps upstream events to [`Lifecycle`] facts. Built once at start from configuration.
#[derive(Debug, Clone)]
pub struct Normalizer {
    /// Short action names accepted after `lifecycle.`; anything else is a 422.
    allowed_actions: BTreeSet<String>,
}

impl Default for Normalizer {
    fn default() -> Self {
        Normalizer::new(DEFAULT_ACTIONS.iter().map(|a| a.to_string()))
    }
}

impl Normalizer {
    pub fn new(allowed_actions: impl IntoIterator<Item = String>) -> Self {
        Normalizer {
            allowed_actions: allowed_actions.into_iter().collect(),
        }
    }

    /// The default rule: the action from a `lifecycle.<action>` type suffix; the tenant from, in
    /// order, the `tenant` extension, `subject`, data `/tenant` (a string) or data `/tenant/id`.
    /// The first place that names a tenant decides; an invalid name there is an error rather
    /// than a reason to look further.
    pub fn normalize(&self, event: &CloudEvent) -> Result<Lifecycle, NormalizeError> {
        let action = lifecycle_action(&event.ty).ok_or_else(|| NormalizeError::NotLifecycle {
            ty: event.ty.clone(),
        })?;
        if !self.allowed_actions.contains(action) {
            return Err(NormalizeError::UnknownAction {
                action: action.to_owned(),
                allowed: self
                    .allowed_actions
                    .iter()
                    .map(String::as_str)
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        let tenant = match find_tenant(event)? {
            Some(t) => TenantName::parse(t).map_err(NormalizeError::InvalidTenant)?,
            None => return Err(NormalizeError::NoTenant),
        };
        Ok(Lifecycle {
            tenant,
            action: action.to_owned(),
        })
    }
}

/// `com.acme.tenant.lifecycle.upsert` -> `upsert`; the suffix must be the last dot segment.
fn lifecycle_action(ty: &str) -> Option<&str> {
    let (prefix, action) = ty.rsplit_once('.')?;
    let is_lifecycle = prefix == "lifecycle" || prefix.ends_with(".lifecycle");
    let valid = !action.is_empty()
        && action
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    (is_lifecycle && valid).then_some(action)
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
            assert_eq!(
                n.normalize(&with_tenant_ext(ty, "acme")).unwrap().action,
                action
            );
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
}
