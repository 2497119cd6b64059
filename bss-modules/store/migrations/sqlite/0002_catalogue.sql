-- The product catalogue (TMF620), SQLite. migrations/postgres/0002_catalogue.sql is the
-- same schema in PostgreSQL's dialect. One table holds the four kinds of catalogue item
-- (product specification, product offering, product offering price, category): the
-- item's JSON document as the API shows it, and beside it the columns that lists filter
-- on and the price, as money (DECIMAL_TEXT: the canonical decimal, never REAL).

CREATE TABLE catalogue_items (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL
        CHECK (kind IN ('ProductSpecification', 'ProductOffering', 'ProductOfferingPrice', 'Category')),
    name TEXT NOT NULL,
    lifecycle_status TEXT NOT NULL,
    version_label TEXT,
    is_bundle BIGINT CHECK (is_bundle IN (0, 1)),
    price_type TEXT,
    price_amount DECIMAL_TEXT CHECK (price_amount IS NULL OR typeof(price_amount) = 'text'),
    price_unit TEXT,
    doc_json TEXT NOT NULL,
    version BIGINT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL
);
CREATE INDEX catalogue_items_kind ON catalogue_items (kind, seq);

-- Which item names which (an offering its prices, a bundle its offerings, …), so an item
-- that is referred to cannot be deleted from under its referrer.
CREATE TABLE catalogue_refs (
    from_id TEXT NOT NULL REFERENCES catalogue_items (id) ON DELETE CASCADE,
    field TEXT NOT NULL,
    to_id TEXT NOT NULL REFERENCES catalogue_items (id),
    PRIMARY KEY (from_id, field, to_id)
);
CREATE INDEX catalogue_refs_to ON catalogue_refs (to_id);

-- Every tariff plan version an activated offering's usage price compiled: a plan version
-- is immutable (a new version is a new plan), so the same id and version with another
-- source is refused.
CREATE TABLE tariff_plan_versions (
    plan_id TEXT NOT NULL,
    plan_version BIGINT NOT NULL,
    source_sha256 TEXT NOT NULL,
    source TEXT NOT NULL,
    recorded_at_ms BIGINT NOT NULL,
    PRIMARY KEY (plan_id, plan_version)
);
