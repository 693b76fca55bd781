//! The JSON event format (structured and batch mode) and the attribute rules shared with binary
//! mode: attributes arrive as a JSON object (binary-mode headers become string members), are
//! checked one by one, and the violations are collected rather than stopping at the first
//! (bounded: see [`Violations`]). The [`DecodeLimits`] are checked before per-attribute work.

use std::cell::Cell;
use std::collections::BTreeMap;

use base64::Engine as _;
use serde::de::{DeserializeSeed, IgnoredAny, SeqAccess, Visitor};
use serde_json::{Map, Value};

use super::event::{control_character, is_json_media_type, is_valid_attribute_name};
use super::{
    echo, CloudEvent, Data, DecodeError, DecodeLimits, ExtensionValue, SpecVersion, Violation,
    Violations,
};

/// Decode one structured-mode event without [`DecodeLimits`] (documents the gateway stored or a
/// developer wrote); every violation found is returned.
pub fn event_from_json(value: Value) -> Result<CloudEvent, Vec<Violation>> {
    event_from_json_with(value, &DecodeLimits::UNLIMITED).map_err(|error| match error {
        DecodeError::Invalid { violations } => violations.listed,
        other => vec![Violation::new(None, other.to_string())],
    })
}

/// Decode one structured-mode event (the whole body, or one batch member) within `limits`.
pub fn event_from_json_with(
    value: Value,
    limits: &DecodeLimits,
) -> Result<CloudEvent, DecodeError> {
    let Value::Object(mut members) = value else {
        return Err(DecodeError::invalid(Violation::new(
            None,
            "a CloudEvent in the JSON format must be a JSON object",
        )));
    };
    let specversion = take_specversion(&members).map_err(DecodeError::invalid)?;
    let mut violations = Vec::new();
    let data = take_structured_data(specversion, &mut members, &mut violations);
    match assemble(specversion, members, data, limits) {
        Ok(event) if violations.is_empty() => Ok(event),
        Ok(_) => Err(Violations::from_iter(violations).into()),
        Err(DecodeError::Invalid { violations: more }) => {
            let mut all = Violations::from_iter(violations);
            all.extend(more.listed);
            all.more += more.more;
            Err(all.into())
        }
        Err(other) => Err(other),
    }
}

/// Decode a JSON batch body: an array (possibly empty) of events sharing one `specversion`.
/// The member count is checked while parsing, so a batch over `max_batch_events` is refused
/// after reading one member more than the limit, never held in memory whole.
pub fn batch_from_slice(
    body: &[u8],
    limits: &DecodeLimits,
) -> Result<Vec<CloudEvent>, DecodeError> {
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    if first != Some(&b'[') {
        let value: Value = parse_json(body)?;
        return batch_from_json(value, limits);
    }
    let over_limit = Cell::new(false);
    let seed = BoundedArray {
        max: limits.max_batch_events,
        over_limit: &over_limit,
    };
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let members = seed
        .deserialize(&mut deserializer)
        .and_then(|members| deserializer.end().map(|()| members));
    match members {
        Ok(members) => batch_members(members, limits),
        Err(_) if over_limit.get() => Err(too_many_events(limits.max_batch_events)),
        Err(e) => Err(DecodeError::invalid(Violation::new(
            None,
            format!("body is not valid JSON: {e}"),
        ))),
    }
}

pub(crate) fn parse_json(body: &[u8]) -> Result<Value, DecodeError> {
    serde_json::from_slice(body).map_err(|e| {
        DecodeError::invalid(Violation::new(None, format!("body is not valid JSON: {e}")))
    })
}

fn too_many_events(max: usize) -> DecodeError {
    DecodeError::LimitExceeded {
        limit: "max-batch-events",
        max,
        detail: format!("the batch has more than max-batch-events ({max}) events"),
    }
}

/// A JSON array of at most `max` values; one more sets `over_limit` and stops the parse.
struct BoundedArray<'a> {
    max: usize,
    over_limit: &'a Cell<bool>,
}

