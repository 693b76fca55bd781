//! Reads on the pool: the dispatcher's pages of pending emissions, the parked tenants, the
//! delivery attempts, and the lookups of ingest and the admin API.

use std::sync::LazyLock;

use sqlx::Row;
use uuid::Uuid;

use super::{parse_uuid, read_error, SqliteJournal};
use crate::journal::rows::{select_pending, EventRow, STORED_EVENT_COLUMNS};
use crate::journal::status::decode;
use crate::journal::{JournalError, StoredAttempt, StoredEvent};

/// The dispatcher's read: a page of pending emissions in position order.
static SELECT_PENDING_PAGE: LazyLock<String> = LazyLock::new(|| {
    select_pending("m.position > ?1 AND (?2 IS NULL OR m.tenant = ?2) ORDER BY m.position LIMIT ?3")
});

/// One tenant's pending emissions in its delivery order (an in-place replay first), read when
/// the tenant is unparked.
static SELECT_TENANT_PENDING_PAGE: LazyLock<String> = LazyLock::new(|| {
    select_pending(
        "m.tenant = ?1 AND COALESCE(m.place, m.position) > ?2 \
         ORDER BY COALESCE(m.place, m.position) LIMIT ?3",
    )
});

impl SqliteJournal {
    pub(in crate::journal) async fn pending_page(
        &self,
        after: i64,
        tenant: Option<&str>,
        limit: usize,
    ) -> Result<Vec<sqlx::sqlite::SqliteRow>, JournalError> {
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
    ) -> Result<Vec<sqlx::sqlite::SqliteRow>, JournalError> {
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
             WHERE m.event_id = ?1 ORDER BY m.position, a.attempt",
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
                    emission_id: parse_uuid(&emission_id, "emission id")?,
                    attempt: row.try_get(1).map_err(read_error)?,
                    started_at: row.try_get(2).map_err(read_error)?,
                    finished_at: row.try_get(3).map_err(read_error)?,
                    sink: row.try_get(4).map_err(read_error)?,
                    outcome: decode(&outcome, "attempt outcome", &event_id.to_string())?,
                    status_code: row.try_get(6).map_err(read_error)?,
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
            format!("SELECT {STORED_EVENT_COLUMNS} FROM events WHERE source = ?1 AND id = ?2");
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
            "SELECT {STORED_EVENT_COLUMNS} FROM events WHERE tenant = ?1 ORDER BY sequence"
        );
        let rows: Vec<EventRow> = sqlx::query_as(&sql)
            .bind(tenant)
            .fetch_all(&self.inner.readers)
            .await
            .map_err(read_error)?;
        rows.into_iter().map(EventRow::into_stored).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::super::{connect_options, MIGRATOR};
    use super::*;
    use crate::journal::JournalOptions;
    use sqlx::ConnectOptions;

    /// A stored status this build does not spell makes the row unreadable (`Corrupt`): neither
    /// a panic nor a silent default. `events.status` has no CHECK constraint, and the emissions'
    /// one is bypassed here as a hand edit or a newer build's row would.
    #[tokio::test]
    async fn an_unknown_status_in_a_row_is_a_corrupt_row() {
        use crate::journal::{EventJournal, EventQuery, NewEvent};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("corrupt.db");
        let url = format!("sqlite://{}", path.display());
        let journal = EventJournal::open(&url, JournalOptions::default())
            .await
            .unwrap();
        let event = NewEvent {
            source: "/crm".into(),
            id: "crm-1".into(),
            event_type: "com.acme.tenant.lifecycle.upsert".into(),
            tenant: "acme".into(),
            action: "upsert".into(),
            time: None,
            document: "{}".into(),
            content_hash: "00".into(),
            lifecycle: "{}".into(),
        };
        let event_id = journal.append(vec![event]).await.unwrap()[0].event_id;
        let mut connection = connect_options(&path, &JournalOptions::default())
            .connect()
            .await
            .unwrap();
        for statement in [
            "PRAGMA ignore_check_constraints = ON",
            "UPDATE events SET status = 'paused'",
            "UPDATE emissions SET status = 'paused'",
        ] {
            sqlx::query(statement)
                .execute(&mut connection)
                .await
                .unwrap();
        }
        let corrupt = |result: Result<(), JournalError>| match result {
            Err(JournalError::Corrupt {
                event_id: row,
                reason,
            }) => {
                assert_eq!(row, event_id.to_string());
                assert!(reason.contains("\"paused\" is not one of"), "{reason}");
            }
            other => panic!("not a corrupt row: {other:?}"),
        };
        corrupt(journal.find_event(event_id).await.map(drop));
        corrupt(journal.tenant_timeline("acme").await.map(drop));
        corrupt(
            journal
                .list_events(&EventQuery::default(), 0, 10)
                .await
                .map(drop),
        );
        corrupt(journal.event_emissions(event_id).await.map(drop));
        journal.close().await;
    }

