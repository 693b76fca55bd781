//! The stored event row both backends read: the same columns, stored as text on both
//! (`migrations/postgres` keeps SQLite's representation), decoded in one place; a row that does
//! not decode is reported as corrupt.

use uuid::Uuid;

use super::status::decode;
use super::{JournalError, StoredEvent};

/// Columns of [`StoredEvent`], in [`EventRow`] order.
pub(super) const STORED_EVENT_COLUMNS: &str = "event_id, source, id, event_type, tenant, action, \
     sequence, time, received_at, document, content_hash, status, lifecycle";

/// A row of `events` as either backend returns it, before decoding the id and documents.
#[derive(sqlx::FromRow)]
pub(super) struct EventRow {
    event_id: String,
    source: String,
    id: String,
    event_type: String,
    tenant: String,
    action: String,
    sequence: i64,
    time: Option<String>,
    received_at: String,
    document: String,
    content_hash: String,
    status: String,
    lifecycle: String,
}

impl EventRow {
    pub(super) fn into_stored(self) -> Result<StoredEvent, JournalError> {
        let corrupt = |reason: String| JournalError::Corrupt {
            event_id: self.event_id.clone(),
            reason,
        };
        let event_id = Uuid::parse_str(&self.event_id)
            .map_err(|error| corrupt(format!("event id is not a UUID: {error}")))?;
        let document = serde_json::from_str(&self.document)
            .map_err(|error| corrupt(format!("document is not JSON: {error}")))?;
        let lifecycle = serde_json::from_str(&self.lifecycle)
            .map_err(|error| corrupt(format!("lifecycle is not JSON: {error}")))?;
        Ok(StoredEvent {
            event_id,
            source: self.source,
            id: self.id,
            event_type: self.event_type,
            tenant: self.tenant,
            action: self.action,
            sequence: self.sequence,
            time: self.time,
            received_at: self.received_at,
            document,
            content_hash: self.content_hash,
            status: decode(&self.status, "status", &self.event_id)?,
            lifecycle,
        })
    }
}
