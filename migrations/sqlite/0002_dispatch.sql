-- Dispatch (DESIGN.md section 5): the transactional outbox and the record of every delivery
-- attempt. Kept portable like 0001: a PostgreSQL twin only changes types.

-- What normalization found besides tenant and action ({"parameters": {...}, "objectStorage":
-- {...} | null}), fixed at ingest so a later change of the rules file never changes what an
-- accepted event emits.
ALTER TABLE events ADD COLUMN lifecycle TEXT NOT NULL DEFAULT '{}';

-- One row per emission of an event: the first delivery is written in the same transaction as
-- the event (so an acknowledged event always has its outbox row), each replay adds one more.
CREATE TABLE emissions (
    -- Creation order. Within a tenant it is the delivery order: first emissions are created in
    -- sequence order by the single writer, and a replay queues behind what is already there.
    position         INTEGER NOT NULL PRIMARY KEY,
    -- The emitted CloudEvent's id; the first emission reuses the event id.
    emission_id      TEXT    NOT NULL UNIQUE,
    event_id         TEXT    NOT NULL REFERENCES events (event_id),
    tenant           TEXT    NOT NULL,
    -- The event id this emission replays; NULL for the first emission.
    replay_of        TEXT,
    status           TEXT    NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending', 'delivered', 'dead', 'skipped')),
    created_at       TEXT    NOT NULL,
    -- Attempts so far and when the first one started: the retry limit counts from there, also
    -- across restarts.
    attempts         INTEGER NOT NULL DEFAULT 0,
    first_attempt_at TEXT,
    -- When the emission reached delivered, dead or skipped, and the last failure's message.
    finished_at      TEXT,
    last_error       TEXT
) STRICT;

-- The dispatcher's work list: only pending rows, in position order (appends at the end, and
-- rows leave it once delivered, so it stays as small as the backlog).
CREATE INDEX emissions_pending ON emissions (position) WHERE status = 'pending';
-- Parked tenants: those with a dead emission.
CREATE INDEX emissions_dead ON emissions (tenant) WHERE status = 'dead';
CREATE INDEX emissions_event ON emissions (event_id);

-- Every delivery attempt: when, to which sink, and what came back.
CREATE TABLE delivery_attempts (
    position    INTEGER NOT NULL REFERENCES emissions (position),
    attempt     INTEGER NOT NULL CHECK (attempt > 0),
    started_at  TEXT    NOT NULL,
    finished_at TEXT    NOT NULL,
    sink        TEXT    NOT NULL,
    outcome     TEXT    NOT NULL CHECK (outcome IN ('delivered', 'retryable', 'permanent')),
    -- HTTP status of the sink's answer, when it answered over HTTP.
    status_code INTEGER,
    error       TEXT,
    PRIMARY KEY (position, attempt)
) STRICT, WITHOUT ROWID;
