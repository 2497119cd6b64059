-- The `renewal_refused` threshold kind, PostgreSQL. migrations/sqlite/0021_renewal_refused_threshold.sql
-- is the same schema in SQLite's dialect, and says what the kind means.

ALTER TABLE thresholds DROP CONSTRAINT thresholds_kind_check;
ALTER TABLE thresholds ADD CONSTRAINT thresholds_kind_check
    CHECK (kind IN ('balance_below', 'bundle_used', 'bundle_expiry', 'spending_cap', 'renewal_refused'));
