//! `docs/openapi.json` against the `api` types: what the server serves must describe what it
//! sends and accepts.

use std::collections::BTreeSet;

use serde_json::{json, Value};

use crate::admin::api::{
    ActionRequest, AttemptOutcome, AttemptView, BulkReplayRequest, DryRunResult, EmissionView,
    EventDetail, EventFilter, EventPage, EventStatus, EventSummary, Lifecycle, LifecycleOutcome,
    OperatorActionView, ReplayJobList, ReplayJobStatus, ReplayJobView, ReplayResult, SkipResult,
    StatusCounts, TenantPage, TenantStateView, TenantSummaryView, TenantView, TimelineEntry,
    WorkflowPhase, WorkflowView,
};

const DOCUMENT: &str = crate::admin::OPENAPI_DOCUMENT;

fn document() -> Value {
    serde_json::from_str(DOCUMENT).expect("docs/openapi.json is JSON")
}

/// The document compiled with `#/components/schemas/{name}` as its root, so the schema's
/// own `#/components/...` references resolve.
fn validator(doc: &Value, name: &str) -> jsonschema::Validator {
    let mut root = doc.clone();
    root["$ref"] = json!(format!("#/components/schemas/{name}"));
    jsonschema::options()
        .with_draft(jsonschema::Draft::Draft202012)
        .should_validate_formats(true)
        .build(&root)
        .unwrap_or_else(|e| panic!("{name} does not compile: {e}"))
}

