-- Subscriptions and bulk import (data migration), SQLite. migrations/postgres/0004_import.sql
-- is the same schema in PostgreSQL's dialect.
--
-- External ids: the id a legacy system gave a customer, billing account or subscription,
-- unique per table (NULL for rows made through the API). An import finds what it already
-- imported by them, so a row is never imported twice.
ALTER TABLE customers ADD COLUMN external_id TEXT;
CREATE UNIQUE INDEX customers_external_id ON customers (external_id);
ALTER TABLE billing_accounts ADD COLUMN external_id TEXT;
CREATE UNIQUE INDEX billing_accounts_external_id ON billing_accounts (external_id);

-- A subscription: the BSS's record of one billing account's use of a product (a tariff
-- plan, and the catalogue's product offering it was sold as) under its identities. Its
-- engine subscription id is derived from `seq` (see tollgate-store's subscriptions.rs), so
-- it never changes. `state` follows the engine: active, suspended, terminated.
CREATE TABLE subscriptions (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    external_id TEXT,
    billing_account_id TEXT NOT NULL REFERENCES billing_accounts (id),
    offering_id TEXT REFERENCES catalogue_items (id),
    plan_id TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('active', 'suspended', 'terminated')),
    version BIGINT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL
);
CREATE UNIQUE INDEX subscriptions_external_id ON subscriptions (external_id);
CREATE INDEX subscriptions_billing_account ON subscriptions (billing_account_id, seq);

-- A subscription's identities, each the engine's normalised key (`msisdn:491700000001`,
-- `imsi:262011234567890`, `sip:…`, `nai:…`): one subscription per identity, as in the
-- engine's directory. `position` keeps the order they were given in.
CREATE TABLE subscription_identities (
    identity TEXT PRIMARY KEY,
    subscription_id TEXT NOT NULL REFERENCES subscriptions (id),
    position BIGINT NOT NULL
);
CREATE INDEX subscription_identities_subscription ON subscription_identities (subscription_id, position);

-- One import of one file through one mapping, and its checkpoint: the rows committed so
-- far, where the next row starts, the rejects file's length and the counts. Each batch
-- updates it in the batch's own transaction, so a killed import resumes exactly after its
-- last committed batch. `id_prefix` starts the ids of the rows it creates.
CREATE TABLE import_runs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL CHECK (kind IN ('customers', 'subscriptions')),
    file_name TEXT NOT NULL,
    file_sha256 TEXT NOT NULL,
    file_bytes BIGINT NOT NULL,
    mapping_sha256 TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('running', 'complete')),
    rows_done BIGINT NOT NULL,
    next_offset BIGINT NOT NULL,
    rejects_bytes BIGINT NOT NULL,
    imported BIGINT NOT NULL,
    duplicates BIGINT NOT NULL,
    rejected BIGINT NOT NULL,
    actor TEXT NOT NULL,
    started_at_ms BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL,
    finished_at_ms BIGINT
);
CREATE UNIQUE INDEX import_runs_file ON import_runs (kind, file_sha256, mapping_sha256);
