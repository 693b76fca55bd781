-- Tenant reads that stay cheap as the journal grows (docs/benchmarks.md, "Admin reads as the
-- journal grows").

-- The last sequence number given to each tenant, as in the PostgreSQL journal: the writer
-- updates a tenant's row in the transaction that appends its events, so the row is always the
-- tenant's highest stored sequence. The writer reads it for a tenant it has not seen since it
-- started, and every read over all tenants (the tenants list, the `tenant_gateway_tenants`
-- gauge) starts from these rows, one per tenant, instead of grouping the whole event table.
CREATE TABLE tenant_sequences (
    tenant        TEXT    NOT NULL PRIMARY KEY,
    last_sequence INTEGER NOT NULL CHECK (last_sequence >= 0)
) STRICT, WITHOUT ROWID;
INSERT INTO tenant_sequences (tenant, last_sequence)
    SELECT tenant, MAX(sequence) FROM events GROUP BY tenant;

-- Each tenant's newest delivery: the delivered attempt with the latest finish time (and of
-- those the highest position), which the tenant states show as the tenant's last action. The
-- writer keeps it in the transaction that records the attempts, so a tenant's state is two
-- lookups instead of a pass over all the tenant's events and their attempts.
CREATE TABLE tenant_deliveries (
    tenant       TEXT    NOT NULL PRIMARY KEY,
    -- The emission (emissions.position) and when the sink took it.
    position     INTEGER NOT NULL,
    delivered_at TEXT    NOT NULL
) STRICT, WITHOUT ROWID;
INSERT INTO tenant_deliveries (tenant, position, delivered_at)
    SELECT tenant, position, finished_at FROM (
        SELECT m.tenant, a.position, a.finished_at, ROW_NUMBER() OVER (
            PARTITION BY m.tenant ORDER BY a.finished_at DESC, a.position DESC) AS newest
        FROM delivery_attempts AS a JOIN emissions AS m ON m.position = a.position
        WHERE a.outcome = 'delivered')
    WHERE newest = 1;

-- A tenant's lifecycle is the action of its newest succeeded Workflow among those that change
-- it (journal/outcomes.rs, `lifecycle_of_t`): with this index that is a walk back from the newest
-- succeeded Workflow that usually stops at the first one, not a sort of all of them.
CREATE INDEX workflows_tenant_succeeded
    ON workflows (tenant, COALESCE(finished_at, observed_at), observed_at)
    WHERE phase = 'Succeeded';
