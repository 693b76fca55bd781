//! From a pending emission in the journal to the bytes a sink sends: the canonical CloudEvent of
//! DESIGN.md section 4 in structured JSON.

use std::collections::BTreeMap;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::sinks::ArgoRouting;
use crate::cloudevents::format::event_from_json;
use crate::cloudevents::CloudEvent;
use crate::cloudevents::ExtensionValue;
use crate::journal::{PendingEmission, StoredEvent};
use crate::normalize::canonical::{canonical_event, EmissionInput};
use crate::normalize::{Lifecycle, ObjectStorage};

/// What normalization found besides tenant and action, as the journal keeps it (the `lifecycle`
/// column): fixed at ingest, so a rules change never alters what an accepted event emits.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LifecycleDetails {
    /// Named values for the workflow, from the rule's parameter mappings.
    #[serde(default)]
    pub parameters: BTreeMap<String, String>,
    /// Where a migration reads or writes the tenant's data.
    #[serde(default, rename = "objectStorage")]
    pub object_storage: Option<ObjectStorage>,
}

impl LifecycleDetails {
    /// The details of a freshly normalized event.
    pub fn of(lifecycle: &Lifecycle) -> Self {
        LifecycleDetails {
            parameters: lifecycle.parameters.clone(),
            object_storage: lifecycle.object_storage.clone(),
        }
    }

    /// The JSON text the journal stores.
    pub fn to_json_string(&self) -> String {
        // A map of strings and an optional struct of strings always serialize.
        serde_json::to_string(self).unwrap_or_else(|_| String::from("{}"))
    }
}

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
        mut pending: PendingEmission,
        instance_source: &str,
        routing: Option<&ArgoRouting>,
    ) -> Self {
        let encoded = encode(&mut pending, instance_source, routing);
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
/// emission of `event`: what the admin API shows as an event's canonical form.
pub fn canonical_json(
    event: &StoredEvent,
    emission_id: Uuid,
    replay_of: Option<Uuid>,
    instance_source: &str,
) -> Result<serde_json::Value, EmissionError> {
    canonical_of(
        event,
        event.document.clone(),
        event.lifecycle.clone(),
        emission_id,
        replay_of,
        instance_source,
    )
    .map(|canonical| canonical.to_json())
}

/// The canonical CloudEvent of an emission of `event`, from its stored upstream document and
/// lifecycle details (passed separately so the dispatcher can move them out of the row).
fn canonical_of(
    event: &StoredEvent,
    document: serde_json::Value,
    lifecycle: serde_json::Value,
    emission_id: Uuid,
    replay_of: Option<Uuid>,
    instance_source: &str,
) -> Result<CloudEvent, EmissionError> {
    let corrupt = |reason: String| EmissionError {
        event_id: event.event_id,
        reason,
    };
    let upstream = event_from_json(document).map_err(|violations| {
        corrupt(format!(
            "the stored document is not a valid CloudEvent: {}",
            violations
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ")
        ))
    })?;
    let details: LifecycleDetails = serde_json::from_value(lifecycle)
        .map_err(|error| corrupt(format!("the stored lifecycle details are invalid: {error}")))?;
    Ok(canonical_event(&EmissionInput {
        emission_id,
        replay_of,
        instance_source,
        sequence: event.sequence,
        tenant: &event.tenant,
        action: &event.action,
        parameters: &details.parameters,
        object_storage: details.object_storage.as_ref(),
        upstream: &upstream,
        received_at: &event.received_at,
    }))
}

/// Builds the canonical CloudEvent of `emission`, with `instance_source` as its `source`.
///
/// With `routing` (the `eventbus` sink), `source` and `subject` become the EventSource and event
/// names, because Argo's JetStream Sensors match dependencies by exactly these two attributes
/// and drop anything else; the instance URI moves to the `gatewaysource` extension, and the
/// tenant stays in the `tenant` extension and in data.
fn encode(
    emission: &mut PendingEmission,
    instance_source: &str,
    routing: Option<&ArgoRouting>,
) -> Result<EncodedEmission, EmissionError> {
    // The queue keeps only the encoded bytes, so the stored JSON is moved out, not copied.
    let document = std::mem::take(&mut emission.event.document);
    let lifecycle = std::mem::take(&mut emission.event.lifecycle);
    let mut canonical = canonical_of(
        &emission.event,
        document,
        lifecycle,
        emission.emission_id,
        emission.replay_of,
        instance_source,
    )?;
    if let Some(routing) = routing {
        canonical.source = routing.event_source_name.clone();
        canonical.subject = Some(routing.event_name.clone());
        canonical.extensions.insert(
            "gatewaysource".into(),
            ExtensionValue::String(instance_source.to_owned()),
        );
    }
    let json = canonical.to_json();
    let workflow_name = json
        .pointer("/data/workflowName")
        .and_then(|name| name.as_str())
        .unwrap_or_default()
        .to_owned();
    Ok(EncodedEmission {
        id: canonical.id.clone(),
        body: Bytes::from(json.to_string()),
        workflow_name,
    })
}
