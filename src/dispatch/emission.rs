//! From a pending emission in the journal to the bytes a sink sends: the canonical CloudEvent
//! (`docs/normalization.md`, "The canonical event") in structured JSON.

use std::borrow::Cow;

use bytes::Bytes;
use serde::Serialize;
use serde_json::value::RawValue;
use uuid::Uuid;

use super::sinks::ArgoRouting;
use crate::cloudevents::CloudEvent;
use crate::cloudevents::ExtensionValue;
use crate::journal::{PendingEmission, PendingEvent, StoredEvent};
use crate::normalize::canonical::{
    canonical_event, CanonicalEvent, EmissionInput, Payload, Upstream,
};
use crate::normalize::{Lifecycle, LifecycleDetails};

/// An emission ready to send: its id and the structured-mode body.
#[derive(Debug, Clone)]
pub struct EncodedEmission {
    /// The canonical event's id (also the eventbus `Nats-Msg-Id`).
    pub id: String,
    /// `application/cloudevents+json` body.
    pub body: Bytes,
    /// The Workflow name the Sensors will give this emission (for logs and links).
    pub workflow_name: String,
}

/// A pending emission as the dispatcher queues it: encoded once when read from the journal
/// (the stored document is dropped then), with what the retry loop and the records need.
#[derive(Debug)]
pub struct QueuedEmission {
    /// The emission's journal position (the attempt records' key).
    pub position: i64,
    /// Its place in the tenant's delivery order (see `PendingEmission::place`).
    pub place: i64,
    /// The emission's id (logs).
    pub emission_id: uuid::Uuid,
    /// Its event (the records update the event's status; logs).
    pub event_id: uuid::Uuid,
    /// The tenant whose queue it joins.
    pub tenant: String,
    /// The event's per-tenant sequence (logs).
    pub sequence: i64,
    /// Attempts made before it was read (a restart): the backoff continues from there.
    pub attempts: u32,
    /// When the first attempt started, if any: the retry limit counts from there.
    pub first_attempt_at: Option<chrono::DateTime<chrono::Utc>>,
    /// The bytes to send, or why the stored row cannot be sent (then it is dead at once).
    pub encoded: Result<EncodedEmission, EmissionError>,
}

impl QueuedEmission {
    /// Encodes `pending` for the sink.
    pub fn prepare(
        pending: PendingEmission,
        instance_source: &str,
        routing: Option<&ArgoRouting>,
    ) -> Self {
        let encoded = encode(&pending, instance_source, routing);
        let event = pending.event;
        QueuedEmission {
            position: pending.position,
            place: pending.place,
            emission_id: pending.emission_id,
            event_id: event.event_id,
            tenant: event.tenant,
            sequence: event.sequence,
            attempts: pending.attempts,
            first_attempt_at: pending.first_attempt_at,
            encoded,
        }
    }
}

/// Why a journaled event cannot be emitted (a corrupt row: no retry can fix it).
#[derive(Debug, thiserror::Error)]
#[error("stored event {event_id} cannot be emitted: {reason}")]
pub struct EmissionError {
    /// The event whose row is unusable.
    pub event_id: uuid::Uuid,
    /// What is wrong with it.
    pub reason: String,
}

/// The canonical CloudEvent (structured JSON, as the `log` and `webhook` sinks send it) of an
/// emission of `event`: what the admin API shows as an event's canonical form. It is the
/// dispatcher's bytes, decoded, so the two cannot differ.
pub fn canonical_json(
    event: &StoredEvent,
    emission_id: Uuid,
    replay_of: Option<Uuid>,
    instance_source: &str,
) -> Result<serde_json::Value, EmissionError> {
    let pending = PendingEmission {
        position: 0,
        emission_id,
        replay_of,
        attempts: 0,
        first_attempt_at: None,
        place: 0,
        event: PendingEvent {
            event_id: event.event_id,
            id: event.id.clone(),
            tenant: event.tenant.clone(),
            action: event.action.clone(),
            sequence: event.sequence,
            received_at: event.received_at.clone(),
            document: event.document.to_string(),
            lifecycle: event.lifecycle.to_string(),
        },
    };
    let encoded = encode(&pending, instance_source, None)?;
    serde_json::from_slice(&encoded.body).map_err(|error| EmissionError {
        event_id: event.event_id,
        reason: format!("the emission is not JSON: {error}"),
    })
}