impl<'de> DeserializeSeed<'de> for BoundedArray<'_> {
    type Value = Vec<Value>;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Vec<Value>, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for BoundedArray<'_> {
    type Value = Vec<Value>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON array")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<Value>, A::Error> {
        let mut members = Vec::new();
        while members.len() < self.max {
            match seq.next_element::<Value>()? {
                Some(member) => members.push(member),
                None => return Ok(members),
            }
        }
        if seq.next_element::<IgnoredAny>()?.is_some() {
            self.over_limit.set(true);
            return Err(serde::de::Error::custom("too many batch members"));
        }
        Ok(members)
    }
}

/// Decode a parsed JSON batch. Every violation carries the index of its member.
pub fn batch_from_json(
    value: Value,
    limits: &DecodeLimits,
) -> Result<Vec<CloudEvent>, DecodeError> {
    let Value::Array(members) = value else {
        return Err(DecodeError::invalid(Violation::new(
            None,
            "a CloudEvents JSON batch must be a JSON array",
        )));
    };
    if members.len() > limits.max_batch_events {
        return Err(too_many_events(limits.max_batch_events));
    }
    batch_members(members, limits)
}

fn batch_members(
    members: Vec<Value>,
    limits: &DecodeLimits,
) -> Result<Vec<CloudEvent>, DecodeError> {
    let mut events = Vec::with_capacity(members.len());
    let mut violations = Violations::default();
    let mut first_version = None;
    for (i, member) in members.into_iter().enumerate() {
        match event_from_json_with(member, limits) {
            Ok(e) => {
                let first = *first_version.get_or_insert(e.specversion);
                if e.specversion != first {
                    violations.push(
                        Violation::attr(
                            "specversion",
                            "all events of a batch must have the same specversion",
                        )
                        .at(i),
                    );
                }
                events.push(e);
            }
            Err(DecodeError::Invalid { violations: vs }) => {
                violations.more += vs.more;
                violations.extend(vs.listed.into_iter().map(|v| v.at(i)));
            }
            Err(DecodeError::LimitExceeded { limit, max, detail }) => {
                return Err(DecodeError::LimitExceeded {
                    limit,
                    max,
                    detail: format!("[{i}] {detail}"),
                })
            }
            Err(other) => return Err(other),
        }
    }
    if violations.is_empty() {
        Ok(events)
    } else {
        Err(violations.into())
    }
}

fn take_specversion(members: &Map<String, Value>) -> Result<SpecVersion, Violation> {
    match members.get("specversion") {
        None | Some(Value::Null) => Err(Violation::attr(
            "specversion",
            "required attribute is missing",
        )),
        Some(Value::String(s)) => SpecVersion::parse(s).ok_or_else(|| {
            Violation::attr(
                "specversion",
                format!(
                    "unsupported specversion {:?}: 1.0 and 0.3 are supported",
                    echo(s)
                ),
            )
        }),
        Some(_) => Err(Violation::attr("specversion", "must be a string")),
    }
}

/// Removes `data` / `data_base64` (and 0.3's `datacontentencoding`) from the members and turns
/// them into [`Data`].
fn take_structured_data(
    specversion: SpecVersion,
    members: &mut Map<String, Value>,
    violations: &mut Vec<Violation>,
) -> Option<Data> {
    let data = members.remove("data").filter(|v| !v.is_null());
    let content_type = members
        .get("datacontenttype")
        .and_then(Value::as_str)
        .map(str::to_owned);
    match specversion {
        SpecVersion::V10 => {
            let base64 = members.remove("data_base64").filter(|v| !v.is_null());
            match (data, base64) {
                (Some(_), Some(_)) => {
                    violations.push(Violation::attr(
                        "data_base64",
                        "data and data_base64 are mutually exclusive",
                    ));
                    None
                }
                (None, Some(b)) => decode_base64("data_base64", b, violations).map(Data::Binary),
                (Some(d), None) => Some(structured_data(d, content_type.as_deref())),
                (None, None) => None,
            }
        }
        SpecVersion::V03 => match members.remove("datacontentencoding") {
            None | Some(Value::Null) => data.map(|d| structured_data(d, content_type.as_deref())),
            Some(Value::String(enc)) if enc.eq_ignore_ascii_case("base64") => match data {
                Some(d) => decode_base64("data", d, violations).map(Data::Binary),
                None => None,
            },
            Some(_) => {
                violations.push(Violation::attr(
                    "datacontentencoding",
                    "the only supported encoding is \"base64\"",
                ));
                None
            }
        },
    }
}