fn assert_valid(doc: &Value, name: &str, instance: &Value) {
    let validator = validator(doc, name);
    let errors: Vec<String> = validator
        .iter_errors(instance)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{name}: {errors:?}\n{instance:#}");
}

fn assert_invalid(doc: &Value, name: &str, instance: &Value) {
    assert!(
        !validator(doc, name).is_valid(instance),
        "{name} accepts {instance:#}"
    );
}

fn uuid(n: u128) -> uuid::Uuid {
    uuid::Uuid::from_u128(0x0190_a2b4_0000_7000_8000_0000_0000_0000 + n)
}

fn full_filter() -> EventFilter {
    EventFilter {
        tenant: Some("acme".into()),
        action: Some("upsert".into()),
        status: Some(EventStatus::Dead),
        source: Some("/crm".into()),
        since: Some("2024-05-01T10:00:00Z".into()),
        until: Some("2024-05-01T12:00:00.5Z".into()),
        workflow_phase: Some("Failed,Error".into()),
    }
}

fn workflow(full: bool) -> WorkflowView {
    WorkflowView {
        name: "acme-upsert-3-x".into(),
        phase: if full {
            WorkflowPhase::Failed
        } else {
            WorkflowPhase::Pending
        },
        started_at: full.then(|| "2024-05-01T12:00:10Z".into()),
        finished_at: full.then(|| "2024-05-01T12:01:10Z".into()),
        message: full.then(|| "child 'migrate' failed".into()),
        url: full.then(|| "https://argo.example/workflows/argo/acme-upsert-3-x".into()),
    }
}

fn tenant_state(full: bool) -> TenantStateView {
    TenantStateView {
        lifecycle: if full {
            Lifecycle::MigratedOut
        } else {
            Lifecycle::Unknown
        },
        last_action: full.then(|| "delete".into()),
        last_outcome: full.then_some(LifecycleOutcome::Failed),
        updated_at: full.then(|| "2024-05-01T12:01:10.123456Z".into()),
    }
}

fn tenant_summary(full: bool) -> TenantSummaryView {
    TenantSummaryView {
        tenant: "acme".into(),
        parked: full,
        state: tenant_state(full),
        last_sequence: 3,
    }
}

fn summary(time: Option<&str>) -> EventSummary {
    EventSummary {
        event_id: uuid(1),
        tenant: "acme".into(),
        action: "upsert".into(),
        sequence: 3,
        status: EventStatus::Dead,
        source: "/crm".into(),
        id: "crm-3".into(),
        event_type: "com.acme.tenant.lifecycle.upsert".into(),
        time: time.map(str::to_owned),
        received_at: "2024-05-01T12:00:00.123Z".into(),
    }
}

fn attempt(full: bool) -> AttemptView {
    AttemptView {
        attempt: 1,
        started_at: "2024-05-01T12:00:01Z".into(),
        finished_at: "2024-05-01T12:00:02Z".into(),
        sink: "webhook".into(),
        outcome: if full {
            AttemptOutcome::Permanent
        } else {
            AttemptOutcome::Delivered
        },
        status_code: full.then_some(500),
        error: full.then(|| "HTTP 500".into()),
    }
}

fn emission(full: bool) -> EmissionView {
    EmissionView {
        emission_id: uuid(2),
        replay_of: full.then(|| uuid(1)),
        replay_job: full.then(|| uuid(3)),
        status: EventStatus::Dead,
        created_at: "2024-05-01T12:00:00Z".into(),
        finished_at: full.then(|| "2024-05-01T12:05:00Z".into()),
        last_error: full.then(|| "HTTP 500".into()),
        replaced_by: full.then(|| uuid(4)),
        workflow_name: "acme-upsert-3-x".into(),
        workflow_url: full.then(|| "https://argo.example/workflows/argo/x".into()),
        workflow: full.then(|| workflow(true)),
        delivery_attempts: if full { vec![attempt(true)] } else { vec![] },
    }
}

fn action(full: bool) -> OperatorActionView {
    OperatorActionView {
        at: "2024-05-01T12:10:00Z".into(),
        actor: "ops".into(),
        action: "replay".into(),
        event_id: full.then(|| uuid(1)),
        tenant: full.then(|| "acme".into()),
        emission_id: full.then(|| uuid(2)),
        job_id: full.then(|| uuid(3)),
        reason: full.then(|| "argo fixed".into()),
    }
}

fn job(full: bool) -> ReplayJobView {
    ReplayJobView {
        id: uuid(3),
        status: if full {
            ReplayJobStatus::Failed
        } else {
            ReplayJobStatus::Running
        },
        filter: if full {
            full_filter()
        } else {
            EventFilter::default()
        },
        rate: 12.5,
        actor: "loopback".into(),
        reason: full.then(|| "argo fixed".into()),
        created_at: "2024-05-01T12:00:00Z".into(),
        finished_at: full.then(|| "2024-05-01T12:01:00Z".into()),
        total: 10,
        replayed: 4,
        error: full.then(|| "journal closed".into()),
    }
}

/// For each component schema of an `api` type: an instance with every optional member set,
/// and one with as few as the type allows.
fn samples() -> Vec<(&'static str, Value, Value)> {
    let to = |v: &dyn erased::Ser| v.json();
    vec![
        (
            "EventFilter",
            to(&full_filter()),
            to(&EventFilter::default()),
        ),
        (
            "EventSummary",
            to(&summary(Some("2024-05-01T11:59:59Z"))),
            to(&summary(None)),
        ),
        (
            "EventPage",
            to(&EventPage {
                events: vec![summary(None)],
                next_cursor: Some("opaque".into()),
            }),
            to(&EventPage {
                events: vec![],
                next_cursor: None,
            }),
        ),
        ("AttemptView", to(&attempt(true)), to(&attempt(false))),
        ("EmissionView", to(&emission(true)), to(&emission(false))),
        ("WorkflowView", to(&workflow(true)), to(&workflow(false))),
        (
            "TenantStateView",
            to(&tenant_state(true)),
            to(&tenant_state(false)),
        ),
        (
            "TenantSummaryView",
            to(&tenant_summary(true)),
            to(&tenant_summary(false)),
        ),
        (
            "TenantPage",
            to(&TenantPage {
                tenants: vec![tenant_summary(true), tenant_summary(false)],
                next_cursor: Some("YWNtZQ".into()),
            }),
            to(&TenantPage {
                tenants: vec![],
                next_cursor: None,
            }),
        ),
        ("OperatorActionView", to(&action(true)), to(&action(false))),
        (
            "EventDetail",
            to(&EventDetail {
                event: summary(Some("2024-05-01T11:59:59Z")),
                upstream: json!({"specversion": "1.0", "id": "crm-3"}),
                canonical: json!({"specversion": "1.0", "type": "lifecycle.upsert"}),
                emissions: vec![emission(true)],
                operator_actions: vec![action(true)],
            }),
            to(&EventDetail {
                event: summary(None),
                upstream: json!({}),
                canonical: json!({}),
                emissions: vec![],
                operator_actions: vec![],
            }),
        ),
        (
            "ActionRequest",
            to(&ActionRequest {
                reason: Some("why".into()),
            }),
            to(&ActionRequest::default()),
        ),
        (
            "ReplayResult",
            to(&ReplayResult {
                event_id: uuid(1),
                tenant: "acme".into(),
                emission_id: uuid(5),
                workflow_name: "acme-upsert-3-y".into(),
                placement: "in-place".into(),
            }),
            to(&ReplayResult {
                event_id: uuid(1),
                tenant: "acme".into(),
                emission_id: uuid(5),
                workflow_name: "acme-upsert-3-y".into(),
                placement: "queued".into(),
            }),
        ),
        (
            "SkipResult",
            to(&SkipResult {
                event_id: uuid(1),
                tenant: "acme".into(),
                emission_id: uuid(2),
                tenant_parked: true,
            }),
            to(&SkipResult {
                event_id: uuid(1),
                tenant: "acme".into(),
                emission_id: uuid(2),
                tenant_parked: false,
            }),
        ),
        (
            "StatusCounts",
            to(&StatusCounts {
                pending: 1,
                delivered: 2,
                dead: 3,
                skipped: 4,
            }),
            to(&StatusCounts::default()),
        ),
        (
            "TimelineEntry",
            to(&TimelineEntry {
                event: summary(Some("2024-05-01T11:59:59Z")),
                emissions: vec![emission(true)],
            }),
            to(&TimelineEntry {
                event: summary(None),
                emissions: vec![],
            }),
        ),
        (
            "TenantView",
            to(&TenantView {
                tenant: "acme".into(),
                parked: true,
                parked_by: Some(summary(None)),
                parked_reason: Some("workflow acme-upsert-3-x Failed".into()),
                counts: StatusCounts::default(),
                last_sequence: 3,
                state: tenant_state(true),
                timeline: vec![TimelineEntry {
                    event: summary(None),
                    emissions: vec![emission(false)],
                }],
                operator_actions: vec![action(true)],
            }),
            to(&TenantView {
                tenant: "acme".into(),
                parked: false,
                parked_by: None,
                parked_reason: None,
                counts: StatusCounts::default(),
                last_sequence: 0,
                state: tenant_state(false),
                timeline: vec![],
                operator_actions: vec![],
            }),
        ),
        (
            "BulkReplayRequest",
            to(&BulkReplayRequest {
                filter: full_filter(),
                dry_run: true,
                rate: Some(0.5),
                reason: Some("argo fixed".into()),
                expected_count: Some(10),
            }),
            to(&BulkReplayRequest {
                filter: EventFilter {
                    tenant: Some("acme".into()),
                    ..EventFilter::default()
                },
                ..BulkReplayRequest::default()
            }),
        ),
        (
            "DryRunResult",
            to(&DryRunResult {
                count: 12,
                sample: vec![summary(None)],
            }),
            to(&DryRunResult {
                count: 0,
                sample: vec![],
            }),
        ),
        ("ReplayJobView", to(&job(true)), to(&job(false))),
        (
            "ReplayJobList",
            to(&ReplayJobList {
                jobs: vec![job(true), job(false)],
            }),
            to(&ReplayJobList { jobs: vec![] }),
        ),
    ]
}

/// Serialize any of the sample values without naming each type.
mod erased {
    pub trait Ser {
        fn json(&self) -> serde_json::Value;
    }
    impl<T: serde::Serialize> Ser for T {
        fn json(&self) -> serde_json::Value {
            serde_json::to_value(self).expect("serializes")
        }
    }
}

/// Property names a schema declares, following `allOf` and `$ref`.
fn declared_properties(doc: &Value, schema: &Value) -> BTreeSet<String> {
    if let Some(target) = schema["$ref"].as_str() {
        let target = doc.pointer(&target[1..]).expect("ref resolves");
        return declared_properties(doc, target);
    }
    let mut names: BTreeSet<String> = schema["properties"]
        .as_object()
        .into_iter()
        .flat_map(|properties| properties.keys().cloned())
        .collect();
    for part in schema["allOf"].as_array().into_iter().flatten() {
        names.extend(declared_properties(doc, part));
    }
    names
}

fn collect_refs<'v>(value: &'v Value, refs: &mut Vec<&'v str>) {
    match value {
        Value::Object(map) => {
            for (key, value) in map {
                match (key.as_str(), value) {
                    ("$ref", Value::String(target)) => refs.push(target),
                    _ => collect_refs(value, refs),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect_refs(v, refs)),
        _ => {}
    }
}

#[test]
fn it_is_openapi_3_1_and_every_reference_resolves() {
    let doc = document();
    assert_eq!(doc["openapi"], "3.1.0");
    assert!(doc["info"]["title"].is_string() && doc["info"]["version"].is_string());
    let mut refs = Vec::new();
    collect_refs(&doc, &mut refs);
    assert!(refs.len() > 50, "{}", refs.len());
    for target in refs {
        assert!(target.starts_with("#/components/"), "{target}");
        assert!(
            doc.pointer(&target[1..]).is_some(),
            "{target} does not resolve"
        );
    }
}

#[test]
fn every_route_of_the_contract_is_described() {
    let doc = document();
    let routes: &[(&str, &str, &[&str])] = &[
        ("/healthz", "get", &["200"]),
        ("/readyz", "get", &["200", "503"]),
        ("/metrics", "get", &["200"]),
        ("/admin/openapi.json", "get", &["200"]),
        (
            "/admin/v1/events",
            "get",
            &["200", "400", "401", "500", "503"],
        ),
        (
            "/admin/v1/events/{eventId}",
            "get",
            &["200", "400", "401", "404", "500", "503"],
        ),
        (
            "/admin/v1/events/{eventId}/replay",
            "post",
            &["202", "400", "401", "404", "500", "503"],
        ),
        (
            "/admin/v1/events/{eventId}/skip",
            "post",
            &["200", "400", "401", "404", "409", "500", "503"],
        ),
        (
            "/admin/v1/tenants",
            "get",
            &["200", "400", "401", "500", "503"],
        ),
        (
            "/admin/v1/tenants/{tenant}",
            "get",
            &["200", "400", "401", "404", "500", "503"],
        ),
        (
            "/admin/v1/replays",
            "post",
            &["200", "202", "400", "401", "409", "500", "503"],
        ),
        ("/admin/v1/replays", "get", &["200", "401", "500", "503"]),
        (
            "/admin/v1/replays/{jobId}",
            "get",
            &["200", "400", "401", "404", "500", "503"],
        ),
        (
            "/admin/v1/replays/{jobId}/cancel",
            "post",
            &["200", "400", "401", "404", "409", "500", "503"],
        ),
    ];
    let mut described = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            described += 1;
            let expected = routes
                .iter()
                .find(|(p, m, _)| p == path && m == method)
                .unwrap_or_else(|| panic!("{method} {path} is not in the contract"));
            let codes: Vec<&str> = operation["responses"]
                .as_object()
                .unwrap()
                .keys()
                .map(String::as_str)
                .collect();
            assert_eq!(codes, expected.2, "{method} {path}");
            let security = &operation["security"];
            if path.starts_with("/admin/v1/") {
                // A token, or none: the empty alternative is a loopback listener without
                // admin tokens (`the_document_says_when_an_admin_token_is_required`).
                let token_or_loopback = json!([{"adminToken": []}, {}]);
                assert_eq!(security, &token_or_loopback, "{method} {path}");
            } else {
                assert_eq!(security, &json!([]), "{method} {path}");
            }
        }
    }
    assert_eq!(described, routes.len());
    assert!(doc.get("security").is_none(), "security is per operation");
    let scheme = &doc["components"]["securitySchemes"]["adminToken"];
    assert_eq!(
        (&scheme["type"], &scheme["scheme"]),
        (&json!("http"), &json!("bearer"))
    );
    let limit = &doc["paths"]["/admin/v1/events"]["get"]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "limit")
        .unwrap()["schema"];
    assert_eq!(
        limit,
        &json!({"type": "integer", "minimum": 1, "maximum": 1000, "default": 100})
    );
}

