-- A prepaid hierarchy's bill run issues a statement instead of an invoice: the same
-- document, numbered in its own series, with nothing to pay (its usage was charged
-- online and its fees are debited from the prepaid balance by the engine).
ALTER TABLE invoices ADD COLUMN document TEXT NOT NULL DEFAULT 'invoice'
    CHECK (document IN ('invoice', 'statement'));

-- The fees of a final statement, per account, debited from that account's prepaid balance
-- by the engine (all or nothing, through the outbox under `bss:renewal:INVOICE:ACCOUNT:N`,
-- N the attempt). Unpaid past `grace_until`, the account's lines are suspended by an
-- order; once paid, the lines that order suspended are resumed by another.
CREATE TABLE prepaid_renewals (
    invoice_id TEXT NOT NULL REFERENCES invoices (id),
    billing_account_id TEXT NOT NULL REFERENCES billing_accounts (id),
    root_id TEXT NOT NULL,
    engine_account_id BIGINT NOT NULL,
    currency TEXT NOT NULL,
    amount NUMERIC NOT NULL,
    renewal_on TEXT NOT NULL,
    grace_until TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('pending', 'paid', 'unpaid')),
    attempts BIGINT NOT NULL CHECK (attempts >= 1),
    reason TEXT,
    paid_at_ms BIGINT,
    suspend_order_ids TEXT,
    suspended_at_ms BIGINT,
    lifted_order_ids TEXT,
    lifted_at_ms BIGINT,
    created_at_ms BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL,
    CHECK ((state = 'paid') = (paid_at_ms IS NOT NULL)),
    PRIMARY KEY (invoice_id, billing_account_id)
);
CREATE INDEX prepaid_renewals_state ON prepaid_renewals (state, renewal_on);
