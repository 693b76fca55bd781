//! The canonical CloudEvent the gateway emits to Argo Events, and the `workflowName` the Sensors
//! use as the Workflow's `metadata.name` (see `docs/normalization.md`, "The canonical event").

use std::collections::BTreeMap;

use base64::Engine as _;
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::Value;
use uuid::Uuid;

use super::ObjectStorage;
use crate::cloudevents::{CloudEvent, Data, ExtensionValue};

/// Everything one emission of a stored event needs.
#[derive(Debug, Clone, Copy)]
pub struct EmissionInput<'a> {
    /// The canonical event's `id`: the stored event id on first delivery, a new UUIDv7 on each
    /// replay, so Argo sees a replay as a new event and a redelivery as the same one.
    pub emission_id: Uuid,
    /// The stored event id this emission replays; `None` on first delivery.
    pub replay_of: Option<Uuid>,
    /// The gateway instance URI, emitted as `source`.
    pub instance_source: &'a str,
    /// Per-tenant sequence of the stored event, so consumers can order a tenant's lifecycle.
    pub sequence: i64,
    /// The tenant (already a valid DNS-1123 label).
    pub tenant: &'a str,
    /// The short action name (`upsert`); the type is `lifecycle.<action>`.
    pub action: &'a str,
    /// Normalized parameters for the teams' Jobs.
    pub parameters: &'a BTreeMap<String, String>,
    /// Object storage location of a migration, if any.
    pub object_storage: Option<&'a ObjectStorage>,
    /// What the emission copies from the stored upstream event.
    pub upstream: Upstream<'a>,
    /// RFC 3339 receive time, the `time` when the upstream event has none.
    pub received_at: &'a str,
}

/// What the canonical event copies from the upstream event: origin attributes, trace context
/// and payload. Borrowed from a decoded [`CloudEvent`] ([`Upstream::of`]) or, on the
/// dispatcher's path, straight from the stored document's text.
#[derive(Debug, Clone, Copy)]
pub struct Upstream<'a> {
    /// Upstream `id`.
    pub id: &'a str,
    /// Upstream `source`.
    pub source: &'a str,
    /// Upstream `type`.
    pub ty: &'a str,
    /// Upstream `time` as sent.
    pub time: Option<&'a str>,
    /// W3C trace context, passed through so the Workflow's spans join the upstream trace.
    pub traceparent: Option<&'a ExtensionValue>,
    /// W3C trace state, passed through with `traceparent`.
    pub tracestate: Option<&'a ExtensionValue>,
    /// The upstream data, as `data.payload` carries it.
    pub payload: Payload<'a>,
}

impl<'a> Upstream<'a> {
    /// The parts of a decoded upstream event.
    pub fn of(event: &'a CloudEvent) -> Self {
        Upstream {
            id: &event.id,
            source: &event.source,
            ty: &event.ty,
            time: event.time.as_deref(),
            traceparent: event.extension("traceparent"),
            tracestate: event.extension("tracestate"),
            payload: match &event.data {
                None => Payload::Null,
                Some(Data::Json(value)) => Payload::Value(value),
                Some(Data::Text(text)) => Payload::Text(text),
                Some(Data::Binary(bytes)) => Payload::Base64(bytes),
            },
        }
    }
}

/// Upstream data as JSON: JSON as is, text as a string, bytes as standard base64, none as null.
#[derive(Debug, Clone, Copy)]
pub enum Payload<'a> {
    /// No data.
    Null,
    /// JSON data.
    Value(&'a Value),
    /// Text data, or the stored document's `data_base64` (already standard base64).
    Text(&'a str),
    /// Binary data, written as standard base64.
    Base64(&'a [u8]),
    /// The stored document's `data` member as its JSON text. The journal's documents are
    /// serde_json's compact output of the same `Value` the other variants would hold, so the
    /// text is what serializing that value writes (`CloudEvent`'s `Serialize`; a test holds the
    /// two paths to the same bytes).
    Stored(&'a RawValue),
}

impl Serialize for Payload<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Payload::Null => serializer.serialize_unit(),
            Payload::Value(value) => value.serialize(serializer),
            Payload::Text(text) => serializer.serialize_str(text),
            Payload::Base64(bytes) => {
                serializer.serialize_str(&base64::engine::general_purpose::STANDARD.encode(bytes))
            }
            Payload::Stored(raw) => raw.serialize(serializer),
        }
    }
}

