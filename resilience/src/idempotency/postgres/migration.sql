-- The table of orch's PostgreSQL idempotency store (orch-resilience,
-- feature `postgres`). `{schema}` and `{table}` are replaced with names
-- checked as identifiers before this runs; every statement may run again.
--
-- One row per (scope, key). `generation` is the fencing token, taken from
-- a sequence so that no two claims of a key ever share one, across
-- releases and expiries too. An `in_progress` row has a `lease_until`; a
-- `completed` row has the saved response instead. Every row has an
-- `expires_at`, after which any claim takes it afresh and the reaper may
-- delete it. All times are the server's `now()`.

CREATE SCHEMA IF NOT EXISTS "{schema}";

CREATE SEQUENCE IF NOT EXISTS "{schema}"."{table}_generation";

CREATE TABLE IF NOT EXISTS "{schema}"."{table}" (
    scope          text        NOT NULL,
    key            text        NOT NULL,
    fingerprint    bytea       NOT NULL,
    generation     bigint      NOT NULL,
    state          text        NOT NULL,
    lease_until    timestamptz,
    expires_at     timestamptz NOT NULL,
    protocol       text,
    status         integer,
    header_names   text[],
    header_values  bytea[],
    body           bytea,
    trailer_names  text[],
    trailer_values bytea[],
    PRIMARY KEY (scope, key),
    CHECK (state IN ('in_progress', 'completed')),
    CHECK (protocol IN ('http', 'grpc')),
    -- A record in progress always has a deadline: none is an orphan
    -- that nobody may reclaim.
    CHECK ((state = 'in_progress') = (lease_until IS NOT NULL)),
    CHECK (state = 'in_progress' OR (protocol IS NOT NULL AND status IS NOT NULL
        AND header_names IS NOT NULL AND header_values IS NOT NULL AND body IS NOT NULL
        AND trailer_names IS NOT NULL AND trailer_values IS NOT NULL))
);

-- For the reaper.
CREATE INDEX IF NOT EXISTS "{table}_expires_at" ON "{schema}"."{table}" (expires_at);
