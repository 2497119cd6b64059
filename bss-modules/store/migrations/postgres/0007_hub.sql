-- The event hub (TMF630 Part 2 / TMF API hub), PostgreSQL. migrations/sqlite/0007_hub.sql is
-- the same schema in SQLite's dialect. A listener is registered on one API (its root
-- path) with a callback, an optional query and a secret that signs what it is sent. An
-- event is written with the change that caused it and fanned out, in that transaction, to
-- one delivery per matching listener; deliveries are a lease queue like the outbox (see
-- tollgate-store's queue.rs): state 'failed' is a dead letter, kept until re-driven.

CREATE TABLE hub_listeners (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    api TEXT NOT NULL,
    callback TEXT NOT NULL,
    query TEXT,
    filter_json TEXT NOT NULL,
    secret TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL
);
CREATE INDEX hub_listeners_api ON hub_listeners (api, seq);

CREATE TABLE hub_events (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id TEXT NOT NULL UNIQUE,
    api TEXT NOT NULL,
    event_type TEXT NOT NULL,
    entity_type TEXT NOT NULL,
    entity_id TEXT NOT NULL,
    body TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL
);

CREATE TABLE hub_deliveries (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_seq BIGINT NOT NULL REFERENCES hub_events (seq),
    listener_id TEXT NOT NULL REFERENCES hub_listeners (id),
    ordering_key TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'done', 'failed')),
    attempts BIGINT NOT NULL DEFAULT 0,
    next_attempt_at_ms BIGINT NOT NULL,
    last_error TEXT,
    created_at_ms BIGINT NOT NULL,
    finished_at_ms BIGINT
);
CREATE INDEX hub_deliveries_due ON hub_deliveries (next_attempt_at_ms, id) WHERE state = 'pending';
CREATE INDEX hub_deliveries_ordering ON hub_deliveries (ordering_key, id) WHERE state = 'pending';
CREATE INDEX hub_deliveries_state ON hub_deliveries (state, id);
CREATE INDEX hub_deliveries_listener ON hub_deliveries (listener_id, id);
