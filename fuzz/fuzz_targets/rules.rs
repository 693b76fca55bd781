//! The rules engine on arbitrary rules files and events: parsing a rules file and applying it
//! never panics. Input: a rules file (YAML), then a line `---event---`, then a structured-mode
//! event (JSON); without the separator the whole input is the rules file and a fixed event is
//! normalized.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tenant_gateway::cloudevents::format::event_from_json;
use tenant_gateway::normalize::rules::RuleSet;
use tenant_gateway::normalize::{Normalizer, DEFAULT_ACTIONS};

const SEPARATOR: &str = "\n---event---\n";

const FIXED_EVENT: &str = r#"{"specversion":"1.0","id":"1","source":"//billing.acme.example",
  "type":"com.acme.tenant.lifecycle.upsert","subject":"acme","data":{"tenant":{"id":"acme"}}}"#;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (rules, event) = text.split_once(SEPARATOR).unwrap_or((text, FIXED_EVENT));
    let Ok(rules) = RuleSet::parse(rules) else {
        return;
    };
    let actions = DEFAULT_ACTIONS.iter().map(|a| a.to_string());
    let Ok(normalizer) = Normalizer::with_rules(actions, rules) else {
        return;
    };
    let Ok(json) = serde_json::from_str(event) else {
        return;
    };
    if let Ok(event) = event_from_json(json) {
        let _ = normalizer.normalize(&event);
    }
});