/// The members of a stored upstream document that the canonical event copies, borrowed from
/// its text. Only these are read: the document was validated as a CloudEvent when it was
/// accepted, and the journal stores it as the gateway wrote it.
#[derive(serde::Deserialize)]
struct StoredUpstream<'a> {
    #[serde(borrow)]
    id: Cow<'a, str>,
    #[serde(borrow)]
    source: Cow<'a, str>,
    #[serde(borrow, rename = "type")]
    ty: Cow<'a, str>,
    #[serde(borrow, default)]
    time: Option<Cow<'a, str>>,
    /// JSON data as stored (also a 0.3 event's base64 `data`, which is the same string).
    #[serde(borrow, default)]
    data: Option<&'a RawValue>,
    /// A 1.0 event's binary data: already standard base64, as the canonical event sends it.
    #[serde(borrow, default)]
    data_base64: Option<Cow<'a, str>>,
    #[serde(default)]
    traceparent: Option<serde_json::Value>,
    #[serde(default)]
    tracestate: Option<serde_json::Value>,
}

/// A stored extension value as the JSON format carries it (string, boolean or 32-bit integer).
fn stored_extension(value: serde_json::Value) -> Result<ExtensionValue, String> {
    match value {
        serde_json::Value::String(text) => Ok(ExtensionValue::String(text)),
        serde_json::Value::Bool(flag) => Ok(ExtensionValue::Boolean(flag)),
        serde_json::Value::Number(number) => number
            .as_i64()
            .and_then(|n| i32::try_from(n).ok())
            .map(ExtensionValue::Integer)
            .ok_or_else(|| format!("{number} is not a 32-bit integer")),
        other => Err(format!("{other} is not an extension value")),
    }
}

/// Builds the canonical CloudEvent of `emission` from its stored text, with `instance_source`
/// as its `source`, and writes its bytes: no `Value` tree of the document or the payload.
fn encode(
    emission: &PendingEmission,
    instance_source: &str,
    routing: Option<&ArgoRouting>,
) -> Result<EncodedEmission, EmissionError> {
    let event = &emission.event;
    let corrupt = |reason: String| EmissionError {
        event_id: event.event_id,
        reason,
    };
    let upstream: StoredUpstream<'_> = serde_json::from_str(&event.document)
        .map_err(|error| corrupt(format!("the stored document is unreadable: {error}")))?;
    let details: LifecycleDetails = serde_json::from_str(&event.lifecycle)
        .map_err(|error| corrupt(format!("the stored lifecycle details are invalid: {error}")))?;
    let trace = |value: Option<serde_json::Value>| {
        value
            .map(stored_extension)
            .transpose()
            .map_err(|error| corrupt(format!("a stored trace extension is invalid: {error}")))
    };
    let traceparent = trace(upstream.traceparent)?;
    let tracestate = trace(upstream.tracestate)?;
    let payload = match (upstream.data, upstream.data_base64.as_deref()) {
        (Some(data), _) => Payload::Stored(data),
        (None, Some(base64)) => Payload::Text(base64),
        (None, None) => Payload::Null,
    };
    let mut canonical = canonical_event(&EmissionInput {
        emission_id: emission.emission_id,
        replay_of: emission.replay_of,
        instance_source,
        sequence: event.sequence,
        tenant: &event.tenant,
        action: &event.action,
        parameters: &details.parameters,
        object_storage: details.object_storage.as_ref(),
        upstream: Upstream {
            id: &upstream.id,
            source: &upstream.source,
            ty: &upstream.ty,
            time: upstream.time.as_deref(),
            traceparent: traceparent.as_ref(),
            tracestate: tracestate.as_ref(),
            payload,
        },
        received_at: &event.received_at,
    });
    route_for_argo(&mut canonical.attributes, instance_source, routing);
    Ok(EncodedEmission {
        body: Bytes::from(canonical_bytes(&canonical)),
        id: canonical.attributes.id,
        workflow_name: canonical.data.workflow_name,
    })
}

