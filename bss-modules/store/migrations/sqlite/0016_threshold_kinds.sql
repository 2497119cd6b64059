-- More threshold kinds, SQLite. migrations/postgres/0016_threshold_kinds.sql is the same
-- schema in PostgreSQL's dialect.
--
-- `spending_cap`: a postpaid account's charges not yet billed (the negative of its
-- balance, which the bill release brings back up) reached `amount`; it is tripped and
-- re-arms as `balance_below` does. `bundle_expiry`: an allowance bucket with units left
-- ends within `hours`; notified once per bucket and validity period.
-- `subscription_id` narrows a bundle threshold (`bundle_used`, `bundle_expiry`) to one
-- subscription's buckets; NULL watches every subscription of the account. `sms` sends a
-- crossing's message to the lines' numbers through the SMS gateway as well (an outbox row
-- written with the crossing).
--
-- SQLite cannot change a table's CHECK constraints, so the table is made again with its
-- rows; nothing references it.

CREATE TABLE thresholds_0016 (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    billing_account_id TEXT NOT NULL REFERENCES billing_accounts (id),
    kind TEXT NOT NULL CHECK (kind IN ('balance_below', 'bundle_used', 'bundle_expiry', 'spending_cap')),
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
INSERT INTO thresholds_0016 (seq, id, billing_account_id, kind, amount, percent, language, webhook, tripped, episode,
    created_at_ms)
SELECT seq, id, billing_account_id, kind, amount, percent, language, webhook, tripped, episode, created_at_ms
FROM thresholds;
DROP TABLE thresholds;
ALTER TABLE thresholds_0016 RENAME TO thresholds;
CREATE INDEX thresholds_account ON thresholds (billing_account_id, seq);
