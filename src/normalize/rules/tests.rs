//! Rules files end to end: parsed, validated and applied to events by a [`Normalizer`].

use super::*;
use crate::cloudevents::format::event_from_json;
use crate::normalize::DEFAULT_ACTIONS;
use serde_json::{json, Value};

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
    format!("rules:\n  - name: r\n    match: {{type: \"com.acme.*\"}}\n    tenant: data:/t\n{body}")
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