#[test]
fn every_schema_is_valid_json_schema_2020_12() {
    let doc = document();
    for (name, schema) in doc["components"]["schemas"].as_object().unwrap() {
        if let Err(error) = jsonschema::meta::validate(schema) {
            panic!("{name}: {error}");
        }
        validator(&doc, name);
    }
}

#[test]
fn the_schemas_accept_what_the_types_serialize_and_name_every_member() {
    let doc = document();
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    let samples = samples();
    for (name, full, minimal) in &samples {
        assert!(schemas.contains_key(*name), "{name} has no schema");
        assert_valid(&doc, name, full);
        assert_valid(&doc, name, minimal);
        // Every member the type serializes is declared, and nothing else: the full sample
        // sets every optional member.
        let declared = declared_properties(&doc, &schemas[*name]);
        let serialized: BTreeSet<String> = full.as_object().unwrap().keys().cloned().collect();
        assert_eq!(declared, serialized, "{name}");
        // `required` is what the type always sends except its `Option`s (which serialize
        // as null) and members it skips when empty or defaulted.
        let required: BTreeSet<String> = schemas[*name]["required"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|r| r.as_str().unwrap().to_owned())
            .collect();
        for member in &required {
            assert!(
                minimal.get(member).is_some_and(|v| !v.is_null()),
                "{name}.{member} is required but the type may leave it out"
            );
        }
    }
    // Every api type has a sample, and the document has no other object schema but these.
    let sampled: BTreeSet<&str> = samples.iter().map(|(name, ..)| *name).collect();
    let extra: BTreeSet<&str> = schemas
        .keys()
        .map(String::as_str)
        .filter(|name| !sampled.contains(name))
        .collect();
    assert_eq!(
        extra,
        BTreeSet::from(["Health", "Problem", "Readiness", "Violation"])
    );
}

