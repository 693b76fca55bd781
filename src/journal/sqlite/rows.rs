//! Decoding stored rows into journal types; a row that does not decode is reported as corrupt.

use sqlx::Row;
use uuid::Uuid;

use super::{parse_uuid, read_error};
use crate::journal::status::decode;
use crate::journal::{JournalError, PendingEmission, StoredEvent};

/// Columns of [`StoredEvent`], in [`EventRow`] order.
pub(super) const STORED_EVENT_COLUMNS: &str =
    "event_id, source, id, event_type, tenant, action, sequence, \
                                    time, received_at, document, content_hash, status, lifecycle";

/// Decodes a row of [`SqliteJournal::pending_page`]: six emission columns, then the event.
pub(in crate::journal) fn pending_from_row(
    row: &sqlx::sqlite::SqliteRow,
) -> Result<PendingEmission, JournalError> {
    use sqlx::FromRow;
    let emission_id: String = row.try_get(1).map_err(read_error)?;
    let replay_of: Option<String> = row.try_get(2).map_err(read_error)?;
    let first_attempt_at: Option<String> = row.try_get(4).map_err(read_error)?;
    let event = EventRow::from_row(row).map_err(read_error)?.into_stored()?;
    let first_attempt_at = first_attempt_at
        .map(|t| {
            chrono::DateTime::parse_from_rfc3339(&t)
                .map(|t| t.with_timezone(&chrono::Utc))
                .map_err(|error| JournalError::Corrupt {
                    event_id: event.event_id.to_string(),
                    reason: format!("first_attempt_at is not RFC 3339: {error}"),
                })
        })
        .transpose()?;
    Ok(PendingEmission {
        position: row.try_get(0).map_err(read_error)?,
        emission_id: parse_uuid(&emission_id, "emission id")?,
        replay_of: replay_of.map(|r| parse_uuid(&r, "replay_of")).transpose()?,
        attempts: row.try_get(3).map_err(read_error)?,
        first_attempt_at,
        place: row.try_get(5).map_err(read_error)?,
        event,
    })
}

/// A row of `events` as SQLite returns it, before decoding the id and document.
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
        let event_id = Uuid::parse_str(&self.event_id).map_err(|error| JournalError::Corrupt {
            event_id: self.event_id.clone(),
            reason: format!("event id is not a UUID: {error}"),
        })?;
        let document =
            serde_json::from_str(&self.document).map_err(|error| JournalError::Corrupt {
                event_id: self.event_id.clone(),
                reason: format!("document is not JSON: {error}"),
            })?;
        let lifecycle =
            serde_json::from_str(&self.lifecycle).map_err(|error| JournalError::Corrupt {
                event_id: self.event_id.clone(),
                reason: format!("lifecycle is not JSON: {error}"),
            })?;
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
            status: decode(&self.status, "status", &self.event_id)?,
            content_hash: self.content_hash,
            lifecycle,
        })
    }
}
