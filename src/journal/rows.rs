//! The stored event row both backends read: the same columns, stored as text on both
//! (`migrations/postgres` keeps SQLite's representation), decoded in one place; a row that does
//! not decode is reported as corrupt.

use uuid::Uuid;

use super::status::decode;
use super::{JournalError, StoredEvent};

/// Columns of [`StoredEvent`], in [`EventRow`] order.
pub(super) const STORED_EVENT_COLUMNS: &str = "event_id, source, id, event_type, tenant, action, \
     sequence, time, received_at, document, content_hash, status, lifecycle";

/// Columns of [`super::PendingEvent`] (of `events AS e`), in the order [`pending_event`] decodes
/// them: only what the canonical event is built from.
const PENDING_EVENT_COLUMNS: &str =
    "e.event_id, e.id, e.tenant, e.action, e.sequence, e.received_at, e.document, e.lifecycle";

/// The read of pending emissions with their events (decoded by each backend's
/// `pending_from_row`: six emission columns, then [`PENDING_EVENT_COLUMNS`]), followed by the
/// conditions and order of one of the two reads (in the backend's parameter syntax).
pub(super) fn select_pending(conditions: &str) -> String {
    format!(
        "SELECT m.position, m.emission_id, m.replay_of, m.attempts, m.first_attempt_at, \
         COALESCE(m.place, m.position), {PENDING_EVENT_COLUMNS} \
         FROM emissions AS m JOIN events AS e ON e.event_id = m.event_id \
         WHERE m.status = 'pending' AND {conditions}"
    )
}

/// Decodes the [`PENDING_EVENT_COLUMNS`] of a row, from column `first` on, by position (no
/// lookup by name: the dispatcher decodes every pending row).
pub(super) fn pending_event<'r, R>(
    row: &'r R,
    first: usize,
) -> Result<super::PendingEvent, JournalError>
where
    R: sqlx::Row,
    usize: sqlx::ColumnIndex<R>,
    String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    // A decode failure, not a failed query: the pool's state does not matter here.
    let read = JournalError::Query;
    let event_id: String = row.try_get(first).map_err(read)?;
    let parsed = Uuid::parse_str(&event_id).map_err(|error| JournalError::Corrupt {
        event_id: event_id.clone(),
        reason: format!("event id is not a UUID: {error}"),
    })?;
    Ok(super::PendingEvent {
        event_id: parsed,
        id: row.try_get(first + 1).map_err(read)?,
        tenant: row.try_get(first + 2).map_err(read)?,
        action: row.try_get(first + 3).map_err(read)?,
        sequence: row.try_get(first + 4).map_err(read)?,
        received_at: row.try_get(first + 5).map_err(read)?,
        document: row.try_get(first + 6).map_err(read)?,
        lifecycle: row.try_get(first + 7).map_err(read)?,
    })
}

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
