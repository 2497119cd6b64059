-- The product inventory's history, PostgreSQL. migrations/sqlite/0013_product_history.sql is
-- the same schema in SQLite's dialect.
--
-- A product (a line, whose id is its subscription's, or an add-on on a line) has one row
-- per period it spent on one offering in one state: `active` or `suspended`, from
-- `from_ms` up to `until_ms` (excluded; NULL while it lasts). `opened_by` says what started
-- the period (`newLine`, `addAddOn`, `changePlan`, `suspend`, `resume`, `import`, or
-- `backfill`: the first period of a product from before this table, recorded from its start
-- when it first changed), `closed_by` what ended it (`changePlan`, `suspend`, `resume`,
-- `terminate`, `removeAddOn`), and `order_id` the order that opened it (NULL for an
-- import). The order workflow writes them in the transaction that completes the order
-- item; the bulk import with the lines it creates. The bill run prorates each period's
-- prices by its days (bss-modules/billing/README.md, "Proration policy").
--
-- Invariants the database holds itself: at most one open period per product; a period
-- is closed with a reason or open without one; it never ends before it starts.

CREATE TABLE product_periods (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    product_id TEXT NOT NULL,
    subscription_id TEXT NOT NULL REFERENCES subscriptions (id),
    offering_id TEXT,
    state TEXT NOT NULL CHECK (state IN ('active', 'suspended')),
    opened_by TEXT NOT NULL CHECK (opened_by IN ('newLine', 'addAddOn', 'changePlan', 'suspend', 'resume', 'import',
        'backfill')),
    order_id TEXT,
    from_ms BIGINT NOT NULL,
    until_ms BIGINT,
    closed_by TEXT CHECK (closed_by IS NULL OR closed_by IN ('changePlan', 'suspend', 'resume', 'terminate',
        'removeAddOn')),
    CHECK ((until_ms IS NULL) = (closed_by IS NULL)),
    CHECK (until_ms IS NULL OR until_ms >= from_ms)
);
CREATE INDEX product_periods_subscription ON product_periods (subscription_id, product_id, from_ms);
CREATE INDEX product_periods_product ON product_periods (product_id, from_ms);
CREATE UNIQUE INDEX product_periods_open ON product_periods (product_id) WHERE until_ms IS NULL;