fn structured_data(value: Value, content_type: Option<&str>) -> Data {
    match (content_type, value) {
        (Some(ct), Value::String(s)) if !is_json_media_type(ct) => Data::Text(s),
        (_, v) => Data::Json(v),
    }
}

fn decode_base64(member: &str, value: Value, violations: &mut Vec<Violation>) -> Option<Vec<u8>> {
    let Value::String(s) = value else {
        violations.push(Violation::attr(member, "must be a base64 string"));
        return None;
    };
    match base64::engine::general_purpose::STANDARD.decode(s.as_bytes()) {
        Ok(bytes) => Some(bytes),
        Err(e) => {
            violations.push(Violation::attr(member, format!("invalid base64: {e}")));
            None
        }
    }
}

/// Check every attribute member and build the event. `members` holds attributes only (data has
/// been taken out); binary mode passes header values as JSON strings.
pub(crate) fn assemble(
    specversion: SpecVersion,
    members: Map<String, Value>,
    data: Option<Data>,
    limits: &DecodeLimits,
) -> Result<CloudEvent, DecodeError> {
    check_limits(specversion, &members, limits)?;
    let mut violations = Vec::new();
    let mut id = None;
    let mut source = None;
    let mut ty = None;
    let mut datacontenttype = None;
    let mut dataschema = None;
    let mut subject = None;
    let mut time = None;
    let mut extensions = BTreeMap::new();
    let schema_key = match specversion {
        SpecVersion::V10 => "dataschema",
        SpecVersion::V03 => "schemaurl",
    };

    for (name, value) in members {
        if !is_valid_attribute_name(&name) {
            violations.push(Violation::attr(
                &name,
                "attribute names must consist of lower-case ASCII letters and digits",
            ));
            continue;
        }
        let slot = match name.as_str() {
            "specversion" => continue,
            "id" => &mut id,
            "source" => &mut source,
            "type" => &mut ty,
            "datacontenttype" => &mut datacontenttype,
            "subject" => &mut subject,
            "time" => &mut time,
            n if n == schema_key => &mut dataschema,
            _ => {
                match extension_value(&name, value) {
                    Ok(Some(v)) => {
                        extensions.insert(name, v);
                    }
                    Ok(None) => {}
                    Err(v) => violations.push(v),
                }
                continue;
            }
        };
        match value {
            Value::Null => {}
            Value::String(s) => match check_context_string(&name, &s) {
                Ok(()) => *slot = Some(s),
                Err(v) => violations.push(v),
            },
            _ => violations.push(Violation::attr(&name, "must be a string")),
        }
    }

    for (name, slot) in [("id", &id), ("source", &source), ("type", &ty)] {
        if slot.is_none()
            && !violations
                .iter()
                .any(|v| v.attribute.as_deref() == Some(name))
        {
            violations.push(Violation::attr(name, "required attribute is missing"));
        }
    }
    let (Some(id), Some(source), Some(ty)) = (id, source, ty) else {
        return Err(Violations::from_iter(violations).into());
    };
    if !violations.is_empty() {
        return Err(Violations::from_iter(violations).into());
    }
    Ok(CloudEvent {
        specversion,
        id,
        source,
        ty,
        datacontenttype,
        dataschema,
        subject,
        time,
        extensions,
        data,
    })
}

