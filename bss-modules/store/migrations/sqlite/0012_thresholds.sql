-- Thresholds and their notified crossings, SQLite. migrations/postgres/0012_thresholds.sql
-- is the same schema in PostgreSQL's dialect. Money is DECIMAL_TEXT, never REAL.
--
-- A threshold of a billing account is `balance_below` (an amount in the account's
-- currency) or `bundle_used` (a percentage of an allowance bucket's grant), with the
-- language of its message and whether it is published to the hub's listeners.
-- A balance threshold is `tripped` while the balance is below it and that crossing was
-- notified; it re-arms (`tripped` 0, `episode` + 1) once the balance is back at or above
-- the amount, so the next fall is a new crossing.
--
-- Invariant the database holds itself: a crossing is recorded at most once per threshold
-- and key (a balance threshold's episode; a bundle's bucket and validity start), and its
-- hub event is published in the same transaction: each crossing is notified once, also
-- when the evaluation runs again after a crash.

CREATE TABLE thresholds (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    billing_account_id TEXT NOT NULL REFERENCES billing_accounts (id),
    kind TEXT NOT NULL CHECK (kind IN ('balance_below', 'bundle_used')),
    amount DECIMAL_TEXT CHECK (amount IS NULL OR typeof(amount) = 'text'),
    percent BIGINT CHECK (percent IS NULL OR (percent >= 1 AND percent <= 100)),
    language TEXT NOT NULL,
    webhook BIGINT NOT NULL CHECK (webhook IN (0, 1)),
    tripped BIGINT NOT NULL CHECK (tripped IN (0, 1)),
    episode BIGINT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    CHECK ((kind = 'balance_below') = (amount IS NOT NULL)),
    CHECK ((kind = 'bundle_used') = (percent IS NOT NULL))
);
CREATE INDEX thresholds_account ON thresholds (billing_account_id, seq);

-- No reference to `thresholds`: a deleted threshold's crossings stay as history.
CREATE TABLE threshold_crossings (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    threshold_id TEXT NOT NULL,
    crossing_key TEXT NOT NULL,
    billing_account_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    message TEXT NOT NULL,
    -- The hub event published with it; NULL when the threshold has no webhook.
    event_id TEXT,
    crossed_at_ms BIGINT NOT NULL,
    UNIQUE (threshold_id, crossing_key)
);
CREATE INDEX threshold_crossings_account ON threshold_crossings (billing_account_id, seq);