#[test]
fn request_bodies_refuse_unknown_members_as_the_server_does() {
    let doc = document();
    for (name, body) in [
        ("EventFilter", json!({"tenant": "acme", "tenants": "x"})),
        ("ActionRequest", json!({"reason": "x", "why": "y"})),
        (
            "BulkReplayRequest",
            json!({"filter": {"tenant": "acme"}, "dryrun": true}),
        ),
        (
            "BulkReplayRequest",
            json!({"filter": {"tenant": "acme", "x": 1}}),
        ),
    ] {
        assert_invalid(&doc, name, &body);
        let error = match name {
            "EventFilter" => serde_json::from_value::<EventFilter>(body).is_err(),
            "ActionRequest" => serde_json::from_value::<ActionRequest>(body).is_err(),
            _ => serde_json::from_value::<BulkReplayRequest>(body).is_err(),
        };
        assert!(error, "serde accepts what the document refuses");
    }
    // Null members are accepted by both (serde reads them as `None`).
    let nulls = json!({"filter": {"tenant": "acme", "status": null}, "rate": null});
    assert_valid(&doc, "BulkReplayRequest", &nulls);
    assert!(serde_json::from_value::<BulkReplayRequest>(nulls).is_ok());
    assert_invalid(&doc, "BulkReplayRequest", &json!({"filter": {}, "rate": 0}));
    assert_invalid(
        &doc,
        "BulkReplayRequest",
        &json!({"filter": {}, "rate": 10001}),
    );
    assert_invalid(&doc, "BulkReplayRequest", &json!({"dryRun": true}));
}

