//! The HTTP protocol binding v1.0.2: which content mode a request uses, binary-mode `ce-*`
//! headers (unquoting and percent-decoding per section 3.1.3.2), and the encoder used by `send`.

use serde_json::{Map, Value};

use super::event::{is_json_media_type, media_type_essence};
use super::format::{assemble, batch_from_slice, event_from_json_with, parse_json};
use super::{
    echo, CloudEvent, Data, DecodeError, DecodeLimits, SpecVersion, Violation, Violations,
};

pub const STRUCTURED_JSON: &str = "application/cloudevents+json";
pub const BATCH_JSON: &str = "application/cloudevents-batch+json";

/// How the events were carried, for logs and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContentMode {
    Binary,
    Structured,
    Batch,
}

impl ContentMode {
    pub fn as_str(self) -> &'static str {
        match self {
            ContentMode::Binary => "binary",
            ContentMode::Structured => "structured",
            ContentMode::Batch => "batch",
        }
    }
}

/// Decode a request into events with the default [`DecodeLimits`].
pub fn decode_request<'a>(
    headers: impl IntoIterator<Item = (&'a str, &'a [u8])>,
    body: &[u8],
) -> Result<(ContentMode, Vec<CloudEvent>), DecodeError> {
    decode_request_with(&DecodeLimits::default(), headers, body)
}

/// Decode a request into events. `headers` yields (name, raw value) pairs; names compare
/// case-insensitively. A binary or structured request yields exactly one event. A pure
/// function of its inputs (the fuzzing entry point for the binding).
pub fn decode_request_with<'a>(
    limits: &DecodeLimits,
    headers: impl IntoIterator<Item = (&'a str, &'a [u8])>,
    body: &[u8],
) -> Result<(ContentMode, Vec<CloudEvent>), DecodeError> {
    let mut content_type: Option<&[u8]> = None;
    let mut ce_headers: Vec<(&str, &[u8])> = Vec::new();
    for (name, value) in headers {
        if name.eq_ignore_ascii_case("content-type") {
            content_type = Some(value);
        } else if name
            .as_bytes()
            .get(..3)
            .is_some_and(|prefix| prefix.eq_ignore_ascii_case(b"ce-"))
        {
            // Byte-wise: a name that is not ASCII (never from HTTP, whose header names are
            // tokens, but possible through this function) must not be sliced inside a
            // character; found by the http_binding fuzz target.
            ce_headers.push((name, value));
        }
    }
    let content_type = match content_type.map(std::str::from_utf8) {
        None => None,
        Some(Ok(ct)) => Some(ct.trim()),
        Some(Err(_)) => {
            return Err(DecodeError::invalid(Violation::new(
                None,
                "Content-Type header is not ASCII",
            )))
        }
    };
    let essence = content_type.map(media_type_essence).unwrap_or_default();
    if essence == STRUCTURED_JSON {
        let event = event_from_json_with(parse_json(body)?, limits)?;
        return Ok((ContentMode::Structured, vec![event]));
    }
    if essence == BATCH_JSON {
        let events = batch_from_slice(body, limits)?;
        return Ok((ContentMode::Batch, events));
    }
    if essence.starts_with("application/cloudevents") {
        return Err(DecodeError::UnsupportedFormat {
            media_type: essence,
        });
    }
    let event = decode_binary(content_type, &ce_headers, body, limits)?;
    Ok((ContentMode::Binary, vec![event]))
}

/// `ce-*` headers binary mode refuses, by attribute, with why.
/// - `datacontenttype` travels as `Content-Type` (HTTP binding 3.1.1).
/// - `data` is not an attribute: the body is the data. As an extension it could never be
///   written in the JSON event format, whose `data` member is the event's data (json-format.md,
///   3.1); stored, it clashed with the body (found by fuzzing: the re-encoded event held both
///   `data` and `data_base64`).
const NOT_BINARY_HEADERS: [(&str, &str); 2] = [
    (
        "datacontenttype",
        "a ce-datacontenttype header is not allowed in binary mode; use Content-Type",
    ),
    (
        "data",
        "a ce-data header is not allowed: in binary mode the HTTP body is the event's data",
    ),
];