    /// The dispatcher's page read walks the partial index of pending rows in position order:
    /// no scan of the (ever growing) emissions or events tables, and no sort.
    #[tokio::test]
    async fn pending_page_reads_the_pending_index() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plan.db");
        let mut connection = connect_options(&path, &JournalOptions::default())
            .connect()
            .await
            .unwrap();
        MIGRATOR.run(&mut connection).await.unwrap();
        let sql = format!("EXPLAIN QUERY PLAN {}", *SELECT_PENDING_PAGE);
        let plan: Vec<String> = sqlx::query(&sql)
            .bind(0_i64)
            .bind(None::<String>)
            .bind(1000_i64)
            .fetch_all(&mut connection)
            .await
            .unwrap()
            .iter()
            .map(|row| row.get::<String, _>(3))
            .collect();
        assert!(
            plan.iter().any(|step| step.contains("emissions_pending")),
            "{plan:?}"
        );
        assert!(
            !plan
                .iter()
                .any(|step| step.starts_with("SCAN") || step.contains("TEMP B-TREE")),
            "{plan:?}"
        );
    }

    /// An unparked tenant's catch-up read searches the per-tenant pending index in delivery
    /// order: no scan of the emissions table, and no sort.
    #[tokio::test]
    async fn tenant_pending_page_reads_the_tenant_index() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plan.db");
        let mut connection = connect_options(&path, &JournalOptions::default())
            .connect()
            .await
            .unwrap();
        MIGRATOR.run(&mut connection).await.unwrap();
        let sql = format!("EXPLAIN QUERY PLAN {}", *SELECT_TENANT_PENDING_PAGE);
        let plan: Vec<String> = sqlx::query(&sql)
            .bind("acme")
            .bind(0_i64)
            .bind(1000_i64)
            .fetch_all(&mut connection)
            .await
            .unwrap()
            .iter()
            .map(|row| row.get::<String, _>(3))
            .collect();
        assert!(
            plan.iter()
                .any(|step| step.contains("emissions_tenant_pending")),
            "{plan:?}"
        );
        assert!(
            !plan
                .iter()
                .any(|step| step.starts_with("SCAN") || step.contains("TEMP B-TREE")),
            "{plan:?}"
        );
    }

    /// The query plan of `sql` (placeholders bound to NULL) on a freshly migrated journal.
    async fn plan_of(sql: &str) -> Vec<String> {
        let dir = tempfile::tempdir().unwrap();
        let mut connection =
            connect_options(&dir.path().join("plan.db"), &JournalOptions::default())
                .connect()
                .await
                .unwrap();
        MIGRATOR.run(&mut connection).await.unwrap();
        let parameters = sql.matches('?').count();
        let explain = format!("EXPLAIN QUERY PLAN {sql}");
        let query = (0..parameters).fold(sqlx::query(&explain), |q, _| q.bind(None::<String>));
        query
            .fetch_all(&mut connection)
            .await
            .unwrap()
            .iter()
            .map(|row| row.get::<String, _>(3))
            .collect()
    }

    /// The reads over all tenants (the tenants list, the `tenant_gateway_tenants` gauge of every
    /// scrape) start from `tenant_sequences`, one row per tenant, and reach everything else
    /// through indexes: no pass over events, emissions, attempts or Workflows, whose size grows
    /// with the journal. A tenant's lifecycle is a walk back along the succeeded-Workflow index,
    /// not a sort of the tenant's Workflows, and its newest delivery one row of
    /// `tenant_deliveries`, not a sort of all its attempts.
    #[tokio::test]
    async fn tenant_reads_scan_only_the_tenants() {
        for (name, sql) in crate::journal::tenant_read_statements() {
            let plan = plan_of(sql).await;
            let scans: Vec<&String> = plan
                .iter()
                .filter(|step| step.starts_with("SCAN") && !step.starts_with("SCAN t"))
                .collect();
            assert!(scans.is_empty(), "{name}: {scans:?} in {plan:#?}");
            assert!(
                plan.iter().any(|step| step.starts_with("SCAN t")),
                "{name}: no pass over tenant_sequences in {plan:#?}"
            );
            assert!(
                plan.iter()
                    .any(|step| step.contains("workflows_tenant_succeeded")),
                "{name}: the lifecycle lookup misses its index in {plan:#?}"
            );
            // A sort inside a per-tenant lookup would sort all that tenant has.
            assert!(
                !plan.iter().any(|step| step.contains("FOR ORDER BY")),
                "{name}: a lookup sorts in {plan:#?}"
            );
        }
    }
}