/// The emission bytes of `canonical`: [`argo_safe_json`] of the whole event, written from its
/// parts. `data` sorts before every other member name of a canonical event (attributes and the
/// extensions it has all sort after it), so the event is `{"data":..` followed by the members
/// of its attributes (`canonical_bytes_are_those_of_the_value_tree` holds the bytes equal).
fn canonical_bytes(canonical: &CanonicalEvent<'_>) -> Vec<u8> {
    let mut out = Vec::with_capacity(1024);
    out.extend_from_slice(br#"{"data":"#);
    write_argo_safe(&mut out, &canonical.data);
    let attributes_start = out.len();
    write_argo_safe(&mut out, &canonical.attributes);
    // The attributes' opening brace becomes the separator after `data`.
    if out.get(attributes_start) == Some(&b'{') {
        out[attributes_start] = b',';
    }
    out
}

/// With `routing` (the `eventbus` sink), `source` and `subject` become the EventSource and event
/// names, because Argo's JetStream Sensors match dependencies by exactly these two attributes
/// and drop anything else; the instance URI moves to the `gatewaysource` extension, and the
/// tenant stays in the `tenant` extension and in data.
fn route_for_argo(
    canonical: &mut CloudEvent,
    instance_source: &str,
    routing: Option<&ArgoRouting>,
) {
    if let Some(routing) = routing {
        canonical.source = routing.event_source_name.clone();
        canonical.subject = Some(routing.event_name.clone());
        canonical.extensions.insert(
            "gatewaysource".into(),
            ExtensionValue::String(instance_source.to_owned()),
        );
    }
}

/// The emission bytes: compact JSON in which no character Argo would misread appears raw. This
/// is the one place emission bytes are produced; decoded, the value is unchanged.
///
/// - `{` inside strings is written `\u007b`: argo-workflows substitutes parameters again after
///   the Sensor has put the event into one (`workflow/common/util.go` `SubstituteParams`, then
///   `util/template` `Replace`, which expands `{{...}}` and evaluates `{{=...}}` expressions), so
///   a `{{` in the text would be expanded or evaluated. Compact JSON has no `{{` outside strings
///   (an object's `{` is followed by `"` or `}`).
/// - U+0085, U+2028 and U+2029 are written as escapes: Go's YAML reads them as line breaks inside
///   the block scalar the event is placed in.
/// - `<`, `>` and `&` are written as escapes, as Go's `encoding/json` writes them when Argo's
///   webhook EventSource re-marshals the body (`json.RawMessage` is compacted with HTML
///   escaping): so the size measured here is the size on the bus, not up to six times less.
///
/// `value` is a `Value` or a [`CloudEvent`], which serializes as its `to_json` without building
/// that tree (the dispatcher's path).
pub fn argo_safe_json<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    let mut out = Vec::with_capacity(1024);
    write_argo_safe(&mut out, value);
    out
}

/// Appends [`argo_safe_json`] of `value` to `out`.
fn write_argo_safe<T: Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) {
    let start = out.len();
    let mut serializer = serde_json::Serializer::with_formatter(&mut *out, ArgoSafeFormatter);
    // Writing JSON to a Vec fails only on a map key that is not a string; none of the values
    // written here has one, and the writer cannot fail.
    if value.serialize(&mut serializer).is_err() {
        out.truncate(start);
    }
}

/// serde_json's compact formatter, with the extra escapes of [`argo_safe_json`]. Only string
/// fragments (the unescaped runs of a string, keys included) pass through here.
struct ArgoSafeFormatter;

impl serde_json::ser::Formatter for ArgoSafeFormatter {
    fn write_string_fragment<W>(&mut self, writer: &mut W, fragment: &str) -> std::io::Result<()>
    where
        W: ?Sized + std::io::Write,
    {
        // Scanned as bytes: each character escaped here is one ASCII byte or a fixed UTF-8
        // sequence (U+0085 is C2 85, U+2028 and U+2029 are E2 80 A8 and E2 80 A9), and a lead
        // byte followed by its continuation bytes is exactly that character.
        let bytes = fragment.as_bytes();
        let (mut start, mut index) = (0, 0);
        while index < bytes.len() {
            let (escaped, length): (&[u8], usize) = match bytes[index] {
                b'{' => (br"\u007b", 1),
                b'<' => (br"\u003c", 1),
                b'>' => (br"\u003e", 1),
                b'&' => (br"\u0026", 1),
                0xC2 if bytes.get(index + 1) == Some(&0x85) => (br"\u0085", 2),
                0xE2 if bytes.get(index + 1) == Some(&0x80) => match bytes.get(index + 2) {
                    Some(0xA8) => (br"\u2028", 3),
                    Some(0xA9) => (br"\u2029", 3),
                    _ => {
                        index += 1;
                        continue;
                    }
                },
                _ => {
                    index += 1;
                    continue;
                }
            };
            writer.write_all(&bytes[start..index])?;
            writer.write_all(escaped)?;
            index += length;
            start = index;
        }
        writer.write_all(&bytes[start..])
    }

    /// Stored JSON text (a payload, see [`Payload::Stored`]) gets the escapes of its strings
    /// here: outside strings JSON has only structure, numbers and literals, none of them
    /// escaped, and inside them an escape sequence holds none of the escaped characters, so
    /// each string's text goes through [`Self::write_string_fragment`] as it stands.
    fn write_raw_fragment<W>(&mut self, writer: &mut W, fragment: &str) -> std::io::Result<()>
    where
        W: ?Sized + std::io::Write,
    {
        let bytes = fragment.as_bytes();
        let mut outside = 0;
        let mut index = 0;
        while index < bytes.len() {
            if bytes[index] != b'"' {
                index += 1;
                continue;
            }
            // A string from `index`: find its closing quote, stepping over escape sequences.
            let open = index + 1;
            let mut close = open;
            while close < bytes.len() && bytes[close] != b'"' {
                close += if bytes[close] == b'\\' { 2 } else { 1 };
            }
            let close = close.min(bytes.len());
            writer.write_all(&bytes[outside..open])?;
            self.write_string_fragment(writer, &fragment[open..close])?;
            outside = close;
            index = close + 1;
        }
        writer.write_all(&bytes[outside.min(bytes.len())..])
    }
}

