-- Receivables: payments, what each paid (allocations to invoices), invoices' due dates and
-- the dunning steps taken, SQLite. migrations/postgres/0011_receivables.sql is the same
-- schema in PostgreSQL's dialect. Money is DECIMAL_TEXT, never REAL.
--
-- Invariants the database holds itself:
-- * a payment is recorded once per source and reference (a bank's entry reference, an API
--   request id): importing a statement twice records nothing new;
-- * payments and allocations are never changed or deleted (triggers): a correction is a
--   new record;
-- * an invoice is paid by a payment at most once (one allocation row per pair), and a
--   dunning step is taken at most once per invoice.
-- What an invoice still owes (its gross, less final credit notes correcting it, less its
-- allocations) and what a payment has left (its amount less its allocations) are summed
-- by the store in Rust, exactly; SQLite's SUM would go through floating point.

-- The day a final invoice falls due: its issue day plus the account's payment terms then.
ALTER TABLE invoices ADD COLUMN due_on TEXT;

CREATE TABLE payments (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    billing_account_id TEXT NOT NULL REFERENCES billing_accounts (id),
    amount DECIMAL_TEXT NOT NULL CHECK (typeof(amount) = 'text'),
    currency TEXT NOT NULL,
    -- bankTransfer, card, cash, directDebit, other.
    method TEXT NOT NULL,
    -- Where it came from (`api`, `bank-statement`) and its reference there.
    source TEXT NOT NULL,
    reference TEXT NOT NULL,
    -- The invoice (bill number or id) the payer named, when one was.
    remittance TEXT,
    received_on TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    UNIQUE (source, reference)
);
CREATE INDEX payments_account ON payments (billing_account_id, seq);

CREATE TABLE payment_allocations (
    payment_id TEXT NOT NULL REFERENCES payments (id),
    invoice_id TEXT NOT NULL REFERENCES invoices (id),
    amount DECIMAL_TEXT NOT NULL CHECK (typeof(amount) = 'text'),
    allocated_at_ms BIGINT NOT NULL,
    PRIMARY KEY (payment_id, invoice_id)
);
CREATE INDEX payment_allocations_invoice ON payment_allocations (invoice_id);

-- A dunning step taken for an invoice: a reminder, or a suspension (its orders), lifted
-- (resume orders) once the account owes nothing overdue.
CREATE TABLE dunning_actions (
    invoice_id TEXT NOT NULL REFERENCES invoices (id),
    step TEXT NOT NULL,
    action TEXT NOT NULL CHECK (action IN ('reminder', 'suspend')),
    billing_account_id TEXT NOT NULL REFERENCES billing_accounts (id),
    order_ids TEXT NOT NULL,
    taken_on TEXT NOT NULL,
    taken_at_ms BIGINT NOT NULL,
    lifted_order_ids TEXT,
    lifted_at_ms BIGINT,
    PRIMARY KEY (invoice_id, step)
);
CREATE INDEX dunning_actions_account ON dunning_actions (billing_account_id);

CREATE TRIGGER payments_no_update BEFORE UPDATE ON payments
BEGIN
    SELECT RAISE(ABORT, 'a payment is never changed: UPDATE refused');
END;
CREATE TRIGGER payments_no_delete BEFORE DELETE ON payments
BEGIN
    SELECT RAISE(ABORT, 'a payment is never changed: DELETE refused');
END;
CREATE TRIGGER payment_allocations_no_update BEFORE UPDATE ON payment_allocations
BEGIN
    SELECT RAISE(ABORT, 'an allocation is never changed: UPDATE refused');
END;
CREATE TRIGGER payment_allocations_no_delete BEFORE DELETE ON payment_allocations
BEGIN
    SELECT RAISE(ABORT, 'an allocation is never changed: DELETE refused');
END;
