-- Customers (TMF629) and billing accounts (TMF666), SQLite. migrations/postgres/0003_customers.sql
-- is the same schema in PostgreSQL's dialect. A customer keeps minimal personal data: its
-- name and party type as columns, its contact media and consent flags (each with the
-- instant it was given or withdrawn) in its JSON document; anonymising replaces them.
-- A billing account's money (credit limit) is DECIMAL_TEXT, never REAL; its engine account
-- id is derived from `seq` (see tollgate-store's customers.rs), so it never changes.

CREATE TABLE customers (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    party_type TEXT NOT NULL CHECK (party_type IN ('individual', 'organization')),
    name TEXT NOT NULL,
    status TEXT NOT NULL,
    doc_json TEXT NOT NULL,
    anonymised_at_ms BIGINT,
    version BIGINT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL
);

CREATE TABLE billing_accounts (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    customer_id TEXT NOT NULL REFERENCES customers (id),
    parent_id TEXT REFERENCES billing_accounts (id),
    root_id TEXT NOT NULL,
    depth BIGINT NOT NULL CHECK (depth >= 0),
    name TEXT NOT NULL,
    account_type TEXT NOT NULL CHECK (account_type IN ('prepaid', 'postpaid', 'hybrid')),
    state TEXT NOT NULL,
    currency TEXT NOT NULL,
    bill_cycle_day BIGINT NOT NULL CHECK (bill_cycle_day BETWEEN 1 AND 28),
    payment_terms_days BIGINT NOT NULL CHECK (payment_terms_days BETWEEN 0 AND 365),
    tax_profile_id TEXT,
    credit_limit DECIMAL_TEXT NOT NULL CHECK (typeof(credit_limit) = 'text'),
    version BIGINT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL
);
CREATE INDEX billing_accounts_customer ON billing_accounts (customer_id, seq);
CREATE INDEX billing_accounts_parent ON billing_accounts (parent_id, seq);
CREATE INDEX billing_accounts_root ON billing_accounts (root_id, seq);