fn decode_binary(
    content_type: Option<&str>,
    ce_headers: &[(&str, &[u8])],
    body: &[u8],
    limits: &DecodeLimits,
) -> Result<CloudEvent, DecodeError> {
    let mut violations = Vec::new();
    let mut members = Map::new();
    for (name, raw) in ce_headers {
        let attribute = name[3..].to_ascii_lowercase();
        if let Some((_, why)) = NOT_BINARY_HEADERS.iter().find(|(a, _)| *a == attribute) {
            violations.push(Violation::attr(&attribute, *why));
            continue;
        }
        match decode_header_value(raw) {
            Ok(value) => {
                if members
                    .insert(attribute.clone(), Value::String(value))
                    .is_some()
                {
                    violations.push(Violation::attr(
                        &attribute,
                        format!("header {name} appears more than once"),
                    ));
                }
            }
            Err(message) => violations.push(Violation::attr(&attribute, message)),
        }
    }
    let specversion = match members.get("specversion").and_then(Value::as_str) {
        Some(s) => match SpecVersion::parse(s) {
            Some(v) => v,
            None => {
                violations.push(Violation::attr(
                    "specversion",
                    format!(
                        "unsupported specversion {:?}: 1.0 and 0.3 are supported",
                        echo(s)
                    ),
                ));
                return Err(Violations::from_iter(violations).into());
            }
        },
        None if violations.is_empty() => {
            return Err(DecodeError::invalid(Violation::new(
                None,
                format!(
                    "not a CloudEvent: no ce-specversion header, and Content-Type {:?} is not a CloudEvents format ({STRUCTURED_JSON} or {BATCH_JSON})",
                    echo(content_type.unwrap_or("(none)"))
                ),
            )));
        }
        None => return Err(Violations::from_iter(violations).into()),
    };
    // 0.3's datacontentencoding describes the encoding inside structured formats; in binary mode
    // the body is the data itself, so the header carries nothing to keep.
    if specversion == SpecVersion::V03 {
        members.remove("datacontentencoding");
    }
    if let Some(ct) = content_type {
        members.insert("datacontenttype".into(), Value::String(ct.to_owned()));
    }
    let data = match binary_data(content_type, body) {
        Ok(d) => d,
        Err(v) => {
            violations.push(v);
            None
        }
    };
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

fn binary_data(content_type: Option<&str>, body: &[u8]) -> Result<Option<Data>, Violation> {
    if body.is_empty() {
        return Ok(None);
    }
    match content_type {
        Some(ct) if is_json_media_type(ct) => serde_json::from_slice(body)
            .map(|v| Some(Data::Json(v)))
            .map_err(|e| {
                Violation::attr(
                    "data",
                    format!(
                        "Content-Type is {} but the body is not valid JSON: {e}",
                        echo(ct)
                    ),
                )
            }),
        Some(ct) if is_text_media_type(ct) => Ok(Some(match String::from_utf8(body.to_vec()) {
            Ok(s) => Data::Text(s),
            Err(e) => Data::Binary(e.into_bytes()),
        })),
        _ => Ok(Some(Data::Binary(body.to_vec()))),
    }
}

/// Media types whose bodies are text, kept as text (the form the JSON format gives them as a
/// `data` string) so an event sent in binary or structured mode is stored the same way.
fn is_text_media_type(content_type: &str) -> bool {
    let essence = media_type_essence(content_type);
    essence.starts_with("text/")
        || essence == "application/xml"
        || essence.ends_with("+xml")
        || essence == "application/yaml"
        || essence == "application/x-www-form-urlencoded"
}

/// Decode one `ce-*` header value: raw bytes must be visible ASCII (or space/tab), a
/// double-quoted string is unescaped first (RFC 7230 3.2.6), then one round of percent-decoding
/// whose bytes must be valid UTF-8 (overlong encodings such as `%C0%A0` are invalid UTF-8).
pub fn decode_header_value(raw: &[u8]) -> Result<String, String> {
    if let Some(b) = raw
        .iter()
        .find(|b| !(b.is_ascii_graphic() || **b == b' ' || **b == b'\t'))
    {
        return Err(format!(
            "header value contains the byte 0x{b:02X}; non-ASCII characters must be percent-encoded"
        ));
    }
    let trimmed = trim_ows(raw);
    let unquoted = if trimmed.first() == Some(&b'"') {
        unquote(trimmed)?
    } else {
        trimmed.to_vec()
    };
    let decoded = percent_decode(&unquoted)?;
    String::from_utf8(decoded).map_err(|e| {
        format!(
            "percent-decoded header value is not valid UTF-8 (invalid or overlong sequence at byte {})",
            e.utf8_error().valid_up_to()
        )
    })
}

fn trim_ows(raw: &[u8]) -> &[u8] {
    let is_ows = |b: &u8| *b == b' ' || *b == b'\t';
    let start = raw.iter().position(|b| !is_ows(b)).unwrap_or(raw.len());
    let end = raw
        .iter()
        .rposition(|b| !is_ows(b))
        .map_or(start, |e| e + 1);
    &raw[start..end]
}

fn unquote(quoted: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(quoted.len());
    let mut bytes = quoted[1..].iter();
    while let Some(&b) = bytes.next() {
        match b {
            b'\\' => match bytes.next() {
                Some(&escaped) => out.push(escaped),
                None => break,
            },
            b'"' => {
                return if bytes.next().is_none() {
                    Ok(out)
                } else {
                    Err("text after the closing quote of a quoted-string".into())
                };
            }
            _ => out.push(b),
        }
    }
    Err("unterminated quoted-string".into())
}

fn percent_decode(input: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        if input[i] == b'%' {
            let hex = input
                .get(i + 1..i + 3)
                .filter(|h| h.iter().all(u8::is_ascii_hexdigit));
            let Some(hex) = hex else {
                return Err(format!(
                    "invalid percent-encoding at position {i}: '%' must be followed by two hex digits"
                ));
            };
            out.push((hex_value(hex[0]) << 4) | hex_value(hex[1]));
            i += 3;
        } else {
            out.push(input[i]);
            i += 1;
        }
    }
    Ok(out)
}

