-- Lifecycle outcomes (docs/lifecycle-outcomes.md): what became of each emission after the sink
-- took it. Kept portable like the earlier migrations: the PostgreSQL twin only drops STRICT and
-- widens integers.

-- The latest state of each emission's Workflow, as the Workflow watcher last saw it. One row
-- per emission: a re-list or a resync rewrites the same row, so nothing is recorded twice.
CREATE TABLE workflows (
    emission_id TEXT NOT NULL PRIMARY KEY,
    tenant      TEXT NOT NULL,
    -- The Workflow's metadata.name.
    name        TEXT NOT NULL,
    -- status.phase in Argo's casing; a Workflow without a status is Pending.
    phase       TEXT NOT NULL
                CHECK (phase IN ('Pending', 'Running', 'Succeeded', 'Failed', 'Error')),
    -- status.startedAt, status.finishedAt and status.message as the API server sent them.
    started_at  TEXT,
    finished_at TEXT,
    message     TEXT,
    -- When the gateway recorded the latest change (RFC 3339 UTC, microseconds).
    observed_at TEXT NOT NULL
) STRICT;
-- A tenant's Workflows: its lifecycle is derived from its last succeeded one.
CREATE INDEX workflows_tenant ON workflows (tenant, phase);

-- Emissions delivered while `[dispatch] await-workflow` was on: the tenant's next emission waits
-- for the newest one's Workflow to finish. Emissions delivered before the setting was turned on
-- have no row, so turning it on never parks a tenant for a Workflow nobody waited for.
CREATE TABLE workflow_waits (
    position     INTEGER NOT NULL PRIMARY KEY REFERENCES emissions (position),
    tenant       TEXT    NOT NULL,
    emission_id  TEXT    NOT NULL,
    -- When the sink took the emission: the await timeout counts from here.
    delivered_at TEXT    NOT NULL
) STRICT;
CREATE INDEX workflow_waits_tenant ON workflow_waits (tenant, delivered_at);

-- Completion events for upstream (`[notify]`): queued in the same transaction that records a
-- Workflow's terminal phase, so none is lost to a crash; delivered by the notifier.
CREATE TABLE notifications (
    -- The CloudEvent id, fixed here, and the `webhook-id` of every attempt.
    notification_id TEXT NOT NULL PRIMARY KEY,
    emission_id     TEXT NOT NULL,
    -- succeeded or failed: one notification per emission and outcome (an Argo `retry` of a
    -- failed Workflow that then succeeds sends the success too).
    outcome         TEXT NOT NULL CHECK (outcome IN ('succeeded', 'failed')),
    tenant          TEXT NOT NULL,
    -- The CloudEvent type (lifecycle.<action>.<outcome>), its data (JSON) and time.
    event_type      TEXT NOT NULL,
    data            TEXT NOT NULL,
    created_at      TEXT NOT NULL,
    status          TEXT NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    finished_at     TEXT,
    last_error      TEXT,
    CONSTRAINT notifications_once UNIQUE (emission_id, outcome)
) STRICT;
CREATE INDEX notifications_pending ON notifications (notification_id) WHERE status = 'pending';