/// The [`DecodeLimits`] of one event, checked before any attribute is looked at so an event
/// over them costs no per-attribute work.
fn check_limits(
    specversion: SpecVersion,
    members: &Map<String, Value>,
    limits: &DecodeLimits,
) -> Result<(), DecodeError> {
    let schema_key = match specversion {
        SpecVersion::V10 => "dataschema",
        SpecVersion::V03 => "schemaurl",
    };
    let is_context = |name: &str| {
        matches!(
            name,
            "specversion" | "id" | "source" | "type" | "datacontenttype" | "subject" | "time"
        ) || name == schema_key
    };
    let extensions = members.keys().filter(|name| !is_context(name)).count();
    if extensions > limits.max_extensions {
        return Err(DecodeError::LimitExceeded {
            limit: "max-extensions",
            max: limits.max_extensions,
            detail: format!(
                "the event has {extensions} extension attributes, more than max-extensions ({})",
                limits.max_extensions
            ),
        });
    }
    for (name, value) in members {
        let limited =
            matches!(name.as_str(), "id" | "source" | "type" | "subject") || !is_context(name);
        if let (true, Value::String(s)) = (limited, value) {
            if s.len() > limits.max_attribute_length {
                return Err(DecodeError::LimitExceeded {
                    limit: "max-attribute-length",
                    max: limits.max_attribute_length,
                    detail: format!(
                        "attribute {} is {} bytes long, more than max-attribute-length ({})",
                        echo(name),
                        s.len(),
                        limits.max_attribute_length
                    ),
                });
            }
        }
    }
    Ok(())
}

/// The per-attribute rules for the context attributes that have them.
fn check_context_string(name: &str, value: &str) -> Result<(), Violation> {
    if let Some(c) = control_character(value) {
        return Err(Violation::attr(
            name,
            format!("contains the control character U+{:04X}", c as u32),
        ));
    }
    match name {
        "id" | "type" | "subject" | "datacontenttype" if value.is_empty() => {
            Err(Violation::attr(name, "must be a non-empty string"))
        }
        "source" => {
            if value.is_empty() {
                Err(Violation::attr(name, "must be a non-empty URI-reference"))
            } else if value.chars().any(char::is_whitespace) {
                Err(Violation::attr(
                    name,
                    "must be a URI-reference (no whitespace)",
                ))
            } else {
                Ok(())
            }
        }
        "time" => chrono::DateTime::parse_from_rfc3339(value)
            .map(|_| ())
            .map_err(|e| Violation::attr(name, format!("must be an RFC 3339 timestamp: {e}"))),
        "dataschema" | "schemaurl" => {
            if is_absolute_uri(value) {
                Ok(())
            } else {
                Err(Violation::attr(name, "must be an absolute URI"))
            }
        }
        _ => Ok(()),
    }
}

fn is_absolute_uri(value: &str) -> bool {
    let Some((scheme, rest)) = value.split_once(':') else {
        return false;
    };
    let mut chars = scheme.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        && !rest.is_empty()
        && !value.chars().any(char::is_whitespace)
}

