-- More threshold kinds, PostgreSQL. migrations/sqlite/0016_threshold_kinds.sql is the
-- same schema in SQLite's dialect, and says what the kinds and columns mean.

ALTER TABLE thresholds DROP CONSTRAINT thresholds_kind_check;
ALTER TABLE thresholds DROP CONSTRAINT thresholds_check;
ALTER TABLE thresholds DROP CONSTRAINT thresholds_check1;
ALTER TABLE thresholds ADD COLUMN hours BIGINT CHECK (hours IS NULL OR (hours >= 1 AND hours <= 8784));
ALTER TABLE thresholds ADD COLUMN subscription_id TEXT REFERENCES subscriptions (id);
ALTER TABLE thresholds ADD COLUMN sms BIGINT NOT NULL DEFAULT 0 CHECK (sms IN (0, 1));
ALTER TABLE thresholds ADD CONSTRAINT thresholds_kind_check
    CHECK (kind IN ('balance_below', 'bundle_used', 'bundle_expiry', 'spending_cap'));
ALTER TABLE thresholds ADD CONSTRAINT thresholds_amount_by_kind
    CHECK ((kind IN ('balance_below', 'spending_cap')) = (amount IS NOT NULL));
ALTER TABLE thresholds ADD CONSTRAINT thresholds_percent_by_kind CHECK ((kind = 'bundle_used') = (percent IS NOT NULL));
ALTER TABLE thresholds ADD CONSTRAINT thresholds_hours_by_kind CHECK ((kind = 'bundle_expiry') = (hours IS NOT NULL));
ALTER TABLE thresholds ADD CONSTRAINT thresholds_subscription_by_kind
    CHECK (subscription_id IS NULL OR kind IN ('bundle_used', 'bundle_expiry'));