#[test]
fn the_schemas_are_not_vacuous() {
    let doc = document();
    let mut summary = serde_json::to_value(summary(None)).unwrap();
    assert_invalid(&doc, "EventSummary", &json!({}));
    summary["status"] = json!("lost");
    assert_invalid(&doc, "EventSummary", &summary);
    summary["status"] = json!("dead");
    summary["eventId"] = json!("not-a-uuid");
    assert_invalid(&doc, "EventSummary", &summary);
    summary["eventId"] = json!(uuid(1));
    summary["receivedAt"] = json!("yesterday");
    assert_invalid(&doc, "EventSummary", &summary);
    let mut entry = serde_json::to_value(TimelineEntry {
        event: self::summary(None),
        emissions: vec![],
    })
    .unwrap();
    entry.as_object_mut().unwrap().remove("tenant");
    assert_invalid(&doc, "TimelineEntry", &entry);
    assert_invalid(&doc, "ReplayResult", &json!({"placement": "anywhere"}));
    assert_valid(
        &doc,
        "Problem",
        &json!({
            "type": "urn:tenant-gateway:problem:event-not-found",
            "title": "Event not found", "status": 404, "detail": "no event 0190",
        }),
    );
    assert_invalid(
        &doc,
        "Problem",
        &json!({"type": "about:blank", "title": "x", "status": 404, "detail": "y"}),
    );
}

/// The words a schema's `enum` allows, `null` left out.
fn enum_words(schema: &Value) -> Vec<String> {
    schema["enum"]
        .as_array()
        .unwrap_or_else(|| panic!("no enum in {schema}"))
        .iter()
        .filter_map(|word| word.as_str().map(str::to_owned))
        .collect()
}

#[test]
fn every_documented_status_is_a_typed_one_and_back() {
    let doc = document();
    let schemas = &doc["components"]["schemas"];
    let words = |all: &[&str]| all.iter().map(|w| (*w).to_owned()).collect::<Vec<_>>();
    let event = words(&EventStatus::ALL.map(EventStatus::as_str));
    let outcome = words(&AttemptOutcome::ALL.map(AttemptOutcome::as_str));
    let job = words(&ReplayJobStatus::ALL.map(ReplayJobStatus::as_str));
    let query_status = doc["paths"]["/admin/v1/events"]["get"]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "status")
        .unwrap();
    for (member, schema, typed) in [
        (
            "GET /admin/v1/events?status",
            &query_status["schema"],
            &event,
        ),
        (
            "EventFilter.status",
            &schemas["EventFilter"]["properties"]["status"],
            &event,
        ),
        (
            "EventSummary.status",
            &schemas["EventSummary"]["properties"]["status"],
            &event,
        ),
        (
            "EmissionView.status",
            &schemas["EmissionView"]["properties"]["status"],
            &event,
        ),
        (
            "AttemptView.outcome",
            &schemas["AttemptView"]["properties"]["outcome"],
            &outcome,
        ),
        (
            "ReplayJobView.status",
            &schemas["ReplayJobView"]["properties"]["status"],
            &job,
        ),
    ] {
        assert_eq!(&enum_words(schema), typed, "{member}");
    }
    // And serde reads every documented word into the type (what the operator CLI relies on).
    for word in &event {
        assert!(
            serde_json::from_value::<EventStatus>(json!(word)).is_ok(),
            "{word}"
        );
    }
    for word in &outcome {
        assert!(
            serde_json::from_value::<AttemptOutcome>(json!(word)).is_ok(),
            "{word}"
        );
    }
    for word in &job {
        assert!(
            serde_json::from_value::<ReplayJobStatus>(json!(word)).is_ok(),
            "{word}"
        );
    }
}

