-- Version 1 of Latch's schema. Records are the same JSON as in every backend, as bytea
-- (read back without a nesting limit); columns beside them are what queries select on.
CREATE TABLE settings (key text PRIMARY KEY, value text NOT NULL);
CREATE SEQUENCE ids;
CREATE TABLE modules (name text PRIMARY KEY, record bytea NOT NULL);
CREATE TABLE blobs (version text PRIMARY KEY, bytes bytea NOT NULL);
CREATE TABLE runs (
    id bytea PRIMARY KEY,
    ended boolean NOT NULL,
    updated_at_ms bigint NOT NULL,
    record bytea NOT NULL
);
CREATE INDEX runs_ended ON runs (updated_at_ms) WHERE ended;
CREATE TABLE events (
    run bytea NOT NULL,
    seq bigint NOT NULL,
    kind text NOT NULL,
    record bytea NOT NULL,
    PRIMARY KEY (run, seq)
);
CREATE TABLE cancels (run bytea PRIMARY KEY);
CREATE TABLE hooks (token text PRIMARY KEY, run bytea NOT NULL, record bytea NOT NULL);
CREATE INDEX hooks_run ON hooks (run);
-- A run's waiting calls: kind 0 on a webhook (channel is its number), 1 at a named trigger
-- (channel is the name). A single-use webhook's one call sits at arrival 0, and a mark
-- ('taken', 'closed') stays there once it is used.
CREATE TABLE inbox (
    run bytea NOT NULL,
    kind smallint NOT NULL,
    channel text NOT NULL,
    arrival bigint NOT NULL,
    mark text,
    request_id text,
    held boolean NOT NULL DEFAULT false,
    taking boolean NOT NULL DEFAULT false,
    request bytea,
    PRIMARY KEY (run, kind, channel, arrival)
);
CREATE TABLE not_taken (
    run bytea NOT NULL,
    arrival bigint NOT NULL,
    acknowledged boolean NOT NULL,
    record bytea NOT NULL,
    PRIMARY KEY (run, arrival)
);
CREATE TABLE timers (due_ms bigint NOT NULL, run bytea NOT NULL, PRIMARY KEY (due_ms, run));
CREATE TABLE trigger_waiters (
    module text NOT NULL,
    name text NOT NULL,
    run bytea NOT NULL,
    since_ms bigint NOT NULL,
    PRIMARY KEY (module, name, run)
);
CREATE TABLE api_keys (digest text PRIMARY KEY, name text NOT NULL UNIQUE, record bytea NOT NULL);
CREATE TABLE secrets (name text PRIMARY KEY, value bytea NOT NULL);
-- A sender's message id is kept under a key that may hold any byte (NUL separates its parts).
CREATE TABLE messages (
    key bytea PRIMARY KEY,
    created_at_ms bigint NOT NULL,
    forget_at_ms bigint NOT NULL,
    record bytea NOT NULL
);
