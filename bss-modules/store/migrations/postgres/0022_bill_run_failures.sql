-- Why a bill run's last attempt failed, PostgreSQL. migrations/sqlite/0022_bill_run_failures.sql
-- is the same schema in SQLite's dialect.
--
-- A failed attempt leaves the run drafting or finalising (a rerun resumes it); the error
-- and when it failed are kept here so every server and the CLI can tell a failed run
-- from one under way, also after a restart. The next step an attempt saves clears them.

ALTER TABLE bill_runs ADD COLUMN error TEXT;
ALTER TABLE bill_runs ADD COLUMN failed_at_ms BIGINT;
