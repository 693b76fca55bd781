//! The CloudEvents conformance cases (tests/fixtures/cloudevents-conformance) through the
//! gateway's decoder: the HTTP binding feature scenarios (raw HTTP requests with expected
//! attributes and data) and the YAML events in every mode they name.

use std::path::PathBuf;

use serde_json::{Map, Value};
use tenant_gateway::cloudevents::{decode_request, CloudEvent, Data};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/cloudevents-conformance")
}

/// One scenario outline of a Gherkin feature: its request template, attribute table, expected
/// data, and the Examples values substituted for `<placeholder>`.
struct Scenario {
    name: String,
    request: String,
    attributes: Vec<(String, String)>,
    data: String,
    examples: Vec<(String, String)>,
}

fn parse_feature(text: &str) -> Vec<Scenario> {
    let mut scenarios = Vec::new();
    let mut lines = text.lines().peekable();
    let mut current: Option<Scenario> = None;
    let mut docstrings = 0;
    let mut in_examples = false;
    let mut example_header: Option<String> = None;
    while let Some(line) = lines.next() {
        let t = line.trim();
        if let Some(name) = t.strip_prefix("Scenario Outline:") {
            scenarios.extend(current.take());
            current = Some(Scenario {
                name: name.trim().to_owned(),
                request: String::new(),
                attributes: Vec::new(),
                data: String::new(),
                examples: Vec::new(),
            });
            docstrings = 0;
            in_examples = false;
            example_header = None;
            continue;
        }
        let Some(s) = current.as_mut() else { continue };
        if t == "\"\"\"" {
            let indent = line.find('"').unwrap_or(0);
            let mut block = Vec::new();
            for l in lines.by_ref() {
                if l.trim() == "\"\"\"" {
                    break;
                }
                block.push(l.get(indent..).unwrap_or("").to_owned());
            }
            if docstrings == 0 {
                s.request = block.join("\n");
            } else {
                s.data = block.join("\n");
            }
            docstrings += 1;
        } else if t.starts_with("Examples:") {
            in_examples = true;
        } else if t.starts_with('|') {
            let cells: Vec<String> = t
                .trim_matches('|')
                .split('|')
                .map(|c| c.trim().to_owned())
                .collect();
            if in_examples {
                match &example_header {
                    None => example_header = Some(cells[0].clone()),
                    Some(h) => s.examples.push((h.clone(), cells[0].clone())),
                }
            } else if cells[0] != "key" {
                s.attributes.push((cells[0].clone(), cells[1].clone()));
            }
        }
    }
    scenarios.extend(current);
    scenarios
}

/// Split a raw HTTP/1.1 request into headers and body.
fn parse_http(raw: &str) -> (Vec<(String, String)>, Vec<u8>) {
    let (head, body) = raw.split_once("\n\n").unwrap_or((raw, ""));
    let headers = head
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .filter(|(n, _)| n != "content-length")
        .collect();
    (headers, body.as_bytes().to_vec())
}

