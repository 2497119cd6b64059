-- Prepaid balance requests (TMF654 top-ups and adjustments) and the product manager role,
-- SQLite. migrations/postgres/0005_balances.sql is the same schema in PostgreSQL's dialect.
-- The engine holds every balance; a row here is the request the BSS recorded, under the
-- client's id, with the engine operation's idempotency key (the outbox row's) and what the
-- engine answered. Money is DECIMAL_TEXT, never REAL.

CREATE TABLE balance_actions (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL CHECK (kind IN ('topup', 'adjust')),
    id TEXT NOT NULL,
    billing_account_id TEXT NOT NULL REFERENCES billing_accounts (id),
    amount DECIMAL_TEXT NOT NULL CHECK (typeof(amount) = 'text'),
    currency TEXT NOT NULL,
    request_json TEXT NOT NULL,
    idempotency_key TEXT NOT NULL UNIQUE,
    status TEXT NOT NULL CHECK (status IN ('created', 'completed', 'failed')),
    balance_after DECIMAL_TEXT CHECK (balance_after IS NULL OR typeof(balance_after) = 'text'),
    failure_reason TEXT,
    actor TEXT NOT NULL,
    requested_at_ms BIGINT NOT NULL,
    confirmed_at_ms BIGINT,
    UNIQUE (kind, id)
);
CREATE INDEX balance_actions_account ON balance_actions (billing_account_id, seq);

-- A role that writes the product catalogue only. SQLite cannot change a CHECK constraint
-- in place: the table is rebuilt with its rows (nothing refers to it).
CREATE TABLE api_tokens_with_roles (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    token_hash TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('admin', 'care', 'finance', 'read_only', 'partner', 'product_manager')),
    scope_account_id TEXT,
    created_at_ms BIGINT NOT NULL,
    expires_at_ms BIGINT,
    revoked_at_ms BIGINT,
    CHECK ((role = 'partner') = (scope_account_id IS NOT NULL))
);
INSERT INTO api_tokens_with_roles (id, token_hash, name, role, scope_account_id, created_at_ms, expires_at_ms,
    revoked_at_ms)
SELECT id, token_hash, name, role, scope_account_id, created_at_ms, expires_at_ms, revoked_at_ms FROM api_tokens;
DROP TABLE api_tokens;
ALTER TABLE api_tokens_with_roles RENAME TO api_tokens;