/// A schema inside the document (a parameter's, a request body's), compiled with the whole
/// document as its root so its `$ref`s resolve.
fn inline_validator(doc: &Value, schema: &Value) -> jsonschema::Validator {
    let mut root = doc.clone();
    let mut schema = schema.clone();
    if let (Some(root), Some(schema)) = (root.as_object_mut(), schema.as_object_mut()) {
        root.append(schema);
    }
    jsonschema::options()
        .with_draft(jsonschema::Draft::Draft202012)
        .should_validate_formats(true)
        .build(&root)
        .expect("the schema compiles")
}

fn parameter_schema<'d>(doc: &'d Value, path: &str, method: &str, name: &str) -> &'d Value {
    doc["paths"][path][method]["parameters"]
        .as_array()
        .expect("parameters")
        .iter()
        .find(|parameter| parameter["name"] == name)
        .map(|parameter| &parameter["schema"])
        .unwrap_or_else(|| panic!("{method} {path} has no parameter {name}"))
}

fn body_schema<'d>(doc: &'d Value, path: &str) -> &'d Value {
    &doc["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]
}

/// The document says when the token applies (the operations' `security` is checked in
/// `every_route_of_the_contract_is_described`): required once admin tokens are configured,
/// whatever the address; not needed only on a loopback listener without them.
#[test]
fn the_document_says_when_an_admin_token_is_required() {
    let doc = document();
    let scheme = doc["components"]["securitySchemes"]["adminToken"]["description"]
        .as_str()
        .expect("the scheme has a description");
    let info = doc["info"]["description"].as_str().expect("info");
    for text in [scheme, info] {
        for words in ["configured", "every listener address", "loopback", "`{}`"] {
            assert!(text.contains(words), "{words:?} not in {text}");
        }
    }
}

/// The `cursor` pattern is exactly the set of strings the server takes: every string of up to
/// three characters of the base64url alphabet, every continuation of an issued cursor by one
/// or two characters, and issued cursors themselves agree between the two.
#[test]
fn the_cursor_pattern_is_what_the_server_takes() {
    use crate::admin::events::{decode_cursor, encode_cursor};
    let doc = document();
    let cursor = inline_validator(
        &doc,
        parameter_schema(&doc, "/admin/v1/events", "get", "cursor"),
    );
    let agree = |text: &str| {
        assert_eq!(
            cursor.is_valid(&json!(text)),
            decode_cursor(text).is_ok(),
            "{text:?}: document and server disagree"
        );
    };
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut texts = vec![String::new()];
    for _ in 0..3 {
        let longer: Vec<String> = texts
            .iter()
            .filter(|text| text.len() == texts.last().map_or(0, String::len))
            .flat_map(|text| {
                ALPHABET
                    .iter()
                    .map(move |c| format!("{text}{}", *c as char))
            })
            .collect();
        texts.extend(longer);
    }
    for text in &texts {
        agree(text);
    }
    let issued = encode_cursor(12);
    for suffix in texts.iter().filter(|text| text.len() <= 2) {
        agree(&format!("{issued}{suffix}"));
    }
    for position in [0, 1, 9, 10, 999, 123_456_789, i64::MAX] {
        let text = encode_cursor(position);
        assert!(cursor.is_valid(&json!(text)), "issued {text}");
        assert_eq!(decode_cursor(&text).ok(), Some(position));
    }
    // Signs, letters and a 20th digit are no positions; 19 nines are past every event.
    let b64 = |raw: &str| {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
    };
    for raw in ["p-1", "p+1", "p1a", "p", "q1", "p12345678901234567890"] {
        agree(&b64(raw));
        assert!(decode_cursor(&b64(raw)).is_err(), "{raw}");
    }
    agree(&b64("p9999999999999999999"));
    assert_eq!(
        decode_cursor(&b64("p9999999999999999999")).ok(),
        Some(i64::MAX)
    );
}

