-- The `renewal_refused` threshold kind, SQLite. migrations/postgres/0021_renewal_refused_threshold.sql
-- is the same schema in PostgreSQL's dialect.
--
-- `renewal_refused`: the engine refused to debit a prepaid renewal's fees; it has no
-- level (amount, percent and hours NULL) and watches the whole account. Its crossing is
-- recorded in the transaction that records the refusal, keyed by the renewal's
-- statement, so a renewal's later refused retries notify nothing more.
--
-- SQLite cannot change a table's CHECK constraints, so the table is made again with its
-- rows, as 0016 did; nothing references it.

CREATE TABLE thresholds_0021 (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    billing_account_id TEXT NOT NULL REFERENCES billing_accounts (id),
    kind TEXT NOT NULL
        CHECK (kind IN ('balance_below', 'bundle_used', 'bundle_expiry', 'spending_cap', 'renewal_refused')),
    amount DECIMAL_TEXT CHECK (amount IS NULL OR typeof(amount) = 'text'),
    percent BIGINT CHECK (percent IS NULL OR (percent >= 1 AND percent <= 100)),
    language TEXT NOT NULL,
    webhook BIGINT NOT NULL CHECK (webhook IN (0, 1)),
    tripped BIGINT NOT NULL CHECK (tripped IN (0, 1)),
    episode BIGINT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    hours BIGINT CHECK (hours IS NULL OR (hours >= 1 AND hours <= 8784)),
    subscription_id TEXT REFERENCES subscriptions (id),
    sms BIGINT NOT NULL DEFAULT 0 CHECK (sms IN (0, 1)),
    CHECK ((kind IN ('balance_below', 'spending_cap')) = (amount IS NOT NULL)),
    CHECK ((kind = 'bundle_used') = (percent IS NOT NULL)),
    CHECK ((kind = 'bundle_expiry') = (hours IS NOT NULL)),
    CHECK (subscription_id IS NULL OR kind IN ('bundle_used', 'bundle_expiry'))
);
INSERT INTO thresholds_0021 (seq, id, billing_account_id, kind, amount, percent, language, webhook, tripped, episode,
    created_at_ms, hours, subscription_id, sms)
SELECT seq, id, billing_account_id, kind, amount, percent, language, webhook, tripped, episode, created_at_ms, hours,
    subscription_id, sms
FROM thresholds;
DROP TABLE thresholds;
ALTER TABLE thresholds_0021 RENAME TO thresholds;
CREATE INDEX thresholds_account ON thresholds (billing_account_id, seq);