/// The canonical event of one emission: its attributes and extensions as a [`CloudEvent`]
/// without data, and its `data` member, which is written straight from what it borrows (no
/// `Value` tree of the upstream payload).
#[derive(Debug)]
pub struct CanonicalEvent<'a> {
    /// Every attribute and extension; `data` is `None` here and is [`Self::data`].
    pub attributes: CloudEvent,
    /// The `data` member.
    pub data: CanonicalData<'a>,
}

impl CanonicalEvent<'_> {
    /// The canonical event as one [`CloudEvent`] (its data as a `Value`): the form tests and the
    /// admin API look at. Sinks send the bytes the dispatcher writes from the parts.
    pub fn into_cloud_event(self) -> CloudEvent {
        let mut event = self.attributes;
        // Serializing into a `Value` fails only on a map key that is not a string, and on
        // stored JSON that is not JSON; neither reaches here (the raw text was parsed).
        let data = serde_json::to_value(&self.data).unwrap_or(Value::Null);
        event.data = Some(Data::Json(data));
        event
    }
}

/// The canonical event's `data`. Fields are declared in the sorted order of their JSON names:
/// the order `Value`'s map writes them, so the bytes equal those of the `Value` tree.
#[derive(Debug, Serialize)]
pub struct CanonicalData<'a> {
    /// The action (also the type's suffix).
    action: &'a str,
    /// Object storage location of a migration, `null` if none.
    #[serde(rename = "objectStorage")]
    object_storage: Option<&'a ObjectStorage>,
    /// The upstream event's attributes, as sent.
    origin: Origin<'a>,
    /// The rule's parameters.
    parameters: &'a BTreeMap<String, String>,
    /// The upstream data.
    payload: Payload<'a>,
    /// The tenant.
    tenant: &'a str,
    /// The Workflow's `metadata.name` (see [`workflow_name`]).
    #[serde(rename = "workflowName")]
    pub workflow_name: String,
}

/// `data.origin`, in the sorted order of its members.
#[derive(Debug, Serialize)]
struct Origin<'a> {
    id: &'a str,
    source: &'a str,
    time: Option<&'a str>,
    #[serde(rename = "type")]
    ty: &'a str,
}

/// The canonical event for one emission.
pub fn canonical_event<'a>(input: &EmissionInput<'a>) -> CanonicalEvent<'a> {
    let upstream = input.upstream;
    let id = hyphenated(input.emission_id);
    let mut event = CloudEvent::new(
        id,
        input.instance_source,
        format!("lifecycle.{}", input.action),
    );
    event.subject = Some(input.tenant.to_owned());
    // `data.origin.time` keeps the upstream text; the attribute is what Argo can parse. An
    // upstream time valid to RFC 3339 that chrono cannot represent falls back to the receive
    // time rather than reach the Sensor unparseable (it would drop the event after acking it).
    let time = upstream.time.unwrap_or(input.received_at);
    event.time = Some(
        go_rfc3339(time)
            .or_else(|| go_rfc3339(input.received_at))
            .unwrap_or_else(|| input.received_at.to_owned()),
    );
    event.datacontenttype = Some("application/json".to_owned());

    let string = |s: &str| ExtensionValue::String(s.to_owned());
    let ext = &mut event.extensions;
    ext.insert("tenant".into(), string(input.tenant));
    ext.insert("sequence".into(), sequence_value(input.sequence));
    ext.insert("originid".into(), string(upstream.id));
    ext.insert("originsource".into(), string(upstream.source));
    ext.insert("origintype".into(), string(upstream.ty));
    if let Some(original) = input.replay_of {
        ext.insert(
            "replayof".into(),
            ExtensionValue::String(hyphenated(original)),
        );
    }
    // W3C trace context passes through so the Workflow's spans join the upstream trace.
    for (name, value) in [
        ("traceparent", upstream.traceparent),
        ("tracestate", upstream.tracestate),
    ] {
        if let Some(value) = value {
            ext.insert(name.into(), value.clone());
        }
    }

    CanonicalEvent {
        attributes: event,
        data: CanonicalData {
            action: input.action,
            object_storage: input.object_storage,
            origin: Origin {
                id: upstream.id,
                source: upstream.source,
                time: upstream.time,
                ty: upstream.ty,
            },
            parameters: input.parameters,
            payload: upstream.payload,
            tenant: input.tenant,
            workflow_name: workflow_name(input.tenant, input.action, input.emission_id),
        },
    }
}