/// Bounds the server enforces, in the document: rate from 0.1 to 10000 (`5e-324` was accepted
/// and made a job that never ends), a filter with at least one non-null condition, a count
/// that may be written `3.0`, ids in hyphenated form, optional bodies that may be `null`, and
/// a skip reason that is not only white space.
#[test]
fn the_document_states_the_bounds_the_server_enforces() {
    let doc = document();
    let request = |body: Value| {
        (
            body.clone(),
            serde_json::from_value::<BulkReplayRequest>(body),
        )
    };
    for rate in [0.1, 10_000.0] {
        assert_valid(
            &doc,
            "BulkReplayRequest",
            &json!({"filter": {"tenant": "a"}, "rate": rate}),
        );
    }
    for rate in [5e-324, 0.09, 10_000.5] {
        assert_invalid(
            &doc,
            "BulkReplayRequest",
            &json!({"filter": {"tenant": "a"}, "rate": rate}),
        );
    }
    assert_eq!(crate::admin::MIN_RATE, 0.1);
    for empty in [json!({}), json!({"tenant": null, "status": null})] {
        let (body, parsed) = request(json!({"filter": empty}));
        assert_invalid(&doc, "BulkReplayRequest", &body);
        assert!(parsed.expect("serde reads it").filter.is_empty(), "{body}");
    }
    for (body, count) in [
        (
            json!({"filter": {"since": "2026-01-01T00:00:00Z"}, "expectedCount": 3.0}),
            3,
        ),
        (
            json!({"filter": {"tenant": ""}, "expectedCount": 9_007_199_254_740_992_u64}),
            1 << 53,
        ),
    ] {
        assert_valid(&doc, "BulkReplayRequest", &body);
        let parsed = request(body.clone()).1.expect("serde reads it");
        assert!(!parsed.filter.is_empty());
        assert_eq!(parsed.expected_count, Some(count), "{body}");
    }
    for count in [
        json!(1.5),
        json!(-1),
        json!(9_007_199_254_740_993_u64),
        json!(1e300),
    ] {
        let (body, parsed) = request(json!({"filter": {"tenant": "a"}, "expectedCount": count}));
        assert_invalid(&doc, "BulkReplayRequest", &body);
        assert!(parsed.is_err(), "serde takes {body}");
    }

    let event_id = inline_validator(
        &doc,
        parameter_schema(&doc, "/admin/v1/events/{eventId}", "get", "eventId"),
    );
    let job_id = inline_validator(
        &doc,
        parameter_schema(&doc, "/admin/v1/replays/{jobId}", "get", "jobId"),
    );
    let id = uuid(7);
    for (text, taken) in [
        (id.hyphenated().to_string(), true),
        (id.hyphenated().to_string().to_uppercase(), true),
        (id.simple().to_string(), false),
        (id.braced().to_string(), false),
        (id.urn().to_string(), false),
        ("fuzz-2".to_owned(), false),
    ] {
        assert_eq!(event_id.is_valid(&json!(text)), taken, "{text}");
        assert_eq!(job_id.is_valid(&json!(text)), taken, "{text}");
        assert_eq!(
            crate::admin::hyphenated_uuid(&text).is_some(),
            taken,
            "{text}"
        );
    }

    for path in [
        "/admin/v1/events/{eventId}/replay",
        "/admin/v1/replays/{jobId}/cancel",
    ] {
        let body = inline_validator(&doc, body_schema(&doc, path));
        assert!(body.is_valid(&Value::Null), "{path} takes null");
        assert!(body.is_valid(&json!({"reason": "why"})), "{path}");
        assert!(!body.is_valid(&json!({"why": 1})), "{path}");
    }
    let skip = inline_validator(&doc, body_schema(&doc, "/admin/v1/events/{eventId}/skip"));
    for (reason, taken) in [
        ("why", true),
        (" why ", true),
        ("", false),
        (" \t\n\u{3000}", false),
    ] {
        assert_eq!(
            skip.is_valid(&json!({"reason": reason})),
            taken,
            "{reason:?}"
        );
        let operator = crate::admin::events::operator(
            crate::admin::Actor("a".into()),
            Some(reason.to_owned()),
        );
        assert_eq!(operator.reason.is_some(), taken, "{reason:?}");
    }
    assert!(!skip.is_valid(&Value::Null));
}

/// The Workflow and tenant vocabularies the document lists are the typed ones, wherever they
/// appear (members and query parameters), and serde reads each documented word.
#[test]
fn every_documented_phase_lifecycle_and_outcome_is_a_typed_one() {
    let doc = document();
    let schemas = &doc["components"]["schemas"];
    let words = |all: &[&str]| all.iter().map(|w| (*w).to_owned()).collect::<Vec<_>>();
    let phases = words(&WorkflowPhase::ALL.map(WorkflowPhase::as_str));
    let lifecycles = words(&Lifecycle::ALL.map(Lifecycle::as_str));
    let outcomes = words(&LifecycleOutcome::ALL.map(LifecycleOutcome::as_str));
    assert_eq!(
        phases,
        ["Pending", "Running", "Succeeded", "Failed", "Error"]
    );
    let tenants_param = |name| parameter_schema(&doc, "/admin/v1/tenants", "get", name);
    for (member, schema, typed) in [
        (
            "WorkflowView.phase",
            &schemas["WorkflowView"]["properties"]["phase"],
            &phases,
        ),
        (
            "TenantStateView.lifecycle",
            &schemas["TenantStateView"]["properties"]["lifecycle"],
            &lifecycles,
        ),
        (
            "TenantStateView.lastOutcome",
            &schemas["TenantStateView"]["properties"]["lastOutcome"],
            &outcomes,
        ),
        (
            "GET /admin/v1/tenants?lifecycle",
            tenants_param("lifecycle"),
            &lifecycles,
        ),
        (
            "GET /admin/v1/tenants?outcome",
            tenants_param("outcome"),
            &outcomes,
        ),
    ] {
        assert_eq!(&enum_words(schema), typed, "{member}");
    }
    for word in &phases {
        assert!(serde_json::from_value::<WorkflowPhase>(json!(word)).is_ok());
    }
    for word in &lifecycles {
        assert!(serde_json::from_value::<Lifecycle>(json!(word)).is_ok());
    }
    for word in &outcomes {
        assert!(serde_json::from_value::<LifecycleOutcome>(json!(word)).is_ok());
    }
}

