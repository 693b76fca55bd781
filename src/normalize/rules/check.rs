//! `tenant-gateway rules check`: validate a rules file and show how an event normalizes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::Value;

use super::{RuleSet, RulesError};
use crate::cloudevents::format::event_from_json;
use crate::normalize::{NormalizeError, Normalizer, ObjectStorage};

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
    use serde_json::json;

    use crate::normalize::DEFAULT_ACTIONS;

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
