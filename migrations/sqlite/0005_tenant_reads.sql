-- Tenant reads that stay cheap as the journal grows (docs/benchmarks.md, "Admin reads").

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

-- A tenant's lifecycle is the action of its newest succeeded Workflow among those that change
-- it (journal/outcomes.rs, `LIFECYCLE`): with this index that is a walk back from the newest
-- succeeded Workflow that usually stops at the first one, not a sort of all of them.
CREATE INDEX workflows_tenant_succeeded
    ON workflows (tenant, COALESCE(finished_at, observed_at), observed_at)
    WHERE phase = 'Succeeded';
