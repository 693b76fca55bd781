-- Operator recovery (DESIGN.md section 6): replays, skips, bulk replay jobs and the record of
-- every operator action. Kept portable like 0001 and 0002: a PostgreSQL twin only changes types.

-- Where an emission stands in its tenant's delivery order when that is not its own position:
-- the replay of a dead emission that parks its tenant takes the dead one's place, so it is
-- retried before the events that waited behind it. NULL (every other emission) means
-- `position`.
ALTER TABLE emissions ADD COLUMN place INTEGER;
-- On a dead emission that an operator replayed: the emission id of the replay. A dead
-- emission parks its tenant until it is replayed or skipped.
ALTER TABLE emissions ADD COLUMN replaced_by TEXT;
-- The bulk replay job that created this emission, if any.
ALTER TABLE emissions ADD COLUMN replay_job TEXT;

-- Parked tenants: those with a dead emission nobody replayed or skipped yet.
DROP INDEX emissions_dead;
CREATE INDEX emissions_dead ON emissions (tenant) WHERE status = 'dead' AND replaced_by IS NULL;
-- One tenant's pending emissions in delivery order: what the dispatcher reads when a tenant
-- is unparked.
CREATE INDEX emissions_tenant_pending ON emissions (tenant, COALESCE(place, position))
    WHERE status = 'pending';

-- Every operator action: when, who (the admin token's name), what, and why.
CREATE TABLE operator_actions (
    id          INTEGER NOT NULL PRIMARY KEY,
    at          TEXT    NOT NULL,
    actor       TEXT    NOT NULL,
    action      TEXT    NOT NULL
                CHECK (action IN ('replay', 'skip', 'bulk-replay', 'cancel-replay')),
    -- The event and tenant acted on (replay, skip).
    event_id    TEXT,
    tenant      TEXT,
    -- The emission a replay created, or the one a skip skipped.
    emission_id TEXT,
    -- The bulk replay job (bulk-replay, cancel-replay).
    job_id      TEXT,
    reason      TEXT
) STRICT;
CREATE INDEX operator_actions_event ON operator_actions (event_id) WHERE event_id IS NOT NULL;
CREATE INDEX operator_actions_tenant ON operator_actions (tenant) WHERE tenant IS NOT NULL;
CREATE INDEX operator_actions_job ON operator_actions (job_id) WHERE job_id IS NOT NULL;

-- Bulk replays. The events a job replays are fixed when it is created (replay_job_events), so
-- it replays exactly what its dry run counted; progress is written in the same transaction as
-- the replays, so a restart resumes a running job without replaying anything twice.
CREATE TABLE replay_jobs (
    job_id      TEXT    NOT NULL PRIMARY KEY,
    status      TEXT    NOT NULL
                CHECK (status IN ('running', 'completed', 'cancelled', 'failed')),
    -- The filter as the operator gave it (JSON), for display.
    filter      TEXT    NOT NULL,
    -- Replays per second.
    rate        REAL    NOT NULL CHECK (rate > 0),
    actor       TEXT    NOT NULL,
    reason      TEXT,
    created_at  TEXT    NOT NULL,
    finished_at TEXT,
    total       INTEGER NOT NULL,
    replayed    INTEGER NOT NULL DEFAULT 0,
    error       TEXT
) STRICT;
CREATE INDEX replay_jobs_running ON replay_jobs (created_at) WHERE status = 'running';

CREATE TABLE replay_job_events (
    job_id   TEXT    NOT NULL REFERENCES replay_jobs (job_id),
    -- 1, 2, 3, ... in journal order; the job has replayed ordinals up to replay_jobs.replayed.
    ordinal  INTEGER NOT NULL,
    event_id TEXT    NOT NULL,
    PRIMARY KEY (job_id, ordinal)
) STRICT, WITHOUT ROWID;