/// The largest emission body, in bytes. Both variants put it on the JetStream EventBus, whose
/// default `max_payload` is 1 MiB (argo-events `JetStreamMaxPayload = "1MB"` in
/// `pkg/apis/events/v1alpha1/const.go`, written to `max_payload` of the server config by
/// `pkg/reconciler/eventbus/installer/jetstream.go`; NATS counts headers in it). The webhook
/// variant's EventSource also reads at most `maxPayloadSize` (1 MiB by default) and then wraps
/// the body as `{"header": .., "body": ..}` in a CloudEvent of its own before publishing
/// (`pkg/eventsources/sources/webhook/start.go`): 16 KiB are left for the request headers, that
/// envelope and the `Nats-Msg-Id` header.
pub const MAX_EMISSION_BYTES: usize = 1024 * 1024 - 16 * 1024;

/// The largest `data` member of an emission as it stands inside the Workflow: a JSON string
/// (every `"` and `\` doubled), once in `spec.arguments` (the Sensor's parameter) and once more
/// in `status.storedWorkflowSpec` (argo-workflows `workflow/controller/operator.go`
/// `setStoredWfSpec`). Two copies and 256 KiB for the rest of the Workflow (its template spec,
/// metadata and node status) fit etcd's 1.5 MiB request limit. The bridge's event ConfigMap
/// (1 MiB) holds the same text unquoted, so it fits too.
pub const MAX_WORKFLOW_EVENT_BYTES: usize = (1536 * 1024 - 256 * 1024) / 2;

/// Why an event cannot be accepted: its emission could never be delivered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EmissionTooLarge {
    #[error(
        "the event's emission would be {size} bytes, over the limit of {limit} bytes \
         (the Argo EventBus max_payload of 1 MiB, less room for the EventSource's envelope)"
    )]
    Body {
        /// The emission's size in bytes, as a replay of it would be sent.
        size: usize,
        /// [`MAX_EMISSION_BYTES`].
        limit: usize,
    },
    #[error(
        "the event's data would take {size} bytes in each of the two copies the Argo Workflow \
         keeps of it, over the limit of {limit} bytes (etcd's 1.5 MiB object limit)"
    )]
    Workflow {
        /// The `data` member's size as a JSON string.
        size: usize,
        /// [`MAX_WORKFLOW_EVENT_BYTES`].
        limit: usize,
    },
}

/// What the size check needs to know about where emissions go: the same inputs the dispatcher
/// encodes with.
#[derive(Debug, Clone)]
pub struct EmissionTarget {
    /// The canonical `source` (or the `gatewaysource` extension with routing).
    pub instance_source: String,
    /// The eventbus sink's routing, which adds an extension.
    pub routing: Option<ArgoRouting>,
}

impl EmissionTarget {
    /// Refuses an event whose emission could never be delivered. The emission is measured as its
    /// largest form: a replay (which adds `replayof`), with the largest sequence, so an event
    /// accepted now can still be replayed later.
    ///
    /// Most events are far below both limits, and [`Self::size_bound`] proves that without
    /// building the emission; only the others are built and measured.
    pub fn check_fits(
        &self,
        upstream: &CloudEvent,
        lifecycle: &Lifecycle,
    ) -> Result<(), EmissionTooLarge> {
        let details = LifecycleDetails::of(lifecycle);
        let bound = self.size_bound(upstream, lifecycle, &details);
        if bound <= MAX_EMISSION_BYTES && 2 + 2 * bound <= MAX_WORKFLOW_EVENT_BYTES {
            return Ok(());
        }
        self.measure(upstream, lifecycle, &details)
    }

    /// An upper bound of the emission's size, from the sizes of what it is made of. Every
    /// string and value of the emission is either fixed text (keys, ids, the sequence, times:
    /// [`EMISSION_OVERHEAD`]) or a copy of a part of the upstream event (each at most three
    /// times: `id`, `source` and `type` are in two extensions and `data.origin`, data once),
    /// the lifecycle details, the tenant, the action or the target's names. The upstream event
    /// as compact JSON holds each of its parts at least at its raw length, and
    /// [`argo_safe_json`] writes a byte of raw text as at most six (`\u003c` for `<`). The
    /// `data` member as a JSON string is at most twice its text, plus the quotes.
    fn size_bound(
        &self,
        upstream: &CloudEvent,
        lifecycle: &Lifecycle,
        details: &LifecycleDetails,
    ) -> usize {
        let routing = self
            .routing
            .as_ref()
            .map_or(0, |r| r.event_source_name.len() + r.event_name.len());
        let copied = 3 * json_length(upstream)
            + json_length(details)
            + 3 * (lifecycle.tenant.as_str().len() + lifecycle.action.len())
            + 2 * self.instance_source.len()
            + routing;
        EMISSION_OVERHEAD + 6 * copied
    }