/// Extensions are strings, booleans or integers within i32; JSON null means "not set".
fn extension_value(name: &str, value: Value) -> Result<Option<ExtensionValue>, Violation> {
    match value {
        Value::Null => Ok(None),
        Value::Bool(b) => Ok(Some(ExtensionValue::Boolean(b))),
        Value::String(s) => match control_character(&s) {
            Some(c) => Err(Violation::attr(
                name,
                format!("contains the control character U+{:04X}", c as u32),
            )),
            None => Ok(Some(ExtensionValue::String(s))),
        },
        Value::Number(n) => n
            .as_i64()
            .and_then(|i| i32::try_from(i).ok())
            .map(|i| Some(ExtensionValue::Integer(i)))
            .ok_or_else(|| {
                Violation::attr(
                    name,
                    format!(
                        "integer extension values must be within the signed 32-bit range, got {n}"
                    ),
                )
            }),
        Value::Array(_) | Value::Object(_) => Err(Violation::attr(
            name,
            "extension values must be a string, boolean or integer",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event_from_json_default(value: Value) -> Result<CloudEvent, DecodeError> {
        event_from_json_with(value, &DecodeLimits::default())
    }

    fn batch_from_json_default(value: Value) -> Result<Vec<CloudEvent>, Vec<Violation>> {
        batch_from_json(value, &DecodeLimits::default()).map_err(listed)
    }

    fn listed(error: DecodeError) -> Vec<Violation> {
        match error {
            DecodeError::Invalid { violations } => violations.listed,
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    fn minimal() -> Value {
        json!({"specversion": "1.0", "id": "1", "source": "/s", "type": "t"})
    }

    fn reasons(value: Value) -> Vec<(Option<String>, String)> {
        listed(event_from_json_default(value).expect_err("should be rejected"))
            .into_iter()
            .map(|v| (v.attribute, v.message))
            .collect()
    }

    fn with(mut base: Value, key: &str, v: Value) -> Value {
        base[key] = v;
        base
    }

    fn rejected_attribute(value: Value) -> String {
        let r = reasons(value);
        r[0].0.clone().unwrap_or_default()
    }

    #[test]
    fn minimal_event_is_accepted() {
        let e = event_from_json_default(minimal()).unwrap();
        assert_eq!(
            (e.id.as_str(), e.source.as_str(), e.ty.as_str()),
            ("1", "/s", "t")
        );
        assert_eq!(e.data, None);
    }

    #[test]
    fn required_attributes_must_be_present_and_non_empty() {
        for attr in ["id", "source", "type", "specversion"] {
            let mut v = minimal();
            v.as_object_mut().unwrap().remove(attr);
            assert_eq!(rejected_attribute(v), attr);
            if attr != "specversion" {
                assert_eq!(rejected_attribute(with(minimal(), attr, json!(""))), attr);
                assert_eq!(rejected_attribute(with(minimal(), attr, json!(5))), attr);
            }
        }
    }

    #[test]
    fn unsupported_specversion_is_rejected() {
        assert_eq!(
            rejected_attribute(with(minimal(), "specversion", json!("2.0"))),
            "specversion"
        );
    }

    #[test]
    fn attribute_names_must_be_lowercase_alphanumeric_but_may_be_long() {
        assert_eq!(
            rejected_attribute(with(minimal(), "Tenant", json!("a"))),
            "Tenant"
        );
        assert_eq!(
            rejected_attribute(with(minimal(), "my_ext", json!("a"))),
            "my_ext"
        );
        let e = event_from_json_default(with(
            minimal(),
            "averyveryverylongextensionname",
            json!("x"),
        ))
        .unwrap();
        assert!(e.extension("averyveryverylongextensionname").is_some());
    }

    #[test]
    fn time_must_be_rfc3339() {
        assert!(
            event_from_json_default(with(minimal(), "time", json!("2018-04-05T03:56:24Z"))).is_ok()
        );
        assert_eq!(
            rejected_attribute(with(minimal(), "time", json!("2018-04-05 03:56"))),
            "time"
        );
        assert_eq!(
            rejected_attribute(with(minimal(), "time", json!("yesterday"))),
            "time"
        );
    }

    #[test]
    fn data_and_data_base64_are_mutually_exclusive() {
        let v = with(
            with(minimal(), "data", json!({"a": 1})),
            "data_base64",
            json!("AAEC"),
        );
        assert_eq!(rejected_attribute(v), "data_base64");
    }

    #[test]
    fn data_base64_must_be_valid() {
        assert_eq!(
            rejected_attribute(with(minimal(), "data_base64", json!("***"))),
            "data_base64"
        );
        let e = event_from_json_default(with(minimal(), "data_base64", json!("AAEC"))).unwrap();
        assert_eq!(e.data, Some(Data::Binary(vec![0, 1, 2])));
    }

    #[test]
    fn integer_extensions_must_fit_i32() {
        let ok = event_from_json_default(with(minimal(), "count", json!(2147483647))).unwrap();
        assert_eq!(
            ok.extension("count"),
            Some(&ExtensionValue::Integer(i32::MAX))
        );
        assert_eq!(
            rejected_attribute(with(minimal(), "count", json!(2147483648_i64))),
            "count"
        );
        assert_eq!(
            rejected_attribute(with(minimal(), "count", json!(-2147483649_i64))),
            "count"
        );
        assert_eq!(
            rejected_attribute(with(minimal(), "count", json!(1.5))),
            "count"
        );
        assert_eq!(
            rejected_attribute(with(minimal(), "nested", json!({"a": 1}))),
            "nested"
        );
    }

    #[test]
    fn null_optional_attributes_are_unset() {
        let e = event_from_json_default(with(
            with(minimal(), "subject", Value::Null),
            "ext",
            Value::Null,
        ))
        .unwrap();
        assert_eq!(e.subject, None);
        assert!(e.extensions.is_empty());
    }

    #[test]
    fn control_characters_and_bad_uris_are_rejected() {
        assert_eq!(
            rejected_attribute(with(minimal(), "subject", json!("a\u{0}b"))),
            "subject"
        );
        assert_eq!(
            rejected_attribute(with(minimal(), "dataschema", json!("relative/path"))),
            "dataschema"
        );
        assert_eq!(
            rejected_attribute(with(minimal(), "source", json!("has space"))),
            "source"
        );
    }

    #[test]
    fn every_violation_is_reported() {
        let v = json!({"specversion": "1.0", "id": "", "type": 3, "Bad": 1});
        let attrs: Vec<_> = reasons(v).into_iter().filter_map(|r| r.0).collect();
        for expected in ["id", "type", "Bad", "source"] {
            assert!(
                attrs.iter().any(|a| a == expected),
                "{expected} missing in {attrs:?}"
            );
        }
    }

    #[test]
    fn v03_base64_data_and_schemaurl() {
        let e = event_from_json_default(json!({
            "specversion": "0.3", "id": "1", "source": "/s", "type": "t",
            "schemaurl": "https://example.com/schema", "datacontentencoding": "base64", "data": "AAEC"
        }))
        .unwrap();
        assert_eq!(e.specversion, SpecVersion::V03);
        assert_eq!(e.data, Some(Data::Binary(vec![0, 1, 2])));
        assert_eq!(e.dataschema.as_deref(), Some("https://example.com/schema"));
        // data_base64 is not a 0.3 member, and its name is not a valid attribute name.
        assert!(event_from_json_default(json!({
            "specversion": "0.3", "id": "1", "source": "/s", "type": "t", "data_base64": "AAEC"
        }))
        .is_err());
    }

    #[test]
    fn non_json_data_stays_text() {
        let e = event_from_json_default(json!({
            "specversion": "1.0", "id": "1", "source": "/s", "type": "t",
            "datacontenttype": "application/xml", "data": "<a/>"
        }))
        .unwrap();
        assert_eq!(e.data, Some(Data::Text("<a/>".into())));
    }

    #[test]
    fn batch_reports_each_bad_index_and_mixed_versions() {
        let err = batch_from_json_default(json!([
            minimal(),
            {"specversion": "1.0", "source": "/s", "type": "t"},
            minimal(),
            {"specversion": "1.0", "id": "2", "source": "/s", "type": ""},
        ]))
        .unwrap_err();
        let indices: Vec<_> = err.iter().map(|v| v.index).collect();
        assert_eq!(indices, vec![Some(1), Some(3)]);

        let mixed = batch_from_json_default(json!([
            minimal(),
            with(minimal(), "specversion", json!("0.3"))
        ]))
        .unwrap_err();
        assert_eq!(mixed[0].attribute.as_deref(), Some("specversion"));
        assert_eq!(mixed[0].index, Some(1));
        assert!(batch_from_json_default(json!([])).unwrap().is_empty());
        assert!(batch_from_json_default(json!({})).is_err());
    }
}
