//! Reads on the pool (the statements of `sqlite::reads`, in PostgreSQL's parameter syntax): the dispatcher's pages of pending emissions, the parked tenants, the
//! delivery attempts, and the lookups of ingest and the admin API.

use crate::journal::status::decode;
use std::sync::LazyLock;

use sqlx::Row;
use uuid::Uuid;

use super::{parse_uuid, read_error, stored_u32, PostgresJournal};
use crate::journal::rows::{select_pending, EventRow, STORED_EVENT_COLUMNS};
use crate::journal::{JournalError, StoredAttempt, StoredEvent};

/// The read pool's planner settings, sent as startup options: no bitmap scans. The reads that
/// matter return pages in position order (the dispatcher's, the admin API's cursors), and the
/// right plan for them walks an index in that order and stops at the page's end. A bitmap scan
/// cannot stop early: it collects every matching row, and a sort then picks the page. The
/// planner takes it when it expects few matching rows, which it does for `status = 'pending'`
/// on a young journal or on statistics taken while nothing was pending, and a prepared
/// statement keeps that plan after five runs (`choose_custom_plan` in PostgreSQL's
/// src/backend/utils/cache/plancache.c) until its tables are analyzed again. Measured on a
/// journal filled from empty: with 25,000 emissions pending, every page of 1,000 read, joined
/// and sorted all 25,000, 57 ms a page (docs/benchmarks.md, "Ingest by store"); a backlog
/// after a sink outage would drain in time quadratic in its size.
pub const READ_PLANNER_SETTINGS: [(&str, &str); 1] = [("enable_bitmapscan", "off")];

/// The dispatcher's page read ($1 the cursor, $2 an optional tenant, $3 the page size):
/// exported so that tests/it/journal_postgres.rs can check its plan under
/// [`READ_PLANNER_SETTINGS`].
pub fn pending_page_statement() -> &'static str {
    &SELECT_PENDING_PAGE
}

/// The dispatcher's read: a page of pending emissions in position order.
static SELECT_PENDING_PAGE: LazyLock<String> = LazyLock::new(|| {
    select_pending("m.position > $1 AND ($2 IS NULL OR m.tenant = $2) ORDER BY m.position LIMIT $3")
});

/// One tenant's pending emissions in its delivery order (an in-place replay first), read when
/// the tenant is unparked.
static SELECT_TENANT_PENDING_PAGE: LazyLock<String> = LazyLock::new(|| {
    select_pending(
        "m.tenant = $1 AND COALESCE(m.place, m.position) > $2 \
         ORDER BY COALESCE(m.place, m.position) LIMIT $3",
    )
});

impl PostgresJournal {
    pub(in crate::journal) async fn pending_page(
        &self,
        after: i64,
        tenant: Option<&str>,
        limit: usize,
    ) -> Result<Vec<sqlx::postgres::PgRow>, JournalError> {
        sqlx::query(&SELECT_PENDING_PAGE)
            .bind(after)
            .bind(tenant)
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .fetch_all(&self.inner.readers)
            .await
            .map_err(read_error)
    }

    pub(in crate::journal) async fn tenant_pending_page(
        &self,
        tenant: &str,
        after_place: i64,
        limit: usize,
    ) -> Result<Vec<sqlx::postgres::PgRow>, JournalError> {
        sqlx::query(&SELECT_TENANT_PENDING_PAGE)
            .bind(tenant)
            .bind(after_place)
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .fetch_all(&self.inner.readers)
            .await
            .map_err(read_error)
    }

    pub(in crate::journal) async fn parked_tenants(&self) -> Result<Vec<String>, JournalError> {
        sqlx::query_scalar(
            "SELECT DISTINCT tenant FROM emissions WHERE status = 'dead' AND replaced_by IS NULL",
        )
        .fetch_all(&self.inner.readers)
        .await
        .map_err(read_error)
    }

    pub(in crate::journal) async fn count_pending(&self) -> Result<u64, JournalError> {
        let count: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM emissions WHERE status = 'pending'")
                .fetch_one(&self.inner.readers)
                .await
                .map_err(read_error)?;
        Ok(u64::try_from(count).unwrap_or(0))
    }

    pub(in crate::journal) async fn delivery_attempts(
        &self,
        event_id: Uuid,
    ) -> Result<Vec<StoredAttempt>, JournalError> {
        let rows = sqlx::query(
            "SELECT m.emission_id, a.attempt, a.started_at, a.finished_at, a.sink, a.outcome, \
             a.status_code, a.error FROM emissions AS m \
             JOIN delivery_attempts AS a ON a.position = m.position \
             WHERE m.event_id = $1 ORDER BY m.position, a.attempt",
        )
        .bind(event_id.to_string())
        .fetch_all(&self.inner.readers)
        .await
        .map_err(read_error)?;
        rows.iter()
            .map(|row| {
                let emission_id: String = row.try_get(0).map_err(read_error)?;
                let outcome: String = row.try_get(5).map_err(read_error)?;
                Ok(StoredAttempt {
                    outcome: decode(&outcome, "attempt outcome", &event_id.to_string())?,
                    emission_id: parse_uuid(&emission_id, "emission id")?,
                    attempt: stored_u32(
                        row.try_get::<i32, _>(1).map_err(read_error)?.into(),
                        "attempt",
                    )?,
                    started_at: row.try_get(2).map_err(read_error)?,
                    finished_at: row.try_get(3).map_err(read_error)?,
                    sink: row.try_get(4).map_err(read_error)?,
                    status_code: row
                        .try_get::<Option<i32>, _>(6)
                        .map_err(read_error)?
                        .and_then(|code| u16::try_from(code).ok()),
                    error: row.try_get(7).map_err(read_error)?,
                })
            })
            .collect()
    }

    pub(in crate::journal) async fn find_by_origin(
        &self,
        source: &str,
        id: &str,
    ) -> Result<Option<StoredEvent>, JournalError> {
        let sql =
            format!("SELECT {STORED_EVENT_COLUMNS} FROM events WHERE source = $1 AND id = $2");
        let row: Option<EventRow> = sqlx::query_as(&sql)
            .bind(source)
            .bind(id)
            .fetch_optional(&self.inner.readers)
            .await
            .map_err(read_error)?;
        row.map(EventRow::into_stored).transpose()
    }

    pub(in crate::journal) async fn tenant_timeline(
        &self,
        tenant: &str,
    ) -> Result<Vec<StoredEvent>, JournalError> {
        let sql = format!(
            "SELECT {STORED_EVENT_COLUMNS} FROM events WHERE tenant = $1 ORDER BY sequence"
        );
        let rows: Vec<EventRow> = sqlx::query_as(&sql)
            .bind(tenant)
            .fetch_all(&self.inner.readers)
            .await
            .map_err(read_error)?;
        rows.into_iter().map(EventRow::into_stored).collect()
    }
}