    /// Builds the emission as its largest replay would be sent and measures it.
    fn measure(
        &self,
        upstream: &CloudEvent,
        lifecycle: &Lifecycle,
        details: &LifecycleDetails,
    ) -> Result<(), EmissionTooLarge> {
        let (size, quoted) = self.emission_sizes(upstream, lifecycle, details);
        if size > MAX_EMISSION_BYTES {
            return Err(EmissionTooLarge::Body {
                size,
                limit: MAX_EMISSION_BYTES,
            });
        }
        if quoted > MAX_WORKFLOW_EVENT_BYTES {
            return Err(EmissionTooLarge::Workflow {
                size: quoted,
                limit: MAX_WORKFLOW_EVENT_BYTES,
            });
        }
        Ok(())
    }

    /// The largest replay's body and its `data` member as a JSON string, in bytes.
    fn emission_sizes(
        &self,
        upstream: &CloudEvent,
        lifecycle: &Lifecycle,
        details: &LifecycleDetails,
    ) -> (usize, usize) {
        let received_at = crate::journal::operator::stored_time(chrono::Utc::now());
        let largest_id = Uuid::max();
        let mut canonical = canonical_event(&EmissionInput {
            emission_id: largest_id,
            replay_of: Some(largest_id),
            instance_source: &self.instance_source,
            sequence: i64::MAX,
            tenant: lifecycle.tenant.as_str(),
            action: &lifecycle.action,
            parameters: &details.parameters,
            object_storage: details.object_storage.as_ref(),
            upstream: Upstream::of(upstream),
            received_at: &received_at,
        });
        route_for_argo(
            &mut canonical.attributes,
            &self.instance_source,
            self.routing.as_ref(),
        );
        let data = argo_safe_json(&canonical.data);
        (canonical_bytes(&canonical).len(), json_string_length(&data))
    }
}

/// The fixed text of an emission, generously: member names, the two ids and the workflow name
/// (36 bytes each as text, the name at most 63), the largest sequence, the `time` attribute and
/// the structure. Measured at about 450 bytes (`the_size_bound_is_never_below_the_emission`).
const EMISSION_OVERHEAD: usize = 2048;

/// Bytes in `value` as compact JSON, counted without keeping them.
fn json_length<T: Serialize + ?Sized>(value: &T) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0 += bytes.len();
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    // Neither an event nor lifecycle details has a non-string map key, the only failure;
    // were one to fail, a bound of "unknown" sends the event to the exact measurement.
    match serde_json::to_writer(&mut count, value) {
        Ok(()) => count.0,
        Err(_) => usize::MAX / 16,
    }
}