/// `time` in the one form Go's `time.Parse(time.RFC3339Nano, ..)` takes, or `None` when `text` is
/// not RFC 3339 at all (ingest refuses such events, so only a corrupt row gets here).
///
/// Argo's Sensor decodes an event with cloudevents sdk-go, whose `types.ParseTime`
/// (`v2/types/value.go`) is `time.Parse(time.RFC3339Nano, v)`; Go's `parseRFC3339`
/// (`time/format_rfc3339.go`) wants exactly `YYYY-MM-DDTHH:MM:SS[.digits](Z|±hh:mm)`: upper-case
/// `T` and `Z`, seconds 00 to 59. RFC 3339 also allows `t`, `z`, a space and `:60`, which
/// ingest accepts; the Sensor would ack such an event and then drop it (argo-events
/// `pkg/eventbus/jetstream/sensor/trigger_conn.go` `processMsg`). So: a leap second becomes the
/// last nanosecond of its minute (order is kept, the minute does not change), a zero offset
/// (`-00:00` included) becomes `Z`, and the fraction keeps its value with trailing zeros cut, as
/// Go's own `RFC3339Nano` output does.
pub fn go_rfc3339(text: &str) -> Option<String> {
    use chrono::{Offset, Timelike};
    let parsed = chrono::DateTime::parse_from_rfc3339(text).ok()?;
    // chrono keeps a leap second as a nanosecond count of 1e9 or more in second 59.
    let parsed = if parsed.nanosecond() >= 1_000_000_000 {
        parsed.with_nanosecond(999_999_999)?
    } else {
        parsed
    };
    let mut out = parsed.format("%Y-%m-%dT%H:%M:%S").to_string();
    let nanos = parsed.nanosecond();
    if nanos > 0 {
        let digits = format!("{nanos:09}");
        out.push('.');
        out.push_str(digits.trim_end_matches('0'));
    }
    let offset_minutes = parsed.offset().fix().local_minus_utc() / 60;
    if offset_minutes == 0 {
        out.push('Z');
    } else {
        let sign = if offset_minutes < 0 { '-' } else { '+' };
        let minutes = offset_minutes.abs();
        out.push_str(&format!("{sign}{:02}:{:02}", minutes / 60, minutes % 60));
    }
    Some(out)
}

fn hyphenated(id: Uuid) -> String {
    id.hyphenated().to_string()
}

/// CloudEvents `Integer` is signed 32-bit; a sequence beyond it (not expected in practice) is
/// sent as its decimal string rather than a wrong number, so ordering stays correct.
fn sequence_value(sequence: i64) -> ExtensionValue {
    match i32::try_from(sequence) {
        Ok(n) => ExtensionValue::Integer(n),
        Err(_) => ExtensionValue::String(sequence.to_string()),
    }
}

/// Length of `<tenant>-<action>` kept in a workflow name: 36 + '-' + 26 = 63, a DNS-1123 label.
const PREFIX_MAX: usize = 36;

