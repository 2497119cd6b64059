-- Alarms (fault management: ITU-T X.733 fields, TMF642 names), PostgreSQL.
-- migrations/sqlite/0010_alarms.sql is the same schema in SQLite's dialect.
-- One row per alarm; while it is open (not cleared) it is the only one for its alarmed
-- object and probable cause, so a report of the same fault updates it (the partial unique
-- index). Instants are Unix milliseconds.

CREATE TABLE alarms (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    alarmed_object TEXT NOT NULL,
    alarmed_object_type TEXT NOT NULL,
    alarm_type TEXT NOT NULL,
    probable_cause TEXT NOT NULL,
    specific_problem TEXT NOT NULL,
    -- The severity last reported; a cleared alarm keeps it (and shows `cleared`).
    perceived_severity TEXT NOT NULL
        CHECK (perceived_severity IN ('critical', 'major', 'minor', 'warning', 'indeterminate')),
    source_system_id TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('raised', 'updated', 'cleared')),
    ack_state TEXT NOT NULL CHECK (ack_state IN ('acknowledged', 'unacknowledged')),
    ack_user_id TEXT,
    reports BIGINT NOT NULL,
    raised_at_ms BIGINT NOT NULL,
    changed_at_ms BIGINT NOT NULL,
    cleared_at_ms BIGINT,
    acknowledged_at_ms BIGINT,
    CHECK ((state = 'cleared') = (cleared_at_ms IS NOT NULL))
);
CREATE UNIQUE INDEX alarms_open ON alarms (alarmed_object, probable_cause) WHERE state <> 'cleared';
CREATE INDEX alarms_raised ON alarms (raised_at_ms, id);
