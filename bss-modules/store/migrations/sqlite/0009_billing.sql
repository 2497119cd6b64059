-- Bill runs, invoices and credit notes, their lines, the invoice number counters and what
-- was billed, SQLite. migrations/postgres/0009_billing.sql is the same schema in
-- PostgreSQL's dialect. Money is DECIMAL_TEXT, never REAL.
--
-- Invariants the database holds itself:
-- * an invoice has a number exactly when it is final, unique per issuer and series; the
--   number comes from the series' counter row, taken in the finalising transaction, so a
--   rolled-back or crashed finalisation gives its number back and numbers have no gaps;
-- * a final invoice (and its lines) is never changed or deleted (triggers);
-- * an item (a ledger entry, a product's recurring price for a period, an order item's
--   one-off charge) is billed at most once: `billed_items.item_key` is the primary key;
-- * an account has at most one invoice per cycle; a credit note names the final invoice
--   it corrects.

-- One bill run: the cycle (YYYY-MM, the month the billed cycles close in), which accounts
-- (`all` or a comma-separated list), its state and checkpoint (the last account drafted).
CREATE TABLE bill_runs (
    id TEXT PRIMARY KEY,
    cycle TEXT NOT NULL,
    scope TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('drafting', 'finalising', 'done')),
    checkpoint TEXT,
    started_at_ms BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL,
    finished_at_ms BIGINT
);

-- The next number of each issuing entity's series.
CREATE TABLE invoice_series (
    issuer TEXT NOT NULL,
    series TEXT NOT NULL,
    next_number BIGINT NOT NULL CHECK (next_number >= 1),
    PRIMARY KEY (issuer, series)
);

CREATE TABLE invoices (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL CHECK (kind IN ('invoice', 'credit_note')),
    bill_run_id TEXT REFERENCES bill_runs (id),
    billing_account_id TEXT NOT NULL REFERENCES billing_accounts (id),
    root_id TEXT NOT NULL,
    cycle TEXT NOT NULL,
    period_from TEXT NOT NULL,
    period_until TEXT NOT NULL,
    issuer TEXT NOT NULL,
    series TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('draft', 'final')),
    number BIGINT,
    corrects_invoice_id TEXT REFERENCES invoices (id),
    currency TEXT NOT NULL,
    net DECIMAL_TEXT NOT NULL CHECK (typeof(net) = 'text'),
    tax DECIMAL_TEXT NOT NULL CHECK (typeof(tax) = 'text'),
    gross DECIMAL_TEXT NOT NULL CHECK (typeof(gross) = 'text'),
    content_hash TEXT NOT NULL,
    doc_json TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    finalised_at_ms BIGINT,
    CHECK ((state = 'final') = (number IS NOT NULL AND finalised_at_ms IS NOT NULL)),
    CHECK (number IS NULL OR number >= 1),
    CHECK ((kind = 'credit_note') = (corrects_invoice_id IS NOT NULL)),
    UNIQUE (issuer, series, number)
);
CREATE UNIQUE INDEX invoices_account_cycle ON invoices (billing_account_id, cycle) WHERE kind = 'invoice';
CREATE INDEX invoices_run ON invoices (bill_run_id, billing_account_id);
CREATE INDEX invoices_root ON invoices (root_id, seq);

CREATE TABLE invoice_lines (
    invoice_id TEXT NOT NULL REFERENCES invoices (id),
    position BIGINT NOT NULL,
    account_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    charge_type TEXT NOT NULL,
    product_id TEXT,
    reference TEXT,
    description TEXT NOT NULL,
    period_from TEXT,
    period_until TEXT,
    currency TEXT NOT NULL,
    quantity DECIMAL_TEXT CHECK (quantity IS NULL OR typeof(quantity) = 'text'),
    unit TEXT,
    amount DECIMAL_TEXT NOT NULL CHECK (typeof(amount) = 'text'),
    net DECIMAL_TEXT NOT NULL CHECK (typeof(net) = 'text'),
    tax DECIMAL_TEXT NOT NULL CHECK (typeof(tax) = 'text'),
    gross DECIMAL_TEXT NOT NULL CHECK (typeof(gross) = 'text'),
    tax_code TEXT,
    tax_rate DECIMAL_TEXT CHECK (tax_rate IS NULL OR typeof(tax_rate) = 'text'),
    PRIMARY KEY (invoice_id, position)
);

-- What was billed, keyed by what it is: `usage:{engine account}:{lsn}:{n}` (a ledger
-- entry), `recurring:{product}:{price}:{cycle start}`, `one-off:{order}:{item}:{price}`.
CREATE TABLE billed_items (
    item_key TEXT PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('usage', 'recurring', 'one_off')),
    billing_account_id TEXT NOT NULL REFERENCES billing_accounts (id),
    invoice_id TEXT NOT NULL REFERENCES invoices (id),
    amount DECIMAL_TEXT NOT NULL CHECK (typeof(amount) = 'text'),
    currency TEXT NOT NULL,
    billed_at_ms BIGINT NOT NULL
);
CREATE INDEX billed_items_invoice ON billed_items (invoice_id);

CREATE TRIGGER invoices_final_no_update BEFORE UPDATE ON invoices WHEN OLD.state = 'final'
BEGIN
    SELECT RAISE(ABORT, 'a final invoice is never changed: UPDATE refused');
END;
CREATE TRIGGER invoices_final_no_delete BEFORE DELETE ON invoices WHEN OLD.state = 'final'
BEGIN
    SELECT RAISE(ABORT, 'a final invoice is never changed: DELETE refused');
END;
CREATE TRIGGER invoice_lines_final_no_insert BEFORE INSERT ON invoice_lines
    WHEN (SELECT state FROM invoices WHERE id = NEW.invoice_id) = 'final'
BEGIN
    SELECT RAISE(ABORT, 'a final invoice is never changed: INSERT of a line refused');
END;
CREATE TRIGGER invoice_lines_final_no_update BEFORE UPDATE ON invoice_lines
    WHEN (SELECT state FROM invoices WHERE id = OLD.invoice_id) = 'final'
BEGIN
    SELECT RAISE(ABORT, 'a final invoice is never changed: UPDATE of a line refused');
END;
CREATE TRIGGER invoice_lines_final_no_delete BEFORE DELETE ON invoice_lines
    WHEN (SELECT state FROM invoices WHERE id = OLD.invoice_id) = 'final'
BEGIN
    SELECT RAISE(ABORT, 'a final invoice is never changed: DELETE of a line refused');
END;
