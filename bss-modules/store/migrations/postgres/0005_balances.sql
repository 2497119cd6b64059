-- Prepaid balance requests (TMF654 top-ups and adjustments) and the product manager role,
-- PostgreSQL. migrations/sqlite/0005_balances.sql is the same schema in SQLite's dialect.
-- The engine holds every balance; a row here is the request the BSS recorded, under the
-- client's id, with the engine operation's idempotency key (the outbox row's) and what the
-- engine answered. Money is NUMERIC.

CREATE TABLE balance_actions (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('topup', 'adjust')),
    id TEXT NOT NULL,
    billing_account_id TEXT NOT NULL REFERENCES billing_accounts (id),
    amount NUMERIC NOT NULL,
    currency TEXT NOT NULL,
    request_json TEXT NOT NULL,
    idempotency_key TEXT NOT NULL UNIQUE,
    status TEXT NOT NULL CHECK (status IN ('created', 'completed', 'failed')),
    balance_after NUMERIC,
    failure_reason TEXT,
    actor TEXT NOT NULL,
    requested_at_ms BIGINT NOT NULL,
    confirmed_at_ms BIGINT,
    UNIQUE (kind, id)
);
CREATE INDEX balance_actions_account ON balance_actions (billing_account_id, seq);

-- A role that writes the product catalogue only.
ALTER TABLE api_tokens DROP CONSTRAINT api_tokens_role_check;
ALTER TABLE api_tokens ADD CONSTRAINT api_tokens_role_check
    CHECK (role IN ('admin', 'care', 'finance', 'read_only', 'partner', 'product_manager'));