/// The length of `text` written as a JSON string, quotes included. `text` is [`argo_safe_json`]
/// output: no control characters and no `<`, `>`, `&` appear raw, so only `"` and `\` grow.
fn json_string_length(text: &[u8]) -> usize {
    2 + text.len() + text.iter().filter(|&&b| b == b'"' || b == b'\\').count()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::{json, Value};

    use super::*;
    use crate::cloudevents::format::event_from_json;
    use crate::cloudevents::Data;
    use crate::normalize::TenantName;

    const EVENT_ID: &str = "0190f6b2-5c1e-7a3b-8f00-0123456789ab";

    /// A stored event whose payload is `data`, as the journal would hand it to the dispatcher.
    fn pending(data: Value, replay: bool) -> PendingEmission {
        let event_id = Uuid::parse_str(EVENT_ID).unwrap();
        let document = json!({
            "specversion": "1.0",
            "id": "up-1",
            "source": "//crm.acme.example",
            "type": "com.acme.tenant.lifecycle.upsert",
            "subject": "acme",
            "time": "2024-05-01t10:00:00z",
            "datacontenttype": "application/json",
            "data": data,
        });
        PendingEmission {
            position: 1,
            emission_id: if replay { Uuid::now_v7() } else { event_id },
            replay_of: replay.then_some(event_id),
            attempts: 0,
            first_attempt_at: None,
            place: 1,
            event: PendingEvent {
                event_id,
                id: "up-1".into(),
                tenant: "acme".into(),
                action: "upsert".into(),
                sequence: 7,
                received_at: "2024-05-01T10:00:01.000000Z".into(),
                document: document.to_string(),
                lifecycle: json!({"parameters": {"plan": "{{workflow.name}}"}}).to_string(),
            },
        }
    }

    fn body_of(pending: PendingEmission, routing: Option<&ArgoRouting>) -> Vec<u8> {
        QueuedEmission::prepare(pending, "urn:tenant-gateway:test", routing)
            .encoded
            .expect("encodes")
            .body
            .to_vec()
    }

    fn contains(haystack: &[u8], needle: &[u8]) -> bool {
        haystack
            .windows(needle.len())
            .any(|window| window == needle)
    }

    #[test]
    fn emitted_bytes_hold_no_template_braces_nor_yaml_line_breaks() {
        let payload = json!({
            "name": "{{workflow.name}}",
            "expr": "{{=sprig.trim(inputs.parameters.event)}}",
            "{{key}}": ["{{", "{", "a{b{{c"],
            "separators": "nel\u{85}ls\u{2028}ps\u{2029}end",
            "html": "<script>&amp;</script>",
        });
        let routing = ArgoRouting {
            event_source_name: "tenant-gateway".into(),
            event_name: "lifecycle".into(),
        };
        for routing in [None, Some(&routing)] {
            let bytes = body_of(pending(payload.clone(), false), routing);
            assert!(
                !contains(&bytes, b"{{"),
                "{}",
                String::from_utf8_lossy(&bytes)
            );
            for separator in ["\u{85}", "\u{2028}", "\u{2029}"] {
                assert!(!contains(&bytes, separator.as_bytes()), "{separator:?}");
            }
            for raw in [b"<", b">", b"&"] {
                assert!(!contains(&bytes, raw));
            }
            // Decoded, nothing changed: the payload and the rule's parameter are as sent.
            let decoded: Value = serde_json::from_slice(&bytes).unwrap();
            assert_eq!(decoded["data"]["payload"], payload);
            assert_eq!(decoded["data"]["parameters"]["plan"], "{{workflow.name}}");
            assert_eq!(decoded["data"]["origin"]["time"], "2024-05-01t10:00:00z");
            assert_eq!(decoded["time"], "2024-05-01T10:00:00Z");
            // The escaping is the only difference from plain compact JSON.
            assert_eq!(argo_safe_json(&decoded), bytes);
            assert_eq!(
                serde_json::from_slice::<Value>(decoded.to_string().as_bytes()).unwrap(),
                decoded
            );
        }
    }

    /// The dispatcher writes the canonical event from the stored text (the payload copied as
    /// it stands, `data` spliced before the attributes); the admin API and the size check
    /// build it from a decoded event. Both must give the bytes of the `Value` tree of the whole
    /// event, for every kind of data and text the escaping touches, in both versions, with
    /// trace context of each type, as first delivery and replay, with and without routing.
    #[test]
    fn canonical_bytes_are_those_of_the_value_tree() {
        let hostile = "a{{b}} <c>&d \u{85}\u{2028}\u{2029} \"q\" \\ \n\t\u{1}\u{7f} é 😀 {";
        // Attributes may hold no control characters (ingest refuses them); data may.
        let attribute = "a{{b}} <c>&d \u{2028}\u{2029} \"q\" \\ é 😀 {";
        let payloads = [
            json!(null),
            json!({"b": 1, "a": [1.5, -0.0, 1e300, 111111000006371555158481727944.0, -7, 18446744073709551615u64]}),
            json!({ hostile: [hostile, {"{": {"}": hostile}}], "": {}, "nested": [[[]]] }),
            json!(hostile),
            json!([true, false, null, 0, "\\\"{"]),
        ];
        let mut documents: Vec<Value> = payloads
            .iter()
            .map(|data| {
                json!({
                    "specversion": "1.0", "id": format!("id-{attribute}"), "source": "/s{<",
                    "type": "t.{{x}}", "datacontenttype": "application/json", "data": data,
                    "traceparent": attribute, "tracestate": "k=v", "unrelated": "x",
                })
            })
            .collect();
        documents.extend([
            json!({"specversion": "1.0", "id": "t", "source": "/s", "type": "t",
                   "datacontenttype": "text/plain", "data": hostile, "time": "2024-05-01t10:00:00.5z"}),
            json!({"specversion": "1.0", "id": "b", "source": "/s", "type": "t",
                   "data_base64": "AAEC/+7d", "traceparent": 7, "tracestate": true}),
            json!({"specversion": "0.3", "id": "o", "source": "/s", "type": "t",
                   "datacontentencoding": "base64", "data": "AAEC/+7d"}),
            json!({"specversion": "1.0", "id": "n", "source": "/s", "type": "t",
                   "time": "1990-12-31T23:59:60Z"}),
        ]);
        let routing = ArgoRouting {
            event_source_name: "tenant-gateway".into(),
            event_name: "lifecycle".into(),
        };
        let mut checked = 0;
        for document in documents {
            let upstream = event_from_json(document.clone()).unwrap_or_else(|v| panic!("{v:?}"));
            let stored = serde_json::to_string(&upstream).unwrap();
            for replay in [false, true] {
                let mut pending = pending(Value::Null, replay);
                pending.event.document = stored.clone();
                for routing in [None, Some(&routing)] {
                    let details: LifecycleDetails =
                        serde_json::from_str(&pending.event.lifecycle).unwrap();
                    let mut tree = canonical_event(&EmissionInput {
                        emission_id: pending.emission_id,
                        replay_of: pending.replay_of,
                        instance_source: "urn:tenant-gateway:test",
                        sequence: pending.event.sequence,
                        tenant: &pending.event.tenant,
                        action: &pending.event.action,
                        parameters: &details.parameters,
                        object_storage: details.object_storage.as_ref(),
                        upstream: Upstream::of(&upstream),
                        received_at: &pending.event.received_at,
                    })
                    .into_cloud_event();
                    route_for_argo(&mut tree, "urn:tenant-gateway:test", routing);
                    let expected = argo_safe_json(&tree.to_json());
                    let written = body_of(pending.clone(), routing);
                    assert_eq!(
                        String::from_utf8_lossy(&written),
                        String::from_utf8_lossy(&expected),
                        "{document}"
                    );
                    checked += 1;
                }
            }
        }
        assert_eq!(checked, 9 * 2 * 2);
    }

    /// A row the canonical event cannot be written from is reported for that emission, naming
    /// what is wrong, not for its page.
    #[test]
    fn an_unreadable_stored_row_names_what_is_wrong() {
        let cases = [
            ("document", "{", "the stored document is unreadable"),
            ("document", r#"{"id": "x"}"#, "missing field `source`"),
            ("lifecycle", "7", "the stored lifecycle details are invalid"),
            (
                "trace",
                r#"{"id":"i","source":"/s","type":"t","traceparent":[1]}"#,
                "trace",
            ),
        ];
        for (part, text, expected) in cases {
            let mut pending = pending(Value::Null, false);
            match part {
                "lifecycle" => pending.event.lifecycle = text.into(),
                _ => pending.event.document = text.into(),
            }
            let error = QueuedEmission::prepare(pending, "urn:tenant-gateway:test", None)
                .encoded
                .expect_err("unreadable")
                .to_string();
            assert!(error.contains(expected), "{part}: {error}");
            assert!(error.contains(EVENT_ID), "{error}");
        }
    }

    #[test]
    fn plain_text_is_written_as_serde_json_writes_it() {
        let value = json!({"a": [1, "x\"y\\z\n\u{1}é"], "b": {"c": null}});
        assert_eq!(argo_safe_json(&value), value.to_string().into_bytes());
    }

    fn lifecycle() -> Lifecycle {
        Lifecycle {
            tenant: TenantName::parse("acme").unwrap(),
            action: "upsert".into(),
            parameters: BTreeMap::new(),
            object_storage: None,
            rule: None,
        }
    }

    fn upstream_with(data: Value) -> CloudEvent {
        let document = serde_json::from_str(&pending(data, false).event.document).unwrap();
        event_from_json(document).unwrap()
    }

    /// The largest `n` for which `check_fits` accepts the payload `make(n)`.
    fn largest_accepted(target: &EmissionTarget, make: impl Fn(usize) -> Value) -> usize {
        let (mut fits, mut refused) = (0usize, 2 * 1024 * 1024);
        while refused - fits > 1 {
            let middle = (fits + refused) / 2;
            match target.check_fits(&upstream_with(make(middle)), &lifecycle()) {
                Ok(()) => fits = middle,
                Err(_) => refused = middle,
            }
        }
        fits
    }

    /// The bound that lets `check_fits` skip building the emission must never be below the
    /// emission it stands for, whatever the event holds: text that escaping grows most (`<`
    /// and `{` become six bytes, control characters too, U+2028 two bytes more), in every part
    /// that the emission copies, with and without routing.
    #[test]
    fn the_size_bound_is_never_below_the_emission() {
        let hostile = ["", "x", "<{&>", "\u{1}\u{2028}\"", "\u{85}<<<<{{{{"];
        let targets = [
            EmissionTarget {
                instance_source: "urn:tenant-gateway:test".into(),
                routing: None,
            },
            EmissionTarget {
                instance_source: "<".repeat(40),
                routing: Some(ArgoRouting {
                    event_source_name: "{".repeat(30),
                    event_name: "&".repeat(30),
                }),
            },
        ];
        let mut checked = 0;
        for target in &targets {
            for text in hostile {
                for repeat in [0, 1, 2000] {
                    let t = text.repeat(repeat);
                    let mut upstream = upstream_with(json!({ t.clone(): [t.clone(), {"k": t}] }));
                    upstream.id = format!("id{}", text.repeat(repeat));
                    upstream.source = format!("/{}", text.repeat(repeat));
                    upstream.time = None;
                    upstream.extensions.insert(
                        "traceparent".into(),
                        ExtensionValue::String(text.repeat(repeat)),
                    );
                    let mut lifecycle = lifecycle();
                    lifecycle.action = format!("a{}", text.repeat(repeat));
                    lifecycle
                        .parameters
                        .insert(text.repeat(repeat), text.repeat(repeat));
                    lifecycle.object_storage = Some(crate::normalize::ObjectStorage {
                        url: text.repeat(repeat),
                    });
                    for data in [
                        None,
                        Some(Data::Text(text.repeat(repeat))),
                        Some(Data::Binary(text.repeat(repeat).into_bytes())),
                        upstream.data.clone(),
                    ] {
                        upstream.data = data;
                        let details = LifecycleDetails::of(&lifecycle);
                        let bound = target.size_bound(&upstream, &lifecycle, &details);
                        let (size, quoted) = target.emission_sizes(&upstream, &lifecycle, &details);
                        assert!(size <= bound, "{size} > {bound} for {text:?} x {repeat}");
                        assert!(quoted <= 2 + 2 * bound, "{quoted} > 2 + 2 x {bound}");
                        checked += 1;
                    }
                }
            }
        }
        assert_eq!(checked, 2 * 5 * 3 * 4);
    }

    /// The fixed part the bound allows for covers the fixed part of a real emission: the
    /// emission of an event with nothing to copy, as a replay with routing.
    #[test]
    fn the_emission_overhead_covers_an_emission_with_nothing_copied() {
        let target = EmissionTarget {
            instance_source: String::new(),
            routing: Some(ArgoRouting {
                event_source_name: String::new(),
                event_name: String::new(),
            }),
        };
        let mut upstream = upstream_with(Value::Null);
        upstream.data = None;
        let mut lifecycle = lifecycle();
        lifecycle.action = String::new();
        let details = LifecycleDetails::of(&lifecycle);
        let (size, _) = target.emission_sizes(&upstream, &lifecycle, &details);
        let copied = (target.size_bound(&upstream, &lifecycle, &details) - EMISSION_OVERHEAD) / 6;
        assert!(size <= EMISSION_OVERHEAD + copied, "{size}");
        assert!(
            size > EMISSION_OVERHEAD / 8,
            "{size}: the overhead is far too generous"
        );
    }

    #[test]
    fn the_largest_accepted_emission_fits_every_limit_even_as_a_replay() {
        let routing = ArgoRouting {
            event_source_name: "tenant-gateway".into(),
            event_name: "lifecycle".into(),
        };
        let target = EmissionTarget {
            instance_source: "urn:tenant-gateway:test".into(),
            routing: Some(routing.clone()),
        };
        // Plain text, quotes (doubled in the Workflow) and `<` (six bytes each on the bus).
        let shapes: [fn(usize) -> Value; 3] = [
            |n| json!("x".repeat(n)),
            |n| json!("\"".repeat(n)),
            |n| json!("<".repeat(n)),
        ];
        for make in shapes {
            let n = largest_accepted(&target, make);
            assert!(n > 0);
            let bytes = body_of(
                {
                    let mut replay = pending(make(n), true);
                    replay.event.lifecycle = "{}".into();
                    replay
                },
                Some(&routing),
            );
            // JetStream's default max_payload (1 MiB), headers included.
            assert!(bytes.len() + 128 <= 1024 * 1024, "{}", bytes.len());
            // Two JSON-string copies of data in a Workflow under etcd's 1.5 MiB.
            // The Sensor passes data's text as sent (escapes included) into the parameter.
            let decoded: Value = serde_json::from_slice(&bytes).unwrap();
            let data = String::from_utf8(argo_safe_json(&decoded["data"])).unwrap();
            let quoted = serde_json::to_string(&Value::String(data)).unwrap().len();
            assert!(2 * quoted + 256 * 1024 <= 1536 * 1024, "{quoted}");
            // One more byte is refused, naming the limit.
            let error = target
                .check_fits(&upstream_with(make(n + 1)), &lifecycle())
                .unwrap_err()
                .to_string();
            assert!(error.contains("over the limit of"), "{error}");
        }
    }
}