fn hex_value(digit: u8) -> u8 {
    match digit {
        b'0'..=b'9' => digit - b'0',
        b'a'..=b'f' => digit - b'a' + 10,
        _ => digit - b'A' + 10,
    }
}

/// Percent-encode an attribute value for a `ce-*` header: space, `"`, `%` and everything outside
/// printable ASCII, as UTF-8 bytes with upper-case hex.
pub fn encode_header_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if (0x21..=0x7E).contains(&b) && b != b'"' && b != b'%' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Binary mode: `ce-*` headers (including `Content-Type` for `datacontenttype`) and the body.
pub fn encode_binary(event: &CloudEvent) -> (Vec<(String, String)>, Vec<u8>) {
    let doc = event.to_json();
    let mut headers = Vec::new();
    if let Value::Object(members) = &doc {
        for (name, value) in members {
            let text = match (name.as_str(), value) {
                ("data" | "data_base64" | "datacontenttype" | "datacontentencoding", _) => continue,
                (_, Value::String(s)) => s.clone(),
                (_, other) => other.to_string(),
            };
            headers.push((format!("ce-{name}"), encode_header_value(&text)));
        }
    }
    let body = match &event.data {
        None => Vec::new(),
        Some(Data::Json(v)) => v.to_string().into_bytes(),
        Some(Data::Text(s)) => s.clone().into_bytes(),
        Some(Data::Binary(b)) => b.clone(),
    };
    let content_type = event.datacontenttype.clone().or_else(|| match &event.data {
        Some(Data::Json(_)) => Some("application/json".into()),
        _ => None,
    });
    if let Some(ct) = content_type {
        headers.push(("content-type".into(), ct));
    }
    (headers, body)
}

