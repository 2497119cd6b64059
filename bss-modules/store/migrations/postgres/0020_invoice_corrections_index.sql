-- What corrects an invoice (its credit notes) is looked up by the invoice corrected each
-- time an invoice's balance due is worked out, as every invoice made final does when it
-- settles the account's credit: without an index each lookup read the whole invoices
-- table, so a bill run slowed down with every invoice it added.
CREATE INDEX invoices_corrects ON invoices (corrects_invoice_id);
