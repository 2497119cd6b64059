-- Product orders (TMF622) and their provisioning workflow, SQLite.
-- migrations/postgres/0008_orders.sql is the same schema in PostgreSQL's dialect.
--
-- The product inventory (TMF637) is the subscriptions table of 0004 with what an order
-- adds: the product's TMF637 status while it is provisioned or after it was cancelled
-- (NULL: as `state` says), its SIM card's ICCID (the IMSI is an identity), the order that
-- created it and when it started and ended; add-on products of a line; and the service
-- inventory (TMF638): the line's service.
ALTER TABLE subscriptions ADD COLUMN product_status TEXT
    CHECK (product_status IS NULL OR product_status IN ('pendingActive', 'active', 'suspended', 'pendingTerminate',
        'terminated', 'cancelled'));
ALTER TABLE subscriptions ADD COLUMN iccid TEXT;
ALTER TABLE subscriptions ADD COLUMN order_id TEXT;
ALTER TABLE subscriptions ADD COLUMN started_at_ms BIGINT;
ALTER TABLE subscriptions ADD COLUMN terminated_at_ms BIGINT;

CREATE TABLE subscription_addons (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    subscription_id TEXT NOT NULL REFERENCES subscriptions (id),
    offering_id TEXT NOT NULL REFERENCES catalogue_items (id),
    status TEXT NOT NULL CHECK (status IN ('active', 'terminated')),
    order_id TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL,
    terminated_at_ms BIGINT
);
CREATE INDEX subscription_addons_subscription ON subscription_addons (subscription_id, seq);

CREATE TABLE services (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    subscription_id TEXT NOT NULL UNIQUE REFERENCES subscriptions (id),
    state TEXT NOT NULL CHECK (state IN ('reserved', 'active', 'inactive', 'terminated')),
    order_id TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL
);

-- An order: its state (TMF622), the billing account it is for and that account's
-- hierarchy root (a partner reads the orders of its hierarchy), when it is to run, whether
-- a cancellation was accepted, and the document the API shows (the client's, with the
-- server's fields).
CREATE TABLE product_orders (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    state TEXT NOT NULL CHECK (state IN ('acknowledged', 'pending', 'held', 'inProgress', 'completed', 'failed',
        'partial', 'assessingCancellation', 'pendingCancellation', 'cancelled')),
    billing_account_id TEXT NOT NULL REFERENCES billing_accounts (id),
    root_id TEXT NOT NULL,
    requested_start_at_ms BIGINT,
    cancelling BIGINT NOT NULL CHECK (cancelling IN (0, 1)),
    doc_json TEXT NOT NULL,
    version BIGINT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL,
    completed_at_ms BIGINT
);
CREATE INDEX product_orders_state ON product_orders (state, seq);
CREATE INDEX product_orders_billing_account ON product_orders (billing_account_id, seq);
CREATE INDEX product_orders_root ON product_orders (root_id, seq);

-- An order's items: the action, its state, the product it acts on or creates (an id
-- assigned when the order is placed), and what the workflow needs (chosen number or SIM,
-- target plan, parent line) as JSON. `order_seq` orders the items of one product.
CREATE TABLE product_order_items (
    order_id TEXT NOT NULL REFERENCES product_orders (id),
    item_id TEXT NOT NULL,
    position BIGINT NOT NULL,
    order_seq BIGINT NOT NULL,
    action TEXT NOT NULL CHECK (action IN ('newLine', 'changePlan', 'addAddOn', 'removeAddOn', 'suspend', 'resume',
        'terminate', 'simSwap', 'numberChange')),
    state TEXT NOT NULL CHECK (state IN ('acknowledged', 'pending', 'held', 'inProgress', 'completed', 'failed',
        'pendingCancellation', 'cancelled')),
    product_id TEXT NOT NULL,
    request_json TEXT NOT NULL,
    updated_at_ms BIGINT NOT NULL,
    PRIMARY KEY (order_id, item_id)
);
CREATE INDEX product_order_items_product ON product_order_items (product_id, order_seq);

-- The workflow: one row per step of an item, run in `position` order. Exactly one row of
-- an unfinished item is `due` (forward) or `undo` (compensating) at a time; a worker
-- claims it by moving `next_attempt_at_ms` past a lease and counting the attempt
-- (`FOR UPDATE SKIP LOCKED` on PostgreSQL), and records the outcome only if its claim still
-- holds. `result_json` is what the step produced (the number reserved, the gateway's
-- reference), `last_error` why the last attempt did not succeed.
CREATE TABLE provisioning_tasks (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    order_id TEXT NOT NULL,
    item_id TEXT NOT NULL,
    position BIGINT NOT NULL,
    step TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('waiting', 'due', 'done', 'skipped', 'failed', 'undo', 'undone',
        'cancelled')),
    attempts BIGINT NOT NULL,
    next_attempt_at_ms BIGINT NOT NULL,
    last_error TEXT,
    result_json TEXT,
    updated_at_ms BIGINT NOT NULL,
    FOREIGN KEY (order_id, item_id) REFERENCES product_order_items (order_id, item_id),
    UNIQUE (order_id, item_id, position)
);
CREATE INDEX provisioning_tasks_due ON provisioning_tasks (state, next_attempt_at_ms);

-- Cancellation requests (TMF622 cancelProductOrder): accepted ones are carried out by the
-- workflow (compensating what was done); `state` ends `done` or `terminatedWithError`.
CREATE TABLE cancel_product_orders (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    order_id TEXT NOT NULL REFERENCES product_orders (id),
    state TEXT NOT NULL CHECK (state IN ('acknowledged', 'inProgress', 'done', 'terminatedWithError')),
    reason TEXT,
    error_message TEXT,
    root_id TEXT NOT NULL,
    requested_at_ms BIGINT NOT NULL,
    effective_at_ms BIGINT
);
CREATE INDEX cancel_product_orders_order ON cancel_product_orders (order_id, seq);