/// `<tenant>-<action>` (truncated to 36 characters) `-` the emission id in base32 (26
/// characters). Deterministic, so a redelivered emission maps to the same Workflow name and Argo
/// refuses the duplicate; the id part is the whole UUID, so every emission (every replay) gets its
/// own name. The readable prefix is for humans in the Argo UI only.
pub fn workflow_name(tenant: &str, action: &str, emission_id: Uuid) -> String {
    // Tenants are already DNS-1123 labels, but actions come from configuration: map anything
    // outside [a-z0-9-] to '-' so the name is valid whatever they hold.
    let prefix: String = format!("{tenant}-{action}")
        .chars()
        .map(|c| c.to_ascii_lowercase())
        .map(|c| {
            if c.is_ascii_lowercase() || c.is_ascii_digit() {
                c
            } else {
                '-'
            }
        })
        .take(PREFIX_MAX)
        .collect();
    let prefix = prefix.trim_matches('-');
    let id = base32_lower(emission_id.as_bytes());
    if prefix.is_empty() {
        id
    } else {
        format!("{prefix}-{id}")
    }
}

/// RFC 4648 base32, lower-case, without padding. Every character is a letter or digit, which is
/// what a DNS-1123 label needs; a crate would be a dependency for twenty lines.
fn base32_lower(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
    let mut out = String::with_capacity((bytes.len() * 8).div_ceil(5));
    let mut buffer: u16 = 0;
    let mut bits = 0;
    for &byte in bytes {
        buffer = (buffer << 8) | u16::from(byte);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(ALPHABET[usize::from((buffer >> bits) & 31)]));
        }
    }
    if bits > 0 {
        out.push(char::from(
            ALPHABET[usize::from((buffer << (5 - bits)) & 31)],
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::cloudevents::format::event_from_json;
    use crate::cloudevents::SpecVersion;

    const EVENT_ID: &str = "0190f6b2-5c1e-7a3b-8f00-0123456789ab";
    const REPLAY_ID: &str = "0190f6b3-0000-7000-8000-fedcba987654";

    fn upstream() -> CloudEvent {
        let mut e = CloudEvent::new(
            "up-1",
            "https://billing.acme.example/v1",
            "com.acme.billing.cancelled",
        );
        e.time = Some("2024-05-01T10:00:00Z".into());
        e.data = Some(Data::Json(
            json!({"account": "acme", "nested": {"x": [1, 2]}}),
        ));
        e.extensions.insert(
            "traceparent".into(),
            ExtensionValue::String(
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into(),
            ),
        );
        e.extensions
            .insert("tracestate".into(), ExtensionValue::String("acme=1".into()));
        e.extensions
            .insert("unrelated".into(), ExtensionValue::String("dropped".into()));
        e
    }

    fn emit(upstream: &CloudEvent, emission: &str, replay_of: Option<&str>) -> CloudEvent {
        let parameters: BTreeMap<String, String> = [("plan".to_owned(), "gold".to_owned())].into();
        let storage = ObjectStorage {
            url: "s3://exports/acme".into(),
        };
        canonical_event(&EmissionInput {
            emission_id: Uuid::parse_str(emission).unwrap(),
            replay_of: replay_of.map(|r| Uuid::parse_str(r).unwrap()),
            instance_source: "https://gateway.acme.example/eu-1",
            sequence: 42,
            tenant: "acme",
            action: "migrate-out",
            parameters: &parameters,
            object_storage: Some(&storage),
            upstream: Upstream::of(upstream),
            received_at: "2024-05-01T10:00:01.5Z",
        })
        .into_cloud_event()
    }

    /// The emitted JSON parses back into an equal, valid CloudEvent.
    fn round_trip(event: &CloudEvent) -> Value {
        let json = event.to_json();
        let back = event_from_json(serde_json::from_str(&json.to_string()).unwrap())
            .unwrap_or_else(|v| panic!("{v:?}"));
        assert_eq!(&back, event);
        json
    }

    #[test]
    fn first_emission_attributes_and_data() {
        let up = upstream();
        let j = round_trip(&emit(&up, EVENT_ID, None));
        let name = workflow_name("acme", "migrate-out", Uuid::parse_str(EVENT_ID).unwrap());
        assert_eq!(
            j,
            json!({
                "specversion": "1.0",
                "id": EVENT_ID,
                "source": "https://gateway.acme.example/eu-1",
                "type": "lifecycle.migrate-out",
                "subject": "acme",
                "time": "2024-05-01T10:00:00Z",
                "datacontenttype": "application/json",
                "tenant": "acme",
                "sequence": 42,
                "originid": "up-1",
                "originsource": "https://billing.acme.example/v1",
                "origintype": "com.acme.billing.cancelled",
                "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                "tracestate": "acme=1",
                "data": {
                    "tenant": "acme",
                    "action": "migrate-out",
                    "parameters": {"plan": "gold"},
                    "objectStorage": {"url": "s3://exports/acme"},
                    "workflowName": name,
                    "origin": {
                        "id": "up-1",
                        "source": "https://billing.acme.example/v1",
                        "type": "com.acme.billing.cancelled",
                        "time": "2024-05-01T10:00:00Z"
                    },
                    "payload": {"account": "acme", "nested": {"x": [1, 2]}}
                }
            })
        );
    }

    #[test]
    fn replay_gets_its_own_id_and_workflow_name() {
        let up = upstream();
        let first = round_trip(&emit(&up, EVENT_ID, None));
        let replay = round_trip(&emit(&up, REPLAY_ID, Some(EVENT_ID)));
        assert_eq!(replay["id"], REPLAY_ID);
        assert_eq!(replay["replayof"], EVENT_ID);
        assert!(first.get("replayof").is_none());
        assert_ne!(
            first["data"]["workflowName"],
            replay["data"]["workflowName"]
        );
        // Everything that describes the upstream event is unchanged.
        for key in [
            "originid",
            "originsource",
            "origintype",
            "time",
            "sequence",
            "traceparent",
        ] {
            assert_eq!(first[key], replay[key], "{key}");
        }
        assert_eq!(first["data"]["origin"], replay["data"]["origin"]);
        assert_eq!(first["data"]["payload"], replay["data"]["payload"]);
    }

    #[test]
    fn time_falls_back_to_receive_time_and_trace_context_is_optional() {
        let mut up = CloudEvent::new("up-2", "/crm", "CrmAccountUpdated");
        up.specversion = SpecVersion::V03;
        let j = round_trip(&emit(&up, EVENT_ID, None));
        assert_eq!(j["specversion"], "1.0");
        assert_eq!(j["time"], "2024-05-01T10:00:01.5Z");
        assert_eq!(j["data"]["origin"]["time"], Value::Null);
        assert!(j.get("traceparent").is_none() && j.get("tracestate").is_none());
        assert_eq!(j["data"]["payload"], Value::Null);
    }

    #[test]
    fn payload_for_each_kind_of_data() {
        let mut up = upstream();
        for (data, expected) in [
            (Some(Data::Json(json!([1, "a"]))), json!([1, "a"])),
            (Some(Data::Json(json!("a string"))), json!("a string")),
            (Some(Data::Text("<xml/>".into())), json!("<xml/>")),
            (Some(Data::Binary(vec![0, 1, 2, 255])), json!("AAEC/w==")),
            (None, Value::Null),
        ] {
            up.data = data;
            let j = round_trip(&emit(&up, EVENT_ID, None));
            assert_eq!(j["data"]["payload"], expected);
            assert_eq!(j["datacontenttype"], "application/json");
        }
    }

    /// Go's `parseRFC3339` (`time/format_rfc3339.go`, the parser behind sdk-go's
    /// `types.ParseTime`), transcribed: fixed positions, `T`, seconds 0 to 59, an optional `.` and
    /// digits, then `Z` or `±hh:mm` with hours 0 to 23 and minutes 0 to 59.
    fn go_accepts(s: &str) -> bool {
        let b = s.as_bytes();
        let num = |range: std::ops::Range<usize>, min: u32, max: u32| -> bool {
            b.get(range).is_some_and(|digits| {
                digits.iter().all(u8::is_ascii_digit)
                    && (min..=max).contains(
                        &digits
                            .iter()
                            .fold(0u32, |n, d| n * 10 + u32::from(d - b'0')),
                    )
            })
        };
        if b.len() < 19 {
            return false;
        }
        let year: u32 = s[0..4].parse().unwrap_or(u32::MAX);
        let month: u32 = s[5..7].parse().unwrap_or(0);
        let days = match month {
            2 if year.is_multiple_of(4)
                && (!year.is_multiple_of(100) || year.is_multiple_of(400)) =>
            {
                29
            }
            2 => 28,
            4 | 6 | 9 | 11 => 30,
            _ => 31,
        };
        if !(num(0..4, 0, 9999)
            && num(5..7, 1, 12)
            && num(8..10, 1, days)
            && num(11..13, 0, 23)
            && num(14..16, 0, 59)
            && num(17..19, 0, 59)
            && b[4] == b'-'
            && b[7] == b'-'
            && b[10] == b'T'
            && b[13] == b':'
            && b[16] == b':')
        {
            return false;
        }
        let mut rest = &s[19..];
        if rest.len() >= 2 && rest.starts_with('.') && rest.as_bytes()[1].is_ascii_digit() {
            let end = 1 + rest[1..].bytes().take_while(u8::is_ascii_digit).count();
            rest = &rest[end..];
        }
        if rest == "Z" {
            return true;
        }
        let z = rest.as_bytes();
        z.len() == 6
            && (z[0] == b'+' || z[0] == b'-')
            && z[3] == b':'
            && z[1..3].iter().all(u8::is_ascii_digit)
            && z[4..6].iter().all(u8::is_ascii_digit)
            && rest[1..3].parse::<u32>().is_ok_and(|h| h <= 23)
            && rest[4..6].parse::<u32>().is_ok_and(|m| m <= 59)
    }

    #[test]
    fn time_is_emitted_in_the_form_go_parses() {
        for (upstream_time, emitted) in [
            ("2024-05-01t10:00:00z", "2024-05-01T10:00:00Z"),
            ("2024-05-01 10:00:00Z", "2024-05-01T10:00:00Z"),
            ("2016-12-31T23:59:60Z", "2016-12-31T23:59:59.999999999Z"),
            (
                "2016-12-31T23:59:60.5+01:00",
                "2016-12-31T23:59:59.999999999+01:00",
            ),
            ("2024-05-01T10:00:00-00:00", "2024-05-01T10:00:00Z"),
            ("2024-05-01T10:00:00+00:00", "2024-05-01T10:00:00Z"),
            (
                "2024-05-01T10:00:00.120000-05:30",
                "2024-05-01T10:00:00.12-05:30",
            ),
            ("2024-05-01T10:00:00.000Z", "2024-05-01T10:00:00Z"),
            (
                "2024-05-01T10:00:00.123456789+14:00",
                "2024-05-01T10:00:00.123456789+14:00",
            ),
        ] {
            assert!(
                chrono::DateTime::parse_from_rfc3339(upstream_time).is_ok(),
                "ingest accepts {upstream_time}"
            );
            let mut up = upstream();
            up.time = Some(upstream_time.to_owned());
            let j = round_trip(&emit(&up, EVENT_ID, None));
            assert_eq!(j["time"], emitted, "{upstream_time}");
            assert!(go_accepts(emitted), "{emitted}");
            // The upstream text stays where it was.
            assert_eq!(j["data"]["origin"]["time"], upstream_time);
        }
        // The transcribed grammar refuses what Go refuses, so the assertions above mean something.
        for refused in [
            "2024-05-01t10:00:00Z",
            "2024-05-01 10:00:00Z",
            "2016-12-31T23:59:60Z",
            "2024-05-01T10:00:00z",
            "2024-05-01T10:00:00,5Z",
            "2024-02-30T10:00:00Z",
            "2024-05-01T10:00:00+24:00",
        ] {
            assert!(!go_accepts(refused), "{refused}");
        }
        assert!(go_accepts("2024-05-01T10:00:00-00:00"));
    }

    #[test]
    fn sequence_beyond_the_integer_range_is_a_string() {
        assert_eq!(sequence_value(7), ExtensionValue::Integer(7));
        assert_eq!(
            sequence_value(i64::from(i32::MAX) + 1),
            ExtensionValue::String("2147483648".into())
        );
    }

    #[test]
    fn base32_matches_rfc4648_vectors() {
        for (input, expected) in [
            ("", ""),
            ("f", "my"),
            ("fo", "mzxq"),
            ("foo", "mzxw6"),
            ("foob", "mzxw6yq"),
            ("fooba", "mzxw6ytb"),
            ("foobar", "mzxw6ytboi"),
        ] {
            assert_eq!(base32_lower(input.as_bytes()), expected);
        }
        assert_eq!(base32_lower(&[0xff; 16]).len(), 26);
    }

    fn is_dns_label(name: &str) -> bool {
        let b = name.as_bytes();
        !b.is_empty()
            && b.len() <= 63
            && b.iter()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
            && b[0] != b'-'
            && b[b.len() - 1] != b'-'
    }

    #[test]
    fn workflow_name_shape() {
        let id = Uuid::parse_str(EVENT_ID).unwrap();
        let name = workflow_name("acme", "upsert", id);
        assert_eq!(name, format!("acme-upsert-{}", base32_lower(id.as_bytes())));
        assert_eq!(name, workflow_name("acme", "upsert", id), "deterministic");
        // The example in the normalization docs.
        assert_eq!(
            workflow_name("acme-corp", "delete", id),
            "acme-corp-delete-agipnms4dz5dxdyaaerukz4jvm"
        );

        let long_tenant = format!("t{}9", "-a".repeat(30)); // 62 chars, many dashes
        let tenant63 = "a".repeat(63);
        for (tenant, action) in [
            (
                tenant63.as_str(),
                "migrate-out-with-a-very-long-action-name",
            ),
            (long_tenant.as_str(), "migrate-in"),
            ("a", "x"),
            ("acme-corp-eu", "admin"),
            ("acme", "Weird_Action.v2"),
            ("0", "-"),
            ("", ""),
        ] {
            for _ in 0..200 {
                let name = workflow_name(tenant, action, Uuid::now_v7());
                assert!(is_dns_label(&name), "{name:?} from {tenant:?}/{action:?}");
            }
        }
        let name = workflow_name(&tenant63, "migrate-out-with-a-very-long-action-name", id);
        assert_eq!(name.len(), 63);
        assert!(name.starts_with(&"a".repeat(36)));
        // A prefix cut right after a '-' does not leave "--".
        let cut = workflow_name(&format!("{}-b", "a".repeat(35)), "upsert", id);
        assert!(
            cut.starts_with(&format!("{}-", "a".repeat(35))) && !cut.contains("--"),
            "{cut}"
        );
    }

    #[test]
    fn workflow_names_are_distinct_per_emission() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..5000 {
            let id = Uuid::from_u128(rand::random());
            let name = workflow_name("acme", "upsert", id);
            assert!(is_dns_label(&name));
            assert!(seen.insert(name));
        }
        // Ids that differ in the last bit only still differ in the name.
        let a = workflow_name("acme", "upsert", Uuid::from_u128(0));
        let b = workflow_name("acme", "upsert", Uuid::from_u128(1));
        assert_ne!(a, b);
    }
}
