-- Tenant reads that stay cheap as the journal grows, the twin of
-- migrations/sqlite/0005_tenant_reads.sql (PostgreSQL has had tenant_sequences from the start).

-- A tenant's lifecycle: a walk back from its newest succeeded Workflow (journal/outcomes.rs,
-- `LIFECYCLE`) instead of a sort of all of them.
CREATE INDEX workflows_tenant_succeeded
    ON workflows (tenant, (COALESCE(finished_at, observed_at)), observed_at)
    WHERE phase = 'Succeeded';
