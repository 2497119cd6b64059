-- The name an invoice was issued to, PostgreSQL. migrations/sqlite/0025_invoice_bill_to.sql
-- is the same schema in SQLite's dialect.
--
-- Set from the billing account's name in the statement that makes the invoice final (a
-- final invoice is never changed after), so its PDF shows whom it was issued to, not the
-- account's name of the day it is printed. NULL for invoices made final before.

ALTER TABLE invoices ADD COLUMN bill_to TEXT;
