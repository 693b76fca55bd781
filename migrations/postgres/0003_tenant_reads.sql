-- Tenant reads that stay cheap as the journal grows, the twin of
-- migrations/sqlite/0005_tenant_reads.sql (PostgreSQL has had tenant_sequences from the start).

-- Each tenant's newest delivery, kept by the writer (see there).
CREATE TABLE tenant_deliveries (
    tenant       TEXT   NOT NULL PRIMARY KEY,
    position     BIGINT NOT NULL,
    delivered_at TEXT   NOT NULL
);
INSERT INTO tenant_deliveries (tenant, position, delivered_at)
    SELECT tenant, position, finished_at FROM (
        SELECT m.tenant, a.position, a.finished_at, ROW_NUMBER() OVER (
            PARTITION BY m.tenant ORDER BY a.finished_at DESC, a.position DESC) AS newest
        FROM delivery_attempts AS a JOIN emissions AS m ON m.position = a.position
        WHERE a.outcome = 'delivered') AS ranked
    WHERE newest = 1;

-- A tenant's lifecycle: a walk back from its newest succeeded Workflow (journal/outcomes.rs,
-- `lifecycle_of_t`) instead of a sort of all of them.
CREATE INDEX workflows_tenant_succeeded
    ON workflows (tenant, (COALESCE(finished_at, observed_at)), observed_at)
    WHERE phase = 'Succeeded';
