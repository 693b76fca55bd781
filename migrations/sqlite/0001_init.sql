-- The event journal (DESIGN.md section 5): every accepted upstream CloudEvent, once.
--
-- Kept portable: a PostgreSQL twin of this migration only changes types (UUID for event_id,
-- BIGINT for sequence, TIMESTAMPTZ for received_at, JSONB for document) and drops STRICT.

CREATE TABLE events (
    -- The gateway's own id (UUIDv7, hyphenated lower case): time-ordered, so inserts append.
    event_id     TEXT    NOT NULL PRIMARY KEY,
    -- Upstream identity; UNIQUE (source, id) below is the deduplication key.
    source       TEXT    NOT NULL,
    id           TEXT    NOT NULL,
    event_type   TEXT    NOT NULL,
    -- From normalization: the tenant (the sequence scope) and the canonical action.
    tenant       TEXT    NOT NULL,
    action       TEXT    NOT NULL,
    -- Per-tenant delivery order: 1, 2, 3, ... in commit order, no gaps.
    sequence     INTEGER NOT NULL CHECK (sequence > 0),
    -- Upstream `time` attribute as sent (RFC 3339), when present.
    time         TEXT,
    -- When the gateway accepted the event (RFC 3339, UTC).
    received_at  TEXT    NOT NULL,
    -- Canonical structured-mode JSON of the upstream event; replays are built from it.
    document     TEXT    NOT NULL,
    -- Hex SHA-256 of document: same (source, id) with another hash is a conflict.
    content_hash TEXT    NOT NULL,
    -- Delivery state for the dispatcher; every event starts pending.
    status       TEXT    NOT NULL DEFAULT 'pending',
    CONSTRAINT events_origin UNIQUE (source, id),
    CONSTRAINT events_tenant_sequence UNIQUE (tenant, sequence)
) STRICT;
