-- Discounts and credits of billing accounts, PostgreSQL. migrations/sqlite/0015_discounts.sql
-- is the same schema in SQLite's dialect. Money is NUMERIC. (0014 is
-- another branch's; the runner applies every missing migration, gaps allowed.)
--
-- A discount takes a percentage (`percent`, above 0 and at most 100) or a fixed amount per
-- cycle (`amount` in `currency`) off the charges of one product of the account
-- (`scope` product, `product_id`), of the account (`account`) or of its whole hierarchy
-- (`hierarchy`, listed under the hierarchy's root), on the days from `valid_from` up to
-- `valid_until` (excluded; NULL: no end), calendar days `YYYY-MM-DD` in the operator's
-- zone; the bill run prorates it by the days of the cycle it is valid on.
-- A credit is an amount owed to the account, taken off its invoices' charges in its
-- currency until `used` (what invoices took, in the transactions that wrote them)
-- reaches `amount`.

CREATE TABLE discounts (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    billing_account_id TEXT NOT NULL REFERENCES billing_accounts (id),
    scope TEXT NOT NULL CHECK (scope IN ('product', 'account', 'hierarchy')),
    product_id TEXT,
    percent NUMERIC,
    amount NUMERIC,
    currency TEXT,
    description TEXT NOT NULL,
    charge_type TEXT NOT NULL,
    valid_from TEXT NOT NULL,
    valid_until TEXT,
    created_at_ms BIGINT NOT NULL,
    CHECK ((scope = 'product') = (product_id IS NOT NULL)),
    CHECK ((percent IS NULL) <> (amount IS NULL)),
    CHECK ((amount IS NULL) = (currency IS NULL))
);
CREATE INDEX discounts_account ON discounts (billing_account_id, seq);

CREATE TABLE credits (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    billing_account_id TEXT NOT NULL REFERENCES billing_accounts (id),
    amount NUMERIC NOT NULL,
    currency TEXT NOT NULL,
    description TEXT NOT NULL,
    charge_type TEXT NOT NULL,
    used NUMERIC NOT NULL,
    created_at_ms BIGINT NOT NULL
);
CREATE INDEX credits_account ON credits (billing_account_id, seq);