/// The `workflowPhase` pattern (query parameter and filter member alike) takes exactly what
/// `parse_workflow_phases` takes.
#[test]
fn the_workflow_phase_pattern_is_what_the_server_takes() {
    use crate::admin::api::parse_workflow_phases;
    let doc = document();
    let query = inline_validator(
        &doc,
        parameter_schema(&doc, "/admin/v1/events", "get", "workflowPhase"),
    );
    let member = inline_validator(
        &doc,
        &doc["components"]["schemas"]["EventFilter"]["properties"]["workflowPhase"],
    );
    for (text, phases) in [
        ("Failed", Some(vec![WorkflowPhase::Failed])),
        (
            "Failed,Error",
            Some(vec![WorkflowPhase::Failed, WorkflowPhase::Error]),
        ),
        (
            "Pending,Running,Succeeded,Failed,Error",
            Some(WorkflowPhase::ALL.to_vec()),
        ),
        ("", None),
        ("failed", None),
        ("Failed,", None),
        (",Failed", None),
        ("Failed,,Error", None),
        ("Failed, Error", None),
        (" Failed", None),
        ("Failed;Error", None),
        ("Unknown", None),
    ] {
        let parsed = parse_workflow_phases(text).ok();
        assert_eq!(parsed, phases, "{text:?}");
        assert_eq!(query.is_valid(&json!(text)), parsed.is_some(), "{text:?}");
        assert_eq!(member.is_valid(&json!(text)), parsed.is_some(), "{text:?}");
    }
    assert!(member.is_valid(&Value::Null));
    let error = parse_workflow_phases("Failed,Lost").unwrap_err();
    for word in [
        "workflowPhase",
        "\"Lost\"",
        "Pending, Running, Succeeded, Failed, Error",
    ] {
        assert!(error.contains(word), "{word:?} not in {error}");
    }
    // A phase alone is a condition: a bulk replay of it is not an empty filter.
    let filter = EventFilter {
        workflow_phase: Some("Failed".into()),
        ..EventFilter::default()
    };
    assert!(!filter.is_empty());
    assert_valid(
        &doc,
        "BulkReplayRequest",
        &json!({"filter": {"workflowPhase": "Failed"}}),
    );
    assert_invalid(
        &doc,
        "BulkReplayRequest",
        &json!({"filter": {"workflowPhase": null}}),
    );
}

/// The tenant listing's `cursor` pattern is exactly the set of strings the server takes: every
/// string of up to four characters of the base64url alphabet, issued cursors, and the length
/// bound.
#[test]
fn the_tenant_cursor_pattern_is_what_the_server_takes() {
    use crate::admin::tenants::{decode_tenant_cursor, encode_tenant_cursor};
    let doc = document();
    let cursor = inline_validator(
        &doc,
        parameter_schema(&doc, "/admin/v1/tenants", "get", "cursor"),
    );
    let agree = |text: &str| {
        assert_eq!(
            cursor.is_valid(&json!(text)),
            decode_tenant_cursor(text).is_ok(),
            "{text:?}: document and server disagree"
        );
    };
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    // Every string up to three characters, and a sample of four (all four-character strings
    // would be 16 million).
    let mut texts = vec![String::new()];
    for _ in 0..3 {
        let longest = texts.last().map_or(0, String::len);
        let longer: Vec<String> = texts
            .iter()
            .filter(|text| text.len() == longest)
            .flat_map(|text| {
                ALPHABET
                    .iter()
                    .map(move |c| format!("{text}{}", *c as char))
            })
            .collect();
        texts.extend(longer);
    }
    for text in &texts {
        agree(text);
    }
    for text in ["YWNt", "____", "a=bc", "ab c", "ab+/", "ab\n"] {
        agree(text);
    }
    for tenant in [
        "a",
        "acme",
        "globex-industries",
        &"x".repeat(63),
        &"y".repeat(255),
    ] {
        let text = encode_tenant_cursor(tenant);
        assert!(cursor.is_valid(&json!(text)), "issued {text}");
        assert_eq!(decode_tenant_cursor(&text).ok().as_deref(), Some(tenant));
    }
    // 256 bytes is past the bound on both sides.
    let long = encode_tenant_cursor(&"z".repeat(256));
    agree(&long);
    assert!(decode_tenant_cursor(&long).is_err());
    // An events cursor and a padded one are refused or taken alike.
    agree(&crate::admin::events::encode_cursor(12));
    agree("YWNtZQ==");
}