fn attribute(event: &CloudEvent, key: &str) -> Option<String> {
    match event.to_json().get(key)? {
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

#[test]
fn http_protocol_binding_feature_scenarios() {
    let text =
        std::fs::read_to_string(fixtures().join("features/http-protocol-binding.feature")).unwrap();
    let scenarios = parse_feature(&text);
    assert_eq!(scenarios.len(), 2, "binary and structured outlines");
    let mut cases = 0;
    for s in &scenarios {
        assert!(!s.examples.is_empty(), "{} has examples", s.name);
        for (placeholder, value) in &s.examples {
            let fill = |t: &str| t.replace(&format!("<{placeholder}>"), value);
            let (headers, body) = parse_http(&fill(&s.request));
            let (_, events) = decode_request(
                headers.iter().map(|(n, v)| (n.as_str(), v.as_bytes())),
                &body,
            )
            .unwrap_or_else(|e| panic!("{} ({value}): {e}", s.name));
            assert_eq!(events.len(), 1);
            let event = &events[0];
            for (key, expected) in &s.attributes {
                assert_eq!(
                    attribute(event, key).as_deref(),
                    Some(fill(expected).as_str()),
                    "{} ({value}): {key}",
                    s.name
                );
            }
            let expected_data: Value = serde_json::from_str(&s.data).unwrap();
            assert_eq!(
                event.data,
                Some(Data::Json(expected_data)),
                "{} ({value})",
                s.name
            );
            cases += 1;
        }
    }
    assert_eq!(cases, 4);
}

/// The YAML events: each is built into the HTTP request its `Mode` names (both modes when it
/// names none) and decoded; attributes and data must come back unchanged.
#[test]
fn yaml_events_in_binary_and_structured_mode() {
    let files = [
        "yaml/v1.yaml",
        "yaml/v03.yaml",
        "yaml/v1.0/v1_minimum.yaml",
        "yaml/v0.3/v03_minimum.yaml",
    ];
    let mut checked = 0;
    for file in files {
        let text = std::fs::read_to_string(fixtures().join(file)).unwrap();
        for doc in serde_yaml_ng::Deserializer::from_str(&text) {
            let case: serde_yaml_ng::Value = serde::Deserialize::deserialize(doc).unwrap();
            let modes = match case.get("Mode").and_then(|m| m.as_str()) {
                Some(m) => vec![m.to_owned()],
                None => vec!["binary".into(), "structured".into()],
            };
            let attributes = yaml_attributes(&case);
            let data = case
                .get("Data")
                .and_then(|d| d.as_str())
                .unwrap_or_default()
                .to_owned();
            for mode in modes {
                let event = decode_case(&mode, &attributes, &data)
                    .unwrap_or_else(|e| panic!("{file} {mode} {attributes:?}: {e}"));
                let json = event.to_json();
                for (k, v) in &attributes {
                    assert_eq!(
                        json.get(k).and_then(Value::as_str),
                        v.as_str(),
                        "{file} {mode}: {k}"
                    );
                }
                let dct = attributes
                    .get("datacontenttype")
                    .and_then(Value::as_str)
                    .unwrap_or("application/json");
                let expected = if dct.starts_with("application/json") {
                    Data::Json(serde_json::from_str(&data).unwrap())
                } else {
                    Data::Text(data.clone())
                };
                assert_eq!(event.data, Some(expected), "{file} {mode}");
                checked += 1;
            }
        }
    }
    assert_eq!(
        checked,
        // v1.yaml: 2 cases with a mode; v03.yaml: 1 case, both modes; the minimum files: 6 each.
        2 + 2 + 6 * 2 + 6 * 2,
        "every case in every mode"
    );
}

/// ContextAttributes and Extensions as strings. YAML reads `specversion: 1.0` as a float, and
/// block scalars end in a newline that a header (and the spec's String type) cannot carry.
fn yaml_attributes(case: &serde_yaml_ng::Value) -> Map<String, Value> {
    let mut out = Map::new();
    let ctx = case
        .get("ContextAttributes")
        .and_then(|c| c.as_mapping())
        .unwrap();
    for (k, v) in ctx {
        let key = k.as_str().unwrap();
        if key == "Extensions" {
            for (ek, ev) in v.as_mapping().unwrap() {
                out.insert(
                    ek.as_str().unwrap().into(),
                    Value::String(ev.as_str().unwrap().trim_end().into()),
                );
            }
            continue;
        }
        let text = match v {
            serde_yaml_ng::Value::Number(n) => format!("{:.1}", n.as_f64().unwrap()),
            other => other.as_str().unwrap().trim_end().to_owned(),
        };
        out.insert(key.into(), Value::String(text));
    }
    out
}

fn decode_case(
    mode: &str,
    attributes: &Map<String, Value>,
    data: &str,
) -> Result<CloudEvent, String> {
    let is_json = attributes
        .get("datacontenttype")
        .and_then(Value::as_str)
        .is_none_or(|ct| ct.starts_with("application/json"));
    let (headers, body): (Vec<(String, String)>, Vec<u8>) = if mode == "binary" {
        let mut headers: Vec<_> = attributes
            .iter()
            .filter(|(k, _)| *k != "datacontenttype")
            .map(|(k, v)| (format!("ce-{k}"), v.as_str().unwrap().to_owned()))
            .collect();
        let ct = attributes
            .get("datacontenttype")
            .and_then(Value::as_str)
            .unwrap_or("application/json");
        headers.push(("content-type".into(), ct.into()));
        (headers, data.as_bytes().to_vec())
    } else {
        let mut doc = attributes.clone();
        let data_value = if is_json {
            serde_json::from_str(data).unwrap()
        } else {
            Value::String(data.into())
        };
        doc.insert("data".into(), data_value);
        (
            vec![("content-type".into(), "application/cloudevents+json".into())],
            Value::Object(doc).to_string().into_bytes(),
        )
    };
    decode_request(
        headers.iter().map(|(n, v)| (n.as_str(), v.as_bytes())),
        &body,
    )
    .map(|(_, mut events)| events.remove(0))
    .map_err(|e| e.to_string())
}