/// Structured mode: the JSON event format body.
pub fn encode_structured(event: &CloudEvent) -> (&'static str, Vec<u8>) {
    let body =
        serde_json::to_vec(event).unwrap_or_else(|_| event.to_json().to_string().into_bytes());
    (STRUCTURED_JSON, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by the http_binding fuzz target: a header name with a multi-byte character where
    /// the `ce-` prefix would end panicked instead of being ignored.
    #[test]
    fn a_header_name_that_is_not_ascii_is_ignored_not_a_panic() {
        let headers = [
            ("ce\u{4ce}pecversion", b"1.0".as_slice()),
            ("content-type", b"application/json".as_slice()),
        ];
        assert!(decode_request(headers, b"{}").is_err());
    }

    fn decode(headers: &[(&str, &str)], body: &str) -> Result<Vec<CloudEvent>, DecodeError> {
        decode_request(
            headers.iter().map(|(n, v)| (*n, v.as_bytes())),
            body.as_bytes(),
        )
        .map(|(_, events)| events)
    }

    const BASE: [(&str, &str); 4] = [
        ("ce-specversion", "1.0"),
        ("ce-id", "1"),
        ("ce-source", "/s"),
        ("ce-type", "t"),
    ];

    fn with_header(name: &'static str, value: &'static str) -> Vec<(&'static str, &'static str)> {
        let mut h = BASE.to_vec();
        h.push((name, value));
        h
    }

    fn violation_of(result: Result<Vec<CloudEvent>, DecodeError>) -> Violation {
        match result {
            Err(DecodeError::Invalid { violations }) => violations.listed[0].clone(),
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    #[test]
    fn percent_decoding_follows_the_spec_example() {
        assert_eq!(
            decode_header_value(b"Euro%20%E2%82%AC%20%F0%9F%98%80").unwrap(),
            "Euro \u{20AC} \u{1F600}"
        );
        // Lower-case hex and needlessly encoded characters are accepted.
        assert_eq!(decode_header_value(b"%c3%a9%41").unwrap(), "\u{e9}A");
        assert_eq!(
            encode_header_value("Euro \u{20AC} \u{1F600}"),
            "Euro%20%E2%82%AC%20%F0%9F%98%80"
        );
        assert_eq!(encode_header_value("100% \"ok\""), "100%25%20%22ok%22");
    }

    #[test]
    fn overlong_and_invalid_utf8_is_rejected() {
        for bad in [&b"%C0%A0"[..], b"%E0%80%AF", b"%FF", b"%C3", b"%ED%A0%80"] {
            let err = decode_header_value(bad).unwrap_err();
            assert!(err.contains("UTF-8"), "{err}");
        }
    }

    #[test]
    fn malformed_percent_encoding_is_rejected() {
        for bad in [&b"50%"[..], b"%4", b"%G1", b"a%zzb"] {
            let err = decode_header_value(bad).unwrap_err();
            assert!(err.contains("percent-encoding"), "{err}");
        }
    }

    #[test]
    fn raw_non_ascii_header_bytes_are_rejected() {
        let err = decode_header_value("caf\u{e9}".as_bytes()).unwrap_err();
        assert!(err.contains("percent-encoded"), "{err}");
    }

    #[test]
    fn quoted_strings_are_unescaped_before_percent_decoding() {
        assert_eq!(
            decode_header_value(br#""a \"quoted\" value%21""#).unwrap(),
            "a \"quoted\" value!"
        );
        assert!(decode_header_value(br#""unterminated"#).is_err());
        assert!(decode_header_value(br#""a"b"#).is_err());
    }

    #[test]
    fn binary_mode_decodes_headers_and_json_body() {
        let mut h = BASE.to_vec();
        h.push(("ce-subject", "caf%C3%A9"));
        h.push(("Content-Type", "application/json; charset=utf-8"));
        let e = &decode(&h, r#"{"a": 1}"#).unwrap()[0];
        assert_eq!(e.subject.as_deref(), Some("caf\u{e9}"));
        assert_eq!(
            e.datacontenttype.as_deref(),
            Some("application/json; charset=utf-8")
        );
        assert_eq!(e.data, Some(Data::Json(serde_json::json!({"a": 1}))));
    }

    #[test]
    fn binary_mode_rejects_datacontenttype_and_data_headers() {
        for (header, value, body, says) in [
            ("ce-datacontenttype", "application/json", "", "Content-Type"),
            ("ce-data", "2018-04-05T03:56:24Z", "{}", "HTTP body"),
        ] {
            let v = violation_of(decode(&with_header(header, value), body));
            assert_eq!(v.attribute.as_deref(), Some(&header[3..]));
            assert!(v.message.contains(says), "{}", v.message);
        }
    }

    #[test]
    fn binary_mode_rejects_bad_extension_names_and_empty_required() {
        let v = violation_of(decode(&with_header("ce-my_ext", "x"), ""));
        assert_eq!(v.attribute.as_deref(), Some("my_ext"));
        let mut h = BASE.to_vec();
        h[1] = ("ce-id", "");
        assert_eq!(
            violation_of(decode(&h, "")).attribute.as_deref(),
            Some("id")
        );
    }

    #[test]
    fn binary_mode_rejects_json_content_type_with_invalid_body() {
        let v = violation_of(decode(
            &with_header("content-type", "application/json"),
            "{not json",
        ));
        assert_eq!(v.attribute.as_deref(), Some("data"));
    }

    #[test]
    fn no_cloudevent_at_all_is_a_clear_400() {
        let v = violation_of(decode(&[("content-type", "text/plain")], "hi"));
        assert!(v.message.contains("ce-specversion"), "{}", v.message);
    }

    #[test]
    fn structured_media_type_is_case_insensitive_and_other_formats_are_415() {
        let body = r#"{"specversion":"1.0","id":"1","source":"/s","type":"t"}"#;
        assert!(decode(
            &[(
                "Content-Type",
                "Application/CloudEvents+JSON; charset=UTF-8"
            )],
            body
        )
        .is_ok());
        assert_eq!(
            decode(&[("content-type", "application/cloudevents+xml")], body).unwrap_err(),
            DecodeError::UnsupportedFormat {
                media_type: "application/cloudevents+xml".into()
            }
        );
        assert!(matches!(
            decode(
                &[("content-type", "application/cloudevents-batch+avro")],
                body
            ),
            Err(DecodeError::UnsupportedFormat { .. })
        ));
    }

    /// Found by the http_binding fuzz target: a JSON number beyond 64-bit integers is a float,
    /// and serde_json's default float parser may land one step away from the nearest double,
    /// so the value an event was stored with changed when it was read back. Parsed exactly
    /// (serde_json's `float_roundtrip`), the shortest text of a double reads back as itself.
    /// Test builds always have that feature (the jsonschema dev-dependency turns it on), so
    /// this pins the behaviour; `structure::serde_json_parses_floats_exactly_in_the_gateway_build`
    /// guards the gateway's own build.
    #[test]
    fn json_data_numbers_survive_encoding_and_decoding() {
        for number in [
            "111111000006371555158481727944",
            "1.1111100000637157e29",
            "0.3",
            "1e-7",
        ] {
            let headers = [
                ("ce-specversion", b"1.0".as_slice()),
                ("ce-id", b"n-1".as_slice()),
                ("ce-source", b"/src".as_slice()),
                ("ce-type", b"com.acme.lifecycle.upsert".as_slice()),
                ("content-type", b"application/json".as_slice()),
            ];
            let (_, events) = decode_request(headers, number.as_bytes()).unwrap();
            let (ct, body) = encode_structured(&events[0]);
            let (_, again) = decode_request([("content-type", ct.as_bytes())], &body).unwrap();
            assert_eq!(again, events, "{number}");
        }
    }

    #[test]
    fn encoder_round_trips_through_decoder() {
        let mut e = CloudEvent::new("id-1", "/src", "com.acme.lifecycle.upsert");
        e.subject = Some("t\u{e9}nant \u{1F600}".into());
        e.time = Some("2026-01-02T03:04:05Z".into());
        e.extensions.insert(
            "tenant".into(),
            super::super::ExtensionValue::String("acme".into()),
        );
        e.data = Some(Data::Json(serde_json::json!({"plan": "gold"})));
        let (headers, body) = encode_binary(&e);
        let (mode, decoded) = decode_request(
            headers.iter().map(|(n, v)| (n.as_str(), v.as_bytes())),
            &body,
        )
        .unwrap();
        assert_eq!(mode, ContentMode::Binary);
        let mut expected = e.clone();
        expected.datacontenttype = Some("application/json".into());
        assert_eq!(decoded[0], expected);

        let (ct, body) = encode_structured(&e);
        let (mode, decoded) = decode_request([("content-type", ct.as_bytes())], &body).unwrap();
        assert_eq!(mode, ContentMode::Structured);
        assert_eq!(decoded[0], e);
    }
}
