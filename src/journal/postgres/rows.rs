//! Decoding stored rows into journal types; a row that does not decode is reported as corrupt.
//! Values keep the SQLite representation (see `migrations/postgres`); the event row itself is
//! shared (`journal::rows`), this adds PostgreSQL's integer widths for the outbox columns.

use sqlx::postgres::PgRow;
use sqlx::Row;

use super::{parse_uuid, read_error, stored_u32};
use crate::journal::rows::pending_event;
use crate::journal::{JournalError, PendingEmission};

/// Decodes a row of `pending_page`: six emission columns, then the event.
pub(in crate::journal) fn pending_from_row(row: &PgRow) -> Result<PendingEmission, JournalError> {
    let emission_id: String = row.try_get(1).map_err(read_error)?;
    let replay_of: Option<String> = row.try_get(2).map_err(read_error)?;
    let first_attempt_at: Option<String> = row.try_get(4).map_err(read_error)?;
    let event = pending_event(row, 6)?;
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
        attempts: stored_u32(row.try_get(3).map_err(read_error)?, "attempts")?,
        first_attempt_at,
        place: row.try_get(5).map_err(read_error)?,
        event,
    })
}
